//! HorizontalPodAutoscalers (autoscaling/v2) that are really capped at their maximum, and
//! ones that cannot scale.
//!
//! Being at `maxReplicas` is not a problem by itself; it is when the controller wanted more:
//! the `ScalingLimited` condition is True with reason `TooManyReplicas` (the desired count
//! was clamped to the maximum). `ScalingLimited` True with `TooFewReplicas` is the minimum.
//!
//! Codes: `hpa_at_max` (warning), `hpa_unable_to_scale` (warning: `AbleToScale` False),
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
        if let Some(c) = cond("ScalingLimited")
            && c.status == "True"
            && c.reason.as_deref() == Some("TooManyReplicas")
        {
            capped += 1;
            findings.push(Finding::new(
                "hpa_at_max",
                Severity::Warning,
                obj(),
                format!(
                    "{target} capped at maxReplicas {max} (current {}, desired {}){}",
                    status.current_replicas.unwrap_or(0),
                    status.desired_replicas,
                    c.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            ));
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
}
