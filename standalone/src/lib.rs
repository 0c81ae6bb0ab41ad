//! `caretaker-standalone`: an aggregator and an agent for this machine in one process,
//! talking real gRPC over loopback, plus the cluster checks and cleanup proposals on a
//! `kubectl` dump (by default the example in `examples/cluster-dump`) or, with a kubeconfig
//! context, on a real cluster read through the aggregator's live source (list requests
//! only: nothing is changed, the proposals stay proposals). No config file.
//!
//! With `--once` it waits until at least two reports of this node are stored (the second
//! one carries network rates), fetches the merged report through the gRPC `Query` service
//! like any client ([`caretaker_aggregator::client`]), prints it and stops.
//!
//! # Layout
//! - [`run`]: starts the aggregator's servers ([`caretaker_aggregator::api::server`]) on
//!   loopback and the agent's daemon ([`caretaker_agent::run`]) reporting to them.
//! - [`kube_client`]: the client for `--kubeconfig`/`--context`, checked before anything
//!   starts.
//! - `main.rs`: the command line (`--once`, `--output`, `--timeout`, `--path.*`,
//!   `--from-dump`, `--kubeconfig`, `--context`).
//!
//! Nothing is decided here: log rotation in the agent's `logs::schedule`, images in use in
//! its `images::plan`, checks in the aggregator's `checks`; a report goes agent `stream` →
//! aggregator `api::ingest` → `state` → `store`, exactly as in a cluster, only over loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use caretaker_agent::config::{AgentConfig, AggregatorConfig as AgentSide};
use caretaker_agent::paths::HostPaths;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use caretaker_aggregator::cli::kubeconfig::KubeconfigError;
use caretaker_aggregator::report::ClusterReport;
use caretaker_aggregator::state::State;
use caretaker_aggregator::store::Store;

/// Report interval of the embedded agent: short, so `--once` is done in about a second.
pub(crate) const STANDALONE_INTERVAL: Duration = Duration::from_millis(500);

/// Reports that must be stored before `--once` prints.
pub(crate) const REPORTS_BEFORE_PRINT: u64 = 2;

/// Errors of the standalone mode.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error("cannot bind loopback listeners")]
    Bind(#[source] std::io::Error),
    #[error("store")]
    Store(#[from] caretaker_aggregator::store::Error),
    #[error("agent")]
    Agent(#[source] caretaker_agent::config::Error),
    #[error("agent: interrupted")]
    Interrupted,
    #[error("no {REPORTS_BEFORE_PRINT} reports stored within {0:?}; see the log above")]
    Timeout(Duration),
    #[error("query")]
    Query(#[source] caretaker_aggregator::client::ClientError),
    #[error(transparent)]
    Serve(#[from] caretaker_aggregator::api::server::ServeError),
    /// `--kubeconfig`/`--context`: see [`KubeconfigError`].
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
}

/// Where the cluster part of the report comes from.
#[derive(Clone)]
pub enum ClusterInput {
    /// None: this machine's node report only.
    None,
    /// `kubectl get … -o json|yaml` files or directories.
    Dump(Vec<PathBuf>),
    /// A real cluster, listed read-only through the aggregator's live source.
    Live(kube::Client),
}

impl std::fmt::Debug for ClusterInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Dump(p) => f.debug_tuple("Dump").field(p).finish(),
            Self::Live(_) => f.write_str("Live"),
        }
    }
}

/// A client for the cluster of `context` (default: the current context) in `kubeconfig`
/// (default: `$KUBECONFIG`, else `~/.kube/config`, as kubectl), checked by asking the API
/// server its version (waiting at most `timeout`), so that a wrong name or an unreachable
/// server stops the run before anything starts. The same client as `caretaker-aggregator
/// check --context`.
///
/// # Errors
/// [`StandaloneError::Kubeconfig`].
pub async fn kube_client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    timeout: Duration,
) -> Result<kube::Client, StandaloneError> {
    Ok(caretaker_aggregator::cli::kubeconfig::client(kubeconfig, context, timeout).await?)
}

/// Addresses the standalone servers listen on.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

/// Runs aggregator + agent. With `once`, returns the merged report after
/// [`REPORTS_BEFORE_PRINT`] reports (or fails after `timeout`); otherwise serves until
/// `shutdown` and returns the last report. `on_ready` is called with the endpoints.
///
/// # Errors
/// See [`StandaloneError`].
pub async fn run(
    paths: HostPaths,
    cluster: ClusterInput,
    once: bool,
    timeout: Duration,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(Endpoints),
) -> Result<ClusterReport, StandaloneError> {
    let state = State::new(Store::in_memory()?, 3)?;
    let grpc = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(StandaloneError::Bind)?;
    let http = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(StandaloneError::Bind)?;
    let endpoints = Endpoints {
        grpc: grpc.local_addr().map_err(StandaloneError::Bind)?,
        http: http.local_addr().map_err(StandaloneError::Bind)?,
    };
    let server_stop = CancellationToken::new();
    let server = tokio::spawn(caretaker_aggregator::api::server::serve(
        Arc::clone(&state),
        grpc,
        http,
        server_stop.clone(),
    ));

    let agent_cfg = AgentConfig {
        report_interval: caretaker_core::config::BoundedDuration::of(STANDALONE_INTERVAL),
        ..AgentConfig::default()
    };
    let settings =
        caretaker_agent::collector_settings(&agent_cfg, paths).map_err(StandaloneError::Agent)?;
    let node = settings.node_name.clone();
    let agent_stop = CancellationToken::new();
    let agent = tokio::spawn(caretaker_agent::run(
        settings,
        AgentSide::plaintext(format!("http://{}", endpoints.grpc)),
        agent_stop.clone(),
    ));
    on_ready(endpoints);
    info!(node = %node, grpc = %endpoints.grpc, http = %endpoints.http, "Standalone aggregator and agent started.");

    let outcome = if once {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let stored = state
                .node(&node, jiff::Timestamp::now())
                .map_or(0, |n| n.reports_stored_total);
            if stored >= REPORTS_BEFORE_PRINT {
                cluster_round(&state, cluster.clone()).await;
                break query(endpoints.grpc).await;
            }
            if tokio::time::Instant::now() >= deadline {
                break Err(StandaloneError::Timeout(timeout));
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                () = shutdown.cancelled() => break Err(StandaloneError::Interrupted),
            }
        }
    } else {
        shutdown.cancelled().await;
        query(endpoints.grpc).await
    };

    agent_stop.cancel();
    let _ = agent.await;
    server_stop.cancel();
    if let Ok(Err(e)) = server.await {
        return Err(e.into());
    }
    outcome
}

/// The cluster checks and cleanup proposals on a `kubectl get -o json|yaml` dump or a live
/// cluster, merged into the report beside the node's own.
async fn cluster_round(state: &State, cluster: ClusterInput) {
    use caretaker_aggregator::round::{ClusterConfig, RoundConfig, Rounds, Source};
    let config = |source, dump_paths| RoundConfig {
        cluster: ClusterConfig {
            source,
            dump_paths,
            ..ClusterConfig::default()
        },
        ..RoundConfig::default()
    };
    let mut rounds = match cluster {
        ClusterInput::None => return,
        ClusterInput::Dump(paths) => Rounds::new(config(Source::Dump, paths)),
        ClusterInput::Live(client) => Rounds::with_client(config(Source::Live, Vec::new()), client),
    };
    let round = rounds
        .run(&state.node_reports(), jiff::Timestamp::now())
        .await;
    state.set_round(round);
}

async fn query(grpc: SocketAddr) -> Result<ClusterReport, StandaloneError> {
    caretaker_aggregator::client::fetch_report(&format!("http://{grpc}"), None)
        .await
        .map_err(StandaloneError::Query)
}
