//! `caretaker-aggregator check`: run every check on a live cluster or on a dump and print
//! the results as a table (kubectl's layout, `wide` with more columns), JSON, YAML,
//! Markdown, the HTML report page or JUnit XML.

use std::io::Write;
use std::path::{Path, PathBuf};

use caretaker_core::config::{ConfigError, EXIT_TEMPFAIL, EXIT_USAGE};
pub use caretaker_core::output::Output;
use caretaker_core::render::{Style, Tty};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{CheckResult, ChecksConfig, Finding, Severity, render, run_all, silence};
use crate::cleanup::{CleanupConfig, Proposal, Proposals, propose_with_notes};
use crate::cli::kubeconfig::KubeconfigError;
use crate::cli::select::{KubeArgs, SelectArgs, Selection};
use crate::cluster::labels::LabelIndex;
use crate::cluster::{self, ClusterState, LoadSummary};

/// The formats of `check`.
pub const OUTPUTS: &[Output] = &Output::ALL;

/// Arguments of `caretaker-aggregator check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Read the cluster from `kubectl get … -o json|yaml` files or directories instead of
    /// the API server.
    #[arg(long = "from-dump", value_name = "PATH", num_args = 1..)]
    pub from_dump: Vec<PathBuf>,
    /// Output format: table, wide (more columns), json, yaml (the same document as json),
    /// markdown, html (the aggregator's report page) or junit (one test suite per check).
    #[arg(short = 'o', long, value_parser = Output::only(OUTPUTS), default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Judge ages as of this time (RFC 3339, e.g. 2025-06-01T00:00:00Z) instead of now;
    /// makes runs on a dump reproducible.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<Timestamp>,
    /// YAML file with `checks:` and `cleanup:` sections (the same sections as in the
    /// aggregator's config). Default: the documented defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Exit 2 (after the output) when any check is at this severity or worse, for cron
    /// jobs and CI gates. Default: exit 0 whatever the findings.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<FailOn>,
    /// Silence findings with this code (repeat or separate with commas), as Popeye's
    /// `--exclude-code`: they are counted per check and left out of the verdict and
    /// `--fail-on`, never dropped unseen (`--show-silenced` lists them).
    #[arg(long = "exclude-code", value_name = "CODE", value_delimiter = ',')]
    pub exclude_code: Vec<String>,
    /// List the silenced findings too.
    #[arg(long)]
    pub show_silenced: bool,
}

/// The `--fail-on` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Info,
    Warning,
    Critical,
}

impl FailOn {
    fn severity(self) -> Severity {
        match self {
            FailOn::Info => Severity::Info,
            FailOn::Warning => Severity::Warning,
            FailOn::Critical => Severity::Critical,
        }
    }
}

/// Exit code of `check --fail-on` when checks are at or above the level.
pub(crate) const EXIT_FINDINGS: i32 = 2;

/// The `checks:`, `cleanup:` and `schedule:` sections of a config file (`schedule:` gives
/// the maintenance window that `cleanup --apply` waits for).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub checks: ChecksConfig,
    pub cleanup: CleanupConfig,
    pub schedule: crate::schedule::config::ScheduleConfig,
}

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Dump(#[from] cluster::dump::DumpError),
    #[error(transparent)]
    Live(#[from] cluster::live::LiveError),
    #[error("cannot connect to Kubernetes")]
    Kube(#[source] kube::Error),
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    #[error("cannot write output")]
    Output(#[from] std::io::Error),
    #[error("cannot write JUnit XML")]
    Junit(#[from] quick_junit::SerializeError),
    #[error("cannot write YAML")]
    Yaml(#[from] serde_saphyr_ser::SerializeError),
    #[error(transparent)]
    Cleanup(#[from] crate::cleanup::ApplyError),
    /// `cleanup --apply` outside the maintenance window without `--force`.
    #[error("nothing deleted: {0}; run without --apply to see the proposals")]
    OutsideWindow(String),
    /// `check --fail-on`: checks at or above the level.
    #[error("{count} check(s) at {level} or worse: {names} (--fail-on {level})")]
    Findings {
        count: usize,
        level: Severity,
        names: String,
    },
}

impl CliError {
    /// The process exit code: 64 for a bad command line or config, 75 (EX_TEMPFAIL:
    /// try again later) for `--apply` outside the maintenance window, 2 for `check
    /// --fail-on` with checks at or above the level, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Config(_) | CliError::Usage(_) => EXIT_USAGE,
            CliError::OutsideWindow(_) => EXIT_TEMPFAIL,
            CliError::Findings { .. } => EXIT_FINDINGS,
            _ => 1,
        }
    }
}

/// Reads `--config` (or the defaults).
///
/// # Errors
/// [`CliError::Config`] naming the file, line and field.
pub(crate) fn load_config(path: Option<&Path>) -> Result<FileConfig, CliError> {
    Ok(match path {
        Some(p) => caretaker_core::config::load_yaml(p)?,
        None => FileConfig::default(),
    })
}

/// Reads the cluster state from the dump paths (keeping only the namespaced objects of
/// `config.namespaces`, when set, as the live source lists), or from the API server when
/// there are none: through `kube`'s kubeconfig and context when given, else the default
/// client (in-cluster service account, else the kubeconfig).
///
/// # Errors
/// An unreadable dump path, no kubeconfig or in-cluster config, or an unreachable server.
pub(crate) async fn load_state(
    from_dump: &[PathBuf],
    kube: &KubeArgs,
    config: &ChecksConfig,
) -> Result<ClusterState, CliError> {
    if !from_dump.is_empty() {
        let paths = from_dump.to_vec();
        let namespaces = config.namespaces.clone();
        // Reading and parsing files is blocking work.
        let state = tokio::task::spawn_blocking(move || {
            cluster::dump::load(&paths).map(|mut s| {
                s.retain_namespaces(&namespaces);
                s
            })
        })
        .await
        .map_err(|e| CliError::Usage(format!("dump loader stopped: {e}")))??;
        return Ok(state);
    }
    let client = live_client(kube, config).await?;
    Ok(cluster::live::load(&client, config).await?)
}

/// The client of the live source: `--kubeconfig`/`--context` when given (checked against
/// the server within `checks.list_timeout`), else the default one.
///
/// # Errors
/// [`CliError::Kubeconfig`] or [`CliError::Kube`].
pub(crate) async fn live_client(
    kube: &KubeArgs,
    config: &ChecksConfig,
) -> Result<kube::Client, CliError> {
    if kube.given() {
        return Ok(crate::cli::kubeconfig::client(
            kube.kubeconfig.as_deref(),
            kube.context.as_deref(),
            config.list_timeout.get(),
        )
        .await?);
    }
    kube::Client::try_default().await.map_err(CliError::Kube)
}

/// What `check --output json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct CheckOutput<'a> {
    pub now: Timestamp,
    pub source: &'static str,
    pub checks: &'a [CheckResult],
    pub proposals: &'a [Proposal],
    /// Objects a cleanup rule named but the protected list keeps.
    pub kept: &'a [crate::cleanup::Kept],
    /// Why cleanup rules proposed nothing (a list that was not read, …).
    pub notes: &'a [String],
    pub load: &'a LoadSummary,
    /// Silenced findings with their check (`--show-silenced`; otherwise only counted).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub silenced: &'a [(String, Finding)],
}

/// Runs `check` and writes its output to `out`.
///
/// # Errors
/// See [`CliError`].
pub async fn run(args: CheckArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let mut config = load_config(args.config.as_deref())?;
    let selection = Selection::resolve(&args.select, &mut config.checks.namespaces);
    if selection.needs_labels() {
        cluster::pod::keep_labels();
    }
    let state = load_state(&args.from_dump, &args.kube, &config.checks).await?;
    let now = args.now.unwrap_or_else(Timestamp::now);
    let mut results = run_all(&state, &config.checks, now);
    let silence::Outcome { silenced, .. } = silence::apply_with_labels(
        &mut results,
        &config.checks.exclude,
        &config.checks.severity_overrides,
        &args.exclude_code,
        now,
        Some(&LabelIndex::with_template_labels(&state)),
    );
    let labels = LabelIndex::new(&state, selection.needs_labels());
    let hidden = selection.filter_results(&mut results, &labels);
    let mut proposals = propose_with_notes(&state, &config.cleanup, now);
    proposals
        .proposals
        .retain(|p| selection.shows(&p.object, labels.get(&p.object)));
    proposals
        .kept
        .retain(|k| selection.shows(&k.object, labels.get(&k.object)));
    let silenced: Vec<(String, Finding)> = silenced
        .into_iter()
        .filter(|(_, f)| selection.shows(&f.object, labels.get(&f.object)))
        .collect();
    let shown: &[(String, Finding)] = if args.show_silenced { &silenced } else { &[] };
    let view = View {
        format: args.output,
        tty: Tty::stdout(),
    };
    write_output(out, view, &state, &results, &proposals, now, shown)?;
    let text = matches!(args.output, Output::Table | Output::Wide | Output::Markdown);
    if hidden > 0 && text {
        writeln!(
            out,
            "\n{hidden} finding(s) outside the selection (-n/-l) not shown"
        )?;
    }
    if !silenced.is_empty() && text {
        writeln!(
            out,
            "\n{} finding(s) silenced by checks.exclude or --exclude-code{}",
            silenced.len(),
            if args.show_silenced {
                ":"
            } else {
                " (--show-silenced lists them)"
            }
        )?;
        if args.show_silenced {
            for (check, f) in &silenced {
                writeln!(out, "  {check}  {}  {}  {}", f.code, f.object, f.message)?;
            }
        }
    }
    if let Some(level) = args.fail_on.map(FailOn::severity) {
        let failing: Vec<&str> = results
            .iter()
            .filter(|r| r.severity >= level)
            .map(|r| r.name.as_str())
            .collect();
        if !failing.is_empty() {
            return Err(CliError::Findings {
                count: failing.len(),
                level,
                names: failing.join(", "),
            });
        }
    }
    Ok(())
}

/// How to print: the format and, for tables, the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    pub format: Output,
    pub tty: Tty,
}

impl From<Output> for View {
    /// `format` for a pipe or file (no width limit, no colour).
    fn from(format: Output) -> View {
        View {
            format,
            tty: Tty::PLAIN,
        }
    }
}

/// Writes check results (and cleanup proposals) as `view` says.
///
/// # Errors
/// Writing fails.
pub(crate) fn write_output(
    out: &mut dyn Write,
    view: impl Into<View>,
    state: &ClusterState,
    results: &[CheckResult],
    cleanup: &Proposals,
    now: Timestamp,
    silenced: &[(String, Finding)],
) -> Result<(), CliError> {
    let View { format, tty } = view.into();
    let proposals: &[Proposal] = &cleanup.proposals;
    let document = || CheckOutput {
        now,
        source: if state.from_dump { "dump" } else { "live" },
        checks: results,
        proposals,
        kept: &cleanup.kept,
        notes: &cleanup.notes,
        load: &state.load,
        silenced,
    };
    match format {
        Output::Yaml => out.write_all(render::yaml(&document())?.as_bytes())?,
        Output::Junit => {
            out.write_all(render::junit(results, now)?.as_bytes())?;
            writeln!(out)?;
        }
        Output::Html => {
            let round = crate::report::CheckRound {
                at: Some(now),
                checks: results.to_vec(),
                proposals: proposals.to_vec(),
                ..Default::default()
            };
            let report =
                crate::report::merge(&[], &round, &crate::report::MergeConfig::default(), now);
            out.write_all(crate::report::html::html(&report).as_bytes())?;
        }
        Output::Table | Output::Wide => {
            writeln!(out, "Cluster checks as of {now}")?;
            out.write_all(render::overview_kubectl(results, tty).as_bytes())?;
            writeln!(out)?;
            let wide = format == Output::Wide;
            let index = LabelIndex::new(state, wide);
            out.write_all(
                render::findings_kubectl(results, wide, tty, &|o| index.owner(o)).as_bytes(),
            )?;
            out.write_all(render::load_notes(Style::Terminal, &state.load).as_bytes())?;
            if !proposals.is_empty() {
                write!(out, "\nCleanup proposals (dry run):\n")?;
                out.write_all(
                    crate::cleanup::render::proposals_kubectl(
                        proposals,
                        format == Output::Wide,
                        tty,
                    )
                    .as_bytes(),
                )?;
            }
            crate::cleanup::render::kept_and_notes(out, Style::Terminal, cleanup)?;
        }
        Output::Json => {
            let o = document();
            serde_json::to_writer_pretty(&mut *out, &o).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        Output::Markdown => {
            let style = Style::Markdown;
            let title = format!("Cluster checks as of {now}");
            out.write_all(render::report(style, results, &state.load, &title).as_bytes())?;
            if !proposals.is_empty() {
                match style {
                    Style::Markdown => write!(out, "\n### Cleanup proposals (dry run)\n\n")?,
                    Style::Terminal => write!(out, "\nCleanup proposals (dry run):\n")?,
                }
                writeln!(
                    out,
                    "{}",
                    crate::cleanup::render::proposals(style, proposals)
                )?;
            }
            crate::cleanup::render::kept_and_notes(out, style, cleanup)?;
        }
    }
    Ok(())
}
