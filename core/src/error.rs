//! Printing an error with its causes.
//!
//! Library errors in caretaker keep their cause as `#[source]` and do not repeat it in
//! their own message (kube-runtime's habit), so an error and its chain of sources print
//! each cause exactly once as `outer: cause: root cause` with [`Chain`] (what `anyhow`'s
//! `{:#}` prints in the binaries).

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
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
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
}
