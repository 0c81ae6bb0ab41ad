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
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use caretaker_proto::config::bounded_duration;
use serde::{Deserialize, Deserializer};

use crate::checks::ChecksConfig;
use crate::cleanup::CleanupConfig;
use crate::rounds::ClusterConfig;
use crate::signals::config::SignalsConfig;

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
    #[serde(default = "default_stale_after_intervals", deserialize_with = "stale_after")]
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
    #[serde(default)]
    pub history: HistoryConfig,
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
    #[serde(default = "default_record_interval", deserialize_with = "record_interval")]
    pub record_interval: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self { max_age: default_max_age(), max_bytes: default_max_bytes(), record_interval: default_record_interval() }
    }
}

impl HistoryConfig {
    pub fn retention(&self) -> crate::history::Retention {
        crate::history::Retention { max_age: self.max_age, max_bytes: self.max_bytes }
    }
}

fn default_max_age() -> Duration {
    crate::history::Retention::default().max_age
}
fn max_age<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded_duration(d, Duration::from_secs(86_400), Duration::from_secs(3650 * 86_400))
}
fn default_max_bytes() -> u64 {
    crate::history::Retention::default().max_bytes
}
fn default_record_interval() -> Duration {
    Duration::from_secs(3600)
}
fn record_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded_duration(d, Duration::from_secs(60), Duration::from_secs(7 * 86_400))
}

impl AggregatorConfig {
    /// What a round needs from this config.
    pub fn rounds(&self) -> crate::rounds::RoundConfig {
        crate::rounds::RoundConfig {
            cluster: self.cluster.clone(),
            checks: self.checks.clone(),
            cleanup: self.cleanup.clone(),
            signals: self.signals.clone(),
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
            history: HistoryConfig::default(),
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
        Self { grpc: default_grpc(), http: default_http() }
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
fn stale_after<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if (1..=1000).contains(&v) { Ok(v) } else { Err(serde::de::Error::custom(format!("{v} is out of range 1..=1000"))) }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use caretaker_proto::config::parse_yaml;

    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let d: AggregatorConfig = parse_yaml("", Path::new("c")).unwrap();
        assert_eq!(d.listen.grpc, "0.0.0.0:7443".parse().unwrap());
        assert_eq!(d.stale_after_intervals, 3);
        let c: AggregatorConfig =
            parse_yaml("listen:\n  http: 127.0.0.1:9000\nin_memory: true\nstale_after_intervals: 5\n", Path::new("c")).unwrap();
        assert_eq!(c.listen.http, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.listen.grpc, default_grpc());
        assert!(c.in_memory);
        assert_eq!(c.stale_after_intervals, 5);
    }

    #[test]
    fn bad_values_name_line_and_field() {
        let err = parse_yaml::<AggregatorConfig>("listen:\n  grpc: nowhere\n", Path::new("/etc/agg.yaml")).unwrap_err().to_string();
        assert!(err.contains("/etc/agg.yaml") && err.contains("line 2"), "{err}");
        let err = parse_yaml::<AggregatorConfig>("stale_after_intervals: 0\n", Path::new("c")).unwrap_err().to_string();
        assert!(err.contains("0 is out of range 1..=1000"), "{err}");
        let err = parse_yaml::<AggregatorConfig>("cluster:\n  source: dump\n  interval: 1s\n", Path::new("c")).unwrap_err().to_string();
        assert!(err.contains("at least 1m") && err.contains("line 3"), "{err}");
        let err = parse_yaml::<AggregatorConfig>("datadir: /x\n", Path::new("c")).unwrap_err().to_string();
        assert!(err.contains("datadir"), "{err}");
    }
}
