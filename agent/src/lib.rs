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
//! - [`logs`]: logrotate-compatible rotation, compression and retention sweeps.
//! - [`images`]: image pruning through Docker or containerd (CRI), `prune-images`.
//! - [`cleanup`]: `cleanup --emergency`, freeing disk in a safe order.
//!
//! `main.rs` only parses the command line and wires these together; start reading at
//! [`collector::Collector::collect`].

pub mod cleanup;
pub mod collector;
pub mod config;
pub mod images;
pub mod logs;
pub mod paths;
pub mod stats;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

use crate::collector::{BufferStats, Collector, CollectorSettings};
use crate::config::{AgentConfig, AggregatorConfig};
use crate::paths::HostPaths;

/// Builds the collector settings from a config and resolved host paths.
///
/// # Errors
/// When no valid node name can be found.
pub fn collector_settings(cfg: &AgentConfig, paths: HostPaths) -> Result<CollectorSettings, String> {
    Ok(CollectorSettings {
        node_name: config::node_name(cfg.node_name.as_deref())?,
        report_interval: cfg.report_interval,
        paths,
        filter: cfg.filesystems.filter(),
        statvfs_timeout: cfg.filesystems.statvfs_timeout,
    })
}

/// The daemon's tasks beside the report stream; the default runs none of them.
#[derive(Debug, Default)]
pub struct DaemonOptions {
    /// The log task (`logs:`): rotation every `check_interval`, retention sweeps, and the
    /// report's `logs` summary.
    pub logs: Option<logs::daemon::LogsTask>,
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
    let mut tasks = JoinSet::new();
    let mut collector = Collector::new(settings, Arc::clone(&stats));
    if let Some(task) = options.logs {
        // The log task publishes its latest summary; reports read it.
        let (logs_tx, logs_rx) = watch::channel(None);
        tasks.spawn(logs::daemon::run(task, logs_tx, shutdown.clone()).instrument(info_span!("logs")));
        collector = collector.with_logs(logs_rx);
    }
    let summary = stream::run(collector, aggregator, interval, stats, shutdown).instrument(info_span!("stream")).await;
    // The stream returns once `shutdown` is cancelled; the other tasks stop on the same
    // token. Whatever has not stopped within a second is aborted when the set drops.
    let _ = tokio::time::timeout(Duration::from_secs(1), async { while tasks.join_next().await.is_some() {} }).await;
    summary
}
