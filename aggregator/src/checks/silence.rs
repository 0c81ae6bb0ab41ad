//! Silencing from the config (`checks.exclude`, `checks.severity_overrides`, Popeye's
//! "spinach" file) and the command line (`--exclude-code`).
//!
//! A silenced finding leaves its check's verdict (and `--fail-on`), is counted in
//! [`CheckResult::silenced`] and can be listed (`--show-silenced`): it is never dropped
//! unseen. An entry with an `until` date stops applying after that day (UTC); each expired
//! entry is then reported as a `silence_expired` finding of the `silencing` check, so a
//! forgotten exception resurfaces instead of hiding problems for good.

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::{CheckResult, Finding, ObjectRef, Severity};
use crate::cluster::labels::LabelIndex;

/// Longest pattern or code accepted (far above any Kubernetes name, 253 bytes).
const MAX_PATTERN_BYTES: usize = 512;

/// A name or namespace pattern: `*` matches any run of characters, `?` one character,
/// everything else itself (`kube-*`, `test-??`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pattern(String);

/// A `checks.exclude` entry, pattern or selector that cannot be used (shown by the config
/// loader with the entry's file and line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("an empty pattern matches nothing; leave the field out instead")]
    EmptyPattern,
    #[error("pattern of {0} bytes is longer than {MAX_PATTERN_BYTES}")]
    LongPattern(usize),
    #[error("selector of {0} bytes is longer than {MAX_PATTERN_BYTES}")]
    LongSelector(usize),
    #[error("an empty selector matches everything; leave the field out instead")]
    EmptySelector,
    #[error(transparent)]
    Selector(#[from] crate::cli::select::SelectorError),
    #[error(
        "an exclude entry needs at least one of code, check, kind, namespace, name, \
         selector (an empty entry would silence everything)"
    )]
    EmptyExclude,
    #[error("a value of {0} bytes is too long")]
    LongValue(usize),
}

impl From<Pattern> for String {
    fn from(p: Pattern) -> String {
        p.0
    }
}

impl TryFrom<String> for Pattern {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.is_empty() {
            return Err(Error::EmptyPattern);
        }
        if s.len() > MAX_PATTERN_BYTES {
            return Err(Error::LongPattern(s.len()));
        }
        Ok(Pattern(s))
    }
}

impl Pattern {
    /// Whether `text` matches (the same wildcards as `cleanup.protect`).
    pub fn matches(&self, text: &str) -> bool {
        crate::cleanup::protect::glob(&self.0, text)
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A label selector in kubectl's syntax (`-l`, parsed by
/// [`crate::cli::select::parse_selector`]): requirements separated by commas, each
/// `key=value` (or `==`), `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key` (exists)
/// or `!key` (does not exist). All must hold; `!=` and `notin` also hold when the key is
/// absent, as in kubectl.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Selector {
    /// As written (shown back in messages).
    text: String,
    selector: kube::core::Selector,
}

impl From<Selector> for String {
    fn from(s: Selector) -> String {
        s.text
    }
}

impl TryFrom<String> for Selector {
    type Error = Error;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        if text.len() > MAX_PATTERN_BYTES {
            return Err(Error::LongSelector(text.len()));
        }
        if text.trim().is_empty() {
            return Err(Error::EmptySelector);
        }
        let selector = crate::cli::select::parse_selector(&text)?;
        Ok(Selector { text, selector })
    }
}

impl Selector {
    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        use kube::core::SelectorExt;
        self.selector.matches(labels)
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// One `checks.exclude` entry: findings matching every field given are silenced. At least
/// one of `code`, `check`, `kind`, `namespace`, `name` and `selector` must be given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawExclude")]
pub struct ExcludeRule {
    /// Finding code, e.g. `pdb_no_disruptions_allowed` (`aggregator/CHECKS.md` lists them).
    pub code: Option<String>,
    /// Check name, e.g. `events`.
    pub check: Option<String>,
    /// Kind of the object, e.g. `Pod` (compared without regard to case).
    pub kind: Option<String>,
    /// Namespace pattern, e.g. `kube-*`; cluster-scoped objects never match one.
    pub namespace: Option<Pattern>,
    /// Object name pattern, e.g. `load-test-*`.
    pub name: Option<Pattern>,
    /// Label selector of the object, kubectl's syntax: `app=web,tier!=db`,
    /// `env in (dev,test)`, `!canary`. A running pod is matched by its controller's pod
    /// template labels (the labels it was created with); a `chart_updates` finding about a
    /// HelmRelease by its newest release Secret's labels (Helm's `name`, `owner`,
    /// `status`, `version`, and those given with `helm install --labels`). An object
    /// whose labels the source does not hold (a Node the dump lacks, an Endpoint) never
    /// matches one.
    pub selector: Option<Selector>,
    /// Last day (UTC, `YYYY-MM-DD`) the entry applies; after it the findings count again
    /// and the entry is reported as expired. Default: no end.
    pub until: Option<Date>,
    /// Why the findings are accepted, for the next reader of the config.
    pub reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExclude {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    check: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    namespace: Option<Pattern>,
    #[serde(default)]
    name: Option<Pattern>,
    #[serde(default)]
    selector: Option<Selector>,
    #[serde(default)]
    until: Option<Date>,
    #[serde(default)]
    reason: Option<String>,
}

impl TryFrom<RawExclude> for ExcludeRule {
    type Error = Error;
    fn try_from(r: RawExclude) -> Result<Self, Self::Error> {
        if r.code.is_none()
            && r.check.is_none()
            && r.kind.is_none()
            && r.namespace.is_none()
            && r.name.is_none()
            && r.selector.is_none()
        {
            return Err(Error::EmptyExclude);
        }
        for s in [&r.code, &r.check, &r.kind, &r.reason]
            .into_iter()
            .flatten()
        {
            if s.len() > MAX_PATTERN_BYTES {
                return Err(Error::LongValue(s.len()));
            }
        }
        Ok(ExcludeRule {
            code: r.code,
            check: r.check,
            kind: r.kind,
            namespace: r.namespace,
            name: r.name,
            selector: r.selector,
            until: r.until,
            reason: r.reason,
        })
    }
}

impl ExcludeRule {
    fn matches(&self, check: &str, f: &Finding, labels: Option<&LabelIndex<'_>>) -> bool {
        self.code.as_ref().is_none_or(|c| *c == f.code)
            && self.check.as_ref().is_none_or(|c| c == check)
            && self
                .kind
                .as_ref()
                .is_none_or(|k| k.eq_ignore_ascii_case(&f.object.kind))
            && self.namespace.as_ref().is_none_or(|p| {
                f.object
                    .namespace
                    .as_deref()
                    .is_some_and(|ns| p.matches(ns))
            })
            && self.name.as_ref().is_none_or(|p| p.matches(&f.object.name))
            && self.selector.as_ref().is_none_or(|sel| {
                // The labels the finding carries (a Helm release's are its newest release
                // Secret's), else the object's in the state.
                let carried = (!f.labels.is_empty()).then_some(&f.labels);
                carried
                    .or_else(|| labels.and_then(|l| l.get(&f.object)))
                    .is_some_and(|l| sel.matches(l))
            })
    }

    /// `code=x, namespace=kube-*` for messages.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        let fields: [(&str, Option<String>); 6] = [
            ("code", self.code.clone()),
            ("check", self.check.clone()),
            ("kind", self.kind.clone()),
            (
                "namespace",
                self.namespace.as_ref().map(ToString::to_string),
            ),
            ("name", self.name.as_ref().map(ToString::to_string)),
            ("selector", self.selector.as_ref().map(ToString::to_string)),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        }
        parts.join(", ")
    }
}

/// One `checks.severity_overrides` entry: findings with `code` get `severity` instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityOverride {
    /// Finding code, e.g. `pdb_no_disruptions_allowed`.
    pub code: String,
    /// The severity to give: `info`, `warning` or `critical`.
    pub severity: OverrideSeverity,
    /// Last day (UTC, `YYYY-MM-DD`) the override applies. Default: no end.
    #[serde(default)]
    pub until: Option<Date>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The severities an override may give (`ok` would be a silent exclude: use `exclude`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideSeverity {
    Info,
    Warning,
    Critical,
}

impl From<OverrideSeverity> for Severity {
    fn from(s: OverrideSeverity) -> Severity {
        match s {
            OverrideSeverity::Info => Severity::Info,
            OverrideSeverity::Warning => Severity::Warning,
            OverrideSeverity::Critical => Severity::Critical,
        }
    }
}

/// What silencing did.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Outcome {
    /// Silenced findings with their check's name.
    pub silenced: Vec<(String, Finding)>,
    /// Entries past their `until` date, e.g. `checks.exclude[1] (code=x) expired 2026-11-30`.
    pub expired: Vec<String>,
}

/// Name of the check that reports expired entries.
pub(crate) const CHECK_NAME: &str = "silencing";

/// Applies the overrides, then the excludes and the `--exclude-code` codes, to `results`
/// as of `now`; appends a `silencing` check when entries have expired. Entries with a
/// `selector` match nothing here: see [`apply_with_labels`].
#[cfg(test)]
pub(crate) fn apply(
    results: &mut Vec<CheckResult>,
    exclude: &[ExcludeRule],
    overrides: &[SeverityOverride],
    codes: &[String],
    now: Timestamp,
) -> Outcome {
    apply_with_labels(results, exclude, overrides, codes, now, None)
}

/// `apply`, with the objects' labels for entries with a `selector`.
pub(crate) fn apply_with_labels(
    results: &mut Vec<CheckResult>,
    exclude: &[ExcludeRule],
    overrides: &[SeverityOverride],
    codes: &[String],
    now: Timestamp,
    labels: Option<&LabelIndex<'_>>,
) -> Outcome {
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let live = |until: Option<Date>| until.is_none_or(|u| today <= u);
    let mut out = Outcome::default();
    for (i, o) in overrides.iter().enumerate() {
        if let Some(u) = o.until.filter(|_| !live(o.until)) {
            out.expired.push(format!(
                "checks.severity_overrides[{i}] (code={}) expired {u}",
                o.code
            ));
        }
    }
    for (i, r) in exclude.iter().enumerate() {
        if let Some(u) = r.until.filter(|_| !live(r.until)) {
            out.expired.push(format!(
                "checks.exclude[{i}] ({}) expired {u}",
                r.describe()
            ));
        }
    }
    let overrides: Vec<&SeverityOverride> = overrides.iter().filter(|o| live(o.until)).collect();
    let exclude: Vec<&ExcludeRule> = exclude.iter().filter(|r| live(r.until)).collect();
    for r in results.iter_mut() {
        let mut changed = false;
        for f in &mut r.findings {
            if let Some(o) = overrides.iter().find(|o| o.code == f.code) {
                f.severity = o.severity.into();
                changed = true;
            }
        }
        let name = r.name.clone();
        let (gone, kept): (Vec<Finding>, Vec<Finding>) =
            std::mem::take(&mut r.findings).into_iter().partition(|f| {
                codes.contains(&f.code) || exclude.iter().any(|e| e.matches(&name, f, labels))
            });
        changed |= !gone.is_empty();
        r.findings = kept;
        r.silenced += gone.len();
        if changed {
            super::sort_findings(&mut r.findings);
            r.recompute_severity();
        }
        out.silenced
            .extend(gone.into_iter().map(|f| (name.clone(), f)));
    }
    if !out.expired.is_empty() {
        let findings = out
            .expired
            .iter()
            .map(|e| {
                let entry = e.split(' ').next().unwrap_or_default().to_string();
                Finding::new(
                    "silence_expired",
                    Severity::Info,
                    ObjectRef {
                        kind: "Config".into(),
                        namespace: None,
                        name: entry,
                        uid: None,
                    },
                    format!("{e}; it no longer applies"),
                )
            })
            .collect();
        results.push(CheckResult::new(
            CHECK_NAME,
            format!("{} silencing entries expired", out.expired.len()),
            findings,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(code: &str, sev: Severity, kind: &str, ns: Option<&str>, name: &str) -> Finding {
        Finding::new(
            code,
            sev,
            ObjectRef {
                kind: kind.into(),
                namespace: ns.map(str::to_string),
                name: name.into(),
                uid: None,
            },
            "m",
        )
    }

    fn results() -> Vec<CheckResult> {
        vec![
            CheckResult::new(
                "pods",
                "s",
                vec![
                    finding(
                        "crash_loop_back_off",
                        Severity::Critical,
                        "Pod",
                        Some("kube-system"),
                        "coredns-1",
                    ),
                    finding(
                        "crash_loop_back_off",
                        Severity::Critical,
                        "Pod",
                        Some("shop"),
                        "load-test-7",
                    ),
                    finding("pending", Severity::Warning, "Pod", Some("shop"), "web-1"),
                ],
            ),
            CheckResult::new(
                "pdbs",
                "s",
                vec![finding(
                    "pdb_no_disruptions_allowed",
                    Severity::Warning,
                    "PodDisruptionBudget",
                    Some("db"),
                    "pg",
                )],
            ),
        ]
    }

    fn config(yaml: &str) -> super::super::ChecksConfig {
        caretaker_core::config::parse_yaml(yaml, std::path::Path::new("c.yaml")).unwrap()
    }

    const NOW: &str = "2026-12-05T02:00:00Z";

    #[test]
    fn patterns_match_stars_and_question_marks() {
        let p = |s: &str| Pattern::try_from(s.to_string()).unwrap();
        assert!(p("kube-*").matches("kube-system"));
        assert!(!p("kube-*").matches("shop"));
        assert!(p("*-test-??").matches("a-test-07"));
        assert!(!p("*-test-??").matches("a-test-7"));
        assert!(p("*").matches(""));
        assert!(p("a*b*c").matches("aXbYbZc"));
        assert!(!p("a*b*c").matches("aXbYbZ"));
    }

    #[test]
    fn excludes_by_namespace_name_kind_and_code_leave_the_verdict_and_are_counted() {
        let c = config(
            "exclude:\n- namespace: kube-*\n- name: load-test-*\n  kind: pod\n  reason: load tests crash by design\n- code: pdb_no_disruptions_allowed\n",
        );
        let mut r = results();
        let out = apply(
            &mut r,
            &c.exclude,
            &c.severity_overrides,
            &[],
            NOW.parse().unwrap(),
        );
        let names: Vec<&str> = out
            .silenced
            .iter()
            .map(|(_, f)| f.object.name.as_str())
            .collect();
        assert_eq!(names, vec!["coredns-1", "load-test-7", "pg"]);
        assert_eq!(r[0].silenced, 2);
        assert_eq!(
            r[0].severity,
            Severity::Warning,
            "only the pending pod is left"
        );
        assert_eq!(r[1].severity, Severity::Ok);
        assert_eq!(r[1].silenced, 1);
        assert!(out.expired.is_empty());
        assert_eq!(r.len(), 2, "no silencing check without expired entries");
    }

    #[test]
    fn expired_entries_stop_applying_and_are_reported() {
        let c = config(
            "exclude:\n- code: crash_loop_back_off\n  until: 2026-12-04\n- code: pending\n  until: 2026-12-05\nseverity_overrides:\n- code: pdb_no_disruptions_allowed\n  severity: info\n  until: 2026-11-30\n",
        );
        let mut r = results();
        let out = apply(
            &mut r,
            &c.exclude,
            &c.severity_overrides,
            &[],
            NOW.parse().unwrap(),
        );
        // The pending exclude lasts through its last day; the other two expired.
        assert_eq!(out.silenced.len(), 1);
        assert_eq!(out.silenced[0].1.code, "pending");
        assert_eq!(r[0].severity, Severity::Critical);
        assert_eq!(r[1].findings[0].severity, Severity::Warning);
        assert_eq!(
            out.expired,
            vec![
                "checks.severity_overrides[0] (code=pdb_no_disruptions_allowed) expired 2026-11-30",
                "checks.exclude[0] (code=crash_loop_back_off) expired 2026-12-04",
            ]
        );
        let s = r.last().unwrap();
        assert_eq!(s.name, "silencing");
        assert_eq!(s.severity, Severity::Info);
        assert_eq!(s.findings.len(), 2);
        assert_eq!(s.findings[0].code, "silence_expired");
        assert_eq!(s.findings[0].object.name, "checks.exclude[0]");
    }

    #[test]
    fn severity_override_changes_the_finding_and_the_check_verdict() {
        let c = config("severity_overrides:\n- code: crash_loop_back_off\n  severity: info\n");
        let mut r = results();
        let out = apply(
            &mut r,
            &c.exclude,
            &c.severity_overrides,
            &[],
            NOW.parse().unwrap(),
        );
        assert!(out.silenced.is_empty());
        assert_eq!(r[0].severity, Severity::Warning);
        assert_eq!(
            r[0].findings[0].code, "pending",
            "worst first after the override"
        );
        assert_eq!(r[0].findings[1].severity, Severity::Info);
    }

    #[test]
    fn an_entry_without_a_matcher_and_ok_overrides_are_rejected() {
        for yaml in [
            "exclude:\n- until: 2027-01-01\n",
            "severity_overrides:\n- code: x\n  severity: ok\n",
            "exclude:\n- name: ''\n",
            "exclude:\n- code: x\n  until: tomorrow\n",
        ] {
            let e = caretaker_core::config::parse_yaml::<super::super::ChecksConfig>(
                yaml,
                std::path::Path::new("c.yaml"),
            );
            assert!(e.is_err(), "{yaml}");
        }
    }

    #[test]
    fn selectors_parse_kubectl_syntax_and_match_like_kubectl() {
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let sel = |t: &str| Selector::try_from(t.to_string()).unwrap();
        let web = labels(&[("app", "web"), ("env", "dev")]);
        let db = labels(&[("app", "db"), ("canary", "true")]);
        let cases: [(&str, bool, bool); 8] = [
            ("app=web", true, false),
            ("app==db", false, true),
            ("app!=web", false, true),
            ("env in (dev, test),app=web", true, false),
            ("env notin (dev)", false, true),
            ("canary", false, true),
            ("!canary", true, false),
            ("app in (web,db),!env", false, true),
        ];
        for (text, w, d) in cases {
            assert_eq!(
                (sel(text).matches(&web), sel(text).matches(&db)),
                (w, d),
                "{text}"
            );
        }
        for bad in ["", "app=web,", "app in web", "=x", "a b=c"] {
            assert!(Selector::try_from(bad.to_string()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn exclude_by_label_selector_silences_only_objects_whose_labels_match() {
        let mut state = crate::cluster::ClusterState::default();
        // The loader keeps labels only on Failed pods: a running pod's come from its
        // controller's pod template (here a ReplicaSet's).
        let dump = r#"{"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{"name":"load-test-5d8f","namespace":"shop","labels":{"app":"load-test"}},
              "spec":{"selector":{"matchLabels":{"app":"load-test"}},"template":{"metadata":{"labels":{"app":"load-test","team":"perf","pod-template-hash":"5d8f"}},"spec":{"containers":[]}}}}
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"load-test-7","namespace":"shop","labels":{"app":"load-test","team":"perf","pod-template-hash":"5d8f"},
              "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"load-test-5d8f","uid":"u1","controller":true}]},"spec":{"containers":[]},"status":{"phase":"Running"}}
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-1","namespace":"shop","labels":{"app":"web"}},"spec":{"containers":[]},"status":{"phase":"Failed"}}"#;
        crate::cluster::dump::load_bytes(
            &mut state,
            std::path::Path::new("dump.json"),
            dump.as_bytes(),
        );
        let rules: Vec<ExcludeRule> = serde_saphyr::from_str(
            "- selector: team=perf\n  reason: load tests crash on purpose\n",
        )
        .unwrap();
        let now: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            state.pods[0].metadata.labels, None,
            "the loader compacts pods"
        );
        let mut r = results();
        let out = apply_with_labels(
            &mut r,
            &rules,
            &[],
            &[],
            now,
            Some(&LabelIndex::with_template_labels(&state)),
        );
        let silenced: Vec<String> = out
            .silenced
            .iter()
            .map(|(_, f)| f.object.to_string())
            .collect();
        assert_eq!(silenced, vec!["Pod/shop/load-test-7"]);
        assert_eq!(r[0].silenced, 1);
        // Without labels (the plain `apply`), a selector matches nothing.
        let mut r = results();
        let out = apply(&mut r, &rules, &[], &[], now);
        assert!(out.silenced.is_empty());
        // A selector alone is enough for an entry; it shows in expiry messages.
        let rules: Vec<ExcludeRule> =
            serde_saphyr::from_str("- selector: app in (web)\n  until: 2026-11-01\n").unwrap();
        let out = apply(&mut results(), &rules, &[], &[], now);
        assert_eq!(
            out.expired,
            vec!["checks.exclude[0] (selector=app in (web)) expired 2026-11-01"]
        );
    }
}
