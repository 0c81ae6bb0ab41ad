//! The aggregator's ingest at fleet scale: N simulated agents, each with its own
//! connection and source address (127.0.x.y; with TLS its own client certificate too),
//! against an aggregator in a child
//! process (so its RSS and CPU are its own).
//!
//! ```sh
//! cargo bench -p caretaker-tests --bench bench-ingest -- [--agents 5000] [--backlog 360] \
//!     [--steady-seconds 30] [--interval 10] [--fresh 50] [--rate 120] [--idle-ms 1000] \
//!     [--mode tls|plain|both] [--at-once]
//! ```
//! `BENCH_AGENTS` sets `--agents` too (a quick run: `BENCH_AGENTS=200`); `BENCH_DIR` is
//! where the store lives (default: the temp dir; pick a real disk, fsync is the point);
//! `BENCH_WRAP` runs the aggregator under a profiler (`BENCH_WRAP="heaptrack -o /tmp/agg"`);
//! `BENCH_STORE_CACHE_BYTES`, `BENCH_IN_FLIGHT_BYTES`, `BENCH_STREAM_WINDOW_BYTES`,
//! `BENCH_CONNECTION_WINDOW_BYTES`, `BENCH_BURST_REPORTS`, `BENCH_MAX_CONNECTIONS` and
//! `BENCH_MAX_CONNECTION_AGE_AT_CAP_MS` override those defaults of the aggregator
//! (experiments).
//!
//! The simulated agents deliver as caretaker-agent does: an agent connects when it has
//! reports, sends everything unacked, hangs up `--idle-ms` after its last ack (its
//! `idle_timeout`), and when the aggregator ends its stream to make way, waits as long as
//! the `grpc-retry-pushback-ms` trailer says and reconnects to resend the rest.
//!
//! Per mode (mutual TLS, plaintext):
//! 1. Steady state: every agent sends one report per `interval` seconds (start spread over
//!    the interval), for `steady-seconds`: p50/p99 ack latency (a connection and TLS
//!    handshake included), aggregator CPU per report, RSS.
//! 2. Reconnect storm: every agent comes back with a backlog of `backlog` reports, as after
//!    an outage of the aggregator that long (`backlog` × `interval`): each agent at its next
//!    attempt by the agent's own backoff (30–60 s apart at its ceiling), or with `--at-once`
//!    all in the same instant (a worst case); either way an attempt that fails waits as the
//!    agent's would after that outage (its backoff goes on at the ceiling until an ack);
//!    meanwhile `fresh` other agents keep reporting
//!    at the interval. Printed: reports acked per second, time until every backlog is
//!    acked, p50/p99/max ack latency of the fresh agents' reports (and of it, the time to
//!    be accepted and connected), and the aggregator's peak RSS.
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
use tokio_util::sync::CancellationToken;
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
    let grpc = caretaker_aggregator::api::server::bind_grpc("127.0.0.1:0".parse()?)?;
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
    if let Some(v) = knob("BENCH_MAX_CONNECTIONS") {
        ingest.max_connections = v;
    }
    if let Some(v) = knob("BENCH_MAX_CONNECTION_AGE_AT_CAP_MS") {
        ingest.max_connection_age_at_cap = Duration::from_millis(u64::try_from(v)?);
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
        CancellationToken::new(),
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

/// Shared results.
#[derive(Default)]
struct Tally {
    /// Reports acked (each counted once).
    acked: AtomicU64,
    /// Connections opened.
    connections: AtomicU64,
    /// Streams the aggregator ended to make way (status OK with reports unacked).
    made_way: AtomicU64,
    /// Failed connects and broken streams.
    errors: AtomicU64,
    /// Report created → acked, when recorded.
    latencies: std::sync::Mutex<Vec<Duration>>,
    /// How long connecting took (waiting to be accepted, TLS handshake), when recorded.
    connects: std::sync::Mutex<Vec<Duration>>,
}

/// The agent's default `connect_timeout`: for the TCP connect, plus 30 s to be accepted
/// (connecting and opening the stream, under one deadline).
const AGENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the agent waits to connect and open its stream in all.
const AGENT_ATTEMPT: Duration = Duration::from_secs(35);

/// A boxed [`caretaker_agent::stream::backoff`], so that one walked through an outage and
/// a fresh one have one type.
type Delays = Box<dyn Iterator<Item = Duration> + Send>;

/// A connection to the aggregator as an agent opens it (its connect timeout and HTTP/2
/// keepalive).
async fn channel(
    addr: SocketAddr,
    source: std::net::IpAddr,
    tls: Option<&(PathBuf, PathBuf, PathBuf)>,
    deadline: tokio::time::Instant,
) -> anyhow::Result<Channel> {
    let mut ep = if tls.is_some() {
        Endpoint::from_shared(format!("https://localhost:{}", addr.port()))?
    } else {
        Endpoint::from_shared(format!("http://{addr}"))?
    }
    .local_address(Some(source))
    .connect_timeout(AGENT_CONNECT_TIMEOUT)
    .tcp_keepalive(Some(Duration::from_secs(30)))
    .http2_keep_alive_interval(Duration::from_secs(20))
    .keep_alive_timeout(Duration::from_secs(10))
    .keep_alive_while_idle(true);
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
    // As the agent: waiting to be accepted at the aggregator's cap is bounded too.
    Ok(tokio::time::timeout_at(deadline, ep.connect()).await??)
}

/// One simulated agent, delivering as caretaker-agent does: it connects only when it has
/// reports, sends everything unacked, drops what is acked, reconnects at once when the
/// aggregator ends the stream (making way) and after a backoff when a connect fails, and
/// hangs up `idle` after its last ack.
struct SimAgent {
    node: String,
    addr: SocketAddr,
    /// Its own source address, as a node has (127.0.x.y on loopback).
    source: std::net::IpAddr,
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    template: Arc<pb::NodeReport>,
    epoch: u64,
    idle: Duration,
    tally: Arc<Tally>,
    record: bool,
    /// Where it is (for a stalled run): see [`PHASES`].
    phase: Arc<std::sync::atomic::AtomicU8>,
}

/// What [`SimAgent::phase`] numbers.
const PHASES: [&str; 5] = ["connecting", "opening", "reading acks", "waiting", "done"];

impl SimAgent {
    fn report(&self, seq: u64) -> pb::AgentMessage {
        let mut r = (*self.template).clone();
        r.node_name.clone_from(&self.node);
        r.epoch = self.epoch;
        r.seq = seq;
        r.collected_at = Some(prost_types::Timestamp::from(std::time::SystemTime::now()));
        pb::AgentMessage {
            msg: Some(agent_message::Msg::Report(r)),
        }
    }

    /// Delivers `unacked` (seq, created) until every report is acked, backing off by
    /// `delays` (the agent's own backoff, where this agent stands in it), reset by an ack.
    async fn deliver(
        &self,
        unacked: &mut std::collections::VecDeque<(u64, Instant)>,
        mut delays: Delays,
    ) {
        let phase = |p: u8| self.phase.store(p, Ordering::Relaxed);
        while !unacked.is_empty() {
            phase(0);
            let connecting = Instant::now();
            let deadline = tokio::time::Instant::now() + AGENT_ATTEMPT;
            let ch = match channel(self.addr, self.source, self.tls.as_ref(), deadline).await {
                Ok(ch) => ch,
                Err(_) => {
                    self.tally.errors.fetch_add(1, Ordering::Relaxed);
                    phase(3);
                    tokio::time::sleep(caretaker_agent::stream::next_delay(&mut delays)).await;
                    continue;
                }
            };
            self.tally.connections.fetch_add(1, Ordering::Relaxed);
            phase(1);
            let (tx, rx) = mpsc::channel(unacked.len() + 1);
            for (seq, _) in unacked.iter() {
                let _ = tx.try_send(self.report(*seq));
            }
            // As the agent: connecting and opening the stream under one deadline (in
            // plaintext, the wait to be accepted is in opening the stream).
            let opened = tokio::time::timeout_at(
                deadline,
                ReportIngestClient::new(ch.clone()).stream(ReceiverStream::new(rx)),
            )
            .await;
            let mut acks = match opened {
                Ok(Ok(r)) => {
                    if self.record {
                        let took = connecting.elapsed();
                        self.tally.connects.lock().expect("lock").push(took);
                    }
                    r.into_inner()
                }
                Ok(Err(_)) | Err(_) => {
                    self.tally.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(caretaker_agent::stream::next_delay(&mut delays)).await;
                    continue;
                }
            };
            let (mut pushback, mut acked) = (Duration::ZERO, false);
            phase(2);
            while !unacked.is_empty() {
                match acks.message().await {
                    Ok(Some(pb::AggregatorMessage {
                        msg: Some(aggregator_message::Msg::Ack(a)),
                    })) => {
                        acked = true;
                        delays = Box::new(caretaker_agent::stream::backoff());
                        while unacked.front().is_some_and(|(seq, _)| *seq <= a.seq) {
                            let (_, created) = unacked.pop_front().expect("front");
                            self.tally.acked.fetch_add(1, Ordering::Relaxed);
                            if self.record {
                                let l = created.elapsed();
                                self.tally.latencies.lock().expect("lock").push(l);
                            }
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        // Made way: wait as long as the aggregator asks.
                        self.tally.made_way.fetch_add(1, Ordering::Relaxed);
                        pushback = caretaker_agent::stream::retry_pushback(&mut acks)
                            .await
                            .unwrap_or_default();
                        if !acked {
                            // As the agent: nothing acked, at least the backoff.
                            pushback =
                                pushback.max(caretaker_agent::stream::next_delay(&mut delays));
                        }
                        break;
                    }
                    Err(_) => {
                        self.tally.errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(caretaker_agent::stream::next_delay(&mut delays)).await;
                        break;
                    }
                }
            }
            phase(3);
            if unacked.is_empty() {
                // The agent's idle_timeout: the connection stays a little after the last ack.
                tokio::time::sleep(self.idle).await;
            }
            drop((tx, acks, ch));
            tokio::time::sleep(pushback).await;
        }
        phase(4);
    }

    /// A report every `interval` (from `offset`) until `stop`.
    async fn report_every(&self, offset: Duration, interval: Duration, stop: CancellationToken) {
        tokio::time::sleep(offset).await;
        let mut unacked = std::collections::VecDeque::new();
        let mut seq = 0;
        let mut next = Instant::now();
        while !stop.is_cancelled() {
            seq += 1;
            unacked.push_back((seq, Instant::now()));
            // Every earlier report was acked: the backoff starts afresh.
            self.deliver(&mut unacked, Box::new(caretaker_agent::stream::backoff()))
                .await;
            next += interval;
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep_until(next.into()) => {}
            }
        }
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

    let idle = Duration::from_millis(arg("--idle-ms", 1000));
    let agent = |i: usize, tally: &Arc<Tally>, record: bool| SimAgent {
        node: format!("node-{i}"),
        addr: agg.addr,
        source: std::net::Ipv4Addr::new(
            127,
            u8::try_from(i / 62_500).unwrap_or(255),
            u8::try_from(i / 250 % 250).unwrap_or(0),
            u8::try_from(i % 250 + 1).unwrap_or(1),
        )
        .into(),
        tls: certs[i].clone(),
        template: Arc::clone(&template),
        epoch,
        idle,
        tally: Arc::clone(tally),
        record,
        phase: Arc::default(),
    };

    // 1. Steady state: every agent reports every interval, its start spread over the first.
    let (cpu0, _, _) = agg.cost();
    let steady = Arc::new(Tally::default());
    let stop_steady = CancellationToken::new();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..agents {
        let a = agent(i, &steady, true);
        let offset = interval.mul_f64(i as f64 / agents as f64);
        let stop = stop_steady.clone();
        set.spawn(async move { a.report_every(offset, interval, stop).await });
    }
    tokio::time::sleep(Duration::from_secs(steady_secs)).await;
    stop_steady.cancel();
    while set.join_next().await.is_some() {}
    let (cpu1, rss, _) = agg.cost();
    let steady_acked = steady.acked.load(Ordering::Relaxed);
    let lat = std::mem::take(&mut *steady.latencies.lock().expect("lock"));
    println!(
        "steady: acked {steady_acked} over {} connections (errors {}), ack latency {}, aggregator CPU {:.0} µs/report, RSS {:.1} MiB, peak so far {:.1} MiB",
        steady.connections.load(Ordering::Relaxed),
        steady.errors.load(Ordering::Relaxed),
        summary(lat),
        (cpu1 - cpu0) * 1e6 / steady_acked.max(1) as f64,
        rss as f64 / (1 << 20) as f64,
        agg.peak_rss.load(Ordering::Relaxed) as f64 / (1 << 20) as f64
    );

    // 2. Storm: `fresh` other agents keep reporting at the interval while every agent comes
    // back with a backlog, as after an outage of the aggregator as long as the backlog: each
    // at its next attempt by its backoff (or all at once with --at-once).
    let at_once = std::env::args().any(|a| a == "--at-once");
    let outage = interval * u32::try_from(backlog).unwrap_or(u32::MAX);
    // Each agent's next attempt after the outage and its backoff from there (at the
    // ceiling: a failed first attempt waits 30-60 s more, as the agent's).
    let arrivals: Vec<(Duration, Delays)> = (0..agents)
        .map(|_| {
            let (next, delays) = caretaker_agent::stream::backoff_after(outage);
            let next = if at_once { Duration::ZERO } else { next };
            (next, Box::new(delays) as Delays)
        })
        .collect();
    if at_once {
        println!("storm: every agent comes back at once");
    } else {
        println!(
            "storm: agents come back over {:.1?} (their backoff after an outage of {outage:?})",
            arrivals.iter().map(|(a, _)| *a).max().unwrap_or_default()
        );
    }
    let fresh_tally = Arc::new(Tally::default());
    let storm_tally = Arc::new(Tally::default());
    let stop_fresh = CancellationToken::new();
    let mut fresh_set = tokio::task::JoinSet::new();
    for k in 0..fresh {
        let a = agent(agents + k, &fresh_tally, true);
        let offset = interval.mul_f64(k as f64 / fresh.max(1) as f64);
        let stop = stop_fresh.clone();
        fresh_set.spawn(async move { a.report_every(offset, interval, stop).await });
    }
    let (cpu0, _, _) = agg.cost();
    let storm_start = Instant::now();
    let first_seq = steady_secs / interval.as_secs().max(1) + 2;
    let mut storm_set = tokio::task::JoinSet::new();
    let mut phases = Vec::new();
    for (i, (arrival, delays)) in arrivals.into_iter().enumerate() {
        let a = agent(i, &storm_tally, false);
        phases.push(Arc::clone(&a.phase));
        storm_set.spawn(async move {
            let created = Instant::now();
            tokio::time::sleep(arrival).await;
            let mut unacked: std::collections::VecDeque<(u64, Instant)> = (first_seq
                ..first_seq + backlog)
                .map(|seq| (seq, created))
                .collect();
            a.deliver(&mut unacked, delays).await;
        });
    }
    let total = agents as u64 * backlog;
    let mut last_print = Instant::now();
    let mut last_acked = 0;
    while storm_tally.acked.load(Ordering::Relaxed) < total {
        if storm_start.elapsed() > Duration::from_secs(900) {
            println!("storm: gave up after 900 s");
            break;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            last_print = Instant::now();
            println!(
                "  {:.0?}: acked {} of {total}, connections {}, made way {}, errors {}, RSS peak {:.1} MiB",
                storm_start.elapsed(),
                storm_tally.acked.load(Ordering::Relaxed),
                storm_tally.connections.load(Ordering::Relaxed),
                storm_tally.made_way.load(Ordering::Relaxed),
                storm_tally.errors.load(Ordering::Relaxed),
                agg.peak_rss.load(Ordering::Relaxed) as f64 / (1 << 20) as f64
            );
            let acked = storm_tally.acked.load(Ordering::Relaxed);
            if acked == last_acked {
                let mut n = [0; PHASES.len()];
                for p in &phases {
                    n[usize::from(p.load(Ordering::Relaxed)).min(PHASES.len() - 1)] += 1;
                }
                println!(
                    "  no progress: agents by phase {:?}",
                    PHASES.iter().zip(n).collect::<Vec<_>>()
                );
            }
            last_acked = acked;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain = storm_start.elapsed();
    stop_fresh.cancel();
    while fresh_set.join_next().await.is_some() {}
    storm_set.abort_all();
    let (cpu1, _, hwm) = agg.cost();
    let acked = storm_tally.acked.load(Ordering::Relaxed);
    let fresh_lat = std::mem::take(&mut *fresh_tally.latencies.lock().expect("lock"));
    let fresh_connects = std::mem::take(&mut *fresh_tally.connects.lock().expect("lock"));
    println!(
        "storm: {acked} of {total} backlog reports acked in {drain:.1?} ({:.0} reports/s) over {} connections ({} made way, {} errors); fresh ack latency {} (of it connecting {}); aggregator CPU {:.0} µs/report",
        acked as f64 / drain.as_secs_f64(),
        storm_tally.connections.load(Ordering::Relaxed),
        storm_tally.made_way.load(Ordering::Relaxed),
        storm_tally.errors.load(Ordering::Relaxed),
        summary(fresh_lat),
        summary(fresh_connects),
        (cpu1 - cpu0) * 1e6 / acked.max(1) as f64,
    );
    println!(
        "aggregator peak RSS {:.1} MiB (sampled), VmHWM {:.1} MiB",
        agg.peak_rss.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
        hwm as f64 / (1 << 20) as f64
    );
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
