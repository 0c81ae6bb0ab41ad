//! `caretaker-aggregator`: the cluster-side program. `main` only parses the command line
//! and calls into the library.

use std::process::ExitCode;

use caretaker_aggregator::checks::cli::{CheckArgs, CliError};
use caretaker_aggregator::cleanup::cli::CleanupArgs;
use caretaker_proto::config::EXIT_USAGE;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "caretaker-aggregator", version, about = "caretaker's cluster-side aggregator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match try_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("caretaker-aggregator: {e:#}");
            let code = e.downcast_ref::<CliError>().map_or(1, CliError::exit_code);
            ExitCode::from(code as u8)
        }
    }
}

fn try_main(cli: Cli) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut stdout = std::io::stdout().lock();
    rt.block_on(async {
        match cli.command {
            Command::Check(args) => caretaker_aggregator::checks::cli::run(args, &mut stdout).await?,
            Command::Cleanup(args) => caretaker_aggregator::cleanup::cli::run(args, &mut stdout).await?,
        }
        anyhow::Ok(())
    })
}
