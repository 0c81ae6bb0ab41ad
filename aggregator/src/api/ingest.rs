//! `ReportIngest.Stream`: one long-lived stream per agent.
//!
//! Each report is validated (a wire message that is not a valid report is acked with a
//! `rejected` reason so the agent drops it instead of resending it forever), stored
//! durably on a blocking thread, and only then acked. Reports of one stream are handled
//! in order, so acks arrive in order. A report whose epoch is beyond the aggregator's clock
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
//! misbehaving agent back and the aggregator buffers at most one message
//! ([`crate::api::server::MAX_MESSAGE_BYTES`]) per stream.

use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;

use caretaker_core::model::NodeReport;
use caretaker_proto::pb::{
    self, agent_message, aggregator_message, report_ingest_server::ReportIngest,
};
use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::api::tls::PeerIdentity;
use crate::state::State;
use crate::store::Outcome;

/// Acks waiting to be sent on one stream. Small: an agent that does not read its acks
/// slows its own stream down (backpressure), it cannot grow the aggregator's memory.
const ACK_QUEUE: usize = 64;

/// Rate limiter shared by all streams, one bucket per node.
type NodeLimiter = governor::RateLimiter<
    String,
    governor::state::keyed::HashMapStateStore<String>,
    governor::clock::DefaultClock,
>;

/// Buckets kept before idle ones (full again) are forgotten.
const LIMITER_KEYS: usize = 20_000;

/// Default reports per minute per node: 20 times the default 10 s interval.
pub const DEFAULT_REPORTS_PER_MINUTE: u32 = 120;

/// Who may report for which node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityPolicy {
    /// Plaintext: any stream may report for any node (loopback tests, `standalone`).
    Any,
    /// A client certificate is required and names the node; `allow_shared` accepts the
    /// certificate shared by all agents (`caretaker-node:*`) for any node.
    Certificate { allow_shared: bool },
}

/// The ingest service.
#[derive(Debug, Clone)]
pub struct IngestService {
    state: Arc<State>,
    shutdown: CancellationToken,
    identity: IdentityPolicy,
    reports_per_minute: NonZeroU32,
    limiter: Arc<NodeLimiter>,
}

fn node_limiter(per_minute: NonZeroU32) -> Arc<NodeLimiter> {
    Arc::new(governor::RateLimiter::hashmap(governor::Quota::per_minute(
        per_minute,
    )))
}

impl IngestService {
    /// Streams end when `shutdown` is cancelled, so a graceful stop does not wait for
    /// agents to hang up. Any node, [`DEFAULT_REPORTS_PER_MINUTE`].
    pub fn new(state: Arc<State>, shutdown: CancellationToken) -> Self {
        let per_minute = NonZeroU32::new(DEFAULT_REPORTS_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        Self {
            state,
            shutdown,
            identity: IdentityPolicy::Any,
            reports_per_minute: per_minute,
            limiter: node_limiter(per_minute),
        }
    }

    /// Who may report for which node.
    #[must_use]
    pub fn with_identity(mut self, identity: IdentityPolicy) -> Self {
        self.identity = identity;
        self
    }

    /// Reports per minute per node, over all its streams (0 is taken as 1).
    #[must_use]
    pub fn with_reports_per_minute(mut self, n: u32) -> Self {
        self.reports_per_minute = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        self.limiter = node_limiter(self.reports_per_minute);
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
            Err(e) => Err(Status::permission_denied(e)),
        }
    }
}

type AckStream = Pin<Box<dyn Stream<Item = Result<pb::AggregatorMessage, Status>> + Send>>;

fn ack(r: &pb::NodeReport, duplicate: bool, rejected: String) -> pb::AggregatorMessage {
    pb::AggregatorMessage {
        msg: Some(aggregator_message::Msg::Ack(pb::Ack {
            node_name: r.node_name.clone(),
            epoch: r.epoch,
            seq: r.seq,
            duplicate,
            rejected,
        })),
    }
}

#[tonic::async_trait]
impl ReportIngest for IngestService {
    type StreamStream = AckStream;

    async fn stream(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<AckStream>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".into(), |a| a.to_string());
        let allowed = match self.identify(&request) {
            Ok(a) => a,
            Err(status) => {
                warn!(%peer, reason = %status.message(), "Refused an agent stream.");
                self.state.count_rejected();
                return Err(status);
            }
        };
        let limiter = Arc::clone(&self.limiter);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(ACK_QUEUE);
        let state = Arc::clone(&self.state);
        let shutdown = self.shutdown.clone();
        state.metrics.streams_active.inc();
        let span = info_span!("ingest", %peer, node = tracing::field::Empty);
        tokio::spawn(
            async move {
                info!("Agent stream opened.");
                let mut node = String::new();
                loop {
                    let msg = tokio::select! {
                        () = shutdown.cancelled() => break,
                        m = inbound.message() => m,
                    };
                    let wire = match msg {
                        Ok(Some(pb::AgentMessage { msg: Some(agent_message::Msg::Report(r)) })) => r,
                        Ok(Some(_)) => continue,
                        Ok(None) => break,
                        Err(status) => {
                            // A message over the size limit or not decodable: tell the agent why.
                            if matches!(status.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted | tonic::Code::Internal) {
                                warn!(error = %status.message(), code = ?status.code(), "Refused an agent message; closing the stream.");
                                state.count_rejected();
                                let _ = tx.send(Err(status)).await;
                            } else {
                                debug!(error = %status.message(), "Agent stream broke.");
                            }
                            break;
                        }
                    };
                    if let Some(allowed) = &allowed
                        && wire.node_name != *allowed
                    {
                        warn!(certificate = %allowed, report = %wire.node_name, "Refused a report for another node than the client certificate's; closing the stream.");
                        state.count_rejected();
                        let msg = format!(
                            "the client certificate is for node {allowed:?}; it may not report for node {:?}",
                            wire.node_name
                        );
                        let _ = tx.send(Err(Status::permission_denied(msg))).await;
                        break;
                    }
                    // Over the rate: stop reading this stream until it is allowed again.
                    if limiter.len() > LIMITER_KEYS {
                        limiter.retain_recent();
                    }
                    let key = allowed.as_ref().unwrap_or(&wire.node_name);
                    // Checked again after each wait: other streams of the node share the bucket.
                    let mut throttled = false;
                    let mut stopped = false;
                    while let Err(not_until) = limiter.check_key(key) {
                        if !throttled {
                            throttled = true;
                            state.metrics.ingest_throttled_total.inc();
                        }
                        let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
                        debug!(?wait, "Agent stream is over its rate; slowing it down.");
                        tokio::select! {
                            () = shutdown.cancelled() => { stopped = true; break; }
                            () = tokio::time::sleep(wait) => {}
                        }
                    }
                    if stopped {
                        break;
                    }
                    let reply = match NodeReport::try_from(wire.clone()) {
                        Err(invalid) => {
                            warn!(node = %wire.node_name, seq = wire.seq, error = %invalid, "Rejected an invalid report.");
                            state.count_rejected();
                            ack(&wire, false, invalid.to_string())
                        }
                        Ok(_) if let Some(reason) = crate::store::epoch_rejection(wire.epoch, Timestamp::now()) => {
                            warn!(node = %wire.node_name, epoch = wire.epoch, %reason, "Rejected a report from the future.");
                            state.count_rejected();
                            ack(&wire, false, reason)
                        }
                        Ok(report) => {
                            if node != report.node_name {
                                node.clone_from(&report.node_name);
                                tracing::Span::current().record("node", node.as_str());
                                info!(node = %node, epoch = report.epoch, "Agent identified.");
                            }
                            let st = Arc::clone(&state);
                            let stored = tokio::task::spawn_blocking(move || st.ingest(&report, Timestamp::now())).await;
                            match stored {
                                Ok(Ok(outcome)) => ack(&wire, outcome != Outcome::Stored, String::new()),
                                Ok(Err(e)) => {
                                    // Not stored, so not acked: end the stream; the agent
                                    // keeps the report and resends it after reconnecting.
                                    warn!(error = %e, node = %wire.node_name, "Cannot store a report; closing the stream.");
                                    let _ = tx.send(Err(Status::unavailable(format!("store error: {e}")))).await;
                                    break;
                                }
                                Err(join) => {
                                    warn!(error = %join, "Store task failed; closing the stream.");
                                    break;
                                }
                            }
                        }
                    };
                    if tx.send(Ok(reply)).await.is_err() {
                        break;
                    }
                }
                state.metrics.streams_active.dec();
                info!(node = %node, "Agent stream closed.");
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
