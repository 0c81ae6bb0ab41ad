//! The emergency cleanup: free disk in a safe order until `target_free_percent` of the
//! filesystem is available, and stop as soon as it is:
//!
//! 1. delete rotated/compressed logs past retention (oldest first);
//! 2. compress rotated logs that are not compressed yet (largest first);
//! 3. remove dangling (untagged) images;
//! 4. remove unused images, least recently used first, ignoring `min_age` but never the
//!    in-use, pinned or keep-list rules.
//!
//! Live logs are never touched (see [`super::logs`]). Before each action the filesystem is
//! measured again; a dry run (the default) measures once and counts what each action would
//! free (compression cannot be known in advance and counts 0). The summary gives bytes freed
//! per step, the largest remaining consumers and what could not be freed and why.

use std::collections::HashSet;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use caretaker_core::render::bytes;
use comfy_table::{Table, presets};
use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;
use serde::Serialize;

use super::consumers::{Consumer, DEFAULT_PLACES, largest};
use super::logs::LogReclaimer;
use crate::images::execute::apply;
use crate::images::plan::{Mode, Policy, Reason, plan};
use crate::images::runtime::{DiskUsage, ImageRuntime};
use crate::stats::filesystems::{statvfs, under_root};

/// Measures the filesystem the target is about.
pub trait DiskProbe: Send + Sync {
    /// # Errors
    /// statvfs failed.
    fn measure(&self) -> io::Result<DiskUsage>;
}

/// statvfs of a path.
#[derive(Debug, Clone)]
pub struct StatvfsProbe(pub PathBuf);

impl DiskProbe for StatvfsProbe {
    fn measure(&self) -> io::Result<DiskUsage> {
        let s = statvfs(&self.0)
            .map_err(|e| io::Error::other(format!("statvfs {}: {}", self.0.display(), e.desc())))?;
        let d = s.df();
        Ok(DiskUsage {
            capacity_bytes: d.size_bytes,
            available_bytes: d.avail_bytes,
        })
    }
}

/// Free percent: available × 100 / capacity (100 for an empty filesystem).
pub(crate) fn free_percent(d: &DiskUsage) -> f64 {
    100.0 - d.used_percent()
}

/// One thing the cleanup did or would do.
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    /// `delete`, `compress` or `remove-image`.
    pub action: &'static str,
    pub target: String,
    /// Bytes freed (or, in a dry run, that would be; 0 for a compression not yet done).
    pub bytes: u64,
    /// `done`, `dry-run`, or a kept/failed reason (`kept:in-use`, `failed:<error>`).
    pub result: String,
}

/// One step of the cleanup.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: u8,
    pub name: &'static str,
    pub freed_bytes: u64,
    pub actions: Vec<Action>,
    /// Why the step did nothing, if it did nothing (target already met, no runtime …).
    pub note: Option<String>,
}

/// What the cleanup did.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub dry_run: bool,
    pub target_free_percent: f64,
    pub(crate) measured_path: PathBuf,
    pub before: DiskUsage,
    pub after: DiskUsage,
    pub target_met: bool,
    pub steps: Vec<StepReport>,
    pub largest_consumers: Vec<Consumer>,
    /// What could not be freed and why.
    pub not_freed: Vec<String>,
}

/// Progress: a bar on a terminal, plain lines otherwise (both on stderr).
pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Progress {
    /// A bar when stderr is a terminal, else plain lines.
    pub fn stderr() -> Self {
        let bar = io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(0);
            if let Ok(style) =
                ProgressStyle::with_template("{msg:40} [{bar:30}] {bytes}/{total_bytes}")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b
        });
        Self { bar, quiet: false }
    }

    /// No output (tests, benchmarks).
    pub fn quiet() -> Self {
        Self {
            bar: None,
            quiet: true,
        }
    }

    fn start(&mut self, need: u64) {
        if let Some(b) = &self.bar {
            b.set_length(need.max(1));
        }
    }

    fn step(&mut self, n: u8, name: &str) {
        match &self.bar {
            Some(b) => b.set_message(format!("step {n}/4: {name}")),
            None if !self.quiet => eprintln!("step {n}/4: {name}"),
            None => {}
        }
    }

    fn action(&mut self, a: &Action, freed_total: u64) {
        match &self.bar {
            Some(b) => b.set_position(freed_total),
            None if !self.quiet => eprintln!(
                "  {} {} ({}): {}",
                a.action,
                a.target,
                bytes(a.bytes),
                a.result
            ),
            None => {}
        }
    }

    fn finish(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stop once this percent of the filesystem is available.
    pub target_free_percent: f64,
    /// Without it nothing changes (dry run).
    pub apply: bool,
    /// Directories (as the agent sees them) searched for the largest consumers.
    pub consumer_places: Vec<PathBuf>,
}

impl Options {
    /// The default consumer places under `rootfs`.
    pub(crate) fn default_places(rootfs: &Path) -> Vec<PathBuf> {
        DEFAULT_PLACES
            .iter()
            .map(|p| under_root(rootfs, p))
            .collect()
    }
}

/// Where the run stands: measured (apply) or measured once plus what the dry run would free.
struct Tracker<'a> {
    probe: &'a dyn DiskProbe,
    dry_run: bool,
    start: DiskUsage,
    simulated: u64,
    target: f64,
}

impl Tracker<'_> {
    fn now(&self) -> DiskUsage {
        if self.dry_run {
            let mut d = self.start;
            d.available_bytes = (d.available_bytes + self.simulated).min(d.capacity_bytes);
            return d;
        }
        self.probe.measure().unwrap_or(self.start)
    }

    fn met(&self) -> bool {
        free_percent(&self.now()) >= self.target
    }
}

/// Runs the four steps against `logs`, the image runtimes and the filesystem `probe`
/// measures, then sums up.
pub async fn run<R: ImageRuntime>(
    logs: &dyn LogReclaimer,
    runtimes: &[R],
    policy: &Policy,
    probe: &dyn DiskProbe,
    measured_path: PathBuf,
    opts: &Options,
    progress: &mut Progress,
) -> io::Result<Summary> {
    let before = probe.measure()?;
    let mut t = Tracker {
        probe,
        dry_run: !opts.apply,
        start: before,
        simulated: 0,
        target: opts.target_free_percent,
    };
    let target_used = 100.0 - opts.target_free_percent;
    progress.start(before.bytes_to_reach(target_used));
    let mut steps = Vec::new();
    let mut not_freed = Vec::new();
    let mut freed_total = 0u64;
    let already_met = |t: &Tracker<'_>| format!("target met: {:.1}% free", free_percent(&t.now()));

    // 1. Expired rotated logs.
    progress.step(1, "delete rotated logs past retention");
    let mut s1 = StepReport {
        step: 1,
        name: "delete rotated logs past retention",
        freed_bytes: 0,
        actions: vec![],
        note: None,
    };
    match logs.expired(SystemTime::now()) {
        Err(e) => not_freed.push(format!(
            "rotated logs past retention: cannot list them: {e}"
        )),
        Ok(files) => {
            for f in files {
                if t.met() {
                    s1.note.get_or_insert_with(|| already_met(&t));
                    break;
                }
                let a = if t.dry_run {
                    t.simulated += f.size_bytes;
                    Action {
                        action: "delete",
                        target: f.path.display().to_string(),
                        bytes: f.size_bytes,
                        result: "dry-run".into(),
                    }
                } else {
                    match logs.delete(&f) {
                        Ok(b) => Action {
                            action: "delete",
                            target: f.path.display().to_string(),
                            bytes: b,
                            result: "done".into(),
                        },
                        Err(e) => {
                            not_freed.push(format!("{}: {e}", f.path.display()));
                            Action {
                                action: "delete",
                                target: f.path.display().to_string(),
                                bytes: 0,
                                result: format!("failed:{e}"),
                            }
                        }
                    }
                };
                s1.freed_bytes += a.bytes;
                freed_total += a.bytes;
                progress.action(&a, freed_total);
                s1.actions.push(a);
            }
        }
    }
    steps.push(s1);

    // 2. Compress rotated logs.
    progress.step(2, "compress rotated logs");
    let mut s2 = StepReport {
        step: 2,
        name: "compress rotated logs",
        freed_bytes: 0,
        actions: vec![],
        note: None,
    };
    let deleted: HashSet<String> = steps[0].actions.iter().map(|a| a.target.clone()).collect();
    match logs.uncompressed_rotated() {
        Err(e) => not_freed.push(format!("rotated logs to compress: cannot list them: {e}")),
        Ok(files) => {
            for f in files
                .into_iter()
                .filter(|f| !deleted.contains(&f.path.display().to_string()))
            {
                if t.met() {
                    s2.note.get_or_insert_with(|| already_met(&t));
                    break;
                }
                let a = if t.dry_run {
                    Action {
                        action: "compress",
                        target: f.path.display().to_string(),
                        bytes: 0,
                        result: "dry-run".into(),
                    }
                } else {
                    match logs.compress(&f) {
                        Ok(b) => Action {
                            action: "compress",
                            target: f.path.display().to_string(),
                            bytes: b,
                            result: "done".into(),
                        },
                        Err(e) => {
                            not_freed
                                .push(format!("{}: compression failed: {e}", f.path.display()));
                            Action {
                                action: "compress",
                                target: f.path.display().to_string(),
                                bytes: 0,
                                result: format!("failed:{e}"),
                            }
                        }
                    }
                };
                s2.freed_bytes += a.bytes;
                freed_total += a.bytes;
                progress.action(&a, freed_total);
                s2.actions.push(a);
            }
        }
    }
    steps.push(s2);

    // 3 and 4. Images.
    let mut planned_dangling: HashSet<String> = HashSet::new();
    for (n, dangling_only, name) in [
        (3u8, true, "remove dangling images"),
        (4, false, "remove unused images, least recently used first"),
    ] {
        progress.step(n, name);
        let mut s = StepReport {
            step: n,
            name,
            freed_bytes: 0,
            actions: vec![],
            note: None,
        };
        if runtimes.is_empty() {
            s.note = Some("no image runtime answered".into());
        }
        for rt in runtimes {
            if t.met() {
                s.note.get_or_insert_with(|| already_met(&t));
                break;
            }
            let (images, users) = match (rt.list_images().await, rt.list_users().await) {
                (Ok(i), Ok(u)) => (i, u),
                (Err(e), _) | (_, Err(e)) => {
                    not_freed.push(format!("{}: images not pruned: {e}", rt.name()));
                    continue;
                }
            };
            let images: Vec<_> = images
                .into_iter()
                .filter(|i| !planned_dangling.contains(&i.id))
                .collect();
            let disk = t.now();
            let mode = Mode::Emergency {
                disk,
                target_used_percent: target_used,
                dangling_only,
            };
            let p = plan(
                &images,
                &users,
                policy,
                mode,
                Timestamp::now(),
                &Default::default(),
            );
            if !dangling_only {
                let mut kept: std::collections::BTreeMap<String, (usize, u64)> = Default::default();
                for d in &p.decisions {
                    if matches!(
                        d.reason,
                        Reason::KeptInUse | Reason::KeptPinned | Reason::KeptKeepList
                    ) {
                        let e = kept.entry(d.reason.to_string()).or_default();
                        e.0 += 1;
                        e.1 += d.size_bytes;
                    }
                }
                for (reason, (count, size)) in kept {
                    not_freed.push(format!(
                        "{}: {count} images {reason} ({})",
                        rt.name(),
                        bytes(size)
                    ));
                }
            }
            let outcome = apply(rt, p, t.dry_run, &mut |_| {}).await;
            // Only the images planned for removal become actions; the rest were never candidates.
            for d in outcome.decisions.into_iter().filter(|d| d.by_threshold) {
                if dangling_only {
                    planned_dangling.insert(d.id.clone());
                }
                let (b, result) = match &d.reason {
                    Reason::Removed if t.dry_run => (d.reclaimable_bytes, "dry-run".to_string()),
                    Reason::Removed => (d.reclaimable_bytes, "done".to_string()),
                    Reason::KeptBelowThreshold => (0, d.reason.to_string()),
                    r => {
                        not_freed.push(format!("{}: {}: {r} ({})", rt.name(), d.image, d.detail));
                        (0, r.to_string())
                    }
                };
                if t.dry_run {
                    t.simulated += b;
                }
                let a = Action {
                    action: "remove-image",
                    target: d.image,
                    bytes: b,
                    result,
                };
                s.freed_bytes += a.bytes;
                freed_total += a.bytes;
                progress.action(&a, freed_total);
                s.actions.push(a);
            }
        }
        steps.push(s);
    }
    progress.finish();

    let after = t.now();
    let target_met = free_percent(&after) >= opts.target_free_percent;
    if !target_met {
        not_freed.insert(
            0,
            format!(
                "target not met: {:.1}% free, {}% wanted; {} more must be freed by hand",
                free_percent(&after),
                opts.target_free_percent,
                bytes(after.bytes_to_reach(target_used))
            ),
        );
    }
    let places = opts.consumer_places.clone();
    let largest_consumers = tokio::task::spawn_blocking(move || largest(&places, 10))
        .await
        .unwrap_or_default();
    Ok(Summary {
        dry_run: t.dry_run,
        target_free_percent: opts.target_free_percent,
        measured_path,
        before,
        after,
        target_met,
        steps,
        largest_consumers,
        not_freed,
    })
}

/// The summary for a terminal.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let mode = if s.dry_run {
        "dry run; --apply frees the space"
    } else {
        "applied"
    };
    out.push_str(&format!(
        "emergency cleanup of {} ({mode}): {:.1}% free before, {:.1}% after, target {}% {}\n",
        s.measured_path.display(),
        free_percent(&s.before),
        free_percent(&s.after),
        s.target_free_percent,
        if s.target_met { "met" } else { "NOT met" }
    ));
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED);
    t.set_header(vec!["step", "what", "actions", "freed", "note"]);
    for st in &s.steps {
        t.add_row(vec![
            st.step.to_string(),
            st.name.to_string(),
            st.actions.len().to_string(),
            bytes(st.freed_bytes),
            st.note.clone().unwrap_or_default(),
        ]);
    }
    out.push_str(&t.to_string());
    out.push('\n');
    if !s.largest_consumers.is_empty() {
        let mut t = Table::new();
        t.load_preset(presets::UTF8_FULL_CONDENSED);
        t.set_header(vec!["largest remaining consumers", "size"]);
        for c in &s.largest_consumers {
            t.add_row(vec![c.path.display().to_string(), bytes(c.bytes)]);
        }
        out.push_str(&t.to_string());
        out.push('\n');
    }
    if !s.not_freed.is_empty() {
        out.push_str("could not free:\n");
        for n in &s.not_freed {
            out.push_str(&format!("  - {n}\n"));
        }
    }
    out
}
