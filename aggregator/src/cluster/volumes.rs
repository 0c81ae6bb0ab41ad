//! Volume usage as the node agents see it, mapped to PersistentVolume names.
//!
//! A pod's persistent volume is mounted by the kubelet at
//! `<kubelet root>/pods/<pod uid>/volumes/<plugin>/<pv name>[/mount]` (CSI volumes end in
//! `/mount`, in-tree plugins do not), so the PV name is the path segment after the plugin
//! directory (`kubernetes.io~csi`, `kubernetes.io~nfs` …). Agents report those mounts in
//! the report's `volumes` (already split into pod, plugin and name); figures of such mount
//! points among the report's `filesystems` (an agent whose filesystem filter lets them
//! through) count too. A PV seen both ways on one node is listed once, and a stale figure
//! (statvfs timed out, all zeros) is left out: unknown is not 0 %.

use std::collections::HashSet;

use caretaker_core::model::NodeReport;
use serde::{Deserialize, Serialize};

/// Plugin directories that never hold a PersistentVolume.
const EPHEMERAL_PLUGINS: &[&str] = &[
    "kubernetes.io~empty-dir",
    "kubernetes.io~configmap",
    "kubernetes.io~secret",
    "kubernetes.io~projected",
    "kubernetes.io~downward-api",
];

/// One filesystem figure of one PersistentVolume seen on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeStat {
    pub node: String,
    pub pv_name: String,
    pub size_bytes: u64,
    /// Bytes used (size minus free, as `df` shows it).
    pub used_bytes: u64,
    pub avail_bytes: u64,
    /// When the node collected the figure (RFC 3339).
    pub collected_at: jiff::Timestamp,
}

/// The PV name in a kubelet volume mount path, if it is one.
pub(crate) fn pv_name_from_mount(path: &str) -> Option<&str> {
    let mut parts = path.trim_end_matches('/').split('/');
    // Find "/pods/<uid>/volumes/<plugin>/<name>".
    while let Some(p) = parts.next() {
        if p != "pods" {
            continue;
        }
        let rest: Vec<&str> = parts.clone().collect();
        if rest.len() >= 4 && rest[1] == "volumes" {
            let plugin = rest[2];
            let name = rest[3];
            let tail = &rest[4..];
            let tail_ok = tail.is_empty() || tail == ["mount"];
            if tail_ok && !name.is_empty() && !EPHEMERAL_PLUGINS.contains(&plugin) {
                return Some(name);
            }
            return None;
        }
    }
    None
}

/// Volume figures from the latest report of each node: one per PV and node.
pub(crate) fn from_node_reports<'a>(
    reports: impl IntoIterator<Item = &'a NodeReport>,
) -> Vec<VolumeStat> {
    let mut out = Vec::new();
    for r in reports {
        let stat = |pv: &str, fs: &caretaker_core::model::Filesystem| VolumeStat {
            node: r.node_name.clone(),
            pv_name: pv.to_string(),
            size_bytes: fs.size_bytes,
            used_bytes: fs.size_bytes.saturating_sub(fs.free_bytes),
            avail_bytes: fs.avail_bytes,
            collected_at: r.collected_at,
        };
        let mut node_pvs: HashSet<&str> = HashSet::new();
        for fs in &r.filesystems {
            let names = std::iter::once(fs.mountpoint.as_str())
                .chain(fs.mountpoints.iter().map(String::as_str));
            let mut seen: Vec<&str> = Vec::new();
            for m in names {
                if let Some(pv) = pv_name_from_mount(m)
                    && !seen.contains(&pv)
                {
                    seen.push(pv);
                    node_pvs.insert(pv);
                    out.push(stat(pv, fs));
                }
            }
        }
        for v in &r.volumes {
            let ephemeral = EPHEMERAL_PLUGINS.contains(&v.plugin.as_str());
            if ephemeral
                || v.name.is_empty()
                || v.filesystem.stale
                || !node_pvs.insert(v.name.as_str())
            {
                continue;
            }
            out.push(stat(&v.name, &v.filesystem));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use caretaker_core::model::{AgentCost, Filesystem, Host, VolumeMount};

    use super::*;

    #[test]
    fn pv_name_is_read_from_csi_and_in_tree_mount_paths() {
        assert_eq!(
            pv_name_from_mount(
                "/var/lib/kubelet/pods/0b1c/volumes/kubernetes.io~csi/pvc-123/mount"
            ),
            Some("pvc-123")
        );
        assert_eq!(
            pv_name_from_mount(
                "/host/root/var/lib/kubelet/pods/0b1c/volumes/kubernetes.io~nfs/pv-nfs"
            ),
            Some("pv-nfs")
        );
        assert_eq!(
            pv_name_from_mount("/var/lib/kubelet/pods/0b1c/volumes/kubernetes.io~empty-dir/cache"),
            None
        );
        assert_eq!(
            pv_name_from_mount("/var/lib/kubelet/pods/0b1c/volume-subpaths/x/y/0"),
            None
        );
        assert_eq!(pv_name_from_mount("/var/lib/docker"), None);
    }

    fn fs(mountpoint: &str, size: u64, free: u64, stale: bool) -> Filesystem {
        Filesystem {
            device: "/dev/x".into(),
            fstype: "ext4".into(),
            mountpoint: mountpoint.into(),
            mountpoints: vec![mountpoint.into()],
            device_id: "1:1".into(),
            read_only: false,
            size_bytes: size,
            free_bytes: free,
            avail_bytes: free,
            files: 0,
            files_free: 0,
            used_percent: 0.0,
            files_used_percent: None,
            stale,
        }
    }

    fn volume(
        uid: &str,
        plugin: &str,
        name: &str,
        size: u64,
        free: u64,
        stale: bool,
    ) -> VolumeMount {
        let mp = format!("/var/lib/kubelet/pods/{uid}/volumes/{plugin}/{name}/mount");
        VolumeMount {
            pod_uid: uid.into(),
            plugin: plugin.into(),
            name: name.into(),
            filesystem: fs(&mp, size, free, stale),
        }
    }

    fn report(node: &str, filesystems: Vec<Filesystem>, volumes: Vec<VolumeMount>) -> NodeReport {
        NodeReport {
            node_name: node.into(),
            epoch: 1,
            seq: 1,
            collected_at: "2026-01-01T00:00:00Z".parse().unwrap(),
            report_interval_ms: 10_000,
            host: Host::default(),
            filesystems,
            network: vec![],
            agent: AgentCost::default(),
            errors: vec![],
            images: None,
            logs: None,
            volumes,
            log_check: None,
        }
    }

    #[test]
    fn reported_volumes_and_volume_filesystems_give_one_figure_per_pv_and_node() {
        let a = report(
            "node-a",
            vec![
                fs("/", 100, 50, false),
                fs(
                    "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pvc-1/mount",
                    1000,
                    400,
                    false,
                ),
            ],
            vec![
                // Also among the filesystems: counted once, from the filesystem.
                volume("u1", "kubernetes.io~csi", "pvc-1", 1000, 300, false),
                // Mounted by two pods on the node: once.
                volume("u2", "kubernetes.io~nfs", "pv-nfs", 5000, 1000, false),
                volume("u3", "kubernetes.io~nfs", "pv-nfs", 5000, 1000, false),
                // Unknown is not 0 %.
                volume("u4", "kubernetes.io~csi", "pvc-stale", 0, 0, true),
                // An agent never reports these; if one did, they are not PVs.
                volume("u5", "kubernetes.io~empty-dir", "cache", 10, 5, false),
            ],
        );
        let b = report(
            "node-b",
            vec![],
            vec![volume(
                "u6",
                "kubernetes.io~nfs",
                "pv-nfs",
                5000,
                900,
                false,
            )],
        );
        let got: Vec<(String, String, u64, u64)> = from_node_reports([&a, &b])
            .into_iter()
            .map(|s| (s.node, s.pv_name, s.size_bytes, s.used_bytes))
            .collect();
        let row =
            |n: &str, pv: &str, size: u64, used: u64| (n.to_string(), pv.to_string(), size, used);
        assert_eq!(
            got,
            vec![
                row("node-a", "pvc-1", 1000, 600),
                row("node-a", "pv-nfs", 5000, 4000),
                row("node-b", "pv-nfs", 5000, 4100),
            ]
        );
    }
}
