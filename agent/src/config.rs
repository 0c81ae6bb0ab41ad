//! The agent's YAML config (`caretaker-agent run --config FILE`).
//!
//! Every option has a default, so an empty file (or none, for `stats`) is valid except
//! that `run` needs `aggregator.endpoint`. Unknown options are errors.
//!
//! ```yaml
//! node_name: worker-1              # default: $NODE_NAME, else the hostname
//! report_interval: 10s             # default 10s; 100ms..1h
//! aggregator:
//!   endpoint: https://caretaker-aggregator.caretaker.svc:7443
//!   tls:                           # required for https:// (mutual TLS)
//!     ca_file: /var/run/secrets/caretaker/tls/ca.crt     # CA of the aggregator's certificate
//!     cert_file: /var/run/secrets/caretaker/tls/tls.crt  # this agent's client certificate
//!     key_file: /var/run/secrets/caretaker/tls/tls.key
//!   insecure_plaintext: false      # true is required for an http:// endpoint
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
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            node_name: None,
            report_interval: default_report_interval(),
            aggregator: None,
            paths: PathsConfig::default(),
            filesystems: FilesystemsConfig::default(),
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
    /// gRPC URL of the aggregator's ingest port: `https://host:port` (with `tls`), or
    /// `http://host:port` with `insecure_plaintext: true`.
    #[serde(deserialize_with = "endpoint")]
    pub endpoint: String,
    /// Mutual TLS: the CA that signed the aggregator's certificate and this agent's
    /// client certificate and key (PEM). The files are read again at every connection,
    /// so a renewed certificate is used from the next reconnect on, without a restart.
    #[serde(default)]
    pub tls: Option<ClientTlsConfig>,
    /// Allow an `http://` endpoint: reports travel unencrypted and unauthenticated.
    /// Only for loopback tests and `standalone`. Default false.
    #[serde(default)]
    pub insecure_plaintext: bool,
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

/// The agent's TLS files (PEM).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// CA certificate(s) the aggregator's server certificate must chain to.
    pub ca_file: PathBuf,
    /// This agent's client certificate (chain). Its URI SAN `caretaker-node:<name>`
    /// says which node it may report for.
    pub cert_file: PathBuf,
    /// The private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// How the agent reaches the aggregator, checked from [`AggregatorConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport<'a> {
    /// `http://` with `insecure_plaintext: true`.
    Plaintext,
    /// `https://` with client certificate.
    Tls(&'a ClientTlsConfig),
}

impl AggregatorConfig {
    /// Defaults for an endpoint (which then needs `tls` or `insecure_plaintext`).
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            tls: None,
            insecure_plaintext: false,
            connect_timeout: default_connect_timeout(),
            buffer_reports: default_buffer_reports(),
            flush_timeout: default_flush_timeout(),
        }
    }

    /// Defaults for a plaintext `http://` endpoint (loopback tests, `standalone`).
    pub fn plaintext(endpoint: impl Into<String>) -> Self {
        Self { insecure_plaintext: true, ..Self::new(endpoint) }
    }

    /// The transport the options ask for: plaintext only when explicitly allowed.
    ///
    /// # Errors
    /// A sentence naming the options that do not fit together.
    pub fn transport(&self) -> Result<Transport<'_>, String> {
        let https = self.endpoint.starts_with("https://");
        match (https, &self.tls, self.insecure_plaintext) {
            (true, Some(tls), false) => Ok(Transport::Tls(tls)),
            (false, None, true) => Ok(Transport::Plaintext),
            (true, None, _) => Err(format!(
                "aggregator.endpoint {} is https:// but aggregator.tls (ca_file, cert_file, key_file) is missing",
                self.endpoint
            )),
            (true, Some(_), true) => Err("aggregator.insecure_plaintext: true contradicts an https:// endpoint with aggregator.tls".into()),
            (false, Some(_), _) => Err(format!(
                "aggregator.tls is set but aggregator.endpoint {} is http://; use https://",
                self.endpoint
            )),
            (false, None, false) => Err(format!(
                "aggregator.endpoint {} is plaintext http://: use https:// with aggregator.tls, or set aggregator.insecure_plaintext: true to send reports unencrypted",
                self.endpoint
            )),
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
    fn plaintext_only_when_explicitly_allowed() {
        let parse = |t: &str| parse_yaml::<AgentConfig>(t, Path::new("a.yaml")).unwrap().aggregator.unwrap();
        let a = parse("aggregator:\n  endpoint: http://127.0.0.1:7443\n");
        assert_eq!(
            a.transport().unwrap_err(),
            "aggregator.endpoint http://127.0.0.1:7443 is plaintext http://: use https:// with aggregator.tls, or set aggregator.insecure_plaintext: true to send reports unencrypted"
        );
        let a = parse("aggregator:\n  endpoint: http://127.0.0.1:7443\n  insecure_plaintext: true\n");
        assert_eq!(a.transport(), Ok(Transport::Plaintext));
        let a = parse("aggregator:\n  endpoint: https://agg:7443\n");
        assert!(a.transport().unwrap_err().contains("aggregator.tls (ca_file, cert_file, key_file) is missing"));
        let a = parse("aggregator:\n  endpoint: https://agg:7443\n  tls:\n    ca_file: /t/ca.crt\n    cert_file: /t/tls.crt\n    key_file: /t/tls.key\n");
        let Ok(Transport::Tls(t)) = a.transport() else { panic!("tls") };
        assert_eq!(t.key_file, PathBuf::from("/t/tls.key"));
        let err = parse_yaml::<AgentConfig>("aggregator:\n  endpoint: https://a:1\n  tls:\n    ca_file: x\n    cert: y\n", Path::new("a.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cert") && err.contains("line 5"), "{err}");
    }

    #[test]
    fn node_name_prefers_config_then_env() {
        assert_eq!(node_name(Some("cfg")).unwrap(), "cfg");
        assert!(node_name(Some("bad name")).is_err());
        // Without config the hostname (or NODE_NAME) is used; either way it is valid.
        assert!(!node_name(None).unwrap().is_empty());
    }
}
