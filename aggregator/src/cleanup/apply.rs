//! Applying proposals on a live cluster.
//!
//! Each `delete` proposal is deleted with a uid precondition (`preconditions.uid`), so an
//! object that was deleted and re-created under the same name since the proposal was made
//! is left alone (the API server answers 409 Conflict). Every attempt, whatever its result,
//! is appended to the audit log as one JSON line and synced before the next deletion.
//! `report` proposals are never deleted.

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

use super::{Action, CleanupKind, Propagation, Proposal};
use crate::checks::ObjectRef;

/// The audit log cannot be written: nothing more is deleted.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot write audit log {path}: {source}")]
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
    /// The uid precondition failed: the name now belongs to another object.
    UidChanged,
    /// Any other error (see the message).
    Failed,
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

/// Deletes one object with its uid as precondition.
pub async fn delete_one(client: &Client, p: &Proposal) -> (Outcome, String) {
    let Some(ar) = api_resource(&p.object.kind) else {
        return (
            Outcome::Failed,
            format!("kind {} cannot be deleted by caretaker", p.object.kind),
        );
    };
    let Some(uid) = p.object.uid.clone() else {
        // Without a uid the deletion could hit a re-created object: refuse.
        return (Outcome::Failed, "no uid known: not deleted".into());
    };
    let api: Api<DynamicObject> = match &p.object.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
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

/// Applies the `delete` proposals in order, auditing each attempt.
///
/// # Errors
/// [`ApplyError::Audit`] when a record cannot be written; deleting stops there.
pub async fn apply(
    client: &Client,
    proposals: &[Proposal],
    audit: &mut AuditLog,
) -> Result<Vec<(Proposal, Outcome)>, ApplyError> {
    let mut done = Vec::new();
    for p in proposals.iter().filter(|p| p.action == Action::Delete) {
        let (outcome, message) = delete_one(client, p).await;
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
