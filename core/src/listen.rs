//! One bounded HTTP/1 listener for the agent's probe/metrics endpoint and the aggregator's
//! HTTP API (feature `http`): a cap on open connections and a header-read timeout that also
//! ends idle keep-alive connections. Without them, a few hundred connections that send
//! nothing exhaust the process's file descriptors (issue 14).
//!
//! hyper's header-read timer starts whenever a connection waits for a request head: on a
//! new connection and after each response. So a connection that has not sent a complete
//! request head within [`HttpLimits::header_read_timeout`] of connecting (or of its
//! previous response) is closed: the same timer is the header-read and the idle timeout.
//! Past [`HttpLimits::max_connections`] the listener stops accepting until a connection
//! closes; new clients wait in the kernel's backlog, the open ones are not disturbed.
//!
//! Accept errors are the listener's to handle ([`axum::serve::Listener`]): axum's
//! `TcpListener` pauses one second on errors such as `EMFILE` (out of file descriptors)
//! instead of spinning, and retries at once on a connection reset before accept.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::error::Chain;

/// Returns on SIGTERM (what Kubernetes sends) or SIGINT; never returns when the signal
/// handlers cannot be installed (the error is logged: the process then stops on SIGKILL).
/// The one shutdown trigger of every caretaker binary.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("Cannot install signal handlers; stop the process with SIGKILL.");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; stopping."),
        _ = int.recv() => tracing::info!("SIGINT received; stopping."),
    }
}

/// Bounds of one HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections open at once (default 256); more wait to be accepted.
    pub max_connections: usize,
    /// Time to send a complete request head, counted from connecting or from the previous
    /// response (default 10 s): slow and idle connections are closed after it.
    pub header_read_timeout: Duration,
    /// How long a graceful stop waits for requests in progress (default 5 s).
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Serves `app` over HTTP/1 on `listener` within `limits` until `shutdown` is cancelled,
/// then lets requests in progress finish (up to [`HttpLimits::shutdown_grace`]).
pub async fn serve<L>(mut listener: L, app: Router, limits: HttpLimits, shutdown: CancellationToken)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    // The semaphore caps the connections open at once: each connection task holds a
    // permit until it ends, and the accept loop waits for one before accepting.
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Closed and waited on at shutdown: its emptiness means every connection has ended.
    let connections = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            s = Arc::clone(&slots).acquire_owned() => s,
        };
        // The semaphore is never closed.
        let Ok(slot) = slot else { break };
        let (io, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(app.clone()));
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                debug!(?peer, error = %Chain(&e), "HTTP connection ended with an error.");
            }
        });
    }
    connections.close();
    let _ = tokio::time::timeout(limits.shutdown_grace, connections.wait()).await;
}

/// Helpers for the tests of the programs that serve through this listener (feature
/// `test-util`).
#[cfg(any(test, feature = "test-util"))]
pub mod test_util {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    /// Everything the server sends on `s` until it closes the connection (a reset after
    /// the server closed counts as closed too).
    ///
    /// # Errors
    /// [`std::io::ErrorKind::TimedOut`] when the connection is still open after `wait`,
    /// and any read error other than a reset.
    pub async fn read_to_close(s: &mut TcpStream, wait: Duration) -> std::io::Result<String> {
        let mut out = Vec::new();
        match tokio::time::timeout(wait, s.read_to_end(&mut out)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the connection is still open after {wait:?}"),
                ));
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const WAIT: Duration = Duration::from_secs(20);

    async fn read_to_close(s: &mut TcpStream) -> String {
        super::test_util::read_to_close(s, WAIT)
            .await
            .expect("the server closes the connection")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_in_progress_finishes_after_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (entered_tx, entered) = tokio::sync::oneshot::channel::<()>();
        let entered_tx = Arc::new(std::sync::Mutex::new(Some(entered_tx)));
        let (release_tx, release) = tokio::sync::watch::channel(false);
        let app = Router::new().route(
            "/slow",
            get(move || {
                let entered_tx = Arc::clone(&entered_tx);
                let mut release = release.clone();
                async move {
                    if let Some(tx) = entered_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                    let _ = release.wait_for(|r| *r).await;
                    "done"
                }
            }),
        );
        let stop = CancellationToken::new();
        let limits = HttpLimits {
            shutdown_grace: WAIT,
            ..HttpLimits::default()
        };
        let server = tokio::spawn(serve(listener, app, limits, stop.clone()));
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        entered.await.unwrap();
        stop.cancel();
        release_tx.send_replace(true);
        let answer = read_to_close(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        tokio::time::timeout(WAIT, server).await.unwrap().unwrap();
    }
}
