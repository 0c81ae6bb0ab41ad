//! Pod volume mounts: statvfs figures of the volumes the kubelet mounted for its pods, so
//! that the aggregator can report PVC usage.
//!
//! The kubelet mounts a pod's volume at
//! `<kubelet_root>/pods/<pod uid>/volumes/<plugin>/<name>` (in-tree plugins such as
//! `kubernetes.io~nfs`) or at `…/<name>/mount` (CSI, `kubernetes.io~csi`), where `<name>`
//! is the PersistentVolume's name for a PV-backed volume. Those mount points are read from
//! the host's mountinfo, like the node's filesystems, and stat'ed under the rootfs prefix
//! with the same per-mount timeout ([`super::filesystems::Statter`]). Unlike filesystems
//! they are not de-duplicated by device: two PVs can share one NFS superblock, and each
//! pod's mount is its own entry. Ephemeral volume types never hold a PV and are skipped.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use caretaker_core::model::{CollectorError, VolumeMount};

use super::filesystems::{Candidate, Statter};
use super::mountinfo::MountInfo;

/// The kubelet's default `--root-dir`.
pub(crate) const DEFAULT_KUBELET_ROOT: &str = "/var/lib/kubelet";

/// Plugin directories of volume types that never hold a PersistentVolume: emptyDir,
/// configMap, secret, projected and downwardAPI.
pub(crate) const EPHEMERAL_PLUGINS: &[&str] = &[
    "kubernetes.io~empty-dir",
    "kubernetes.io~configmap",
    "kubernetes.io~secret",
    "kubernetes.io~projected",
    "kubernetes.io~downward-api",
];

/// Where a mount point sits in the kubelet's pods directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumePath {
    pub pod_uid: String,
    pub plugin: String,
    pub name: String,
}

/// Reads `<kubelet_root>/pods/<uid>/volumes/<plugin>/<name>[/mount]`; `None` for any other
/// path (sub-path bind mounts under `volume-subpaths/`, block devices under
/// `volumeDevices/`, the plugin or pod directories themselves) and for ephemeral plugins.
pub(crate) fn parse_volume_path(kubelet_root: &Path, mount_point: &str) -> Option<VolumePath> {
    let root = kubelet_root.to_str()?.trim_end_matches('/');
    let rest = mount_point.strip_prefix(root)?.strip_prefix("/pods/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let (uid, volumes, plugin, name, tail) = match parts.as_slice() {
        [uid, volumes, plugin, name] => (*uid, *volumes, *plugin, *name, None),
        [uid, volumes, plugin, name, tail] => (*uid, *volumes, *plugin, *name, Some(*tail)),
        _ => return None,
    };
    if volumes != "volumes" || tail.is_some_and(|t| t != "mount") {
        return None;
    }
    if [uid, plugin, name]
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
        || EPHEMERAL_PLUGINS.contains(&plugin)
    {
        return None;
    }
    Some(VolumePath {
        pod_uid: uid.into(),
        plugin: plugin.into(),
        name: name.into(),
    })
}

/// One volume mount to stat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeCandidate {
    pub volume: VolumePath,
    /// The mount, with its one mount point.
    pub mount: Candidate,
}

/// The pod volume mounts in a mount table, one per mount point (a mount point mounted over
/// is reported once, with the top mount's device), sorted by mount point.
pub(crate) fn discover(mounts: &[MountInfo], kubelet_root: &Path) -> Vec<VolumeCandidate> {
    let mut by_path: BTreeMap<&str, (VolumePath, &MountInfo)> = BTreeMap::new();
    for m in mounts {
        if let Some(v) = parse_volume_path(kubelet_root, &m.mount_point) {
            // Later lines are mounted on top of earlier ones: the last one is what statvfs sees.
            by_path.insert(&m.mount_point, (v, m));
        }
    }
    by_path
        .into_values()
        .map(|(volume, m)| VolumeCandidate {
            volume,
            mount: Candidate {
                device_id: m.device_id(),
                device: m.source.clone(),
                fstype: m.fstype.clone(),
                mountpoints: vec![m.mount_point.clone()],
                read_only: m.read_only(),
            },
        })
        .collect()
}

/// Stats every volume mount with `statter` (per-mount timeout, stale when it does not
/// return). Errors name the collector `volumes` and the path stat'ed.
pub(crate) async fn stat_volumes(
    statter: &Statter,
    rootfs: &Path,
    candidates: Vec<VolumeCandidate>,
    timeout: Duration,
) -> (Vec<VolumeMount>, Vec<CollectorError>) {
    let mut ids: HashMap<String, VolumePath> = HashMap::with_capacity(candidates.len());
    let mut mounts = Vec::with_capacity(candidates.len());
    for c in candidates {
        ids.insert(c.mount.mountpoints[0].clone(), c.volume);
        mounts.push(c.mount);
    }
    let (filesystems, mut errors) = statter.stat_all(rootfs, mounts, timeout).await;
    for e in &mut errors {
        e.collector = "volumes".into();
    }
    let volumes = filesystems
        .into_iter()
        .filter_map(|fs| {
            let v = ids.remove(&fs.mountpoint)?;
            Some(VolumeMount {
                pod_uid: v.pod_uid,
                plugin: v.plugin,
                name: v.name,
                filesystem: fs,
            })
        })
        .collect();
    (volumes, errors)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::stats::filesystems::{StatVfs, statvfs};
    use crate::stats::mountinfo;

    const KUBELET: &str = "/var/lib/kubelet";

    /// A node's mountinfo with every kind of kubelet mount.
    const MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
60 27 0:70 / /var/lib/kubelet/pods/uid-a/volumes/kubernetes.io~projected/kube-api-access-x rw - tmpfs tmpfs rw
61 27 0:71 / /var/lib/kubelet/pods/uid-a/volumes/kubernetes.io~secret/tls rw - tmpfs tmpfs rw
62 27 254:0 /var/lib/kubelet/pods/uid-a/volumes/kubernetes.io~empty-dir/cache /var/lib/kubelet/pods/uid-a/volumes/kubernetes.io~empty-dir/cache rw - ext4 /dev/vda rw
63 27 252:0 / /var/lib/kubelet/plugins/kubernetes.io/csi/rbd.csi.ceph.com/abc/globalmount rw - ext4 /dev/rbd0 rw
64 27 252:0 / /var/lib/kubelet/pods/uid-a/volumes/kubernetes.io~csi/pvc-111/mount rw - ext4 /dev/rbd0 rw
65 27 0:80 / /var/lib/kubelet/pods/uid-b/volumes/kubernetes.io~nfs/pv-nfs rw - nfs4 srv:/export rw
66 27 0:80 / /var/lib/kubelet/pods/uid-c/volumes/kubernetes.io~nfs/pv-nfs rw - nfs4 srv:/export rw
67 27 252:0 / /var/lib/kubelet/pods/uid-a/volume-subpaths/pvc-111/app/0 rw - ext4 /dev/rbd0 rw
68 27 252:16 / /var/lib/kubelet/pods/uid-d/volumes/kubernetes.io~csi/pvc-222/mount ro - xfs /dev/rbd1 rw
69 27 0:90 / /var/lib/kubelet/pods/uid-d/volumes/kubernetes.io~csi/pvc-222/mount rw - xfs /dev/rbd9 rw
70 27 0:91 / /var/lib/kubelet/pods/uid-e/volumes/kubernetes.io~csi/inline-vol/data rw - ext4 /dev/x rw
";

    fn parse(text: &str) -> Vec<MountInfo> {
        let (m, e) = mountinfo::parse(text);
        assert!(e.is_empty(), "{e:?}");
        m
    }

    #[test]
    fn volume_paths_are_read_for_csi_and_in_tree_plugins_only() {
        let root = Path::new(KUBELET);
        let v = |uid: &str, plugin: &str, name: &str| {
            Some(VolumePath {
                pod_uid: uid.into(),
                plugin: plugin.into(),
                name: name.into(),
            })
        };
        assert_eq!(
            parse_volume_path(
                root,
                "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pvc-1/mount"
            ),
            v("u1", "kubernetes.io~csi", "pvc-1")
        );
        assert_eq!(
            parse_volume_path(
                root,
                "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~nfs/pv-2"
            ),
            v("u1", "kubernetes.io~nfs", "pv-2")
        );
        assert_eq!(
            parse_volume_path(
                Path::new("/data/kubelet/"),
                "/data/kubelet/pods/u1/volumes/kubernetes.io~iscsi/pv-3"
            ),
            v("u1", "kubernetes.io~iscsi", "pv-3")
        );
        for other in [
            "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache",
            "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~configmap/cfg",
            "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~secret/tls",
            "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~projected/token",
            "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~downward-api/info",
            "/var/lib/kubelet/pods/u1/volume-subpaths/pvc-1/app/0",
            "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pvc-1/other",
            "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi",
            "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pvc-1/mount/deeper",
            "/var/lib/kubelet/plugins/kubernetes.io/csi/x/globalmount",
            "/var/lib/kubelet-other/pods/u1/volumes/kubernetes.io~nfs/pv",
            "/var/lib/docker",
        ] {
            assert_eq!(parse_volume_path(root, other), None, "{other}");
        }
    }

    #[test]
    fn discovery_keeps_each_pod_mount_and_the_top_mount_of_a_path() {
        let got: Vec<(String, String, String, String, String, bool)> =
            discover(&parse(MOUNTINFO), Path::new(KUBELET))
                .into_iter()
                .map(|c| {
                    (
                        c.volume.pod_uid,
                        c.volume.plugin,
                        c.volume.name,
                        c.mount.device,
                        c.mount.device_id,
                        c.mount.read_only,
                    )
                })
                .collect();
        let row = |uid: &str, plugin: &str, name: &str, dev: &str, id: &str, ro: bool| {
            (
                uid.to_string(),
                plugin.to_string(),
                name.to_string(),
                dev.to_string(),
                id.to_string(),
                ro,
            )
        };
        assert_eq!(
            got,
            vec![
                row(
                    "uid-a",
                    "kubernetes.io~csi",
                    "pvc-111",
                    "/dev/rbd0",
                    "252:0",
                    false
                ),
                // The same NFS export (one device ID) in two pods: two entries.
                row(
                    "uid-b",
                    "kubernetes.io~nfs",
                    "pv-nfs",
                    "srv:/export",
                    "0:80",
                    false
                ),
                row(
                    "uid-c",
                    "kubernetes.io~nfs",
                    "pv-nfs",
                    "srv:/export",
                    "0:80",
                    false
                ),
                // Mounted over: the later line is what statvfs sees.
                row(
                    "uid-d",
                    "kubernetes.io~csi",
                    "pvc-222",
                    "/dev/rbd9",
                    "0:90",
                    false
                ),
            ]
        );
    }

    #[tokio::test]
    async fn volumes_are_stated_under_the_rootfs_and_missing_ones_are_named_errors() {
        // A rootfs with two of the volume directories present (both on the tempdir's
        // filesystem) and the others missing.
        let rootfs = tempfile::tempdir().unwrap();
        for dir in [
            "var/lib/kubelet/pods/uid-a/volumes/kubernetes.io~csi/pvc-111/mount",
            "var/lib/kubelet/pods/uid-b/volumes/kubernetes.io~nfs/pv-nfs",
        ] {
            std::fs::create_dir_all(rootfs.path().join(dir)).unwrap();
        }
        let real = statvfs(rootfs.path()).unwrap().df();
        let cands = discover(&parse(MOUNTINFO), Path::new(KUBELET));
        let (vols, errors) = stat_volumes(
            &Statter::default(),
            rootfs.path(),
            cands,
            Duration::from_secs(5),
        )
        .await;
        let got: Vec<(&str, &str, u64, bool)> = vols
            .iter()
            .map(|v| {
                (
                    v.name.as_str(),
                    v.filesystem.mountpoint.as_str(),
                    v.filesystem.size_bytes,
                    v.filesystem.stale,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "pvc-111",
                    "/var/lib/kubelet/pods/uid-a/volumes/kubernetes.io~csi/pvc-111/mount",
                    real.size_bytes,
                    false
                ),
                (
                    "pv-nfs",
                    "/var/lib/kubelet/pods/uid-b/volumes/kubernetes.io~nfs/pv-nfs",
                    real.size_bytes,
                    false
                ),
            ]
        );
        assert_eq!(vols[0].filesystem.device, "/dev/rbd0");
        assert_eq!(
            vols[0].filesystem.mountpoints,
            vec![vols[0].filesystem.mountpoint.clone()]
        );
        let errs: Vec<(&str, PathBuf, &str)> = errors
            .iter()
            .map(|e| {
                (
                    e.collector.as_str(),
                    PathBuf::from(&e.place),
                    e.message.as_str(),
                )
            })
            .collect();
        assert_eq!(
            errs,
            vec![
                (
                    "volumes",
                    rootfs
                        .path()
                        .join("var/lib/kubelet/pods/uid-c/volumes/kubernetes.io~nfs/pv-nfs"),
                    "statvfs: No such file or directory"
                ),
                (
                    "volumes",
                    rootfs
                        .path()
                        .join("var/lib/kubelet/pods/uid-d/volumes/kubernetes.io~csi/pvc-222/mount"),
                    "statvfs: No such file or directory"
                ),
            ]
        );
    }

    fn hanging_stat(path: &Path) -> nix::Result<StatVfs> {
        if path.ends_with("pv-nfs") {
            std::thread::sleep(Duration::from_millis(800));
        }
        Ok(StatVfs {
            fragment_size: 4096,
            blocks: 100,
            blocks_free: 25,
            blocks_available: 25,
            files: 10,
            files_free: 5,
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hanging_volume_is_stale_not_a_stalled_collection() {
        let cands: Vec<VolumeCandidate> = discover(&parse(MOUNTINFO), Path::new(KUBELET))
            .into_iter()
            .filter(|c| c.volume.pod_uid != "uid-c")
            .collect();
        let (vols, errors) = stat_volumes(
            &Statter::with_stat_fn(hanging_stat),
            Path::new("/"),
            cands,
            Duration::from_millis(100),
        )
        .await;
        let got: Vec<(&str, bool, f64)> = vols
            .iter()
            .map(|v| {
                (
                    v.name.as_str(),
                    v.filesystem.stale,
                    v.filesystem.used_percent,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("pvc-111", false, 75.0),
                ("pv-nfs", true, 0.0),
                ("pvc-222", false, 75.0)
            ]
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].collector.as_str(), errors[0].message.as_str()),
            ("volumes", "statvfs did not return within 100ms")
        );
    }
}
