//! `caretaker-aggregator`: parses the command line and wires the library together.

use std::process::ExitCode;

use anyhow::Context;
use caretaker_aggregator::app::App;
use caretaker_aggregator::checks::cli::CliError;
use caretaker_aggregator::cli::args::{Args, Cli, Report, ReportQuery};
use caretaker_aggregator::cli::certs;
use caretaker_aggregator::client;
use caretaker_aggregator::report;
use caretaker_core::config::EXIT_USAGE;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE as u8 } else { 0 });
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        if cli.command.is_serve() {
            "info".into()
        } else {
            // The printed report is the output; keep the log to what goes wrong.
            "warn".into()
        }
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args = match Args::resolve(cli, jiff::Timestamp::now(), |k| std::env::var(k).ok()) {
        Ok(a) => a,
        Err(caretaker_aggregator::cli::args::ArgsError::Usage(msg)) => {
            eprintln!("caretaker-aggregator: {msg}");
            return ExitCode::from(EXIT_USAGE as u8);
        }
        Err(e) => return exit(e.exit_code(), anyhow::Error::from(e)),
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.downcast_ref::<CliError>().map_or(1, CliError::exit_code);
            exit(code, e)
        }
    }
}

/// Prints `e` with its causes and returns `code`.
fn exit(code: i32, e: anyhow::Error) -> ExitCode {
    eprintln!("caretaker-aggregator: error: {e:#}");
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

fn run(args: Args) -> anyhow::Result<()> {
    match args {
        Args::Serve(app) => serve(*app),
        Args::Report(r) => report(&r),
        Args::Certs(opts) => {
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
            Ok(())
        }
        Args::Check(args) => Ok(runtime()?.block_on(caretaker_aggregator::checks::cli::run(
            args,
            &mut std::io::stdout().lock(),
        ))?),
        Args::Cleanup(c) => Ok(runtime()?.block_on(caretaker_aggregator::cleanup::cli::run(
            *c,
            &mut std::io::stdout().lock(),
        ))?),
    }
}

/// `report`: the live report, one recorded at a time, or the diff of two.
fn report(r: &Report) -> anyhow::Result<()> {
    let rt = runtime()?;
    let fetch = |at| {
        rt.block_on(client::fetch_report_with(&r.server, at, &r.client))
            .context("query")
    };
    match r.query {
        ReportQuery::Diff(a, b) => {
            let (ra, rb) = (fetch(Some(a))?, fetch(Some(b))?);
            print!(
                "{}",
                report::render_diff(
                    &caretaker_aggregator::store::history::diff(&ra, &rb),
                    r.output
                )?
            );
        }
        ReportQuery::At(t) => print!("{}", report::render(&fetch(Some(t))?, r.output)?),
        ReportQuery::Live => print!("{}", report::render(&fetch(None)?, r.output)?),
    }
    Ok(())
}

/// `serve`: run until SIGTERM (or, with leader election, until leadership is lost or this
/// pod cannot be labeled: exit code 1, so Kubernetes restarts the pod as a standby).
fn serve(app: App) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            s.cancel();
        });
        app.run(shutdown).await
    })?;
    Ok(())
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
