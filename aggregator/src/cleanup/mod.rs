//! Cleanup proposals: what the operators' weekly cleanup script deletes, computed so that
//! nothing in use is ever proposed.
//!
//! # Layout
//! - this file: [`CleanupConfig`], [`Proposal`], the rule table [`RULES`] and [`propose`]
//!   (pure: state in, proposals out).
//! - [`references`]: the reference graph, the only judge of "in use".
//! - [`protect`]: `cleanup.protect`, the `caretaker.io/keep` annotation and the tools that
//!   own objects (Helm, Argo CD, Flux).
//! - [`apply`]: deleting proposals on a live cluster, each re-checked against a fresh read
//!   right before, with uid and resourceVersion preconditions, writing an audit record per
//!   attempt. [`render`] and [`cli`]: `caretaker-aggregator cleanup`.
//!
//! # Rules
//! Every rule is one row of [`RULES`]: its code, kind, source, the lists it needs, and a
//! function that names candidates. Every candidate then passes the same gate
//! ([`propose_with_notes`]): the reference graph (in use → not proposed), `cleanup.protect`
//! and the keep annotation (→ listed as kept, with the entry that matched), the managing
//! tool (→ reported "managed by X" with what to do there, never deleted). A rule whose
//! needed lists are not all complete proposes nothing and says which list was missing.
//! The generated page `aggregator/CLEANUP.md` (`reference_page`, a test keeps it current) documents every rule.

pub mod apply;
pub mod cli;
pub(crate) mod protect;
pub(crate) mod references;
pub(crate) mod render;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::checks::config::Age;

use crate::checks::ObjectRef;
use crate::checks::time::{age, sd};
use crate::cluster::{ClusterState, Coverage, PodInfo, Resource};
pub use apply::ApplyError;
pub use protect::{KEEP_ANNOTATION, Protect};
use references::{ReferenceGraph, Skip, Target, Templates};

const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// Kinds the cleanup handles (`--kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CleanupKind {
    Job,
    ReplicaSet,
    Pod,
    ConfigMap,
    Secret,
    VolumeSnapshot,
    PersistentVolumeClaim,
}

impl CleanupKind {
    pub const ALL: [CleanupKind; 7] = [
        CleanupKind::Job,
        CleanupKind::ReplicaSet,
        CleanupKind::Pod,
        CleanupKind::ConfigMap,
        CleanupKind::Secret,
        CleanupKind::VolumeSnapshot,
        CleanupKind::PersistentVolumeClaim,
    ];

    /// The Kubernetes resource of this kind.
    pub fn resource(self) -> Resource {
        match self {
            CleanupKind::Job => Resource::Job,
            CleanupKind::ReplicaSet => Resource::ReplicaSet,
            CleanupKind::Pod => Resource::Pod,
            CleanupKind::ConfigMap => Resource::ConfigMap,
            CleanupKind::Secret => Resource::Secret,
            CleanupKind::VolumeSnapshot => Resource::VolumeSnapshot,
            CleanupKind::PersistentVolumeClaim => Resource::PersistentVolumeClaim,
        }
    }
}

/// A kind no cleanup rule deletes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown kind {0:?}: use Job, ReplicaSet, Pod, ConfigMap, Secret, VolumeSnapshot or PersistentVolumeClaim"
)]
pub struct UnknownKind(pub String);

impl FromStr for CleanupKind {
    type Err = UnknownKind;

    /// A kind as `kubectl` accepts it: `Job`, `jobs`, `rs`, `cm`, `pvc` … (any case).
    fn from_str(s: &str) -> Result<Self, UnknownKind> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "job" | "jobs" => CleanupKind::Job,
            "replicaset" | "replicasets" | "rs" => CleanupKind::ReplicaSet,
            "pod" | "pods" | "po" => CleanupKind::Pod,
            "configmap" | "configmaps" | "cm" => CleanupKind::ConfigMap,
            "secret" | "secrets" => CleanupKind::Secret,
            "volumesnapshot" | "volumesnapshots" | "vs" => CleanupKind::VolumeSnapshot,
            "persistentvolumeclaim" | "persistentvolumeclaims" | "pvc" => {
                CleanupKind::PersistentVolumeClaim
            }
            _ => return Err(UnknownKind(s.to_string())),
        })
    }
}

/// The `cleanup:` config section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CleanupConfig {
    /// Kinds to propose; empty (the default) means all.
    pub kinds: Vec<CleanupKind>,
    /// Completed Jobs older than this are proposed. Default 24h (issue 5; the operators'
    /// script deleted completed Jobs daily).
    pub job_ttl: Age,
    /// Old ReplicaSets kept per Deployment. Default 5 (issue 5; Kubernetes' own
    /// `revisionHistoryLimit` default is 10, many charts set 5 or fewer).
    pub replica_sets_keep: u32,
    /// Failed pods older than this are proposed. Default 1h (issue 5).
    pub failed_pod_ttl: Age,
    /// Unreferenced ConfigMaps older than this are proposed. Default 30d (issue 5).
    pub config_map_min_age: Age,
    /// Unreferenced Secrets older than this are reported. Default 30d, as ConfigMaps.
    pub secret_min_age: Age,
    /// Whether unreferenced Secrets are proposed for deletion rather than only reported.
    /// Default false: a Secret may be read by something outside pod specs (an operator,
    /// a CI job, an Ingress controller).
    pub delete_unused_secrets: bool,
    /// VolumeSnapshots kept per source PVC. Default 10 (issue 5).
    pub snapshots_keep: u32,
    /// PVCs unmounted (or unbound) and older than this are reported. Default 30d.
    pub unused_pvc_min_age: Age,
    /// Namespaces whose ConfigMaps, Secrets and PVCs are never proposed (they are listed
    /// as kept). Default the control plane's: kube-system, kube-public, kube-node-lease.
    pub protected_namespaces: Vec<String>,
    /// What is never proposed, whatever the rule (see [`Protect`]). Default empty; the
    /// `caretaker.io/keep: "true"` annotation always protects.
    pub protect: Protect,
    /// A Job with `ttlSecondsAfterFinished` is left to Kubernetes' TTL controller; it is
    /// reported only when still present this long after its TTL ran out. Default 1h.
    pub job_ttl_grace: Age,
    /// JSON-lines file every applied deletion is recorded in. Default
    /// /var/lib/caretaker/cleanup-audit.jsonl.
    pub audit_log: PathBuf,
}

impl Default for CleanupConfig {
    fn default() -> Self {
        let day = Duration::from_secs(86_400);
        CleanupConfig {
            kinds: Vec::new(),
            job_ttl: Age::of(day),
            replica_sets_keep: 5,
            failed_pod_ttl: Age::of(Duration::from_secs(3600)),
            config_map_min_age: Age::of(30 * day),
            secret_min_age: Age::of(30 * day),
            delete_unused_secrets: false,
            snapshots_keep: 10,
            unused_pvc_min_age: Age::of(30 * day),
            protected_namespaces: vec![
                "kube-system".into(),
                "kube-public".into(),
                "kube-node-lease".into(),
            ],
            protect: Protect::default(),
            job_ttl_grace: Age::of(Duration::from_secs(3600)),
            audit_log: PathBuf::from("/var/lib/caretaker/cleanup-audit.jsonl"),
        }
    }
}

/// What to do with a proposed object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Delete it when applied.
    Delete,
    /// Only report it; applying leaves it alone.
    Report,
    /// A Certificate to renew with `caretaker-aggregator certificates renew` (the message
    /// gives the command); applying cleanup leaves it alone.
    Renew,
}

/// Propagation of a deletion to dependents (`propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Propagation {
    Background,
    Foreground,
}

/// One object proposed for cleanup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Why: `completed_job`, `old_replica_set`, `failed_pod`, `unused_config_map`,
    /// `unused_secret`, `excess_volume_snapshot`, `unused_pvc`, `unbound_pvc`.
    pub code: String,
    /// The object, with the uid the deletion is conditioned on.
    pub object: ObjectRef,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub propagation: Option<Propagation>,
    /// One sentence for a person; it names moments as absolute times (RFC 3339), never
    /// as ages, so it changes only when the object does.
    pub message: String,
    /// The moments the proposal is about, by name, RFC 3339 in JSON: `completed`
    /// (`completed_job`), `finished` and `ttl_expired` (`ttl_overdue_job`), `failed`
    /// (`failed_pod`), `created` (unused ConfigMaps, Secrets and claims, unbound claims).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub times: BTreeMap<String, Timestamp>,
    /// The object's labels, for `report -l` (filled by the aggregator's round; the pod
    /// labels the loader dropped are its controller's pod template labels, as
    /// `checks.exclude` selectors see them). Absent when unknown or none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub labels: BTreeMap<String, String>,
}

/// An object a rule would have proposed but that is protected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    /// The rule that would have proposed it.
    pub code: String,
    pub object: ObjectRef,
    /// The protecting entry: `cleanup.protect.namespaces: team-*`, `annotation caretaker.io/keep=true` …
    pub rule: String,
}

/// Proposals, the protected objects kept, and the rules that could not run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Proposals {
    pub proposals: Vec<Proposal>,
    /// Objects a rule named but the protected list keeps.
    pub kept: Vec<Kept>,
    /// Sentences on what was not proposed and why (e.g. a list that was not read).
    pub notes: Vec<String>,
}

/// What a rule says about one object before the common gate.
pub struct Candidate<'a> {
    meta: &'a ObjectMeta,
    action: Action,
    propagation: Option<Propagation>,
    message: String,
    /// The moments the message names (see [`Proposal::times`]).
    times: BTreeMap<String, Timestamp>,
    /// Checked against the reference graph.
    target: Option<Target>,
}

impl<'a> Candidate<'a> {
    /// `action` on the object of `meta` (no propagation, no moments, no reference check).
    fn new(meta: &'a ObjectMeta, action: Action, message: String) -> Candidate<'a> {
        Candidate {
            meta,
            action,
            propagation: None,
            message,
            times: BTreeMap::new(),
            target: None,
        }
    }

    fn delete(meta: &'a ObjectMeta, message: String) -> Candidate<'a> {
        Candidate {
            propagation: Some(Propagation::Background),
            ..Candidate::new(meta, Action::Delete, message)
        }
    }

    /// The same candidate, checked against the reference graph as `target`.
    fn on(mut self, target: Target) -> Candidate<'a> {
        self.target = Some(target);
        self
    }

    /// The same candidate with the moment `t` named `name` (see [`Proposal::times`]).
    fn at(mut self, name: &str, t: Timestamp) -> Candidate<'a> {
        self.times.insert(name.to_string(), t);
        self
    }
}

/// What a rule reads.
pub(crate) struct Ctx<'a> {
    pub state: &'a ClusterState,
    pub config: &'a CleanupConfig,
    pub now: Timestamp,
    /// What a rule withheld in part, and why (added to [`Proposals::notes`]).
    pub notes: std::cell::RefCell<Vec<String>>,
}

/// One cleanup rule.
pub struct Rule {
    /// The code proposals carry.
    pub code: &'static str,
    pub kind: CleanupKind,
    /// What it proposes, and what applying does.
    pub summary: &'static str,
    /// Where the rule and its defaults come from.
    pub source: &'static str,
    /// Lists that must be complete (optional extensions: unless not installed), or the
    /// rule proposes nothing and says which was missing.
    pub needs: &'static [Resource],
    /// Whether the rule runs in the second pass, with the reference graph (ConfigMaps,
    /// Secrets, PVCs): after the others, so references held by objects deleted in the same
    /// run do not count.
    pub(crate) uses_graph: bool,
    run: for<'a> fn(&Ctx<'a>) -> Vec<Candidate<'a>>,
}

const WORKLOADS: [Resource; 7] = [
    Resource::Pod,
    Resource::Deployment,
    Resource::ReplicaSet,
    Resource::StatefulSet,
    Resource::DaemonSet,
    Resource::Job,
    Resource::CronJob,
];
const CM_NEEDS: [Resource; 9] = [
    Resource::Pod,
    Resource::Deployment,
    Resource::ReplicaSet,
    Resource::StatefulSet,
    Resource::DaemonSet,
    Resource::Job,
    Resource::CronJob,
    Resource::Prometheus,
    Resource::Alertmanager,
];
const SECRET_NEEDS: [Resource; 21] = [
    Resource::Pod,
    Resource::Deployment,
    Resource::ReplicaSet,
    Resource::StatefulSet,
    Resource::DaemonSet,
    Resource::Job,
    Resource::CronJob,
    Resource::ServiceAccount,
    Resource::Ingress,
    Resource::ValidatingWebhookConfiguration,
    Resource::MutatingWebhookConfiguration,
    Resource::ApiService,
    Resource::CustomResourceDefinition,
    Resource::Certificate,
    Resource::Issuer,
    Resource::ClusterIssuer,
    Resource::Gateway,
    Resource::Prometheus,
    Resource::Alertmanager,
    Resource::Secret,
    Resource::ConfigMap,
];

/// Every cleanup rule, in the order they run and proposals are listed.
pub(crate) const RULES: &[Rule] = &[
    Rule {
        code: "completed_job",
        kind: CleanupKind::Job,
        summary: "Jobs that completed successfully longer than `job_ttl` ago (default 24h), deleted with background propagation so their pods go too. Never a Job its CronJob still keeps (the newest `successfulJobsHistoryLimit` successful and `failedJobsHistoryLimit` failed ones, Kubernetes defaults 3 and 1), never a cron-owned Job when CronJobs are unknown, never a Job with `ttlSecondsAfterFinished` (the TTL controller's).",
        source: "the seed's cleanup.sh (daily deletion of completed Jobs, issue 5); CronJob history limits and the TTL-after-finished controller: Kubernetes defaults",
        needs: &[Resource::CronJob],
        uses_graph: false,
        run: completed_jobs,
    },
    Rule {
        code: "job_ttl_overdue",
        kind: CleanupKind::Job,
        summary: "Report only: a finished Job with `ttlSecondsAfterFinished` still present more than `job_ttl_grace` (default 1h) after its TTL ran out; the TTL controller should have removed it.",
        source: "Kubernetes TTL-after-finished controller (issue 11)",
        needs: &[],
        uses_graph: false,
        run: ttl_overdue_jobs,
    },
    Rule {
        code: "old_replica_set",
        kind: CleanupKind::ReplicaSet,
        summary: "ReplicaSets owned by a Deployment with 0 desired and 0 current replicas, beyond the newest `replica_sets_keep` (default 5) old ones by the `deployment.kubernetes.io/revision` annotation; never the current one (the Deployment's revision, else the highest), never one with pods left (terminating), never one without an owner.",
        source: "the seed's cleanup.sh (issue 5); counted like Kubernetes' `revisionHistoryLimit` (default 10)",
        needs: &[Resource::Pod],
        uses_graph: false,
        run: old_replica_sets,
    },
    Rule {
        code: "failed_pod",
        kind: CleanupKind::Pod,
        summary: "Pods in phase Failed (Evicted included) that failed longer than `failed_pod_ttl` ago (default 1h). Never a pod of a Job that still exists (deleting it orphans the Job's retries; a CronJob's `failedJobsHistoryLimit` keeps its failed Job and so its pods), and no pod of a Job at all when Jobs were not listed.",
        source: "the seed's cleanup.sh (issue 5); kube-cleanup-operator#39",
        needs: &[],
        uses_graph: false,
        run: failed_pods,
    },
    Rule {
        code: "excess_volume_snapshot",
        kind: CleanupKind::VolumeSnapshot,
        summary: "VolumeSnapshots beyond the newest `snapshots_keep` (default 10) per source PVC.",
        source: "the seed's cleanup.sh (issue 5)",
        needs: &[],
        uses_graph: false,
        run: excess_snapshots,
    },
    Rule {
        code: "unused_config_map",
        kind: CleanupKind::ConfigMap,
        summary: "ConfigMaps older than `config_map_min_age` (default 30d) that nothing uses (see the reference list below); never `kube-root-ca.crt`, never one with an owner.",
        source: "the seed's cleanup.sh (deletes every ConfigMap older than 30 days, issue 11); made safe by the reference graph",
        needs: &CM_NEEDS,
        uses_graph: true,
        run: unused_config_maps,
    },
    Rule {
        code: "unused_secret",
        kind: CleanupKind::Secret,
        summary: "Secrets older than `secret_min_age` (default 30d) that nothing uses; reported, deleted only with `delete_unused_secrets` (TLS Secrets never). Never service-account tokens, Helm release records, bootstrap tokens, cert-manager issued Secrets, or one with an owner.",
        source: "issue 5 (as ConfigMaps); Secret types: Kubernetes and Helm",
        needs: &SECRET_NEEDS,
        uses_graph: true,
        run: unused_secrets,
    },
    Rule {
        code: "unused_pvc",
        kind: CleanupKind::PersistentVolumeClaim,
        summary: "Report only: bound PVCs older than `unused_pvc_min_age` (default 30d) that no pod, pod template or StatefulSet claim template uses (data: never deleted by caretaker).",
        source: "issue 5",
        needs: &WORKLOADS,
        uses_graph: true,
        run: unused_pvcs,
    },
    Rule {
        code: "unbound_pvc",
        kind: CleanupKind::PersistentVolumeClaim,
        summary: "Report only: PVCs still Pending (unbound) after `unused_pvc_min_age`.",
        source: "issue 5",
        needs: &[],
        uses_graph: true,
        run: unbound_pvcs,
    },
];

fn owned(meta: &ObjectMeta) -> bool {
    meta.owner_references
        .as_ref()
        .is_some_and(|o| !o.is_empty())
}

fn controller_owner<'a>(meta: &'a ObjectMeta, kind: &str) -> Option<&'a str> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|o| o.kind == kind && o.controller != Some(false))
        .map(|o| o.uid.as_str())
}

fn created(meta: &ObjectMeta) -> Option<Timestamp> {
    meta.creation_timestamp.as_ref().map(|t| t.0)
}

/// When `meta`'s object was created, if more than `min` before `now`.
fn created_before(
    meta: &ObjectMeta,
    now: Timestamp,
    min: jiff::SignedDuration,
) -> Option<Timestamp> {
    created(meta).filter(|c| age(now, *c) > min)
}

fn job_succeeded(j: &Job) -> Option<Timestamp> {
    let s = j.status.as_ref()?;
    let c = s
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == "Complete" && c.status == "True")?;
    s.completion_time
        .as_ref()
        .or(c.last_transition_time.as_ref())
        .map(|t| t.0)
}

fn job_failed_at(j: &Job) -> Option<Timestamp> {
    j.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

fn job_failed(j: &Job) -> bool {
    j.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Failed" && c.status == "True"))
}

fn job_ttl(j: &Job) -> Option<i32> {
    j.spec.as_ref()?.ttl_seconds_after_finished
}

fn revision(rs: &ReplicaSet) -> Option<u64> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(REVISION_ANNOTATION)?
        .parse()
        .ok()
}

/// When a Failed pod failed: its newest container termination or condition change, else
/// its start or creation.
pub(crate) fn pod_failed_at(p: &PodInfo) -> Option<Timestamp> {
    let s = &p.status;
    let terminated = s
        .container_statuses
        .iter()
        .chain(&s.init_container_statuses)
        .filter_map(|c| {
            c.state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()
                .map(|t| t.0)
        });
    let conditions = s
        .conditions
        .iter()
        .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0));
    terminated
        .chain(conditions)
        .max()
        .or(s.start_time.as_ref().map(|t| t.0))
        .or_else(|| created(&p.metadata))
}

/// Proposals for `state` as of `now` (see [`RULES`]).
pub fn propose(state: &ClusterState, config: &CleanupConfig, now: Timestamp) -> Vec<Proposal> {
    propose_with_notes(state, config, now).proposals
}

/// Why `r` is not completely known, if it is not (an optional extension that is not
/// installed counts as known: nothing of it exists).
fn missing(state: &ClusterState, r: Resource) -> Option<String> {
    match state.coverage(r) {
        Coverage::Listed => None,
        Coverage::NotApplicable { .. } if r.optional() => None,
        Coverage::NotApplicable { .. } => Some(format!("{} (not listed)", r.display_name())),
        Coverage::Forbidden { .. } => Some(format!("{} (forbidden)", r.display_name())),
        Coverage::Failed { message } => Some(format!("{} (failed: {message})", r.display_name())),
    }
}

/// Whether Argo CD manages anything here (so its `app.kubernetes.io/instance` tracking
/// label means "Argo CD").
fn argo_known(state: &ClusterState) -> bool {
    let argo = |m: &ObjectMeta| {
        m.annotations
            .iter()
            .flatten()
            .chain(m.labels.iter().flatten())
            .any(|(k, _)| k.starts_with("argocd.argoproj.io/"))
    };
    state.config_maps.iter().any(|o| argo(&o.metadata))
        || state.secrets.iter().any(|o| argo(&o.metadata))
        || state.deployments.iter().any(|o| argo(&o.metadata))
        || state.stateful_sets.iter().any(|o| argo(&o.metadata))
        || state.daemon_sets.iter().any(|o| argo(&o.metadata))
        || state.cron_jobs.iter().any(|o| argo(&o.metadata))
        || state.pvcs.iter().any(|o| argo(&o.metadata))
}

/// [`propose`], with the protected objects kept and notes on the rules that could not run.
/// With every kind selected, Certificates due for renewal that cert-manager has not renewed
/// come last ([`crate::renew::proposals`]: action `renew`, never deleted).
pub fn propose_with_notes(
    state: &ClusterState,
    config: &CleanupConfig,
    now: Timestamp,
) -> Proposals {
    let mut out = propose_rules(state, config, now);
    if config.kinds.is_empty() {
        out.proposals.extend(crate::renew::proposals(state, now));
    }
    out
}

/// The deletion and report proposals of [`RULES`].
fn propose_rules(state: &ClusterState, config: &CleanupConfig, now: Timestamp) -> Proposals {
    let selected = |r: &&Rule| config.kinds.is_empty() || config.kinds.contains(&r.kind);
    let ctx = Ctx {
        state,
        config,
        now,
        notes: Default::default(),
    };
    let gate = Gate {
        config,
        argo: argo_known(state),
    };
    let mut out = Proposals::default();
    let mut skip = Skip::default();
    for rule in RULES.iter().filter(selected).filter(|r| !r.uses_graph) {
        if gate.runnable(rule, state, &mut out) {
            gate.admit(rule, (rule.run)(&ctx), None, &mut out, &mut skip);
        }
    }
    let graph_rules: Vec<&Rule> = RULES
        .iter()
        .filter(selected)
        .filter(|r| r.uses_graph)
        .collect();
    if graph_rules.is_empty() {
        out.notes.extend(ctx.notes.take());
        return out;
    }
    // Built after every rule whose deletions free references has run: what those objects
    // reference does not count.
    let templates = Templates::collect(state, &skip);
    let graph = ReferenceGraph::build(state, &templates, &skip);
    for rule in graph_rules {
        if gate.runnable(rule, state, &mut out) {
            gate.admit(rule, (rule.run)(&ctx), Some(&graph), &mut out, &mut skip);
        }
    }
    out.notes.extend(ctx.notes.take());
    out
}

/// The checks every candidate of every rule passes.
struct Gate<'c> {
    config: &'c CleanupConfig,
    argo: bool,
}

impl Gate<'_> {
    /// Whether every list `rule` needs is known; else a note naming the missing ones.
    fn runnable(&self, rule: &Rule, state: &ClusterState, out: &mut Proposals) -> bool {
        let missing: Vec<String> = rule
            .needs
            .iter()
            .filter_map(|r| missing(state, *r))
            .collect();
        if missing.is_empty() {
            return true;
        }
        out.notes.push(format!(
            "{} not proposed: what it needs to know is incomplete, {} not listed completely: {}",
            rule.code,
            if missing.len() == 1 {
                "this list was"
            } else {
                "these lists were"
            },
            missing.join(", ")
        ));
        false
    }

    fn admit<'a>(
        &self,
        rule: &Rule,
        candidates: Vec<Candidate<'a>>,
        graph: Option<&ReferenceGraph<'a>>,
        out: &mut Proposals,
        skip: &mut Skip<'a>,
    ) {
        for c in candidates {
            if let (Some(t), Some(g)) = (c.target, graph)
                && g.used_by(t, c.meta).is_some()
            {
                continue;
            }
            let object = ObjectRef::new(rule.kind.resource().kind(), c.meta);
            if let Some(entry) = self.protected(rule, c.meta) {
                out.kept.push(Kept {
                    code: rule.code.into(),
                    object,
                    rule: entry,
                });
                continue;
            }
            let (action, message) = match protect::managed_by(c.meta, self.argo) {
                Some(m) => (Action::Report, format!("{}; {}", c.message, m.advice)),
                None => (c.action, c.message),
            };
            if action == Action::Delete
                && let Some(uid) = c.meta.uid.as_deref()
            {
                skip.uids.insert(uid);
            }
            out.proposals.push(Proposal {
                code: rule.code.into(),
                object,
                action,
                propagation: c.propagation.filter(|_| action == Action::Delete),
                message,
                times: c.times,
                labels: BTreeMap::new(),
            });
        }
    }

    fn protected(&self, rule: &Rule, meta: &ObjectMeta) -> Option<String> {
        if let Some(e) = self.config.protect.matching(rule.kind, meta) {
            return Some(e);
        }
        let data = matches!(
            rule.kind,
            CleanupKind::ConfigMap | CleanupKind::Secret | CleanupKind::PersistentVolumeClaim
        );
        let ns = meta.namespace.as_deref().unwrap_or("");
        (data && self.config.protected_namespaces.iter().any(|p| p == ns))
            .then(|| format!("cleanup.protected_namespaces: {ns}"))
    }
}

/// The Jobs each CronJob keeps, as its controller would (by uid), and the uids of the
/// CronJobs known.
fn cron_kept(state: &ClusterState) -> (HashSet<&str>, HashSet<&str>) {
    let mut limits: HashMap<&str, (usize, usize)> = HashMap::new();
    for c in &state.cron_jobs {
        if let Some(uid) = c.metadata.uid.as_deref() {
            let s = &c.spec;
            let ok = s.successful_jobs_history_limit.unwrap_or(3).max(0) as usize;
            let failed = s.failed_jobs_history_limit.unwrap_or(1).max(0) as usize;
            limits.insert(uid, (ok, failed));
        }
    }
    let mut by_cron: HashMap<&str, Vec<&Job>> = HashMap::new();
    for j in &state.jobs {
        if let Some(owner) = controller_owner(&j.metadata, "CronJob") {
            by_cron.entry(owner).or_default().push(j);
        }
    }
    let mut kept: HashSet<&str> = HashSet::new();
    for (owner, jobs) in &mut by_cron {
        let Some(&(keep_ok, keep_failed)) = limits.get(owner) else {
            continue;
        };
        let start = |j: &Job| {
            j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0)
                .or_else(|| created(&j.metadata))
        };
        jobs.sort_by_key(|j| std::cmp::Reverse(start(j)));
        let ok = jobs
            .iter()
            .filter(|j| job_succeeded(j).is_some())
            .take(keep_ok);
        let failed = jobs.iter().filter(|j| job_failed(j)).take(keep_failed);
        kept.extend(ok.chain(failed).filter_map(|j| j.metadata.uid.as_deref()));
    }
    (kept, limits.into_keys().collect())
}

fn completed_jobs<'a>(ctx: &Ctx<'a>) -> Vec<Candidate<'a>> {
    let ttl = sd(ctx.config.job_ttl);
    let (kept, crons) = cron_kept(ctx.state);
    let mut out = Vec::new();
    for j in &ctx.state.jobs {
        let Some(done) = job_succeeded(j) else {
            continue;
        };
        if job_ttl(j).is_some() || age(ctx.now, done) <= ttl {
            continue;
        }
        if let Some(owner) = controller_owner(&j.metadata, "CronJob") {
            let uid = j.metadata.uid.as_deref().unwrap_or("");
            if kept.contains(uid) || !crons.contains(owner) {
                // Kept by its CronJob's history limit, or the CronJob is unknown.
                continue;
            }
        }
        out.push(Candidate::delete(&j.metadata, format!("completed {done}")).at("completed", done));
    }
    out
}

fn ttl_overdue_jobs<'a>(ctx: &Ctx<'a>) -> Vec<Candidate<'a>> {
    let grace = sd(ctx.config.job_ttl_grace);
    let mut out = Vec::new();
    for j in &ctx.state.jobs {
        let (Some(ttl), Some(done)) = (job_ttl(j), job_succeeded(j).or_else(|| job_failed_at(j)))
        else {
            continue;
        };
        let expired = done + jiff::SignedDuration::from_secs(i64::from(ttl.max(0)));
        let overdue = age(ctx.now, expired);
        if overdue <= grace {
            continue;
        }
        out.push(
            Candidate::new(
                &j.metadata,
                Action::Report,
                format!(
                    "ttlSecondsAfterFinished {ttl} ran out at {expired} and the TTL controller has not removed it: check kube-controller-manager's ttl-after-finished controller"
                ),
            )
            .at("finished", done)
            .at("ttl_expired", expired),
        );
    }
    out
}

fn old_replica_sets<'a>(ctx: &Ctx<'a>) -> Vec<Candidate<'a>> {
    let state = ctx.state;
    let pod_owners: HashSet<&str> = state
        .pods
        .iter()
        .flat_map(|p| p.metadata.owner_references.iter().flatten())
        .map(|o| o.uid.as_str())
        .collect();
    let deployment_revision: HashMap<&str, u64> = state
        .deployments
        .iter()
        .filter_map(|d| {
            let rev = d
                .metadata
                .annotations
                .as_ref()?
                .get(REVISION_ANNOTATION)?
                .parse()
                .ok()?;
            Some((d.metadata.uid.as_deref()?, rev))
        })
        .collect();
    let mut by_owner: HashMap<&str, Vec<&ReplicaSet>> = HashMap::new();
    for rs in &state.replica_sets {
        // Never one without an owner: nothing would recreate it, and nothing says it is old.
        if let Some(owner) = controller_owner(&rs.metadata, "Deployment") {
            by_owner.entry(owner).or_default().push(rs);
        }
    }
    let mut owners: Vec<_> = by_owner.into_iter().collect();
    owners.sort_by_key(|(o, _)| *o);
    let keep = ctx.config.replica_sets_keep;
    let mut out = Vec::new();
    for (owner, mut sets) in owners {
        // Order by revision, not by creation time: a rollback gives an old ReplicaSet a new,
        // higher revision.
        sets.sort_by_key(|rs| std::cmp::Reverse(revision(rs)));
        let current = deployment_revision
            .get(owner)
            .copied()
            .or_else(|| sets.first().and_then(|rs| revision(rs)));
        let old = sets
            .into_iter()
            .filter(|rs| revision(rs).is_some() && revision(rs) != current)
            .filter(|rs| {
                rs.spec.replicas == Some(0) && rs.status.as_ref().map_or(0, |s| s.replicas) == 0
            });
        for rs in old.skip(keep as usize) {
            if pod_owners.contains(rs.metadata.uid.as_deref().unwrap_or("")) {
                continue;
            }
            out.push(Candidate::delete(
                &rs.metadata,
                format!(
                    "revision {} of its Deployment (current {}), beyond the newest {keep} old ones",
                    revision(rs).unwrap_or(0),
                    current.map_or("?".to_string(), |c| c.to_string()),
                ),
            ));
        }
    }
    out
}

fn failed_pods<'a>(ctx: &Ctx<'a>) -> Vec<Candidate<'a>> {
    let ttl = sd(ctx.config.failed_pod_ttl);
    let jobs: HashSet<&str> = ctx
        .state
        .jobs
        .iter()
        .filter_map(|j| j.metadata.uid.as_deref())
        .collect();
    let jobs_known = missing(ctx.state, Resource::Job);
    let mut withheld = 0;
    let mut out = Vec::new();
    for p in &ctx.state.pods {
        if p.status.phase.as_deref() != Some("Failed") {
            continue;
        }
        // A pod of a Job that still exists goes with its Job, never on its own.
        if let Some(job) = controller_owner(&p.metadata, "Job") {
            if jobs_known.is_some() {
                withheld += 1;
                continue;
            }
            if jobs.contains(job) {
                continue;
            }
        }
        let Some(at) = pod_failed_at(p) else { continue };
        if age(ctx.now, at) <= ttl {
            continue;
        }
        let why = match p.status.reason.as_deref() {
            Some("Evicted") => "evicted",
            _ => "failed",
        };
        out.push(Candidate::delete(&p.metadata, format!("pod {why} at {at}")).at("failed", at));
    }
    if let (Some(m), 1..) = (jobs_known, withheld) {
        ctx.notes.borrow_mut().push(format!(
            "failed_pod: {withheld} failed pod(s) of Jobs not proposed: this list was not listed completely: {m}"
        ));
    }
    out
}

fn excess_snapshots<'a>(ctx: &Ctx<'a>) -> Vec<Candidate<'a>> {
    let keep = ctx.config.snapshots_keep;
    type Snapshots<'s> = Vec<(Option<Timestamp>, &'s kube::api::DynamicObject)>;
    let mut by_pvc: HashMap<(&str, &str), Snapshots> = HashMap::new();
    for s in &ctx.state.volume_snapshots {
        let Some(pvc) = s
            .data
            .get("spec")
            .and_then(|s| s.get("source"))
            .and_then(|s| s.get("persistentVolumeClaimName"))
            .and_then(|v| v.as_str())
        else {
            continue;
        };
        let t =
            crate::checks::time::parse(s.data.get("status").and_then(|s| s.get("creationTime")))
                .or_else(|| created(&s.metadata));
        by_pvc
            .entry((s.metadata.namespace.as_deref().unwrap_or(""), pvc))
            .or_default()
            .push((t, s));
    }
    let mut groups: Vec<_> = by_pvc.into_iter().collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for ((_, pvc), mut snaps) in groups {
        snaps.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| b.1.metadata.name.cmp(&a.1.metadata.name))
        });
        for (_, s) in snaps.into_iter().skip(keep as usize) {
            out.push(Candidate::new(
                &s.metadata,
                Action::Delete,
                format!("snapshot of {pvc} beyond the newest {keep}"),
            ));
        }
    }
    out
}

fn unused_config_maps<'a>(ctx: &Ctx<'a>) -> Vec<Candidate<'a>> {
    let min = sd(ctx.config.config_map_min_age);
    let mut out = Vec::new();
    for cm in &ctx.state.config_maps {
        let m = &cm.metadata;
        if owned(m) || m.name.as_deref() == Some("kube-root-ca.crt") {
            continue;
        }
        let Some(c) = created_before(m, ctx.now, min) else {
            continue;
        };
        out.push(
            Candidate::new(m, Action::Delete, format!("used by nothing, created {c}"))
                .on(Target::ConfigMap)
                .at("created", c),
        );
    }
    out
}

fn unused_secrets<'a>(ctx: &Ctx<'a>) -> Vec<Candidate<'a>> {
    let min = sd(ctx.config.secret_min_age);
    let mut out = Vec::new();
    for s in &ctx.state.secrets {
        let m = &s.metadata;
        let ty = s.type_.as_deref().unwrap_or("Opaque");
        if matches!(
            ty,
            "kubernetes.io/service-account-token"
                | "helm.sh/release.v1"
                | "bootstrap.kubernetes.io/token"
        ) || owned(m)
            || m.annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("cert-manager.io/certificate-name"))
        {
            continue;
        }
        let Some(c) = created_before(m, ctx.now, min) else {
            continue;
        };
        let delete = ctx.config.delete_unused_secrets && ty != "kubernetes.io/tls";
        out.push(
            Candidate::new(
                m,
                if delete {
                    Action::Delete
                } else {
                    Action::Report
                },
                format!("{ty} secret used by nothing, created {c}"),
            )
            .on(Target::Secret)
            .at("created", c),
        );
    }
    out
}

fn pvc_phase(c: &k8s_openapi::api::core::v1::PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn unused_pvcs<'a>(ctx: &Ctx<'a>) -> Vec<Candidate<'a>> {
    let min = sd(ctx.config.unused_pvc_min_age);
    let mut out = Vec::new();
    for c in &ctx.state.pvcs {
        let m = &c.metadata;
        if owned(m) || pvc_phase(c) == "Pending" {
            continue;
        }
        let Some(t) = created_before(m, ctx.now, min) else {
            continue;
        };
        out.push(
            Candidate::new(
                m,
                Action::Report,
                format!("claim mounted by no pod or pod template, created {t}"),
            )
            .on(Target::Pvc)
            .at("created", t),
        );
    }
    out
}

fn unbound_pvcs<'a>(ctx: &Ctx<'a>) -> Vec<Candidate<'a>> {
    let min = sd(ctx.config.unused_pvc_min_age);
    let mut out = Vec::new();
    for c in &ctx.state.pvcs {
        let m = &c.metadata;
        if owned(m) || pvc_phase(c) != "Pending" {
            continue;
        }
        let Some(t) = created_before(m, ctx.now, min) else {
            continue;
        };
        out.push(
            Candidate::new(
                m,
                Action::Report,
                format!("claim unbound since it was created at {t}"),
            )
            .at("created", t),
        );
    }
    out
}

/// The reference page `aggregator/CLEANUP.md`, generated from [`RULES`] and the reference
/// graph's documentation (a test keeps the checked-in copy equal).
#[cfg(test)]
pub(crate) fn reference_page() -> String {
    let mut s = String::from(
        "# Cleanup rules\n\n\
         Generated from `aggregator/src/cleanup/mod.rs` (`RULES`) and `references.rs` by \
         `cargo test -p caretaker-aggregator --lib cleanup::tests::reference_page_is_current` \
         (set `UPDATE_CLEANUP_MD=1` to rewrite it); do not edit by hand.\n\n\
         Every rule names candidates; each candidate then passes the same gate: the reference \
         graph (in use: not proposed), `cleanup.protect` and the `caretaker.io/keep: \"true\"` \
         annotation (kept, listed with the entry that matched), the managing tool (Helm, \
         Argo CD, Flux: reported with what to do there, never deleted). A rule whose needed \
         lists were not all read completely proposes nothing and says which list was missing. \
         `cleanup --apply` re-reads each object and its referrers right before deleting it, \
         re-runs its rule on that fresh read, and deletes with uid and resourceVersion \
         preconditions.\n\n\
         | code | kind | proposes | source | needs complete lists of |\n\
         |---|---|---|---|---|\n",
    );
    for r in RULES {
        let needs: Vec<String> = r.needs.iter().map(|x| x.display_name()).collect();
        s.push_str(&format!(
            "| `{}` | {:?} | {} | {} | {} |\n",
            r.code,
            r.kind,
            r.summary,
            r.source,
            if needs.is_empty() {
                "—".to_string()
            } else {
                needs.join(", ")
            }
        ));
    }
    s.push_str("\n## What counts as in use\n\n");
    for line in include_str!("references.rs").lines() {
        match line.strip_prefix("//!") {
            Some(l) => {
                s.push_str(l.strip_prefix(' ').unwrap_or(l));
                s.push('\n');
            }
            None => break,
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_page_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/CLEANUP.md");
        let page = reference_page();
        if std::env::var_os("UPDATE_CLEANUP_MD").is_some() {
            std::fs::write(path, &page).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == page,
            "aggregator/CLEANUP.md differs from the rule table: run with UPDATE_CLEANUP_MD=1"
        );
    }

    #[test]
    fn every_rule_has_a_unique_code_and_a_source() {
        let codes: HashSet<&str> = RULES.iter().map(|r| r.code).collect();
        assert_eq!(codes.len(), RULES.len());
        assert!(
            RULES
                .iter()
                .all(|r| !r.source.is_empty() && !r.summary.is_empty())
        );
    }
}
