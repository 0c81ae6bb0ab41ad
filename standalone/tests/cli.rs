//! The real `caretaker-standalone` binary.

use std::process::Command;

fn standalone() -> Command {
    Command::new(env!("CARGO_BIN_EXE_caretaker-standalone"))
}

#[test]
fn standalone_once_prints_json_with_the_root_filesystem() {
    let out = standalone()
        .args(["--once", "--no-cluster", "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["schema_version"],
        caretaker_aggregator::report::SCHEMA_VERSION
    );
    // A fresh node and no checks: only this machine's own disk can cost points (filesystems
    // at or above 85 % cost 10, at or above 80 % cost 3), whatever else is mounted here now.
    let lost: u64 = v["disk_pressure"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| if d["level"] == "pressure" { 10 } else { 3 })
        .sum();
    assert_eq!(
        v["score"].as_u64(),
        Some(100 - lost),
        "{}",
        v["disk_pressure"]
    );
    let expected = if lost == 0 {
        "ok"
    } else if v["disk_pressure"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["level"] == "pressure")
    {
        "critical"
    } else {
        "warning"
    };
    assert_eq!(v["status"], expected);
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["freshness"], "fresh");
    assert!(nodes[0]["reports_stored_total"].as_u64().unwrap() >= 2);
    let fs = nodes[0]["report"]["filesystems"].as_array().unwrap();
    let root = fs
        .iter()
        .find(|f| f["mountpoint"] == "/")
        .expect("root filesystem listed");
    assert!(root["size_bytes"].as_u64().unwrap() > 0);
    assert!(nodes[0]["report"]["agent"]["rss_bytes"].as_u64().unwrap() > 0);
    assert!(
        nodes[0]["report"]["network"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["device"] == "lo")
    );
}

#[test]
fn standalone_markdown_is_a_dated_record() {
    let out = standalone()
        .args(["--once", "--no-cluster", "--output", "markdown"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.starts_with("# caretaker maintenance record, "), "{md}");
    assert!(
        md.contains("\n- nodes: 1 (1 fresh, 0 stale, 0 missing)\n"),
        "{md}"
    );
    for section in [
        "## What was done",
        "## Results",
        "## Problems",
        "## Next actions",
        "## Node details",
    ] {
        assert!(md.contains(section), "{section} missing: {md}");
    }
}

#[test]
fn standalone_html_is_the_report_page_with_this_machines_root_filesystem() {
    let out = standalone()
        .args(["--once", "--output", "html"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    // A fresh node and no checks: the status is ok unless this machine's own disk is near
    // or under pressure right now (it is shared with other builds), never anything else.
    assert!(
        ["ok", "warning", "critical"]
            .iter()
            .any(|s| page.contains(&format!(r#"<span class="value">{s}</span>"#))),
        "{page}"
    );
    assert!(!page.contains(r#"<span class="value">info</span>"#));
    assert!(
        page.contains(r#"data-mount="/" "#),
        "a disk bar for the root filesystem: {page}"
    );
    assert!(page.trim_end().ends_with("</html>"));
}

#[test]
fn standalone_runs_the_cluster_checks_and_proposals_on_the_example_dump_beside_this_node() {
    let out = standalone()
        .args(["--once", "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in ["nodes", "pods", "certificates", "velero", "hpas"] {
        assert!(checks.contains(&name), "{name} in {checks:?}");
    }
    // examples/cluster-dump has completed Jobs, old ReplicaSets, failed pods, snapshots.
    let kinds: std::collections::BTreeSet<&str> = v["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["object"]["kind"].as_str().unwrap())
        .collect();
    for kind in ["Job", "ReplicaSet", "Pod", "VolumeSnapshot"] {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }
    // This machine's own report is there, fresh, next to the dump's nodes (no agent there).
    let nodes = v["nodes"].as_array().unwrap();
    let fresh: Vec<&serde_json::Value> =
        nodes.iter().filter(|n| n["freshness"] == "fresh").collect();
    assert_eq!(fresh.len(), 1, "{nodes:?}");
    assert!(
        !fresh[0]["report"]["filesystems"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    for n in ["node-a", "node-b", "node-c"] {
        assert!(
            nodes.iter().any(|x| x["node_name"] == n),
            "{n} from the dump"
        );
    }
}

#[test]
fn standalone_refuses_a_missing_dump_by_name() {
    let out = standalone()
        .args(["--once", "--from-dump", "/nonexistent/dump.json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--from-dump /nonexistent/dump.json"), "{err}");
}
