//! The reference graph on a realistic dump (fixtures/cleanup-realistic.yaml), one test per
//! reference kind, the protected list and managing tools, notes on missing lists in
//! `check` and `cleanup`, and a property test against a model of random references.

use std::path::{Path, PathBuf};

use caretaker_aggregator::cleanup::{
    Action, CleanupConfig, CleanupKind, Proposals, Protect, propose_with_notes,
};
use caretaker_aggregator::cluster::{ClusterState, dump};
use jiff::Timestamp;
use proptest::prelude::*;

fn now() -> Timestamp {
    "2025-06-01T12:00:00Z".parse().unwrap()
}

fn fixture() -> ClusterState {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    dump::load(&[dir.join("cleanup-realistic.yaml")]).unwrap()
}

fn config() -> CleanupConfig {
    CleanupConfig {
        protect: Protect {
            namespaces: vec!["billing".into()],
            ..Protect::default()
        },
        ..CleanupConfig::default()
    }
}

fn rows(p: &Proposals) -> Vec<(String, Action, String)> {
    p.proposals
        .iter()
        .map(|p| (p.code.clone(), p.action, p.object.to_string()))
        .collect()
}

fn r(code: &str, a: Action, o: &str) -> (String, Action, String) {
    (code.into(), a, o.into())
}

use Action::{Delete, Report};

#[test]
fn realistic_cluster_keeps_everything_in_use_and_proposes_every_stale_object() {
    let s = fixture();
    assert!(s.load.problems.is_empty(), "{:?}", s.load.problems);
    let p = propose_with_notes(&s, &config(), now());
    assert_eq!(p.notes, Vec::<String>::new());
    assert_eq!(
        rows(&p),
        vec![
            // report-29100 is beyond the CronJob's 3 successful runs; migrate-db-v42 is the
            // TTL controller's; report-29104 (failed) is kept by failedJobsHistoryLimit.
            r("completed_job", Delete, "Job/shop/report-29100"),
            r("completed_job", Delete, "Job/shop/backfill-orders"),
            r("job_ttl_overdue", Report, "Job/shop/seed-cache"),
            // The failed pod of report-29104 stays with its Job.
            r("failed_pod", Delete, "Pod/shop/debug-shell"),
            r(
                "unused_config_map",
                Delete,
                "ConfigMap/ingress-nginx/old-nginx-custom-headers"
            ),
            r(
                "unused_config_map",
                Delete,
                "ConfigMap/shop/dashboard-disabled"
            ),
            r(
                "unused_config_map",
                Delete,
                "ConfigMap/shop/datasource-elsewhere"
            ),
            r(
                "unused_config_map",
                Delete,
                "ConfigMap/shop/feature-flags-2024"
            ),
            r(
                "unused_config_map",
                Report,
                "ConfigMap/shop/web-unused-template"
            ),
            r("unused_config_map", Report, "ConfigMap/shop/argo-leftover"),
            r("unused_config_map", Report, "ConfigMap/shop/argo-labelled"),
            r("unused_config_map", Report, "ConfigMap/shop/flux-leftover"),
            r("unused_secret", Report, "Secret/shop/old-api-key"),
            r(
                "unused_pvc",
                Report,
                "PersistentVolumeClaim/shop/old-export"
            ),
        ]
    );
    let managed: Vec<&str> = p
        .proposals
        .iter()
        .filter(|p| p.message.contains("managed by"))
        .map(|p| {
            p.message
                .split("; ")
                .nth(1)
                .unwrap()
                .split(" (")
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(
        managed,
        vec![
            "managed by Helm",
            "managed by Argo CD",
            "managed by Argo CD",
            "managed by Flux"
        ]
    );
    assert!(
        p.proposals[8].message.contains("release shop in shop")
            && p.proposals[8].message.contains("helm upgrade"),
        "{}",
        p.proposals[8].message
    );
    let kept: Vec<(String, String, String)> = p
        .kept
        .iter()
        .map(|k| (k.code.clone(), k.object.to_string(), k.rule.clone()))
        .collect();
    assert_eq!(
        kept,
        vec![
            (
                "unused_config_map".to_string(),
                "ConfigMap/shop/dr-runbook".to_string(),
                "annotation caretaker.io/keep=true".to_string()
            ),
            (
                "unused_config_map".to_string(),
                "ConfigMap/kube-system/old-addon-config".to_string(),
                "cleanup.protected_namespaces: kube-system".to_string()
            ),
            (
                "unused_config_map".to_string(),
                "ConfigMap/billing/rates-2024".to_string(),
                "cleanup.protect.namespaces: billing".to_string()
            ),
        ]
    );
}

#[test]
fn every_rule_obeys_the_protected_list() {
    let s = fixture();
    let c = CleanupConfig {
        protect: Protect {
            namespaces: vec!["shop".into(), "billing".into()],
            names: vec!["old-nginx-*".into()],
            ..Protect::default()
        },
        ..config()
    };
    let p = propose_with_notes(&s, &c, now());
    assert_eq!(rows(&p), vec![]);
    let mut codes: Vec<&str> = p.kept.iter().map(|k| k.code.as_str()).collect();
    codes.dedup();
    assert_eq!(
        codes,
        vec![
            "completed_job",
            "job_ttl_overdue",
            "failed_pod",
            "unused_config_map",
            "unused_secret",
            "unused_pvc"
        ]
    );
    assert!(
        p.kept
            .iter()
            .any(|k| k.rule == "cleanup.protect.names: old-nginx-*")
    );
}

/// Documents for a minimal cluster: every needed list read and empty, plus `objects`.
fn cluster(objects: &str) -> ClusterState {
    let mut s = ClusterState::default();
    let empty = [
        ("v1", "PodList"),
        ("v1", "ConfigMapList"),
        ("v1", "SecretList"),
        ("v1", "ServiceAccountList"),
        ("v1", "PersistentVolumeClaimList"),
        ("apps/v1", "DeploymentList"),
        ("apps/v1", "ReplicaSetList"),
        ("apps/v1", "StatefulSetList"),
        ("apps/v1", "DaemonSetList"),
        ("batch/v1", "JobList"),
        ("batch/v1", "CronJobList"),
        ("networking.k8s.io/v1", "IngressList"),
        (
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfigurationList",
        ),
        (
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfigurationList",
        ),
        ("apiregistration.k8s.io/v1", "APIServiceList"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinitionList"),
    ];
    for (v, k) in empty {
        dump::load_bytes(
            &mut s,
            Path::new("empty.json"),
            format!("{{\"apiVersion\":\"{v}\",\"kind\":\"{k}\",\"items\":[]}}").as_bytes(),
        );
    }
    dump::load_bytes(&mut s, Path::new("objects.yaml"), objects.as_bytes());
    assert!(s.load.problems.is_empty(), "{:?}", s.load.problems);
    s
}

const OLD: &str = "creationTimestamp: '2025-01-01T00:00:00Z'";

/// The ConfigMap or Secret `ns/name` is proposed without `referrer` and not with it.
fn assert_reference(kind: &str, ns: &str, name: &str, referrer: &str) {
    // Labels some label-selecting users look for; nothing else selects by them.
    let labels = "labels: {grafana_dashboard: '1', grafana_datasource: '1', role: rules}";
    let target = format!(
        "apiVersion: v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: {ns}, uid: target, {OLD}, {labels}}}\n"
    );
    let c = CleanupConfig {
        kinds: vec![kind.parse::<CleanupKind>().unwrap()],
        delete_unused_secrets: true,
        ..CleanupConfig::default()
    };
    let proposed = |s: &ClusterState| {
        let p = propose_with_notes(s, &c, now());
        assert_eq!(p.notes, Vec::<String>::new());
        p.proposals
            .iter()
            .any(|p| p.object.uid.as_deref() == Some("target"))
    };
    assert!(
        proposed(&cluster(&target)),
        "{kind} {ns}/{name} is proposed when nothing uses it"
    );
    let with = format!("{target}---\n{referrer}");
    assert!(
        !proposed(&cluster(&with)),
        "{kind} {ns}/{name} is kept by:\n{referrer}"
    );
}

fn pod(ns: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: user, namespace: {ns}, {OLD}}}\nspec:\n{spec}\nstatus: {{phase: Running}}\n"
    )
}

fn workload(kind: &str, api: &str, ns: &str, pod_spec: &str) -> String {
    let indent = |n: usize| -> String {
        pod_spec
            .lines()
            .map(|l| format!("{}{l}\n", " ".repeat(n)))
            .collect()
    };
    let spec = match kind {
        "CronJob" => format!(
            "  schedule: '* * * * *'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n{}",
            indent(10)
        ),
        "Job" => format!("  template:\n    spec:\n{}", indent(6)),
        _ => format!(
            "  selector: {{matchLabels: {{a: b}}}}\n  template:\n    metadata: {{labels: {{a: b}}}}\n    spec:\n{}",
            indent(6)
        ),
    };
    format!(
        "apiVersion: {api}\nkind: {kind}\nmetadata: {{name: user, namespace: {ns}, {OLD}}}\nspec:\n{spec}"
    )
}

macro_rules! reference_tests {
    ($($name:ident: $kind:expr, $ns:expr, $target:expr, $referrer:expr;)*) => {$(
        #[test]
        fn $name() {
            assert_reference($kind, $ns, $target, &$referrer);
        }
    )*};
}

reference_tests! {
    pod_volume_config_map: "ConfigMap", "a", "cm", pod("a", "  containers: [{name: c, image: i}]\n  volumes: [{name: v, configMap: {name: cm}}]");
    pod_projected_secret: "Secret", "a", "s", pod("a", "  containers: [{name: c, image: i}]\n  volumes: [{name: v, projected: {sources: [{secret: {name: s}}]}}]");
    pod_env_secret_key_ref: "Secret", "a", "s", pod("a", "  containers: [{name: c, image: i, env: [{name: X, valueFrom: {secretKeyRef: {name: s, key: k}}}]}]");
    init_container_env_from: "ConfigMap", "a", "cm", pod("a", "  containers: [{name: c, image: i}]\n  initContainers: [{name: i, image: i, envFrom: [{configMapRef: {name: cm}}]}]");
    ephemeral_container_env_from: "Secret", "a", "s", pod("a", "  containers: [{name: c, image: i}]\n  ephemeralContainers: [{name: e, image: i, envFrom: [{secretRef: {name: s}}]}]");
    pod_image_pull_secret: "Secret", "a", "s", pod("a", "  containers: [{name: c, image: i}]\n  imagePullSecrets: [{name: s}]");
    csi_node_publish_secret: "Secret", "a", "s", pod("a", "  containers: [{name: c, image: i}]\n  volumes: [{name: v, csi: {driver: d, nodePublishSecretRef: {name: s}}}]");
    deployment_template: "ConfigMap", "a", "cm", workload("Deployment", "apps/v1", "a", "containers: [{name: c, image: i, envFrom: [{configMapRef: {name: cm}}]}]");
    stateful_set_template: "ConfigMap", "a", "cm", workload("StatefulSet", "apps/v1", "a", "containers: [{name: c, image: i}]\nvolumes: [{name: v, configMap: {name: cm}}]");
    daemon_set_template: "Secret", "a", "s", workload("DaemonSet", "apps/v1", "a", "containers: [{name: c, image: i}]\nvolumes: [{name: v, secret: {secretName: s}}]");
    replica_set_template: "ConfigMap", "a", "cm", workload("ReplicaSet", "apps/v1", "a", "containers: [{name: c, image: i, env: [{name: X, valueFrom: {configMapKeyRef: {name: cm, key: k}}}]}]");
    job_template: "Secret", "a", "s", workload("Job", "batch/v1", "a", "restartPolicy: Never\ncontainers: [{name: c, image: i, envFrom: [{secretRef: {name: s}}]}]");
    cron_job_template: "ConfigMap", "a", "cm", workload("CronJob", "batch/v1", "a", "restartPolicy: Never\ncontainers: [{name: c, image: i}]\nvolumes: [{name: v, configMap: {name: cm}}]");
    arg_flag_with_pod_namespace_from_field_ref: "ConfigMap", "ingress", "nginx-conf", workload("Deployment", "apps/v1", "ingress", "containers: [{name: c, image: i, args: ['--configmap=$(POD_NAMESPACE)/nginx-conf'], env: [{name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}]}]");
    arg_flag_in_another_namespace: "Secret", "certs", "default-tls", pod("ingress", "  containers: [{name: c, image: i, args: ['--default-ssl-certificate=certs/default-tls']}]");
    arg_flag_as_separate_value: "ConfigMap", "ingress", "tcp", pod("ingress", "  containers: [{name: c, image: i, command: [/ctl, --tcp-services-configmap, '$(NS)/tcp'], env: [{name: NS, value: ingress}]}]");
    arg_election_id_lock: "ConfigMap", "ingress", "ingress-controller-leader", pod("ingress", "  containers: [{name: c, image: i, args: ['--election-id=ingress-controller-leader']}]");
    sidecar_label_in_own_namespace: "ConfigMap", "mon", "dash", pod("mon", "  containers: [{name: sc, image: k8s-sidecar, env: [{name: LABEL, value: grafana_dashboard}, {name: LABEL_VALUE, value: '1'}]}]");
    sidecar_secret_resource_all_namespaces: "Secret", "team", "ds", pod("mon", "  containers: [{name: sc, image: k8s-sidecar, env: [{name: LABEL, value: grafana_datasource}, {name: RESOURCE, value: secret}, {name: NAMESPACE, value: ALL}]}]");
    leader_lease_of_the_same_name: "ConfigMap", "kube-x", "controller-lock", format!("apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: controller-lock, namespace: kube-x, {OLD}}}\n");
    ingress_tls: "Secret", "a", "tls", format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: i, namespace: a, {OLD}}}\nspec: {{tls: [{{secretName: tls}}]}}\n");
    ingress_auth_secret_annotation: "Secret", "auth", "basic", format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: i, namespace: a, {OLD}, annotations: {{nginx.ingress.kubernetes.io/auth-secret: auth/basic}}}}\nspec: {{}}\n");
    gateway_certificate_ref: "Secret", "gw", "cert", format!("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: g, namespace: edge, {OLD}}}\nspec: {{listeners: [{{name: https, port: 443, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert, namespace: gw}}]}}}}]}}\n");
    service_account_secret: "Secret", "a", "token", format!("apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: sa, namespace: a, {OLD}}}\nsecrets: [{{name: token}}]\n");
    certificate_secret_name: "Secret", "a", "tls", format!("apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: c, namespace: a, {OLD}}}\nspec: {{secretName: tls}}\n");
    issuer_ca_secret: "Secret", "a", "ca", format!("apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {{name: c, namespace: a, {OLD}}}\nspec: {{ca: {{secretName: ca}}}}\n");
    cluster_issuer_solver_secret: "Secret", "cert-manager", "dns-token", format!("apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {{name: le, {OLD}}}\nspec: {{acme: {{privateKeySecretRef: {{name: acct}}, solvers: [{{dns01: {{cloudflare: {{apiTokenSecretRef: {{name: dns-token, key: t}}}}}}}}]}}}}\n");
    webhook_inject_ca_from_secret: "Secret", "cm", "webhook-ca", format!("apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {{name: w, {OLD}, annotations: {{cert-manager.io/inject-ca-from-secret: cm/webhook-ca}}}}\nwebhooks: []\n");
    api_service_inject_ca_from_secret: "Secret", "a", "serving", format!("apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {{name: v1.x, {OLD}, annotations: {{cert-manager.io/inject-ca-from-secret: a/serving}}}}\nspec: {{}}\n");
    crd_conversion_inject_ca_from_secret: "Secret", "ops", "widgets-webhook-ca", format!("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: widgets.ops.example.com, {OLD}, annotations: {{cert-manager.io/inject-ca-from-secret: ops/widgets-webhook-ca}}}}\nspec: {{group: ops.example.com, names: {{kind: Widget, plural: widgets}}, scope: Namespaced, conversion: {{strategy: Webhook, webhook: {{conversionReviewVersions: [v1], clientConfig: {{service: {{name: widgets-webhook, namespace: ops}}}}}}}}, versions: [{{name: v1, served: true, storage: true}}]}}\n");
    crd_conversion_inject_ca_from_certificate: "Secret", "ops", "widgets-serving", format!("apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: widgets-cert, namespace: ops, {OLD}}}\nspec: {{secretName: widgets-serving}}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: widgets.ops.example.com, {OLD}, annotations: {{cert-manager.io/inject-ca-from: ops/widgets-cert}}}}\nspec: {{group: ops.example.com}}\n");
    prometheus_secrets: "Secret", "mon", "etcd", format!("apiVersion: monitoring.coreos.com/v1\nkind: Prometheus\nmetadata: {{name: k8s, namespace: mon, {OLD}}}\nspec: {{secrets: [etcd]}}\n");
    prometheus_legacy_rule_config_map: "ConfigMap", "mon", "rules", format!("apiVersion: monitoring.coreos.com/v1\nkind: Prometheus\nmetadata: {{name: k8s, namespace: mon, {OLD}}}\nspec: {{ruleSelector: {{matchLabels: {{role: rules}}}}}}\n");
    alertmanager_default_config_secret: "Secret", "mon", "alertmanager-main", format!("apiVersion: monitoring.coreos.com/v1\nkind: Alertmanager\nmetadata: {{name: main, namespace: mon, {OLD}}}\nspec: {{}}\n");
    owner_reference_from_a_dependent: "ConfigMap", "a", "root", format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: part, namespace: a, {OLD}, ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: root, uid: target}}]}}\n");
}

#[test]
fn a_custom_resource_definition_keeps_only_its_metadata() {
    let s = cluster(&format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: widgets.ops.example.com, {OLD}, annotations: {{cert-manager.io/inject-ca-from-secret: ops/ca}}}}\nspec: {{group: ops.example.com, versions: [{{name: v1, schema: {{openAPIV3Schema: {{type: object}}}}}}]}}\n"
    ));
    assert_eq!(s.crds.len(), 1);
    assert_eq!(s.crds[0].data, serde_json::Value::Null);
    assert_eq!(
        s.crds[0].metadata.annotations.as_ref().unwrap()["cert-manager.io/inject-ca-from-secret"],
        "ops/ca"
    );
}

#[test]
fn velero_plugin_config_and_leader_annotation_are_in_use() {
    let s = cluster(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: plugin, namespace: velero, {OLD}, labels: {{velero.io/plugin-config: ''}}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: lock, namespace: x, {OLD}, annotations: {{control-plane.alpha.kubernetes.io/leader: '{{}}'}}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: stale, namespace: x, {OLD}}}\n"
    ));
    let p = propose_with_notes(&s, &CleanupConfig::default(), now());
    assert_eq!(
        rows(&p),
        vec![r("unused_config_map", Delete, "ConfigMap/x/stale")]
    );
}

#[test]
fn a_missing_list_withholds_the_rules_that_need_it_and_names_it() {
    let mut s = fixture();
    s.coverage.insert(
        caretaker_aggregator::cluster::Resource::Ingress,
        caretaker_aggregator::cluster::Coverage::Forbidden {
            message: "ingresses.networking.k8s.io is forbidden".into(),
        },
    );
    s.coverage.insert(
        caretaker_aggregator::cluster::Resource::Issuer,
        caretaker_aggregator::cluster::Coverage::Failed {
            message: "timeout".into(),
        },
    );
    let p = propose_with_notes(&s, &config(), now());
    assert!(p.proposals.iter().all(|p| p.code != "unused_secret"));
    assert!(p.proposals.iter().any(|p| p.code == "unused_config_map"));
    assert_eq!(
        p.notes,
        vec![
            "unused_secret not proposed: what it needs to know is incomplete, these lists were not listed completely: ingresses.networking.k8s.io (forbidden), issuers.cert-manager.io (failed: timeout)"
        ]
    );
}

#[tokio::test]
async fn check_json_output_carries_the_cleanup_notes_and_kept_objects() {
    use caretaker_aggregator::checks::cli::{CheckArgs, Output, run};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let args = CheckArgs {
        // Without the StatefulSet and DaemonSet lists, their references are unknown.
        from_dump: vec![dir.join("cleanup.json")],
        output: Output::Json,
        now: Some(now()),
        config: None,
        fail_on: None,
        exclude_code: Vec::new(),
        show_silenced: false,
        select: Default::default(),
        kube: Default::default(),
    };
    let mut out = Vec::new();
    run(args, &mut out).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let notes: Vec<&str> = v["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("unused_config_map not proposed")
                && n.contains("statefulsets.apps (not listed)")),
        "{notes:?}"
    );
    assert!(v["kept"].is_array());
}

/// A random cluster: per namespace, objects and users with random references.
#[derive(Debug, Clone)]
struct Model {
    namespaces: usize,
    /// (namespace, is_secret)
    objects: Vec<(usize, bool)>,
    /// (user namespace, object index, mechanism)
    refs: Vec<(usize, usize, u8)>,
}

fn model() -> impl Strategy<Value = Model> {
    (
        1usize..4,
        prop::collection::vec((0usize..4, any::<bool>()), 1..12),
    )
        .prop_flat_map(|(n, objs)| {
            let objs: Vec<(usize, bool)> = objs.into_iter().map(|(ns, s)| (ns % n, s)).collect();
            let len = objs.len();
            prop::collection::vec((0usize..4, 0..len, 0u8..10), 0..10).prop_map(move |refs| Model {
                namespaces: n,
                objects: objs.clone(),
                refs: refs.into_iter().map(|(ns, o, m)| (ns % n, o, m)).collect(),
            })
        })
}

/// The YAML of the model, and the indexes of the objects the model says are in use.
fn render(m: &Model) -> (String, Vec<bool>) {
    let mut docs = Vec::new();
    let mut used = vec![false; m.objects.len()];
    for (i, (ns, secret)) in m.objects.iter().enumerate() {
        let kind = if *secret { "Secret" } else { "ConfigMap" };
        let labels = if i % 3 == 0 {
            ", labels: {dash: '1'}"
        } else {
            ""
        };
        docs.push(format!("apiVersion: v1\nkind: {kind}\nmetadata: {{name: o{i}, namespace: n{ns}, uid: u{i}, {OLD}{labels}}}\n"));
    }
    for (j, (uns, oi, mech)) in m.refs.iter().enumerate() {
        let (ons, secret) = m.objects[*oi];
        let name = format!("o{oi}");
        let local = *uns == ons;
        let (spec, hits): (String, Box<dyn Fn(usize) -> bool>) = match (mech, secret) {
            (0, false) if local => (
                format!(
                    "volumes: [{{name: v, configMap: {{name: {name}}}}}]\ncontainers: [{{name: c, image: i}}]"
                ),
                Box::new(move |k| k == *oi),
            ),
            (0, true) if local => (
                format!(
                    "volumes: [{{name: v, secret: {{secretName: {name}}}}}]\ncontainers: [{{name: c, image: i}}]"
                ),
                Box::new(move |k| k == *oi),
            ),
            (1, false) if local => (
                format!(
                    "containers: [{{name: c, image: i, envFrom: [{{configMapRef: {{name: {name}}}}}]}}]"
                ),
                Box::new(move |k| k == *oi),
            ),
            (1, true) if local => (
                format!(
                    "containers: [{{name: c, image: i, envFrom: [{{secretRef: {{name: {name}}}}}]}}]"
                ),
                Box::new(move |k| k == *oi),
            ),
            (2, _) if local => (
                format!(
                    "containers: [{{name: c, image: i}}]\nvolumes: [{{name: v, projected: {{sources: [{{{}: {{name: {name}}}}}]}}}}]",
                    if secret { "secret" } else { "configMap" }
                ),
                Box::new(move |k| k == *oi),
            ),
            (3, false) => (
                format!("containers: [{{name: c, image: i, args: ['--configmap=n{ons}/{name}']}}]"),
                Box::new(move |k| k == *oi),
            ),
            (3, true) => (
                format!(
                    "containers: [{{name: c, image: i, args: ['--default-ssl-certificate=n{ons}/{name}']}}]"
                ),
                Box::new(move |k| k == *oi),
            ),
            (4, false) if local => (
                format!(
                    "containers: [{{name: c, image: i, args: ['--configmap=$(NS)/{name}'], env: [{{name: NS, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}]}}]"
                ),
                Box::new(move |k| k == *oi),
            ),
            (5, _) => {
                // A dashboard sidecar over all namespaces and both kinds: every labelled object.
                let objs = m.objects.clone();
                let _ = objs;
                ("containers: [{name: sc, image: i, env: [{name: LABEL, value: dash}, {name: NAMESPACE, value: ALL}, {name: RESOURCE, value: both}]}]".to_string(), Box::new(|k| k % 3 == 0))
            }
            (6, true) if local => (
                format!(
                    "containers: [{{name: c, image: i}}]\nimagePullSecrets: [{{name: {name}}}]"
                ),
                Box::new(move |k| k == *oi),
            ),
            // A reference from another namespace through a pod spec does not count.
            _ => (
                format!(
                    "containers: [{{name: c, image: i}}]\nvolumes: [{{name: v, configMap: {{name: {name}}}}}]"
                ),
                Box::new(move |k| local && !secret && k == *oi),
            ),
        };
        for (k, u) in used.iter_mut().enumerate() {
            if hits(k) {
                *u = true;
            }
        }
        let as_deployment = j % 2 == 0;
        if as_deployment {
            docs.push(
                workload("Deployment", "apps/v1", &format!("n{uns}"), &spec)
                    .replace("name: user", &format!("name: user{j}")),
            );
        } else {
            let indented: String = spec.lines().map(|l| format!("  {l}\n")).collect();
            docs.push(
                pod(&format!("n{uns}"), indented.trim_end())
                    .replace("name: user", &format!("name: user{j}")),
            );
        }
    }
    let _ = m.namespaces;
    (docs.join("---\n"), used)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn no_referenced_object_is_ever_proposed_and_every_unreferenced_one_is(m in model()) {
        let (yaml, used) = render(&m);
        let s = cluster(&yaml);
        let c = CleanupConfig { delete_unused_secrets: true, ..CleanupConfig::default() };
        let p = propose_with_notes(&s, &c, now());
        prop_assert!(p.notes.is_empty(), "{:?}", p.notes);
        for (i, u) in used.iter().enumerate() {
            let uid = format!("u{i}");
            let proposed = p.proposals.iter().any(|p| p.object.uid.as_deref() == Some(uid.as_str()));
            prop_assert_eq!(proposed, !u, "object o{} (used: {}) in\n{}", i, u, yaml);
        }
    }
}
