//! The daemon's log check: every `log_check.interval`, an incremental check (only new
//! bytes), the state saved, and a summary for the node report: the top containers per
//! pattern over the last 24 h with a sample line each, and findings when a count crosses
//! its threshold or jumps against the 24 h before.
//!
//! [`run`] logs each check's findings and publishes each [`LogCheckSummary`] on a watch
//! channel; the collector puts the latest into every node report (`log_check`), and the
//! aggregator merges them into the cluster report.

use caretaker_core::error::Chain;
use std::path::PathBuf;
use std::time::Duration;

use caretaker_core::model::{
    CollectorError, LogCheckEntry, LogCheckFinding, LogCheckReason, LogCheckSummary,
    MAX_LOG_CHECK_FINDINGS,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::LogCheckConfig;
use super::matcher::Matcher;
use super::state::{self, Incremental};

/// Problems of one check kept in its summary.
const MAX_PROBLEMS: usize = 32;

/// Builds the summary of `inc`'s counts at `now` (Unix seconds): the top entries per
/// pattern, and the findings (at most [`MAX_LOG_CHECK_FINDINGS`], threshold findings
/// first, then the highest counts).
pub(crate) fn summarize(
    inc: &Incremental,
    cfg: &LogCheckConfig,
    now: i64,
) -> (Vec<LogCheckEntry>, Vec<LogCheckFinding>) {
    let names = inc.matcher().names();
    let n = names.len();
    let hour = now.div_euclid(3600);
    let mut per_pattern: Vec<Vec<LogCheckEntry>> = vec![Vec::new(); n];
    for (key, c) in &inc.containers {
        let day = c.sum(hour - 23, hour, n);
        let before = c.sum(hour - 47, hour - 24, n);
        for (i, name) in names.iter().enumerate() {
            if day[i] == 0 {
                continue;
            }
            per_pattern[i].push(LogCheckEntry {
                pattern: name.clone(),
                namespace: key.namespace.clone(),
                pod: key.pod.clone(),
                container: key.container.clone(),
                count: day[i],
                previous_count: before[i],
                sample: c.samples.get(i).cloned().flatten(),
            });
        }
    }
    let (mut top, mut findings) = (Vec::new(), Vec::new());
    for mut entries in per_pattern {
        entries.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.namespace.cmp(&b.namespace))
                .then_with(|| a.pod.cmp(&b.pod))
        });
        for e in &entries {
            if let Some((reason, limit)) = judge(cfg, e) {
                findings.push(LogCheckFinding {
                    entry: e.clone(),
                    reason,
                    limit,
                });
            }
        }
        top.extend(entries.into_iter().take(cfg.top.get()));
    }
    if findings.len() > MAX_LOG_CHECK_FINDINGS {
        findings.sort_by(|a, b| {
            a.reason
                .cmp(&b.reason)
                .then_with(|| b.entry.count.cmp(&a.entry.count))
        });
        findings.truncate(MAX_LOG_CHECK_FINDINGS);
    }
    (top, findings)
}

/// Whether `e` is a finding, why, and the limit it reached: its pattern's threshold, or
/// for a jump `jump_factor` times the 24 h before (at least `jump_min_count`).
fn judge(cfg: &LogCheckConfig, e: &LogCheckEntry) -> Option<(LogCheckReason, u64)> {
    if let Some(&t) = cfg.thresholds.get(&e.pattern)
        && e.count >= t
    {
        return Some((LogCheckReason::Threshold, t));
    }
    // A count n >= f * p exactly when n >= ceil(f * p); the cast saturates.
    let jump = (cfg.jump_factor * e.previous_count as f64).ceil() as u64;
    let limit = jump.max(cfg.jump_min_count);
    (e.count >= limit).then_some((LogCheckReason::Jump, limit))
}

/// The daemon task's settings.
#[derive(Debug, Clone)]
pub struct LogCheckTask {
    pub config: LogCheckConfig,
    pub matcher: Matcher,
    pub pods_dir: PathBuf,
}

/// Runs a check at start and every `interval` until `shutdown`, publishing each summary.
pub(crate) async fn run(
    task: LogCheckTask,
    tx: watch::Sender<Option<LogCheckSummary>>,
    shutdown: CancellationToken,
) {
    let state_file = task.config.state_file.clone();
    let mut inc = match state::load(&state_file) {
        Ok(Some(s)) => Incremental::from_state(task.matcher.clone(), s),
        Ok(None) => Incremental::new(task.matcher.clone()),
        Err(e) => {
            warn!(error = %format!("{e:#}"), "The log check state is unusable; starting over.");
            Incremental::new(task.matcher.clone())
        }
    };
    loop {
        let (cfg, dir, file) = (
            task.config.clone(),
            task.pods_dir.clone(),
            state_file.clone(),
        );
        let joined = tokio::task::spawn_blocking(move || {
            let now = jiff::Timestamp::now();
            let result = inc.check(&dir, now.as_second());
            let mut problems: Vec<CollectorError> = Vec::new();
            let problem = |place: String, message: String| CollectorError {
                collector: "log_check".into(),
                place,
                message,
            };
            let (mut files_read, mut bytes_read) = (0, 0);
            // Without a pods directory there is nothing to remember.
            let save = result.is_ok();
            match result {
                Ok(r) => {
                    files_read = r.totals.files_read;
                    bytes_read = r.totals.bytes_read;
                    problems.extend(
                        r.problems
                            .iter()
                            .take(MAX_PROBLEMS)
                            .map(|p| problem(p.path.display().to_string(), p.reason.clone())),
                    );
                }
                Err(e) => problems.push(problem(dir.display().to_string(), format!("{e:#}"))),
            }
            if save && let Err(e) = state::save(&file, &inc.state()) {
                problems.push(problem(file.display().to_string(), format!("{e:#}")));
            }
            let (top, findings) = summarize(&inc, &cfg, now.as_second());
            let summary = LogCheckSummary {
                checked_at: now,
                patterns: inc.matcher().names().to_vec(),
                top,
                findings,
                files_read,
                bytes_read,
                errors: problems,
            };
            (inc, summary)
        })
        .await;
        match joined {
            Ok((back, summary)) => {
                inc = back;
                info!(
                    files_read = summary.files_read,
                    bytes_read = summary.bytes_read,
                    findings = summary.findings.len(),
                    "Log check done."
                );
                for f in &summary.findings {
                    warn!(
                        namespace = %f.entry.namespace,
                        pod = %f.entry.pod,
                        container = %f.entry.container,
                        pattern = %f.entry.pattern,
                        count = f.entry.count,
                        previous_count = f.entry.previous_count,
                        reason = ?f.reason,
                        limit = f.limit,
                        "Log check finding."
                    );
                }
                for p in &summary.errors {
                    warn!(place = %p.place, problem = %p.message, "Log check problem.");
                }
                tx.send_replace(Some(summary));
            }
            Err(e) => {
                warn!(error = %Chain(&e), "The log check task failed; it stops.");
                return;
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(jittered(task.config.interval.get())) => {}
        }
    }
}

/// `d` varied by ±10 %, so that nodes do not check in lockstep.
fn jittered(d: Duration) -> Duration {
    let f = 0.9 + rand::random::<f64>() * 0.2;
    d.mul_f64(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logcheck::counts::ContainerCounts;
    use crate::logcheck::matcher::default_patterns;
    use crate::logcheck::walk::ContainerKey;

    #[test]
    fn top_entries_and_findings_by_threshold_and_jump() {
        let mut inc = Incremental::new(Matcher::new(&default_patterns()).unwrap());
        let now = 1_000 * 3600;
        let key = |pod: &str| ContainerKey {
            namespace: "shop".into(),
            pod: pod.into(),
            container: "app".into(),
        };
        let mut a = ContainerCounts::default();
        a.hours.insert(1000, vec![500, 0, 0, 0]); // today
        a.hours.insert(1000 - 30, vec![100, 0, 0, 0]); // the day before
        a.samples = vec![Some("error x".into()), None, None, None];
        let mut b = ContainerCounts::default();
        b.hours.insert(999, vec![150, 2, 0, 0]);
        b.hours.insert(1000 - 24, vec![100, 0, 0, 0]);
        inc.containers.insert(key("a"), a);
        inc.containers.insert(key("b"), b);
        let cfg = LogCheckConfig {
            thresholds: [("warn".to_string(), 2)].into(),
            ..LogCheckConfig::default()
        };
        let (top, findings) = summarize(&inc, &cfg, now + 59);
        assert_eq!(
            top.iter()
                .map(|t| (
                    t.pattern.as_str(),
                    t.pod.as_str(),
                    t.count,
                    t.previous_count
                ))
                .collect::<Vec<_>>(),
            vec![
                ("error", "a", 500, 100),
                ("error", "b", 150, 100),
                ("warn", "b", 2, 0)
            ]
        );
        assert_eq!(top[0].sample.as_deref(), Some("error x"));
        assert_eq!(
            findings
                .iter()
                .map(|f| (
                    f.entry.pod.as_str(),
                    f.entry.pattern.as_str(),
                    f.reason,
                    f.limit
                ))
                .collect::<Vec<_>>(),
            vec![
                ("a", "error", LogCheckReason::Jump, 300),
                ("b", "warn", LogCheckReason::Threshold, 2)
            ]
        );
    }

    #[tokio::test]
    async fn the_task_checks_at_start_publishes_the_summary_and_saves_its_state() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("pods/shop_api_uid-1/app");
        std::fs::create_dir_all(&c).unwrap();
        let ts = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        std::fs::write(
            c.join("0.log"),
            format!("{ts} stdout F GET / status=503 error\n{ts} stdout F fine\n"),
        )
        .unwrap();
        let config = LogCheckConfig {
            state_file: dir.path().join("state.json"),
            ..LogCheckConfig::default()
        };
        let task = LogCheckTask {
            matcher: Matcher::new(&config.patterns).unwrap(),
            pods_dir: dir.path().join("pods"),
            config,
        };
        let (tx, mut rx) = watch::channel(None);
        let stop = CancellationToken::new();
        let h = tokio::spawn(run(task, tx, stop.clone()));
        rx.changed().await.unwrap();
        let s = rx.borrow().clone().unwrap();
        stop.cancel();
        h.await.unwrap();
        assert_eq!(
            s.top
                .iter()
                .map(|t| (t.pattern.as_str(), t.pod.as_str(), t.count))
                .collect::<Vec<_>>(),
            vec![("error", "api", 1), ("http_4xx_5xx", "api", 1)]
        );
        assert_eq!(s.top[0].sample.as_deref(), Some("GET / status=503 error"));
        assert_eq!((s.files_read, s.errors.len()), (1, 0));
        let saved = state::load(&dir.path().join("state.json"))
            .unwrap()
            .unwrap();
        assert_eq!(saved.files.len(), 1);
        assert_eq!(
            saved.files[0].offset,
            std::fs::metadata(c.join("0.log")).unwrap().len()
        );
    }
}
