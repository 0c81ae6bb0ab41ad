//! PodDisruptionBudgets that block voluntary evictions, so `kubectl drain` in the
//! maintenance window waits on them forever.
//!
//! Codes:
//! - `pdb_blocks_disruption` (warning): `status.disruptionsAllowed` is 0 while the budget
//!   covers pods (`expectedPods` > 0): no pod it selects can be evicted now.
//! - `pdb_no_pods` (info): the budget selects no pod (a stale budget or a wrong selector).

use jiff::Timestamp;

use super::{
    CheckResult, ChecksConfig, Finding, ObjectRef, Severity, all_not_applicable, coverage_findings,
};
use crate::cluster::{ClusterState, Resource};

/// Runs the PodDisruptionBudget check.
pub fn check(state: &ClusterState, _config: &ChecksConfig, _now: Timestamp) -> CheckResult {
    let inputs = [Resource::PodDisruptionBudget];
    if let Some(reason) = all_not_applicable(state, &inputs) {
        return CheckResult::not_applicable("pdbs", reason);
    }
    let mut findings = coverage_findings(state, &inputs);
    let mut blocking = 0usize;
    for p in &state.pdbs {
        let status = &p.data["status"];
        let Some(allowed) = status["disruptionsAllowed"].as_i64() else {
            continue; // not yet observed by the disruption controller
        };
        let expected = status["expectedPods"].as_i64().unwrap_or(0);
        let healthy = status["currentHealthy"].as_i64().unwrap_or(0);
        let desired = status["desiredHealthy"].as_i64().unwrap_or(0);
        let obj = ObjectRef::new("PodDisruptionBudget", &p.metadata);
        if expected == 0 {
            findings.push(Finding::new(
                "pdb_no_pods",
                Severity::Info,
                obj,
                "selects no pods",
            ));
        } else if allowed <= 0 {
            blocking += 1;
            let spec = &p.data["spec"];
            let rule = match (spec.get("minAvailable"), spec.get("maxUnavailable")) {
                (Some(m), _) => format!("minAvailable {}", plain(m)),
                (None, Some(m)) => format!("maxUnavailable {}", plain(m)),
                (None, None) => String::from("no budget set"),
            };
            findings.push(Finding::new(
                "pdb_blocks_disruption",
                Severity::Warning,
                obj,
                format!(
                    "allows no disruption ({rule}; {healthy} of {expected} pods healthy, {desired} required): node drains will wait"
                ),
            ));
        }
    }
    CheckResult::new(
        "pdbs",
        format!(
            "{} PodDisruptionBudgets, {blocking} allowing no disruption",
            state.pdbs.len()
        ),
        findings,
    )
    .with_objects(state.pdbs.len())
}

/// `1` or `50%` as written in the spec.
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
