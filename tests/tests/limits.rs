//! Ingest limits: a misbehaving agent cannot make the aggregator buffer without bound.

use std::sync::Arc;
use std::time::Duration;

use caretaker_agent::collector::{BufferStats, Collector};
use caretaker_agent::config::AgentConfig;
use caretaker_agent::paths::HostPaths;
use caretaker_aggregator::api::ingest::IngestLimits;
use caretaker_aggregator::api::listen::HttpLimits;
use caretaker_aggregator::api::server::{MAX_MESSAGE_BYTES, ServeOptions};
use caretaker_core::listen::test_util::read_to_close;
use caretaker_proto::pb::{
    self, agent_message, aggregator_message, report_ingest_client::ReportIngestClient,
};
use caretaker_tests::{RunningAggregator, wait_until};
use tokio::io::AsyncWriteExt;
use tokio_stream::wrappers::ReceiverStream;

const WAIT: Duration = Duration::from_secs(20);

async fn reports(node: &str, n: usize) -> Vec<pb::NodeReport> {
    let cfg = AgentConfig {
        node_name: Some(node.into()),
        ..AgentConfig::default()
    };
    let settings =
        caretaker_agent::collector_settings(&cfg, HostPaths::default()).expect("settings");
    let mut c = Collector::new(settings, Arc::new(BufferStats::default()));
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(pb::NodeReport::from(c.collect().await));
    }
    out
}

fn msg(r: pb::NodeReport) -> pb::AgentMessage {
    pb::AgentMessage {
        msg: Some(agent_message::Msg::Report(r)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_over_its_rate_is_held_back_not_buffered() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let options = ServeOptions {
        reports_per_minute: 2,
        ingest: IngestLimits {
            burst_reports: 2,
            ..IngestLimits::default()
        },
        ..ServeOptions::insecure()
    };
    let agg = RunningAggregator::start_with(dir.path(), "127.0.0.1:0".parse()?, 3, options).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    for r in reports("node-fast", 3).await {
        tx.send(msg(r)).await?;
    }
    let mut acks = ReportIngestClient::connect(agg.url())
        .await?
        .stream(ReceiverStream::new(rx))
        .await?
        .into_inner();
    // The burst (2 a minute) is acked at once; the third report waits for the rate.
    for seq in 1..=2 {
        match tokio::time::timeout(WAIT, acks.message()).await?? {
            Some(pb::AggregatorMessage {
                msg: Some(aggregator_message::Msg::Ack(a)),
            }) => assert_eq!((a.seq, a.duplicate), (seq, false)),
            other => anyhow::bail!("expected an ack, got {other:?}"),
        }
    }
    wait_until("the third report is held back", WAIT, || {
        agg.state.metrics.ingest_throttled_total.get() == 1
    })
    .await?;
    assert_eq!(
        agg.state
            .node("node-fast", jiff::Timestamp::now())
            .map(|n| n.reports_stored_total),
        Some(2)
    );
    let metrics = agg.state.metrics.encode();
    assert!(
        metrics.contains("caretaker_ingest_throttled_total 1"),
        "{metrics}"
    );
    drop(tx);
    agg.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_over_the_size_limit_ends_the_stream_and_stores_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agg = RunningAggregator::start(dir.path(), "127.0.0.1:0".parse()?, 3).await?;
    let mut big = reports("node-big", 1).await.remove(0);
    big.host.get_or_insert_with(Default::default).os_image = "x".repeat(MAX_MESSAGE_BYTES + 1);
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tx.send(msg(big)).await?;
    let mut client = ReportIngestClient::connect(agg.url())
        .await?
        .max_encoding_message_size(64 << 20);
    let result = match client.stream(ReceiverStream::new(rx)).await {
        Err(s) => Err(s),
        Ok(r) => tokio::time::timeout(WAIT, r.into_inner().message())
            .await?
            .map(|_| ()),
    };
    let status = result.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert_eq!(
        agg.state
            .node("node-big", jiff::Timestamp::now())
            .map(|n| n.reports_stored_total),
        None
    );
    drop(tx);
    agg.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_epoch_from_the_future_is_rejected_and_does_not_silence_the_node() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let agg = RunningAggregator::start(dir.path(), "127.0.0.1:0".parse()?, 3).await?;
    let mut rs = reports("node-clock", 2).await;
    let real = rs.pop().expect("two");
    let mut forged = rs.pop().expect("two");
    forged.epoch = u64::MAX;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(msg(forged)).await?;
    tx.send(msg(real.clone())).await?;
    let mut acks = ReportIngestClient::connect(agg.url())
        .await?
        .stream(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut got = Vec::new();
    for _ in 0..2 {
        match tokio::time::timeout(WAIT, acks.message()).await?? {
            Some(pb::AggregatorMessage {
                msg: Some(aggregator_message::Msg::Ack(a)),
            }) => got.push(a),
            other => anyhow::bail!("expected an ack, got {other:?}"),
        }
    }
    assert_eq!(got[0].epoch, u64::MAX);
    assert!(
        got[0].rejected.starts_with(
            "epoch 18446744073709551615 (agent start 2554-07-21T23:34:33Z) is more than 300s ahead of the aggregator's clock"
        ) && got[0]
            .rejected
            .ends_with("; fix the node's clock and restart the agent"),
        "{:?}",
        got[0]
    );
    assert_eq!(
        (
            got[1].epoch,
            got[1].seq,
            got[1].duplicate,
            got[1].rejected.as_str()
        ),
        (real.epoch, real.seq, false, ""),
        "the real report after it is stored"
    );
    let stored = agg
        .state
        .stored("node-clock")
        .expect("the real report is stored");
    assert_eq!(
        (stored.report.epoch, stored.reports_stored_total),
        (real.epoch, 1)
    );
    drop(tx);
    agg.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_streams_as_one_node_share_its_rate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let options = ServeOptions {
        reports_per_minute: 2,
        ingest: IngestLimits {
            burst_reports: 2,
            ..IngestLimits::default()
        },
        ..ServeOptions::insecure()
    };
    let agg = RunningAggregator::start_with(dir.path(), "127.0.0.1:0".parse()?, 3, options).await?;
    // Four streams for one node, two reports each: eight reports against a burst of two.
    let all = reports("node-many", 8).await;
    let mut senders = Vec::new();
    let mut streams = Vec::new();
    for pair in all.chunks(2) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        for r in pair {
            tx.send(msg(r.clone())).await?;
        }
        senders.push(tx);
        streams.push(
            ReportIngestClient::connect(agg.url())
                .await?
                .stream(ReceiverStream::new(rx))
                .await?
                .into_inner(),
        );
    }
    // Each stream is held back once it meets the empty bucket; per stream, the old
    // limiter let all eight through at once.
    wait_until("every stream is held back", WAIT, || {
        agg.state.metrics.ingest_throttled_total.get() >= 3
    })
    .await?;
    let stored = agg
        .state
        .node("node-many", jiff::Timestamp::now())
        .map_or(0, |n| n.reports_stored_total);
    assert!(stored <= 2, "stored {stored} within the burst of 2");
    drop(senders);
    drop(streams);
    agg.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_http_connections_are_capped_and_closed_while_ingest_and_http_keep_working()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let options = ServeOptions {
        http: HttpLimits {
            max_connections: 8,
            header_read_timeout: Duration::from_secs(1),
            ..HttpLimits::default()
        },
        ..ServeOptions::insecure()
    };
    let agg = RunningAggregator::start_with(dir.path(), "127.0.0.1:0".parse()?, 3, options).await?;
    // The HTTP port's eight connections held: six send nothing, two half a request head.
    let mut held = Vec::new();
    for i in 0..8 {
        let mut s = tokio::net::TcpStream::connect(agg.http).await?;
        if i >= 6 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await?;
        }
        held.push(s);
    }
    // Ingest is not affected.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(msg(reports("node-busy", 1).await.remove(0)))
        .await?;
    let mut acks = ReportIngestClient::connect(agg.url())
        .await?
        .stream(ReceiverStream::new(rx))
        .await?
        .into_inner();
    match tokio::time::timeout(WAIT, acks.message()).await?? {
        Some(pb::AggregatorMessage {
            msg: Some(aggregator_message::Msg::Ack(a)),
        }) => assert_eq!((a.seq, a.duplicate, a.rejected.as_str()), (1, false, "")),
        other => anyhow::bail!("expected an ack, got {other:?}"),
    }
    // A ninth client is served once the held connections time out and free their slots.
    let mut probe = tokio::net::TcpStream::connect(agg.http).await?;
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let answer = read_to_close(&mut probe, WAIT).await?;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
        "{answer}"
    );
    // Every held connection was closed by the server (before: held open for good).
    for (i, s) in held.iter_mut().enumerate() {
        let got = read_to_close(s, WAIT).await?;
        assert!(
            !got.starts_with("HTTP/1.1 200"),
            "connection {i} got {got:?}"
        );
    }
    drop(tx);
    agg.stop().await
}
