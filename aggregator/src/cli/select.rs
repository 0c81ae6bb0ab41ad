//! kubectl's object selection for `check`, `cleanup` and `report`: `-n/--namespace`,
//! `-A/--all-namespaces`, `-l/--selector`, and (`check`, `cleanup`) `--context` and
//! `--kubeconfig` for the live source (`report` takes them too, to reach the aggregator
//! in that cluster: see [`crate::client::fetch_report_via_proxy`]). `report` selects by
//! the labels the report carries ([`filter_report`]).
//!
//! What is selected is what is *shown*: the checks and cleanup rules still read every
//! object of the namespaces read, so that references across objects (a Service's
//! EndpointSlices, the pods that use a ConfigMap) are judged on the whole picture and a
//! selector never makes an object in use look unused. `-n` narrows what is read as well
//! (the live source lists only that namespace, a dump keeps only its objects), as
//! `checks.namespaces` does; cluster-scoped objects (nodes) are kept, as `kubectl get
//! nodes -n x` shows them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use kube::core::{Expression, Selector, SelectorExt};

use crate::checks::{CheckResult, ObjectRef};
use crate::cluster::labels::LabelIndex;

/// `-n`, `-A` and `-l`, as kubectl spells them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SelectArgs {
    /// Only objects in this namespace (cluster-scoped objects such as nodes stay, as with
    /// kubectl). Default: all namespaces, or `checks.namespaces` of --config.
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// All namespaces, whatever `checks.namespaces` of --config says.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Only objects whose labels match this selector (kubectl's syntax: `app=web`,
    /// `tier!=db`, `env in (prod,staging)`, `env notin (dev)`, `release`, `!canary`;
    /// comma means and).
    #[arg(short = 'l', long, value_name = "SELECTOR", value_parser = parse_selector)]
    pub selector: Option<Selector>,
}

/// `--context` and `--kubeconfig`: which cluster the live source reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct KubeArgs {
    /// The kubeconfig context to read (default: the kubeconfig's current context; without
    /// --context and --kubeconfig: the in-cluster service account, else the kubeconfig).
    #[arg(long, value_name = "NAME", conflicts_with = "from_dump")]
    pub context: Option<String>,
    /// The kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, as kubectl).
    #[arg(long, value_name = "FILE", conflicts_with = "from_dump")]
    pub kubeconfig: Option<PathBuf>,
}

impl KubeArgs {
    /// Whether a kubeconfig was named (else the default client is used).
    #[must_use]
    pub fn given(&self) -> bool {
        self.context.is_some() || self.kubeconfig.is_some()
    }
}

/// A label selector that kubectl would not take. The reason is part of the message (not a
/// `#[source]`): clap shows a value's error without its causes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {selector:?}: {reason}")]
pub struct SelectorError {
    pub selector: String,
    pub reason: SelectorProblem,
}

/// What is wrong in a label selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorProblem {
    #[error("unbalanced ')'")]
    UnbalancedClose,
    #[error("unbalanced '('")]
    UnbalancedOpen,
    #[error("empty requirement")]
    EmptyRequirement,
    #[error("{0:?}: expected =, ==, !=, in or notin after the key")]
    NoOperator(String),
    #[error("{0:?}: the values of in/notin go in parentheses")]
    NoParentheses(String),
    #[error("{0:?} is not a label key (bad prefix)")]
    KeyPrefix(String),
    #[error("{0:?} is not a label key")]
    Key(String),
    #[error("{0:?} is not a label value")]
    Value(String),
}

/// Parses a label selector in kubectl's syntax (`k8s.io/apimachinery/pkg/labels.Parse`):
/// requirements separated by commas, each `key`, `!key`, `key=value`, `key==value`,
/// `key!=value`, `key in (v1,v2)` or `key notin (v1,v2)`. An empty string selects all.
///
/// # Errors
/// [`SelectorError`] naming the selector and what is wrong.
pub fn parse_selector(s: &str) -> Result<Selector, SelectorError> {
    let err = |reason: SelectorProblem| SelectorError {
        selector: s.to_string(),
        reason,
    };
    let mut exprs = Vec::new();
    for req in split_requirements(s).map_err(err)? {
        let req = req.trim();
        if req.is_empty() {
            if s.trim().is_empty() {
                continue;
            }
            return Err(err(SelectorProblem::EmptyRequirement));
        }
        exprs.push(requirement(req).map_err(err)?);
    }
    let mut sel = Selector::default();
    sel.extend(exprs);
    Ok(sel)
}

/// Splits at commas outside parentheses.
fn split_requirements(s: &str) -> Result<Vec<&str>, SelectorProblem> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(SelectorProblem::UnbalancedClose);
                }
            }
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(SelectorProblem::UnbalancedOpen);
    }
    out.push(&s[start..]);
    Ok(out)
}

fn requirement(req: &str) -> Result<Expression, SelectorProblem> {
    if let Some(key) = req.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(key_of(key.trim())?));
    }
    for (op, ne) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((k, v)) = req.split_once(op) {
            let (k, v) = (key_of(k.trim())?, value_of(v.trim())?);
            return Ok(if ne {
                Expression::NotEqual(k, v)
            } else {
                Expression::Equal(k, v)
            });
        }
    }
    let mut words = req.splitn(2, char::is_whitespace);
    let key = key_of(words.next().unwrap_or_default())?;
    let Some(rest) = words.next().map(str::trim) else {
        return Ok(Expression::Exists(key));
    };
    let (notin, list) = if let Some(l) = rest.strip_prefix("notin") {
        (true, l)
    } else if let Some(l) = rest.strip_prefix("in") {
        (false, l)
    } else {
        return Err(SelectorProblem::NoOperator(req.to_string()));
    };
    let inner = list
        .trim()
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .ok_or_else(|| SelectorProblem::NoParentheses(req.to_string()))?;
    let values = inner
        .split(',')
        .map(|v| value_of(v.trim()))
        .collect::<Result<_, _>>()?;
    Ok(if notin {
        Expression::NotIn(key, values)
    } else {
        Expression::In(key, values)
    })
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters of alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn key_of(k: &str) -> Result<String, SelectorProblem> {
    let name = match k.rsplit_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty()
                || prefix.len() > 253
                || !prefix
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            {
                return Err(SelectorProblem::KeyPrefix(k.to_string()));
            }
            name
        }
        None => k,
    };
    if name.is_empty() || !is_label_name(name) {
        return Err(SelectorProblem::Key(k.to_string()));
    }
    Ok(k.to_string())
}

/// A label value: empty, or as a key's name part.
fn value_of(v: &str) -> Result<String, SelectorProblem> {
    if v.is_empty() || is_label_name(v) {
        Ok(v.to_string())
    } else {
        Err(SelectorProblem::Value(v.to_string()))
    }
}

fn is_label_name(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.len() <= 63
        && s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars()
            .all(|c| alnum(c) || c == '-' || c == '_' || c == '.')
}

/// Which objects are shown: `-n`/`-A` and `-l` resolved.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Namespaced objects outside these are not shown; `None`: every namespace.
    pub namespaces: Option<Vec<String>>,
    pub selector: Option<Selector>,
}

impl Selection {
    /// `-n`/`-A` applied to the config's `checks.namespaces` (which `-n` replaces and `-A`
    /// clears), and `-l`.
    pub fn resolve(args: &SelectArgs, config_namespaces: &mut Vec<String>) -> Selection {
        if let Some(ns) = &args.namespace {
            *config_namespaces = vec![ns.clone()];
        } else if args.all_namespaces {
            config_namespaces.clear();
        }
        Selection {
            namespaces: (!config_namespaces.is_empty()).then(|| config_namespaces.clone()),
            selector: args.selector.clone().filter(|s| !s.selects_all()),
        }
    }

    /// Whether a label selector is given (then pod labels must be kept when loading).
    #[must_use]
    pub(crate) fn needs_labels(&self) -> bool {
        self.selector.is_some()
    }

    /// Whether `o` (with `labels`, if it was found) is shown. A finding about a whole
    /// resource (no name: "cannot list pods") is always shown: it says what is unknown.
    #[must_use]
    pub fn shows(&self, o: &ObjectRef, labels: Option<&BTreeMap<String, String>>) -> bool {
        if o.name.is_empty() {
            return true;
        }
        if let (Some(nss), Some(ns)) = (&self.namespaces, &o.namespace)
            && !nss.iter().any(|n| n == ns)
        {
            return false;
        }
        match &self.selector {
            None => true,
            Some(sel) => sel.matches(labels.unwrap_or(&BTreeMap::new())),
        }
    }

    /// Removes the findings not shown from `results` (each check's severity is then the
    /// worst of what remains) and returns how many were removed.
    pub(crate) fn filter_results(
        &self,
        results: &mut [CheckResult],
        labels: &LabelIndex<'_>,
    ) -> usize {
        if self.namespaces.is_none() && self.selector.is_none() {
            return 0;
        }
        let mut hidden = 0;
        for r in results {
            let before = r.findings.len();
            r.findings
                .retain(|f| self.shows(&f.object, labels.get(&f.object)));
            if r.findings.len() != before {
                hidden += before - r.findings.len();
                r.recompute_severity();
            }
        }
        hidden
    }
}

/// Labels a report carries for an object: `None` when it carries none.
fn carried(l: &BTreeMap<String, String>) -> Option<&BTreeMap<String, String>> {
    Some(l).filter(|l| !l.is_empty())
}

/// Keeps in `report` only the findings (of each check and the tracked ones) and
/// proposals about objects `selection` shows, by namespace and by the labels each finding
/// and proposal carries (the aggregator's round fills them; a tracked finding has the
/// labels of its check's finding). Each check's severity is then the worst of what remains.
pub fn filter_report(report: &mut crate::report::ClusterReport, selection: &Selection) {
    if selection.namespaces.is_none() && selection.selector.is_none() {
        return;
    }
    let tracked: HashMap<String, bool> = report
        .checks
        .iter()
        .flat_map(|c| {
            c.findings.iter().map(|f| {
                (
                    crate::report::finding_key(&c.name, &f.code, &f.object),
                    selection.shows(&f.object, carried(&f.labels)),
                )
            })
        })
        .collect();
    for r in &mut report.checks {
        let before = r.findings.len();
        r.findings
            .retain(|f| selection.shows(&f.object, carried(&f.labels)));
        if r.findings.len() != before {
            r.recompute_severity();
        }
    }
    report.findings.retain(|f| {
        tracked
            .get(&f.key)
            .copied()
            .unwrap_or_else(|| selection.shows(&f.object, None))
    });
    report
        .proposals
        .retain(|p| selection.shows(&p.object, carried(&p.labels)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Severity;
    use crate::cluster::ClusterState;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn selectors_parse_as_kubectl_writes_them() {
        let s = parse_selector(
            "app=web, tier==front,env in (prod, staging),track notin (canary),release,!legacy,zone!=b",
        )
        .unwrap();
        assert_eq!(
            s.to_string(),
            "app=web,tier=front,env in (prod,staging),track notin (canary),release,!legacy,zone!=b"
        );
        let on = labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("env", "prod"),
            ("release", "1"),
            ("zone", "a"),
        ]);
        assert!(s.matches(&on));
        for (k, v) in [
            ("app", "api"),
            ("env", "dev"),
            ("track", "canary"),
            ("legacy", ""),
            ("zone", "b"),
        ] {
            let mut off = on.clone();
            off.insert(k.into(), v.into());
            assert!(!s.matches(&off), "{k}={v} must not match");
        }
        let mut off = on.clone();
        off.remove("release");
        assert!(!s.matches(&off), "release must exist");
        assert!(parse_selector("").unwrap().selects_all());
        assert!(
            parse_selector("example.com/team=a")
                .unwrap()
                .matches(&labels(&[("example.com/team", "a")]))
        );
    }

    #[test]
    fn bad_selectors_are_errors_naming_them() {
        for bad in [
            "app=",
            "=web",
            "app in prod",
            "env in (prod",
            "a,,b",
            "app ~ web",
            "-app=x",
            "app=web!",
        ] {
            let r = parse_selector(bad);
            if bad == "app=" {
                // An empty value is valid (`app=` selects app with an empty value).
                assert!(r.is_ok(), "{bad}");
                continue;
            }
            let e = r.unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("invalid label selector {bad:?}: ")),
                "{e}"
            );
        }
        let reason = |s: &str| parse_selector(s).unwrap_err().reason;
        assert_eq!(
            reason("app in prod"),
            SelectorProblem::NoParentheses("app in prod".into())
        );
        assert_eq!(reason("env in (prod"), SelectorProblem::UnbalancedOpen);
        assert_eq!(reason("a,,b"), SelectorProblem::EmptyRequirement);
        assert_eq!(reason("-app=x"), SelectorProblem::Key("-app".into()));
        assert_eq!(reason("app=web!"), SelectorProblem::Value("web!".into()));
        assert_eq!(
            parse_selector("app ~ web").unwrap_err().to_string(),
            "invalid label selector \"app ~ web\": \"app ~ web\": expected =, ==, !=, in or notin after the key"
        );
    }

    #[test]
    fn report_namespace_keeps_that_namespace_and_cluster_scoped_objects() {
        use crate::checks::Finding;
        let obj = |kind: &str, ns: Option<&str>, name: &str| ObjectRef {
            kind: kind.into(),
            namespace: ns.map(str::to_string),
            name: name.into(),
            uid: None,
        };
        let findings = vec![
            Finding::new(
                "failed",
                Severity::Critical,
                obj("Pod", Some("ops"), "a"),
                "x",
            ),
            Finding::new(
                "failed",
                Severity::Warning,
                obj("Pod", Some("shop"), "b"),
                "x",
            ),
            Finding::new("cordoned", Severity::Info, obj("Node", None, "n"), "x"),
        ];
        let round = crate::report::CheckRound {
            checks: vec![CheckResult::new("pods", "3", findings)],
            ..Default::default()
        };
        let now = "2026-12-01T00:00:00Z".parse().unwrap();
        let mut report =
            crate::report::merge(&[], &round, &crate::report::MergeConfig::default(), now);
        let sel = Selection::resolve(
            &SelectArgs {
                namespace: Some("shop".into()),
                ..SelectArgs::default()
            },
            &mut Vec::new(),
        );
        filter_report(&mut report, &sel);
        let names: Vec<&str> = report.checks[0]
            .findings
            .iter()
            .map(|f| f.object.name.as_str())
            .collect();
        assert_eq!(names, ["b", "n"]);
        // The check's severity is the worst of what is shown.
        assert_eq!(report.checks[0].severity, Severity::Warning);
        assert!(report.findings.iter().all(|f| f.object.name != "a"));
    }

    #[test]
    fn report_selector_matches_the_labels_the_report_carries() {
        use crate::checks::Finding;
        let finding = |name: &str, app: Option<&str>| {
            let mut f = Finding::new(
                "crash_loop_back_off",
                Severity::Critical,
                ObjectRef {
                    kind: "Pod".into(),
                    namespace: Some("shop".into()),
                    name: name.into(),
                    uid: None,
                },
                "x",
            );
            if let Some(app) = app {
                f.labels.insert("app".into(), app.into());
            }
            f
        };
        let mut web_job = crate::cleanup::Proposal {
            code: "completed_job".into(),
            object: ObjectRef {
                kind: "Job".into(),
                namespace: Some("shop".into()),
                name: "web-migrate".into(),
                uid: None,
            },
            action: crate::cleanup::Action::Delete,
            propagation: None,
            message: "completed 2026-11-30T00:00:00Z".into(),
            times: BTreeMap::new(),
            labels: BTreeMap::new(),
        };
        let db_job = crate::cleanup::Proposal {
            object: ObjectRef {
                name: "db-backup".into(),
                ..web_job.object.clone()
            },
            ..web_job.clone()
        };
        web_job.labels.insert("app".into(), "web".into());
        let round = crate::report::CheckRound {
            checks: vec![
                CheckResult::new(
                    "pods",
                    "3",
                    vec![
                        finding("web-1", Some("web")),
                        finding("db-0", Some("db")),
                        finding("bare", None),
                    ],
                ),
                CheckResult::new("nodes", "0", vec![]),
            ],
            proposals: vec![web_job, db_job],
            ..Default::default()
        };
        let now = "2026-12-01T00:00:00Z".parse().unwrap();
        let mut report =
            crate::report::merge(&[], &round, &crate::report::MergeConfig::default(), now);
        let sel = Selection::resolve(
            &SelectArgs {
                selector: Some(parse_selector("app=web").unwrap()),
                ..SelectArgs::default()
            },
            &mut Vec::new(),
        );
        filter_report(&mut report, &sel);
        let names = |r: &crate::report::ClusterReport| {
            let pods = r.checks.iter().find(|c| c.name == "pods").unwrap();
            pods.findings
                .iter()
                .map(|f| f.object.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&report), ["web-1"]);
        let tracked: Vec<&str> = report
            .findings
            .iter()
            .map(|f| f.object.name.as_str())
            .collect();
        assert_eq!(tracked, ["web-1"]);
        let proposals: Vec<&str> = report
            .proposals
            .iter()
            .map(|p| p.object.name.as_str())
            .collect();
        assert_eq!(proposals, ["web-migrate"]);
        // A negative selector: objects without the label match it, as kubectl.
        let mut report =
            crate::report::merge(&[], &round, &crate::report::MergeConfig::default(), now);
        let not_db = Selection::resolve(
            &SelectArgs {
                selector: Some(parse_selector("app!=db").unwrap()),
                ..SelectArgs::default()
            },
            &mut Vec::new(),
        );
        filter_report(&mut report, &not_db);
        assert_eq!(names(&report), ["bare", "web-1"]);
    }

    #[test]
    fn a_namespace_on_a_dump_keeps_its_objects_and_what_was_listed() {
        let mut state = ClusterState::default();
        crate::cluster::dump::load_bytes(
            &mut state,
            std::path::Path::new("d.json"),
            br#"{"kind":"List","apiVersion":"v1","items":[
              {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"shop"}},
              {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b","namespace":"ops"}},
              {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"ops"},"spec":{"containers":[]}},
              {"apiVersion":"v1","kind":"Node","metadata":{"name":"n"}}]}"#,
        );
        state.retain_namespaces(&["shop".to_string()]);
        let cms: Vec<_> = state
            .config_maps
            .iter()
            .filter_map(|c| c.metadata.name.as_deref())
            .collect();
        assert_eq!(cms, ["a"]);
        assert_eq!(state.nodes.len(), 1, "cluster-scoped objects stay");
        assert!(state.pods.is_empty());
        // Pods were read: none in shop is "listed, none", so cleanup may still judge.
        assert!(state.listed(crate::cluster::Resource::Pod));
        assert!(!state.listed(crate::cluster::Resource::Job));
    }

    #[test]
    fn namespace_and_selector_choose_what_is_shown() {
        let mut config = vec!["ops".to_string()];
        let args = SelectArgs {
            namespace: Some("shop".into()),
            selector: Some(parse_selector("app=web").unwrap()),
            ..SelectArgs::default()
        };
        let sel = Selection::resolve(&args, &mut config);
        assert_eq!(config, vec!["shop"]);
        let pod = |ns: &str| ObjectRef {
            kind: "Pod".into(),
            namespace: Some(ns.into()),
            name: "p".into(),
            uid: None,
        };
        let web = labels(&[("app", "web")]);
        assert!(sel.shows(&pod("shop"), Some(&web)));
        assert!(!sel.shows(&pod("ops"), Some(&web)));
        assert!(!sel.shows(&pod("shop"), None));
        // A whole resource ("cannot list pods") is always shown.
        assert!(sel.shows(&ObjectRef::default(), None));
        // -A clears the config's namespaces.
        let mut config = vec!["ops".to_string()];
        let all = Selection::resolve(
            &SelectArgs {
                all_namespaces: true,
                ..SelectArgs::default()
            },
            &mut config,
        );
        assert!(config.is_empty() && all.namespaces.is_none());
        assert!(all.shows(&pod("ops"), None));
    }
}
