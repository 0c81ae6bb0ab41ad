//! One collection cycle: every reader of [`crate::stats`] into one [`NodeReport`], plus
//! the latest image summary of the daemon's image task, when there is one.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use caretaker_core::model::{
    AgentCost, CollectorError, ImagesSummary, LogCheckSummary, NodeReport,
};
use jiff::Timestamp;
use tokio::sync::watch;

use crate::paths::{self, HostPaths};
use crate::stats::filesystems::{self, FilesystemFilter, Statter};
use crate::stats::host::{self, HostCollector};
use crate::stats::{mountinfo, netdev, volumes};

/// Figures about the report buffer, kept by the stream and shown in each report, and the
/// collector's counters; `/metrics` reads them all.
#[derive(Debug, Default)]
pub struct BufferStats {
    pub buffered: AtomicU64,
    pub(crate) dropped_total: AtomicU64,
    /// Reports collected since the agent started (kept by the collector).
    pub(crate) collected_total: AtomicU64,
    /// Reports the aggregator acked as stored (first time or duplicate); rejected ones do
    /// not count.
    pub(crate) acked_total: AtomicU64,
    /// CPU time of the last collection cycle, in nanoseconds.
    pub(crate) last_collection_cpu_nanos: AtomicU64,
    /// Wall time of the last collection cycle, in nanoseconds.
    pub(crate) last_collection_wall_nanos: AtomicU64,
}

/// What a collector needs to know; built from the agent config.
#[derive(Debug, Clone)]
pub struct CollectorSettings {
    pub node_name: String,
    pub report_interval: Duration,
    pub paths: HostPaths,
    pub filter: FilesystemFilter,
    /// Per-mount statvfs timeout.
    pub statvfs_timeout: Duration,
    /// The kubelet's root directory on the host: pod volume mounts under its `pods/` are
    /// reported. `None` reports none.
    pub kubelet_root: Option<PathBuf>,
}

/// Collects node reports, numbering them within one agent run (`epoch`).
#[derive(Debug)]
pub struct Collector {
    settings: CollectorSettings,
    epoch: u64,
    seq: u64,
    statter: Statter,
    rates: netdev::RateTracker,
    last_network_sample: Option<Instant>,
    host: HostCollector,
    /// The log task's latest summary, when the daemon runs one.
    logs: Option<tokio::sync::watch::Receiver<Option<caretaker_core::model::LogsSummary>>>,
    buffer_stats: Arc<BufferStats>,
    last_cycle: (Duration, Duration),
    /// The image task's latest summary (see [`Collector::with_images`]).
    images: Option<watch::Receiver<Option<ImagesSummary>>>,
    /// The log check task's latest summary (see [`Collector::with_log_check`]).
    log_check: Option<watch::Receiver<Option<LogCheckSummary>>>,
}

/// An epoch for a new agent run: now, in Unix nanoseconds. A restarted agent gets a
/// larger one, so the aggregator tells its `seq = 1` from a resend of the old run.
pub(crate) fn new_epoch() -> u64 {
    let ns = Timestamp::now().as_nanosecond();
    u64::try_from(ns).unwrap_or(1).max(1)
}

impl Collector {
    pub fn new(settings: CollectorSettings, buffer_stats: Arc<BufferStats>) -> Self {
        Self {
            settings,
            epoch: new_epoch(),
            seq: 0,
            statter: Statter::default(),
            rates: netdev::RateTracker::default(),
            last_network_sample: None,
            host: HostCollector::new(),
            logs: None,
            buffer_stats,
            last_cycle: (Duration::ZERO, Duration::ZERO),
            images: None,
            log_check: None,
        }
    }

    /// Puts the latest summary published by the daemon's image task into every report.
    #[must_use]
    pub fn with_images(mut self, images: watch::Receiver<Option<ImagesSummary>>) -> Self {
        self.images = Some(images);
        self
    }

    /// Puts the latest summary published by the daemon's log check task into every report.
    #[must_use]
    pub(crate) fn with_log_check(
        mut self,
        log_check: watch::Receiver<Option<LogCheckSummary>>,
    ) -> Self {
        self.log_check = Some(log_check);
        self
    }

    pub fn node_name(&self) -> &str {
        &self.settings.node_name
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Reports carry the log task's latest summary from `logs` (see
    /// [`crate::logs::daemon`]).
    #[must_use]
    pub fn with_logs(
        mut self,
        logs: tokio::sync::watch::Receiver<Option<caretaker_core::model::LogsSummary>>,
    ) -> Self {
        self.logs = Some(logs);
        self
    }

    /// Collects the next report (seq + 1). Problems reading one source are recorded in
    /// `errors`; the other sources are still reported.
    pub async fn collect(&mut self) -> NodeReport {
        let cpu_before = host::process_cpu_time();
        let wall_before = Instant::now();
        let collected_at = Timestamp::now();
        let mut errors = Vec::new();

        let (filesystems, volumes) = match paths::read_first(&self.settings.paths.mountinfo()) {
            Ok((path, text)) => {
                let (mounts, bad) = mountinfo::parse(&text);
                errors.extend(bad.into_iter().map(|e| CollectorError {
                    collector: "filesystems".into(),
                    place: paths::place(&path, e.line),
                    message: e.reason.to_string(),
                }));
                let candidates = filesystems::candidates(&mounts, &self.settings.filter);
                let volume_candidates = match &self.settings.kubelet_root {
                    Some(root) => volumes::discover(&mounts, root),
                    None => Vec::new(),
                };
                let (rootfs, timeout) =
                    (&self.settings.paths.rootfs, self.settings.statvfs_timeout);
                // Both under one timeout: a hung volume and a hung filesystem cost one wait.
                let ((fs, fs_errs), (vols, vol_errs)) = tokio::join!(
                    self.statter.stat_all(rootfs, candidates, timeout),
                    volumes::stat_volumes(&self.statter, rootfs, volume_candidates, timeout)
                );
                errors.extend(fs_errs);
                errors.extend(vol_errs);
                (fs, vols)
            }
            Err((place, e)) => {
                errors.push(CollectorError {
                    collector: "filesystems".into(),
                    place,
                    message: e.to_string(),
                });
                (Vec::new(), Vec::new())
            }
        };

        let network = match paths::read_first(&self.settings.paths.net_dev()) {
            Ok((path, text)) => {
                let (sample, bad) = netdev::parse(&text);
                errors.extend(bad.into_iter().map(|e| CollectorError {
                    collector: "network".into(),
                    place: paths::place(&path, e.line),
                    message: e.reason.to_string(),
                }));
                let now = Instant::now();
                let elapsed = self.last_network_sample.map(|t| now - t);
                self.last_network_sample = Some(now);
                let mut ifs = self.rates.update(sample, elapsed);
                netdev::fill_operstate(&self.settings.paths.sysfs, &mut ifs);
                ifs
            }
            Err((place, e)) => {
                errors.push(CollectorError {
                    collector: "network".into(),
                    place,
                    message: e.to_string(),
                });
                Vec::new()
            }
        };

        let host = self.host.sample(&mut errors);
        let rss_bytes = self.host.own_rss_bytes();
        let agent = AgentCost {
            rss_bytes,
            cpu_seconds_total: host::own_cpu_seconds_total(),
            last_collection_cpu_seconds: self.last_cycle.0.as_secs_f64(),
            last_collection_wall_seconds: self.last_cycle.1.as_secs_f64(),
            reports_buffered: self.buffer_stats.buffered.load(Ordering::Relaxed),
            reports_dropped_total: self.buffer_stats.dropped_total.load(Ordering::Relaxed),
        };
        self.seq += 1;
        errors.truncate(caretaker_core::model::MAX_ERRORS);
        let report = NodeReport {
            node_name: self.settings.node_name.clone(),
            epoch: self.epoch,
            seq: self.seq,
            collected_at,
            report_interval_ms: u64::try_from(self.settings.report_interval.as_millis())
                .unwrap_or(u64::MAX),
            host,
            filesystems,
            network,
            agent,
            logs: self.logs.as_ref().and_then(|rx| rx.borrow().clone()),
            errors,
            images: self.images.as_ref().and_then(|rx| rx.borrow().clone()),
            volumes,
            log_check: self.log_check.as_ref().and_then(|rx| rx.borrow().clone()),
        };
        // This cycle's cost goes into the next report (it is only known now).
        self.last_cycle = (
            host::process_cpu_time().saturating_sub(cpu_before),
            wall_before.elapsed(),
        );
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buffer_stats
            .last_collection_cpu_nanos
            .store(nanos(self.last_cycle.0), Ordering::Relaxed);
        self.buffer_stats
            .last_collection_wall_nanos
            .store(nanos(self.last_cycle.1), Ordering::Relaxed);
        self.buffer_stats
            .collected_total
            .fetch_add(1, Ordering::Relaxed);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_procfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("self")).unwrap();
        std::fs::create_dir_all(dir.path().join("net")).unwrap();
        std::fs::write(
            dir.path().join("self/mountinfo"),
            "22 27 0:21 / /proc rw - proc proc rw\n27 1 254:0 / / rw - ext4 /dev/vda rw\nbroken line\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("net/dev"),
            "a|\nb|\n  eth0: 100 2 0 0 0 0 0 0 200 3 0 0 0 0 0 0\n",
        )
        .unwrap();
        dir
    }

    fn settings(procfs: &std::path::Path) -> CollectorSettings {
        CollectorSettings {
            node_name: "node-x".into(),
            report_interval: Duration::from_secs(10),
            paths: HostPaths {
                procfs: procfs.into(),
                ..HostPaths::default()
            },
            filter: FilesystemFilter::default(),
            statvfs_timeout: Duration::from_secs(5),
            kubelet_root: Some("/var/lib/kubelet".into()),
        }
    }

    #[tokio::test]
    async fn collects_from_the_configured_procfs_and_numbers_reports() {
        let procfs = fixture_procfs();
        let mut c = Collector::new(settings(procfs.path()), Arc::default());
        let r1 = c.collect().await;
        assert_eq!(
            (r1.node_name.as_str(), r1.seq, r1.report_interval_ms),
            ("node-x", 1, 10_000)
        );
        assert_eq!(
            r1.filesystems
                .iter()
                .map(|f| f.mountpoint.as_str())
                .collect::<Vec<_>>(),
            vec!["/"]
        );
        assert_eq!(r1.filesystems[0].device, "/dev/vda");
        let real = filesystems::statvfs(std::path::Path::new("/"))
            .unwrap()
            .df();
        assert_eq!(r1.filesystems[0].size_bytes, real.size_bytes);
        assert_eq!(r1.network.len(), 1);
        assert_eq!(r1.network[0].transmit_bytes_total, 200);
        assert_eq!(r1.errors.len(), 1);
        assert_eq!(
            r1.errors[0].place,
            format!("{}:3", procfs.path().join("self/mountinfo").display())
        );
        assert!(r1.agent.rss_bytes > 0);
        let r2 = c.collect().await;
        assert_eq!((r2.seq, r2.epoch), (2, r1.epoch));
        assert!(r2.agent.last_collection_wall_seconds > 0.0);
        // Same counters again: rates present and zero.
        assert_eq!(
            r2.network[0].rates.map(|r| r.receive_bytes_per_second),
            Some(0.0)
        );
    }

    #[tokio::test]
    async fn pod_volumes_and_the_image_summary_go_into_the_report() {
        let procfs = tempfile::tempdir().unwrap();
        let rootfs = tempfile::tempdir().unwrap();
        let vol = "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/pvc-9/mount";
        std::fs::create_dir_all(procfs.path().join("self")).unwrap();
        std::fs::write(
            procfs.path().join("self/mountinfo"),
            format!(
                "27 1 254:0 / / rw - ext4 /dev/vda rw\n\
                 60 27 0:70 / /var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~secret/tls rw - tmpfs tmpfs rw\n\
                 64 27 252:0 / {vol} rw - ext4 /dev/rbd0 rw\n"
            ),
        )
        .unwrap();
        std::fs::create_dir_all(rootfs.path().join(vol.trim_start_matches('/'))).unwrap();
        let mut s = settings(procfs.path());
        s.paths.rootfs = rootfs.path().into();
        let (tx, rx) = watch::channel(None);
        let stats = Arc::new(BufferStats::default());
        let mut c = Collector::new(s.clone(), Arc::clone(&stats)).with_images(rx);

        let r = c.collect().await;
        assert_eq!(r.volumes.len(), 1, "{:?}", r.errors);
        let v = &r.volumes[0];
        assert_eq!(
            (v.pod_uid.as_str(), v.plugin.as_str(), v.name.as_str()),
            ("uid-1", "kubernetes.io~csi", "pvc-9")
        );
        assert_eq!(
            (
                v.filesystem.mountpoint.as_str(),
                v.filesystem.device.as_str()
            ),
            (vol, "/dev/rbd0")
        );
        assert_eq!(
            v.filesystem.size_bytes,
            filesystems::statvfs(rootfs.path()).unwrap().df().size_bytes
        );
        assert_eq!(r.images, None);
        assert_eq!(stats.collected_total.load(Ordering::Relaxed), 1);

        let summary = caretaker_core::model::ImagesSummary {
            dry_run: true,
            checked_at: Timestamp::now(),
            runtimes: vec![],
            errors: vec![],
        };
        tx.send_replace(Some(summary.clone()));
        assert_eq!(c.collect().await.images, Some(summary));

        // volumes.enabled: false
        s.kubelet_root = None;
        let r = Collector::new(s, Arc::default()).collect().await;
        assert!(r.volumes.is_empty());
    }

    #[tokio::test]
    async fn missing_proc_files_are_errors_not_a_failed_report() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Collector::new(settings(dir.path()), Arc::default());
        let r = c.collect().await;
        assert!(r.filesystems.is_empty() && r.network.is_empty());
        assert_eq!(
            r.errors
                .iter()
                .map(|e| e.collector.as_str())
                .collect::<Vec<_>>(),
            vec!["filesystems", "network"]
        );
        assert!(r.host.memory_total_bytes > 0);
    }
}
