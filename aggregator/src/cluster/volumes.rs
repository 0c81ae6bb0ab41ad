//! Volume usage as the node agents see it, mapped to PersistentVolume names.
//!
//! The agent reports statvfs figures per mount point. A pod's persistent volume is mounted
//! by the kubelet at `<kubelet root>/pods/<pod uid>/volumes/<plugin>/<pv name>[/mount]`
//! (CSI volumes end in `/mount`, in-tree plugins do not), so the PV name is the path
//! segment after the plugin directory (`kubernetes.io~csi`, `kubernetes.io~nfs` …).

use caretaker_proto::model::NodeReport;
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
pub fn pv_name_from_mount(path: &str) -> Option<&str> {
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

/// Volume figures from the latest report of each node.
pub fn from_node_reports<'a>(reports: impl IntoIterator<Item = &'a NodeReport>) -> Vec<VolumeStat> {
    let mut out = Vec::new();
    for r in reports {
        for fs in &r.filesystems {
            let names = std::iter::once(fs.mountpoint.as_str()).chain(fs.mountpoints.iter().map(String::as_str));
            let mut seen: Vec<&str> = Vec::new();
            for m in names {
                if let Some(pv) = pv_name_from_mount(m)
                    && !seen.contains(&pv)
                {
                    seen.push(pv);
                    out.push(VolumeStat {
                        node: r.node_name.clone(),
                        pv_name: pv.to_string(),
                        size_bytes: fs.size_bytes,
                        used_bytes: fs.size_bytes.saturating_sub(fs.free_bytes),
                        avail_bytes: fs.avail_bytes,
                        collected_at: r.collected_at,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pv_name_is_read_from_csi_and_in_tree_mount_paths() {
        assert_eq!(
            pv_name_from_mount("/var/lib/kubelet/pods/0b1c/volumes/kubernetes.io~csi/pvc-123/mount"),
            Some("pvc-123")
        );
        assert_eq!(pv_name_from_mount("/host/root/var/lib/kubelet/pods/0b1c/volumes/kubernetes.io~nfs/pv-nfs"), Some("pv-nfs"));
        assert_eq!(pv_name_from_mount("/var/lib/kubelet/pods/0b1c/volumes/kubernetes.io~empty-dir/cache"), None);
        assert_eq!(pv_name_from_mount("/var/lib/kubelet/pods/0b1c/volume-subpaths/x/y/0"), None);
        assert_eq!(pv_name_from_mount("/var/lib/docker"), None);
    }
}
