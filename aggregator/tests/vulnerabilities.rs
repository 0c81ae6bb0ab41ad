//! The vulnerability review on trivy-operator's VulnerabilityReports (a realistic
//! `kubectl get vulnerabilityreports -A -o json` in fixtures/vulnerabilityreports.json),
//! from a dump and from the live API (kube's `Client` over a `tower_test` mock).

use std::path::PathBuf;

use caretaker_aggregator::checks::{self, CheckResult, ChecksConfig, Severity, vulnerabilities};
use caretaker_aggregator::cluster::{ClusterState, Coverage, Resource, dump, live};
use http::{Request, Response, StatusCode};
use jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

fn now() -> Timestamp {
    "2026-12-05T03:00:00Z".parse().unwrap()
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vulnerabilityreports.json")
}

fn vuln_check(state: &ClusterState) -> CheckResult {
    checks::run_all(state, &ChecksConfig::default(), now())
        .into_iter()
        .find(|r| r.name == "vulnerabilities")
        .expect("the vulnerabilities check runs")
}

/// What both sources must give for the fixture.
fn assert_fixture_verdict(r: &CheckResult) {
    let rows: Vec<(&str, Severity, String)> = r
        .findings
        .iter()
        .map(|f| (f.code.as_str(), f.severity, f.object.to_string()))
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "vulnerabilities_fixable",
                Severity::Critical,
                "ReplicaSet/shop/web-7c9d8f6b5d".to_string()
            ),
            (
                "vulnerability_scan_stale",
                Severity::Warning,
                "StatefulSet/db/pg".to_string()
            ),
            (
                "vulnerabilities_unfixed",
                Severity::Info,
                "StatefulSet/db/pg".to_string()
            ),
        ],
        "fixable first; the clean image has no finding"
    );
    assert_eq!(
        r.findings[0].message,
        "container nginx image index.docker.io/library/nginx:1.25.3: 2 CRITICAL (1 fixable), \
         3 HIGH (2 fixable); fixed upstream: CVE-2024-45491, CVE-2024-2961, CVE-2024-33599; \
         scanned 2026-11-30"
    );
    assert_eq!(
        r.findings[0].at,
        Some("2026-11-30T01:12:09Z".parse().unwrap()),
        "the scan time is the finding's moment"
    );
    assert_eq!(
        r.findings[1].message,
        "container postgres image docker.io/bitnami/postgresql:16.1.0-debian-11-r15: last scanned 2026-11-20, more than 7 days ago"
    );
    assert_eq!(
        r.findings[2].message,
        "container postgres image docker.io/bitnami/postgresql:16.1.0-debian-11-r15: 0 CRITICAL (0 fixable), 1 HIGH (0 fixable); no fix released yet; scanned 2026-11-20"
    );
    assert_eq!(
        r.summary,
        "3 scans of 3 images; 2 images with HIGH/CRITICAL, 1 fixable"
    );
    assert_eq!((r.severity, r.objects), (Severity::Critical, Some(3)));
    assert!(r.findings.iter().all(|f| f.remedy.is_some()));
}

#[test]
fn dump_reports_high_and_critical_per_workload_fixable_first_with_scan_age() {
    let state = dump::load(&[fixture()]).unwrap();
    assert_eq!(state.vulnerability_reports.len(), 3);
    let r = vuln_check(&state);
    assert_fixture_verdict(&r);

    // Per image: the digest-only image is named by its digest.
    let scans: Vec<_> = state
        .vulnerability_reports
        .iter()
        .filter_map(vulnerabilities::read)
        .collect();
    let images = vulnerabilities::by_image(&scans);
    assert_eq!(
        images.keys().map(String::as_str).collect::<Vec<_>>(),
        vec![
            "docker.io/bitnami/postgresql:16.1.0-debian-11-r15",
            "ghcr.io/example/shop-api@sha256:9b2a4c1d0e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b",
            "index.docker.io/library/nginx:1.25.3",
        ]
    );
    let nginx = &images["index.docker.io/library/nginx:1.25.3"];
    assert_eq!(
        (
            nginx.0.critical,
            nginx.0.critical_fixable,
            nginx.0.high,
            nginx.0.high_fixable
        ),
        (2, 1, 3, 2)
    );
    assert_eq!(nginx.1, vec!["ReplicaSet/shop/web-7c9d8f6b5d"]);
}

#[test]
fn without_trivy_operator_the_check_is_not_applicable() {
    let state = ClusterState::default();
    let r = vuln_check(&state);
    assert_eq!(r.status, checks::CheckStatus::NotApplicable);
    assert!(r.findings.is_empty());
}

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Answers like kube-apiserver: the fixture's reports for their list path, empty lists
/// for everything else; returns the paths it saw.
fn serve(mut handle: Handle, items: Vec<Value>) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let path = req.uri().path().to_string();
            let (kind, api_version, items) =
                if path == "/apis/aquasecurity.github.io/v1alpha1/vulnerabilityreports" {
                    (
                        "VulnerabilityReportList",
                        "aquasecurity.github.io/v1alpha1",
                        items.clone(),
                    )
                } else {
                    ("List", "v1", vec![])
                };
            let body = json!({"kind": kind, "apiVersion": api_version,
                              "metadata": {"resourceVersion": "4711"}, "items": items});
            seen.push(format!("{} {path}", req.method()));
            send.send_response(
                Response::builder()
                    .status(StatusCode::OK)
                    .body(Body::from(body.to_string().into_bytes()))
                    .unwrap(),
            );
        }
        seen
    })
}

#[tokio::test]
async fn live_reads_vulnerability_reports_from_the_api_with_the_same_verdict() {
    let text = std::fs::read_to_string(fixture()).unwrap();
    let list: Value = serde_json::from_str(&text).unwrap();
    let items = list["items"].as_array().unwrap().clone();
    let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = serve(handle, items);
    let client = Client::new(mock, "default");
    let state = live::load(&client, &ChecksConfig::default()).await.unwrap();
    drop(client);
    let seen = server.await.unwrap();
    assert!(
        seen.contains(
            &"GET /apis/aquasecurity.github.io/v1alpha1/vulnerabilityreports".to_string()
        ),
        "{seen:#?}"
    );
    assert_eq!(
        state.coverage(Resource::VulnerabilityReport),
        Coverage::Listed
    );
    assert_eq!(state.vulnerability_reports.len(), 3);
    assert_fixture_verdict(&vuln_check(&state));
}
