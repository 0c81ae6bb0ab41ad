//! Helm 3 releases, read from their storage Secrets (type `helm.sh/release.v1`, named
//! `sh.helm.release.v1.<release>.v<revision>`, labels `name`, `status`, `version`).
//!
//! Only the newest revision of each release is judged. Its `release` data is
//! base64 text of gzip-compressed JSON (on top of the Secret's own base64); the chart name,
//! chart version and app version come from it.
//!
//! Codes: `helm_release_failed` (critical), `helm_release_pending` (warning: pending-install,
//! pending-upgrade or pending-rollback longer than `pending_grace`: a stuck release blocks
//! the next upgrade), `helm_release_uninstalling` (warning, same grace),
//! `helm_release_unknown_status` (warning), `helm_release_unreadable` (warning: the release
//! data cannot be decoded; judged by its labels alone).

use std::collections::HashMap;
use std::io::Read;

use base64::Engine;
use caretaker_core::error::Chain;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use serde::{Deserialize, Serialize};

use super::time::{age, sd};
use super::{
    CheckResult, ChecksConfig, Finding, ObjectRef, Severity, all_not_applicable, coverage_findings,
};
use crate::cluster::{ClusterState, Resource};

/// The Secret type Helm 3 stores releases in.
pub(crate) const RELEASE_SECRET_TYPE: &str = "helm.sh/release.v1";

/// The parts of a decoded release this check reads.
#[derive(Debug, Clone, Default, Deserialize)]
struct ReleaseJson {
    #[serde(default)]
    info: ReleaseInfo,
    #[serde(default)]
    chart: Option<ChartJson>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ReleaseInfo {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    last_deployed: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ChartJson {
    #[serde(default)]
    metadata: ChartMeta,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ChartMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
    #[serde(rename = "appVersion", default)]
    app_version: Option<String>,
}

/// One Helm release at its newest revision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HelmRelease {
    pub secret: ObjectRef,
    pub namespace: String,
    pub name: String,
    pub revision: u32,
    pub status: String,
    pub chart: Option<String>,
    pub chart_version: Option<String>,
    pub(crate) app_version: Option<String>,
    pub description: Option<String>,
    pub(crate) last_deployed: Option<Timestamp>,
    /// Why the release data could not be read, if it could not.
    pub unreadable: Option<String>,
}

/// Why a release Secret's data cannot be read; shown with its cause in the release's
/// `unreadable`.
#[derive(Debug, thiserror::Error)]
enum DecodeError {
    #[error("no release data")]
    Missing,
    #[error("not base64")]
    Base64(#[source] base64::DecodeError),
    #[error("not gzip")]
    Gzip(#[source] std::io::Error),
    #[error("not release JSON")]
    Json(#[source] serde_json::Error),
}

/// Decodes the `release` data of a release Secret (after Kubernetes' own base64).
///
/// # Errors
/// When the data is not base64, not gzip or not release JSON.
fn decode_release(data: &[u8]) -> Result<ReleaseJson, DecodeError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(data.trim_ascii())
        .map_err(DecodeError::Base64)?;
    let json = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        // Bounded: a release is at most the 1 MiB a Secret can hold, compressed; 64 MiB
        // of JSON is far beyond any real chart.
        flate2::read::GzDecoder::new(&raw[..])
            .take(64 << 20)
            .read_to_end(&mut out)
            .map_err(DecodeError::Gzip)?;
        out
    } else {
        raw
    };
    serde_json::from_slice(&json).map_err(DecodeError::Json)
}

fn label<'a>(s: &'a Secret, k: &str) -> Option<&'a str> {
    s.metadata.labels.as_ref()?.get(k).map(String::as_str)
}

/// The newest revision of every release in `state`.
pub fn releases(state: &ClusterState) -> Vec<HelmRelease> {
    let mut newest: HashMap<(&str, &str), (u32, &Secret)> = HashMap::new();
    for s in state
        .secrets
        .iter()
        .filter(|s| s.type_.as_deref() == Some(RELEASE_SECRET_TYPE))
    {
        let ns = s.metadata.namespace.as_deref().unwrap_or("");
        let name_from_secret = s
            .metadata
            .name
            .as_deref()
            .and_then(|n| n.strip_prefix("sh.helm.release.v1."))
            .and_then(|n| n.rsplit_once(".v"));
        let Some(name) = label(s, "name").or(name_from_secret.map(|(n, _)| n)) else {
            continue;
        };
        let revision = label(s, "version")
            .or(name_from_secret.map(|(_, v)| v))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let e = newest.entry((ns, name)).or_insert((revision, s));
        if revision > e.0 {
            *e = (revision, s);
        }
    }
    let mut out: Vec<HelmRelease> = newest
        .into_iter()
        .map(|((ns, name), (revision, s))| {
            let decoded = match s.data.as_ref().and_then(|d| d.get("release")) {
                Some(d) => decode_release(&d.0),
                None => Err(DecodeError::Missing),
            };
            let (rel, unreadable) = match decoded {
                Ok(r) => (r, None),
                Err(e) => (ReleaseJson::default(), Some(Chain(&e).to_string())),
            };
            let chart = rel.chart.map(|c| c.metadata);
            HelmRelease {
                secret: ObjectRef::new("Secret", &s.metadata),
                namespace: ns.to_string(),
                name: name.to_string(),
                revision,
                status: rel
                    .info
                    .status
                    .or(label(s, "status").map(str::to_string))
                    .unwrap_or_default(),
                chart: chart.as_ref().map(|c| c.name.clone()),
                chart_version: chart.as_ref().map(|c| c.version.clone()),
                app_version: chart.and_then(|c| c.app_version),
                description: rel.info.description,
                last_deployed: rel.info.last_deployed.and_then(|t| t.parse().ok()).or(s
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0)),
                unreadable,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

/// Runs the Helm check.
pub fn check(state: &ClusterState, config: &ChecksConfig, now: Timestamp) -> CheckResult {
    let inputs = [Resource::Secret];
    if let Some(reason) = all_not_applicable(state, &inputs) {
        return CheckResult::not_applicable("helm", reason);
    }
    let mut findings = coverage_findings(state, &inputs);
    let rels = releases(state);
    let grace = sd(config.helm.pending_grace);
    for r in &rels {
        let obj = || ObjectRef {
            kind: "HelmRelease".into(),
            namespace: Some(r.namespace.clone()),
            name: r.name.clone(),
            uid: None,
        };
        let chart = match (&r.chart, &r.chart_version) {
            (Some(c), Some(v)) => format!(
                ", chart {c}-{v}{}",
                r.app_version
                    .as_deref()
                    .map(|a| format!(", app {a}"))
                    .unwrap_or_default()
            ),
            _ => String::new(),
        };
        let desc = r
            .description
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        let stuck_since = r.last_deployed.filter(|t| age(now, *t) > grace);
        let head = format!("release {} at revision {}{chart}", r.status, r.revision);
        match r.status.as_str() {
            "deployed" | "superseded" | "uninstalled" => {}
            "failed" => findings.push(Finding::new(
                "helm_release_failed",
                Severity::Critical,
                obj(),
                format!("{head}{desc}"),
            )),
            "pending-install" | "pending-upgrade" | "pending-rollback" => {
                if let Some(t) = stuck_since {
                    findings.push(
                        Finding::new(
                            "helm_release_pending",
                            Severity::Warning,
                            obj(),
                            format!("{head} since {t}{desc}"),
                        )
                        .with_time("last_deployed", Some(t)),
                    );
                }
            }
            "uninstalling" => {
                if let Some(t) = stuck_since {
                    findings.push(
                        Finding::new(
                            "helm_release_uninstalling",
                            Severity::Warning,
                            obj(),
                            format!("{head} since {t}"),
                        )
                        .with_time("last_deployed", Some(t)),
                    );
                }
            }
            _ => findings.push(Finding::new(
                "helm_release_unknown_status",
                Severity::Warning,
                obj(),
                format!("{head}: unknown status"),
            )),
        }
        if let Some(e) = &r.unreadable {
            findings.push(Finding::new(
                "helm_release_unreadable",
                Severity::Warning,
                r.secret.clone(),
                format!("release data unreadable ({e}); judged by its labels"),
            ));
        }
    }
    CheckResult::new("helm", format!("{} Helm releases", rels.len()), findings)
        .with_objects(rels.len())
}
