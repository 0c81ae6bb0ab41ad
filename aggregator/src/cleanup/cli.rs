//! `caretaker-aggregator cleanup`: propose (dry run) or apply cleanup on a live cluster, or
//! propose on a dump.

use std::io::Write;
use std::path::PathBuf;

use caretaker_core::output::Output;
use caretaker_core::render::{Style, Tty};
use jiff::Timestamp;
use serde::Serialize;

use super::apply::{AuditLog, Outcome, Recheck, apply};
use super::{CleanupKind, Proposal, propose_with_notes, render};
use crate::checks::cli::{CliError, live_client, load_config, load_state};
use crate::cli::select::{KubeArgs, SelectArgs, Selection};
use crate::cluster::labels::LabelIndex;
use caretaker_core::window::{Decision, MaintenanceWindow};

/// The formats of `cleanup` (no page or JUnit: proposals are not a report or tests).
pub const OUTPUTS: &[Output] = &[
    Output::Table,
    Output::Wide,
    Output::Json,
    Output::Yaml,
    Output::Markdown,
];

/// Arguments of `caretaker-aggregator cleanup`.
#[derive(Debug, Clone, clap::Args)]
pub struct CleanupArgs {
    /// Propose from `kubectl get … -o json|yaml` files or directories (dry run only).
    #[arg(long = "from-dump", value_name = "PATH", num_args = 1..)]
    pub from_dump: Vec<PathBuf>,
    /// Only these kinds (Job, ReplicaSet, Pod, ConfigMap, Secret, VolumeSnapshot,
    /// PersistentVolumeClaim; kubectl short names work). Repeatable. Default: all.
    #[arg(long = "kind", value_name = "K", num_args = 1..)]
    pub kind: Vec<CleanupKind>,
    /// Delete the `delete` proposals (live cluster only). Without it nothing is changed.
    /// Only inside the maintenance window (`schedule.maintenance_window` of `--config`,
    /// default Sunday 03:00–05:00 Asia/Tokyo) unless `--force`; outside it the command
    /// deletes nothing and exits 75.
    #[arg(long)]
    pub apply: bool,
    /// With `--apply`: apply now, even outside the maintenance window.
    #[arg(long, requires = "apply")]
    pub force: bool,
    /// Output format: table, wide (adds uid and propagation), json, yaml (the same
    /// document as json) or markdown.
    #[arg(short = 'o', long, value_parser = Output::only(OUTPUTS), default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Judge ages as of this time (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<Timestamp>,
    /// YAML file with `checks:` and `cleanup:` sections.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Audit log for `--apply` (JSON lines). Default: `cleanup.audit_log` of the config.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
}

#[derive(Serialize)]
struct JsonOut<'a> {
    now: Timestamp,
    dry_run: bool,
    proposals: &'a [Proposal],
    kept: &'a [super::Kept],
    notes: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<Vec<Applied<'a>>>,
}

#[derive(Serialize)]
struct Applied<'a> {
    object: &'a crate::checks::ObjectRef,
    outcome: Outcome,
}

/// `cleanup`'s flags checked and its config loaded (with `--kind` applied): what [`run`]
/// works from.
#[derive(Debug)]
pub struct Cleanup {
    args: CleanupArgs,
    config: crate::checks::cli::FileConfig,
    selection: Selection,
}

impl Cleanup {
    /// Checks the flag combinations ([`validate`]), then loads `--config`.
    ///
    /// # Errors
    /// [`CliError::Usage`] or [`CliError::Config`].
    pub fn resolve(args: CleanupArgs) -> Result<Self, CliError> {
        validate(&args)?;
        let mut config = load_config(args.config.as_deref())?;
        if !args.kind.is_empty() {
            config.cleanup.kinds = args.kind.clone();
        }
        let selection = Selection::resolve(&args.select, &mut config.checks.namespaces);
        Ok(Self {
            args,
            config,
            selection,
        })
    }
}

/// Checks flag combinations before anything is read.
///
/// # Errors
/// [`CliError::Usage`] for `--apply` with `--from-dump`.
pub fn validate(args: &CleanupArgs) -> Result<(), CliError> {
    if args.apply && !args.from_dump.is_empty() {
        return Err(CliError::Usage(
            "--apply deletes objects through the API server and cannot be used with --from-dump (a dump is only a copy); \
             drop --apply for a dry run, or run against the live cluster"
                .into(),
        ));
    }
    Ok(())
}

/// Runs `cleanup`, writing its output to `out`.
///
/// # Errors
/// See [`CliError`].
pub async fn run(cleanup: Cleanup, out: &mut dyn Write) -> Result<(), CliError> {
    let Cleanup {
        args,
        config,
        selection,
    } = cleanup;
    if selection.needs_labels() {
        crate::cluster::pod::keep_labels();
    }
    let now = args.now.unwrap_or_else(Timestamp::now);
    if args.apply {
        // Before the cluster is read: outside the window nothing is even looked at.
        let window = MaintenanceWindow::new(
            &config.schedule.maintenance_window,
            &config.schedule.time_zone,
        );
        if let Decision::Wait { reason, .. } = window.allowed(now, args.force, false) {
            return Err(CliError::OutsideWindow(reason));
        }
    }
    let state = load_state(&args.from_dump, &args.kube, &config.checks).await?;
    // The rules see every object read (a selector must not make a referenced object look
    // unused); only what is shown, and so applied, is selected.
    let mut p = propose_with_notes(&state, &config.cleanup, now);
    let labels = LabelIndex::new(&state, selection.needs_labels());
    p.proposals
        .retain(|x| selection.shows(&x.object, labels.get(&x.object)));
    p.kept
        .retain(|k| selection.shows(&k.object, labels.get(&k.object)));
    let applied = if args.apply {
        let path = args
            .audit_log
            .clone()
            .unwrap_or_else(|| config.cleanup.audit_log.clone());
        let mut audit = AuditLog::open(&path)?;
        let client = live_client(&args.kube, &config.checks).await?;
        let recheck = Recheck {
            checks: &config.checks,
            cleanup: &config.cleanup,
            now,
        };
        Some(apply(&client, &p.proposals, &mut audit, &recheck).await?)
    } else {
        None
    };
    let document = || JsonOut {
        now,
        dry_run: !args.apply,
        proposals: &p.proposals,
        kept: &p.kept,
        notes: &p.notes,
        applied: applied.as_ref().map(|a| {
            a.iter()
                .map(|(p, o)| Applied {
                    object: &p.object,
                    outcome: *o,
                })
                .collect()
        }),
    };
    let mode = if args.apply {
        "applied"
    } else {
        "dry run: nothing deleted; add --apply on a live cluster"
    };
    match args.output {
        Output::Yaml => {
            out.write_all(crate::checks::render::yaml(&document())?.as_bytes())?;
        }
        Output::Markdown => {
            writeln!(out, "## Cleanup proposals as of {now} ({mode})\n")?;
            writeln!(out, "{}", render::proposals(Style::Markdown, &p.proposals))?;
            render::kept_and_notes(out, Style::Markdown, &p)?;
            if let Some(a) = &applied {
                writeln!(out)?;
                for (p, o) in a {
                    writeln!(out, "- {}: {o:?}", p.object)?;
                }
            }
        }
        Output::Json => {
            let o = document();
            serde_json::to_writer_pretty(&mut *out, &o).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        // The other formats are refused by the command line (`OUTPUTS`).
        _ => {
            let tty = Tty::stdout();
            writeln!(out, "Cleanup proposals as of {now} ({mode})")?;
            out.write_all(
                render::proposals_kubectl(&p.proposals, args.output == Output::Wide, tty)
                    .as_bytes(),
            )?;
            render::kept_and_notes(out, Style::Terminal, &p)?;
            if let Some(a) = &applied {
                for (p, o) in a {
                    writeln!(out, "{}: {o:?}", p.object)?;
                }
            }
        }
    }
    Ok(())
}
