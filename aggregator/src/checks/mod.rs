//! Cluster checks: each reads a [`ClusterState`] and returns a [`CheckResult`] with a
//! severity and findings that name an object and carry a stable code.
//!
//! # Layout
//! - this file: the result types (their JSON is public interface), [`ALL`] and [`run_all`].
//! - [`config`]: the `checks:` config section with its documented defaults.
//! - one file per check family: [`pods`], [`events`], [`certificates`], [`velero`],
//!   [`pvcs`], [`hpas`], [`nodes`], [`helm`], [`workloads`], [`pdbs`], [`services`]
//!   (Services and Ingresses), [`cronjobs`], [`resources`] (requests and limits),
//!   [`vulnerabilities`] (trivy-operator).
//! - [`silence`]: `checks.exclude`, `checks.severity_overrides` and `--exclude-code`.
//! - [`quantity`]: Kubernetes resource quantities (`250m`, `1Gi`).
//! - [`render`]: terminal and Markdown tables; [`cli`]: `caretaker-aggregator check`.

pub mod certificates;
pub mod cli;
pub mod codes;
pub(crate) mod config;
pub mod cronjobs;
pub mod events;
pub mod helm;
pub mod hpas;
pub mod nodes;
pub mod pdbs;
pub mod pods;
pub mod pvcs;
pub(crate) mod quantity;
pub(crate) mod render;
pub(crate) mod resources;
pub mod services;
pub(crate) mod signals;
pub(crate) mod silence;
pub mod velero;
pub mod vulnerabilities;
pub mod workloads;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::cluster::{ClusterState, Coverage, Resource};
pub use config::ChecksConfig;

/// How bad a finding (or the worst finding of a check) is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Ok,
    Info,
    Warning,
    Critical,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}

/// The object a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct ObjectRef {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub uid: Option<String>,
}

impl ObjectRef {
    /// The reference to an object with metadata `meta`.
    pub fn new(kind: &str, meta: &ObjectMeta) -> ObjectRef {
        ObjectRef {
            kind: kind.to_string(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone(),
        }
    }

    /// A reference to a whole resource (for "could not list" findings): the name is empty.
    pub fn resource(r: Resource) -> ObjectRef {
        ObjectRef {
            kind: r.kind().to_string(),
            ..Default::default()
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// One thing a check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable machine-readable code, e.g. `crash_loop_back_off`; listed in each check's docs.
    pub code: String,
    pub severity: Severity,
    pub object: ObjectRef,
    /// One sentence for a person.
    pub message: String,
    /// The moment the finding is about, when it has one: a certificate's `notAfter`, the
    /// start of a backup, the completion of a schedule's newest backup. The report page
    /// draws these on its timelines. Absent (and omitted from JSON) otherwise.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub at: Option<Timestamp>,
    /// What to do about it (from [`codes::CODES`]; `aggregator/CHECKS.md` lists them all).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub remedy: Option<std::borrow::Cow<'static, str>>,
    /// The moments the finding is about, by name (`not_after`, `renewal_time`, `started`,
    /// `completed`...; each check's docs list its own), RFC 3339 in JSON. Messages carry
    /// absolute times, never relative ages, so they change only when the problem does.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty", default)]
    pub times: std::collections::BTreeMap<String, Timestamp>,
    /// The object's labels, as `checks.exclude` selectors and `report -l` see them
    /// (filled by the aggregator's round, see [`crate::cluster::labels::LabelIndex`]). Absent when unknown
    /// or none.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty", default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

impl Finding {
    pub fn new(
        code: &str,
        severity: Severity,
        object: ObjectRef,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            code: code.to_string(),
            severity,
            object,
            message: message.into(),
            at: None,
            remedy: codes::lookup(code).map(|c| std::borrow::Cow::Borrowed(c.remedy)),
            times: std::collections::BTreeMap::new(),
            labels: std::collections::BTreeMap::new(),
        }
    }

    /// The same finding with the moment `t` named `name` in [`Finding::times`] (nothing
    /// when `t` is `None`).
    #[must_use]
    pub(crate) fn with_time(mut self, name: &str, t: Option<Timestamp>) -> Finding {
        if let Some(t) = t {
            self.times.insert(name.to_string(), t);
        }
        self
    }

    /// The same finding about the moment `at` (see [`Finding::at`]).
    #[must_use]
    pub fn with_at(mut self, at: Option<Timestamp>) -> Finding {
        self.at = at;
        self
    }
}

/// Whether a check could look at anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The check ran (its inputs may be partly unknown: see its `list_*` findings).
    Ran,
    /// None of the check's inputs exist in this cluster or dump.
    NotApplicable,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Stable name: `nodes`, `pods`, `workloads`, `pdbs`, `services`, `ingresses`,
    /// `cronjobs`, `events`, `certificates`, `velero`, `pvcs`, `hpas`, `helm`, `resources`.
    pub name: String,
    /// The worst severity among the findings; `ok` when there are none.
    pub severity: Severity,
    pub status: CheckStatus,
    /// One line on what was looked at, e.g. `412 pods, 3 with problems`.
    pub summary: String,
    /// Worst first, then by code, namespace and name.
    pub findings: Vec<Finding>,
    /// How many objects the check judged, when it judges objects one by one (the score
    /// weighs a check by its share of healthy objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<usize>,
    /// Findings silenced (`checks.exclude`, `--exclude-code`): counted here, never dropped
    /// unseen.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub silenced: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Worst first, then by code, namespace, name and message.
pub(crate) fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.code.cmp(&b.code))
            .then_with(|| a.object.namespace.cmp(&b.object.namespace))
            .then_with(|| a.object.name.cmp(&b.object.name))
            .then_with(|| a.message.cmp(&b.message))
    });
}

/// The worst severity among `findings`; `ok` when there are none.
fn worst(findings: &[Finding]) -> Severity {
    findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or(Severity::Ok)
}

impl CheckResult {
    /// A result from findings: sorts them and computes the severity.
    pub fn new(name: &str, summary: impl Into<String>, mut findings: Vec<Finding>) -> CheckResult {
        sort_findings(&mut findings);
        let severity = worst(&findings);
        CheckResult {
            name: name.to_string(),
            severity,
            status: CheckStatus::Ran,
            summary: summary.into(),
            findings,
            objects: None,
            silenced: 0,
        }
    }

    /// Sets the severity again from the findings, after some were taken out or changed.
    pub(crate) fn recompute_severity(&mut self) {
        self.severity = worst(&self.findings);
    }

    /// The same result with the number of objects judged (see [`CheckResult::objects`]).
    #[must_use]
    pub fn with_objects(mut self, n: usize) -> CheckResult {
        self.objects = Some(n);
        self
    }

    /// A check none of whose inputs are present.
    pub(crate) fn not_applicable(name: &str, reason: impl Into<String>) -> CheckResult {
        CheckResult {
            name: name.to_string(),
            severity: Severity::Ok,
            status: CheckStatus::NotApplicable,
            summary: reason.into(),
            findings: Vec::new(),
            objects: None,
            silenced: 0,
        }
    }
}

/// A named check.
pub struct Check {
    pub name: &'static str,
    pub run: fn(&ClusterState, &ChecksConfig, Timestamp) -> CheckResult,
}

/// A check that reads a signal source instead of the cluster state (see [`signals`]):
/// asynchronous, it fills its part of the round's report, and gives `None` when its
/// source is not configured.
pub struct SignalCheck {
    pub name: &'static str,
    pub run: for<'a> fn(
        &'a crate::signals::config::SignalsConfig,
        Timestamp,
        &'a mut crate::report::SignalsReport,
    ) -> futures_util::future::BoxFuture<'a, Option<CheckResult>>,
}

/// Every signal check, in report order (after the cluster checks of [`ALL`]).
pub const SIGNALS: &[SignalCheck] = &[
    SignalCheck {
        name: "http_endpoints",
        run: signals::http_endpoints,
    },
    SignalCheck {
        name: "prometheus",
        run: signals::prometheus,
    },
    SignalCheck {
        name: "alertmanager",
        run: signals::alertmanager,
    },
];

/// Every check, in report order.
pub const ALL: &[Check] = &[
    Check {
        name: "nodes",
        run: nodes::check,
    },
    Check {
        name: "pods",
        run: pods::check,
    },
    Check {
        name: "workloads",
        run: workloads::check,
    },
    Check {
        name: "pdbs",
        run: pdbs::check,
    },
    Check {
        name: "services",
        run: services::check,
    },
    Check {
        name: "ingresses",
        run: services::ingresses,
    },
    Check {
        name: "cronjobs",
        run: cronjobs::check,
    },
    Check {
        name: "events",
        run: events::check,
    },
    Check {
        name: "certificates",
        run: certificates::check,
    },
    Check {
        name: "velero",
        run: velero::check,
    },
    Check {
        name: "pvcs",
        run: pvcs::check,
    },
    Check {
        name: "hpas",
        run: hpas::check,
    },
    Check {
        name: "helm",
        run: helm::check,
    },
    Check {
        name: "resources",
        run: resources::check,
    },
    Check {
        name: "vulnerabilities",
        run: vulnerabilities::check,
    },
];

/// Runs every check on `state` as of `now`, with event findings that repeat a pod or
/// node finding folded into it ([`events::fold`]).
pub fn run_all(state: &ClusterState, config: &ChecksConfig, now: Timestamp) -> Vec<CheckResult> {
    let mut results: Vec<CheckResult> = ALL.iter().map(|c| (c.run)(state, config, now)).collect();
    events::fold(&mut results);
    results
}

/// Findings for inputs that could not be listed (`list_forbidden`, `list_failed`); every
/// check adds these for the resources it reads, so missing permissions are never silent.
pub(crate) fn coverage_findings(state: &ClusterState, resources: &[Resource]) -> Vec<Finding> {
    let mut out = Vec::new();
    for &r in resources {
        match state.coverage(r) {
            Coverage::Forbidden { message } => out.push(Finding::new(
                "list_forbidden",
                Severity::Warning,
                ObjectRef::resource(r),
                format!("no permission to list {}: {message}", r.display_name()),
            )),
            Coverage::Failed { message } => out.push(Finding::new(
                "list_failed",
                Severity::Warning,
                ObjectRef::resource(r),
                format!("could not list {}: {message}", r.display_name()),
            )),
            Coverage::Listed | Coverage::NotApplicable { .. } => {}
        }
    }
    out
}

/// When every one of `resources` is not applicable, the reason (for [`CheckResult::not_applicable`]).
pub(crate) fn all_not_applicable(state: &ClusterState, resources: &[Resource]) -> Option<String> {
    let mut reasons = Vec::new();
    for &r in resources {
        match state.coverage(r) {
            Coverage::NotApplicable { reason } => reasons.push(reason),
            _ => return None,
        }
    }
    Some(reasons.join("; "))
}

/// Time helpers shared by the checks.
pub(crate) mod time {
    use jiff::{SignedDuration, Timestamp};

    /// `now - t` as a duration (negative when `t` is in the future).
    pub(crate) fn age(now: Timestamp, t: Timestamp) -> SignedDuration {
        now.duration_since(t)
    }

    /// `std::time::Duration` as a jiff duration (saturating).
    pub(crate) fn sd(d: impl Into<std::time::Duration>) -> SignedDuration {
        SignedDuration::try_from(d.into()).unwrap_or(SignedDuration::MAX)
    }

    /// A short human form: `3d 4h`, `5h 2m`, `42s`.
    pub(crate) fn human(d: SignedDuration) -> String {
        let s = d.as_secs().unsigned_abs();
        let (days, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
        if days > 0 {
            format!("{days}d {h}h")
        } else if h > 0 {
            format!("{h}h {m}m")
        } else if m > 0 {
            format!("{m}m")
        } else {
            format!("{s}s")
        }
    }

    /// Parses an RFC 3339 time from a dynamic object field.
    pub(crate) fn parse(v: Option<&serde_json::Value>) -> Option<Timestamp> {
        v?.as_str()?.parse().ok()
    }
}
