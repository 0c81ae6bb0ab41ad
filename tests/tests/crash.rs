//! kill -9 of the real aggregator process while reports stream in (group commit batches in
//! flight): no acked report is lost, none is stored twice. Needs the binary:
//! `cargo build -p caretaker-aggregator --bins`.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use caretaker_agent::collector::{BufferStats, Collector};
use caretaker_agent::config::AgentConfig;
use caretaker_agent::paths::HostPaths;
use caretaker_aggregator::store::Store;
use caretaker_proto::pb::{
    self, agent_message, aggregator_message, report_ingest_client::ReportIngestClient,
};
use caretaker_tests::binary;
use tokio_stream::wrappers::ReceiverStream;

const NODES: usize = 12;
const KILLS: usize = 4;
/// Reports a node sends before waiting for their acks: several batches in flight.
const BURST: u64 = 8;
const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(cfg: &std::path::Path) -> Child {
    Command::new(binary("caretaker-aggregator"))
        .args(["serve", "--config"])
        .arg(cfg)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn template() -> pb::NodeReport {
    let cfg = AgentConfig {
        node_name: Some("crash".into()),
        ..AgentConfig::default()
    };
    let settings =
        caretaker_agent::collector_settings(&cfg, HostPaths::default()).expect("settings");
    let mut c = Collector::new(settings, Arc::new(BufferStats::default()));
    pb::NodeReport::from(c.collect().await)
}

/// Like an agent: resends everything after its last ack, then keeps sending in bursts,
/// until the stream breaks. `acked` is the highest acked seq.
async fn node(url: String, name: String, template: Arc<pb::NodeReport>, acked: Arc<AtomicU64>) {
    let Ok(mut client) = ReportIngestClient::connect(url).await else {
        return;
    };
    let (tx, rx) = tokio::sync::mpsc::channel(BURST as usize);
    let Ok(resp) = client.stream(ReceiverStream::new(rx)).await else {
        return;
    };
    let mut acks = resp.into_inner();
    let mut next = acked.load(Ordering::SeqCst) + 1;
    loop {
        for seq in next..next + BURST {
            let mut r = (*template).clone();
            r.node_name.clone_from(&name);
            r.seq = seq;
            if tx
                .send(pb::AgentMessage {
                    msg: Some(agent_message::Msg::Report(r)),
                })
                .await
                .is_err()
            {
                return;
            }
        }
        for _ in 0..BURST {
            match acks.message().await {
                Ok(Some(pb::AggregatorMessage {
                    msg: Some(aggregator_message::Msg::Ack(a)),
                })) => {
                    assert!(a.rejected.is_empty(), "{a:?}");
                    acked.fetch_max(a.seq, Ordering::SeqCst);
                }
                _ => return,
            }
        }
        next += BURST;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_ingest_loses_no_acked_report_and_stores_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let grpc = free_port();
    let cfg = dir.path().join("aggregator.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen:\n  grpc: 127.0.0.1:{grpc}\n  http: 127.0.0.1:{}\ndata_dir: {}\ninsecure_plaintext: true\nmax_reports_per_minute: 60000\nauth:\n  allow_anonymous: true\n",
            free_port(),
            data.display()
        ),
    )
    .unwrap();
    let template = Arc::new(template().await);
    let acked: Vec<Arc<AtomicU64>> = (0..NODES).map(|_| Arc::default()).collect();
    let url = format!("http://127.0.0.1:{grpc}");
    // Pseudo-random kill points from the clock: how many acks to wait for each time.
    let mut seed = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos(),
    );
    for round in 0..=KILLS {
        let mut child = start(&cfg);
        let total = || acked.iter().map(|a| a.load(Ordering::SeqCst)).sum::<u64>();
        let before = total();
        let mut tasks = tokio::task::JoinSet::new();
        let started = tokio::time::Instant::now();
        // The nodes reconnect (with backoff) until the aggregator listens.
        for (i, a) in acked.iter().enumerate() {
            let (url, t, a) = (url.clone(), Arc::clone(&template), Arc::clone(a));
            tasks.spawn(async move {
                while started.elapsed() < WAIT {
                    node(
                        url.clone(),
                        format!("node-{i}"),
                        Arc::clone(&t),
                        Arc::clone(&a),
                    )
                    .await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let target = before + 100 + (seed >> 33) % 400;
        while total() < target {
            assert!(
                started.elapsed() < WAIT,
                "round {round}: only {} acks",
                total() - before
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if round < KILLS {
            child.kill().unwrap(); // SIGKILL
        } else {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
        }
        child.wait().unwrap();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let acked_now: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();

        let store = Store::open(&data).unwrap();
        let stored: BTreeMap<String, (u64, u64)> = store
            .load_all()
            .unwrap()
            .into_iter()
            .map(|(n, e)| (n, (e.report.seq, e.reports_stored_total)))
            .collect();
        drop(store);
        for (i, a) in acked_now.iter().enumerate() {
            let name = format!("node-{i}");
            let Some(&(seq, count)) = stored.get(&name) else {
                assert_eq!(
                    *a, 0,
                    "round {round}: {name} had acks but nothing is stored"
                );
                continue;
            };
            assert!(
                seq >= *a,
                "round {round}: {name} acked up to {a} but the store has {seq}"
            );
            // Seqs are sent in order from 1 without gaps: each stored once means the count
            // is the latest seq (a resend of a committed report whose ack was lost is a
            // duplicate, not stored again).
            assert_eq!(
                count, seq,
                "round {round}: {name} stored {count} reports up to seq {seq}"
            );
        }
    }
}
