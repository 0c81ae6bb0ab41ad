//! Certificate renewal, as `cmctl renew` does it: cert-manager re-issues a Certificate
//! whose `Issuing` condition turns True, so a manual renewal is that condition, added
//! through the status subresource.
//!
//! `cmctl renew` (cert-manager/cmctl `pkg/renew`) reads the Certificate, sets the condition
//! with cert-manager's `SetCertificateCondition` (type `Issuing`, status `True`, reason
//! `ManuallyTriggered`, message "Certificate re-issuance manually triggered",
//! `lastTransitionTime` now, `observedGeneration` the object's generation; an existing
//! `Issuing` condition is replaced in place, keeping its transition time only when its
//! status was already True) and writes the status back. caretaker sends the same
//! conditions list as a JSON merge patch to `.../certificates/NAME/status`, carrying the
//! `resourceVersion` it read, so a Certificate changed in between is left alone (409
//! Conflict) exactly as cmctl's `UpdateStatus` would be, and the RBAC it needs is `patch` on
//! `certificates/status` only. Where caretaker differs on purpose: it refuses a Certificate
//! that is already issuing (cmctl would rewrite the condition; an issuance in progress needs
//! no second trigger), applies only with `--apply` (a dry run otherwise), and only inside
//! the maintenance window unless `--force`.
//!
//! The report proposes renewals ([`proposals`]): Certificates whose `status.renewalTime`
//! has passed and that are not issuing, so cert-manager has not renewed them; the action is
//! the renew command. Nothing is changed by a proposal.
//!
//! # Layout
//! - this file: the target, the patch, the live renewal ([`renew`]) and the proposals.
//! - [`cli`]: `caretaker-aggregator certificates renew`.

pub mod cli;

use std::str::FromStr;

use jiff::{Timestamp, Unit};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde::Serialize;
use serde_json::{Value, json};

use crate::checks::ObjectRef;
use crate::checks::time::parse;
use crate::cleanup::{Action, Proposal};
use crate::cluster::{ClusterState, Resource};

/// The condition's reason, as cmctl sets it.
pub(crate) const REASON: &str = "ManuallyTriggered";
/// The condition's message, as cmctl sets it.
pub(crate) const MESSAGE: &str = "Certificate re-issuance manually triggered";
/// The code of renewal proposals in the report.
pub(crate) const PROPOSAL_CODE: &str = "certificate_renewal_due";
/// The resource and subresource the renewal patches (the RBAC rule it needs: `patch`).
pub const STATUS_SUBRESOURCE: (Resource, &str) = (Resource::Certificate, "status");

/// A Certificate named on the command line as `NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub name: String,
}

/// A Certificate name that is not `NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not NAMESPACE/NAME (a Certificate is namespaced, e.g. web/example-tls)")]
pub struct TargetError(pub String);

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, TargetError> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Target {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(TargetError(s.to_string())),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why a renewal was not made.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("Certificate {target} not found")]
    NotFound { target: Target },
    #[error("cannot read Certificate {target}")]
    Read {
        target: Target,
        #[source]
        source: kube::Error,
    },
    /// cert-manager is issuing it now: a second trigger would change nothing.
    #[error(
        "Certificate {target} is already being issued (Issuing=True since {since}: {reason}); nothing changed"
    )]
    AlreadyIssuing {
        target: Target,
        since: String,
        reason: String,
    },
    #[error("cannot patch the status of Certificate {target}")]
    Patch {
        target: Target,
        #[source]
        source: kube::Error,
    },
}

/// The API resource of cert-manager Certificates.
pub(crate) fn api_resource() -> ApiResource {
    let (group, version, kind, plural) = Resource::Certificate.gvkp();
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The condition of `kind` in a Certificate's status, if any.
fn condition<'a>(cert: &'a Value, kind: &str) -> Option<&'a Value> {
    cert.get("status")?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

fn field<'a>(c: &'a Value, k: &str) -> &'a str {
    c.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Whether the Certificate's `Issuing` condition is True.
pub(crate) fn is_issuing(cert: &Value) -> bool {
    condition(cert, "Issuing").is_some_and(|c| field(c, "status") == "True")
}

/// The status conditions after cert-manager's `SetCertificateCondition(Issuing, True,
/// ManuallyTriggered, ...)` on `cert` (the object's JSON) with `generation`, as of `now`
/// (second precision, as `metav1.Time` writes it).
pub(crate) fn conditions_with_issuing(
    cert: &Value,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Value> {
    let now = now.round(Unit::Second).unwrap_or(now);
    let mut new = json!({
        "type": "Issuing",
        "status": "True",
        "reason": REASON,
        "message": MESSAGE,
        "lastTransitionTime": now.to_string(),
    });
    if let Some(g) = generation {
        new["observedGeneration"] = json!(g);
    }
    let mut conditions: Vec<Value> = cert
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match conditions
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Issuing"))
    {
        Some(old) => {
            if field(old, "status") == "True"
                && let Some(t) = old.get("lastTransitionTime")
            {
                new["lastTransitionTime"] = t.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
    conditions
}

/// The JSON merge patch for the status subresource: the whole conditions list (a merge
/// patch replaces lists) and the resourceVersion read, so the write is conditional on it.
pub(crate) fn status_patch(cert: &DynamicObject, now: Timestamp) -> Value {
    let conditions = conditions_with_issuing(&cert.data, cert.metadata.generation, now);
    json!({
        "metadata": {"resourceVersion": cert.metadata.resource_version},
        "status": {"conditions": conditions},
    })
}

/// What [`renew`] did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Renewal {
    pub certificate: ObjectRef,
    /// False in a dry run: nothing was sent.
    pub applied: bool,
    /// The status patch sent (or that would be sent).
    pub patch: Value,
    /// The Certificate's `status.renewalTime` and `status.notAfter` as read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Timestamp>,
}

impl Renewal {
    /// One line for the terminal and the audit log.
    pub(crate) fn sentence(&self) -> String {
        let what = match (&self.certificate.namespace, self.applied) {
            (Some(ns), true) => format!(
                "renewed Certificate {ns}/{}: Issuing condition set (reason {REASON}); cert-manager re-issues it",
                self.certificate.name
            ),
            (Some(ns), false) => format!(
                "would renew Certificate {ns}/{}: set its Issuing condition (reason {REASON}) through the status subresource; add --apply to do it",
                self.certificate.name
            ),
            (None, _) => format!("Certificate {}", self.certificate.name),
        };
        let times = [
            ("renewalTime", self.renewal_time),
            ("notAfter", self.not_after),
        ]
        .into_iter()
        .filter_map(|(k, t)| t.map(|t| format!("{k} {t}")))
        .collect::<Vec<_>>();
        if times.is_empty() {
            what
        } else {
            format!("{what} ({})", times.join(", "))
        }
    }
}

/// Reads the Certificate `target` and, unless it is already issuing, sets its `Issuing`
/// condition through the status subresource when `apply` (else only says what it would
/// send). The maintenance window is the caller's to check.
///
/// # Errors
/// See [`RenewError`].
pub(crate) async fn renew(
    client: &kube::Client,
    target: &Target,
    apply: bool,
    now: Timestamp,
) -> Result<Renewal, RenewError> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &target.namespace, &api_resource());
    let cert = match api.get_opt(&target.name).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(RenewError::NotFound {
                target: target.clone(),
            });
        }
        Err(source) => {
            return Err(RenewError::Read {
                target: target.clone(),
                source,
            });
        }
    };
    if let Some(c) = condition(&cert.data, "Issuing").filter(|c| field(c, "status") == "True") {
        return Err(RenewError::AlreadyIssuing {
            target: target.clone(),
            since: field(c, "lastTransitionTime").to_string(),
            reason: format!("{} {}", field(c, "reason"), field(c, "message"))
                .trim()
                .to_string(),
        });
    }
    let patch = status_patch(&cert, now);
    let status = cert.data.get("status");
    let renewal = Renewal {
        certificate: ObjectRef::new("Certificate", &cert.metadata),
        applied: apply,
        renewal_time: parse(status.and_then(|s| s.get("renewalTime"))),
        not_after: parse(status.and_then(|s| s.get("notAfter"))),
        patch,
    };
    if apply {
        api.patch_status(
            &target.name,
            &PatchParams::default(),
            &Patch::Merge(&renewal.patch),
        )
        .await
        .map_err(|source| RenewError::Patch {
            target: target.clone(),
            source,
        })?;
    }
    Ok(renewal)
}

/// Renewal proposals: every Certificate whose `status.renewalTime` is at or before `now`
/// and whose `Issuing` condition is not True, that is one cert-manager has not renewed (it
/// moves `renewalTime` forward when it renews, and sets `Issuing` while it tries). The
/// action is the renew command; applying cleanup never touches them.
pub(crate) fn proposals(state: &ClusterState, now: Timestamp) -> Vec<Proposal> {
    let mut out: Vec<Proposal> = state
        .certificates
        .iter()
        .filter_map(|c| {
            let status = c.data.get("status");
            let due = parse(status.and_then(|s| s.get("renewalTime")))?;
            if due > now || is_issuing(&c.data) {
                return None;
            }
            let ns = c.metadata.namespace.as_deref()?;
            let name = c.metadata.name.as_deref()?;
            let not_after = parse(status.and_then(|s| s.get("notAfter")))
                .map(|t| format!(", notAfter {t}"))
                .unwrap_or_default();
            let last = condition(&c.data, "Issuing")
                .map(|i| {
                    format!(
                        "; last issuance: {} {}",
                        field(i, "reason"),
                        field(i, "message")
                    )
                    .trim_end()
                    .to_string()
                })
                .unwrap_or_default();
            Some(Proposal {
                code: PROPOSAL_CODE.into(),
                object: ObjectRef::new("Certificate", &c.metadata),
                action: Action::Renew,
                propagation: None,
                message: format!(
                    "renewal due since {due}{not_after} and cert-manager has not renewed it{last}; run `{}`",
                    command(ns, name)
                ),
                times: [("renewal_time".to_string(), due)].into(),
                labels: Default::default(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.object.cmp(&b.object));
    out
}

/// The command that renews `ns/name` (applied, inside the maintenance window).
pub(crate) fn command(ns: &str, name: &str) -> String {
    format!("caretaker-aggregator certificates renew {ns}/{name} --apply")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(status: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "web-tls", "namespace": "web", "uid": "u1", "resourceVersion": "42", "generation": 3},
            "spec": {"secretName": "web-tls", "dnsNames": ["web.example.com"], "issuerRef": {"name": "le", "kind": "ClusterIssuer"}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn target_is_namespace_slash_name() {
        assert_eq!(
            "web/web-tls".parse::<Target>().unwrap(),
            Target {
                namespace: "web".into(),
                name: "web-tls".into()
            }
        );
        for bad in ["web-tls", "/x", "x/", "a/b/c"] {
            assert_eq!(
                bad.parse::<Target>(),
                Err(TargetError(bad.to_string())),
                "{bad}"
            );
        }
        assert_eq!(
            "web-tls".parse::<Target>().unwrap_err().to_string(),
            "\"web-tls\" is not NAMESPACE/NAME (a Certificate is namespaced, e.g. web/example-tls)"
        );
    }

    #[test]
    fn issuing_condition_is_added_beside_the_others() {
        let c = cert(json!({"conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 3}
        ]}));
        let now: Timestamp = "2026-12-05T05:00:00.7Z".parse().unwrap();
        assert_eq!(
            status_patch(&c, now),
            json!({"metadata": {"resourceVersion": "42"}, "status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "Ready", "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 3},
                {"type": "Issuing", "status": "True", "reason": "ManuallyTriggered", "message": "Certificate re-issuance manually triggered",
                 "lastTransitionTime": "2026-12-05T05:00:01Z", "observedGeneration": 3}
            ]}})
        );
    }

    #[test]
    fn a_false_issuing_condition_is_replaced_in_place_with_a_new_transition_time() {
        let c = cert(json!({"conditions": [
            {"type": "Issuing", "status": "False", "reason": "Failed", "message": "order failed", "lastTransitionTime": "2026-11-01T00:00:00Z"},
            {"type": "Ready", "status": "False", "reason": "Expired", "message": "x", "lastTransitionTime": "2026-11-02T00:00:00Z"}
        ]}));
        let got =
            conditions_with_issuing(&c.data, Some(3), "2026-12-05T05:00:00Z".parse().unwrap());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["type"], "Issuing");
        assert_eq!(got[0]["status"], "True");
        assert_eq!(got[0]["reason"], "ManuallyTriggered");
        assert_eq!(got[0]["lastTransitionTime"], "2026-12-05T05:00:00Z");
        assert_eq!(got[1]["reason"], "Expired");
        // cert-manager's rule: same status keeps the old transition time.
        let c = cert(json!({"conditions": [
            {"type": "Issuing", "status": "True", "reason": "Renewing", "message": "m", "lastTransitionTime": "2026-11-01T00:00:00Z"}
        ]}));
        let got = conditions_with_issuing(&c.data, None, "2026-12-05T05:00:00Z".parse().unwrap());
        assert_eq!(got[0]["lastTransitionTime"], "2026-11-01T00:00:00Z");
        assert!(got[0].get("observedGeneration").is_none());
    }

    #[test]
    fn proposals_list_certificates_past_their_renewal_time_that_are_not_issuing() {
        let mut state = ClusterState::default();
        let named = |name: &str, status: Value| {
            let mut c = cert(status);
            c.metadata.name = Some(name.into());
            c
        };
        state.certificates = vec![
            named(
                "due",
                json!({"renewalTime": "2026-12-01T00:00:00Z", "notAfter": "2026-12-31T00:00:00Z",
                       "conditions": [{"type": "Issuing", "status": "False", "reason": "Failed", "message": "ACME order failed"}]}),
            ),
            named(
                "issuing",
                json!({"renewalTime": "2026-12-01T00:00:00Z", "conditions": [{"type": "Issuing", "status": "True", "reason": "Renewing"}]}),
            ),
            named("later", json!({"renewalTime": "2026-12-06T00:00:00Z"})),
            named("never-issued", json!({})),
            named(
                "exactly-now",
                json!({"renewalTime": "2026-12-05T00:00:00Z"}),
            ),
        ];
        let p = proposals(&state, "2026-12-05T00:00:00Z".parse().unwrap());
        let names: Vec<&str> = p.iter().map(|p| p.object.name.as_str()).collect();
        assert_eq!(names, vec!["due", "exactly-now"]);
        assert_eq!(p[0].code, "certificate_renewal_due");
        assert_eq!(p[0].action, Action::Renew);
        assert_eq!(
            p[0].message,
            "renewal due since 2026-12-01T00:00:00Z, notAfter 2026-12-31T00:00:00Z and cert-manager has not renewed it; \
             last issuance: Failed ACME order failed; run `caretaker-aggregator certificates renew web/due --apply`"
        );
    }
}
