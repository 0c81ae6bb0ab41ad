//! The daemon's log task: every `logs.check_interval` (±10 % jitter) one rotation pass
//! ([`LogEngine::run_due`]) on a blocking thread, each retention rule applied at its own
//! `interval`, and now and then a dry run of the retention rules that measures what they
//! could delete now (`reclaimable_bytes`). After every pass the task publishes a
//! [`LogsSummary`] (last pass, totals since start) on a `watch` channel, which the
//! collector puts into the next node report.
//!
//! ```no_run
//! # async fn f(cfg: caretaker_agent::config::LogsConfig) {
//! use caretaker_agent::logs::daemon::{self, LogsTask};
//! let (tx, rx) = tokio::sync::watch::channel(None);
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! tokio::spawn(daemon::run(LogsTask::new(&cfg), tx, shutdown.clone()));
//! # }
//! ```

use caretaker_core::error::Chain;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use caretaker_core::jitter::jittered;
use caretaker_core::model::{
    CollectorError, LogCounts, LogsSummary, MAX_ERRORS, MAX_OWNED_LISTED, OwnedLog as ModelOwnedLog,
};
use jiff::Timestamp;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::engine::LogEngine;
use super::summary::{LogError, OwnedLog, RotationSummary, SweepSummary};
use super::sweep::{self, RetentionRule};
use crate::config::LogsConfig;

/// How often `reclaimable_bytes` is measured by default: a dry run of the retention rules
/// costs one `lstat` per matching file, so it runs less often than the rotation check.
pub(crate) const DEFAULT_RECLAIMABLE_INTERVAL: Duration = Duration::from_secs(60);

/// Whether the config asks for any log work (policies, a logrotate.conf or retention
/// rules); without any, the daemon runs no log task and reports carry no `logs`.
pub fn wanted(cfg: &LogsConfig) -> bool {
    !cfg.policies.is_empty() || cfg.logrotate_conf.is_some() || !cfg.retention.is_empty()
}

/// What the task runs.
#[derive(Debug, Clone)]
pub struct LogsTask {
    /// Loaded policies, state file, roots and retention rules; shared with the blocking
    /// threads that run the passes.
    pub engine: Arc<LogEngine>,
    /// Time between rotation checks (before jitter). Default `logs.check_interval`, 10 s.
    pub check_interval: Duration,
    /// Time between measurements of `reclaimable_bytes` (one is also taken right after a
    /// sweep). Default [`DEFAULT_RECLAIMABLE_INTERVAL`].
    pub reclaimable_interval: Duration,
}

impl LogsTask {
    /// Loads the config's policies (bad blocks are left out and reported; see
    /// [`LogEngine::new`]).
    pub fn new(cfg: &LogsConfig) -> Self {
        Self::with_engine(LogEngine::new(cfg, None))
    }

    /// A task around an engine built elsewhere (tests pick the time zone).
    pub(crate) fn with_engine(engine: LogEngine) -> Self {
        let check_interval = engine.check_interval();
        Self {
            engine: Arc::new(engine),
            check_interval,
            reclaimable_interval: DEFAULT_RECLAIMABLE_INTERVAL,
        }
    }
}

/// What one tick did: the rotation pass (its `errors` without the config's load errors),
/// the retention rules that were due, and a dry run of all rules when one was taken.
#[derive(Debug, Clone, Default)]
pub struct PassResult {
    pub rotation: RotationSummary,
    pub sweep: Option<SweepSummary>,
    pub reclaimable: Option<SweepSummary>,
}

/// Turns passes into [`LogsSummary`]s: keeps the totals since start and the latest
/// reclaimable measurement. Pure bookkeeping, no I/O.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker {
    totals: LogCounts,
    reclaimable: Option<(u64, Timestamp)>,
}

/// One pass's counts.
pub fn counts(pass: &PassResult) -> LogCounts {
    let r = &pass.rotation;
    let (swept, swept_bytes, sweep_errors) = pass.sweep.as_ref().map_or((0, 0, 0), |s| {
        (
            s.files.len() as u64,
            s.files.iter().map(|f| f.bytes).sum::<u64>(),
            s.errors.len() as u64,
        )
    });
    LogCounts {
        files_checked: r.files_checked,
        rotated: r.rotated,
        rotated_bytes: r.rotated_bytes,
        compressed: r.compressed,
        compressed_bytes_before: r.compressed_bytes_before,
        compressed_bytes_after: r.compressed_bytes_after,
        deleted: r.deleted + swept,
        deleted_bytes: r.deleted_bytes + swept_bytes,
        errors: r.errors.len() as u64 + sweep_errors,
    }
}

fn collector_error(e: &LogError) -> CollectorError {
    CollectorError {
        collector: "logs".into(),
        place: e.place.clone(),
        message: e.message.clone(),
    }
}

impl Tracker {
    /// Adds a pass to the totals and returns the summary to report. `config_errors` (the
    /// engine's load errors) are listed after the pass's own errors; the list is capped at
    /// [`MAX_ERRORS`].
    pub(crate) fn record(
        &mut self,
        at: Timestamp,
        pass: &PassResult,
        config_errors: &[LogError],
    ) -> LogsSummary {
        let last_pass = counts(pass);
        self.totals.add(&last_pass);
        if let Some(r) = &pass.reclaimable {
            self.reclaimable = Some((r.freed_bytes, at));
        }
        let sweep_errors = pass.sweep.iter().flat_map(|s| &s.errors);
        let errors = pass
            .rotation
            .errors
            .iter()
            .chain(sweep_errors)
            .chain(config_errors)
            .take(MAX_ERRORS)
            .map(collector_error)
            .collect();
        // The logs another rotator owns, by path, the first MAX_OWNED_LISTED of them.
        let mut owned: Vec<&OwnedLog> = pass.rotation.owned.iter().collect();
        owned.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        LogsSummary {
            checked_at: at,
            last_pass,
            totals: self.totals,
            reclaimable_bytes: self.reclaimable.map_or(0, |(b, _)| b),
            reclaimable_at: self.reclaimable.map(|(_, t)| t),
            errors,
            owned_elsewhere: owned
                .into_iter()
                .take(MAX_OWNED_LISTED)
                .map(|o| ModelOwnedLog {
                    path: o.path.display().to_string(),
                    owner: o.owner.clone(),
                })
                .collect(),
            owned_elsewhere_total: pass.rotation.owned.len() as u64,
        }
    }
}

/// One tick's blocking work: rotation, the due sweeps (applied), then the dry run.
fn pass(engine: &LogEngine, due: &[RetentionRule], measure: bool) -> PassResult {
    let mut rotation = engine.run_due(Timestamp::now());
    // run_due lists the config's load errors first; they are reported apart.
    let n = engine.load_errors().len().min(rotation.errors.len());
    rotation.errors.drain(..n);
    let sweep =
        (!due.is_empty()).then(|| sweep::sweep(due, engine.roots(), SystemTime::now(), true));
    let reclaimable =
        measure.then(|| sweep::sweep(engine.retention(), engine.roots(), SystemTime::now(), false));
    PassResult {
        rotation,
        sweep,
        reclaimable,
    }
}

/// Runs the log task until `shutdown`, publishing a summary on `tx` after every pass.
///
/// Config problems are logged once here (with their `file:line`), and listed in every
/// summary. A pass that is running when `shutdown` comes is not waited for: every step of
/// a pass is crash-safe, and the next start finishes what it left.
pub async fn run(
    task: LogsTask,
    tx: watch::Sender<Option<LogsSummary>>,
    shutdown: CancellationToken,
) {
    let engine = task.engine;
    for e in engine.load_errors() {
        warn!(place = %e.place, error = %e.message, "Log rotation config problem; the block it is in is not rotated.");
    }
    for w in engine.load_warnings() {
        warn!(place = %w.place, warning = %w.message, "Log rotation config line ignored.");
    }
    info!(
        policies = engine.policies().len(),
        retention_rules = engine.retention().len(),
        interval = ?task.check_interval,
        state_file = %engine.state_file().display(),
        "Log rotation started."
    );
    let rules: Vec<RetentionRule> = engine.retention().to_vec();
    let start = Instant::now();
    // Every rule sweeps at the first pass, then at its own interval.
    let mut next_sweep: Vec<Instant> = vec![start; rules.len()];
    let mut next_measure = start;
    let mut tracker = Tracker::default();
    let mut next = start + jittered(task.check_interval);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = sleep_until(next) => {}
        }
        let now = Instant::now();
        let mut due = Vec::new();
        for (rule, at) in rules.iter().zip(next_sweep.iter_mut()) {
            if *at <= now {
                due.push(rule.clone());
                *at = now + rule.interval.get();
            }
        }
        let measure = !rules.is_empty() && (next_measure <= now || !due.is_empty());
        if measure {
            next_measure = now + task.reclaimable_interval;
        }
        let e = Arc::clone(&engine);
        let work = tokio::task::spawn_blocking(move || pass(&e, &due, measure));
        let result = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            r = work => r,
        };
        match result {
            Ok(p) => {
                let summary = tracker.record(Timestamp::now(), &p, engine.load_errors());
                debug!(
                    checked = summary.last_pass.files_checked,
                    rotated = summary.last_pass.rotated,
                    deleted = summary.last_pass.deleted,
                    errors = summary.last_pass.errors,
                    "Log pass done."
                );
                if summary.last_pass.rotated + summary.last_pass.deleted > 0 {
                    info!(
                        rotated = summary.last_pass.rotated,
                        rotated_bytes = summary.last_pass.rotated_bytes,
                        compressed = summary.last_pass.compressed,
                        deleted = summary.last_pass.deleted,
                        deleted_bytes = summary.last_pass.deleted_bytes,
                        "Logs rotated."
                    );
                }
                tx.send_replace(Some(summary));
            }
            Err(e) => {
                warn!(error = %Chain(&e), "The log rotation pass panicked; the next pass tries again.")
            }
        }
        next = Instant::now() + jittered(task.check_interval);
    }
    info!("Log rotation stopped.");
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::logs::summary::SweptFile;

    fn err(place: &str) -> LogError {
        LogError {
            place: place.into(),
            message: "broken".into(),
        }
    }

    fn rotation(rotated: u64, bytes: u64, errors: Vec<LogError>) -> RotationSummary {
        RotationSummary {
            files_checked: 3,
            rotated,
            rotated_bytes: bytes,
            compressed: rotated,
            compressed_bytes_before: bytes,
            compressed_bytes_after: bytes / 10,
            deleted: 1,
            deleted_bytes: 7,
            errors,
            ..RotationSummary::default()
        }
    }

    fn swept(sizes: &[u64], errors: Vec<LogError>) -> SweepSummary {
        SweepSummary {
            files: sizes
                .iter()
                .map(|b| SweptFile {
                    path: PathBuf::from("/x"),
                    bytes: *b,
                    age_seconds: 1,
                })
                .collect(),
            freed_bytes: sizes.iter().sum(),
            errors,
            ..SweepSummary::default()
        }
    }

    #[test]
    fn tracker_sums_passes_and_keeps_the_last_reclaimable_measurement() {
        let mut t = Tracker::default();
        let t1: Timestamp = "2026-11-29T03:00:00Z".parse().unwrap();
        let t2: Timestamp = "2026-11-29T03:00:10Z".parse().unwrap();
        let config = vec![err("/etc/logrotate.conf:4")];
        let first = PassResult {
            rotation: rotation(2, 1000, vec![err("/var/log/a.log")]),
            sweep: Some(swept(&[50, 60], vec![err("/var/log/*.gz")])),
            reclaimable: Some(swept(&[4096], vec![])),
        };
        let s1 = t.record(t1, &first, &config);
        assert_eq!(
            s1.last_pass,
            LogCounts {
                files_checked: 3,
                rotated: 2,
                rotated_bytes: 1000,
                compressed: 2,
                compressed_bytes_before: 1000,
                compressed_bytes_after: 100,
                deleted: 3,
                deleted_bytes: 117,
                errors: 2,
            }
        );
        assert_eq!(s1.totals, s1.last_pass);
        assert_eq!((s1.reclaimable_bytes, s1.reclaimable_at), (4096, Some(t1)));
        assert_eq!(
            s1.errors
                .iter()
                .map(|e| (e.collector.as_str(), e.place.as_str()))
                .collect::<Vec<_>>(),
            vec![
                ("logs", "/var/log/a.log"),
                ("logs", "/var/log/*.gz"),
                ("logs", "/etc/logrotate.conf:4")
            ]
        );
        // A quiet pass without a measurement: zeros for the pass, totals and the last
        // measurement kept, only the config error left.
        let quiet = PassResult {
            rotation: RotationSummary {
                files_checked: 3,
                ..RotationSummary::default()
            },
            ..PassResult::default()
        };
        let s2 = t.record(t2, &quiet, &config);
        assert_eq!(
            s2.last_pass,
            LogCounts {
                files_checked: 3,
                ..LogCounts::default()
            }
        );
        assert_eq!(
            (
                s2.totals.files_checked,
                s2.totals.rotated,
                s2.totals.deleted_bytes,
                s2.totals.errors
            ),
            (6, 2, 117, 2)
        );
        assert_eq!(
            (s2.reclaimable_bytes, s2.reclaimable_at, s2.checked_at),
            (4096, Some(t1), t2)
        );
        assert_eq!(s2.errors.len(), 1);
        // The report's validation accepts what the tracker produces.
        let wire = caretaker_proto::pb::LogsSummary::from(s2.clone());
        assert_eq!(LogsSummary::try_from(wire).unwrap(), s2);
    }

    #[test]
    fn error_list_is_capped() {
        let mut t = Tracker::default();
        let many: Vec<LogError> = (0..300)
            .map(|i| err(&format!("/var/log/{i}.log")))
            .collect();
        let p = PassResult {
            rotation: rotation(0, 0, many),
            ..PassResult::default()
        };
        let s = t.record(Timestamp::UNIX_EPOCH, &p, &[err("conf:1")]);
        assert_eq!((s.errors.len(), s.last_pass.errors), (MAX_ERRORS, 300));
        assert_eq!(s.reclaimable_at, None);
    }

    #[test]
    fn logs_left_to_other_rotators_are_listed_by_path_capped_and_counted() {
        let mut t = Tracker::default();
        let mut rotation = rotation(0, 0, vec![]);
        rotation.owned = (0..150)
            .rev()
            .map(|i| OwnedLog {
                path: format!("/var/log/pods/p{i:03}/c/0.log").into(),
                owner: "kubelet".into(),
            })
            .collect();
        rotation.owned.push(OwnedLog {
            path: "/var/log/auth.log".into(),
            owner: "logrotate (/etc/logrotate.d/rsyslog:1)".into(),
        });
        let p = PassResult {
            rotation,
            ..PassResult::default()
        };
        let s = t.record(Timestamp::UNIX_EPOCH, &p, &[]);
        assert_eq!(
            (s.owned_elsewhere.len(), s.owned_elsewhere_total),
            (MAX_OWNED_LISTED, 151)
        );
        assert_eq!(
            s.owned_elsewhere[0],
            ModelOwnedLog {
                path: "/var/log/auth.log".into(),
                owner: "logrotate (/etc/logrotate.d/rsyslog:1)".into(),
            }
        );
        assert_eq!(s.owned_elsewhere[1].path, "/var/log/pods/p000/c/0.log");
        // The wire form carries both and passes the report's validation.
        let wire = caretaker_proto::pb::LogsSummary::from(s.clone());
        assert_eq!(wire.owned_elsewhere_total, 151);
        assert_eq!(LogsSummary::try_from(wire).unwrap(), s);
    }

    #[test]
    fn wanted_only_with_policies_a_conf_or_retention() {
        let mut cfg = LogsConfig::default();
        assert!(!wanted(&cfg));
        cfg.retention.push(RetentionRule::new(
            "/var/log/*.gz",
            Duration::from_secs(86_400),
        ));
        assert!(wanted(&cfg));
        let cfg = LogsConfig {
            logrotate_conf: Some("/etc/logrotate.conf".into()),
            ..LogsConfig::default()
        };
        assert!(wanted(&cfg));
    }
}
