//! The real `caretaker-standalone` binary.

use std::process::Command;

fn standalone() -> Command {
    Command::new(env!("CARGO_BIN_EXE_caretaker-standalone"))
}

#[test]
fn standalone_once_prints_json_with_the_root_filesystem() {
    let out = standalone()
        .args(["--once", "--no-cluster", "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["schema_version"],
        caretaker_aggregator::report::SCHEMA_VERSION
    );
    // A fresh node and no checks: two parts, node freshness (100) and this machine's own
    // disk (100, 50 near pressure at 80 %, 0 under it at 85 %), whatever is mounted here now.
    let disk: u64 = match v["disk_pressure"].as_array().unwrap().first() {
        None => 100,
        Some(d) if d["level"] == "pressure" => 0,
        Some(_) => 50,
    };
    let lost = 100 - (100 + disk) / 2;
    assert_eq!(
        v["score"].as_u64(),
        Some(100 - lost),
        "{}",
        v["disk_pressure"]
    );
    let expected = if lost == 0 {
        "ok"
    } else if v["disk_pressure"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["level"] == "pressure")
    {
        "critical"
    } else {
        "warning"
    };
    assert_eq!(v["status"], expected);
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["freshness"], "fresh");
    assert!(nodes[0]["reports_stored_total"].as_u64().unwrap() >= 2);
    let fs = nodes[0]["report"]["filesystems"].as_array().unwrap();
    let root = fs
        .iter()
        .find(|f| f["mountpoint"] == "/")
        .expect("root filesystem listed");
    assert!(root["size_bytes"].as_u64().unwrap() > 0);
    assert!(nodes[0]["report"]["agent"]["rss_bytes"].as_u64().unwrap() > 0);
    assert!(
        nodes[0]["report"]["network"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["device"] == "lo")
    );
}

#[test]
fn standalone_markdown_is_a_dated_record() {
    let out = standalone()
        .args(["--once", "--no-cluster", "--output", "markdown"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.starts_with("# caretaker maintenance record, "), "{md}");
    assert!(
        md.contains("\n- nodes: 1 (1 fresh, 0 stale, 0 missing)\n"),
        "{md}"
    );
    for section in [
        "## What was done",
        "## Results",
        "## Problems",
        "## Next actions",
        "## Node details",
    ] {
        assert!(md.contains(section), "{section} missing: {md}");
    }
}

#[test]
fn standalone_html_is_the_report_page_with_this_machines_root_filesystem() {
    let out = standalone()
        .args(["--once", "--output", "html"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    // A fresh node and no checks: the status is ok unless this machine's own disk is near
    // or under pressure right now (it is shared with other builds), never anything else.
    assert!(
        ["ok", "warning", "critical"]
            .iter()
            .any(|s| page.contains(&format!(r#"<span class="value">{s}</span>"#))),
        "{page}"
    );
    assert!(!page.contains(r#"<span class="value">info</span>"#));
    assert!(
        page.contains(r#"data-mount="/" "#),
        "a disk bar for the root filesystem: {page}"
    );
    assert!(page.trim_end().ends_with("</html>"));
}

#[test]
fn standalone_runs_the_cluster_checks_and_proposals_on_the_example_dump_beside_this_node() {
    let out = standalone()
        .args(["--once", "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in ["nodes", "pods", "certificates", "velero", "hpas"] {
        assert!(checks.contains(&name), "{name} in {checks:?}");
    }
    // examples/cluster-dump has completed Jobs, old ReplicaSets, failed pods, snapshots.
    let kinds: std::collections::BTreeSet<&str> = v["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["object"]["kind"].as_str().unwrap())
        .collect();
    for kind in ["Job", "ReplicaSet", "Pod", "VolumeSnapshot"] {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }
    // This machine's own report is there, fresh, next to the dump's nodes (no agent there).
    let nodes = v["nodes"].as_array().unwrap();
    let fresh: Vec<&serde_json::Value> =
        nodes.iter().filter(|n| n["freshness"] == "fresh").collect();
    assert_eq!(fresh.len(), 1, "{nodes:?}");
    assert!(
        !fresh[0]["report"]["filesystems"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    for n in ["node-a", "node-b", "node-c"] {
        assert!(
            nodes.iter().any(|x| x["node_name"] == n),
            "{n} from the dump"
        );
    }
}

#[test]
fn standalone_refuses_a_missing_dump_by_name() {
    let out = standalone()
        .args(["--once", "--from-dump", "/nonexistent/dump.json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--from-dump /nonexistent/dump.json"), "{err}");
}

/// A loopback stand-in for kube-apiserver, serving the objects of `examples/cluster-dump`
/// as the real API does (`/version`, lists per group and plural, 404 for what the dump does
/// not hold), over plain HTTP. Records every request as "METHOD PATH".
struct MockApi {
    addr: std::net::SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The API's plural of a kind (the ones the example holds).
fn plural(group: &str, kind: &str) -> String {
    let k = kind.to_lowercase();
    let k = if group == "metrics.k8s.io" {
        k.trim_end_matches("metrics").to_string()
    } else {
        k
    };
    if k.ends_with('s') {
        format!("{k}es")
    } else if let Some(stem) = k.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{k}s")
    }
}

impl MockApi {
    fn start() -> MockApi {
        use std::collections::BTreeMap;
        use std::io::{BufRead, BufReader, Write};
        // (group, plural) → (kind, apiVersion, items)
        let mut served: BTreeMap<(String, String), (String, String, Vec<serde_json::Value>)> =
            BTreeMap::new();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cluster-dump");
        for e in std::fs::read_dir(dir).unwrap() {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
            for item in v["items"].as_array().unwrap() {
                let api_version = item["apiVersion"].as_str().unwrap().to_string();
                let kind = item["kind"].as_str().unwrap().to_string();
                let group = api_version
                    .rsplit_once('/')
                    .map_or("", |(g, _)| g)
                    .to_string();
                served
                    .entry((group.clone(), plural(&group, &kind)))
                    .or_insert_with(|| (kind, api_version, Vec::new()))
                    .2
                    .push(item.clone());
            }
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let mut parts = request_line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let target = parts.next().unwrap_or("").to_string();
                let path = target.split('?').next().unwrap_or("").to_string();
                log.lock().unwrap().push(format!("{method} {path}"));
                let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                let key = match segs.as_slice() {
                    ["api", "v1", .., plural] => Some((String::new(), plural.to_string())),
                    ["apis", group, _version, .., plural] => {
                        Some((group.to_string(), plural.to_string()))
                    }
                    _ => None,
                };
                let (code, body) = if path == "/version" {
                    (
                        "200 OK",
                        serde_json::json!({"major": "1", "minor": "30", "gitVersion": "v1.30.0", "gitCommit": "mock", "gitTreeState": "clean", "buildDate": "2024-04-17T00:00:00Z", "goVersion": "go1.22.2", "compiler": "gc", "platform": "linux/amd64"}),
                    )
                } else if let Some((kind, api_version, items)) = key
                    .as_ref()
                    .and_then(|k| served.get(k))
                    .filter(|_| method == "GET")
                {
                    (
                        "200 OK",
                        serde_json::json!({"kind": format!("{kind}List"), "apiVersion": api_version, "metadata": {"resourceVersion": "1"}, "items": items}),
                    )
                } else {
                    (
                        "404 Not Found",
                        serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "the server could not find the requested resource", "reason": "NotFound", "details": {}, "code": 404}),
                    )
                };
                let body = body.to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 {code}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        MockApi { addr, seen }
    }

    /// A kubeconfig with the context `mock` pointing here and `other` pointing nowhere.
    fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: other\nclusters:\n- name: mock\n  cluster:\n    server: http://{}\n- name: closed\n  cluster:\n    server: http://127.0.0.1:1\ncontexts:\n- name: mock\n  context:\n    cluster: mock\n    user: me\n- name: other\n  context:\n    cluster: closed\n    user: me\nusers:\n- name: me\n  user:\n    token: not-a-secret\n",
                self.addr
            ),
        )
        .unwrap();
        path
    }
}

fn report(args: &[&str]) -> serde_json::Value {
    let out = standalone()
        .args(["--once", "--output", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn standalone_with_a_context_reads_the_cluster_through_the_api_like_the_dump_and_only_lists() {
    let api = MockApi::start();
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(tmp.path());
    let live = report(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--context",
        "mock",
    ]);
    let dump = report(&["--from-dump", "../examples/cluster-dump"]);
    // The same objects through the API give the same cleanup proposals as the dump.
    assert!(!dump["proposals"].as_array().unwrap().is_empty());
    assert_eq!(live["proposals"], dump["proposals"]);
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["node_name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&live), names(&dump));
    // Read-only: list requests (and the version probe) only.
    let seen = api.seen.lock().unwrap().clone();
    assert!(seen.contains(&"GET /version".to_string()), "{seen:?}");
    assert!(seen.contains(&"GET /api/v1/pods".to_string()), "{seen:?}");
    assert!(seen.iter().all(|s| s.starts_with("GET ")), "{seen:?}");
}

fn failure(args: &[&str]) -> String {
    let out = standalone().args(["--once"]).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?} must fail");
    assert!(out.stdout.is_empty(), "no report on failure");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn standalone_names_an_unknown_context_an_unreachable_server_and_a_missing_kubeconfig() {
    let api = MockApi::start();
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(tmp.path());
    let k = kubeconfig.to_str().unwrap();

    let err = failure(&["--kubeconfig", k, "--context", "prod"]);
    assert!(
        err.contains(&format!(
            "kubeconfig {k}: no context named \"prod\" (it has: mock, other)"
        )),
        "{err}"
    );
    // The current context (`other`) points at a closed port.
    let err = failure(&["--kubeconfig", k]);
    assert!(
        err.contains(&format!(
            "cannot reach the Kubernetes API server http://127.0.0.1:1/ (kubeconfig {k})"
        )),
        "{err}"
    );
    let missing = tmp.path().join("nope");
    let err = failure(&["--kubeconfig", missing.to_str().unwrap(), "--context", "x"]);
    assert!(
        err.contains(&format!("kubeconfig {}", missing.display())),
        "{err}"
    );
    assert!(
        api.seen.lock().unwrap().is_empty(),
        "nothing asked the mock"
    );

    // A server that takes the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_config = tmp.path().join("silent");
    std::fs::write(
        &silent_config,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: s\nclusters:\n- name: s\n  cluster:\n    server: http://{}\ncontexts:\n- name: s\n  context:\n    cluster: s\n    user: me\nusers:\n- name: me\n  user: {{}}\n",
            silent.local_addr().unwrap()
        ),
    )
    .unwrap();
    let s = silent_config.to_str().unwrap();
    let err = failure(&["--kubeconfig", s, "--timeout", "1s"]);
    assert!(
        err.contains(&format!(
            "the Kubernetes API server http://{}/ (kubeconfig {s}) did not answer within 1s",
            silent.local_addr().unwrap()
        )),
        "{err}"
    );
}

/// The shared `-o` formats: the YAML document is the JSON one, JUnit has a suite per check
/// of the example dump, and a value no command prints is a usage error (exit 64).
#[test]
fn standalone_prints_yaml_and_junit_and_refuses_unknown_formats() {
    let run = |format: &str| {
        let out = standalone()
            .args(["--once", "-o", format])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let yaml = run("yaml");
    let v: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(
        v["schema_version"],
        caretaker_aggregator::report::SCHEMA_VERSION
    );
    assert!(
        v["checks"].as_array().is_some_and(|c| !c.is_empty()),
        "{yaml}"
    );
    let xml = run("junit");
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains(r#"<testsuite name="pods""#), "{xml}");
    let out = standalone().args(["--once", "-o", "xml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[possible values: table, wide, json, yaml, markdown, html, junit]"),
        "{err}"
    );
}
