//! Log rotation end to end: an agent daemon with a log task rotates a real temp log tree,
//! and the aggregator stores a report whose `logs` summary says so.

use std::time::{Duration, SystemTime};

use caretaker_agent::config::{AgentConfig, AggregatorConfig, LogsConfig};
use caretaker_agent::logs::daemon::LogsTask;
use caretaker_agent::logs::sweep::RetentionRule;
use caretaker_agent::paths::HostPaths;
use caretaker_agent::{DaemonOptions, collector_settings};
use caretaker_tests::{RunningAggregator, wait_until};
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_aggregator_stores_the_agents_log_rotation_and_reclaimable_bytes() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let agg = RunningAggregator::start(&dir.path().join("agg"), "127.0.0.1:0".parse()?, 3).await?;
    let logs = dir.path().join("log");
    std::fs::create_dir(&logs)?;
    std::fs::write(logs.join("svc.log"), "a line long enough to rotate\n")?;
    let conf = dir.path().join("logrotate.conf");
    // missingok: without `create` the log is gone after its rotation, and every later
    // pass (each 50 ms here) would count that as an error, as logrotate does.
    std::fs::write(
        &conf,
        format!(
            "{}/svc.log {{\n  size 10\n  rotate 3\n  compress\n  missingok\n}}\n",
            logs.display()
        ),
    )?;
    let logs_cfg = LogsConfig {
        roots: vec![logs.clone()],
        state_file: dir.path().join("status"),
        logrotate_conf: Some(conf),
        retention: vec![RetentionRule::new(
            format!("{}/*.gz", logs.display()),
            Duration::from_secs(86_400),
        )],
        ..LogsConfig::default()
    };
    let mut task = LogsTask::new(&logs_cfg);
    task.check_interval = Duration::from_millis(50);
    task.reclaimable_interval = Duration::from_millis(50);

    let cfg = AgentConfig {
        node_name: Some("node-logs".into()),
        report_interval: caretaker_core::config::BoundedDuration::millis(100),
        ..AgentConfig::default()
    };
    let settings = collector_settings(&cfg, HostPaths::default()).map_err(anyhow::Error::msg)?;
    let stop = CancellationToken::new();
    let agent = tokio::spawn(caretaker_agent::run_with(
        settings,
        AggregatorConfig::plaintext(agg.url()),
        DaemonOptions {
            logs: Some(task),
            ..DaemonOptions::default()
        },
        stop.clone(),
    ));

    let logs_of = |agg: &RunningAggregator| {
        agg.state
            .node("node-logs", Timestamp::now())
            .and_then(|n| n.report)
            .and_then(|r| r.logs)
    };
    wait_until(
        "a stored report shows the rotation",
        Duration::from_secs(20),
        || logs_of(&agg).is_some_and(|l| l.totals.rotated == 1 && l.totals.compressed == 1),
    )
    .await?;
    let l = logs_of(&agg).expect("waited for it");
    assert_eq!(l.totals.rotated_bytes, 29);
    assert_eq!(l.totals.compressed_bytes_before, 29);
    let gz = logs.join("svc.log.1.gz");
    assert_eq!(
        l.totals.compressed_bytes_after,
        std::fs::metadata(&gz)?.len()
    );
    assert_eq!(l.totals.errors, 0, "{:?}", l.errors);

    // The archive ages past retention between sweeps: the aggregator's disk-pressure
    // figure for the node is what the agent measured.
    std::fs::File::options()
        .write(true)
        .open(&gz)?
        .set_modified(SystemTime::now() - Duration::from_secs(2 * 86_400))?;
    let allocated = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&gz)?.blocks() * 512
    };
    wait_until(
        "the report shows reclaimable bytes",
        Duration::from_secs(20),
        || logs_of(&agg).is_some_and(|l| l.reclaimable_bytes == allocated),
    )
    .await?;
    let report = agg
        .state
        .node("node-logs", Timestamp::now())
        .and_then(|n| n.report)
        .expect("stored");
    assert_eq!(
        caretaker_aggregator::report::reclaimable(&report),
        Some(allocated)
    );

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), agent).await??;
    agg.stop().await
}
