//! The weekly vulnerability review, from trivy-operator's `VulnerabilityReport` objects
//! (aquasecurity.github.io/v1alpha1; caretaker runs no scanner): HIGH and CRITICAL
//! vulnerabilities per workload container and image, the fixable ones (a `fixedVersion`
//! exists) first, with the age of each scan.
//!
//! trivy-operator writes one report per workload container; the workload is named by the
//! labels `trivy-operator.resource.kind`, `trivy-operator.resource.name` and
//! `trivy-operator.container.name`; `report.artifact` names the image, `report.summary`
//! counts by severity and `report.vulnerabilities[]` lists each one (`vulnerabilityID`,
//! `resource`, `installedVersion`, `fixedVersion`, `severity`).
//!
//! Codes (one finding per report with HIGH or CRITICAL vulnerabilities; its `at` is the
//! scan's `report.updateTimestamp`):
//! - `vulnerabilities_fixable` (critical when a CRITICAL one is fixable, else warning):
//!   HIGH/CRITICAL vulnerabilities with a fixed version: update the image.
//! - `vulnerabilities_unfixed` (info): HIGH/CRITICAL vulnerabilities without a fix yet.
//! - `vulnerability_scan_stale` (warning): the scan is older than
//!   [`STALE_SCAN_DAYS`] days (trivy-operator rescans on its `scanJobTTL`/report TTL; an
//!   old report means the operator stopped scanning).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use super::{
    CheckResult, ChecksConfig, Finding, ObjectRef, Severity, all_not_applicable, coverage_findings,
};
use crate::cluster::{ClusterState, Resource};

/// The check's name.
pub const CHECK: &str = "vulnerabilities";
/// A scan older than this many days is a `vulnerability_scan_stale` finding.
pub(crate) const STALE_SCAN_DAYS: i64 = 7;
/// Fixable vulnerability IDs named in a finding's message.
const NAMED_IDS: usize = 3;

/// HIGH and CRITICAL counts of one scan, split by whether a fix exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub critical: u64,
    pub critical_fixable: u64,
    pub high: u64,
    pub high_fixable: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.critical += o.critical;
        self.critical_fixable += o.critical_fixable;
        self.high += o.high;
        self.high_fixable += o.high_fixable;
    }

    fn fixable(&self) -> u64 {
        self.critical_fixable + self.high_fixable
    }
}

/// One report read: the workload container, its image, the counts and the scan time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scan {
    pub workload: ObjectRef,
    pub container: String,
    /// `registry/repository:tag` (or `@digest` without a tag).
    pub image: String,
    pub counts: Counts,
    /// Fixable HIGH/CRITICAL IDs, CRITICAL first.
    pub(crate) fixable_ids: Vec<String>,
    pub(crate) scanned_at: Option<Timestamp>,
}

/// Reads one VulnerabilityReport; `None` when it holds no `report`.
pub fn read(o: &kube::api::DynamicObject) -> Option<Scan> {
    let report = o.data.get("report")?;
    let labels = o.metadata.labels.clone().unwrap_or_default();
    let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
    let workload = ObjectRef {
        kind: Some(label("trivy-operator.resource.kind"))
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| "VulnerabilityReport".into()),
        namespace: o.metadata.namespace.clone(),
        name: Some(label("trivy-operator.resource.name"))
            .filter(|n| !n.is_empty())
            .or_else(|| o.metadata.name.clone())
            .unwrap_or_default(),
        uid: None,
    };
    let art = &report["artifact"];
    let registry = report["registry"]["server"].as_str().unwrap_or("");
    let repo = art["repository"].as_str().unwrap_or("");
    let mut image = if registry.is_empty() {
        repo.to_string()
    } else {
        format!("{registry}/{repo}")
    };
    match (art["tag"].as_str(), art["digest"].as_str()) {
        (Some(t), _) if !t.is_empty() => image = format!("{image}:{t}"),
        (_, Some(d)) if !d.is_empty() => image = format!("{image}@{d}"),
        _ => {}
    }
    let mut counts = Counts::default();
    let mut ids: Vec<(bool, String)> = Vec::new();
    let vulns = report["vulnerabilities"].as_array();
    for v in vulns.into_iter().flatten() {
        let critical = match v["severity"].as_str() {
            Some("CRITICAL") => true,
            Some("HIGH") => false,
            _ => continue,
        };
        let fixable = v["fixedVersion"].as_str().is_some_and(|f| !f.is_empty());
        match (critical, fixable) {
            (true, f) => {
                counts.critical += 1;
                counts.critical_fixable += u64::from(f);
            }
            (false, f) => {
                counts.high += 1;
                counts.high_fixable += u64::from(f);
            }
        }
        if fixable && let Some(id) = v["vulnerabilityID"].as_str() {
            ids.push((!critical, id.to_string()));
        }
    }
    if vulns.is_none() {
        // A report without its list (trimmed dumps): the summary's counts, fixability unknown.
        let s = &report["summary"];
        counts.critical = s["criticalCount"].as_u64().unwrap_or(0);
        counts.high = s["highCount"].as_u64().unwrap_or(0);
    }
    ids.sort();
    ids.dedup();
    Some(Scan {
        workload,
        container: label("trivy-operator.container.name"),
        image,
        counts,
        fixable_ids: ids.into_iter().map(|(_, id)| id).collect(),
        scanned_at: report["updateTimestamp"]
            .as_str()
            .and_then(|t| t.parse().ok()),
    })
}

/// Per image: the counts over its scans (each scan of the same image counts once per
/// workload container) and the workloads running it.
pub fn by_image(scans: &[Scan]) -> BTreeMap<String, (Counts, Vec<String>)> {
    let mut out: BTreeMap<String, (Counts, Vec<String>)> = BTreeMap::new();
    for s in scans {
        let e = out.entry(s.image.clone()).or_default();
        if e.1.is_empty() {
            e.0.add(&s.counts);
        }
        e.1.push(s.workload.to_string());
    }
    out
}

/// Runs the vulnerability check.
pub fn check(state: &ClusterState, _config: &ChecksConfig, now: Timestamp) -> CheckResult {
    let inputs = [Resource::VulnerabilityReport];
    if let Some(reason) = all_not_applicable(state, &inputs) {
        return CheckResult::not_applicable(CHECK, reason);
    }
    let mut findings = coverage_findings(state, &inputs);
    let scans: Vec<Scan> = state
        .vulnerability_reports
        .iter()
        .filter_map(read)
        .collect();
    for s in &scans {
        let c = &s.counts;
        let what = format!(
            "container {} image {}: {} CRITICAL ({} fixable), {} HIGH ({} fixable)",
            if s.container.is_empty() {
                "?"
            } else {
                s.container.as_str()
            },
            s.image,
            c.critical,
            c.critical_fixable,
            c.high,
            c.high_fixable
        );
        let scanned = s.scanned_at.map_or_else(
            || "scan time unknown".into(),
            |t| format!("scanned {}", t.strftime("%Y-%m-%d")),
        );
        if c.fixable() > 0 {
            let named: Vec<&str> = s
                .fixable_ids
                .iter()
                .take(NAMED_IDS)
                .map(String::as_str)
                .collect();
            let more = s.fixable_ids.len().saturating_sub(NAMED_IDS);
            let ids = if more > 0 {
                format!("{} and {more} more", named.join(", "))
            } else {
                named.join(", ")
            };
            let sev = if c.critical_fixable > 0 {
                Severity::Critical
            } else {
                Severity::Warning
            };
            findings.push(
                Finding::new(
                    "vulnerabilities_fixable",
                    sev,
                    s.workload.clone(),
                    format!("{what}; fixed upstream: {ids}; {scanned}"),
                )
                .with_at(s.scanned_at),
            );
        } else if c.critical + c.high > 0 {
            findings.push(
                Finding::new(
                    "vulnerabilities_unfixed",
                    Severity::Info,
                    s.workload.clone(),
                    format!("{what}; no fix released yet; {scanned}"),
                )
                .with_at(s.scanned_at),
            );
        }
        if let Some(t) = s.scanned_at
            && now.duration_since(t).as_secs() > STALE_SCAN_DAYS * 86_400
        {
            findings.push(
                Finding::new(
                    "vulnerability_scan_stale",
                    Severity::Warning,
                    s.workload.clone(),
                    format!(
                        "container {} image {}: last scanned {}, more than {STALE_SCAN_DAYS} days ago",
                        s.container,
                        s.image,
                        t.strftime("%Y-%m-%d")
                    ),
                )
                .with_at(Some(t)),
            );
        }
    }
    let images = by_image(&scans);
    let affected = images
        .values()
        .filter(|(c, _)| c.critical + c.high > 0)
        .count();
    let fixable = images.values().filter(|(c, _)| c.fixable() > 0).count();
    CheckResult::new(
        CHECK,
        format!(
            "{} scans of {} images; {affected} images with HIGH/CRITICAL, {fixable} fixable",
            scans.len(),
            images.len()
        ),
        findings,
    )
    .with_objects(scans.len())
}
