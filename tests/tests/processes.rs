//! The two real binaries as separate processes: `caretaker-aggregator serve` and
//! `caretaker-agent run`, queried with `caretaker-aggregator report`, stopped with SIGTERM.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use caretaker_tests::binary;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends SIGTERM and waits for the exit status (up to 10 s, then SIGKILL and fail).
fn terminate(mut child: Child, what: &str) -> std::process::ExitStatus {
    kill(
        Pid::from_raw(i32::try_from(child.id()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
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

/// A plaintext aggregator's configuration in `dir` (its store there too, anonymous
/// queries allowed) on free ports; returns its path and the gRPC port.
fn plaintext_aggregator(dir: &std::path::Path) -> (std::path::PathBuf, u16) {
    let (grpc, http) = (free_port(), free_port());
    let cfg = dir.join("aggregator.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen:\n  grpc: 127.0.0.1:{grpc}\n  http: 127.0.0.1:{http}\ndata_dir: {}\ninsecure_plaintext: true\nauth:\n  allow_anonymous: true\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    (cfg, grpc)
}

fn report_json(grpc: u16) -> Option<serde_json::Value> {
    let out = Command::new(binary("caretaker-aggregator"))
        .args([
            "report",
            "--output",
            "json",
            "--server",
            &format!("http://127.0.0.1:{grpc}"),
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

#[test]
fn serve_and_run_processes_report_and_stop_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (agg_cfg, grpc) = plaintext_aggregator(dir.path());
    let aggregator = Command::new(binary("caretaker-aggregator"))
        .args(["serve", "--config"])
        .arg(&agg_cfg)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let mut agents = Vec::new();
    for node in ["proc-a", "proc-b"] {
        let cfg = dir.path().join(format!("{node}.yaml"));
        std::fs::write(&cfg, format!("node_name: {node}\nlisten_http: null\nreport_interval: 200ms\naggregator:\n  endpoint: http://127.0.0.1:{grpc}\n  insecure_plaintext: true\n")).unwrap();
        agents.push(
            Command::new(binary("caretaker-agent"))
                .args(["run", "--config"])
                .arg(&cfg)
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        if let Some(v) = report_json(grpc) {
            let ok = v["nodes"].as_array().is_some_and(|n| {
                n.len() == 2
                    && n.iter()
                        .all(|x| x["reports_stored_total"].as_u64().unwrap_or(0) >= 2)
            });
            if ok {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "no report with two nodes");
        std::thread::sleep(Duration::from_millis(100));
    };
    let names: Vec<&str> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["proc-a", "proc-b"]);

    for (a, node) in agents.into_iter().zip(["proc-a", "proc-b"]) {
        assert_eq!(terminate(a, node).code(), Some(0), "{node} exit status");
    }
    assert_eq!(terminate(aggregator, "aggregator").code(), Some(0));

    // The store outlives the process: a new aggregator on the same data dir knows both.
    let aggregator = Command::new(binary("caretaker-aggregator"))
        .args(["serve", "--config"])
        .arg(&agg_cfg)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let again = loop {
        if let Some(v) = report_json(grpc) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "restarted aggregator does not answer"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(again["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(terminate(aggregator, "aggregator").code(), Some(0));
}

/// `certs` makes the files; `serve` and `run` use them over mutual TLS as in a cluster;
/// `report` needs the CA and a token; the Secrets it writes are valid Kubernetes objects.
#[test]
fn certs_then_serve_and_run_over_mutual_tls_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let out = Command::new(binary("caretaker-aggregator"))
        .args(["certs", "--out"])
        .arg(&pki)
        .args(["--node", "tls-a", "--name", "localhost"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secrets = std::fs::read_to_string(pki.join("secrets.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&secrets).unwrap();
    let names: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "Secret")
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "caretaker-aggregator-tls",
            "caretaker-agent-tls",
            "caretaker-api-tokens"
        ]
    );
    for d in docs.iter().filter(|d| d["kind"] == "Secret") {
        let mut ignored = Vec::new();
        let s: k8s_openapi::api::core::v1::Secret =
            serde_ignored::deserialize(d.clone(), |p| ignored.push(p.to_string())).unwrap();
        assert!(ignored.is_empty(), "{ignored:?}");
        let keys: Vec<&String> = s.string_data.as_ref().unwrap().keys().collect();
        assert!(
            keys == ["ca.crt", "tls.crt", "tls.key"] || keys == ["admin", "read"],
            "{keys:?}"
        );
    }

    let (grpc, http) = (free_port(), free_port());
    let p = |f: &str| pki.join(f).display().to_string();
    let agg_cfg = dir.path().join("aggregator.yaml");
    std::fs::write(
        &agg_cfg,
        format!(
            "listen:\n  grpc: 127.0.0.1:{grpc}\n  http: 127.0.0.1:{http}\nin_memory: true\ntls:\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\nauth:\n  tokens:\n    - {{name: read, scope: read, file: {}}}\n",
            p("aggregator/tls.crt"),
            p("aggregator/tls.key"),
            p("ca.crt"),
            p("tokens/read")
        ),
    )
    .unwrap();
    let aggregator = Command::new(binary("caretaker-aggregator"))
        .args(["serve", "--config"])
        .arg(&agg_cfg)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent_cfg = dir.path().join("agent.yaml");
    std::fs::write(
        &agent_cfg,
        format!(
            "node_name: tls-a\nlisten_http: null\nreport_interval: 200ms\naggregator:\n  endpoint: https://localhost:{grpc}\n  tls:\n    ca_file: {}\n    cert_file: {}\n    key_file: {}\n",
            p("nodes/tls-a/ca.crt"),
            p("nodes/tls-a/tls.crt"),
            p("nodes/tls-a/tls.key")
        ),
    )
    .unwrap();
    let agent = Command::new(binary("caretaker-agent"))
        .args(["run", "--config"])
        .arg(&agent_cfg)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let report = |token: bool| {
        let mut c = Command::new(binary("caretaker-aggregator"));
        c.args([
            "report",
            "--output",
            "json",
            "--server",
            &format!("https://localhost:{grpc}"),
            "--ca-file",
            &p("ca.crt"),
        ]);
        if token {
            c.args(["--token-file", &p("tokens/read")]);
        }
        c.env_remove("CARETAKER_TOKEN").output().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let v = loop {
        let out = report(true);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if v["nodes"]
                .as_array()
                .is_some_and(|n| n.len() == 1 && n[0]["reports_stored_total"].as_u64() >= Some(2))
            {
                break v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no report over TLS: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(v["nodes"][0]["node_name"], "tls-a");
    let out = report(false);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "this API needs a bearer token (Authorization: Bearer <token>) (Unauthenticated)"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(terminate(agent, "agent").code(), Some(0));
    assert_eq!(terminate(aggregator, "aggregator").code(), Some(0));
}

#[test]
fn serve_without_tls_or_tokens_exits_64_and_says_which_option() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("aggregator.yaml");
    std::fs::write(&cfg, "in_memory: true\n").unwrap();
    let out = Command::new(binary("caretaker-aggregator"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "tls (cert_file, key_file, ca_file) is missing: set it, or set insecure_plaintext: true"
        ),
        "{err}"
    );
}

/// Started with a soft limit of open files of 512 (containerd 2 and Docker 25 give
/// containers 1,024), `serve` raises it to the hard limit, as Go programs do: the gRPC
/// port alone may hold 2,048 connections.
#[test]
fn serve_raises_its_soft_limit_of_open_files_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (agg_cfg, grpc) = plaintext_aggregator(dir.path());
    let aggregator = Command::new("bash")
        .args(["-c", "ulimit -Sn 512 && exec \"$0\" serve --config \"$1\""])
        .arg(binary("caretaker-aggregator"))
        .arg(&agg_cfg)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while report_json(grpc).is_none() {
        assert!(Instant::now() < deadline, "the aggregator does not answer");
        std::thread::sleep(Duration::from_millis(100));
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", aggregator.id())).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    let (soft, hard) = (open_files[0], open_files[1]);
    assert_ne!(
        hard, "512",
        "the hard limit leaves nothing to raise: {limits}"
    );
    assert_eq!(soft, hard, "{limits}");
    assert_eq!(terminate(aggregator, "aggregator").code(), Some(0));
}
