//! Applying a [`Plan`]: for each planned removal, re-check right before it that no container
//! or sandbox uses the image (one fresh listing per removal), then ask the runtime to remove
//! it without forcing. An image that became used, or whose removal the runtime refuses
//! because it is in use, is `kept:in-use`, not an error. Threshold removals stop as soon as
//! the measured usage reaches the plan's stop mark.
//!
//! Bytes: the estimate is the sum of the removed images' exclusive bytes (size minus shared
//! layers); the measurement is [`super::runtime::ImageFs::used_bytes`] before and after
//! (CRI's `used_bytes`, Docker's filesystem usage), which counts every shared layer once.

use caretaker_core::error::Chain;
use serde::Serialize;
use tracing::{info, warn};

use super::plan::{Decision, Plan, Reason};
use super::runtime::{DiskUsage, ImageRuntime, InUseIndex, RemoveError};

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub runtime: String,
    pub dry_run: bool,
    pub decisions: Vec<Decision>,
    /// Images removed (or, in a dry run, that would be).
    pub removed: usize,
    /// Sum of the removed images' exclusive bytes.
    pub estimated_bytes: u64,
    /// Measured used bytes before minus after (see [`super::runtime::ImageFs::used_bytes`]);
    /// `None` in a dry run or when either measurement failed.
    pub reclaimed_bytes: Option<u64>,
    pub(crate) disk_before: Option<DiskUsage>,
    pub(crate) disk_after: Option<DiskUsage>,
}

/// Carries out `plan` (or, with `dry_run`, only reports it). `progress` is called after
/// each decision is final.
pub async fn apply<R: ImageRuntime>(
    rt: &R,
    plan: Plan,
    dry_run: bool,
    progress: &mut (dyn FnMut(&Decision) + Send),
) -> Outcome {
    let before = if dry_run {
        None
    } else {
        rt.image_fs()
            .await
            .map_err(|e| warn!(error = %Chain(&e), "Cannot measure the image filesystem before pruning."))
            .ok()
    };
    let mut decisions = Vec::with_capacity(plan.decisions.len());
    for mut d in plan.decisions {
        if d.reason == Reason::Removed && !dry_run {
            match remove_one(rt, &d, plan.stop_at_percent).await {
                Ok(()) => {
                    info!(runtime = rt.name(), image = %d.image, id = %d.id, bytes = d.reclaimable_bytes, "Image removed.")
                }
                Err((reason, detail)) => {
                    d.reason = reason;
                    d.detail = detail;
                }
            }
        }
        progress(&d);
        decisions.push(d);
    }
    let after = if dry_run {
        None
    } else {
        rt.image_fs().await.ok()
    };
    let removed: Vec<&Decision> = decisions
        .iter()
        .filter(|d| d.reason == Reason::Removed)
        .collect();
    let reclaimed_bytes = match (&before, &after) {
        (Some(b), Some(a)) => Some(b.used_bytes.saturating_sub(a.used_bytes)),
        _ => None,
    };
    Outcome {
        runtime: rt.name().to_string(),
        dry_run,
        removed: removed.len(),
        estimated_bytes: removed.iter().map(|d| d.reclaimable_bytes).sum(),
        reclaimed_bytes,
        disk_before: before.map(|f| f.disk).or(plan.disk),
        disk_after: after.map(|f| f.disk),
        decisions,
    }
}

/// Removes one image after the re-checks; the error is the reason and detail of an image
/// that was kept or whose removal failed.
async fn remove_one<R: ImageRuntime>(
    rt: &R,
    d: &Decision,
    stop_at: Option<f64>,
) -> Result<(), (Reason, String)> {
    if d.by_threshold
        && let Some(stop) = stop_at
        && let Ok(fs) = rt.image_fs().await
        && fs.disk.used_percent() <= stop
    {
        return Err((
            Reason::KeptBelowThreshold,
            format!(
                "usage reached {:.1}%, at or below {stop}%",
                fs.disk.used_percent()
            ),
        ));
    }
    let users = rt.list_users().await.map_err(|e| {
        let m = format!("re-check before removal: {e}");
        (Reason::Failed(m.clone()), m)
    })?;
    if let Some(n) = InUseIndex::new(&users).user_of(&d.source) {
        let u = &users[n];
        return Err((
            Reason::KeptInUse,
            format!(
                "became used by {} ({}) after planning",
                super::runtime::short_id(&u.id),
                u.state
            ),
        ));
    }
    match rt.remove_image(&d.source).await {
        Ok(()) => Ok(()),
        Err(RemoveError::InUse(m)) => Err((Reason::KeptInUse, format!("the runtime refused: {m}"))),
        Err(RemoveError::Other(m)) => {
            warn!(runtime = rt.name(), image = %d.image, error = %m, "Image removal failed.");
            Err((Reason::Failed(m.clone()), m))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use jiff::Timestamp;

    use super::*;
    use crate::images::fake::{FakeRuntime, FakeState};
    use crate::images::plan::{KeepList, Mode, Policy, plan};
    use crate::images::runtime::{Image, ImageUser, UserKind};

    fn now() -> Timestamp {
        "2025-06-01T00:00:00Z".parse().unwrap()
    }

    fn img(n: u32, age_hours: i64, size: u64) -> Image {
        Image {
            id: format!("sha256:{n:064x}"),
            repo_tags: vec![format!("app:{n}")],
            repo_digests: vec![],
            created: Some(now() - jiff::SignedDuration::from_hours(age_hours)),
            size_bytes: size,
            shared_bytes: Some(0),
            layers: Vec::new(),
            pinned: false,
        }
    }

    fn policy() -> Policy {
        Policy {
            min_age: Duration::from_secs(24 * 3600),
            keep: KeepList::new::<&str>(&[]).unwrap(),
            keep_newest_per_repository: 0,
            high_threshold_percent: 85.0,
            low_threshold_percent: 80.0,
            pressure_min_age: Duration::ZERO,
        }
    }

    fn user(r: &str) -> ImageUser {
        ImageUser {
            kind: UserKind::Container,
            id: "racer".into(),
            image_ref: r.into(),
            image_id: String::new(),
            state: "created".into(),
        }
    }

    async fn run(
        rt: &FakeRuntime,
        mode: Mode,
        dry_run: bool,
        between: impl FnOnce(&FakeRuntime),
    ) -> Outcome {
        let images = rt.list_images().await.unwrap();
        let users = rt.list_users().await.unwrap();
        let p = plan(&images, &users, &policy(), mode, now(), &HashMap::new());
        between(rt);
        apply(rt, p, dry_run, &mut |_| {}).await
    }

    fn reasons(o: &Outcome) -> Vec<String> {
        o.decisions
            .iter()
            .map(|d| format!("{} {}", d.image, d.reason))
            .collect()
    }

    #[tokio::test]
    async fn dry_run_removes_nothing() {
        let rt = FakeRuntime::new(FakeState {
            images: vec![img(1, 48, 10)],
            ..Default::default()
        });
        let o = run(&rt, Mode::Prune { disk: None }, true, |_| {}).await;
        assert_eq!(reasons(&o), ["app:1 removed"]);
        assert_eq!(
            (o.removed, o.estimated_bytes, o.reclaimed_bytes),
            (1, 10, None)
        );
        assert_eq!(rt.removals.load(Ordering::Relaxed), 0);
        assert_eq!(rt.state.lock().unwrap().images.len(), 1);
    }

    #[tokio::test]
    async fn a_container_created_between_plan_and_removal_keeps_its_image() {
        let disk = DiskUsage {
            capacity_bytes: 1000,
            available_bytes: 500,
        };
        let rt = FakeRuntime::new(FakeState {
            images: vec![img(1, 48, 10), img(2, 48, 20)],
            disk,
            ..Default::default()
        });
        let o = run(&rt, Mode::Prune { disk: None }, false, |rt| {
            rt.state.lock().unwrap().users.push(user("app:2"))
        })
        .await;
        assert_eq!(reasons(&o), ["app:1 removed", "app:2 kept:in-use"]);
        assert_eq!(
            o.decisions[1].detail,
            "became used by racer (created) after planning"
        );
        assert_eq!(o.reclaimed_bytes, Some(10));
        // The re-check caught it: the runtime was never asked to remove app:2.
        assert_eq!(rt.removals.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_runtime_refusal_for_use_is_kept_not_failed_and_other_errors_fail() {
        let state = FakeState {
            images: vec![img(1, 48, 10), img(2, 48, 20)],
            user_appears_on_remove: Some((img(1, 0, 0).id, user("app:1"))),
            fail_remove: vec![(img(2, 0, 0).id, "disk on fire".into())],
            ..Default::default()
        };
        let rt = FakeRuntime::new(state);
        let o = run(&rt, Mode::Prune { disk: None }, false, |_| {}).await;
        assert_eq!(
            reasons(&o),
            ["app:1 kept:in-use", "app:2 failed:disk on fire"]
        );
        assert!(
            o.decisions[0]
                .detail
                .starts_with("the runtime refused: conflict"),
            "{}",
            o.decisions[0].detail
        );
        assert_eq!((o.removed, o.reclaimed_bytes), (0, Some(0)));
    }

    #[tokio::test]
    async fn threshold_removals_stop_when_the_measured_usage_reaches_the_low_mark() {
        // 90 % used, 100 must go to reach 80 %. Estimates say 3 images (shared bytes make
        // each look like 40), but each really frees 60 on this disk: 2 are enough.
        let mut images: Vec<Image> = (1..=4).map(|n| img(n, i64::from(n), 60)).collect();
        for i in &mut images {
            i.shared_bytes = Some(20);
        }
        let disk = DiskUsage {
            capacity_bytes: 1000,
            available_bytes: 100,
        };
        let rt = FakeRuntime::new(FakeState {
            images,
            disk,
            ..Default::default()
        });
        // The fake frees exclusive bytes (40); make them 60 by dropping the shared part after planning.
        let o = run(
            &rt,
            Mode::Emergency {
                disk,
                target_used_percent: 80.0,
                dangling_only: false,
            },
            false,
            |rt| {
                for i in &mut rt.state.lock().unwrap().images {
                    i.shared_bytes = Some(0);
                }
            },
        )
        .await;
        assert_eq!(
            reasons(&o),
            [
                "app:4 removed",
                "app:3 removed",
                "app:2 kept:below-threshold",
                "app:1 kept:below-threshold"
            ]
        );
        assert_eq!(
            o.decisions[2].detail,
            "usage reached 78.0%, at or below 80%"
        );
        assert_eq!(o.disk_after.unwrap().available_bytes, 220);
    }
}
