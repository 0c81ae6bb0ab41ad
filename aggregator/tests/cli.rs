//! The real `caretaker-aggregator` binary.

use std::process::Command;

fn aggregator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_caretaker-aggregator"))
}

#[test]
fn a_bad_config_exits_64_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agg.yaml");
    std::fs::write(&cfg, "listen:\n  grpc: 127.0.0.1:0\n  htp: 127.0.0.1:0\n").unwrap();
    let out = aggregator()
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&cfg.display().to_string()) && err.contains("line 3") && err.contains("htp"),
        "{err}"
    );
}

#[test]
fn report_against_an_unreachable_server_fails_with_the_url() {
    let out = aggregator()
        .args(["report", "--server", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("connect to http://127.0.0.1:9"));
}

#[test]
fn a_time_before_the_supported_range_is_a_usage_error_not_a_panic() {
    for args in [
        vec![
            "report",
            "--server",
            "http://127.0.0.1:9",
            "--at=-99999999999h",
        ],
        vec![
            "report",
            "--server",
            "http://127.0.0.1:9",
            "--diff",
            "-99999999999h",
            "-1h",
        ],
    ] {
        let out = aggregator().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(
            err.contains("\"-99999999999h\" reaches before the earliest time supported"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_data_dir_that_is_a_file_exits_64_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    // Held by the test: binding it would fail with another error and exit code.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = dir.path().join("agg.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen:\n  grpc: 127.0.0.1:0\n  http: {}\ninsecure_plaintext: true\nauth: {{allow_anonymous: true}}\ndata_dir: {}\n",
            held.local_addr().unwrap(),
            file.display()
        ),
    )
    .unwrap();
    let out = aggregator()
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains(&format!("data_dir {} is not a directory", file.display())),
        "{err}"
    );
}
