//! `caretaker-aggregator standalone`: an aggregator and an agent for this machine in one
//! process, talking real gRPC over loopback. No cluster, no config file.
//!
//! With `--once` it waits until at least two reports of this node are stored (the second
//! one carries network rates), fetches the merged report through the gRPC `Query` service
//! like any client, prints it and stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use caretaker_agent::config::{AgentConfig, AggregatorConfig as AgentSide};
use caretaker_agent::paths::HostPaths;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::report::ClusterReport;
use crate::state::State;
use crate::store::Store;

/// Report interval of the embedded agent: short, so `--once` is done in about a second.
pub const STANDALONE_INTERVAL: Duration = Duration::from_millis(500);

/// Reports that must be stored before `--once` prints.
pub const REPORTS_BEFORE_PRINT: u64 = 2;

/// Errors of the standalone mode.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error("cannot bind loopback listeners: {0}")]
    Bind(#[source] std::io::Error),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("agent: {0}")]
    Agent(String),
    #[error("no {REPORTS_BEFORE_PRINT} reports stored within {0:?}; see the log above")]
    Timeout(Duration),
    #[error("query: {0}")]
    Query(String),
    #[error(transparent)]
    Serve(#[from] crate::server::ServeError),
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
    let server = tokio::spawn(crate::server::serve(
        Arc::clone(&state),
        grpc,
        http,
        server_stop.clone(),
    ));

    let agent_cfg = AgentConfig {
        report_interval: STANDALONE_INTERVAL,
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
                break query(endpoints.grpc).await;
            }
            if tokio::time::Instant::now() >= deadline {
                break Err(StandaloneError::Timeout(timeout));
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                () = shutdown.cancelled() => break Err(StandaloneError::Agent("interrupted".into())),
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

/// How a query client reaches an aggregator.
#[derive(Debug, Clone, Default)]
pub struct QueryClientOptions {
    /// CA of the aggregator's server certificate; needed for `https://`.
    pub ca_file: Option<std::path::PathBuf>,
    /// Bearer token (never logged).
    pub token: Option<String>,
}

/// Fetches the merged report from a running aggregator's gRPC `Query` service, over
/// plaintext without a token.
///
/// # Errors
/// Connection, RPC or an invalid answer.
/// `at`: the live report when `None`, else the one recorded at or before that time.
pub async fn fetch_report(
    url: &str,
    at: Option<jiff::Timestamp>,
) -> Result<ClusterReport, StandaloneError> {
    fetch_report_with(url, at, &QueryClientOptions::default()).await
}

/// [`fetch_report`] with TLS and a token.
///
/// # Errors
/// Connection, RPC or an invalid answer.
pub async fn fetch_report_with(
    url: &str,
    at: Option<jiff::Timestamp>,
    opts: &QueryClientOptions,
) -> Result<ClusterReport, StandaloneError> {
    use caretaker_proto::pb::{GetClusterReportRequest, query_client::QueryClient};
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| StandaloneError::Query(format!("invalid server URL {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    if let Some(ca) = &opts.ca_file {
        let pem = std::fs::read(ca).map_err(|e| {
            StandaloneError::Query(format!("cannot read CA file {}: {e}", ca.display()))
        })?;
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(pem));
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| StandaloneError::Query(format!("TLS config: {e}")))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| StandaloneError::Query(format!("connect to {url}: {}", error_chain(&e))))?;
    let mut request = tonic::Request::new(GetClusterReportRequest {
        at: at.map(|t| prost_types::Timestamp {
            seconds: t.as_second(),
            nanos: t.subsec_nanosecond(),
        }),
    });
    if let Some(t) = &opts.token {
        let value = format!("Bearer {t}").parse().map_err(|_| {
            StandaloneError::Query("the token has characters a header cannot carry".into())
        })?;
        request.metadata_mut().insert("authorization", value);
    }
    let reply = QueryClient::new(channel)
        .get_cluster_report(request)
        .await
        .map_err(|s| {
            StandaloneError::Query(format!(
                "GetClusterReport at {url}: {} ({:?})",
                s.message(),
                s.code()
            ))
        })?;
    ClusterReport::from_wire(&reply.into_inner())
        .map_err(|e| StandaloneError::Query(format!("answer from {url}: {e}")))
}

async fn query(grpc: SocketAddr) -> Result<ClusterReport, StandaloneError> {
    fetch_report(&format!("http://{grpc}"), None).await
}

/// An error with its causes, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
