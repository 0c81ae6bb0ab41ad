//! The agent's YAML config (`caretaker-agent run --config FILE`).
//!
//! Every option has a default, so an empty file (or none, for `stats`) is valid except
//! that `run` needs `aggregator.endpoint`. Unknown options are errors.
//!
//! ```yaml
//! node_name: worker-1              # default: $NODE_NAME, else the hostname
//! report_interval: 10s             # default 10s; 100ms..1h
//! aggregator:
//!   endpoint: http://caretaker-aggregator.caretaker:7443
//!   connect_timeout: 5s            # default 5s
//!   buffer_reports: 360            # default 360 (one hour at 10 s)
//!   flush_timeout: 3s              # default 3s: wait for acks on shutdown
//! paths:                           # overridden by --path.procfs/--path.sysfs/--path.rootfs
//!   procfs: /host/proc
//!   sysfs: /host/sys
//!   rootfs: /host/root
//! filesystems:
//!   mount_points_exclude: '^/(dev|proc|run|sys)($|/)'
//!   fs_types_exclude: '^(proc|sysfs|tmpfs)$'
//!   statvfs_timeout: 5s            # default 5s, per mount
//! logs:                            # log rotation; see agent/LOGS.md
//!   check_interval: 10s            # default 10s (kubelet's containerLogMonitorInterval)
//!   state_file: /var/lib/caretaker/logrotate.status   # logrotate's format
//!   roots: [/var/log]              # nothing outside is touched
//!   logrotate_conf: /etc/logrotate.conf               # optional, read unchanged
//!   policies:
//!     - files: ["/var/log/containers/*.log"]
//!       daily: true
//!       rotate: 7
//!       compress: true
//!   retention:
//!     - { glob: "/var/log/*.log.gz", max_age: 30d }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use caretaker_proto::config::bounded_duration;
use regex::Regex;
use serde::{Deserialize, Deserializer};

use crate::paths::HostPaths;
use crate::stats::filesystems::{DEFAULT_FS_TYPES_EXCLUDE, DEFAULT_MOUNT_POINTS_EXCLUDE, FilesystemFilter};

/// The whole agent config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Kubernetes node name. Default: the `NODE_NAME` environment variable (set from the
    /// downward API in the DaemonSet), else the hostname.
    #[serde(default)]
    pub node_name: Option<String>,
    /// How often a report is collected and sent. Default 10 s; each wait varies by ±10 %
    /// so that nodes started together do not report in lockstep. 100 ms to 1 h.
    #[serde(default = "default_report_interval", deserialize_with = "report_interval")]
    pub report_interval: Duration,
    /// Where to send reports. Required by `run`.
    #[serde(default)]
    pub aggregator: Option<AggregatorConfig>,
    /// Where the host's /proc, /sys and / are seen.
    #[serde(default)]
    pub paths: PathsConfig,
    /// Which filesystems are reported.
    #[serde(default)]
    pub filesystems: FilesystemsConfig,
    /// Log rotation and retention sweeps.
    #[serde(default)]
    pub logs: LogsConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            node_name: None,
            report_interval: default_report_interval(),
            aggregator: None,
            paths: PathsConfig::default(),
            filesystems: FilesystemsConfig::default(),
            logs: LogsConfig::default(),
        }
    }
}

fn default_report_interval() -> Duration {
    Duration::from_secs(10)
}

fn report_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded_duration(d, Duration::from_millis(100), Duration::from_secs(3600))
}

/// The aggregator's ingest endpoint and how the report stream behaves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorConfig {
    /// gRPC URL of the aggregator's ingest port, `http://host:port`.
    #[serde(deserialize_with = "endpoint")]
    pub endpoint: String,
    /// Timeout of one connection attempt. Default 5 s.
    #[serde(default = "default_connect_timeout", deserialize_with = "connect_timeout")]
    pub connect_timeout: Duration,
    /// Reports kept until the aggregator acks them; when full, the oldest is dropped and
    /// counted in `reports_dropped_total`. Default 360 (an hour at the default interval).
    #[serde(default = "default_buffer_reports")]
    pub buffer_reports: usize,
    /// On SIGTERM, how long to wait for acks of buffered reports. Default 3 s, within
    /// the 5 s the agent gives itself to stop.
    #[serde(default = "default_flush_timeout", deserialize_with = "flush_timeout")]
    pub flush_timeout: Duration,
}

impl AggregatorConfig {
    /// Defaults for an endpoint.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            connect_timeout: default_connect_timeout(),
            buffer_reports: default_buffer_reports(),
            flush_timeout: default_flush_timeout(),
        }
    }
}

fn endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    validate_endpoint(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

/// Checks an endpoint URL: `http://` or `https://` with a host.
///
/// # Errors
/// Says what is wrong with it.
pub fn validate_endpoint(s: &str) -> Result<(), String> {
    let uri: tonic::codegen::http::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => Err(format!("{s:?} must look like http://host:port or https://host:port")),
    }
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn connect_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded_duration(d, Duration::from_millis(100), Duration::from_secs(300))
}
fn default_buffer_reports() -> usize {
    360
}
fn default_flush_timeout() -> Duration {
    Duration::from_secs(3)
}
fn flush_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded_duration(d, Duration::ZERO, Duration::from_secs(4))
}

/// Host mount points; see [`HostPaths`]. Command-line flags take precedence.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    /// Default `/proc`.
    pub procfs: Option<PathBuf>,
    /// Default `/sys`.
    pub sysfs: Option<PathBuf>,
    /// Default `/`.
    pub rootfs: Option<PathBuf>,
}

impl PathsConfig {
    /// The paths with defaults filled in.
    pub fn resolve(&self) -> HostPaths {
        let d = HostPaths::default();
        HostPaths {
            procfs: self.procfs.clone().unwrap_or(d.procfs),
            sysfs: self.sysfs.clone().unwrap_or(d.sysfs),
            rootfs: self.rootfs.clone().unwrap_or(d.rootfs),
        }
    }
}

/// Filesystem options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemsConfig {
    /// Mount points matching this regex are left out. Default
    /// [`DEFAULT_MOUNT_POINTS_EXCLUDE`] (node_exporter's, plus /run and container mounts).
    #[serde(default = "default_mp_exclude", deserialize_with = "regex")]
    pub mount_points_exclude: Regex,
    /// Filesystem types matching this regex are left out. Default
    /// [`DEFAULT_FS_TYPES_EXCLUDE`] (node_exporter's).
    #[serde(default = "default_fs_exclude", deserialize_with = "regex")]
    pub fs_types_exclude: Regex,
    /// A statvfs taking longer (dead NFS server) marks the filesystem stale. Default 5 s.
    #[serde(default = "default_statvfs_timeout", deserialize_with = "statvfs_timeout")]
    pub statvfs_timeout: Duration,
}

impl Default for FilesystemsConfig {
    fn default() -> Self {
        Self {
            mount_points_exclude: default_mp_exclude(),
            fs_types_exclude: default_fs_exclude(),
            statvfs_timeout: default_statvfs_timeout(),
        }
    }
}

impl FilesystemsConfig {
    pub fn filter(&self) -> FilesystemFilter {
        FilesystemFilter {
            mount_points_exclude: self.mount_points_exclude.clone(),
            fs_types_exclude: self.fs_types_exclude.clone(),
        }
    }
}

fn default_mp_exclude() -> Regex {
    Regex::new(DEFAULT_MOUNT_POINTS_EXCLUDE).expect("constant regex")
}
fn default_fs_exclude() -> Regex {
    Regex::new(DEFAULT_FS_TYPES_EXCLUDE).expect("constant regex")
}
fn default_statvfs_timeout() -> Duration {
    Duration::from_secs(5)
}
fn statvfs_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded_duration(d, Duration::from_millis(10), Duration::from_secs(60))
}

/// Log rotation (logrotate-compatible) and retention sweeps. See `agent/LOGS.md`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// How often the daemon checks the policies (size triggers are seen this soon; time
    /// triggers at their period). Default 10 s, as kubelet's containerLogMonitorInterval.
    /// 1 s to 1 h.
    #[serde(default = "default_check_interval", deserialize_with = "check_interval")]
    pub check_interval: Duration,
    /// Last rotation per file, in logrotate's state format (an existing
    /// `/var/lib/logrotate/status` can be used as is). Default
    /// `/var/lib/caretaker/logrotate.status`; the lock is this path plus `.lock`.
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
    /// Only files whose directory resolves inside one of these are rotated. Default
    /// `[/var/log]`.
    #[serde(default = "default_roots")]
    pub roots: Vec<PathBuf>,
    /// An existing logrotate.conf, read unchanged (with its includes). Default none.
    #[serde(default)]
    pub logrotate_conf: Option<PathBuf>,
    /// Policies in YAML, with logrotate's directive names. Default none.
    #[serde(default)]
    pub policies: Vec<crate::logs::yaml::PolicyConfig>,
    /// Age-based deletion per glob. Default none.
    #[serde(default)]
    pub retention: Vec<crate::logs::sweep::RetentionRule>,
    /// Run prerotate/postrotate/firstaction/lastaction/preremove scripts. Default false:
    /// a block with a script is rejected with a message saying so.
    #[serde(default)]
    pub allow_scripts: bool,
    /// Allow `compresscmd` other than gzip and zstd (run as a child process). Default false.
    #[serde(default)]
    pub allow_compresscmd: bool,
    /// Rotate the target of a symlinked log (when it resolves inside `roots`). Default
    /// false: symlinks are skipped, and those under /var/log/containers are the kubelet's.
    #[serde(default)]
    pub rotate_symlinks: bool,
    /// Threads one compression may use. Default 2. 1 to 64.
    #[serde(default = "default_compress_threads")]
    pub compress_threads: usize,
    /// How long the CLI waits for a running rotation to finish. Default 10 s.
    #[serde(default = "default_lock_wait", deserialize_with = "lock_wait")]
    pub lock_wait: Duration,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            check_interval: default_check_interval(),
            state_file: default_state_file(),
            roots: default_roots(),
            logrotate_conf: None,
            policies: Vec::new(),
            retention: Vec::new(),
            allow_scripts: false,
            allow_compresscmd: false,
            rotate_symlinks: false,
            compress_threads: default_compress_threads(),
            lock_wait: default_lock_wait(),
        }
    }
}

fn default_check_interval() -> Duration {
    Duration::from_secs(10)
}
fn check_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded_duration(d, Duration::from_secs(1), Duration::from_secs(3600))
}
fn default_state_file() -> PathBuf {
    PathBuf::from("/var/lib/caretaker/logrotate.status")
}
fn default_roots() -> Vec<PathBuf> {
    vec![PathBuf::from("/var/log")]
}
fn default_compress_threads() -> usize {
    2
}
fn default_lock_wait() -> Duration {
    Duration::from_secs(10)
}
fn lock_wait<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded_duration(d, Duration::ZERO, Duration::from_secs(3600))
}

fn regex<'de, D: Deserializer<'de>>(d: D) -> Result<Regex, D::Error> {
    let s = String::deserialize(d)?;
    Regex::new(&s).map_err(|e| serde::de::Error::custom(format!("{s:?} is not a valid regex: {e}")))
}

/// The node name: the config's, else `NODE_NAME`, else the hostname.
///
/// # Errors
/// When none is available or the name is not a valid node name.
pub fn node_name(configured: Option<&str>) -> Result<String, String> {
    let name = match configured {
        Some(n) => n.to_string(),
        None => match std::env::var("NODE_NAME") {
            Ok(n) if !n.is_empty() => n,
            _ => nix::unistd::gethostname()
                .map_err(|e| format!("no node name: NODE_NAME is unset and gethostname failed: {e}"))?
                .to_string_lossy()
                .into_owned(),
        },
    };
    caretaker_proto::model::validate_node_name(&name).map_err(|e| e.to_string())?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use caretaker_proto::config::parse_yaml;

    use super::*;

    #[test]
    fn full_config_parses_with_units() {
        let c: AgentConfig = parse_yaml(
            "node_name: w1\nreport_interval: 500ms\naggregator:\n  endpoint: http://10.0.0.1:7443\n  buffer_reports: 5\npaths:\n  procfs: /host/proc\nfilesystems:\n  statvfs_timeout: 2s\n",
            Path::new("a.yaml"),
        )
        .unwrap();
        assert_eq!(c.report_interval, Duration::from_millis(500));
        let a = c.aggregator.unwrap();
        assert_eq!((a.endpoint.as_str(), a.buffer_reports, a.connect_timeout), ("http://10.0.0.1:7443", 5, Duration::from_secs(5)));
        assert_eq!(c.paths.resolve().procfs, PathBuf::from("/host/proc"));
        assert_eq!(c.paths.resolve().rootfs, PathBuf::from("/"));
        assert_eq!(c.filesystems.statvfs_timeout, Duration::from_secs(2));
    }

    #[test]
    fn errors_name_the_field_and_line() {
        let err = parse_yaml::<AgentConfig>("aggregator:\n  endpoint: ftp://x\n", Path::new("a.yaml")).unwrap_err().to_string();
        assert!(err.contains("must look like http://host:port") && err.contains("line 2"), "{err}");
        let err = parse_yaml::<AgentConfig>("filesystems:\n  fs_types_exclude: '('\n", Path::new("a.yaml")).unwrap_err().to_string();
        assert!(err.contains("is not a valid regex") && err.contains("line 2"), "{err}");
        let err = parse_yaml::<AgentConfig>("report_interval: 10ms\n", Path::new("a.yaml")).unwrap_err().to_string();
        assert!(err.contains("at least 100ms"), "{err}");
        let err = parse_yaml::<AgentConfig>("report_intervall: 10s\n", Path::new("a.yaml")).unwrap_err().to_string();
        assert!(err.contains("report_intervall"), "{err}");
    }

    #[test]
    fn logs_section_has_documented_defaults_and_named_errors() {
        let c: AgentConfig = parse_yaml("logs:\n  policies:\n    - files: [/var/log/a.log]\n      rotate: 3\n  retention:\n    - glob: /var/log/*.gz\n      max_age: 30d\n", Path::new("a.yaml")).unwrap();
        assert_eq!(c.logs.check_interval, Duration::from_secs(10));
        assert_eq!(c.logs.state_file, PathBuf::from("/var/lib/caretaker/logrotate.status"));
        assert_eq!(c.logs.roots, vec![PathBuf::from("/var/log")]);
        assert_eq!((c.logs.allow_scripts, c.logs.compress_threads), (false, 2));
        assert_eq!(c.logs.retention[0].max_age, Duration::from_secs(30 * 86_400));
        let err = parse_yaml::<AgentConfig>("logs:\n  check_interval: 1ms\n", Path::new("a.yaml")).unwrap_err().to_string();
        assert!(err.contains("at least 1s") && err.contains("line 2"), "{err}");
        let err = parse_yaml::<AgentConfig>("logs:\n  sate_file: /x\n", Path::new("a.yaml")).unwrap_err().to_string();
        assert!(err.contains("sate_file"), "{err}");
    }

    #[test]
    fn node_name_prefers_config_then_env() {
        assert_eq!(node_name(Some("cfg")).unwrap(), "cfg");
        assert!(node_name(Some("bad name")).is_err());
        // Without config the hostname (or NODE_NAME) is used; either way it is valid.
        assert!(!node_name(None).unwrap().is_empty());
    }
}
