//! The `check` and `cleanup` command lines, run as a user would.

use std::path::PathBuf;
use std::process::{Command, Output};

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caretaker-aggregator"))
        .args(args)
        .output()
        .unwrap()
}

const NOW: &str = "2025-06-01T12:00:00Z";

#[test]
fn check_json_output_has_results_proposals_and_load_summary() {
    let o = run(&[
        "check",
        "--from-dump",
        &fixture("pods.json"),
        &fixture("events.yaml"),
        "--output",
        "json",
        "--now",
        NOW,
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["now"], NOW);
    assert_eq!(v["source"], "dump");
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "nodes",
            "pods",
            "workloads",
            "pdbs",
            "services",
            "ingresses",
            "cronjobs",
            "events",
            "certificates",
            "velero",
            "pvcs",
            "hpas",
            "helm",
            "resources",
            "vulnerabilities"
        ]
    );
    assert_eq!(v["checks"][1]["severity"], "critical");
    assert_eq!(v["checks"][1]["findings"].as_array().unwrap().len(), 9);
    assert_eq!(
        v["load"]["unknown_kinds"]["NetworkPolicy.networking.k8s.io"],
        1
    );
    assert_eq!(v["load"]["problems"][0]["document"], 4);
    let proposals: Vec<&str> = v["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["object"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(proposals, vec!["evicted", "failed-once"]);
}

#[test]
fn check_markdown_output_is_a_report_with_pipe_tables() {
    let o = run(&[
        "check",
        "--from-dump",
        &fixture("velero.json"),
        "--output",
        "markdown",
        "--now",
        NOW,
    ]);
    assert_eq!(o.status.code(), Some(0));
    let s = String::from_utf8(o.stdout).unwrap();
    assert!(
        s.starts_with("## Cluster checks as of 2025-06-01T12:00:00Z\n"),
        "{s}"
    );
    assert!(s.contains("\n### velero (critical)\n"), "{s}");
    assert!(
        s.lines().any(|l| l.starts_with("| critical ")
            && l.contains("| backup_failed ")
            && l.contains("Backup/velero/manual-1")),
        "{s}"
    );
}

#[test]
fn check_table_output_lists_findings() {
    let o = run(&["check", "--from-dump", &fixture("hpas.json"), "--now", NOW]);
    assert_eq!(o.status.code(), Some(0));
    let s = String::from_utf8(o.stdout).unwrap();
    // kubectl's columns: NAMESPACE, then NAME as Kind/name.
    assert!(
        s.lines().any(|l| l.starts_with("web ")
            && l.contains("hpa_at_max")
            && l.contains(" HorizontalPodAutoscaler/capped ")),
        "{s}"
    );
}

#[test]
fn bad_flags_and_config_exit_64() {
    let o = run(&[
        "check",
        "--from-dump",
        &fixture("hpas.json"),
        "--output",
        "xml",
    ]);
    assert_eq!(o.status.code(), Some(64));
    let o = run(&[
        "check",
        "--from-dump",
        &fixture("hpas.json"),
        "--now",
        "yesterday",
    ]);
    assert_eq!(o.status.code(), Some(64));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, "checks:\n  pods:\n    restart_treshold: 1\n").unwrap();
    let o = run(&[
        "check",
        "--from-dump",
        &fixture("hpas.json"),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(64));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("c.yaml") && err.contains("restart_treshold") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn missing_dump_path_is_an_error_naming_it() {
    let o = run(&["check", "--from-dump", "/nonexistent/dump.json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read dump /nonexistent/dump.json"));
}

#[test]
fn cleanup_refuses_apply_on_a_dump() {
    let o = run(&[
        "cleanup",
        "--from-dump",
        &fixture("cleanup.json"),
        "--apply",
    ]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains(
        "--apply deletes objects through the API server and cannot be used with --from-dump"
    ));
    assert!(o.stdout.is_empty());
}

#[test]
fn cleanup_dry_run_json_on_a_dump_with_kind_filter() {
    let o = run(&[
        "cleanup",
        "--from-dump",
        &fixture("cleanup.json"),
        &fixture("cleanup-empty-lists.json"),
        "--kind",
        "Job",
        "--kind",
        "rs",
        "--output",
        "json",
        "--now",
        NOW,
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    let got: Vec<(&str, &str)> = v["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["code"].as_str().unwrap(),
                p["object"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("completed_job", "job-old-done"),
            ("completed_job", "nightly-1"),
            ("completed_job", "nightly-2"),
            ("old_replica_set", "web-rev3")
        ]
    );
    assert_eq!(v["proposals"][0]["propagation"], "background");
    assert_eq!(v["proposals"][0]["action"], "delete");
}

/// `cleanup --apply` waits for the maintenance window (default Sunday 03:00–05:00
/// Asia/Tokyo): outside it nothing is read or deleted and the exit code is 75; inside it,
/// or with `--force`, it goes on to the cluster (here there is none, so it fails there).
#[test]
fn cleanup_apply_waits_for_the_maintenance_window_unless_forced() {
    let kubeconfig = tempfile::NamedTempFile::new().unwrap(); // empty: no cluster
    let run_at = |now: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_caretaker-aggregator"))
            .args(["cleanup", "--apply", "--now", now])
            .args(extra)
            .env("KUBECONFIG", kubeconfig.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap()
    };
    // Monday 2026-11-30 12:00 in Tokyo.
    let o = run_at("2026-11-30T03:00:00Z", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(75), "{err}");
    assert!(
        err.contains(
            "nothing deleted: outside the maintenance window (Sunday 03:00 for 2h (Asia/Tokyo))"
        ),
        "{err}"
    );
    assert!(
        err.contains("2026-12-06 03:00"),
        "the next opening is named: {err}"
    );
    assert!(o.stdout.is_empty());
    // Forced, and inside the window (Sunday 2026-11-29 03:30 JST): past the gate, to the cluster.
    for o in [
        run_at("2026-11-30T03:00:00Z", &["--force"]),
        run_at("2026-11-28T18:30:00Z", &[]),
    ] {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            !err.contains("maintenance window") && err.contains("Kubernetes"),
            "{err}"
        );
    }
    // Another window from the config file.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, "schedule:\n  time_zone: UTC\n  maintenance_window:\n    days: [monday]\n    start: \"02:00\"\n    duration: 2h\n").unwrap();
    let o = run_at("2026-11-30T03:00:00Z", &["--config", cfg.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "inside Monday 02:00-04:00 UTC: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // --force without --apply is a usage error.
    let o = run(&["cleanup", "--force"]);
    assert_eq!(o.status.code(), Some(64));
}

/// `--fail-on` turns findings into an exit code for cron jobs: 2 when a check is at the
/// level or worse (after the full output), 0 otherwise.
#[test]
fn check_fail_on_exits_2_at_or_above_the_level_after_the_output() {
    let o = run(&[
        "check",
        "--from-dump",
        &fixture("pods.json"),
        "--now",
        NOW,
        "--output",
        "json",
        "--fail-on",
        "warning",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("the whole output comes first");
    assert_eq!(v["checks"][1]["severity"], "critical");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("2 check(s) at warning or worse: pods, resources (--fail-on warning)"),
        "{err}"
    );
    // A cluster with nothing wrong passes even the strictest level.
    let o = run(&[
        "check",
        "--from-dump",
        &fixture("cleanup-empty-lists.json"),
        "--now",
        NOW,
        "--fail-on",
        "info",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&[
        "check",
        "--from-dump",
        &fixture("pods.json"),
        "--fail-on",
        "fatal",
    ]);
    assert_eq!(o.status.code(), Some(64));
}

/// A dump that could not be read is an error naming the file, never "every check not
/// applicable" with exit 0: an empty directory, an empty file, a truncated JSON file
/// (kubectl's output cut off by a full disk or a killed pipe).
#[test]
fn unreadable_dumps_exit_1_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty_dir = dir.path().join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    std::fs::write(empty_dir.join("notes.txt"), "not a dump").unwrap();
    let o = run(&["check", "--from-dump", empty_dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "no dump files (*.json, *.yaml, *.yml) under {}",
            empty_dir.display()
        )),
        "{err}"
    );
    assert!(o.stdout.is_empty());

    let empty_file = dir.path().join("pods.json");
    std::fs::write(&empty_file, "\n").unwrap();
    let o = run(&["check", "--from-dump", empty_file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("dump file {} is empty", empty_file.display())),
        "{err}"
    );

    // The real pods fixture cut in the middle of an object.
    let full = std::fs::read(fixture("pods.json")).unwrap();
    let truncated = dir.path().join("truncated.json");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let o = run(&[
        "check",
        "--from-dump",
        &fixture("hpas.json"),
        truncated.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot read dump {}: document 1: invalid JSON: EOF while parsing",
            truncated.display()
        )) && err.contains("the rest of the file is skipped"),
        "{err}"
    );
    assert!(o.stdout.is_empty(), "no verdict on a partial source");
}

/// `--exclude-code` silences findings by code: they leave the verdict and `--fail-on`, are
/// counted per check, and `--show-silenced` lists them.
#[test]
fn exclude_code_silences_counts_and_lists_on_request() {
    let base = [
        "check",
        "--from-dump",
        &fixture("workloads.json"),
        "--now",
        NOW,
        "--output",
        "json",
    ];
    let o = run(&base);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["checks"][2]["name"], "workloads");
    assert_eq!(v["checks"][2]["severity"], "critical");
    assert!(v.get("silenced").is_none());

    let mut args = base.to_vec();
    args.extend([
        "--exclude-code",
        "rollout_stuck,no_replicas_available",
        "--fail-on",
        "critical",
        "--exclude-code",
        "crash_loop_back_off",
        "--exclude-code",
        "storage_location_unavailable",
    ]);
    let o = run(&args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "nothing critical is left: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["checks"][2]["severity"], "warning");
    assert_eq!(v["checks"][2]["silenced"], 2);
    assert_eq!(v["checks"][2]["findings"].as_array().unwrap().len(), 3);
    assert!(v.get("silenced").is_none(), "listed only on request");

    args.push("--show-silenced");
    let o = run(&args);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let listed: Vec<(&str, &str)> = v["silenced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap(), p[1]["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("pods", "crash_loop_back_off"),
            ("workloads", "no_replicas_available"),
            ("workloads", "rollout_stuck"),
            ("velero", "storage_location_unavailable"),
        ]
    );

    let o = run(&[
        "check",
        "--from-dump",
        &fixture("workloads.json"),
        "--now",
        NOW,
        "--exclude-code",
        "rollout_stuck",
    ]);
    let s = String::from_utf8(o.stdout).unwrap();
    assert!(
        s.contains(
            "1 finding(s) silenced by checks.exclude or --exclude-code (--show-silenced lists them)"
        ),
        "{s}"
    );
    assert!(!s.contains("rollout stuck"), "{s}");
}

/// `checks.exclude` and `checks.severity_overrides` in `--config` are obeyed by `check`;
/// an entry past its `until` date no longer applies and is reported as expired.
#[test]
fn config_exclude_and_overrides_apply_until_their_date() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("caretaker.yaml");
    std::fs::write(
        &config,
        "checks:\n  exclude:\n  - kind: Deployment\n    check: workloads\n    namespace: sh*\n    name: check*\n  - code: crash_loop_back_off\n    until: 2000-01-01\n  severity_overrides:\n  - code: storage_location_unavailable\n    severity: info\n",
    )
    .unwrap();
    let o = run(&[
        "check",
        "--from-dump",
        &fixture("workloads.json"),
        "--now",
        NOW,
        "--output",
        "json",
        "--show-silenced",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let silenced: Vec<(&str, &str)> = v["silenced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[1]["code"].as_str().unwrap(),
                p[1]["object"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(silenced, vec![("rollout_stuck", "checkout")]);
    let checks = v["checks"].as_array().unwrap();
    let by_name = |n: &str| checks.iter().find(|c| c["name"] == n).unwrap();
    assert_eq!(by_name("workloads")["silenced"], 1);
    assert_eq!(
        by_name("pods")["severity"],
        "critical",
        "the expired exclude no longer applies"
    );
    let velero = by_name("velero");
    assert_eq!(
        velero["findings"][0]["code"],
        "storage_location_unavailable"
    );
    assert_eq!(velero["findings"][0]["severity"], "info");
    let expired = by_name("silencing");
    assert_eq!(expired["findings"][0]["code"], "silence_expired");
    assert_eq!(
        expired["findings"][0]["message"],
        "checks.exclude[1] (code=crash_loop_back_off) expired 2000-01-01; it no longer applies"
    );
}

/// Issue 12: `checks.namespaces` is honoured on dumps too, not only on a live cluster.
#[test]
fn check_on_a_dump_keeps_only_the_configured_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, "checks:\n  namespaces: [shop]\n").unwrap();
    let (renewal, requests) = (
        fixture("certificates-renewal.json"),
        fixture("certificate-requests.json"),
    );
    let findings = |extra: &[&str]| {
        let mut args = vec![
            "check",
            "--from-dump",
            &renewal,
            &requests,
            "--output",
            "json",
            "--now",
            NOW,
        ];
        args.extend_from_slice(extra);
        let o = run(&args);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
        let certs = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "certificates")
            .unwrap()
            .clone();
        let mut objects: Vec<String> = certs["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                format!(
                    "{}/{}",
                    f["object"]["namespace"].as_str().unwrap(),
                    f["object"]["name"].as_str().unwrap()
                )
            })
            .collect();
        objects.sort();
        objects
    };
    assert_eq!(
        findings(&[]),
        vec![
            "shop/shop-tls",
            "web/bad-csr-tls",
            "web/denied-tls",
            "web/new-tls"
        ]
    );
    assert_eq!(
        findings(&["--config", cfg.to_str().unwrap()]),
        vec!["shop/shop-tls"]
    );
}
