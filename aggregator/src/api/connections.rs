//! The connection cap of the gRPC port (`ingest.max_connections`).
//!
//! Every open connection costs the aggregator memory (~70 KiB of HTTP/2 and TLS buffers
//! and receive window while it carries reports) and a file descriptor, so the port holds at most
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
//!
//! One source address holds at most `ingest.max_connections_per_source` slots
//! ([`ConnectionCap::admit`]): a connection beyond that is closed as soon as it is
//! accepted. Without it, one client that opens connections and stays silent (no
//! credentials needed: a TCP connect, a TLS handshake or an HTTP/2 preface) held every slot
//! for `max_connection_idle`, renewed them each minute, and kept every agent waiting.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use caretaker_core::error::Chain;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::codegen::http;
use tonic::transport::server::Connected;
use tracing::{debug, info, warn};

/// Default of `ingest.max_connections`. Agents connect only to deliver (every 10 s, for a
/// few milliseconds, plus their 1 s `idle_timeout`), so 5,000 nodes hold about 500
/// connections in steady state; after an outage every agent wants one at once and they
/// take turns. 2,048 connections carrying reports were ~140 MiB of the aggregator's
/// memory (bench-ingest: 171 MiB peak in all).
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 2048;

/// Default of `ingest.max_connection_age_at_cap`: long enough for an agent to deliver a
/// few hundred reports, short enough that a connection waiting behind thousands of others
/// gets its turn within seconds.
pub(crate) const DEFAULT_MAX_CONNECTION_AGE_AT_CAP: Duration = Duration::from_secs(2);

/// Default of `ingest.max_connection_idle`: six times the agents' default report interval.
pub(crate) const DEFAULT_MAX_CONNECTION_IDLE: Duration = Duration::from_secs(60);

/// Default of `ingest.retry_pushback_at_cap`: an agent that made way stays out of the
/// accept queue for 5 to 15 s, so that queue stays short and an agent with a fresh report
/// gets in within seconds. While nobody waits, no stream makes way, so the pushback only
/// ever applies under contention and cannot leave slots idle for long.
pub(crate) const DEFAULT_RETRY_PUSHBACK_AT_CAP: Duration = Duration::from_secs(10);

/// Default of `ingest.max_connections_per_source`: an agent needs one connection (two
/// while a reconnect overlaps), a query client one; a node's address may carry a few
/// host-network clients. One source can then hold 1/32 of the default cap.
pub(crate) const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 64;

/// Slots for the connections of one listener.
#[derive(Debug)]
pub(crate) struct ConnectionCap {
    slots: Arc<Semaphore>,
    max: usize,
    /// Slots one source address may hold.
    per_source: usize,
    /// Open connections by source address, and whether that source was told it is at
    /// `per_source` (one warning while it stays there).
    sources: Arc<Mutex<HashMap<IpAddr, (usize, bool)>>>,
    /// Connections closed because their source was at `per_source` (a metric).
    refused: prometheus_client::metrics::counter::Counter,
    /// Set while the listener waits for a slot: connections may be waiting to be accepted.
    waiting: AtomicBool,
    /// Set from the first wait at the cap until a slot is free at once again, so that a
    /// storm logs one warning, not one per connection accepted at the cap.
    full: AtomicBool,
    /// A connection without an RPC for this long is closed (`ingest.max_connection_idle`).
    max_idle: Duration,
    /// The RPCs of every open connection, by peer address ([`RpcLayer`] counts them).
    activity: Mutex<HashMap<SocketAddr, Weak<Activity>>>,
}

/// The RPCs in flight on one connection, and since when it has had none.
#[derive(Debug)]
pub(crate) struct Activity {
    rpcs: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            rpcs: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        }
    }

    /// When the connection has been idle `max_idle` (`None`: an RPC is in flight).
    fn idle_until(&self, max_idle: Duration) -> Option<Instant> {
        (self.rpcs.load(Ordering::Acquire) == 0).then(|| {
            *self
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                + max_idle
        })
    }
}

/// One RPC on a connection, counted in its [`Activity`] until dropped (with the response
/// body, so a stream counts until it ends; an agent stream's with its reader, see
/// [`StreamRpc`]).
#[derive(Debug)]
pub(crate) struct Rpc {
    activity: Arc<Activity>,
    /// Whether its end restarts the connection's idle time: not for RPCs that need no
    /// credentials ([`renews_idle`]).
    renews: bool,
}

/// The count of an agent stream (`ReportIngest.Stream`), handed to its reader in the
/// request's extensions instead of held by the response: the stream keeps its connection
/// open while its reader runs, and restarts its idle time only if it was admitted
/// ([`Rpc::admitted`]; a refused one does not, as any refused RPC). Held by the response, a client that takes no acks (a
/// stream window of 0) kept it open for good, as the response never ends when its acks
/// cannot be sent; now its connection is closed as idle `max_idle` after the reader ended
/// (no report for `max_connection_idle`, made way, ...), stuck acks and all.
#[derive(Debug, Clone)]
pub(crate) struct StreamRpc(Arc<Mutex<Option<Rpc>>>);

impl StreamRpc {
    /// The count, for the stream's reader to hold while it runs.
    pub(crate) fn take(&self) -> Option<Rpc> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl Rpc {
    fn start(activity: Arc<Activity>, renews: bool) -> Self {
        activity.rpcs.fetch_add(1, Ordering::AcqRel);
        Self { activity, renews }
    }

    /// This RPC was admitted (an agent stream, once its client is known): its end restarts
    /// the connection's idle time.
    pub(crate) fn admitted(mut self) -> Self {
        self.renews = true;
        self
    }
}

impl Drop for Rpc {
    fn drop(&mut self) {
        let mut since = self
            .activity
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Read only once no RPC is in flight: the end of the last RPC that renews it.
        self.activity.rpcs.fetch_sub(1, Ordering::AcqRel);
        if self.renews {
            *since = Instant::now();
        }
    }
}

/// A slot of a [`ConnectionCap`] held by a connection from one source address: given
/// back, and the source's count lowered, when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    source: IpAddr,
    sources: Arc<Mutex<HashMap<IpAddr, (usize, bool)>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((n, _)) = sources.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                sources.remove(&self.source);
            }
        }
    }
}

impl ConnectionCap {
    /// At most `max` connections at once (0 is taken as 1), `per_source` of them from one
    /// source address (0 is taken as 1), each closed after `max_idle` without an RPC;
    /// connections refused for their source are counted in `refused`.
    pub(crate) fn new(
        max: usize,
        per_source: usize,
        max_idle: Duration,
        refused: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            per_source: per_source.max(1),
            sources: Arc::default(),
            refused,
            waiting: AtomicBool::new(false),
            full: AtomicBool::new(false),
            max_idle,
            activity: Mutex::new(HashMap::new()),
        }
    }

    /// The activity of the connection from `peer`, if it is open.
    fn activity(&self, peer: SocketAddr) -> Option<Arc<Activity>> {
        self.activity
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer)
            .and_then(Weak::upgrade)
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
            if self.full.swap(false, Ordering::Relaxed) {
                info!(
                    max = self.max,
                    "Below the gRPC port's connection cap again."
                );
            }
            return slot;
        }
        if !self.full.swap(true, Ordering::Relaxed) {
            warn!(
                max = self.max,
                "The gRPC port is at its connection cap (ingest.max_connections); new connections wait to be accepted, old streams make way."
            );
        }
        self.waiting.store(true, Ordering::Relaxed);
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        self.waiting.store(false, Ordering::Relaxed);
        slot
    }

    /// The slot `permit` for a connection just accepted from `peer`, unless its source
    /// address already holds `per_source` slots: then the connection is to be closed and
    /// `permit` comes back, for the listener to accept the next connection with. Given
    /// back to the cap instead, it would be taken again at once as a slot "free at once"
    /// while the port is at its cap: a warning and an info line for every connection a
    /// client at its share opens while others wait.
    ///
    /// # Errors
    /// `permit`, when the source holds its share.
    pub(crate) fn admit(
        &self,
        permit: OwnedSemaphorePermit,
        peer: SocketAddr,
    ) -> Result<Slot, OwnedSemaphorePermit> {
        let source = peer.ip().to_canonical();
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        let (n, warned) = sources.entry(source).or_insert((0, false));
        if *n >= self.per_source {
            self.refused.inc();
            if !std::mem::replace(warned, true) {
                warn!(%source, max = self.per_source, "A source address holds as many gRPC connections as it may (ingest.max_connections_per_source); closing its new ones while it does.");
            }
            debug!(%peer, "Closing a connection beyond max_connections_per_source.");
            return Err(permit);
        }
        *n += 1;
        Ok(Slot {
            _permit: permit,
            source,
            sources: Arc::clone(&self.sources),
        })
    }

    /// Whether the listener is waiting for a slot (so connections may wait to be accepted):
    /// then streams older than `max_connection_age_at_cap` make way.
    pub(crate) fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// A connection holding its slot under a [`ConnectionCap`]; reads and writes go straight
/// to the inner stream, except that once it has had no RPC for the cap's `max_idle`, it
/// reads as closed (hyper then closes the connection and the slot is given back).
#[derive(Debug)]
pub(crate) struct Capped<IO> {
    io: IO,
    _slot: Slot,
    cap: Arc<ConnectionCap>,
    peer: SocketAddr,
    activity: Arc<Activity>,
    idle_timer: Pin<Box<tokio::time::Sleep>>,
}

impl<IO> Capped<IO> {
    /// `io` from `peer` in `slot` of `cap`.
    pub(crate) fn new(io: IO, slot: Slot, cap: Arc<ConnectionCap>, peer: SocketAddr) -> Self {
        let activity = Arc::new(Activity::new());
        cap.activity
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer, Arc::downgrade(&activity));
        let idle_timer = Box::pin(tokio::time::sleep(cap.max_idle));
        Self {
            io,
            _slot: slot,
            cap,
            peer,
            activity,
            idle_timer,
        }
    }

    /// Whether the connection has been idle too long; otherwise the timer is set to wake
    /// the reader when it may be.
    fn idle_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        while self.idle_timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let next = match self.activity.idle_until(self.cap.max_idle) {
                Some(at) if at <= now => {
                    debug!(peer = %self.peer, idle = ?self.cap.max_idle, "Closing a gRPC connection without an RPC for max_connection_idle.");
                    return true;
                }
                Some(at) => at,
                None => now + self.cap.max_idle,
            };
            self.idle_timer.as_mut().reset(next.into());
        }
        false
    }
}

impl<IO> Drop for Capped<IO> {
    fn drop(&mut self) {
        let mut map = self
            .cap
            .activity
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map
            .get(&self.peer)
            .is_some_and(|w| w.ptr_eq(&Arc::downgrade(&self.activity)))
        {
            map.remove(&self.peer);
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Capped<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.idle_too_long(cx) {
            // End of stream: nothing is in flight on this connection.
            return Poll::Ready(Ok(()));
        }
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

/// Counts every RPC of the gRPC port on its connection's [`Activity`] (by the peer address
/// tonic puts in the request), so an idle connection can be told from a busy one.
#[derive(Debug, Clone)]
pub(crate) struct RpcLayer(pub(crate) Arc<ConnectionCap>);

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcCount<S>;
    fn layer(&self, inner: S) -> RpcCount<S> {
        RpcCount {
            inner,
            cap: Arc::clone(&self.0),
        }
    }
}

/// See [`RpcLayer`].
#[derive(Debug, Clone)]
pub(crate) struct RpcCount<S> {
    inner: S,
    cap: Arc<ConnectionCap>,
}

/// The peer address tonic recorded for a request, with or without TLS.
fn peer_of<B>(req: &http::Request<B>) -> Option<SocketAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let ext = req.extensions();
    ext.get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
}

/// Whether an RPC of `path` may last as long as its client likes without the client doing
/// anything, and needs neither a client certificate nor a token: a health `Watch` (a
/// response whenever the status changes, so mostly none) or a reflection stream. Such an
/// RPC does not keep its connection open: counted, anybody who can reach the port could
/// hold every slot of the cap for good with silent watches, and the agents would wait at
/// it forever. Its connection is closed `max_idle` after its last other RPC, so a watcher
/// reconnects that often.
fn open_ended(path: &str) -> bool {
    path == "/grpc.health.v1.Health/Watch" || path.starts_with("/grpc.reflection.")
}

/// Whether the end of an RPC of `path` restarts its connection's idle time: not for a
/// health check, which needs no credentials either (anybody could otherwise hold a slot
/// for good with a check a minute). A check keeps its connection open while in flight
/// only, so the connection of a client that only checks is closed `max_idle` after it
/// opened (or after its last other RPC), between two checks. Nor does a refused RPC
/// ([`refused`]), for the same reason; an agent stream does once admitted
/// ([`Rpc::admitted`]).
fn renews_idle(path: &str) -> bool {
    !path.starts_with("/grpc.health.v1.Health/") && path != crate::api::codec::STREAM_PATH
}

/// Whether a response refuses its RPC at once: gRPC's trailers-only response, its error
/// status in the headers (a missing token, say).
fn refused<B>(response: &http::Response<B>) -> bool {
    response
        .headers()
        .get("grpc-status")
        .is_some_and(|status| status != "0")
}

impl<S, B> tower::Service<http::Request<B>> for RpcCount<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let mut rpc = (!open_ended(req.uri().path()))
            .then(|| peer_of(&req))
            .flatten()
            .and_then(|peer| self.cap.activity(peer))
            .map(|activity| Rpc::start(activity, renews_idle(req.uri().path())));
        if req.uri().path() == crate::api::codec::STREAM_PATH
            && let Some(rpc) = rpc.take()
        {
            req.extensions_mut()
                .insert(StreamRpc(Arc::new(Mutex::new(Some(rpc)))));
        }
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(match rpc {
                Some(mut rpc) => {
                    if refused(&response) {
                        rpc.renews = false;
                    }
                    response.map(|body| tonic::body::Body::new(Counted { body, _rpc: rpc }))
                }
                None => response,
            })
        })
    }
}

/// A response body that holds its [`Rpc`] until it ends or is dropped.
struct Counted {
    body: tonic::body::Body,
    _rpc: Rpc,
}

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// How long an accept loop of the gRPC port pauses after a failed accept (out of file
/// descriptors, say), instead of trying again at once.
pub(crate) const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Plaintext connections of `listener` within `cap`, as tonic's incoming stream: a
/// connection is accepted only once it has a slot. A failed accept is logged and tried
/// again after [`ACCEPT_ERROR_PAUSE`]; the stream never yields an error.
pub(crate) fn plaintext(
    listener: tokio::net::TcpListener,
    cap: Arc<ConnectionCap>,
) -> impl tokio_stream::Stream<Item = io::Result<Capped<tokio::net::TcpStream>>> {
    futures_util::stream::unfold((listener, cap), |(listener, cap)| async move {
        let mut permit = cap.slot().await;
        loop {
            let accepted = match listener.accept().await {
                Ok((tcp, peer)) => match cap.admit(permit, peer) {
                    Ok(slot) => {
                        // As the TLS listener ([`crate::api::tls`]): acks go out at once.
                        let _ = tcp.set_nodelay(true);
                        Ok(Capped::new(tcp, slot, Arc::clone(&cap), peer))
                    }
                    // Its source holds enough slots: closed (dropped) at once, and its
                    // slot goes to the next connection.
                    Err(back) => {
                        permit = back;
                        continue;
                    }
                },
                // As the TLS listener: logged and tried again after a pause, the slot
                // kept. Handed to tonic, it is only traced and the stream polled again at
                // once: a lasting error (EMFILE) spun a core.
                Err(e) => {
                    warn!(error = %Chain(&e), "Cannot accept a connection.");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            };
            return Some((accepted, (listener, cap)));
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    /// A storm reaches the cap again and again (each slot that frees is taken at once):
    /// one warning for it, and one line when a slot is free at once again.
    #[tokio::test]
    async fn a_cap_reached_again_and_again_warns_once() {
        let log = CapturedLog::start();
        let cap = Arc::new(test_cap(1, 64));
        let mut held = cap.slot().await;
        for _ in 0..5 {
            let next = tokio::spawn({
                let cap = Arc::clone(&cap);
                async move { cap.slot().await }
            });
            while !cap.waiting() {
                tokio::task::yield_now().await;
            }
            drop(held);
            held = next.await.unwrap();
        }
        drop(held);
        drop(cap.slot().await);
        let log = log.text();
        assert_eq!(log.matches("at its connection cap").count(), 1, "{log}");
        assert_eq!(
            log.matches("Below the gRPC port's connection cap again")
                .count(),
            1,
            "{log}"
        );
    }

    /// A TCP connection to `addr` from the loopback address `source` (127.x.y.z: each its
    /// own client to a per-source cap).
    pub(crate) async fn connect_from(source: &str, addr: SocketAddr) -> tokio::net::TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(source.parse().unwrap(), 0))
            .unwrap();
        socket.connect(addr).await.unwrap()
    }

    /// What is logged on this thread (a current-thread runtime's tasks too) while it
    /// lives.
    pub(crate) struct CapturedLog {
        lines: Arc<Mutex<Vec<u8>>>,
        _guard: tracing::subscriber::DefaultGuard,
    }

    impl CapturedLog {
        pub(crate) fn start() -> Self {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let writer = Arc::clone(&lines);
            let _guard = tracing::subscriber::set_default(
                tracing_subscriber::fmt()
                    .with_ansi(false)
                    .with_writer(move || LogWriter(Arc::clone(&writer)))
                    .finish(),
            );
            Self { lines, _guard }
        }

        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.lines.lock().unwrap().clone()).unwrap()
        }
    }

    struct LogWriter(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for LogWriter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn slots_are_taken_up_to_the_cap_and_a_wait_ends_when_a_connection_closes() {
        let cap = Arc::new(test_cap(2, 64));
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
        assert_eq!(test_cap(0, 0).max(), 1);
    }

    fn test_cap(max: usize, per_source: usize) -> ConnectionCap {
        ConnectionCap::new(max, per_source, Duration::from_secs(60), Counter::default())
    }

    /// One source address holds at most `per_source` slots, counted until its connections
    /// close; other sources are not affected, and an IPv4 client seen as an IPv4-mapped
    /// IPv6 address is the same source.
    #[tokio::test]
    async fn a_source_address_holds_at_most_its_share_of_the_slots() {
        let log = CapturedLog::start();
        let refused = Counter::default();
        let cap = ConnectionCap::new(8, 2, Duration::from_secs(60), refused.clone());
        let peer = |a: &str| -> SocketAddr { a.parse().unwrap() };
        let a1 = cap
            .admit(cap.slot().await, peer("10.0.0.1:1000"))
            .expect("first");
        let a2 = cap
            .admit(cap.slot().await, peer("[::ffff:10.0.0.1]:1001"))
            .expect("second, the same source");
        for port in [1002, 1003] {
            assert!(
                cap.admit(cap.slot().await, peer(&format!("10.0.0.1:{port}")))
                    .is_err(),
                "beyond the source's share"
            );
        }
        assert_eq!(refused.get(), 2);
        assert_eq!(cap.open(), 2, "a refused connection gives its slot back");
        let b = cap
            .admit(cap.slot().await, peer("10.0.0.2:1000"))
            .expect("another source");
        drop(a1);
        let a3 = cap
            .admit(cap.slot().await, peer("10.0.0.1:1004"))
            .expect("a slot of the source came free");
        assert_eq!(cap.open(), 3);
        drop((a2, a3, b));
        assert_eq!(cap.open(), 0);
        assert!(
            cap.sources.lock().unwrap().is_empty(),
            "no source left counted"
        );
        let log = log.text();
        assert_eq!(
            log.matches("max_connections_per_source").count(),
            1,
            "one warning while the source stays at its share: {log}"
        );
    }

    /// A connection refused for its source while the port is at its cap hands its slot on
    /// to the next connection waiting to be accepted: the port never left its cap, so no
    /// "below the cap again" line and no second warning. Before, the refused connection
    /// gave its slot back and the listener took it again "at once": a client at its share
    /// that kept connecting while agents waited at the cap made the port log a warning and
    /// an info line for every connection it opened.
    #[tokio::test]
    async fn a_connection_refused_at_the_cap_passes_its_slot_on_without_a_log_line() {
        use tokio_stream::StreamExt;
        let log = CapturedLog::start();
        let refused = Counter::default();
        let cap = Arc::new(ConnectionCap::new(
            2,
            1,
            Duration::from_secs(60),
            refused.clone(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = Box::pin(plaintext(listener, Arc::clone(&cap)));
        let _a = connect_from("127.0.0.1", addr).await;
        let held_a = incoming.next().await.unwrap().unwrap();
        let _b = connect_from("127.0.0.2", addr).await;
        let held_b = incoming.next().await.unwrap().unwrap();
        // At the cap; the source 127.0.0.1 holds its share. Its next connection and one
        // from elsewhere wait in the accept queue, in that order.
        let _refused = connect_from("127.0.0.1", addr).await;
        let _admitted = connect_from("127.0.0.3", addr).await;
        let next = tokio::spawn(async move {
            let c = incoming.next().await;
            (incoming, c)
        });
        while !cap.waiting() {
            tokio::task::yield_now().await;
        }
        drop(held_b);
        let (mut incoming, c) = next.await.unwrap();
        let held_c = c.unwrap().unwrap();
        assert_eq!(held_c.peer.ip(), "127.0.0.3".parse::<IpAddr>().unwrap());
        assert_eq!(refused.get(), 1);
        assert_eq!(cap.open(), 2);
        // Waiting for a slot again: still the same stay at the cap.
        let next = tokio::spawn(async move { incoming.next().await.map(|c| c.is_ok()) });
        while !cap.waiting() {
            tokio::task::yield_now().await;
        }
        next.abort();
        drop((held_a, held_c));
        let log = log.text();
        assert_eq!(log.matches("at its connection cap").count(), 1, "{log}");
        assert_eq!(log.matches("connection cap again").count(), 0, "{log}");
    }

    /// An accept that fails (out of file descriptors under a flood, say) is logged and
    /// tried again after a pause, the slot kept: not handed to tonic, which only traces
    /// it and polls again at once, so a lasting error (EMFILE until a descriptor frees)
    /// spun a core in a silent loop of failed accepts.
    #[tokio::test]
    async fn a_failed_accept_is_logged_and_retried_after_a_pause_not_handed_on() {
        use std::io::Write;
        use tokio_stream::StreamExt;
        let log = CapturedLog::start();
        // A "listener" whose every accept fails (EINVAL): a connected socket, readable.
        let real = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(real.local_addr().unwrap()).unwrap();
        let (conn, _) = real.accept().unwrap();
        client.write_all(b"x").unwrap();
        conn.set_nonblocking(true).unwrap();
        let failing = tokio::net::TcpListener::from_std(std::net::TcpListener::from(
            std::os::fd::OwnedFd::from(conn),
        ))
        .unwrap();
        let cap = Arc::new(test_cap(2, 64));
        let mut incoming = Box::pin(plaintext(failing, Arc::clone(&cap)));
        let next = tokio::time::timeout(Duration::from_millis(300), incoming.next()).await;
        assert!(
            next.is_err(),
            "an accept error was handed on: {:?}",
            next.map(|c| c.map(|c| c.map(|_| ())))
        );
        assert_eq!(cap.open(), 1, "the slot is kept while accepts fail");
        let log = log.text();
        assert!(log.contains("Cannot accept a connection"), "{log}");
    }
}
