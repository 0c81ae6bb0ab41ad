//! Certificate expiry: cert-manager Certificates by `status.notAfter` and every
//! `kubernetes.io/tls` Secret by parsing the certificates in `tls.crt`.
//!
//! A Certificate is judged by `status.notAfter`, never by its Ready condition: Ready stays
//! True until cert-manager next reconciles, so an expired certificate can look Ready. A TLS
//! Secret is judged by the earliest `notAfter` of the certificates in its bundle (an expired
//! intermediate breaks the chain as surely as an expired leaf). A Secret that a listed
//! Certificate issues (`spec.secretName`) is not reported again.
//!
//! cert-manager renews a Certificate at `status.renewalTime`. When that moment passed more
//! than [`RENEWAL_GRACE`] ago and the certificate is still the old one, cert-manager is
//! failing to renew it: that is the problem to report (`certificate_renewal_overdue`, at
//! least a warning, critical or expired as the expiry says), with the reason from the
//! Certificate's `Issuing` and `Ready` conditions, rather than only "expires in 5 days".
//!
//! The message of a Certificate's finding ends with its latest CertificateRequest's failure
//! when it has one (see [`latest_requests`] and [`request_failure`]): a denied, invalid,
//! failed or pending request is usually why cert-manager is not renewing.
//!
//! Messages carry absolute times (`notAfter`, `renewalTime`), never "expires in 5 days",
//! so they change only when the certificate does; the same moments are the finding's
//! `times` (`not_after`, `renewal_time`).
//!
//! Codes: `certificate_expired` (critical), `certificate_expiring` (critical within
//! `critical_days`, warning within `warning_days`), `certificate_renewal_overdue` (see
//! above), `certificate_not_issued` (warning: a
//! Certificate with no `notAfter` yet), `tls_secret_invalid` (warning: no certificate could
//! be parsed from `tls.crt`).

use std::collections::{HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::api::DynamicObject;
use x509_parser::pem::Pem;

use super::time::parse;

/// How long after `status.renewalTime` a renewal may take before it is overdue: an issuance
/// normally takes seconds to minutes (an ACME challenge a few minutes).
pub(crate) const RENEWAL_GRACE: SignedDuration = SignedDuration::from_hours(1);
use super::{
    CheckResult, ChecksConfig, Finding, ObjectRef, Severity, all_not_applicable, coverage_findings,
};
use crate::cluster::{ClusterState, Resource};

/// Why no expiry could be read from a PEM bundle (the `tls_secret_invalid` finding's
/// message, after "tls.crt unreadable: ").
#[derive(Debug, thiserror::Error)]
pub(crate) enum BundleError {
    #[error("no CERTIFICATE block in tls.crt")]
    NoCertificate,
    /// Every block that could have been a certificate failed, each for its own reason.
    #[error("{}", join(.0))]
    Unreadable(Vec<BlockError>),
}

/// One PEM block that is not a certificate. The message carries the parser's reason: it
/// ends up in a finding, which shows no chain of causes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BlockError {
    #[error("bad PEM: {0}")]
    Pem(x509_parser::error::PEMError),
    #[error("bad certificate: {0}")]
    Certificate(x509_parser::nom::Err<x509_parser::error::X509Error>),
    #[error("bad certificate: notAfter {0} is outside the years -9999 to 9999")]
    NotAfter(i64),
}

fn join(errors: &[BlockError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The earliest expiry in a PEM bundle and the subject of that certificate.
///
/// # Errors
/// [`BundleError`] when the bundle holds no parseable certificate.
pub(crate) fn earliest_not_after(pem_bundle: &[u8]) -> Result<(Timestamp, String), BundleError> {
    let mut best: Option<(Timestamp, String)> = None;
    let mut errors = Vec::new();
    for pem in Pem::iter_from_buffer(pem_bundle) {
        let pem = match pem {
            Ok(p) => p,
            Err(e) => {
                errors.push(BlockError::Pem(e));
                break;
            }
        };
        if pem.label != "CERTIFICATE" {
            continue;
        }
        match pem.parse_x509() {
            Ok(cert) => {
                let seconds = cert.validity().not_after.timestamp();
                let Ok(t) = Timestamp::from_second(seconds) else {
                    errors.push(BlockError::NotAfter(seconds));
                    continue;
                };
                if best.as_ref().is_none_or(|(b, _)| t < *b) {
                    best = Some((t, cert.subject().to_string()));
                }
            }
            Err(e) => errors.push(BlockError::Certificate(e)),
        }
    }
    match best {
        Some(b) => Ok(b),
        None if errors.is_empty() => Err(BundleError::NoCertificate),
        None => Err(BundleError::Unreadable(errors)),
    }
}

/// The expiry finding, if any, carrying `not_after` as its moment (for the report's
/// certificate timeline) and as its `not_after` time.
fn expiry_finding(
    cfg: &ChecksConfig,
    now: Timestamp,
    not_after: Timestamp,
    object: ObjectRef,
    what: &str,
) -> Option<Finding> {
    let left = not_after.duration_since(now);
    let day = SignedDuration::from_hours(24);
    let c = &cfg.certificates;
    // Absolute times and thresholds only: the message stays the same from run to run.
    let (code, severity, message) = if left <= SignedDuration::ZERO {
        (
            "certificate_expired",
            Severity::Critical,
            format!("{what} expired at {not_after} (notAfter)"),
        )
    } else if left <= day * c.critical_days as i32 {
        (
            "certificate_expiring",
            Severity::Critical,
            format!(
                "{what} expires at {not_after} (notAfter), within the {}-day critical threshold",
                c.critical_days
            ),
        )
    } else if left <= day * c.warning_days as i32 {
        (
            "certificate_expiring",
            Severity::Warning,
            format!(
                "{what} expires at {not_after} (notAfter), within the {}-day warning threshold",
                c.warning_days
            ),
        )
    } else {
        return None;
    };
    Some(
        Finding::new(code, severity, object, message)
            .with_at(Some(not_after))
            .with_time("not_after", Some(not_after)),
    )
}

/// Every cert-manager Certificate's `status.notAfter` and `status.renewalTime` (for
/// `/metrics`).
pub fn times(state: &ClusterState) -> Vec<crate::metrics::CertificateTimes> {
    state
        .certificates
        .iter()
        .map(|c| {
            let status = c.data.get("status");
            crate::metrics::CertificateTimes {
                namespace: c.metadata.namespace.clone().unwrap_or_default(),
                name: c.metadata.name.clone().unwrap_or_default(),
                not_after: parse(status.and_then(|s| s.get("notAfter"))),
                renewal: parse(status.and_then(|s| s.get("renewalTime"))),
            }
        })
        .collect()
}

/// Annotation cert-manager puts on a CertificateRequest: the Certificate it is for.
pub(crate) const CERTIFICATE_NAME_ANNOTATION: &str = "cert-manager.io/certificate-name";
/// Annotation cert-manager puts on a CertificateRequest: the Certificate revision it issues.
pub(crate) const CERTIFICATE_REVISION_ANNOTATION: &str = "cert-manager.io/certificate-revision";

/// The Certificate a CertificateRequest belongs to: its controller ownerReference of kind
/// Certificate, else its `cert-manager.io/certificate-name` annotation.
fn request_certificate(cr: &DynamicObject) -> Option<&str> {
    cr.metadata
        .owner_references
        .as_deref()
        .and_then(|os| os.iter().find(|o| o.kind == "Certificate"))
        .map(|o| o.name.as_str())
        .or_else(|| {
            cr.metadata
                .annotations
                .as_ref()?
                .get(CERTIFICATE_NAME_ANNOTATION)
                .map(String::as_str)
        })
}

/// Each Certificate's latest CertificateRequest, by (namespace, Certificate name): the
/// highest `cert-manager.io/certificate-revision`, else the newest `creationTimestamp`.
pub(crate) fn latest_requests(state: &ClusterState) -> HashMap<(&str, &str), &DynamicObject> {
    let rank = |cr: &DynamicObject| {
        let revision = cr
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CERTIFICATE_REVISION_ANNOTATION))
            .and_then(|r| r.trim().parse::<u64>().ok());
        let created = cr.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (revision, created)
    };
    let mut latest: HashMap<(&str, &str), &DynamicObject> = HashMap::new();
    for cr in &state.certificate_requests {
        let Some(cert) = request_certificate(cr) else {
            continue;
        };
        let key = (cr.metadata.namespace.as_deref().unwrap_or(""), cert);
        match latest.get(&key) {
            Some(have) if rank(have) >= rank(cr) => {}
            _ => {
                latest.insert(key, cr);
            }
        }
    }
    latest
}

/// Why a CertificateRequest failed or waits, from its conditions (cert-manager's
/// `Denied=True`, then `InvalidRequest=True`, then `Ready=False` with reason Failed,
/// Pending or Denied), e.g. `Ready False: Failed (order is in "invalid" state)`. `None`
/// when it did not fail.
pub(crate) fn request_failure(cr: &DynamicObject) -> Option<String> {
    let conditions = cr.data.get("status")?.get("conditions")?.as_array()?;
    let find = |kind: &str, status: &str| {
        conditions.iter().find(|c| {
            c.get("type").and_then(|t| t.as_str()) == Some(kind)
                && c.get("status").and_then(|s| s.as_str()) == Some(status)
        })
    };
    let describe = |c: &serde_json::Value| {
        let field = |k: &str| c.get(k).and_then(|v| v.as_str()).filter(|v| !v.is_empty());
        format!(
            "{} {}: {}{}",
            field("type").unwrap_or_default(),
            field("status").unwrap_or_default(),
            field("reason").unwrap_or("no reason"),
            field("message")
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        )
    };
    if let Some(c) = find("Denied", "True").or_else(|| find("InvalidRequest", "True")) {
        return Some(describe(c));
    }
    find("Ready", "False")
        .filter(|c| {
            matches!(
                c.get("reason").and_then(|r| r.as_str()),
                Some("Failed" | "Pending" | "Denied")
            )
        })
        .map(describe)
}

/// `; latest CertificateRequest NAME (revision N): WHY` when the Certificate's latest
/// request failed; empty otherwise.
fn request_suffix(latest: &HashMap<(&str, &str), &DynamicObject>, ns: &str, name: &str) -> String {
    let Some(cr) = latest.get(&(ns, name)) else {
        return String::new();
    };
    let Some(why) = request_failure(cr) else {
        return String::new();
    };
    let revision = cr
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CERTIFICATE_REVISION_ANNOTATION))
        .map(|r| format!(" (revision {r})"))
        .unwrap_or_default();
    format!(
        "; latest CertificateRequest {}{revision}: {why}",
        cr.metadata.name.as_deref().unwrap_or_default()
    )
}

fn is_tls(s: &Secret) -> bool {
    s.type_.as_deref() == Some("kubernetes.io/tls")
}

/// Runs the certificates check.
pub fn check(state: &ClusterState, config: &ChecksConfig, now: Timestamp) -> CheckResult {
    let inputs = [Resource::Certificate, Resource::Secret];
    if let Some(reason) = all_not_applicable(state, &inputs) {
        return CheckResult::not_applicable("certificates", reason);
    }
    // Without CertificateRequests the messages lack the failure detail: say so.
    let mut findings = coverage_findings(
        state,
        &[
            Resource::Certificate,
            Resource::Secret,
            Resource::CertificateRequest,
        ],
    );
    let mut issued_secrets: HashSet<(&str, &str)> = HashSet::new();
    let requests = latest_requests(state);
    for c in &state.certificates {
        let object = ObjectRef::new("Certificate", &c.metadata);
        let ns = c.metadata.namespace.as_deref().unwrap_or("");
        let request = request_suffix(&requests, ns, &object.name);
        let status = c.data.get("status");
        let not_after = parse(status.and_then(|s| s.get("notAfter")));
        let secret_name = c
            .data
            .get("spec")
            .and_then(|s| s.get("secretName"))
            .and_then(|s| s.as_str());
        let condition = |kind: &str| {
            status
                .and_then(|s| s.get("conditions"))
                .and_then(|c| c.as_array())
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c.get("type").and_then(|t| t.as_str()) == Some(kind))
                })
        };
        let renewal = parse(status.and_then(|s| s.get("renewalTime")));
        match not_after {
            Some(t) => {
                if let Some(name) = secret_name {
                    issued_secrets.insert((ns, name));
                }
                let ready = condition("Ready")
                    .and_then(|c| c.get("status"))
                    .and_then(|s| s.as_str())
                    .map(|s| format!(" (Ready condition: {s})"))
                    .unwrap_or_default();
                let what = format!("certificate{ready}");
                // An expired certificate is reported as expired (the renewal reason is
                // still given); renewal overdue is the verdict while it is still valid.
                match renewal.filter(|r| now.duration_since(*r) > RENEWAL_GRACE && *r < t) {
                    Some(r) => {
                        let expiry = expiry_finding(config, now, t, object.clone(), &what);
                        let severity = expiry
                            .as_ref()
                            .map_or(Severity::Warning, |f| f.severity.max(Severity::Warning));
                        let expires = expiry
                            .map(|f| f.message)
                            .unwrap_or_else(|| format!("{what} notAfter {t}"));
                        let why: Vec<String> = ["Issuing", "Ready"]
                            .into_iter()
                            .filter_map(|kind| {
                                let c = condition(kind)?;
                                let field = |k: &str| c.get(k).and_then(|v| v.as_str());
                                (field("status") != Some("True") || kind == "Issuing").then(|| {
                                    format!(
                                        "{kind} {}: {}{}",
                                        field("status").unwrap_or("Unknown"),
                                        field("reason").unwrap_or("no reason"),
                                        field("message")
                                            .map(|m| format!(" ({m})"))
                                            .unwrap_or_default()
                                    )
                                })
                            })
                            .collect();
                        let why = if why.is_empty() {
                            String::new()
                        } else {
                            format!("; {}", why.join("; "))
                        };
                        let code = if t <= now {
                            "certificate_expired"
                        } else {
                            "certificate_renewal_overdue"
                        };
                        findings.push(
                            Finding::new(
                                code,
                                severity,
                                object,
                                format!(
                                    "renewal overdue: renewalTime {r} passed and cert-manager has not renewed it; {expires}{why}{request}"
                                ),
                            )
                            .with_at(Some(t))
                            .with_time("not_after", Some(t))
                            .with_time("renewal_time", Some(r)),
                        );
                    }
                    None => findings.extend(expiry_finding(config, now, t, object, &what).map(
                        |mut f| {
                            f.message.push_str(&request);
                            f
                        },
                    )),
                }
            }
            None => findings.push(Finding::new(
                "certificate_not_issued",
                Severity::Warning,
                object,
                format!("certificate has no status.notAfter: it has not been issued yet{request}"),
            )),
        }
    }
    let mut tls = 0usize;
    for s in state.secrets.iter().filter(|s| is_tls(s)) {
        tls += 1;
        let key = (
            s.metadata.namespace.as_deref().unwrap_or(""),
            s.metadata.name.as_deref().unwrap_or(""),
        );
        if issued_secrets.contains(&key) {
            continue;
        }
        let object = ObjectRef::new("Secret", &s.metadata);
        let Some(crt) = s.data.as_ref().and_then(|d| d.get("tls.crt")) else {
            findings.push(Finding::new(
                "tls_secret_invalid",
                Severity::Warning,
                object,
                "TLS secret has no tls.crt",
            ));
            continue;
        };
        match earliest_not_after(&crt.0) {
            Ok((t, subject)) => findings.extend(expiry_finding(
                config,
                now,
                t,
                object,
                &format!("TLS certificate {subject}"),
            )),
            Err(e) => findings.push(Finding::new(
                "tls_secret_invalid",
                Severity::Warning,
                object,
                format!("tls.crt unreadable: {e}"),
            )),
        }
    }
    let summary = format!(
        "{} cert-manager Certificates, {} TLS Secrets",
        state.certificates.len(),
        tls
    );
    CheckResult::new("certificates", summary, findings).with_objects(state.certificates.len() + tls)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::cluster::dump::load_bytes;

    #[test]
    fn unreadable_bundles_say_why() {
        let none =
            earliest_not_after(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .unwrap_err();
        assert!(matches!(none, BundleError::NoCertificate), "{none:?}");
        assert_eq!(none.to_string(), "no CERTIFICATE block in tls.crt");
        let bad = earliest_not_after(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\
              -----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap_err();
        let BundleError::Unreadable(blocks) = &bad else {
            panic!("{bad:?}")
        };
        assert_eq!(blocks.len(), 2);
        let text = bad.to_string();
        let parts: Vec<&str> = text.split("; ").collect();
        assert_eq!(parts.len(), 2, "{text}");
        assert!(
            parts.iter().all(|p| p.starts_with("bad certificate: ")),
            "{text}"
        );
    }

    #[test]
    fn expiry_findings_carry_not_after_as_their_moment() {
        let mut state = ClusterState::default();
        let dump = r#"{"apiVersion":"cert-manager.io/v1","kind":"Certificate","metadata":{"name":"web","namespace":"shop"},"status":{"notAfter":"2027-01-05T00:00:00Z"}}
            {"apiVersion":"cert-manager.io/v1","kind":"Certificate","metadata":{"name":"far","namespace":"shop"},"status":{"notAfter":"2030-01-01T00:00:00Z"}}
            {"apiVersion":"cert-manager.io/v1","kind":"Certificate","metadata":{"name":"new","namespace":"shop"},"status":{}}"#;
        load_bytes(&mut state, Path::new("dump.json"), dump.as_bytes());
        let now: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let r = check(&state, &ChecksConfig::default(), now);
        let got: Vec<(&str, &str, Option<Timestamp>)> = r
            .findings
            .iter()
            .map(|f| (f.object.name.as_str(), f.code.as_str(), f.at))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "web",
                    "certificate_expiring",
                    Some("2027-01-05T00:00:00Z".parse().unwrap())
                ),
                ("new", "certificate_not_issued", None),
            ]
        );
        // Absent moments stay out of the JSON; present ones are RFC 3339.
        let json = serde_json::to_value(&r.findings).unwrap();
        assert_eq!(json[0]["at"], "2027-01-05T00:00:00Z");
        assert!(json[1].get("at").is_none());
    }
}
