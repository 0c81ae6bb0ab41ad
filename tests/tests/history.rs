//! The aggregator process reading a cluster dump: rounds on demand, the report history
//! (`report --at`, `report --diff`), a missing node, and a killed aggregator that reopens
//! its store with every recorded report and acked node report.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use caretaker_tests::binary;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn dump(crash_looping: bool) -> String {
    let api_status = if crash_looping {
        r#"{"name":"api","ready":false,"restartCount":12,"image":"shop/api:1","imageID":"","state":{"waiting":{"reason":"CrashLoopBackOff","message":"back-off 5m0s"}},"lastState":{"terminated":{"exitCode":1,"reason":"Error","finishedAt":"2026-11-29T02:55:00Z"}}}"#
    } else {
        r#"{"name":"api","ready":true,"restartCount":12,"image":"shop/api:1","imageID":"","state":{"running":{"startedAt":"2026-11-29T02:58:00Z"}}}"#
    };
    format!(
        r#"{{"apiVersion":"v1","kind":"List","items":[
  {{"apiVersion":"v1","kind":"Node","metadata":{{"name":"node-a","uid":"n1","creationTimestamp":"2026-01-01T00:00:00Z"}},
    "status":{{"conditions":[{{"type":"Ready","status":"True"}}],"allocatable":{{"cpu":"4","memory":"8Gi"}}}}}},
  {{"apiVersion":"v1","kind":"Node","metadata":{{"name":"node-b","uid":"n2","creationTimestamp":"2026-01-01T00:00:00Z"}},
    "status":{{"conditions":[{{"type":"Ready","status":"True"}}],"allocatable":{{"cpu":"4","memory":"8Gi"}}}}}},
  {{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"api","namespace":"shop","uid":"p1","creationTimestamp":"2026-11-28T00:00:00Z"}},
    "spec":{{"nodeName":"node-a","containers":[{{"name":"api","image":"shop/api:1"}}]}},
    "status":{{"phase":"Running","conditions":[{{"type":"Ready","status":"{ready}"}}],"containerStatuses":[{api_status}]}}}}
]}}"#,
        ready = if crash_looping { "False" } else { "True" }
    )
}

fn http_get(port: u16, path: &str) -> Option<serde_json::Value> {
    let out = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}{path}")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn http_post(port: u16, path: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            &format!("http://127.0.0.1:{port}{path}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "POST {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn start(cfg: &std::path::Path) -> Child {
    Command::new(binary("caretaker-aggregator"))
        .args(["serve", "--config"])
        .arg(cfg)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn codes(report: &serde_json::Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

fn cli_report(grpc: u16, args: &[&str]) -> serde_json::Value {
    let out = Command::new(binary("caretaker-aggregator"))
        .args([
            "report",
            "--output",
            "json",
            "--server",
            &format!("http://127.0.0.1:{grpc}"),
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "report {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn rounds_history_diff_and_a_killed_aggregator_keep_everything() {
    let dir = tempfile::tempdir().unwrap();
    let dump_dir = dir.path().join("dump");
    std::fs::create_dir_all(&dump_dir).unwrap();
    std::fs::write(dump_dir.join("cluster.json"), dump(true)).unwrap();
    let (grpc, http) = (free_port(), free_port());
    let cfg = dir.path().join("aggregator.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: {{grpc: 127.0.0.1:{grpc}, http: 127.0.0.1:{http}}}\ninsecure_plaintext: true\nauth: {{allow_anonymous: true}}\ndata_dir: {}\ncluster:\n  source: dump\n  dump_paths: [{}]\n  interval: 1h\n",
            dir.path().join("data").display(),
            dump_dir.display()
        ),
    )
    .unwrap();
    let mut agg = start(&cfg);

    // One agent, for node-a only: node-b is listed by the cluster but missing.
    let agent_cfg = dir.path().join("agent.yaml");
    std::fs::write(&agent_cfg, format!("node_name: node-a\nlisten_http: null\nreport_interval: 200ms\naggregator:\n  endpoint: http://127.0.0.1:{grpc}\n  insecure_plaintext: true\n")).unwrap();
    let mut agent = Command::new(binary("caretaker-agent"))
        .args(["run", "--config"])
        .arg(&agent_cfg)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // The first round runs at start and is recorded.
    let first = wait_for("the first recorded report", || {
        let h = http_get(http, "/api/v1/history")?;
        h["reports"]
            .as_array()
            .filter(|r| !r.is_empty())
            .map(|r| r[0]["at"].as_str().unwrap().to_string())
    });
    let live = wait_for("node-a reporting", || {
        let r = http_get(http, "/api/v1/report")?;
        (r["nodes"][0]["freshness"] == "fresh").then_some(r)
    });
    let freshness: Vec<(&str, &str)> = live["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node_name"].as_str().unwrap(),
                n["freshness"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(freshness, vec![("node-a", "fresh"), ("node-b", "missing")]);
    assert!(
        codes(&live).contains(&"crash_loop_back_off".to_string()),
        "{:?}",
        codes(&live)
    );
    assert_eq!(live["status"], "critical");

    // The crash loop is fixed; a round on demand records the new state.
    std::fs::write(dump_dir.join("cluster.json"), dump(false)).unwrap();
    let after = http_post(http, "/api/v1/run");
    assert!(
        !codes(&after).contains(&"crash_loop_back_off".to_string()),
        "{:?}",
        codes(&after)
    );
    let history = http_get(http, "/api/v1/history").unwrap();
    let reports = history["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 2);
    let second = reports[1]["at"].as_str().unwrap().to_string();

    // --at and --diff through the CLI (gRPC).
    let at_first = cli_report(grpc, &["--at", &first]);
    assert!(codes(&at_first).contains(&"crash_loop_back_off".to_string()));
    let diff = cli_report(grpc, &["--diff", &first, &second]);
    let resolved: Vec<&str> = diff["resolved"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(resolved.contains(&"crash_loop_back_off"), "{diff}");
    assert_eq!(diff["new"], serde_json::json!([]));

    // Killed, not stopped: the store reopens with both reports and node-a's latest report.
    let stored_before = wait_for("node-a's count", || {
        http_get(http, "/api/v1/nodes/node-a")?["reports_stored_total"].as_u64()
    });
    agg.kill().unwrap();
    agg.wait().unwrap();
    agent.kill().unwrap();
    agent.wait().unwrap();
    let mut agg = start(&cfg);
    let reopened = wait_for("the restarted aggregator", || {
        http_get(http, "/api/v1/history")
    });
    // Both kept; the round the restarted aggregator runs at start is not recorded, since
    // the last record is younger than `record_interval` (1h).
    assert_eq!(reopened["reports"].as_array().unwrap().len(), 2);
    let node = http_get(http, "/api/v1/nodes/node-a").unwrap();
    assert!(
        node["reports_stored_total"].as_u64().unwrap() >= stored_before,
        "{node}"
    );
    agg.kill().unwrap();
    agg.wait().unwrap();
}
