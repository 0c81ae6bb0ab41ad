//! Deployments, StatefulSets and DaemonSets that do not run what they ask for
//! (`kubectl rollout status`, done by the fields).
//!
//! Codes:
//! - `rollout_stuck` (critical): a Deployment's `Progressing` condition is False with reason
//!   `ProgressDeadlineExceeded`: the rollout stopped and Kubernetes will not retry it.
//! - `no_replicas_available` (critical): none of the desired replicas is available (ready,
//!   for a StatefulSet): the workload is down.
//! - `replicas_unavailable` (warning): some of the desired replicas are not available.
//!
//! A workload scaled to 0 is never reported. The DaemonSet's desired count is
//! `status.desiredNumberScheduled` (one per eligible node).

use jiff::Timestamp;

use super::{
    CheckResult, ChecksConfig, Finding, ObjectRef, Severity, all_not_applicable, coverage_findings,
};
use crate::cluster::{ClusterState, Resource};

/// Runs the workloads check.
pub fn check(state: &ClusterState, _config: &ChecksConfig, _now: Timestamp) -> CheckResult {
    let inputs = [
        Resource::Deployment,
        Resource::StatefulSet,
        Resource::DaemonSet,
    ];
    if let Some(reason) = all_not_applicable(state, &inputs) {
        return CheckResult::not_applicable("workloads", reason);
    }
    let mut findings = coverage_findings(state, &inputs);
    let mut unhealthy = 0usize;
    for d in &state.deployments {
        let obj = || ObjectRef::new("Deployment", &d.metadata);
        let desired = d.spec.replicas.unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        let before = findings.len();
        if let Some(c) = status
            .conditions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|c| {
                c.type_.as_deref() == Some("Progressing")
                    && c.status.as_deref() == Some("False")
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            })
        {
            findings.push(
                Finding::new(
                    "rollout_stuck",
                    Severity::Critical,
                    obj(),
                    format!(
                        "rollout stuck (ProgressDeadlineExceeded){}",
                        c.message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    ),
                )
                .with_at(c.last_transition_time.as_ref().map(|t| t.0)),
            );
        }
        availability(
            obj(),
            desired,
            status.available_replicas.unwrap_or(0),
            "available",
            &mut findings,
        );
        unhealthy += usize::from(findings.len() > before);
    }
    for s in &state.stateful_sets {
        let desired = s.spec.replicas.unwrap_or(1);
        let ready = s
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        let before = findings.len();
        availability(
            ObjectRef::new("StatefulSet", &s.metadata),
            desired,
            ready,
            "ready",
            &mut findings,
        );
        unhealthy += usize::from(findings.len() > before);
    }
    for d in &state.daemon_sets {
        let Some(status) = d.status.as_ref() else {
            continue;
        };
        let before = findings.len();
        availability(
            ObjectRef::new("DaemonSet", &d.metadata),
            status.desired_number_scheduled,
            status.number_available.unwrap_or(0),
            "available",
            &mut findings,
        );
        unhealthy += usize::from(findings.len() > before);
    }
    let total = state.deployments.len() + state.stateful_sets.len() + state.daemon_sets.len();
    CheckResult::new(
        "workloads",
        format!(
            "{total} workloads ({} Deployments, {} StatefulSets, {} DaemonSets), {unhealthy} with problems",
            state.deployments.len(),
            state.stateful_sets.len(),
            state.daemon_sets.len()
        ),
        findings,
    )
    .with_objects(total)
}

/// `no_replicas_available` or `replicas_unavailable` when `have` < `desired`.
fn availability(obj: ObjectRef, desired: i32, have: i32, word: &str, out: &mut Vec<Finding>) {
    if desired <= 0 || have >= desired {
        return;
    }
    if have <= 0 {
        out.push(Finding::new(
            "no_replicas_available",
            Severity::Critical,
            obj,
            format!("none of {desired} replicas {word}"),
        ));
    } else {
        out.push(Finding::new(
            "replicas_unavailable",
            Severity::Warning,
            obj,
            format!("{} of {desired} replicas not {word}", desired - have),
        ));
    }
}
