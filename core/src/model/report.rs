//! One collection of node facts ([`NodeReport`]), the bounds one report may hold, and the
//! collector errors it carries.

use std::time::Duration;

use caretaker_proto::pb;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::wire::*;
use super::*;

/// Upper bounds on what one report may hold. A real node has tens of mounts and
/// interfaces; these bounds only stop a broken or hostile agent from making the
/// aggregator hold unbounded data.
pub(crate) const MAX_FILESYSTEMS: usize = 4096;
/// See [`MAX_FILESYSTEMS`].
pub(crate) const MAX_INTERFACES: usize = 4096;
/// See [`MAX_FILESYSTEMS`].
pub const MAX_ERRORS: usize = 256;
/// See [`MAX_FILESYSTEMS`]: pod volume mounts in one report.
pub(crate) const MAX_VOLUMES: usize = 4096;
/// See [`MAX_FILESYSTEMS`]: container runtimes in one images summary (a node has one or two).
pub(crate) const MAX_RUNTIMES: usize = 8;
/// Longest node name Kubernetes accepts (a DNS subdomain, RFC 1123).
pub(crate) const MAX_NODE_NAME_LEN: usize = 253;

/// One collection of node facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node_name: String,
    /// One run of the agent process: its start time in Unix nanoseconds.
    pub epoch: u64,
    /// Sequence number within `epoch`, from 1.
    pub seq: u64,
    pub collected_at: Timestamp,
    /// The agent's report interval, in milliseconds.
    pub report_interval_ms: u64,
    pub host: Host,
    pub filesystems: Vec<Filesystem>,
    pub network: Vec<NetworkInterface>,
    pub agent: AgentCost,
    /// Log rotation as of the daemon's last log check; absent when the agent does not
    /// rotate logs (`stats`, no policies or retention rules) or has not checked yet.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub logs: Option<LogsSummary>,
    pub errors: Vec<CollectorError>,
    /// Image maintenance as of the daemon's last image check; absent when the agent does
    /// not manage images (`stats`, `images.enabled: false`) or has not checked yet.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub images: Option<ImagesSummary>,
    /// Pod volume mounts under the kubelet's pods directory, one per mount.
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    /// The daily log check as of the daemon's last check; absent when the agent does not
    /// run it (`log_check.enabled: false`, `stats`) or has not checked yet.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub log_check: Option<LogCheckSummary>,
}

impl NodeReport {
    /// The agent's report interval.
    pub fn report_interval(&self) -> Duration {
        Duration::from_millis(self.report_interval_ms)
    }
}

/// A problem met while collecting; the rest of the report is still valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectorError {
    /// `filesystems`, `network`, `host` …
    pub collector: String,
    /// The file (with line) or mount point concerned.
    pub place: String,
    pub message: String,
}

/// Checks a node name: non-empty, at most 253 bytes, no control characters or `/`.
///
/// # Errors
/// Names the reason.
pub fn validate_node_name(name: &str) -> Result<(), InvalidMessage> {
    if name.is_empty() {
        return Err(InvalidMessage::new("node_name", "empty"));
    }
    if name.len() > MAX_NODE_NAME_LEN {
        return Err(InvalidMessage::new(
            "node_name",
            format!("{} bytes, at most {MAX_NODE_NAME_LEN}", name.len()),
        ));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c.is_whitespace())
    {
        return Err(InvalidMessage::new(
            "node_name",
            format!("{name:?} holds whitespace, a control character or '/'"),
        ));
    }
    Ok(())
}

impl From<NodeReport> for pb::NodeReport {
    fn from(r: NodeReport) -> Self {
        Self {
            node_name: r.node_name,
            epoch: r.epoch,
            seq: r.seq,
            collected_at: Some(ts_to_pb(r.collected_at)),
            report_interval_ms: r.report_interval_ms,
            host: Some(r.host.into()),
            filesystems: r.filesystems.into_iter().map(Into::into).collect(),
            network: r.network.into_iter().map(Into::into).collect(),
            agent: Some(r.agent.into()),
            logs: r.logs.map(Into::into),
            errors: r.errors.into_iter().map(Into::into).collect(),
            images: r.images.map(Into::into),
            volumes: r.volumes.into_iter().map(Into::into).collect(),
            log_check: r.log_check.map(Into::into),
        }
    }
}

impl TryFrom<pb::NodeReport> for NodeReport {
    type Error = InvalidMessage;

    fn try_from(r: pb::NodeReport) -> Result<Self, Self::Error> {
        validate_node_name(&r.node_name)?;
        if r.epoch == 0 {
            return Err(InvalidMessage::new("epoch", "must be > 0"));
        }
        if r.seq == 0 {
            return Err(InvalidMessage::new("seq", "must be > 0"));
        }
        if r.report_interval_ms == 0 {
            return Err(InvalidMessage::new("report_interval_ms", "must be > 0"));
        }
        let filesystems = bounded(r.filesystems, MAX_FILESYSTEMS, "filesystems")?
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                Filesystem::try_from(f).map_err(|e| e.within(&format!("filesystems[{i}]")))
            })
            .collect::<Result<_, _>>()?;
        let network = bounded(r.network, MAX_INTERFACES, "network")?
            .into_iter()
            .enumerate()
            .map(|(i, n)| {
                NetworkInterface::try_from(n).map_err(|e| e.within(&format!("network[{i}]")))
            })
            .collect::<Result<_, _>>()?;
        let volumes = bounded(r.volumes, MAX_VOLUMES, "volumes")?
            .into_iter()
            .enumerate()
            .map(|(i, v)| VolumeMount::try_from(v).map_err(|e| e.within(&format!("volumes[{i}]"))))
            .collect::<Result<_, _>>()?;
        let images = r
            .images
            .map(|i| ImagesSummary::try_from(i).map_err(|e| e.within("images")))
            .transpose()?;
        let log_check = r
            .log_check
            .map(|l| LogCheckSummary::try_from(l).map_err(|e| e.within("log_check")))
            .transpose()?;
        Ok(Self {
            collected_at: ts_from_pb(r.collected_at, "collected_at")?,
            host: Host::try_from(
                r.host
                    .ok_or_else(|| InvalidMessage::new("host", "missing"))?,
            )
            .map_err(|e| e.within("host"))?,
            agent: AgentCost::try_from(
                r.agent
                    .ok_or_else(|| InvalidMessage::new("agent", "missing"))?,
            )
            .map_err(|e| e.within("agent"))?,
            logs: r
                .logs
                .map(|l| LogsSummary::try_from(l).map_err(|e| e.within("logs")))
                .transpose()?,
            errors: bounded(r.errors, MAX_ERRORS, "errors")?
                .into_iter()
                .map(Into::into)
                .collect(),
            node_name: r.node_name,
            epoch: r.epoch,
            seq: r.seq,
            report_interval_ms: r.report_interval_ms,
            filesystems,
            network,
            images,
            volumes,
            log_check,
        })
    }
}

impl From<CollectorError> for pb::CollectorError {
    fn from(e: CollectorError) -> Self {
        Self {
            collector: e.collector,
            place: e.place,
            message: e.message,
        }
    }
}

impl From<pb::CollectorError> for CollectorError {
    fn from(e: pb::CollectorError) -> Self {
        Self {
            collector: e.collector,
            place: e.place,
            message: e.message,
        }
    }
}
