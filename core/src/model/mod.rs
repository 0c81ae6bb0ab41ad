//! Domain types shared by the agent and the aggregator.
//!
//! These are what both programs compute with and print as JSON. Field names are part of
//! the public interface (operators script against the JSON): they follow node_exporter's
//! names for the same facts (`size_bytes`, `receive_bytes_total` …).
//!
//! Wire conversion: `From<model::X> for pb::X` is infallible; `TryFrom<pb::X> for
//! model::X` validates what arrives from the network and names the offending field.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::pb;

/// Upper bounds on what one report may hold. A real node has tens of mounts and
/// interfaces; these bounds only stop a broken or hostile agent from making the
/// aggregator hold unbounded data.
pub const MAX_FILESYSTEMS: usize = 4096;
/// See [`MAX_FILESYSTEMS`].
pub const MAX_INTERFACES: usize = 4096;
/// See [`MAX_FILESYSTEMS`].
pub const MAX_ERRORS: usize = 256;
/// See [`MAX_FILESYSTEMS`]: pod volume mounts in one report.
pub const MAX_VOLUMES: usize = 4096;
/// See [`MAX_FILESYSTEMS`]: container runtimes in one images summary (a node has one or two).
pub const MAX_RUNTIMES: usize = 8;
/// Longest node name Kubernetes accepts (a DNS subdomain, RFC 1123).
pub const MAX_NODE_NAME_LEN: usize = 253;

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
}

impl NodeReport {
    /// The agent's report interval.
    pub fn report_interval(&self) -> Duration {
        Duration::from_millis(self.report_interval_ms)
    }
}

/// Host-wide figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub kernel_version: String,
    pub os_image: String,
    pub architecture: String,
    pub uptime_seconds: u64,
    pub cpu_count: u32,
    /// Whole-host CPU usage since the previous sample, 0–100.
    pub cpu_usage_percent: f64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub memory_total_bytes: u64,
    /// MemAvailable: the kernel's estimate of memory available without swapping.
    pub memory_available_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
}

/// One filesystem (bind mounts and other mounts of the same device counted once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filesystem {
    /// Mount source as in mountinfo (`/dev/vda1`, `server:/export`).
    pub device: String,
    pub fstype: String,
    /// Shortest mount point of this filesystem.
    pub mountpoint: String,
    /// Every mount point of this filesystem, shortest first.
    pub mountpoints: Vec<String>,
    /// `major:minor` of the filesystem (st_dev), the identity used to de-duplicate.
    pub device_id: String,
    pub read_only: bool,
    pub size_bytes: u64,
    pub free_bytes: u64,
    pub avail_bytes: u64,
    pub files: u64,
    pub files_free: u64,
    /// used / (used + avail) × 100, as `df` computes Use% (reserved blocks excluded).
    pub used_percent: f64,
    /// (files − files_free) / files × 100; absent when the filesystem reports 0 inodes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub files_used_percent: Option<f64>,
    /// statvfs did not answer within the per-mount timeout; the figures are 0.
    pub stale: bool,
}

/// Counters of one network interface, from `/proc/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub device: String,
    pub receive_bytes_total: u64,
    pub receive_packets_total: u64,
    pub receive_errs_total: u64,
    pub receive_drop_total: u64,
    pub transmit_bytes_total: u64,
    pub transmit_packets_total: u64,
    pub transmit_errs_total: u64,
    pub transmit_drop_total: u64,
    /// Per-second rates since the previous sample; absent on the first sample and when a
    /// counter was reset.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rates: Option<NetworkRates>,
    /// A counter went backwards since the previous sample (reset, wrap, re-created
    /// interface): no rate for this interval.
    pub counter_reset: bool,
    /// Operational state from `<sysfs>/class/net/<device>/operstate` (`up`, `down`,
    /// `unknown` …); absent when sysfs does not list the interface.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub operstate: Option<String>,
}

/// Per-second rates of one interface between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkRates {
    pub receive_bytes_per_second: f64,
    pub transmit_bytes_per_second: f64,
    pub receive_packets_per_second: f64,
    pub transmit_packets_per_second: f64,
}

/// What the agent itself costs the node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentCost {
    /// Resident set size of the agent process, in bytes.
    pub rss_bytes: u64,
    /// User + system CPU time of the agent process since it started, in seconds.
    pub cpu_seconds_total: f64,
    /// CPU time the last collection cycle took, in seconds.
    pub last_collection_cpu_seconds: f64,
    /// Wall time the last collection cycle took, in seconds.
    pub last_collection_wall_seconds: f64,
    /// Reports waiting for an ack from the aggregator.
    pub reports_buffered: u64,
    /// Reports dropped unacked because the buffer was full.
    pub reports_dropped_total: u64,
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

/// One pod volume mount: `<kubelet_root>/pods/<pod_uid>/volumes/<plugin>/<name>[/mount]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeMount {
    /// The pod's UID (the directory under `pods/`).
    pub pod_uid: String,
    /// The kubelet's volume plugin directory (`kubernetes.io~csi`, `kubernetes.io~nfs` …).
    pub plugin: String,
    /// The volume directory's name: the PersistentVolume's name for a PV-backed volume
    /// (CSI or in-tree), the pod's volume name for an inline volume.
    pub name: String,
    /// statvfs figures of the mount; `mountpoint` is the mount's full host path.
    pub filesystem: Filesystem,
}

/// Image maintenance on one node: what the runtimes hold and what pruning did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagesSummary {
    /// True unless `images.apply` is set: the daemon only reports what it would remove.
    pub dry_run: bool,
    /// When the agent last listed the runtimes' images.
    pub checked_at: Timestamp,
    /// One entry per runtime the agent reached.
    pub runtimes: Vec<RuntimeImages>,
    /// Problems of the last check (a runtime that does not answer, a failed call).
    pub errors: Vec<CollectorError>,
}

/// The images of one container runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeImages {
    /// `docker` or `containerd`.
    pub runtime: String,
    /// Where the runtime keeps its images, as it names the directory on the host
    /// (`/var/lib/docker`); empty when it could not be asked.
    pub image_fs_mountpoint: String,
    /// 100 − available × 100 / capacity of that filesystem, as the kubelet's image GC
    /// computes it; absent when it could not be measured.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub image_fs_used_percent: Option<f64>,
    /// Images the runtime lists (top-level images, as `docker images`).
    pub images_total: u64,
    /// Images no container (any state) and no pod sandbox references.
    pub images_unused: u64,
    /// Bytes of the unused images, each without the layers it shares with other images
    /// (Docker's SharedSize; the whole size where the runtime does not say).
    pub reclaimable_bytes: u64,
    /// The last prune (scheduled or on disk pressure); absent before the first.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_prune: Option<PruneRun>,
    /// Images really removed since the agent started (dry runs never count).
    pub removed_total: u64,
    /// Bytes those removals freed (measured when possible, else estimated), in bytes.
    pub removed_bytes_total: u64,
}

/// Why a prune ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PruneTrigger {
    /// The age prune, every `images.prune_interval`.
    Schedule,
    /// The image filesystem was at or above `images.high_threshold_percent`.
    DiskPressure,
}

/// One prune of one runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneRun {
    pub started_at: Timestamp,
    pub trigger: PruneTrigger,
    /// Nothing was removed; `removed` and `removed_bytes` say what would have been.
    pub dry_run: bool,
    /// Images removed (in a dry run: that would have been).
    pub removed: u64,
    /// Bytes freed: measured when applied and measurable, else the estimate.
    pub removed_bytes: u64,
    /// Images kept, by reason.
    pub kept: KeptCounts,
    /// Removals that failed for another reason than the image being in use.
    pub failed: u64,
    /// An age prune due outside the maintenance window ran as a dry run; the removals wait
    /// until the window opens at this time. Disk-pressure prunes never wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for_window_until: Option<Timestamp>,
}

/// Images kept by a prune, by the planner's reason (`kept:<reason>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptCounts {
    pub in_use: u64,
    pub pinned: u64,
    pub young: u64,
    pub keep_list: u64,
    pub below_threshold: u64,
}

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

/// Log rotation on one node: the last pass, totals since the agent started, and what
/// the retention rules could delete now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsSummary {
    /// When the last pass (rotation check plus any retention sweep due) ended.
    pub checked_at: Timestamp,
    /// What the last pass did; most passes find nothing due and are all zero.
    pub last_pass: LogCounts,
    /// Sums over every pass since the agent started.
    pub totals: LogCounts,
    /// Bytes (allocated blocks of files with one link) that the retention rules
    /// (`logs.retention`) would delete now: rotated and compressed logs past their age.
    pub reclaimable_bytes: u64,
    /// When `reclaimable_bytes` was measured (a dry run of the retention rules); absent
    /// without retention rules.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reclaimable_at: Option<Timestamp>,
    /// Problems of the last pass, then config problems, each with its place
    /// (`file:line`, log path or glob); at most [`MAX_ERRORS`].
    pub errors: Vec<CollectorError>,
}

/// Counts and bytes of log maintenance (one pass, or totals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCounts {
    /// Logs looked at.
    pub files_checked: u64,
    /// Logs rotated (renamed or copied to an archive).
    pub rotated: u64,
    /// Sizes of the logs rotated, in bytes.
    pub rotated_bytes: u64,
    /// Archives compressed.
    pub compressed: u64,
    /// Their size before compression, in bytes.
    pub compressed_bytes_before: u64,
    /// Their size after compression, in bytes.
    pub compressed_bytes_after: u64,
    /// Files deleted: archives beyond `rotate N` or `maxage`, and retention sweeps.
    pub deleted: u64,
    /// Sizes of the files deleted, in bytes.
    pub deleted_bytes: u64,
    /// Failures (a log that could not be rotated, a file a sweep could not delete …).
    pub errors: u64,
}

impl LogCounts {
    /// Adds `other` to these counts (saturating).
    pub fn add(&mut self, other: &LogCounts) {
        self.files_checked = self.files_checked.saturating_add(other.files_checked);
        self.rotated = self.rotated.saturating_add(other.rotated);
        self.rotated_bytes = self.rotated_bytes.saturating_add(other.rotated_bytes);
        self.compressed = self.compressed.saturating_add(other.compressed);
        self.compressed_bytes_before = self
            .compressed_bytes_before
            .saturating_add(other.compressed_bytes_before);
        self.compressed_bytes_after = self
            .compressed_bytes_after
            .saturating_add(other.compressed_bytes_after);
        self.deleted = self.deleted.saturating_add(other.deleted);
        self.deleted_bytes = self.deleted_bytes.saturating_add(other.deleted_bytes);
        self.errors = self.errors.saturating_add(other.errors);
    }

    /// The first field where `self` is larger than `total` (a pass larger than the totals
    /// that include it), with both values.
    fn first_above(&self, total: &LogCounts) -> Option<(&'static str, u64, u64)> {
        [
            ("files_checked", self.files_checked, total.files_checked),
            ("rotated", self.rotated, total.rotated),
            ("rotated_bytes", self.rotated_bytes, total.rotated_bytes),
            ("compressed", self.compressed, total.compressed),
            (
                "compressed_bytes_before",
                self.compressed_bytes_before,
                total.compressed_bytes_before,
            ),
            (
                "compressed_bytes_after",
                self.compressed_bytes_after,
                total.compressed_bytes_after,
            ),
            ("deleted", self.deleted, total.deleted),
            ("deleted_bytes", self.deleted_bytes, total.deleted_bytes),
            ("errors", self.errors, total.errors),
        ]
        .into_iter()
        .find(|(_, a, b)| a > b)
    }
}

/// A wire message that cannot become a domain value; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidMessage {
    /// Dotted path of the field (`filesystems[3].used_percent`).
    pub field: String,
    pub reason: String,
}

impl InvalidMessage {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn within(self, prefix: &str) -> Self {
        Self {
            field: format!("{prefix}.{}", self.field),
            reason: self.reason,
        }
    }
}

fn ts_to_pb(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

fn ts_from_pb(t: Option<prost_types::Timestamp>, field: &str) -> Result<Timestamp, InvalidMessage> {
    let t = t.ok_or_else(|| InvalidMessage::new(field, "missing"))?;
    Timestamp::new(t.seconds, t.nanos).map_err(|e| InvalidMessage::new(field, e.to_string()))
}

fn finite(v: f64, field: &str) -> Result<f64, InvalidMessage> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(InvalidMessage::new(
            field,
            format!("{v} is not a finite number"),
        ))
    }
}

fn percent(v: f64, field: &str) -> Result<f64, InvalidMessage> {
    let v = finite(v, field)?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(InvalidMessage::new(
            field,
            format!("{v} is outside 0..=100"),
        ))
    }
}

fn non_negative(v: f64, field: &str) -> Result<f64, InvalidMessage> {
    let v = finite(v, field)?;
    if v >= 0.0 {
        Ok(v)
    } else {
        Err(InvalidMessage::new(field, format!("{v} is negative")))
    }
}

fn bounded<T>(v: Vec<T>, max: usize, field: &str) -> Result<Vec<T>, InvalidMessage> {
    if v.len() <= max {
        Ok(v)
    } else {
        Err(InvalidMessage::new(
            field,
            format!("{} entries, at most {max} allowed", v.len()),
        ))
    }
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
        })
    }
}

impl From<Host> for pb::Host {
    fn from(h: Host) -> Self {
        Self {
            kernel_version: h.kernel_version,
            os_image: h.os_image,
            architecture: h.architecture,
            uptime_seconds: h.uptime_seconds,
            cpu_count: h.cpu_count,
            cpu_usage_percent: h.cpu_usage_percent,
            load1: h.load1,
            load5: h.load5,
            load15: h.load15,
            memory_total_bytes: h.memory_total_bytes,
            memory_available_bytes: h.memory_available_bytes,
            swap_total_bytes: h.swap_total_bytes,
            swap_free_bytes: h.swap_free_bytes,
        }
    }
}

impl TryFrom<pb::Host> for Host {
    type Error = InvalidMessage;

    fn try_from(h: pb::Host) -> Result<Self, Self::Error> {
        Ok(Self {
            cpu_usage_percent: percent(h.cpu_usage_percent, "cpu_usage_percent")?,
            load1: non_negative(h.load1, "load1")?,
            load5: non_negative(h.load5, "load5")?,
            load15: non_negative(h.load15, "load15")?,
            kernel_version: h.kernel_version,
            os_image: h.os_image,
            architecture: h.architecture,
            uptime_seconds: h.uptime_seconds,
            cpu_count: h.cpu_count,
            memory_total_bytes: h.memory_total_bytes,
            memory_available_bytes: h.memory_available_bytes,
            swap_total_bytes: h.swap_total_bytes,
            swap_free_bytes: h.swap_free_bytes,
        })
    }
}

impl From<Filesystem> for pb::Filesystem {
    fn from(f: Filesystem) -> Self {
        Self {
            device: f.device,
            fstype: f.fstype,
            mountpoint: f.mountpoint,
            device_id: f.device_id,
            read_only: f.read_only,
            size_bytes: f.size_bytes,
            free_bytes: f.free_bytes,
            avail_bytes: f.avail_bytes,
            files: f.files,
            files_free: f.files_free,
            used_percent: f.used_percent,
            files_used_percent: f.files_used_percent,
            stale: f.stale,
            mountpoints: f.mountpoints,
        }
    }
}

impl TryFrom<pb::Filesystem> for Filesystem {
    type Error = InvalidMessage;

    fn try_from(f: pb::Filesystem) -> Result<Self, Self::Error> {
        if f.mountpoint.is_empty() {
            return Err(InvalidMessage::new("mountpoint", "empty"));
        }
        Ok(Self {
            used_percent: percent(f.used_percent, "used_percent")?,
            files_used_percent: f
                .files_used_percent
                .map(|p| percent(p, "files_used_percent"))
                .transpose()?,
            device: f.device,
            fstype: f.fstype,
            mountpoint: f.mountpoint,
            mountpoints: f.mountpoints,
            device_id: f.device_id,
            read_only: f.read_only,
            size_bytes: f.size_bytes,
            free_bytes: f.free_bytes,
            avail_bytes: f.avail_bytes,
            files: f.files,
            files_free: f.files_free,
            stale: f.stale,
        })
    }
}

impl From<NetworkInterface> for pb::NetworkInterface {
    fn from(n: NetworkInterface) -> Self {
        Self {
            device: n.device,
            receive_bytes_total: n.receive_bytes_total,
            receive_packets_total: n.receive_packets_total,
            receive_errs_total: n.receive_errs_total,
            receive_drop_total: n.receive_drop_total,
            transmit_bytes_total: n.transmit_bytes_total,
            transmit_packets_total: n.transmit_packets_total,
            transmit_errs_total: n.transmit_errs_total,
            transmit_drop_total: n.transmit_drop_total,
            receive_bytes_per_second: n.rates.map(|r| r.receive_bytes_per_second),
            transmit_bytes_per_second: n.rates.map(|r| r.transmit_bytes_per_second),
            receive_packets_per_second: n.rates.map(|r| r.receive_packets_per_second),
            transmit_packets_per_second: n.rates.map(|r| r.transmit_packets_per_second),
            counter_reset: n.counter_reset,
            operstate: n.operstate.unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::NetworkInterface> for NetworkInterface {
    type Error = InvalidMessage;

    fn try_from(n: pb::NetworkInterface) -> Result<Self, Self::Error> {
        if n.device.is_empty() {
            return Err(InvalidMessage::new("device", "empty"));
        }
        let rates = match (
            n.receive_bytes_per_second,
            n.transmit_bytes_per_second,
            n.receive_packets_per_second,
            n.transmit_packets_per_second,
        ) {
            (None, None, None, None) => None,
            (Some(rb), Some(tb), Some(rp), Some(tp)) => Some(NetworkRates {
                receive_bytes_per_second: non_negative(rb, "receive_bytes_per_second")?,
                transmit_bytes_per_second: non_negative(tb, "transmit_bytes_per_second")?,
                receive_packets_per_second: non_negative(rp, "receive_packets_per_second")?,
                transmit_packets_per_second: non_negative(tp, "transmit_packets_per_second")?,
            }),
            _ => {
                return Err(InvalidMessage::new(
                    "receive_bytes_per_second",
                    "rates must be all present or all absent",
                ));
            }
        };
        Ok(Self {
            device: n.device,
            receive_bytes_total: n.receive_bytes_total,
            receive_packets_total: n.receive_packets_total,
            receive_errs_total: n.receive_errs_total,
            receive_drop_total: n.receive_drop_total,
            transmit_bytes_total: n.transmit_bytes_total,
            transmit_packets_total: n.transmit_packets_total,
            transmit_errs_total: n.transmit_errs_total,
            transmit_drop_total: n.transmit_drop_total,
            rates,
            counter_reset: n.counter_reset,
            operstate: (!n.operstate.is_empty()).then_some(n.operstate),
        })
    }
}

impl From<AgentCost> for pb::AgentCost {
    fn from(a: AgentCost) -> Self {
        Self {
            rss_bytes: a.rss_bytes,
            cpu_seconds_total: a.cpu_seconds_total,
            last_collection_cpu_seconds: a.last_collection_cpu_seconds,
            last_collection_wall_seconds: a.last_collection_wall_seconds,
            reports_buffered: a.reports_buffered,
            reports_dropped_total: a.reports_dropped_total,
        }
    }
}

impl TryFrom<pb::AgentCost> for AgentCost {
    type Error = InvalidMessage;

    fn try_from(a: pb::AgentCost) -> Result<Self, Self::Error> {
        Ok(Self {
            rss_bytes: a.rss_bytes,
            cpu_seconds_total: non_negative(a.cpu_seconds_total, "cpu_seconds_total")?,
            last_collection_cpu_seconds: non_negative(
                a.last_collection_cpu_seconds,
                "last_collection_cpu_seconds",
            )?,
            last_collection_wall_seconds: non_negative(
                a.last_collection_wall_seconds,
                "last_collection_wall_seconds",
            )?,
            reports_buffered: a.reports_buffered,
            reports_dropped_total: a.reports_dropped_total,
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

fn non_empty(v: String, field: &str) -> Result<String, InvalidMessage> {
    if v.is_empty() {
        Err(InvalidMessage::new(field, "empty"))
    } else {
        Ok(v)
    }
}

impl From<VolumeMount> for pb::VolumeMount {
    fn from(v: VolumeMount) -> Self {
        Self {
            pod_uid: v.pod_uid,
            plugin: v.plugin,
            name: v.name,
            filesystem: Some(v.filesystem.into()),
        }
    }
}

impl TryFrom<pb::VolumeMount> for VolumeMount {
    type Error = InvalidMessage;

    fn try_from(v: pb::VolumeMount) -> Result<Self, Self::Error> {
        let fs = v
            .filesystem
            .ok_or_else(|| InvalidMessage::new("filesystem", "missing"))?;
        Ok(Self {
            pod_uid: non_empty(v.pod_uid, "pod_uid")?,
            plugin: non_empty(v.plugin, "plugin")?,
            name: non_empty(v.name, "name")?,
            filesystem: Filesystem::try_from(fs).map_err(|e| e.within("filesystem"))?,
        })
    }
}

impl From<ImagesSummary> for pb::ImagesSummary {
    fn from(s: ImagesSummary) -> Self {
        Self {
            dry_run: s.dry_run,
            checked_at: Some(ts_to_pb(s.checked_at)),
            runtimes: s.runtimes.into_iter().map(Into::into).collect(),
            errors: s.errors.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<pb::ImagesSummary> for ImagesSummary {
    type Error = InvalidMessage;

    fn try_from(s: pb::ImagesSummary) -> Result<Self, Self::Error> {
        Ok(Self {
            dry_run: s.dry_run,
            checked_at: ts_from_pb(s.checked_at, "checked_at")?,
            runtimes: bounded(s.runtimes, MAX_RUNTIMES, "runtimes")?
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    RuntimeImages::try_from(r).map_err(|e| e.within(&format!("runtimes[{i}]")))
                })
                .collect::<Result<_, _>>()?,
            errors: bounded(s.errors, MAX_ERRORS, "errors")?
                .into_iter()
                .map(Into::into)
                .collect(),
        })
    }
}

impl From<RuntimeImages> for pb::RuntimeImages {
    fn from(r: RuntimeImages) -> Self {
        Self {
            runtime: r.runtime,
            image_fs_mountpoint: r.image_fs_mountpoint,
            image_fs_used_percent: r.image_fs_used_percent,
            images_total: r.images_total,
            images_unused: r.images_unused,
            reclaimable_bytes: r.reclaimable_bytes,
            last_prune: r.last_prune.map(Into::into),
            removed_total: r.removed_total,
            removed_bytes_total: r.removed_bytes_total,
        }
    }
}

impl TryFrom<pb::RuntimeImages> for RuntimeImages {
    type Error = InvalidMessage;

    fn try_from(r: pb::RuntimeImages) -> Result<Self, Self::Error> {
        if r.images_unused > r.images_total {
            return Err(InvalidMessage::new(
                "images_unused",
                format!(
                    "{} is more than images_total {}",
                    r.images_unused, r.images_total
                ),
            ));
        }
        Ok(Self {
            runtime: non_empty(r.runtime, "runtime")?,
            image_fs_used_percent: r
                .image_fs_used_percent
                .map(|p| percent(p, "image_fs_used_percent"))
                .transpose()?,
            last_prune: r
                .last_prune
                .map(|p| PruneRun::try_from(p).map_err(|e| e.within("last_prune")))
                .transpose()?,
            image_fs_mountpoint: r.image_fs_mountpoint,
            images_total: r.images_total,
            images_unused: r.images_unused,
            reclaimable_bytes: r.reclaimable_bytes,
            removed_total: r.removed_total,
            removed_bytes_total: r.removed_bytes_total,
        })
    }
}

impl From<PruneTrigger> for pb::PruneTrigger {
    fn from(t: PruneTrigger) -> Self {
        match t {
            PruneTrigger::Schedule => pb::PruneTrigger::Schedule,
            PruneTrigger::DiskPressure => pb::PruneTrigger::DiskPressure,
        }
    }
}

impl From<PruneRun> for pb::PruneRun {
    fn from(p: PruneRun) -> Self {
        Self {
            started_at: Some(ts_to_pb(p.started_at)),
            trigger: pb::PruneTrigger::from(p.trigger) as i32,
            dry_run: p.dry_run,
            removed: p.removed,
            removed_bytes: p.removed_bytes,
            kept: Some(p.kept.into()),
            failed: p.failed,
            waiting_for_window_until: p.waiting_for_window_until.map(ts_to_pb),
        }
    }
}

impl TryFrom<pb::PruneRun> for PruneRun {
    type Error = InvalidMessage;

    fn try_from(p: pb::PruneRun) -> Result<Self, Self::Error> {
        let trigger = match pb::PruneTrigger::try_from(p.trigger) {
            Ok(pb::PruneTrigger::Schedule) => PruneTrigger::Schedule,
            Ok(pb::PruneTrigger::DiskPressure) => PruneTrigger::DiskPressure,
            _ => {
                return Err(InvalidMessage::new(
                    "trigger",
                    format!("unknown value {}", p.trigger),
                ));
            }
        };
        Ok(Self {
            started_at: ts_from_pb(p.started_at, "started_at")?,
            trigger,
            dry_run: p.dry_run,
            removed: p.removed,
            removed_bytes: p.removed_bytes,
            kept: p.kept.map(Into::into).unwrap_or_default(),
            failed: p.failed,
            waiting_for_window_until: p
                .waiting_for_window_until
                .map(|t| ts_from_pb(Some(t), "waiting_for_window_until"))
                .transpose()?,
        })
    }
}

impl From<KeptCounts> for pb::KeptCounts {
    fn from(k: KeptCounts) -> Self {
        Self {
            in_use: k.in_use,
            pinned: k.pinned,
            young: k.young,
            keep_list: k.keep_list,
            below_threshold: k.below_threshold,
        }
    }
}

impl From<pb::KeptCounts> for KeptCounts {
    fn from(k: pb::KeptCounts) -> Self {
        Self {
            in_use: k.in_use,
            pinned: k.pinned,
            young: k.young,
            keep_list: k.keep_list,
            below_threshold: k.below_threshold,
        }
    }
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

impl From<LogsSummary> for pb::LogsSummary {
    fn from(s: LogsSummary) -> Self {
        Self {
            checked_at: Some(ts_to_pb(s.checked_at)),
            last_pass: Some(s.last_pass.into()),
            totals: Some(s.totals.into()),
            reclaimable_bytes: s.reclaimable_bytes,
            reclaimable_at: s.reclaimable_at.map(ts_to_pb),
            errors: s.errors.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<pb::LogsSummary> for LogsSummary {
    type Error = InvalidMessage;

    fn try_from(s: pb::LogsSummary) -> Result<Self, Self::Error> {
        let last_pass: LogCounts = s
            .last_pass
            .ok_or_else(|| InvalidMessage::new("last_pass", "missing"))?
            .into();
        let totals: LogCounts = s
            .totals
            .ok_or_else(|| InvalidMessage::new("totals", "missing"))?
            .into();
        if let Some((field, pass, total)) = last_pass.first_above(&totals) {
            return Err(InvalidMessage::new(
                format!("last_pass.{field}"),
                format!("{pass} is more than totals.{field} {total}"),
            ));
        }
        Ok(Self {
            checked_at: ts_from_pb(s.checked_at, "checked_at")?,
            reclaimable_at: s
                .reclaimable_at
                .map(|t| ts_from_pb(Some(t), "reclaimable_at"))
                .transpose()?,
            errors: bounded(s.errors, MAX_ERRORS, "errors")?
                .into_iter()
                .map(Into::into)
                .collect(),
            last_pass,
            totals,
            reclaimable_bytes: s.reclaimable_bytes,
        })
    }
}

impl From<LogCounts> for pb::LogCounts {
    fn from(c: LogCounts) -> Self {
        Self {
            files_checked: c.files_checked,
            rotated: c.rotated,
            rotated_bytes: c.rotated_bytes,
            compressed: c.compressed,
            compressed_bytes_before: c.compressed_bytes_before,
            compressed_bytes_after: c.compressed_bytes_after,
            deleted: c.deleted,
            deleted_bytes: c.deleted_bytes,
            errors: c.errors,
        }
    }
}

impl From<pb::LogCounts> for LogCounts {
    fn from(c: pb::LogCounts) -> Self {
        Self {
            files_checked: c.files_checked,
            rotated: c.rotated,
            rotated_bytes: c.rotated_bytes,
            compressed: c.compressed,
            compressed_bytes_before: c.compressed_bytes_before,
            compressed_bytes_after: c.compressed_bytes_after,
            deleted: c.deleted,
            deleted_bytes: c.deleted_bytes,
            errors: c.errors,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_report() -> NodeReport {
        NodeReport {
            node_name: "node-a".into(),
            epoch: 1_700_000_000_000_000_000,
            seq: 7,
            collected_at: "2026-11-29T03:00:00Z".parse().unwrap(),
            report_interval_ms: 10_000,
            host: Host {
                cpu_count: 2,
                cpu_usage_percent: 12.5,
                memory_total_bytes: 1 << 30,
                ..Host::default()
            },
            filesystems: vec![Filesystem {
                device: "/dev/vda".into(),
                fstype: "ext4".into(),
                mountpoint: "/".into(),
                mountpoints: vec!["/".into(), "/mnt/bind".into()],
                device_id: "254:0".into(),
                read_only: false,
                size_bytes: 1000,
                free_bytes: 400,
                avail_bytes: 300,
                files: 0,
                files_free: 0,
                used_percent: 66.66666666666667,
                files_used_percent: None,
                stale: false,
            }],
            network: vec![NetworkInterface {
                device: "eth0".into(),
                receive_bytes_total: 10,
                rates: Some(NetworkRates {
                    receive_bytes_per_second: 1.5,
                    ..NetworkRates::default()
                }),
                ..NetworkInterface::default()
            }],
            agent: AgentCost {
                rss_bytes: 5 << 20,
                cpu_seconds_total: 0.25,
                ..AgentCost::default()
            },
            logs: Some(sample_logs()),
            errors: vec![CollectorError {
                collector: "network".into(),
                place: "/proc/net/dev:3".into(),
                message: "x".into(),
            }],
            images: Some(sample_images()),
            volumes: vec![sample_volume()],
        }
    }

    pub(crate) fn sample_images() -> ImagesSummary {
        ImagesSummary {
            dry_run: true,
            checked_at: "2026-11-29T02:59:30Z".parse().unwrap(),
            runtimes: vec![RuntimeImages {
                runtime: "docker".into(),
                image_fs_mountpoint: "/var/lib/docker".into(),
                image_fs_used_percent: Some(87.5),
                images_total: 12,
                images_unused: 5,
                reclaimable_bytes: 3 << 30,
                last_prune: Some(PruneRun {
                    started_at: "2026-11-29T02:00:00Z".parse().unwrap(),
                    trigger: PruneTrigger::DiskPressure,
                    dry_run: true,
                    removed: 3,
                    removed_bytes: 2 << 30,
                    kept: KeptCounts {
                        in_use: 7,
                        pinned: 0,
                        young: 1,
                        keep_list: 1,
                        below_threshold: 0,
                    },
                    failed: 0,
                    waiting_for_window_until: None,
                }),
                removed_total: 0,
                removed_bytes_total: 0,
            }],
            errors: vec![CollectorError {
                collector: "images".into(),
                place: "/run/containerd/containerd.sock".into(),
                message: "cannot connect".into(),
            }],
        }
    }

    pub(crate) fn sample_volume() -> VolumeMount {
        let mp = "/var/lib/kubelet/pods/0b1c-22/volumes/kubernetes.io~csi/pvc-123/mount";
        VolumeMount {
            pod_uid: "0b1c-22".into(),
            plugin: "kubernetes.io~csi".into(),
            name: "pvc-123".into(),
            filesystem: Filesystem {
                device: "/dev/rbd0".into(),
                fstype: "ext4".into(),
                mountpoint: mp.into(),
                mountpoints: vec![mp.into()],
                device_id: "252:0".into(),
                read_only: false,
                size_bytes: 10 << 30,
                free_bytes: 4 << 30,
                avail_bytes: 4 << 30,
                files: 100,
                files_free: 90,
                used_percent: 60.0,
                files_used_percent: Some(10.0),
                stale: false,
            },
        }
    }

    #[test]
    fn node_report_round_trips_through_the_wire_type() {
        let r = sample_report();
        let back = NodeReport::try_from(pb::NodeReport::from(r.clone())).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_report_without_images_and_volumes_round_trips_and_old_json_still_parses() {
        let mut r = sample_report();
        r.images = None;
        r.volumes.clear();
        let wire = pb::NodeReport::from(r.clone());
        assert_eq!((wire.images.is_none(), wire.volumes.len()), (true, 0));
        assert_eq!(NodeReport::try_from(wire).unwrap(), r);
        // JSON written before these fields existed.
        let mut v = serde_json::to_value(&r).unwrap();
        let obj = v.as_object_mut().unwrap();
        assert!(obj.get("images").is_none());
        obj.remove("volumes");
        let back: NodeReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn invalid_images_and_volumes_are_rejected_naming_the_field() {
        let cases: Vec<(Box<dyn Fn(&mut pb::NodeReport)>, &str, &str)> = vec![
            (
                Box::new(|p| {
                    p.images.as_mut().unwrap().runtimes[0].image_fs_used_percent = Some(101.0)
                }),
                "images.runtimes[0].image_fs_used_percent",
                "101 is outside 0..=100",
            ),
            (
                Box::new(|p| p.images.as_mut().unwrap().runtimes[0].images_unused = 13),
                "images.runtimes[0].images_unused",
                "13 is more than images_total 12",
            ),
            (
                Box::new(|p| p.images.as_mut().unwrap().runtimes[0].runtime.clear()),
                "images.runtimes[0].runtime",
                "empty",
            ),
            (
                Box::new(|p| {
                    p.images.as_mut().unwrap().runtimes[0]
                        .last_prune
                        .as_mut()
                        .unwrap()
                        .trigger = 9
                }),
                "images.runtimes[0].last_prune.trigger",
                "unknown value 9",
            ),
            (
                Box::new(|p| {
                    p.images.as_mut().unwrap().runtimes[0]
                        .last_prune
                        .as_mut()
                        .unwrap()
                        .trigger = 0
                }),
                "images.runtimes[0].last_prune.trigger",
                "unknown value 0",
            ),
            (
                Box::new(|p| p.images.as_mut().unwrap().checked_at = None),
                "images.checked_at",
                "missing",
            ),
            (
                Box::new(|p| {
                    let r = p.images.as_ref().unwrap().runtimes[0].clone();
                    p.images.as_mut().unwrap().runtimes = vec![r; MAX_RUNTIMES + 1];
                }),
                "images.runtimes",
                "9 entries, at most 8 allowed",
            ),
            (
                Box::new(|p| p.volumes[0].name.clear()),
                "volumes[0].name",
                "empty",
            ),
            (
                Box::new(|p| p.volumes[0].pod_uid.clear()),
                "volumes[0].pod_uid",
                "empty",
            ),
            (
                Box::new(|p| p.volumes[0].filesystem = None),
                "volumes[0].filesystem",
                "missing",
            ),
            (
                Box::new(|p| p.volumes[0].filesystem.as_mut().unwrap().used_percent = -1.0),
                "volumes[0].filesystem.used_percent",
                "-1 is outside 0..=100",
            ),
        ];
        for (break_it, field, reason) in cases {
            let mut p = pb::NodeReport::from(sample_report());
            break_it(&mut p);
            let err = NodeReport::try_from(p).unwrap_err();
            assert_eq!((err.field.as_str(), err.reason.as_str()), (field, reason));
        }
    }

    #[test]
    fn images_and_volumes_json_use_snake_case_names() {
        let v = serde_json::to_value(sample_report()).unwrap();
        let rt = &v["images"]["runtimes"][0];
        assert_eq!(v["images"]["dry_run"], true);
        assert_eq!(v["images"]["checked_at"], "2026-11-29T02:59:30Z");
        assert_eq!(rt["runtime"], "docker");
        assert_eq!(rt["image_fs_mountpoint"], "/var/lib/docker");
        assert_eq!(rt["image_fs_used_percent"], 87.5);
        assert_eq!(
            (rt["images_total"].as_u64(), rt["images_unused"].as_u64()),
            (Some(12), Some(5))
        );
        assert_eq!(rt["reclaimable_bytes"], 3u64 << 30);
        assert_eq!(rt["last_prune"]["trigger"], "disk_pressure");
        assert_eq!(rt["last_prune"]["kept"]["in_use"], 7);
        assert_eq!(rt["last_prune"]["kept"]["keep_list"], 1);
        assert_eq!(rt["removed_bytes_total"], 0);
        let vol = &v["volumes"][0];
        assert_eq!(
            (
                vol["pod_uid"].as_str(),
                vol["plugin"].as_str(),
                vol["name"].as_str()
            ),
            (Some("0b1c-22"), Some("kubernetes.io~csi"), Some("pvc-123"))
        );
        assert_eq!(vol["filesystem"]["size_bytes"], 10u64 << 30);
        let back: NodeReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, sample_report());
    }

    #[test]
    fn nan_percentage_is_rejected_naming_the_field() {
        let mut p = pb::NodeReport::from(sample_report());
        p.filesystems[0].used_percent = f64::NAN;
        let err = NodeReport::try_from(p).unwrap_err();
        assert_eq!(err.field, "filesystems[0].used_percent");
        assert_eq!(
            err.to_string(),
            "invalid filesystems[0].used_percent: NaN is not a finite number"
        );
    }

    #[test]
    fn partial_rates_are_rejected() {
        let mut p = pb::NodeReport::from(sample_report());
        p.network[0].transmit_bytes_per_second = None;
        let err = NodeReport::try_from(p).unwrap_err();
        assert_eq!(err.field, "network[0].receive_bytes_per_second");
    }

    #[test]
    fn bad_node_names_are_rejected() {
        assert!(validate_node_name("node-1.example").is_ok());
        assert_eq!(validate_node_name("").unwrap_err().reason, "empty");
        assert!(validate_node_name("a/b").is_err());
        assert!(validate_node_name("a b").is_err());
        assert!(validate_node_name(&"x".repeat(254)).is_err());
    }

    #[test]
    fn json_uses_node_exporter_names_and_omits_absent_inode_percent() {
        let v = serde_json::to_value(sample_report()).unwrap();
        let fs = &v["filesystems"][0];
        for k in [
            "device",
            "fstype",
            "mountpoint",
            "size_bytes",
            "free_bytes",
            "avail_bytes",
            "files",
            "files_free",
            "used_percent",
        ] {
            assert!(fs.get(k).is_some(), "missing {k}");
        }
        assert!(fs.get("files_used_percent").is_none());
        assert_eq!(v["network"][0]["receive_bytes_total"], 10);
        assert_eq!(v["network"][0]["rates"]["receive_bytes_per_second"], 1.5);
        assert_eq!(v["collected_at"], "2026-11-29T03:00:00Z");
    }

    pub(crate) fn sample_logs() -> LogsSummary {
        let pass = LogCounts {
            files_checked: 40,
            rotated: 2,
            rotated_bytes: 300 << 20,
            compressed: 2,
            compressed_bytes_before: 300 << 20,
            compressed_bytes_after: 30 << 20,
            deleted: 1,
            deleted_bytes: 20 << 20,
            errors: 1,
        };
        let mut totals = pass;
        totals.add(&LogCounts {
            files_checked: 4000,
            rotated: 10,
            rotated_bytes: 1 << 30,
            deleted: 3,
            errors: 1,
            ..LogCounts::default()
        });
        LogsSummary {
            checked_at: "2026-11-29T02:59:50Z".parse().unwrap(),
            last_pass: pass,
            totals,
            reclaimable_bytes: 700 << 20,
            reclaimable_at: Some("2026-11-29T02:59:00Z".parse().unwrap()),
            errors: vec![CollectorError {
                collector: "logs".into(),
                place: "/etc/logrotate.d/app:3".into(),
                message: "unknown directive \"rotat\"".into(),
            }],
        }
    }

    #[test]
    fn logs_summary_round_trips_and_a_report_without_it_still_parses() {
        let r = sample_report();
        assert_eq!(
            NodeReport::try_from(pb::NodeReport::from(r.clone())).unwrap(),
            r
        );
        let mut without = r.clone();
        without.logs = None;
        let wire = pb::NodeReport::from(without.clone());
        assert!(wire.logs.is_none());
        assert_eq!(NodeReport::try_from(wire).unwrap(), without);
        // JSON written before the field existed.
        let v = serde_json::to_value(&without).unwrap();
        assert!(v.get("logs").is_none());
        assert_eq!(serde_json::from_value::<NodeReport>(v).unwrap(), without);
    }

    #[test]
    fn invalid_logs_summaries_are_rejected_naming_the_field() {
        let cases: Vec<(Box<dyn Fn(&mut pb::LogsSummary)>, &str, &str)> = vec![
            (
                Box::new(|l| l.checked_at = None),
                "logs.checked_at",
                "missing",
            ),
            (Box::new(|l| l.totals = None), "logs.totals", "missing"),
            (
                Box::new(|l| l.last_pass = None),
                "logs.last_pass",
                "missing",
            ),
            (
                Box::new(|l| l.last_pass.as_mut().unwrap().rotated = 13),
                "logs.last_pass.rotated",
                "13 is more than totals.rotated 12",
            ),
            (
                Box::new(|l| l.errors = vec![l.errors[0].clone(); MAX_ERRORS + 1]),
                "logs.errors",
                "257 entries, at most 256 allowed",
            ),
            (
                Box::new(|l| {
                    l.reclaimable_at = Some(prost_types::Timestamp {
                        seconds: i64::MAX,
                        nanos: 0,
                    })
                }),
                "logs.reclaimable_at",
                "",
            ),
        ];
        for (break_it, field, reason) in cases {
            let mut p = pb::NodeReport::from(sample_report());
            break_it(p.logs.as_mut().unwrap());
            let err = NodeReport::try_from(p).unwrap_err();
            assert_eq!(err.field, field);
            assert!(err.reason.starts_with(reason), "{field}: {}", err.reason);
        }
    }

    #[test]
    fn logs_json_uses_snake_case_names() {
        let v = serde_json::to_value(sample_report()).unwrap();
        let l = &v["logs"];
        assert_eq!(l["checked_at"], "2026-11-29T02:59:50Z");
        assert_eq!(l["reclaimable_bytes"], 700u64 << 20);
        assert_eq!(l["reclaimable_at"], "2026-11-29T02:59:00Z");
        let p = &l["last_pass"];
        for (k, want) in [
            ("files_checked", 40u64),
            ("rotated", 2),
            ("rotated_bytes", 300 << 20),
            ("compressed", 2),
            ("compressed_bytes_before", 300 << 20),
            ("compressed_bytes_after", 30 << 20),
            ("deleted", 1),
            ("deleted_bytes", 20 << 20),
            ("errors", 1),
        ] {
            assert_eq!(p[k].as_u64(), Some(want), "last_pass.{k}");
        }
        assert_eq!(l["totals"]["rotated"], 12);
        assert_eq!(l["totals"]["files_checked"], 4040);
        assert_eq!(l["errors"][0]["place"], "/etc/logrotate.d/app:3");
        assert_eq!(l["errors"][0]["collector"], "logs");
    }
}
