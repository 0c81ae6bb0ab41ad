//! Image maintenance: per-runtime image counts and the last prune run.

use caretaker_proto::pb;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::wire::*;
use super::*;

/// Image maintenance on one node: what the runtimes hold and what pruning did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagesSummary {
    /// True unless `images.apply` is set: the daemon only reports what it would remove.
    pub dry_run: bool,
    /// When the agent last listed the runtimes' images.
    pub checked_at: Timestamp,
    /// One entry per runtime the agent reached.
    pub runtimes: Vec<RuntimeImages>,
    /// Problems of the last check (a runtime that does not answer, a failed call).
    pub errors: Vec<CollectorError>,
}

/// The images of one container runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeImages {
    /// `docker` or `containerd`.
    pub runtime: String,
    /// Where the runtime keeps its images, as it names the directory on the host
    /// (`/var/lib/docker`); empty when it could not be asked.
    pub image_fs_mountpoint: String,
    /// 100 − available × 100 / capacity of that filesystem, as the kubelet's image GC
    /// computes it; absent when it could not be measured.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub image_fs_used_percent: Option<f64>,
    /// Images the runtime lists (top-level images, as `docker images`).
    pub images_total: u64,
    /// Images no container (any state) and no pod sandbox references.
    pub images_unused: u64,
    /// Bytes of the unused images, each without the layers it shares with other images
    /// (Docker's SharedSize; the whole size where the runtime does not say).
    pub reclaimable_bytes: u64,
    /// The last prune (scheduled or on disk pressure); absent before the first.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_prune: Option<PruneRun>,
    /// Images really removed since the agent started (dry runs never count).
    pub removed_total: u64,
    /// Bytes those removals freed (measured when possible, else estimated), in bytes.
    pub removed_bytes_total: u64,
}

/// Why a prune ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PruneTrigger {
    /// The age prune, every `images.prune_interval`.
    Schedule,
    /// The image filesystem was at or above `images.high_threshold_percent`.
    DiskPressure,
}

/// One prune of one runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneRun {
    pub started_at: Timestamp,
    pub trigger: PruneTrigger,
    /// Nothing was removed; `removed` and `removed_bytes` say what would have been.
    pub dry_run: bool,
    /// Images removed (in a dry run: that would have been).
    pub removed: u64,
    /// Bytes freed: measured when applied and measurable, else the estimate.
    pub removed_bytes: u64,
    /// Images kept, by reason.
    pub kept: KeptCounts,
    /// Removals that failed for another reason than the image being in use.
    pub failed: u64,
    /// An age prune due outside the maintenance window ran as a dry run; the removals wait
    /// until the window opens at this time. Disk-pressure prunes never wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for_window_until: Option<Timestamp>,
}

/// Images kept by a prune, by the planner's reason (`kept:<reason>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptCounts {
    pub in_use: u64,
    pub pinned: u64,
    pub young: u64,
    pub keep_list: u64,
    pub below_threshold: u64,
}

impl From<ImagesSummary> for pb::ImagesSummary {
    fn from(s: ImagesSummary) -> Self {
        Self {
            dry_run: s.dry_run,
            checked_at: Some(ts_to_pb(s.checked_at)),
            runtimes: s.runtimes.into_iter().map(Into::into).collect(),
            errors: s.errors.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<pb::ImagesSummary> for ImagesSummary {
    type Error = InvalidMessage;

    fn try_from(s: pb::ImagesSummary) -> Result<Self, Self::Error> {
        Ok(Self {
            dry_run: s.dry_run,
            checked_at: ts_from_pb(s.checked_at, "checked_at")?,
            runtimes: bounded(s.runtimes, MAX_RUNTIMES, "runtimes")?
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    RuntimeImages::try_from(r).map_err(|e| e.within(&format!("runtimes[{i}]")))
                })
                .collect::<Result<_, _>>()?,
            errors: bounded(s.errors, MAX_ERRORS, "errors")?
                .into_iter()
                .map(Into::into)
                .collect(),
        })
    }
}

impl From<RuntimeImages> for pb::RuntimeImages {
    fn from(r: RuntimeImages) -> Self {
        Self {
            runtime: r.runtime,
            image_fs_mountpoint: r.image_fs_mountpoint,
            image_fs_used_percent: r.image_fs_used_percent,
            images_total: r.images_total,
            images_unused: r.images_unused,
            reclaimable_bytes: r.reclaimable_bytes,
            last_prune: r.last_prune.map(Into::into),
            removed_total: r.removed_total,
            removed_bytes_total: r.removed_bytes_total,
        }
    }
}

impl TryFrom<pb::RuntimeImages> for RuntimeImages {
    type Error = InvalidMessage;

    fn try_from(r: pb::RuntimeImages) -> Result<Self, Self::Error> {
        if r.images_unused > r.images_total {
            return Err(InvalidMessage::new(
                "images_unused",
                format!(
                    "{} is more than images_total {}",
                    r.images_unused, r.images_total
                ),
            ));
        }
        Ok(Self {
            runtime: non_empty(r.runtime, "runtime")?,
            image_fs_used_percent: r
                .image_fs_used_percent
                .map(|p| percent(p, "image_fs_used_percent"))
                .transpose()?,
            last_prune: r
                .last_prune
                .map(|p| PruneRun::try_from(p).map_err(|e| e.within("last_prune")))
                .transpose()?,
            image_fs_mountpoint: r.image_fs_mountpoint,
            images_total: r.images_total,
            images_unused: r.images_unused,
            reclaimable_bytes: r.reclaimable_bytes,
            removed_total: r.removed_total,
            removed_bytes_total: r.removed_bytes_total,
        })
    }
}

impl From<PruneTrigger> for pb::PruneTrigger {
    fn from(t: PruneTrigger) -> Self {
        match t {
            PruneTrigger::Schedule => pb::PruneTrigger::Schedule,
            PruneTrigger::DiskPressure => pb::PruneTrigger::DiskPressure,
        }
    }
}

impl From<PruneRun> for pb::PruneRun {
    fn from(p: PruneRun) -> Self {
        Self {
            started_at: Some(ts_to_pb(p.started_at)),
            trigger: pb::PruneTrigger::from(p.trigger) as i32,
            dry_run: p.dry_run,
            removed: p.removed,
            removed_bytes: p.removed_bytes,
            kept: Some(p.kept.into()),
            failed: p.failed,
            waiting_for_window_until: p.waiting_for_window_until.map(ts_to_pb),
        }
    }
}

impl TryFrom<pb::PruneRun> for PruneRun {
    type Error = InvalidMessage;

    fn try_from(p: pb::PruneRun) -> Result<Self, Self::Error> {
        let trigger = match pb::PruneTrigger::try_from(p.trigger) {
            Ok(pb::PruneTrigger::Schedule) => PruneTrigger::Schedule,
            Ok(pb::PruneTrigger::DiskPressure) => PruneTrigger::DiskPressure,
            _ => {
                return Err(InvalidMessage::new(
                    "trigger",
                    format!("unknown value {}", p.trigger),
                ));
            }
        };
        Ok(Self {
            started_at: ts_from_pb(p.started_at, "started_at")?,
            trigger,
            dry_run: p.dry_run,
            removed: p.removed,
            removed_bytes: p.removed_bytes,
            kept: p.kept.map(Into::into).unwrap_or_default(),
            failed: p.failed,
            waiting_for_window_until: p
                .waiting_for_window_until
                .map(|t| ts_from_pb(Some(t), "waiting_for_window_until"))
                .transpose()?,
        })
    }
}

impl From<KeptCounts> for pb::KeptCounts {
    fn from(k: KeptCounts) -> Self {
        Self {
            in_use: k.in_use,
            pinned: k.pinned,
            young: k.young,
            keep_list: k.keep_list,
            below_threshold: k.below_threshold,
        }
    }
}

impl From<pb::KeptCounts> for KeptCounts {
    fn from(k: pb::KeptCounts) -> Self {
        Self {
            in_use: k.in_use,
            pinned: k.pinned,
            young: k.young,
            keep_list: k.keep_list,
            below_threshold: k.below_threshold,
        }
    }
}
