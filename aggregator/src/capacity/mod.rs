//! Resource recommendations and capacity (the seed's monthly "performance tuning" and
//! capacity review).
//!
//! # Layout
//! - this file: the `capacity:` config, the samples a round takes from the cluster
//!   ([`sample`]: metrics API usage per container, allocatable and requests per node), their
//!   history (two state documents in the store, bounded by the window and the trend
//!   days), and [`review`], which records a round's samples and fills the report's
//!   `recommendations` and `capacity` with their checks.
//! - [`recommend`]: the VPA recommender's rule (percentile + margin), with its defaults.
//! - [`trend`]: least-squares slope and the day requests reach allocatable.
//!
//! Codes: `requests_far_above_use` (info), `requests_below_use` (warning) of the
//! `recommendations` check; `capacity_runs_out` (warning) of the `capacity` check.

pub(crate) mod recommend;
pub(crate) mod trend;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use caretaker_core::config::{BoundedDuration, ms};
use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};

use crate::checks::nodes::pod_requests;
use crate::checks::{CheckResult, Finding, ObjectRef, Severity, quantity};
use crate::cluster::{ClusterState, Resource};
use crate::report::CheckRound;
use crate::store::{self, Store};
use recommend::{Figures, Rule};

/// Store key of the per-container usage samples.
pub const USAGE_KEY: &str = "capacity_usage";
/// Containers whose samples are kept at most (the ones sampled longest ago go first), so
/// the usage document stays bounded in any cluster: at the defaults (192 hourly samples
/// of 8 days) about 8 KiB a container, 40 MiB at most, written once per sample interval.
pub(crate) const MAX_CONTAINERS: usize = 5_000;
/// Store key of the per-node daily capacity points.
pub(crate) const NODES_KEY: &str = "capacity_nodes";

/// The `capacity:` config section. The defaults are VPA's recommender flags, named in
/// each option.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapacityConfig {
    /// Percentile (above 0, at most 1) of CPU usage samples a request is recommended from
    /// (VPA `--target-cpu-percentile`).
    #[serde(deserialize_with = "fraction")]
    pub cpu_percentile: f64,
    /// Percentile (above 0, at most 1) of the daily memory peaks (VPA
    /// `--target-memory-percentile`).
    #[serde(deserialize_with = "fraction")]
    pub memory_percentile: f64,
    /// Added on top, as a fraction (0 to 10; VPA `--recommendation-margin-fraction`).
    #[serde(deserialize_with = "margin")]
    pub margin_fraction: f64,
    /// Smallest CPU recommendation, millicores (VPA
    /// `--pod-recommendation-min-cpu-millicores`).
    pub min_cpu_millicores: u64,
    /// Smallest memory recommendation, bytes (250 MiB, VPA
    /// `--pod-recommendation-min-memory-mb`).
    pub min_memory_bytes: u64,
    /// Usage samples older than this are dropped (VPA `--history-length`); 1h to 90d.
    pub window: BoundedDuration<{ ms::HOUR }, { 90 * ms::DAY }>,
    /// One usage sample per this interval at most (rounds in between add none); 1m to
    /// 24h.
    pub sample_interval: BoundedDuration<{ ms::MINUTE }, { ms::DAY }>,
    /// Samples a container needs before it gets a recommendation (the default is a day
    /// of hourly samples).
    pub min_samples: usize,
    /// A request more than this many times its recommendation is `requests_far_above_use`.
    /// At least 1.
    #[serde(deserialize_with = "factor")]
    pub far_above_factor: f64,
    /// A recommendation more than this many times the request is `requests_below_use`.
    /// At least 1.
    #[serde(deserialize_with = "factor")]
    pub far_below_factor: f64,
    /// Days of capacity points the trend is fitted on; 2 to 400.
    #[serde(deserialize_with = "trend_days")]
    pub trend_days: u32,
    /// Requests reaching allocatable within this many days is `capacity_runs_out`;
    /// 1 to 3650.
    #[serde(deserialize_with = "horizon_days")]
    pub horizon_days: u32,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        Self {
            cpu_percentile: 0.9,
            memory_percentile: 0.9,
            margin_fraction: 0.15,
            min_cpu_millicores: 25,
            min_memory_bytes: 250 << 20,
            window: BoundedDuration::secs(8 * 86_400),
            sample_interval: BoundedDuration::secs(3600),
            min_samples: 24,
            far_above_factor: 2.0,
            far_below_factor: 2.0,
            trend_days: 30,
            horizon_days: 90,
        }
    }
}

impl CapacityConfig {
    fn rule(&self) -> Rule {
        Rule {
            cpu_percentile: self.cpu_percentile,
            memory_percentile: self.memory_percentile,
            margin_fraction: self.margin_fraction,
            min_cpu_millicores: self.min_cpu_millicores,
            min_memory_bytes: self.min_memory_bytes,
        }
    }
}

fn bounded<'de, D: Deserializer<'de>, T>(d: D, lo: T, hi: T, what: &str) -> Result<T, D::Error>
where
    T: Deserialize<'de> + PartialOrd + std::fmt::Display + Copy,
{
    let v = T::deserialize(d)?;
    if v < lo || v > hi {
        return Err(serde::de::Error::custom(format!(
            "{v} is out of range: {what} is {lo} to {hi}"
        )));
    }
    Ok(v)
}
fn fraction<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = bounded(d, 0.0, 1.0, "a percentile")?;
    if v == 0.0 {
        return Err(serde::de::Error::custom("a percentile must be above 0"));
    }
    Ok(v)
}
fn margin<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    bounded(d, 0.0, 10.0, "a margin fraction")
}
fn factor<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    bounded(d, 1.0, 1000.0, "a factor")
}
fn trend_days<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded(d, 2, 400, "trend_days")
}
fn horizon_days<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded(d, 1, 3650, "horizon_days")
}

/// One container's usage in one round, with its current request and limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSample {
    pub namespace: String,
    /// `Deployment/web`, `StatefulSet/db`, `Pod/debug` …
    pub workload: String,
    pub container: String,
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
    #[serde(default)]
    pub request: Req,
    #[serde(default)]
    pub limit: Req,
}

/// CPU and memory of a request or limit (absent: not set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Req {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cpu_millicores: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub memory_bytes: Option<u64>,
}

/// A node's allocatable and requested CPU, memory and pods at one time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NodePoint {
    pub at: Timestamp,
    pub allocatable_cpu_millicores: u64,
    pub requested_cpu_millicores: u64,
    pub allocatable_memory_bytes: u64,
    pub requested_memory_bytes: u64,
    pub allocatable_pods: u64,
    pub pods: u64,
}

/// What a round took from the cluster for this review (not part of the report).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoundSamples {
    /// Per workload container: the largest usage over its pods this round.
    pub containers: Vec<ContainerSample>,
    pub nodes: BTreeMap<String, NodePoint>,
}

fn req_of(r: Option<&crate::cluster::pod::RequestsInfo>) -> Req {
    Req {
        cpu_millicores: r
            .and_then(|r| r.cpu.as_ref())
            .and_then(|q| quantity::millicores(&q.0)),
        memory_bytes: r
            .and_then(|r| r.memory.as_ref())
            .and_then(|q| quantity::bytes(&q.0)),
    }
}

/// The alphabet of Kubernetes' `pod-template-hash` (`rand.SafeEncodeString`).
const SAFE_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";

/// The workload a pod belongs to: its controller; a ReplicaSet's own controller (its
/// Deployment) when the ReplicaSet is listed, else the Deployment its name implies (the
/// `pod-template-hash` suffix removed).
fn workload(p: &crate::cluster::pod::PodInfo, rs_owner: &HashMap<(&str, &str), String>) -> String {
    let owner = p
        .metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.iter().find(|o| o.controller == Some(true)));
    let ns = p.metadata.namespace.as_deref().unwrap_or("");
    match owner {
        Some(o) if o.kind == "ReplicaSet" => {
            if let Some(w) = rs_owner.get(&(ns, o.name.as_str())) {
                return w.clone();
            }
            match o.name.rsplit_once('-') {
                Some((d, h))
                    if !d.is_empty()
                        && (5..=10).contains(&h.len())
                        && h.chars().all(|c| SAFE_ALPHABET.contains(c)) =>
                {
                    format!("Deployment/{d}")
                }
                _ => format!("ReplicaSet/{}", o.name),
            }
        }
        Some(o) => format!("{}/{}", o.kind, o.name),
        None => format!("Pod/{}", p.metadata.name.as_deref().unwrap_or("")),
    }
}

/// This round's samples: usage per workload container from the metrics API
/// (`metrics.k8s.io` PodMetrics), allocatable and requests per node. `None` when neither
/// PodMetrics nor Nodes were listed.
pub fn sample(state: &ClusterState, now: Timestamp) -> Option<RoundSamples> {
    if !state.listed(Resource::PodMetrics) && !state.listed(Resource::Node) {
        return None;
    }
    let pods: HashMap<(&str, &str), &crate::cluster::pod::PodInfo> = state
        .pods
        .iter()
        .filter_map(|p| {
            Some((
                (
                    p.metadata.namespace.as_deref()?,
                    p.metadata.name.as_deref()?,
                ),
                p,
            ))
        })
        .collect();
    let rs_owner: HashMap<(&str, &str), String> = state
        .replica_sets
        .iter()
        .filter_map(|rs| {
            let o = rs
                .metadata
                .owner_references
                .as_ref()?
                .iter()
                .find(|o| o.controller == Some(true))?;
            Some((
                (
                    rs.metadata.namespace.as_deref()?,
                    rs.metadata.name.as_deref()?,
                ),
                format!("{}/{}", o.kind, o.name),
            ))
        })
        .collect();
    let mut containers: BTreeMap<(String, String, String), ContainerSample> = BTreeMap::new();
    for m in &state.pod_metrics {
        let (Some(ns), Some(name)) = (m.metadata.namespace.as_deref(), m.metadata.name.as_deref())
        else {
            continue;
        };
        let Some(pod) = pods.get(&(ns, name)) else {
            continue;
        };
        let wl = workload(pod, &rs_owner);
        for c in m
            .data
            .get("containers")
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
        {
            let Some(cname) = c.get("name").and_then(|n| n.as_str()) else {
                continue;
            };
            let usage = c.get("usage");
            let q = |k: &str| usage.and_then(|u| u.get(k)).and_then(|v| v.as_str());
            let (Some(cpu), Some(mem)) = (
                q("cpu").and_then(quantity::millicores),
                q("memory").and_then(quantity::bytes),
            ) else {
                continue;
            };
            let spec = pod.spec.containers.iter().find(|s| s.name == cname);
            let res = spec.and_then(|s| s.resources.as_ref());
            let e = containers
                .entry((ns.to_string(), wl.clone(), cname.to_string()))
                .or_insert_with(|| ContainerSample {
                    namespace: ns.to_string(),
                    workload: wl.clone(),
                    container: cname.to_string(),
                    cpu_millicores: 0,
                    memory_bytes: 0,
                    request: req_of(res.and_then(|r| r.requests.as_ref())),
                    limit: req_of(res.and_then(|r| r.limits.as_ref())),
                });
            e.cpu_millicores = e.cpu_millicores.max(cpu);
            e.memory_bytes = e.memory_bytes.max(mem);
        }
    }
    let mut nodes: BTreeMap<String, NodePoint> = BTreeMap::new();
    for n in &state.nodes {
        let Some(name) = n.metadata.name.clone() else {
            continue;
        };
        let alloc = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
        let get = |k: &str| alloc.and_then(|a| a.get(k)).map(|q| q.0.as_str());
        nodes.insert(
            name,
            NodePoint {
                at: now,
                allocatable_cpu_millicores: get("cpu").and_then(quantity::millicores).unwrap_or(0),
                allocatable_memory_bytes: get("memory").and_then(quantity::bytes).unwrap_or(0),
                allocatable_pods: get("pods").and_then(|p| p.parse().ok()).unwrap_or(0),
                ..NodePoint::default()
            },
        );
    }
    for p in &state.pods {
        if matches!(p.status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            continue;
        }
        let Some(n) = p.spec.node_name.as_deref().and_then(|n| nodes.get_mut(n)) else {
            continue;
        };
        let r = pod_requests(&p.spec);
        n.requested_cpu_millicores += r.cpu_millicores;
        n.requested_memory_bytes += r.memory_bytes;
        n.pods += 1;
    }
    Some(RoundSamples {
        containers: containers.into_values().collect(),
        nodes,
    })
}

/// One container's stored samples: `(time, CPU millicores, memory bytes)`, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub latest: ContainerSample,
    pub samples: Vec<(Timestamp, u64, u64)>,
}

/// The usage history document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageHistory {
    pub(crate) last_sample: Option<Timestamp>,
    /// By `namespace/workload/container`.
    pub containers: BTreeMap<String, Series>,
}

/// The node history document: one point per node and UTC day (the day's latest).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeHistory {
    pub nodes: BTreeMap<String, Vec<NodePoint>>,
}

/// Adds `s` to the histories (at most one usage sample per `sample_interval`), dropping
/// what is older than the window and the trend days. Pure. True when the usage history
/// changed (a sample taken or dropped) and so needs writing.
pub fn add(
    usage: &mut UsageHistory,
    nodes: &mut NodeHistory,
    s: &RoundSamples,
    cfg: &CapacityConfig,
    now: Timestamp,
) -> bool {
    let due = usage.last_sample.is_none_or(|t| {
        Duration::try_from(now.duration_since(t)).unwrap_or_default() >= cfg.sample_interval.get()
    });
    if due && !s.containers.is_empty() {
        usage.last_sample = Some(now);
        for c in &s.containers {
            let key = format!("{}/{}/{}", c.namespace, c.workload, c.container);
            let e = usage.containers.entry(key).or_insert_with(|| Series {
                latest: c.clone(),
                samples: Vec::new(),
            });
            e.latest = c.clone();
            e.samples.push((now, c.cpu_millicores, c.memory_bytes));
        }
    }
    let count = |u: &UsageHistory| {
        u.containers
            .values()
            .map(|s| s.samples.len())
            .sum::<usize>()
    };
    let before = count(usage);
    let oldest = now - cfg.window.get();
    usage.containers.retain(|_, s| {
        s.samples.retain(|(t, _, _)| *t >= oldest);
        !s.samples.is_empty()
    });
    if usage.containers.len() > MAX_CONTAINERS {
        let mut last: Vec<(Timestamp, String)> = usage
            .containers
            .iter()
            .filter_map(|(k, s)| Some((s.samples.last()?.0, k.clone())))
            .collect();
        last.sort();
        let excess = usage.containers.len() - MAX_CONTAINERS;
        for (_, k) in last.into_iter().take(excess) {
            usage.containers.remove(&k);
        }
    }
    let day = |t: Timestamp| t.as_second().div_euclid(86_400);
    for (name, p) in &s.nodes {
        let v = nodes.nodes.entry(name.clone()).or_default();
        if v.last().is_some_and(|l| day(l.at) == day(p.at)) {
            v.pop();
        }
        v.push(*p);
    }
    let oldest = now - Duration::from_secs(u64::from(cfg.trend_days) * 86_400);
    nodes.nodes.retain(|_, v| {
        v.retain(|p| p.at >= oldest);
        !v.is_empty()
    });
    (due && !s.containers.is_empty()) || count(usage) != before
}

/// One container's recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecommendation {
    pub namespace: String,
    pub workload: String,
    pub container: String,
    pub samples: usize,
    pub(crate) first_sample: Timestamp,
    pub(crate) last_sample: Timestamp,
    pub cpu_millicores: Figures,
    pub memory_bytes: Figures,
    /// `over` (requests far above use) or `under` (far below), when either.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub verdict: Option<String>,
}

/// The report's `recommendations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendations {
    pub rule: Rule,
    pub(crate) window_days: f64,
    pub(crate) min_samples: usize,
    /// Containers with enough samples, by namespace, workload and container.
    pub containers: Vec<ContainerRecommendation>,
    /// Containers still below `min_samples`.
    pub waiting_for_samples: usize,
}

/// One resource of a node (or the cluster): now, the trend, and when it runs out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResourceCapacity {
    pub allocatable: u64,
    pub requested: u64,
    /// Change of the requests a day (least-squares over the points).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub requested_slope_per_day: Option<f64>,
    /// Days until requests reach allocatable at that slope (0: there already).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub days_until_full: Option<f64>,
    /// That day (UTC), when within 10 years.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub full_on: Option<jiff::civil::Date>,
}

/// A node's (or the cluster's, `node: "cluster"`) capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeCapacity {
    pub node: String,
    /// Daily points the trend is fitted on.
    pub points: usize,
    pub cpu_millicores: ResourceCapacity,
    pub memory_bytes: ResourceCapacity,
    pub pods: ResourceCapacity,
}

/// The report's `capacity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub(crate) trend_days: u32,
    pub horizon_days: u32,
    pub cluster: NodeCapacity,
    pub nodes: Vec<NodeCapacity>,
}

fn resource(
    points: &[NodePoint],
    now: Timestamp,
    f: impl Fn(&NodePoint) -> (u64, u64),
) -> ResourceCapacity {
    let series: Vec<(Timestamp, f64)> = points.iter().map(|p| (p.at, f(p).1 as f64)).collect();
    let (allocatable, requested) = points.last().map(&f).unwrap_or_default();
    let slope = trend::slope_per_day(&series);
    let days = trend::days_until_full(requested as f64, allocatable as f64, slope);
    let full_on = days.filter(|d| *d < 3650.0).and_then(|d| {
        now.checked_add(Duration::from_secs_f64(d * 86_400.0))
            .ok()
            .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date())
    });
    ResourceCapacity {
        allocatable,
        requested,
        requested_slope_per_day: slope,
        days_until_full: days,
        full_on,
    }
}

fn node_capacity(node: &str, points: &[NodePoint], now: Timestamp) -> NodeCapacity {
    NodeCapacity {
        node: node.to_string(),
        points: points.len(),
        cpu_millicores: resource(points, now, |p| {
            (p.allocatable_cpu_millicores, p.requested_cpu_millicores)
        }),
        memory_bytes: resource(points, now, |p| {
            (p.allocatable_memory_bytes, p.requested_memory_bytes)
        }),
        pods: resource(points, now, |p| (p.allocatable_pods, p.pods)),
    }
}

/// Capacity per node and for the cluster (the sum of the nodes' points per UTC day) from
/// the node history; only nodes of `current` (the nodes listed now) count.
pub fn capacity(
    history: &NodeHistory,
    current: &BTreeMap<String, NodePoint>,
    cfg: &CapacityConfig,
    now: Timestamp,
) -> Capacity {
    let mut days: BTreeMap<i64, NodePoint> = BTreeMap::new();
    let mut nodes = Vec::new();
    for (name, pts) in history
        .nodes
        .iter()
        .filter(|(n, _)| current.contains_key(*n))
    {
        nodes.push(node_capacity(name, pts, now));
        for p in pts {
            let d = days.entry(p.at.as_second().div_euclid(86_400)).or_default();
            d.at = d.at.max(p.at);
            d.allocatable_cpu_millicores += p.allocatable_cpu_millicores;
            d.requested_cpu_millicores += p.requested_cpu_millicores;
            d.allocatable_memory_bytes += p.allocatable_memory_bytes;
            d.requested_memory_bytes += p.requested_memory_bytes;
            d.allocatable_pods += p.allocatable_pods;
            d.pods += p.pods;
        }
    }
    let cluster_points: Vec<NodePoint> = days.into_values().collect();
    Capacity {
        trend_days: cfg.trend_days,
        horizon_days: cfg.horizon_days,
        cluster: node_capacity("cluster", &cluster_points, now),
        nodes,
    }
}

/// Recommendations from the usage history.
pub fn recommendations(usage: &UsageHistory, cfg: &CapacityConfig) -> Recommendations {
    let rule = cfg.rule();
    let mut out = Vec::new();
    let mut waiting = 0;
    for s in usage.containers.values() {
        if s.samples.len() < cfg.min_samples.max(1) {
            waiting += 1;
            continue;
        }
        let cpu: Vec<f64> = s.samples.iter().map(|x| x.1 as f64).collect();
        let mut peaks: BTreeMap<i64, u64> = BTreeMap::new();
        for (t, _, m) in &s.samples {
            let p = peaks.entry(t.as_second().div_euclid(86_400)).or_default();
            *p = (*p).max(*m);
        }
        let mem: Vec<f64> = peaks.values().map(|m| *m as f64).collect();
        let l = &s.latest;
        let (Some(c), Some(m)) = (
            recommend::recommend(
                &cpu,
                rule.cpu_percentile,
                &rule,
                rule.min_cpu_millicores,
                l.request.cpu_millicores,
                l.limit.cpu_millicores,
            ),
            recommend::recommend(
                &mem,
                rule.memory_percentile,
                &rule,
                rule.min_memory_bytes,
                l.request.memory_bytes,
                l.limit.memory_bytes,
            ),
        ) else {
            continue;
        };
        let over = |f: &Figures| {
            f.request
                .is_some_and(|r| r as f64 > cfg.far_above_factor * f.recommended_request as f64)
        };
        let under = |f: &Figures| {
            f.request
                .is_some_and(|r| f.recommended_request as f64 > cfg.far_below_factor * r as f64)
        };
        let verdict = if under(&c) || under(&m) {
            Some("under".to_string())
        } else if over(&c) || over(&m) {
            Some("over".to_string())
        } else {
            None
        };
        out.push(ContainerRecommendation {
            namespace: l.namespace.clone(),
            workload: l.workload.clone(),
            container: l.container.clone(),
            samples: s.samples.len(),
            first_sample: s.samples[0].0,
            last_sample: s.samples[s.samples.len() - 1].0,
            cpu_millicores: c,
            memory_bytes: m,
            verdict,
        });
    }
    Recommendations {
        rule,
        window_days: cfg.window.as_secs_f64() / 86_400.0,
        min_samples: cfg.min_samples,
        containers: out,
        waiting_for_samples: waiting,
    }
}

fn mib(b: u64) -> String {
    format!("{:.0}Mi", b as f64 / f64::from(1u32 << 20))
}

/// The `recommendations` check.
pub(crate) fn recommendations_check(r: &Recommendations, cfg: &CapacityConfig) -> CheckResult {
    let mut findings = Vec::new();
    for c in &r.containers {
        let Some(v) = c.verdict.as_deref() else {
            continue;
        };
        let span = c.last_sample.duration_since(c.first_sample).as_secs_f64() / 86_400.0;
        let fig = |name: &str, f: &Figures, unit: &dyn Fn(u64) -> String, q: f64| {
            format!(
                "{name} request {} vs recommended {} (p{:.0} {} + {:.0} %)",
                f.request.map_or_else(|| "unset".into(), unit),
                unit(f.recommended_request),
                q * 100.0,
                unit(f.usage_percentile as u64),
                r.rule.margin_fraction * 100.0
            )
        };
        let msg = format!(
            "container {}: {}; {}; {} samples over {span:.1} days",
            c.container,
            fig(
                "CPU",
                &c.cpu_millicores,
                &|m| format!("{m}m"),
                r.rule.cpu_percentile
            ),
            fig("memory", &c.memory_bytes, &mib, r.rule.memory_percentile),
            c.samples
        );
        let (kind, name) = c.workload.split_once('/').unwrap_or(("Pod", &c.workload));
        let object = ObjectRef {
            kind: kind.to_string(),
            namespace: Some(c.namespace.clone()),
            name: name.to_string(),
            uid: None,
        };
        let (code, sev, why) = if v == "under" {
            (
                "requests_below_use",
                Severity::Warning,
                format!("use far above the request (over {}×)", cfg.far_below_factor),
            )
        } else {
            (
                "requests_far_above_use",
                Severity::Info,
                format!("request over {}× the use", cfg.far_above_factor),
            )
        };
        findings.push(Finding::new(code, sev, object, format!("{why}: {msg}")));
    }
    CheckResult::new(
        "recommendations",
        format!(
            "{} containers with recommendations, {} waiting for {} samples",
            r.containers.len(),
            r.waiting_for_samples,
            r.min_samples
        ),
        findings,
    )
    .with_objects(r.containers.len())
}

/// The `capacity` check.
pub(crate) fn capacity_check(c: &Capacity) -> CheckResult {
    let mut findings = Vec::new();
    let mut all = vec![&c.cluster];
    all.extend(c.nodes.iter());
    for n in all {
        for (what, r, unit) in [
            ("CPU", &n.cpu_millicores, "m"),
            ("memory", &n.memory_bytes, " bytes"),
            ("pods", &n.pods, ""),
        ] {
            let Some(days) = r
                .days_until_full
                .filter(|d| *d <= f64::from(c.horizon_days))
            else {
                continue;
            };
            let object = ObjectRef {
                kind: if n.node == "cluster" {
                    "Cluster"
                } else {
                    "Node"
                }
                .into(),
                name: n.node.clone(),
                ..ObjectRef::default()
            };
            let when = r.full_on.map_or_else(String::new, |d| format!(" on {d}"));
            findings.push(Finding::new(
                "capacity_runs_out",
                Severity::Warning,
                object,
                format!(
                    "{what} requests {}{unit} of {}{unit} allocatable, {:+.1}{unit} a day over {} days: full in {days:.0} days{when} (horizon {} days)",
                    r.requested,
                    r.allocatable,
                    r.requested_slope_per_day.unwrap_or(0.0),
                    n.points,
                    c.horizon_days
                ),
            ));
        }
    }
    CheckResult::new(
        "capacity",
        format!(
            "{} nodes; cluster CPU {} of {}m, memory {} of {} requested",
            c.nodes.len(),
            c.cluster.cpu_millicores.requested,
            c.cluster.cpu_millicores.allocatable,
            mib(c.cluster.memory_bytes.requested),
            mib(c.cluster.memory_bytes.allocatable)
        ),
        findings,
    )
}

/// Records `round`'s samples (taken by the round, see [`sample`]) in the store and fills
/// its `recommendations` and `capacity` with their checks. Blocking (store writes). A
/// round that did not read the cluster changes nothing.
///
/// # Errors
/// The store cannot be read or written; the round is left as it was.
pub fn review(
    store: &Store,
    cfg: &CapacityConfig,
    round: &mut CheckRound,
    now: Timestamp,
) -> Result<(), store::Error> {
    let Some(s) = round.planning.samples.take() else {
        return Ok(());
    };
    let mut usage: UsageHistory = store.get_meta(USAGE_KEY)?.unwrap_or_default();
    let mut nodes: NodeHistory = store.get_meta(NODES_KEY)?.unwrap_or_default();
    if add(&mut usage, &mut nodes, &s, cfg, now) {
        store.put_meta(USAGE_KEY, &usage)?;
    }
    if !s.nodes.is_empty() {
        store.put_meta(NODES_KEY, &nodes)?;
    }
    let rec = recommendations(&usage, cfg);
    round
        .checks
        .retain(|c| c.name != "recommendations" && c.name != "capacity");
    round.checks.push(recommendations_check(&rec, cfg));
    round.planning.recommendations = Some(rec);
    if !s.nodes.is_empty() {
        let cap = capacity(&nodes, &s.nodes, cfg, now);
        round.checks.push(capacity_check(&cap));
        round.planning.capacity = Some(cap);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use caretaker_core::config::parse_yaml;

    use super::*;

    #[derive(Debug, Default, Deserialize)]
    struct Top {
        #[serde(default)]
        capacity: CapacityConfig,
    }

    #[test]
    fn defaults_are_vpas_and_bad_values_name_the_field() {
        let c = parse_yaml::<Top>("capacity:\n  horizon_days: 30\n", Path::new("a.yaml"))
            .unwrap()
            .capacity;
        assert_eq!(
            (
                c.cpu_percentile,
                c.memory_percentile,
                c.margin_fraction,
                c.horizon_days
            ),
            (0.9, 0.9, 0.15, 30)
        );
        assert_eq!(c.window, Duration::from_secs(8 * 86_400));
        for (yaml, want) in [
            (
                "capacity:\n  cpu_percentile: 90\n",
                "a percentile is 0 to 1",
            ),
            ("capacity:\n  cpu_percentile: 0\n", "must be above 0"),
            (
                "capacity:\n  far_above_factor: 0.5\n",
                "a factor is 1 to 1000",
            ),
            ("capacity:\n  trend_days: 1\n", "trend_days is 2 to 400"),
        ] {
            let err = parse_yaml::<Top>(yaml, Path::new("a.yaml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(want) && err.contains("line 2"),
                "{yaml}: {err}"
            );
        }
    }

    #[test]
    fn the_usage_document_keeps_at_most_max_containers() {
        let cfg = CapacityConfig::default();
        let mut usage = UsageHistory::default();
        let mut nodes = NodeHistory::default();
        let t: Timestamp = "2026-11-20T00:00:00Z".parse().unwrap();
        let c = |i: usize| ContainerSample {
            namespace: "n".into(),
            workload: format!("Pod/p{i}"),
            container: "c".into(),
            cpu_millicores: 1,
            memory_bytes: 1,
            request: Req::default(),
            limit: Req::default(),
        };
        let old = RoundSamples {
            containers: (0..MAX_CONTAINERS).map(c).collect(),
            nodes: BTreeMap::new(),
        };
        add(&mut usage, &mut nodes, &old, &cfg, t);
        let new = RoundSamples {
            containers: (MAX_CONTAINERS..MAX_CONTAINERS + 10).map(c).collect(),
            nodes: BTreeMap::new(),
        };
        add(
            &mut usage,
            &mut nodes,
            &new,
            &cfg,
            t + Duration::from_secs(3600),
        );
        assert_eq!(usage.containers.len(), MAX_CONTAINERS);
        assert!(
            usage
                .containers
                .contains_key(&format!("n/Pod/p{}/c", MAX_CONTAINERS + 9))
        );
    }
}
