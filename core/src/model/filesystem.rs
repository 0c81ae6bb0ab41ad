//! Mounted filesystems and pod volume mounts.

use caretaker_proto::pb;
use serde::{Deserialize, Serialize};

use super::wire::*;

/// One filesystem (bind mounts and other mounts of the same device counted once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filesystem {
    /// Mount source as in mountinfo (`/dev/vda1`, `server:/export`).
    pub device: String,
    pub fstype: String,
    /// Shortest mount point of this filesystem.
    pub mountpoint: String,
    /// Every mount point of this filesystem, shortest first.
    pub mountpoints: Vec<String>,
    /// `major:minor` of the filesystem (st_dev), the identity used to de-duplicate.
    pub device_id: String,
    pub read_only: bool,
    pub size_bytes: u64,
    pub free_bytes: u64,
    pub avail_bytes: u64,
    pub files: u64,
    pub files_free: u64,
    /// used / (used + avail) × 100, as `df` computes Use% (reserved blocks excluded).
    pub used_percent: f64,
    /// (files − files_free) / files × 100; absent when the filesystem reports 0 inodes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub files_used_percent: Option<f64>,
    /// statvfs did not answer within the per-mount timeout; the figures are 0.
    pub stale: bool,
}

/// One pod volume mount: `<kubelet_root>/pods/<pod_uid>/volumes/<plugin>/<name>[/mount]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeMount {
    /// The pod's UID (the directory under `pods/`).
    pub pod_uid: String,
    /// The kubelet's volume plugin directory (`kubernetes.io~csi`, `kubernetes.io~nfs` …).
    pub plugin: String,
    /// The volume directory's name: the PersistentVolume's name for a PV-backed volume
    /// (CSI or in-tree), the pod's volume name for an inline volume.
    pub name: String,
    /// statvfs figures of the mount; `mountpoint` is the mount's full host path.
    pub filesystem: Filesystem,
}

impl From<Filesystem> for pb::Filesystem {
    fn from(f: Filesystem) -> Self {
        Self {
            device: f.device,
            fstype: f.fstype,
            mountpoint: f.mountpoint,
            device_id: f.device_id,
            read_only: f.read_only,
            size_bytes: f.size_bytes,
            free_bytes: f.free_bytes,
            avail_bytes: f.avail_bytes,
            files: f.files,
            files_free: f.files_free,
            used_percent: f.used_percent,
            files_used_percent: f.files_used_percent,
            stale: f.stale,
            mountpoints: f.mountpoints,
        }
    }
}

impl TryFrom<pb::Filesystem> for Filesystem {
    type Error = InvalidMessage;

    fn try_from(f: pb::Filesystem) -> Result<Self, Self::Error> {
        if f.mountpoint.is_empty() {
            return Err(InvalidMessage::new("mountpoint", "empty"));
        }
        Ok(Self {
            used_percent: percent(f.used_percent, "used_percent")?,
            files_used_percent: f
                .files_used_percent
                .map(|p| percent(p, "files_used_percent"))
                .transpose()?,
            device: f.device,
            fstype: f.fstype,
            mountpoint: f.mountpoint,
            mountpoints: f.mountpoints,
            device_id: f.device_id,
            read_only: f.read_only,
            size_bytes: f.size_bytes,
            free_bytes: f.free_bytes,
            avail_bytes: f.avail_bytes,
            files: f.files,
            files_free: f.files_free,
            stale: f.stale,
        })
    }
}

impl From<VolumeMount> for pb::VolumeMount {
    fn from(v: VolumeMount) -> Self {
        Self {
            pod_uid: v.pod_uid,
            plugin: v.plugin,
            name: v.name,
            filesystem: Some(v.filesystem.into()),
        }
    }
}

impl TryFrom<pb::VolumeMount> for VolumeMount {
    type Error = InvalidMessage;

    fn try_from(v: pb::VolumeMount) -> Result<Self, Self::Error> {
        let fs = v
            .filesystem
            .ok_or_else(|| InvalidMessage::new("filesystem", "missing"))?;
        Ok(Self {
            pod_uid: non_empty(v.pod_uid, "pod_uid")?,
            plugin: non_empty(v.plugin, "plugin")?,
            name: non_empty(v.name, "name")?,
            filesystem: Filesystem::try_from(fs).map_err(|e| e.within("filesystem"))?,
        })
    }
}
