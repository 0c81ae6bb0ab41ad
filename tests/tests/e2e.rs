//! End to end: real agents and a real aggregator over real gRPC on loopback.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use caretaker_agent::paths::HostPaths;
use caretaker_agent::stats::filesystems::statvfs;
use caretaker_core::model::Freshness;
use caretaker_tests::{RunningAgent, RunningAggregator, wait_until};
use jiff::Timestamp;

const INTERVAL: Duration = Duration::from_millis(100);
const WAIT: Duration = Duration::from_secs(20);

fn stored(agg: &RunningAggregator, node: &str) -> u64 {
    agg.state
        .node(node, Timestamp::now())
        .map_or(0, |n| n.reports_stored_total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_agents_merge_into_one_report_matching_statvfs() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agg = RunningAggregator::start(dir.path(), "127.0.0.1:0".parse()?, 3).await?;
    let names = ["node-a", "node-b", "node-c"];
    let agents: Vec<_> = names
        .iter()
        .map(|n| RunningAgent::start(n, &agg.url(), INTERVAL, HostPaths::default()))
        .collect::<Result<_, _>>()?;
    wait_until("each node has 3 reports", WAIT, || {
        names.iter().all(|n| stored(&agg, n) >= 3)
    })
    .await?;

    // The merged report, through the gRPC Query service like any client.
    let report = caretaker_aggregator::client::fetch_report(&agg.url(), None).await?;
    assert_eq!(
        report
            .nodes
            .iter()
            .map(|n| n.node_name.as_str())
            .collect::<Vec<_>>(),
        names
    );
    for n in &report.nodes {
        assert_eq!(n.freshness, Freshness::Fresh);
        let report = n.report.as_ref().expect("a reported node has its report");
        assert!(
            !report.filesystems.is_empty(),
            "{} has no filesystems",
            n.node_name
        );
        assert!(
            report.filesystems.iter().any(|f| f.mountpoint == "/"),
            "root missing on {}",
            n.node_name
        );
        assert!(report.agent.rss_bytes > 0);
        for f in &report.filesystems {
            // What this test reads itself for the same mount.
            let s = statvfs(Path::new(&f.mountpoint))?.df();
            assert_eq!(
                (f.size_bytes, f.files),
                (s.size_bytes, s.files),
                "{}",
                f.mountpoint
            );
            // Free space moves while tests write; it must agree within 1 % of the size.
            assert!(
                f.avail_bytes.abs_diff(s.avail_bytes) <= s.size_bytes / 100,
                "{}: {} vs {}",
                f.mountpoint,
                f.avail_bytes,
                s.avail_bytes
            );
            let dev = std::fs::metadata(&f.mountpoint)?.dev();
            let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
            assert_eq!(f.device_id, format!("{major}:{minor}"), "{}", f.mountpoint);
        }
        // Reports after the first carry network rates for interfaces seen before.
        assert!(
            report
                .network
                .iter()
                .any(|i| i.device == "lo" && i.rates.is_some()),
            "{:?}",
            report.network
        );
    }
    for a in agents {
        a.stop().await?;
    }
    agg.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aggregator_restart_mid_stream_loses_nothing_acked_and_stores_nothing_twice()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agg = RunningAggregator::start(dir.path(), "127.0.0.1:0".parse()?, 3).await?;
    let addr = agg.grpc;
    let url = agg.url();
    let names = ["r-1", "r-2", "r-3"];
    let agents: Vec<_> = names
        .iter()
        .map(|n| RunningAgent::start(n, &url, INTERVAL, HostPaths::default()))
        .collect::<Result<_, _>>()?;
    wait_until("each node has 5 reports", WAIT, || {
        names.iter().all(|n| stored(&agg, n) >= 5)
    })
    .await?;

    let before: BTreeMap<&str, (u64, u64)> = names
        .iter()
        .map(|n| {
            let s = agg.state.stored(n).expect("stored");
            (*n, (s.report.seq, s.reports_stored_total))
        })
        .collect();
    agg.stop().await?;
    // Agents keep collecting into their buffers while the aggregator is down.
    tokio::time::sleep(INTERVAL * 8).await;

    let agg = RunningAggregator::start(dir.path(), addr, 3).await?;
    for n in names {
        let s = agg.state.stored(n).expect("store reopened with the node");
        assert_eq!(
            (s.report.seq, s.reports_stored_total),
            before[n],
            "{n}: what was stored before the stop"
        );
    }
    wait_until("the backlog arrives", WAIT, || {
        names.iter().all(|n| stored(&agg, n) >= before[n].1 + 8)
    })
    .await?;

    let mut summaries = BTreeMap::new();
    for (n, a) in names.iter().zip(agents) {
        summaries.insert(*n, a.stop().await?);
    }
    for n in names {
        let s = agg.state.stored(n).expect("node");
        let sum = &summaries[n];
        // Every sequence 1..=last was stored exactly once: no gap (nothing lost) and no
        // second copy (the count would exceed the last sequence).
        assert_eq!(s.reports_stored_total, s.report.seq, "{n}: {sum:?}");
        // The agent flushed on stop: everything it collected was acked exactly once, as
        // new or (when the first ack was lost in the restart) as a duplicate of a stored one.
        assert_eq!(sum.unacked_at_exit, 0, "{n}: {sum:?}");
        assert_eq!(sum.collected, s.report.seq, "{n}: {sum:?}");
        assert_eq!(
            sum.acked + sum.duplicates_acked,
            s.reports_stored_total,
            "{n}: {sum:?}"
        );
        assert!(sum.connections >= 2, "{n} reconnected: {sum:?}");
        assert_eq!(sum.rejected, 0);
    }
    agg.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_node_turns_stale_and_a_restarted_agent_is_the_same_node_again()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agg = RunningAggregator::start(dir.path(), "127.0.0.1:0".parse()?, 3).await?;
    let steady = RunningAgent::start("steady", &agg.url(), INTERVAL, HostPaths::default())?;
    let flaky = RunningAgent::start("flaky", &agg.url(), INTERVAL, HostPaths::default())?;
    wait_until("both have reported", WAIT, || {
        stored(&agg, "steady") >= 2 && stored(&agg, "flaky") >= 3
    })
    .await?;
    let first_epoch = agg.state.stored("flaky").unwrap().report.epoch;

    flaky.kill();
    let fresh_or_stale = |n: &str| agg.state.node(n, Timestamp::now()).map(|s| s.freshness);
    wait_until("flaky is stale", WAIT, || {
        fresh_or_stale("flaky") == Some(Freshness::Stale)
    })
    .await?;
    assert_eq!(fresh_or_stale("steady"), Some(Freshness::Fresh));
    let stored_before = stored(&agg, "flaky");

    // Restarted: a new run (epoch) whose seq starts at 1 again.
    let flaky = RunningAgent::start("flaky", &agg.url(), INTERVAL, HostPaths::default())?;
    wait_until("flaky is fresh again", WAIT, || {
        fresh_or_stale("flaky") == Some(Freshness::Fresh)
    })
    .await?;
    let s = agg.state.stored("flaky").unwrap();
    assert!(s.report.epoch > first_epoch);
    assert!(
        s.report.seq >= 1 && s.reports_stored_total == stored_before + s.report.seq,
        "{} {} {}",
        s.report.seq,
        s.reports_stored_total,
        stored_before
    );
    assert_eq!(
        agg.state.nodes(Timestamp::now()).len(),
        2,
        "the same node, not a new one"
    );

    flaky.stop().await?;
    steady.stop().await?;
    agg.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reports_are_acked_as_rejected_naming_the_field_and_health_is_serving()
-> anyhow::Result<()> {
    use caretaker_proto::pb::{
        self, agent_message, aggregator_message, report_ingest_client::ReportIngestClient,
    };
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };

    let dir = tempfile::tempdir()?;
    let agg = RunningAggregator::start(dir.path(), "127.0.0.1:0".parse()?, 3).await?;
    let channel = tonic::transport::Endpoint::from_shared(agg.url())?
        .connect()
        .await?;

    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "caretaker.v1.ReportIngest".into(),
        })
        .await?
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);

    let good = pb::NodeReport {
        node_name: "raw".into(),
        epoch: 7,
        seq: 1,
        collected_at: Some(prost_types::Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        }),
        report_interval_ms: 10_000,
        host: Some(pb::Host::default()),
        agent: Some(pb::AgentCost::default()),
        ..Default::default()
    };
    let mut nan = good.clone();
    nan.seq = 2;
    nan.filesystems.push(pb::Filesystem {
        mountpoint: "/".into(),
        used_percent: f64::NAN,
        ..Default::default()
    });
    let mut nameless = good.clone();
    nameless.node_name = String::new();
    let msgs: Vec<pb::AgentMessage> = [good.clone(), nan, nameless, good]
        .into_iter()
        .map(|r| pb::AgentMessage {
            msg: Some(agent_message::Msg::Report(r)),
        })
        .collect();
    let mut acks = ReportIngestClient::new(channel)
        .stream(tokio_stream::iter(msgs))
        .await?
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = acks.message().await? {
        if let Some(aggregator_message::Msg::Ack(a)) = m.msg {
            got.push((a.seq, a.duplicate, a.rejected));
        }
    }
    assert_eq!(
        got,
        vec![
            (1, false, String::new()),
            (
                2,
                false,
                "invalid filesystems[0].used_percent: NaN is not a finite number".into()
            ),
            (1, false, "invalid node_name: empty".into()),
            (1, true, String::new()),
        ]
    );
    let s = agg.state.stored("raw").expect("the valid report is stored");
    assert_eq!((s.report.seq, s.reports_stored_total), (1, 1));
    let metrics = agg.state.metrics.encode();
    assert!(
        metrics.contains("caretaker_ingest_reports_total{result=\"rejected\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("caretaker_ingest_reports_total{result=\"duplicate\"} 1"),
        "{metrics}"
    );
    agg.stop().await
}

/// The aggregator's `caretaker_ingest_streams_active` gauge.
fn streams_active(agg: &RunningAggregator) -> u64 {
    let metrics = agg.state.metrics.encode();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("caretaker_ingest_streams_active "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no streams gauge in {metrics}"))
}

/// TCP sockets of this machine in state ESTABLISHED with `port` at either end (both ends
/// of a loopback connection count).
fn established(port: u16) -> usize {
    let port = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[3] == "01" && (f[1].ends_with(&port) || f[2].ends_with(&port))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_closes_its_idle_connection_between_reports_and_each_report_is_stored_once()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agg = RunningAggregator::start(dir.path(), "127.0.0.1:0".parse()?, 3).await?;
    let mut side = caretaker_agent::config::AggregatorConfig::plaintext(agg.url());
    side.idle_timeout = caretaker_core::config::BoundedDuration::millis(200);
    let agent =
        RunningAgent::start_with("idler", side, Duration::from_secs(1), HostPaths::default())?;
    wait_until("the first report is stored", WAIT, || {
        stored(&agg, "idler") >= 1
    })
    .await?;
    // Between reports the agent holds no stream and no TCP connection.
    wait_until("the connection is closed between reports", WAIT, || {
        streams_active(&agg) == 0 && established(agg.grpc.port()) == 0
    })
    .await?;
    wait_until("four reports are stored", WAIT, || {
        stored(&agg, "idler") >= 4
    })
    .await?;

    let sum = agent.stop().await?;
    let s = agg.state.stored("idler").expect("node");
    // Sequences 1..=last each stored once, everything collected acked once.
    assert_eq!(s.reports_stored_total, s.report.seq, "{sum:?}");
    assert_eq!(sum.collected, s.report.seq, "{sum:?}");
    assert_eq!(
        (
            sum.acked,
            sum.duplicates_acked,
            sum.unacked_at_exit,
            sum.rejected
        ),
        (s.reports_stored_total, 0, 0, 0),
        "{sum:?}"
    );
    // A connection per report (a slow ack may let two reports share one).
    assert!(sum.connections >= 3, "{sum:?}");
    agg.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_idle_timeout_zero_one_connection_carries_every_report() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agg = RunningAggregator::start(dir.path(), "127.0.0.1:0".parse()?, 3).await?;
    let mut side = caretaker_agent::config::AggregatorConfig::plaintext(agg.url());
    side.idle_timeout = caretaker_core::config::BoundedDuration::secs(0);
    let agent = RunningAgent::start_with(
        "holder",
        side,
        Duration::from_millis(300),
        HostPaths::default(),
    )?;
    wait_until("four reports are stored", WAIT, || {
        stored(&agg, "holder") >= 4
    })
    .await?;
    assert_eq!(streams_active(&agg), 1);

    let sum = agent.stop().await?;
    let s = agg.state.stored("holder").expect("node");
    assert_eq!(s.reports_stored_total, s.report.seq, "{sum:?}");
    assert_eq!(
        (sum.connections, sum.acked, sum.unacked_at_exit),
        (1, s.reports_stored_total, 0),
        "{sum:?}"
    );
    agg.stop().await
}
