//! `caretaker-agent`: parses the command line and wires the library together.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use caretaker_agent::DaemonOptions;
use caretaker_agent::cleanup::cli::{self as cleanup_cli, CleanupArgs};
use caretaker_agent::collector::{BufferStats, Collector};
use caretaker_agent::config::{AgentConfig, LogsConfig};
use caretaker_agent::images::cli::{self as prune_cli, PruneImagesArgs};
use caretaker_agent::images::daemon::RuntimeAccess;
use caretaker_agent::images::endpoint;
use caretaker_agent::logcheck::check;
use caretaker_agent::logcheck::cli::Report as LogCheckReport;
use caretaker_agent::logcheck::daemon::LogCheckTask;
use caretaker_agent::logcheck::matcher::Matcher;
use caretaker_agent::logcheck::scan::Window;
use caretaker_agent::logs::daemon::{self as logs_daemon, LogsTask};
use caretaker_agent::logs::engine::{LogEngine, RunOptions};
use caretaker_agent::logs::handle::Roots;
use caretaker_agent::logs::sweep::{self, RetentionRule};
use caretaker_agent::paths::HostPaths;
use caretaker_core::config::{EXIT_USAGE, load_yaml, parse_args};
use caretaker_core::error::Chain;
use caretaker_core::output::Output;
use caretaker_core::render::{self, Style};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

#[derive(Debug, Parser)]
#[command(
    name = "caretaker-agent",
    version,
    about = "caretaker's node agent: node stats, log rotation, image pruning"
)]
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

/// The formats of `stats`, `rotate`, `sweep` and `log-check`.
const OUTPUTS: &[Output] = &[Output::Table, Output::Json];

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
        #[arg(long, value_parser = Output::only(OUTPUTS), default_value_t = Output::Table)]
        output: Output,
        /// Time between the two samples that give network rates; 0s takes one sample
        /// (no rates).
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        sample_interval: Duration,
    },
    /// Rotate logs now, as logrotate would: prints what was (or would be) rotated,
    /// compressed and deleted, with bytes. Exit 1 when any log failed.
    Rotate {
        /// YAML config file (its `logs:` section: policies, roots, state file).
        #[arg(long)]
        config: Option<PathBuf>,
        /// A logrotate.conf to read unchanged (in addition to the config's policies).
        #[arg(long)]
        logrotate_conf: Option<PathBuf>,
        /// State file in logrotate's format (default: logs.state_file of the config).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Only files under this directory are touched (repeatable; default: logs.roots of
        /// the config, /var/log without one).
        #[arg(long = "root")]
        roots: Vec<PathBuf>,
        /// Decide and report only; nothing is touched.
        #[arg(long)]
        dry_run: bool,
        /// Rotate every log regardless of its criteria (logrotate -f).
        #[arg(long)]
        force: bool,
        #[arg(long, value_parser = Output::only(OUTPUTS), default_value_t = Output::Table)]
        output: Output,
    },
    /// Delete files matching a glob that are older than an age. Dry run unless --apply.
    /// Only files below the roots are considered (logs.roots; /var/log by default).
    Sweep {
        /// Absolute glob, e.g. '/var/log/*.log.gz' (quote it for the shell).
        #[arg(long)]
        glob: String,
        /// YAML config file (its `logs.roots`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Only files under this directory are touched (repeatable; default: logs.roots of
        /// the config, /var/log without one).
        #[arg(long = "root")]
        roots: Vec<PathBuf>,
        /// Files whose mtime is strictly older than this are deleted, e.g. 30d, 168h.
        #[arg(long, value_parser = humantime::parse_duration)]
        max_age: Duration,
        /// Really delete (default: only list what would be deleted).
        #[arg(long)]
        apply: bool,
        #[arg(long, value_parser = Output::only(OUTPUTS), default_value_t = Output::Table)]
        output: Output,
    },
    /// Remove unused images through Docker or containerd (CRI); a dry run unless --apply.
    PruneImages {
        /// YAML config file (optional: the images section).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        args: PruneImagesArgs,
    },
    /// Count, per namespace, pod and container, the log lines of a window matching each
    /// pattern (default: error, warn, authentication failed, status=4xx/5xx; as grep -i),
    /// from the kubelet's CRI logs, rotated and compressed ones included.
    LogCheck {
        /// The kubelet's pod log directory (default: /var/log/pods under --path.rootfs).
        #[arg(long)]
        pods_dir: Option<PathBuf>,
        /// The window: lines with a timestamp at most this long ago.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        since: Duration,
        /// YAML config file (optional: its log_check.patterns).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_parser = Output::only(OUTPUTS), default_value_t = Output::Table)]
        output: Output,
    },
    /// Free disk on this node without the aggregator; a dry run unless --apply.
    Cleanup {
        /// YAML config file (optional: the images and cleanup sections).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        args: CleanupArgs,
    },
}

fn main() -> ExitCode {
    let cli = match parse_args::<Cli>() {
        Ok(c) => c,
        Err(code) => return code,
    };
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
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_on_stderr())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

/// ANSI colour only for a terminal, and never with `NO_COLOR` set (no-color.org).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    render::colour_allowed(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// Writes a command's output to stdout. A reader that went away (`… | head`) ends the
/// output quietly instead of a panic: what it wanted it has.
fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// Config errors become exit code 64 with the message on stderr, before anything starts.
fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("caretaker-agent: {msg}");
    ExitCode::from(EXIT_USAGE as u8)
}

fn host_paths(
    cli_paths: (&Option<PathBuf>, &Option<PathBuf>, &Option<PathBuf>),
    cfg: &AgentConfig,
) -> HostPaths {
    let from_cfg = cfg.paths.resolve();
    HostPaths {
        procfs: cli_paths.0.clone().unwrap_or(from_cfg.procfs),
        sysfs: cli_paths.1.clone().unwrap_or(from_cfg.sysfs),
        rootfs: cli_paths.2.clone().unwrap_or(from_cfg.rootfs),
    }
}

/// The process environment, for `DOCKER_HOST` and `CONTAINER_RUNTIME_ENDPOINT`.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn try_main(cli: Cli) -> anyhow::Result<ExitCode> {
    let paths_flags = (&cli.procfs, &cli.sysfs, &cli.rootfs);
    match &cli.command {
        Command::Run { config } => {
            let mut cfg: AgentConfig = match load_yaml(config) {
                Ok(c) => c,
                Err(e) => return Ok(usage_error(e)),
            };
            if let Err(e) = endpoint::resolve(&mut cfg.images, env_var, None, None) {
                return Ok(usage_error(e));
            }
            let Some(aggregator) = cfg.aggregator.clone() else {
                return Ok(usage_error(format!(
                    "invalid config file {}: `run` needs aggregator.endpoint (the aggregator's gRPC URL)",
                    config.display()
                )));
            };
            if let Err(e) = aggregator.transport() {
                return Ok(usage_error(format!(
                    "invalid config file {}: {}",
                    config.display(),
                    Chain(&e)
                )));
            }
            let paths = host_paths(paths_flags, &cfg);
            let images = match cfg.images.task_settings() {
                Ok(t) => t.map(|t| (t, RuntimeAccess::new(&cfg.images, &paths.rootfs))),
                Err(e) => {
                    return Ok(usage_error(format!(
                        "invalid config file {}: {}",
                        config.display(),
                        Chain(&e)
                    )));
                }
            };
            let settings = match caretaker_agent::collector_settings(&cfg, paths) {
                Ok(s) => s,
                Err(e) => {
                    return Ok(usage_error(format!("{}: {}", config.display(), Chain(&e))));
                }
            };
            let log_check = if cfg.log_check.enabled {
                if let Err(e) = cfg.log_check.validate() {
                    return Ok(usage_error(format!(
                        "invalid config file {}: {e}",
                        config.display()
                    )));
                }
                let matcher = match Matcher::new(&cfg.log_check.patterns) {
                    Ok(m) => m,
                    Err(e) => {
                        return Ok(usage_error(format!(
                            "invalid config file {}: {e:#}",
                            config.display()
                        )));
                    }
                };
                let pods_dir = cfg
                    .log_check
                    .pods_dir
                    .clone()
                    .unwrap_or_else(|| settings.paths.rootfs.join("var/log/pods"));
                Some(LogCheckTask {
                    config: cfg.log_check.clone(),
                    matcher,
                    pods_dir,
                })
            } else {
                None
            };
            // Policies load before anything starts; their problems are reported, not fatal.
            // The node's logrotate config is the host's, under the rootfs.
            let logs_cfg = cfg.logs.clone().with_host_root(&settings.paths.rootfs);
            let logs = logs_daemon::wanted(&logs_cfg).then(|| LogsTask::new(&logs_cfg));
            // Bound before the runtime starts, so a taken port fails the start clearly.
            let http = match cfg.listen_http {
                Some(addr) => {
                    let l = std::net::TcpListener::bind(addr)
                        .with_context(|| format!("listen_http: cannot listen on {addr}"))?;
                    l.set_nonblocking(true)
                        .context("listen_http: set the listener non-blocking")?;
                    Some(l)
                }
                None => None,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(16)
                .enable_all()
                .build()
                .context("start the async runtime")?;
            rt.block_on(async {
                let shutdown = CancellationToken::new();
                let token = shutdown.clone();
                tokio::spawn(async move {
                    caretaker_core::listen::shutdown_signal().await;
                    token.cancel();
                });
                info!(node = %settings.node_name, endpoint = %aggregator.endpoint, interval = ?settings.report_interval, http = ?cfg.listen_http, "Agent started.");
                let http = match http.map(tokio::net::TcpListener::from_std).transpose() {
                    Ok(l) => l,
                    Err(e) => {
                        error!(error = %Chain(&e), "Cannot use the listen_http listener; the HTTP endpoint is off.");
                        None
                    }
                };
                let options = DaemonOptions {
                    images,
                    http,
                    logs,
                    log_check,
                };
                let summary = caretaker_agent::run_with(settings, aggregator, options, shutdown).await;
                info!(?summary, "Agent stopped.");
            });
            // Blocking threads stuck in a hung statvfs must not hold up the exit.
            rt.shutdown_timeout(Duration::from_millis(500));
            Ok(ExitCode::SUCCESS)
        }
        Command::Stats {
            config,
            output,
            sample_interval,
        } => {
            let cfg: AgentConfig = match config.as_deref().map(load_yaml).transpose() {
                Ok(c) => c.unwrap_or_default(),
                Err(e) => return Ok(usage_error(e)),
            };
            let settings =
                match caretaker_agent::collector_settings(&cfg, host_paths(paths_flags, &cfg)) {
                    Ok(s) => s,
                    Err(e) => return Ok(usage_error(Chain(&e))),
                };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start the async runtime")?;
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
                Output::Json => emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?,
                _ => emit(&render::node_report(Style::Terminal, &report))?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rotate {
            config,
            logrotate_conf,
            state,
            roots,
            dry_run,
            force,
            output,
        } => {
            if config.is_none() && logrotate_conf.is_none() {
                return Ok(usage_error(
                    "rotate needs --config (with logs.policies or logs.logrotate_conf) or --logrotate-conf",
                ));
            }
            // Only the logs section and the rootfs are used: without a config file, no
            // other section's defaults are built (the maintenance window's time zone
            // alone cost a walk of the zoneinfo database).
            let (logs_cfg, rootfs) = match config.as_deref().map(load_yaml::<AgentConfig>) {
                None => (
                    LogsConfig::default(),
                    cli.rootfs.clone().unwrap_or_else(|| PathBuf::from("/")),
                ),
                Some(Ok(c)) => {
                    let rootfs = host_paths(paths_flags, &c).rootfs;
                    (c.logs, rootfs)
                }
                Some(Err(e)) => return Ok(usage_error(e)),
            };
            let mut logs_cfg = logs_cfg.with_host_root(&rootfs);
            if !roots.is_empty() {
                logs_cfg.roots = roots.clone();
            }
            let mut engine = LogEngine::new(&logs_cfg, logrotate_conf.as_deref());
            if let Some(s) = state {
                engine = engine.with_state_file(s.clone());
            }
            let opts = RunOptions {
                force: *force,
                dry_run: *dry_run,
                lock_wait: engine.lock_wait(),
            };
            let summary = match engine.rotate(jiff::Timestamp::now(), opts) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("caretaker-agent: {}", Chain(&e));
                    return Ok(ExitCode::from(EXIT_TEMPFAIL));
                }
            };
            match output {
                Output::Json => emit(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?,
                _ => emit(&summary.render_table())?,
            }
            // Problems also go to stderr, whatever the output format.
            for e in &summary.errors {
                eprintln!("caretaker-agent: error: {}: {}", e.place, e.message);
            }
            for w in &summary.warnings {
                eprintln!("caretaker-agent: warning: {}: {}", w.place, w.message);
            }
            Ok(if summary.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Sweep {
            glob,
            config,
            roots,
            max_age,
            apply,
            output,
        } => {
            let mut cfg: AgentConfig = match config.as_deref().map(load_yaml).transpose() {
                Ok(c) => c.unwrap_or_default(),
                Err(e) => return Ok(usage_error(e)),
            };
            if !roots.is_empty() {
                cfg.logs.roots = roots.clone();
            }
            let rule = RetentionRule::new(glob.clone(), *max_age);
            let summary = sweep::sweep(
                &[rule],
                &Roots::new(&cfg.logs.roots),
                std::time::SystemTime::now(),
                *apply,
            );
            match output {
                Output::Json => emit(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?,
                _ => emit(&summary.render_table())?,
            }
            Ok(if summary.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::PruneImages { config, args } => {
            let mut cfg: AgentConfig = match config.as_deref().map(load_yaml).transpose() {
                Ok(c) => c.unwrap_or_default(),
                Err(e) => return Ok(usage_error(e)),
            };
            let (docker, containerd) = (
                args.docker_socket.as_deref(),
                args.containerd_socket.as_deref(),
            );
            if let Err(e) = endpoint::resolve(&mut cfg.images, env_var, docker, containerd) {
                return Ok(usage_error(e));
            }
            let policy = match cfg.images.policy(args.min_age) {
                Ok(p) => p,
                Err(e) => return Ok(usage_error(Chain(&e))),
            };
            let rootfs = host_paths(paths_flags, &cfg).rootfs;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start the async runtime")?;
            let outcomes = rt.block_on(prune_cli::run(&cfg.images, &policy, &rootfs, args))?;
            match args.output {
                prune_cli::Output::Json => {
                    emit(&format!("{}\n", serde_json::to_string_pretty(&outcomes)?))?
                }
                _ => emit(&prune_cli::render_table(&outcomes))?,
            }
            Ok(if prune_cli::any_failed(&outcomes) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::LogCheck {
            pods_dir,
            since,
            config,
            output,
        } => {
            let cfg: AgentConfig = match config.as_deref().map(load_yaml).transpose() {
                Ok(c) => c.unwrap_or_default(),
                Err(e) => return Ok(usage_error(e)),
            };
            let patterns = cfg.log_check.patterns.clone();
            let matcher = match Matcher::new(&patterns) {
                Ok(m) => m,
                Err(e) => return Ok(usage_error(format!("{e:#}"))),
            };
            let pods_dir = pods_dir
                .clone()
                .unwrap_or_else(|| host_paths(paths_flags, &cfg).rootfs.join("var/log/pods"));
            let until = jiff::Timestamp::now();
            let since_ts = until
                .checked_sub(jiff::SignedDuration::try_from(*since).context("--since")?)
                .context("--since is too long")?;
            let window = Window {
                from: since_ts.as_second(),
                to: i64::MAX,
            };
            let outcome = check::check_once(&pods_dir, &matcher, window)?;
            let report = LogCheckReport::new(&outcome, &patterns, since_ts, until);
            match output {
                Output::Json => emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?,
                _ => emit(&report.render_table())?,
            }
            for p in &report.problems {
                eprintln!("caretaker-agent: warning: {}: {}", p.path, p.reason);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cleanup { config, args } => {
            let mut cfg: AgentConfig = match config.as_deref().map(load_yaml).transpose() {
                Ok(c) => c.unwrap_or_default(),
                Err(e) => return Ok(usage_error(e)),
            };
            if let Err(e) = endpoint::resolve(&mut cfg.images, env_var, None, None) {
                return Ok(usage_error(e));
            }
            if let Err(e) = cfg.images.policy(None) {
                return Ok(usage_error(Chain(&e)));
            }
            let rootfs = host_paths(paths_flags, &cfg).rootfs;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start the async runtime")?;
            let summary = rt.block_on(cleanup_cli::run(&cfg, &rootfs, args))?;
            match args.output {
                prune_cli::Output::Json => {
                    emit(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?
                }
                _ => emit(&caretaker_agent::cleanup::emergency::render(&summary))?,
            }
            Ok(if summary.target_met {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// sysexits.h EX_TEMPFAIL: another run holds the lock; try again later.
const EXIT_TEMPFAIL: u8 = caretaker_core::config::EXIT_TEMPFAIL as u8;
