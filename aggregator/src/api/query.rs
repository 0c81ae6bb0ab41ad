//! gRPC `Query`: the merged report and per-node reports.

use caretaker_core::error::Chain;
use std::sync::Arc;

use caretaker_proto::pb::{self, query_server::Query};
use jiff::Timestamp;
use tonic::{Request, Response, Status};

use crate::state::State;

/// The query service.
#[derive(Debug, Clone)]
pub(crate) struct QueryService {
    state: Arc<State>,
}

impl QueryService {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl Query for QueryService {
    async fn get_cluster_report(
        &self,
        request: Request<pb::GetClusterReportRequest>,
    ) -> Result<Response<pb::ClusterReport>, Status> {
        let report = match request.into_inner().at {
            None => self.state.cluster_report(Timestamp::now()),
            Some(at) => {
                let at = Timestamp::new(at.seconds, at.nanos)
                    .map_err(|e| Status::invalid_argument(format!("at: {e}")))?;
                self.state
                    .store()
                    .history_at(at)
                    .await
                    .map_err(|e| Status::internal(Chain(&e).to_string()))?
                    .ok_or_else(|| {
                        Status::not_found(format!("no report recorded at or before {at}"))
                    })?
            }
        };
        report
            .to_wire()
            .map(Response::new)
            .map_err(|e| Status::internal(format!("cannot encode the report: {e}")))
    }

    async fn list_nodes(
        &self,
        _: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let nodes = self
            .state
            .nodes(Timestamp::now())
            .into_iter()
            .map(Into::into)
            .collect();
        Ok(Response::new(pb::ListNodesResponse { nodes }))
    }

    async fn run_checks(
        &self,
        _: Request<pb::RunChecksRequest>,
    ) -> Result<Response<pb::ClusterReport>, Status> {
        self.state
            .run_round_now()
            .await
            .map_err(|e| Status::unavailable(Chain(&e).to_string()))?;
        let report = self.state.cluster_report(Timestamp::now());
        report
            .to_wire()
            .map(Response::new)
            .map_err(|e| Status::internal(format!("cannot encode the report: {e}")))
    }

    async fn get_node_report(
        &self,
        request: Request<pb::GetNodeReportRequest>,
    ) -> Result<Response<pb::NodeStatus>, Status> {
        let name = request.into_inner().node_name;
        self.state
            .node(&name, Timestamp::now())
            .map(|n| Response::new(n.into()))
            .ok_or_else(|| Status::not_found(format!("no report from node {name:?}")))
    }
}
