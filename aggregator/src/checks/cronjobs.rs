//! CronJobs that do not do their job (`kubectl get cronjobs,jobs`, done by the fields).
//!
//! Codes:
//! - `cronjob_last_run_failed` (warning): the newest Job the CronJob created (owner
//!   reference) has its `Failed` condition True; the condition's reason and message are
//!   quoted and `at` is when it failed.
//! - `cronjob_never_run` (warning): no `status.lastScheduleTime` although the CronJob is
//!   older than its period (the longest gap between two runs of its schedule) plus one hour.
//! - `cronjob_suspended` (info): `spec.suspend` is true: no run is started.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;

use super::time::age;
use super::velero::cron_period;
use super::{
    CheckResult, ChecksConfig, Finding, ObjectRef, Severity, all_not_applicable, coverage_findings,
};
use crate::cluster::{ClusterState, Resource};

/// Runs the CronJob check.
pub fn check(state: &ClusterState, _config: &ChecksConfig, now: Timestamp) -> CheckResult {
    let inputs = [Resource::CronJob];
    if let Some(reason) = all_not_applicable(state, &inputs) {
        return CheckResult::not_applicable("cronjobs", reason);
    }
    let mut findings = coverage_findings(state, &[Resource::CronJob, Resource::Job]);
    // The newest Job of each CronJob (by owner uid).
    let mut newest: HashMap<&str, &Job> = HashMap::new();
    for j in &state.jobs {
        let Some(owner) = j
            .metadata
            .owner_references
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|o| o.kind == "CronJob")
        else {
            continue;
        };
        let created = |j: &Job| j.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let e = newest.entry(owner.uid.as_str()).or_insert(j);
        if created(j) > created(e) {
            *e = j;
        }
    }
    let mut unhealthy = 0usize;
    for c in &state.cron_jobs {
        let obj = || ObjectRef::new("CronJob", &c.metadata);
        let before = findings.len();
        let spec = &c.spec;
        if spec.suspend == Some(true) {
            findings.push(Finding::new(
                "cronjob_suspended",
                Severity::Info,
                obj(),
                "suspended: no run is started",
            ));
        }
        let last_job = c.metadata.uid.as_deref().and_then(|u| newest.get(u));
        if let Some(j) = last_job
            && let Some(f) = j
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_deref())
                .unwrap_or_default()
                .iter()
                .find(|c| c.type_ == "Failed" && c.status == "True")
        {
            let why = [f.reason.as_deref(), f.message.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            findings.push(
                Finding::new(
                    "cronjob_last_run_failed",
                    Severity::Warning,
                    obj(),
                    format!(
                        "last run Job {} failed{}",
                        j.metadata.name.as_deref().unwrap_or(""),
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(" ({why})")
                        }
                    ),
                )
                .with_at(f.last_transition_time.as_ref().map(|t| t.0)),
            );
        }
        let never = c
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.as_ref())
            .is_none()
            && last_job.is_none();
        if never && spec.suspend != Some(true) {
            let schedule = spec.schedule.as_str();
            let created = c.metadata.creation_timestamp.as_ref().map(|t| t.0);
            if let (Some(period), Some(created)) = (cron_period(schedule), created)
                && age(now, created) > period + SignedDuration::from_hours(1)
            {
                findings.push(
                    Finding::new(
                        "cronjob_never_run",
                        Severity::Warning,
                        obj(),
                        format!("never run although scheduled {schedule}"),
                    )
                    .with_at(Some(created)),
                );
            }
        }
        unhealthy += usize::from(findings.len() > before);
    }
    CheckResult::new(
        "cronjobs",
        format!(
            "{} CronJobs, {unhealthy} with problems",
            state.cron_jobs.len()
        ),
        findings,
    )
    .with_objects(state.cron_jobs.len())
}
