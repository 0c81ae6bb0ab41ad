//! The daemon's image task: every `images.pressure_check_interval` it lists each runtime's
//! images and containers, notes which images are in use (the "last used" times that order
//! pressure removals, as the kubelet's image records do), measures the image filesystem
//! and publishes an [`ImagesSummary`] for the node report and `/metrics`.
//!
//! A runtime is pruned ([`super::plan`] then [`super::execute::apply`]) when
//! - its image filesystem is at or above `high_threshold_percent` (trigger
//!   `disk_pressure`: the plan removes least recently used images down to
//!   `low_threshold_percent`, kubelet-style, besides the age rule), or
//! - its scheduled age prune is due, every `prune_interval` (±10 %) from its last prune
//!   (trigger `schedule`); the first one comes with the first successful check.
//!
//! Safety rule 1: unless `images.apply` is true the task is a dry run. Plans are made and
//! reported ("would remove"), nothing is removed, and the removal counters stay at 0.
//!
//! Runtime connections are made lazily and remade after a check that met an error, so an
//! engine that starts after the agent, or restarts, is picked up at the next check.

use caretaker_core::error::Chain;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use caretaker_core::jitter::jittered;
use caretaker_core::model::{
    CollectorError, ImagesSummary, KeptCounts, PruneRun, PruneTrigger, RuntimeImages,
};
use caretaker_core::window::Decision;
use jiff::Timestamp;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::execute::{Outcome, apply};
use super::plan::{Mode, Policy, Reason, plan};
use super::runtime::{Error, ImageRuntime, InUseIndex, layers_freed};
use super::select::{AnyRuntime, RuntimeChoice, connect};
use crate::config::ImagesConfig;

/// What the task needs; built from the `images:` config.
#[derive(Debug, Clone)]
pub struct TaskSettings {
    pub policy: Policy,
    /// Remove for real (`images.apply`). False (the default) only reports.
    pub apply: bool,
    /// Age prune period (`images.prune_interval`).
    pub prune_interval: Duration,
    /// Check period (`images.pressure_check_interval`).
    pub pressure_check_interval: Duration,
    /// Age prunes remove only inside this window (`images.maintenance_window`); `None`:
    /// whenever due. Disk-pressure prunes are an emergency and never wait.
    pub window: Option<caretaker_core::window::MaintenanceWindow>,
}

/// How the task reaches the real runtimes (the `images:` sockets, `--path.rootfs`).
#[derive(Debug, Clone)]
pub struct RuntimeAccess {
    pub choice: RuntimeChoice,
    pub docker_socket: PathBuf,
    pub containerd_socket: PathBuf,
    /// The host's root as the agent sees it: image filesystems are measured under it.
    pub rootfs: PathBuf,
    /// Timeout of each runtime API call (`images.request_timeout`).
    pub(crate) request_timeout: Duration,
}

impl RuntimeAccess {
    pub fn new(cfg: &ImagesConfig, rootfs: &Path) -> Self {
        Self {
            choice: cfg.runtime,
            docker_socket: cfg.docker_socket.clone(),
            containerd_socket: cfg.containerd_socket.clone(),
            rootfs: rootfs.to_path_buf(),
            request_timeout: cfg.request_timeout.get(),
        }
    }

    /// Connects to the configured runtime(s) through [`connect`].
    ///
    /// # Errors
    /// As [`connect`].
    pub async fn connect(&self) -> Result<Vec<AnyRuntime>, Error> {
        connect(
            self.choice,
            &self.docker_socket,
            &self.containerd_socket,
            &self.rootfs,
            self.request_timeout,
        )
        .await
    }
}

/// [`run`] on the real runtimes.
pub async fn run_on_runtimes(
    settings: TaskSettings,
    access: RuntimeAccess,
    publish: watch::Sender<Option<ImagesSummary>>,
    shutdown: CancellationToken,
) {
    let access = &access;
    run(settings, || access.connect(), publish, shutdown).await;
}

/// What the task remembers about one runtime between checks.
#[derive(Debug, Default)]
struct RuntimeMemory {
    /// Image ID → the last check that saw a container or sandbox use it.
    last_used: HashMap<String, Timestamp>,
    /// When the next scheduled prune is due; `None`: at the next check.
    next_prune: Option<Instant>,
    last_prune: Option<PruneRun>,
    removed_total: u64,
    removed_bytes_total: u64,
}

/// The task's state: its settings, the connected runtimes and their memories.
#[derive(Debug)]
pub(crate) struct ImageTask<R> {
    settings: TaskSettings,
    runtimes: Option<Vec<R>>,
    memory: HashMap<&'static str, RuntimeMemory>,
}

fn error(place: &str, message: impl ToString) -> CollectorError {
    CollectorError {
        collector: "images".into(),
        place: place.into(),
        message: message.to_string(),
    }
}

impl<R: ImageRuntime> ImageTask<R> {
    pub(crate) fn new(settings: TaskSettings) -> Self {
        Self {
            settings,
            runtimes: None,
            memory: HashMap::new(),
        }
    }

    /// One check of every runtime (connecting first when needed), pruning those under
    /// disk pressure or due for their scheduled prune.
    pub(crate) async fn check<C, F>(&mut self, connect: &mut C) -> ImagesSummary
    where
        C: FnMut() -> F,
        F: Future<Output = Result<Vec<R>, Error>>,
    {
        let checked_at = Timestamp::now();
        let mut errors = Vec::new();
        if self.runtimes.is_none() {
            match connect().await {
                Ok(rts) => {
                    info!(runtimes = ?rts.iter().map(|r| r.name()).collect::<Vec<_>>(), "Connected to the container runtime(s).");
                    self.runtimes = Some(rts);
                }
                Err(e) => {
                    warn!(error = %Chain(&e), "No container runtime answers; images are not checked.");
                    errors.push(error("connect", &e));
                }
            }
        }
        let mut runtimes = Vec::new();
        for rt in self.runtimes.iter().flatten() {
            let mem = self.memory.entry(rt.name()).or_default();
            match check_runtime(rt, mem, &self.settings, &mut errors).await {
                Ok(r) => runtimes.push(r),
                Err(e) => {
                    warn!(runtime = rt.name(), error = %Chain(&e), "Image check failed.");
                    errors.push(error(rt.name(), &e));
                }
            }
        }
        if !errors.is_empty() {
            // Reconnect next time: the engine may have restarted or another one come up.
            self.runtimes = None;
        }
        errors.truncate(caretaker_core::model::MAX_ERRORS);
        ImagesSummary {
            dry_run: !self.settings.apply,
            checked_at,
            runtimes,
            errors,
        }
    }
}

/// Observes one runtime and prunes it when needed. Problems that leave the check usable
/// (an unmeasurable filesystem) go to `errors`; the error is one that makes it useless.
async fn check_runtime<R: ImageRuntime>(
    rt: &R,
    mem: &mut RuntimeMemory,
    settings: &TaskSettings,
    errors: &mut Vec<CollectorError>,
) -> Result<RuntimeImages, Error> {
    let now = Timestamp::now();
    let images = rt.list_images().await?;
    let users = rt.list_users().await?;
    let fs = match rt.image_fs().await {
        Ok(fs) => Some(fs),
        Err(e) => {
            errors.push(error(rt.name(), &e));
            None
        }
    };

    let in_use = InUseIndex::new(&users);
    let present: HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
    mem.last_used.retain(|id, _| present.contains(id.as_str()));
    for i in images.iter().filter(|i| in_use.uses(i)) {
        mem.last_used.insert(i.id.clone(), now);
    }

    let disk = fs.as_ref().map(|f| f.disk);
    let mut used_percent = disk.map(|d| d.used_percent());
    let pressure = used_percent.is_some_and(|p| p >= settings.policy.high_threshold_percent);
    let due = mem.next_prune.is_none_or(|t| Instant::now() >= t);
    let mut removed_ids: HashSet<String> = HashSet::new();
    if pressure || due {
        let trigger = if pressure {
            PruneTrigger::DiskPressure
        } else {
            PruneTrigger::Schedule
        };
        // Outside the maintenance window an age prune only says what waits for it.
        let waiting_until = match settings
            .window
            .as_ref()
            .map(|w| w.allowed(now, false, pressure))
        {
            Some(Decision::Wait { until, .. }) if settings.apply => Some(until),
            _ => None,
        };
        let p = plan(
            &images,
            &users,
            &settings.policy,
            Mode::Prune { disk },
            now,
            &mem.last_used,
        );
        let outcome = apply(
            rt,
            p,
            !settings.apply || waiting_until.is_some(),
            &mut |_| {},
        )
        .await;
        let mut run = prune_run(&outcome, trigger, now);
        run.waiting_for_window_until = waiting_until;
        // A dry run under lasting pressure repeats itself every check: say it once.
        let repeated = run.dry_run
            && mem.last_prune.as_ref().is_some_and(|l| {
                (l.trigger, l.removed, l.removed_bytes)
                    == (run.trigger, run.removed, run.removed_bytes)
            });
        let (runtime, dry_run, removed, bytes, failed) = (
            rt.name(),
            run.dry_run,
            run.removed,
            run.removed_bytes,
            run.failed,
        );
        let what = match (dry_run, waiting_until) {
            (true, Some(_)) => " (dry run: outside the maintenance window; removals wait for it)",
            (true, None) => " (dry run: nothing removed; images.apply is false)",
            (false, _) => "",
        };
        if repeated {
            debug!(
                runtime,
                ?trigger,
                dry_run,
                removed,
                bytes,
                failed,
                "Image prune finished{what}."
            );
        } else {
            info!(
                runtime,
                ?trigger,
                dry_run,
                removed,
                bytes,
                failed,
                "Image prune finished{what}."
            );
        }
        if !outcome.dry_run {
            mem.removed_total += run.removed;
            mem.removed_bytes_total += run.removed_bytes;
            removed_ids.extend(
                outcome
                    .decisions
                    .iter()
                    .filter(|d| d.reason == Reason::Removed)
                    .map(|d| d.id.clone()),
            );
            if let Some(after) = outcome.disk_after {
                used_percent = Some(after.used_percent());
            }
        }
        mem.last_prune = Some(run);
        mem.next_prune = Some(match waiting_until {
            // Due again when the window opens (plus jitter so nodes do not start together).
            Some(until) => {
                Instant::now()
                    + Duration::try_from(until.duration_since(now)).unwrap_or_default()
                    + jittered(Duration::from_secs(60))
            }
            None => Instant::now() + jittered(settings.prune_interval),
        });
    } else {
        debug!(runtime = rt.name(), used_percent = ?used_percent, "Image filesystem below the high threshold; no prune due.");
    }

    let left: Vec<_> = images
        .iter()
        .filter(|i| !removed_ids.contains(&i.id))
        .collect();
    let unused: Vec<_> = left.iter().filter(|i| !in_use.uses(i)).collect();
    Ok(RuntimeImages {
        runtime: rt.name().to_string(),
        image_fs_mountpoint: fs
            .map(|f| f.mountpoint.display().to_string())
            .unwrap_or_default(),
        image_fs_used_percent: used_percent.map(|p| p.clamp(0.0, 100.0)),
        images_total: left.len() as u64,
        images_unused: unused.len() as u64,
        reclaimable_bytes: layers_freed(&unused.iter().map(|i| **i).collect::<Vec<_>>(), &left)
            .unwrap_or_else(|| unused.iter().map(|i| i.exclusive_bytes()).sum()),
        last_prune: mem.last_prune.clone(),
        removed_total: mem.removed_total,
        removed_bytes_total: mem.removed_bytes_total,
    })
}

/// The report's figures of one prune: counts by reason, bytes measured when possible.
fn prune_run(o: &Outcome, trigger: PruneTrigger, started_at: Timestamp) -> PruneRun {
    let mut kept = KeptCounts::default();
    let mut failed = 0;
    for d in &o.decisions {
        match d.reason {
            Reason::Removed => {}
            Reason::KeptInUse => kept.in_use += 1,
            Reason::KeptPinned => kept.pinned += 1,
            Reason::KeptYoung => kept.young += 1,
            Reason::KeptKeepList => kept.keep_list += 1,
            Reason::KeptBelowThreshold => kept.below_threshold += 1,
            Reason::Failed(_) => failed += 1,
        }
    }
    PruneRun {
        started_at,
        trigger,
        dry_run: o.dry_run,
        removed: o.removed as u64,
        removed_bytes: o.reclaimed_bytes.unwrap_or(o.estimated_bytes),
        kept,
        failed,
        waiting_for_window_until: None,
    }
}

/// Runs the task until `shutdown`: a first check shortly after the start (a random
/// fraction of the check interval, at most 10 s), then every `pressure_check_interval`
/// (±10 %). Each check's summary is published on `publish` for the node report.
pub(crate) async fn run<R, C, F>(
    settings: TaskSettings,
    mut connect: C,
    publish: watch::Sender<Option<ImagesSummary>>,
    shutdown: CancellationToken,
) where
    R: ImageRuntime,
    C: FnMut() -> F,
    F: Future<Output = Result<Vec<R>, Error>>,
{
    info!(
        dry_run = !settings.apply,
        prune_interval = ?settings.prune_interval,
        check_interval = ?settings.pressure_check_interval,
        "Image task started{}.",
        if settings.apply { "" } else { " in dry-run mode (images.apply is false): nothing will be removed" }
    );
    let first = caretaker_core::jitter::up_to(
        settings
            .pressure_check_interval
            .min(Duration::from_secs(10)),
    );
    let mut next_check = Instant::now() + first;
    let mut task = ImageTask::<R>::new(settings);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(next_check) => {}
        }
        let summary = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            s = task.check(&mut connect) => s,
        };
        publish.send_replace(Some(summary));
        next_check = Instant::now() + jittered(task.settings.pressure_check_interval);
    }
    info!("Image task stopped.");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use jiff::SignedDuration;

    use super::*;
    use crate::images::fake::{FakeRuntime, FakeState};
    use crate::images::plan::KeepList;
    use crate::images::runtime::{DiskUsage, Image, ImageUser, UserKind};

    fn img(n: u32, age_hours: i64, size: u64) -> Image {
        Image {
            id: format!("sha256:{n:064x}"),
            repo_tags: vec![format!("app:{n}")],
            repo_digests: vec![],
            created: Some(Timestamp::now() - SignedDuration::from_hours(age_hours)),
            size_bytes: size,
            shared_bytes: Some(0),
            layers: Vec::new(),
            pinned: false,
        }
    }

    fn user(tag: &str) -> ImageUser {
        ImageUser {
            kind: UserKind::Container,
            id: format!("c-{tag}"),
            image_ref: tag.into(),
            image_id: String::new(),
            state: "running".into(),
        }
    }

    fn settings(apply: bool) -> TaskSettings {
        TaskSettings {
            policy: Policy {
                min_age: Duration::from_secs(24 * 3600),
                keep: KeepList::new(&["app:9"]).unwrap(),
                keep_newest_per_repository: 0,
                high_threshold_percent: 85.0,
                low_threshold_percent: 80.0,
                pressure_min_age: Duration::ZERO,
            },
            apply,
            prune_interval: Duration::from_secs(3600),
            pressure_check_interval: Duration::from_secs(60),
            window: None,
        }
    }

    /// A 10-minute UTC window opening `offset` from now (on that day, at that minute).
    fn window_from_now(
        offset: SignedDuration,
    ) -> (caretaker_core::window::MaintenanceWindow, Timestamp) {
        use caretaker_core::window::{Day, MaintenanceWindow, WindowConfig, Zone};
        let open = (Timestamp::now() + offset).to_zoned(jiff::tz::TimeZone::UTC);
        let day = [
            Day::Monday,
            Day::Tuesday,
            Day::Wednesday,
            Day::Thursday,
            Day::Friday,
            Day::Saturday,
            Day::Sunday,
        ][usize::try_from(open.weekday().to_monday_zero_offset()).unwrap()];
        let start = jiff::civil::Time::new(open.hour(), open.minute(), 0, 0).unwrap();
        let cfg = WindowConfig {
            days: [day].into(),
            start,
            duration: caretaker_core::config::BoundedDuration::secs(600),
        };
        let opening = open
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .unwrap()
            .timestamp();
        (
            MaintenanceWindow::new(&cfg, &Zone::new("UTC").unwrap()),
            opening,
        )
    }

    /// Old unused 1 (100 B), old used 2, young unused 3 (600 B, 2 h) and 4 (700 B, 3 h),
    /// old unused keep-listed 9 (900 B); the disk is 50 % used.
    fn fake() -> Arc<FakeRuntime> {
        Arc::new(FakeRuntime::new(FakeState {
            images: vec![
                img(1, 48, 100),
                img(2, 48, 200),
                img(3, 2, 600),
                img(4, 3, 700),
                img(9, 48, 900),
            ],
            users: vec![user("app:2")],
            disk: DiskUsage {
                capacity_bytes: 10_000,
                available_bytes: 5_000,
            },
            ..FakeState::default()
        }))
    }

    fn connector(
        rt: Arc<FakeRuntime>,
    ) -> impl FnMut() -> std::future::Ready<Result<Vec<Arc<FakeRuntime>>, Error>> {
        move || std::future::ready(Ok(vec![Arc::clone(&rt)]))
    }

    fn start(
        rt: &Arc<FakeRuntime>,
        apply: bool,
    ) -> (
        watch::Receiver<Option<ImagesSummary>>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = watch::channel(None);
        let stop = CancellationToken::new();
        let h = tokio::spawn(run(
            settings(apply),
            connector(Arc::clone(rt)),
            tx,
            stop.clone(),
        ));
        (rx, stop, h)
    }

    /// The next published summary's only runtime. With paused time, the task's sleeps end
    /// as soon as this test waits, so each call sees exactly the next check.
    async fn next(rx: &mut watch::Receiver<Option<ImagesSummary>>) -> RuntimeImages {
        rx.changed().await.unwrap();
        let s = rx.borrow_and_update().clone().unwrap();
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(s.runtimes.len(), 1);
        s.runtimes[0].clone()
    }

    fn counts(r: &RuntimeImages) -> (u64, u64, u64, Option<f64>) {
        (
            r.images_total,
            r.images_unused,
            r.reclaimable_bytes,
            r.image_fs_used_percent,
        )
    }

    fn tags(rt: &FakeRuntime) -> Vec<String> {
        rt.state
            .lock()
            .unwrap()
            .images
            .iter()
            .map(|i| i.repo_tags[0].clone())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn age_prunes_wait_for_the_maintenance_window_and_disk_pressure_does_not() {
        // Closed: the window opens in 3 hours.
        let rt = fake();
        let (window, opening) = window_from_now(SignedDuration::from_hours(3));
        let mut s = settings(true);
        s.window = Some(window);
        let (tx, mut rx) = watch::channel(None);
        let stop = CancellationToken::new();
        let h = tokio::spawn(run(s, connector(Arc::clone(&rt)), tx, stop.clone()));
        let r = next(&mut rx).await;
        let p = r.last_prune.clone().unwrap();
        assert_eq!(
            (p.trigger, p.dry_run, p.removed, p.waiting_for_window_until),
            (PruneTrigger::Schedule, true, 1, Some(opening))
        );
        assert_eq!(
            (rt.removals.load(Ordering::Relaxed), tags(&rt).len()),
            (0, 5)
        );
        // Disk pressure is an emergency: it removes now.
        rt.state.lock().unwrap().disk.available_bytes = 1_000;
        let p = next(&mut rx).await.last_prune.unwrap();
        assert_eq!(
            (p.trigger, p.dry_run, p.waiting_for_window_until),
            (PruneTrigger::DiskPressure, false, None)
        );
        assert_eq!(rt.removals.load(Ordering::Relaxed), 3);
        stop.cancel();
        h.await.unwrap();

        // Open: it opened a minute ago, for 10 minutes.
        let rt = fake();
        let (window, _) = window_from_now(SignedDuration::from_secs(-60));
        let mut s = settings(true);
        s.window = Some(window);
        let (tx, mut rx) = watch::channel(None);
        let stop = CancellationToken::new();
        let h = tokio::spawn(run(s, connector(Arc::clone(&rt)), tx, stop.clone()));
        let p = next(&mut rx).await.last_prune.unwrap();
        assert_eq!(
            (p.trigger, p.dry_run, p.removed, p.waiting_for_window_until),
            (PruneTrigger::Schedule, false, 1, None)
        );
        assert_eq!(tags(&rt).len(), 4);
        stop.cancel();
        h.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn dry_run_by_default_reports_the_scheduled_prune_and_removes_nothing() {
        let rt = fake();
        let (mut rx, stop, h) = start(&rt, false);
        let r = next(&mut rx).await;
        assert_eq!(counts(&r), (5, 4, 2300, Some(50.0)));
        assert_eq!(r.image_fs_mountpoint, "/var/lib/fake");
        let p = r.last_prune.clone().unwrap();
        assert_eq!(
            (p.trigger, p.dry_run, p.removed, p.removed_bytes, p.failed),
            (PruneTrigger::Schedule, true, 1, 100, 0)
        );
        assert_eq!(
            p.kept,
            KeptCounts {
                in_use: 1,
                pinned: 0,
                young: 2,
                keep_list: 1,
                below_threshold: 0
            }
        );
        assert_eq!((r.removed_total, r.removed_bytes_total), (0, 0));
        assert!(rx.borrow().as_ref().unwrap().dry_run);
        // Nothing was asked of the runtime.
        assert_eq!(rt.removals.load(Ordering::Relaxed), 0);
        assert_eq!(tags(&rt).len(), 5);
        // The next check, a minute later, has no prune due: the last prune is the same.
        let r2 = next(&mut rx).await;
        assert_eq!(r2.last_prune.unwrap().started_at, p.started_at);
        // Under pressure a dry run still only reports.
        rt.state.lock().unwrap().disk.available_bytes = 1_000;
        let r3 = next(&mut rx).await;
        let p3 = r3.last_prune.unwrap();
        assert_eq!(
            (p3.trigger, p3.dry_run, p3.removed),
            (PruneTrigger::DiskPressure, true, 3)
        );
        assert_eq!(
            (rt.removals.load(Ordering::Relaxed), r3.removed_total),
            (0, 0)
        );
        stop.cancel();
        h.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn applied_prunes_run_on_schedule_and_on_pressure_least_recently_used_first() {
        let rt = fake();
        let (mut rx, stop, h) = start(&rt, true);
        // First check: the scheduled age prune removes the old unused image 1.
        let r = next(&mut rx).await;
        let p = r.last_prune.clone().unwrap();
        assert_eq!(
            (p.trigger, p.dry_run, p.removed, p.removed_bytes),
            (PruneTrigger::Schedule, false, 1, 100)
        );
        assert_eq!(counts(&r), (4, 3, 2200, Some(49.0)));
        assert_eq!((r.removed_total, r.removed_bytes_total), (1, 100));

        // Image 4 is used at the next check (and stops being used after it): it is then
        // more recently used than image 3, though created earlier.
        rt.state.lock().unwrap().users.push(user("app:4"));
        let r = next(&mut rx).await;
        assert_eq!(
            r.last_prune.unwrap().started_at,
            p.started_at,
            "no prune below the high threshold"
        );
        {
            let mut s = rt.state.lock().unwrap();
            s.users.retain(|u| u.image_ref != "app:4");
            // 86 % used: 600 bytes must go to reach 80 %, which image 3 alone frees.
            s.disk.available_bytes = 1_400;
        }
        let r = next(&mut rx).await;
        let p = r.last_prune.clone().unwrap();
        assert_eq!(
            (p.trigger, p.removed, p.removed_bytes),
            (PruneTrigger::DiskPressure, 1, 600)
        );
        assert_eq!(
            p.kept,
            KeptCounts {
                in_use: 1,
                pinned: 0,
                young: 0,
                keep_list: 1,
                below_threshold: 1
            }
        );
        assert_eq!(counts(&r), (3, 2, 1600, Some(80.0)));
        assert_eq!((r.removed_total, r.removed_bytes_total), (2, 700));
        assert_eq!(tags(&rt), ["app:2", "app:4", "app:9"]);
        stop.cancel();
        h.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_runtime_is_an_error_in_the_summary_and_retried() {
        let rt = fake();
        let mut calls = 0;
        let mut connect = || {
            calls += 1;
            let r = if calls == 1 {
                Err(Error::Connect {
                    runtime: "docker",
                    socket: "/run/docker.sock".into(),
                    message: "connection refused".into(),
                })
            } else {
                Ok(vec![Arc::clone(&rt)])
            };
            std::future::ready(r)
        };
        let mut task = ImageTask::new(settings(false));
        let s = task.check(&mut connect).await;
        assert!(s.runtimes.is_empty());
        assert_eq!(s.errors.len(), 1);
        assert_eq!(
            s.errors[0].message,
            "cannot connect to docker at /run/docker.sock: connection refused"
        );
        let s = task.check(&mut connect).await;
        assert!(s.errors.is_empty());
        assert_eq!(counts(&s.runtimes[0]), (5, 4, 2300, Some(50.0)));
    }
}
