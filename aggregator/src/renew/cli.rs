//! `caretaker-aggregator certificates renew NAMESPACE/NAME`: a dry run unless `--apply`;
//! with it, only inside the maintenance window unless `--force`, and every attempt is
//! appended to the cleanup audit log.

use std::io::Write;
use std::path::{Path, PathBuf};

use caretaker_core::config::EXIT_TEMPFAIL;
use caretaker_core::error::Chain;
use caretaker_core::window::{Decision, MaintenanceWindow};
use jiff::Timestamp;
use serde::Serialize;

use super::{RenewError, Renewal, Target, renew};
use crate::checks::cli::{CliError, FileConfig, load_config};
use crate::cleanup::ApplyError;
use crate::cleanup::apply::{AuditLog, AuditRecord, Outcome};

/// Output format of `certificates renew`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// The `certificates` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CertificatesCommand {
    /// Mark a cert-manager Certificate for re-issuance, as `cmctl renew` does: its
    /// `Issuing` condition is set through the status subresource. A dry run unless
    /// `--apply`; refused when the Certificate is already issuing.
    Renew(RenewArgs),
}

/// Arguments of `caretaker-aggregator certificates renew`.
#[derive(Debug, Clone, clap::Args)]
pub struct RenewArgs {
    /// The Certificate, as NAMESPACE/NAME.
    #[arg(value_name = "NAMESPACE/NAME")]
    pub target: Target,
    /// Set the condition. Without it nothing is changed ("would renew ..."). Only inside
    /// the maintenance window (`schedule.maintenance_window` of `--config`, default Sunday
    /// 03:00–05:00 Asia/Tokyo) unless `--force`; outside it the command changes nothing
    /// and exits 75.
    #[arg(long)]
    pub apply: bool,
    /// With `--apply`: renew now, even outside the maintenance window.
    #[arg(long, requires = "apply")]
    pub force: bool,
    /// YAML file with a `schedule:` section (the maintenance window) and `cleanup:`
    /// (its `audit_log`), as for `cleanup`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Audit log for `--apply` (JSON lines). Default: `cleanup.audit_log` of the config.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// kubeconfig file. Default: in-cluster config, else `$KUBECONFIG` or ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context. Default: the current context.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Judge the maintenance window as of this time (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<Timestamp>,
}

/// A failed `certificates renew`.
#[derive(Debug, thiserror::Error)]
pub enum RenewCliError {
    /// The config could not be read.
    #[error(transparent)]
    Cli(#[from] CliError),
    /// `--apply` outside the maintenance window without `--force`.
    #[error(
        "nothing renewed: {0}; add --force to renew now, or run without --apply to see what would be done"
    )]
    OutsideWindow(String),
    #[error("kubeconfig {}", path.as_deref().map_or_else(|| "(default)".to_string(), |p| p.display().to_string()))]
    Kubeconfig {
        path: Option<PathBuf>,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("cannot connect to Kubernetes")]
    Kube(#[source] kube::Error),
    #[error(transparent)]
    Renew(#[from] RenewError),
    #[error(transparent)]
    Audit(#[from] ApplyError),
    #[error("cannot write output")]
    Output(#[from] std::io::Error),
}

impl RenewCliError {
    /// The process exit code: 64 for a bad config, 75 (EX_TEMPFAIL: try again later) for
    /// `--apply` outside the maintenance window, 1 otherwise (not found, already issuing,
    /// the API server refused).
    pub fn exit_code(&self) -> i32 {
        match self {
            RenewCliError::Cli(e) => e.exit_code(),
            RenewCliError::OutsideWindow(_) => EXIT_TEMPFAIL,
            _ => 1,
        }
    }
}

/// A client for `context` in `kubeconfig`; with neither, kube's default (in-cluster
/// config, else the default kubeconfig).
///
/// # Errors
/// [`RenewCliError::Kubeconfig`] or [`RenewCliError::Kube`].
pub(crate) async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Client, RenewCliError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    if kubeconfig.is_none() && context.is_none() {
        return kube::Client::try_default()
            .await
            .map_err(RenewCliError::Kube);
    }
    let err = |source| RenewCliError::Kubeconfig {
        path: kubeconfig.map(Path::to_path_buf),
        source,
    };
    let file = match kubeconfig {
        Some(p) => Kubeconfig::read_from(p),
        None => Kubeconfig::read(),
    }
    .map_err(err)?;
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(file, &options)
        .await
        .map_err(err)?;
    kube::Client::try_from(config).map_err(RenewCliError::Kube)
}

#[derive(Serialize)]
struct JsonOut<'a> {
    now: Timestamp,
    dry_run: bool,
    maintenance_window: &'a str,
    renewal: &'a Renewal,
}

/// Runs `certificates renew`, writing its output to `out`.
///
/// # Errors
/// See [`RenewCliError`].
pub async fn run(args: RenewArgs, out: &mut dyn Write) -> Result<(), RenewCliError> {
    let config = load_config(args.config.as_deref())?;
    let now = args.now.unwrap_or_else(Timestamp::now);
    let (kubeconfig, context) = (args.kubeconfig.clone(), args.context.clone());
    execute(&args, &config, now, out, async || {
        client(kubeconfig.as_deref(), context.as_deref()).await
    })
    .await
}

/// [`run`] with the config loaded and the client made by `connect`, which is called only
/// when the window allows (a refused `--apply` reads nothing).
///
/// # Errors
/// See [`RenewCliError`].
pub async fn execute(
    args: &RenewArgs,
    config: &FileConfig,
    now: Timestamp,
    out: &mut dyn Write,
    connect: impl AsyncFnOnce() -> Result<kube::Client, RenewCliError>,
) -> Result<(), RenewCliError> {
    let window = MaintenanceWindow::new(
        &config.schedule.maintenance_window,
        &config.schedule.time_zone,
    );
    if args.apply
        && let Decision::Wait { reason, .. } = window.allowed(now, args.force, false)
    {
        return Err(RenewCliError::OutsideWindow(reason));
    }
    let mut audit = if args.apply {
        let path = args
            .audit_log
            .clone()
            .unwrap_or_else(|| config.cleanup.audit_log.clone());
        Some(AuditLog::open(&path)?)
    } else {
        None
    };
    let client = connect().await?;
    let result = renew(&client, &args.target, args.apply, now).await;
    if let Some(audit) = audit.as_mut() {
        let (outcome, message) = match &result {
            Ok(r) => (Outcome::Renewed, r.sentence()),
            Err(e) => (Outcome::Failed, Chain(e).to_string()),
        };
        audit.write(&AuditRecord {
            time: now,
            action: "renew".into(),
            code: super::PROPOSAL_CODE.into(),
            object: crate::checks::ObjectRef {
                kind: "Certificate".into(),
                namespace: Some(args.target.namespace.clone()),
                name: args.target.name.clone(),
                uid: result.as_ref().ok().and_then(|r| r.certificate.uid.clone()),
            },
            propagation: None,
            outcome,
            message,
        })?;
    }
    let renewal = result?;
    match args.output {
        Output::Json => {
            serde_json::to_writer_pretty(
                &mut *out,
                &JsonOut {
                    now,
                    dry_run: !args.apply,
                    maintenance_window: window.describe(),
                    renewal: &renewal,
                },
            )
            .map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        Output::Table => writeln!(out, "{}", renewal.sentence())?,
    }
    Ok(())
}
