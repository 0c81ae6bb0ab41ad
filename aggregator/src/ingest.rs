//! `ReportIngest.Stream`: one long-lived stream per agent.
//!
//! Each report is validated (a wire message that is not a valid report is acked with a
//! `rejected` reason so the agent drops it instead of resending it forever), stored
//! durably on a blocking thread, and only then acked. Reports of one stream are handled
//! in order, so acks arrive in order.

use std::pin::Pin;
use std::sync::Arc;

use caretaker_proto::model::NodeReport;
use caretaker_proto::pb::{self, agent_message, aggregator_message, report_ingest_server::ReportIngest};
use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::state::State;
use crate::store::Outcome;

/// Acks waiting to be sent on one stream. Small: an agent that does not read its acks
/// slows its own stream down (backpressure), it cannot grow the aggregator's memory.
const ACK_QUEUE: usize = 64;

/// The ingest service.
#[derive(Debug, Clone)]
pub struct IngestService {
    state: Arc<State>,
    shutdown: CancellationToken,
}

impl IngestService {
    /// Streams end when `shutdown` is cancelled, so a graceful stop does not wait for
    /// agents to hang up.
    pub fn new(state: Arc<State>, shutdown: CancellationToken) -> Self {
        Self { state, shutdown }
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

    async fn stream(&self, request: Request<Streaming<pb::AgentMessage>>) -> Result<Response<AckStream>, Status> {
        let peer = request.remote_addr().map_or_else(|| "unknown".into(), |a| a.to_string());
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
                            debug!(error = %status.message(), "Agent stream broke.");
                            break;
                        }
                    };
                    let reply = match NodeReport::try_from(wire.clone()) {
                        Err(invalid) => {
                            warn!(node = %wire.node_name, seq = wire.seq, error = %invalid, "Rejected an invalid report.");
                            state.count_rejected();
                            ack(&wire, false, invalid.to_string())
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
