//! The agent's side of `ReportIngest.Stream`: collect on a jittered interval, keep
//! unacked reports in a bounded buffer, (re)connect with exponential backoff and jitter,
//! resend what was not acked, and flush on shutdown.
//!
//! The aggregator acks `(epoch, seq)` once a report is stored; acks arrive in order, so an
//! ack removes every buffered report up to that sequence. After a reconnect everything
//! still buffered is sent again; the aggregator recognises what it already stored and
//! acks it as a duplicate.
//!
//! The agent holds a connection only while it has something to deliver: once everything
//! is acked and the stream has been quiet for `idle_timeout`, it closes the connection,
//! and the next report opens a new one. An open connection costs the aggregator tens of
//! KiB, so its memory does not grow with idle agents. The aggregator may also end a
//! stream with status OK (to make way for other agents, or when it stops): that is no
//! failure either; the agent reconnects at once if reports are waiting.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use caretaker_core::error::Chain;
use caretaker_core::jitter::jittered;
use caretaker_proto::pb::{
    self, agent_message, aggregator_message, report_ingest_client::ReportIngestClient,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use crate::collector::{BufferStats, Collector};
use crate::config::{AggregatorConfig, ClientTlsConfig, Transport};

/// What a run of the stream did; returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamSummary {
    pub collected: u64,
    pub acked: u64,
    pub duplicates_acked: u64,
    pub rejected: u64,
    pub connections: u64,
    /// Reports still unacked when the agent stopped.
    pub unacked_at_exit: u64,
}

/// The bounded buffer of reports waiting for an ack.
#[derive(Debug)]
struct Buffer {
    reports: VecDeque<pb::NodeReport>,
    capacity: usize,
    stats: Arc<BufferStats>,
}

impl Buffer {
    fn new(capacity: usize, stats: Arc<BufferStats>) -> Self {
        Self {
            reports: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
            stats,
        }
    }

    fn push(&mut self, r: pb::NodeReport) {
        if self.reports.len() >= self.capacity
            && let Some(old) = self.reports.pop_front()
        {
            warn!(
                seq = old.seq,
                capacity = self.capacity,
                "Report buffer is full; dropped the oldest unacked report."
            );
            self.stats.dropped_total.fetch_add(1, Ordering::Relaxed);
        }
        self.reports.push_back(r);
        self.publish();
    }

    /// Removes every report of `epoch` up to `seq`; returns how many.
    fn ack(&mut self, epoch: u64, seq: u64) -> usize {
        let mut n = 0;
        while self
            .reports
            .front()
            .is_some_and(|r| r.epoch == epoch && r.seq <= seq)
        {
            self.reports.pop_front();
            n += 1;
        }
        self.publish();
        n
    }

    fn publish(&self) {
        self.stats
            .buffered
            .store(self.reports.len() as u64, Ordering::Relaxed);
    }
}

/// One live stream.
struct Connection {
    tx: mpsc::Sender<pb::AgentMessage>,
    inbound: Streaming<pb::AggregatorMessage>,
    /// An ack arrived on this stream. A stream the aggregator ends with OK after acking
    /// something is reopened at once; one that acked nothing backs off, so a server that
    /// ends every stream straight away cannot cause a tight reconnect loop.
    acked: bool,
}

impl Connection {
    /// False when the stream is gone (the receiver side closed) or cannot take more.
    fn send(&self, r: pb::NodeReport) -> bool {
        self.tx
            .try_send(pb::AgentMessage {
                msg: Some(agent_message::Msg::Report(r)),
            })
            .is_ok()
    }
}

/// Why a connection to the aggregator could not be opened; logged with its causes
/// ([`Chain`]): TLS failures say what was wrong only deep down.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    #[error("cannot read TLS file {}", path.display())]
    ReadTls {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid endpoint {endpoint}")]
    Endpoint {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("TLS config")]
    Tls(#[source] tonic::transport::Error),
    #[error("connect to {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("connect or open stream to {endpoint}: no answer within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    /// `status` as [`status_text`] prints it (its causes included).
    #[error("open stream to {endpoint}: {}", status_text(status))]
    Open {
        endpoint: String,
        status: Box<tonic::Status>,
    },
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// A gRPC status as a sentence: the server's message, or for a transport failure (which
/// has a source) the whole chain, where TLS alerts and connection errors are.
fn status_text(s: &tonic::Status) -> String {
    use std::error::Error;
    let text = if s.source().is_some() {
        Chain(s).to_string()
    } else {
        s.message().to_string()
    };
    format!("{text} ({:?})", s.code())
}

/// Reads the TLS files now, so that renewed certificates are used from the next
/// connection on.
async fn client_tls(t: &ClientTlsConfig) -> Result<tonic::transport::ClientTlsConfig> {
    let read = |path: std::path::PathBuf| async move {
        tokio::fs::read(&path)
            .await
            .map_err(|source| Error::ReadTls { path, source })
    };
    let (ca, cert, key) = (
        read(t.ca_file.clone()).await?,
        read(t.cert_file.clone()).await?,
        read(t.key_file.clone()).await?,
    );
    Ok(tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .identity(tonic::transport::Identity::from_pem(cert, key)))
}

async fn connect(cfg: &AggregatorConfig) -> Result<(Channel, Connection)> {
    let mut endpoint = Endpoint::from_shared(cfg.endpoint.clone())
        .map_err(|source| Error::Endpoint {
            endpoint: cfg.endpoint.clone(),
            source,
        })?
        .connect_timeout(cfg.connect_timeout.get())
        .timeout(Duration::from_secs(3600 * 24 * 365))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if let Transport::Tls(t) = cfg.transport()? {
        endpoint = endpoint
            .tls_config(client_tls(t).await?)
            .map_err(Error::Tls)?;
    }
    // `connect_timeout` bounds the TCP connect; an aggregator at its connection cap lets a
    // connection wait to be accepted, up to ACCEPT_WAIT more. Over TLS the wait is in the
    // handshake (in `connect`); in plaintext the kernel completes the TCP connect and the
    // wait is in opening the stream: one deadline for both.
    let attempt = cfg.connect_timeout.get() + ACCEPT_WAIT;
    let deadline = tokio::time::Instant::now() + attempt;
    let timed_out = |_| Error::Timeout {
        endpoint: cfg.endpoint.clone(),
        timeout: attempt,
    };
    let channel = tokio::time::timeout_at(deadline, endpoint.connect())
        .await
        .map_err(timed_out)?
        .map_err(|source| Error::Connect {
            endpoint: cfg.endpoint.clone(),
            source,
        })?;
    // Enough room for the whole buffer plus new reports: sending never waits.
    let (tx, rx) = mpsc::channel(cfg.buffer_reports.get().saturating_add(16));
    let mut client = ReportIngestClient::new(channel.clone());
    let opened = tokio::time::timeout_at(deadline, client.stream(ReceiverStream::new(rx)))
        .await
        .map_err(timed_out)?
        .map_err(|status| Error::Open {
            endpoint: cfg.endpoint.clone(),
            status: Box::new(status),
        })?;
    Ok((
        channel,
        Connection {
            tx,
            inbound: opened.into_inner(),
            acked: false,
        },
    ))
}

/// How long a connection may wait to be accepted beyond `connect_timeout`: an aggregator at
/// its connection cap (`ingest.max_connections`) holds new connections in its accept queue,
/// first come first served, until a slot comes free. Without a bound, a connection the
/// aggregator's kernel dropped from that queue would wait for TCP's retransmissions to give
/// up (about 15 minutes).
const ACCEPT_WAIT: Duration = Duration::from_secs(30);

/// Longest wait a `grpc-retry-pushback-ms` trailer is obeyed for (a broken aggregator
/// cannot park the agent longer).
const MAX_PUSHBACK: Duration = Duration::from_secs(300);

/// The wait the aggregator asked for when it ended the stream (gRPC's
/// `grpc-retry-pushback-ms` trailer), at most [`MAX_PUSHBACK`].
pub async fn retry_pushback(inbound: &mut Streaming<pb::AggregatorMessage>) -> Option<Duration> {
    let trailers = inbound.trailers().await.ok().flatten()?;
    let ms: u64 = trailers
        .get(pb::RETRY_PUSHBACK_TRAILER)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_millis(ms).min(MAX_PUSHBACK))
}

/// The delays between connection attempts: from 200 ms, doubling up to 30 s, each with a
/// random jitter of up to as much again (so 30–60 s at the ceiling), which spreads a
/// fleet's reconnects after an outage of the aggregator over the ceiling's window.
pub fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(30))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The next delay of a [`backoff`] (which never ends; 30 s should it).
pub fn next_delay(delays: &mut impl Iterator<Item = Duration>) -> Duration {
    delays.next().unwrap_or(Duration::from_secs(30))
}

/// Where an agent that lost the aggregator `outage` ago stands in its [`backoff`]: how long
/// until its next attempt, and the delays after it. While the aggregator is down every
/// attempt fails (at once, when nothing listens) and no ack resets the backoff, so after a
/// long outage the agent is at the ceiling and, if its first attempt after the outage
/// fails too, waits 30 to 60 s more, not 200 ms. What bench-ingest's storm starts from.
pub fn backoff_after(outage: Duration) -> (Duration, impl Iterator<Item = Duration>) {
    let mut delays = backoff();
    let mut t = Duration::ZERO;
    loop {
        t += next_delay(&mut delays);
        if t >= outage {
            return (t - outage, delays);
        }
    }
}

/// Runs until `shutdown` is cancelled: collects, sends, reconnects. On shutdown, waits up
/// to `flush_timeout` for acks of what is buffered.
pub(crate) async fn run(
    mut collector: Collector,
    cfg: AggregatorConfig,
    report_interval: Duration,
    buffer_stats: Arc<BufferStats>,
    shutdown: CancellationToken,
) -> StreamSummary {
    let mut summary = StreamSummary::default();
    let mut buffer = Buffer::new(cfg.buffer_reports.get(), buffer_stats);
    let mut conn: Option<(Channel, Connection)> = None;
    let mut delays = backoff();
    let mut next_collect = Instant::now();
    let mut next_connect = Instant::now();
    // The last report sent or message received on the open stream.
    let mut last_activity = Instant::now();
    let idle_timeout = cfg.idle_timeout.get();

    loop {
        // A connection is opened when there is something to deliver, or always when the
        // idle timeout is off (the connection is then held as long as possible).
        let wants_connection = !buffer.reports.is_empty() || idle_timeout.is_zero();
        let idle = conn.is_some() && buffer.reports.is_empty() && !idle_timeout.is_zero();
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            msg = async { conn.as_mut().expect("guarded").1.inbound.message().await }, if conn.is_some() => {
                match msg {
                    Ok(Some(m)) => {
                        last_activity = Instant::now();
                        match m.msg {
                            Some(aggregator_message::Msg::Ack(a)) => {
                                handle_ack(&mut buffer, &mut summary, &a);
                                if let Some((_, c)) = &mut conn {
                                    c.acked = true;
                                }
                                // Reset by an ack, not by a connection: streams that end
                                // before any ack back off further each time.
                                delays = backoff();
                            }
                            Some(aggregator_message::Msg::Command(c)) if c.kind() == pb::command::Kind::CollectNow => {
                                info!("Aggregator asked for a report now.");
                                next_collect = Instant::now();
                            }
                            Some(aggregator_message::Msg::Command(_)) | None => {}
                        }
                    }
                    Ok(None) => {
                        // Status OK: the aggregator makes way for other agents (and may say
                        // how long to wait) or stops. With nothing buffered, the next report
                        // reconnects.
                        let (acked, pushback) = match conn.take() {
                            Some((_, mut c)) => (c.acked, retry_pushback(&mut c.inbound).await),
                            None => (false, None),
                        };
                        let wait = match pushback {
                            Some(wait) if acked => wait,
                            None if acked => Duration::ZERO,
                            // Nothing acked: at least the backoff, so that a server ending
                            // every stream at once (with a pushback of 0, say) cannot cause a
                            // tight reconnect loop.
                            pushback => pushback.unwrap_or_default().max(
                                next_delay(&mut delays),
                            ),
                        };
                        info!(buffered = buffer.reports.len(), retry_in = ?wait, "The aggregator ended the stream; reconnecting.");
                        next_connect = Instant::now() + wait;
                    }
                    Err(s) => {
                        warn!(reason = %status_text(&s), buffered = buffer.reports.len(), "Report stream ended; reconnecting.");
                        conn = None;
                        next_connect = Instant::now() + next_delay(&mut delays);
                    }
                }
            }
            () = sleep_until(next_collect) => {
                let report = collector.collect().await;
                summary.collected += 1;
                debug!(seq = report.seq, filesystems = report.filesystems.len(), interfaces = report.network.len(), "Collected a report.");
                let wire = pb::NodeReport::from(report);
                buffer.push(wire.clone());
                if let Some((_, c)) = &conn {
                    if c.send(wire) {
                        last_activity = Instant::now();
                    } else {
                        warn!("Report stream is gone; reconnecting.");
                        conn = None;
                        next_connect = Instant::now();
                    }
                }
                next_collect = Instant::now() + jittered(report_interval);
            }
            () = sleep_until(next_connect), if conn.is_none() && wants_connection => {
                // At an aggregator's connection cap an attempt may wait long to be accepted
                // (connect_timeout + ACCEPT_WAIT): a shutdown does not wait for it.
                let connected = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break,
                    c = connect(&cfg) => c,
                };
                match connected {
                    Ok((channel, c)) => {
                        summary.connections += 1;
                        let resend = buffer.reports.len();
                        let ok = buffer.reports.iter().all(|r| c.send(r.clone()));
                        info!(endpoint = %cfg.endpoint, resent = resend, "Connected to the aggregator.");
                        if ok {
                            conn = Some((channel, c));
                            last_activity = Instant::now();
                        } else {
                            next_connect = Instant::now() + next_delay(&mut delays);
                        }
                    }
                    Err(e) => {
                        let wait = next_delay(&mut delays);
                        warn!(error = %Chain(&e), retry_in = ?wait, buffered = buffer.reports.len(), "Cannot reach the aggregator.");
                        next_connect = Instant::now() + wait;
                    }
                }
            }
            () = sleep_until(last_activity + idle_timeout), if idle => {
                debug!(idle_timeout = ?idle_timeout, "Every report is acked; closing the connection until the next report.");
                if let Some((channel, c)) = conn.take() {
                    // The request side half-closes, then the TCP connection closes.
                    drop(c.tx);
                    drop(c.inbound);
                    drop(channel);
                }
                next_connect = Instant::now();
            }
        }
    }

    // Flush: give buffered reports a last chance to be acked.
    if let Some((_, mut c)) = conn.take()
        && !buffer.reports.is_empty()
        && !cfg.flush_timeout.is_zero()
    {
        let deadline = Instant::now() + cfg.flush_timeout.get();
        while !buffer.reports.is_empty() {
            match tokio::time::timeout_at(deadline, c.inbound.message()).await {
                Ok(Ok(Some(pb::AggregatorMessage {
                    msg: Some(aggregator_message::Msg::Ack(a)),
                }))) => {
                    handle_ack(&mut buffer, &mut summary, &a);
                }
                Ok(Ok(Some(_))) => {}
                _ => break,
            }
        }
    }
    summary.unacked_at_exit = buffer.reports.len() as u64;
    info!(
        collected = summary.collected,
        acked = summary.acked,
        unacked = summary.unacked_at_exit,
        "Report stream stopped."
    );
    summary
}

fn handle_ack(buffer: &mut Buffer, summary: &mut StreamSummary, a: &pb::Ack) {
    let n = buffer.ack(a.epoch, a.seq) as u64;
    if !a.rejected.is_empty() {
        summary.rejected += n;
        warn!(seq = a.seq, reason = %a.rejected, "The aggregator rejected a report; it is dropped.");
    } else {
        buffer.stats.acked_total.fetch_add(n, Ordering::Relaxed);
        if a.duplicate {
            summary.duplicates_acked += n;
        } else {
            summary.acked += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(epoch: u64, seq: u64) -> pb::NodeReport {
        pb::NodeReport {
            node_name: "n".into(),
            epoch,
            seq,
            ..Default::default()
        }
    }

    #[test]
    fn buffer_drops_oldest_when_full_and_acks_in_order() {
        let stats = Arc::new(BufferStats::default());
        let mut b = Buffer::new(3, Arc::clone(&stats));
        for s in 1..=5 {
            b.push(report(9, s));
        }
        assert_eq!(
            b.reports.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(stats.dropped_total.load(Ordering::Relaxed), 2);
        assert_eq!(b.ack(9, 4), 2);
        assert_eq!(b.reports.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![5]);
        // An ack of another epoch or an old sequence removes nothing.
        assert_eq!(b.ack(8, 10), 0);
        assert_eq!(b.ack(9, 4), 0);
        assert_eq!(stats.buffered.load(Ordering::Relaxed), 1);
    }

    /// A fake aggregator: on each stream it acks (and stores) the first `per_stream`
    /// reports, then ends the stream with status OK without acking what else arrived.
    #[derive(Clone, Default)]
    struct EndsStreams {
        per_stream: usize,
        /// Sequence -> times it arrived and was acked (a second time as a duplicate).
        stored: Arc<std::sync::Mutex<std::collections::BTreeMap<u64, u32>>>,
        streams: Arc<std::sync::atomic::AtomicU64>,
        /// Ends each stream with this `grpc-retry-pushback-ms` trailer, as the aggregator
        /// does when a stream makes way.
        pushback_ms: Option<u64>,
    }

    #[tonic::async_trait]
    impl pb::report_ingest_server::ReportIngest for EndsStreams {
        type StreamStream = ReceiverStream<Result<pb::AggregatorMessage, tonic::Status>>;

        async fn stream(
            &self,
            request: tonic::Request<Streaming<pb::AgentMessage>>,
        ) -> Result<tonic::Response<Self::StreamStream>, tonic::Status> {
            self.streams.fetch_add(1, Ordering::Relaxed);
            let mut inbound = request.into_inner();
            let (tx, rx) = mpsc::channel(16);
            let this = self.clone();
            tokio::spawn(async move {
                for _ in 0..this.per_stream {
                    let Ok(Some(pb::AgentMessage {
                        msg: Some(agent_message::Msg::Report(r)),
                    })) = inbound.message().await
                    else {
                        return;
                    };
                    let duplicate = {
                        let mut stored = this.stored.lock().unwrap();
                        let n = stored.entry(r.seq).or_insert(0);
                        *n += 1;
                        *n > 1
                    };
                    let ack = pb::Ack {
                        node_name: r.node_name,
                        epoch: r.epoch,
                        seq: r.seq,
                        duplicate,
                        ..Default::default()
                    };
                    let msg = pb::AggregatorMessage {
                        msg: Some(aggregator_message::Msg::Ack(ack)),
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                }
                if let Some(ms) = this.pushback_ms {
                    let mut trailers = tonic::metadata::MetadataMap::new();
                    trailers.insert(pb::RETRY_PUSHBACK_TRAILER, ms.into());
                    let end = tonic::Status::with_metadata(tonic::Code::Ok, "make way", trailers);
                    let _ = tx.send(Err(end)).await;
                }
                // Dropping `tx` ends the response with status OK.
            });
            Ok(tonic::Response::new(ReceiverStream::new(rx)))
        }
    }

    /// Runs an agent against `server` until it has stored `reports` (or for `run_for`
    /// when `reports` is 0); returns the agent's summary and its log.
    async fn run_against(
        server: EndsStreams,
        reports: usize,
        run_for: Duration,
    ) -> (StreamSummary, String) {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = Arc::clone(&log);
        // A current-thread runtime: the agent's tasks run on this thread and log here.
        let _guard = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_ansi(false)
                .with_writer(move || LogWriter(Arc::clone(&writer)))
                .finish(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stored = Arc::clone(&server.stored);
        let stop_server = CancellationToken::new();
        let serve = tonic::transport::Server::builder()
            .add_service(pb::report_ingest_server::ReportIngestServer::new(server))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                stop_server.clone().cancelled_owned(),
            );
        let serve = tokio::spawn(serve);

        let (agent, shutdown) = spawn_agent(url);
        let deadline = Instant::now() + Duration::from_secs(30);
        if reports == 0 {
            tokio::time::sleep(run_for).await;
        } else {
            while stored.lock().unwrap().len() < reports {
                assert!(Instant::now() < deadline, "{:?}", stored.lock().unwrap());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        shutdown.cancel();
        let summary = agent.await.unwrap();
        stop_server.cancel();
        serve.await.unwrap().unwrap();
        let log = String::from_utf8(log.lock().unwrap().clone()).unwrap();
        (summary, log)
    }

    /// An agent of node `n` reporting every 100 ms to the plaintext aggregator at `url`;
    /// it runs until the token is cancelled.
    fn spawn_agent(url: String) -> (tokio::task::JoinHandle<StreamSummary>, CancellationToken) {
        let cfg = crate::config::AgentConfig {
            node_name: Some("n".into()),
            ..Default::default()
        };
        let stats = Arc::new(BufferStats::default());
        let settings = crate::collector_settings(&cfg, crate::paths::HostPaths::default()).unwrap();
        let collector = Collector::new(settings, Arc::clone(&stats));
        let shutdown = CancellationToken::new();
        let agent = tokio::spawn(run(
            collector,
            AggregatorConfig::plaintext(url),
            Duration::from_millis(100),
            stats,
            shutdown.clone(),
        ));
        (agent, shutdown)
    }

    /// Checks that the fake server got reports 1 to the last with no gap and none twice;
    /// returns the last.
    fn stored_once(stored: &std::sync::Mutex<std::collections::BTreeMap<u64, u32>>) -> u64 {
        let stored = stored.lock().unwrap().clone();
        let last = *stored.keys().last().unwrap();
        assert_eq!(
            stored.keys().copied().collect::<Vec<_>>(),
            (1..=last).collect::<Vec<_>>()
        );
        assert!(stored.values().all(|n| *n == 1), "{stored:?}");
        last
    }

    struct LogWriter(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for LogWriter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The aggregator ends streams with OK to make way for other agents: the agent
    /// reconnects at once (no backoff, no warning), resends what is unacked, and every
    /// report ends up stored exactly once.
    #[tokio::test]
    async fn a_stream_ended_with_ok_is_reopened_at_once_and_loses_nothing() {
        let server = EndsStreams {
            per_stream: 2,
            ..Default::default()
        };
        let stored = Arc::clone(&server.stored);
        let streams = Arc::clone(&server.streams);
        let (summary, log) = run_against(server, 12, Duration::ZERO).await;

        let last = stored_once(&stored);
        assert_eq!(
            (summary.acked, summary.duplicates_acked, summary.rejected),
            (last, 0, 0),
            "{summary:?}"
        );
        assert_eq!(
            summary.collected,
            summary.acked + summary.unacked_at_exit,
            "{summary:?}"
        );
        // Two acks per stream: a new stream for every two reports.
        assert!(summary.connections >= last / 2, "{summary:?}");
        assert_eq!(streams.load(Ordering::Relaxed), summary.connections);
        let ended: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("The aggregator ended the stream; reconnecting."))
            .collect();
        assert!(ended.len() >= 5, "{log}");
        assert!(
            ended
                .iter()
                .all(|l| l.contains(" INFO ") && l.contains("retry_in=0ns")),
            "{log}"
        );
        assert!(!log.contains("Report stream ended"), "{log}");
    }

    /// A stream that makes way with a `grpc-retry-pushback-ms` trailer: the agent waits
    /// that long, then resends what is unacked; nothing is lost or stored twice.
    #[tokio::test]
    async fn a_stream_ended_with_a_retry_pushback_reconnects_after_it() {
        let server = EndsStreams {
            per_stream: 2,
            pushback_ms: Some(150),
            ..Default::default()
        };
        let stored = Arc::clone(&server.stored);
        let (summary, log) = run_against(server, 6, Duration::ZERO).await;
        let last = stored_once(&stored);
        assert_eq!(summary.acked, last, "{summary:?}");
        let ended: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("The aggregator ended the stream; reconnecting."))
            .collect();
        assert!(ended.len() >= 2, "{log}");
        assert!(ended.iter().all(|l| l.contains("retry_in=150ms")), "{log}");
    }

    /// A server that ends every stream with OK before acking anything gets the backoff,
    /// not an immediate reconnect: no tight loop.
    #[tokio::test]
    async fn a_stream_ended_with_ok_before_any_ack_backs_off() {
        let (summary, log) = run_against(EndsStreams::default(), 0, Duration::from_secs(1)).await;
        assert_eq!(
            (summary.acked, summary.unacked_at_exit),
            (0, summary.collected)
        );
        let ended: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("The aggregator ended the stream; reconnecting."))
            .collect();
        assert!(!ended.is_empty(), "{log}");
        assert!(ended.iter().all(|l| !l.contains("retry_in=0ns")), "{log}");
    }

    /// A server that ends every stream before acking anything gets a growing backoff (the
    /// connection itself succeeds each time), not one reconnect every few hundred ms.
    #[tokio::test]
    async fn the_backoff_grows_while_streams_end_before_any_ack() {
        let server = EndsStreams::default();
        let streams = Arc::clone(&server.streams);
        let (summary, _) = run_against(server, 0, Duration::from_secs(3)).await;
        assert_eq!(summary.acked, 0);
        // 0.2-0.4 s, 0.4-0.8 s, 0.8-1.6 s, 1.6-3.2 s: at most five streams in three seconds.
        assert!(
            streams.load(Ordering::Relaxed) <= 6,
            "{} streams in 3 s: {summary:?}",
            streams.load(Ordering::Relaxed)
        );
    }

    /// A server that ends every stream with OK and a `grpc-retry-pushback-ms` of 0 before
    /// acking anything gets the backoff too, not a tight reconnect loop.
    #[tokio::test]
    async fn a_zero_pushback_before_any_ack_backs_off() {
        let server = EndsStreams {
            pushback_ms: Some(0),
            ..Default::default()
        };
        let streams = Arc::clone(&server.streams);
        let (summary, log) = run_against(server, 0, Duration::from_secs(1)).await;
        assert_eq!(summary.acked, 0);
        assert!(summary.connections >= 1, "{summary:?}");
        assert!(
            streams.load(Ordering::Relaxed) <= 8,
            "{} streams in a second: {summary:?}",
            streams.load(Ordering::Relaxed)
        );
        assert!(!log.contains("retry_in=0ns"), "{log}");
    }

    /// An aggregator at its connection cap lets a connection wait to be accepted (up to
    /// `connect_timeout` plus [`ACCEPT_WAIT`]): the agent stops at once on shutdown all
    /// the same.
    #[tokio::test]
    async fn shutdown_does_not_wait_for_a_connection_waiting_to_be_accepted() {
        // A listener that never accepts: connections wait in its accept queue.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (agent, shutdown) = spawn_agent(url);
        tokio::time::sleep(Duration::from_millis(500)).await;
        shutdown.cancel();
        let summary = tokio::time::timeout(Duration::from_secs(2), agent)
            .await
            .expect("the agent stopped at once")
            .unwrap();
        assert_eq!(summary.connections, 0, "{summary:?}");
        assert!(summary.unacked_at_exit >= 1, "{summary:?}");
        drop(listener);
    }

    /// In plaintext, a connection waiting to be accepted at the aggregator's cap waits in
    /// opening its stream (the kernel completed the TCP connect): up to `connect_timeout` +
    /// [`ACCEPT_WAIT`], as over TLS, where it waits in the handshake. It gave up after
    /// `connect_timeout` (5 s) and, after an outage, backed off 30-60 s: in a reconnect
    /// storm most plaintext agents waited a minute for nothing.
    #[tokio::test]
    async fn in_plaintext_a_connection_waiting_to_be_accepted_opens_its_stream() {
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std.set_nonblocking(true).unwrap();
        let url = format!("http://{}", std.local_addr().unwrap());
        let server = EndsStreams {
            per_stream: 1,
            ..EndsStreams::default()
        };
        // Accepted only after three connect_timeouts.
        let mut cfg = AggregatorConfig::plaintext(url);
        cfg.connect_timeout = caretaker_core::config::BoundedDuration::millis(300);
        let serve = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(900)).await;
            let listener = tokio::net::TcpListener::from_std(std).unwrap();
            tonic::transport::Server::builder()
                .add_service(pb::report_ingest_server::ReportIngestServer::new(server))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        });
        let connected = connect(&cfg).await;
        assert!(
            connected.is_ok(),
            "{:?}",
            connected.err().map(|e| e.to_string())
        );
        serve.abort();
    }

    /// Each agent draws its own jitter: with one seed for all (backon without its "std"
    /// feature), 5,000 agents that lost the aggregator together retried in the same
    /// instants for as long as it was down, and all came back at once.
    #[test]
    fn each_backoff_draws_its_own_jitter() {
        let a: Vec<Duration> = backoff().take(10).collect();
        let b: Vec<Duration> = backoff().take(10).collect();
        assert_ne!(a, b);
    }

    /// After an outage of an hour the agent's backoff is at its ceiling: its next attempt
    /// comes within 60 s, and every delay after it is 30 to 60 s, as the agent's own
    /// (bench-ingest's storm agents start from here, not from a fresh 200 ms backoff).
    #[test]
    fn after_a_long_outage_the_backoff_goes_on_at_its_ceiling() {
        let (next, rest) = backoff_after(Duration::from_secs(3600));
        assert!(next <= Duration::from_secs(60), "{next:?}");
        let rest: Vec<Duration> = rest.take(5).collect();
        assert!(
            rest.iter()
                .all(|d| *d >= Duration::from_secs(30) && *d <= Duration::from_secs(60)),
            "{rest:?}"
        );
        // No outage: the first delay, then the rest of a fresh backoff.
        let (next, mut rest) = backoff_after(Duration::ZERO);
        assert!(
            next >= Duration::from_millis(200) && next <= Duration::from_millis(400),
            "{next:?}"
        );
        let second = rest.next().unwrap();
        assert!(
            second >= Duration::from_millis(400) && second <= Duration::from_millis(800),
            "{second:?}"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let d: Vec<Duration> = backoff().take(12).collect();
        assert!(
            d[0] >= Duration::from_millis(200) && d[0] <= Duration::from_millis(400),
            "{d:?}"
        );
        assert!(d[4] >= Duration::from_millis(3200), "{d:?}");
        assert!(d.iter().all(|x| *x <= Duration::from_secs(60)), "{d:?}");
    }
}
