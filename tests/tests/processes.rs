//! The two real binaries as separate processes: `caretaker-aggregator serve` and
//! `caretaker-agent run`, queried with `caretaker-aggregator report`, stopped with SIGTERM.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use caretaker_tests::binary;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Sends SIGTERM and waits for the exit status (up to 10 s, then SIGKILL and fail).
fn terminate(mut child: Child, what: &str) -> std::process::ExitStatus {
    kill(Pid::from_raw(i32::try_from(child.id()).unwrap()), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not stop after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn report_json(grpc: u16) -> Option<serde_json::Value> {
    let out = Command::new(binary("caretaker-aggregator"))
        .args(["report", "--output", "json", "--server", &format!("http://127.0.0.1:{grpc}")])
        .output()
        .ok()?;
    out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
}

#[test]
fn serve_and_run_processes_report_and_stop_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let agg_cfg = dir.path().join("aggregator.yaml");
    std::fs::write(
        &agg_cfg,
        format!(
            "listen:\n  grpc: 127.0.0.1:{grpc}\n  http: 127.0.0.1:{http}\ndata_dir: {}\ninsecure_plaintext: true\nauth:\n  allow_anonymous: true\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let aggregator = Command::new(binary("caretaker-aggregator"))
        .args(["serve", "--config"])
        .arg(&agg_cfg)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let mut agents = Vec::new();
    for node in ["proc-a", "proc-b"] {
        let cfg = dir.path().join(format!("{node}.yaml"));
        std::fs::write(&cfg, format!("node_name: {node}\nreport_interval: 200ms\naggregator:\n  endpoint: http://127.0.0.1:{grpc}\n  insecure_plaintext: true\n")).unwrap();
        agents.push(Command::new(binary("caretaker-agent")).args(["run", "--config"]).arg(&cfg).stderr(Stdio::null()).spawn().unwrap());
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        if let Some(v) = report_json(grpc) {
            let ok = v["nodes"].as_array().is_some_and(|n| {
                n.len() == 2 && n.iter().all(|x| x["reports_stored_total"].as_u64().unwrap_or(0) >= 2)
            });
            if ok {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "no report with two nodes");
        std::thread::sleep(Duration::from_millis(100));
    };
    let names: Vec<&str> = report["nodes"].as_array().unwrap().iter().map(|n| n["node_name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["proc-a", "proc-b"]);

    for (a, node) in agents.into_iter().zip(["proc-a", "proc-b"]) {
        assert_eq!(terminate(a, node).code(), Some(0), "{node} exit status");
    }
    assert_eq!(terminate(aggregator, "aggregator").code(), Some(0));

    // The store outlives the process: a new aggregator on the same data dir knows both.
    let aggregator = Command::new(binary("caretaker-aggregator")).args(["serve", "--config"]).arg(&agg_cfg).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let again = loop {
        if let Some(v) = report_json(grpc) {
            break v;
        }
        assert!(Instant::now() < deadline, "restarted aggregator does not answer");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(again["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(terminate(aggregator, "aggregator").code(), Some(0));
}
