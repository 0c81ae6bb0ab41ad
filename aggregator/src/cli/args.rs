//! The command line in two steps (ripgrep's `LowArgs` → `HiArgs`): [`Cli`] is what clap
//! parses, flag for flag; [`Args::resolve`] turns it into one checked value per subcommand
//! (config files loaded, times parsed, tokens read), so no subcommand checks its options
//! again. `main` only parses, resolves, runs and maps errors to exit codes.

use std::path::PathBuf;

use caretaker_core::config::EXIT_USAGE;
use caretaker_core::error::Chain;
use clap::{Parser, Subcommand};
use jiff::Timestamp;

use crate::app::{App, BuildError};
use crate::checks::cli::{CheckArgs, CliError};
use crate::cleanup::cli::{Cleanup, CleanupArgs};
use crate::cli::certs::CertsOptions;
use crate::cli::select::{KubeArgs, SelectArgs, Selection};
use crate::client::QueryClientOptions;
use crate::config::AggregatorConfig;
use crate::renew::cli::{CertificatesCommand, RenewArgs};
use crate::report::{self, Output};

/// `report --server`'s default: an aggregator on this host.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:7443";

/// The raw command line.
#[derive(Debug, Parser)]
#[command(
    name = "caretaker-aggregator",
    version,
    about = "caretaker's aggregator: node reports, cluster checks, one merged report"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The raw subcommands and their flags.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: accept agent streams, store reports, answer gRPC and HTTP queries.
    Serve {
        /// YAML config file (see the config module docs).
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the merged report of a running aggregator (through its gRPC Query service).
    Report {
        /// The aggregator's gRPC URL (https:// needs --ca-file). Default
        /// http://127.0.0.1:7443 unless --context or --kubeconfig is given.
        #[arg(long, conflicts_with_all = ["context", "kubeconfig"])]
        server: Option<String>,
        /// Read the report from the aggregator in the cluster of this kubeconfig context,
        /// through the API server's service proxy (default: the current context).
        #[arg(long, value_name = "NAME")]
        context: Option<String>,
        /// The kubeconfig file for --context (default: $KUBECONFIG, else ~/.kube/config).
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// With --context/--kubeconfig: the aggregator's Service, NAMESPACE/NAME (what
        /// deploy/ installs: the kustomize base and a Helm release `caretaker` in namespace
        /// `caretaker`).
        #[arg(
            long,
            value_name = "NAMESPACE/NAME",
            default_value = "caretaker/caretaker-aggregator"
        )]
        service: String,
        /// With --context/--kubeconfig: the Service's HTTP API port.
        #[arg(long, value_name = "PORT", default_value_t = 8080)]
        service_port: u16,
        /// With --context/--kubeconfig: the scheme the API server uses to reach the HTTP API
        /// (http when the aggregator runs with insecure_plaintext).
        #[arg(long, value_name = "SCHEME", default_value = "https", value_parser = ["https", "http"])]
        service_scheme: String,
        /// Output format: table, wide (more columns), json, yaml (the same document as
        /// json), markdown, html (the report page) or junit (one test suite per check).
        #[arg(short = 'o', long, value_parser = Output::only(report::OUTPUTS), default_value_t = Output::Table)]
        output: Output,
        /// Only findings and proposals about objects in this namespace (-n), or in all
        /// (-A, the default), whose labels match -l (the labels the report carries).
        #[command(flatten)]
        select: SelectArgs,
        /// The report recorded at or before this time instead of the live one
        /// (2026-11-29T03:00:00Z, 2026-11-29, or -24h).
        #[arg(long, conflicts_with = "diff", allow_hyphen_values = true)]
        at: Option<String>,
        /// New, resolved and changed findings between the reports at two times.
        #[arg(long, num_args = 2, value_names = ["A", "B"], allow_hyphen_values = true)]
        diff: Option<Vec<String>>,
        /// CA certificate of the aggregator's server certificate (PEM), for https://.
        #[arg(long, conflicts_with_all = ["context", "kubeconfig"])]
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
        /// Release name: the objects are `<release>-aggregator`, `<release>-agent-tls`, ...
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
    /// cert-manager Certificates: `renew NAMESPACE/NAME` (as `cmctl renew`).
    Certificates {
        #[command(subcommand)]
        command: CertificatesCommand,
    },
}

impl Command {
    /// `serve` logs at info; the other commands print their output and log only what goes
    /// wrong.
    #[must_use]
    pub fn is_serve(&self) -> bool {
        matches!(self, Command::Serve { .. })
    }
}

/// A checked subcommand, ready to run.
#[derive(Debug)]
pub enum Args {
    /// `serve`: the checked config (see [`App::build`]).
    Serve(Box<App>),
    Report(Report),
    Certs(CertsOptions),
    Check(CheckArgs),
    Cleanup(Box<Cleanup>),
    /// `certificates renew`.
    Renew(Box<RenewArgs>),
}

/// `report`, checked.
#[derive(Debug)]
pub struct Report {
    /// Where the report is read.
    pub target: ReportTarget,
    pub output: Output,
    /// `-n`: what is shown.
    pub selection: Selection,
    pub client: QueryClientOptions,
    pub query: ReportQuery,
}

/// Where `report` reads the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportTarget {
    /// The aggregator's gRPC URL (`--server`).
    Server(String),
    /// The aggregator's Service in the cluster of a kubeconfig context, through the API
    /// server's service proxy (`--context`/`--kubeconfig`).
    Cluster {
        kube: KubeArgs,
        service: crate::client::ServiceRef,
    },
}

/// Which report `report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportQuery {
    /// The live report.
    Live,
    /// The one recorded at or before this time (`--at`).
    At(Timestamp),
    /// What changed between the reports at two times (`--diff A B`).
    Diff(Timestamp, Timestamp),
}

/// Why a command line cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// A bad option value or config (exit code 64); the message names the option or file.
    #[error("{0}")]
    Usage(String),
    #[error("read token file {}", path.display())]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cli(#[from] CliError),
}

impl ArgsError {
    /// The process exit code: 64 for a bad option or config, else as [`CliError::exit_code`]
    /// (1 for an unreadable token file).
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        match self {
            ArgsError::Usage(_) => EXIT_USAGE,
            ArgsError::TokenFile { .. } => 1,
            ArgsError::Cli(e) => e.exit_code(),
        }
    }
}

impl Args {
    /// Checks `cli`: loads and checks `serve`'s config, reads `report`'s token (from the file,
    /// or the variable `env` resolves) and parses its times against `now`, checks `cleanup`'s
    /// flags and loads its config.
    ///
    /// # Errors
    /// See [`ArgsError`].
    pub fn resolve(
        cli: Cli,
        now: Timestamp,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Args, ArgsError> {
        Ok(match cli.command {
            Command::Serve { config } => Args::Serve(Box::new(serve(&config, env)?)),
            Command::Report {
                server,
                context,
                kubeconfig,
                service,
                service_port,
                service_scheme,
                output,
                select,
                at,
                diff,
                ca_file,
                token_file,
                token_env,
            } => {
                let kube = KubeArgs {
                    context,
                    kubeconfig,
                };
                let target = if kube.given() {
                    let Some((namespace, name)) = service
                        .split_once('/')
                        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/'))
                    else {
                        return Err(ArgsError::Usage(format!(
                            "--service: {service:?} is not NAMESPACE/NAME"
                        )));
                    };
                    ReportTarget::Cluster {
                        kube,
                        service: crate::client::ServiceRef {
                            namespace: namespace.to_string(),
                            name: name.to_string(),
                            scheme: service_scheme,
                            port: service_port,
                        },
                    }
                } else {
                    ReportTarget::Server(server.unwrap_or_else(|| DEFAULT_SERVER.to_string()))
                };
                if diff.is_some() && output == Output::Junit {
                    return Err(ArgsError::Usage(
                        "--output junit: a --diff is changes, not test results; \
                         use table, wide, json, yaml, markdown or html"
                            .into(),
                    ));
                }
                let selection = Selection::resolve(&select, &mut Vec::new());
                let token = match token_file {
                    Some(path) => Some(
                        std::fs::read_to_string(&path)
                            .map_err(|source| ArgsError::TokenFile { path, source })?
                            .trim()
                            .to_string(),
                    ),
                    None => env(&token_env).filter(|t| !t.is_empty()),
                };
                let when = |s: &str| report::parse_time(s, now);
                let query = if let Some(d) = diff {
                    match (when(&d[0]), when(&d[1])) {
                        (Ok(a), Ok(b)) => ReportQuery::Diff(a, b),
                        (Err(e), _) | (_, Err(e)) => {
                            return Err(ArgsError::Usage(format!("--diff: {}", Chain(&e))));
                        }
                    }
                } else {
                    match at.as_deref().map(when).transpose() {
                        Ok(Some(t)) => ReportQuery::At(t),
                        Ok(None) => ReportQuery::Live,
                        Err(e) => return Err(ArgsError::Usage(format!("--at: {}", Chain(&e)))),
                    }
                };
                Args::Report(Report {
                    target,
                    output,
                    selection,
                    client: QueryClientOptions { ca_file, token },
                    query,
                })
            }
            Command::Certs {
                out,
                release,
                namespace,
                nodes,
                names,
                days,
                ca_days,
            } => Args::Certs(CertsOptions {
                out,
                release,
                namespace,
                nodes,
                extra_names: names,
                days,
                ca_days,
            }),
            Command::Check(args) => Args::Check(args),
            Command::Cleanup(args) => Args::Cleanup(Box::new(Cleanup::resolve(args)?)),
            Command::Certificates {
                command: CertificatesCommand::Renew(args),
            } => Args::Renew(Box::new(args)),
        })
    }
}

/// `serve`'s config, loaded and built; every failure is a usage error naming the file.
fn serve(config: &std::path::Path, env: impl Fn(&str) -> Option<String>) -> Result<App, ArgsError> {
    let mut cfg: AggregatorConfig = caretaker_core::config::load_yaml(config)
        .map_err(|e| ArgsError::Usage(Chain(&e).to_string()))?;
    if let Err(e) = cfg.schedule.notifications.resolve_env(&env) {
        let var = crate::schedule::config::WEBHOOK_URL_ENV;
        return Err(ArgsError::Usage(format!("${var}: {e}")));
    }
    App::build(cfg, env).map_err(|e| {
        ArgsError::Usage(match e {
            BuildError::Invalid(e) => format!("invalid config file {}: {e}", config.display()),
            BuildError::Election(e) => format!("invalid config file {}: {e}", config.display()),
            e => format!("{}: {}", config.display(), Chain(&e)),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: &[&str], env: &[(&str, &str)]) -> Result<Args, ArgsError> {
        let cli = Cli::try_parse_from(
            std::iter::once("caretaker-aggregator").chain(args.iter().copied()),
        )
        .unwrap();
        let now: Timestamp = "2026-11-29T12:00:00Z".parse().unwrap();
        Args::resolve(cli, now, |k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_string())
        })
    }

    #[test]
    fn report_resolves_its_times_and_token() {
        let Args::Report(r) =
            resolve(&["report", "--at=-24h"], &[("CARETAKER_TOKEN", "t1")]).unwrap()
        else {
            panic!("not a report");
        };
        assert_eq!(
            r.query,
            ReportQuery::At("2026-11-28T12:00:00Z".parse().unwrap())
        );
        assert_eq!(r.client.token.as_deref(), Some("t1"));
        let Args::Report(r) = resolve(
            &["report", "--diff", "2026-11-29", "2026-11-29T11:30:00Z"],
            &[],
        )
        .unwrap() else {
            panic!("not a report");
        };
        assert_eq!(
            r.query,
            ReportQuery::Diff(
                "2026-11-29T23:59:59.999999999Z".parse().unwrap(),
                "2026-11-29T11:30:00Z".parse().unwrap()
            )
        );
        assert_eq!(r.client.token, None);
    }

    #[test]
    fn report_at_takes_a_relative_time_as_the_readme_writes_it() {
        // README: `[--at TIME]  # TIME: 2026-11-29T03:00:00Z, 2026-11-29 or -24h`.
        for (args, want) in [
            (vec!["report", "--at", "-24h"], "2026-11-28T12:00:00Z"),
            (vec!["report", "--at=-24h"], "2026-11-28T12:00:00Z"),
            (
                vec!["report", "--at", "2026-11-29T03:00:00Z"],
                "2026-11-29T03:00:00Z",
            ),
            (
                vec!["report", "--at", "2026-11-29"],
                "2026-11-29T23:59:59.999999999Z",
            ),
        ] {
            let Ok(Args::Report(r)) = resolve(&args, &[]) else {
                panic!("{args:?} is not a report");
            };
            assert_eq!(r.query, ReportQuery::At(want.parse().unwrap()), "{args:?}");
        }
        let Ok(Args::Report(r)) = resolve(&["report", "--diff", "-48h", "-24h"], &[]) else {
            panic!("not a report");
        };
        assert_eq!(
            r.query,
            ReportQuery::Diff(
                "2026-11-27T12:00:00Z".parse().unwrap(),
                "2026-11-28T12:00:00Z".parse().unwrap()
            )
        );
    }

    #[test]
    fn report_takes_a_selector_and_refuses_a_junit_diff_as_a_usage_error() {
        let Ok(Args::Report(r)) = resolve(&["report", "-l", "app=web"], &[]) else {
            panic!("not a report");
        };
        assert_eq!(
            r.selection.selector.map(|s| s.to_string()).as_deref(),
            Some("app=web")
        );
        assert_eq!(r.target, ReportTarget::Server(DEFAULT_SERVER.into()));
        let e = resolve(&["report", "-o", "junit", "--diff", "-2h", "-1h"], &[]).unwrap_err();
        assert_eq!(e.exit_code(), 64);
        assert!(e.to_string().starts_with("--output junit: "), "{e}");
        let Ok(Args::Report(r)) = resolve(&["report", "-n", "shop", "-o", "yaml"], &[]) else {
            panic!("not a report");
        };
        assert_eq!(r.output, Output::Yaml);
        assert_eq!(r.selection.namespaces, Some(vec!["shop".to_string()]));
    }

    #[test]
    fn report_with_a_context_reads_through_the_service_proxy() {
        let Ok(Args::Report(r)) = resolve(
            &["report", "--context", "prod", "--kubeconfig", "/k/config"],
            &[],
        ) else {
            panic!("not a report");
        };
        let ReportTarget::Cluster { kube, service } = r.target else {
            panic!("not through the cluster");
        };
        assert_eq!(kube.context.as_deref(), Some("prod"));
        assert_eq!(kube.kubeconfig, Some(PathBuf::from("/k/config")));
        assert_eq!(
            service.proxy_path(None),
            "/api/v1/namespaces/caretaker/services/https:caretaker-aggregator:8080/proxy/api/v1/report"
        );
        let Ok(Args::Report(r)) = resolve(
            &[
                "report",
                "--context",
                "dev",
                "--service",
                "ops/ct-aggregator",
                "--service-port",
                "9443",
            ],
            &[],
        ) else {
            panic!("not a report");
        };
        let ReportTarget::Cluster { service, .. } = r.target else {
            panic!("not through the cluster");
        };
        assert_eq!(
            service.proxy_path(None),
            "/api/v1/namespaces/ops/services/https:ct-aggregator:9443/proxy/api/v1/report"
        );
        let e = resolve(&["report", "--context", "dev", "--service", "x"], &[]).unwrap_err();
        assert_eq!(e.exit_code(), 64);
        assert!(e.to_string().starts_with("--service: "), "{e}");
        // --server names another way to reach it.
        assert!(
            Cli::try_parse_from([
                "caretaker-aggregator",
                "report",
                "--server",
                "http://a:7443",
                "--context",
                "x"
            ])
            .is_err()
        );
    }

    #[test]
    fn a_bad_time_is_a_usage_error_naming_the_flag() {
        let e = resolve(&["report", "--at", "yesterday"], &[]).unwrap_err();
        assert_eq!(e.exit_code(), 64);
        assert!(e.to_string().starts_with("--at: "), "{e}");
    }

    #[test]
    fn certificates_renew_takes_a_namespaced_name_and_the_live_flags() {
        let Args::Renew(r) = resolve(
            &[
                "certificates",
                "renew",
                "web/web-tls",
                "--apply",
                "--force",
                "--context",
                "prod",
                "--kubeconfig",
                "/k/config",
            ],
            &[],
        )
        .unwrap() else {
            panic!("not a renewal");
        };
        assert_eq!(r.target.to_string(), "web/web-tls");
        assert!(r.apply && r.force);
        assert_eq!(r.context.as_deref(), Some("prod"));
        assert_eq!(r.kubeconfig, Some(PathBuf::from("/k/config")));
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("caretaker-aggregator").chain(args.iter().copied()))
        };
        let e = parse(&["certificates", "renew", "web-tls"]).unwrap_err();
        assert!(e.to_string().contains("is not NAMESPACE/NAME"), "{e}");
        // --force only means something with --apply.
        assert!(parse(&["certificates", "renew", "web/web-tls", "--force"]).is_err());
    }

    #[test]
    fn cleanup_apply_with_a_dump_is_a_usage_error() {
        let e = resolve(&["cleanup", "--apply", "--from-dump", "x.json"], &[]).unwrap_err();
        assert_eq!(e.exit_code(), 64);
        assert!(e.to_string().starts_with("--apply deletes objects"), "{e}");
    }
}
