//! Cleanup proposals: what the operators' weekly cleanup script deletes, computed so that
//! nothing in use is ever proposed.
//!
//! # Layout
//! - this file: [`CleanupConfig`], [`Proposal`] and [`propose`] (pure: state in, proposals out).
//! - [`references`]: which ConfigMaps, Secrets and PVCs something still references.
//! - [`apply`]: deleting proposals on a live cluster with a uid precondition, writing an
//!   audit record per attempt. [`render`] and [`cli`]: `caretaker-aggregator cleanup`.
//!
//! # Rules (codes in brackets)
//! - [`completed_job`] Jobs that completed successfully longer than `job_ttl` ago, deleted
//!   with background propagation so their pods go too; never a Job its CronJob still keeps
//!   (the newest `successfulJobsHistoryLimit` successful and `failedJobsHistoryLimit`
//!   failed ones, defaults 3 and 1); never a cron-owned Job when CronJobs are unknown.
//! - [`old_replica_set`] ReplicaSets owned by a Deployment with 0 desired and 0 current
//!   replicas, beyond the newest `replica_sets_keep` by the `deployment.kubernetes.io/revision`
//!   annotation (counted like `revisionHistoryLimit`: old ones only); never the current one
//!   (the Deployment's revision, else the highest), never one with pods left (terminating),
//!   never one without an owner.
//! - [`failed_pod`] Pods in phase Failed (Evicted included) that failed longer than
//!   `failed_pod_ttl` ago.
//! - [`unused_config_map`] ConfigMaps older than `config_map_min_age` referenced by nothing
//!   (see [`references`]): not by any pod, nor by the pod templates of Deployments,
//!   StatefulSets, DaemonSets, Jobs, CronJobs and ReplicaSets that are kept. Only proposed
//!   when all of those were listed.
//! - [`unused_secret`] the same for Secrets, plus `imagePullSecrets` and ServiceAccounts;
//!   reported, not deleted, unless `delete_unused_secrets` (and TLS secrets, used by
//!   Ingresses this tool does not read, are never deleted).
//! - [`excess_volume_snapshot`] VolumeSnapshots beyond the newest `snapshots_keep` per source PVC.
//! - [`unused_pvc`], [`unbound_pvc`] PVCs no pod or pod template mounts, or still unbound,
//!   older than `unused_pvc_min_age` (report only: data).
//!
//! Never proposed at all: objects in `protected_namespaces` (ConfigMaps, Secrets, PVCs),
//! objects with an owner (their owner's controller or the garbage collector handles them),
//! Helm-managed objects, `kube-root-ca.crt`, and anything annotated `caretaker.io/keep: "true"`.
//!
//! [`completed_job`]: Proposal::code
//! [`old_replica_set`]: Proposal::code
//! [`failed_pod`]: Proposal::code
//! [`unused_config_map`]: Proposal::code
//! [`unused_secret`]: Proposal::code
//! [`excess_volume_snapshot`]: Proposal::code
//! [`unused_pvc`]: Proposal::code
//! [`unbound_pvc`]: Proposal::code

pub mod apply;
pub mod cli;
pub mod references;
pub mod render;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::checks::ObjectRef;
use crate::checks::time::{age, human, sd};
use crate::cluster::{ClusterState, PodInfo, Resource};
pub use apply::ApplyError;
use references::References;

/// Annotation that keeps an object out of every proposal.
pub const KEEP_ANNOTATION: &str = "caretaker.io/keep";
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

impl FromStr for CleanupKind {
    type Err = String;

    /// A kind as `kubectl` accepts it: `Job`, `jobs`, `rs`, `cm`, `pvc` … (any case).
    fn from_str(s: &str) -> Result<Self, String> {
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
            _ => {
                return Err(format!(
                    "unknown kind {s:?}: use Job, ReplicaSet, Pod, ConfigMap, Secret, VolumeSnapshot or PersistentVolumeClaim"
                ));
            }
        })
    }
}

/// The `cleanup:` config section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CleanupConfig {
    /// Kinds to propose; empty (the default) means all.
    pub kinds: Vec<CleanupKind>,
    /// Completed Jobs older than this are proposed. Default 24h (issue 5; the operators'
    /// script deleted completed Jobs daily).
    #[serde(deserialize_with = "crate::checks::config::age")]
    pub job_ttl: Duration,
    /// Old ReplicaSets kept per Deployment. Default 5 (issue 5; Kubernetes' own
    /// `revisionHistoryLimit` default is 10, many charts set 5 or fewer).
    pub replica_sets_keep: u32,
    /// Failed pods older than this are proposed. Default 1h (issue 5).
    #[serde(deserialize_with = "crate::checks::config::age")]
    pub failed_pod_ttl: Duration,
    /// Unreferenced ConfigMaps older than this are proposed. Default 30d (issue 5).
    #[serde(deserialize_with = "crate::checks::config::age")]
    pub config_map_min_age: Duration,
    /// Unreferenced Secrets older than this are reported. Default 30d, as ConfigMaps.
    #[serde(deserialize_with = "crate::checks::config::age")]
    pub secret_min_age: Duration,
    /// Whether unreferenced Secrets are proposed for deletion rather than only reported.
    /// Default false: a Secret may be read by something outside pod specs (an operator,
    /// a CI job, an Ingress controller).
    pub delete_unused_secrets: bool,
    /// VolumeSnapshots kept per source PVC. Default 10 (issue 5).
    pub snapshots_keep: u32,
    /// PVCs unmounted (or unbound) and older than this are reported. Default 30d.
    #[serde(deserialize_with = "crate::checks::config::age")]
    pub unused_pvc_min_age: Duration,
    /// Namespaces whose ConfigMaps, Secrets and PVCs are never proposed. Default the
    /// control plane's: kube-system, kube-public, kube-node-lease.
    pub protected_namespaces: Vec<String>,
    /// JSON-lines file every applied deletion is recorded in. Default
    /// /var/lib/caretaker/cleanup-audit.jsonl.
    pub audit_log: PathBuf,
}

impl Default for CleanupConfig {
    fn default() -> Self {
        let day = Duration::from_secs(86_400);
        CleanupConfig {
            kinds: Vec::new(),
            job_ttl: day,
            replica_sets_keep: 5,
            failed_pod_ttl: Duration::from_secs(3600),
            config_map_min_age: 30 * day,
            secret_min_age: 30 * day,
            delete_unused_secrets: false,
            snapshots_keep: 10,
            unused_pvc_min_age: 30 * day,
            protected_namespaces: vec![
                "kube-system".into(),
                "kube-public".into(),
                "kube-node-lease".into(),
            ],
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
    pub message: String,
}

/// Proposals and the rules that could not run (e.g. references unknown).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Proposals {
    pub proposals: Vec<Proposal>,
    /// Sentences on what was not proposed and why.
    pub notes: Vec<String>,
}

fn kept(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(KEEP_ANNOTATION))
        .is_some_and(|v| v == "true")
}

fn helm_managed(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/managed-by"))
        .is_some_and(|v| v == "Helm")
        || meta
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("meta.helm.sh/release-name"))
}

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

fn ns_name(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
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

fn job_failed(j: &Job) -> bool {
    j.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Failed" && c.status == "True"))
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
pub fn pod_failed_at(p: &PodInfo) -> Option<Timestamp> {
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

/// Proposals for `state` as of `now` (see the module docs for the rules).
pub fn propose(state: &ClusterState, config: &CleanupConfig, now: Timestamp) -> Vec<Proposal> {
    propose_with_notes(state, config, now).proposals
}

/// [`propose`], with notes on the rules that could not run.
pub fn propose_with_notes(
    state: &ClusterState,
    config: &CleanupConfig,
    now: Timestamp,
) -> Proposals {
    let selected = |k: CleanupKind| config.kinds.is_empty() || config.kinds.contains(&k);
    let mut out = Proposals::default();
    let protected_ns = |m: &ObjectMeta| {
        config
            .protected_namespaces
            .iter()
            .any(|p| Some(p.as_str()) == m.namespace.as_deref())
    };

    // Objects that will be deleted in this run, so their references do not count.
    let mut deleted_jobs: HashSet<&str> = HashSet::new();
    let mut deleted_rs: HashSet<&str> = HashSet::new();
    let mut deleted_pods: HashSet<&str> = HashSet::new();

    if selected(CleanupKind::Job) {
        propose_jobs(state, config, now, &mut out, &mut deleted_jobs);
    }
    if selected(CleanupKind::ReplicaSet) {
        propose_replica_sets(state, config, &mut out, &mut deleted_rs);
    }
    if selected(CleanupKind::Pod) {
        let ttl = sd(config.failed_pod_ttl);
        for p in &state.pods {
            if p.status.phase.as_deref() != Some("Failed") || kept(&p.metadata) {
                continue;
            }
            let Some(at) = pod_failed_at(p) else { continue };
            if age(now, at) <= ttl {
                continue;
            }
            let why = match p.status.reason.as_deref() {
                Some("Evicted") => "evicted",
                _ => "failed",
            };
            if let Some(uid) = p.metadata.uid.as_deref() {
                deleted_pods.insert(uid);
            }
            out.proposals.push(Proposal {
                code: "failed_pod".into(),
                object: ObjectRef::new("Pod", &p.metadata),
                action: Action::Delete,
                propagation: Some(Propagation::Background),
                message: format!("pod {why} {} ago", human(age(now, at))),
            });
        }
    }
    if selected(CleanupKind::VolumeSnapshot) {
        propose_snapshots(state, config, &mut out);
    }

    let needs_cm = selected(CleanupKind::ConfigMap);
    let needs_secret = selected(CleanupKind::Secret);
    let needs_pvc = selected(CleanupKind::PersistentVolumeClaim);
    if !(needs_cm || needs_secret || needs_pvc) {
        return out;
    }
    let reference_sources = [
        Resource::Pod,
        Resource::Deployment,
        Resource::ReplicaSet,
        Resource::StatefulSet,
        Resource::DaemonSet,
        Resource::Job,
        Resource::CronJob,
    ];
    let unknown: Vec<String> = reference_sources
        .iter()
        .filter(|r| !state.listed(**r))
        .map(|r| r.display_name())
        .collect();
    let mut refs = References::default();
    for p in &state.pods {
        if p.metadata
            .uid
            .as_deref()
            .is_some_and(|u| deleted_pods.contains(u))
        {
            continue;
        }
        // A pod of a Job deleted now goes with it (background propagation).
        if controller_owner(&p.metadata, "Job").is_some_and(|u| deleted_jobs.contains(u)) {
            continue;
        }
        refs.add_pod_spec(p.metadata.namespace.as_deref().unwrap_or(""), &p.spec);
    }
    let ns = |m: &ObjectMeta| m.namespace.clone().unwrap_or_default();
    for d in &state.deployments {
        if let Some(t) = d.spec.template.spec.as_ref() {
            refs.add_template(&ns(&d.metadata), t);
        }
    }
    for r in &state.replica_sets {
        if r.metadata
            .uid
            .as_deref()
            .is_some_and(|u| deleted_rs.contains(u))
        {
            continue;
        }
        if let Some(t) = r.spec.template.as_ref().and_then(|t| t.spec.as_ref()) {
            refs.add_template(&ns(&r.metadata), t);
        }
    }
    for s in &state.stateful_sets {
        if let Some(t) = s.spec.template.spec.as_ref() {
            refs.add_template(&ns(&s.metadata), t);
        }
    }
    for d in &state.daemon_sets {
        if let Some(t) = d.spec.template.spec.as_ref() {
            refs.add_template(&ns(&d.metadata), t);
        }
    }
    for j in &state.jobs {
        if j.metadata
            .uid
            .as_deref()
            .is_some_and(|u| deleted_jobs.contains(u))
        {
            continue;
        }
        if let Some(t) = j.spec.as_ref().and_then(|s| s.template.spec.as_ref()) {
            refs.add_template(&ns(&j.metadata), t);
        }
    }
    for c in &state.cron_jobs {
        if let Some(t) = c
            .spec
            .job_template
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
        {
            refs.add_template(&ns(&c.metadata), t);
        }
    }
    for sa in &state.service_accounts {
        refs.add_service_account(sa);
    }
    if !unknown.is_empty() {
        out.notes.push(format!(
            "ConfigMaps, Secrets and PVCs not proposed: references from {} are unknown (not listed)",
            unknown.join(", ")
        ));
        return out;
    }
    let eligible = |m: &ObjectMeta| !protected_ns(m) && !owned(m) && !helm_managed(m) && !kept(m);

    if needs_cm {
        let min = sd(config.config_map_min_age);
        for cm in &state.config_maps {
            let m = &cm.metadata;
            if !eligible(m)
                || m.name.as_deref() == Some("kube-root-ca.crt")
                || refs.config_maps.contains(&ns_name(m))
            {
                continue;
            }
            let Some(c) = created(m).filter(|c| age(now, *c) > min) else {
                continue;
            };
            out.proposals.push(Proposal {
                code: "unused_config_map".into(),
                object: ObjectRef::new("ConfigMap", m),
                action: Action::Delete,
                propagation: None,
                message: format!("referenced by nothing, created {} ago", human(age(now, c))),
            });
        }
    }
    if needs_secret {
        if !state.listed(Resource::ServiceAccount) {
            out.notes.push("Secrets not proposed: serviceaccounts were not listed, so their references are unknown".into());
        } else {
            let issued: HashSet<(String, String)> = state
                .certificates
                .iter()
                .filter_map(|c| {
                    let name = c.data.get("spec")?.get("secretName")?.as_str()?;
                    Some((
                        c.metadata.namespace.clone().unwrap_or_default(),
                        name.to_string(),
                    ))
                })
                .collect();
            let min = sd(config.secret_min_age);
            for s in &state.secrets {
                let m = &s.metadata;
                let ty = s.type_.as_deref().unwrap_or("Opaque");
                if matches!(
                    ty,
                    "kubernetes.io/service-account-token"
                        | "helm.sh/release.v1"
                        | "bootstrap.kubernetes.io/token"
                ) {
                    continue;
                }
                let key = ns_name(m);
                let cert_managed = m
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key("cert-manager.io/certificate-name"));
                if !eligible(m)
                    || cert_managed
                    || issued.contains(&key)
                    || refs.secrets.contains(&key)
                {
                    continue;
                }
                let Some(c) = created(m).filter(|c| age(now, *c) > min) else {
                    continue;
                };
                let delete = config.delete_unused_secrets && ty != "kubernetes.io/tls";
                out.proposals.push(Proposal {
                    code: "unused_secret".into(),
                    object: ObjectRef::new("Secret", m),
                    action: if delete { Action::Delete } else { Action::Report },
                    propagation: None,
                    message: format!("{ty} secret referenced by no pod, template or service account, created {} ago", human(age(now, c))),
                });
            }
        }
    }
    if needs_pvc {
        let min = sd(config.unused_pvc_min_age);
        for c in &state.pvcs {
            let m = &c.metadata;
            if !eligible(m) {
                continue;
            }
            let Some(t) = created(m).filter(|t| age(now, *t) > min) else {
                continue;
            };
            let phase = c
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("Pending");
            let (code, message) = if phase == "Pending" {
                (
                    "unbound_pvc",
                    format!("claim unbound for {}", human(age(now, t))),
                )
            } else if !refs.pvcs.contains(&ns_name(m)) {
                (
                    "unused_pvc",
                    format!(
                        "claim mounted by no pod or pod template, created {} ago",
                        human(age(now, t))
                    ),
                )
            } else {
                continue;
            };
            out.proposals.push(Proposal {
                code: code.into(),
                object: ObjectRef::new("PersistentVolumeClaim", m),
                action: Action::Report,
                propagation: None,
                message,
            });
        }
    }
    out
}

fn propose_jobs<'a>(
    state: &'a ClusterState,
    config: &CleanupConfig,
    now: Timestamp,
    out: &mut Proposals,
    deleted: &mut HashSet<&'a str>,
) {
    let ttl = sd(config.job_ttl);
    let cron_listed = state.listed(Resource::CronJob);
    // The Jobs each CronJob keeps, as its controller would.
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
    let mut protected: HashSet<&str> = HashSet::new();
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
        protected.extend(ok.chain(failed).filter_map(|j| j.metadata.uid.as_deref()));
    }
    for j in &state.jobs {
        let Some(done) = job_succeeded(j) else {
            continue;
        };
        if kept(&j.metadata) || age(now, done) <= ttl {
            continue;
        }
        if let Some(owner) = controller_owner(&j.metadata, "CronJob") {
            let uid = j.metadata.uid.as_deref().unwrap_or("");
            if !cron_listed || protected.contains(uid) || !limits.contains_key(owner) {
                // Kept by its CronJob's history limit, or the CronJob is unknown.
                continue;
            }
        }
        if let Some(uid) = j.metadata.uid.as_deref() {
            deleted.insert(uid);
        }
        out.proposals.push(Proposal {
            code: "completed_job".into(),
            object: ObjectRef::new("Job", &j.metadata),
            action: Action::Delete,
            propagation: Some(Propagation::Background),
            message: format!("completed {} ago", human(age(now, done))),
        });
    }
}

fn propose_replica_sets<'a>(
    state: &'a ClusterState,
    config: &CleanupConfig,
    out: &mut Proposals,
    deleted: &mut HashSet<&'a str>,
) {
    if !state.listed(Resource::Pod) {
        out.notes.push(
            "ReplicaSets not proposed: pods were not listed, so terminating pods are unknown"
                .into(),
        );
        return;
    }
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
    for (owner, mut sets) in owners {
        // Order by revision, not by creation time: a rollback gives an old ReplicaSet a new,
        // higher revision.
        sets.sort_by_key(|rs| std::cmp::Reverse(revision(rs)));
        let current = deployment_revision
            .get(owner)
            .copied()
            .or_else(|| sets.first().and_then(|rs| revision(rs)));
        let old: Vec<&ReplicaSet> = sets
            .into_iter()
            .filter(|rs| revision(rs).is_some() && revision(rs) != current)
            .filter(|rs| {
                rs.spec.replicas == Some(0) && rs.status.as_ref().map_or(0, |s| s.replicas) == 0
            })
            .collect();
        for rs in old.into_iter().skip(config.replica_sets_keep as usize) {
            let uid = rs.metadata.uid.as_deref().unwrap_or("");
            if kept(&rs.metadata) || pod_owners.contains(uid) {
                continue;
            }
            deleted.insert(uid);
            out.proposals.push(Proposal {
                code: "old_replica_set".into(),
                object: ObjectRef::new("ReplicaSet", &rs.metadata),
                action: Action::Delete,
                propagation: Some(Propagation::Background),
                message: format!(
                    "revision {} of its Deployment (current {}), beyond the newest {} old ones",
                    revision(rs).unwrap_or(0),
                    current.map_or("?".to_string(), |c| c.to_string()),
                    config.replica_sets_keep
                ),
            });
        }
    }
}

fn propose_snapshots(state: &ClusterState, config: &CleanupConfig, out: &mut Proposals) {
    type Dated<'a> = (Option<Timestamp>, &'a kube::api::DynamicObject);
    let mut by_pvc: HashMap<(String, &str), Vec<Dated<'_>>> = HashMap::new();
    for s in &state.volume_snapshots {
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
            .entry((s.metadata.namespace.clone().unwrap_or_default(), pvc))
            .or_default()
            .push((t, s));
    }
    let mut groups: Vec<_> = by_pvc.into_iter().collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    for ((_, pvc), mut snaps) in groups {
        snaps.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| b.1.metadata.name.cmp(&a.1.metadata.name))
        });
        for (_, s) in snaps.into_iter().skip(config.snapshots_keep as usize) {
            if kept(&s.metadata) {
                continue;
            }
            out.proposals.push(Proposal {
                code: "excess_volume_snapshot".into(),
                object: ObjectRef::new("VolumeSnapshot", &s.metadata),
                action: Action::Delete,
                propagation: None,
                message: format!(
                    "snapshot of {pvc} beyond the newest {}",
                    config.snapshots_keep
                ),
            });
        }
    }
}
