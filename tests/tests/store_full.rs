//! A full disk under the store: the aggregator stops being ready and answers UNAVAILABLE
//! (agents keep their reports), and writes resume by themselves once space is freed, with
//! nothing acked lost. Needs root for a small tmpfs; with CI=true a failed mount fails.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use caretaker_agent::collector::{BufferStats, Collector};
use caretaker_agent::config::AgentConfig;
use caretaker_agent::paths::HostPaths;
use caretaker_aggregator::store::Store;
use caretaker_proto::pb::{
    self, agent_message, aggregator_message, report_ingest_client::ReportIngestClient,
};
use caretaker_tests::{RunningAggregator, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::wrappers::ReceiverStream;

const WAIT: Duration = Duration::from_secs(30);

/// Unmounts on drop.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a failed test may still hold the store file open.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Option<Tmpfs> {
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(Tmpfs(dir.to_path_buf()));
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "cannot mount a tmpfs (needs root); CI=true requires it"
    );
    eprintln!("skipped: cannot mount a tmpfs (needs root)");
    None
}

async fn readyz(agg: &RunningAggregator) -> anyhow::Result<u16> {
    let mut s = tokio::net::TcpStream::connect(agg.http).await?;
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

/// One large report from each of `n` nodes, so every write needs fresh pages of the file.
async fn reports(n: usize) -> Vec<pb::NodeReport> {
    let cfg = AgentConfig {
        node_name: Some("node".into()),
        ..AgentConfig::default()
    };
    let settings =
        caretaker_agent::collector_settings(&cfg, HostPaths::default()).expect("settings");
    let mut c = Collector::new(settings, Arc::new(BufferStats::default()));
    let mut base = pb::NodeReport::from(c.collect().await);
    base.host.get_or_insert_with(Default::default).os_image = "x".repeat(64 << 10);
    (0..n)
        .map(|i| pb::NodeReport {
            node_name: format!("node-{i:03}"),
            ..base.clone()
        })
        .collect()
}

/// Sends `rs` one at a time on a new stream; returns the seqs acked (stored) before the
/// stream failed, and the failure.
async fn send(
    agg: &RunningAggregator,
    rs: &[pb::NodeReport],
) -> anyhow::Result<(Vec<u64>, Option<tonic::Status>)> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut acks = ReportIngestClient::connect(agg.url())
        .await?
        .stream(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut acked = Vec::new();
    for r in rs {
        tx.send(pb::AgentMessage {
            msg: Some(agent_message::Msg::Report(r.clone())),
        })
        .await?;
        match tokio::time::timeout(WAIT, acks.message()).await? {
            Ok(Some(pb::AggregatorMessage {
                msg: Some(aggregator_message::Msg::Ack(a)),
            })) => {
                assert_eq!(
                    (a.seq, a.rejected.as_str(), a.duplicate),
                    (r.seq, "", false)
                );
                acked.push(a.seq);
            }
            Ok(other) => anyhow::bail!("expected an ack, got {other:?}"),
            Err(status) => return Ok((acked, Some(status))),
        }
    }
    Ok((acked, None))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_makes_the_aggregator_unready_and_writes_resume_once_space_is_freed()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(mnt) = mount_tmpfs(dir.path(), "8m") else {
        return Ok(());
    };
    let agg = RunningAggregator::start(&mnt.0, "127.0.0.1:0".parse()?, 3).await?;
    wait_until("ready", WAIT, || agg.state.is_ready()).await?;
    let all = reports(200).await;

    // Fill the disk, leaving a little room: some reports go in, then a write fails.
    let filler = mnt.0.join("filler");
    {
        let mut f = std::fs::File::create(&filler)?;
        let chunk = vec![0u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let len = std::fs::metadata(&filler)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)?
        .set_len(len.saturating_sub(512 << 10))?;

    let (acked, failure) = send(&agg, &all).await?;
    let status = failure.expect("the store fills up before 200 reports of 64 KiB");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(readyz(&agg).await?, 503, "not ready while the disk is full");
    // Still full: a retry is answered UNAVAILABLE again, nothing acked.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rest = &all[acked.len()..];
    let (again, failure) = send(&agg, &rest[..1]).await?;
    assert!(again.is_empty());
    assert_eq!(failure.map(|s| s.code()), Some(tonic::Code::Unavailable));

    // Space freed: readiness comes back by itself (probes reopen the store), and the
    // reports the agent kept are stored.
    std::fs::remove_file(&filler)?;
    let mut ready = false;
    for _ in 0..30 {
        if readyz(&agg).await? == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(ready, "ready again once space is freed");
    let resend = &rest[..rest.len().min(20)];
    let (later, failure) = send(&agg, resend).await?;
    assert!(failure.is_none(), "{failure:?}");
    assert_eq!(later.len(), resend.len());
    agg.stop().await?;

    // Nothing acked is lost: every acked report is stored, durably, once. The stopped
    // aggregator has closed the store: it opens at once.
    let store = Store::open(&mnt.0)?;
    let stored = store.load_all()?;
    let expected: Vec<String> = all[..acked.len() + later.len()]
        .iter()
        .map(|r| r.node_name.clone())
        .collect();
    assert_eq!(stored.keys().cloned().collect::<Vec<_>>(), expected);
    assert!(stored.values().all(|n| n.reports_stored_total == 1));
    assert!(
        !acked.is_empty(),
        "some reports fit before the disk was full"
    );
    drop(store);
    Ok(())
}
