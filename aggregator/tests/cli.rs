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
