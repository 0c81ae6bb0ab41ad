//! Applying proposals on a live cluster.
//!
//! Right before each `delete` proposal is sent, it is re-checked on a fresh read: the
//! object's own list and every list its rule needs (the possible referrers) are listed
//! again, and the rule is run again on that read through the same gate (reference graph,
//! protected list, managing tool). Unless it proposes the same object (same uid) for
//! deletion again, nothing is sent ([`Outcome::Stopped`], naming the new referrer when
//! there is one). The deletion then carries the fresh read's uid and resourceVersion as
//! preconditions, so an object re-created or changed since is left alone (the API server
//! answers 409 Conflict). Every attempt, whatever its result, is appended to the audit log
//! as one JSON line and synced before the next deletion. `report` proposals are never
//! deleted.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Preconditions,
    PropagationPolicy,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::references::{ReferenceGraph, Skip, Target, Templates};
use super::{Action, CleanupConfig, CleanupKind, Propagation, Proposal, RULES};
use crate::checks::{ChecksConfig, ObjectRef};
use crate::cluster::{ClusterState, Resource, live};

/// The audit log cannot be written: nothing more is deleted.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot write audit log {path}")]
    Audit {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What happened to one proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The API server accepted the deletion.
    Deleted,
    /// Already gone.
    NotFound,
    /// The uid precondition failed: the name now belongs to another object (or the
    /// object changed since the re-check).
    UidChanged,
    /// The re-check right before the deletion found it in use, protected, or no longer
    /// proposed: nothing was sent.
    Stopped,
    /// Any other error (see the message).
    Failed,
    /// `certificates renew --apply`: the Certificate's `Issuing` condition was set.
    Renewed,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time: Timestamp,
    pub action: String,
    pub code: String,
    pub object: ObjectRef,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub propagation: Option<Propagation>,
    pub outcome: Outcome,
    pub message: String,
}

/// An append-only JSON-lines audit file.
pub struct AuditLog {
    path: PathBuf,
    file: File,
}

impl AuditLog {
    /// Opens (creating) `path` for appending.
    ///
    /// # Errors
    /// [`ApplyError::Audit`] when the file (or its directory) cannot be opened.
    pub fn open(path: &Path) -> Result<AuditLog, ApplyError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| ApplyError::Audit {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one record and syncs it to disk.
    ///
    /// # Errors
    /// [`ApplyError::Audit`].
    pub fn write(&mut self, r: &AuditRecord) -> Result<(), ApplyError> {
        let err = |source| ApplyError::Audit {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(r).map_err(|e| err(e.into()))?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(err)?;
        self.file.sync_data().map_err(err)
    }
}

fn api_resource(kind: &str) -> Option<ApiResource> {
    let k = kind.parse::<CleanupKind>().ok()?;
    let (group, version, kind, plural) = k.resource().gvkp();
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        plural,
    ))
}

/// What the re-check before each deletion reads with and judges by.
pub struct Recheck<'c> {
    /// Page size, timeouts and namespaces of the fresh lists.
    pub checks: &'c ChecksConfig,
    pub cleanup: &'c CleanupConfig,
    pub now: Timestamp,
}

/// The lists a fresh read for a proposal of `code` on `kind` takes.
fn recheck_resources(code: &str, kind: CleanupKind) -> Vec<Resource> {
    let mut r = vec![kind.resource()];
    if let Some(rule) = RULES.iter().find(|x| x.code == code) {
        for n in rule.needs {
            if !r.contains(n) {
                r.push(*n);
            }
        }
    }
    if kind == CleanupKind::ReplicaSet {
        r.push(Resource::Deployment);
    }
    r
}

/// The state of the object right now: its uid and resourceVersion, or why not to delete.
fn judge(
    fresh: &ClusterState,
    p: &Proposal,
    kind: CleanupKind,
    cfg: &Recheck,
) -> Result<(String, Option<String>), (Outcome, String)> {
    let same = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.name.as_deref() == Some(p.object.name.as_str()) && m.namespace == p.object.namespace
    };
    let meta = fresh_meta(fresh, kind, &same)
        .ok_or((Outcome::NotFound, "already gone (fresh read)".to_string()))?;
    if meta.uid != p.object.uid {
        return Err((
            Outcome::UidChanged,
            format!(
                "not deleted: the name now belongs to uid {}",
                meta.uid.as_deref().unwrap_or("?")
            ),
        ));
    }
    let config = CleanupConfig {
        kinds: vec![kind],
        ..cfg.cleanup.clone()
    };
    let again = super::propose_with_notes(fresh, &config, cfg.now);
    let still = again
        .proposals
        .iter()
        .any(|q| q.code == p.code && q.object.uid == p.object.uid && q.action == Action::Delete);
    if still {
        return Ok((
            meta.uid.clone().unwrap_or_default(),
            meta.resource_version.clone(),
        ));
    }
    let target = match kind {
        CleanupKind::ConfigMap => Some(Target::ConfigMap),
        CleanupKind::Secret => Some(Target::Secret),
        CleanupKind::PersistentVolumeClaim => Some(Target::Pvc),
        _ => None,
    };
    let templates = Templates::collect(fresh, &Skip::default());
    let graph = ReferenceGraph::build(fresh, &templates, &Skip::default());
    let why = if let Some(r) = target.and_then(|t| graph.used_by(t, meta)) {
        format!("not deleted: in use since the proposal, by {r}")
    } else if let Some(k) = again.kept.iter().find(|k| k.object.uid == p.object.uid) {
        format!("not deleted: protected by {}", k.rule)
    } else if let Some(q) = again
        .proposals
        .iter()
        .find(|q| q.object.uid == p.object.uid)
    {
        format!("not deleted: now only reported: {}", q.message)
    } else if !again.notes.is_empty() {
        format!(
            "not deleted: the fresh read is incomplete: {}",
            again.notes.join("; ")
        )
    } else {
        "not deleted: its rule no longer proposes it on a fresh read".to_string()
    };
    Err((Outcome::Stopped, why))
}

fn fresh_meta<'s>(
    s: &'s ClusterState,
    kind: CleanupKind,
    same: &dyn Fn(&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool,
) -> Option<&'s k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta> {
    use k8s_openapi::Metadata;
    fn find<'s, T: Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>>(
        v: &'s [T],
        same: &dyn Fn(&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool,
    ) -> Option<&'s k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta> {
        v.iter().map(Metadata::metadata).find(|m| same(m))
    }
    match kind {
        CleanupKind::Job => find(&s.jobs, same),
        CleanupKind::ReplicaSet => find(&s.replica_sets, same),
        CleanupKind::Pod => find(&s.pods, same),
        CleanupKind::ConfigMap => find(&s.config_maps, same),
        CleanupKind::Secret => find(&s.secrets, same),
        CleanupKind::PersistentVolumeClaim => find(&s.pvcs, same),
        CleanupKind::VolumeSnapshot => s
            .volume_snapshots
            .iter()
            .map(|o| &o.metadata)
            .find(|m| same(m)),
    }
}

/// Re-checks one proposal on a fresh read, then deletes it with uid and resourceVersion
/// preconditions.
pub(crate) async fn delete_one(
    client: &Client,
    p: &Proposal,
    recheck: &Recheck<'_>,
) -> (Outcome, String) {
    let (Some(ar), Ok(kind)) = (
        api_resource(&p.object.kind),
        p.object.kind.parse::<CleanupKind>(),
    ) else {
        return (
            Outcome::Failed,
            format!("kind {} cannot be deleted by caretaker", p.object.kind),
        );
    };
    if p.object.uid.is_none() {
        // Without a uid the deletion could hit a re-created object: refuse.
        return (Outcome::Failed, "no uid known: not deleted".into());
    }
    let fresh =
        match live::load_resources(client, recheck.checks, &recheck_resources(&p.code, kind)).await
        {
            Ok(s) => s,
            Err(e) => {
                return (
                    Outcome::Failed,
                    format!("not deleted: the re-check could not read the cluster: {e}"),
                );
            }
        };
    let (uid, resource_version) = match judge(&fresh, p, kind, recheck) {
        Ok(x) => x,
        Err(x) => return x,
    };
    let api: Api<DynamicObject> = match &p.object.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version,
        }),
        propagation_policy: p.propagation.map(|x| match x {
            Propagation::Background => PropagationPolicy::Background,
            Propagation::Foreground => PropagationPolicy::Foreground,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&p.object.name, &dp).await {
        Ok(_) => (Outcome::Deleted, "deleted".into()),
        Err(kube::Error::Api(s)) if s.code == 404 => (Outcome::NotFound, "already gone".into()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            (Outcome::UidChanged, format!("not deleted: {}", s.message))
        }
        Err(e) => (Outcome::Failed, e.to_string()),
    }
}

/// Applies the `delete` proposals in order, each re-checked right before, auditing each
/// attempt.
///
/// # Errors
/// [`ApplyError::Audit`] when a record cannot be written; deleting stops there.
pub async fn apply(
    client: &Client,
    proposals: &[Proposal],
    audit: &mut AuditLog,
    recheck: &Recheck<'_>,
) -> Result<Vec<(Proposal, Outcome)>, ApplyError> {
    let mut done = Vec::new();
    for p in proposals.iter().filter(|p| p.action == Action::Delete) {
        let (outcome, message) = delete_one(client, p, recheck).await;
        match outcome {
            Outcome::Deleted => info!(object = %p.object, code = %p.code, "deleted"),
            _ => warn!(object = %p.object, ?outcome, message = %message, "not deleted"),
        }
        audit.write(&AuditRecord {
            time: Timestamp::now(),
            action: "delete".into(),
            code: p.code.clone(),
            object: p.object.clone(),
            propagation: p.propagation,
            outcome,
            message,
        })?;
        done.push((p.clone(), outcome));
    }
    Ok(done)
}
