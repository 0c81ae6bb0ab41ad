//! The agent's YAML config (`caretaker-agent run --config FILE`).
//!
//! Every option has a default, so an empty file (or none, for `stats`) is valid except
//! that `run` needs `aggregator.endpoint`. Unknown options are errors. Lines marked
//! `# default` and sections marked "defaults shown" show the default values (a test checks
//! them against [`AgentConfig::default`]); other values are examples.
//!
//! ```yaml
//! node_name: worker-1              # absent: $NODE_NAME, else the hostname
//! report_interval: 10s             # default 10s; 100ms..1h
//! listen_http: 0.0.0.0:9810        # default; /healthz, /readyz, /metrics; null turns it off
//! aggregator:
//!   endpoint: https://caretaker-aggregator.caretaker.svc:7443   # required by `run`
//!   tls:                           # required for https:// (mutual TLS)
//!     ca_file: /var/run/secrets/caretaker/tls/ca.crt     # CA of the aggregator's certificate
//!     cert_file: /var/run/secrets/caretaker/tls/tls.crt  # this agent's client certificate
//!     key_file: /var/run/secrets/caretaker/tls/tls.key
//!   insecure_plaintext: false      # default; true is required for an http:// endpoint
//!   connect_timeout: 5s            # default 5s
//!   buffer_reports: 360            # default 360 (one hour at 10 s); 1 to 8640 (a day)
//!   flush_timeout: 3s              # default 3s: wait for acks on shutdown
//!   idle_timeout: 1s               # default 1s; close the connection once all is acked; 0s: never
//! paths:                           # overridden by --path.procfs/--path.sysfs/--path.rootfs;
//!   procfs: /host/proc             #   absent: /proc, /sys and /
//!   sysfs: /host/sys
//!   rootfs: /host/root
//! filesystems:                     # the regexes' defaults: node_exporter's, see stats::filesystems
//!   mount_points_exclude: '^/(dev|proc|run|sys)($|/)'
//!   fs_types_exclude: '^(proc|sysfs|tmpfs)$'
//!   statvfs_timeout: 5s            # default 5s, per mount
//! volumes:                         # pod volume mounts, for PVC usage
//!   enabled: true                  # default true
//!   kubelet_root: /var/lib/kubelet # default: the kubelet's --root-dir default
//! images:                          # image pruning, see the images module (defaults shown)
//!   enabled: true                  # the daemon checks (and prunes) images
//!   apply: false                   # the daemon only reports what it would remove
//!   runtime: auto                  # auto | docker | containerd
//!   docker_socket: /var/run/docker.sock
//!   containerd_socket: /run/containerd/containerd.sock
//!   min_age: 168h                  # as `docker image prune -a --filter until=168h`
//!   keep: ['registry.k8s.io/pause*', 'k8s.gcr.io/pause*']
//!   keep_newest_per_repository: 0  # 0 = off
//!   high_threshold_percent: 85     # kubelet's imageGCHighThresholdPercent
//!   low_threshold_percent: 80      # kubelet's imageGCLowThresholdPercent
//!   pressure_min_age: 2m           # kubelet's imageMinimumGCAge
//!   prune_interval: 24h            # daemon: age prune this often
//!   pressure_check_interval: 1m    # daemon: disk check this often
//!   request_timeout: 30s           # per runtime API call
//!   maintenance_window:            # age prunes remove only inside it (null: any time);
//!     days: [sunday]               #   disk-pressure prunes never wait
//!     start: "03:00"
//!     duration: 2h
//!   time_zone: Asia/Tokyo
//! cleanup:                         # `cleanup --emergency` (defaults shown)
//!   log_roots: [/var/log]
//!   rotated_log_max_age: 7d
//! logs:                            # log rotation; see agent/LOGS.md
//!   check_interval: 10s            # default 10s (kubelet's containerLogMonitorInterval)
//!   state_file: /var/lib/caretaker/logrotate.status   # default; logrotate's format
//!   roots: [/var/log]              # default; nothing outside is touched
//!   logrotate_conf: /etc/logrotate.conf               # absent by default; read unchanged
//!   policies:
//!     - files: ["/var/log/containers/*.log"]
//!       daily: true
//!       rotate: 7
//!       compress: true
//!   retention:                     # applied every `interval` (default 1h)
//!     - { glob: "/var/log/*.log.gz", max_age: 30d, interval: 1h }
//!   allow_scripts: false           # default; true runs prerotate/postrotate/… scripts
//!   allow_compresscmd: false       # default; true allows a compresscmd other than gzip, zstd
//!   rotate_symlinks: false         # default
//!   compress_threads: 2            # default; threads of one compression
//!   lock_wait: 10s                 # default; the CLI waits this long for a running rotation
//!   kubelet_log_dirs: [/var/log/pods, /var/log/containers]   # default; left to the kubelet
//!   node_logrotate_conf: /etc/logrotate.conf   # default; the logs it names are left to it
//! log_check: {}                    # the daily log check: see logcheck::config
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use caretaker_core::config::{BoundedDuration, BoundedUsize, Percent, ms};
use serde::{Deserialize, Deserializer, Serialize};

use caretaker_core::error::Chain;

use crate::images::plan::{KeepList, Policy};
use crate::images::select::RuntimeChoice;
use crate::paths::HostPaths;
use crate::stats::filesystems::{
    DEFAULT_FS_TYPES_EXCLUDE, DEFAULT_MOUNT_POINTS_EXCLUDE, FilesystemFilter,
};

/// The whole agent config. Every option has a default ([`Default`], the one place the
/// default values are written; `docs/config.md` shows them), except
/// `aggregator.endpoint`, which `run` requires.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Kubernetes node name. Default: the `NODE_NAME` environment variable (set from the
    /// downward API in the DaemonSet), else the hostname.
    pub node_name: Option<String>,
    /// How often a report is collected and sent; each wait varies by ±10 % so that nodes
    /// started together do not report in lockstep. 100ms to 1h.
    pub report_interval: BoundedDuration<100, { ms::HOUR }>,
    /// Where to send reports. Required by `run`.
    pub aggregator: Option<AggregatorConfig>,
    /// Address of the daemon's HTTP endpoint for kubelet probes and Prometheus:
    /// `/healthz` (200 while the process runs), `/readyz` (200 once the first report was
    /// collected), `/metrics` (Prometheus text format). `null` (or an empty value) turns
    /// the endpoint off.
    pub listen_http: Option<SocketAddr>,
    /// Where the host's /proc, /sys and / are seen.
    pub paths: PathsConfig,
    /// Which filesystems are reported.
    pub filesystems: FilesystemsConfig,
    /// Pod volume mounts (PVC usage).
    pub volumes: VolumesConfig,
    /// Image pruning.
    pub images: ImagesConfig,
    /// The emergency cleanup's log steps.
    pub cleanup: CleanupConfig,
    /// Log rotation and retention sweeps.
    pub logs: LogsConfig,
    /// The daily log check (pattern counts of the pods' logs): `crate::logcheck::config`.
    pub log_check: crate::logcheck::config::LogCheckConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            node_name: None,
            report_interval: BoundedDuration::secs(10),
            images: ImagesConfig::default(),
            cleanup: CleanupConfig::default(),
            aggregator: None,
            listen_http: Some(SocketAddr::from(([0, 0, 0, 0], 9810))),
            paths: PathsConfig::default(),
            filesystems: FilesystemsConfig::default(),
            volumes: VolumesConfig::default(),
            logs: LogsConfig::default(),
            log_check: Default::default(),
        }
    }
}

/// The aggregator's ingest endpoint and how the report stream behaves. `endpoint` is
/// required, so the other options' defaults are [`AggregatorConfig::new`]'s.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Timeout of one connection attempt. Default 5s. 100ms to 5m.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: BoundedDuration<100, { 5 * ms::MINUTE }>,
    /// Reports kept until the aggregator acks them; when full, the oldest is dropped and
    /// counted in `reports_dropped_total`. Default 360 (an hour at the default interval);
    /// at least 1, at most [`MAX_BUFFER_REPORTS`] (a day at the default interval: a report
    /// is a few KiB, so the buffer stays within tens of MiB).
    #[serde(default)]
    pub buffer_reports: BufferReports,
    /// On SIGTERM, how long to wait for acks of buffered reports. Default 3 s, within
    /// the 5 s the agent gives itself to stop. 0s to 4s.
    #[serde(default = "default_flush_timeout")]
    pub flush_timeout: BoundedDuration<0, { 4 * ms::SECOND }>,
    /// Once every buffered report is acked and nothing was sent or received for this
    /// long, the agent closes its connection; the next report opens a new one. An open
    /// connection costs the aggregator tens of KiB (HTTP/2 and TLS buffers), so agents
    /// that hold one only while they have something to deliver keep its memory from
    /// growing with the number of nodes. Default 1s. `0s` keeps the connection open
    /// between reports (gRPC's convention: 0 disables the idle timeout). 0s to 1h.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: BoundedDuration<0, { ms::HOUR }>,
}

/// The agent's TLS files (PEM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Errors of a config that parsed but does not fit together, or of the node name.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "aggregator.endpoint {endpoint} is https:// but aggregator.tls (ca_file, cert_file, key_file) is missing"
    )]
    HttpsWithoutTls { endpoint: String },
    #[error(
        "aggregator.insecure_plaintext: true contradicts an https:// endpoint with aggregator.tls"
    )]
    PlaintextOverHttps,
    #[error("aggregator.tls is set but aggregator.endpoint {endpoint} is http://; use https://")]
    TlsOverHttp { endpoint: String },
    #[error(
        "aggregator.endpoint {endpoint} is plaintext http://: use https:// with aggregator.tls, or set aggregator.insecure_plaintext: true to send reports unencrypted"
    )]
    PlaintextNotAllowed { endpoint: String },
    #[error("{url:?} is not a URL")]
    NotAUrl {
        url: String,
        #[source]
        source: tonic::codegen::http::uri::InvalidUri,
    },
    #[error("{url:?} must look like http://host:port or https://host:port")]
    NotHostPort { url: String },
    #[error(
        "images.low_threshold_percent ({low}) must be below images.high_threshold_percent ({high})"
    )]
    Thresholds { low: u8, high: u8 },
    #[error("images.keep")]
    Keep(#[source] crate::images::plan::Error),
    #[error("no node name: NODE_NAME is unset and gethostname failed")]
    Hostname(#[source] nix::Error),
    #[error(transparent)]
    NodeName(#[from] caretaker_core::model::InvalidMessage),
}

/// A result of this module.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl AggregatorConfig {
    /// Defaults for an endpoint (which then needs `tls` or `insecure_plaintext`).
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            tls: None,
            insecure_plaintext: false,
            connect_timeout: default_connect_timeout(),
            buffer_reports: BufferReports::default(),
            flush_timeout: default_flush_timeout(),
            idle_timeout: default_idle_timeout(),
        }
    }

    /// Defaults for a plaintext `http://` endpoint (loopback tests, `standalone`).
    pub fn plaintext(endpoint: impl Into<String>) -> Self {
        Self {
            insecure_plaintext: true,
            ..Self::new(endpoint)
        }
    }

    /// The transport the options ask for: plaintext only when explicitly allowed.
    ///
    /// # Errors
    /// A sentence naming the options that do not fit together.
    pub fn transport(&self) -> Result<Transport<'_>> {
        let https = self.endpoint.starts_with("https://");
        let endpoint = || self.endpoint.clone();
        match (https, &self.tls, self.insecure_plaintext) {
            (true, Some(tls), false) => Ok(Transport::Tls(tls)),
            (false, None, true) => Ok(Transport::Plaintext),
            (true, None, _) => Err(Error::HttpsWithoutTls {
                endpoint: endpoint(),
            }),
            (true, Some(_), true) => Err(Error::PlaintextOverHttps),
            (false, Some(_), _) => Err(Error::TlsOverHttp {
                endpoint: endpoint(),
            }),
            (false, None, false) => Err(Error::PlaintextNotAllowed {
                endpoint: endpoint(),
            }),
        }
    }
}

fn endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    validate_endpoint(&s).map_err(|e| serde::de::Error::custom(Chain(&e)))?;
    Ok(s)
}

/// Checks an endpoint URL: `http://` or `https://` with a host.
///
/// # Errors
/// Says what is wrong with it.
pub(crate) fn validate_endpoint(s: &str) -> Result<()> {
    let uri: tonic::codegen::http::Uri = s.parse().map_err(|source| Error::NotAUrl {
        url: s.to_string(),
        source,
    })?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => Err(Error::NotHostPort { url: s.to_string() }),
    }
}

// `serde(default = …)` functions: `endpoint` is required, so `AggregatorConfig` has no
// `Default` to take these from.
fn default_connect_timeout() -> BoundedDuration<100, { 5 * ms::MINUTE }> {
    BoundedDuration::secs(5)
}
fn default_flush_timeout() -> BoundedDuration<0, { 4 * ms::SECOND }> {
    BoundedDuration::secs(3)
}
fn default_idle_timeout() -> BoundedDuration<0, { ms::HOUR }> {
    BoundedDuration::secs(1)
}

/// Largest `aggregator.buffer_reports`: a day of reports at the default 10 s interval.
pub const MAX_BUFFER_REPORTS: usize = 8640;

/// `aggregator.buffer_reports`: 1 to [`MAX_BUFFER_REPORTS`], default 360. A bounded
/// number whose error says what the bound means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct BufferReports(BoundedUsize<1, MAX_BUFFER_REPORTS>);

impl BufferReports {
    /// A value the program itself writes (a test's value).
    ///
    /// # Panics
    /// When `n` is out of bounds.
    #[must_use]
    pub const fn of(n: usize) -> Self {
        Self(BoundedUsize::of(n))
    }

    /// The number of reports.
    #[must_use]
    pub const fn get(self) -> usize {
        self.0.get()
    }
}

impl Default for BufferReports {
    fn default() -> Self {
        Self::of(360)
    }
}

/// A `buffer_reports` out of its range.
#[derive(Debug, thiserror::Error)]
#[error(
    "buffer_reports {0} is out of range: at least 1, at most {MAX_BUFFER_REPORTS} (a day at the default 10s interval)"
)]
pub struct BufferReportsOutOfRange(u64);

impl TryFrom<u64> for BufferReports {
    type Error = BufferReportsOutOfRange;
    fn try_from(n: u64) -> Result<Self, BufferReportsOutOfRange> {
        BoundedUsize::try_from(n)
            .map(Self)
            .map_err(|_| BufferReportsOutOfRange(n))
    }
}

impl From<BufferReports> for u64 {
    fn from(n: BufferReports) -> u64 {
        n.0.into()
    }
}

impl PartialEq<usize> for BufferReports {
    fn eq(&self, other: &usize) -> bool {
        self.get() == *other
    }
}

/// Host mount points; see [`HostPaths`]. Command-line flags take precedence.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    /// Where the host's /proc is seen; none (the default) means `/proc`.
    pub procfs: Option<PathBuf>,
    /// Where the host's /sys is seen; none (the default) means `/sys`.
    pub sysfs: Option<PathBuf>,
    /// Where the host's / is seen; none (the default) means `/`.
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemsConfig {
    /// Mount points matching this regex are left out. The default,
    /// [`DEFAULT_MOUNT_POINTS_EXCLUDE`], is node_exporter's plus /run and container mounts.
    pub mount_points_exclude: ConfigRegex,
    /// Filesystem types matching this regex are left out. The default,
    /// [`DEFAULT_FS_TYPES_EXCLUDE`], is node_exporter's.
    pub fs_types_exclude: ConfigRegex,
    /// A statvfs taking longer (dead NFS server) marks the filesystem stale. 10ms to 1m.
    pub statvfs_timeout: BoundedDuration<10, { ms::MINUTE }>,
}

impl Default for FilesystemsConfig {
    fn default() -> Self {
        Self {
            mount_points_exclude: ConfigRegex::constant(DEFAULT_MOUNT_POINTS_EXCLUDE),
            fs_types_exclude: ConfigRegex::constant(DEFAULT_FS_TYPES_EXCLUDE),
            statvfs_timeout: BoundedDuration::secs(5),
        }
    }
}

impl FilesystemsConfig {
    pub fn filter(&self) -> FilesystemFilter {
        FilesystemFilter {
            mount_points_exclude: self.mount_points_exclude.0.clone(),
            fs_types_exclude: self.fs_types_exclude.0.clone(),
        }
    }
}

/// Pod volume mounts (`volumes:`): the statvfs figures of the volumes the kubelet mounted
/// under `<kubelet_root>/pods/<pod uid>/volumes/<plugin>/<name>[/mount]`, read from the
/// host's mountinfo and stat'ed under `--path.rootfs` with `filesystems.statvfs_timeout`.
/// The aggregator maps them to PersistentVolumeClaims. Ephemeral volume types (emptyDir,
/// configMap, secret, projected, downwardAPI) are never reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VolumesConfig {
    /// Report pod volume mounts.
    pub enabled: bool,
    /// The kubelet's root directory on the host (its `--root-dir`), as mountinfo shows it.
    pub kubelet_root: PathBuf,
}

impl Default for VolumesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            kubelet_root: PathBuf::from(crate::stats::volumes::DEFAULT_KUBELET_ROOT),
        }
    }
}

impl VolumesConfig {
    /// The kubelet root to look under, or `None` when volumes are not reported.
    pub fn kubelet_root(&self) -> Option<PathBuf> {
        self.enabled.then(|| self.kubelet_root.clone())
    }
}

/// Log rotation (logrotate-compatible) and retention sweeps. See `agent/LOGS.md`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// How often the daemon checks the policies (size triggers are seen this soon; time
    /// triggers at their period). Default 10 s, as kubelet's containerLogMonitorInterval.
    /// 1 s to 1 h.
    pub check_interval: BoundedDuration<{ ms::SECOND }, { ms::HOUR }>,
    /// Last rotation per file, in logrotate's state format (an existing
    /// `/var/lib/logrotate/status` can be used as is). Default
    /// `/var/lib/caretaker/logrotate.status`; the lock is this path plus `.lock`.
    pub state_file: PathBuf,
    /// Only files whose directory resolves inside one of these are rotated. Default
    /// `[/var/log]`.
    pub roots: Vec<PathBuf>,
    /// An existing logrotate.conf, read unchanged (with its includes). Default none.
    pub logrotate_conf: Option<PathBuf>,
    /// Policies in YAML, with logrotate's directive names. Default none.
    pub policies: Vec<crate::logs::yaml::PolicyConfig>,
    /// Age-based deletion per glob. Default none.
    pub retention: Vec<crate::logs::sweep::RetentionRule>,
    /// Run prerotate/postrotate/firstaction/lastaction/preremove scripts. Default false:
    /// a block with a script is rejected with a message saying so.
    pub allow_scripts: bool,
    /// Allow `compresscmd` other than gzip and zstd (run as a child process). Default false.
    pub allow_compresscmd: bool,
    /// Rotate the target of a symlinked log (when it resolves inside `roots`). Default
    /// false: symlinks are skipped, and those under /var/log/containers are the kubelet's.
    pub rotate_symlinks: bool,
    /// Threads one compression may use. Default 2. 1 to 64 (a value outside is clamped
    /// to it).
    pub compress_threads: usize,
    /// How long the CLI waits for a running rotation to finish. Default 10 s.
    /// 0s to 1h.
    pub lock_wait: BoundedDuration<0, { ms::HOUR }>,
    /// The command that mails logs for blocks with logrotate's `mail ADDRESS`, run as
    /// `COMMAND -s SUBJECT ADDRESS` with the log (decompressed) on stdin, the way
    /// logrotate runs `/usr/bin/mail`. Default none: those blocks rotate as configured
    /// and no mail is sent (said once per load).
    pub mail_command: Option<PathBuf>,
    /// Where the kubelet keeps the container logs it rotates itself
    /// (`containerLogMaxSize`): logs below these directories are left alone and listed in
    /// the report as the kubelet's. Default `[/var/log/pods, /var/log/containers]`; `[]`
    /// turns the check off.
    pub kubelet_log_dirs: Vec<PathBuf>,
    /// The node's own logrotate config, a path on the host (read under `paths.rootfs`,
    /// together with the `logrotate.d` directory beside it): the logs it names are left
    /// alone and listed in the report as the node logrotate's. It is read for its
    /// patterns only; nothing in it runs. Default `/etc/logrotate.conf`; `null` turns the
    /// check off. When `logrotate_conf` is this same file, the agent has taken over from
    /// logrotate and nothing is left to it.
    pub node_logrotate_conf: Option<PathBuf>,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            check_interval: BoundedDuration::secs(10),
            state_file: PathBuf::from("/var/lib/caretaker/logrotate.status"),
            roots: vec![PathBuf::from("/var/log")],
            logrotate_conf: None,
            policies: Vec::new(),
            retention: Vec::new(),
            allow_scripts: false,
            allow_compresscmd: false,
            rotate_symlinks: false,
            compress_threads: 2,
            lock_wait: BoundedDuration::secs(10),
            mail_command: None,
            kubelet_log_dirs: vec![
                PathBuf::from("/var/log/pods"),
                PathBuf::from(crate::logs::rotate::KUBELET_LINK_DIR),
            ],
            node_logrotate_conf: Some(PathBuf::from("/etc/logrotate.conf")),
        }
    }
}

impl LogsConfig {
    /// `node_logrotate_conf` as the agent sees it: the host's path under `rootfs` (the
    /// host's `/` as mounted, `--path.rootfs`).
    #[must_use]
    pub fn with_host_root(mut self, rootfs: &std::path::Path) -> Self {
        self.node_logrotate_conf = self
            .node_logrotate_conf
            .map(|p| rootfs.join(p.strip_prefix("/").unwrap_or(&p)));
        self
    }
}

/// Image pruning options (`images:`). The thresholds and ages default to the kubelet's
/// image garbage collection (named in each option), the age prune to the seed's
/// `docker image prune -a --filter until=168h`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// The daemon (`run`) checks the runtimes' images every `pressure_check_interval`,
    /// reports them and prunes (see `apply`); false turns the daemon's image task off (the
    /// `prune-images` and `cleanup` commands work either way).
    pub enabled: bool,
    /// The daemon really removes images only when this is true. Off by default: the daemon
    /// only reports what it would remove (safety rule 1; the aggregator's maintenance
    /// window will later decide when it may apply). The CLI commands keep their own
    /// `--apply` flag.
    pub apply: bool,
    /// `auto` prunes every runtime whose socket answers; `docker` or `containerd` only
    /// that one.
    pub runtime: RuntimeChoice,
    /// The Docker engine's socket as the agent sees it.
    pub docker_socket: PathBuf,
    /// containerd's (CRI) socket as the agent sees it.
    pub containerd_socket: PathBuf,
    /// Unused images created at least this long ago are removed. Measured from the image's
    /// creation time, as `docker image prune --filter until=` does (a runtime keeps no
    /// reliable pull or last-use time). 0s to 3650d.
    pub min_age: ImageAge,
    /// Images with a tag or digest matching one of these globs are never removed
    /// (`*` crosses `/`). The default keeps the pause images, which every pod sandbox
    /// needs.
    #[serde(deserialize_with = "keep_globs")]
    pub keep: Vec<String>,
    /// Keep the newest N images (by creation time) of each repository; 0 turns it off.
    pub keep_newest_per_repository: usize,
    /// When the image filesystem is this full or fuller, younger unused images are removed
    /// too, least recently used first (kubelet's imageGCHighThresholdPercent); set it lower
    /// (e.g. 75) so that the agent acts before the kubelet and eviction never comes first.
    /// 1..=100.
    pub high_threshold_percent: Percent,
    /// Threshold removals stop at this usage (kubelet's imageGCLowThresholdPercent).
    /// 0..=99, below `high_threshold_percent`.
    pub low_threshold_percent: Percent,
    /// Under disk pressure, images younger than this are still kept (kubelet's
    /// imageMinimumGCAge).
    pub pressure_min_age: ImageAge,
    /// The daemon's age prune runs this often (±10 % jitter). 1m to 30d.
    pub prune_interval: BoundedDuration<{ ms::MINUTE }, { 30 * ms::DAY }>,
    /// The daemon checks the image filesystem against the thresholds this often. 5s to
    /// 1h.
    pub pressure_check_interval: BoundedDuration<{ 5 * ms::SECOND }, { ms::HOUR }>,
    /// Timeout of each runtime API call. 1s to 10m.
    pub request_timeout: BoundedDuration<{ ms::SECOND }, { 10 * ms::MINUTE }>,
    /// When the daemon's age prunes (`prune_interval`) may remove images, as the
    /// aggregator's `schedule.maintenance_window` (same fields). The default is the seed's
    /// window: a prune due outside it runs as a dry run and the removals wait
    /// for the opening (`last_prune.waiting_for_window_until`). Disk-pressure prunes are an
    /// emergency and never wait. `null`: age prunes remove whenever they are due.
    pub maintenance_window: Option<caretaker_core::window::WindowConfig>,
    /// Zone of `maintenance_window` (IANA name), the operators'.
    pub time_zone: caretaker_core::window::Zone,
}

/// An image age: 0s to 3650d.
pub(crate) type ImageAge = BoundedDuration<0, { ms::TEN_YEARS }>;

impl Default for ImagesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            apply: false,
            runtime: RuntimeChoice::Auto,
            docker_socket: "/var/run/docker.sock".into(),
            containerd_socket: "/run/containerd/containerd.sock".into(),
            min_age: ImageAge::secs(168 * 3600),
            keep: vec!["registry.k8s.io/pause*".into(), "k8s.gcr.io/pause*".into()],
            keep_newest_per_repository: 0,
            high_threshold_percent: Percent::of(85),
            low_threshold_percent: Percent::of(80),
            pressure_min_age: ImageAge::secs(120),
            prune_interval: BoundedDuration::secs(24 * 3600),
            pressure_check_interval: BoundedDuration::secs(60),
            request_timeout: BoundedDuration::secs(30),
            maintenance_window: Some(caretaker_core::window::WindowConfig::default()),
            time_zone: caretaker_core::window::Zone::default(),
        }
    }
}

impl ImagesConfig {
    /// The planning policy, with `min_age` overridden by `--min-age` when given.
    ///
    /// # Errors
    /// `low_threshold_percent` not below `high_threshold_percent`, or a bad keep glob.
    pub fn policy(&self, min_age: Option<Duration>) -> Result<Policy> {
        let (low, high) = (
            self.low_threshold_percent.get(),
            self.high_threshold_percent.get(),
        );
        if low >= high {
            return Err(Error::Thresholds { low, high });
        }
        Ok(Policy {
            min_age: min_age.unwrap_or(self.min_age.get()),
            keep: KeepList::new(&self.keep).map_err(Error::Keep)?,
            keep_newest_per_repository: self.keep_newest_per_repository,
            high_threshold_percent: f64::from(high),
            low_threshold_percent: f64::from(low),
            pressure_min_age: self.pressure_min_age.get(),
        })
    }
}

impl ImagesConfig {
    /// The daemon's image task settings, or `None` when `enabled` is false.
    ///
    /// # Errors
    /// As [`ImagesConfig::policy`].
    pub fn task_settings(&self) -> Result<Option<crate::images::daemon::TaskSettings>> {
        if !self.enabled {
            return Ok(None);
        }
        Ok(Some(crate::images::daemon::TaskSettings {
            policy: self.policy(None)?,
            apply: self.apply,
            prune_interval: self.prune_interval.get(),
            pressure_check_interval: self.pressure_check_interval.get(),
            window: self
                .maintenance_window
                .as_ref()
                .map(|w| caretaker_core::window::MaintenanceWindow::new(w, &self.time_zone)),
        }))
    }
}

fn keep_globs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    KeepList::new(&v).map_err(|e| serde::de::Error::custom(Chain(&e)))?;
    Ok(v)
}
/// What `cleanup --emergency` may do to logs (`cleanup:`). It only ever touches rotated
/// files (`*.log.1`, `*.gz`, dated archives) under these roots, never a live log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CleanupConfig {
    /// Directories searched for rotated logs (under `--path.rootfs`).
    pub log_roots: Vec<PathBuf>,
    /// Rotated logs older than this (by modification time) are past retention and deleted
    /// first. The default is the seed's retention for rotated logs. 0s to 3650d.
    pub rotated_log_max_age: BoundedDuration<0, { ms::TEN_YEARS }>,
}

impl Default for CleanupConfig {
    fn default() -> Self {
        Self {
            log_roots: vec!["/var/log".into()],
            rotated_log_max_age: BoundedDuration::secs(7 * 86400),
        }
    }
}

/// A regex option (`regex` crate syntax), compiled while the config is read so that a bad
/// one is an error naming its line; written back as its source text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConfigRegex(regex::Regex);

impl ConfigRegex {
    /// A regex the program itself writes.
    ///
    /// # Panics
    /// When `re` does not compile: a mistake in the program, not in a config file.
    #[must_use]
    pub fn constant(re: &str) -> Self {
        Self(regex::Regex::new(re).expect("constant regex"))
    }
}

/// A regex option that does not compile. The regex crate's reason is part of the
/// message (not a `source`), as serde shows only the message.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not a valid regex: {reason}")]
pub struct InvalidRegex {
    text: String,
    reason: regex::Error,
}

impl TryFrom<String> for ConfigRegex {
    type Error = InvalidRegex;
    fn try_from(text: String) -> Result<Self, InvalidRegex> {
        match regex::Regex::new(&text) {
            Ok(r) => Ok(Self(r)),
            Err(reason) => Err(InvalidRegex { text, reason }),
        }
    }
}

impl From<ConfigRegex> for String {
    fn from(r: ConfigRegex) -> String {
        r.0.as_str().to_string()
    }
}

impl std::ops::Deref for ConfigRegex {
    type Target = regex::Regex;
    fn deref(&self) -> &regex::Regex {
        &self.0
    }
}

/// The node name: the config's, else `NODE_NAME`, else the hostname.
///
/// # Errors
/// When none is available or the name is not a valid node name.
pub(crate) fn node_name(configured: Option<&str>) -> Result<String> {
    let name = match configured {
        Some(n) => n.to_string(),
        None => match std::env::var("NODE_NAME") {
            Ok(n) if !n.is_empty() => n,
            _ => nix::unistd::gethostname()
                .map_err(Error::Hostname)?
                .to_string_lossy()
                .into_owned(),
        },
    };
    caretaker_core::model::validate_node_name(&name)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use caretaker_core::config::parse_yaml;

    use super::*;

    /// The values the module doc's YAML block shows as defaults are the values of
    /// `AgentConfig::default()` (with the required endpoint filled in).
    #[test]
    fn the_documented_defaults_are_the_default_values() {
        let config = AgentConfig {
            aggregator: Some(AggregatorConfig::new(
                "https://caretaker-aggregator.caretaker.svc:7443",
            )),
            ..AgentConfig::default()
        };
        let defaults = serde_json::to_value(&config).unwrap();
        let checked = caretaker_core::config::doc::assert_documented_defaults(
            include_str!("config.rs"),
            &defaults,
        );
        assert!(checked >= 34, "only {checked} documented defaults found");
    }

    #[test]
    fn the_whole_config_serializes_and_reads_back_the_same() {
        let mut config = AgentConfig {
            aggregator: Some(AggregatorConfig::plaintext("http://127.0.0.1:7443")),
            ..AgentConfig::default()
        };
        config
            .logs
            .retention
            .push(crate::logs::sweep::RetentionRule::new(
                "/var/log/*.gz",
                Duration::from_secs(30 * 86_400),
            ));
        config.logs.policies.push(
            parse_yaml::<AgentConfig>(
                "logs:\n  policies:\n    - files: [/var/log/a.log]\n      rotate: 3\n      compress: true\n      size: 100M\n",
                Path::new("a.yaml"),
            )
            .unwrap()
            .logs
            .policies
            .remove(0),
        );
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["aggregator"]["buffer_reports"], 360);
        assert_eq!(json["logs"]["policies"][0]["size"], "100M");
        assert_eq!(json["logs"]["retention"][0]["interval"], "1h");
        assert_eq!(json["log_check"]["interval"], "5m");
        let back: AgentConfig = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
    }

    #[test]
    fn buffer_reports_is_bounded() {
        let p = |n: &str| {
            parse_yaml::<AgentConfig>(
                &format!("aggregator:\n  endpoint: http://10.0.0.1:7443\n  buffer_reports: {n}\n"),
                Path::new("a.yaml"),
            )
        };
        assert_eq!(p("8640").unwrap().aggregator.unwrap().buffer_reports, 8640);
        assert_eq!(p("1").unwrap().aggregator.unwrap().buffer_reports, 1);
        for bad in ["18446744073709551615", "8641", "0"] {
            let e = format!("{:#}", p(bad).unwrap_err());
            assert!(
                e.contains(&format!(
                    "buffer_reports {bad} is out of range: at least 1, at most 8640"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn idle_timeout_defaults_to_a_second_and_zero_turns_it_off() {
        let p = |extra: &str| {
            parse_yaml::<AgentConfig>(
                &format!("aggregator:\n  endpoint: http://10.0.0.1:7443\n{extra}"),
                Path::new("a.yaml"),
            )
            .map(|c| c.aggregator.unwrap().idle_timeout.get())
        };
        assert_eq!(p("").unwrap(), Duration::from_secs(1));
        assert_eq!(p("  idle_timeout: 0s\n").unwrap(), Duration::ZERO);
        assert_eq!(
            p("  idle_timeout: 250ms\n").unwrap(),
            Duration::from_millis(250)
        );
        let e = format!("{:#}", p("  idle_timeout: 2h\n").unwrap_err());
        assert!(e.contains("idle_timeout"), "{e}");
    }

    #[test]
    fn full_config_parses_with_units() {
        let c: AgentConfig = parse_yaml(
            "node_name: w1\nreport_interval: 500ms\naggregator:\n  endpoint: http://10.0.0.1:7443\n  buffer_reports: 5\npaths:\n  procfs: /host/proc\nfilesystems:\n  statvfs_timeout: 2s\n",
            Path::new("a.yaml"),
        )
        .unwrap();
        assert_eq!(c.report_interval, Duration::from_millis(500));
        let a = c.aggregator.unwrap();
        assert_eq!(
            (
                a.endpoint.as_str(),
                a.buffer_reports.get(),
                a.connect_timeout.get()
            ),
            ("http://10.0.0.1:7443", 5, Duration::from_secs(5))
        );
        assert_eq!(c.paths.resolve().procfs, PathBuf::from("/host/proc"));
        assert_eq!(c.paths.resolve().rootfs, PathBuf::from("/"));
        assert_eq!(c.filesystems.statvfs_timeout, Duration::from_secs(2));
    }

    #[test]
    fn errors_name_the_field_and_line() {
        let err =
            parse_yaml::<AgentConfig>("aggregator:\n  endpoint: ftp://x\n", Path::new("a.yaml"))
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("must look like http://host:port") && err.contains("line 2"),
            "{err}"
        );
        let err = parse_yaml::<AgentConfig>(
            "filesystems:\n  fs_types_exclude: '('\n",
            Path::new("a.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("is not a valid regex") && err.contains("line 2"),
            "{err}"
        );
        let err = parse_yaml::<AgentConfig>("report_interval: 10ms\n", Path::new("a.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 100ms"), "{err}");
        let err = parse_yaml::<AgentConfig>("report_intervall: 10s\n", Path::new("a.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("report_intervall"), "{err}");
    }

    #[test]
    fn plaintext_only_when_explicitly_allowed() {
        let parse = |t: &str| {
            parse_yaml::<AgentConfig>(t, Path::new("a.yaml"))
                .unwrap()
                .aggregator
                .unwrap()
        };
        let a = parse("aggregator:\n  endpoint: http://127.0.0.1:7443\n");
        assert_eq!(
            a.transport().unwrap_err().to_string(),
            "aggregator.endpoint http://127.0.0.1:7443 is plaintext http://: use https:// with aggregator.tls, or set aggregator.insecure_plaintext: true to send reports unencrypted"
        );
        let a =
            parse("aggregator:\n  endpoint: http://127.0.0.1:7443\n  insecure_plaintext: true\n");
        assert_eq!(a.transport().ok(), Some(Transport::Plaintext));
        let a = parse("aggregator:\n  endpoint: https://agg:7443\n");
        assert!(
            a.transport()
                .unwrap_err()
                .to_string()
                .contains("aggregator.tls (ca_file, cert_file, key_file) is missing")
        );
        let a = parse(
            "aggregator:\n  endpoint: https://agg:7443\n  tls:\n    ca_file: /t/ca.crt\n    cert_file: /t/tls.crt\n    key_file: /t/tls.key\n",
        );
        let Ok(Transport::Tls(t)) = a.transport() else {
            panic!("tls")
        };
        assert_eq!(t.key_file, PathBuf::from("/t/tls.key"));
        let err = parse_yaml::<AgentConfig>(
            "aggregator:\n  endpoint: https://a:1\n  tls:\n    ca_file: x\n    cert: y\n",
            Path::new("a.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cert") && err.contains("line 5"), "{err}");
    }

    #[test]
    fn logs_section_has_documented_defaults_and_named_errors() {
        let c: AgentConfig = parse_yaml("logs:\n  policies:\n    - files: [/var/log/a.log]\n      rotate: 3\n  retention:\n    - glob: /var/log/*.gz\n      max_age: 30d\n", Path::new("a.yaml")).unwrap();
        assert_eq!(c.logs.check_interval, Duration::from_secs(10));
        assert_eq!(
            c.logs.state_file,
            PathBuf::from("/var/lib/caretaker/logrotate.status")
        );
        assert_eq!(c.logs.roots, vec![PathBuf::from("/var/log")]);
        assert_eq!((c.logs.allow_scripts, c.logs.compress_threads), (false, 2));
        assert_eq!(
            c.logs.retention[0].max_age,
            Duration::from_secs(30 * 86_400)
        );
        let err = parse_yaml::<AgentConfig>("logs:\n  check_interval: 1ms\n", Path::new("a.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("at least 1s") && err.contains("line 2"),
            "{err}"
        );
        let err = parse_yaml::<AgentConfig>("logs:\n  sate_file: /x\n", Path::new("a.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sate_file"), "{err}");
    }

    #[test]
    fn images_section_has_kubelet_defaults_and_checks_thresholds() {
        let c = AgentConfig::default();
        let p = c.images.policy(None).unwrap();
        assert_eq!(
            (p.high_threshold_percent, p.low_threshold_percent),
            (85.0, 80.0)
        );
        assert_eq!(p.min_age, Duration::from_secs(168 * 3600));
        assert_eq!(
            p.keep.patterns(),
            ["registry.k8s.io/pause*", "k8s.gcr.io/pause*"]
        );
        let c: AgentConfig = parse_yaml(
            "images:\n  runtime: containerd\n  min_age: 24h\n  high_threshold_percent: 75\n  low_threshold_percent: 70\n",
            Path::new("a.yaml"),
        )
        .unwrap();
        assert_eq!(c.images.runtime, RuntimeChoice::Containerd);
        assert_eq!(
            c.images
                .policy(Some(Duration::from_secs(60)))
                .unwrap()
                .min_age,
            Duration::from_secs(60)
        );
        let c: AgentConfig = parse_yaml(
            "images:\n  high_threshold_percent: 70\n",
            Path::new("a.yaml"),
        )
        .unwrap();
        assert_eq!(
            c.images.policy(None).unwrap_err().to_string(),
            "images.low_threshold_percent (80) must be below images.high_threshold_percent (70)"
        );
        let err = parse_yaml::<AgentConfig>("images:\n  keep: ['a[']\n", Path::new("a.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is not a valid glob") && err.contains("line 2"),
            "{err}"
        );
        let err = parse_yaml::<AgentConfig>(
            "images:\n  high_threshold_percent: 120\n",
            Path::new("a.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("120 is not a percentage"), "{err}");
        let err = parse_yaml::<AgentConfig>("images:\n  runtim: docker\n", Path::new("a.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("runtim"), "{err}");
    }

    #[test]
    fn the_daemon_defaults_to_a_dry_run_and_an_http_endpoint_on_9810() {
        let c = AgentConfig::default();
        let t = c.images.task_settings().unwrap().unwrap();
        assert!(!t.apply);
        assert_eq!(
            (t.prune_interval, t.pressure_check_interval),
            (Duration::from_secs(86_400), Duration::from_secs(60))
        );
        assert_eq!(c.listen_http, Some("0.0.0.0:9810".parse().unwrap()));
        let c: AgentConfig = parse_yaml(
            "listen_http: 127.0.0.1:9999\nimages:\n  apply: true\n",
            Path::new("a.yaml"),
        )
        .unwrap();
        assert_eq!(c.listen_http, Some("127.0.0.1:9999".parse().unwrap()));
        assert!(c.images.task_settings().unwrap().unwrap().apply);
        for off in ["listen_http: null\n", "listen_http:\n", "listen_http: ~\n"] {
            let c: AgentConfig = parse_yaml(off, Path::new("a.yaml")).unwrap();
            assert_eq!(c.listen_http, None, "{off}");
        }
        let c: AgentConfig =
            parse_yaml("images:\n  enabled: false\n", Path::new("a.yaml")).unwrap();
        assert!(c.images.task_settings().unwrap().is_none());
        let err = parse_yaml::<AgentConfig>("listen_http: localhost\n", Path::new("a.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
        let err = parse_yaml::<AgentConfig>("images:\n  apply: maybe\n", Path::new("a.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn volumes_section_defaults_to_the_kubelet_root_and_can_be_turned_off() {
        let c = AgentConfig::default();
        assert_eq!(
            c.volumes.kubelet_root(),
            Some(PathBuf::from("/var/lib/kubelet"))
        );
        let c: AgentConfig = parse_yaml(
            "volumes:\n  kubelet_root: /data/kubelet\n",
            Path::new("a.yaml"),
        )
        .unwrap();
        assert_eq!(
            c.volumes.kubelet_root(),
            Some(PathBuf::from("/data/kubelet"))
        );
        let c: AgentConfig =
            parse_yaml("volumes:\n  enabled: false\n", Path::new("a.yaml")).unwrap();
        assert_eq!(c.volumes.kubelet_root(), None);
        let err = parse_yaml::<AgentConfig>("volumes:\n  kubelet_dir: /x\n", Path::new("a.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kubelet_dir") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn node_name_prefers_config_then_env() {
        assert_eq!(node_name(Some("cfg")).unwrap(), "cfg");
        assert!(node_name(Some("bad name")).is_err());
        // Without config the hostname (or NODE_NAME) is used; either way it is valid.
        assert!(!node_name(None).unwrap().is_empty());
    }
}
