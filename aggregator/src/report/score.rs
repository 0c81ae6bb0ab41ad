//! The report's overall status and score.
//!
//! **Status** is the worst of: every finding's severity; `warning` for a stale or missing
//! node; `warning` for a filesystem near disk pressure and `critical` for one under
//! pressure.
//!
//! **Score** follows Popeye's model: each part of the report is scored by the share of its
//! objects that are healthy, and the overall score is the weighted mean of the parts, so
//! one noisy check cannot take the cluster to 0 (a check whose every object is critical
//! costs at most its own share of the mean).
//!
//! - **Parts**: every check that ran (one part each), `node_freshness` (the nodes the
//!   cluster lists or that reported) and `disk_pressure` (the nodes that reported).
//! - **Objects of a check**: the number of objects it judged ([`CheckResult::objects`]),
//!   or, when it does not say, the number of distinct objects its findings name; never
//!   fewer than the objects its findings name.
//! - **Object penalty** by the worst severity of that object's findings:
//!   critical [`CRITICAL_PENALTY`] (1), warning [`WARNING_PENALTY`] (½), info and ok 0
//!   (information is not a problem). A node that is missing costs 1, stale ½; a node with
//!   a filesystem under disk pressure costs 1, near it ½.
//! - **Part score** = 100 × (1 − Σ penalties ÷ objects), so 21 pods of which 3 are
//!   critical and 8 warning score 100 × (1 − (3 + 4) ÷ 21) = 66.7.
//! - **Weight** of a part: [`PART_WEIGHT`] (1) when it judged at least one object; 0 for a
//!   check that was not applicable or judged nothing (it says nothing about health).
//! - **Overall** = ⌊Σ weight × part score ÷ Σ weight⌋, 100 when no part has weight. The
//!   floor keeps 100 for a report with no unhealthy object at all.

use std::collections::BTreeMap;

use caretaker_core::model::{Freshness, NodeStatus};
use serde::{Deserialize, Serialize};

use super::{DiskPressure, PressureLevel};
use crate::checks::{CheckResult, CheckStatus, ObjectRef, Severity};

/// What a critical object costs of its part (as a share of one healthy object).
pub(crate) const CRITICAL_PENALTY: f64 = 1.0;
/// What a warning object costs.
pub(crate) const WARNING_PENALTY: f64 = 0.5;
/// The weight of every part that judged at least one object.
pub(crate) const PART_WEIGHT: f64 = 1.0;
/// The part scoring node freshness.
pub(crate) const NODE_FRESHNESS: &str = "node_freshness";
/// The part scoring disk pressure.
pub(crate) const DISK_PRESSURE: &str = "disk_pressure";

/// What a part of the score stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartKind {
    /// A check (its name is the check's).
    Check,
    /// Node freshness.
    Nodes,
    /// Disk pressure.
    Disk,
}

/// One part of the score: a check, node freshness or disk pressure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorePart {
    /// The check's name, [`NODE_FRESHNESS`] or [`DISK_PRESSURE`].
    pub name: String,
    pub kind: PartKind,
    /// 0–100, one decimal: the healthy share of the part's objects.
    pub score: f64,
    /// Its weight in the overall mean (0: not counted).
    pub weight: f64,
    /// Objects judged.
    pub objects: usize,
    /// Objects whose worst finding is critical (missing nodes; nodes under disk pressure).
    pub critical: usize,
    /// Objects whose worst finding is a warning (stale nodes; nodes near disk pressure).
    pub warning: usize,
    /// Objects whose worst finding is info (no cost).
    pub info: usize,
}

impl ScorePart {
    fn new(name: &str, kind: PartKind, objects: usize, worst: &[Severity]) -> ScorePart {
        let count = |s: Severity| worst.iter().filter(|w| **w == s).count();
        let (critical, warning, info) = (
            count(Severity::Critical),
            count(Severity::Warning),
            count(Severity::Info),
        );
        let objects = objects.max(worst.len());
        let penalty = critical as f64 * CRITICAL_PENALTY + warning as f64 * WARNING_PENALTY;
        let score = if objects == 0 {
            100.0
        } else {
            (100.0 * (1.0 - penalty / objects as f64)).clamp(0.0, 100.0)
        };
        ScorePart {
            name: name.to_string(),
            kind,
            score: (score * 10.0).round() / 10.0,
            weight: if objects > 0 { PART_WEIGHT } else { 0.0 },
            objects,
            critical,
            warning,
            info,
        }
    }

    fn exact(&self) -> f64 {
        if self.objects == 0 {
            return 100.0;
        }
        let penalty =
            self.critical as f64 * CRITICAL_PENALTY + self.warning as f64 * WARNING_PENALTY;
        (100.0 * (1.0 - penalty / self.objects as f64)).clamp(0.0, 100.0)
    }
}

/// The score of one check: its objects by the worst severity of their findings.
pub(crate) fn check_part(c: &CheckResult) -> ScorePart {
    let mut worst: BTreeMap<&ObjectRef, Severity> = BTreeMap::new();
    for f in &c.findings {
        let w = worst.entry(&f.object).or_insert(Severity::Ok);
        *w = (*w).max(f.severity);
    }
    let worst: Vec<Severity> = worst.into_values().collect();
    let mut part = ScorePart::new(&c.name, PartKind::Check, c.objects.unwrap_or(0), &worst);
    if c.status == CheckStatus::NotApplicable {
        part.weight = 0.0;
    }
    part
}

/// The parts of a report's score, checks first (in their order), then node freshness and
/// disk pressure.
pub fn parts(
    nodes: &[NodeStatus],
    checks: &[CheckResult],
    disk: &[DiskPressure],
) -> Vec<ScorePart> {
    let mut out: Vec<ScorePart> = checks.iter().map(check_part).collect();
    let freshness: Vec<Severity> = nodes
        .iter()
        .map(|n| match n.freshness {
            Freshness::Fresh => Severity::Ok,
            Freshness::Stale => Severity::Warning,
            Freshness::Missing => Severity::Critical,
        })
        .collect();
    out.push(ScorePart::new(
        NODE_FRESHNESS,
        PartKind::Nodes,
        nodes.len(),
        &freshness,
    ));
    // One entry per node (its worst filesystem); every node with a stored report counts.
    let reporting = nodes.iter().filter(|n| n.received_at.is_some()).count();
    let pressure: Vec<Severity> = disk
        .iter()
        .map(|d| match d.level {
            PressureLevel::Near => Severity::Warning,
            PressureLevel::Pressure => Severity::Critical,
        })
        .collect();
    out.push(ScorePart::new(
        DISK_PRESSURE,
        PartKind::Disk,
        reporting,
        &pressure,
    ));
    out
}

/// The overall score of `parts`: the floor of their weighted mean (see the module docs).
pub fn overall(parts: &[ScorePart]) -> u8 {
    let (sum, weights) = parts
        .iter()
        .filter(|p| p.weight > 0.0)
        .fold((0.0, 0.0), |(s, w), p| {
            (s + p.weight * p.exact(), w + p.weight)
        });
    if weights <= 0.0 {
        return 100;
    }
    // The small epsilon keeps an exact 100 (or 50) from flooring to 99 by rounding error.
    let mean = (sum / weights + 1e-9).floor().clamp(0.0, 100.0);
    mean as u8
}

/// The worst of every finding, node freshness and disk pressure.
pub fn status(nodes: &[NodeStatus], checks: &[CheckResult], disk: &[DiskPressure]) -> Severity {
    let findings = checks.iter().flat_map(|c| &c.findings).map(|f| f.severity);
    let nodes = nodes.iter().map(|n| match n.freshness {
        Freshness::Fresh => Severity::Ok,
        Freshness::Stale | Freshness::Missing => Severity::Warning,
    });
    let disk = disk.iter().map(|d| match d.level {
        PressureLevel::Near => Severity::Warning,
        PressureLevel::Pressure => Severity::Critical,
    });
    findings
        .chain(nodes)
        .chain(disk)
        .max()
        .unwrap_or(Severity::Ok)
}

/// Status, score and the score's parts of a report's parts.
pub fn status_and_score(
    nodes: &[NodeStatus],
    checks: &[CheckResult],
    disk: &[DiskPressure],
) -> (Severity, u8, Vec<ScorePart>) {
    let parts = parts(nodes, checks, disk);
    (status(nodes, checks, disk), overall(&parts), parts)
}

/// The score's section of `aggregator/CHECKS.md` (generated with the code table).
#[cfg(test)]
pub(crate) fn reference_section() -> String {
    format!(
        "\n## The score\n\n\
         Each report has a `score` from 0 to 100 (Popeye's model) and its `score_parts` \
         (JSON), one per check plus `{NODE_FRESHNESS}` and `{DISK_PRESSURE}`. \
         The `status` is the worst severity seen; the score says how much of the cluster is \
         healthy, so one noisy check cannot take it to 0.\n\n\
         | part | objects | an object costs |\n\
         |---|---|---|\n\
         | each check | the objects it judged (`objects`), at least those its findings name | \
         {CRITICAL_PENALTY} if its worst finding is critical, {WARNING_PENALTY} if a warning, 0 if info |\n\
         | `{NODE_FRESHNESS}` | the nodes the cluster lists or that reported | \
         {CRITICAL_PENALTY} if missing, {WARNING_PENALTY} if stale |\n\
         | `{DISK_PRESSURE}` | the nodes that reported | \
         {CRITICAL_PENALTY} if a filesystem is under disk pressure, {WARNING_PENALTY} if near it |\n\n\
         - part score = 100 × (1 − sum of the costs ÷ objects), e.g. 21 pods with 3 critical \
         and 8 warning: 100 × (1 − (3 + 4) ÷ 21) = 66.7;\n\
         - every part that judged at least one object has weight {PART_WEIGHT}; a check that \
         was not applicable or judged nothing has weight 0;\n\
         - score = the weighted mean of the part scores, rounded down (100 only when no \
         object is unhealthy; 100 when no part has weight).\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Finding;

    /// A check that judged `objects` objects; `sevs` are findings on objects p0, p1, …
    fn check(name: &str, objects: Option<usize>, sevs: &[Severity]) -> CheckResult {
        let findings = sevs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Finding::new(
                    "x",
                    *s,
                    ObjectRef {
                        kind: "Pod".into(),
                        name: format!("p{i}"),
                        ..Default::default()
                    },
                    "m",
                )
            })
            .collect();
        let c = CheckResult::new(name, "", findings);
        match objects {
            Some(n) => c.with_objects(n),
            None => c,
        }
    }

    fn node(name: &str, f: Freshness) -> NodeStatus {
        NodeStatus {
            node_name: name.into(),
            freshness: f,
            received_at: (f != Freshness::Missing).then(jiff::Timestamp::now),
            reports_stored_total: 0,
            report: None,
        }
    }

    fn disk(node: &str, level: PressureLevel) -> DiskPressure {
        DiskPressure {
            node_name: node.into(),
            mountpoint: "/".into(),
            used_percent: 90.0,
            level,
            reclaimable_bytes: None,
            events: vec![],
        }
    }

    fn score(nodes: &[NodeStatus], checks: &[CheckResult], d: &[DiskPressure]) -> (Severity, u8) {
        let (s, n, _) = status_and_score(nodes, checks, d);
        (s, n)
    }

    #[test]
    fn formula_table() {
        use Severity::*;
        let fresh = vec![node("a", Freshness::Fresh)];
        // (nodes, checks, disk) → (status, score), each row worked out by hand.
        type Row = (
            Vec<NodeStatus>,
            Vec<CheckResult>,
            Vec<DiskPressure>,
            (Severity, u8),
        );
        let rows: Vec<Row> = vec![
            // Nothing judged: 100.
            (vec![], vec![], vec![], (Ok, 100)),
            // One fresh node, no checks: nodes 100, disk 100.
            (fresh.clone(), vec![], vec![], (Ok, 100)),
            // 1 critical pod of 20: pods 95; with nodes 100 and disk 100: ⌊295/3⌋ = 98.
            (
                fresh.clone(),
                vec![check("pods", Some(20), &[Critical])],
                vec![],
                (Critical, 98),
            ),
            // A warning counts half: pods 97.5 → ⌊297.5/3⌋ = 99.
            (
                fresh.clone(),
                vec![check("pods", Some(20), &[Warning])],
                vec![],
                (Warning, 99),
            ),
            // Info costs nothing, but shows in the status.
            (
                fresh.clone(),
                vec![check("pods", Some(20), &[Info, Info])],
                vec![],
                (Info, 100),
            ),
            // Every object of one check critical: that check is 0, the others hold the
            // mean: (0 + 100 + 100 + 100) / 4 = 75, not 0.
            (
                fresh.clone(),
                vec![
                    check("pods", Some(10), &[Critical; 10]),
                    check("pvcs", Some(4), &[]),
                ],
                vec![],
                (Critical, 75),
            ),
            // More findings than objects said: the named objects count (10 of 10 critical).
            (
                fresh.clone(),
                vec![check("pods", Some(3), &[Critical; 10])],
                vec![],
                (Critical, 66),
            ),
            // No object count: the named objects are the objects (1 warning of 1 → 50).
            (
                fresh.clone(),
                vec![check("alertmanager", None, &[Warning])],
                vec![],
                (Warning, 83),
            ),
            // A check that ran on nothing, or does not apply, is not counted.
            (
                fresh.clone(),
                vec![check("helm", Some(0), &[])],
                vec![],
                (Ok, 100),
            ),
            (
                fresh.clone(),
                vec![CheckResult::not_applicable("pdbs", "no pdbs")],
                vec![],
                (Ok, 100),
            ),
            // Nodes: 1 fresh, 1 stale (½), 1 missing (1) of 3 → 50; disk over the 2 that
            // reported → 100; ⌊150/2⌋ = 75.
            (
                vec![
                    node("a", Freshness::Fresh),
                    node("b", Freshness::Stale),
                    node("c", Freshness::Missing),
                ],
                vec![],
                vec![],
                (Warning, 75),
            ),
            // Disk: 1 node near (½) of 2 reporting → 75; nodes 100 → 87.
            (
                vec![node("a", Freshness::Fresh), node("b", Freshness::Fresh)],
                vec![],
                vec![disk("a", PressureLevel::Near)],
                (Warning, 87),
            ),
            // Disk: under pressure (1) of 2 → 50; nodes 100 → 75.
            (
                vec![node("a", Freshness::Fresh), node("b", Freshness::Fresh)],
                vec![],
                vec![disk("a", PressureLevel::Pressure)],
                (Critical, 75),
            ),
        ];
        for (i, (nodes, checks, d, want)) in rows.into_iter().enumerate() {
            assert_eq!(score(&nodes, &checks, &d), want, "row {i}");
        }
    }

    #[test]
    fn the_reference_section_states_the_costs() {
        let s = reference_section();
        assert!(s.contains("| each check | the objects it judged"), "{s}");
        assert!(
            s.contains("1 if its worst finding is critical, 0.5 if a warning"),
            "{s}"
        );
        assert!(s.contains("weight 1;"), "{s}");
    }

    #[test]
    fn one_object_counts_once_at_its_worst_severity() {
        use Severity::*;
        let mut c = check("pods", Some(4), &[Warning]);
        // A second, critical finding on the same object p0 and an info one on p1.
        let mut more = check("pods", None, &[Critical, Info]).findings;
        c.findings.append(&mut more);
        let p = check_part(&c);
        assert_eq!(
            (p.objects, p.critical, p.warning, p.info, p.score, p.weight),
            (4, 1, 0, 1, 75.0, 1.0)
        );
    }

    #[test]
    fn parts_list_every_check_then_nodes_and_disk_with_one_decimal() {
        use Severity::*;
        let nodes = [node("a", Freshness::Fresh), node("b", Freshness::Missing)];
        let checks = [
            check(
                "pods",
                Some(21),
                &[Critical, Critical, Critical, Warning, Warning],
            ),
            CheckResult::not_applicable("pdbs", "none"),
        ];
        let (_, overall_score, p) = status_and_score(&nodes, &checks, &[]);
        let got: Vec<(&str, PartKind, f64, f64, usize)> = p
            .iter()
            .map(|p| (p.name.as_str(), p.kind, p.score, p.weight, p.objects))
            .collect();
        assert_eq!(
            got,
            vec![
                // 100 × (1 − (3 + 1) / 21) = 80.95…
                ("pods", PartKind::Check, 81.0, 1.0, 21),
                ("pdbs", PartKind::Check, 100.0, 0.0, 0),
                (NODE_FRESHNESS, PartKind::Nodes, 50.0, 1.0, 2),
                (DISK_PRESSURE, PartKind::Disk, 100.0, 1.0, 1),
            ]
        );
        // ⌊(80.95 + 50 + 100) / 3⌋ = 76.
        assert_eq!(overall_score, 76);
    }
}
