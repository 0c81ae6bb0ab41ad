//! The live path without a cluster: kube's `Client` over a `tower_test` mock that answers
//! like kube-apiserver does (list pages with continue tokens, a 403 Status, a 404 Status
//! for a CRD that is not installed, and a plain-text 404 for a missing API group).

use caretaker_aggregator::checks::ObjectRef;
use caretaker_aggregator::checks::{self, CheckStatus, ChecksConfig, Severity};
use caretaker_aggregator::cleanup::apply::{AuditLog, AuditRecord, Outcome, Recheck, apply};
use caretaker_aggregator::cleanup::{Action, CleanupConfig, Propagation, Proposal};
use caretaker_aggregator::cluster::{Coverage, Resource, live};
use http::{Request, Response, StatusCode};
use jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// One request as the mock saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    body: Value,
}

fn query_param<'a>(q: &'a str, k: &str) -> Option<&'a str> {
    q.split('&')
        .find_map(|kv| kv.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
}

fn list(
    kind: &str,
    api_version: &str,
    items: Vec<Value>,
    cont: Option<&str>,
) -> (StatusCode, String) {
    let mut meta = json!({"resourceVersion": "81723"});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
        meta["remainingItemCount"] = json!(1);
    }
    (
        StatusCode::OK,
        json!({"kind": kind, "apiVersion": api_version, "metadata": meta, "items": items})
            .to_string(),
    )
}

fn status(code: u16, reason: &str, message: &str) -> (StatusCode, String) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "details": {}, "code": code});
    (StatusCode::from_u16(code).unwrap(), body.to_string())
}

fn node(name: &str) -> Value {
    json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "1", "creationTimestamp": "2025-01-01T00:00:00Z",
                     "managedFields": [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {}}]},
        "spec": {},
        "status": {"allocatable": {"cpu": "4", "memory": "16Gi"}, "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2025-06-01T11:59:00Z", "lastTransitionTime": "2025-01-01T00:00:00Z", "reason": "KubeletReady", "message": "kubelet is posting ready status"}]}
    })
}

fn pod(name: &str, ns: &str, crash: bool) -> Value {
    let state = if crash {
        json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}})
    } else {
        json!({"running": {"startedAt": "2025-05-01T00:00:00Z"}})
    };
    json!({
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "resourceVersion": "1", "creationTimestamp": "2025-05-01T00:00:00Z"},
        "spec": {"containers": [{"name": "app", "image": "app:1"}], "nodeName": "node-a"},
        "status": {"phase": "Running", "startTime": "2025-05-01T00:00:00Z",
                   "conditions": [{"type": "Ready", "status": if crash { "False" } else { "True" }, "lastTransitionTime": "2025-05-01T00:00:00Z"}],
                   "containerStatuses": [{"name": "app", "image": "app:1", "imageID": "", "ready": !crash, "restartCount": if crash { 9 } else { 0 }, "state": state}]}
    })
}

/// Answers like kube-apiserver for the cluster described in the module docs.
fn route(method: &str, path: &str, query: &str) -> (StatusCode, String) {
    let cont = query_param(query, "continue");
    match (method, path) {
        ("GET", "/api/v1/nodes") => match cont {
            None => list(
                "NodeList",
                "v1",
                vec![node("node-a"), node("node-b")],
                Some("bm9kZXMtcGFnZS0y"),
            ),
            Some("bm9kZXMtcGFnZS0y") => list("NodeList", "v1", vec![node("node-c")], None),
            Some(other) => status(410, "Expired", &format!("unknown continue token {other}")),
        },
        ("GET", "/api/v1/pods") => match cont {
            None => list(
                "PodList",
                "v1",
                vec![pod("a", "team-a", false), pod("b", "team-a", false)],
                Some("cG9kcy0y"),
            ),
            Some("cG9kcy0y") => list("PodList", "v1", vec![pod("crashy", "team-b", true)], None),
            Some(other) => status(410, "Expired", &format!("unknown continue token {other}")),
        },
        ("GET", p) if p.starts_with("/api/v1/namespaces/") && p.ends_with("/pods") => {
            let ns = p.split('/').nth(4).unwrap();
            list(
                "PodList",
                "v1",
                vec![pod(&format!("{ns}-pod"), ns, false)],
                None,
            )
        }
        ("GET", "/api/v1/secrets") => status(
            403,
            "Forbidden",
            "secrets is forbidden: User \"system:serviceaccount:caretaker:aggregator\" cannot list resource \"secrets\" in API group \"\" at the cluster scope",
        ),
        ("GET", "/apis/cert-manager.io/v1/certificates") => status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
        ("GET", p) if p.starts_with("/apis/velero.io/") => {
            (StatusCode::NOT_FOUND, "404 page not found\n".to_string())
        }
        ("GET", "/apis/metrics.k8s.io/v1beta1/nodes") => list(
            "NodeMetricsList",
            "metrics.k8s.io/v1beta1",
            vec![
                json!({"metadata": {"name": "node-a", "creationTimestamp": "2025-06-01T12:00:00Z"}, "timestamp": "2025-06-01T11:59:50Z", "window": "20s", "usage": {"cpu": "3950m", "memory": "2Gi"}}),
            ],
            None,
        ),
        ("GET", p) => {
            // Every other resource exists and is empty.
            let kind = match p.rsplit('/').next().unwrap() {
                "events" => "EventList",
                "configmaps" => "ConfigMapList",
                _ => "List",
            };
            list(kind, "v1", vec![], None)
        }
        (m, p) => status(405, "MethodNotAllowed", &format!("{m} {p} not expected")),
    }
}

/// Serves requests with `answer` until the client is dropped; returns what it saw.
fn serve(
    mut handle: Handle,
    answer: fn(&str, &str, &str) -> (StatusCode, String),
) -> tokio::task::JoinHandle<Vec<Seen>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = http_body_util::BodyExt::collect(body)
                .await
                .unwrap()
                .to_bytes();
            let s = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or("").to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (code, text) = answer(&s.method, &s.path, &s.query);
            seen.push(s);
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(text.into_bytes()))
                    .unwrap(),
            );
        }
        seen
    })
}

fn config(page_size: u32) -> ChecksConfig {
    ChecksConfig {
        page_size,
        ..ChecksConfig::default()
    }
}

#[tokio::test]
async fn live_lists_follow_continue_tokens_and_map_403_and_404() {
    let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = serve(handle, route);
    let client = Client::new(mock, "default");
    let state = live::load(&client, &config(2)).await.unwrap();
    drop(client);
    let seen = server.await.unwrap();

    let names = |v: Vec<Option<String>>| v.into_iter().map(Option::unwrap).collect::<Vec<_>>();
    assert_eq!(
        names(
            state
                .nodes
                .iter()
                .map(|n| n.metadata.name.clone())
                .collect()
        ),
        vec!["node-a", "node-b", "node-c"]
    );
    assert_eq!(
        names(state.pods.iter().map(|n| n.metadata.name.clone()).collect()),
        vec!["a", "b", "crashy"]
    );
    // managedFields are dropped on the way in.
    assert_eq!(state.nodes[0].metadata.managed_fields, None);

    let node_requests: Vec<&str> = seen
        .iter()
        .filter(|s| s.path == "/api/v1/nodes")
        .map(|s| s.query.as_str())
        .collect();
    assert_eq!(node_requests.len(), 2);
    assert_eq!(query_param(node_requests[0], "limit"), Some("2"));
    assert_eq!(query_param(node_requests[0], "continue"), None);
    assert_eq!(
        query_param(node_requests[1], "continue"),
        Some("bm9kZXMtcGFnZS0y")
    );
    assert!(seen.iter().all(|s| s.method == "GET"));
    assert_eq!(
        seen.len(),
        live::LIVE.len() + 2,
        "one request per resource plus the second pages: {seen:#?}"
    );

    assert_eq!(state.coverage(Resource::Pod), Coverage::Listed);
    assert_eq!(state.coverage(Resource::ConfigMap), Coverage::Listed);
    assert!(
        matches!(state.coverage(Resource::Secret), Coverage::Forbidden { message } if message.starts_with("secrets is forbidden"))
    );
    assert_eq!(
        state.coverage(Resource::Certificate),
        Coverage::NotApplicable {
            reason: "the API server does not serve certificates.cert-manager.io (not installed)"
                .into()
        }
    );
    assert_eq!(
        state.coverage(Resource::Backup),
        Coverage::NotApplicable {
            reason: "the API server does not serve backups.velero.io (not installed)".into()
        }
    );

    let now: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
    let results = checks::run_all(&state, &ChecksConfig::default(), now);
    let by_name = |n: &str| results.iter().find(|r| r.name == n).unwrap();
    // 404 → not applicable, never an error.
    let velero = by_name("velero");
    assert_eq!(velero.status, CheckStatus::NotApplicable);
    assert_eq!(velero.findings, vec![]);
    // 403 → a finding in every check that needs the resource.
    for name in ["certificates", "helm"] {
        let r = by_name(name);
        assert_eq!(r.status, CheckStatus::Ran);
        assert_eq!(r.findings.len(), 1, "{r:#?}");
        assert_eq!(r.findings[0].code, "list_forbidden");
        assert_eq!(r.findings[0].severity, Severity::Warning);
        assert_eq!(
            r.findings[0].message,
            "no permission to list secrets: secrets is forbidden: User \"system:serviceaccount:caretaker:aggregator\" cannot list resource \"secrets\" in API group \"\" at the cluster scope"
        );
    }
    // The crash-looping pod came on the second page.
    let pods = by_name("pods");
    assert_eq!(
        pods.findings
            .iter()
            .map(|f| (f.code.as_str(), f.object.name.as_str()))
            .collect::<Vec<_>>(),
        vec![("crash_loop_back_off", "crashy")]
    );
    // Metrics API present: node usage is judged.
    assert!(
        by_name("nodes")
            .findings
            .iter()
            .any(|f| f.code == "usage_high" && f.object.name == "node-a")
    );
}

#[tokio::test]
async fn live_lists_only_configured_namespaces_but_nodes_cluster_wide() {
    let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = serve(handle, route);
    let client = Client::new(mock, "default");
    let cfg = ChecksConfig {
        namespaces: vec!["team-a".into(), "team-b".into()],
        ..config(500)
    };
    let state = live::load(&client, &cfg).await.unwrap();
    drop(client);
    let seen = server.await.unwrap();
    let pods: Vec<&str> = state
        .pods
        .iter()
        .map(|p| p.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(pods, vec!["team-a-pod", "team-b-pod"]);
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert!(
        paths.contains(&"/api/v1/namespaces/team-a/pods")
            && paths.contains(&"/api/v1/namespaces/team-b/pods")
    );
    assert!(paths.contains(&"/api/v1/nodes"));
    assert!(!paths.contains(&"/api/v1/pods"));
    assert!(
        paths.contains(&"/apis/metrics.k8s.io/v1beta1/nodes"),
        "node metrics are cluster-scoped: {paths:?}"
    );
}

#[tokio::test]
async fn live_server_failing_everything_is_an_error() {
    let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = serve(handle, |_, _, _| {
        status(500, "InternalError", "etcdserver: request timed out")
    });
    let client = Client::new(mock, "default");
    let err = live::load(&client, &config(500))
        .await
        .unwrap_err()
        .to_string();
    drop(client);
    server.await.unwrap();
    assert!(
        err.starts_with("cannot reach the Kubernetes API server: nodes: "),
        "{err}"
    );
    assert!(err.contains("etcdserver: request timed out"), "{err}");
}

fn config_map(name: &str, uid: &str, rv: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "default", "uid": uid, "resourceVersion": rv, "creationTimestamp": "2025-01-01T00:00:00Z"}, "data": {"k": "v"}})
}

fn completed_job(name: &str, uid: &str, rv: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default", "uid": uid, "resourceVersion": rv, "creationTimestamp": "2025-05-01T00:00:00Z"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}},
        "status": {"startTime": "2025-05-01T00:00:00Z", "completionTime": "2025-05-01T00:10:00Z", "succeeded": 1,
                   "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": "2025-05-01T00:10:00Z", "lastTransitionTime": "2025-05-01T00:10:00Z"}]}
    })
}

fn deleted(name: &str, kind: &str) -> (StatusCode, String) {
    (
        StatusCode::OK,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "kind": kind}}).to_string(),
    )
}

/// The fresh reads and deletions of `apply`: the objects still there, the evicted pod gone.
fn deletes(method: &str, path: &str, q: &str) -> (StatusCode, String) {
    match (method, path) {
        ("GET", "/apis/batch/v1/jobs") => list(
            "JobList",
            "batch/v1",
            vec![completed_job("job-old-done", "uid-job", "40")],
            None,
        ),
        ("GET", "/api/v1/configmaps") => list(
            "ConfigMapList",
            "v1",
            vec![config_map("cm-orphan", "uid-cm", "41")],
            None,
        ),
        ("DELETE", "/apis/batch/v1/namespaces/default/jobs/job-old-done") => {
            deleted("job-old-done", "jobs")
        }
        ("DELETE", "/api/v1/namespaces/default/configmaps/cm-orphan") => status(
            409,
            "Conflict",
            "Operation cannot be fulfilled on configmaps \"cm-orphan\": Precondition failed: UID in precondition: uid-cm, UID in object meta: uid-new",
        ),
        ("GET", p) => route("GET", p, q),
        (m, p) => status(405, "MethodNotAllowed", &format!("{m} {p} not expected")),
    }
}

/// Between the proposal and `apply`, a pod started using `cm-used`.
fn referrer_appeared(method: &str, path: &str, _q: &str) -> (StatusCode, String) {
    match (method, path) {
        ("GET", "/apis/batch/v1/jobs") => list(
            "JobList",
            "batch/v1",
            vec![completed_job("job-old-done", "uid-job", "13")],
            None,
        ),
        ("GET", "/api/v1/configmaps") => list(
            "ConfigMapList",
            "v1",
            vec![
                config_map("cm-used", "uid-used", "11"),
                config_map("cm-stale", "uid-stale", "12"),
            ],
            None,
        ),
        ("GET", "/api/v1/pods") => list(
            "PodList",
            "v1",
            vec![json!({
                "metadata": {"name": "new-user", "namespace": "default", "uid": "uid-new-user", "resourceVersion": "14", "creationTimestamp": "2025-06-01T11:59:00Z"},
                "spec": {"containers": [{"name": "app", "image": "app:2", "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cm-used", "key": "k"}}}]}], "nodeName": "node-a"},
                "status": {"phase": "Pending"}
            })],
            None,
        ),
        ("DELETE", "/api/v1/namespaces/default/configmaps/cm-stale") => {
            deleted("cm-stale", "configmaps")
        }
        ("DELETE", "/apis/batch/v1/namespaces/default/jobs/job-old-done") => {
            deleted("job-old-done", "jobs")
        }
        ("GET", _) => list("List", "v1", vec![], None),
        (m, p) => status(405, "MethodNotAllowed", &format!("{m} {p} not expected")),
    }
}

fn recheck_config() -> (ChecksConfig, CleanupConfig) {
    (config(500), CleanupConfig::default())
}

#[tokio::test]
async fn apply_rechecks_each_deletion_on_a_fresh_read_and_sends_uid_and_resource_version() {
    let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = serve(handle, referrer_appeared);
    let client = Client::new(mock, "default");
    let dir = tempfile::tempdir().unwrap();
    let mut audit = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
    let (checks, cleanup) = recheck_config();
    let recheck = Recheck {
        checks: &checks,
        cleanup: &cleanup,
        now: "2025-06-01T12:00:00Z".parse().unwrap(),
    };
    let proposals = vec![
        proposal(
            "completed_job",
            "Job",
            "job-old-done",
            "uid-job",
            Action::Delete,
            Some(Propagation::Background),
        ),
        proposal(
            "unused_config_map",
            "ConfigMap",
            "cm-used",
            "uid-used",
            Action::Delete,
            None,
        ),
        proposal(
            "unused_config_map",
            "ConfigMap",
            "cm-stale",
            "uid-stale",
            Action::Delete,
            None,
        ),
    ];
    let done = apply(&client, &proposals, &mut audit, &recheck)
        .await
        .unwrap();
    drop(client);
    let seen = server.await.unwrap();
    let outcomes: Vec<(&str, Outcome)> = done
        .iter()
        .map(|(p, o)| (p.object.name.as_str(), *o))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("job-old-done", Outcome::Deleted),
            ("cm-used", Outcome::Stopped),
            ("cm-stale", Outcome::Deleted)
        ]
    );
    let sent: Vec<(&str, &Value)> = seen
        .iter()
        .filter(|s| s.method == "DELETE")
        .map(|s| (s.path.as_str(), &s.body["preconditions"]))
        .collect();
    assert_eq!(
        sent,
        vec![
            (
                "/apis/batch/v1/namespaces/default/jobs/job-old-done",
                &json!({"uid": "uid-job", "resourceVersion": "13"})
            ),
            (
                "/api/v1/namespaces/default/configmaps/cm-stale",
                &json!({"uid": "uid-stale", "resourceVersion": "12"})
            ),
        ],
        "no DELETE for the ConfigMap a pod started using"
    );
    // Each ConfigMap re-check listed the pods again, right before its deletion (the Job's
    // needs only Jobs and CronJobs).
    let pod_lists = seen
        .iter()
        .filter(|s| s.method == "GET" && s.path == "/api/v1/pods")
        .count();
    assert_eq!(pod_lists, 2);
    let records: Vec<AuditRecord> = std::fs::read_to_string(dir.path().join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records[1].outcome, Outcome::Stopped);
    assert_eq!(
        records[1].message,
        "not deleted: in use since the proposal, by Pod default/new-user (env)"
    );
}

fn proposal(
    code: &str,
    kind: &str,
    name: &str,
    uid: &str,
    action: Action,
    propagation: Option<Propagation>,
) -> Proposal {
    Proposal {
        code: code.into(),
        object: ObjectRef {
            kind: kind.into(),
            namespace: Some("default".into()),
            name: name.into(),
            uid: Some(uid.into()),
        },
        action,
        propagation,
        message: "test".into(),
        times: Default::default(),
        labels: Default::default(),
    }
}

#[tokio::test]
async fn apply_deletes_with_uid_precondition_and_audits_every_attempt() {
    let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = serve(handle, deletes);
    let client = Client::new(mock, "default");
    let dir = tempfile::tempdir().unwrap();
    let audit_path = dir.path().join("audit.jsonl");
    let mut audit = AuditLog::open(&audit_path).unwrap();
    let proposals = vec![
        proposal(
            "completed_job",
            "Job",
            "job-old-done",
            "uid-job",
            Action::Delete,
            Some(Propagation::Background),
        ),
        proposal(
            "unused_secret",
            "Secret",
            "secret-unused",
            "uid-secret",
            Action::Report,
            None,
        ),
        proposal(
            "unused_config_map",
            "ConfigMap",
            "cm-orphan",
            "uid-cm",
            Action::Delete,
            None,
        ),
        proposal(
            "failed_pod",
            "Pod",
            "evicted",
            "uid-pod",
            Action::Delete,
            Some(Propagation::Background),
        ),
    ];
    let (checks, cleanup) = recheck_config();
    let recheck = Recheck {
        checks: &checks,
        cleanup: &cleanup,
        now: "2025-06-01T12:00:00Z".parse().unwrap(),
    };
    let done = apply(&client, &proposals, &mut audit, &recheck)
        .await
        .unwrap();
    drop(client);
    let seen: Vec<Seen> = server
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.method == "DELETE")
        .collect();

    let outcomes: Vec<(&str, Outcome)> = done
        .iter()
        .map(|(p, o)| (p.object.name.as_str(), *o))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("job-old-done", Outcome::Deleted),
            ("cm-orphan", Outcome::UidChanged),
            ("evicted", Outcome::NotFound)
        ]
    );
    // The report-only Secret was never sent, nor the pod the fresh read no longer has;
    // each deletion carried the fresh uid and resourceVersion as preconditions.
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].body["preconditions"],
        json!({"uid": "uid-job", "resourceVersion": "40"})
    );
    assert_eq!(seen[0].body["propagationPolicy"], "Background");
    assert_eq!(
        seen[1].body["preconditions"],
        json!({"uid": "uid-cm", "resourceVersion": "41"})
    );
    assert_eq!(seen[1].body.get("propagationPolicy"), None);

    let records: Vec<AuditRecord> = std::fs::read_to_string(&audit_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<(&str, &str, Outcome)> = records
        .iter()
        .map(|r| (r.action.as_str(), r.object.name.as_str(), r.outcome))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("delete", "job-old-done", Outcome::Deleted),
            ("delete", "cm-orphan", Outcome::UidChanged),
            ("delete", "evicted", Outcome::NotFound)
        ]
    );
    assert_eq!(records[0].object.uid.as_deref(), Some("uid-job"));
    assert!(
        records[1].message.contains("Precondition failed"),
        "{}",
        records[1].message
    );
}

#[tokio::test]
async fn audit_log_appends_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
    let mut audit = AuditLog::open(&path).unwrap();
    let rec = AuditRecord {
        time: "2025-06-01T12:00:00Z".parse().unwrap(),
        action: "delete".into(),
        code: "failed_pod".into(),
        object: ObjectRef {
            kind: "Pod".into(),
            namespace: Some("n".into()),
            name: "p".into(),
            uid: Some("u".into()),
        },
        propagation: None,
        outcome: Outcome::Deleted,
        message: "deleted".into(),
    };
    audit.write(&rec).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        "{\"earlier\":true}\n{\"time\":\"2025-06-01T12:00:00Z\",\"action\":\"delete\",\"code\":\"failed_pod\",\"object\":{\"kind\":\"Pod\",\"namespace\":\"n\",\"name\":\"p\",\"uid\":\"u\"},\"outcome\":\"deleted\",\"message\":\"deleted\"}\n"
    );
}

/// The items of kind `kind` in the check fixtures `files`.
fn fixture_items(files: &[&str], kind: &str) -> Vec<Value> {
    files
        .iter()
        .flat_map(|f| {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(f);
            let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            doc["items"].as_array().unwrap().clone()
        })
        .filter(|i| i["kind"] == kind)
        .collect()
}

/// cert-manager installed: Certificates and CertificateRequests from the fixtures.
fn cert_manager(method: &str, path: &str, _q: &str) -> (StatusCode, String) {
    let files = ["certificates-renewal.json", "certificate-requests.json"];
    match (method, path) {
        ("GET", "/apis/cert-manager.io/v1/certificates") => list(
            "CertificateList",
            "cert-manager.io/v1",
            fixture_items(&files, "Certificate"),
            None,
        ),
        ("GET", "/apis/cert-manager.io/v1/certificaterequests") => list(
            "CertificateRequestList",
            "cert-manager.io/v1",
            fixture_items(&files, "CertificateRequest"),
            None,
        ),
        ("GET", _) => list("List", "v1", vec![], None),
        (m, p) => status(405, "MethodNotAllowed", &format!("{m} {p} not expected")),
    }
}

/// Issue 12 on the live path: the latest CertificateRequest's failure in the message, and
/// the Certificate times `/metrics` exports.
#[tokio::test]
async fn live_certificates_carry_the_latest_request_failure_and_their_times() {
    let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = serve(handle, cert_manager);
    let client = Client::new(mock, "default");
    let state = live::load(&client, &config(500)).await.unwrap();
    drop(client);
    server.await.unwrap();
    assert_eq!(state.certificate_requests.len(), 9);
    let now: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
    let r = checks::certificates::check(&state, &ChecksConfig::default(), now);
    let shop = r
        .findings
        .iter()
        .find(|f| f.object.name == "shop-tls")
        .unwrap();
    assert_eq!(shop.code, "certificate_renewal_overdue");
    assert!(
        shop.message
            .contains("; latest CertificateRequest shop-tls-2 (revision 2): Ready False: Failed ("),
        "{}",
        shop.message
    );
    let times = caretaker_aggregator::metrics::ClusterTimes::from_state(&state);
    let shop_times = times
        .certificates
        .iter()
        .find(|c| c.namespace == "shop" && c.name == "shop-tls")
        .unwrap();
    assert_eq!(
        (shop_times.not_after, shop_times.renewal),
        (
            Some("2025-06-06T12:00:00Z".parse().unwrap()),
            Some("2025-05-08T12:00:00Z".parse().unwrap())
        )
    );
}
