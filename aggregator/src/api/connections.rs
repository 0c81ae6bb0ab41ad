//! The connection cap of the gRPC port (`ingest.max_connections`).
//!
//! Every open connection costs the aggregator memory (~50 KiB of HTTP/2 and TLS buffers
//! while it carries reports) and a file descriptor, so the port holds at most
//! [`ConnectionCap`]'s limit at once (issue 14). Agents hold a connection only while they
//! have reports to deliver (the agents' `idle_timeout`), so a fleet needs far fewer slots
//! than it has nodes. At the cap the port stops accepting: a new connection waits in the
//! kernel's accept queue (first come, first served; its client sees its TLS handshake
//! wait), and is accepted when a slot comes free. Meanwhile streams older than
//! `ingest.max_connection_age_at_cap` end after the report they are on
//! ([`ConnectionCap::waiting`], checked by [`crate::api::ingest`]) and tell their agents to
//! come back after `ingest.retry_pushback_at_cap`, so agents with a long backlog take turns
//! with the ones waiting instead of holding a slot until their backlog is drained, and stay
//! out of the queue for a while, so that an agent with a fresh report finds it short. A
//! slot is given back when its connection closes ([`Capped`] holds it).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::Connected;
use tracing::{info, warn};

/// Default of `ingest.max_connections`. Agents connect only to deliver (every 10 s, for a
/// few milliseconds, plus their `idle_timeout`), so 5,000 nodes hold about a thousand
/// connections in steady state; after an outage every agent wants one at once and they
/// take turns. 2,048 connections carrying reports are ~100 MiB of the aggregator's memory.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 2048;

/// Default of `ingest.max_connection_age_at_cap`: long enough for an agent to deliver a
/// few hundred reports, short enough that a connection waiting behind thousands of others
/// gets its turn within seconds.
pub(crate) const DEFAULT_MAX_CONNECTION_AGE_AT_CAP: std::time::Duration =
    std::time::Duration::from_secs(2);

/// Default of `ingest.retry_pushback_at_cap`: an agent that made way stays out of the
/// accept queue for 5 to 15 s, so that queue stays short and an agent with a fresh report
/// gets in within seconds. While nobody waits, no stream makes way, so the pushback only
/// ever applies under contention and cannot leave slots idle for long.
pub(crate) const DEFAULT_RETRY_PUSHBACK_AT_CAP: std::time::Duration =
    std::time::Duration::from_secs(10);

/// Slots for the connections of one listener.
#[derive(Debug)]
pub(crate) struct ConnectionCap {
    slots: Arc<Semaphore>,
    max: usize,
    /// Set while the listener waits for a slot: connections may be waiting to be accepted.
    waiting: AtomicBool,
}

impl ConnectionCap {
    /// At most `max` connections at once (0 is taken as 1).
    pub(crate) fn new(max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            waiting: AtomicBool::new(false),
        }
    }

    /// The cap (what the tests check; the server only admits).
    #[cfg(test)]
    fn max(&self) -> usize {
        self.max
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    /// A slot for the next connection, held until it closes: at once below the cap, else
    /// when a connection closes (the listener does not accept meanwhile).
    pub(crate) async fn slot(&self) -> OwnedSemaphorePermit {
        if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
            return slot;
        }
        warn!(
            max = self.max,
            "The gRPC port is at its connection cap (ingest.max_connections); new connections wait to be accepted, old streams make way."
        );
        self.waiting.store(true, Ordering::Relaxed);
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        self.waiting.store(false, Ordering::Relaxed);
        info!(max = self.max, "A slot came free under the connection cap.");
        slot
    }

    /// Whether the listener is waiting for a slot (so connections may wait to be accepted):
    /// then streams older than `max_connection_age_at_cap` make way.
    pub(crate) fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// A connection holding its slot under a [`ConnectionCap`]; reads and writes go straight
/// to the inner stream.
#[derive(Debug)]
pub(crate) struct Capped<IO> {
    io: IO,
    _slot: OwnedSemaphorePermit,
}

impl<IO> Capped<IO> {
    pub(crate) fn new(io: IO, slot: OwnedSemaphorePermit) -> Self {
        Self { io, _slot: slot }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Capped<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Capped<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The inner stream's peer address and client certificates, so ingest still sees them.
impl<IO: Connected> Connected for Capped<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Plaintext connections of `listener` within `cap`, as tonic's incoming stream: a
/// connection is accepted only once it has a slot.
pub(crate) fn plaintext(
    listener: tokio::net::TcpListener,
    cap: Arc<ConnectionCap>,
) -> impl tokio_stream::Stream<Item = io::Result<Capped<tokio::net::TcpStream>>> {
    futures_util::stream::unfold((listener, cap), |(listener, cap)| async move {
        let slot = cap.slot().await;
        let accepted = listener.accept().await.map(|(tcp, _)| {
            // As the TLS listener ([`crate::api::tls`]): acks go out at once.
            let _ = tcp.set_nodelay(true);
            Capped::new(tcp, slot)
        });
        Some((accepted, (listener, cap)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_taken_up_to_the_cap_and_a_wait_ends_when_a_connection_closes() {
        let cap = Arc::new(ConnectionCap::new(2));
        let a = cap.slot().await;
        let b = cap.slot().await;
        assert_eq!(cap.open(), 2);
        assert!(!cap.waiting());
        let third = tokio::spawn({
            let cap = Arc::clone(&cap);
            async move { cap.slot().await }
        });
        while !cap.waiting() {
            tokio::task::yield_now().await;
        }
        assert!(!third.is_finished(), "the third waits");
        drop(a);
        let c = third.await.unwrap();
        assert!(!cap.waiting(), "no longer waiting");
        assert_eq!(cap.open(), 2);
        drop((b, c));
        assert_eq!(cap.open(), 0);
        assert_eq!(ConnectionCap::new(0).max(), 1);
    }
}
