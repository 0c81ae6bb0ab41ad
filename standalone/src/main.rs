//! `caretaker-standalone`: parses the command line, runs aggregator + agent of this machine
//! in one process and prints the merged report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use caretaker_agent::paths::HostPaths;
use caretaker_aggregator::report::{self, Output};
use caretaker_core::config::parse_args;
use caretaker_standalone::ClusterInput;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Aggregator + agent for this machine in one process over loopback gRPC, with the cluster
/// checks and cleanup proposals on a dump (default: the example) or, with --context or
/// --kubeconfig, on a real cluster read-only; no config. With --once: print the merged
/// report after two reports and exit.
#[derive(Debug, Parser)]
#[command(name = "caretaker-standalone", version)]
struct Cli {
    #[arg(long)]
    once: bool,
    /// Output format: table, wide (more columns), json, yaml (the same document as json),
    /// markdown, html (the report page) or junit (one test suite per check).
    #[arg(short = 'o', long, value_parser = Output::only(report::OUTPUTS), default_value_t = Output::Table)]
    output: Output,
    /// Give up if the reports have not arrived within this time.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// procfs of the host (default /proc).
    #[arg(long = "path.procfs")]
    procfs: Option<PathBuf>,
    /// sysfs of the host (default /sys).
    #[arg(long = "path.sysfs")]
    sysfs: Option<PathBuf>,
    /// The host's root filesystem (default /).
    #[arg(long = "path.rootfs")]
    rootfs: Option<PathBuf>,
    /// Files or directories of `kubectl get … -o json|yaml` output: the cluster checks and
    /// cleanup proposals run on them. Default: the example in examples/cluster-dump.
    #[arg(long = "from-dump")]
    from_dump: Vec<PathBuf>,
    /// No cluster part: this machine's node report only.
    #[arg(long, conflicts_with_all = ["from_dump", "context", "kubeconfig"])]
    no_cluster: bool,
    /// Read a real cluster instead of a dump: this kubeconfig context (default: the
    /// kubeconfig's current context). Read-only: the live source only lists, and cleanup
    /// stays proposals.
    #[arg(long, conflicts_with = "from_dump")]
    context: Option<String>,
    /// The kubeconfig for --context (default: $KUBECONFIG, else ~/.kube/config, as
    /// kubectl). Given alone, its current context is read.
    #[arg(long, conflicts_with = "from_dump")]
    kubeconfig: Option<PathBuf>,
}

/// The example dump: beside the working directory (the repository's root), else beside
/// the sources this binary was built from.
fn example_dump() -> Option<PathBuf> {
    let rel = Path::new("examples/cluster-dump");
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    [rel.to_path_buf(), built].into_iter().find(|p| p.is_dir())
}

fn main() -> ExitCode {
    let cli = match parse_args::<Cli>() {
        Ok(c) => c,
        Err(code) => return code,
    };
    // The printed report is the output; keep the log to what goes wrong.
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match try_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e: &(dyn std::error::Error + 'static) = e.as_ref();
            eprintln!(
                "caretaker-standalone: error: {}",
                caretaker_core::error::Chain(e)
            );
            ExitCode::from(1)
        }
    }
}

fn try_main(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        once,
        output,
        timeout,
        procfs,
        sysfs,
        rootfs,
        from_dump,
        no_cluster,
        context,
        kubeconfig,
    } = cli;
    let live = context.is_some() || kubeconfig.is_some();
    let dump = if no_cluster || live {
        Vec::new()
    } else if from_dump.is_empty() {
        example_dump().into_iter().collect()
    } else {
        for p in &from_dump {
            if !p.exists() {
                anyhow::bail!("--from-dump {}: no such file or directory", p.display());
            }
        }
        from_dump
    };
    let d = HostPaths::default();
    let paths = HostPaths {
        procfs: procfs.unwrap_or(d.procfs),
        sysfs: sysfs.unwrap_or(d.sysfs),
        rootfs: rootfs.unwrap_or(d.rootfs),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let cluster = if live {
        // Checked before anything starts: a wrong context or an unreachable server is the
        // error, not an empty report.
        ClusterInput::Live(rt.block_on(caretaker_standalone::kube_client(
            kubeconfig.as_deref(),
            context.as_deref(),
            timeout,
        ))?)
    } else if dump.is_empty() {
        ClusterInput::None
    } else {
        ClusterInput::Dump(dump)
    };
    let report = rt.block_on(async {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            caretaker_core::listen::shutdown_signal().await;
            s.cancel();
        });
        caretaker_standalone::run(paths, cluster, once, timeout, shutdown, |e| {
            if !once {
                eprintln!(
                    "caretaker standalone: gRPC on {}, HTTP on http://{}/api/v1/report; Ctrl-C to stop",
                    e.grpc, e.http
                );
            }
        })
        .await
    })?;
    rt.shutdown_timeout(Duration::from_millis(500));
    let tty = caretaker_core::render::Tty::stdout();
    print!("{}", report::render_for(&report, output, tty)?);
    Ok(())
}
