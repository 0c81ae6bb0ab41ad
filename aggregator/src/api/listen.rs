//! HTTP/1 serving with bounds on what a client can hold: a cap on open connections and a
//! header-read timeout that also ends idle keep-alive connections. Without them, a few
//! hundred connections that send nothing exhaust the process's file descriptors and break
//! ingest (issue 14).
//!
//! hyper's header-read timer starts whenever a connection waits for a request head: on a
//! new connection and after each response. So a connection that has not sent a complete
//! request head within [`HttpLimits::header_read_timeout`] of connecting (or of its
//! previous response) is closed: the same timer is the header-read and the idle timeout.
//! Past [`HttpLimits::max_connections`] the listener stops accepting until a connection
//! closes; new clients wait in the kernel's backlog, the open ones are not disturbed.

use caretaker_core::error::Chain;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

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
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
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
