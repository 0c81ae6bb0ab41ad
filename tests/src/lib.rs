//! Helpers for the cross-program tests in `tests/tests/`: start an aggregator (in process,
//! on loopback port 0 or a given address), start agents with chosen node names, wait for
//! conditions, and find the real binaries.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use caretaker_agent::config::{AgentConfig, AggregatorConfig as AgentSide};
use caretaker_agent::paths::HostPaths;
use caretaker_agent::stream::StreamSummary;
use caretaker_aggregator::state::State;
use caretaker_aggregator::store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An aggregator running in this process.
pub struct RunningAggregator {
    pub state: Arc<State>,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    stop: CancellationToken,
    handle: JoinHandle<Result<(), caretaker_aggregator::server::ServeError>>,
}

impl RunningAggregator {
    /// Starts an aggregator storing in `data_dir`, gRPC on `grpc` (use port 0 for any).
    pub async fn start(data_dir: &Path, grpc: SocketAddr, stale_after_intervals: u32) -> anyhow::Result<Self> {
        let state = State::new(Store::open(data_dir)?, stale_after_intervals)?;
        let grpc_l = TcpListener::bind(grpc).await?;
        let http_l = TcpListener::bind("127.0.0.1:0").await?;
        let (grpc, http) = (grpc_l.local_addr()?, http_l.local_addr()?);
        let stop = CancellationToken::new();
        let handle = tokio::spawn(caretaker_aggregator::server::serve(Arc::clone(&state), grpc_l, http_l, stop.clone()));
        Ok(Self { state, grpc, http, stop, handle })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Stops the servers and waits for them (the store is closed when `state` drops).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle).await???;
        Ok(())
    }
}

/// An agent running in this process.
pub struct RunningAgent {
    stop: CancellationToken,
    handle: JoinHandle<StreamSummary>,
}

impl RunningAgent {
    /// Starts an agent named `node` reporting every `interval` to `url`, reading this
    /// machine through `paths`.
    pub fn start(node: &str, url: &str, interval: Duration, paths: HostPaths) -> anyhow::Result<Self> {
        let cfg = AgentConfig { node_name: Some(node.into()), report_interval: interval, ..AgentConfig::default() };
        let settings = caretaker_agent::collector_settings(&cfg, paths).map_err(anyhow::Error::msg)?;
        let mut side = AgentSide::plaintext(url);
        side.connect_timeout = Duration::from_secs(1);
        let stop = CancellationToken::new();
        let handle = tokio::spawn(caretaker_agent::run(settings, side, stop.clone()));
        Ok(Self { stop, handle })
    }

    /// Stops the agent (it flushes what it can) and returns what its stream did.
    pub async fn stop(self) -> anyhow::Result<StreamSummary> {
        self.stop.cancel();
        Ok(tokio::time::timeout(Duration::from_secs(10), self.handle).await??)
    }

    /// Kills the agent without a flush (the task is aborted).
    pub fn kill(self) {
        self.handle.abort();
    }
}

/// Polls `cond` every 20 ms until it holds; fails with `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A built binary of this workspace (`caretaker-agent`, `caretaker-aggregator`) of the
/// same profile as the running executable: beside it (a bench binary in `target/release/`)
/// or one directory up (a test in `target/debug/deps/`). `cargo test --workspace` builds
/// them because the agent and aggregator crates have integration tests.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("executable directory");
    let candidates = [dir.join(name), dir.parent().map(|d| d.join(name)).unwrap_or_default()];
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!("{name} is missing beside {}: run `cargo build --bins` (or the whole `cargo test --workspace`) first", exe.display())
    })
}
