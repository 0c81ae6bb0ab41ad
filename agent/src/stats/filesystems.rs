//! Filesystem figures: which mounts count, statvfs with a per-mount timeout, df maths.
//!
//! Mounts come from the host's mountinfo ([`super::mountinfo`]); pseudo filesystems are
//! left out by [`FilesystemFilter`]; mounts of the same filesystem (same `major:minor`,
//! whatever their root: bind mounts, a subvolume mounted twice) are counted once, under
//! their shortest mount point. Each mount point is stat'ed under the rootfs prefix
//! (`--path.rootfs`), so a pod with the host's `/` mounted at `/host/root` reports the host.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caretaker_core::model::{CollectorError, Filesystem};
use regex::Regex;

use super::mountinfo::MountInfo;

/// node_exporter's default `--collector.filesystem.mount-points-exclude`, extended with
/// `/run` (tmpfs for runtime state) and the per-container and per-pod mounts of Docker,
/// containerd, CRI-O/Podman and the kubelet, which are not filesystems of the node.
pub(crate) const DEFAULT_MOUNT_POINTS_EXCLUDE: &str = "^/(dev|proc|run|sys|var/lib/docker/.+|var/lib/containerd/.+|var/lib/containers/storage/.+|var/lib/kubelet/pods/.+)($|/)";

/// node_exporter's default `--collector.filesystem.fs-types-exclude` (Linux), plus
/// `efivarfs` and `fuse.lxcfs`: kernel interfaces and read-only images that never fill up.
pub(crate) const DEFAULT_FS_TYPES_EXCLUDE: &str = "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|efivarfs|fuse\\.lxcfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$";

/// Which mounts are left out of the report.
#[derive(Debug, Clone)]
pub struct FilesystemFilter {
    pub(crate) mount_points_exclude: Regex,
    pub(crate) fs_types_exclude: Regex,
}

impl Default for FilesystemFilter {
    fn default() -> Self {
        Self {
            mount_points_exclude: Regex::new(DEFAULT_MOUNT_POINTS_EXCLUDE).expect("constant regex"),
            fs_types_exclude: Regex::new(DEFAULT_FS_TYPES_EXCLUDE).expect("constant regex"),
        }
    }
}

impl FilesystemFilter {
    /// True when the mount is reported.
    pub fn accepts(&self, m: &MountInfo) -> bool {
        !self.mount_points_exclude.is_match(&m.mount_point)
            && !self.fs_types_exclude.is_match(&m.fstype)
    }
}

/// One filesystem to stat: the mounts of one `major:minor` that passed the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub device_id: String,
    pub device: String,
    pub fstype: String,
    /// Shortest first (then alphabetical); the first one is stat'ed and reported.
    pub mountpoints: Vec<String>,
    pub read_only: bool,
}

/// Applies the filter and groups mounts by device ID, shortest mount point first.
/// The result is sorted by that mount point.
pub(crate) fn candidates(mounts: &[MountInfo], filter: &FilesystemFilter) -> Vec<Candidate> {
    let mut by_dev: BTreeMap<(u32, u32), Vec<&MountInfo>> = BTreeMap::new();
    for m in mounts.iter().filter(|m| filter.accepts(m)) {
        by_dev.entry((m.major, m.minor)).or_default().push(m);
    }
    let mut out: Vec<Candidate> = by_dev
        .into_values()
        .map(|mut ms| {
            ms.sort_by(|a, b| {
                a.mount_point
                    .len()
                    .cmp(&b.mount_point.len())
                    .then_with(|| a.mount_point.cmp(&b.mount_point))
            });
            ms.dedup_by(|a, b| a.mount_point == b.mount_point);
            let first = ms[0];
            Candidate {
                device_id: first.device_id(),
                device: first.source.clone(),
                fstype: first.fstype.clone(),
                read_only: first.read_only(),
                mountpoints: ms.iter().map(|m| m.mount_point.clone()).collect(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.mountpoints[0].cmp(&b.mountpoints[0]));
    out
}

/// The statvfs(3) fields the report needs, in the filesystem's units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatVfs {
    /// f_frsize: the unit of the block counts.
    pub fragment_size: u64,
    pub blocks: u64,
    pub(crate) blocks_free: u64,
    /// Free blocks available to unprivileged users (free minus reserved).
    pub(crate) blocks_available: u64,
    pub files: u64,
    pub files_free: u64,
}

/// Figures derived from a [`StatVfs`] the way `df` derives them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DfFigures {
    pub size_bytes: u64,
    pub free_bytes: u64,
    pub avail_bytes: u64,
    pub files: u64,
    pub files_free: u64,
    /// used / (used + avail) × 100 with used = size − free: reserved blocks count neither
    /// as used nor as available, exactly as GNU df's Use%. 0 for an empty filesystem.
    pub used_percent: f64,
    /// (files − files_free) / files × 100; `None` when the filesystem reports 0 inodes
    /// (btrfs, many FUSE filesystems), so no 0 % or NaN is invented.
    pub files_used_percent: Option<f64>,
}

impl StatVfs {
    /// df's figures. Saturating arithmetic: a filesystem reporting more free than total
    /// blocks (seen on some network filesystems) gives 0 used, not an overflow.
    pub fn df(&self) -> DfFigures {
        let size_bytes = self.blocks.saturating_mul(self.fragment_size);
        let free_bytes = self.blocks_free.saturating_mul(self.fragment_size);
        let avail_bytes = self.blocks_available.saturating_mul(self.fragment_size);
        let used = self.blocks.saturating_sub(self.blocks_free);
        let denominator = used.saturating_add(self.blocks_available);
        let used_percent = if denominator == 0 {
            0.0
        } else {
            used as f64 * 100.0 / denominator as f64
        };
        let files_used_percent = (self.files > 0)
            .then(|| self.files.saturating_sub(self.files_free) as f64 * 100.0 / self.files as f64);
        DfFigures {
            size_bytes,
            free_bytes,
            avail_bytes,
            files: self.files,
            files_free: self.files_free,
            used_percent,
            files_used_percent,
        }
    }
}

/// statvfs(3) of a path.
///
/// # Errors
/// The errno statvfs returned.
pub fn statvfs(path: &Path) -> nix::Result<StatVfs> {
    let s = nix::sys::statvfs::statvfs(path)?;
    #[allow(clippy::unnecessary_cast)] // the field types differ between libcs
    let fragment_size = if s.fragment_size() > 0 {
        s.fragment_size() as u64
    } else {
        s.block_size() as u64
    };
    #[allow(clippy::unnecessary_cast)]
    Ok(StatVfs {
        fragment_size,
        blocks: s.blocks() as u64,
        blocks_free: s.blocks_free() as u64,
        blocks_available: s.blocks_available() as u64,
        files: s.files() as u64,
        files_free: s.files_free() as u64,
    })
}

/// `mountpoint` seen under `rootfs` (`/host/root` + `/var/log`).
pub(crate) fn under_root(rootfs: &Path, mountpoint: &str) -> PathBuf {
    rootfs.join(mountpoint.trim_start_matches('/'))
}

/// Stats every candidate, each on a blocking thread with its own timeout.
///
/// A statvfs that does not return in time (a dead NFS server) marks the filesystem
/// `stale`. Its thread cannot be cancelled, so the mount is remembered as in flight and not
/// stat'ed again until that call returns: a hung mount costs one thread, not one per cycle
/// (node_exporter does the same with its "stuck mounts").
#[derive(Debug, Clone)]
pub(crate) struct Statter {
    in_flight: Arc<Mutex<HashSet<PathBuf>>>,
    stat: fn(&Path) -> nix::Result<StatVfs>,
}

impl Default for Statter {
    fn default() -> Self {
        Self {
            in_flight: Arc::default(),
            stat: statvfs,
        }
    }
}

impl Statter {
    /// A statter with another stat function (tests: one that hangs).
    #[cfg(test)]
    pub(crate) fn with_stat_fn(stat: fn(&Path) -> nix::Result<StatVfs>) -> Self {
        Self {
            in_flight: Arc::default(),
            stat,
        }
    }

    /// Stats all candidates concurrently.
    pub(crate) async fn stat_all(
        &self,
        rootfs: &Path,
        candidates: Vec<Candidate>,
        timeout: Duration,
    ) -> (Vec<Filesystem>, Vec<CollectorError>) {
        let mut tasks = Vec::with_capacity(candidates.len());
        for c in candidates {
            let path = under_root(rootfs, &c.mountpoints[0]);
            let fresh = self
                .in_flight
                .lock()
                .map(|mut s| s.insert(path.clone()))
                .unwrap_or(false);
            let handle = fresh.then(|| {
                let in_flight = Arc::clone(&self.in_flight);
                let path = path.clone();
                let stat = self.stat;
                tokio::task::spawn_blocking(move || {
                    let r = stat(&path);
                    if let Ok(mut s) = in_flight.lock() {
                        s.remove(&path);
                    }
                    r
                })
            });
            tasks.push((c, path, handle));
        }
        let mut out = Vec::with_capacity(tasks.len());
        let mut errors = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        for (c, path, handle) in tasks {
            let result = match handle {
                None => Err("statvfs of an earlier cycle has not returned yet".to_string()),
                Some(h) => match tokio::time::timeout_at(deadline, h).await {
                    Ok(Ok(Ok(s))) => Ok(s),
                    Ok(Ok(Err(errno))) => {
                        errors.push(CollectorError {
                            collector: "filesystems".into(),
                            place: path.display().to_string(),
                            message: format!("statvfs: {}", errno.desc()),
                        });
                        continue;
                    }
                    Ok(Err(join)) => Err(format!("statvfs task failed: {join}")),
                    Err(_) => Err(format!(
                        "statvfs did not return within {}",
                        humantime::format_duration(timeout)
                    )),
                },
            };
            let (figures, stale) = match result {
                Ok(s) => (s.df(), false),
                Err(message) => {
                    errors.push(CollectorError {
                        collector: "filesystems".into(),
                        place: path.display().to_string(),
                        message,
                    });
                    (StatVfs::default().df(), true)
                }
            };
            out.push(Filesystem {
                device: c.device,
                fstype: c.fstype,
                mountpoint: c.mountpoints[0].clone(),
                mountpoints: c.mountpoints,
                device_id: c.device_id,
                read_only: c.read_only,
                size_bytes: figures.size_bytes,
                free_bytes: figures.free_bytes,
                avail_bytes: figures.avail_bytes,
                files: figures.files,
                files_free: figures.files_free,
                used_percent: figures.used_percent,
                files_used_percent: if stale {
                    None
                } else {
                    figures.files_used_percent
                },
                stale,
            });
        }
        (out, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::mountinfo;

    fn mounts(text: &str) -> Vec<MountInfo> {
        let (m, e) = mountinfo::parse(text);
        assert!(e.is_empty(), "{e:?}");
        m
    }

    const HOST: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw
40 27 0:40 / /run rw,nosuid - tmpfs tmpfs rw
41 27 254:0 /srv/data /mnt/bind rw,relatime - ext4 /dev/vda rw
42 27 8:17 / /var/lib/docker rw shared:3 - xfs /dev/sdb1 rw
43 42 0:60 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw
44 27 8:17 / /data ro shared:3 - xfs /dev/sdb1 rw
45 27 0:61 / /tmp rw - tmpfs tmpfs rw
46 27 0:62 / /var/lib/kubelet/pods/uid/volumes/kubernetes.io~empty-dir/x rw - tmpfs tmpfs rw
47 27 0:63 / /mnt/my\\040disk rw - ext4 /dev/sdc rw
";

    #[test]
    fn pseudo_filesystems_are_excluded_and_same_device_counted_once_under_shortest_mount() {
        let c = candidates(&mounts(HOST), &FilesystemFilter::default());
        let got: Vec<(&str, &str, Vec<&str>)> = c
            .iter()
            .map(|c| {
                (
                    c.device_id.as_str(),
                    c.fstype.as_str(),
                    c.mountpoints.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("254:0", "ext4", vec!["/", "/mnt/bind"]),
                ("8:17", "xfs", vec!["/data", "/var/lib/docker"]),
                ("0:63", "ext4", vec!["/mnt/my disk"]),
                ("0:61", "tmpfs", vec!["/tmp"]),
            ]
        );
        // Read-only follows the reported (shortest) mount.
        assert!(c[1].read_only);
        assert!(!c[0].read_only);
    }

    #[test]
    fn filter_is_configurable() {
        let f = FilesystemFilter {
            mount_points_exclude: Regex::new("^/mnt($|/)").unwrap(),
            fs_types_exclude: Regex::new("^(proc|sysfs|tmpfs|devtmpfs|cgroup2|overlay)$").unwrap(),
        };
        let c = candidates(&mounts(HOST), &f);
        let mps: Vec<Vec<&str>> = c
            .iter()
            .map(|c| c.mountpoints.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(mps, vec![vec!["/"], vec!["/data", "/var/lib/docker"]]);
    }

    #[test]
    fn df_percentages_exclude_reserved_blocks() {
        // 1000 blocks of 4 KiB, 400 free of which 50 reserved: used 600, avail 350.
        let s = StatVfs {
            fragment_size: 4096,
            blocks: 1000,
            blocks_free: 400,
            blocks_available: 350,
            files: 200,
            files_free: 150,
        };
        let d = s.df();
        assert_eq!(d.size_bytes, 4_096_000);
        assert_eq!(d.free_bytes, 1_638_400);
        assert_eq!(d.avail_bytes, 1_433_600);
        assert_eq!(d.used_percent, 600.0 * 100.0 / 950.0);
        // df prints the ceiling: 63.157… → 64 %.
        assert_eq!(d.used_percent.ceil(), 64.0);
        assert_eq!(d.files_used_percent, Some(25.0));
    }

    #[test]
    fn zero_inode_and_empty_filesystems_give_no_nan() {
        let btrfs = StatVfs {
            fragment_size: 4096,
            blocks: 100,
            blocks_free: 100,
            blocks_available: 100,
            files: 0,
            files_free: 0,
        };
        let d = btrfs.df();
        assert_eq!(d.files_used_percent, None);
        assert_eq!(d.used_percent, 0.0);
        let empty = StatVfs::default().df();
        assert_eq!(empty.used_percent, 0.0);
        assert!(!empty.used_percent.is_nan());
        let full = StatVfs {
            fragment_size: 512,
            blocks: 10,
            blocks_free: 1,
            blocks_available: 0,
            files: 5,
            files_free: 0,
        };
        assert_eq!(full.df().used_percent, 100.0);
        assert_eq!(full.df().files_used_percent, Some(100.0));
    }

    #[test]
    fn more_free_than_total_does_not_overflow() {
        let odd = StatVfs {
            fragment_size: 4096,
            blocks: 10,
            blocks_free: 20,
            blocks_available: 20,
            files: 1,
            files_free: 2,
        };
        let d = odd.df();
        assert_eq!(d.used_percent, 0.0);
        assert_eq!(d.files_used_percent, Some(0.0));
    }

    #[test]
    fn mount_points_are_stated_under_the_rootfs_prefix() {
        assert_eq!(
            under_root(Path::new("/"), "/var/log"),
            PathBuf::from("/var/log")
        );
        assert_eq!(
            under_root(Path::new("/host/root"), "/var/log"),
            PathBuf::from("/host/root/var/log")
        );
        assert_eq!(
            under_root(Path::new("/host/root"), "/"),
            PathBuf::from("/host/root/")
        );
    }

    #[tokio::test]
    async fn statter_reports_real_figures_and_errors_for_missing_paths() {
        let dir = tempfile::tempdir().unwrap();
        let real = statvfs(dir.path()).unwrap();
        let cands = vec![
            Candidate {
                device_id: "1:1".into(),
                device: "d".into(),
                fstype: "x".into(),
                mountpoints: vec![dir.path().display().to_string()],
                read_only: false,
            },
            Candidate {
                device_id: "1:2".into(),
                device: "d".into(),
                fstype: "x".into(),
                mountpoints: vec!["/nonexistent/caretaker".into()],
                read_only: false,
            },
        ];
        let (fs, errors) = Statter::default()
            .stat_all(Path::new("/"), cands, Duration::from_secs(5))
            .await;
        assert_eq!(fs.len(), 1);
        assert_eq!(fs[0].size_bytes, real.df().size_bytes);
        assert!(!fs[0].stale);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].place, "/nonexistent/caretaker");
        assert_eq!(errors[0].message, "statvfs: No such file or directory");
    }

    fn hanging_stat(path: &Path) -> nix::Result<StatVfs> {
        if path.ends_with("nfs") {
            std::thread::sleep(Duration::from_millis(1500));
        }
        Ok(StatVfs {
            fragment_size: 1024,
            blocks: 10,
            blocks_free: 5,
            blocks_available: 5,
            files: 0,
            files_free: 0,
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hanging_statvfs_is_stale_and_not_retried_while_in_flight() {
        let cand = |mp: &str, dev: &str| Candidate {
            device_id: dev.into(),
            device: "d".into(),
            fstype: "nfs".into(),
            mountpoints: vec![mp.into()],
            read_only: false,
        };
        let statter = Statter::with_stat_fn(hanging_stat);
        let (fs, errors) = statter
            .stat_all(
                Path::new("/"),
                vec![cand("/mnt/nfs", "0:1"), cand("/", "0:2")],
                Duration::from_millis(200),
            )
            .await;
        assert_eq!(fs.len(), 2);
        assert!(fs[0].stale);
        assert_eq!((fs[0].size_bytes, fs[0].used_percent), (0, 0.0));
        assert!(!fs[1].stale);
        assert_eq!(fs[1].size_bytes, 10_240);
        assert_eq!(errors[0].message, "statvfs did not return within 200ms");
        // Second cycle while the first call still hangs: no new thread, stale again.
        let (fs, errors) = statter
            .stat_all(
                Path::new("/"),
                vec![cand("/mnt/nfs", "0:1")],
                Duration::from_millis(200),
            )
            .await;
        assert!(fs[0].stale);
        assert_eq!(
            errors[0].message,
            "statvfs of an earlier cycle has not returned yet"
        );
        // Once the hung call has returned, the mount is stat'ed again.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (fs, _) = statter
            .stat_all(
                Path::new("/"),
                vec![cand("/mnt/nfs", "0:1")],
                Duration::from_secs(3),
            )
            .await;
        assert!(!fs[0].stale);
    }
}
