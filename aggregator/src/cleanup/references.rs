//! The reference graph: which ConfigMaps, Secrets and PersistentVolumeClaims something
//! still uses, and who. Every cleanup rule that proposes one of them, and every "unused"
//! report, asks [`ReferenceGraph::used_by`]; nothing else decides "in use".
//!
//! What holds a reference (per namespace unless said otherwise):
//! - pod specs and the pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets,
//!   Jobs and CronJobs: `volumes` (`configMap`, `secret`, `projected.sources[]`, the
//!   `secretRef`s of volume plugins, `persistentVolumeClaim`), `env[].valueFrom` and
//!   `envFrom` of containers, init and ephemeral containers, `imagePullSecrets`;
//!   StatefulSet `volumeClaimTemplates` (claims `TEMPLATE-STS-N`);
//! - container `command`/`args` flags that name an object, `NAME` or `NS/NAME`, as
//!   `--flag=value` or `--flag value` (see [`flag_target`]), with `$(VAR)` expanded from
//!   the container's env (literal values; `fieldRef` `metadata.namespace` and
//!   `metadata.name`); a part that cannot be expanded matches any namespace;
//! - label selection by k8s-sidecar style containers (Grafana's dashboard and datasource
//!   sidecar): env `LABEL` (and `LABEL_VALUE`), `NAMESPACE` (`ALL` or a list; default the
//!   pod's), `RESOURCE` (`configmap` default, `secret`, `both`); Velero's
//!   `velero.io/plugin-config` label; Prometheus Operator's legacy `ruleSelector` on
//!   ConfigMaps;
//! - leader-election locks: ConfigMaps annotated `control-plane.alpha.kubernetes.io/leader`,
//!   and ConfigMaps named like a coordination Lease of their namespace (the
//!   `configmapsleases` lock; Leases come from dumps: the live source does not list them,
//!   the aggregator's RBAC keeps Leases to its own namespace);
//! - Ingress `tls[].secretName` and `*-secret` annotations (`auth-secret`,
//!   `auth-tls-secret`: `NAME` or `NS/NAME`); Gateway `listeners[].tls.certificateRefs`;
//!   ServiceAccount `secrets` and `imagePullSecrets`; cert-manager Certificate
//!   `secretName`, Issuer and ClusterIssuer secrets (`ca.secretName`, every
//!   `*SecretRef`/`credentialsRef`, e.g. `acme.privateKeySecretRef` and solver secrets;
//!   a ClusterIssuer's in any namespace); Prometheus and Alertmanager `configMaps`,
//!   `secrets`, `configSecret` (default `alertmanager-NAME`) and `*SecretRef`s;
//!   webhook configurations, APIServices and CustomResourceDefinitions (conversion webhooks)
//!   through cert-manager's
//!   `cert-manager.io/inject-ca-from` (the Certificate's secret) and `inject-ca-from-secret`;
//! - ownerReferences: an object other objects name as their owner is in use (deleting it
//!   would cascade to them).
//!
//! The graph borrows from the state: building it for 150,000 pods allocates only for the
//! few flag values that need expanding.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use serde_json::Value;

use crate::cluster::pod::{ContainerInfo, PodSpecInfo};
use crate::cluster::{ClusterState, Resource};

/// Annotation client-go's ConfigMap and Endpoints locks write.
pub(crate) const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
/// Label Velero finds its plugin configuration by.
pub(crate) const VELERO_PLUGIN_CONFIG_LABEL: &str = "velero.io/plugin-config";
/// Env vars a k8s-sidecar style container selects ConfigMaps and Secrets by.
const SIDECAR_ENV: [&str; 4] = ["LABEL", "LABEL_VALUE", "NAMESPACE", "RESOURCE"];

/// The kinds of object the graph knows users of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    ConfigMap,
    Secret,
    Pvc,
}

/// Who uses an object, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Referrer<'a> {
    pub kind: &'static str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// The field or mechanism: `volume`, `env`, `--configmap`, `label LABEL=…`.
    pub via: Cow<'a, str>,
}

impl std::fmt::Display for Referrer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {} ({})", self.kind, self.name, self.via)
        } else {
            write!(
                f,
                "{} {}/{} ({})",
                self.kind, self.namespace, self.name, self.via
            )
        }
    }
}

fn who<'a>(kind: &'static str, meta: &'a ObjectMeta, via: impl Into<Cow<'a, str>>) -> Referrer<'a> {
    Referrer {
        kind,
        namespace: meta.namespace.as_deref().unwrap_or(""),
        name: meta.name.as_deref().unwrap_or(""),
        via: via.into(),
    }
}

/// Namespaces a label selection looks in.
#[derive(Debug, Clone)]
enum Scope<'a> {
    All,
    In(Vec<Cow<'a, str>>),
}

/// "Objects of `targets` with label `key` (= `value`) in `scope` are read by `by`".
#[derive(Debug, Clone)]
struct Selection<'a> {
    targets: (bool, bool),
    scope: Scope<'a>,
    labels: Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>,
    by: Referrer<'a>,
}

type Key<'a> = (Target, Cow<'a, str>, Cow<'a, str>);

/// FxHash (rustc's): the graph's keys are short names hashed once per reference, and
/// SipHash's DoS resistance buys nothing for names read from the cluster being judged.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Fx = std::hash::BuildHasherDefault<FxHasher>;

/// Every known user of ConfigMaps, Secrets and PVCs in one snapshot.
#[derive(Debug, Default)]
pub(crate) struct ReferenceGraph<'a> {
    exact: HashMap<Key<'a>, Referrer<'a>, Fx>,
    /// References whose namespace is unknown (or a ClusterIssuer's): any namespace.
    any_namespace: HashMap<(Target, Cow<'a, str>), Referrer<'a>, Fx>,
    selections: Vec<Selection<'a>>,
    /// Owner uid → one dependent.
    dependents: HashMap<&'a str, Referrer<'a>, Fx>,
    /// (namespace, name) of Leases.
    leases: HashSet<(&'a str, &'a str)>,
    /// (namespace, `TEMPLATE-STS-`) of StatefulSet claim templates.
    claim_prefixes: Vec<(&'a str, String, Referrer<'a>)>,
}

/// The pod templates of workloads, converted once to the pod view (the graph borrows them).
pub(crate) struct Templates {
    items: Vec<(&'static str, ObjectMeta, PodSpecInfo)>,
}

/// Which objects' references do not count: those deleted in the same run.
#[derive(Debug, Default)]
pub(crate) struct Skip<'a> {
    pub(crate) uids: HashSet<&'a str>,
}

impl Skip<'_> {
    /// [`Skip::skips`] for a pod: only Failed pods are deleted on their own, so the uid is
    /// looked up only for them (150,000 pods, issue 5's benchmark).
    fn skips_pod(&self, p: &crate::cluster::PodInfo) -> bool {
        if self.uids.is_empty() {
            return false;
        }
        let owner_deleted = p
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "Job" && self.uids.contains(o.uid.as_str()));
        owner_deleted || (p.status.phase.as_deref() == Some("Failed") && self.skips(&p.metadata))
    }

    fn skips(&self, meta: &ObjectMeta) -> bool {
        meta.uid.as_deref().is_some_and(|u| self.uids.contains(u))
            || meta
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Job" && self.uids.contains(o.uid.as_str()))
    }
}

impl Templates {
    /// The templates of every workload in `state` not skipped.
    pub(crate) fn collect(state: &ClusterState, skip: &Skip) -> Templates {
        let mut items = Vec::new();
        let mut add = |kind: &'static str,
                       meta: &ObjectMeta,
                       spec: Option<&k8s_openapi::api::core::v1::PodSpec>| {
            if skip.skips(meta) {
                return;
            }
            if let Some(spec) = spec {
                let m = ObjectMeta {
                    name: meta.name.clone(),
                    namespace: meta.namespace.clone(),
                    ..Default::default()
                };
                items.push((kind, m, PodSpecInfo::from_spec(spec)));
            }
        };
        for d in &state.deployments {
            add("Deployment", &d.metadata, d.spec.template.spec.as_ref());
        }
        for r in &state.replica_sets {
            add(
                "ReplicaSet",
                &r.metadata,
                r.spec.template.as_ref().and_then(|t| t.spec.as_ref()),
            );
        }
        for s in &state.stateful_sets {
            add("StatefulSet", &s.metadata, s.spec.template.spec.as_ref());
        }
        for d in &state.daemon_sets {
            add("DaemonSet", &d.metadata, d.spec.template.spec.as_ref());
        }
        for j in &state.jobs {
            add(
                "Job",
                &j.metadata,
                j.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
            );
        }
        for c in &state.cron_jobs {
            add(
                "CronJob",
                &c.metadata,
                c.spec
                    .job_template
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.spec.as_ref()),
            );
        }
        Templates { items }
    }
}

/// The kind of object a command-line flag names, if it names one: ingress-nginx's
/// `--configmap`, `--tcp-services-configmap`, `--udp-services-configmap` (ConfigMaps),
/// `--default-ssl-certificate` (a TLS Secret), `--election-id` (its lock ConfigMap); and,
/// to err on the side of keeping, any flag whose name contains `configmap`/`config-map`
/// (a ConfigMap) or `secret`/`certificate` (a Secret).
pub(crate) fn flag_target(flag: &str) -> Option<Target> {
    let f = flag.trim_start_matches('-').to_ascii_lowercase();
    if !flag.starts_with('-') || f.is_empty() {
        return None;
    }
    if f == "election-id"
        || f == "leader-election-id"
        || f.contains("configmap")
        || f.contains("config-map")
    {
        Some(Target::ConfigMap)
    } else if f.contains("secret") || f.contains("certificate") {
        Some(Target::Secret)
    } else {
        None
    }
}

/// The flag and value pairs in `args` that name an object (`--f=v` or `--f v`).
fn flag_values(args: &[String]) -> impl Iterator<Item = (&str, Target, &str)> {
    args.iter().enumerate().filter_map(|(i, a)| {
        if let Some((f, v)) = a.split_once('=') {
            return flag_target(f).map(|t| (f, t, v));
        }
        let t = flag_target(a)?;
        let v = args.get(i + 1).filter(|v| !v.starts_with('-'))?;
        Some((a.as_str(), t, v.as_str()))
    })
}

/// `$(NAME)` references in `s`.
fn var_refs(s: &str) -> impl Iterator<Item = &str> {
    s.split("$(")
        .skip(1)
        .filter_map(|r| r.split_once(')').map(|(n, _)| n))
}

/// Drops the arguments, command words and env vars of `c` that name nothing (what pod
/// compaction keeps for the graph).
pub(crate) fn compact_container(c: &mut ContainerInfo) {
    fn keep_flags(args: &mut Vec<String>) {
        let mut keep = vec![false; args.len()];
        for (i, a) in args.iter().enumerate() {
            if let Some((f, _)) = a.split_once('=') {
                keep[i] = flag_target(f).is_some();
            } else if flag_target(a).is_some() {
                keep[i] = true;
                if let Some(k) = keep.get_mut(i + 1) {
                    *k = true;
                }
            }
        }
        let mut k = keep.into_iter();
        args.retain(|_| k.next().unwrap_or(false));
        args.shrink_to_fit();
    }
    keep_flags(&mut c.args);
    keep_flags(&mut c.command);
    let vars: HashSet<String> = c
        .args
        .iter()
        .chain(&c.command)
        .flat_map(|a| var_refs(a))
        .map(str::to_string)
        .collect();
    let sidecar = c.env.iter().any(|e| e.name == "LABEL");
    c.env.retain(|e| {
        e.value_from
            .as_ref()
            .is_some_and(|v| v.config_map_key_ref.is_some() || v.secret_key_ref.is_some())
            || vars.contains(&e.name)
            || (sidecar && SIDECAR_ENV.contains(&e.name.as_str()))
    });
}

/// `$(VAR)` expanded from the container's env; `None` where a variable is unknown.
fn expand<'s>(
    value: &'s str,
    c: &ContainerInfo,
    ns: &str,
    pod: Option<&str>,
) -> Option<Cow<'s, str>> {
    if !value.contains("$(") {
        return Some(Cow::Borrowed(value));
    }
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find("$(") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let (name, tail) = after.split_once(')')?;
        let e = c.env.iter().rev().find(|e| e.name == name)?;
        let v = match (
            &e.value,
            e.value_from.as_ref().and_then(|f| f.field_ref.as_ref()),
        ) {
            (Some(v), _) => v.as_str(),
            (None, Some(f)) if f.field_path == "metadata.namespace" => ns,
            (None, Some(f)) if f.field_path == "metadata.name" => pod?,
            _ => return None,
        };
        out.push_str(v);
        rest = tail;
    }
    out.push_str(rest);
    Some(Cow::Owned(out))
}

fn env_value<'c>(c: &'c ContainerInfo, name: &str) -> Option<&'c str> {
    c.env
        .iter()
        .rev()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

fn label_pairs(sel: &Value) -> Vec<(Cow<'_, str>, Option<Cow<'_, str>>)> {
    let mut out = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            out.push((Cow::Borrowed(k.as_str()), v.as_str().map(Cow::Borrowed)));
        }
    }
    if let Some(es) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in es {
            let key = e.get("key").and_then(Value::as_str);
            let op = e.get("operator").and_then(Value::as_str);
            // `In` with one value is an equality; anything else: the key alone (keeps more).
            if let (Some(k), Some("In" | "Exists")) = (key, op) {
                let vals = e.get("values").and_then(Value::as_array);
                let v = match vals.map(Vec::as_slice) {
                    Some([one]) => one.as_str().map(Cow::Borrowed),
                    _ => None,
                };
                out.push((Cow::Borrowed(k), v));
            }
        }
    }
    out
}

/// Every `*SecretRef`/`credentialsRef` `{name}` and `secretName` string under `v`.
fn walk_secret_names<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let lk = k.to_ascii_lowercase();
                if lk.ends_with("secretref") || lk == "credentialsref" {
                    if let Some(n) = x.get("name").and_then(Value::as_str) {
                        out.push(n);
                    }
                } else if lk == "secretname"
                    && let Some(n) = x.as_str()
                {
                    out.push(n);
                }
                walk_secret_names(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk_secret_names(x, out)),
        _ => {}
    }
}

fn split_ns_name(v: &str) -> (Option<&str>, &str) {
    match v.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, v),
    }
}

impl<'a> ReferenceGraph<'a> {
    /// The graph of `state`, the references of objects in `skip` left out.
    pub(crate) fn build(
        state: &'a ClusterState,
        templates: &'a Templates,
        skip: &Skip,
    ) -> ReferenceGraph<'a> {
        let mut g = ReferenceGraph::default();
        for p in &state.pods {
            if skip.skips_pod(p) {
                continue;
            }
            let ns = p.metadata.namespace.as_deref().unwrap_or("");
            g.add_spec(ns, p.metadata.name.as_deref(), &p.spec, || {
                who("Pod", &p.metadata, "")
            });
        }
        for (kind, meta, spec) in &templates.items {
            let ns = meta.namespace.as_deref().unwrap_or("");
            g.add_spec(ns, None, spec, || who(kind, meta, "template"));
        }
        for s in &state.stateful_sets {
            let ns = s.metadata.namespace.as_deref().unwrap_or("");
            let sts = s.metadata.name.as_deref().unwrap_or("");
            for t in s.spec.volume_claim_templates.iter().flatten() {
                let tpl = t.metadata.name.as_deref().unwrap_or("");
                g.claim_prefixes.push((
                    ns,
                    format!("{tpl}-{sts}-"),
                    who("StatefulSet", &s.metadata, "volumeClaimTemplates"),
                ));
            }
        }
        for sa in &state.service_accounts {
            let ns = sa.metadata.namespace.as_deref().unwrap_or("");
            for s in sa.secrets.iter().flatten() {
                if let Some(n) = s.name.as_deref() {
                    g.add(
                        Target::Secret,
                        ns,
                        n,
                        who("ServiceAccount", &sa.metadata, "secrets"),
                    );
                }
            }
            for s in sa.image_pull_secrets.iter().flatten() {
                g.add(
                    Target::Secret,
                    ns,
                    &s.name,
                    who("ServiceAccount", &sa.metadata, "imagePullSecrets"),
                );
            }
        }
        g.add_ingresses(&state.ingresses);
        g.add_gateways(&state.gateways);
        g.add_cert_manager(state);
        g.add_prometheus_operator(state);
        for l in &state.leases {
            g.leases.insert((
                l.metadata.namespace.as_deref().unwrap_or(""),
                l.metadata.name.as_deref().unwrap_or(""),
            ));
        }
        g.add_owners(state, skip);
        g
    }

    fn add(&mut self, t: Target, ns: &'a str, name: &'a str, by: Referrer<'a>) {
        if name.is_empty() {
            return;
        }
        self.exact
            .entry((t, Cow::Borrowed(ns), Cow::Borrowed(name)))
            .or_insert(by);
    }

    fn add_cow(
        &mut self,
        t: Target,
        ns: Option<Cow<'a, str>>,
        name: Cow<'a, str>,
        by: Referrer<'a>,
    ) {
        if name.is_empty() {
            return;
        }
        match ns {
            Some(ns) => {
                self.exact.entry((t, ns, name)).or_insert(by);
            }
            None => {
                self.any_namespace.entry((t, name)).or_insert(by);
            }
        }
    }

    fn add_spec(
        &mut self,
        ns: &'a str,
        pod: Option<&'a str>,
        spec: &'a PodSpecInfo,
        by: impl Fn() -> Referrer<'a>,
    ) {
        let via = |v: &'static str| {
            let mut r = by();
            r.via = Cow::Borrowed(v);
            r
        };
        for v in &spec.volumes {
            if let Some(c) = &v.config_map {
                self.add(Target::ConfigMap, ns, &c.name, via("volume"));
            }
            if let Some(n) = v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) {
                self.add(Target::Secret, ns, n, via("volume"));
            }
            for s in v.projected.iter().flat_map(|p| &p.sources) {
                if let Some(c) = &s.config_map {
                    self.add(Target::ConfigMap, ns, &c.name, via("projected volume"));
                }
                if let Some(c) = &s.secret {
                    self.add(Target::Secret, ns, &c.name, via("projected volume"));
                }
            }
            if let Some(c) = &v.persistent_volume_claim {
                self.add(Target::Pvc, ns, &c.claim_name, via("volume"));
            }
            for s in v.plugin_secrets() {
                self.add(Target::Secret, ns, s, via("volume plugin secretRef"));
            }
        }
        for s in &spec.image_pull_secrets {
            self.add(Target::Secret, ns, &s.name, via("imagePullSecrets"));
        }
        for c in spec
            .containers
            .iter()
            .chain(&spec.init_containers)
            .chain(&spec.ephemeral_containers)
        {
            for f in &c.env_from {
                if let Some(r) = &f.config_map_ref {
                    self.add(Target::ConfigMap, ns, &r.name, via("envFrom"));
                }
                if let Some(r) = &f.secret_ref {
                    self.add(Target::Secret, ns, &r.name, via("envFrom"));
                }
            }
            for e in &c.env {
                if let Some(v) = &e.value_from {
                    if let Some(r) = &v.config_map_key_ref {
                        self.add(Target::ConfigMap, ns, &r.name, via("env"));
                    }
                    if let Some(r) = &v.secret_key_ref {
                        self.add(Target::Secret, ns, &r.name, via("env"));
                    }
                }
            }
            for (flag, t, value) in flag_values(&c.args).chain(flag_values(&c.command)) {
                let mut r = by();
                r.via = Cow::Borrowed(flag);
                match expand(value, c, ns, pod) {
                    Some(v) => {
                        let (vns, name) = match &v {
                            Cow::Borrowed(b) => {
                                let (n, m) = split_ns_name(b);
                                (n.map(Cow::Borrowed), Cow::Borrowed(m))
                            }
                            Cow::Owned(o) => {
                                let (n, m) = split_ns_name(o);
                                (
                                    n.map(|n| Cow::Owned(n.to_string())),
                                    Cow::Owned(m.to_string()),
                                )
                            }
                        };
                        let vns = vns.or(Some(Cow::Borrowed(ns)));
                        self.add_cow(t, vns, name, r);
                    }
                    None => {
                        // A part could not be expanded: the name after the last `/`, if
                        // literal, in any namespace.
                        let name = value.rsplit('/').next().unwrap_or(value);
                        if !name.contains("$(") {
                            self.add_cow(t, None, Cow::Borrowed(name), r);
                        }
                    }
                }
            }
            if let Some(label) = env_value(c, "LABEL") {
                let value = env_value(c, "LABEL_VALUE").map(Cow::Borrowed);
                let scope = match env_value(c, "NAMESPACE") {
                    Some(n) if n.eq_ignore_ascii_case("ALL") => Scope::All,
                    Some(n) if !n.trim().is_empty() => {
                        Scope::In(n.split(',').map(|s| Cow::Borrowed(s.trim())).collect())
                    }
                    _ => Scope::In(vec![Cow::Borrowed(ns)]),
                };
                let targets = match env_value(c, "RESOURCE")
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    Some("secret") => (false, true),
                    Some("both") => (true, true),
                    _ => (true, false),
                };
                let mut r = by();
                r.via = Cow::Owned(format!("sidecar label {label}"));
                self.selections.push(Selection {
                    targets,
                    scope,
                    labels: vec![(Cow::Borrowed(label), value)],
                    by: r,
                });
            }
        }
    }

    fn add_ingresses(&mut self, ingresses: &'a [DynamicObject]) {
        for i in ingresses {
            let ns = i.metadata.namespace.as_deref().unwrap_or("");
            let tls = i
                .data
                .get("spec")
                .and_then(|s| s.get("tls"))
                .and_then(Value::as_array);
            for t in tls.into_iter().flatten() {
                if let Some(n) = t.get("secretName").and_then(Value::as_str) {
                    self.add(Target::Secret, ns, n, who("Ingress", &i.metadata, "tls"));
                }
            }
            for (k, v) in i.metadata.annotations.iter().flatten() {
                if k.ends_with("-secret") {
                    let (vns, name) = split_ns_name(v);
                    let r = who("Ingress", &i.metadata, k.as_str());
                    self.add_cow(
                        Target::Secret,
                        Some(Cow::Borrowed(vns.unwrap_or(ns))),
                        Cow::Borrowed(name),
                        r,
                    );
                }
            }
        }
    }

    fn add_gateways(&mut self, gateways: &'a [DynamicObject]) {
        for g in gateways {
            let ns = g.metadata.namespace.as_deref().unwrap_or("");
            let listeners = g
                .data
                .get("spec")
                .and_then(|s| s.get("listeners"))
                .and_then(Value::as_array);
            for l in listeners.into_iter().flatten() {
                let refs = l
                    .get("tls")
                    .and_then(|t| t.get("certificateRefs"))
                    .and_then(Value::as_array);
                for r in refs.into_iter().flatten() {
                    let kind = r.get("kind").and_then(Value::as_str).unwrap_or("Secret");
                    if kind != "Secret" {
                        continue;
                    }
                    let Some(name) = r.get("name").and_then(Value::as_str) else {
                        continue;
                    };
                    let rns = r.get("namespace").and_then(Value::as_str).unwrap_or(ns);
                    self.add(
                        Target::Secret,
                        rns,
                        name,
                        who("Gateway", &g.metadata, "certificateRefs"),
                    );
                }
            }
        }
    }

    fn add_cert_manager(&mut self, state: &'a ClusterState) {
        let mut cert_secret: HashMap<(&str, &str), &str> = HashMap::new();
        for c in &state.certificates {
            let ns = c.metadata.namespace.as_deref().unwrap_or("");
            if let Some(n) = c
                .data
                .get("spec")
                .and_then(|s| s.get("secretName"))
                .and_then(Value::as_str)
            {
                self.add(
                    Target::Secret,
                    ns,
                    n,
                    who("Certificate", &c.metadata, "secretName"),
                );
                cert_secret.insert((ns, c.metadata.name.as_deref().unwrap_or("")), n);
            }
        }
        for (kind, objs, any_ns) in [
            ("Issuer", &state.issuers, false),
            ("ClusterIssuer", &state.cluster_issuers, true),
        ] {
            for i in objs {
                let mut names = Vec::new();
                if let Some(spec) = i.data.get("spec") {
                    walk_secret_names(spec, &mut names);
                }
                let ns = i.metadata.namespace.as_deref().unwrap_or("");
                for n in names {
                    let r = who(kind, &i.metadata, "secret reference");
                    let target_ns = (!any_ns).then_some(Cow::Borrowed(ns));
                    self.add_cow(Target::Secret, target_ns, Cow::Borrowed(n), r);
                }
            }
        }
        for (kind, objs) in [
            ("ValidatingWebhookConfiguration", &state.validating_webhooks),
            ("MutatingWebhookConfiguration", &state.mutating_webhooks),
            ("APIService", &state.api_services),
            ("CustomResourceDefinition", &state.crds),
        ] {
            for o in objs {
                let ann = o.metadata.annotations.as_ref();
                if let Some(v) = ann.and_then(|a| a.get("cert-manager.io/inject-ca-from-secret")) {
                    let (ns, name) = split_ns_name(v);
                    let r = who(kind, &o.metadata, "cert-manager.io/inject-ca-from-secret");
                    self.add_cow(
                        Target::Secret,
                        ns.map(Cow::Borrowed),
                        Cow::Borrowed(name),
                        r,
                    );
                }
                if let Some(v) = ann.and_then(|a| a.get("cert-manager.io/inject-ca-from")) {
                    let (ns, name) = split_ns_name(v);
                    if let Some(s) =
                        ns.and_then(|ns| cert_secret.get(&(ns, name)).map(|s| (ns, *s)))
                    {
                        self.add(
                            Target::Secret,
                            s.0,
                            s.1,
                            who(kind, &o.metadata, "cert-manager.io/inject-ca-from"),
                        );
                    }
                }
            }
        }
    }

    fn add_prometheus_operator(&mut self, state: &'a ClusterState) {
        for (kind, objs) in [
            ("Prometheus", &state.prometheuses),
            ("Alertmanager", &state.alertmanagers),
        ] {
            for o in objs {
                let ns = o.metadata.namespace.as_deref().unwrap_or("");
                let Some(spec) = o.data.get("spec") else {
                    continue;
                };
                for (field, t) in [
                    ("configMaps", Target::ConfigMap),
                    ("secrets", Target::Secret),
                ] {
                    for n in spec
                        .get(field)
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(n) = n.as_str() {
                            self.add(t, ns, n, who(kind, &o.metadata, field));
                        }
                    }
                }
                let mut names = Vec::new();
                walk_secret_names(spec, &mut names);
                for field in [
                    "additionalScrapeConfigs",
                    "additionalAlertManagerConfigs",
                    "additionalAlertRelabelConfigs",
                ] {
                    if let Some(n) = spec
                        .get(field)
                        .and_then(|v| v.get("name"))
                        .and_then(Value::as_str)
                    {
                        names.push(n);
                    }
                }
                for n in names {
                    self.add(
                        Target::Secret,
                        ns,
                        n,
                        who(kind, &o.metadata, "secret reference"),
                    );
                }
                if kind == "Alertmanager" {
                    match spec.get("configSecret").and_then(Value::as_str) {
                        Some(n) => self.add(
                            Target::Secret,
                            ns,
                            n,
                            who(kind, &o.metadata, "configSecret"),
                        ),
                        None => {
                            let name = format!(
                                "alertmanager-{}",
                                o.metadata.name.as_deref().unwrap_or("")
                            );
                            self.add_cow(
                                Target::Secret,
                                Some(Cow::Borrowed(ns)),
                                Cow::Owned(name),
                                who(kind, &o.metadata, "default configSecret"),
                            );
                        }
                    }
                }
                if let Some(sel) = spec.get("ruleSelector") {
                    let labels = label_pairs(sel);
                    if !labels.is_empty() {
                        let scope = match spec.get("ruleNamespaceSelector") {
                            None | Some(Value::Null) => Scope::In(vec![Cow::Borrowed(ns)]),
                            Some(_) => Scope::All,
                        };
                        self.selections.push(Selection {
                            targets: (true, false),
                            scope,
                            labels,
                            by: who(kind, &o.metadata, "ruleSelector"),
                        });
                    }
                }
            }
        }
    }

    fn add_owners(&mut self, state: &'a ClusterState, skip: &Skip) {
        let mut add = |kind: &'static str, meta: &'a ObjectMeta| {
            // Only owners the graph judges; checked before anything is hashed.
            let judged = |o: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference| {
                matches!(
                    o.kind.as_str(),
                    "ConfigMap" | "Secret" | "PersistentVolumeClaim"
                )
            };
            if !meta.owner_references.iter().flatten().any(|o| judged(&o)) || skip.skips(meta) {
                return;
            }
            for o in meta.owner_references.iter().flatten().filter(judged) {
                self.dependents
                    .entry(o.uid.as_str())
                    .or_insert_with(|| who(kind, meta, "ownerReferences"));
            }
        };
        for p in &state.pods {
            add("Pod", &p.metadata);
        }
        for x in &state.config_maps {
            add("ConfigMap", &x.metadata);
        }
        for x in &state.secrets {
            add("Secret", &x.metadata);
        }
        for x in &state.pvcs {
            add("PersistentVolumeClaim", &x.metadata);
        }
        for x in &state.replica_sets {
            add("ReplicaSet", &x.metadata);
        }
        for x in &state.jobs {
            add("Job", &x.metadata);
        }
        for x in &state.deployments {
            add("Deployment", &x.metadata);
        }
        for x in &state.stateful_sets {
            add("StatefulSet", &x.metadata);
        }
        for x in &state.daemon_sets {
            add("DaemonSet", &x.metadata);
        }
        for x in &state.service_accounts {
            add("ServiceAccount", &x.metadata);
        }
        for r in Resource::ALL {
            for x in state.dynamic(r).unwrap_or_default() {
                add(r.kind(), &x.metadata);
            }
        }
    }

    /// Who uses the object of kind `t` with metadata `meta`, if anything does.
    pub(crate) fn used_by(&self, t: Target, meta: &'a ObjectMeta) -> Option<Referrer<'a>> {
        let ns = meta.namespace.as_deref().unwrap_or("");
        let name = meta.name.as_deref().unwrap_or("");
        if let Some(r) = self.exact.get(&(t, Cow::Borrowed(ns), Cow::Borrowed(name))) {
            return Some(r.clone());
        }
        if let Some(r) = self.any_namespace.get(&(t, Cow::Borrowed(name))) {
            return Some(r.clone());
        }
        let labels = meta.labels.as_ref();
        let annotations = meta.annotations.as_ref();
        for s in &self.selections {
            let wanted = match t {
                Target::ConfigMap => s.targets.0,
                Target::Secret => s.targets.1,
                Target::Pvc => false,
            };
            let in_scope = match &s.scope {
                Scope::All => true,
                Scope::In(list) => list.iter().any(|n| n == ns),
            };
            let matches = s.labels.iter().all(|(k, v)| {
                labels
                    .and_then(|l| l.get(k.as_ref()))
                    .is_some_and(|have| v.as_ref().is_none_or(|v| v == have))
            });
            if wanted && in_scope && matches {
                return Some(s.by.clone());
            }
        }
        if let Some(uid) = meta.uid.as_deref()
            && let Some(r) = self.dependents.get(uid)
        {
            return Some(r.clone());
        }
        let lock = |via: &'static str| Referrer {
            kind: "leader election",
            namespace: ns,
            name,
            via: Cow::Borrowed(via),
        };
        if t == Target::ConfigMap {
            if annotations.is_some_and(|a| a.contains_key(LEADER_ANNOTATION)) {
                return Some(lock(LEADER_ANNOTATION));
            }
            if self.leases.contains(&(ns, name)) {
                return Some(lock("Lease of the same name"));
            }
            if labels.is_some_and(|l| l.contains_key(VELERO_PLUGIN_CONFIG_LABEL)) {
                return Some(Referrer {
                    kind: "Velero",
                    namespace: ns,
                    name,
                    via: Cow::Borrowed("label velero.io/plugin-config"),
                });
            }
        }
        if t == Target::Pvc {
            for (pns, prefix, r) in &self.claim_prefixes {
                if *pns == ns
                    && name
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                {
                    return Some(r.clone());
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::pod::{EnvVarInfo, EnvVarSourceInfo, FieldRefInfo};

    fn env(name: &str, value: &str) -> EnvVarInfo {
        EnvVarInfo {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    #[test]
    fn flags_name_objects_with_expanded_variables() {
        let c = ContainerInfo {
            args: vec![
                "/nginx-ingress-controller".into(),
                "--configmap=$(POD_NAMESPACE)/ingress-nginx-controller".into(),
                "--default-ssl-certificate".into(),
                "certs/wildcard-tls".into(),
                "--v=2".into(),
            ],
            env: vec![EnvVarInfo {
                name: "POD_NAMESPACE".into(),
                value: None,
                value_from: Some(EnvVarSourceInfo {
                    field_ref: Some(FieldRefInfo {
                        field_path: "metadata.namespace".into(),
                    }),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        };
        let got: Vec<_> = flag_values(&c.args)
            .map(|(f, t, v)| (f, t, expand(v, &c, "ingress", None).map(|x| x.into_owned())))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "--configmap",
                    Target::ConfigMap,
                    Some("ingress/ingress-nginx-controller".to_string())
                ),
                (
                    "--default-ssl-certificate",
                    Target::Secret,
                    Some("certs/wildcard-tls".to_string())
                ),
            ]
        );
        assert_eq!(expand("$(MISSING)/x", &c, "n", None), None);
    }

    #[test]
    fn compaction_keeps_only_naming_flags_and_the_env_they_expand() {
        let mut c = ContainerInfo {
            args: vec![
                "--v=2".into(),
                "--configmap=$(NS)/cm".into(),
                "--election-id".into(),
                "lock".into(),
            ],
            env: vec![env("NS", "x"), env("LOG", "debug")],
            ..Default::default()
        };
        compact_container(&mut c);
        assert_eq!(
            c.args,
            vec!["--configmap=$(NS)/cm", "--election-id", "lock"]
        );
        assert_eq!(
            c.env.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            vec!["NS"]
        );
        let mut sidecar = ContainerInfo {
            env: vec![
                env("LABEL", "grafana_dashboard"),
                env("FOLDER", "/tmp"),
                env("NAMESPACE", "ALL"),
            ],
            ..Default::default()
        };
        compact_container(&mut sidecar);
        assert_eq!(
            sidecar
                .env
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            vec!["LABEL", "NAMESPACE"]
        );
    }
}
