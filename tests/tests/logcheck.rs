//! The daily log check end to end: two agent daemons count pattern lines in real
//! kubelet-style pod log trees (a partial line split over two records, a compressed
//! rotated file), their node reports travel the real ingest stream, and the aggregator's
//! merged cluster report lists the top containers per pattern with sample lines and the
//! agents' findings as the `log_check` check.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use caretaker_agent::config::{AgentConfig, AggregatorConfig};
use caretaker_agent::logcheck::config::LogCheckConfig;
use caretaker_agent::logcheck::daemon::LogCheckTask;
use caretaker_agent::logcheck::matcher::Matcher;
use caretaker_agent::paths::HostPaths;
use caretaker_agent::{DaemonOptions, collector_settings};
use caretaker_tests::{RunningAggregator, wait_until};
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

/// A CRI timestamp `ago` before now.
fn ts(ago: Duration) -> String {
    (Timestamp::now() - ago)
        .strftime("%Y-%m-%dT%H:%M:%S.%9fZ")
        .to_string()
}

fn write_container(pods: &Path, pod_dir: &str, container: &str, files: &[(&str, String)]) {
    let dir = pods.join(pod_dir).join(container);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        if name.ends_with(".gz") {
            let f = std::fs::File::create(dir.join(name)).unwrap();
            let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            gz.write_all(text.as_bytes()).unwrap();
            gz.finish().unwrap();
        } else {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }
}

fn start_agent(
    node: &str,
    url: String,
    pods: &Path,
    state: &Path,
    config: LogCheckConfig,
    stop: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<caretaker_agent::stream::StreamSummary>> {
    let cfg = AgentConfig {
        node_name: Some(node.into()),
        report_interval: caretaker_core::config::BoundedDuration::millis(100),
        ..AgentConfig::default()
    };
    let settings = collector_settings(&cfg, HostPaths::default()).map_err(anyhow::Error::msg)?;
    let config = LogCheckConfig {
        state_file: state.to_path_buf(),
        ..config
    };
    let task = LogCheckTask {
        matcher: Matcher::new(&config.patterns)?,
        pods_dir: pods.to_path_buf(),
        config,
    };
    Ok(tokio::spawn(caretaker_agent::run_with(
        settings,
        AggregatorConfig::plaintext(url),
        DaemonOptions {
            log_check: Some(task),
            ..DaemonOptions::default()
        },
        stop.clone(),
    )))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_log_checks_reach_the_cluster_report_with_top_pods_samples_and_findings()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agg = RunningAggregator::start(&dir.path().join("agg"), "127.0.0.1:0".parse()?, 3).await?;
    let (pods_a, pods_b) = (dir.path().join("pods-a"), dir.path().join("pods-b"));
    let m = Duration::from_secs(60);

    // node-a: shop/api-1's app has three error lines today, one of them joined from two
    // partial records, one in a compressed rotated file; its threshold is 3.
    write_container(
        &pods_a,
        "shop_api-1_0f4c1a2e-1111-4a4a-9b9b-000000000001",
        "app",
        &[
            (
                "0.log.20261204-120000.gz",
                format!(
                    "{} stderr F level=error msg=\"db timeout\"\n{} stdout F ok\n",
                    ts(120 * m),
                    ts(119 * m)
                ),
            ),
            (
                "0.log",
                format!(
                    "{} stdout P user=bob authentication fa\n\
                     {} stdout F iled: Error 401\n\
                     {} stdout F GET /cart status=503 ERROR upstream\n\
                     {} stdout F GET / status=200\n",
                    ts(10 * m),
                    ts(10 * m),
                    ts(5 * m),
                    ts(4 * m)
                ),
            ),
        ],
    );
    // node-b: db/pg-0 warns 120 times today and 10 times the day before: a jump.
    let mut pg = String::new();
    for _ in 0..10 {
        pg.push_str(&format!(
            "{} stderr F WARNING: slow query\n",
            ts(30 * 60 * m)
        ));
    }
    for i in 0..120 {
        pg.push_str(&format!(
            "{} stderr F WARNING: checkpoints are occurring too frequently ({i})\n",
            ts(60 * m)
        ));
    }
    write_container(
        &pods_b,
        "db_pg-0_0f4c1a2e-2222-4a4a-9b9b-000000000002",
        "postgres",
        &[("0.log", pg)],
    );

    let stop = CancellationToken::new();
    let a = start_agent(
        "node-a",
        agg.url(),
        &pods_a,
        &dir.path().join("state-a.json"),
        LogCheckConfig {
            thresholds: [("error".to_string(), 3)].into(),
            ..LogCheckConfig::default()
        },
        &stop,
    )?;
    let b = start_agent(
        "node-b",
        agg.url(),
        &pods_b,
        &dir.path().join("state-b.json"),
        LogCheckConfig::default(),
        &stop,
    )?;
    let stored_check = |node: &str| {
        agg.state
            .node(node, Timestamp::now())
            .and_then(|n| n.report)
            .and_then(|r| r.log_check)
    };
    wait_until(
        "both nodes' stored reports carry a log check",
        Duration::from_secs(30),
        || stored_check("node-a").is_some() && stored_check("node-b").is_some(),
    )
    .await?;
    let node_a = stored_check("node-a").expect("waited for it");
    assert_eq!(
        (node_a.files_read, node_a.errors.len()),
        (2, 0),
        "{:?}",
        node_a.errors
    );

    // The merged report, through the gRPC Query service like any client.
    let report = caretaker_aggregator::client::fetch_report(&agg.url(), None).await?;
    let l = report.log_check.as_ref().expect("a merged log check");
    assert_eq!(l.nodes_checked, 2);
    assert_eq!(
        l.patterns,
        ["error", "warn", "authentication_failed", "http_4xx_5xx"]
    );
    let top: Vec<(&str, &str, &str, &str, u64, u64)> = l
        .top
        .iter()
        .map(|e| {
            (
                e.node_name.as_str(),
                e.entry.pattern.as_str(),
                e.entry.pod.as_str(),
                e.entry.container.as_str(),
                e.entry.count,
                e.entry.previous_count,
            )
        })
        .collect();
    assert_eq!(
        top,
        vec![
            ("node-a", "error", "api-1", "app", 3, 0),
            ("node-b", "warn", "pg-0", "postgres", 120, 10),
            ("node-a", "authentication_failed", "api-1", "app", 1, 0),
            ("node-a", "http_4xx_5xx", "api-1", "app", 1, 0),
        ]
    );
    let sample = |pattern: &str| {
        l.top
            .iter()
            .find(|e| e.entry.pattern == pattern)
            .and_then(|e| e.entry.sample.clone())
    };
    // The latest matching line; the joined partial line as one line.
    assert_eq!(
        sample("error").as_deref(),
        Some("GET /cart status=503 ERROR upstream")
    );
    assert_eq!(
        sample("authentication_failed").as_deref(),
        Some("user=bob authentication failed: Error 401")
    );
    assert_eq!(
        sample("warn").as_deref(),
        Some("WARNING: checkpoints are occurring too frequently (119)")
    );

    let check = report
        .checks
        .iter()
        .find(|c| c.name == "log_check")
        .expect("the log_check check");
    assert_eq!(check.summary, "2 nodes checked, 2 pods with log findings");
    let findings: Vec<(&str, String, &str)> = check
        .findings
        .iter()
        .map(|f| (f.code.as_str(), f.object.to_string(), f.message.as_str()))
        .collect();
    assert_eq!(
        findings,
        vec![
            (
                "log_lines_above_threshold",
                "Pod/shop/api-1".to_string(),
                "log lines above threshold on node-a: app error: 3 lines in 24 h (threshold 3)"
            ),
            (
                "log_lines_jumped",
                "Pod/db/pg-0".to_string(),
                "log lines jumped on node-b: postgres warn: 120 lines in 24 h, 10 the 24 h before (limit 100)"
            ),
        ]
    );
    // The findings are tracked like every check's, and make the report a warning.
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.key == "log_check/log_lines_jumped/Pod/db/pg-0")
    );
    assert!(report.status >= caretaker_aggregator::checks::Severity::Warning);
    let md = caretaker_aggregator::report::render(
        &report,
        caretaker_aggregator::report::Output::Markdown,
    )?;
    let row =
        |line: &str| -> Vec<String> { line.split('|').map(|c| c.trim().to_string()).collect() };
    assert!(
        md.lines().map(row).any(|r| r
            == [
                "",
                "error",
                "node-a",
                "shop/api-1",
                "app",
                "3",
                "0",
                "GET /cart status=503 ERROR upstream",
                ""
            ]),
        "{md}"
    );

    stop.cancel();
    for h in [a, b] {
        tokio::time::timeout(Duration::from_secs(10), h).await??;
    }
    agg.stop().await
}
