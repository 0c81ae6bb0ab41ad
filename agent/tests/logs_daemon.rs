//! The daemon's log task end to end inside the agent: a real temp log tree, a short
//! check interval, real passes on blocking threads, and the summary in the next report.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use caretaker_agent::collector::{BufferStats, Collector, CollectorSettings};
use caretaker_agent::config::LogsConfig;
use caretaker_agent::logs::daemon::{self, LogsTask};
use caretaker_agent::logs::sweep::RetentionRule;
use caretaker_agent::paths::HostPaths;
use caretaker_agent::stats::filesystems::FilesystemFilter;
use caretaker_core::model::LogsSummary;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Waits (without asserting on time) until the published summary satisfies `cond`.
async fn wait_for(
    rx: &mut watch::Receiver<Option<LogsSummary>>,
    what: &str,
    cond: impl Fn(&LogsSummary) -> bool,
) -> LogsSummary {
    let found = tokio::time::timeout(
        Duration::from_secs(30),
        rx.wait_for(|s| s.as_ref().is_some_and(&cond)),
    )
    .await
    .map(|r| r.map(|s| s.clone()));
    match found {
        Ok(Ok(Some(s))) => s,
        _ => panic!("no summary with {what}; last: {:#?}", *rx.borrow()),
    }
}

fn aged(path: &Path, bytes: usize, days: u64) {
    std::fs::write(path, vec![b'x'; bytes]).unwrap();
    let mtime = SystemTime::now() - Duration::from_secs(days * 86_400);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_and_a_sweep_by_the_daemon_appear_in_the_next_node_report() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("log");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(logs.join("app.log"), "line 1\nline 2\n").unwrap();
    // A compressed archive 10 days old: the retention rule deletes it at the first pass.
    aged(&logs.join("old.log.3.gz"), 8192, 10);
    let conf = dir.path().join("logrotate.conf");
    std::fs::write(
        &conf,
        format!(
            "{}/app.log {{\n  size 10\n  rotate 2\n  create 0640\n}}\n",
            logs.display()
        ),
    )
    .unwrap();
    let cfg = LogsConfig {
        roots: vec![logs.clone()],
        state_file: dir.path().join("state/status"),
        logrotate_conf: Some(conf.clone()),
        retention: vec![RetentionRule::new(
            format!("{}/*.gz", logs.display()),
            Duration::from_secs(7 * 86_400),
        )],
        ..LogsConfig::default()
    };
    assert!(daemon::wanted(&cfg));
    let mut task = LogsTask::new(&cfg);
    task.check_interval = Duration::from_millis(50);
    task.reclaimable_interval = Duration::from_millis(50);

    let (tx, mut rx) = watch::channel(None);
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(daemon::run(task, tx, shutdown.clone()));

    let first = wait_for(&mut rx, "a rotation", |s| s.totals.rotated == 1).await;
    assert_eq!(
        std::fs::read_to_string(logs.join("app.log.1")).unwrap(),
        "line 1\nline 2\n"
    );
    assert_eq!(std::fs::read(logs.join("app.log")).unwrap(), b"");
    assert!(
        !logs.join("old.log.3.gz").exists(),
        "swept at the first pass"
    );
    assert_eq!(first.totals.rotated_bytes, 14);
    assert_eq!(
        (first.totals.deleted, first.totals.deleted_bytes),
        (1, 8192)
    );
    assert_eq!(first.totals.errors, 0, "{:?}", first.errors);
    assert_eq!(
        first.reclaimable_bytes, 0,
        "nothing left past retention after the sweep"
    );
    assert!(first.reclaimable_at.is_some());

    // An archive that ages past retention between sweeps (the rule's interval is 1 h):
    // measured as reclaimable, not deleted.
    aged(&logs.join("app.log.2.gz"), 100_000, 8);
    let allocated = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(logs.join("app.log.2.gz"))
            .unwrap()
            .blocks()
            * 512
    };
    let later = wait_for(&mut rx, "reclaimable bytes", |s| s.reclaimable_bytes > 0).await;
    assert_eq!(later.reclaimable_bytes, allocated);
    assert!(logs.join("app.log.2.gz").exists());
    // Nothing else was due: the totals did not move, and later passes were all zero.
    assert_eq!((later.totals.rotated, later.totals.deleted), (1, 1));
    assert_eq!(
        (
            later.last_pass.rotated,
            later.last_pass.deleted,
            later.last_pass.files_checked
        ),
        (0, 0, 1)
    );

    // The next node report carries the summary.
    let procfs = tempfile::tempdir().unwrap();
    let settings = CollectorSettings {
        node_name: "node-logs".into(),
        report_interval: Duration::from_secs(10),
        paths: HostPaths {
            procfs: procfs.path().into(),
            ..HostPaths::default()
        },
        filter: FilesystemFilter::default(),
        statvfs_timeout: Duration::from_secs(1),
        kubelet_root: None,
    };
    let mut collector =
        Collector::new(settings, Arc::new(BufferStats::default())).with_logs(rx.clone());
    let report = collector.collect().await;
    let logs_in_report = report
        .logs
        .clone()
        .expect("the report carries the log summary");
    assert_eq!(logs_in_report.totals.rotated, 1);
    assert_eq!(logs_in_report.totals.rotated_bytes, 14);
    assert_eq!(logs_in_report.reclaimable_bytes, allocated);
    // And it survives the wire with its validation.
    let wire = caretaker_proto::pb::NodeReport::from(report.clone());
    let back = caretaker_core::model::NodeReport::try_from(wire).unwrap();
    assert_eq!(back.logs.map(|l| l.totals.rotated), Some(1));

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_are_in_every_summary_with_their_place_and_are_not_counted_as_pass_errors() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("lr.conf");
    std::fs::write(
        &conf,
        format!("{}/a.log {{\n  rotate abc\n}}\n", dir.path().display()),
    )
    .unwrap();
    let cfg = LogsConfig {
        roots: vec![dir.path().to_path_buf()],
        state_file: dir.path().join("status"),
        logrotate_conf: Some(conf.clone()),
        ..LogsConfig::default()
    };
    let mut task = LogsTask::new(&cfg);
    task.check_interval = Duration::from_millis(20);
    let (tx, mut rx) = watch::channel(None);
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(daemon::run(task, tx, shutdown.clone()));
    let s = wait_for(&mut rx, "two passes", |s| {
        s.totals.files_checked == 0 && s.checked_at > jiff::Timestamp::UNIX_EPOCH
    })
    .await;
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    assert_eq!(s.errors[0].place, format!("{}:2", conf.display()));
    assert_eq!(s.errors[0].collector, "logs");
    assert_eq!((s.last_pass.errors, s.totals.errors), (0, 0));
    assert_eq!(s.reclaimable_at, None, "no retention rules, no measurement");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .unwrap()
        .unwrap();
}
