//! The report's overall status and score.
//!
//! **Status** is the worst of: every finding's severity; `warning` for a stale or missing
//! node; `warning` for a filesystem near disk pressure and `critical` for one under
//! pressure.
//!
//! **Score** starts at 100 and loses, floored at 0:
//! - per check, 15 per critical, 5 per warning and 1 per info finding, at most 40 per
//!   check (one noisy check cannot hide every other problem, nor zero the score alone);
//! - 10 per stale node and 15 per missing node (a node nobody watches is worse than one
//!   that stopped for a while);
//! - 10 per node under disk pressure and 3 per node near it.
//!
//! So a cluster with no findings and every node fresh scores 100; one critical finding
//! gives 85; a whole check failing gives at most 60.

use caretaker_core::model::{Freshness, NodeStatus};

use super::{DiskPressure, PressureLevel};
use crate::checks::{CheckResult, Severity};

/// Most points one check can take off the score.
pub const MAX_PER_CHECK: u32 = 40;

/// Status and score of a report's parts.
pub fn status_and_score(
    nodes: &[NodeStatus],
    checks: &[CheckResult],
    disk: &[DiskPressure],
) -> (Severity, u8) {
    let mut status = Severity::Ok;
    let mut lost: u32 = 0;
    for c in checks {
        let mut check_lost = 0u32;
        for f in &c.findings {
            status = status.max(f.severity);
            check_lost += match f.severity {
                Severity::Critical => 15,
                Severity::Warning => 5,
                Severity::Info => 1,
                Severity::Ok => 0,
            };
        }
        lost += check_lost.min(MAX_PER_CHECK);
    }
    for n in nodes {
        match n.freshness {
            Freshness::Fresh => {}
            Freshness::Stale => {
                status = status.max(Severity::Warning);
                lost += 10;
            }
            Freshness::Missing => {
                status = status.max(Severity::Warning);
                lost += 15;
            }
        }
    }
    for d in disk {
        let (sev, pts) = match d.level {
            PressureLevel::Near => (Severity::Warning, 3),
            PressureLevel::Pressure => (Severity::Critical, 10),
        };
        status = status.max(sev);
        lost += pts;
    }
    (
        status,
        u8::try_from(100u32.saturating_sub(lost)).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{Finding, ObjectRef};

    fn check(name: &str, sevs: &[Severity]) -> CheckResult {
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
        CheckResult::new(name, "", findings)
    }

    fn node(name: &str, f: Freshness) -> NodeStatus {
        NodeStatus {
            node_name: name.into(),
            freshness: f,
            received_at: None,
            reports_stored_total: 0,
            report: None,
        }
    }

    #[test]
    fn formula_table() {
        use Severity::*;
        assert_eq!(status_and_score(&[], &[], &[]), (Ok, 100));
        assert_eq!(
            status_and_score(&[], &[check("pods", &[Critical])], &[]),
            (Critical, 85)
        );
        assert_eq!(
            status_and_score(&[], &[check("pods", &[Warning, Info, Info])], &[]),
            (Warning, 93)
        );
        // Capped at 40 per check.
        assert_eq!(
            status_and_score(&[], &[check("pods", &[Critical; 10])], &[]),
            (Critical, 60)
        );
        assert_eq!(
            status_and_score(
                &[],
                &[
                    check("a", &[Critical; 10]),
                    check("b", &[Critical; 10]),
                    check("c", &[Critical; 10])
                ],
                &[]
            ),
            (Critical, 0)
        );
        let nodes = [
            node("a", Freshness::Fresh),
            node("b", Freshness::Stale),
            node("c", Freshness::Missing),
        ];
        assert_eq!(status_and_score(&nodes, &[], &[]), (Warning, 75));
        let disk = |level| DiskPressure {
            node_name: "a".into(),
            mountpoint: "/".into(),
            used_percent: 90.0,
            level,
            reclaimable_bytes: None,
            events: vec![],
        };
        assert_eq!(
            status_and_score(&[], &[], &[disk(PressureLevel::Near)]),
            (Warning, 97)
        );
        assert_eq!(
            status_and_score(&[], &[], &[disk(PressureLevel::Pressure)]),
            (Critical, 90)
        );
    }
}
