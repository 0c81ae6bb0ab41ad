//! `caretaker-agent`: parses the command line and wires the library together.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use caretaker_agent::collector::{BufferStats, Collector};
use caretaker_agent::config::AgentConfig;
use caretaker_agent::paths::HostPaths;
use caretaker_proto::config::{EXIT_USAGE, load_yaml};
use caretaker_proto::render::{self, Style};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

#[derive(Debug, Parser)]
#[command(name = "caretaker-agent", version, about = "caretaker's node agent: node stats, log rotation, image pruning")]
struct Cli {
    /// procfs mount point (the host's /proc when run in a pod, e.g. /host/proc). Default /proc.
    #[arg(long = "path.procfs", global = true)]
    procfs: Option<PathBuf>,
    /// sysfs mount point. Default /sys.
    #[arg(long = "path.sysfs", global = true)]
    sysfs: Option<PathBuf>,
    /// The host's root filesystem (mount points are stat'ed under it). Default /.
    #[arg(long = "path.rootfs", global = true)]
    rootfs: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: collect every report_interval and stream reports to the aggregator.
    Run {
        /// YAML config file (see the config module docs); needs aggregator.endpoint.
        #[arg(long)]
        config: PathBuf,
    },
    /// Print this node's report without any aggregator.
    Stats {
        /// YAML config file (optional: filesystem filter, paths, node name).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// Time between the two samples that give network rates; 0s takes one sample
        /// (no rates).
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        sample_interval: Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match try_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("caretaker-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

/// Config errors become exit code 64 with the message on stderr, before anything starts.
fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("caretaker-agent: {msg}");
    ExitCode::from(EXIT_USAGE as u8)
}

fn host_paths(cli_paths: (&Option<PathBuf>, &Option<PathBuf>, &Option<PathBuf>), cfg: &AgentConfig) -> HostPaths {
    let from_cfg = cfg.paths.resolve();
    HostPaths {
        procfs: cli_paths.0.clone().unwrap_or(from_cfg.procfs),
        sysfs: cli_paths.1.clone().unwrap_or(from_cfg.sysfs),
        rootfs: cli_paths.2.clone().unwrap_or(from_cfg.rootfs),
    }
}

fn try_main(cli: Cli) -> anyhow::Result<ExitCode> {
    let paths_flags = (&cli.procfs, &cli.sysfs, &cli.rootfs);
    match &cli.command {
        Command::Run { config } => {
            let cfg: AgentConfig = match load_yaml(config) {
                Ok(c) => c,
                Err(e) => return Ok(usage_error(e)),
            };
            let Some(aggregator) = cfg.aggregator.clone() else {
                return Ok(usage_error(format!(
                    "invalid config file {}: `run` needs aggregator.endpoint (the aggregator's gRPC URL)",
                    config.display()
                )));
            };
            if let Err(e) = aggregator.transport() {
                return Ok(usage_error(format!("invalid config file {}: {e}", config.display())));
            }
            let settings = match caretaker_agent::collector_settings(&cfg, host_paths(paths_flags, &cfg)) {
                Ok(s) => s,
                Err(e) => return Ok(usage_error(format!("{}: {e}", config.display()))),
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(16)
                .enable_all()
                .build()
                .context("start the async runtime")?;
            rt.block_on(async {
                let shutdown = CancellationToken::new();
                tokio::spawn(wait_for_signal(shutdown.clone()));
                info!(node = %settings.node_name, endpoint = %aggregator.endpoint, interval = ?settings.report_interval, "Agent started.");
                let summary = caretaker_agent::run(settings, aggregator, shutdown).await;
                info!(?summary, "Agent stopped.");
            });
            // Blocking threads stuck in a hung statvfs must not hold up the exit.
            rt.shutdown_timeout(Duration::from_millis(500));
            Ok(ExitCode::SUCCESS)
        }
        Command::Stats { config, output, sample_interval } => {
            let cfg: AgentConfig = match config.as_deref().map(load_yaml).transpose() {
                Ok(c) => c.unwrap_or_default(),
                Err(e) => return Ok(usage_error(e)),
            };
            let settings = match caretaker_agent::collector_settings(&cfg, host_paths(paths_flags, &cfg)) {
                Ok(s) => s,
                Err(e) => return Ok(usage_error(e)),
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start the async runtime")?;
            let report = rt.block_on(async {
                let mut c = Collector::new(settings, Arc::new(BufferStats::default()));
                if !sample_interval.is_zero() {
                    c.collect().await;
                    tokio::time::sleep(*sample_interval).await;
                }
                c.collect().await
            });
            rt.shutdown_timeout(Duration::from_millis(100));
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Output::Table => print!("{}", render::node_report(Style::Terminal, &report)),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Cancels `token` on SIGTERM (what Kubernetes sends) or SIGINT.
async fn wait_for_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        error!("Cannot install signal handlers; stop the agent with SIGKILL.");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received; stopping."),
        _ = int.recv() => info!("SIGINT received; stopping."),
    }
    token.cancel();
}
