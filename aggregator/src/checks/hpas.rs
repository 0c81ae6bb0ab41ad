//! HorizontalPodAutoscalers (autoscaling/v2) that are really capped at their maximum, and
//! ones that cannot scale.
//!
//! An HPA is at its maximum when its desired replica count is at least `maxReplicas` and
//! the current count equals it, whatever its conditions say (an HPA that has no conditions
//! yet, or whose `ScalingLimited` is False with `DesiredWithinRange` at exactly the maximum,
//! has no room left either); the `ScalingLimited` reason is quoted when present. An HPA with
//! `minReplicas == maxReplicas` is pinned on purpose: `hpa_pinned` (info), never a warning.
//!
//! Codes: `hpa_at_max` (warning), `hpa_pinned` (info), `hpa_unable_to_scale` (warning:
//! `AbleToScale` False),
//! `hpa_scaling_inactive` (warning: `ScalingActive` False, e.g. metrics unavailable; not
//! when scaling is disabled by 0 replicas).

use jiff::Timestamp;

use super::{
    CheckResult, ChecksConfig, Finding, ObjectRef, Severity, all_not_applicable, coverage_findings,
};
use crate::cluster::{ClusterState, Resource};

/// Runs the HPA check.
pub fn check(state: &ClusterState, _config: &ChecksConfig, _now: Timestamp) -> CheckResult {
    let inputs = [Resource::HorizontalPodAutoscaler];
    if let Some(reason) = all_not_applicable(state, &inputs) {
        return CheckResult::not_applicable("hpas", reason);
    }
    let mut findings = coverage_findings(state, &inputs);
    let mut capped = 0usize;
    for h in &state.hpas {
        let obj = || ObjectRef::new("HorizontalPodAutoscaler", &h.metadata);
        let max = h.spec.max_replicas;
        let Some(status) = h.status.as_ref() else {
            continue;
        };
        let conditions = status.conditions.as_deref().unwrap_or_default();
        let cond = |t: &str| conditions.iter().find(|c| c.type_ == t);
        let target = format!(
            "{}/{}",
            h.spec.scale_target_ref.kind, h.spec.scale_target_ref.name
        );
        let current = status.current_replicas.unwrap_or(0);
        let desired = status.desired_replicas;
        let pinned = h.spec.min_replicas.unwrap_or(1) >= max;
        if desired >= max && current == max {
            let limited = cond("ScalingLimited")
                .filter(|c| c.status == "True")
                .and_then(|c| c.message.as_deref())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            if pinned {
                findings.push(Finding::new(
                    "hpa_pinned",
                    Severity::Info,
                    obj(),
                    format!("{target} pinned at {max} replicas (minReplicas = maxReplicas)"),
                ));
            } else {
                capped += 1;
                findings.push(Finding::new(
                    "hpa_at_max",
                    Severity::Warning,
                    obj(),
                    format!(
                        "{target} capped at maxReplicas {max} (current {current}, desired {desired}){limited}"
                    ),
                ));
            }
        }
        if let Some(c) = cond("AbleToScale")
            && c.status == "False"
        {
            findings.push(Finding::new(
                "hpa_unable_to_scale",
                Severity::Warning,
                obj(),
                format!(
                    "{target} cannot scale ({}){}",
                    c.reason.as_deref().unwrap_or(""),
                    c.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            ));
        }
        if let Some(c) = cond("ScalingActive")
            && c.status == "False"
            && c.reason.as_deref() != Some("ScalingDisabled")
        {
            findings.push(Finding::new(
                "hpa_scaling_inactive",
                Severity::Warning,
                obj(),
                format!(
                    "{target} scaling inactive ({}){}",
                    c.reason.as_deref().unwrap_or(""),
                    c.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            ));
        }
    }
    CheckResult::new(
        "hpas",
        format!("{} HPAs, {} capped at max", state.hpas.len(), capped),
        findings,
    )
    .with_objects(state.hpas.len())
}
