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
//! ingest:                     # bounds of report ingest (defaults shown; see IngestConfig)
//!   in_flight_bytes: 8388608  # encoded reports read but not yet acked, all streams
//!   budget_wait: 30s          # then the stream ends with RESOURCE_EXHAUSTED
//!   streams_per_node: 4       # open streams per node identity
//!   max_message_bytes: 4194304
//!   burst_reports: 400        # a node's burst beyond the rate: a resent buffer
//!   stream_window_bytes: 8192       # HTTP/2 receive windows on the gRPC port
//!   connection_window_bytes: 65536
//!   commit_max_reports: 1024  # group commit: reports, bytes and wait per transaction
//!   commit_max_bytes: 8388608
//!   commit_max_wait: 2ms
//! http:                       # bounds of the HTTP listener
//!   max_connections: 256
//!   header_read_timeout: 10s  # also ends idle keep-alive connections
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
    /// Reports one node may send per minute over all its streams (bursts up to this many,
    /// or `ingest.burst_reports` if that is more);
    /// beyond it the aggregator stops reading the node's streams until the rate allows
    /// (HTTP/2 flow control holds the agent back; nothing is buffered). Default 120 (20 times the default 10 s interval). 1 to 60000.
    #[serde(
        default = "default_max_reports_per_minute",
        deserialize_with = "max_reports_per_minute"
    )]
    pub max_reports_per_minute: u32,
    /// Bounds of report ingest on the gRPC port: memory, streams, bursts, batching.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Bounds of the HTTP listener: connections and the header-read timeout.
    #[serde(default)]
    pub http: HttpConfig,
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
    #[error(
        "ingest.max_message_bytes ({max_message_bytes}) is larger than ingest.in_flight_bytes ({in_flight_bytes}): a report of that size could never be taken; raise in_flight_bytes or lower max_message_bytes"
    )]
    MessageAboveBudget {
        max_message_bytes: usize,
        in_flight_bytes: usize,
    },
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
        if self.ingest.max_message_bytes > self.ingest.in_flight_bytes {
            return Err(Error::MessageAboveBudget {
                max_message_bytes: self.ingest.max_message_bytes,
                in_flight_bytes: self.ingest.in_flight_bytes,
            });
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

/// Bounds of report ingest (issue 14). The defaults hold a reconnect storm of 5,000 nodes
/// within the Deployment's memory limit (`bench-ingest`); every bound is back-pressure
/// (a stream is not read while it waits), so nothing an agent sends is dropped by them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Encoded bytes of reports read but not yet acked, over all streams: a report that
    /// finds no room waits for it, and its stream is not read meanwhile. Default 8388608
    /// (8 MiB: ~7,000 reports of 1.2 KiB, several group commits' worth). 65536 to 1073741824.
    #[serde(
        default = "default_in_flight_bytes",
        deserialize_with = "in_flight_bytes"
    )]
    pub in_flight_bytes: usize,
    /// How long a report waits for room in `in_flight_bytes` before its stream ends with
    /// `RESOURCE_EXHAUSTED` (the agent keeps the report and resends it). Default 30s.
    /// 1s to 10m.
    #[serde(default = "default_budget_wait", deserialize_with = "budget_wait")]
    pub budget_wait: Duration,
    /// Report streams one node identity (its certificate's node) may have open at once; one
    /// more is refused with `RESOURCE_EXHAUSTED`. An agent needs one, plus one while a
    /// reconnect overlaps a stream the server has not seen close. Default 4. 1 to 64.
    #[serde(
        default = "default_streams_per_node",
        deserialize_with = "streams_per_node"
    )]
    pub streams_per_node: usize,
    /// Largest message an agent may send; a larger one ends its stream with
    /// `OUT_OF_RANGE`. A report of a large node is tens of KiB. Default 4194304 (4 MiB).
    /// 65536 to 67108864, and at most `in_flight_bytes`.
    #[serde(
        default = "default_max_message_bytes",
        deserialize_with = "max_message_bytes"
    )]
    pub max_message_bytes: usize,
    /// Reports a node may send at once beyond `max_reports_per_minute` (its burst): an
    /// agent back after an outage resends its whole buffer at once (`buffer_reports`,
    /// 360 by default), which then drains at the aggregator's speed instead of the
    /// per-minute rate. A flood from one identity gets this many at once and the rate
    /// after it. Raise it with the agents' `buffer_reports`. Default 400. 1 to 100000;
    /// below `max_reports_per_minute` the burst is that rate.
    #[serde(default = "default_burst_reports", deserialize_with = "burst_reports")]
    pub burst_reports: u32,
    /// HTTP/2 receive window of each stream on the gRPC port: what an agent may send ahead
    /// of what ingest has read. Memory: up to about twice this per connected agent (h2's
    /// receive queue and tonic's decode buffer). Default 8192. 1024 to 16777216.
    #[serde(
        default = "default_stream_window_bytes",
        deserialize_with = "window_bytes"
    )]
    pub stream_window_bytes: u32,
    /// HTTP/2 receive window of each connection on the gRPC port (all its streams).
    /// Default 65536. 65535 (HTTP/2's initial window, the least a peer can be held to)
    /// to 16777216.
    #[serde(
        default = "default_connection_window_bytes",
        deserialize_with = "connection_window_bytes"
    )]
    pub connection_window_bytes: u32,
    /// Reports written in one store transaction (one fsync) at most. Default 1024.
    /// 1 to 65536.
    #[serde(
        default = "default_commit_max_reports",
        deserialize_with = "commit_max_reports"
    )]
    pub commit_max_reports: usize,
    /// Encoded report bytes in one store transaction at most. Default 8388608 (8 MiB).
    /// 65536 to 268435456.
    #[serde(
        default = "default_commit_max_bytes",
        deserialize_with = "commit_max_bytes"
    )]
    pub commit_max_bytes: usize,
    /// Longest a report waits for more reports to share its commit. Default 2ms. 0s
    /// (commit whatever is queued at once) to 1s.
    #[serde(
        default = "default_commit_max_wait",
        deserialize_with = "commit_max_wait"
    )]
    pub commit_max_wait: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            in_flight_bytes: default_in_flight_bytes(),
            budget_wait: default_budget_wait(),
            streams_per_node: default_streams_per_node(),
            max_message_bytes: default_max_message_bytes(),
            burst_reports: default_burst_reports(),
            stream_window_bytes: default_stream_window_bytes(),
            connection_window_bytes: default_connection_window_bytes(),
            commit_max_reports: default_commit_max_reports(),
            commit_max_bytes: default_commit_max_bytes(),
            commit_max_wait: default_commit_max_wait(),
        }
    }
}

impl IngestConfig {
    /// The limits the ingest service runs with.
    pub fn limits(&self) -> crate::api::ingest::IngestLimits {
        crate::api::ingest::IngestLimits {
            in_flight_bytes: self.in_flight_bytes,
            budget_wait: self.budget_wait,
            streams_per_node: self.streams_per_node,
            max_message_bytes: self.max_message_bytes,
            burst_reports: self.burst_reports,
            stream_window_bytes: self.stream_window_bytes,
            connection_window_bytes: self.connection_window_bytes,
            commit: crate::api::commit::CommitLimits {
                max_reports: self.commit_max_reports,
                max_bytes: self.commit_max_bytes,
                max_wait: self.commit_max_wait,
            },
        }
    }
}

fn ingest_defaults() -> crate::api::ingest::IngestLimits {
    crate::api::ingest::IngestLimits::default()
}
fn default_in_flight_bytes() -> usize {
    ingest_defaults().in_flight_bytes
}
fn default_budget_wait() -> Duration {
    ingest_defaults().budget_wait
}
fn default_streams_per_node() -> usize {
    ingest_defaults().streams_per_node
}
fn default_max_message_bytes() -> usize {
    ingest_defaults().max_message_bytes
}
fn default_burst_reports() -> u32 {
    ingest_defaults().burst_reports
}
fn default_stream_window_bytes() -> u32 {
    ingest_defaults().stream_window_bytes
}
fn default_connection_window_bytes() -> u32 {
    ingest_defaults().connection_window_bytes
}
fn window_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded(d, 1024, 16 << 20)
}
fn connection_window_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded(d, 65_535, 16 << 20)
}
fn default_commit_max_reports() -> usize {
    ingest_defaults().commit.max_reports
}
fn default_commit_max_bytes() -> usize {
    ingest_defaults().commit.max_bytes
}
fn default_commit_max_wait() -> Duration {
    ingest_defaults().commit.max_wait
}

/// A whole number within `min..=max`.
fn bounded<'de, D, T>(d: D, min: T, max: T) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + PartialOrd + std::fmt::Display,
{
    let v = T::deserialize(d)?;
    if v < min || v > max {
        return Err(serde::de::Error::custom(format!(
            "{v} is out of range {min}..={max}"
        )));
    }
    Ok(v)
}
fn in_flight_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    bounded(d, 64 << 10, 1 << 30)
}
fn budget_wait<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded_duration(d, Duration::from_secs(1), Duration::from_secs(600))
}
fn streams_per_node<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    bounded(d, 1, 64)
}
fn max_message_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    bounded(d, 64 << 10, 64 << 20)
}
fn burst_reports<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded(d, 1, 100_000)
}
fn commit_max_reports<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    bounded(d, 1, 65_536)
}
fn commit_max_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    bounded(d, 64 << 10, 256 << 20)
}
fn commit_max_wait<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded_duration(d, Duration::ZERO, Duration::from_secs(1))
}

/// Bounds of the HTTP listener (JSON API, health, metrics): what idle or slow clients
/// can hold.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Connections open at once; more wait in the kernel's backlog until one closes.
    /// Default 256. 1 to 65536.
    #[serde(
        default = "default_http_max_connections",
        deserialize_with = "http_max_connections"
    )]
    pub max_connections: usize,
    /// Time a client has to send a complete request head, counted from connecting or
    /// from the previous response: slow and idle connections are closed after it.
    /// Default 10s. 1s to 10m.
    #[serde(
        default = "default_header_read_timeout",
        deserialize_with = "header_read_timeout"
    )]
    pub header_read_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_connections: default_http_max_connections(),
            header_read_timeout: default_header_read_timeout(),
        }
    }
}

impl HttpConfig {
    /// The limits the HTTP listener runs with.
    pub fn limits(&self) -> crate::api::listen::HttpLimits {
        crate::api::listen::HttpLimits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            ..crate::api::listen::HttpLimits::default()
        }
    }
}

fn default_http_max_connections() -> usize {
    crate::api::listen::HttpLimits::default().max_connections
}
fn default_header_read_timeout() -> Duration {
    crate::api::listen::HttpLimits::default().header_read_timeout
}
fn http_max_connections<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    bounded(d, 1, 65_536)
}
fn header_read_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded_duration(d, Duration::from_secs(1), Duration::from_secs(600))
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
            ingest: IngestConfig::default(),
            http: HttpConfig::default(),
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

    #[test]
    fn ingest_and_http_limits_default_parse_and_are_bounded() {
        let d: AggregatorConfig = parse_yaml("", Path::new("c")).unwrap();
        assert_eq!(
            d.ingest.limits(),
            crate::api::ingest::IngestLimits::default()
        );
        assert_eq!(d.http.limits(), crate::api::listen::HttpLimits::default());
        let c: AggregatorConfig = parse_yaml(
            "ingest:\n  in_flight_bytes: 1048576\n  budget_wait: 5s\n  streams_per_node: 2\n  max_message_bytes: 65536\n  burst_reports: 1000\n  commit_max_reports: 64\n  commit_max_bytes: 131072\n  commit_max_wait: 0s\nhttp:\n  max_connections: 32\n  header_read_timeout: 3s\n",
            Path::new("c"),
        )
        .unwrap();
        let l = c.ingest.limits();
        assert_eq!(
            (
                l.in_flight_bytes,
                l.budget_wait,
                l.streams_per_node,
                l.max_message_bytes,
                l.burst_reports
            ),
            (1 << 20, Duration::from_secs(5), 2, 65536, 1000)
        );
        assert_eq!(
            l.commit,
            crate::api::commit::CommitLimits {
                max_reports: 64,
                max_bytes: 128 << 10,
                max_wait: Duration::ZERO
            }
        );
        assert_eq!(
            (
                c.http.limits().max_connections,
                c.http.limits().header_read_timeout
            ),
            (32, Duration::from_secs(3))
        );
        let err = |t: &str| {
            parse_yaml::<AggregatorConfig>(t, Path::new("c"))
                .unwrap_err()
                .to_string()
        };
        let e = err("ingest:\n  streams_per_node: 0\n");
        assert!(
            e.contains("0 is out of range 1..=64") && e.contains("line 2"),
            "{e}"
        );
        let e = err("ingest:\n  in_flight_bytes: 1024\n");
        assert!(e.contains("1024 is out of range 65536..=1073741824"), "{e}");
        let e = err("http:\n  header_read_timeout: 0s\n");
        assert!(e.contains("out of range: at least 1s"), "{e}");
        let e = err("ingest:\n  max_wait: 1s\n");
        assert!(e.contains("max_wait"), "{e}");
        // A message that could never fit the budget.
        let c: AggregatorConfig = parse_yaml(
            "insecure_plaintext: true\nauth: {allow_anonymous: true}\ningest:\n  in_flight_bytes: 1048576\n",
            Path::new("c"),
        )
        .unwrap();
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "ingest.max_message_bytes (4194304) is larger than ingest.in_flight_bytes (1048576): a report of that size could never be taken; raise in_flight_bytes or lower max_message_bytes"
        );
    }
}
