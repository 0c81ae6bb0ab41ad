//! What the aggregator knows of a node: freshness and the latest report.

use caretaker_proto::pb;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::wire::*;
use super::*;

/// Whether a node's latest report is recent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// Reported within `stale_after_intervals` of its own report intervals.
    Fresh,
    /// Missed that many intervals or more.
    Stale,
    /// The cluster lists the node but no agent report from it was ever stored.
    Missing,
}

/// The aggregator's view of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_name: String,
    pub freshness: Freshness,
    /// When the aggregator stored the latest report (aggregator clock); absent for a
    /// missing node.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub received_at: Option<Timestamp>,
    /// Reports stored from this node since the store was created.
    pub reports_stored_total: u64,
    /// The latest report; absent for a missing node.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub report: Option<NodeReport>,
}

impl From<Freshness> for pb::Freshness {
    fn from(f: Freshness) -> Self {
        match f {
            Freshness::Fresh => pb::Freshness::Fresh,
            Freshness::Stale => pb::Freshness::Stale,
            Freshness::Missing => pb::Freshness::Missing,
        }
    }
}

impl From<NodeStatus> for pb::NodeStatus {
    fn from(n: NodeStatus) -> Self {
        Self {
            node_name: n.node_name,
            freshness: pb::Freshness::from(n.freshness) as i32,
            received_at: n.received_at.map(ts_to_pb),
            reports_stored_total: n.reports_stored_total,
            report: n.report.map(Into::into),
        }
    }
}

impl TryFrom<pb::NodeStatus> for NodeStatus {
    type Error = InvalidMessage;

    fn try_from(n: pb::NodeStatus) -> Result<Self, Self::Error> {
        let freshness = match pb::Freshness::try_from(n.freshness) {
            Ok(pb::Freshness::Fresh) => Freshness::Fresh,
            Ok(pb::Freshness::Stale) => Freshness::Stale,
            Ok(pb::Freshness::Missing) => Freshness::Missing,
            _ => {
                return Err(InvalidMessage::new(
                    "freshness",
                    format!("unknown value {}", n.freshness),
                ));
            }
        };
        Ok(Self {
            freshness,
            received_at: n
                .received_at
                .map(|t| ts_from_pb(Some(t), "received_at"))
                .transpose()?,
            reports_stored_total: n.reports_stored_total,
            report: n
                .report
                .map(|r| NodeReport::try_from(r).map_err(|e| e.within("report")))
                .transpose()?,
            node_name: n.node_name,
        })
    }
}
