//! `caretaker-aggregator`: parses the command line and wires the library together.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use caretaker_aggregator::app::{App, BuildError};
use caretaker_aggregator::checks::cli::{CheckArgs, CliError};
use caretaker_aggregator::cleanup::cli::CleanupArgs;
use caretaker_aggregator::cli::certs;
use caretaker_aggregator::client;
use caretaker_aggregator::config::AggregatorConfig;
use caretaker_aggregator::report::{self, Output};
use caretaker_core::config::{EXIT_USAGE, load_yaml};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

#[derive(Debug, Parser)]
#[command(
    name = "caretaker-aggregator",
    version,
    about = "caretaker's aggregator: node reports, cluster checks, one merged report"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve: accept agent streams, store reports, answer gRPC and HTTP queries.
    Serve {
        /// YAML config file (see the config module docs).
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the merged report of a running aggregator (through its gRPC Query service).
    Report {
        /// The aggregator's gRPC URL (https:// needs --ca-file).
        #[arg(long, default_value = "http://127.0.0.1:7443")]
        server: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// The report recorded at or before this time instead of the live one
        /// (2026-11-29T03:00:00Z, 2026-11-29, or -24h).
        #[arg(long, conflicts_with = "diff")]
        at: Option<String>,
        /// New, resolved and changed findings between the reports at two times.
        #[arg(long, num_args = 2, value_names = ["A", "B"], allow_hyphen_values = true)]
        diff: Option<Vec<String>>,
        /// CA certificate of the aggregator's server certificate (PEM), for https://.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// File with a read (or admin) API token.
        #[arg(long, conflicts_with = "token_env")]
        token_file: Option<PathBuf>,
        /// Environment variable with the API token.
        #[arg(long, default_value = "CARETAKER_TOKEN")]
        token_env: String,
    },
    /// Create a CA, the aggregator's server certificate, agent client certificates and API
    /// tokens, as files and as Kubernetes Secrets (OUT/secrets.yaml). An existing CA and
    /// existing tokens in OUT are reused, so running it again renews the certificates.
    Certs {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Release name: the objects are <release>-aggregator, <release>-agent-tls, ...
        #[arg(long, default_value = "caretaker")]
        release: String,
        #[arg(long, default_value = "caretaker")]
        namespace: String,
        /// A node that gets its own client certificate (repeatable); see deploy/README.md.
        #[arg(long = "node")]
        nodes: Vec<String>,
        /// More DNS names or IP addresses for the server certificate (repeatable).
        #[arg(long = "name")]
        names: Vec<String>,
        /// Validity of the server and agent certificates.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Validity of a new CA.
        #[arg(long, default_value_t = 3650)]
        ca_days: u32,
    },
    /// Run the cluster checks on a live cluster or on a dump and print the results.
    Check(CheckArgs),
    /// Propose (dry run) or apply cleanup of completed Jobs, old ReplicaSets, failed pods,
    /// unreferenced ConfigMaps and more.
    Cleanup(CleanupArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE as u8 } else { 0 });
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        match cli.command {
            Command::Serve { .. } => "info".into(),
            // The printed report is the output; keep the log to what goes wrong.
            _ => "warn".into(),
        }
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match try_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("caretaker-aggregator: error: {e:#}");
            let code = e.downcast_ref::<CliError>().map_or(1, CliError::exit_code);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("caretaker-aggregator: {msg}");
    ExitCode::from(EXIT_USAGE as u8)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

fn try_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Report {
            server,
            output,
            at,
            diff,
            ca_file,
            token_file,
            token_env,
        } => {
            let token = match token_file {
                Some(f) => Some(
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("read token file {}", f.display()))?
                        .trim()
                        .to_string(),
                ),
                None => std::env::var(&token_env).ok().filter(|t| !t.is_empty()),
            };
            let opts = client::QueryClientOptions { ca_file, token };
            let now = jiff::Timestamp::now();
            let when = |s: &str| report::parse_time(s, now);
            if let Some(d) = diff {
                let (a, b) = match (when(&d[0]), when(&d[1])) {
                    (Ok(a), Ok(b)) => (a, b),
                    (Err(e), _) | (_, Err(e)) => return Ok(usage_error(format!("--diff: {e}"))),
                };
                let rt = runtime()?;
                let ra = rt
                    .block_on(client::fetch_report_with(&server, Some(a), &opts))
                    .context("query")?;
                let rb = rt
                    .block_on(client::fetch_report_with(&server, Some(b), &opts))
                    .context("query")?;
                print!(
                    "{}",
                    report::render_diff(
                        &caretaker_aggregator::store::history::diff(&ra, &rb),
                        output
                    )?
                );
                return Ok(ExitCode::SUCCESS);
            }
            let at = match at.as_deref().map(when).transpose() {
                Ok(a) => a,
                Err(e) => return Ok(usage_error(format!("--at: {e}"))),
            };
            let report = runtime()?
                .block_on(client::fetch_report_with(&server, at, &opts))
                .context("query")?;
            print!("{}", report::render(&report, output)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Certs {
            out,
            release,
            namespace,
            nodes,
            names,
            days,
            ca_days,
        } => {
            let opts = certs::CertsOptions {
                out,
                release,
                namespace,
                nodes,
                extra_names: names,
                days,
                ca_days,
            };
            let summary = certs::generate(&opts)?;
            if summary.reused_ca {
                println!("Reused the CA in {}.", opts.out.display());
            }
            if summary.reused_tokens {
                println!(
                    "Kept the API tokens in {}.",
                    opts.out.join("tokens").display()
                );
            }
            for f in &summary.written {
                println!("wrote {}", f.display());
            }
            println!(
                "Next: kubectl apply -f {}",
                opts.out.join("secrets.yaml").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => {
            runtime()?.block_on(caretaker_aggregator::checks::cli::run(
                args,
                &mut std::io::stdout().lock(),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cleanup(args) => {
            runtime()?.block_on(caretaker_aggregator::cleanup::cli::run(
                args,
                &mut std::io::stdout().lock(),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `serve`: read and check the config, then run until SIGTERM (or, with leader election,
/// until leadership is lost or this pod cannot be labeled: exit code 1, so Kubernetes
/// restarts the pod as a standby).
fn serve(config: &Path) -> anyhow::Result<ExitCode> {
    let mut cfg: AggregatorConfig = match load_yaml(config) {
        Ok(c) => c,
        Err(e) => return Ok(usage_error(e)),
    };
    let env = |k: &str| std::env::var(k).ok();
    if let Err(e) = cfg.schedule.notifications.resolve_env(env) {
        let var = caretaker_aggregator::schedule::config::WEBHOOK_URL_ENV;
        return Ok(usage_error(format!("${var}: {e}")));
    }
    let app = match App::build(cfg, |k| std::env::var(k).ok()) {
        Ok(a) => a,
        Err(BuildError::Invalid(e)) => {
            return Ok(usage_error(format!(
                "invalid config file {}: {e}",
                config.display()
            )));
        }
        Err(e) => return Ok(usage_error(format!("{}: {e}", config.display()))),
    };
    runtime()?.block_on(async {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            s.cancel();
        });
        app.run(shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Returns on SIGTERM (what Kubernetes sends) or SIGINT.
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("Cannot install signal handlers.");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received; stopping."),
        _ = int.recv() => info!("SIGINT received; stopping."),
    }
}
