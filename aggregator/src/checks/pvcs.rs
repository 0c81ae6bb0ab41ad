//! PersistentVolumeClaims: Pending and Lost claims, and usage per claim from the figures the
//! node agents report for volume mounts (see [`crate::cluster::volumes`]).
//!
//! A volume mounted on several nodes (ReadWriteMany) is reported by each of them; it counts
//! once, with the newest figure. A claim no agent reports has usage "unknown", never 0 %.
//!
//! Codes: `pvc_pending` (warning: Pending longer than `pending_grace`, i.e. unbound),
//! `pvc_lost` (critical: its volume is gone), `pvc_usage_high` (warning above
//! `usage_warning_percent`, critical above `usage_critical_percent`).

use std::collections::HashMap;

use jiff::Timestamp;
use serde::Serialize;

use super::time::{age, sd};
use super::{
    CheckResult, ChecksConfig, Finding, ObjectRef, Severity, all_not_applicable, coverage_findings,
};
use crate::cluster::{ClusterState, Resource, VolumeStat};

/// The usage of one claim, when known.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimUsage {
    pub claim: ObjectRef,
    /// The bound PersistentVolume, if any.
    pub volume: Option<String>,
    /// `None` when no node reports the volume: unknown, not zero.
    pub size_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
    pub used_percent: Option<f64>,
}

/// The newest figure per PV name.
fn newest_stats(stats: &[VolumeStat]) -> HashMap<&str, &VolumeStat> {
    let mut m: HashMap<&str, &VolumeStat> = HashMap::new();
    for s in stats {
        let e = m.entry(s.pv_name.as_str()).or_insert(s);
        if s.collected_at > e.collected_at {
            *e = s;
        }
    }
    m
}

/// Usage of every claim (one figure per claim however many nodes report it).
pub fn claim_usage(state: &ClusterState) -> Vec<ClaimUsage> {
    let stats = newest_stats(&state.volume_stats);
    state
        .pvcs
        .iter()
        .map(|c| {
            let volume = c.spec.as_ref().and_then(|s| s.volume_name.clone());
            let st = volume.as_deref().and_then(|v| stats.get(v));
            ClaimUsage {
                claim: ObjectRef::new("PersistentVolumeClaim", &c.metadata),
                size_bytes: st.map(|s| s.size_bytes),
                used_bytes: st.map(|s| s.used_bytes),
                used_percent: st
                    .filter(|s| s.size_bytes > 0)
                    .map(|s| s.used_bytes as f64 * 100.0 / s.size_bytes as f64),
                volume,
            }
        })
        .collect()
}

/// Runs the PVC check.
pub fn check(state: &ClusterState, config: &ChecksConfig, now: Timestamp) -> CheckResult {
    let cfg = &config.pvcs;
    let inputs = [Resource::PersistentVolumeClaim];
    if let Some(reason) = all_not_applicable(state, &inputs) {
        return CheckResult::not_applicable("pvcs", reason);
    }
    let mut findings = coverage_findings(state, &inputs);
    for c in &state.pvcs {
        let obj = || ObjectRef::new("PersistentVolumeClaim", &c.metadata);
        match c.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Lost") => findings.push(Finding::new(
                "pvc_lost",
                Severity::Critical,
                obj(),
                "claim is Lost: its volume no longer exists",
            )),
            Some("Pending") | None => {
                let created = c.metadata.creation_timestamp.as_ref().map(|t| t.0);
                if created.is_some_and(|t| age(now, t) > sd(cfg.pending_grace)) {
                    let since = created.map(|t| format!(" since {t}")).unwrap_or_default();
                    findings.push(
                        Finding::new(
                            "pvc_pending",
                            Severity::Warning,
                            obj(),
                            format!("claim unbound (Pending){since}"),
                        )
                        .with_time("created", created),
                    );
                }
            }
            _ => {}
        }
    }
    let usage = claim_usage(state);
    let mut known = 0usize;
    for u in &usage {
        let Some(p) = u.used_percent else { continue };
        known += 1;
        let sev = if p > f64::from(cfg.usage_critical_percent.get()) {
            Severity::Critical
        } else if p > f64::from(cfg.usage_warning_percent.get()) {
            Severity::Warning
        } else {
            continue;
        };
        findings.push(Finding::new(
            "pvc_usage_high",
            sev,
            u.claim.clone(),
            format!(
                "volume {} is {p:.1}% full ({} of {} bytes)",
                u.volume.as_deref().unwrap_or("?"),
                u.used_bytes.unwrap_or(0),
                u.size_bytes.unwrap_or(0)
            ),
        ));
    }
    let summary = format!(
        "{} claims, usage known for {}, unknown for {}",
        state.pvcs.len(),
        known,
        usage.len() - known
    );
    CheckResult::new("pvcs", summary, findings).with_objects(state.pvcs.len())
}
