//! `caretaker-aggregator`: parses the command line and wires the library together.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use caretaker_aggregator::auth::Auth;
use caretaker_aggregator::checks::cli::{CheckArgs, CliError};
use caretaker_aggregator::cleanup::cli::CleanupArgs;
use caretaker_aggregator::config::AggregatorConfig;
use caretaker_aggregator::leader::config::{Election, Timing};
use caretaker_aggregator::leader::replica::{BoxError, Leading, Replica};
use caretaker_aggregator::report::{self, Output};
use caretaker_aggregator::schedule::notify::Notifier;
use caretaker_aggregator::schedule::runner::{RunnerOptions, SystemClock, run_scheduler};
use caretaker_aggregator::schedule::runs::{RunState, Schedule};
use caretaker_aggregator::server::ServeOptions;
use caretaker_aggregator::state::State;
use caretaker_aggregator::store::{Store, StoreError};
use caretaker_aggregator::tls::ReloadingTls;
use caretaker_aggregator::{certs, client, server};
use caretaker_core::config::{EXIT_USAGE, load_yaml};
use caretaker_core::window::MaintenanceWindow;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

/// How long `serve` waits for servers to drain after SIGTERM before exiting anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(4);

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
        #[arg(long, num_args = 2, value_names = ["A", "B"])]
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
                    report::render_diff(&caretaker_aggregator::history::diff(&ra, &rb), output)?
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
    if let Err(e) = cfg.validate() {
        return Ok(usage_error(format!(
            "invalid config file {}: {e}",
            config.display()
        )));
    }
    let election = match cfg
        .leader_election
        .as_ref()
        .map(|le| le.resolve(|k| std::env::var(k).ok()))
        .transpose()
    {
        Ok(e) => e,
        Err(e) => {
            return Ok(usage_error(format!(
                "invalid config file {}: {e}",
                config.display()
            )));
        }
    };
    let tls = match cfg.tls.clone().map(ReloadingTls::load).transpose() {
        Ok(t) => t.map(Arc::new),
        Err(e) => return Ok(usage_error(format!("{}: {e}", config.display()))),
    };
    let auth = match Auth::from_config(&cfg.auth) {
        Ok(a) => Arc::new(a),
        Err(e) => return Ok(usage_error(format!("{}: {e}", config.display()))),
    };
    if cfg.insecure_plaintext {
        warn!("insecure_plaintext: serving without TLS; agents are not authenticated.");
    }
    let options = ServeOptions {
        tls,
        auth,
        reports_per_minute: cfg.max_reports_per_minute,
    };
    runtime()?.block_on(serve_until_stopped(cfg, election, options))
}

fn open_store(cfg: &AggregatorConfig) -> Result<Store, StoreError> {
    if cfg.in_memory {
        Store::in_memory()
    } else {
        Store::open(&cfg.data_dir)
    }
}

/// Opens the store as the new leader. A former leader may still be draining with the file
/// open (redb locks it): retry every `retry_period` for up to `lease_duration`. `None`:
/// stopped meanwhile.
async fn open_store_as_leader(
    cfg: &AggregatorConfig,
    timing: Timing,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Store>> {
    let give_up = tokio::time::Instant::now() + timing.lease_duration;
    loop {
        match open_store(cfg) {
            Ok(s) => return Ok(Some(s)),
            Err(e @ StoreError::Locked { .. }) if tokio::time::Instant::now() < give_up => {
                warn!(error = %e, "The store is still open in the former leader; retrying.");
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("open the store in {}", cfg.data_dir.display()));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(timing.retry_period) => {}
            () = stop.cancelled() => return Ok(None),
        }
    }
}

async fn serve_until_stopped(
    cfg: AggregatorConfig,
    election: Option<Election>,
    options: ServeOptions,
) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        s.cancel();
    });
    let http = std::net::TcpListener::bind(cfg.listen.http)
        .with_context(|| format!("bind HTTP on {}", cfg.listen.http))?;
    http.set_nonblocking(true).context("HTTP listener")?;
    let Some(election) = election else {
        let store = open_store(&cfg)
            .with_context(|| format!("open the store in {}", cfg.data_dir.display()))?;
        serve_store(&cfg, store, http, options, shutdown, || {}).await?;
        return Ok(ExitCode::SUCCESS);
    };

    // With leader election: a standby until this replica holds the Lease (leader::replica
    // labels the pod and orders the steps). The HTTP socket is bound once; the standby
    // serves a clone of it and the leader the socket itself, so the port never closes in
    // between.
    let client = kube::Client::try_default()
        .await
        .context("leader election needs the Kubernetes API (in-cluster config or kubeconfig)")?;
    let replica = Replica::new(client, election);
    let standby_stop = CancellationToken::new();
    let standby_http =
        tokio::net::TcpListener::from_std(http.try_clone().context("HTTP listener")?)
            .context("HTTP listener")?;
    let standby = Arc::new(std::sync::Mutex::new(Some(tokio::spawn(
        caretaker_aggregator::leader::standby::serve(
            standby_http,
            options.tls.clone(),
            standby_stop.clone(),
        ),
    ))));
    let stop_standby = move || {
        let (stop, handle) = (
            standby_stop.clone(),
            standby.lock().ok().and_then(|mut h| h.take()),
        );
        async move {
            stop.cancel();
            let Some(handle) = handle else { return };
            match tokio::time::timeout(Duration::from_secs(1), handle).await {
                Ok(Ok(Err(e))) => warn!(error = %e, "The standby HTTP server failed."),
                Ok(_) => {}
                Err(_) => warn!("The standby HTTP server did not stop within 1s; going on."),
            }
        }
    };
    let lead = {
        let stop_standby = stop_standby.clone();
        move |mut leading: Leading| async move {
            stop_standby().await;
            let Some(store) = open_store_as_leader(&cfg, leading.timing, &leading.stop).await?
            else {
                return Ok(());
            };
            let stop = leading.stop.clone();
            serve_store(&cfg, store, http, options, stop, move || {
                leading.listening()
            })
            .await
            .map_err(BoxError::from)
        }
    };
    let result = replica.run(&shutdown, lead).await;
    stop_standby().await;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Serves `store` until `stop`: gRPC (bound here) and HTTP, rounds and schedules. Calls
/// `listening` once both listeners are bound and the servers started. Returns after the
/// servers drained (or [`DRAIN_TIMEOUT`]) and the store is closed.
async fn serve_store(
    cfg: &AggregatorConfig,
    store: Store,
    http: std::net::TcpListener,
    options: ServeOptions,
    stop: CancellationToken,
    listening: impl FnOnce(),
) -> anyhow::Result<()> {
    let state = State::with_retention(store, cfg.stale_after_intervals, cfg.history.retention())
        .context("load the store")?;
    let rounds = caretaker_aggregator::rounds::Rounds::new(cfg.rounds());
    let grpc = tokio::net::TcpListener::bind(cfg.listen.grpc)
        .await
        .with_context(|| format!("bind gRPC on {}", cfg.listen.grpc))?;
    let http = tokio::net::TcpListener::from_std(http).context("HTTP listener")?;
    // The servers stop on `stop`, or when one of them fails (which cancels this child).
    let servers_stop = stop.child_token();
    let server = tokio::spawn(server::serve_with(
        Arc::clone(&state),
        grpc,
        http,
        servers_stop.clone(),
        options,
    ));
    listening();
    let notifier = match cfg.schedule.notifications.webhook_url {
        Some(_) => Some(Notifier::new(&cfg.schedule.notifications).context("notifications")?),
        None => None,
    };
    state.set_window(MaintenanceWindow::new(
        &cfg.schedule.maintenance_window,
        &cfg.schedule.time_zone,
    ));
    let rounds_task = tokio::spawn(
        caretaker_aggregator::rounds::run_loop(
            Arc::clone(&state),
            rounds,
            cfg.history.record_interval,
            notifier,
            servers_stop.clone(),
        )
        .instrument(tracing::info_span!("rounds")),
    );
    let scheduler_task = tokio::spawn(
        scheduled_rounds(
            Arc::clone(&state),
            Schedule::new(&cfg.schedule),
            servers_stop.clone(),
        )
        .instrument(tracing::info_span!("scheduler")),
    );
    servers_stop.cancelled().await;
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let r = server.await;
        let _ = rounds_task.await;
        let _ = scheduler_task.await;
        r
    })
    .await;
    // The last reference: the store file is closed (and its lock released) here, before
    // the Lease is given up.
    drop(state);
    match drained {
        Ok(Ok(r)) => r.context("server")?,
        Ok(Err(e)) => return Err(anyhow::anyhow!("server task: {e}")),
        Err(_) => warn!("Servers did not drain within {DRAIN_TIMEOUT:?}; exiting anyway."),
    }
    Ok(())
}

/// Key of the scheduler's run state in the store.
const RUN_STATE_KEY: &str = "schedule_run_state";

/// Daily, weekly and monthly runs: each due slot runs a round now (recorded in the
/// history) and then persists the run state, so a restart neither repeats nor skips a slot.
async fn scheduled_rounds(state: Arc<State>, schedule: Schedule, shutdown: CancellationToken) {
    let run_state: RunState = match state.store().get_meta(RUN_STATE_KEY) {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            warn!(error = %e, "Cannot read the scheduler state; starting afresh.");
            RunState::default()
        }
    };
    let st = Arc::clone(&state);
    run_scheduler(&schedule, run_state, &SystemClock, RunnerOptions::default(), move |round, after| {
        let st = Arc::clone(&st);
        async move {
            let run = caretaker_aggregator::report::ScheduledRun {
                kinds: round.kinds.iter().map(|k| k.name().to_string()).collect(),
                tasks: round.checks.iter().copied().collect(),
                trends: None,
            };
            let kinds = run.kinds.join(",");
            match st.run_scheduled_now(run).await {
                Ok(()) => info!(%kinds, "Scheduled round recorded."),
                Err(e) => warn!(error = %e, "Scheduled round failed; the slot is marked done anyway."),
            }
            if let Err(e) = st.store().put_meta(RUN_STATE_KEY, &after) {
                warn!(error = %e, "Cannot store the scheduler state; the slot may run again after a restart.");
            }
        }
    }, shutdown)
    .await;
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
