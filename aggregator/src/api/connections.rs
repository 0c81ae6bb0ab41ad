//! The connection cap of the gRPC port (`ingest.max_connections`).
//!
//! Every agent holds one connection for as long as it runs, so the port must take a
//! fleet's worth; beyond that, each connection costs memory and a file descriptor, and
//! without a cap a flood of connections exhausts the descriptors the store and the HTTP
//! port need (issue 14). Past [`ConnectionCap`]'s limit a new connection is closed as soon
//! as it is accepted (before any TLS handshake): the client sees its connection closed and
//! retries with its backoff, and the connections already open are not disturbed. A slot is
//! given back when its connection closes ([`Capped`] holds it).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::Connected;
use tracing::{debug, warn};

/// Default of `ingest.max_connections`: 5,000 nodes (one connection each), the same again
/// for reconnects overlapping connections the server has not seen close yet, and room for
/// query clients.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_240;

/// Slots for the connections of one listener.
#[derive(Debug)]
pub(crate) struct ConnectionCap {
    slots: Arc<Semaphore>,
    max: usize,
    /// Set while at the cap, so a flood logs one warning rather than one per connection.
    full: AtomicBool,
}

impl ConnectionCap {
    /// At most `max` connections at once (0 is taken as 1).
    pub(crate) fn new(max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            full: AtomicBool::new(false),
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

    /// A slot for a connection from `peer`, held until the connection closes; `None` at the
    /// cap: close the connection.
    pub(crate) fn admit(&self, peer: SocketAddr) -> Option<OwnedSemaphorePermit> {
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => {
                if self.full.swap(false, Ordering::Relaxed) {
                    debug!(max = self.max, "Below the connection cap again.");
                }
                Some(slot)
            }
            Err(_) => {
                if self.full.swap(true, Ordering::Relaxed) {
                    debug!(%peer, max = self.max, "Closed a connection beyond the connection cap.");
                } else {
                    warn!(%peer, max = self.max, "The gRPC port is at its connection cap (ingest.max_connections); closing new connections until some close.");
                }
                None
            }
        }
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

/// Plaintext connections of `listener` within `cap`, as tonic's incoming stream.
pub(crate) fn plaintext(
    listener: tokio::net::TcpListener,
    cap: Arc<ConnectionCap>,
) -> impl tokio_stream::Stream<Item = io::Result<Capped<tokio::net::TcpStream>>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).filter_map(move |r| match r {
        Ok(tcp) => {
            let peer = tcp
                .peer_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            cap.admit(peer).map(|slot| Ok(Capped::new(tcp, slot)))
        }
        Err(e) => Some(Err(e)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_taken_up_to_the_cap_and_given_back_when_a_connection_closes() {
        let cap = ConnectionCap::new(2);
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let a = cap.admit(peer).expect("first");
        let b = cap.admit(peer).expect("second");
        assert_eq!(cap.open(), 2);
        assert!(cap.admit(peer).is_none(), "the third is refused");
        drop(a);
        assert_eq!(cap.open(), 1);
        let c = cap.admit(peer).expect("room again");
        assert_eq!(cap.open(), 2);
        drop((b, c));
        assert_eq!(cap.open(), 0);
        assert_eq!(ConnectionCap::new(0).max(), 1);
    }
}
