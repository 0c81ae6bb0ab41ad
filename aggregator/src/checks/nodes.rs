//! Nodes: conditions, requested vs allocatable, and measured use from the metrics API
//! (`kubectl describe nodes`, `kubectl top nodes`, `kubectl top pods`).
//!
//! Codes:
//! - `node_not_ready` (critical): the Ready condition is not True.
//! - `memory_pressure`, `disk_pressure`, `pid_pressure` (warning), `network_unavailable`
//!   (critical): that condition is True.
//! - `cordoned` (info): `spec.unschedulable`.
//! - `requests_high` (warning): the CPU or memory requests of the node's non-terminated
//!   pods exceed `requested_warning_percent` of allocatable. A pod's request is computed as
//!   the scheduler does: the larger of its containers' sum (plus sidecar init containers)
//!   and its largest init container, plus pod overhead.
//! - `usage_high` (warning): NodeMetrics usage above `usage_warning_percent` of allocatable.
//! - `pod_cpu_high` (info): a pod's PodMetrics CPU above `pod_cpu_threshold_millicores`.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::quantity;
use super::{
    CheckResult, ChecksConfig, Finding, ObjectRef, Severity, all_not_applicable, coverage_findings,
};
use crate::cluster::pod::{ContainerInfo, PodSpecInfo};
use crate::cluster::{ClusterState, Resource};

/// CPU in millicores and memory in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Resources {
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
}

impl Resources {
    fn add(&mut self, o: Resources) {
        self.cpu_millicores += o.cpu_millicores;
        self.memory_bytes += o.memory_bytes;
    }
    fn max(self, o: Resources) -> Resources {
        Resources {
            cpu_millicores: self.cpu_millicores.max(o.cpu_millicores),
            memory_bytes: self.memory_bytes.max(o.memory_bytes),
        }
    }
}

fn from_map(m: Option<&std::collections::BTreeMap<String, Quantity>>) -> Resources {
    let get = |k: &str| m.and_then(|m| m.get(k)).map(|q| q.0.as_str());
    Resources {
        cpu_millicores: get("cpu").and_then(quantity::millicores).unwrap_or(0),
        memory_bytes: get("memory").and_then(quantity::bytes).unwrap_or(0),
    }
}

fn container_requests(c: &ContainerInfo) -> Resources {
    let r = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    Resources {
        cpu_millicores: r
            .and_then(|r| r.cpu.as_ref())
            .and_then(|q| quantity::millicores(&q.0))
            .unwrap_or(0),
        memory_bytes: r
            .and_then(|r| r.memory.as_ref())
            .and_then(|q| quantity::bytes(&q.0))
            .unwrap_or(0),
    }
}

/// What the scheduler reserves for a pod (see the module docs).
pub(crate) fn pod_requests(spec: &PodSpecInfo) -> Resources {
    let mut sum = Resources::default();
    for c in &spec.containers {
        sum.add(container_requests(c));
    }
    let mut init_max = Resources::default();
    let mut sidecars = Resources::default();
    for c in &spec.init_containers {
        let r = container_requests(c);
        if c.restart_policy.as_deref() == Some("Always") {
            // A sidecar runs alongside the later init containers and the app containers.
            sidecars.add(r);
        } else {
            let mut with_sidecars = sidecars;
            with_sidecars.add(r);
            init_max = init_max.max(with_sidecars);
        }
    }
    sum.add(sidecars);
    let mut total = sum.max(init_max);
    total.add(from_map(spec.overhead.as_ref()));
    total
}

fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

/// Runs the nodes check.
pub fn check(state: &ClusterState, config: &ChecksConfig, _now: Timestamp) -> CheckResult {
    let cfg = &config.nodes;
    let inputs = [Resource::Node];
    if let Some(reason) = all_not_applicable(state, &inputs) {
        return CheckResult::not_applicable("nodes", reason);
    }
    let mut findings = coverage_findings(
        state,
        &[
            Resource::Node,
            Resource::Pod,
            Resource::NodeMetrics,
            Resource::PodMetrics,
        ],
    );

    let mut requested: HashMap<&str, Resources> = HashMap::with_capacity(state.nodes.len());
    for pod in &state.pods {
        let phase = pod.status.phase.as_deref().unwrap_or("");
        if matches!(phase, "Succeeded" | "Failed") {
            continue;
        }
        if let Some(node) = pod.spec.node_name.as_deref() {
            requested
                .entry(node)
                .or_default()
                .add(pod_requests(&pod.spec));
        }
    }
    let usage: HashMap<&str, Resources> = state
        .node_metrics
        .iter()
        .filter_map(|m| {
            let u = m.data.get("usage")?;
            let r = Resources {
                cpu_millicores: u
                    .get("cpu")
                    .and_then(|v| v.as_str())
                    .and_then(quantity::millicores)?,
                memory_bytes: u
                    .get("memory")
                    .and_then(|v| v.as_str())
                    .and_then(quantity::bytes)
                    .unwrap_or(0),
            };
            Some((m.metadata.name.as_deref()?, r))
        })
        .collect();

    let mut not_ready = 0usize;
    let (mut alloc_total, mut req_total) = (Resources::default(), Resources::default());
    for node in &state.nodes {
        let name = node.metadata.name.as_deref().unwrap_or("");
        let obj = || ObjectRef::new("Node", &node.metadata);
        let status = node.status.as_ref();
        let conditions = status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default();
        let ready = conditions.iter().find(|c| c.type_ == "Ready");
        if ready.is_none_or(|c| c.status != "True") {
            not_ready += 1;
            let since_t = ready.and_then(|c| c.last_transition_time.as_ref().map(|t| t.0));
            let detail = match ready {
                Some(c) => {
                    let since = since_t.map(|t| format!(" since {t}")).unwrap_or_default();
                    let why = c
                        .message
                        .as_deref()
                        .or(c.reason.as_deref())
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default();
                    format!("Ready is {}{since}{why}", c.status)
                }
                None => "no Ready condition reported".to_string(),
            };
            findings.push(
                Finding::new(
                    "node_not_ready",
                    Severity::Critical,
                    obj(),
                    format!("node not ready: {detail}"),
                )
                .with_time("since", since_t),
            );
        }
        for c in conditions {
            let (code, sev) = match c.type_.as_str() {
                "MemoryPressure" => ("memory_pressure", Severity::Warning),
                "DiskPressure" => ("disk_pressure", Severity::Warning),
                "PIDPressure" => ("pid_pressure", Severity::Warning),
                "NetworkUnavailable" => ("network_unavailable", Severity::Critical),
                _ => continue,
            };
            if c.status == "True" {
                let why = c
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                findings.push(Finding::new(
                    code,
                    sev,
                    obj(),
                    format!("{} is True{why}", c.type_),
                ));
            }
        }
        if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
            findings.push(Finding::new(
                "cordoned",
                Severity::Info,
                obj(),
                "node is cordoned (unschedulable)",
            ));
        }
        let alloc = from_map(status.and_then(|s| s.allocatable.as_ref()));
        let req = requested.get(name).copied().unwrap_or_default();
        alloc_total.add(alloc);
        req_total.add(req);
        let limit = f64::from(cfg.requested_warning_percent.get());
        let mut high = Vec::new();
        if let Some(p) = percent(req.cpu_millicores, alloc.cpu_millicores).filter(|p| *p > limit) {
            high.push(format!(
                "CPU {}m of {}m ({p:.0}%)",
                req.cpu_millicores, alloc.cpu_millicores
            ));
        }
        if let Some(p) = percent(req.memory_bytes, alloc.memory_bytes).filter(|p| *p > limit) {
            high.push(format!(
                "memory {} of {} ({p:.0}%)",
                gib(req.memory_bytes),
                gib(alloc.memory_bytes)
            ));
        }
        if !high.is_empty() {
            findings.push(Finding::new(
                "requests_high",
                Severity::Warning,
                obj(),
                format!(
                    "pod requests above {}% of allocatable: {}",
                    cfg.requested_warning_percent,
                    high.join(", ")
                ),
            ));
        }
        if let Some(u) = usage.get(name) {
            let limit = f64::from(cfg.usage_warning_percent.get());
            let mut high = Vec::new();
            if let Some(p) = percent(u.cpu_millicores, alloc.cpu_millicores).filter(|p| *p > limit)
            {
                high.push(format!(
                    "CPU {}m of {}m ({p:.0}%)",
                    u.cpu_millicores, alloc.cpu_millicores
                ));
            }
            if let Some(p) = percent(u.memory_bytes, alloc.memory_bytes).filter(|p| *p > limit) {
                high.push(format!(
                    "memory {} of {} ({p:.0}%)",
                    gib(u.memory_bytes),
                    gib(alloc.memory_bytes)
                ));
            }
            if !high.is_empty() {
                findings.push(Finding::new(
                    "usage_high",
                    Severity::Warning,
                    obj(),
                    format!(
                        "usage above {}% of allocatable: {}",
                        cfg.usage_warning_percent,
                        high.join(", ")
                    ),
                ));
            }
        }
    }

    for m in &state.pod_metrics {
        let cpu: u64 = m
            .data
            .get("containers")
            .and_then(|c| c.as_array())
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| {
                        c.get("usage")?
                            .get("cpu")?
                            .as_str()
                            .and_then(quantity::millicores)
                    })
                    .sum()
            })
            .unwrap_or(0);
        if cpu > cfg.pod_cpu_threshold_millicores {
            let mut object = ObjectRef::new("Pod", &m.metadata);
            object.uid = None; // the PodMetrics object has no uid of the pod
            findings.push(Finding::new(
                "pod_cpu_high",
                Severity::Info,
                object,
                format!(
                    "pod uses {cpu}m CPU (threshold {}m)",
                    cfg.pod_cpu_threshold_millicores
                ),
            ));
        }
    }

    let summary = format!(
        "{} nodes, {} not ready; requests CPU {}, memory {} of allocatable",
        state.nodes.len(),
        not_ready,
        percent(req_total.cpu_millicores, alloc_total.cpu_millicores)
            .map_or("-".into(), |p| format!("{p:.0}%")),
        percent(req_total.memory_bytes, alloc_total.memory_bytes)
            .map_or("-".into(), |p| format!("{p:.0}%")),
    );
    CheckResult::new("nodes", summary, findings).with_objects(state.nodes.len())
}
