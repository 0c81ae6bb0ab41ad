//! `report --context/--kubeconfig`: the report of the aggregator in a cluster, read through
//! the API server's service proxy with kube's client (a `tower_test` mock, and a kubeconfig
//! with two contexts whose API servers are loopback listeners).

use std::sync::{Arc, Mutex};

use axum::response::IntoResponse;
use caretaker_aggregator::checks::{CheckResult, Finding, ObjectRef, Severity};
use caretaker_aggregator::cli::kubeconfig::client_and_server;
use caretaker_aggregator::client::{PROXY_TOKEN_HEADER, ServiceRef, fetch_report_via_proxy};
use caretaker_aggregator::report::{self, CheckRound, ClusterReport, MergeConfig};
use http::{Request, Response};
use jiff::Timestamp;
use kube::client::Body;

fn service() -> ServiceRef {
    ServiceRef {
        namespace: "caretaker".into(),
        name: "caretaker-aggregator".into(),
        scheme: "https".into(),
        port: 8080,
    }
}

/// A merged report with one finding about `Pod/shop/<pod>`.
fn sample(pod: &str) -> ClusterReport {
    let now: Timestamp = "2026-12-05T03:00:00Z".parse().unwrap();
    let mut f = Finding::new(
        "crash_loop_back_off",
        Severity::Critical,
        ObjectRef {
            kind: "Pod".into(),
            namespace: Some("shop".into()),
            name: pod.into(),
            uid: None,
        },
        "back-off restarting failed container",
    );
    f.labels.insert("app".into(), "web".into());
    let round = CheckRound {
        at: Some(now),
        checks: vec![CheckResult::new("pods", "1 pod", vec![f])],
        ..CheckRound::default()
    };
    report::merge(&[], &round, &MergeConfig::default(), now)
}

#[tokio::test]
async fn the_report_is_read_through_the_service_proxy_path_with_the_token_in_its_header() {
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let body = serde_json::to_vec(&sample("web-1")).unwrap();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("a request");
        let seen = (
            req.method().clone(),
            req.uri().to_string(),
            req.headers()
                .get(PROXY_TOKEN_HEADER)
                .map(|v| v.to_str().unwrap().to_string()),
        );
        send.send_response(
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap(),
        );
        seen
    });
    let client = kube::Client::new(mock, "default");
    let at: Timestamp = "2026-11-29T03:00:00Z".parse().unwrap();
    let report = fetch_report_via_proxy(
        &client,
        "https://api.example:6443",
        &service(),
        Some(at),
        Some("read-token-0123456789"),
    )
    .await
    .unwrap();
    let (method, uri, token) = server.await.unwrap();
    assert_eq!(method, http::Method::GET);
    assert_eq!(
        uri,
        "/api/v1/namespaces/caretaker/services/https:caretaker-aggregator:8080/proxy/api/v1/report?at=2026-11-29T03:00:00Z"
    );
    assert_eq!(token.as_deref(), Some("Bearer read-token-0123456789"));
    assert_eq!(report, sample("web-1"));
    assert_eq!(report.checks[0].findings[0].labels["app"], "web");
}

#[tokio::test]
async fn an_error_answer_names_the_api_server_and_the_path() {
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        let (_, send) = handle.next_request().await.expect("a request");
        send.send_response(
            Response::builder()
                .status(503)
                .header("content-type", "application/json")
                .body(Body::from(
                    br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"no endpoints available for service \"caretaker-aggregator\"","reason":"ServiceUnavailable","code":503}"#.to_vec(),
                ))
                .unwrap(),
        );
    });
    let client = kube::Client::new(mock, "default");
    let e = fetch_report_via_proxy(&client, "https://api.example:6443", &service(), None, None)
        .await
        .unwrap_err();
    let text = caretaker_core::error::Chain(&e).to_string();
    assert!(
        text.starts_with("GET /api/v1/namespaces/caretaker/services/https:caretaker-aggregator:8080/proxy/api/v1/report through the Kubernetes API server https://api.example:6443"),
        "{text}"
    );
    assert!(text.contains("no endpoints available"), "{text}");
}

/// A loopback "API server": answers `/version` and the proxied report, counting requests.
async fn api_server(pod: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let s = s.clone();
        async move {
            let path = req.uri().path().to_string();
            s.lock().unwrap().push(path.clone());
            if path == "/version" {
                return axum::Json(serde_json::json!({
                    "major": "1", "minor": "31", "gitVersion": "v1.31.0", "gitCommit": "x",
                    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                    "goVersion": "go1.22", "compiler": "gc", "platform": "linux/amd64"
                }))
                .into_response();
            }
            axum::Json(serde_json::to_value(sample(pod)).unwrap()).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn the_chosen_context_of_a_kubeconfig_with_two_is_the_api_server_asked() {
    let (a, seen_a) = api_server("from-a").await;
    let (b, seen_b) = api_server("from-b").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: ctx-a\n\
             clusters:\n- name: a\n  cluster: {{server: \"{a}\"}}\n- name: b\n  cluster: {{server: \"{b}\"}}\n\
             users:\n- name: u\n  user: {{token: t}}\n\
             contexts:\n- name: ctx-a\n  context: {{cluster: a, user: u}}\n- name: ctx-b\n  context: {{cluster: b, user: u}}\n"
        ),
    )
    .unwrap();
    let (client, server) = client_and_server(
        Some(&path),
        Some("ctx-b"),
        std::time::Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(server.trim_end_matches('/'), b);
    let report = fetch_report_via_proxy(&client, &server, &service(), None, None)
        .await
        .unwrap();
    assert_eq!(report.checks[0].findings[0].object.name, "from-b");
    assert_eq!(
        *seen_b.lock().unwrap(),
        [
            "/version",
            "/api/v1/namespaces/caretaker/services/https:caretaker-aggregator:8080/proxy/api/v1/report"
        ]
    );
    assert!(
        seen_a.lock().unwrap().is_empty(),
        "the other context's server is not asked"
    );
}
