//! The Kubernetes manifests: every kustomize overlay and Helm values variant is rendered
//! by the real tools (`kubectl kustomize`; Helm v4's engine through helm-python-sdk, see
//! `tests/services/helm.sh`), every object is deserialized into k8s-openapi types with
//! unknown or misspelled fields reported (serde_ignored), and the rules of
//! `deploy/README.md` are checked: no privileged container, hostPath only from the
//! allowed list, RBAC exactly as documented, the agent on every node, configs that the
//! programs themselves accept. kustomize and Helm must render the same objects.
//!
//! Without kubectl or `CARETAKER_HELM_PYTHON` a test says so and passes, except under
//! `CI=true`, where it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use caretaker_aggregator::cleanup::CleanupKind;
use caretaker_aggregator::cluster::Resource;
use caretaker_core::config::parse_yaml;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, PodSpec, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const NS: &str = "caretaker";
const RELEASE: &str = "caretaker";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A tool is missing: fail under CI, else say why the test did not run.
fn missing<T>(what: &str) -> Option<T> {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} (tests/run-all.sh sets it up)"
    );
    eprintln!("SKIPPED: {what}; run tests/run-all.sh to set it up");
    None
}

fn kustomize(dir: &str) -> Option<String> {
    let out = match Command::new("kubectl")
        .arg("kustomize")
        .arg(root().join(dir))
        .output()
    {
        Ok(o) => o,
        Err(e) => return missing(&format!("kubectl cannot run ({e})")),
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("UTF-8 output"))
}

/// Template path → rendered text, and Helm's lint report.
type Rendered = (BTreeMap<String, String>, Value);

/// The chart rendered and linted by Helm's engine: (template path → text, lint report).
fn helm(values: &Value) -> Option<Result<Rendered, String>> {
    let Ok(python) = std::env::var("CARETAKER_HELM_PYTHON") else {
        return missing("CARETAKER_HELM_PYTHON is not set (a python with helm-python-sdk)");
    };
    let out = Command::new(python)
        .arg(root().join("tests/helm/render.py"))
        .arg(root().join("deploy/helm/caretaker"))
        .args([RELEASE, NS, &values.to_string()])
        .output()
        .expect("run tests/helm/render.py");
    if !out.status.success() {
        return Some(Err(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("render.py prints JSON");
    let manifests = serde_json::from_value(v["manifests"].clone()).expect("manifests map");
    Some(Ok((manifests, v["lint"].clone())))
}

fn helm_objects(values: Value) -> Option<Vec<Obj>> {
    let (manifests, lint) =
        helm(&values)?.unwrap_or_else(|e| panic!("helm render with {values}: {e}"));
    // Lint: no errors and nothing above "info" (severity 1; e.g. "icon is recommended").
    assert_eq!(lint["errors"], serde_json::json!([]), "{lint}");
    let serious: Vec<&Value> = lint["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["severity"].as_u64() > Some(1))
        .collect();
    assert!(serious.is_empty(), "helm lint with {values}: {serious:?}");
    let text: String = manifests
        .iter()
        .filter(|(path, _)| path.ends_with(".yaml"))
        .map(|(_, t)| format!("---\n{t}\n"))
        .collect();
    Some(parse_all(&text))
}

// ---------------------------------------------------------------------------------------
// Typed objects

/// cert-manager and Prometheus Operator objects: only the fields the chart uses; anything
/// else is reported as unknown.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Custom<S> {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[allow(dead_code)]
    metadata: ObjectMeta,
    spec: S,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CertificateSpec {
    secret_name: String,
    common_name: Option<String>,
    dns_names: Option<Vec<String>>,
    uris: Option<Vec<String>>,
    usages: Option<Vec<String>>,
    duration: Option<String>,
    renew_before: Option<String>,
    #[serde(rename = "isCA")]
    is_ca: Option<bool>,
    #[allow(dead_code)]
    private_key: Option<PrivateKey>,
    issuer_ref: IssuerRef,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct PrivateKey {
    algorithm: String,
    size: u32,
    rotation_policy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct IssuerRef {
    name: String,
    kind: Option<String>,
    group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct IssuerSpec {
    self_signed: Option<BTreeMap<String, Value>>,
    ca: Option<CaIssuer>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct CaIssuer {
    secret_name: String,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct ServiceMonitorSpec {
    selector: LabelSelector,
    endpoints: Vec<MonitorEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct MonitorEndpoint {
    port: String,
    path: String,
    scheme: String,
    interval: String,
    tls_config: Option<MonitorTls>,
    authorization: Option<MonitorAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct MonitorTls {
    ca: SecretRef,
    server_name: String,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct SecretRef {
    secret: k8s_openapi::api::core::v1::SecretKeySelector,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct MonitorAuth {
    #[serde(rename = "type")]
    kind: String,
    credentials: k8s_openapi::api::core::v1::SecretKeySelector,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct PodMonitorSpec {
    selector: LabelSelector,
    pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct PodMetricsEndpoint {
    port: String,
    path: String,
    scheme: String,
    interval: String,
}

/// Deserializing into these types is itself the check; some are not looked at further.
#[derive(Debug)]
#[allow(dead_code)]
enum Typed {
    Namespace(Box<Namespace>),
    ServiceAccount(Box<ServiceAccount>),
    ClusterRole(Box<ClusterRole>),
    ClusterRoleBinding(Box<ClusterRoleBinding>),
    Role(Box<Role>),
    RoleBinding(Box<RoleBinding>),
    ConfigMap(Box<ConfigMap>),
    DaemonSet(Box<DaemonSet>),
    Deployment(Box<Deployment>),
    Pvc(Box<PersistentVolumeClaim>),
    Pdb(Box<PodDisruptionBudget>),
    Service(Box<Service>),
    NetworkPolicy(Box<NetworkPolicy>),
    Certificate(Box<Custom<CertificateSpec>>),
    Issuer(Box<Custom<IssuerSpec>>),
    ServiceMonitor(Box<Custom<ServiceMonitorSpec>>),
    PodMonitor(Box<Custom<PodMonitorSpec>>),
}

/// One rendered object: its identity, its JSON and its typed form.
#[derive(Debug)]
struct Obj {
    kind: String,
    namespace: String,
    name: String,
    json: Value,
    typed: Typed,
}

impl Obj {
    fn key(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// Deserializes `v` into `T`, failing on any field `T` does not know.
fn strict<T: DeserializeOwned>(v: &Value, what: &str) -> T {
    let mut ignored = Vec::new();
    let t: T = serde_ignored::deserialize(v.clone(), |path| ignored.push(path.to_string()))
        .unwrap_or_else(|e| panic!("{what} does not deserialize: {e}\n{v:#}"));
    assert!(
        ignored.is_empty(),
        "{what} has unknown or misspelled fields: {ignored:?}"
    );
    t
}

fn parse_all(text: &str) -> Vec<Obj> {
    // Kubernetes reads YAML 1.1: `0400` is octal.
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(
        text,
        serde_saphyr::options!(legacy_octal_numbers: true),
    )
    .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}"));
    docs.into_iter()
        .filter(|d| !d.is_null())
        .map(|json| {
            let kind = json["kind"].as_str().expect("kind").to_string();
            let name = json["metadata"]["name"]
                .as_str()
                .expect("metadata.name")
                .to_string();
            let namespace = json["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let what = format!("{kind} {namespace}/{name}");
            let typed = match kind.as_str() {
                "Namespace" => Typed::Namespace(strict(&json, &what)),
                "ServiceAccount" => Typed::ServiceAccount(strict(&json, &what)),
                "ClusterRole" => Typed::ClusterRole(strict(&json, &what)),
                "ClusterRoleBinding" => Typed::ClusterRoleBinding(strict(&json, &what)),
                "Role" => Typed::Role(strict(&json, &what)),
                "RoleBinding" => Typed::RoleBinding(strict(&json, &what)),
                "ConfigMap" => Typed::ConfigMap(strict(&json, &what)),
                "DaemonSet" => Typed::DaemonSet(strict(&json, &what)),
                "Deployment" => Typed::Deployment(strict(&json, &what)),
                "PersistentVolumeClaim" => Typed::Pvc(strict(&json, &what)),
                "PodDisruptionBudget" => Typed::Pdb(strict(&json, &what)),
                "Service" => Typed::Service(strict(&json, &what)),
                "NetworkPolicy" => Typed::NetworkPolicy(strict(&json, &what)),
                "Certificate" => Typed::Certificate(strict(&json, &what)),
                "Issuer" => Typed::Issuer(strict(&json, &what)),
                "ServiceMonitor" => Typed::ServiceMonitor(strict(&json, &what)),
                "PodMonitor" => Typed::PodMonitor(strict(&json, &what)),
                other => {
                    panic!("{what}: no rule covers kind {other}; add it to tests/tests/deploy.rs")
                }
            };
            Obj {
                kind,
                namespace,
                name,
                json,
                typed,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The documented rules (deploy/README.md)

/// hostPath volumes the agent may have, and whether every mount of one must be read-only.
const ALLOWED_HOST_PATHS: &[(&str, bool)] = &[
    ("/proc", true),
    ("/sys", true),
    ("/", true),
    ("/var/log", false),
    ("/var/lib/caretaker", false),
    ("/var/run/docker.sock", false),
    ("/run/containerd/containerd.sock", false),
    ("/etc/caretaker/pki", true),
];

/// Capabilities the agent may add (each documented in the DaemonSet); the aggregator adds none.
const AGENT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "LEASE",
];

/// Documented permissions, one line per (service account, scope, group/resource, verb).
fn documented_rbac(secrets: bool, cleanup: bool) -> BTreeSet<String> {
    let mut s = BTreeSet::new();
    let mut add = |sa: &str, scope: &str, group: &str, resources: &[&str], verbs: &[&str]| {
        for r in resources {
            for v in verbs {
                s.insert(format!("{sa} {scope} {group}/{r} {v}"));
            }
        }
    };
    let (agent, agg) = (
        "caretaker/caretaker-agent",
        "caretaker/caretaker-aggregator",
    );
    add(agent, "cluster", "", &["nodes"], &["get"]);
    add(agent, "ns:default", "", &["events"], &["create", "patch"]);
    add(
        agent,
        "ns:default",
        "events.k8s.io",
        &["events"],
        &["create", "patch"],
    );
    // The aggregator's cluster-wide rules are derived from the code, not typed here: `list`
    // on every resource the live cluster source reads (`cluster::live::LIVE`, secrets in their own
    // ClusterRole; Leases only in the aggregator's namespace Role) and `delete` on every kind cleanup applies (`CleanupKind::ALL`): nothing
    // missing, nothing extra.
    for r in caretaker_aggregator::cluster::live::LIVE {
        let (group, _, _, plural) = r.gvkp();
        if r != Resource::Secret || secrets {
            add(agg, "cluster", group, &[plural], &["list"]);
        }
    }
    if cleanup {
        for k in CleanupKind::ALL {
            let (group, _, _, plural) = k.resource().gvkp();
            if k != CleanupKind::Secret || secrets {
                add(agg, "cluster", group, &[plural], &["delete"]);
            }
        }
        // `certificates renew --apply`: a patch of the status subresource.
        let (r, sub) = caretaker_aggregator::renew::STATUS_SUBRESOURCE;
        let (group, _, _, plural) = r.gvkp();
        add(
            agg,
            "cluster",
            group,
            &[&format!("{plural}/{sub}")],
            &["patch"],
        );
    }
    add(
        agg,
        "ns:caretaker",
        "coordination.k8s.io",
        &["leases"],
        &["create"],
    );
    add(
        agg,
        "ns:caretaker",
        "coordination.k8s.io",
        &["leases"],
        &[
            "get name=caretaker-aggregator",
            "update name=caretaker-aggregator",
        ],
    );
    // Its own pod's caretaker.io/role label (pod names are generated: no resourceNames).
    add(agg, "ns:caretaker", "", &["pods"], &["get", "patch"]);
    s
}

/// What the bindings actually grant, in the same form as [`documented_rbac`].
fn granted_rbac(objs: &[Obj]) -> BTreeSet<String> {
    let mut cluster_roles: BTreeMap<&str, &[PolicyRule]> = BTreeMap::new();
    let mut roles: BTreeMap<(&str, &str), &[PolicyRule]> = BTreeMap::new();
    for o in objs {
        match &o.typed {
            Typed::ClusterRole(r) => {
                cluster_roles.insert(&o.name, r.rules.as_deref().unwrap_or_default());
            }
            Typed::Role(r) => {
                roles.insert(
                    (&o.namespace, &o.name),
                    r.rules.as_deref().unwrap_or_default(),
                );
            }
            _ => {}
        }
    }
    let mut bound = BTreeSet::new();
    let mut out = BTreeSet::new();
    for o in objs {
        let (role_ref, subjects, scope) = match &o.typed {
            Typed::ClusterRoleBinding(b) => (&b.role_ref, &b.subjects, "cluster".to_string()),
            Typed::RoleBinding(b) => (&b.role_ref, &b.subjects, format!("ns:{}", o.namespace)),
            _ => continue,
        };
        let rules = match role_ref.kind.as_str() {
            "ClusterRole" => cluster_roles.get(role_ref.name.as_str()).copied(),
            "Role" => roles
                .get(&(o.namespace.as_str(), role_ref.name.as_str()))
                .copied(),
            k => panic!("{}: roleRef kind {k}", o.key()),
        }
        .unwrap_or_else(|| {
            panic!(
                "{} refers to {} {} which is not rendered",
                o.key(),
                role_ref.kind,
                role_ref.name
            )
        });
        bound.insert(format!("{}/{}", role_ref.kind, role_ref.name));
        for subject in subjects.as_deref().unwrap_or_default() {
            assert_eq!(
                subject.kind,
                "ServiceAccount",
                "{}: only service accounts are bound",
                o.key()
            );
            let sa = format!(
                "{}/{}",
                subject.namespace.as_deref().unwrap_or(""),
                subject.name
            );
            for rule in rules {
                assert!(
                    rule.non_resource_urls.is_none(),
                    "{}: no non-resource URLs",
                    role_ref.name
                );
                let names = rule.resource_names.as_deref().unwrap_or_default();
                for g in rule.api_groups.as_deref().unwrap_or_default() {
                    for r in rule.resources.as_deref().unwrap_or_default() {
                        for v in &rule.verbs {
                            assert!(
                                g != "*" && r != "*" && v != "*",
                                "{}: no wildcards ({g}/{r} {v})",
                                role_ref.name
                            );
                            if names.is_empty() {
                                out.insert(format!("{sa} {scope} {g}/{r} {v}"));
                            }
                            for n in names {
                                out.insert(format!("{sa} {scope} {g}/{r} {v} name={n}"));
                            }
                        }
                    }
                }
            }
        }
    }
    let defined: BTreeSet<String> = objs
        .iter()
        .filter(|o| o.kind == "ClusterRole" || o.kind == "Role")
        .map(|o| format!("{}/{}", o.kind, o.name))
        .collect();
    assert_eq!(
        defined, bound,
        "every role is bound and every binding's role is rendered"
    );
    out
}

/// The pod-level rules for one workload; returns its pod spec.
fn check_pod(o: &Obj, spec: &PodSpec, agent: bool) {
    let what = o.key();
    assert_ne!(spec.host_network, Some(true), "{what}: hostNetwork");
    assert_ne!(spec.host_pid, Some(true), "{what}: hostPID");
    assert_ne!(spec.host_ipc, Some(true), "{what}: hostIPC");
    let pod_sc = spec
        .security_context
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: pod securityContext"));
    assert_eq!(
        pod_sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault"),
        "{what}: seccomp"
    );
    if !agent {
        assert_eq!(pod_sc.run_as_non_root, Some(true), "{what}: runAsNonRoot");
        assert_eq!(pod_sc.run_as_user, Some(65532), "{what}: runAsUser");
    }
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.as_deref().unwrap_or_default())
    {
        let sc = c
            .security_context
            .as_ref()
            .unwrap_or_else(|| panic!("{what}/{}: securityContext", c.name));
        assert_ne!(sc.privileged, Some(true), "{what}/{}: privileged", c.name);
        assert_eq!(
            sc.allow_privilege_escalation,
            Some(false),
            "{what}/{}: allowPrivilegeEscalation",
            c.name
        );
        assert_eq!(
            sc.read_only_root_filesystem,
            Some(true),
            "{what}/{}: readOnlyRootFilesystem",
            c.name
        );
        let caps = sc
            .capabilities
            .as_ref()
            .unwrap_or_else(|| panic!("{what}/{}: capabilities", c.name));
        assert_eq!(
            caps.drop.as_deref(),
            Some(&["ALL".to_string()][..]),
            "{what}/{}: drop ALL",
            c.name
        );
        for cap in caps.add.as_deref().unwrap_or_default() {
            assert!(
                agent && AGENT_CAPABILITIES.contains(&cap.as_str()),
                "{what}/{}: capability {cap} is not allowed",
                c.name
            );
        }
        let res = c
            .resources
            .as_ref()
            .unwrap_or_else(|| panic!("{what}/{}: resources", c.name));
        assert!(
            res.requests.is_some() && res.limits.is_some(),
            "{what}/{}: requests and limits",
            c.name
        );
        assert!(
            c.liveness_probe.is_some() && c.readiness_probe.is_some(),
            "{what}/{}: probes",
            c.name
        );
        for m in c.volume_mounts.as_deref().unwrap_or_default() {
            let v = volumes
                .iter()
                .find(|v| v.name == m.name)
                .unwrap_or_else(|| panic!("{what}: mount of unknown volume {}", m.name));
            if let Some(hp) = &v.host_path {
                let (_, read_only) = ALLOWED_HOST_PATHS
                    .iter()
                    .find(|(p, _)| *p == hp.path)
                    .unwrap_or_else(|| {
                        panic!("{what}: hostPath {} is not in the allowed list", hp.path)
                    });
                if *read_only {
                    assert_eq!(
                        m.read_only,
                        Some(true),
                        "{what}: hostPath {} must be mounted read-only",
                        hp.path
                    );
                }
            }
        }
    }
    for v in volumes {
        assert!(
            agent || v.host_path.is_none(),
            "{what}: the aggregator mounts no hostPath"
        );
    }
}

/// The pod label the aggregator sets to its role and its Service selects on.
const ROLE_LABEL: &str = "caretaker.io/role";

/// The agent's `listen_http` port.
const AGENT_HTTP_PORT: i32 = 9810;

/// An httpGet probe as (path, port, scheme).
fn http_probe(p: &Option<k8s_openapi::api::core::v1::Probe>) -> Option<(String, String, String)> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let h = p.as_ref()?.http_get.as_ref()?;
    let port = match &h.port {
        IntOrString::String(s) => s.clone(),
        IntOrString::Int(i) => i.to_string(),
    };
    Some((
        h.path.clone().unwrap_or_default(),
        port,
        h.scheme.clone().unwrap_or_default(),
    ))
}

/// `status.disruptionsAllowed` of a PodDisruptionBudget, computed like the disruption
/// controller: healthy pods minus the desired healthy (expected − maxUnavailable, or minAvailable).
fn disruptions_allowed(p: &PodDisruptionBudget, expected: i32, healthy: i32) -> i32 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let spec = p.spec.as_ref().expect("PDB spec");
    let resolve = |v: &IntOrString| match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let pct: i32 = s.trim_end_matches('%').parse().expect("a percentage");
            (expected * pct + 99) / 100
        }
    };
    let desired = match (&spec.max_unavailable, &spec.min_available) {
        (Some(m), None) => expected - resolve(m),
        (None, Some(m)) => resolve(m),
        other => panic!("PDB needs exactly one of maxUnavailable and minAvailable: {other:?}"),
    };
    (healthy - desired.max(0)).max(0)
}

/// The store's volume: the PVC is rendered; ReadWriteOnce keeps both replicas on one node
/// (required podAffinity on the hostname, selecting the aggregator pods), ReadWriteMany
/// needs no affinity.
fn check_data_volume(
    o: &Obj,
    pod: &PodSpec,
    spec: &k8s_openapi::api::apps::v1::DeploymentSpec,
    objs: &[Obj],
) {
    let data = pod
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|v| v.name == "data")
        .expect("data volume");
    let claim = &data
        .persistent_volume_claim
        .as_ref()
        .expect("a PVC")
        .claim_name;
    let pvc = objs
        .iter()
        .find(|x| x.kind == "PersistentVolumeClaim" && x.namespace == NS && &x.name == claim)
        .unwrap_or_else(|| panic!("PVC {claim} is rendered"));
    let Typed::Pvc(pvc) = &pvc.typed else {
        unreachable!()
    };
    let modes = pvc
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default();
    let affinity = pod.affinity.as_ref().and_then(|a| a.pod_affinity.as_ref());
    match modes.as_slice() {
        [m] if m == "ReadWriteOnce" => {
            let terms = affinity
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_deref()
                })
                .unwrap_or_default();
            assert_eq!(
                terms.len(),
                1,
                "{}: one required podAffinity term with ReadWriteOnce",
                o.key()
            );
            assert_eq!(terms[0].topology_key, "kubernetes.io/hostname");
            let sel = terms[0]
                .label_selector
                .as_ref()
                .and_then(|s| s.match_labels.clone())
                .unwrap_or_default();
            assert_eq!(
                Some(sel),
                spec.selector.match_labels.clone(),
                "{}: affinity to the aggregator pods",
                o.key()
            );
            assert!(
                affinity
                    .and_then(|a| a
                        .preferred_during_scheduling_ignored_during_execution
                        .as_ref())
                    .is_none()
            );
        }
        [m] if m == "ReadWriteMany" => assert!(
            pod.affinity.is_none(),
            "{}: no affinity with ReadWriteMany",
            o.key()
        ),
        other => panic!("{}: PVC access modes {other:?}", o.key()),
    }
}

/// Every rule that holds for any rendering.
fn check_rules(objs: &[Obj]) {
    let keys: Vec<String> = objs.iter().map(Obj::key).collect();
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "duplicate objects: {keys:?}");
    let find = |kind: &str, ns: &str, name: &str| {
        objs.iter()
            .find(|o| o.kind == kind && o.namespace == ns && o.name == name)
    };
    for o in objs {
        if o.kind != "Namespace" && !matches!(o.kind.as_str(), "ClusterRole" | "ClusterRoleBinding")
        {
            assert!(
                o.namespace == NS
                    || (o.namespace == "default" && o.name.starts_with("caretaker-agent-events")),
                "{}: namespace",
                o.key()
            );
        }
        assert_eq!(
            o.json["metadata"]["labels"]["app.kubernetes.io/part-of"],
            "caretaker",
            "{}: part-of label",
            o.key()
        );
        match &o.typed {
            Typed::DaemonSet(ds) => {
                assert_eq!(o.name, "caretaker-agent");
                let spec = &ds.spec;
                let pod = spec.template.spec.as_ref().expect("pod spec");
                check_pod(o, pod, true);
                // On every node, whatever its taints.
                let tol = pod.tolerations.as_deref().unwrap_or_default();
                assert!(
                    tol.iter().any(|t| t.operator.as_deref() == Some("Exists")
                        && t.key.is_none()
                        && t.effect.is_none()),
                    "the agent tolerates every taint: {tol:?}"
                );
                assert_eq!(
                    pod.priority_class_name.as_deref(),
                    Some("system-node-critical")
                );
                assert_eq!(pod.service_account_name.as_deref(), Some("caretaker-agent"));
                let u = spec.update_strategy.as_ref().expect("updateStrategy");
                assert_eq!(u.type_.as_deref(), Some("RollingUpdate"));
                assert!(
                    u.rolling_update
                        .as_ref()
                        .and_then(|r| r.max_unavailable.as_ref())
                        .is_some(),
                    "maxUnavailable"
                );
                let c = &pod.containers[0];
                assert_eq!(
                    c.command.as_deref(),
                    Some(&["caretaker-agent".to_string()][..])
                );
                assert_eq!(
                    c.args.as_deref().unwrap_or_default(),
                    [
                        "run",
                        "--config",
                        "/etc/caretaker/agent.yaml",
                        "--path.procfs",
                        "/host/proc",
                        "--path.sysfs",
                        "/host/sys",
                        "--path.rootfs",
                        "/host/root"
                    ]
                );
                let node_name = c
                    .env
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .find(|e| e.name == "NODE_NAME")
                    .expect("NODE_NAME");
                let field = node_name
                    .value_from
                    .as_ref()
                    .and_then(|f| f.field_ref.as_ref())
                    .expect("NODE_NAME from the downward API");
                assert_eq!(field.field_path, "spec.nodeName");
                let res = c.resources.as_ref().expect("resources");
                let q = |m: &Option<
                    BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
                >,
                         k: &str| {
                    m.as_ref()
                        .and_then(|m| m.get(k))
                        .map(|q| q.0.clone())
                        .unwrap_or_default()
                };
                assert_eq!(
                    [
                        q(&res.requests, "cpu"),
                        q(&res.requests, "memory"),
                        q(&res.limits, "cpu"),
                        q(&res.limits, "memory")
                    ],
                    ["20m", "32Mi", "200m", "128Mi"],
                    "measured figures (deploy/README.md)"
                );
                let sc = c.security_context.as_ref().expect("securityContext");
                assert_eq!(
                    sc.run_as_user,
                    Some(0),
                    "the agent runs as UID 0 with few capabilities"
                );
                // Probes on the agent's own HTTP endpoint (listen_http), not exec.
                let ports: Vec<(String, i32)> = c
                    .ports
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
                    .collect();
                assert_eq!(
                    ports,
                    [("http".to_string(), AGENT_HTTP_PORT)],
                    "the agent's HTTP port"
                );
                assert_eq!(
                    http_probe(&c.liveness_probe),
                    Some(("/healthz".into(), "http".into(), String::new()))
                );
                assert_eq!(
                    http_probe(&c.readiness_probe),
                    Some(("/readyz".into(), "http".into(), String::new()))
                );
                for p in [&c.liveness_probe, &c.readiness_probe]
                    .into_iter()
                    .flatten()
                {
                    assert!(p.exec.is_none(), "no exec probe");
                }
                check_config_refs(o, pod, objs);
            }
            Typed::Deployment(d) => {
                assert_eq!(o.name, "caretaker-aggregator");
                let spec = &d.spec;
                let pod = spec.template.spec.as_ref().expect("pod spec");
                check_pod(o, pod, false);
                assert_eq!(spec.replicas, Some(2), "a leader and a standby");
                // Both replicas are Ready (the standby too): a rollout surges one new pod, waits
                // for it to be a Ready standby, then stops an old one (deploy/README.md).
                let strategy = spec.strategy.as_ref().expect("strategy");
                assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
                let rolling = strategy.rolling_update.as_ref().expect("rollingUpdate");
                use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
                assert_eq!(
                    (rolling.max_surge.clone(), rolling.max_unavailable.clone()),
                    (Some(IntOrString::Int(1)), Some(IntOrString::Int(0)))
                );
                assert_eq!(
                    pod.service_account_name.as_deref(),
                    Some("caretaker-aggregator")
                );
                let c = &pod.containers[0];
                assert_eq!(
                    c.command.as_deref(),
                    Some(&["caretaker-aggregator".to_string()][..])
                );
                assert_eq!(
                    c.args.as_deref().unwrap_or_default(),
                    ["serve", "--config", "/etc/caretaker/aggregator.yaml"]
                );
                let ports: Vec<(String, i32)> = c
                    .ports
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
                    .collect();
                assert_eq!(
                    ports,
                    [("grpc".to_string(), 7443), ("http".to_string(), 8080)]
                );
                assert_eq!(
                    http_probe(&c.liveness_probe),
                    Some(("/healthz".into(), "http".into(), "HTTPS".into()))
                );
                assert_eq!(
                    http_probe(&c.readiness_probe),
                    Some(("/readyz".into(), "http".into(), "HTTPS".into())),
                    "ready = up, either role"
                );
                // POD_NAME and POD_NAMESPACE from the downward API: identity and Lease namespace.
                let env: BTreeMap<String, String> = c
                    .env
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    // The webhook URL (a Secret) is checked in helm_values_reach_every_config_section.
                    .filter(|e| e.name != caretaker_aggregator::schedule::config::WEBHOOK_URL_ENV)
                    .map(|e| {
                        assert!(e.value.is_none(), "{} comes from the downward API", e.name);
                        let f = e
                            .value_from
                            .as_ref()
                            .and_then(|v| v.field_ref.as_ref())
                            .unwrap_or_else(|| panic!("{}: fieldRef", e.name));
                        (e.name.clone(), f.field_path.clone())
                    })
                    .collect();
                assert_eq!(
                    env,
                    BTreeMap::from([
                        ("POD_NAME".to_string(), "metadata.name".to_string()),
                        (
                            "POD_NAMESPACE".to_string(),
                            "metadata.namespace".to_string()
                        )
                    ])
                );
                check_data_volume(o, pod, spec, objs);
                for v in pod.volumes.as_deref().unwrap_or_default() {
                    if let Some(claim) = &v.persistent_volume_claim {
                        assert!(
                            find("PersistentVolumeClaim", NS, &claim.claim_name).is_some(),
                            "PVC {} is rendered",
                            claim.claim_name
                        );
                    }
                }
                check_config_refs(o, pod, objs);
                let labels = spec
                    .template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                // Pods start as standbys; the selector (and so the podAffinity and the rollout's
                // bookkeeping) never depends on the role, which the aggregator patches.
                assert_eq!(
                    labels.get(ROLE_LABEL).map(String::as_str),
                    Some("standby"),
                    "pods start as standbys"
                );
                let selector = spec.selector.match_labels.clone().unwrap_or_default();
                assert!(
                    !selector.contains_key(ROLE_LABEL),
                    "the Deployment selects its pods whatever their role"
                );
                let leader_labels: BTreeMap<String, String> = labels
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            if k == ROLE_LABEL {
                                "leader".into()
                            } else {
                                v.clone()
                            },
                        )
                    })
                    .collect();
                for other in objs {
                    let selector = match &other.typed {
                        Typed::Service(s) => s.spec.as_ref().and_then(|s| s.selector.clone()),
                        Typed::Pdb(p) => p
                            .spec
                            .as_ref()
                            .and_then(|s| s.selector.as_ref())
                            .and_then(|s| s.match_labels.clone()),
                        Typed::NetworkPolicy(n) => n
                            .spec
                            .as_ref()
                            .and_then(|s| s.pod_selector.as_ref())
                            .and_then(|s| s.match_labels.clone()),
                        _ => continue,
                    };
                    let selector = selector.unwrap_or_else(|| panic!("{}: selector", other.key()));
                    if other.kind == "Service" {
                        // Traffic to the leader only: its pod once labeled, never a standby.
                        assert_eq!(
                            selector.get(ROLE_LABEL).map(String::as_str),
                            Some("leader"),
                            "{}: routes to the leader",
                            other.key()
                        );
                        assert!(
                            selector
                                .iter()
                                .all(|(k, v)| leader_labels.get(k) == Some(v)),
                            "{} selects the leader pod",
                            other.key()
                        );
                        assert!(
                            !selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
                            "{} does not select a standby",
                            other.key()
                        );
                    } else {
                        // The PDB and the NetworkPolicy cover both replicas, whatever their role.
                        assert!(
                            !selector.contains_key(ROLE_LABEL),
                            "{}: no role in the selector",
                            other.key()
                        );
                        assert!(
                            selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
                            "{} selects the aggregator pods",
                            other.key()
                        );
                    }
                }
            }
            Typed::Service(s) => {
                let ports: Vec<(String, i32)> = s
                    .spec
                    .as_ref()
                    .and_then(|s| s.ports.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| (p.name.unwrap_or_default(), p.port))
                    .collect();
                assert_eq!(
                    ports,
                    [("grpc".to_string(), 7443), ("http".to_string(), 8080)]
                );
            }
            Typed::NetworkPolicy(n) => {
                let spec = n.spec.as_ref().expect("spec");
                assert_eq!(
                    spec.policy_types.as_deref(),
                    Some(&["Ingress".to_string()][..])
                );
                let agent_rule = &spec.ingress.as_ref().expect("ingress")[0];
                let peer = &agent_rule.from.as_ref().expect("from")[0];
                let agent_labels = peer
                    .pod_selector
                    .as_ref()
                    .and_then(|s| s.match_labels.clone())
                    .expect("agent pod selector");
                let ds = find("DaemonSet", NS, "caretaker-agent").expect("DaemonSet");
                let ds_labels = &ds.json["spec"]["template"]["metadata"]["labels"];
                assert!(
                    agent_labels.iter().all(|(k, v)| ds_labels[k] == *v),
                    "ingest is allowed from the agent pods"
                );
            }
            Typed::Pdb(p) => {
                // Steady state: 2 pods, both Ready (leader and standby): one may be evicted,
                // and the second only once a replacement is Ready.
                assert_eq!(
                    disruptions_allowed(p, 2, 2),
                    1,
                    "{}: a drain may evict one replica",
                    o.key()
                );
                assert_eq!(
                    disruptions_allowed(p, 2, 1),
                    0,
                    "{}: never both at once",
                    o.key()
                );
            }
            Typed::ClusterRole(r) => {
                for rule in r.rules.as_deref().unwrap_or_default() {
                    assert!(
                        !rule
                            .api_groups
                            .as_deref()
                            .unwrap_or_default()
                            .contains(&"coordination.k8s.io".to_string()),
                        "{}: Leases only in a Role",
                        o.key()
                    );
                }
            }
            Typed::PodMonitor(m) => {
                let ds = find("DaemonSet", NS, "caretaker-agent").expect("DaemonSet");
                let ds_labels = &ds.json["spec"]["template"]["metadata"]["labels"];
                let sel = m.spec.selector.match_labels.clone().unwrap_or_default();
                assert!(
                    !sel.is_empty() && sel.iter().all(|(k, v)| ds_labels[k] == *v),
                    "{}: selects the agent pods",
                    o.key()
                );
                let e = &m.spec.pod_metrics_endpoints[0];
                assert_eq!(
                    (e.port.as_str(), e.path.as_str(), e.scheme.as_str()),
                    ("http", "/metrics", "http"),
                    "the agent's port http"
                );
            }
            _ => {}
        }
    }
}

/// ConfigMaps, Secrets and the service account a pod refers to; the config files parse
/// with the programs' own config types.
fn check_config_refs(o: &Obj, pod: &PodSpec, objs: &[Obj]) {
    let sa = pod
        .service_account_name
        .as_deref()
        .expect("serviceAccountName");
    assert!(
        objs.iter()
            .any(|x| x.kind == "ServiceAccount" && x.name == sa),
        "{}: ServiceAccount {sa} is rendered",
        o.key()
    );
    for v in pod.volumes.as_deref().unwrap_or_default() {
        if let Some(cm) = &v.config_map {
            let cm_obj = objs
                .iter()
                .find(|x| x.kind == "ConfigMap" && x.name == cm.name)
                .unwrap_or_else(|| panic!("{}: ConfigMap {}", o.key(), cm.name));
            let Typed::ConfigMap(cm) = &cm_obj.typed else {
                unreachable!()
            };
            let data = cm.data.clone().unwrap_or_default();
            if let Some(text) = data.get("agent.yaml") {
                let cfg: caretaker_agent::config::AgentConfig =
                    parse_yaml(text, Path::new("agent.yaml"))
                        .unwrap_or_else(|e| panic!("{}: {e}", cm_obj.key()));
                let agg = cfg.aggregator.expect("aggregator");
                assert_eq!(
                    agg.endpoint, "https://caretaker-aggregator.caretaker.svc:7443",
                    "the Service's name and port"
                );
                agg.transport()
                    .unwrap_or_else(|e| panic!("{}: {e}", cm_obj.key()));
                // The logrotate.conf it points at parses with the agent's own parser.
                assert_eq!(
                    cfg.logs.logrotate_conf.as_deref(),
                    Some(Path::new("/etc/caretaker/logrotate.conf"))
                );
                let conf = data
                    .get("logrotate.conf")
                    .unwrap_or_else(|| panic!("{}: logrotate.conf", cm_obj.key()));
                let perms = caretaker_agent::logs::policy::Permissions {
                    scripts: false,
                    external_compress: false,
                };
                let loaded = caretaker_agent::logs::conf::parse_str(conf, "logrotate.conf", perms);
                assert_eq!(loaded.errors, [], "{}: logrotate.conf", cm_obj.key());
                // Out of the box the agent fights no other rotator: the kubelet owns
                // container logs, the node's logrotate /var/log/syslog and friends.
                assert_eq!(
                    loaded.policies.len(),
                    0,
                    "{}: logrotate.conf has no default blocks",
                    cm_obj.key()
                );
                assert!(
                    cfg.logs.policies.is_empty(),
                    "{}: no YAML policies",
                    cm_obj.key()
                );
                assert_eq!(
                    cfg.listen_http.map(|a| i32::from(a.port())),
                    Some(AGENT_HTTP_PORT),
                    "the DaemonSet's port http"
                );
            }
            if let Some(text) = data.get("aggregator.yaml") {
                let cfg: caretaker_aggregator::config::AggregatorConfig =
                    parse_yaml(text, Path::new("aggregator.yaml"))
                        .unwrap_or_else(|e| panic!("{}: {e}", cm_obj.key()));
                assert!(!cfg.insecure_plaintext, "the aggregator serves TLS");
                assert!(cfg.tls.is_some(), "the aggregator has TLS files");
                assert_eq!(cfg.auth.tokens.len(), 2, "a read and an admin token");
                cfg.validate()
                    .unwrap_or_else(|e| panic!("{}: {e}", cm_obj.key()));
                // Leader election: the Lease the Role allows, namespace and identity from the pod.
                let le = cfg
                    .leader_election
                    .as_ref()
                    .unwrap_or_else(|| panic!("{}: leader_election", cm_obj.key()));
                assert_eq!(
                    (le.namespace.as_deref(), le.identity.as_deref()),
                    (None, None),
                    "from $POD_NAMESPACE and $POD_NAME"
                );
                let election = le
                    .resolve(|k| match k {
                        "POD_NAMESPACE" => Some(NS.to_string()),
                        "POD_NAME" => Some("caretaker-aggregator-5d8f7-abcde".to_string()),
                        _ => None,
                    })
                    .expect("resolves in the pod");
                let role = objs
                    .iter()
                    .find(|x| x.kind == "Role" && x.name == "caretaker-aggregator-leader")
                    .expect("leader Role");
                let names: Vec<&str> = role.json["rules"]
                    .as_array()
                    .expect("rules")
                    .iter()
                    .flat_map(|r| r["resourceNames"].as_array().into_iter().flatten())
                    .filter_map(Value::as_str)
                    .collect();
                assert_eq!(
                    names,
                    [election.lease_name.as_str()],
                    "the Role allows exactly the configured Lease"
                );
                assert_eq!(
                    role.namespace, election.namespace,
                    "the Lease lives in the aggregator's namespace"
                );
            }
        }
        if let Some(s) = &v.secret {
            let name = s.secret_name.as_deref().expect("secretName");
            assert!(
                [
                    "caretaker-agent-tls",
                    "caretaker-aggregator-tls",
                    "caretaker-api-tokens"
                ]
                .contains(&name),
                "{}: Secret {name} is one `caretaker-aggregator certs` creates",
                o.key()
            );
        }
    }
}

/// An object without what only one of the tools adds (labels, annotations), for comparing.
fn comparable(o: &Obj) -> Value {
    let mut v = o.json.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("labels");
        m.remove("annotations");
    }
    if let Some(t) = v["spec"]["template"].as_object_mut() {
        t.remove("metadata");
    }
    // Order of volumes and mounts does not matter (kustomize patches prepend).
    if let Some(pod) = v["spec"]["template"]["spec"].as_object_mut() {
        sort_by_name(pod.get_mut("volumes"));
        for c in pod
            .get_mut("containers")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            sort_by_name(c.get_mut("volumeMounts"));
        }
    }
    // Config files compare as the data they hold (kustomize's are commented by hand,
    // Helm's partly rendered with toYaml).
    if o.kind == "ConfigMap"
        && let Some(data) = v["data"].as_object_mut()
    {
        for (k, text) in data.iter_mut() {
            if k.ends_with(".yaml")
                && let Some(t) = text.as_str()
            {
                *text = serde_saphyr::from_str::<Value>(t)
                    .unwrap_or_else(|e| panic!("{}: {k} does not parse: {e}", o.key()));
            }
        }
    }
    // Typed round trip: `0400` and `256`, `"10%"` and the like compare equal.
    match &o.typed {
        Typed::DaemonSet(_) => {
            serde_json::to_value(strict::<DaemonSet>(&v, "DaemonSet")).expect("json")
        }
        Typed::Deployment(_) => {
            serde_json::to_value(strict::<Deployment>(&v, "Deployment")).expect("json")
        }
        _ => v,
    }
}

fn sort_by_name(list: Option<&mut Value>) {
    if let Some(a) = list.and_then(Value::as_array_mut) {
        a.sort_by(|x, y| x["name"].as_str().cmp(&y["name"].as_str()));
    }
}

fn assert_same_objects(kustomize: &[Obj], helm: &[Obj], what: &str) {
    let k: BTreeMap<String, &Obj> = kustomize
        .iter()
        .filter(|o| o.kind != "Namespace")
        .map(|o| (o.key(), o))
        .collect();
    let h: BTreeMap<String, &Obj> = helm.iter().map(|o| (o.key(), o)).collect();
    assert_eq!(
        k.keys().collect::<Vec<_>>(),
        h.keys().collect::<Vec<_>>(),
        "{what}: same objects (kind/namespace/name)"
    );
    for (key, ko) in &k {
        assert_eq!(
            comparable(ko),
            comparable(h[key]),
            "{what}: {key} differs between kustomize and Helm"
        );
    }
}

fn host_paths(objs: &[Obj]) -> Vec<(String, bool)> {
    let ds = objs
        .iter()
        .find(|o| o.kind == "DaemonSet")
        .expect("DaemonSet");
    let Typed::DaemonSet(ds) = &ds.typed else {
        unreachable!()
    };
    let pod = ds.spec.template.spec.as_ref().expect("pod");
    let volumes = pod.volumes.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    for m in pod.containers[0]
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
    {
        if let Some(hp) = volumes
            .iter()
            .find(|v| v.name == m.name)
            .and_then(|v| v.host_path.as_ref())
        {
            out.push((hp.path.clone(), m.read_only == Some(true)));
        }
    }
    out.sort();
    out
}

fn base_paths(extra: Option<&str>, var_log_read_only: bool) -> Vec<(String, bool)> {
    let mut v = vec![
        ("/proc".into(), true),
        ("/sys".into(), true),
        ("/".into(), true),
        ("/var/log".into(), var_log_read_only),
        ("/var/lib/caretaker".into(), false),
    ];
    if let Some(s) = extra {
        v.push((s.into(), false));
    }
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn kustomize_base_and_overlays_follow_the_rules() {
    let Some(base) = kustomize("deploy/kustomize/base") else {
        return;
    };
    let base = parse_all(&base);
    check_rules(&base);
    assert_eq!(
        granted_rbac(&base),
        documented_rbac(true, true),
        "base RBAC"
    );
    assert_eq!(host_paths(&base), base_paths(None, false));
    assert!(
        base.iter().any(|o| o.kind == "Namespace" && o.name == NS),
        "the base creates its namespace"
    );

    for (overlay, socket) in [
        ("docker", "/var/run/docker.sock"),
        ("containerd", "/run/containerd/containerd.sock"),
    ] {
        let objs = parse_all(
            &kustomize(&format!("deploy/kustomize/overlays/{overlay}")).expect("kubectl"),
        );
        check_rules(&objs);
        assert_eq!(
            granted_rbac(&objs),
            documented_rbac(true, true),
            "{overlay} RBAC"
        );
        assert_eq!(
            host_paths(&objs),
            base_paths(Some(socket), false),
            "{overlay} host paths"
        );
    }

    let rwx = parse_all(&kustomize("deploy/kustomize/overlays/rwx").expect("kubectl"));
    check_rules(&rwx);
    assert_eq!(granted_rbac(&rwx), documented_rbac(true, true), "rwx RBAC");
    let pvc = rwx
        .iter()
        .find(|o| o.kind == "PersistentVolumeClaim")
        .expect("PVC");
    assert_eq!(
        pvc.json["spec"]["accessModes"],
        serde_json::json!(["ReadWriteMany"])
    );
    let base_pvc = base
        .iter()
        .find(|o| o.kind == "PersistentVolumeClaim")
        .expect("PVC");
    assert_eq!(
        base_pvc.json["spec"]["accessModes"],
        serde_json::json!(["ReadWriteOnce"])
    );

    let dry = parse_all(&kustomize("deploy/kustomize/overlays/dry-run").expect("kubectl"));
    check_rules(&dry);
    assert_eq!(
        granted_rbac(&dry),
        documented_rbac(true, false),
        "dry-run: no delete permission"
    );
    assert_eq!(
        host_paths(&dry),
        base_paths(None, true),
        "dry-run: /var/log read-only"
    );
    let Typed::DaemonSet(ds) = &dry
        .iter()
        .find(|o| o.kind == "DaemonSet")
        .expect("ds")
        .typed
    else {
        unreachable!()
    };
    let caps = ds
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.containers[0].security_context.clone());
    assert_eq!(
        caps.and_then(|c| c.capabilities).and_then(|c| c.add),
        Some(vec!["DAC_READ_SEARCH".to_string()])
    );
}

#[test]
fn helm_default_renders_what_kustomize_renders() {
    let Some(k) = kustomize("deploy/kustomize/base") else {
        return;
    };
    let Some(h) = helm_objects(serde_json::json!({})) else {
        return;
    };
    check_rules(&h);
    assert_same_objects(&parse_all(&k), &h, "defaults");
}

#[test]
fn helm_values_match_each_overlay() {
    for (overlay, values) in [
        (
            "docker",
            serde_json::json!({"agent": {"containerRuntime": "docker"}}),
        ),
        (
            "containerd",
            serde_json::json!({"agent": {"containerRuntime": "containerd"}}),
        ),
        ("dry-run", serde_json::json!({"dryRun": true})),
        (
            "rwx",
            serde_json::json!({"aggregator": {"persistence": {"accessMode": "ReadWriteMany"}}}),
        ),
    ] {
        let Some(k) = kustomize(&format!("deploy/kustomize/overlays/{overlay}")) else {
            return;
        };
        let Some(h) = helm_objects(values) else {
            return;
        };
        check_rules(&h);
        assert_same_objects(&parse_all(&k), &h, overlay);
    }
}

#[test]
fn helm_optional_objects_follow_the_rules() {
    let values = serde_json::json!({
        "certManager": {"enabled": true},
        "serviceMonitor": {"enabled": true},
        "agent": {"tlsSource": "hostPath"},
        "aggregator": {"metricsRequireToken": true},
        "rbac": {"readSecrets": false},
        "networkPolicy": {"enabled": false},
    });
    let Some(objs) = helm_objects(values) else {
        return;
    };
    check_rules(&objs);
    assert_eq!(
        granted_rbac(&objs),
        documented_rbac(false, true),
        "readSecrets=false drops the Secrets rule only"
    );
    assert!(!objs.iter().any(|o| o.kind == "NetworkPolicy"));
    assert_eq!(
        host_paths(&objs)
            .iter()
            .filter(|p| p.0 == "/etc/caretaker/pki")
            .count(),
        1,
        "per-node certificates from the host"
    );
    let certs: BTreeMap<&str, &CertificateSpec> = objs
        .iter()
        .filter_map(|o| match &o.typed {
            Typed::Certificate(c) => Some((o.name.as_str(), &c.spec)),
            _ => None,
        })
        .collect();
    assert_eq!(
        certs.keys().copied().collect::<Vec<_>>(),
        [
            "caretaker-agent-tls",
            "caretaker-aggregator-tls",
            "caretaker-ca"
        ]
    );
    assert_eq!(certs["caretaker-ca"].is_ca, Some(true));
    let server = certs["caretaker-aggregator-tls"];
    assert_eq!(server.secret_name, "caretaker-aggregator-tls");
    assert_eq!(
        server.dns_names.as_deref().unwrap_or_default(),
        [
            "caretaker-aggregator",
            "caretaker-aggregator.caretaker",
            "caretaker-aggregator.caretaker.svc",
            "caretaker-aggregator.caretaker.svc.cluster.local"
        ]
    );
    assert!(
        server
            .usages
            .as_deref()
            .unwrap_or_default()
            .contains(&"server auth".to_string())
    );
    let agent = certs["caretaker-agent-tls"];
    assert_eq!(
        agent.uris.as_deref().unwrap_or_default(),
        ["caretaker-node:*"]
    );
    assert_eq!(
        agent.usages.as_deref().unwrap_or_default(),
        ["digital signature", "key encipherment", "client auth"]
    );
    assert_eq!(agent.issuer_ref.name, "caretaker-ca");
    assert!(
        agent.common_name.is_some() && agent.duration.is_some() && agent.renew_before.is_some()
    );
    assert_eq!(objs.iter().filter(|o| o.kind == "Issuer").count(), 2);
    assert_eq!(
        objs.iter().filter(|o| o.kind == "ServiceMonitor").count(),
        1
    );
    assert_eq!(
        objs.iter()
            .filter(|o| o.kind == "PodMonitor")
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["caretaker-agent"],
        "the agents are scraped too"
    );
    // Per-node certificates: the aggregator no longer accepts the shared one.
    let cm = objs
        .iter()
        .find(|o| o.name == "caretaker-aggregator-config")
        .expect("config");
    let cfg: caretaker_aggregator::config::AggregatorConfig = parse_yaml(
        cm.json["data"]["aggregator.yaml"].as_str().expect("text"),
        Path::new("aggregator.yaml"),
    )
    .expect("parses");
    assert!(!cfg.tls.expect("tls").allow_shared_agent_cert);
    assert!(cfg.auth.metrics_require_token);
}

#[test]
fn helm_refuses_unknown_choices_with_a_clear_message() {
    let Some(r) = helm(&serde_json::json!({"agent": {"containerRuntime": "cri-o"}})) else {
        return;
    };
    let err = r.expect_err("cri-o is not a choice");
    assert!(
        err.contains("agent.containerRuntime must be none, docker or containerd, not \"cri-o\""),
        "{err}"
    );
    let Some(r) = helm(&serde_json::json!({"agent": {"tlsSource": "vault"}})) else {
        return;
    };
    let err = r.expect_err("vault is not a choice");
    assert!(
        err.contains("agent.tlsSource must be secret or hostPath, not \"vault\""),
        "{err}"
    );
    let Some(r) = helm(
        &serde_json::json!({"aggregator": {"persistence": {"accessMode": "ReadWriteOncePod"}}}),
    ) else {
        return;
    };
    let err = r.expect_err("ReadWriteOncePod is not a choice");
    assert!(err.contains("aggregator.persistence.accessMode must be ReadWriteOnce or ReadWriteMany, not \"ReadWriteOncePod\""), "{err}");
}

/// The ConfigMap `name`'s file `key`, parsed with the program's own config type.
fn config_of<T: DeserializeOwned + Default>(objs: &[Obj], name: &str, key: &str) -> T {
    let cm = objs
        .iter()
        .find(|o| o.kind == "ConfigMap" && o.name == name)
        .unwrap_or_else(|| panic!("ConfigMap {name}"));
    let text = cm.json["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: {key}"));
    parse_yaml(text, Path::new(key)).unwrap_or_else(|e| panic!("{name} {key}: {e}"))
}

#[test]
fn defaults_read_the_live_cluster_on_the_seed_schedule() {
    let Some(k) = kustomize("deploy/kustomize/base") else {
        return;
    };
    for (what, overlay) in [("base", "base"), ("dry-run", "overlays/dry-run")] {
        let objs = if what == "base" {
            parse_all(&k)
        } else {
            let Some(d) = kustomize(&format!("deploy/kustomize/{overlay}")) else {
                return;
            };
            parse_all(&d)
        };
        let cfg: caretaker_aggregator::config::AggregatorConfig =
            config_of(&objs, "caretaker-aggregator-config", "aggregator.yaml");
        assert_eq!(
            format!("{:?}", cfg.cluster.source),
            "Live",
            "{what}: the shipped config reads the cluster"
        );
        assert_eq!(cfg.cluster.interval, std::time::Duration::from_secs(600));
        let s = &cfg.schedule;
        assert!(
            s.daily.enabled && s.weekly.enabled && s.monthly.enabled,
            "{what}"
        );
        assert_eq!(s.time_zone.to_string(), "Asia/Tokyo");
        let agent: caretaker_agent::config::AgentConfig =
            config_of(&objs, "caretaker-agent-config", "agent.yaml");
        assert!(
            !agent.images.apply,
            "{what}: images are only reported by default"
        );
    }
}

#[test]
fn helm_values_reach_every_config_section() {
    let values = serde_json::json!({
        "aggregator": {
            "cluster": {"source": "live", "interval": "5m"},
            "checks": {"namespaces": ["prod"], "pods": {"restart_threshold": 9}},
            "cleanup": {"job_ttl": "12h", "protected_namespaces": ["kube-system", "vault"]},
            "signals": {
                "prometheus": {"url": "http://prometheus.monitoring:9090"},
                "alertmanager": {"url": "http://alertmanager.monitoring:9093"},
                "http_endpoints": [{"name": "api", "url": "https://api.example.com/health"}]
            },
            "schedule": {
                "time_zone": "Europe/Berlin",
                "daily": {"enabled": true, "cron": "30 4 * * *"},
                "weekly": {"enabled": false},
                "maintenance_window": {"days": ["saturday"], "start": "22:00", "duration": "3h"},
                "notifications": {"min_severity": "critical"}
            },
            "notificationWebhookSecret": {"name": "hooks", "key": "slack"},
            "ingest": {"burst_reports": 800, "in_flight_bytes": 16777216},
            "http": {"max_connections": 128}
        },
        "agent": {
            "logs": {"retention": [{"glob": "/var/log/app/*.gz", "max_age": "14d"}]},
            "images": {"apply": true, "keep": ["registry.k8s.io/pause:*"], "high_threshold_percent": 90}
        }
    });
    let Some(objs) = helm_objects(values) else {
        return;
    };
    check_rules(&objs);
    let cfg: caretaker_aggregator::config::AggregatorConfig =
        config_of(&objs, "caretaker-aggregator-config", "aggregator.yaml");
    assert_eq!(cfg.cluster.interval, std::time::Duration::from_secs(300));
    assert_eq!(cfg.checks.namespaces, ["prod"]);
    assert_eq!(cfg.checks.pods.restart_threshold, 9);
    assert_eq!(
        cfg.cleanup.job_ttl,
        std::time::Duration::from_secs(12 * 3600)
    );
    assert_eq!(cfg.cleanup.protected_namespaces, ["kube-system", "vault"]);
    assert_eq!(cfg.signals.http_endpoints.len(), 1);
    assert_eq!(
        (
            cfg.ingest.burst_reports.get(),
            cfg.ingest.in_flight_bytes.get()
        ),
        (800, 16 << 20)
    );
    assert_eq!(cfg.http.max_connections, 128);
    assert!(cfg.signals.prometheus.is_some() && cfg.signals.alertmanager.is_some());
    assert_eq!(cfg.schedule.time_zone.to_string(), "Europe/Berlin");
    assert!(!cfg.schedule.weekly.enabled);
    assert_eq!(
        serde_json::to_value(cfg.schedule.notifications.min_severity).expect("json"),
        "critical"
    );
    // The webhook URL comes from the Secret as an environment variable.
    let deploy = objs
        .iter()
        .find(|o| o.kind == "Deployment")
        .expect("Deployment");
    let env = &deploy.json["spec"]["template"]["spec"]["containers"][0]["env"];
    let hook = env
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == caretaker_aggregator::schedule::config::WEBHOOK_URL_ENV)
        .expect("the webhook variable");
    assert_eq!(
        hook["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "hooks", "key": "slack"})
    );
    let agent: caretaker_agent::config::AgentConfig =
        config_of(&objs, "caretaker-agent-config", "agent.yaml");
    assert_eq!(agent.logs.retention.len(), 1);
    assert_eq!(
        agent.logs.state_file,
        Path::new("/var/lib/caretaker/logrotate.status")
    );
    assert!(agent.images.apply);
    assert_eq!(agent.images.keep, ["registry.k8s.io/pause:*"]);
    assert_eq!(agent.images.high_threshold_percent, 90);
}
