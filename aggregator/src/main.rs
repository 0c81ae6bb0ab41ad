//! `caretaker-aggregator`: parses the command line and wires the library together.

use std::process::ExitCode;

use anyhow::Context;
use caretaker_aggregator::app::App;
use caretaker_aggregator::checks::cli::CliError;
use caretaker_aggregator::cli::args::{Args, Cli};
use caretaker_aggregator::cli::certs;
use caretaker_aggregator::renew::cli::RenewCliError;
use caretaker_core::config::{EXIT_USAGE, parse_args};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = match parse_args::<Cli>() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        if cli.command.is_serve() {
            "info".into()
        } else {
            // The printed report is the output; keep the log to what goes wrong. kube's
            // client logs a failed connection at error level; the error printed at the end
            // says it, with the server and the kubeconfig.
            "warn,kube_client::client::builder=off".into()
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
            let code = match e.downcast_ref::<RenewCliError>() {
                Some(r) => r.exit_code(),
                None => e.downcast_ref::<CliError>().map_or(1, CliError::exit_code),
            };
            exit(code, e)
        }
    }
}

/// Prints `e` with its causes, each once, and returns `code`.
fn exit(code: i32, e: anyhow::Error) -> ExitCode {
    let e: &(dyn std::error::Error + 'static) = e.as_ref();
    eprintln!(
        "caretaker-aggregator: error: {}",
        caretaker_core::error::Chain(e)
    );
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
        Args::Report(r) => Ok(runtime()?.block_on(caretaker_aggregator::cli::report::run(
            &r,
            &mut std::io::stdout().lock(),
            caretaker_core::render::Tty::stdout(),
        ))?),
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
        Args::Renew(r) => Ok(runtime()?.block_on(caretaker_aggregator::renew::cli::run(
            *r,
            &mut std::io::stdout().lock(),
        ))?),
    }
}

/// `serve`: run until SIGTERM (or, with leader election, until leadership is lost or this
/// pod cannot be labeled: exit code 1, so Kubernetes restarts the pod as a standby).
fn serve(app: App) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            caretaker_core::listen::shutdown_signal().await;
            s.cancel();
        });
        app.run(shutdown).await
    })?;
    Ok(())
}
