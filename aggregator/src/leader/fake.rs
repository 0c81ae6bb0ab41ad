//! A fake API server for the leader-election tests, over kube's `tower_test` mock: one
//! Lease (real Lease JSON, `resourceVersion` checked on update with a 409 Conflict like
//! kube-apiserver, 404 and AlreadyExists Status objects) and pods whose labels take JSON
//! merge patches. Every request is recorded; pod patches with their content type, query
//! and body, so tests assert exactly what was sent.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

use super::config::Timing;

pub(crate) const NS: &str = "caretaker";
pub(crate) const NAME: &str = "caretaker-aggregator";
pub(crate) const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/caretaker/leases";
pub(crate) const PODS: &str = "/api/v1/namespaces/caretaker/pods";

/// A pod PATCH as received.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PodPatch {
    pub path: String,
    pub content_type: String,
    pub query: String,
    pub body: Value,
}

#[derive(Debug, Default)]
pub(crate) struct Fake {
    pub lease: Option<Value>,
    pub rv: u64,
    /// Answer every request with this status (500: the API server is failing).
    pub fail: Option<u16>,
    /// Answer this many of the next pod PATCHes with 500 (`usize::MAX`: all of them).
    pub(crate) fail_pod_patches: usize,
    /// Before the next update, another replica takes the Lease (so the update conflicts).
    pub(crate) race_next_put: Option<String>,
    /// Pods by name.
    pub pods: BTreeMap<String, Value>,
    /// `METHOD path` of every request.
    pub seen: Vec<String>,
    /// Every pod PATCH, failed ones included.
    pub patches: Vec<PodPatch>,
}

impl Fake {
    pub(crate) fn spec(&self) -> Value {
        self.lease
            .as_ref()
            .map_or(Value::Null, |l| l["spec"].clone())
    }
    fn put_lease(&mut self, mut lease: Value) {
        self.rv += 1;
        lease["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.lease = Some(lease);
    }
    pub(crate) fn set_spec(&mut self, spec: Value) {
        let mut l = self
            .lease
            .clone()
            .unwrap_or_else(|| lease_json(Value::Null));
        l["spec"] = spec;
        self.put_lease(l);
    }
    /// A running pod `name` with the Deployment's labels plus `labels`.
    pub(crate) fn add_pod(&mut self, name: &str, labels: Value) {
        let mut all = json!({"app.kubernetes.io/name": "caretaker-aggregator", "app.kubernetes.io/instance": "caretaker", "pod-template-hash": "5d8f7"});
        for (k, v) in labels.as_object().into_iter().flatten() {
            all[k] = v.clone();
        }
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "uid": "0b9e6a1c-0000-4000-8000-000000000002", "resourceVersion": "100", "labels": all},
            "spec": {"containers": [{"name": "aggregator", "image": "caretaker"}]},
            "status": {"phase": "Running"},
        });
        self.pods.insert(name.into(), pod);
    }
    /// The `caretaker.io/role` label of pod `name`.
    pub(crate) fn role(&self, name: &str) -> Value {
        self.pods.get(name).map_or(Value::Null, |p| {
            p["metadata"]["labels"]["caretaker.io/role"].clone()
        })
    }
}

pub(crate) type Shared = Arc<Mutex<Fake>>;

pub(crate) fn lease_json(spec: Value) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": NAME, "namespace": NS, "uid": "6f1f0a52-0000-4000-8000-000000000001", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec,
    })
}

pub(crate) fn held_by(holder: &str, transitions: i32) -> Value {
    json!({"holderIdentity": holder, "leaseDurationSeconds": 15, "acquireTime": "2026-01-01T00:00:00.000000Z",
           "renewTime": "2026-01-01T00:00:10.000000Z", "leaseTransitions": transitions})
}

fn status(code: u16, reason: &str, message: &str, kind: &str) -> (StatusCode, Value) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason,
                      "details": {"name": NAME, "kind": kind}, "code": code});
    (StatusCode::from_u16(code).unwrap(), body)
}

fn internal_error(kind: &str) -> (StatusCode, Value) {
    status(
        500,
        "InternalError",
        "Internal error occurred: etcdserver: request timed out",
        kind,
    )
}

/// Merges `patch` into `target` (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn answer(
    f: &mut Fake,
    method: &str,
    path: &str,
    query: &str,
    content_type: &str,
    body: &Value,
) -> (StatusCode, Value) {
    f.seen.push(format!("{method} {path}"));
    if let Some(code) = f.fail {
        return status(
            code,
            "InternalError",
            "Internal error occurred: etcdserver: request timed out",
            "leases",
        );
    }
    if let Some(name) = path.strip_prefix(&format!("{PODS}/")) {
        if method == "PATCH" {
            f.patches.push(PodPatch {
                path: path.into(),
                content_type: content_type.into(),
                query: query.into(),
                body: body.clone(),
            });
            if f.fail_pod_patches > 0 {
                f.fail_pod_patches -= 1;
                return internal_error("pods");
            }
            if content_type != "application/merge-patch+json" {
                return status(
                    415,
                    "UnsupportedMediaType",
                    &format!("the body of the request was in an unknown format: {content_type}"),
                    "pods",
                );
            }
        }
        let Some(pod) = f.pods.get_mut(name) else {
            return status(
                404,
                "NotFound",
                &format!("pods \"{name}\" not found"),
                "pods",
            );
        };
        return match method {
            "GET" => (StatusCode::OK, pod.clone()),
            "PATCH" => {
                merge(pod, body);
                (StatusCode::OK, pod.clone())
            }
            m => status(
                405,
                "MethodNotAllowed",
                &format!("{m} {path} is not expected"),
                "pods",
            ),
        };
    }
    let item = format!("{PATH}/{NAME}");
    match (method, path) {
        ("GET", p) if p == item => match &f.lease {
            Some(l) => (StatusCode::OK, l.clone()),
            None => status(
                404,
                "NotFound",
                &format!("leases.coordination.k8s.io \"{NAME}\" not found"),
                "leases",
            ),
        },
        ("POST", PATH) => {
            if f.lease.is_some() {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("leases.coordination.k8s.io \"{NAME}\" already exists"),
                    "leases",
                );
            }
            let mut l = body.clone();
            l["metadata"]["namespace"] = json!(NS);
            l["metadata"]["uid"] = json!("6f1f0a52-0000-4000-8000-000000000001");
            f.put_lease(l);
            (StatusCode::CREATED, f.lease.clone().unwrap())
        }
        ("PUT", p) if p == item => {
            if let Some(racer) = f.race_next_put.take() {
                f.set_spec(held_by(&racer, 9));
            }
            let Some(current) = &f.lease else {
                return status(
                    404,
                    "NotFound",
                    &format!("leases.coordination.k8s.io \"{NAME}\" not found"),
                    "leases",
                );
            };
            if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                return status(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on leases.coordination.k8s.io \"{NAME}\": the object has been modified; please apply your changes to the latest version and try again"
                    ),
                    "leases",
                );
            }
            f.put_lease(body.clone());
            (StatusCode::OK, f.lease.clone().unwrap())
        }
        (m, p) => status(
            405,
            "MethodNotAllowed",
            &format!("{m} {p} is not expected"),
            "leases",
        ),
    }
}

/// A client whose requests `fake` answers.
pub(crate) fn client(fake: &Shared) -> kube::Client {
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let f = Arc::clone(fake);
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = http_body_util::BodyExt::collect(body)
                .await
                .unwrap()
                .to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let content_type = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let (code, v) = answer(
                &mut f.lock().unwrap(),
                parts.method.as_str(),
                parts.uri.path(),
                parts.uri.query().unwrap_or(""),
                &content_type,
                &body,
            );
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(v.to_string().into_bytes()))
                    .unwrap(),
            );
        }
    });
    kube::Client::new(mock, "default")
}

/// client-go's defaults.
pub(crate) fn timing() -> Timing {
    Timing {
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    }
}

pub(crate) fn shared(lease: Option<Value>) -> Shared {
    let mut f = Fake::default();
    if let Some(spec) = lease {
        f.set_spec(spec);
    }
    Arc::new(Mutex::new(f))
}

pub(crate) fn take_seen(f: &Shared) -> Vec<String> {
    std::mem::take(&mut f.lock().unwrap().seen)
}
