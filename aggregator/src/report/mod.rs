//! The merged cluster report: every node's latest agent report joined with the latest
//! round of cluster checks, cleanup proposals and external signals, with an overall
//! status, a score, and cross-links that no single tool shows (a node near disk pressure
//! with what its agent could reclaim and the kubelet's events about it).
//!
//! # Layout
//! - this file: the report's types (their JSON is public: `schema_version` 2) and
//!   [`merge`], a pure function of its inputs.
//! - [`score`]: the status and the 0–100 score (Popeye's model: the healthy share of each
//!   check's objects, weighted by severity; the overall score is the mean of the parts).
//! - [`mod@render`]: terminal table and Markdown maintenance record.
//! - [`html`]: the report page (`GET /report`, `--output html`).
//! - [`logcheck`]: the agents' log check summaries merged (top containers, `log_check` check).
//!
//! # JSON schema (version 2)
//! ```text
//! { schema_version: 2, generated_at: RFC 3339, status: ok|info|warning|critical, score: 0..100,
//!   nodes: [{node_name, freshness: fresh|stale|missing, received_at?, reports_stored_total, report?}],
//!   checks_at?: RFC 3339, checks: [{name, severity, status, summary, findings: [{code, severity, object, message, at?, remedy?, times?, labels?}]}],
//!   proposals: [{code, object, action, propagation?, message, times?, labels?}],
//!   signals?: {endpoints: [...], prometheus?: {...}, alerts?: {firing, silenced, inhibited}},
//!   disk_pressure: [{node_name, mountpoint, used_percent, level: near|pressure, reclaimable_bytes?, events: [...]}],
//!   log_check?: {nodes_checked, oldest_check, patterns, top: [{node_name, pattern, namespace, pod, container, count, previous_count, sample?}], bytes_read, errors},
//!   findings: [{key, check, code, severity, object, message, first_seen, last_seen, flaps}],
//!   chart_updates?: {checked_at, releases: [{namespace, release, chart, version, repository?, patch?, minor?, major?, latest?, note?}], repositories: [{name, url, charts_found, fetched_at?, error?}]},
//!   recommendations?: {rule, window_days, min_samples, waiting_for_samples, containers: [{namespace, workload, container, samples, first_sample, last_sample, cpu_millicores, memory_bytes, verdict?}]},
//!   capacity?: {trend_days, horizon_days, cluster, nodes: [{node, points, cpu_millicores, memory_bytes, pods: {allocatable, requested, requested_slope_per_day?, days_until_full?, full_on?}}]},
//!   score_parts: [{name, kind: check|nodes|disk, score: 0..100, weight, objects, critical, warning, info}] }
//! ```

pub(crate) mod html;
pub(crate) mod logcheck;
pub(crate) mod planning;
pub mod render;
pub mod score;

use std::collections::BTreeMap;

use caretaker_core::model::{Freshness, NodeReport, NodeStatus};
use caretaker_proto::pb;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::checks::{CheckResult, ObjectRef, Severity};
use crate::cleanup::Proposal;
use crate::signals::alertmanager::AlertsNow;
use crate::signals::endpoints::EndpointResult;
use crate::signals::prometheus::ServiceFigures;
use crate::store::{Outcome, StoredNode, decide};

pub use render::{OUTPUTS, Output, RenderError, render, render_diff, render_for};

/// Version of the report's JSON schema; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 2;

/// The merged report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterReport {
    pub schema_version: u32,
    pub(crate) generated_at: Timestamp,
    /// The worst of every finding, node freshness and disk pressure; see [`score`].
    pub status: Severity,
    /// 0–100; see [`score`] for the formula.
    pub score: u8,
    /// Sorted by name: reported nodes and nodes the cluster lists without a report.
    pub nodes: Vec<NodeStatus>,
    /// When the checks below ran; absent when no round has run.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) checks_at: Option<Timestamp>,
    /// Cluster checks and external signals, each with its findings.
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    /// Cleanup proposals (dry run unless applied).
    #[serde(default)]
    pub proposals: Vec<Proposal>,
    /// Raw figures of the external signals (latencies, rates, alerts).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signals: Option<SignalsReport>,
    /// Nodes at or near disk pressure, with what could be reclaimed and the kubelet's events.
    #[serde(default)]
    pub disk_pressure: Vec<DiskPressure>,
    /// The agents' daily log checks merged: per pattern the containers with the most
    /// matching lines in 24 h; their findings are the `log_check` check. Absent when no
    /// agent reports a log check.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub log_check: Option<logcheck::ClusterLogCheck>,
    /// Every current finding with its history: first and last seen, how often it flapped.
    #[serde(default)]
    pub findings: Vec<TrackedFinding>,
    /// The maintenance window and what waits for it; absent when none is configured.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub maintenance: Option<MaintenanceStatus>,
    /// Set on the report a scheduled run (daily, weekly, monthly) recorded: which runs it
    /// stands for and what they ran. Absent on every other report.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub run: Option<ScheduledRun>,
    /// The monthly review's results (`chart_updates`), each a top-level field of its own.
    #[serde(flatten)]
    pub planning: planning::Planning,
    /// The score per part: each check, node freshness and disk pressure, with the objects
    /// it judged and how many were unhealthy; the overall score is their weighted mean.
    /// Last in the JSON, after the per-node data the JSON endpoint splices in.
    #[serde(default)]
    pub score_parts: Vec<score::ScorePart>,
}

/// A scheduled run's record: the runs it stands for and the tasks it ran. Checks outside
/// `tasks` show their latest result from an earlier round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledRun {
    /// `daily`, `weekly`, `monthly`: the runs due at this slot, run as one round.
    pub kinds: Vec<String>,
    /// The union of their `checks:` lists.
    pub tasks: Vec<crate::schedule::config::Task>,
    /// With the `trends` task (the monthly capacity review): disk usage per node and
    /// mount over 30 days with days until full, and alert counts over 7 days.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) trends: Option<RunTrends>,
    /// With the `signals` task: the alert review over the recorded rounds (times fired,
    /// firing time and flapping per alert name, silenced and inhibited apart).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) alert_review: Option<crate::signals::review::AlertReview>,
}

/// The trends a `trends` task records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunTrends {
    pub(crate) disk_30d: Vec<crate::store::history::DiskTrend>,
    /// Alert name → in how many recorded reports of the last 7 days it was firing.
    pub(crate) alerts_7d: BTreeMap<String, u64>,
}

/// The maintenance window as of the report: destructive cleanups (applying proposals,
/// scheduled pruning) run only inside it unless forced or in an emergency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceStatus {
    /// E.g. `Sunday 03:00–05:00 Asia/Tokyo`.
    pub window: String,
    pub open: bool,
    /// The window's next opening (now, when it is open).
    pub next_open: Timestamp,
    /// Cleanup proposals that delete and so wait for the window.
    pub(crate) waiting_proposals: usize,
}

impl ClusterReport {
    /// The wire form: typed nodes plus the whole report as JSON.
    ///
    /// # Errors
    /// JSON serialization errors (which these types do not produce).
    pub(crate) fn to_wire(&self) -> Result<pb::ClusterReport, serde_json::Error> {
        Ok(pb::ClusterReport {
            schema_version: self.schema_version,
            generated_at: Some(prost_types::Timestamp {
                seconds: self.generated_at.as_second(),
                nanos: self.generated_at.subsec_nanosecond(),
            }),
            nodes: self.nodes.iter().cloned().map(Into::into).collect(),
            report_json: serde_json::to_string(self)?,
        })
    }

    /// Reads the wire form back.
    ///
    /// # Errors
    /// The JSON does not hold a report of this schema version.
    pub(crate) fn from_wire(w: &pb::ClusterReport) -> Result<Self> {
        if w.schema_version != SCHEMA_VERSION {
            return Err(Error::SchemaVersion(w.schema_version));
        }
        serde_json::from_str(&w.report_json).map_err(Error::ReportJson)
    }
}

/// Errors of reading a report from the wire and of parsing a point in time.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("report schema version {0} is not the supported {SCHEMA_VERSION}")]
    SchemaVersion(u32),
    #[error("report_json")]
    ReportJson(#[source] serde_json::Error),
    #[error("{text:?}")]
    Duration {
        text: String,
        #[source]
        source: humantime::DurationError,
    },
    #[error("{0:?} reaches before the earliest time supported")]
    TooEarly(String),
    #[error(transparent)]
    Date(jiff::Error),
    #[error("{0:?} is not a time: write 2026-11-29T03:00:00Z, 2026-11-29 or -24h")]
    NotATime(String),
}

/// A result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Parses a point in time for `--at`/`--diff`: RFC 3339 (`2026-11-29T03:00:00Z`), a date
/// (`2026-11-29`, the end of that day in UTC), or a duration before `now` (`-24h`, `-7d`).
///
/// # Errors
/// Says which forms are accepted.
pub fn parse_time(s: &str, now: Timestamp) -> Result<Timestamp> {
    if let Some(ago) = s.strip_prefix('-') {
        let d = humantime::parse_duration(ago).map_err(|source| Error::Duration {
            text: s.to_string(),
            source,
        })?;
        // A client sends this: a duration beyond the supported range is an error, not a panic.
        return now
            .checked_sub(d)
            .map_err(|_| Error::TooEarly(s.to_string()));
    }
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return d
            .at(23, 59, 59, 999_999_999)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .map_err(Error::Date);
    }
    Err(Error::NotATime(s.to_string()))
}

/// Figures of the external signals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SignalsReport {
    #[serde(default)]
    pub endpoints: Vec<EndpointResult>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prometheus: Option<ServiceFigures>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub alerts: Option<AlertsNow>,
}

/// How close a filesystem is to the kubelet acting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PressureLevel {
    /// At or above `near_percent` (default 80, kubelet's imageGCLowThresholdPercent).
    Near,
    /// At or above `pressure_percent` (default 85, kubelet's imageGCHighThresholdPercent:
    /// the kubelet is deleting images now), or the node reports DiskPressure.
    Pressure,
}

/// A kubelet event about a node's disk (image GC, eviction).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    pub reason: String,
    pub message: String,
    pub count: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) last_seen: Option<Timestamp>,
}

/// One node filesystem at or near disk pressure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskPressure {
    pub node_name: String,
    pub mountpoint: String,
    pub used_percent: f64,
    pub level: PressureLevel,
    /// Bytes the node's agent could free (unused images, rotatable and expired logs), when
    /// it reports them.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reclaimable_bytes: Option<u64>,
    /// The kubelet's image-GC and eviction events for this node.
    #[serde(default)]
    pub events: Vec<NodeEvent>,
}

/// A finding with its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackedFinding {
    /// Stable identity: `check/code/kind/namespace/name`.
    pub key: String,
    pub check: String,
    pub code: String,
    pub severity: Severity,
    pub object: ObjectRef,
    pub message: String,
    pub first_seen: Timestamp,
    pub(crate) last_seen: Timestamp,
    /// Times it came back after having resolved.
    pub(crate) flaps: u32,
}

/// One run of the cluster checks and signals; the merge joins the latest one with the
/// live node reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckRound {
    pub at: Option<Timestamp>,
    pub checks: Vec<CheckResult>,
    pub proposals: Vec<Proposal>,
    pub signals: Option<SignalsReport>,
    /// Node names the cluster lists; `None` when the cluster was not read.
    pub cluster_nodes: Option<Vec<String>>,
    /// Nodes whose DiskPressure condition is True.
    pub disk_pressure_nodes: Vec<String>,
    /// Disk-related kubelet events by node name.
    pub node_events: BTreeMap<String, Vec<NodeEvent>>,
    /// Certificate and backup moments for `/metrics`; `None` when the cluster was not read.
    pub times: Option<crate::metrics::ClusterTimes>,
    /// The monthly review's results this round produced.
    pub planning: planning::Planning,
}

impl CheckRound {
    /// This round updated by `partial`, a round that ran only `tasks`: its checks replace
    /// the checks of the same name, its proposals and signals replace these when it ran
    /// `cleanup` and `signals`, and its cluster facts replace these when it read the
    /// cluster. Everything else stays as this round had it.
    pub fn updated_with(
        mut self,
        partial: CheckRound,
        tasks: &std::collections::BTreeSet<crate::schedule::config::Task>,
    ) -> CheckRound {
        use crate::schedule::config::Task;
        for c in partial.checks {
            match self.checks.iter_mut().find(|o| o.name == c.name) {
                Some(o) => *o = c,
                None => self.checks.push(c),
            }
        }
        if tasks.contains(&Task::Cleanup) {
            self.proposals = partial.proposals;
        }
        if tasks.contains(&Task::Signals) {
            self.signals = partial.signals;
        }
        if partial.cluster_nodes.is_some() {
            self.cluster_nodes = partial.cluster_nodes;
            self.disk_pressure_nodes = partial.disk_pressure_nodes;
            self.node_events = partial.node_events;
        }
        if partial.times.is_some() {
            self.times = partial.times;
        }
        self.planning = self.planning.updated_with(partial.planning);
        self.at = partial.at.or(self.at);
        self
    }
}

/// Thresholds of the merge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MergeConfig {
    /// A node is stale after this many of its report intervals without a report.
    pub stale_after_intervals: u32,
    /// Filesystem usage at which a node is shown as near disk pressure. Default 80, as
    /// kubelet's imageGCLowThresholdPercent.
    pub(crate) near_percent: f64,
    /// Usage at which it is under pressure. Default 85, as kubelet's
    /// imageGCHighThresholdPercent.
    pub(crate) pressure_percent: f64,
    /// Containers listed per log check pattern across the cluster. Default 10.
    pub(crate) log_check_top: usize,
}

impl Default for MergeConfig {
    fn default() -> Self {
        Self {
            stale_after_intervals: 3,
            near_percent: 80.0,
            pressure_percent: 85.0,
            log_check_top: 10,
        }
    }
}

/// Fresh while the latest report is younger than `stale_after_intervals` of the node's
/// own report intervals.
pub fn freshness(entry: &StoredNode, stale_after_intervals: u32, now: Timestamp) -> Freshness {
    let limit = entry
        .report
        .report_interval()
        .saturating_mul(stale_after_intervals);
    let age =
        std::time::Duration::try_from(now.duration_since(entry.received_at)).unwrap_or_default();
    if age > limit {
        Freshness::Stale
    } else {
        Freshness::Fresh
    }
}

/// Merges node reports and the latest check round into one report.
///
/// Pure and order-independent: `nodes` may arrive in any order and hold duplicates or
/// older reports of a node (the newest by `(epoch, seq)` wins, as in the store); checks
/// and proposals are sorted. Finding history is filled in afterwards by the history store
/// (`findings` is left with `first_seen = last_seen = now`, `flaps = 0`).
pub fn merge(
    nodes: &[StoredNode],
    round: &CheckRound,
    cfg: &MergeConfig,
    now: Timestamp,
) -> ClusterReport {
    merge_nodes(nodes, round, cfg, now, true)
}

/// [`merge`] over borrowed nodes. With `include_reports` false the node statuses carry
/// no `report` (nothing is cloned); everything computed from the reports (disk pressure,
/// status, score) is the same. The JSON endpoint uses it and splices in each node's
/// report JSON, serialized once when the report arrived.
pub(crate) fn merge_nodes<'a>(
    nodes: impl IntoIterator<Item = &'a StoredNode>,
    round: &CheckRound,
    cfg: &MergeConfig,
    now: Timestamp,
    include_reports: bool,
) -> ClusterReport {
    // Latest per node, by the store's own rule.
    let mut latest: BTreeMap<&str, &StoredNode> = BTreeMap::new();
    for n in nodes {
        let name = n.report.node_name.as_str();
        match latest.get(name) {
            Some(cur)
                if decide(
                    Some((cur.report.epoch, cur.report.seq)),
                    false,
                    n.report.epoch,
                    n.report.seq,
                ) != Outcome::Stored =>
            {
                // Same report twice: keep the one stored last (counts and receive time).
                if (cur.report.epoch, cur.report.seq) == (n.report.epoch, n.report.seq)
                    && (n.received_at, n.reports_stored_total)
                        > (cur.received_at, cur.reports_stored_total)
                {
                    latest.insert(name, n);
                }
            }
            _ => {
                latest.insert(name, n);
            }
        }
    }
    let mut statuses: BTreeMap<String, NodeStatus> = latest
        .values()
        .map(|n| {
            (
                n.report.node_name.clone(),
                NodeStatus {
                    node_name: n.report.node_name.clone(),
                    freshness: freshness(n, cfg.stale_after_intervals, now),
                    received_at: Some(n.received_at),
                    reports_stored_total: n.reports_stored_total,
                    report: include_reports.then(|| n.report.clone()),
                },
            )
        })
        .collect();
    for name in round.cluster_nodes.iter().flatten() {
        statuses.entry(name.clone()).or_insert_with(|| NodeStatus {
            node_name: name.clone(),
            freshness: Freshness::Missing,
            received_at: None,
            reports_stored_total: 0,
            report: None,
        });
    }
    let nodes: Vec<NodeStatus> = statuses.into_values().collect();

    let mut checks = round.checks.clone();
    let log_check = match logcheck::merge(latest.values().map(|n| &n.report), cfg.log_check_top) {
        Some((merged, check)) => {
            checks.retain(|c| c.name != logcheck::CHECK);
            checks.push(check);
            Some(merged)
        }
        None => None,
    };
    checks.sort_by(|a, b| a.name.cmp(&b.name));
    let mut proposals = round.proposals.clone();
    proposals.sort_by(|a, b| a.code.cmp(&b.code).then_with(|| a.object.cmp(&b.object)));

    let disk_pressure = disk_pressure(&latest, round, cfg);
    let findings = track_now(&checks, now);
    let (status, score, score_parts) = score::status_and_score(&nodes, &checks, &disk_pressure);
    ClusterReport {
        schema_version: SCHEMA_VERSION,
        generated_at: now,
        status,
        score,
        score_parts,
        nodes,
        checks_at: round.at,
        checks,
        proposals,
        signals: round.signals.clone(),
        disk_pressure,
        log_check,
        findings,
        maintenance: None,
        run: None,
        planning: round.planning.clone(),
    }
}

/// The stable identity of a finding of `check`.
pub(crate) fn finding_key(check: &str, code: &str, object: &ObjectRef) -> String {
    format!(
        "{check}/{code}/{}/{}/{}",
        object.kind,
        object.namespace.as_deref().unwrap_or(""),
        object.name
    )
}

fn track_now(checks: &[CheckResult], now: Timestamp) -> Vec<TrackedFinding> {
    let mut out: BTreeMap<String, TrackedFinding> = BTreeMap::new();
    for c in checks {
        for f in &c.findings {
            let key = finding_key(&c.name, &f.code, &f.object);
            // Two findings with one key (same code on one object): keep the worst.
            let keep = out.get(&key).is_none_or(|t| f.severity > t.severity);
            if keep {
                out.insert(
                    key.clone(),
                    TrackedFinding {
                        key,
                        check: c.name.clone(),
                        code: f.code.clone(),
                        severity: f.severity,
                        object: f.object.clone(),
                        message: f.message.clone(),
                        first_seen: now,
                        last_seen: now,
                        flaps: 0,
                    },
                );
            }
        }
    }
    let mut v: Vec<TrackedFinding> = out.into_values().collect();
    v.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.key.cmp(&b.key)));
    v
}

/// Bytes a node's agent reports it could reclaim, when it reports any: the sum of what
/// each of its summaries says (`images.runtimes[].reclaimable_bytes`: unused images;
/// `logs.reclaimable_bytes`: rotated and compressed logs past their retention age).
/// `None` when the report has no such summary, so "nothing known" is not shown as
/// "nothing to reclaim".
pub fn reclaimable(report: &NodeReport) -> Option<u64> {
    let images = report
        .images
        .as_ref()
        .map(|i| i.runtimes.iter().map(|r| r.reclaimable_bytes).sum::<u64>());
    let parts = [images, report.logs.as_ref().map(|l| l.reclaimable_bytes)];
    parts.into_iter().flatten().reduce(u64::saturating_add)
}

fn disk_pressure(
    latest: &BTreeMap<&str, &StoredNode>,
    round: &CheckRound,
    cfg: &MergeConfig,
) -> Vec<DiskPressure> {
    let mut out = Vec::new();
    for (&node_name, n) in latest {
        let report = &n.report;
        let condition = round.disk_pressure_nodes.iter().any(|d| d == node_name);
        let mut worst: Option<(&caretaker_core::model::Filesystem, PressureLevel)> = None;
        for f in report.filesystems.iter().filter(|f| !f.stale) {
            let level = if f.used_percent >= cfg.pressure_percent {
                Some(PressureLevel::Pressure)
            } else if f.used_percent >= cfg.near_percent {
                Some(PressureLevel::Near)
            } else {
                None
            };
            if let Some(l) = level
                && worst.is_none_or(|(w, wl)| (l, f.used_percent) > (wl, w.used_percent))
            {
                worst = Some((f, l));
            }
        }
        let root = report.filesystems.iter().find(|f| f.mountpoint == "/");
        let (mountpoint, used_percent, level) = match (worst, condition) {
            (Some((f, l)), c) => (
                f.mountpoint.clone(),
                f.used_percent,
                if c { PressureLevel::Pressure } else { l },
            ),
            (None, true) => (
                root.map_or_else(|| "/".into(), |f| f.mountpoint.clone()),
                root.map_or(0.0, |f| f.used_percent),
                PressureLevel::Pressure,
            ),
            (None, false) => continue,
        };
        out.push(DiskPressure {
            node_name: node_name.to_string(),
            mountpoint,
            used_percent,
            level,
            reclaimable_bytes: reclaimable(report),
            events: round
                .node_events
                .get(node_name)
                .cloned()
                .unwrap_or_default(),
        });
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use caretaker_core::model::{AgentCost, Filesystem, Host};
    use proptest::prelude::*;

    use super::*;
    use crate::checks::Finding;
    use crate::cleanup::Action;

    pub(crate) fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    pub(crate) fn stored(
        node: &str,
        epoch: u64,
        seq: u64,
        root_used: f64,
        received: i64,
    ) -> StoredNode {
        StoredNode {
            report: NodeReport {
                node_name: node.into(),
                epoch,
                seq,
                collected_at: at(received),
                report_interval_ms: 10_000,
                host: Host {
                    memory_total_bytes: 8 << 30,
                    memory_available_bytes: 4 << 30,
                    cpu_count: 4,
                    ..Host::default()
                },
                logs: None,
                filesystems: vec![Filesystem {
                    device: "/dev/vda1".into(),
                    fstype: "ext4".into(),
                    mountpoint: "/".into(),
                    mountpoints: vec!["/".into()],
                    device_id: "254:1".into(),
                    read_only: false,
                    size_bytes: 100 << 30,
                    free_bytes: (100.0 * (1.0 - root_used / 100.0)) as u64 * (1 << 30),
                    avail_bytes: (100.0 * (1.0 - root_used / 100.0)) as u64 * (1 << 30),
                    files: 1000,
                    files_free: 500,
                    used_percent: root_used,
                    files_used_percent: Some(50.0),
                    stale: false,
                }],
                network: vec![],
                agent: AgentCost {
                    rss_bytes: 9 << 20,
                    cpu_seconds_total: 1.5,
                    ..AgentCost::default()
                },
                errors: vec![],
                images: None,
                volumes: vec![],
                log_check: None,
            },
            received_at: at(received),
            reports_stored_total: seq,
        }
    }

    pub(crate) fn round() -> CheckRound {
        let pod = |ns: &str, name: &str| ObjectRef {
            kind: "Pod".into(),
            namespace: Some(ns.into()),
            name: name.into(),
            uid: None,
        };
        CheckRound {
            at: Some(at(5)),
            checks: vec![
                CheckResult::new(
                    "pods",
                    "12 pods, 2 with problems",
                    vec![
                        Finding::new(
                            "crash_loop_back_off",
                            Severity::Critical,
                            pod("shop", "api-7d9"),
                            "container api is in CrashLoopBackOff (12 restarts)",
                        ),
                        Finding::new(
                            "pending",
                            Severity::Warning,
                            pod("shop", "worker-1"),
                            "Pending for 2h: 0/3 nodes are available",
                        ),
                    ],
                )
                .with_objects(12),
                CheckResult::new("nodes", "3 nodes", vec![]).with_objects(3),
            ],
            proposals: vec![Proposal {
                code: "completed_job".into(),
                object: ObjectRef {
                    kind: "Job".into(),
                    namespace: Some("batch".into()),
                    name: "report-28".into(),
                    uid: Some("u1".into()),
                },
                action: Action::Delete,
                propagation: None,
                message: "completed 3d ago".into(),
                times: Default::default(),
                labels: Default::default(),
            }],
            signals: None,
            cluster_nodes: Some(vec!["node-a".into(), "node-b".into(), "node-c".into()]),
            disk_pressure_nodes: vec![],
            node_events: BTreeMap::from([(
                "node-b".to_string(),
                vec![NodeEvent {
                    reason: "FreeDiskSpaceFailed".into(),
                    message: "failed to free 2 GiB".into(),
                    count: 3,
                    last_seen: Some(at(1)),
                }],
            )]),
            times: None,
            planning: Default::default(),
        }
    }

    #[test]
    fn merge_joins_nodes_checks_and_cross_links() {
        let nodes = [
            stored("node-a", 1, 4, 40.0, 0),
            stored("node-b", 1, 9, 88.0, 0),
        ];
        let r = merge(&nodes, &round(), &MergeConfig::default(), at(10));
        assert_eq!(
            r.nodes
                .iter()
                .map(|n| (n.node_name.as_str(), n.freshness))
                .collect::<Vec<_>>(),
            vec![
                ("node-a", Freshness::Fresh),
                ("node-b", Freshness::Fresh),
                ("node-c", Freshness::Missing),
            ]
        );
        assert_eq!(
            r.checks.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            vec!["nodes", "pods"]
        );
        assert_eq!(r.disk_pressure.len(), 1);
        let d = &r.disk_pressure[0];
        assert_eq!(
            (d.node_name.as_str(), d.mountpoint.as_str(), d.level),
            ("node-b", "/", PressureLevel::Pressure)
        );
        assert_eq!(d.events[0].reason, "FreeDiskSpaceFailed");
        assert_eq!(
            r.findings
                .iter()
                .map(|f| f.key.as_str())
                .collect::<Vec<_>>(),
            vec![
                "pods/crash_loop_back_off/Pod/shop/api-7d9",
                "pods/pending/Pod/shop/worker-1",
            ]
        );
        // Parts: pods 100 × (1 − (1 + ½) / 12) = 87.5, nodes 100, node freshness
        // 100 × (1 − 1 / 3) = 66.7 (node-c missing), disk 100 × (1 − 1 / 2) = 50 (node-b
        // under pressure): ⌊304.17 / 4⌋ = 76.
        assert_eq!((r.status, r.score), (Severity::Critical, 76));
        assert_eq!(
            r.score_parts
                .iter()
                .map(|p| (p.name.as_str(), p.score))
                .collect::<Vec<_>>(),
            vec![
                ("nodes", 100.0),
                ("pods", 87.5),
                (score::NODE_FRESHNESS, 66.7),
                (score::DISK_PRESSURE, 50.0)
            ]
        );
        // Stale after 3 intervals of 10 s.
        let later = merge(&nodes, &round(), &MergeConfig::default(), at(31));
        assert_eq!(later.nodes[0].freshness, Freshness::Stale);
    }

    #[test]
    fn a_node_near_pressure_shows_what_its_agent_can_reclaim() {
        use caretaker_core::model::{ImagesSummary, RuntimeImages};
        let mut b = stored("node-b", 1, 9, 88.0, 0);
        let runtime = |name: &str, bytes| RuntimeImages {
            runtime: name.into(),
            image_fs_mountpoint: "/var/lib/containerd".into(),
            image_fs_used_percent: Some(88.0),
            images_total: 10,
            images_unused: 4,
            reclaimable_bytes: bytes,
            last_prune: None,
            removed_total: 0,
            removed_bytes_total: 0,
        };
        b.report.images = Some(ImagesSummary {
            dry_run: true,
            checked_at: at(0),
            runtimes: vec![runtime("containerd", 3 << 30), runtime("docker", 1 << 30)],
            errors: vec![],
        });
        let r = merge(&[b], &round(), &MergeConfig::default(), at(10));
        assert_eq!(r.disk_pressure[0].reclaimable_bytes, Some(4 << 30));
        let r = merge(
            &[stored("node-b", 1, 9, 88.0, 0)],
            &round(),
            &MergeConfig::default(),
            at(10),
        );
        assert_eq!(
            r.disk_pressure[0].reclaimable_bytes, None,
            "not reported is not 0"
        );
    }

    #[test]
    fn disk_pressure_shows_what_the_agent_reports_it_can_reclaim() {
        use caretaker_core::model::{LogCounts, LogsSummary};
        let mut b = stored("node-b", 1, 9, 88.0, 0);
        // Nothing reported: unknown, not zero.
        assert_eq!(reclaimable(&b.report), None);
        let r = merge(
            std::slice::from_ref(&b),
            &round(),
            &MergeConfig::default(),
            at(10),
        );
        assert_eq!(r.disk_pressure[0].reclaimable_bytes, None);
        b.report.logs = Some(LogsSummary {
            checked_at: at(0),
            last_pass: LogCounts::default(),
            totals: LogCounts {
                rotated: 4,
                ..LogCounts::default()
            },
            reclaimable_bytes: 3 << 30,
            reclaimable_at: Some(at(0)),
            errors: vec![],
            owned_elsewhere: vec![],
            owned_elsewhere_total: 0,
        });
        assert_eq!(reclaimable(&b.report), Some(3 << 30));
        let b_logs = b.report.logs.clone();
        let r = merge(&[b], &round(), &MergeConfig::default(), at(10));
        assert_eq!(r.disk_pressure[0].reclaimable_bytes, Some(3 << 30));
        assert_eq!(
            serde_json::to_value(&r.disk_pressure[0]).unwrap()["reclaimable_bytes"],
            3u64 << 30
        );
        // Images and logs together: the sum.
        let mut both = stored("node-b", 1, 9, 88.0, 0);
        both.report.logs = b_logs;
        both.report.images = Some(caretaker_core::model::ImagesSummary {
            dry_run: true,
            checked_at: at(0),
            runtimes: vec![caretaker_core::model::RuntimeImages {
                runtime: "docker".into(),
                image_fs_mountpoint: "/var/lib/docker".into(),
                image_fs_used_percent: Some(88.0),
                images_total: 3,
                images_unused: 1,
                reclaimable_bytes: 1 << 30,
                last_prune: None,
                removed_total: 0,
                removed_bytes_total: 0,
            }],
            errors: vec![],
        });
        assert_eq!(reclaimable(&both.report), Some(4 << 30));
    }

    #[test]
    fn the_wire_form_round_trips() {
        let r = merge(
            &[stored("node-a", 1, 4, 40.0, 0)],
            &round(),
            &MergeConfig::default(),
            at(10),
        );
        let w = r.to_wire().unwrap();
        assert_eq!(w.nodes.len(), 3);
        assert_eq!(ClusterReport::from_wire(&w).unwrap(), r);
        let mut old = w.clone();
        old.schema_version = 1;
        assert_eq!(
            ClusterReport::from_wire(&old).unwrap_err().to_string(),
            "report schema version 1 is not the supported 2"
        );
    }

    proptest! {
        /// The merged report does not depend on the order node reports and check results
        /// arrive in, and a duplicate (or an older report) of a node changes nothing.
        #[test]
        fn merge_is_order_independent_and_ignores_duplicates(
            order in Just((0..5usize).collect::<Vec<_>>()).prop_shuffle(),
            check_order in Just(vec![0usize, 1]).prop_shuffle(),
            dup in 0..5usize,
        ) {
            let base = vec![
                stored("node-a", 1, 4, 40.0, 0),
                stored("node-b", 2, 1, 88.0, 2),
                stored("node-b", 1, 30, 87.0, 1),   // an older run of node-b
                stored("node-c", 1, 7, 82.0, 3),
                stored("node-c", 1, 6, 10.0, 2),    // an older report of node-c
            ];
            let expected = merge(&base, &round(), &MergeConfig::default(), at(10));
            let mut shuffled: Vec<StoredNode> = order.iter().map(|i| base[*i].clone()).collect();
            shuffled.push(base[dup].clone());
            let mut r = round();
            r.checks = check_order.iter().map(|i| round().checks[*i].clone()).collect();
            let got = merge(&shuffled, &r, &MergeConfig::default(), at(10));
            prop_assert_eq!(&got, &expected);
            prop_assert_eq!(got.nodes.iter().filter_map(|n| n.report.as_ref()).map(|r| (r.epoch, r.seq)).collect::<Vec<_>>(), vec![(1, 4), (2, 1), (1, 7)]);
        }
    }

    #[test]
    fn markdown_record_has_the_alert_review_with_silenced_and_inhibited_apart() {
        use crate::signals::review::{AlertReview, AlertReviewRow, ReviewState};
        let mut r = merge(&[], &round(), &MergeConfig::default(), at(10));
        let row = |name: &str, state, fired, seconds, short, flapping| AlertReviewRow {
            name: name.into(),
            state,
            times_fired: fired,
            firing_seconds: seconds,
            short_firings: short,
            flapping,
            still_firing: 0,
        };
        r.run = Some(ScheduledRun {
            kinds: vec!["weekly".into()],
            tasks: vec![crate::schedule::config::Task::Signals],
            trends: None,
            alert_review: Some(AlertReview {
                from: at(10 - 7 * 86_400),
                to: at(10),
                rounds: 1008,
                flap_within_seconds: 900,
                flap_min_count: 3,
                alerts: vec![
                    row("DiskFull", ReviewState::Active, 4, 1200, 4, true),
                    row(
                        "HighLatency",
                        ReviewState::Silenced,
                        1,
                        7 * 86_400,
                        0,
                        false,
                    ),
                    row("TargetDown", ReviewState::Inhibited, 1, 840, 1, false),
                ],
            }),
        });
        let md = render(&r, Output::Markdown).unwrap();
        let section = &md[md.find("## Alert review").expect(&md)..];
        assert!(
            section.contains("1008 round(s) with Alertmanager alerts from "),
            "{section}"
        );
        assert!(
            section.contains("a firing shorter than 15m is short, 3 short firings are flapping."),
            "{section}"
        );
        for line in [
            "| DiskFull    | active    | 4           | 20m         | 4             | yes      | 0            |",
            "| HighLatency | silenced  | 1           | 7d 0h       | 0             | no       | 0            |",
            "| TargetDown  | inhibited | 1           | 14m         | 1             | no       | 0            |",
        ] {
            assert!(section.contains(line), "{line}\n{section}");
        }
        // And in the JSON, beside the run's other fields.
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["run"]["alert_review"]["alerts"][0]["name"], "DiskFull");
        assert_eq!(
            json["run"]["alert_review"]["alerts"][1]["state"],
            "silenced"
        );
        assert_eq!(json["run"]["alert_review"]["alerts"][0]["flapping"], true);
    }

    #[test]
    fn markdown_record_matches_the_golden_file() {
        let nodes = [
            stored("node-a", 1, 4, 40.0, 0),
            stored("node-b", 1, 9, 88.0, 0),
        ];
        let mut r = merge(&nodes, &round(), &MergeConfig::default(), at(10));
        // Fixed history, as the store would fill it in.
        for f in &mut r.findings {
            f.first_seen = at(-86_400);
            f.flaps = 1;
        }
        let md = render(&r, Output::Markdown)
            .unwrap()
            .replace(env!("CARGO_PKG_VERSION"), "VERSION");
        let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/maintenance-record.md");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &md).unwrap();
        }
        let want =
            std::fs::read_to_string(&golden).expect("golden file (UPDATE_GOLDEN=1 writes it)");
        assert_eq!(md, want);
    }
}
