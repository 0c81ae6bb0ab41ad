//! The daily log check across the cluster: the agents' per-node log check summaries
//! (`NodeReport.log_check`) merged into one list of the containers with the most matching
//! lines per pattern, and the agents' findings as the `log_check` check.
//!
//! The agents judge (each with its own `log_check.thresholds`, `jump_factor` and
//! `jump_min_count`, because only they see every container's counts); the merge joins
//! the judgements: one finding per pod and reason, naming each container and pattern.

use std::collections::BTreeMap;

use caretaker_core::model::{LogCheckEntry, LogCheckFinding, LogCheckReason, NodeReport};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::checks::{CheckResult, Finding, ObjectRef, Severity};

/// The check's name in the report.
pub(crate) const CHECK: &str = "log_check";
/// A count at or above its pattern's threshold.
pub(crate) const CODE_THRESHOLD: &str = "log_lines_above_threshold";
/// A count that jumped against the 24 h before.
pub(crate) const CODE_JUMP: &str = "log_lines_jumped";

/// The cluster's log check: the nodes' summaries merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterLogCheck {
    /// Nodes whose latest report carries a log check.
    pub nodes_checked: usize,
    /// The oldest of those nodes' last checks.
    pub(crate) oldest_check: Timestamp,
    /// Every pattern any node counts, in the order the nodes list them.
    pub patterns: Vec<String>,
    /// Per pattern (in `patterns` order), the containers with the highest 24 h counts
    /// across the cluster, highest first, each with its sample line.
    pub top: Vec<ClusterLogEntry>,
    /// Bytes the nodes' last checks read.
    pub bytes_read: u64,
    /// Problems the nodes' last checks met.
    pub errors: usize,
}

/// One container's count of one pattern, with its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterLogEntry {
    pub node_name: String,
    #[serde(flatten)]
    pub entry: LogCheckEntry,
}

/// Merges the log check of `reports` (the latest report per node): `None` when no report
/// carries one. `top` entries are kept per pattern.
pub(crate) fn merge<'a>(
    reports: impl IntoIterator<Item = &'a NodeReport>,
    top: usize,
) -> Option<(ClusterLogCheck, CheckResult)> {
    let mut patterns: Vec<String> = Vec::new();
    let mut entries: Vec<ClusterLogEntry> = Vec::new();
    // (namespace, pod, reason) → (node, findings).
    let mut by_pod: BTreeMap<(String, String, LogCheckReason), (String, Vec<LogCheckFinding>)> =
        BTreeMap::new();
    let (mut nodes_checked, mut oldest, mut bytes_read, mut errors) = (0, None, 0u64, 0);
    for r in reports {
        let Some(l) = &r.log_check else { continue };
        nodes_checked += 1;
        oldest = Some(oldest.map_or(l.checked_at, |o: Timestamp| o.min(l.checked_at)));
        bytes_read = bytes_read.saturating_add(l.bytes_read);
        errors += l.errors.len();
        for p in &l.patterns {
            if !patterns.contains(p) {
                patterns.push(p.clone());
            }
        }
        entries.extend(l.top.iter().map(|e| ClusterLogEntry {
            node_name: r.node_name.clone(),
            entry: e.clone(),
        }));
        for f in &l.findings {
            let key = (f.entry.namespace.clone(), f.entry.pod.clone(), f.reason);
            by_pod
                .entry(key)
                .or_insert_with(|| (r.node_name.clone(), Vec::new()))
                .1
                .push(f.clone());
        }
    }
    let oldest_check = oldest?;
    let rank = |p: &str| patterns.iter().position(|q| q == p).unwrap_or(usize::MAX);
    entries.sort_by(|a, b| {
        rank(&a.entry.pattern)
            .cmp(&rank(&b.entry.pattern))
            .then_with(|| b.entry.count.cmp(&a.entry.count))
            .then_with(|| a.entry.namespace.cmp(&b.entry.namespace))
            .then_with(|| a.entry.pod.cmp(&b.entry.pod))
            .then_with(|| a.entry.container.cmp(&b.entry.container))
    });
    let mut kept: BTreeMap<&str, usize> = BTreeMap::new();
    let mut merged = Vec::new();
    for e in &entries {
        let n = kept.entry(e.entry.pattern.as_str()).or_default();
        if *n < top {
            *n += 1;
            merged.push(e.clone());
        }
    }

    // The pods judged, as far as the cluster sees them: those in any node's top lists or
    // findings (the agents send no list of every container they read).
    let pods: std::collections::BTreeSet<(&str, &str)> = entries
        .iter()
        .map(|e| (e.entry.namespace.as_str(), e.entry.pod.as_str()))
        .chain(
            by_pod
                .keys()
                .map(|(ns, pod, _)| (ns.as_str(), pod.as_str())),
        )
        .collect();
    let pods_judged = pods.len();
    let findings: Vec<Finding> = by_pod
        .into_iter()
        .map(|((namespace, pod, reason), (node, mut fs))| {
            fs.sort_by(|a, b| {
                a.entry
                    .container
                    .cmp(&b.entry.container)
                    .then_with(|| rank(&a.entry.pattern).cmp(&rank(&b.entry.pattern)))
            });
            finding(namespace, pod, reason, &node, &fs)
        })
        .collect();
    let summary = format!(
        "{nodes_checked} node{} checked, {} pod{} with log findings",
        if nodes_checked == 1 { "" } else { "s" },
        findings.len(),
        if findings.len() == 1 { "" } else { "s" },
    );
    let check = CheckResult::new(CHECK, summary, findings).with_objects(pods_judged);
    let cluster = ClusterLogCheck {
        nodes_checked,
        oldest_check,
        patterns,
        top: merged,
        bytes_read,
        errors,
    };
    Some((cluster, check))
}

/// One finding for the pod: each container and pattern with its count and limit.
fn finding(
    namespace: String,
    pod: String,
    reason: LogCheckReason,
    node: &str,
    fs: &[LogCheckFinding],
) -> Finding {
    let parts: Vec<String> = fs
        .iter()
        .map(|f| {
            let e = &f.entry;
            match reason {
                LogCheckReason::Threshold => format!(
                    "{} {}: {} lines in 24 h (threshold {})",
                    e.container, e.pattern, e.count, f.limit
                ),
                LogCheckReason::Jump => format!(
                    "{} {}: {} lines in 24 h, {} the 24 h before (limit {})",
                    e.container, e.pattern, e.count, e.previous_count, f.limit
                ),
            }
        })
        .collect();
    let (code, what) = match reason {
        LogCheckReason::Threshold => (CODE_THRESHOLD, "log lines above threshold"),
        LogCheckReason::Jump => (CODE_JUMP, "log lines jumped"),
    };
    let object = ObjectRef {
        kind: "Pod".into(),
        namespace: Some(namespace),
        name: pod,
        uid: None,
    };
    Finding::new(
        code,
        Severity::Warning,
        object,
        format!("{what} on {node}: {}", parts.join("; ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use caretaker_core::model::LogCheckSummary;

    fn entry(pattern: &str, ns: &str, pod: &str, container: &str, count: u64) -> LogCheckEntry {
        LogCheckEntry {
            pattern: pattern.into(),
            namespace: ns.into(),
            pod: pod.into(),
            container: container.into(),
            count,
            previous_count: 10,
            sample: Some(format!("{pattern} sample of {pod}")),
        }
    }

    fn report(
        node: &str,
        at: &str,
        top: Vec<LogCheckEntry>,
        findings: Vec<LogCheckFinding>,
    ) -> NodeReport {
        let mut r = crate::store::tests::report(node, 1, 1);
        r.log_check = Some(LogCheckSummary {
            checked_at: at.parse().unwrap(),
            patterns: vec!["error".into(), "warn".into()],
            top,
            findings,
            files_read: 1,
            bytes_read: 100,
            errors: vec![],
        });
        r
    }

    #[test]
    fn top_entries_merge_across_nodes_per_pattern_and_findings_group_per_pod() {
        let a = report(
            "node-a",
            "2026-12-01T03:00:00Z",
            vec![
                entry("error", "shop", "api-1", "app", 50),
                entry("error", "shop", "api-1", "sidecar", 5),
                entry("warn", "shop", "api-1", "app", 3),
            ],
            vec![
                LogCheckFinding {
                    entry: entry("error", "shop", "api-1", "app", 50),
                    reason: LogCheckReason::Threshold,
                    limit: 40,
                },
                LogCheckFinding {
                    entry: entry("warn", "shop", "api-1", "app", 3),
                    reason: LogCheckReason::Threshold,
                    limit: 2,
                },
            ],
        );
        let b = report(
            "node-b",
            "2026-12-01T02:59:00Z",
            vec![entry("error", "db", "pg-0", "postgres", 70)],
            vec![LogCheckFinding {
                entry: entry("error", "db", "pg-0", "postgres", 70),
                reason: LogCheckReason::Jump,
                limit: 30,
            }],
        );
        let plain = crate::store::tests::report("node-c", 1, 1);
        let (cluster, check) = merge([&a, &b, &plain], 2).unwrap();
        assert_eq!(
            cluster
                .top
                .iter()
                .map(|e| (
                    e.node_name.as_str(),
                    e.entry.pattern.as_str(),
                    e.entry.pod.as_str(),
                    e.entry.container.as_str(),
                    e.entry.count
                ))
                .collect::<Vec<_>>(),
            vec![
                ("node-b", "error", "pg-0", "postgres", 70),
                ("node-a", "error", "api-1", "app", 50),
                ("node-a", "warn", "api-1", "app", 3),
            ],
            "two per pattern, highest first; the sidecar's 5 is third"
        );
        assert_eq!(
            cluster.top[0].entry.sample.as_deref(),
            Some("error sample of pg-0")
        );
        assert_eq!(
            (
                cluster.nodes_checked,
                cluster.oldest_check.to_string(),
                cluster.bytes_read
            ),
            (2, "2026-12-01T02:59:00Z".to_string(), 200)
        );
        assert_eq!(check.name, "log_check");
        assert_eq!(check.severity, Severity::Warning);
        assert_eq!(check.summary, "2 nodes checked, 2 pods with log findings");
        let got: Vec<(&str, String, &str)> = check
            .findings
            .iter()
            .map(|f| (f.code.as_str(), f.object.to_string(), f.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "log_lines_above_threshold",
                    "Pod/shop/api-1".to_string(),
                    "log lines above threshold on node-a: app error: 50 lines in 24 h (threshold 40); \
                     app warn: 3 lines in 24 h (threshold 2)"
                ),
                (
                    "log_lines_jumped",
                    "Pod/db/pg-0".to_string(),
                    "log lines jumped on node-b: postgres error: 70 lines in 24 h, 10 the 24 h before (limit 30)"
                ),
            ]
        );
        assert!(check.findings.iter().all(|f| f.remedy.is_some()));
    }

    #[test]
    fn no_log_check_in_any_report_gives_none() {
        let plain = crate::store::tests::report("node-c", 1, 1);
        assert_eq!(merge([&plain], 5), None);
    }
}
