//! An error with its causes on one line, each cause once, for the programs' `main`s.
//!
//! caretaker's own errors do not repeat their `#[source]` in their message, but some of
//! the libraries' do (kube's `ServiceError: {0}`, hyper's): a message that ends with its
//! cause's text is cut there, and a cause equal to the message before it is skipped.

/// `e` and its causes joined by `: `, each cause printed once.
#[must_use]
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msgs: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        msgs.push(err.to_string());
        next = err.source();
    }
    let mut out: Vec<&str> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let own = match msgs.get(i + 1) {
            Some(cause) if cause == m => continue,
            Some(cause) => m
                .strip_suffix(cause.as_str())
                .map(|s| s.trim_end().trim_end_matches(':').trim_end())
                .filter(|s| !s.is_empty())
                .unwrap_or(m),
            None => m,
        };
        out.push(own);
    }
    out.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

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
            error_chain(&e),
            "cannot reach http://x/: ServiceError: client error (Connect): refused"
        );
        let plain = std::io::Error::other("alone");
        assert_eq!(error_chain(&plain), "alone");
    }
}
