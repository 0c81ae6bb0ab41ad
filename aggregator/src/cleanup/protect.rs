//! `cleanup.protect`: the one protected list every proposal rule, the scheduled cleanup,
//! `--apply` (through its fresh re-proposal) and the report obey, and the tools that own
//! objects caretaker must not delete (Helm, Argo CD, Flux).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::CleanupKind;

/// Annotation that keeps an object out of every proposal (`"true"`).
pub const KEEP_ANNOTATION: &str = "caretaker.io/keep";

/// A label selector in kubectl's syntax, the same type `checks.exclude` and `-l` use
/// (`k=v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined by commas).
pub(crate) type LabelSelector = crate::checks::silence::Selector;

/// The labels of `meta` (none when it has no labels), as a selector reads them.
fn labels(meta: &ObjectMeta) -> &std::collections::BTreeMap<String, String> {
    static NONE: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    meta.labels.as_ref().unwrap_or(&NONE)
}

/// The `cleanup.protect:` section. An object matching any entry is never proposed: it is
/// listed in the report as kept, with the entry that matched.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Protect {
    /// Namespaces (`*` and `?` wildcards) whose objects of every kind are kept.
    pub namespaces: Vec<String>,
    /// Label selectors (`team=payments`, `app.kubernetes.io/part-of=billing,tier!=dev`).
    pub selectors: Vec<LabelSelector>,
    /// Name patterns (`*` and `?` wildcards) on `NAME` or, with a `/`, `NAMESPACE/NAME`.
    pub names: Vec<String>,
    /// Kinds never proposed (as `--kind` takes them).
    pub kinds: Vec<CleanupKind>,
}

/// `*` (any run) and `?` (one character) wildcards.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

impl Protect {
    /// The entry that protects an object of `kind` with `meta`, as the report shows it.
    pub fn matching(&self, kind: CleanupKind, meta: &ObjectMeta) -> Option<String> {
        if meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(KEEP_ANNOTATION))
            .is_some_and(|v| v == "true")
        {
            return Some(format!("annotation {KEEP_ANNOTATION}=true"));
        }
        if self.kinds.contains(&kind) {
            return Some(format!("cleanup.protect.kinds: {kind:?}"));
        }
        let ns = meta.namespace.as_deref().unwrap_or("");
        let name = meta.name.as_deref().unwrap_or("");
        if let Some(p) = self.namespaces.iter().find(|p| glob(p, ns)) {
            return Some(format!("cleanup.protect.namespaces: {p}"));
        }
        if let Some(s) = self.selectors.iter().find(|s| s.matches(labels(meta))) {
            return Some(format!("cleanup.protect.selectors: {s}"));
        }
        let full = format!("{ns}/{name}");
        if let Some(p) = self.names.iter().find(|p| {
            if p.contains('/') {
                glob(p, &full)
            } else {
                glob(p, name)
            }
        }) {
            return Some(format!("cleanup.protect.names: {p}"));
        }
        None
    }
}

/// The tool that manages an object, and what to do there instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manager {
    /// `Helm`, `Argo CD`, `Flux`.
    pub tool: &'static str,
    /// The sentence the report shows.
    pub(crate) advice: String,
}

/// Who manages `meta`: Helm (`meta.helm.sh/release-name` annotation or
/// `app.kubernetes.io/managed-by: Helm`), Argo CD (`argocd.argoproj.io/tracking-id`
/// annotation, or the `app.kubernetes.io/instance` tracking label when `argo_known`), Flux
/// (any `*.toolkit.fluxcd.io/*` label).
pub(crate) fn managed_by(meta: &ObjectMeta, argo_known: bool) -> Option<Manager> {
    let ann = |k: &str| meta.annotations.as_ref().and_then(|a| a.get(k));
    let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k));
    if let Some(release) = ann("meta.helm.sh/release-name")
        .map(String::as_str)
        .or(
            (label("app.kubernetes.io/managed-by").map(String::as_str) == Some("Helm"))
                .then_some("?"),
        )
    {
        let ns = ann("meta.helm.sh/release-namespace")
            .or(meta.namespace.as_ref())
            .map_or("", String::as_str);
        return Some(Manager {
            tool: "Helm",
            advice: format!(
                "managed by Helm (release {release} in {ns}): remove it from the chart or its values and run helm upgrade; deleting it here would be undone, or break the next upgrade"
            ),
        });
    }
    let argo = ann("argocd.argoproj.io/tracking-id")
        .map(|t| t.split(':').next().unwrap_or(t).to_string())
        .or_else(|| {
            argo_known
                .then(|| label("app.kubernetes.io/instance").cloned())
                .flatten()
        });
    if let Some(app) = argo {
        return Some(Manager {
            tool: "Argo CD",
            advice: format!(
                "managed by Argo CD (application {app}): remove it from the application's source; Argo CD prunes it on sync (or recreates it if deleted here)"
            ),
        });
    }
    let flux = meta.labels.iter().flatten().find(|(k, _)| {
        k.split_once('/')
            .is_some_and(|(g, _)| g.ends_with(".toolkit.fluxcd.io"))
    });
    if let Some((k, v)) = flux {
        let what = k.split('.').next().unwrap_or("kustomize");
        return Some(Manager {
            tool: "Flux",
            advice: format!(
                "managed by Flux ({what} {v}): remove it from the source repository; Flux prunes it (prune: true) or recreates it if deleted here"
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(ns: &str, name: &str, labels: &[(&str, &str)], ann: &[(&str, &str)]) -> ObjectMeta {
        let m = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            labels: m(labels),
            annotations: m(ann),
            ..Default::default()
        }
    }

    #[test]
    fn every_protect_entry_matches_and_names_itself() {
        let p = Protect {
            namespaces: vec!["team-*".into()],
            selectors: vec!["tier=prod,!temp".to_string().try_into().unwrap()],
            names: vec!["*-backup".into(), "billing/ledger-?".into()],
            kinds: vec![CleanupKind::Secret],
        };
        let m = |ns, name, l: &[(&str, &str)], a: &[(&str, &str)]| {
            p.matching(CleanupKind::ConfigMap, &meta(ns, name, l, a))
        };
        assert_eq!(
            m("team-a", "x", &[], &[]).unwrap(),
            "cleanup.protect.namespaces: team-*"
        );
        assert_eq!(
            m("n", "x", &[("tier", "prod")], &[]).unwrap(),
            "cleanup.protect.selectors: tier=prod,!temp"
        );
        assert_eq!(m("n", "x", &[("tier", "prod"), ("temp", "1")], &[]), None);
        assert_eq!(
            m("n", "db-backup", &[], &[]).unwrap(),
            "cleanup.protect.names: *-backup"
        );
        assert_eq!(
            m("billing", "ledger-1", &[], &[]).unwrap(),
            "cleanup.protect.names: billing/ledger-?"
        );
        assert_eq!(m("other", "ledger-1", &[], &[]), None);
        assert_eq!(
            m("n", "x", &[], &[(KEEP_ANNOTATION, "true")]).unwrap(),
            "annotation caretaker.io/keep=true"
        );
        assert_eq!(
            p.matching(CleanupKind::Secret, &meta("n", "x", &[], &[]))
                .unwrap(),
            "cleanup.protect.kinds: Secret"
        );
        assert!(LabelSelector::try_from(",a".to_string()).is_err());
        // The kubectl syntax in full, as in `checks.exclude` and `-l`.
        let set: LabelSelector = "tier in (prod,staging),!temp"
            .to_string()
            .try_into()
            .unwrap();
        assert!(set.matches(labels(&meta("n", "x", &[("tier", "staging")], &[]))));
        assert!(!set.matches(labels(&meta("n", "x", &[("tier", "dev")], &[]))));
        assert!(!set.matches(labels(&meta("n", "x", &[], &[]))));
    }

    #[test]
    fn managers_are_told_apart() {
        let helm = managed_by(
            &meta("n", "x", &[], &[("meta.helm.sh/release-name", "web")]),
            false,
        )
        .unwrap();
        assert_eq!(helm.tool, "Helm");
        assert!(helm.advice.contains("release web in n"), "{}", helm.advice);
        let argo = managed_by(
            &meta(
                "n",
                "x",
                &[],
                &[("argocd.argoproj.io/tracking-id", "shop:/ConfigMap:n/x")],
            ),
            false,
        )
        .unwrap();
        assert!(argo.advice.contains("application shop"), "{}", argo.advice);
        let label_only = meta("n", "x", &[("app.kubernetes.io/instance", "shop")], &[]);
        assert_eq!(managed_by(&label_only, false), None);
        assert_eq!(managed_by(&label_only, true).unwrap().tool, "Argo CD");
        let flux = managed_by(
            &meta(
                "n",
                "x",
                &[("kustomize.toolkit.fluxcd.io/name", "apps")],
                &[],
            ),
            false,
        )
        .unwrap();
        assert_eq!(flux.tool, "Flux");
        assert!(flux.advice.contains("kustomize apps"), "{}", flux.advice);
    }
}
