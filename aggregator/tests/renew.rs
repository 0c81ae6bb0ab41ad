//! `certificates renew` against kube's `Client` over a `tower_test` mock answering like
//! kube-apiserver with cert-manager's Certificate JSON: the exact status PATCH of an
//! applied renewal, no write in a dry run, the maintenance window, and the refusal of a
//! Certificate that is already issuing.

use std::sync::{Arc, Mutex};

use caretaker_aggregator::checks::cli::FileConfig;
use caretaker_aggregator::cleanup::apply::{AuditRecord, Outcome};
use caretaker_aggregator::renew::cli::{Output, RenewArgs, RenewCliError, execute};
use caretaker_aggregator::renew::{RenewError, Target};
use http::{Request, Response, StatusCode};
use jiff::Timestamp;
use kube::client::Body;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    content_type: String,
    body: Value,
}

const PATH: &str = "/apis/cert-manager.io/v1/namespaces/web/certificates/web-tls";

/// A Certificate as cert-manager 1.16 leaves it after a failed renewal.
fn certificate(issuing: &str) -> Value {
    json!({
      "apiVersion": "cert-manager.io/v1",
      "kind": "Certificate",
      "metadata": {
        "creationTimestamp": "2026-06-01T00:00:00Z",
        "generation": 2,
        "name": "web-tls",
        "namespace": "web",
        "resourceVersion": "918273",
        "uid": "6c1b0e8e-5a38-4a43-9f0e-3f1d9a1c2b7d"
      },
      "spec": {
        "dnsNames": ["web.example.com"],
        "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "letsencrypt"},
        "secretName": "web-tls"
      },
      "status": {
        "conditions": [
          {"lastTransitionTime": "2026-09-01T00:00:05Z", "message": "Certificate is up to date and has not expired",
           "observedGeneration": 2, "reason": "Ready", "status": "True", "type": "Ready"},
          {"lastTransitionTime": "2026-11-30T00:02:00Z", "message": "The certificate request has failed to complete and will be retried: Failed to wait for order resource \"web-tls-1-3384\" to become ready",
           "observedGeneration": 2, "reason": "Failed", "status": issuing, "type": "Issuing"}
        ],
        "failedIssuanceAttempts": 1,
        "lastFailureTime": "2026-11-30T00:02:00Z",
        "notAfter": "2026-12-30T00:00:00Z",
        "notBefore": "2026-10-01T00:00:00Z",
        "renewalTime": "2026-11-30T00:00:00Z",
        "revision": 1
      }
    })
}

/// Answers GET with `cert` (404 Status when `None`) and a status PATCH with the patched
/// object; records every request.
fn serve(mut handle: Handle, cert: Option<Value>) -> tokio::task::JoinHandle<Vec<Seen>> {
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
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (code, text) = match (s.method.as_str(), s.path.as_str(), &cert) {
                ("GET", PATH, Some(c)) => (StatusCode::OK, c.to_string()),
                ("PATCH", p, Some(c)) if p == format!("{PATH}/status") => {
                    let mut c = c.clone();
                    c["status"]["conditions"] = s.body["status"]["conditions"].clone();
                    c["metadata"]["resourceVersion"] = json!("918274");
                    (StatusCode::OK, c.to_string())
                }
                _ => (
                    StatusCode::NOT_FOUND,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": "certificates.cert-manager.io \"web-tls\" not found", "reason": "NotFound",
                           "details": {"name": "web-tls", "group": "cert-manager.io", "kind": "certificates"}, "code": 404})
                    .to_string(),
                ),
            };
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

fn args(apply: bool, force: bool, audit: &std::path::Path) -> RenewArgs {
    RenewArgs {
        target: "web/web-tls".parse::<Target>().unwrap(),
        apply,
        force,
        config: None,
        audit_log: Some(audit.to_path_buf()),
        kubeconfig: None,
        context: None,
        output: Output::Table,
        now: None,
    }
}

/// Sunday 03:30 Asia/Tokyo: inside the default maintenance window.
const INSIDE: &str = "2026-12-05T18:30:00Z";
/// Saturday 14:00 Asia/Tokyo: outside it.
const OUTSIDE: &str = "2026-12-05T05:00:00Z";

struct Run {
    result: Result<(), RenewCliError>,
    output: String,
    seen: Vec<Seen>,
    connected: bool,
    audit: Vec<AuditRecord>,
}

async fn run(cert: Option<Value>, apply: bool, force: bool, now: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let audit_path = dir.path().join("audit.jsonl");
    let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = serve(handle, cert);
    let connected = Arc::new(Mutex::new(false));
    let mut out = Vec::new();
    let result = {
        let client = kube::Client::new(mock, "default");
        let c = connected.clone();
        let a = args(apply, force, &audit_path);
        execute(
            &a,
            &FileConfig::default(),
            now.parse::<Timestamp>().unwrap(),
            &mut out,
            async move || {
                *c.lock().unwrap() = true;
                Ok(client)
            },
        )
        .await
    };
    let seen = server.await.unwrap();
    let audit = std::fs::read_to_string(&audit_path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let connected = *connected.lock().unwrap();
    Run {
        result,
        output: String::from_utf8(out).unwrap(),
        seen,
        connected,
        audit,
    }
}

#[tokio::test]
async fn apply_sends_the_issuing_condition_as_a_merge_patch_of_the_status_subresource() {
    let r = run(Some(certificate("False")), true, false, INSIDE).await;
    r.result.unwrap();
    assert_eq!(r.seen.len(), 2, "{:?}", r.seen);
    assert_eq!(
        (r.seen[0].method.as_str(), r.seen[0].path.as_str()),
        ("GET", PATH)
    );
    let patch = &r.seen[1];
    assert_eq!(patch.method, "PATCH");
    assert_eq!(patch.path, format!("{PATH}/status"));
    assert_eq!(patch.content_type, "application/merge-patch+json");
    assert_eq!(
        patch.body,
        json!({
          "metadata": {"resourceVersion": "918273"},
          "status": {"conditions": [
            {"lastTransitionTime": "2026-09-01T00:00:05Z", "message": "Certificate is up to date and has not expired",
             "observedGeneration": 2, "reason": "Ready", "status": "True", "type": "Ready"},
            {"lastTransitionTime": "2026-12-05T18:30:00Z", "message": "Certificate re-issuance manually triggered",
             "observedGeneration": 2, "reason": "ManuallyTriggered", "status": "True", "type": "Issuing"}
          ]}
        })
    );
    assert_eq!(
        r.output,
        "renewed Certificate web/web-tls: Issuing condition set (reason ManuallyTriggered); cert-manager re-issues it \
         (renewalTime 2026-11-30T00:00:00Z, notAfter 2026-12-30T00:00:00Z)\n"
    );
    assert_eq!(r.audit.len(), 1);
    assert_eq!(r.audit[0].action, "renew");
    assert_eq!(r.audit[0].outcome, Outcome::Renewed);
    assert_eq!(r.audit[0].object.to_string(), "Certificate/web/web-tls");
    assert_eq!(
        r.audit[0].object.uid.as_deref(),
        Some("6c1b0e8e-5a38-4a43-9f0e-3f1d9a1c2b7d")
    );
}

#[tokio::test]
async fn a_dry_run_reads_and_writes_nothing() {
    // Outside the window: a dry run is allowed anywhere.
    let r = run(Some(certificate("False")), false, false, OUTSIDE).await;
    r.result.unwrap();
    assert_eq!(r.seen.len(), 1, "{:?}", r.seen);
    assert_eq!(r.seen[0].method, "GET");
    assert!(
        r.output.starts_with(
            "would renew Certificate web/web-tls: set its Issuing condition (reason ManuallyTriggered) \
             through the status subresource; add --apply to do it"
        ),
        "{}",
        r.output
    );
    assert!(r.audit.is_empty());
}

#[tokio::test]
async fn apply_outside_the_window_is_refused_before_the_cluster_is_read() {
    let r = run(Some(certificate("False")), true, false, OUTSIDE).await;
    let e = r.result.unwrap_err();
    assert!(matches!(e, RenewCliError::OutsideWindow(_)), "{e}");
    assert_eq!(e.exit_code(), 75);
    assert!(e.to_string().starts_with("nothing renewed: "), "{e}");
    assert!(!r.connected);
    assert!(r.seen.is_empty());
    assert!(r.output.is_empty() && r.audit.is_empty());
}

#[tokio::test]
async fn force_renews_outside_the_window() {
    let r = run(Some(certificate("False")), true, true, OUTSIDE).await;
    r.result.unwrap();
    let methods: Vec<&str> = r.seen.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, vec!["GET", "PATCH"]);
    assert_eq!(
        r.seen[1].body["status"]["conditions"][1]["lastTransitionTime"],
        "2026-12-05T05:00:00Z"
    );
}

#[tokio::test]
async fn a_certificate_already_issuing_is_refused_and_not_written() {
    let r = run(Some(certificate("True")), true, false, INSIDE).await;
    let e = r.result.unwrap_err();
    assert!(
        matches!(e, RenewCliError::Renew(RenewError::AlreadyIssuing { .. })),
        "{e}"
    );
    assert_eq!(e.exit_code(), 1);
    assert!(
        e.to_string()
            .starts_with("Certificate web/web-tls is already being issued (Issuing=True since 2026-11-30T00:02:00Z: Failed"),
        "{e}"
    );
    assert_eq!(r.seen.len(), 1);
    assert_eq!(r.seen[0].method, "GET");
    assert_eq!(r.audit.len(), 1);
    assert_eq!(r.audit[0].outcome, Outcome::Failed);
}

#[tokio::test]
async fn a_missing_certificate_is_named() {
    let r = run(None, false, false, INSIDE).await;
    let e = r.result.unwrap_err();
    assert_eq!(e.to_string(), "Certificate web/web-tls not found");
    assert_eq!(r.seen.len(), 1);
}

#[test]
fn a_dump_proposes_renewing_a_certificate_cert_manager_has_not_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("certificates.json");
    let mut renewed = certificate("False");
    renewed["metadata"]["name"] = json!("renewed-tls");
    renewed["metadata"]["uid"] = json!("u-renewed");
    renewed["status"]["renewalTime"] = json!("2027-01-30T00:00:00Z");
    let mut issuing = certificate("True");
    issuing["metadata"]["name"] = json!("issuing-tls");
    let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
                      "items": [certificate("False"), renewed, issuing]});
    std::fs::write(&path, list.to_string()).unwrap();
    let state = caretaker_aggregator::cluster::dump::load(&[path]).unwrap();
    let now: Timestamp = "2026-12-05T00:00:00Z".parse().unwrap();
    let p = caretaker_aggregator::cleanup::propose_with_notes(
        &state,
        &caretaker_aggregator::cleanup::CleanupConfig::default(),
        now,
    );
    let renewals: Vec<&caretaker_aggregator::cleanup::Proposal> = p
        .proposals
        .iter()
        .filter(|p| p.code == "certificate_renewal_due")
        .collect();
    assert_eq!(renewals.len(), 1, "{:?}", p.proposals);
    let json = serde_json::to_value(renewals[0]).unwrap();
    assert_eq!(json["action"], "renew");
    assert_eq!(json["object"]["kind"], "Certificate");
    assert_eq!(json["object"]["namespace"], "web");
    assert_eq!(json["object"]["name"], "web-tls");
    assert!(
        renewals[0]
            .message
            .ends_with("run `caretaker-aggregator certificates renew web/web-tls --apply`"),
        "{}",
        renewals[0].message
    );
    // `cleanup --kind Job` is about Jobs only.
    let jobs_only = caretaker_aggregator::cleanup::CleanupConfig {
        kinds: vec![caretaker_aggregator::cleanup::CleanupKind::Job],
        ..Default::default()
    };
    assert!(
        caretaker_aggregator::cleanup::propose(&state, &jobs_only, now)
            .iter()
            .all(|p| p.code != "certificate_renewal_due")
    );
}
