//! `caretaker-agent cleanup --emergency [--target-free-percent N] [--apply]`: a dry run
//! unless `--apply` is given.

use caretaker_core::error::Chain;
use std::path::Path;

use super::emergency::{Options, Progress, StatvfsProbe, Summary, run as run_steps};
use super::logs::RotatedLogs;
use crate::config::AgentConfig;
use crate::images::runtime::ImageRuntime;
use crate::images::select::connect;
use crate::stats::filesystems::under_root;

/// Why the emergency cleanup could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config's image policy is invalid.
    #[error(transparent)]
    Policy(#[from] crate::config::Error),
    /// The filesystem cannot be measured.
    #[error(transparent)]
    Measure(#[from] std::io::Error),
}

/// The command line of `cleanup`.
#[derive(Debug, Clone, clap::Args)]
pub struct CleanupArgs {
    /// Free disk now, in a safe order, until the target is met (the only mode so far).
    #[arg(long, required = true)]
    pub emergency: bool,
    /// Stop once this percent of the filesystem is free. Default 20 (kubelet's image GC
    /// stops at 80 % used).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(1..=99))]
    pub target_free_percent: u8,
    /// Delete, compress and remove. Without it nothing changes (dry run).
    #[arg(long)]
    pub apply: bool,
    /// Output format of the summary.
    #[arg(long, value_parser = crate::images::cli::Output::only(crate::images::cli::OUTPUTS), default_value_t = crate::images::cli::Output::Table)]
    pub output: crate::images::cli::Output,
}

/// Runs the emergency cleanup with the config's log roots and image runtimes. The measured
/// filesystem is the first image runtime's image filesystem, else the first log root's.
///
/// # Errors
/// The filesystem cannot be measured, or the config's policy is invalid.
pub async fn run(cfg: &AgentConfig, rootfs: &Path, args: &CleanupArgs) -> Result<Summary, Error> {
    // min_age is ignored in an emergency; every other rule holds.
    let policy = cfg.images.policy(Some(std::time::Duration::ZERO))?;
    let roots = cfg
        .cleanup
        .log_roots
        .iter()
        .map(|r| under_root(rootfs, &r.to_string_lossy()))
        .collect();
    let logs = RotatedLogs::new(roots, cfg.cleanup.rotated_log_max_age.get());
    let runtimes = match connect(
        cfg.images.runtime,
        &cfg.images.docker_socket,
        &cfg.images.containerd_socket,
        rootfs,
        cfg.images.request_timeout.get(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %Chain(&e), "No image runtime answered; only the log steps run.");
            Vec::new()
        }
    };
    let mut measured = None;
    if let Some(rt) = runtimes.first()
        && let Ok(fs) = rt.image_fs().await
    {
        measured = Some(under_root(rootfs, &fs.mountpoint.to_string_lossy()));
    }
    let measured = measured
        .or_else(|| {
            cfg.cleanup
                .log_roots
                .first()
                .map(|r| under_root(rootfs, &r.to_string_lossy()))
        })
        .unwrap_or_else(|| rootfs.to_path_buf());
    let probe = StatvfsProbe(measured.clone());
    let opts = Options {
        target_free_percent: f64::from(args.target_free_percent),
        apply: args.apply,
        consumer_places: Options::default_places(rootfs),
    };
    let mut progress = Progress::stderr();
    run_steps(
        &logs,
        &runtimes,
        &policy,
        &probe,
        measured,
        &opts,
        &mut progress,
    )
    .await
    .map_err(Error::Measure)
}
