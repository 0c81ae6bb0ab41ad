//! The real `caretaker-agent` binary, fed fixture files through --path.procfs.

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_caretaker-agent"))
}

fn fixture_procfs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("self")).unwrap();
    std::fs::create_dir_all(dir.path().join("1/net")).unwrap();
    std::fs::write(
        dir.path().join("self/mountinfo"),
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
         27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
         28 27 254:0 /srv /mnt/bind\\040dir rw,relatime - ext4 /dev/vda rw\n\
         29 27 0:44 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
    )
    .unwrap();
    // PID 1's net/dev is the host's: both spacing styles and an alias name with a colon.
    std::fs::write(
        dir.path().join("1/net/dev"),
        "Inter-|   Receive                                                |  Transmit\n\
         \x20face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n\
         \x20   lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0\n\
         \x20 eth0:9047621     380    1    2    0     0          0         0    23427     303    3    4    0     0       0          0\n\
         eth0:1: 5 6 0 0 0 0 0 0 7 8 0 0 0 0 0 0\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("sys/class/net/eth0")).unwrap();
    std::fs::write(dir.path().join("sys/class/net/eth0/operstate"), "up\n").unwrap();
    dir
}

#[test]
fn stats_reads_the_fixture_procfs_and_prints_json() {
    let procfs = fixture_procfs();
    let out = agent()
        .args(["--path.procfs"])
        .arg(procfs.path())
        .arg("--path.sysfs")
        .arg(procfs.path().join("sys"))
        .args(["stats", "--output", "json", "--sample-interval", "0s"])
        .env("NODE_NAME", "fixture-node")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["node_name"], "fixture-node");
    assert_eq!(v["seq"], 1);
    let fs = v["filesystems"].as_array().unwrap();
    assert_eq!(fs.len(), 1, "{fs:?}");
    assert_eq!(fs[0]["mountpoint"], "/");
    assert_eq!(
        fs[0]["mountpoints"],
        serde_json::json!(["/", "/mnt/bind dir"])
    );
    assert_eq!(fs[0]["device"], "/dev/vda");
    assert_eq!(fs[0]["device_id"], "254:0");
    let net = v["network"].as_array().unwrap();
    let names: Vec<&str> = net.iter().map(|n| n["device"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["lo", "eth0", "eth0:1"]);
    assert_eq!(net[1]["receive_bytes_total"], 9_047_621);
    assert_eq!(net[1]["receive_errs_total"], 1);
    assert_eq!(net[1]["receive_drop_total"], 2);
    assert_eq!(net[1]["transmit_bytes_total"], 23_427);
    assert_eq!(net[1]["transmit_errs_total"], 3);
    assert_eq!(net[1]["transmit_drop_total"], 4);
    assert_eq!(net[2]["transmit_packets_total"], 8);
    assert_eq!(net[1]["operstate"], "up");
    assert!(
        net[0].get("operstate").is_none(),
        "lo is not in the fixture sysfs"
    );
    assert!(net[1].get("rates").is_none(), "one sample has no rates");
    assert!(v["agent"]["rss_bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["errors"], serde_json::json!([]));
}

#[test]
fn stats_table_names_the_mounts_and_interfaces() {
    let procfs = fixture_procfs();
    let out = agent()
        .arg("--path.procfs")
        .arg(procfs.path())
        .args(["stats", "--sample-interval", "0s"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("/dev/vda") && l.contains("also at /mnt/bind dir")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.contains("eth0:1")), "{text}");
}

#[test]
fn a_bad_config_exits_64_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.yaml");
    std::fs::write(
        &cfg,
        "aggregator:\n  endpoint: http://127.0.0.1:1\nreport_interval: 10s\nfilesystem: {}\n",
    )
    .unwrap();
    let out = agent()
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&cfg.display().to_string())
            && err.contains("line 4")
            && err.contains("filesystem"),
        "{err}"
    );

    std::fs::write(&cfg, "report_interval: 10s\n").unwrap();
    let out = agent()
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs aggregator.endpoint"));

    // Plaintext only when the config says so explicitly.
    std::fs::write(&cfg, "aggregator:\n  endpoint: http://127.0.0.1:1\n").unwrap();
    let out = agent()
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is plaintext http://: use https:// with aggregator.tls, or set aggregator.insecure_plaintext: true"), "{err}");

    let out = agent()
        .args(["run", "--config", "/nonexistent/agent.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot read config file /nonexistent/agent.yaml")
    );
}

#[test]
fn usage_errors_exit_64_help_and_version_exit_0() {
    let out = agent().args(["rotate", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
    let out = agent().arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = agent().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    let out = agent().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("caretaker-agent "));
}

/// A config with a bad argument (its block is left out), an unknown directive (ignored)
/// and a missing log (a rotation error).
fn rotate_fixture() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = d.join("lr.conf");
    std::fs::write(
        &conf,
        format!(
            "{0}/a.log {{\n size 10Q\n}}\n{0}/b.log {{\n waeekly\n size 1\n}}\n",
            d.display()
        ),
    )
    .unwrap();
    (dir, conf)
}

#[test]
fn rotate_reports_config_problems_on_stderr_too_without_colour() {
    let (dir, conf) = rotate_fixture();
    let d = dir.path();
    for no_color in [false, true] {
        let mut cmd = agent();
        cmd.args(["rotate", "--output", "json", "--logrotate-conf"])
            .arg(&conf)
            .arg("--state")
            .arg(d.join("status"))
            .arg("--root")
            .arg(d);
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let place = |line: u32| format!("{}:{line}", conf.display());
        assert_eq!(v["errors"][0]["place"], place(2));
        assert_eq!(v["warnings"][0]["place"], place(5));
        assert!(
            err.contains(&format!(
                "caretaker-agent: error: {}: size: \"10Q\" is not a size",
                place(2)
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "caretaker-agent: warning: {}: unknown directive \"waeekly\"",
                place(5)
            )),
            "{err}"
        );
        // b.log is missing: a rotation error, logged and listed.
        assert!(err.contains("b.log"), "{err}");
        assert!(!err.contains('\x1b'), "ANSI colour on a pipe: {err:?}");
    }
}

#[test]
fn rotate_into_a_closed_pipe_does_not_panic() {
    use std::os::fd::OwnedFd;
    let (dir, conf) = rotate_fixture();
    let d = dir.path();
    // A pipe whose reader is already gone: every write fails with EPIPE.
    let (reader, writer): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    drop(reader);
    let out = agent()
        .args(["rotate", "--output", "json", "--logrotate-conf"])
        .arg(&conf)
        .arg("--state")
        .arg(d.join("status"))
        .arg("--root")
        .arg(d)
        .stdout(std::process::Stdio::from(writer))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    // The run's own result (1: a config error and a missing log), not a panic's 101.
    assert_eq!(out.status.code(), Some(1), "{err}");
}

/// On a terminal (a pty from util-linux's `script`) the log lines are coloured, unless
/// NO_COLOR is set.
#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    if !std::path::Path::new("/usr/bin/script").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "/usr/bin/script (bsdutils) is missing"
        );
        eprintln!("NOT RUN: /usr/bin/script is missing");
        return;
    }
    let (dir, conf) = rotate_fixture();
    let d = dir.path();
    let cmd = format!(
        "{} rotate --logrotate-conf {} --state {} --root {}",
        env!("CARGO_BIN_EXE_caretaker-agent"),
        conf.display(),
        d.join("status").display(),
        d.display()
    );
    for no_color in [false, true] {
        let mut c = Command::new("/usr/bin/script");
        c.args(["-qec", &cmd, "/dev/null"]);
        if no_color {
            c.env("NO_COLOR", "1");
        } else {
            c.env_remove("NO_COLOR");
        }
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        // The missing b.log is logged as a warning through tracing.
        assert!(text.contains("b.log"), "{text}");
        assert_eq!(
            text.contains('\x1b'),
            !no_color,
            "NO_COLOR {no_color}: {text:?}"
        );
    }
}
