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
//!   allow_anonymous: false    # default; true: the query APIs need no token (loopback tests only)
//!   metrics_require_token: false  # default; true: /metrics needs a read token too
//! max_reports_per_minute: 120 # default; per node, over all its streams; more is slowed down
//! ingest:                     # bounds of report ingest (defaults shown; see IngestConfig)
//!   in_flight_bytes: 8388608  # encoded reports read but not yet acked, all streams
//!   budget_wait: 30s          # then the stream ends with RESOURCE_EXHAUSTED
//!   streams_per_node: 4       # open streams per node identity
//!   max_message_bytes: 4194304
//!   burst_reports: 400        # a node's burst beyond the rate: a resent buffer
//!   stream_window_bytes: 65535      # HTTP/2 receive windows on the gRPC port
//!   connection_window_bytes: 65536
//!   max_connections: 2048     # connections open at once on the gRPC port; more wait
//!   max_connections_per_source: 64 # of them from one address; more are closed
//!   max_connection_age_at_cap: 2s  # while some wait, older streams make way
//!   retry_pushback_at_cap: 10s     # and their agents wait 5-15 s before reconnecting
//!   max_connection_idle: 60s  # connections without an RPC, streams without a report: closed
//!   commit_max_reports: 1024  # group commit: reports, bytes and wait per transaction
//!   commit_max_bytes: 8388608
//!   commit_max_wait: 2ms
//! http:                       # bounds of the HTTP listener (defaults shown)
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

use caretaker_core::config::{BoundedDuration, BoundedU32, BoundedUsize, ms};
use serde::{Deserialize, Serialize};

use crate::checks::ChecksConfig;
use crate::cleanup::CleanupConfig;
use crate::leader::config::LeaderElectionConfig;
use crate::round::ClusterConfig;
use crate::schedule::config::ScheduleConfig;
use crate::signals::config::SignalsConfig;
use crate::updates::ChartsConfig;

/// The whole aggregator config. Every option has a default ([`Default`], the one place
/// the default values are written; `docs/config.md` shows them), except `tls` and
/// `auth.tokens`, which [`AggregatorConfig::validate`] requires unless turned off
/// explicitly.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregatorConfig {
    pub listen: ListenConfig,
    /// Directory of the store (`caretaker.redb`). Reports are acked only once written
    /// there.
    pub data_dir: PathBuf,
    /// Keep the store in memory instead of `data_dir` (nothing survives a restart).
    pub in_memory: bool,
    /// A node whose latest report is older than this many of its own report intervals is
    /// stale. 1 to 1000.
    pub stale_after_intervals: BoundedU32<1, 1000>,
    /// Where cluster state comes from and how often checks run.
    pub cluster: ClusterConfig,
    pub checks: ChecksConfig,
    pub cleanup: CleanupConfig,
    pub signals: SignalsConfig,
    /// Chart repositories for the chart-updates review; none by default (no lookups).
    pub charts: ChartsConfig,
    /// Request recommendations and capacity trends; VPA's defaults.
    pub capacity: crate::capacity::CapacityConfig,
    pub history: HistoryConfig,
    /// TLS on both listeners, mutual on gRPC for agents. Required unless
    /// `insecure_plaintext` is true.
    pub tls: Option<ServerTlsConfig>,
    /// Serve gRPC and HTTP without TLS: agents are then not authenticated and report
    /// for any node. Only for loopback tests.
    pub insecure_plaintext: bool,
    /// Bearer tokens of the query APIs.
    pub auth: AuthConfig,
    /// Reports one node may send per minute over all its streams (bursts up to this many,
    /// or `ingest.burst_reports` if that is more);
    /// beyond it the aggregator stops reading the node's streams until the rate allows
    /// (HTTP/2 flow control holds the agent back; nothing is buffered). The default is 20
    /// times the agents' default interval. 1 to 60000.
    pub max_reports_per_minute: BoundedU32<1, 60_000>,
    /// Bounds of report ingest on the gRPC port: memory, streams, bursts, batching.
    pub ingest: IngestConfig,
    /// Bounds of the HTTP listener: connections and the header-read timeout.
    pub http: HttpConfig,
    /// Daily/weekly/monthly runs, the maintenance window and notifications. Defaults: the
    /// seed's (03:00 Asia/Tokyo; window Sunday 03:00–05:00); see [`ScheduleConfig`].
    pub schedule: ScheduleConfig,
    /// Leader election between replicas through a Lease; absent (the default): this
    /// process serves at once, alone. See [`crate::leader`].
    pub leader_election: Option<LeaderElectionConfig>,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            listen: ListenConfig::default(),
            data_dir: "/var/lib/caretaker".into(),
            in_memory: false,
            stale_after_intervals: BoundedU32::of(
                crate::report::MergeConfig::default().stale_after_intervals,
            ),
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
            max_reports_per_minute: BoundedU32::of(120),
            ingest: IngestConfig::default(),
            http: HttpConfig::default(),
            schedule: ScheduleConfig::default(),
            leader_election: None,
        }
    }
}

/// The aggregator's TLS files (PEM). They are read again whenever one of them changes
/// (checked at each new connection), so a renewed certificate is served without a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// Server certificate (chain) for gRPC and HTTPS.
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificate(s) that agents' client certificates must chain to.
    pub ca_file: PathBuf,
    /// Accept the certificate shared by all agents (URI SAN `caretaker-node:*`), which
    /// cannot tell nodes apart. Off by default: every agent needs its own certificate
    /// with `caretaker-node:<node name>`.
    #[serde(default)]
    pub allow_shared_agent_cert: bool,
}

/// Bearer-token authentication of the HTTP JSON API and the gRPC Query service.
/// `/healthz` and `/readyz` never need a token; ingest is authenticated by mTLS.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The accepted tokens. Empty is an error unless `allow_anonymous` is true.
    pub tokens: Vec<TokenConfig>,
    /// Serve the query APIs without any token. Only for loopback tests.
    pub allow_anonymous: bool,
    /// `/metrics` needs a read token too. Off by default: Prometheus scrapes it openly;
    /// the NetworkPolicy limits who can reach it.
    pub metrics_require_token: bool,
}

/// One token: where its secret is and what it may do. The secret itself never appears
/// in the config or the log; `name` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
        if self.ingest.max_message_bytes.get() > self.ingest.in_flight_bytes.get() {
            return Err(Error::MessageAboveBudget {
                max_message_bytes: self.ingest.max_message_bytes.get(),
                in_flight_bytes: self.ingest.in_flight_bytes.get(),
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

/// Bounds of report ingest (issue 14). The defaults (those of
/// [`crate::api::ingest::IngestLimits`]) hold a reconnect storm of 5,000 nodes within the
/// Deployment's memory limit (`bench-ingest`); every bound is back-pressure (a stream is
/// not read while it waits), so nothing an agent sends is dropped by them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Encoded bytes of reports read but not yet acked, over all streams: a report that
    /// finds no room waits for it, and its stream is not read meanwhile. The default
    /// (8 MiB) holds ~7,000 reports of 1.2 KiB, several group commits' worth. 65536 to
    /// 1073741824.
    pub in_flight_bytes: BoundedUsize<{ 64 << 10 }, { 1 << 30 }>,
    /// How long a report waits for room in `in_flight_bytes` before its stream ends with
    /// `RESOURCE_EXHAUSTED` (the agent keeps the report and resends it). 1s to 10m.
    pub budget_wait: BoundedDuration<{ ms::SECOND }, { 10 * ms::MINUTE }>,
    /// Report streams one node identity (its certificate's node) may have open at once; one
    /// more is refused with `RESOURCE_EXHAUSTED`. An agent needs one, plus one while a
    /// reconnect overlaps a stream the server has not seen close. 1 to 64.
    pub streams_per_node: BoundedUsize<1, 64>,
    /// Largest message an agent may send; a larger one ends its stream with
    /// `OUT_OF_RANGE`. A report of a large node is tens of KiB. 65536 to 67108864, and at
    /// most `in_flight_bytes`.
    pub max_message_bytes: BoundedUsize<{ 64 << 10 }, { 64 << 20 }>,
    /// Reports a node may send at once beyond `max_reports_per_minute` (its burst): an
    /// agent back after an outage resends its whole buffer at once (the agents'
    /// `buffer_reports`), which then drains at the aggregator's speed instead of the
    /// per-minute rate. A flood from one identity gets this many at once and the rate
    /// after it. Raise it with the agents' `buffer_reports`. 1 to 100000; below
    /// `max_reports_per_minute` the burst is that rate.
    pub burst_reports: BoundedU32<1, 100_000>,
    /// HTTP/2 receive window of each stream on the gRPC port: what an agent may send ahead
    /// of what ingest has read. Memory: up to about this much per connection carrying
    /// reports, in h2's receive queue. 65535 (HTTP/2's initial window: a client may send
    /// that much before it has the server's settings, and h2 can stall a stream whose
    /// window shrinks below it, hyperium/h2#630) to 16777216.
    pub stream_window_bytes: BoundedU32<65_535, { 16 << 20 }>,
    /// HTTP/2 receive window of each connection on the gRPC port (all its streams).
    /// 65535 (HTTP/2's initial window, the least a peer can be held to) to 16777216.
    pub connection_window_bytes: BoundedU32<65_535, { 16 << 20 }>,
    /// Connections open at once on the gRPC port (agents and query clients). At the cap
    /// the port stops accepting: a new connection waits in the kernel's accept queue (its
    /// TLS handshake waits), first come first served, until one closes. An agent holds a
    /// connection only while it delivers reports (its `idle_timeout`); each connection
    /// carrying reports is ~70 KiB of the aggregator's memory. 1 to 1048576.
    pub max_connections: BoundedUsize<1, { 1 << 20 }>,
    /// Of `max_connections`, those one source address may hold at once; a connection
    /// beyond it is closed as soon as it is accepted. So one client, with or without
    /// credentials, cannot take the slots from the agents (each agent needs one, two while
    /// a reconnect overlaps). Behind a NAT that hides the agents' addresses (not the case
    /// for agents reaching the aggregator's Service inside the cluster), raise it to
    /// `max_connections`. 1 to 1048576.
    pub max_connections_per_source: BoundedUsize<1, { 1 << 20 }>,
    /// While connections wait at `max_connections`, a report stream open this long ends
    /// after the report it is on (status OK, after the acks of what it sent); its agent
    /// comes back after `retry_pushback_at_cap` and resends the rest. So agents resending
    /// long backlogs take turns. Shorter: fairer, more TLS handshakes. 100ms to 1h.
    pub max_connection_age_at_cap: BoundedDuration<100, { ms::HOUR }>,
    /// How long an agent whose stream made way waits before it reconnects (told in gRPC's
    /// `grpc-retry-pushback-ms` trailer): half to one and a half times this, at random.
    /// Agents with long backlogs stay out of the accept queue meanwhile, so an agent with a
    /// fresh report finds the queue short. 0s to 5m.
    pub retry_pushback_at_cap: BoundedDuration<0, { 5 * ms::MINUTE }>,
    /// A connection on the gRPC port without an RPC for this long is closed, and an agent
    /// stream without a report for this long ends (status OK; the agent reconnects at its
    /// next report), so clients that hold a connection and say nothing do not keep
    /// `max_connections` slots from the agents (gRPC's `MaxConnectionIdle`). Health and
    /// reflection RPCs (open to anybody) and refused RPCs do not keep a connection open: a
    /// health check or refused RPC only while in flight, a health `Watch` or reflection
    /// stream not at all; an agent stream whose acks are not taken for this long ends too.
    /// Longer than the agents' report interval. 1s to 1h.
    pub max_connection_idle: BoundedDuration<{ ms::SECOND }, { ms::HOUR }>,
    /// Reports written in one store transaction (one fsync) at most. 1 to 65536.
    pub commit_max_reports: BoundedUsize<1, 65_536>,
    /// Encoded report bytes in one store transaction at most. 65536 to 268435456.
    pub commit_max_bytes: BoundedUsize<{ 64 << 10 }, { 256 << 20 }>,
    /// Longest a report waits for more reports to share its commit. 0s (commit whatever
    /// is queued at once) to 1s.
    pub commit_max_wait: BoundedDuration<0, { ms::SECOND }>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        let d = crate::api::ingest::IngestLimits::default();
        Self {
            in_flight_bytes: BoundedUsize::of(d.in_flight_bytes),
            budget_wait: BoundedDuration::of(d.budget_wait),
            streams_per_node: BoundedUsize::of(d.streams_per_node),
            max_message_bytes: BoundedUsize::of(d.max_message_bytes),
            burst_reports: BoundedU32::of(d.burst_reports),
            stream_window_bytes: BoundedU32::of(d.stream_window_bytes),
            connection_window_bytes: BoundedU32::of(d.connection_window_bytes),
            max_connections: BoundedUsize::of(d.max_connections),
            max_connections_per_source: BoundedUsize::of(d.max_connections_per_source),
            max_connection_age_at_cap: BoundedDuration::of(d.max_connection_age_at_cap),
            retry_pushback_at_cap: BoundedDuration::of(d.retry_pushback_at_cap),
            max_connection_idle: BoundedDuration::of(d.max_connection_idle),
            commit_max_reports: BoundedUsize::of(d.commit.max_reports),
            commit_max_bytes: BoundedUsize::of(d.commit.max_bytes),
            commit_max_wait: BoundedDuration::of(d.commit.max_wait),
        }
    }
}

impl IngestConfig {
    /// The limits the ingest service runs with.
    pub fn limits(&self) -> crate::api::ingest::IngestLimits {
        crate::api::ingest::IngestLimits {
            in_flight_bytes: self.in_flight_bytes.get(),
            budget_wait: self.budget_wait.get(),
            streams_per_node: self.streams_per_node.get(),
            max_message_bytes: self.max_message_bytes.get(),
            burst_reports: self.burst_reports.get(),
            stream_window_bytes: self.stream_window_bytes.get(),
            connection_window_bytes: self.connection_window_bytes.get(),
            max_connections: self.max_connections.get(),
            max_connections_per_source: self.max_connections_per_source.get(),
            max_connection_age_at_cap: self.max_connection_age_at_cap.get(),
            retry_pushback_at_cap: self.retry_pushback_at_cap.get(),
            max_connection_idle: self.max_connection_idle.get(),
            commit: crate::api::commit::CommitLimits {
                max_reports: self.commit_max_reports.get(),
                max_bytes: self.commit_max_bytes.get(),
                max_wait: self.commit_max_wait.get(),
            },
        }
    }
}

/// Bounds of the HTTP listener (JSON API, health, metrics): what idle or slow clients
/// can hold. The defaults are [`crate::api::listen::HttpLimits`]'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Connections open at once; more wait in the kernel's backlog until one closes
    /// (with TLS, up to 64 more are accepted for their handshake meanwhile). 1 to 65536.
    pub max_connections: BoundedUsize<1, 65_536>,
    /// Time a client has to send a complete request head, counted from connecting or
    /// from the previous response: slow and idle connections are closed after it.
    /// 1s to 10m.
    pub header_read_timeout: BoundedDuration<{ ms::SECOND }, { 10 * ms::MINUTE }>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        let d = crate::api::listen::HttpLimits::default();
        Self {
            max_connections: BoundedUsize::of(d.max_connections),
            header_read_timeout: BoundedDuration::of(d.header_read_timeout),
        }
    }
}

impl HttpConfig {
    /// The limits the HTTP listener runs with.
    pub fn limits(&self) -> crate::api::listen::HttpLimits {
        crate::api::listen::HttpLimits {
            max_connections: self.max_connections.get(),
            header_read_timeout: self.header_read_timeout.get(),
            ..crate::api::listen::HttpLimits::default()
        }
    }
}

/// Report history options. The retention defaults are
/// [`crate::store::history::Retention`]'s: a year of daily reports plus a month to
/// compare with, and 1 GiB.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Reports older than this are deleted. 1d to 3650d.
    pub max_age: BoundedDuration<{ ms::DAY }, { ms::TEN_YEARS }>,
    /// The oldest reports are deleted while the stored (compressed) reports exceed this
    /// many bytes.
    pub max_bytes: u64,
    /// A round's merged report is recorded when the last record is at least this old.
    /// 1m to 7d.
    pub record_interval: BoundedDuration<{ ms::MINUTE }, { 7 * ms::DAY }>,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        let d = crate::store::history::Retention::default();
        Self {
            max_age: BoundedDuration::of(d.max_age),
            max_bytes: d.max_bytes,
            record_interval: BoundedDuration::secs(3600),
        }
    }
}

impl HistoryConfig {
    pub fn retention(&self) -> crate::store::history::Retention {
        crate::store::history::Retention {
            max_age: self.max_age.get(),
            max_bytes: self.max_bytes,
        }
    }
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

/// Listen addresses.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// gRPC (ReportIngest, Query, grpc.health.v1, reflection).
    pub grpc: SocketAddr,
    /// HTTP (JSON API, health, metrics).
    pub http: SocketAddr,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            grpc: SocketAddr::from(([0, 0, 0, 0], 7443)),
            http: SocketAddr::from(([0, 0, 0, 0], 8080)),
        }
    }
}

#[cfg(test)]
mod tests {
    /// The values the module doc's YAML block shows as defaults (lines marked `# default`,
    /// and every line of the sections marked "defaults shown") are the values of
    /// `AggregatorConfig::default()`: the block cannot drift from the code.
    #[test]
    fn the_documented_defaults_are_the_default_values() {
        let defaults = serde_json::to_value(AggregatorConfig::default()).unwrap();
        let checked = caretaker_core::config::doc::assert_documented_defaults(
            include_str!("config.rs"),
            &defaults,
        );
        assert!(checked >= 24, "only {checked} documented defaults found");
    }

    use std::path::Path;
    use std::time::Duration;

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
        assert_eq!(c.listen.grpc, ListenConfig::default().grpc);
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

    #[test]
    fn the_grpc_connection_cap_parses_and_is_bounded() {
        let c: AggregatorConfig =
            parse_yaml("ingest:\n  max_connections: 3\n", Path::new("c")).unwrap();
        assert_eq!(c.ingest.limits().max_connections, 3);
        let d: AggregatorConfig = parse_yaml("", Path::new("c")).unwrap();
        assert_eq!(d.ingest.max_connections, 2048);
        let err = parse_yaml::<AggregatorConfig>("ingest:\n  max_connections: 0\n", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_connections"), "{err}");
    }
}
