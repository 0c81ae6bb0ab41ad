//! Velero backups (`velero backup get`, `velero schedule get`).
//!
//! Every phase the Backup API defines (velero.io/v1 `BackupPhase`) is classified:
//!
//! | phase | finding |
//! |---|---|
//! | Completed, Deleting | none |
//! | PartiallyFailed | `backup_partially_failed` (warning) |
//! | Failed | `backup_failed` (critical) |
//! | FailedValidation | `backup_failed_validation` (critical) |
//! | New (or empty), InProgress, WaitingForPluginOperations, WaitingForPluginOperationsPartiallyFailed, Finalizing, FinalizingPartiallyFailed, Uploading, UploadingPartialFailure | `backup_in_progress` (info; the message says when a running backup has already partially failed) |
//! | anything else | `backup_unknown_phase` (warning) |
//!
//! A backup is *finished* in Completed, PartiallyFailed, Failed and FailedValidation (the
//! terminal phases of velero.io/v1 `BackupPhase`). For each schedule the newest finished
//! backup is judged (older ones are superseded), and a newer backup that is still running
//! is reported as in progress beside it: a running backup never hides the last real
//! outcome. Every backup without a schedule is judged on its own. A schedule is stale (`backup_stale`, warning)
//! when its newest Completed backup is older than its period plus `stale_slack`; the
//! period is the longest gap between two runs of its cron expression, so `0 3 * * 1-5` is
//! allowed its weekend. `schedule_never_completed` (warning): no Completed backup although
//! the schedule is older than period plus slack. `schedule_paused` (info), and
//! `schedule_unparsed` (info) when the cron expression cannot be read.
//! Messages carry absolute times, never "3d ago"; the same moments are the finding's
//! `times`: `started` and `completed` of a backup, `last_completed` of a stale schedule,
//! `last_validation` of an unavailable BackupStorageLocation.
//! A BackupStorageLocation whose `status.phase` is Unavailable is `storage_location_unavailable`
//! (critical): Velero cannot write there, the usual root cause of failed backups.

use std::collections::HashMap;

use caretaker_core::cron::Cron;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use kube::api::DynamicObject;

use super::time::{age, human, parse, sd};
use super::{
    CheckResult, ChecksConfig, Finding, ObjectRef, Severity, all_not_applicable, coverage_findings,
};
use crate::cluster::{ClusterState, Resource};

const SCHEDULE_LABEL: &str = "velero.io/schedule-name";

fn str_at<'a>(o: &'a DynamicObject, section: &str, field: &str) -> Option<&'a str> {
    o.data.get(section)?.get(field)?.as_str()
}

/// When a backup started (or was created).
fn started(b: &DynamicObject) -> Option<Timestamp> {
    parse(b.data.get("status").and_then(|s| s.get("startTimestamp"))).or(b
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0))
}

/// When a backup completed (or started).
fn completed(b: &DynamicObject) -> Option<Timestamp> {
    parse(
        b.data
            .get("status")
            .and_then(|s| s.get("completionTimestamp")),
    )
    .or_else(|| started(b))
}

fn phase(b: &DynamicObject) -> &str {
    str_at(b, "status", "phase").unwrap_or("")
}

/// The finding a backup's phase calls for, if any.
pub(crate) fn classify_phase(phase: &str) -> Option<(&'static str, Severity)> {
    match phase {
        "Completed" | "Deleting" => None,
        "PartiallyFailed" => Some(("backup_partially_failed", Severity::Warning)),
        "Failed" => Some(("backup_failed", Severity::Critical)),
        "FailedValidation" => Some(("backup_failed_validation", Severity::Critical)),
        p if is_running(p) => Some(("backup_in_progress", Severity::Info)),
        _ => Some(("backup_unknown_phase", Severity::Warning)),
    }
}

/// Whether a phase is one of a backup that is still running (it will change by itself).
fn is_running(phase: &str) -> bool {
    matches!(
        phase,
        "" | "New"
            | "InProgress"
            | "WaitingForPluginOperations"
            | "WaitingForPluginOperationsPartiallyFailed"
            | "Finalizing"
            | "FinalizingPartiallyFailed"
            | "Uploading"
            | "UploadingPartialFailure"
    )
}

/// Whether a phase is terminal: the backup's outcome is known.
fn is_finished(phase: &str) -> bool {
    matches!(
        phase,
        "Completed" | "PartiallyFailed" | "Failed" | "FailedValidation"
    )
}

fn phase_finding(b: &DynamicObject) -> Option<Finding> {
    let p = phase(b);
    let (code, sev) = classify_phase(p)?;
    let when = started(b)
        .map(|t| format!(", started {t}"))
        .unwrap_or_default();
    let finished = parse(
        b.data
            .get("status")
            .and_then(|s| s.get("completionTimestamp")),
    );
    let status = b.data.get("status");
    let num = |k: &str| {
        status
            .and_then(|s| s.get(k))
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
    };
    let (errors, warnings) = (num("errors"), num("warnings"));
    let counts = if errors + warnings > 0 {
        format!(" ({errors} errors, {warnings} warnings)")
    } else {
        String::new()
    };
    let reasons = status
        .and_then(|s| s.get("validationErrors").or_else(|| s.get("failureReason")))
        .map(|v| match v {
            serde_json::Value::String(s) => format!(": {s}"),
            serde_json::Value::Array(a) => {
                format!(
                    ": {}",
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }
            _ => String::new(),
        })
        .unwrap_or_default();
    let shown = if p.is_empty() { "New" } else { p };
    Some(
        Finding::new(
            code,
            sev,
            ObjectRef::new("Backup", &b.metadata),
            format!("backup phase {shown}{when}{counts}{reasons}"),
        )
        .with_at(started(b))
        .with_time("started", started(b))
        .with_time("completed", finished),
    )
}

/// Runs the Velero check.
pub fn check(state: &ClusterState, config: &ChecksConfig, now: Timestamp) -> CheckResult {
    let inputs = [
        Resource::Backup,
        Resource::Schedule,
        Resource::BackupStorageLocation,
    ];
    if let Some(reason) = all_not_applicable(state, &inputs) {
        return CheckResult::not_applicable("velero", reason);
    }
    let mut findings = coverage_findings(state, &inputs);
    for l in &state.backup_storage_locations {
        let status = &l.data["status"];
        if status["phase"].as_str() == Some("Unavailable") {
            let why = status["message"]
                .as_str()
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            findings.push(
                Finding::new(
                    "storage_location_unavailable",
                    Severity::Critical,
                    ObjectRef::new("BackupStorageLocation", &l.metadata),
                    format!("backup storage location Unavailable{why}"),
                )
                .with_at(parse(status.get("lastValidationTime")))
                .with_time("last_validation", parse(status.get("lastValidationTime"))),
            );
        }
    }
    let mut by_schedule: HashMap<(&str, &str), Vec<&DynamicObject>> = HashMap::new();
    for b in &state.backups {
        match b
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SCHEDULE_LABEL))
        {
            Some(s) => by_schedule
                .entry((b.metadata.namespace.as_deref().unwrap_or(""), s.as_str()))
                .or_default()
                .push(b),
            None => findings.extend(phase_finding(b)),
        }
    }
    for backups in by_schedule.values() {
        let newest_finished = backups
            .iter()
            .filter(|b| is_finished(phase(b)))
            .max_by_key(|b| started(b));
        if let Some(finished) = newest_finished {
            findings.extend(phase_finding(finished));
        }
        // Runs newer than the last outcome (normally one) are reported as in progress.
        for b in backups {
            let newer = newest_finished.is_none_or(|f| started(b) > started(f));
            if newer && !is_finished(phase(b)) {
                findings.extend(phase_finding(b));
            }
        }
    }
    let slack = sd(config.velero.stale_slack);
    for s in &state.schedules {
        let object = || ObjectRef::new("Schedule", &s.metadata);
        let key = (
            s.metadata.namespace.as_deref().unwrap_or(""),
            s.metadata.name.as_deref().unwrap_or(""),
        );
        if s.data
            .get("spec")
            .and_then(|p| p.get("paused"))
            .and_then(|p| p.as_bool())
            == Some(true)
        {
            findings.push(Finding::new(
                "schedule_paused",
                Severity::Info,
                object(),
                "schedule is paused",
            ));
            continue;
        }
        let cron = str_at(s, "spec", "schedule").unwrap_or("");
        let Some(period) = cron_period(cron) else {
            findings.push(Finding::new(
                "schedule_unparsed",
                Severity::Info,
                object(),
                format!("cannot read cron expression {cron:?}; staleness not checked"),
            ));
            continue;
        };
        let limit = period + slack;
        let newest_completed = by_schedule
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|b| phase(b) == "Completed")
            .filter_map(|b| completed(b))
            .max();
        match newest_completed {
            Some(t) if age(now, t) > limit => findings.push(Finding::new(
                "backup_stale",
                Severity::Warning,
                object(),
                format!(
                    "newest Completed backup finished {t}, longer ago than the schedule's period {} plus {} slack",
                    human(period),
                    human(slack)
                ),
            )
            .with_at(Some(t))
            .with_time("last_completed", Some(t))),
            Some(_) => {}
            None => {
                let created = s.metadata.creation_timestamp.as_ref().map(|t| t.0);
                if created.is_none_or(|c| age(now, c) > limit) {
                    findings.push(Finding::new(
                        "schedule_never_completed",
                        Severity::Warning,
                        object(),
                        format!("no Completed backup of this schedule ({cron}) exists"),
                    ));
                }
            }
        }
    }
    let summary = format!(
        "{} backups, {} schedules",
        state.backups.len(),
        state.schedules.len()
    );
    CheckResult::new("velero", summary, findings).with_objects(
        state.backups.len() + state.schedules.len() + state.backup_storage_locations.len(),
    )
}

/// Per schedule (the `velero.io/schedule-name` label of its backups, so a schedule that
/// was deleted keeps its series while its backups exist): when its newest Completed and
/// its newest finished backup completed (for `/metrics`). Sorted by namespace and name.
pub(crate) fn schedule_times(state: &ClusterState) -> Vec<crate::metrics::ScheduleTimes> {
    let mut by: std::collections::BTreeMap<(&str, &str), crate::metrics::ScheduleTimes> =
        std::collections::BTreeMap::new();
    for b in &state.backups {
        let Some(schedule) = b
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SCHEDULE_LABEL))
        else {
            continue;
        };
        let ns = b.metadata.namespace.as_deref().unwrap_or("");
        let e = by
            .entry((ns, schedule))
            .or_insert_with(|| crate::metrics::ScheduleTimes {
                namespace: ns.to_string(),
                schedule: schedule.clone(),
                last_successful: None,
                last_finished: None,
            });
        let p = phase(b);
        if !is_finished(p) {
            continue;
        }
        let done = completed(b);
        e.last_finished = e.last_finished.max(done);
        if p == "Completed" {
            e.last_successful = e.last_successful.max(done);
        }
    }
    by.into_values().collect()
}

/// The longest gap between two runs of a cron expression (5 fields, parsed by core's
/// [`Cron`], or `@daily` style, or `@every <duration>`), found by enumerating two years of
/// runs.
pub(crate) fn cron_period(expr: &str) -> Option<SignedDuration> {
    let expr = expr.trim();
    let expr = match expr
        .strip_prefix("CRON_TZ=")
        .or_else(|| expr.strip_prefix("TZ="))
    {
        // The zone shifts runs, not the gaps between them.
        Some(rest) => rest.split_once(' ')?.1.trim(),
        None => expr,
    };
    let fixed = |h: i64| Some(SignedDuration::from_hours(h));
    match expr {
        "@yearly" | "@annually" => return fixed(366 * 24),
        "@monthly" => return fixed(31 * 24),
        "@weekly" => return fixed(7 * 24),
        "@daily" | "@midnight" => return fixed(24),
        "@hourly" => return fixed(1),
        _ => {}
    }
    if let Some(d) = expr.strip_prefix("@every ") {
        let d = humantime::parse_duration(d.trim()).ok()?;
        return SignedDuration::try_from(d).ok().filter(|d| !d.is_zero());
    }
    // `?` (robfig/cron's "any", which Kubernetes and Velero accept) is `*` to Vixie cron.
    let vixie: Vec<&str> = expr
        .split_whitespace()
        .map(|f| if f == "?" { "*" } else { f })
        .collect();
    let cron = Cron::parse(&vixie.join(" ")).ok()?;
    // Runs are evaluated in UTC from 2024-01-01 over two years (a leap year included). A
    // cron expression fires at the same times of day on every day it fires, so the runs
    // are the days it fires (one search each) crossed with the times of its first day.
    let utc = TimeZone::UTC;
    let start = Date::new(2024, 1, 1)
        .ok()?
        .to_zoned(utc.clone())
        .ok()?
        .timestamp();
    let end = start + SignedDuration::from_hours(2 * 366 * 24);
    let day_start = |t: Timestamp| -> Option<Timestamp> {
        let d = t.to_zoned(utc.clone()).date();
        Some(d.to_zoned(utc.clone()).ok()?.timestamp())
    };
    let before = |t: Timestamp| t - SignedDuration::from_nanos(1);
    let mut days = Vec::new();
    let mut next = cron.next_after(before(start), &utc);
    while let Some(t) = next.filter(|t| *t < end) {
        let day = day_start(t)?;
        days.push(day);
        next = cron.next_after(before(day + SignedDuration::from_hours(24)), &utc);
    }
    let first_day = *days.first()?;
    let mut times = Vec::new();
    let mut next = cron.next_after(before(first_day), &utc);
    while let Some(t) = next.filter(|t| *t < first_day + SignedDuration::from_hours(24)) {
        times.push(t.duration_since(first_day).as_mins());
        next = cron.next_after(t, &utc);
    }
    let (first, last) = (*times.first()?, *times.last()?);
    let within_a_day = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let between_days = days
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_mins() + first - last)
        .max()
        .unwrap_or(0);
    let gap = within_a_day.max(between_days);
    (gap > 0).then(|| SignedDuration::from_mins(gap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_period_is_the_longest_gap_between_runs() {
        let h = SignedDuration::from_hours;
        assert_eq!(cron_period("0 3 * * *"), Some(h(24)));
        assert_eq!(cron_period("@daily"), Some(h(24)));
        assert_eq!(cron_period("0 */6 * * *"), Some(h(6)));
        assert_eq!(cron_period("30 1 * * 1-5"), Some(h(72)));
        assert_eq!(cron_period("0 0 * * sun"), Some(h(7 * 24)));
        assert_eq!(cron_period("0 2 1 * *"), Some(h(31 * 24)));
        assert_eq!(cron_period("@every 12h"), Some(h(12)));
        assert_eq!(cron_period("CRON_TZ=Asia/Tokyo 0 3 * * *"), Some(h(24)));
        assert_eq!(cron_period("0 25 * * *"), None);
        assert_eq!(cron_period("nonsense"), None);
        assert_eq!(cron_period("0 0 ? * mon"), Some(h(7 * 24)));
        assert_eq!(
            cron_period("*/15 * * * *"),
            Some(SignedDuration::from_mins(15))
        );
        // Every minute but in December: the longest gap is December.
        assert_eq!(
            cron_period("* * * 1-11 *"),
            Some(h(31 * 24) + SignedDuration::from_mins(1))
        );
    }

    #[test]
    fn every_backup_phase_is_classified() {
        for p in ["Completed", "Deleting"] {
            assert_eq!(classify_phase(p), None);
        }
        assert_eq!(
            classify_phase("PartiallyFailed"),
            Some(("backup_partially_failed", Severity::Warning))
        );
        // Still running: it will end PartiallyFailed, and is judged then (issue 12).
        assert_eq!(
            classify_phase("FinalizingPartiallyFailed"),
            Some(("backup_in_progress", Severity::Info))
        );
        assert_eq!(
            classify_phase("Failed"),
            Some(("backup_failed", Severity::Critical))
        );
        assert_eq!(
            classify_phase("FailedValidation"),
            Some(("backup_failed_validation", Severity::Critical))
        );
        assert_eq!(
            classify_phase("WaitingForPluginOperations"),
            Some(("backup_in_progress", Severity::Info))
        );
        assert_eq!(
            classify_phase("Exploded"),
            Some(("backup_unknown_phase", Severity::Warning))
        );
    }

    #[test]
    fn backup_findings_carry_start_and_last_completion_times() {
        use std::path::Path;
        let mut state = ClusterState::default();
        let dump = r#"{"apiVersion":"velero.io/v1","kind":"Backup","metadata":{"name":"adhoc","namespace":"velero"},"status":{"phase":"Failed","startTimestamp":"2027-01-01T01:00:00Z"}}
            {"apiVersion":"velero.io/v1","kind":"Backup","metadata":{"name":"daily-1","namespace":"velero","labels":{"velero.io/schedule-name":"daily"}},"status":{"phase":"Completed","startTimestamp":"2026-12-27T03:00:00Z","completionTimestamp":"2026-12-27T03:10:00Z"}}
            {"apiVersion":"velero.io/v1","kind":"Schedule","metadata":{"name":"daily","namespace":"velero","creationTimestamp":"2026-01-01T00:00:00Z"},"spec":{"schedule":"0 3 * * *"}}"#;
        crate::cluster::dump::load_bytes(&mut state, Path::new("dump.json"), dump.as_bytes());
        let now: Timestamp = "2027-01-01T02:00:00Z".parse().unwrap();
        let r = check(&state, &ChecksConfig::default(), now);
        let got: Vec<(&str, &str, Option<Timestamp>)> = r
            .findings
            .iter()
            .map(|f| (f.code.as_str(), f.object.name.as_str(), f.at))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "backup_failed",
                    "adhoc",
                    Some("2027-01-01T01:00:00Z".parse().unwrap())
                ),
                (
                    "backup_stale",
                    "daily",
                    Some("2026-12-27T03:10:00Z".parse().unwrap())
                ),
            ]
        );
    }
}
