//! Services that route to nothing, and Ingresses that point at what is not there.
//!
//! Services (the `services` check): a Service with a selector (not `ExternalName`, not
//! headless-without-selector: those have endpoints managed by hand) whose EndpointSlices
//! (label `kubernetes.io/service-name`) hold no ready endpoint is `service_no_ready_endpoints`
//! (warning): every request to it fails. An endpoint is ready unless its
//! `conditions.ready` is false (the API's rule: unset means ready).
//!
//! Ingresses (the `ingresses` check): `ingress_backend_missing` (warning) for a backend
//! Service (`defaultBackend` or a rule path) that does not exist in the Ingress's
//! namespace, `ingress_tls_secret_missing` (warning) for a `tls[].secretName` that does not
//! exist (when Secrets were listed; without them only backends are judged).

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;

use super::{
    CheckResult, ChecksConfig, Finding, ObjectRef, Severity, all_not_applicable, coverage_findings,
};
use crate::cluster::{ClusterState, Resource};

/// The label EndpointSlices carry with their Service's name.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Runs the services check.
pub fn check(state: &ClusterState, _config: &ChecksConfig, _now: Timestamp) -> CheckResult {
    let inputs = [Resource::Service, Resource::EndpointSlice];
    if let Some(reason) = all_not_applicable(state, &inputs) {
        return CheckResult::not_applicable("services", reason);
    }
    let mut findings = coverage_findings(state, &inputs);
    if !state.listed(Resource::EndpointSlice) {
        // Without the slices every Service would look empty.
        return CheckResult::new(
            "services",
            format!(
                "{} Services; endpoints not read ({} not in the source)",
                state.services.len(),
                Resource::EndpointSlice.display_name()
            ),
            findings,
        );
    }
    let mut ready: HashMap<(&str, &str), usize> = HashMap::new();
    for s in &state.endpoint_slices {
        let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let n = s.data["endpoints"].as_array().map_or(0, |eps| {
            eps.iter()
                .filter(|e| e["conditions"]["ready"].as_bool() != Some(false))
                .count()
        });
        *ready
            .entry((s.metadata.namespace.as_deref().unwrap_or(""), svc.as_str()))
            .or_default() += n;
    }
    let mut judged = 0usize;
    for s in &state.services {
        let spec = &s.data["spec"];
        let has_selector = spec["selector"].as_object().is_some_and(|m| !m.is_empty());
        if spec["type"].as_str() == Some("ExternalName") || !has_selector {
            continue;
        }
        judged += 1;
        let key = (
            s.metadata.namespace.as_deref().unwrap_or(""),
            s.metadata.name.as_deref().unwrap_or(""),
        );
        if ready.get(&key).copied().unwrap_or(0) == 0 {
            let selector = spec["selector"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            findings.push(Finding::new(
                "service_no_ready_endpoints",
                Severity::Warning,
                ObjectRef::new("Service", &s.metadata),
                format!("no ready endpoints (selector {selector})"),
            ));
        }
    }
    let empty = findings
        .iter()
        .filter(|f| f.code == "service_no_ready_endpoints")
        .count();
    CheckResult::new(
        "services",
        format!(
            "{} Services, {judged} with a selector, {empty} without ready endpoints",
            state.services.len()
        ),
        findings,
    )
    .with_objects(judged)
}

/// Runs the ingresses check.
pub fn ingresses(state: &ClusterState, _config: &ChecksConfig, _now: Timestamp) -> CheckResult {
    let inputs = [Resource::Ingress];
    if let Some(reason) = all_not_applicable(state, &inputs) {
        return CheckResult::not_applicable("ingresses", reason);
    }
    let mut findings = coverage_findings(state, &[Resource::Ingress, Resource::Service]);
    let services: HashSet<(&str, &str)> = state
        .services
        .iter()
        .map(|s| {
            (
                s.metadata.namespace.as_deref().unwrap_or(""),
                s.metadata.name.as_deref().unwrap_or(""),
            )
        })
        .collect();
    let secrets: HashSet<(&str, &str)> = state
        .secrets
        .iter()
        .map(|s| {
            (
                s.metadata.namespace.as_deref().unwrap_or(""),
                s.metadata.name.as_deref().unwrap_or(""),
            )
        })
        .collect();
    let (services_known, secrets_known) = (
        state.listed(Resource::Service),
        state.listed(Resource::Secret),
    );
    let mut broken = 0usize;
    for i in &state.ingresses {
        let ns = i.metadata.namespace.as_deref().unwrap_or("");
        let spec = &i.data["spec"];
        let before = findings.len();
        if services_known {
            let mut backends: Vec<&str> = Vec::new();
            backends.extend(spec["defaultBackend"]["service"]["name"].as_str());
            for rule in spec["rules"].as_array().into_iter().flatten() {
                for path in rule["http"]["paths"].as_array().into_iter().flatten() {
                    backends.extend(path["backend"]["service"]["name"].as_str());
                }
            }
            backends.sort_unstable();
            backends.dedup();
            let missing: Vec<&str> = backends
                .into_iter()
                .filter(|b| !services.contains(&(ns, *b)))
                .collect();
            if !missing.is_empty() {
                findings.push(Finding::new(
                    "ingress_backend_missing",
                    Severity::Warning,
                    ObjectRef::new("Ingress", &i.metadata),
                    format!("backend Service {} not found", missing.join(", ")),
                ));
            }
        }
        if secrets_known {
            let mut missing: Vec<&str> = spec["tls"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["secretName"].as_str())
                .filter(|s| !secrets.contains(&(ns, *s)))
                .collect();
            missing.sort_unstable();
            missing.dedup();
            if !missing.is_empty() {
                findings.push(Finding::new(
                    "ingress_tls_secret_missing",
                    Severity::Warning,
                    ObjectRef::new("Ingress", &i.metadata),
                    format!("TLS Secret {} not found", missing.join(", ")),
                ));
            }
        }
        broken += usize::from(findings.len() > before);
    }
    CheckResult::new(
        "ingresses",
        format!(
            "{} Ingresses, {broken} pointing at missing objects",
            state.ingresses.len()
        ),
        findings,
    )
    .with_objects(state.ingresses.len())
}
