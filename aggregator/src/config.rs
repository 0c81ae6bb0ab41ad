//! The aggregator's YAML config (`caretaker-aggregator serve --config FILE`).
//!
//! ```yaml
//! listen:
//!   grpc: 0.0.0.0:7443        # default; agents stream here, Query is served here too
//!   http: 0.0.0.0:8080        # default; JSON API, /healthz, /readyz, /metrics
//! data_dir: /var/lib/caretaker  # default; the store file lives here
//! in_memory: false            # default; true keeps everything in memory (tests, demos)
//! stale_after_intervals: 3    # default; a node is stale after this many missed intervals
//! schedule: {}                # daily/weekly/monthly runs, maintenance window, notifications:
//!                             # see crate::schedule::config for every option and default
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::schedule::config::ScheduleConfig;

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
    /// Daily/weekly/monthly runs, the maintenance window and notifications. Defaults: the
    /// seed's (03:00 Asia/Tokyo; window Sunday 03:00–05:00); see [`ScheduleConfig`].
    #[serde(default)]
    pub schedule: ScheduleConfig,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            listen: ListenConfig::default(),
            data_dir: default_data_dir(),
            in_memory: false,
            stale_after_intervals: default_stale_after_intervals(),
            schedule: ScheduleConfig::default(),
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
        assert_eq!(c.schedule.maintenance_window.days, [crate::schedule::config::Day::Saturday].into());
        assert_eq!(c.schedule.daily.cron.as_str(), "0 3 * * *");
        let err = parse_yaml::<AggregatorConfig>("schedule:\n  monthly:\n    cron: '0 3 32 * *'\n    checks: [trends]\n", Path::new("/etc/agg.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/agg.yaml") && err.contains("line 3") && err.contains("not a valid cron expression"), "{err}");
    }

    #[test]
    fn bad_values_name_line_and_field() {
        let err = parse_yaml::<AggregatorConfig>("listen:\n  grpc: nowhere\n", Path::new("/etc/agg.yaml")).unwrap_err().to_string();
        assert!(err.contains("/etc/agg.yaml") && err.contains("line 2"), "{err}");
        let err = parse_yaml::<AggregatorConfig>("stale_after_intervals: 0\n", Path::new("c")).unwrap_err().to_string();
        assert!(err.contains("0 is out of range 1..=1000"), "{err}");
        let err = parse_yaml::<AggregatorConfig>("datadir: /x\n", Path::new("c")).unwrap_err().to_string();
        assert!(err.contains("datadir"), "{err}");
    }
}
