//! `caretaker-agent prune-images [--runtime auto|docker|containerd] [--min-age DURATION]
//! [--apply] [--output table|json]`: a dry run unless `--apply` is given.
//!
//! Each runtime is planned with the age rule and, when its image filesystem is at or above
//! `high_threshold_percent`, the threshold rule (see [`super::plan`]); every image gets a
//! line with its decision and the reason.

use caretaker_core::error::Chain;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use caretaker_core::render::bytes;
use comfy_table::{Table, presets};
use jiff::Timestamp;
use tracing::warn;

use super::execute::{Outcome, apply};
use super::plan::{Mode, Policy, Reason, plan};
use super::runtime::{Error, ImageRuntime};
use super::select::{RuntimeChoice, connect};
use crate::config::ImagesConfig;

pub use caretaker_core::output::Output;

/// The formats of `prune-images` and `emergency-cleanup`.
pub const OUTPUTS: &[Output] = &[Output::Table, Output::Json];

/// The command line of `prune-images`.
#[derive(Debug, Clone, clap::Args)]
pub struct PruneImagesArgs {
    /// Which runtime: every one whose socket answers (auto), or only docker or containerd.
    /// Default: the config's `images.runtime` (auto).
    #[arg(long, value_enum)]
    pub runtime: Option<RuntimeChoice>,
    /// Remove unused images created at least this long ago (e.g. 24h, 7d). Default: the
    /// config's `images.min_age` (168h).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub min_age: Option<Duration>,
    /// Remove the images. Without it nothing is removed (dry run).
    #[arg(long)]
    pub apply: bool,
    #[arg(long, value_parser = Output::only(OUTPUTS), default_value_t = Output::Table)]
    pub output: Output,
    /// The Docker engine's socket. Default: $DOCKER_HOST (unix://), else the config's
    /// `images.docker_socket` (/var/run/docker.sock).
    #[arg(long)]
    pub docker_socket: Option<std::path::PathBuf>,
    /// containerd's CRI socket. Default: $CONTAINER_RUNTIME_ENDPOINT (unix://, as crictl),
    /// else the config's `images.containerd_socket` (/run/containerd/containerd.sock).
    #[arg(long)]
    pub containerd_socket: Option<std::path::PathBuf>,
}

/// Plans and (with `apply`) prunes one runtime.
pub async fn prune<R: ImageRuntime>(
    rt: &R,
    policy: &Policy,
    apply_changes: bool,
    last_used: &HashMap<String, Timestamp>,
) -> Result<Outcome, Error> {
    let images = rt.list_images().await?;
    let users = rt.list_users().await?;
    let disk = match rt.image_fs().await {
        Ok(fs) => Some(fs.disk),
        Err(e) => {
            warn!(runtime = rt.name(), error = %Chain(&e), "Cannot measure the image filesystem; only the age rule applies.");
            None
        }
    };
    let p = plan(
        &images,
        &users,
        policy,
        Mode::Prune { disk },
        Timestamp::now(),
        last_used,
    );
    Ok(apply(rt, p, !apply_changes, &mut |_| {}).await)
}

/// Runs the command: connects, plans and prunes each runtime in turn.
///
/// # Errors
/// No runtime answers, or listing images or containers fails.
pub async fn run(
    cfg: &ImagesConfig,
    policy: &Policy,
    rootfs: &Path,
    args: &PruneImagesArgs,
) -> Result<Vec<Outcome>, Error> {
    let choice = args.runtime.unwrap_or(cfg.runtime);
    let runtimes = connect(
        choice,
        &cfg.docker_socket,
        &cfg.containerd_socket,
        rootfs,
        cfg.request_timeout.get(),
    )
    .await?;
    let mut out = Vec::with_capacity(runtimes.len());
    for rt in &runtimes {
        out.push(prune(rt, policy, args.apply, &HashMap::new()).await?);
    }
    Ok(out)
}

/// True when any removal failed (the command then exits 1).
pub fn any_failed(outcomes: &[Outcome]) -> bool {
    outcomes
        .iter()
        .flat_map(|o| &o.decisions)
        .any(|d| matches!(d.reason, Reason::Failed(_)))
}

/// One summary line and one table per runtime.
pub fn render_table(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    for o in outcomes {
        let verb = if o.dry_run {
            "would be removed (dry run; --apply removes them)"
        } else {
            "removed"
        };
        s.push_str(&format!(
            "{}: {} of {} images {verb}, {} reclaimable by estimate",
            o.runtime,
            o.removed,
            o.decisions.len(),
            bytes(o.estimated_bytes)
        ));
        if let Some(r) = o.reclaimed_bytes {
            s.push_str(&format!(", {} measured", bytes(r)));
        }
        if let Some(d) = o.disk_before {
            s.push_str(&format!("; image filesystem {:.1}% used", d.used_percent()));
        }
        s.push('\n');
        let mut t = Table::new();
        t.load_preset(presets::UTF8_FULL_CONDENSED);
        t.set_header(vec![
            "image",
            "id",
            "created",
            "size",
            "reclaimable",
            "decision",
            "detail",
        ]);
        for d in &o.decisions {
            t.add_row(vec![
                d.image.clone(),
                super::runtime::short_id(&d.id).to_string(),
                d.created
                    .map_or_else(|| "-".into(), |c| c.strftime("%Y-%m-%d %H:%M").to_string()),
                bytes(d.size_bytes),
                bytes(d.reclaimable_bytes),
                // A dry run removes nothing: it says what it would do.
                if o.dry_run && d.reason == super::plan::Reason::Removed {
                    "would remove".to_string()
                } else {
                    d.reason.to_string()
                },
                d.detail.clone(),
            ]);
        }
        s.push_str(&t.to_string());
        s.push('\n');
    }
    s
}
