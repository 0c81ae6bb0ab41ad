//! `ReportIngest.Stream`: one stream per agent while it has reports to deliver.
//!
//! Each report is validated (a wire message that is not a valid report is acked with a
//! `rejected` reason so the agent drops it instead of resending it forever) on the
//! stream's task, then handed to the group committer ([`crate::api::commit`]), which
//! stores the reports of all streams in batches, one durable commit each; a report is
//! acked only after the commit that holds it. A stream has up to [`PIPELINE`] reports
//! waiting for their commit; acks are sent in the order the reports arrived. A report whose epoch is beyond the aggregator's clock
//! plus [`crate::store::EPOCH_SKEW_ALLOWANCE`] is rejected the same way (the agent logs the
//! reason): stored, it would make every later report of the node look like an older run.
//!
//! With mutual TLS ([`IdentityPolicy::Certificate`]) a stream needs a client certificate,
//! and every report must be for the node that certificate names ([`crate::api::tls`]); a
//! report for another node ends the stream with `PERMISSION_DENIED`, nothing stored.
//!
//! Each node may send `reports_per_minute` reports (bursts up to that many), counted over
//! all its streams (keyed by the node its certificate names, or the report's node name in
//! plaintext), so parallel streams as one node do not multiply the rate; beyond it the
//! service stops reading the stream until the rate allows, so HTTP/2 flow control holds a
//! misbehaving agent back.
//!
//! Memory is bounded where reports arrive ([`IngestLimits`]): every report read from a
//! stream holds its encoded size from a global budget of in-flight bytes
//! ([`IngestLimits::in_flight_bytes`]) until it is acked (or refused), over the rate-limit
//! wait, the commit queue and the commit. A report that finds the budget spent waits for
//! room (its stream is not read meanwhile: back-pressure through HTTP/2 flow control) up to
//! [`IngestLimits::budget_wait`], then the stream ends with `RESOURCE_EXHAUSTED` and the
//! agent resends later. A node identity (the certificate's node, or in plaintext the
//! report's node) may hold [`IngestLimits::streams_per_node`] streams at once; one more
//! ends with `RESOURCE_EXHAUSTED`. So beyond the budget the aggregator holds at most one
//! message ([`crate::api::server::MAX_MESSAGE_BYTES`]) per stream waiting for room.

use caretaker_core::error::Chain;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use caretaker_core::model::NodeReport;
use caretaker_proto::pb::{
    self, agent_message, aggregator_message, report_ingest_server::ReportIngest,
};
use jiff::Timestamp;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::api::commit::{CommitLimits, CommitResult, CommitTask, Committer};
use crate::api::connections::{ConnectionCap, Rpc, StreamRpc};
use crate::api::tls::PeerIdentity;
use crate::state::State;
use crate::store::Outcome;

/// Rate limiter shared by all streams, one bucket per node.
type NodeLimiter = governor::RateLimiter<
    String,
    governor::state::keyed::HashMapStateStore<String>,
    governor::clock::DefaultClock,
>;

/// Buckets kept before idle ones (full again) are forgotten.
const LIMITER_KEYS: usize = 20_000;

/// Default reports per minute per node: 20 times the default 10 s interval.
pub(crate) const DEFAULT_REPORTS_PER_MINUTE: u32 = 120;

/// Reports of one stream waiting for their commit at once (and, since the acks are sent as
/// they are answered, the acks an agent that does not read them holds back: it slows its
/// own stream down, it cannot grow the aggregator's memory). More would not make the
/// committer faster; each one holds budget.
pub(crate) const PIPELINE: usize = 16;

/// Bounds on what ingest holds in memory, and how it batches writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Encoded bytes of reports read but not yet acked, over all streams (default 8 MiB:
    /// ~7,000 reports of 1.2 KiB, several group commits' worth; `ingest.in_flight_bytes`).
    pub in_flight_bytes: usize,
    /// How long a report waits for room in the budget before its stream ends with
    /// `RESOURCE_EXHAUSTED` (default 30 s).
    pub budget_wait: Duration,
    /// Streams open at once per node identity (default 4: an agent needs one, plus a
    /// reconnect overlapping a stream the server has not seen close yet).
    pub streams_per_node: usize,
    /// Largest message from an agent (default [`crate::api::server::MAX_MESSAGE_BYTES`]).
    pub max_message_bytes: usize,
    /// Reports a node may send at once beyond its per-minute rate (default
    /// [`DEFAULT_BURST_REPORTS`]); the burst is never below the rate itself.
    pub burst_reports: u32,
    /// HTTP/2 receive window of each stream on the gRPC port: what an agent may send
    /// ahead of what ingest has read (default [`crate::api::server::STREAM_WINDOW_BYTES`]).
    pub stream_window_bytes: u32,
    /// HTTP/2 receive window of each connection on the gRPC port (default
    /// [`crate::api::server::CONNECTION_WINDOW_BYTES`]).
    pub connection_window_bytes: u32,
    /// Connections open at once on the gRPC port (default
    /// [`crate::api::connections::DEFAULT_MAX_CONNECTIONS`]); more wait to be accepted.
    pub max_connections: usize,
    /// Of them, connections from one source address at once (default
    /// [`crate::api::connections::DEFAULT_MAX_CONNECTIONS_PER_SOURCE`]); more are closed
    /// as soon as they are accepted.
    pub max_connections_per_source: usize,
    /// While connections wait at that cap, a stream open this long ends after the report
    /// it is on (status OK: the agent reconnects and waits its turn; default
    /// [`crate::api::connections::DEFAULT_MAX_CONNECTION_AGE_AT_CAP`]).
    pub max_connection_age_at_cap: Duration,
    /// How long an agent whose stream ended to make way waits before it reconnects, told
    /// in the `grpc-retry-pushback-ms` trailer: between half and one and a half times this,
    /// at random (default
    /// [`crate::api::connections::DEFAULT_RETRY_PUSHBACK_AT_CAP`]).
    pub retry_pushback_at_cap: Duration,
    /// A connection on the gRPC port without an RPC for this long is closed, and an agent
    /// stream without a report for this long ends (status OK), so silent clients do not
    /// hold the cap's slots (default
    /// [`crate::api::connections::DEFAULT_MAX_CONNECTION_IDLE`]).
    pub max_connection_idle: Duration,
    /// How the committer batches reports.
    pub commit: CommitLimits,
}

/// Default burst per node: an agent's default buffer (360 reports, an hour at 10 s) and
/// some room, so a reconnecting agent's backlog drains at the aggregator's speed rather
/// than at 120 a minute (three minutes for a full buffer, issue 14's goal for the whole
/// fleet).
pub(crate) const DEFAULT_BURST_REPORTS: u32 = 400;

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            in_flight_bytes: 8 << 20,
            budget_wait: Duration::from_secs(30),
            streams_per_node: 4,
            max_message_bytes: crate::api::server::MAX_MESSAGE_BYTES,
            burst_reports: DEFAULT_BURST_REPORTS,
            stream_window_bytes: crate::api::server::STREAM_WINDOW_BYTES,
            connection_window_bytes: crate::api::server::CONNECTION_WINDOW_BYTES,
            max_connections: crate::api::connections::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_source: crate::api::connections::DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            max_connection_age_at_cap: crate::api::connections::DEFAULT_MAX_CONNECTION_AGE_AT_CAP,
            retry_pushback_at_cap: crate::api::connections::DEFAULT_RETRY_PUSHBACK_AT_CAP,
            max_connection_idle: crate::api::connections::DEFAULT_MAX_CONNECTION_IDLE,
            commit: CommitLimits::default(),
        }
    }
}

/// The global budget of in-flight report bytes: a semaphore with one permit per byte.
#[derive(Debug)]
pub(crate) struct Budget {
    permits: Arc<Semaphore>,
    total: usize,
    /// Most bytes held at once since start (what a test or benchmark compares with `total`).
    peak: std::sync::atomic::AtomicUsize,
}

impl Budget {
    fn new(total: usize) -> Self {
        let total = total
            .clamp(1, Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize);
        Self {
            permits: Arc::new(Semaphore::new(total)),
            total,
            peak: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Bytes held now.
    pub(crate) fn held(&self) -> usize {
        self.total - self.permits.available_permits()
    }

    /// Most bytes held at once so far.
    #[cfg(test)]
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits up to `wait` for `bytes` of room; `None` when the message can never fit or
    /// the wait ran out.
    async fn acquire(&self, bytes: usize, wait: Duration) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(bytes.max(1))
            .ok()
            .filter(|n| *n as usize <= self.total)?;
        let permit = tokio::time::timeout(wait, Arc::clone(&self.permits).acquire_many_owned(n))
            .await
            .ok()?
            .ok()?;
        self.peak
            .fetch_max(self.held(), std::sync::atomic::Ordering::Relaxed);
        Some(permit)
    }
}

/// Streams open per node identity.
#[derive(Debug, Default)]
struct StreamCounts {
    open: Mutex<HashMap<String, usize>>,
}

/// One stream's place in [`StreamCounts`], given back when dropped.
#[derive(Debug)]
struct StreamSlot {
    counts: Arc<StreamCounts>,
    node: String,
}

impl StreamCounts {
    fn take(self: &Arc<Self>, node: &str, cap: usize) -> Option<StreamSlot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(node.to_string()).or_insert(0);
        if *n >= cap.max(1) {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            counts: Arc::clone(self),
            node: node.to_string(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .counts
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.node) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.node);
            }
        }
    }
}

fn too_many_streams(node: &str, cap: usize) -> Status {
    Status::resource_exhausted(format!(
        "node {node:?} already has {cap} report streams open (the limit per node); an agent needs one"
    ))
}

/// Who may report for which node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdentityPolicy {
    /// Plaintext: any stream may report for any node (loopback tests, `standalone`).
    Any,
    /// A client certificate is required and names the node; `allow_shared` accepts the
    /// certificate shared by all agents (`caretaker-node:*`) for any node.
    Certificate { allow_shared: bool },
}

/// The ingest service.
#[derive(Debug, Clone)]
pub(crate) struct IngestService {
    state: Arc<State>,
    shutdown: CancellationToken,
    identity: IdentityPolicy,
    reports_per_minute: NonZeroU32,
    limiter: Arc<NodeLimiter>,
    limits: IngestLimits,
    budget: Arc<Budget>,
    streams: Arc<StreamCounts>,
    /// The gRPC port's connection cap: while connections wait at it, old streams make way.
    cap: Option<Arc<ConnectionCap>>,
    committer: Committer,
    /// The reader task of every stream, to wait for them on shutdown.
    tasks: TaskTracker,
    /// The committer task, taken by [`IngestService::finish`].
    commit_task: Arc<Mutex<Option<CommitTask>>>,
}

/// `per_minute` reports a minute per node, in bursts of up to `burst` (at least
/// `per_minute`).
fn node_limiter(per_minute: NonZeroU32, burst: u32) -> Arc<NodeLimiter> {
    let burst = NonZeroU32::new(burst).map_or(per_minute, |b| b.max(per_minute));
    Arc::new(governor::RateLimiter::hashmap(
        governor::Quota::per_minute(per_minute).allow_burst(burst),
    ))
}

impl IngestService {
    /// Streams end when `shutdown` is cancelled, so a graceful stop does not wait for
    /// agents to hang up. Any node, [`DEFAULT_REPORTS_PER_MINUTE`], `limits`. Starts the
    /// group committer: call inside a Tokio runtime.
    pub(crate) fn new(
        state: Arc<State>,
        shutdown: CancellationToken,
        limits: IngestLimits,
    ) -> Self {
        let per_minute = NonZeroU32::new(DEFAULT_REPORTS_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        let (committer, commit_task) = Committer::spawn(Arc::clone(&state), limits.commit);
        Self {
            committer,
            tasks: TaskTracker::new(),
            commit_task: Arc::new(Mutex::new(Some(commit_task))),
            state,
            shutdown,
            identity: IdentityPolicy::Any,
            reports_per_minute: per_minute,
            limiter: node_limiter(per_minute, limits.burst_reports),
            limits,
            budget: Arc::new(Budget::new(limits.in_flight_bytes)),
            streams: Arc::new(StreamCounts::default()),
            cap: None,
        }
    }

    /// Streams older than [`IngestLimits::max_connection_age_at_cap`] end while
    /// connections wait at `cap`.
    pub(crate) fn with_cap(mut self, cap: Arc<ConnectionCap>) -> Self {
        self.cap = Some(cap);
        self
    }

    /// Waits until every stream's tasks have ended (they end on the `shutdown` token given
    /// to [`IngestService::new`]: cancel it first), then commits what is queued and ends
    /// the committer. Afterwards no task of this service holds the state, so the store
    /// closes with its last other reference. A second call returns at once.
    pub(crate) async fn finish(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        let task = self
            .commit_task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.finish().await;
        }
    }

    /// The in-flight byte budget, to watch it.
    #[cfg(test)]
    pub(crate) fn budget(&self) -> Arc<Budget> {
        Arc::clone(&self.budget)
    }

    /// Who may report for which node.
    #[must_use]
    pub(crate) fn with_identity(mut self, identity: IdentityPolicy) -> Self {
        self.identity = identity;
        self
    }

    /// Reports per minute per node, over all its streams (0 is taken as 1).
    #[must_use]
    pub(crate) fn with_reports_per_minute(mut self, n: u32) -> Self {
        self.reports_per_minute = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        self.limiter = node_limiter(self.reports_per_minute, self.limits.burst_reports);
        self
    }

    /// The node a stream may report for (`None`: any), from its client certificate.
    fn identify<T>(&self, request: &Request<T>) -> Result<Option<String>, Status> {
        let IdentityPolicy::Certificate { allow_shared } = self.identity else {
            return Ok(None);
        };
        let certs = request.peer_certs();
        let Some(cert) = certs.as_deref().and_then(|c| c.first()) else {
            return Err(Status::unauthenticated(
                "no client certificate: this aggregator takes reports over mutual TLS only; give the agent aggregator.tls.cert_file and key_file",
            ));
        };
        match crate::api::tls::peer_identity(cert) {
            Ok(PeerIdentity::Node(n)) => Ok(Some(n)),
            Ok(PeerIdentity::Shared) if allow_shared => Ok(None),
            Ok(PeerIdentity::Shared) => Err(Status::permission_denied(
                "the client certificate is the one shared by all agents (caretaker-node:*), which this aggregator does not accept (tls.allow_shared_agent_cert is false); give each node its own certificate",
            )),
            Err(e) => Err(Status::permission_denied(
                caretaker_core::error::Chain(&e).to_string(),
            )),
        }
    }
}

type AckStream = Pin<Box<dyn Stream<Item = Result<pb::AggregatorMessage, Status>> + Send>>;

/// Which report an ack is for.
#[derive(Debug, Clone)]
struct AckKey {
    node_name: String,
    epoch: u64,
    seq: u64,
}

impl AckKey {
    fn of(r: &pb::NodeReport) -> Self {
        Self {
            node_name: r.node_name.clone(),
            epoch: r.epoch,
            seq: r.seq,
        }
    }
}

fn ack(r: AckKey, duplicate: bool, rejected: String) -> pb::AggregatorMessage {
    pb::AggregatorMessage {
        msg: Some(aggregator_message::Msg::Ack(pb::Ack {
            node_name: r.node_name,
            epoch: r.epoch,
            seq: r.seq,
            duplicate,
            rejected,
        })),
    }
}

/// A report of a stream between being read and being acked, in arrival order. Holds its
/// share of the budget until its ack is handed to HTTP/2. Boxed in the stream's queue, so
/// the queue of an idle stream is a few pointers (tokio's channel allocates its slots in
/// blocks of 32: unboxed, the two queues a stream had were ~8 KiB of each stream's memory in
/// the reconnect storm, heaptrack of bench-ingest, issue 14).
#[derive(Debug)]
enum Pending {
    /// Answered without the store (rejected).
    Now(pb::AggregatorMessage, OwnedSemaphorePermit),
    /// Waiting for its commit.
    Commit(
        AckKey,
        oneshot::Receiver<CommitResult>,
        OwnedSemaphorePermit,
    ),
    /// The reader ended the stream with this status (after the acks queued before it).
    End(Status),
}

/// The answer to one queued report: its ack once committed, or the status that ends the
/// stream. A store error ends it with `UNAVAILABLE` (nothing after it is acked; the agent
/// keeps and resends it).
async fn answer(p: Pending) -> Result<pb::AggregatorMessage, Status> {
    match p {
        Pending::Now(msg, _permit) => Ok(msg),
        Pending::End(status) => Err(status),
        Pending::Commit(key, answer, _permit) => match answer.await {
            Ok(Ok(outcome)) => Ok(ack(key, outcome != Outcome::Stored, String::new())),
            Ok(Err(e)) => {
                warn!(error = %Chain(&e), node = %key.node_name, "Cannot store a report; closing the stream.");
                Err(Status::unavailable(format!("store error: {}", Chain(&e))))
            }
            Err(_) => {
                warn!("The committer stopped; closing the stream.");
                Err(Status::unavailable("the aggregator is shutting down"))
            }
        },
    }
}

/// The response side of one stream: no task of its own, HTTP/2 polls it when the agent has
/// room for acks. It yields the acks in the order the reports arrived, each after its
/// commit, and ends after an error or once the reader has ended and every report is
/// answered. Ending or dropped (the agent went away), it stops the reader too.
struct Acks {
    pending: mpsc::Receiver<Box<Pending>>,
    span: tracing::Span,
    /// Cancels the reader's token (it may be waiting on the budget or the rate).
    _stop: tokio_util::sync::DropGuard,
}

fn ack_stream(
    pending: mpsc::Receiver<Box<Pending>>,
    stop: CancellationToken,
    span: tracing::Span,
) -> AckStream {
    let acks = Acks {
        pending,
        span,
        _stop: stop.drop_guard(),
    };
    Box::pin(futures_util::stream::unfold(
        Some(acks),
        |state| async move {
            let mut acks = state?;
            let p = acks.pending.recv().await?;
            let span = acks.span.clone();
            match answer(*p).instrument(span).await {
                Ok(msg) => Some((Ok(msg), Some(acks))),
                Err(status) => Some((Err(status), None)),
            }
        },
    ))
}

#[tonic::async_trait]
impl ReportIngest for IngestService {
    type StreamStream = AckStream;

    async fn stream(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<AckStream>, Status> {
        // Counts on the connection while the reader runs (dropped at once if refused, and
        // then it does not restart the connection's idle time).
        let rpc = request
            .extensions()
            .get::<StreamRpc>()
            .and_then(StreamRpc::take);
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".into(), |a| a.to_string());
        let refuse = |status: Status| {
            warn!(%peer, reason = %status.message(), "Refused an agent stream.");
            self.state.count_rejected();
            status
        };
        let allowed = self.identify(&request).map_err(refuse)?;
        // With a certificate the node is known now: a stream over the cap never starts.
        let slot = match &allowed {
            Some(node) => Some(
                self.streams
                    .take(node, self.limits.streams_per_node)
                    .ok_or_else(|| refuse(too_many_streams(node, self.limits.streams_per_node)))?,
            ),
            None => None,
        };
        let (pending_tx, pending_rx) = mpsc::channel(PIPELINE);
        let stop = self.shutdown.child_token();
        let reader = StreamReader {
            service: self.clone(),
            inbound: request.into_inner(),
            allowed,
            slot,
            node: String::new(),
            pending: pending_tx,
            stop: stop.clone(),
            opened: tokio::time::Instant::now(),
            _rpc: rpc.map(Rpc::admitted),
        };
        self.state.metrics.streams_active.inc();
        let span = info_span!("ingest", %peer, node = tracing::field::Empty);
        self.tasks.spawn(reader.run().instrument(span.clone()));
        Ok(Response::new(ack_stream(pending_rx, stop, span)))
    }
}

/// The reading side of one agent stream.
struct StreamReader {
    service: IngestService,
    inbound: Streaming<pb::AgentMessage>,
    /// The node the client certificate names (`None`: any node).
    allowed: Option<String>,
    /// This stream's place under [`IngestLimits::streams_per_node`], once its node is known.
    slot: Option<StreamSlot>,
    /// The node this stream reports for, for the span and logs.
    node: String,
    /// Reports in arrival order to the response side ([`Acks`]), then the status that ends
    /// the stream, if any.
    pending: mpsc::Sender<Box<Pending>>,
    /// Cancelled on shutdown, or when the ack side stopped.
    stop: CancellationToken,
    /// When the stream opened (see [`StreamReader::make_way`]).
    opened: tokio::time::Instant,
    /// Keeps the connection open while the reader runs ([`StreamRpc`]).
    _rpc: Option<Rpc>,
}

/// What became of one message read from the stream.
enum Step {
    Continue,
    /// The stream ends, optionally with a status for the agent.
    End(Option<Status>),
}

impl StreamReader {
    async fn run(mut self) {
        info!("Agent stream opened.");
        loop {
            let idle = self.service.limits.max_connection_idle;
            let msg = tokio::select! {
                () = self.stop.cancelled() => break,
                m = self.inbound.message() => m,
                () = tokio::time::sleep(idle) => {
                    // A stream that sends nothing holds a connection slot for nothing.
                    debug!(?idle, "No report for max_connection_idle; ending the stream.");
                    break;
                }
            };
            let step = match msg {
                Ok(Some(pb::AgentMessage {
                    msg: Some(agent_message::Msg::Report(r)),
                })) => {
                    // Boxed: this task lives as long as the agent's connection, mostly idle;
                    // the state of handling one report (budget, rate, commit queue) is only
                    // allocated while a report is handled, not kept in every idle task.
                    match Box::pin(self.report(r)).await {
                        Step::Continue => self
                            .make_way()
                            .map_or(Step::Continue, |status| Step::End(Some(status))),
                        step => step,
                    }
                }
                Ok(Some(_)) => Step::Continue,
                Ok(None) => Step::End(None),
                // A message over the size limit or not decodable: tell the agent why.
                Err(status)
                    if matches!(
                        status.code(),
                        tonic::Code::OutOfRange
                            | tonic::Code::ResourceExhausted
                            | tonic::Code::Internal
                    ) =>
                {
                    warn!(error = %status.message(), code = ?status.code(), "Refused an agent message; closing the stream.");
                    self.service.state.count_rejected();
                    Step::End(Some(status))
                }
                Err(status) => {
                    debug!(error = %status.message(), "Agent stream broke.");
                    Step::End(None)
                }
            };
            if let Step::End(status) = step {
                if let Some(status) = status {
                    tokio::select! {
                        _ = self.pending.send(Box::new(Pending::End(status))) => {}
                        () = self.stop.cancelled() => {}
                    }
                }
                break;
            }
        }
        self.service.state.metrics.streams_active.dec();
        info!(node = %self.node, "Agent stream closed.");
    }

    async fn report(&mut self, wire: pb::NodeReport) -> Step {
        let service = &self.service;
        let state = &service.state;
        let bytes = prost::Message::encoded_len(&wire);
        // Room in the global budget first: everything below holds the report.
        let permit = tokio::select! {
            () = self.stop.cancelled() => return Step::End(None),
            p = service.budget.acquire(bytes, service.limits.budget_wait) => p,
        };
        let Some(permit) = permit else {
            warn!(
                bytes,
                budget = service.budget.total,
                "No room for a report in the in-flight budget; closing the stream."
            );
            state.count_rejected();
            return Step::End(Some(Status::resource_exhausted(format!(
                "the aggregator's in-flight report budget ({} bytes) had no room for this report ({bytes} bytes) within {:?}; resend later",
                service.budget.total, service.limits.budget_wait
            ))));
        };
        if let Some(allowed) = &self.allowed
            && wire.node_name != *allowed
        {
            warn!(certificate = %allowed, report = %wire.node_name, "Refused a report for another node than the client certificate's; closing the stream.");
            state.count_rejected();
            return Step::End(Some(Status::permission_denied(format!(
                "the client certificate is for node {allowed:?}; it may not report for node {:?}",
                wire.node_name
            ))));
        }
        // Plaintext: the stream counts against the node of its first report.
        if self.slot.is_none() {
            match service
                .streams
                .take(&wire.node_name, service.limits.streams_per_node)
            {
                Some(slot) => self.slot = Some(slot),
                None => {
                    state.count_rejected();
                    return Step::End(Some(too_many_streams(
                        &wire.node_name,
                        service.limits.streams_per_node,
                    )));
                }
            }
        }
        // Over the rate: stop reading this stream until it is allowed again.
        if !self.wait_for_rate(&wire.node_name).await {
            return Step::End(None);
        }
        let key = AckKey::of(&wire);
        let pending = match NodeReport::try_from(wire) {
            Err(invalid) => {
                warn!(node = %key.node_name, seq = key.seq, error = %invalid, "Rejected an invalid report.");
                state.count_rejected();
                Pending::Now(ack(key, false, invalid.to_string()), permit)
            }
            Ok(_)
                if let Some(reason) =
                    crate::store::epoch_rejection(key.epoch, Timestamp::now()) =>
            {
                warn!(node = %key.node_name, epoch = key.epoch, %reason, "Rejected a report from the future.");
                state.count_rejected();
                Pending::Now(ack(key, false, reason), permit)
            }
            Ok(report) => {
                if self.node != report.node_name {
                    self.node.clone_from(&report.node_name);
                    tracing::Span::current().record("node", self.node.as_str());
                    info!(node = %self.node, epoch = report.epoch, "Agent identified.");
                }
                match service.committer.submit(report, bytes).await {
                    Ok(answer) => Pending::Commit(key, answer, permit),
                    Err(e) => {
                        warn!(error = %Chain(&e), "Cannot queue a report; closing the stream.");
                        return Step::End(Some(Status::unavailable(
                            "the aggregator is shutting down",
                        )));
                    }
                }
            }
        };
        // The agent takes its acks (the queue has room) or the stream ends: a client that
        // takes none cannot keep the reader, and so its connection, for good.
        let idle = service.limits.max_connection_idle;
        tokio::select! {
            sent = self.pending.send(Box::new(pending)) => if sent.is_err() {
                return Step::End(None);
            },
            () = self.stop.cancelled() => return Step::End(None),
            () = tokio::time::sleep(idle) => {
                warn!(?idle, "The agent took no acks for max_connection_idle; ending the stream.");
                return Step::End(None);
            }
        }
        Step::Continue
    }

    /// The status that ends this stream now to make way for connections waiting at the
    /// gRPC port's cap, if it is older than [`IngestLimits::max_connection_age_at_cap`]:
    /// OK (after the acks of what it read), with a `grpc-retry-pushback-ms` trailer that
    /// tells the agent how long to wait before it reconnects (and resends the rest), so
    /// agents with long backlogs stay out of the accept queue for a while and an agent
    /// with a fresh report finds it short.
    fn make_way(&self) -> Option<Status> {
        let service = &self.service;
        let limits = &service.limits;
        if !(service.cap.as_ref().is_some_and(|cap| cap.waiting())
            && self.opened.elapsed() >= limits.max_connection_age_at_cap)
        {
            return None;
        }
        let pushback = limits.retry_pushback_at_cap / 2
            + caretaker_core::jitter::up_to(limits.retry_pushback_at_cap);
        debug!(
            ?pushback,
            "Ending the stream to make way for connections waiting at the cap."
        );
        service.state.metrics.ingest_streams_made_way_total.inc();
        let mut trailers = tonic::metadata::MetadataMap::new();
        trailers.insert(
            pb::RETRY_PUSHBACK_TRAILER,
            tonic::metadata::MetadataValue::from(
                u64::try_from(pushback.as_millis()).unwrap_or(u64::MAX),
            ),
        );
        Some(Status::with_metadata(
            tonic::Code::Ok,
            "making way for agents waiting to connect",
            trailers,
        ))
    }

    /// Waits until the node's rate allows one more report; false when the stream stops
    /// meanwhile.
    async fn wait_for_rate(&self, node: &str) -> bool {
        let limiter = &self.service.limiter;
        if limiter.len() > LIMITER_KEYS {
            limiter.retain_recent();
        }
        let key = self.allowed.as_deref().unwrap_or(node).to_string();
        // Checked again after each wait: other streams of the node share the bucket.
        let mut throttled = false;
        while let Err(not_until) = limiter.check_key(&key) {
            if !throttled {
                throttled = true;
                self.service.state.metrics.ingest_throttled_total.inc();
            }
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            debug!(?wait, "Agent stream is over its rate; slowing it down.");
            tokio::select! {
                () = self.stop.cancelled() => return false,
                () = tokio::time::sleep(wait) => {}
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use caretaker_proto::pb::report_ingest_client::ReportIngestClient;
    use caretaker_proto::pb::report_ingest_server::ReportIngestServer;
    use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};

    use super::*;
    use crate::store::Store;

    /// A node report of about `pad` bytes (its collector errors carry the padding).
    fn wire(node: &str, seq: u64, pad: usize) -> pb::AgentMessage {
        let mut r = pb::NodeReport::from(crate::store::tests::report(node, 1, seq));
        r.errors.push(pb::CollectorError {
            collector: "test".into(),
            place: String::new(),
            message: "x".repeat(pad),
        });
        pb::AgentMessage {
            msg: Some(agent_message::Msg::Report(r)),
        }
    }

    /// What one report of [`wire`] holds of the budget.
    fn report_len(pad: usize) -> usize {
        match wire("flood", 2, pad).msg {
            Some(agent_message::Msg::Report(r)) => prost::Message::encoded_len(&r),
            _ => 0,
        }
    }

    /// Serves `service` on loopback; the URL to connect to.
    async fn serve(service: IngestService, stop: CancellationToken) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tonic::transport::Server::builder()
            .add_service(
                ReportIngestServer::new(service)
                    .max_decoding_message_size(crate::api::server::MAX_MESSAGE_BYTES),
            )
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned());
        tokio::spawn(server);
        url
    }

    /// Opens a stream, sends `msg` and keeps the stream open; reports what the first answer
    /// was (`Ok(true)`: an ack) on `out`.
    async fn open(
        url: String,
        msg: pb::AgentMessage,
        out: mpsc::Sender<Result<bool, Status>>,
        keep: mpsc::Sender<mpsc::Sender<pb::AgentMessage>>,
    ) {
        let (tx, rx) = mpsc::channel(1);
        tx.send(msg).await.unwrap();
        let _ = keep.send(tx).await;
        let mut client = ReportIngestClient::connect(url).await.unwrap();
        let first = match client.stream(ReceiverStream::new(rx)).await {
            Err(status) => Err(status),
            Ok(acks) => match acks.into_inner().message().await {
                Ok(Some(_)) => Ok(true),
                Ok(None) => Ok(false),
                Err(status) => Err(status),
            },
        };
        let _ = out.send(first).await;
    }

    /// A service whose node `flood` has used its one report a minute, so every later
    /// report of it is held at the rate limit (holding its share of the budget).
    async fn throttled(
        limits: IngestLimits,
    ) -> (IngestService, String, CancellationToken, Arc<State>) {
        let state = State::new(Store::in_memory().unwrap(), 3).unwrap();
        let stop = CancellationToken::new();
        let limits = IngestLimits {
            burst_reports: 1,
            ..limits
        };
        let service =
            IngestService::new(Arc::clone(&state), stop.clone(), limits).with_reports_per_minute(1);
        let url = serve(service.clone(), stop.clone()).await;
        let (out, mut got) = mpsc::channel(1);
        let (keep, _kept) = mpsc::channel(1);
        open(url.clone(), wire("flood", 1, 10), out, keep).await;
        assert!(
            matches!(got.recv().await, Some(Ok(true))),
            "the burst of one is acked"
        );
        (service, url, stop, state)
    }

    async fn flood(
        url: &str,
        streams: usize,
        pad: usize,
    ) -> (
        mpsc::Receiver<Result<bool, Status>>,
        mpsc::Receiver<mpsc::Sender<pb::AgentMessage>>,
    ) {
        let (out, got) = mpsc::channel(streams);
        let (keep, kept) = mpsc::channel(streams);
        for seq in 0..streams {
            tokio::spawn(open(
                url.to_string(),
                wire("flood", 2 + seq as u64, pad),
                out.clone(),
                keep.clone(),
            ));
        }
        (got, kept)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_streams_as_one_node_is_capped_per_node() {
        let limits = IngestLimits {
            streams_per_node: 3,
            ..IngestLimits::default()
        };
        let (service, url, stop, state) = throttled(limits).await;
        let (mut got, _kept) = flood(&url, 20, 1000).await;
        // Three streams are open (held at the rate); the other 17 are refused.
        for _ in 0..17 {
            let status = got.recv().await.unwrap().unwrap_err();
            assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
            assert!(
                status
                    .message()
                    .starts_with("node \"flood\" already has 3 report streams open"),
                "{status:?}"
            );
        }
        assert!(
            got.try_recv().is_err(),
            "the three held streams have no answer yet"
        );
        let one = report_len(1000);
        // Without the cap all 20 were held.
        tokio::time::timeout(Duration::from_secs(20), async {
            while service.budget().held() < 3 * one {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(service.budget().held(), 3 * one);
        let text = state.metrics.encode();
        assert!(
            text.contains("caretaker_ingest_reports_total{result=\"rejected\"} 17"),
            "{text}"
        );
        stop.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reports_beyond_the_in_flight_budget_are_refused_not_buffered() {
        let pad = 300 << 10;
        let one = report_len(pad);
        let limits = IngestLimits {
            in_flight_bytes: 1 << 20,
            budget_wait: Duration::from_millis(200),
            streams_per_node: 100,
            ..IngestLimits::default()
        };
        let (service, url, stop, _state) = throttled(limits).await;
        let (mut got, _kept) = flood(&url, 10, pad).await;
        // 1 MiB holds three reports of 300 KiB; the other seven find no room.
        for _ in 0..7 {
            let status = got.recv().await.unwrap().unwrap_err();
            assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
            assert!(
                status.message().starts_with(
                    "the aggregator's in-flight report budget (1048576 bytes) had no room"
                ),
                "{status:?}"
            );
        }
        assert!(
            got.try_recv().is_err(),
            "the three held streams have no answer yet"
        );
        assert_eq!(service.budget().held(), 3 * one);
        assert!(
            service.budget().peak() <= 1 << 20,
            "{}",
            service.budget().peak()
        );

        // A message larger than the whole budget (but under the message size limit) can
        // never fit: refused at once.
        let (mut got, _kept) = flood(&url, 1, 2 << 20).await;
        let status = got.recv().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(service.budget().peak() <= 1 << 20);
        stop.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backlog_up_to_the_burst_is_taken_at_once_then_the_rate_holds_the_node() {
        let state = State::new(Store::in_memory().unwrap(), 3).unwrap();
        let stop = CancellationToken::new();
        let limits = IngestLimits {
            burst_reports: 30,
            ..IngestLimits::default()
        };
        // One report a minute: without the burst, the second report would wait a minute.
        let service =
            IngestService::new(Arc::clone(&state), stop.clone(), limits).with_reports_per_minute(1);
        let url = serve(service, stop.clone()).await;
        let (tx, rx) = mpsc::channel(64);
        for seq in 1..=40 {
            tx.send(wire("backlog", seq, 10)).await.unwrap();
        }
        let mut client = ReportIngestClient::connect(url).await.unwrap();
        let mut acks = client
            .stream(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        for seq in 1..=30 {
            match acks.message().await.unwrap() {
                Some(pb::AggregatorMessage {
                    msg: Some(aggregator_message::Msg::Ack(a)),
                }) => assert_eq!((a.seq, a.duplicate), (seq, false)),
                other => panic!("expected the ack of {seq}, got {other:?}"),
            }
        }
        // The 31st meets the empty bucket: held at the rate (a flood from one identity
        // gets its burst, then one a minute).
        tokio::time::timeout(Duration::from_secs(20), async {
            while state.metrics.ingest_throttled_total.get() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(
            state
                .node("backlog", Timestamp::now())
                .map(|n| n.reports_stored_total),
            Some(30)
        );
        stop.cancel();
    }
}
