//! Printing an error with its causes.
//!
//! Library errors in caretaker keep their cause as `#[source]` and do not repeat it in
//! their own message (kube-runtime's habit), so an error and its chain of sources print
//! each cause exactly once as `outer: cause: root cause` with [`Chain`] (what `anyhow`'s
//! `{:#}` prints in the binaries). Some libraries' messages do repeat their cause (kube's
//! `ServiceError: {0}`); [`Chain`] prints those causes once too.

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its sources, separated by `": "`.
///
/// ```
/// use caretaker_core::error::Chain;
/// let e = std::io::Error::other("disk full");
/// assert_eq!(Chain(&e).to_string(), "disk full");
/// ```
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut msgs: Vec<String> = Vec::new();
        let mut next: Option<&dyn Error> = Some(self.0);
        while let Some(e) = next {
            msgs.push(e.to_string());
            next = e.source();
        }
        let mut first = true;
        for (i, m) in msgs.iter().enumerate() {
            // Some libraries' messages end with their source's (kube's `ServiceError:
            // {0}`, hyper's): that part is cut, and a cause equal to the message before it
            // is skipped, so each cause still prints once.
            let own = match msgs.get(i + 1) {
                Some(cause) if cause == m => continue,
                Some(cause) => m
                    .strip_suffix(cause.as_str())
                    .map(|s| s.trim_end().trim_end_matches(':').trim_end())
                    .filter(|s| !s.is_empty())
                    .unwrap_or(m),
                None => m,
            };
            if !first {
                f.write_str(": ")?;
            }
            f.write_str(own)?;
            first = false;
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read state file /var/lib/x")]
    struct Read(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("log rotation")]
    struct Rotate(#[source] Read);

    #[test]
    fn a_chain_prints_each_cause_once_outermost_first() {
        let e = Rotate(Read(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file",
        )));
        assert_eq!(
            Chain(&e).to_string(),
            "log rotation: cannot read state file /var/lib/x: no such file"
        );
    }

    #[test]
    fn an_error_without_source_prints_alone() {
        let e = std::fmt::Error;
        assert_eq!(
            Chain(&e).to_string(),
            "an error occurred when formatting an argument"
        );
    }

    #[test]
    fn an_io_error_wrapping_an_error_prints_the_wrapped_message_once() {
        // io::Error shows its custom error's message and returns that error's *source*,
        // so wrapping does not repeat the message.
        let e = std::io::Error::other(Read(std::io::Error::other("denied")));
        assert_eq!(
            Chain(&e).to_string(),
            "cannot read state file /var/lib/x: denied"
        );
    }

    #[derive(Debug, thiserror::Error)]
    enum E {
        #[error("cannot reach {0}")]
        Reach(String, #[source] Box<E>),
        /// Repeats its source, as kube's `ServiceError: {0}` does.
        #[error("ServiceError: {0}")]
        Service(#[source] Box<E>),
        #[error("client error (Connect)")]
        Client(#[source] std::io::Error),
    }

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = E::Reach(
            "http://x/".into(),
            Box::new(E::Service(Box::new(E::Client(io)))),
        );
        assert_eq!(
            Chain(&e).to_string(),
            "cannot reach http://x/: ServiceError: client error (Connect): refused"
        );
        let plain = std::io::Error::other("alone");
        assert_eq!(Chain(&plain).to_string(), "alone");
    }
}
