//! The Markdown maintenance record of the example cluster (`examples/cluster-dump`): its
//! score and its monthly checklist, each item ticked from the check that covers it.

use std::path::PathBuf;

use caretaker_aggregator::checks::{self, ChecksConfig, Severity};
use caretaker_aggregator::cluster::dump;
use caretaker_aggregator::report::{self, CheckRound, ClusterReport, MergeConfig, Output};
use jiff::Timestamp;

fn now() -> Timestamp {
    "2025-06-01T12:00:00Z".parse().unwrap()
}

/// The example dump's checks merged as a report with no agent reports.
fn example() -> ClusterReport {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster-dump");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let state = dump::load(&files).unwrap();
    let round = CheckRound {
        at: Some(now()),
        checks: checks::run_all(&state, &ChecksConfig::default(), now()),
        ..CheckRound::default()
    };
    report::merge(&[], &round, &MergeConfig::default(), now())
}

#[test]
fn every_check_that_ran_on_the_example_says_how_many_objects_it_judged() {
    let r = example();
    for c in &r.checks {
        if c.status == checks::CheckStatus::Ran {
            assert!(
                c.objects.is_some(),
                "{} judges objects but does not count them",
                c.name
            );
        }
    }
}

#[test]
fn the_example_cluster_scores_by_its_healthy_share_not_zero() {
    let r = example();
    assert_eq!(r.status, Severity::Critical);
    let parts: Vec<(&str, f64, usize, usize, usize)> = r
        .score_parts
        .iter()
        .filter(|p| p.weight > 0.0)
        .map(|p| (p.name.as_str(), p.score, p.objects, p.critical, p.warning))
        .collect();
    assert_eq!(
        parts,
        vec![
            ("certificates", 50.0, 2, 1, 0),
            ("cronjobs", 100.0, 1, 0, 0),
            ("hpas", 62.5, 4, 0, 3),
            ("nodes", 50.0, 4, 1, 2),
            ("pods", 66.7, 21, 3, 8),
            ("pvcs", 87.5, 4, 0, 1),
            ("resources", 58.0, 25, 0, 21),
            ("velero", 73.1, 13, 2, 3),
            ("workloads", 100.0, 1, 0, 0),
        ]
    );
    // No node reports and no node list: node freshness and disk judge nothing.
    // ⌊(50 + 100 + 62.5 + 50 + 66.67 + 87.5 + 58 + 73.08 + 100) / 9⌋ = 71.
    assert_eq!(r.score, 71);
}

#[test]
fn the_record_ticks_each_checklist_item_from_the_check_that_covers_it() {
    let md = report::render(&example(), Output::Markdown).unwrap();
    let section = |title: &str| -> Vec<&str> {
        let start = md
            .find(&format!("### {title}\n\n"))
            .unwrap_or_else(|| panic!("{title}: {md}"));
        md[start..]
            .lines()
            .skip(2)
            .take_while(|l| !l.is_empty())
            .collect()
    };
    assert!(
        md.contains(
            "\n## Monthly checklist\n\nEvidence: the checks of this report (round of 2025-06-01 12:00 UTC).\n"
        ),
        "{md}"
    );
    assert_eq!(
        section("Security"),
        vec![
            "- [x] certificate expiry checked: 2 certificates, 1 expiring (see [certificates](#certificates))",
            "- [ ] vulnerability reports reviewed: not applicable (no vulnerabilityreports.aquasecurity.github.io in the source) (see [vulnerabilities](#vulnerabilities))",
            "- [ ] firing alerts reviewed: the alertmanager check did not run",
        ]
    );
    assert_eq!(
        section("Performance"),
        vec![
            "- [x] node conditions and capacity checked: 3 nodes, 3 with problems (see [nodes](#nodes))",
            "- [x] requests and limits reviewed: 25 workloads, 21 without requests or limits (see [resources](#resources))",
            "- [x] autoscalers checked: 4 HPAs, 3 at their maximum or failing (see [hpas](#hpas))",
            "- [x] volume usage checked: 4 claims, 1 full, pending or lost (see [pvcs](#pvcs))",
            "- [ ] daily log check reviewed: the log_check check did not run",
            "- [ ] resource recommendations reviewed: the recommendations check did not run",
            "- [ ] capacity trend reviewed: the capacity check did not run",
        ]
    );
    assert_eq!(
        section("Dependencies"),
        vec![
            "- [x] Helm releases checked: 0 releases, 0 failed or stuck (see [helm](#helm))",
            "- [x] rollouts checked: 1 workloads, 0 unavailable or stuck (see [workloads](#workloads))",
            "- [ ] chart updates looked up: the chart_updates check did not run",
        ]
    );
    assert_eq!(
        section("Backups"),
        vec![
            "- [x] backups checked: 13 backups, schedules and storage locations, 5 failed, stale or unavailable (see [velero](#velero))",
            "- [ ] restore test: restore a recent backup into a scratch namespace and verify the data (open: for a person, no check covers it)",
            "- [ ] disaster-recovery drill: rebuild a service from backups following the runbook (open: for a person, no check covers it)",
        ]
    );
    // Every link has its target section.
    for anchor in [
        "certificates",
        "vulnerabilities",
        "nodes",
        "resources",
        "hpas",
        "pvcs",
        "helm",
        "workloads",
        "velero",
    ] {
        assert!(
            md.contains(&format!("\n### {anchor}\n\n")),
            "no section for #{anchor}"
        );
    }
    let certs = section("certificates");
    assert_eq!(
        certs[0],
        "critical: 2 cert-manager Certificates, 0 TLS Secrets."
    );
}
