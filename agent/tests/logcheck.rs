//! The log check against kubelet-style pod log directories: the CLI contract, rotation
//! between two checks, a gzip-compressed rotated file (compressed by the real `gzip`), a
//! partial line split over two records, an agent restart through the state file, and
//! symlinks under the pods directory.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use caretaker_agent::logcheck::matcher::{Matcher, default_patterns};
use caretaker_agent::logcheck::state::{self, Incremental};
use caretaker_agent::logcheck::walk::ContainerKey;

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A CRI timestamp `ago` seconds before now.
fn ts(ago: i64) -> String {
    jiff::Timestamp::from_second(now() - ago)
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%S.123456789Z")
        .to_string()
}

fn container_dir(pods: &Path, ns: &str, pod: &str, c: &str) -> PathBuf {
    let d = pods
        .join(format!("{ns}_{pod}_0b9e3f2a-1111-4c2d-9a3e-5f6a7b8c9d0e"))
        .join(c);
    fs::create_dir_all(&d).unwrap();
    d
}

fn append(path: &Path, lines: &[String]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        f.write_all(l.as_bytes()).unwrap();
        f.write_all(b"\n").unwrap();
    }
}

fn rec(ago: i64, tag: &str, content: &str) -> String {
    format!("{} stdout {tag} {content}", ts(ago))
}

fn counts(inc: &Incremental, c: &str) -> Vec<u64> {
    let key = ContainerKey {
        namespace: "shop".into(),
        pod: "api-7d9f".into(),
        container: c.into(),
    };
    inc.containers
        .get(&key)
        .map_or(vec![0; 4], |c| c.sum(i64::MIN, i64::MAX, 4))
}

#[test]
fn cli_json_counts_per_container_and_pattern_including_rotated_and_gzip_files() {
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("var/log/pods");
    let api = container_dir(&pods, "shop", "api-7d9f", "api");
    let side = container_dir(&pods, "shop", "api-7d9f", "proxy");
    // Rotated, then compressed by the real gzip.
    append(
        &api.join("0.log.20240101-120000"),
        &[
            rec(7200, "F", "ERROR one"),
            rec(7100, "F", "WARN: x status=500"),
        ],
    );
    assert!(
        Command::new("gzip")
            .arg(api.join("0.log.20240101-120000"))
            .status()
            .unwrap()
            .success()
    );
    append(
        &api.join("0.log.20240101-130000"),
        &[rec(3600, "F", "Authentication failed for bob")],
    );
    append(
        &api.join("0.log"),
        &[
            rec(90_000, "F", "error from two days ago"),
            rec(60, "P", "an err"),
            rec(59, "F", "or split in two records"),
            rec(10, "F", "status=404"),
        ],
    );
    append(&side.join("0.log"), &[rec(5, "F", "all fine")]);
    let out = Command::new(env!("CARGO_BIN_EXE_caretaker-agent"))
        .args(["log-check", "--output", "json", "--path.rootfs"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<(String, String, String, String, u64)> = v["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["namespace"].as_str().unwrap().into(),
                r["pod"].as_str().unwrap().into(),
                r["container"].as_str().unwrap().into(),
                r["pattern"].as_str().unwrap().into(),
                r["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let row = |c: &str, p: &str, n: u64| ("shop".into(), "api-7d9f".into(), c.into(), p.into(), n);
    assert_eq!(
        rows,
        vec![
            row("api", "error", 2),
            row("api", "warn", 1),
            row("api", "authentication_failed", 1),
            row("api", "http_4xx_5xx", 2),
            row("proxy", "error", 0),
            row("proxy", "warn", 0),
            row("proxy", "authentication_failed", 0),
            row("proxy", "http_4xx_5xx", 0),
        ]
    );
    assert_eq!(v["files_read"], 4);
    assert_eq!(v["lines"], 6);

    // The table: one row per container.
    let out = Command::new(env!("CARGO_BIN_EXE_caretaker-agent"))
        .args(["log-check", "--since", "30h", "--pods-dir"])
        .arg(&pods)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "NAMESPACE",
            "POD",
            "CONTAINER",
            "ERROR",
            "WARN",
            "AUTHENTICATION_FAILED",
            "HTTP_4XX_5XX"
        ]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["shop", "api-7d9f", "api", "3", "1", "1", "2"]
    );
}

#[test]
fn symlinks_under_the_pods_dir_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let outside = dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    append(&outside.join("0.log"), &[rec(5, "F", "error outside")]);
    let c = container_dir(&pods, "shop", "api-7d9f", "api");
    std::os::unix::fs::symlink(outside.join("0.log"), c.join("1.log")).unwrap();
    fs::create_dir_all(pods.join("shop_evil_uid")).unwrap();
    std::os::unix::fs::symlink(&outside, pods.join("shop_evil_uid/app")).unwrap();
    append(&c.join("0.log"), &[rec(5, "F", "error inside")]);
    let m = Matcher::new(&default_patterns()).unwrap();
    let w = caretaker_agent::logcheck::scan::Window {
        from: now() - 3600,
        to: i64::MAX,
    };
    let out = caretaker_agent::logcheck::check::check_once(&pods, &m, w).unwrap();
    let total: u64 = out
        .containers
        .values()
        .map(|c| c.sum(i64::MIN, i64::MAX, 4)[0])
        .sum();
    assert_eq!(total, 1);
    assert_eq!(out.totals.files_read, 1);
    assert!(
        out.problems
            .iter()
            .any(|p| p.path.ends_with("1.log") && p.reason.contains("symlink"))
    );
}

#[test]
fn rotation_compression_truncation_and_restart_between_checks() {
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let c = container_dir(&pods, "shop", "api-7d9f", "api");
    let state_file = dir.path().join("state/log-check.json");
    let m = || Matcher::new(&default_patterns()).unwrap();
    let mut inc = Incremental::new(m());

    // Check 1: two errors, and a join whose F record has not been written yet.
    append(
        &c.join("0.log"),
        &[rec(300, "F", "error a"), rec(290, "F", "error b")],
    );
    append(&c.join("0.log"), &[rec(280, "P", "authentication ")]);
    inc.check(&pods, now()).unwrap();
    assert_eq!(counts(&inc, "api"), [2, 0, 0, 0]);

    // The join completes; then the kubelet rotates (rename) and the runtime reopens.
    append(
        &c.join("0.log"),
        &[rec(279, "F", "failed"), rec(270, "F", "warn c")],
    );
    fs::rename(c.join("0.log"), c.join("0.log.20240101-120000")).unwrap();
    append(&c.join("0.log"), &[rec(200, "F", "status=502")]);
    let r = inc.check(&pods, now()).unwrap();
    assert_eq!(counts(&inc, "api"), [2, 1, 1, 1], "each line exactly once");
    assert_eq!(r.totals.files_read, 2);

    // The kubelet compresses the rotated file (real gzip, new inode); nothing is counted
    // twice, and the state survives a restart of the agent.
    assert!(
        Command::new("gzip")
            .arg(c.join("0.log.20240101-120000"))
            .status()
            .unwrap()
            .success()
    );
    append(&c.join("0.log"), &[rec(100, "F", "error d")]);
    state::save(&state_file, &inc.state()).unwrap();
    drop(inc);
    let loaded = state::load(&state_file).unwrap().unwrap();
    let mut inc = Incremental::from_state(m(), loaded);
    let r = inc.check(&pods, now()).unwrap();
    assert_eq!(counts(&inc, "api"), [3, 1, 1, 1]);
    // Only the new bytes were read, plus the gzip file decompressed once.
    assert_eq!(r.totals.files_read, 2);
    let r = inc.check(&pods, now()).unwrap();
    assert_eq!(r.totals.files_read, 0, "nothing new, nothing read");
    assert_eq!(counts(&inc, "api"), [3, 1, 1, 1]);

    // copytruncate-like truncation: the file is read again from its start.
    fs::write(c.join("0.log"), "").unwrap();
    append(&c.join("0.log"), &[rec(50, "F", "error e")]);
    inc.check(&pods, now()).unwrap();
    assert_eq!(counts(&inc, "api"), [4, 1, 1, 1]);

    // A new agent without a state file but the same files counts each line once.
    let mut fresh = Incremental::new(m());
    fresh.check(&pods, now()).unwrap();
    assert_eq!(counts(&fresh, "api"), [3, 1, 1, 0]);
}

#[test]
fn hours_older_than_two_days_are_dropped_as_the_window_slides() {
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let c = container_dir(&pods, "shop", "api-7d9f", "api");
    append(
        &c.join("0.log"),
        &[rec(30 * 3600, "F", "error old"), rec(60, "F", "error new")],
    );
    let mut inc = Incremental::new(Matcher::new(&default_patterns()).unwrap());
    inc.check(&pods, now()).unwrap();
    assert_eq!(counts(&inc, "api"), [2, 0, 0, 0]);
    // 20 hours later (no new lines): the 30 h-old line falls out of the 48 h kept.
    inc.check(&pods, now() + 20 * 3600).unwrap();
    assert_eq!(counts(&inc, "api"), [1, 0, 0, 0]);
}
