//! Chart updates of the Helm releases in fixtures/helm.json (real release Secrets), looked
//! up in a classic repository (a loopback HTTP server serving a realistic `index.yaml`),
//! in an OCI registry behind a bearer-token challenge with `Link` pagination (a loopback
//! fake), and in a real OCI registry (Debian's docker-registry, see
//! tests/services/docker-registry.sh) holding pushed Helm chart artifacts. From a dump
//! through a whole round, and from the live API through kube's `Client` over a
//! `tower_test` mock.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use caretaker_aggregator::checks::{CheckResult, ChecksConfig, Severity, helm};
use caretaker_aggregator::cluster::dump;
use caretaker_aggregator::report::{self, CheckRound, MergeConfig, Output};
use caretaker_aggregator::round::{ClusterConfig, RoundConfig, Rounds, Source};
use caretaker_aggregator::schedule::config::Task;
use caretaker_aggregator::updates::{self, Cache, ChartsConfig, fetch};
use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::Digest;

fn now() -> Timestamp {
    "2026-12-05T03:00:00Z".parse().unwrap()
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/helm.json")
}

/// A classic repository index as `helm repo index` writes it (trimmed to what matters,
/// every field a real one has).
fn index_yaml() -> String {
    let entry = |name: &str, version: &str, app: &str| {
        format!(
            "  - annotations:\n      category: Database\n    apiVersion: v2\n    appVersion: {app}\n    created: \"2026-11-20T10:11:12.123456789Z\"\n    dependencies:\n    - name: common\n      repository: oci://registry-1.docker.io/bitnamicharts\n      tags:\n      - bitnami-common\n      version: 2.x.x\n    description: A chart\n    digest: 0c7c1e7b36bb01ad5bd7e8e5ab8b6e7a0e4d1b2c3d4e5f60718293a4b5c6d7e8\n    home: https://example.com/{name}\n    keywords:\n    - {name}\n    maintainers:\n    - name: Example\n      url: https://example.com\n    name: {name}\n    urls:\n    - https://charts.example.com/{name}-{version}.tgz\n    version: {version}\n"
        )
    };
    let mut s = String::from("apiVersion: v1\nentries:\n  postgresql:\n");
    for (v, a) in [
        ("16.2.1", "17.2.0"),
        ("16.0.0", "17.0.0"),
        ("15.6.0-rc.1", "16.4.0"),
        ("15.5.38", "16.3.0"),
        ("15.5.0", "16.1.0"),
        ("15.4.9", "16.0.0"),
    ] {
        s.push_str(&entry("postgresql", v, a));
    }
    s.push_str("  redis:\n");
    for (v, a) in [
        ("20.0.0-beta.1", "7.4.0"),
        ("19.6.4", "7.2.5"),
        ("19.0.2", "7.2.4"),
        ("19.0.1", "7.2.4"),
    ] {
        s.push_str(&entry("redis", v, a));
    }
    s.push_str("generated: \"2026-11-20T10:11:12.123456789Z\"\n");
    s
}

/// What the fake registry's token endpoint and tag lists saw.
#[derive(Default)]
struct Seen {
    token_queries: Vec<BTreeMap<String, String>>,
    tag_requests: Vec<(String, Option<String>)>,
}

type Shared = Arc<Mutex<Seen>>;

/// A classic repository at `/stable`, and an OCI registry at `/v2` whose tag lists need a
/// bearer token from `/token` and come two tags a page.
async fn serve_repositories() -> (String, Shared) {
    let seen: Shared = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let realm = format!("{base}/token");
    let app = Router::new()
        .route("/stable/index.yaml", get(|| async { index_yaml() }))
        .route(
            "/token",
            get(
                |State(seen): State<Shared>, Query(q): Query<BTreeMap<String, String>>| async move {
                    seen.lock().unwrap().token_queries.push(q);
                    axum::Json(json!({"token": "tok-123", "expires_in": 300}))
                },
            ),
        )
        .route(
            "/v2/charts/{chart}/tags/list",
            get(
                move |State(seen): State<Shared>,
                      axum::extract::Path(chart): axum::extract::Path<String>,
                      Query(q): Query<BTreeMap<String, String>>,
                      headers: HeaderMap| {
                    let realm = realm.clone();
                    async move {
                        let auth = headers
                            .get(header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        seen.lock()
                            .unwrap()
                            .tag_requests
                            .push((chart.clone(), q.get("last").cloned()));
                        if auth.as_deref() != Some("Bearer tok-123") {
                            return Response::builder()
                                .status(StatusCode::UNAUTHORIZED)
                                .header(
                                    header::WWW_AUTHENTICATE,
                                    format!(
                                        r#"Bearer realm="{realm}",service="test-registry",scope="repository:charts/{chart}:pull""#
                                    ),
                                )
                                .body(axum::body::Body::from(
                                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                                ))
                                .unwrap();
                        }
                        let all: &[&str] = match chart.as_str() {
                            "web" => &["1.0.0", "1.1.0", "1.1.3", "1.1.4_build.7", "1.2.0", "2.0.0-rc.1", "latest", "2.0.0"],
                            "api" => &["1.4.2", "1.5.0"],
                            _ => {
                                return (
                                    StatusCode::NOT_FOUND,
                                    r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#,
                                )
                                    .into_response();
                            }
                        };
                        let start = q
                            .get("last")
                            .and_then(|l| all.iter().position(|t| t == l))
                            .map_or(0, |p| p + 1);
                        let page: Vec<&str> = all.iter().skip(start).take(2).copied().collect();
                        let mut b = Response::builder().header(header::CONTENT_TYPE, "application/json");
                        if start + 2 < all.len() {
                            b = b.header(
                                header::LINK,
                                format!(
                                    r#"</v2/charts/{chart}/tags/list?last={}&n=2>; rel="next""#,
                                    page[page.len() - 1]
                                ),
                            );
                        }
                        b.body(axum::body::Body::from(
                            json!({"name": format!("charts/{chart}"), "tags": page}).to_string(),
                        ))
                        .unwrap()
                    }
                },
            ),
        )
        .with_state(Arc::clone(&seen));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

fn charts_config(base: &str, registry: &str, extra: &str) -> ChartsConfig {
    #[derive(serde::Deserialize, Default)]
    struct Top {
        #[serde(default)]
        charts: ChartsConfig,
    }
    caretaker_core::config::parse_yaml::<Top>(
        &format!(
            "charts:\n  repositories:\n    - name: stable\n      url: {base}/stable\n    - name: internal\n      url: oci://{registry}/charts\n      plain_http: true\n{extra}"
        ),
        std::path::Path::new("aggregator.yaml"),
    )
    .unwrap()
    .charts
}

/// The verdict both sources must give for the fixture's releases.
fn assert_verdict(check: &CheckResult, report: &updates::ChartUpdatesReport) {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let rows: Vec<String> = report
        .releases
        .iter()
        .map(|r| {
            format!(
                "{}/{} {} {} patch {} minor {} major {} from {}",
                r.namespace,
                r.release,
                r.chart,
                r.version,
                dash(&r.updates.patch),
                dash(&r.updates.minor),
                dash(&r.updates.major),
                dash(&r.repository)
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            "apps/api api 1.4.2 patch - minor 1.5.0 major - from internal",
            "apps/cache redis 19.0.1 patch 19.0.2 minor 19.6.4 major - from stable",
            "apps/db postgresql 15.5.0 patch 15.5.38 minor - major 16.2.1 from stable",
            "apps/web web 1.1.0 patch 1.1.4+build.7 minor 1.2.0 major 2.0.0 from internal",
        ],
        "prereleases skipped, OCI `_` read as `+`, the unreadable release left out"
    );
    assert_eq!(report.releases[3].latest.as_deref(), Some("2.0.0"));
    let findings: Vec<(&str, Severity, String, &str)> = check
        .findings
        .iter()
        .map(|f| {
            (
                f.code.as_str(),
                f.severity,
                f.object.to_string(),
                f.message.as_str(),
            )
        })
        .collect();
    assert!(
        findings.contains(&(
            "chart_update_major",
            Severity::Info,
            "HelmRelease/apps/db".into(),
            "chart postgresql 15.5.0: major update to 16.2.1 in repository stable"
        )),
        "{findings:#?}"
    );
    assert_eq!(
        findings
            .iter()
            .filter(|f| f.0 == "chart_update_patch")
            .count(),
        3
    );
    assert_eq!(
        findings
            .iter()
            .filter(|f| f.0 == "chart_update_minor")
            .count(),
        3
    );
    assert_eq!(
        findings
            .iter()
            .filter(|f| f.0 == "chart_update_major")
            .count(),
        2
    );
    assert!(check.findings.iter().all(|f| f.remedy.is_some()));
    assert_eq!(
        check.summary,
        "4 releases, 4 with newer chart versions; 2 repositories, 0 unreachable"
    );
    assert_eq!(
        report
            .repositories
            .iter()
            .map(|r| (r.name.as_str(), r.charts_found, r.error.is_none()))
            .collect::<Vec<_>>(),
        vec![("stable", 2, true), ("internal", 2, true)]
    );
}

#[tokio::test]
async fn dump_round_reports_patch_minor_and_major_updates_from_index_and_oci_repositories() {
    let (base, seen) = serve_repositories().await;
    let registry = base.trim_start_matches("http://").to_string();
    let cfg = RoundConfig {
        cluster: ClusterConfig {
            source: Source::Dump,
            dump_paths: vec![fixture()],
            ..ClusterConfig::default()
        },
        charts: charts_config(&base, &registry, ""),
        ..RoundConfig::default()
    };
    let mut rounds = Rounds::new(cfg);
    let tasks = [Task::Helm, Task::ChartUpdates].into();
    let round = rounds.run_tasks(&[], now(), Some(&tasks)).await;
    let check = round
        .checks
        .iter()
        .find(|c| c.name == "chart_updates")
        .expect("the chart_updates check ran");
    let planned = round.planning.chart_updates.as_ref().unwrap();
    assert_verdict(check, planned);
    {
        let seen = seen.lock().unwrap();
        assert!(
            seen.token_queries.contains(&BTreeMap::from([
                (
                    "scope".to_string(),
                    "repository:charts/web:pull".to_string()
                ),
                ("service".to_string(), "test-registry".to_string()),
            ])),
            "the challenge's service and scope go to the token service"
        );
        let web_pages: Vec<Option<&str>> = seen
            .tag_requests
            .iter()
            .filter(|(c, _)| c == "web")
            .map(|(_, l)| l.as_deref())
            .collect();
        assert_eq!(
            web_pages,
            vec![
                None,
                None,
                Some("1.1.0"),
                Some("1.1.4_build.7"),
                Some("2.0.0-rc.1")
            ],
            "401, then the token, then every page by its Link"
        );
    }

    // Into the report: a top-level JSON field and a Markdown section.
    let merged = report::merge(&[], &round, &MergeConfig::default(), now());
    let json: Value = serde_json::to_value(&merged).unwrap();
    let db = json["chart_updates"]["releases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["release"] == "db")
        .unwrap();
    assert_eq!(
        db,
        &json!({"namespace": "apps", "release": "db", "chart": "postgresql", "version": "15.5.0",
                "repository": "stable", "patch": "15.5.38", "major": "16.2.1", "latest": "16.2.1"})
    );
    let back: report::ClusterReport = serde_json::from_value(json).unwrap();
    assert_eq!(back.planning, merged.planning, "the field reads back");
    let md = report::render(&merged, Output::Markdown).unwrap();
    assert!(md.contains("## Chart updates\n\nChecked 4 releases against 2 chart repositories at 2026-12-05 03:00 UTC: 4 with newer chart versions.\n"), "{md}");
    assert!(
        md.contains("| apps/db | postgresql | 15.5.0 | 15.5.38 | - | 16.2.1 | stable |\n"),
        "{md}"
    );

    // The second round reuses the fetched versions (charts.refresh): no new request.
    let before = seen.lock().unwrap().tag_requests.len();
    let again = rounds.run_tasks(&[], now(), Some(&tasks)).await;
    assert_eq!(again.planning, round.planning);
    assert_eq!(seen.lock().unwrap().tag_requests.len(), before);

    // A later round without the task keeps the review (as the checks of other runs).
    let kept = CheckRound::default().updated_with(round.clone(), &tasks);
    let plain = kept.updated_with(CheckRound::default(), &[Task::Pods].into());
    assert_eq!(plain.planning, round.planning);
}

#[tokio::test]
async fn an_unreachable_repository_is_a_warning_naming_its_url_and_the_rest_is_reported() {
    let (base, _) = serve_repositories().await;
    let registry = base.trim_start_matches("http://").to_string();
    // Port 9 (discard) has no listener on loopback; `dead` is mapped for postgresql.
    let cfg = charts_config(
        &base,
        &registry,
        "    - name: dead\n      url: http://127.0.0.1:9/charts\n  chart_repositories:\n    postgresql: dead\n",
    );
    let state = dump::load(&[fixture()]).unwrap();
    let (check, report) =
        updates::check(&helm::releases(&state), &cfg, &mut Cache::default(), now())
            .await
            .unwrap();
    let dead: Vec<_> = check
        .findings
        .iter()
        .filter(|f| f.code == "chart_repository_unreachable")
        .collect();
    assert_eq!(dead.len(), 1, "{:#?}", check.findings);
    assert_eq!(dead[0].severity, Severity::Warning);
    assert!(
        dead[0]
            .message
            .starts_with("chart repository dead (http://127.0.0.1:9/charts) could not be read: http://127.0.0.1:9/charts/index.yaml: request failed"),
        "{}",
        dead[0].message
    );
    let db = report.releases.iter().find(|r| r.release == "db").unwrap();
    assert_eq!(
        (db.repository.as_deref(), db.note.as_deref()),
        (
            None,
            Some("not looked up: repository dead could not be read")
        )
    );
    let web = report.releases.iter().find(|r| r.release == "web").unwrap();
    assert_eq!(
        web.updates.major.as_deref(),
        Some("2.0.0"),
        "the others still"
    );
    assert_eq!(check.severity, Severity::Warning);
}

#[tokio::test]
async fn a_chart_in_no_repository_and_an_oversized_index_are_said_so() {
    let (base, _) = serve_repositories().await;
    let registry = base.trim_start_matches("http://").to_string();
    // Only the classic repository, and an index limit below its size.
    let mut cfg = charts_config(&base, &registry, "");
    cfg.repositories.truncate(1);
    let state = dump::load(&[fixture()]).unwrap();
    let (check, report) =
        updates::check(&helm::releases(&state), &cfg, &mut Cache::default(), now())
            .await
            .unwrap();
    let web = report.releases.iter().find(|r| r.release == "web").unwrap();
    assert_eq!(
        web.note.as_deref(),
        Some("chart web not found in repositories stable")
    );
    assert!(
        check
            .findings
            .iter()
            .any(|f| f.code == "chart_not_in_repositories"
                && f.object.to_string() == "HelmRelease/apps/web")
    );

    cfg.max_index_bytes = 1000;
    let (check, _) = updates::check(&helm::releases(&state), &cfg, &mut Cache::default(), now())
        .await
        .unwrap();
    let f = check
        .findings
        .iter()
        .find(|f| f.code == "chart_repository_unreachable")
        .unwrap();
    assert!(
        f.message
            .ends_with("/stable/index.yaml: answer larger than 1000 bytes"),
        "{}",
        f.message
    );
}

#[tokio::test]
async fn without_repositories_there_is_no_check_and_no_report_field() {
    let state = dump::load(&[fixture()]).unwrap();
    assert!(
        updates::check(
            &helm::releases(&state),
            &ChartsConfig::default(),
            &mut Cache::default(),
            now()
        )
        .await
        .is_none()
    );
    let round = CheckRound::default();
    let merged = report::merge(&[], &round, &MergeConfig::default(), now());
    let json = serde_json::to_value(&merged).unwrap();
    assert!(json.get("chart_updates").is_none());
}

type Handle =
    tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>;

/// Answers like kube-apiserver: the fixture's Secrets for the Secret list, empty lists
/// for everything else.
fn serve_api(mut handle: Handle, secrets: Vec<Value>) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let path = req.uri().path().to_string();
            let items = if path == "/api/v1/secrets" {
                secrets.clone()
            } else {
                vec![]
            };
            let body = json!({"kind": "List", "apiVersion": "v1",
                              "metadata": {"resourceVersion": "4711"}, "items": items});
            seen.push(format!("{} {path}", req.method()));
            send.send_response(
                http::Response::builder()
                    .status(200)
                    .body(kube::client::Body::from(body.to_string().into_bytes()))
                    .unwrap(),
            );
        }
        seen
    })
}

#[tokio::test]
async fn live_release_secrets_give_the_same_chart_updates() {
    let (base, _) = serve_repositories().await;
    let registry = base.trim_start_matches("http://").to_string();
    let list: Value = serde_json::from_str(&std::fs::read_to_string(fixture()).unwrap()).unwrap();
    let (mock, handle) = tower_test::mock::pair();
    let server = serve_api(handle, list["items"].as_array().unwrap().clone());
    let client = kube::Client::new(mock, "default");
    let cfg = RoundConfig {
        cluster: ClusterConfig {
            source: Source::Live,
            ..ClusterConfig::default()
        },
        checks: ChecksConfig::default(),
        charts: charts_config(&base, &registry, ""),
        ..RoundConfig::default()
    };
    let mut rounds = Rounds::with_client(cfg, client.clone());
    let round = rounds
        .run_tasks(&[], now(), Some(&[Task::ChartUpdates].into()))
        .await;
    drop(rounds);
    drop(client);
    let seen = server.await.unwrap();
    assert!(
        seen.contains(&"GET /api/v1/secrets".to_string()),
        "{seen:#?}"
    );
    let check = round
        .checks
        .iter()
        .find(|c| c.name == "chart_updates")
        .unwrap();
    assert_verdict(check, round.planning.chart_updates.as_ref().unwrap());
}

/// The registry of tests/services/docker-registry.sh, or one started here from the
/// Debian package's binary; `None` (the test skips) only outside CI.
struct Registry {
    addr: String,
    _child: Option<(std::process::Child, tempfile::TempDir)>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some((c, _)) = &mut self._child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn registry() -> Option<Registry> {
    if let Ok(addr) = std::env::var("CARETAKER_TEST_REGISTRY") {
        return Some(Registry { addr, _child: None });
    }
    let bin = std::path::Path::new("/usr/bin/docker-registry");
    if !bin.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no docker-registry: tests/services/docker-registry.sh installs and starts it"
        );
        eprintln!("skipping: no docker-registry (apt-get install docker-registry)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = std::process::Command::new(bin)
        .arg("serve")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let reg = Registry {
        addr: addr.clone(),
        _child: Some((child, dir)),
    };
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client
            .get(format!("http://{addr}/v2/"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Some(reg);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("docker-registry did not answer at {addr}");
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(b))
}

/// Uploads one blob monolithically (POST an upload, PUT its bytes with the digest).
async fn push_blob(c: &reqwest::Client, base: &str, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let loc = r.headers()[header::LOCATION].to_str().unwrap().to_string();
    let loc = if loc.starts_with('/') {
        format!("{base}{loc}")
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{loc}{sep}digest={digest}"))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    digest
}

/// Pushes chart `name` `version` as `helm push` does: a Helm config blob, the chart
/// archive as the layer, an OCI image manifest with Helm's media types, tagged with the
/// version (`+` written as `_`).
async fn push_chart(c: &reqwest::Client, base: &str, path: &str, name: &str, version: &str) {
    let repo = format!("{path}/{name}");
    let config = json!({"apiVersion": "v2", "name": name, "version": version,
                        "description": "test chart", "type": "application"})
    .to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(
        &mut gz,
        format!("apiVersion: v2\nname: {name}\nversion: {version}\n").as_bytes(),
    )
    .unwrap();
    let layer = gz.finish().unwrap();
    let config_digest = push_blob(c, base, &repo, config.as_bytes()).await;
    let layer_digest = push_blob(c, base, &repo, &layer).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                    "digest": layer_digest, "size": layer.len()}],
        "annotations": {"org.opencontainers.image.title": name,
                        "org.opencontainers.image.version": version}
    })
    .to_string();
    let tag = version.replace('+', "_");
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header(
            header::CONTENT_TYPE,
            "application/vnd.oci.image.manifest.v1+json",
        )
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn a_real_registry_with_pushed_helm_charts_gives_tags_by_pages_and_updates() {
    let Some(reg) = registry().await else { return };
    let base = format!("http://{}", reg.addr);
    let c = reqwest::Client::new();
    // A path of its own per run: the service's registry is shared by the suite.
    let path = format!("caretaker-test-{}/charts", std::process::id());
    for v in [
        "1.1.0",
        "1.1.3",
        "1.1.4+build.7",
        "1.2.0",
        "2.0.0-rc.1",
        "2.0.0",
    ] {
        push_chart(&c, &base, &path, "web", v).await;
    }
    for v in ["1.4.2", "1.5.0"] {
        push_chart(&c, &base, &path, "api", v).await;
    }

    // Two tags a page: the registry's Link header is followed to the end.
    let client = caretaker_aggregator::signals::client(std::time::Duration::from_secs(5)).unwrap();
    let mut tags = fetch::oci_tags(&client, &reg.addr, &path, "web", true, 2)
        .await
        .unwrap()
        .unwrap();
    tags.sort();
    assert_eq!(
        tags,
        [
            "1.1.0",
            "1.1.3",
            "1.1.4_build.7",
            "1.2.0",
            "2.0.0",
            "2.0.0-rc.1"
        ]
    );
    assert_eq!(
        fetch::oci_tags(&client, &reg.addr, &path, "nothing", true, 2)
            .await
            .unwrap(),
        None,
        "NAME_UNKNOWN is 'not in this repository'"
    );

    // Through the check, from the fixture's release Secrets.
    let (srv, _) = serve_repositories().await;
    let mut cfg = charts_config(&srv, "unused", "");
    cfg.repositories[1] = (
        updates::RepositoryConfig {
            name: "internal".into(),
            url: format!("oci://{}/{path}", reg.addr),
            charts: vec![],
            plain_http: true,
        },
        updates::RepoUrl::parse(&format!("oci://{}/{path}", reg.addr)).unwrap(),
    );
    let state = dump::load(&[fixture()]).unwrap();
    let (check, report) =
        updates::check(&helm::releases(&state), &cfg, &mut Cache::default(), now())
            .await
            .unwrap();
    assert_verdict(&check, &report);
}

/// `checks.exclude` selectors match a HelmRelease finding by its newest release Secret's
/// labels, as they match cluster findings by their objects' labels.
#[tokio::test]
async fn an_exclude_selector_silences_chart_updates_by_the_release_secret_labels() {
    let (base, _seen) = serve_repositories().await;
    let registry = base.trim_start_matches("http://").to_string();
    #[derive(serde::Deserialize, Default)]
    struct Top {
        #[serde(default)]
        checks: ChecksConfig,
    }
    let config = |exclude: &str| RoundConfig {
        cluster: ClusterConfig {
            source: Source::Dump,
            dump_paths: vec![fixture()],
            ..ClusterConfig::default()
        },
        checks: caretaker_core::config::parse_yaml::<Top>(
            &format!("checks:\n  exclude: {exclude}\n"),
            std::path::Path::new("aggregator.yaml"),
        )
        .unwrap()
        .checks,
        charts: charts_config(&base, &registry, ""),
        ..RoundConfig::default()
    };
    let tasks = [Task::ChartUpdates].into();
    let run = |cfg: RoundConfig| async {
        let round = Rounds::new(cfg).run_tasks(&[], now(), Some(&tasks)).await;
        round
            .checks
            .into_iter()
            .find(|c| c.name == "chart_updates")
            .expect("the chart_updates check ran")
    };
    let all = run(config("[]")).await;
    let db = all
        .findings
        .iter()
        .filter(|f| f.object.to_string() == "HelmRelease/apps/db")
        .count();
    assert!(db > 0, "{:#?}", all.findings);
    // Each finding carries the labels of its release's newest Secret (web: v2, not v1).
    let web = all
        .findings
        .iter()
        .find(|f| f.object.to_string() == "HelmRelease/apps/web")
        .unwrap();
    let want: BTreeMap<String, String> = [
        ("name", "web"),
        ("owner", "helm"),
        ("status", "deployed"),
        ("version", "2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(web.labels, want);

    let silenced = run(config(
        "[{check: chart_updates, selector: \"owner=helm,status=pending-install\"}]",
    ))
    .await;
    assert!(
        silenced
            .findings
            .iter()
            .all(|f| f.object.to_string() != "HelmRelease/apps/db"),
        "{:#?}",
        silenced.findings
    );
    assert_eq!(silenced.silenced, db);
    assert_eq!(silenced.findings.len(), all.findings.len() - db);
}
