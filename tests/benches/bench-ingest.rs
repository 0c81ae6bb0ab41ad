//! The aggregator's ingest at fleet scale: N simulated agents, each with its own
//! connection (and with TLS its own client certificate), against an aggregator in a child
//! process (so its RSS and CPU are its own).
//!
//! ```sh
//! cargo bench -p caretaker-tests --bench bench-ingest -- [--agents 5000] [--backlog 360] \
//!     [--steady-seconds 30] [--interval 10] [--fresh 50] [--rate 120] [--mode tls|plain|both]
//! ```
//! `BENCH_AGENTS` sets `--agents` too (a quick run: `BENCH_AGENTS=200`); `BENCH_DIR` is
//! where the store lives (default: the temp dir; pick a real disk, fsync is the point);
//! `BENCH_WRAP` runs the aggregator under a profiler (`BENCH_WRAP="heaptrack -o /tmp/agg"`);
//! `BENCH_STORE_CACHE_BYTES`, `BENCH_IN_FLIGHT_BYTES`, `BENCH_STREAM_WINDOW_BYTES`,
//! `BENCH_CONNECTION_WINDOW_BYTES` and `BENCH_BURST_REPORTS` override those defaults of the
//! aggregator (memory experiments).
//!
//! Per mode (mutual TLS, plaintext):
//! 1. Steady state: every agent sends one report per `interval` seconds (start spread over
//!    the interval), for `steady-seconds`: p50/p99 ack latency, aggregator CPU per report.
//! 2. Reconnect storm: every agent opens a new connection and resends a backlog of
//!    `backlog` reports at once; meanwhile `fresh` other agents keep reporting at the
//!    interval. Printed: reports acked per second, time until every backlog is acked,
//!    p50/p99/max ack latency of the fresh agents' reports, and the aggregator's peak RSS.
//!
//! Reports are realistic: this machine's own report with 6 filesystems and 6 interfaces,
//! host figures, agent cost, logs and images summaries. The aggregator keeps its deployment
//! defaults except `--rate` (its `max_reports_per_minute`, default 120 as deployed).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use caretaker_agent::collector::{BufferStats, Collector};
use caretaker_agent::config::AgentConfig;
use caretaker_agent::paths::HostPaths;
use caretaker_aggregator::api::server::ServeOptions;
use caretaker_proto::pb::{
    self, agent_message, aggregator_message, report_ingest_client::ReportIngestClient,
};
use caretaker_tests::TestPki;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (utime + stime) in seconds, VmRSS and VmHWM in bytes of a process.
fn proc_cost(pid: u32) -> anyhow::Result<(f64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    let cpu = (f[11].parse::<f64>()? + f[12].parse::<f64>()?) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((cpu, kib("VmRSS:") * 1024, kib("VmHWM:") * 1024))
}

/// The child: an aggregator on loopback, storing in `dir`; prints `READY <grpc addr>`.
async fn child(dir: PathBuf, tls: Option<PathBuf>, rate: u32) -> anyhow::Result<()> {
    use caretaker_aggregator::api::tls::ReloadingTls;
    // Knobs for memory experiments (unset: the deployment's defaults).
    let knob = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    let store = match knob("BENCH_STORE_CACHE_BYTES") {
        Some(bytes) => caretaker_aggregator::store::Store::open_with_cache(&dir, bytes)?,
        None => caretaker_aggregator::store::Store::open(&dir)?,
    };
    let state = caretaker_aggregator::state::State::new(store, 3)?;
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = grpc.local_addr()?;
    let tls = match tls {
        Some(d) => Some(Arc::new(ReloadingTls::load(
            caretaker_aggregator::config::ServerTlsConfig {
                cert_file: d.join("server.crt"),
                key_file: d.join("server.key"),
                ca_file: d.join("ca.crt"),
                allow_shared_agent_cert: false,
            },
        )?)),
        None => None,
    };
    let mut ingest = caretaker_aggregator::api::ingest::IngestLimits::default();
    if let Some(v) = knob("BENCH_IN_FLIGHT_BYTES") {
        ingest.in_flight_bytes = v;
    }
    if let Some(v) = knob("BENCH_STREAM_WINDOW_BYTES") {
        ingest.stream_window_bytes = u32::try_from(v)?;
    }
    if let Some(v) = knob("BENCH_CONNECTION_WINDOW_BYTES") {
        ingest.connection_window_bytes = u32::try_from(v)?;
    }
    if let Some(v) = knob("BENCH_BURST_REPORTS") {
        ingest.burst_reports = u32::try_from(v)?;
    }
    let options = ServeOptions {
        tls,
        reports_per_minute: rate,
        ingest,
        ..ServeOptions::insecure()
    };
    println!("READY {addr}");
    caretaker_aggregator::api::server::serve_with(
        state,
        grpc,
        http,
        tokio_util::sync::CancellationToken::new(),
        options,
    )
    .await?;
    Ok(())
}

/// A realistic report: this machine's, with 6 filesystems and 6 interfaces.
async fn template() -> pb::NodeReport {
    let cfg = AgentConfig {
        node_name: Some("template".into()),
        ..AgentConfig::default()
    };
    let settings =
        caretaker_agent::collector_settings(&cfg, HostPaths::default()).expect("settings");
    let mut c = Collector::new(settings, Arc::new(BufferStats::default()));
    let mut r = pb::NodeReport::from(c.collect().await);
    fn grow<T: Clone + Default>(v: &mut Vec<T>) {
        let first = v.first().cloned().unwrap_or_default();
        while v.len() < 6 {
            v.push(first.clone());
        }
        v.truncate(6);
    }
    grow(&mut r.filesystems);
    grow(&mut r.network);
    for (i, f) in r.filesystems.iter_mut().enumerate() {
        f.mountpoint = format!("/mnt/disk{i}");
    }
    for (i, n) in r.network.iter_mut().enumerate() {
        n.device = format!("eth{i}");
    }
    r.logs.get_or_insert_with(Default::default);
    r.images.get_or_insert_with(Default::default);
    r
}

/// One simulated agent's side of a stream: what it sends and when each ack came.
struct AgentStream {
    tx: mpsc::Sender<pb::AgentMessage>,
    /// seq → when it was sent.
    sent: Arc<std::sync::Mutex<std::collections::HashMap<u64, Instant>>>,
}

/// Shared results.
#[derive(Default)]
struct Tally {
    acked: AtomicU64,
    errors: AtomicU64,
    latencies: std::sync::Mutex<Vec<Duration>>,
}

async fn channel(
    addr: SocketAddr,
    tls: Option<&(PathBuf, PathBuf, PathBuf)>,
) -> anyhow::Result<Channel> {
    let mut ep = if tls.is_some() {
        Endpoint::from_shared(format!("https://localhost:{}", addr.port()))?
    } else {
        Endpoint::from_shared(format!("http://{addr}"))?
    }
    .connect_timeout(Duration::from_secs(60))
    .http2_keep_alive_interval(Duration::from_secs(20))
    .keep_alive_timeout(Duration::from_secs(10));
    if let Some((ca, crt, key)) = tls {
        ep = ep.tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(
                    tokio::fs::read(ca).await?,
                ))
                .identity(tonic::transport::Identity::from_pem(
                    tokio::fs::read(crt).await?,
                    tokio::fs::read(key).await?,
                )),
        )?;
    }
    Ok(ep.connect().await?)
}

/// Opens a stream on `ch`; acks are counted into `tally`, latencies recorded when `record`.
async fn open(
    ch: Channel,
    tally: Arc<Tally>,
    record: bool,
    capacity: usize,
) -> anyhow::Result<AgentStream> {
    let (tx, rx) = mpsc::channel(capacity);
    let mut acks = ReportIngestClient::new(ch)
        .stream(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let sent: Arc<std::sync::Mutex<std::collections::HashMap<u64, Instant>>> = Arc::default();
    let s = Arc::clone(&sent);
    tokio::spawn(async move {
        loop {
            match acks.message().await {
                Ok(Some(pb::AggregatorMessage {
                    msg: Some(aggregator_message::Msg::Ack(a)),
                })) => {
                    let at = s.lock().expect("lock").remove(&a.seq);
                    tally.acked.fetch_add(1, Ordering::Relaxed);
                    if record && let Some(at) = at {
                        tally.latencies.lock().expect("lock").push(at.elapsed());
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    });
    Ok(AgentStream { tx, sent })
}

impl AgentStream {
    async fn send(&self, template: &pb::NodeReport, node: &str, epoch: u64, seq: u64) -> bool {
        let mut r = template.clone();
        r.node_name = node.to_string();
        r.epoch = epoch;
        r.seq = seq;
        r.collected_at = Some(prost_types::Timestamp::from(std::time::SystemTime::now()));
        self.sent.lock().expect("lock").insert(seq, Instant::now());
        self.tx
            .send(pb::AgentMessage {
                msg: Some(agent_message::Msg::Report(r)),
            })
            .await
            .is_ok()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(mut l: Vec<Duration>) -> String {
    l.sort();
    format!(
        "n={} p50={:.1?} p99={:.1?} max={:.1?}",
        l.len(),
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        l.last().copied().unwrap_or_default()
    )
}

struct Aggregator {
    child: Child,
    addr: SocketAddr,
    peak_rss: Arc<AtomicU64>,
}

impl Aggregator {
    async fn start(dir: &Path, tls: Option<&Path>, rate: u32) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        // BENCH_WRAP runs the aggregator under a profiler, e.g. `BENCH_WRAP="heaptrack -o
        // /tmp/agg"` (its RSS figures are then the wrapper's, not the aggregator's).
        let wrap = std::env::var("BENCH_WRAP").unwrap_or_default();
        let mut wrap = wrap.split_whitespace();
        let mut cmd = match wrap.next() {
            Some(program) => {
                let mut cmd = Command::new(program);
                cmd.args(wrap).arg(exe);
                cmd
            }
            None => Command::new(exe),
        };
        cmd.arg("--child-aggregator")
            .arg(dir)
            .arg("--rate")
            .arg(rate.to_string());
        if let Some(t) = tls {
            cmd.arg("--tls-dir").arg(t);
        }
        // Its own process group, so that stopping it also stops what a BENCH_WRAP wrapper
        // started.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines =
            tokio::io::BufReader::new(tokio::process::ChildStdout::from_std(stdout)?).lines();
        // A wrapper may print lines of its own first.
        let addr = loop {
            let line = lines.next_line().await?.context("child said nothing")?;
            if let Some(addr) = line.strip_prefix("READY ") {
                break addr.parse()?;
            }
        };
        let peak_rss = Arc::new(AtomicU64::new(0));
        let (pid, peak) = (child.id(), Arc::clone(&peak_rss));
        tokio::spawn(async move {
            while let Ok((_, rss, _)) = proc_cost(pid) {
                peak.fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(Self {
            child,
            addr,
            peak_rss,
        })
    }

    fn cost(&self) -> (f64, u64, u64) {
        proc_cost(self.child.id()).unwrap_or_default()
    }
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(clippy::too_many_lines)]
async fn run_mode(tls: bool, template: &pb::NodeReport) -> anyhow::Result<()> {
    let agents: usize = std::env::var("BENCH_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| arg("--agents", 5000));
    let backlog: u64 = arg("--backlog", 360);
    let steady_secs: u64 = arg("--steady-seconds", 30);
    let interval = Duration::from_secs(arg("--interval", 10));
    let fresh: usize = arg("--fresh", 50);
    let rate: u32 = arg("--rate", 120);
    let base = std::env::var("BENCH_DIR").map_or_else(|_| std::env::temp_dir(), PathBuf::from);
    let work = tempfile::tempdir_in(base)?;
    let mode = if tls { "mutual TLS" } else { "plaintext" };
    println!(
        "== {mode}: {agents} agents (+{fresh} fresh), backlog {backlog}, interval {interval:?}, rate {rate}/min, store in {}",
        work.path().display()
    );

    // Certificates: one per agent.
    let mut certs: Vec<Option<(PathBuf, PathBuf, PathBuf)>> = vec![None; agents + fresh];
    let pki_dir = if tls {
        let pki = TestPki::new(work.path(), "bench")?;
        pki.server()?;
        let started = Instant::now();
        for (i, c) in certs.iter_mut().enumerate() {
            let t = pki.agent(
                &format!("n{i}"),
                Some(&format!("node-{i}")),
                time::Duration::hours(-1),
                time::Duration::days(1),
            )?;
            *c = Some((t.ca_file, t.cert_file, t.key_file));
        }
        println!(
            "issued {} client certificates in {:.1?}",
            certs.len(),
            started.elapsed()
        );
        Some(pki.dir.clone())
    } else {
        None
    };
    let agg = Aggregator::start(&work.path().join("store"), pki_dir.as_deref(), rate).await?;
    let template = Arc::new(template.clone());
    let size = prost::Message::encoded_len(template.as_ref());
    println!("report size {size} bytes");
    let epoch = u64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(1) - 1_000_000_000;

    // Connect every agent (bounded concurrency, so connecting is not the benchmark).
    let started = Instant::now();
    let tally = Arc::new(Tally::default());
    let addr = agg.addr;
    let connect_all =
        |range: std::ops::Range<usize>, record: bool, tally: Arc<Tally>, capacity: usize| {
            let certs = certs.clone();
            async move {
                let sem = Arc::new(tokio::sync::Semaphore::new(64));
                let mut set = tokio::task::JoinSet::new();
                for i in range {
                    let (sem, tally, cert) =
                        (Arc::clone(&sem), Arc::clone(&tally), certs[i].clone());
                    set.spawn(async move {
                        let _p = sem.acquire_owned().await?;
                        let ch = channel(addr, cert.as_ref()).await?;
                        anyhow::Ok((i, open(ch, tally, record, capacity).await?))
                    });
                }
                let mut out = Vec::new();
                while let Some(r) = set.join_next().await {
                    out.push(r??);
                }
                out.sort_by_key(|(i, _)| *i);
                anyhow::Ok(out.into_iter().map(|(_, s)| s).collect::<Vec<_>>())
            }
        };
    let streams = connect_all(0..agents, true, Arc::clone(&tally), 8).await?;
    println!("connected {agents} agents in {:.1?}", started.elapsed());

    // 1. Steady state.
    let (cpu0, _, _) = agg.cost();
    let acked0 = tally.acked.load(Ordering::Relaxed);
    let steady_end = Instant::now() + Duration::from_secs(steady_secs);
    let mut set = tokio::task::JoinSet::new();
    let sent_each = Arc::new(AtomicU64::new(0));
    for (i, s) in streams.into_iter().enumerate() {
        let template = Arc::clone(&template);
        let offset = interval.mul_f64(i as f64 / agents as f64);
        let sent_each = Arc::clone(&sent_each);
        set.spawn(async move {
            tokio::time::sleep(offset).await;
            let mut seq = 0;
            while Instant::now() < steady_end {
                seq += 1;
                s.send(&template, &format!("node-{i}"), epoch, seq).await;
                sent_each.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(interval).await;
            }
            (i, s, seq)
        });
    }
    let mut kept = Vec::new();
    while let Some(r) = set.join_next().await {
        kept.push(r?);
    }
    kept.sort_by_key(|(i, _, _)| *i);
    let sent = sent_each.load(Ordering::Relaxed);
    let drained = Instant::now();
    while tally.acked.load(Ordering::Relaxed) - acked0 < sent
        && drained.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (cpu1, rss, _) = agg.cost();
    let steady_acked = tally.acked.load(Ordering::Relaxed) - acked0;
    let lat = std::mem::take(&mut *tally.latencies.lock().expect("lock"));
    println!(
        "steady: sent {sent}, acked {steady_acked}, ack latency {}, aggregator CPU {:.0} µs/report, RSS {:.1} MiB",
        summary(lat),
        (cpu1 - cpu0) * 1e6 / steady_acked.max(1) as f64,
        rss as f64 / (1 << 20) as f64
    );
    // The steady streams end: the agents "lose" their connections.
    let next_seq: Vec<u64> = kept.into_iter().map(|(_, _, seq)| seq).collect();

    // 2. Storm: fresh agents first, then every agent reconnects with its backlog.
    let fresh_tally = Arc::new(Tally::default());
    let fresh_streams =
        connect_all(agents..agents + fresh, true, Arc::clone(&fresh_tally), 8).await?;
    let storm_tally = Arc::new(Tally::default());
    let (cpu0, _, _) = agg.cost();
    let storm_start = Instant::now();
    let stop_fresh = tokio_util::sync::CancellationToken::new();
    let mut fresh_set = tokio::task::JoinSet::new();
    for (k, s) in fresh_streams.into_iter().enumerate() {
        let (template, stop) = (Arc::clone(&template), stop_fresh.clone());
        let offset = interval.mul_f64(k as f64 / fresh.max(1) as f64);
        fresh_set.spawn(async move {
            tokio::time::sleep(offset).await;
            let mut seq = 0;
            while !stop.is_cancelled() {
                seq += 1;
                s.send(&template, &format!("node-{}", agents + k), epoch, seq)
                    .await;
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(interval) => {}
                }
            }
        });
    }
    let storm = connect_all(
        0..agents,
        false,
        Arc::clone(&storm_tally),
        backlog as usize + 8,
    )
    .await?;
    println!(
        "storm: {agents} agents reconnected in {:.1?}",
        storm_start.elapsed()
    );
    for (i, s) in storm.iter().enumerate() {
        for n in 1..=backlog {
            s.send(&template, &format!("node-{i}"), epoch, next_seq[i] + n)
                .await;
        }
    }
    let total = agents as u64 * backlog;
    let mut last_print = Instant::now();
    while storm_tally.acked.load(Ordering::Relaxed) < total {
        if storm_start.elapsed() > Duration::from_secs(900) {
            println!("storm: gave up after 900 s");
            break;
        }
        if storm_tally.errors.load(Ordering::Relaxed) as usize >= agents {
            println!("storm: every stream failed");
            break;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            last_print = Instant::now();
            println!(
                "  {:.0?}: acked {} of {total}, stream errors {}, RSS peak {:.1} MiB",
                storm_start.elapsed(),
                storm_tally.acked.load(Ordering::Relaxed),
                storm_tally.errors.load(Ordering::Relaxed),
                agg.peak_rss.load(Ordering::Relaxed) as f64 / (1 << 20) as f64
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain = storm_start.elapsed();
    stop_fresh.cancel();
    while fresh_set.join_next().await.is_some() {}
    let (cpu1, _, hwm) = agg.cost();
    let acked = storm_tally.acked.load(Ordering::Relaxed);
    let fresh_lat = std::mem::take(&mut *fresh_tally.latencies.lock().expect("lock"));
    println!(
        "storm: {acked} of {total} backlog reports acked in {drain:.1?} ({:.0} reports/s), stream errors {}; fresh ack latency {}; aggregator CPU {:.0} µs/report",
        acked as f64 / drain.as_secs_f64(),
        storm_tally.errors.load(Ordering::Relaxed),
        summary(fresh_lat),
        (cpu1 - cpu0) * 1e6 / acked.max(1) as f64,
    );
    println!(
        "aggregator peak RSS {:.1} MiB (sampled), VmHWM {:.1} MiB",
        agg.peak_rss.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
        hwm as f64 / (1 << 20) as f64
    );
    drop(storm);
    drop(agg);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Runtime::new()?;
    if let Some(i) = args.iter().position(|a| a == "--child-aggregator") {
        let dir = PathBuf::from(args.get(i + 1).context("store dir")?);
        let tls = args
            .iter()
            .position(|a| a == "--tls-dir")
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from);
        return rt.block_on(child(dir, tls, arg("--rate", 120)));
    }
    let mode: String = arg("--mode", "both".to_string());
    rt.block_on(async {
        let template = template().await;
        if mode == "tls" || mode == "both" {
            run_mode(true, &template).await?;
        }
        if mode == "plain" || mode == "both" {
            run_mode(false, &template).await?;
        }
        anyhow::Ok(())
    })
}
