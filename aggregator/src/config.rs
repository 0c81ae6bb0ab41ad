//! The aggregator's YAML config (`caretaker-aggregator serve --config FILE`).
//!
//! ```yaml
//! listen:
//!   grpc: 0.0.0.0:7443        # default; agents stream here, Query is served here too
//!   http: 0.0.0.0:8080        # default; JSON API, /healthz, /readyz, /metrics
//! data_dir: /var/lib/caretaker  # default; the store file lives here
//! in_memory: false            # default; true keeps everything in memory (tests, demos)
//! stale_after_intervals: 3    # default; a node is stale after this many missed intervals
//! cluster: {source: none, dump_paths: [], interval: 10m}   # see rounds
//! checks: {}                  # thresholds, see checks::config
//! cleanup: {}                 # proposal rules, see cleanup
//! signals: {}                 # HTTP endpoints, Prometheus, Alertmanager, see signals::config
//! history:
//!   max_age: 400d             # default: a year of reports plus a month
//!   max_bytes: 1073741824     # default 1 GiB
//!   record_interval: 1h       # default: a round's report is recorded at most this often
//! tls:                        # required unless insecure_plaintext: true
//!   cert_file: /var/run/secrets/caretaker/tls/tls.crt   # server certificate (gRPC and HTTPS)
//!   key_file: /var/run/secrets/caretaker/tls/tls.key
//!   ca_file: /var/run/secrets/caretaker/tls/ca.crt      # CA of the agents' client certificates
//!   allow_shared_agent_cert: false   # accept the one-for-all-agents certificate (caretaker-node:*)
//! insecure_plaintext: false   # true: gRPC and HTTP without TLS (loopback tests only)
//! auth:
//!   tokens:                   # bearer tokens of the query APIs, each from a file or a variable
//!     - {name: grafana, scope: read, file: /var/run/secrets/caretaker/api/read}
//!     - {name: ops, scope: admin, env: CARETAKER_ADMIN_TOKEN}
//!   allow_anonymous: false    # true: the query APIs need no token (loopback tests only)
//!   metrics_require_token: false  # true: /metrics needs a read token too
//! max_reports_per_minute: 120 # per node, over all its streams; more is slowed down (default 120)
//! schedule: {}                # daily/weekly/monthly runs, maintenance window, notifications:
//!                             # see schedule::config for every option and default
//! leader_election:            # absent (default): serve at once, alone. Present: replicas
//!   lease_name: caretaker-aggregator  # elect a leader through this Lease; only the
//!   lease_duration: 15s       # leader opens the store and serves (see leader::config;
//!   renew_deadline: 10s       # namespace and identity default to $POD_NAMESPACE and
//!   retry_period: 2s          # $POD_NAME)
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use caretaker_core::config::bounded_duration;
use serde::{Deserialize, Deserializer};

use crate::checks::ChecksConfig;
use crate::cleanup::CleanupConfig;
use crate::leader::config::LeaderElectionConfig;
use crate::round::ClusterConfig;
use crate::schedule::config::ScheduleConfig;
use crate::signals::config::SignalsConfig;
use crate::updates::ChartsConfig;

/// The whole aggregator config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorConfig {
    #[serde(default)]
    pub listen: ListenConfig,
    /// Directory of the store (`caretaker.redb`). Default `/var/lib/caretaker`. Reports
    /// are acked only once written there.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Keep the store in memory instead of `data_dir` (nothing survives a restart).
    /// Default false.
    #[serde(default)]
    pub in_memory: bool,
    /// A node whose latest report is older than this many of its own report intervals is
    /// stale. Default 3. 1 to 1000.
    #[serde(
        default = "default_stale_after_intervals",
        deserialize_with = "stale_after"
    )]
    pub stale_after_intervals: u32,
    /// Where cluster state comes from and how often checks run.
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub checks: ChecksConfig,
    #[serde(default)]
    pub cleanup: CleanupConfig,
    #[serde(default)]
    pub signals: SignalsConfig,
    /// Chart repositories for the chart-updates review; none by default (no lookups).
    #[serde(default)]
    pub charts: ChartsConfig,
    /// Request recommendations and capacity trends; VPA's defaults.
    #[serde(default)]
    pub capacity: crate::capacity::CapacityConfig,
    #[serde(default)]
    pub history: HistoryConfig,
    /// TLS on both listeners, mutual on gRPC for agents. Required unless
    /// `insecure_plaintext` is true.
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
    /// Serve gRPC and HTTP without TLS: agents are then not authenticated and report
    /// for any node. Only for loopback tests. Default false.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// Bearer tokens of the query APIs.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Reports one node may send per minute over all its streams (bursts up to this many);
    /// beyond it the aggregator stops reading the node's streams until the rate allows
    /// (HTTP/2 flow control holds the agent back; nothing is buffered). Default 120 (20 times the default 10 s interval). 1 to 60000.
    #[serde(
        default = "default_max_reports_per_minute",
        deserialize_with = "max_reports_per_minute"
    )]
    pub max_reports_per_minute: u32,
    /// Daily/weekly/monthly runs, the maintenance window and notifications. Defaults: the
    /// seed's (03:00 Asia/Tokyo; window Sunday 03:00–05:00); see [`ScheduleConfig`].
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Leader election between replicas through a Lease; absent (the default): this
    /// process serves at once, alone. See [`crate::leader`].
    #[serde(default)]
    pub leader_election: Option<LeaderElectionConfig>,
}

/// The aggregator's TLS files (PEM). They are read again whenever one of them changes
/// (checked at each new connection), so a renewed certificate is served without a restart.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// Server certificate (chain) for gRPC and HTTPS.
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificate(s) that agents' client certificates must chain to.
    pub ca_file: PathBuf,
    /// Accept the certificate shared by all agents (URI SAN `caretaker-node:*`), which
    /// cannot tell nodes apart. Default false: every agent needs its own certificate
    /// with `caretaker-node:<node name>`.
    #[serde(default)]
    pub allow_shared_agent_cert: bool,
}

/// Bearer-token authentication of the HTTP JSON API and the gRPC Query service.
/// `/healthz` and `/readyz` never need a token; ingest is authenticated by mTLS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The accepted tokens. Empty is an error unless `allow_anonymous` is true.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Serve the query APIs without any token. Only for loopback tests. Default false.
    #[serde(default)]
    pub allow_anonymous: bool,
    /// `/metrics` needs a read token too. Default false (Prometheus scrapes it openly;
    /// the NetworkPolicy limits who can reach it).
    #[serde(default)]
    pub metrics_require_token: bool,
}

/// One token: where its secret is and what it may do. The secret itself never appears
/// in the config or the log; `name` does.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Shown in the log instead of the token.
    pub name: String,
    /// `read` (queries) or `admin` (also `--apply` and commands to agents).
    pub scope: crate::api::auth::Scope,
    /// File holding the token (surrounding whitespace is ignored).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Environment variable holding the token.
    #[serde(default)]
    pub env: Option<String>,
}

/// Options that do not fit together; each message names the options to change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "tls (cert_file, key_file, ca_file) is missing: set it, or set insecure_plaintext: true to serve without TLS"
    )]
    NoTls,
    #[error("tls and insecure_plaintext: true contradict each other; remove one")]
    TlsAndPlaintext,
    #[error(
        "auth.tokens is empty: add a token (name, scope, file or env), or set auth.allow_anonymous: true to serve the query APIs without tokens"
    )]
    NoTokens,
    #[error("auth.tokens[{index}] ({name}) needs exactly one of file and env")]
    TokenSource { index: usize, name: String },
    #[error(transparent)]
    Election(#[from] crate::leader::config::Error),
    #[error(
        "data_dir {} is not a directory: give a directory (it is created if missing) or set in_memory: true",
        .0.display()
    )]
    DataDirNotDir(PathBuf),
}

impl AggregatorConfig {
    /// Checks the options that depend on each other.
    ///
    /// # Errors
    /// A sentence naming the options to change.
    pub fn validate(&self) -> Result<(), Error> {
        match (&self.tls, self.insecure_plaintext) {
            (None, false) => return Err(Error::NoTls),
            (Some(_), true) => return Err(Error::TlsAndPlaintext),
            _ => {}
        }
        if self.auth.tokens.is_empty() && !self.auth.allow_anonymous {
            return Err(Error::NoTokens);
        }
        for (index, t) in self.auth.tokens.iter().enumerate() {
            if t.file.is_some() == t.env.is_some() {
                return Err(Error::TokenSource {
                    index,
                    name: t.name.clone(),
                });
            }
        }
        if let Some(le) = &self.leader_election {
            le.validate()?;
        }
        // Checked here, before any port is bound: found only when the store is opened,
        // a listener would already answer.
        if !self.in_memory
            && let Ok(meta) = std::fs::metadata(&self.data_dir)
            && !meta.is_dir()
        {
            return Err(Error::DataDirNotDir(self.data_dir.clone()));
        }
        Ok(())
    }
}

/// Report history options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// Reports older than this are deleted. Default 400d.
    #[serde(default = "default_max_age", deserialize_with = "max_age")]
    pub max_age: Duration,
    /// The oldest reports are deleted while the stored (compressed) reports exceed this.
    /// Default 1 GiB.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// A round's merged report is recorded when the last record is at least this old.
    /// Default 1h. 1m to 7d.
    #[serde(
        default = "default_record_interval",
        deserialize_with = "record_interval"
    )]
    pub record_interval: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            max_age: default_max_age(),
            max_bytes: default_max_bytes(),
            record_interval: default_record_interval(),
        }
    }
}

impl HistoryConfig {
    pub fn retention(&self) -> crate::store::history::Retention {
        crate::store::history::Retention {
            max_age: self.max_age,
            max_bytes: self.max_bytes,
        }
    }
}

fn default_max_age() -> Duration {
    crate::store::history::Retention::default().max_age
}
fn max_age<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded_duration(
        d,
        Duration::from_secs(86_400),
        Duration::from_secs(3650 * 86_400),
    )
}
fn default_max_bytes() -> u64 {
    crate::store::history::Retention::default().max_bytes
}
fn default_record_interval() -> Duration {
    Duration::from_secs(3600)
}
fn record_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded_duration(d, Duration::from_secs(60), Duration::from_secs(7 * 86_400))
}

impl AggregatorConfig {
    /// What a round needs from this config.
    pub fn rounds(&self) -> crate::round::RoundConfig {
        crate::round::RoundConfig {
            cluster: self.cluster.clone(),
            checks: self.checks.clone(),
            cleanup: self.cleanup.clone(),
            signals: self.signals.clone(),
            charts: self.charts.clone(),
            capacity: self.capacity.clone(),
        }
    }
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            listen: ListenConfig::default(),
            data_dir: default_data_dir(),
            in_memory: false,
            stale_after_intervals: default_stale_after_intervals(),
            cluster: ClusterConfig::default(),
            checks: ChecksConfig::default(),
            cleanup: CleanupConfig::default(),
            signals: SignalsConfig::default(),
            charts: ChartsConfig::default(),
            capacity: crate::capacity::CapacityConfig::default(),
            history: HistoryConfig::default(),
            tls: None,
            insecure_plaintext: false,
            auth: AuthConfig::default(),
            max_reports_per_minute: default_max_reports_per_minute(),
            schedule: ScheduleConfig::default(),
            leader_election: None,
        }
    }
}

/// Listen addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// gRPC (ReportIngest, Query, grpc.health.v1, reflection). Default `0.0.0.0:7443`.
    #[serde(default = "default_grpc")]
    pub grpc: SocketAddr,
    /// HTTP (JSON API, health, metrics). Default `0.0.0.0:8080`.
    #[serde(default = "default_http")]
    pub http: SocketAddr,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            grpc: default_grpc(),
            http: default_http(),
        }
    }
}

fn default_grpc() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7443))
}
fn default_http() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
fn default_data_dir() -> PathBuf {
    "/var/lib/caretaker".into()
}
fn default_stale_after_intervals() -> u32 {
    3
}
fn default_max_reports_per_minute() -> u32 {
    120
}
fn max_reports_per_minute<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if (1..=60_000).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "{v} is out of range 1..=60000"
        )))
    }
}
fn stale_after<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if (1..=1000).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "{v} is out of range 1..=1000"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use caretaker_core::config::parse_yaml;

    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let d: AggregatorConfig = parse_yaml("", Path::new("c")).unwrap();
        assert_eq!(d.listen.grpc, "0.0.0.0:7443".parse().unwrap());
        assert_eq!(d.stale_after_intervals, 3);
        let c: AggregatorConfig = parse_yaml(
            "listen:\n  http: 127.0.0.1:9000\nin_memory: true\nstale_after_intervals: 5\n",
            Path::new("c"),
        )
        .unwrap();
        assert_eq!(c.listen.http, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.listen.grpc, default_grpc());
        assert!(c.in_memory);
        assert_eq!(c.stale_after_intervals, 5);
    }

    #[test]
    fn tls_or_explicit_plaintext_and_tokens_or_explicit_anonymous() {
        let p = |t: &str| parse_yaml::<AggregatorConfig>(t, Path::new("c")).unwrap();
        assert_eq!(
            p("data_dir: /x\n").validate().unwrap_err().to_string(),
            "tls (cert_file, key_file, ca_file) is missing: set it, or set insecure_plaintext: true to serve without TLS"
        );
        assert_eq!(
            p("insecure_plaintext: true\n")
                .validate()
                .unwrap_err()
                .to_string(),
            "auth.tokens is empty: add a token (name, scope, file or env), or set auth.allow_anonymous: true to serve the query APIs without tokens"
        );
        p("insecure_plaintext: true\nauth: {allow_anonymous: true}\n")
            .validate()
            .unwrap();
        let c = p(
            "tls: {cert_file: /t/c, key_file: /t/k, ca_file: /t/ca}\nauth:\n  tokens:\n    - {name: ops, scope: admin, env: T}\n    - {name: ro, scope: read, file: /t/r}\n",
        );
        c.validate().unwrap();
        assert_eq!(c.auth.tokens[0].scope, crate::api::auth::Scope::Admin);
        assert!(!c.tls.unwrap().allow_shared_agent_cert);
        let c = p(
            "insecure_plaintext: true\nauth:\n  tokens:\n    - {name: both, scope: read, env: T, file: /x}\n",
        );
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "auth.tokens[0] (both) needs exactly one of file and env"
        );
        let err = parse_yaml::<AggregatorConfig>(
            "auth:\n  tokens:\n    - {name: x, scope: root, env: T}\n",
            Path::new("c"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("root") && err.contains("line 3"), "{err}");
        assert_eq!(p("").max_reports_per_minute, 120);
    }

    #[test]
    fn schedule_section_defaults_and_parses_with_line_numbers() {
        let d: AggregatorConfig = parse_yaml("in_memory: true\n", Path::new("c")).unwrap();
        assert_eq!(d.schedule.time_zone.name(), "Asia/Tokyo");
        assert_eq!(d.schedule.weekly.cron.as_str(), "0 3 * * 0");
        let c: AggregatorConfig = parse_yaml(
            "in_memory: true\nschedule:\n  time_zone: UTC\n  maintenance_window:\n    days: [saturday]\n",
            Path::new("c"),
        )
        .unwrap();
        assert_eq!(c.schedule.time_zone.name(), "UTC");
        assert_eq!(
            c.schedule.maintenance_window.days,
            [crate::schedule::config::Day::Saturday].into()
        );
        assert_eq!(c.schedule.daily.cron.as_str(), "0 3 * * *");
        let err = parse_yaml::<AggregatorConfig>(
            "schedule:\n  monthly:\n    cron: '0 3 32 * *'\n    checks: [trends]\n",
            Path::new("/etc/agg.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/etc/agg.yaml")
                && err.contains("line 3")
                && err.contains("not a valid cron expression"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_line_and_field() {
        let err = parse_yaml::<AggregatorConfig>(
            "listen:\n  grpc: nowhere\n",
            Path::new("/etc/agg.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/etc/agg.yaml") && err.contains("line 2"),
            "{err}"
        );
        let err = parse_yaml::<AggregatorConfig>("stale_after_intervals: 0\n", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("0 is out of range 1..=1000"), "{err}");
        let err = parse_yaml::<AggregatorConfig>(
            "cluster:\n  source: dump\n  interval: 1s\n",
            Path::new("c"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("at least 1m") && err.contains("line 3"),
            "{err}"
        );
        let err = parse_yaml::<AggregatorConfig>("datadir: /x\n", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("datadir"), "{err}");
    }
}
