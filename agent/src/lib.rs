//! caretaker-agent: the node daemon and its CLI.
//!
//! It runs on every node (a DaemonSet), measures the node and streams numbered reports
//! to caretaker-aggregator over one long-lived gRPC stream.
//!
//! # Layout
//! - [`config`]: the YAML config and its defaults.
//! - [`paths`]: `--path.procfs/sysfs/rootfs`, how the agent sees the host from a pod.
//! - [`stats`]: the readers: mountinfo, statvfs, `/proc/net/dev`, host figures, own cost.
//! - [`collector`]: one collection cycle into a `NodeReport`.
//! - [`stream`]: the report stream with its ack buffer, reconnects and flush.
//! - [`logcheck`]: the daily log check, pattern counts of the pods' CRI logs, `log-check`.
//! - [`logs`]: logrotate-compatible rotation, compression and retention sweeps.
//! - [`images`]: image pruning through Docker or containerd (CRI), `prune-images`.
//! - [`cleanup`]: `cleanup --emergency`, freeing disk in a safe order.
//! - [`http`]: the daemon's `/healthz`, `/readyz` and `/metrics`.
//!
//! `main.rs` only parses the command line and wires these together; start reading at
//! [`collector::Collector::collect`].
//!
//! # Where to look
//! - Where log rotation is decided: [`logs::schedule::decide`] (when a log is due,
//!   logrotate's rules as a pure function), carried out by [`logs::engine`] (the entry
//!   point the daemon and the CLI call).
//! - Where an image is judged in use: [`images::plan::plan`] (one decision with a reason
//!   per image; an image a container uses is never removed), fed by the runtime's users.
//! - Where a check is defined: in the aggregator, `aggregator/src/checks/mod.rs` (the
//!   registries `ALL` and `SIGNALS`, one file per check family).
//! - How a report reaches the store: [`collector`] builds it, [`stream`] sends it over the
//!   `ReportIngest.Stream` and keeps it until acked; in the aggregator
//!   `aggregator/src/api/ingest.rs` validates it and `aggregator/src/state.rs` writes it
//!   through `aggregator/src/store/mod.rs` before acking.
//! - The domain types and their wire conversions are in `caretaker_core::model`; the
//!   generated gRPC and CRI code in `caretaker_proto`.

pub mod cleanup;
pub mod collector;
pub mod config;
pub(crate) mod http;
pub mod images;
pub mod logcheck;
pub mod logs;
pub mod paths;
pub mod stats;
pub mod stream;

use caretaker_core::error::Chain;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use crate::collector::{BufferStats, Collector, CollectorSettings};
use crate::config::{AgentConfig, AggregatorConfig};
use crate::images::daemon::{RuntimeAccess, TaskSettings};
use crate::paths::HostPaths;

/// Builds the collector settings from a config and resolved host paths.
///
/// # Errors
/// When no valid node name can be found.
pub fn collector_settings(
    cfg: &AgentConfig,
    paths: HostPaths,
) -> config::Result<CollectorSettings> {
    Ok(CollectorSettings {
        node_name: config::node_name(cfg.node_name.as_deref())?,
        report_interval: cfg.report_interval.get(),
        paths,
        filter: cfg.filesystems.filter(),
        statvfs_timeout: cfg.filesystems.statvfs_timeout.get(),
        kubelet_root: cfg.volumes.kubelet_root(),
    })
}

/// The daemon's tasks beside the report stream; the default runs none of them.
#[derive(Debug, Default)]
pub struct DaemonOptions {
    /// The image task (`images:`): checks, prunes (a dry run unless `images.apply`), and
    /// the report's image summary.
    pub images: Option<(TaskSettings, RuntimeAccess)>,
    /// The bound `listen_http` listener: `/healthz`, `/readyz`, `/metrics`.
    pub http: Option<tokio::net::TcpListener>,
    /// The log task (`logs:`): rotation every `check_interval`, retention sweeps, and the
    /// report's `logs` summary.
    pub logs: Option<logs::daemon::LogsTask>,
    /// The log check (`log_check:`): pattern counts of the pods' logs every `interval`;
    /// its findings are logged and the node report carries its summary (`log_check`).
    pub log_check: Option<logcheck::daemon::LogCheckTask>,
}

/// Runs the agent daemon until `shutdown`: collect every interval, stream to the
/// aggregator, flush on the way out.
pub async fn run(
    settings: CollectorSettings,
    aggregator: AggregatorConfig,
    shutdown: CancellationToken,
) -> stream::StreamSummary {
    run_with(settings, aggregator, DaemonOptions::default(), shutdown).await
}

/// [`run`] with the daemon's other tasks, each in its own span, all stopped by `shutdown`.
pub async fn run_with(
    settings: CollectorSettings,
    aggregator: AggregatorConfig,
    options: DaemonOptions,
    shutdown: CancellationToken,
) -> stream::StreamSummary {
    let stats = Arc::new(BufferStats::default());
    let interval = settings.report_interval;
    // The image task publishes its latest summary; reports and /metrics read it.
    let (images_tx, images_rx) = watch::channel(None);
    let mut tasks = JoinSet::new();
    if let Some((task, access)) = options.images {
        let run = images::daemon::run_on_runtimes(task, access, images_tx, shutdown.clone());
        tasks.spawn(run.instrument(info_span!("images")));
    }
    // The log task publishes its latest summary; reports and /metrics read it.
    let (logs_tx, logs_rx) = watch::channel(None);
    let logs_on = options.logs.is_some();
    if let Some(task) = options.logs {
        tasks.spawn(
            logs::daemon::run(task, logs_tx, shutdown.clone()).instrument(info_span!("logs")),
        );
    }
    // The log check publishes its latest summary; reports carry it.
    let (log_check_tx, log_check_rx) = watch::channel(None);
    let log_check_on = options.log_check.is_some();
    if let Some(task) = options.log_check {
        let tx = log_check_tx;
        tasks.spawn(
            logcheck::daemon::run(task, tx, shutdown.clone()).instrument(info_span!("log_check")),
        );
    }
    if let Some(listener) = options.http {
        let telemetry = http::Telemetry {
            stats: Arc::clone(&stats),
            images: images_rx.clone(),
            logs: logs_rx.clone(),
        };
        let serve = http::serve(listener, telemetry, shutdown.clone());
        tasks.spawn(
            async move {
                if let Err(e) = serve.await {
                    warn!(error = %Chain(&e), "The HTTP endpoint stopped; probes and metrics are unavailable.");
                }
            }
            .instrument(info_span!("http")),
        );
    }
    let mut collector = Collector::new(settings, Arc::clone(&stats)).with_images(images_rx);
    if logs_on {
        collector = collector.with_logs(logs_rx);
    }
    if log_check_on {
        collector = collector.with_log_check(log_check_rx);
    }
    let summary = stream::run(collector, aggregator, interval, stats, shutdown)
        .instrument(info_span!("stream"))
        .await;
    // The stream returns once `shutdown` is cancelled; the other tasks stop on the same
    // token. Whatever has not stopped within a second is aborted when the set drops.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    summary
}
