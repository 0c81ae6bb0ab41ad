//! kubectl's conventions on `check`, `cleanup` and `report`: `-n`, `-A`, `-l`,
//! `--context`/`--kubeconfig`, `-o table|wide|json|yaml|markdown|html|junit`, tables with
//! NAMESPACE and NAME that are never cut off a terminal, "No findings.", errors printed
//! once; and golden outputs of the example dump (`examples/cluster-dump`).
//!
//! The goldens are in `tests/golden/check-example.*`; after an intended change,
//! `CARETAKER_BLESS=1 cargo test -p caretaker-aggregator --test kubectl_cli` rewrites them
//! and `git diff` shows what changed. `--now` pins the time the checks judge ages by.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOW: &str = "2026-12-01T00:00:00Z";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example() -> String {
    root()
        .join("examples/cluster-dump")
        .to_string_lossy()
        .into_owned()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caretaker-aggregator"))
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("KUBECONFIG")
        .output()
        .unwrap()
}

fn stdout_ok(args: &[&str]) -> String {
    let o = run(args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Compares `actual` with the golden file `name`, or rewrites it with CARETAKER_BLESS=1.
fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    // The example's path differs per checkout; the goldens name it as the README does.
    let actual = actual.replace(&example(), "examples/cluster-dump");
    if std::env::var_os("CARETAKER_BLESS").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .take(5)
            .map(|(i, (e, a))| format!("line {}:\n- {e}\n+ {a}", i + 1))
            .collect();
        panic!(
            "{} differs from the output ({} vs {} lines); CARETAKER_BLESS=1 rewrites it.\n{}",
            path.display(),
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn golden_table_wide_yaml_and_junit_of_the_example_dump() {
    let ex = example();
    for (format, file) in [
        ("table", "check-example.table.txt"),
        ("wide", "check-example.wide.txt"),
        ("yaml", "check-example.yaml"),
        ("junit", "check-example.junit.xml"),
    ] {
        let out = stdout_ok(&["check", "--from-dump", &ex, "--now", NOW, "-o", format]);
        assert!(
            !out.contains('\u{1b}'),
            "no colour off a terminal: {format}"
        );
        golden(file, &out);
    }
}

#[test]
fn tables_have_namespace_and_name_and_are_not_cut_off_a_terminal() {
    let out = stdout_ok(&["check", "--from-dump", &example(), "--now", NOW]);
    let header = out
        .lines()
        .find(|l| l.starts_with("NAMESPACE"))
        .expect("a findings table");
    let cols: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        cols,
        ["NAMESPACE", "NAME", "CHECK", "SEVERITY", "CODE", "MESSAGE"]
    );
    let row = out
        .lines()
        .find(|l| l.contains("Certificate/shop-tls"))
        .unwrap();
    assert!(row.starts_with("shop "), "{row}");
    // The longest message is printed whole on its line (no wrapping off a terminal),
    // whatever COLUMNS says.
    assert!(
        row.ends_with("403 urn:ietf:params:acme:error:unauthorized)"),
        "{row}"
    );
    let narrow = Command::new(env!("CARGO_BIN_EXE_caretaker-aggregator"))
        .args(["check", "--from-dump", &example(), "--now", NOW])
        .env("COLUMNS", "40")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(narrow.stdout).unwrap(), out);
    // Wide adds columns.
    let wide = stdout_ok(&[
        "check",
        "--from-dump",
        &example(),
        "--now",
        NOW,
        "-o",
        "wide",
    ]);
    let header = wide.lines().find(|l| l.starts_with("NAMESPACE")).unwrap();
    assert!(
        header.contains(" AT ") && header.contains(" REMEDY ") && header.ends_with("UID"),
        "{header}"
    );
}

#[test]
fn yaml_is_the_same_document_as_json() {
    let ex = example();
    let json: serde_json::Value = serde_json::from_str(&stdout_ok(&[
        "check",
        "--from-dump",
        &ex,
        "--now",
        NOW,
        "-o",
        "json",
    ]))
    .unwrap();
    let yaml: serde_json::Value = serde_saphyr::from_str(&stdout_ok(&[
        "check",
        "--from-dump",
        &ex,
        "--now",
        NOW,
        "-o",
        "yaml",
    ]))
    .unwrap();
    assert_eq!(yaml, json);
    let json: serde_json::Value = serde_json::from_str(&stdout_ok(&[
        "cleanup",
        "--from-dump",
        &ex,
        "--now",
        NOW,
        "-o",
        "json",
    ]))
    .unwrap();
    let yaml: serde_json::Value = serde_saphyr::from_str(&stdout_ok(&[
        "cleanup",
        "--from-dump",
        &ex,
        "--now",
        NOW,
        "-o",
        "yaml",
    ]))
    .unwrap();
    assert_eq!(yaml, json);
}

#[test]
fn junit_has_a_suite_per_check_and_failures_for_warnings_and_criticals() {
    let xml = stdout_ok(&[
        "check",
        "--from-dump",
        &example(),
        "--now",
        NOW,
        "-o",
        "junit",
    ]);
    assert_eq!(xml.matches("<testsuite ").count(), 15, "{xml}");
    let json: serde_json::Value = serde_json::from_str(&stdout_ok(&[
        "check",
        "--from-dump",
        &example(),
        "--now",
        NOW,
        "-o",
        "json",
    ]))
    .unwrap();
    let failing = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["findings"].as_array().unwrap())
        .filter(|f| f["severity"] == "warning" || f["severity"] == "critical")
        .count();
    assert_eq!(xml.matches("<failure ").count(), failing, "{xml}");
    assert!(
        xml.contains(
            r#"<testcase name="crash_loop_back_off Pod/default/crashy" classname="caretaker.pods">"#
        ),
        "{xml}"
    );
    // Not applicable: skipped.
    assert!(
        xml.contains(r#"<testcase name="events" classname="caretaker.events">"#),
        "{xml}"
    );
}

#[test]
fn check_html_is_the_aggregators_report_page() {
    let page = stdout_ok(&[
        "check",
        "--from-dump",
        &example(),
        "--now",
        NOW,
        "-o",
        "html",
    ]);
    assert!(page.starts_with("<!DOCTYPE html>"), "{}", &page[..80]);
    assert!(page.contains("Content-Security-Policy"));
    assert!(page.contains("crashy"), "the findings are on the page");
}

/// A small dump with labelled pods in two namespaces.
fn labelled_dump(dir: &Path) -> String {
    let pod = |ns: &str, name: &str, app: &str, phase: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"{ns}","uid":"u-{name}","labels":{{"app":"{app}"}},"creationTimestamp":"2026-11-01T00:00:00Z"}},"spec":{{"containers":[{{"name":"c","image":"x","resources":{{"requests":{{"cpu":"1m","memory":"1Mi"}},"limits":{{"cpu":"1m","memory":"1Mi"}}}}}}]}},"status":{{"phase":"{phase}","reason":"Error","startTime":"2026-11-01T00:00:00Z"}}}}"#
        )
    };
    let owned = pod("shop", "web-1", "web", "Failed").replacen(
        r#""labels""#,
        r#""ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-abc","uid":"rs","controller":true}],"labels""#,
        1,
    );
    let items = [
        owned,
        pod("shop", "db-1", "db", "Failed"),
        pod("ops", "web-2", "web", "Failed"),
    ];
    let path = dir.join("pods.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[{}]}}"#,
            items.join(",")
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

fn pod_names(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut names: Vec<String> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["findings"].as_array().unwrap())
        .filter(|f| f["object"]["kind"] == "Pod")
        .map(|f| {
            format!(
                "{}/{}",
                f["object"]["namespace"].as_str().unwrap(),
                f["object"]["name"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn namespace_all_namespaces_and_selector_choose_the_findings_shown() {
    let dir = tempfile::tempdir().unwrap();
    let dump = labelled_dump(dir.path());
    let base = ["check", "--from-dump", &dump, "--now", NOW, "-o", "json"];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        pod_names(&stdout_ok(&a))
    };
    assert_eq!(with(&[]), ["ops/web-2", "shop/db-1", "shop/web-1"]);
    assert_eq!(with(&["-n", "shop"]), ["shop/db-1", "shop/web-1"]);
    assert_eq!(with(&["--namespace=ops"]), ["ops/web-2"]);
    assert_eq!(with(&["-l", "app=web"]), ["ops/web-2", "shop/web-1"]);
    assert_eq!(
        with(&["-n", "shop", "-l", "app notin (web)"]),
        ["shop/db-1"]
    );
    assert_eq!(with(&["--selector", "app in (db,web),!canary"]).len(), 3);
    // checks.namespaces of the config is honoured on a dump; -A overrides it.
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, "checks:\n  namespaces: [ops]\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    assert_eq!(with(&["--config", cfg]), ["ops/web-2"]);
    assert_eq!(with(&["--config", cfg, "-A"]).len(), 3);
    // The cleanup proposals follow the selection too.
    let o = stdout_ok(&[
        "cleanup",
        "--from-dump",
        &dump,
        "--now",
        NOW,
        "-o",
        "json",
        "-l",
        "app=db",
    ]);
    let v: serde_json::Value = serde_json::from_str(&o).unwrap();
    let names: Vec<&str> = v["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["object"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db-1"]);
    // The table says how many findings the selection hides.
    let table = stdout_ok(&["check", "--from-dump", &dump, "--now", NOW, "-l", "app=db"]);
    assert!(
        table.contains("finding(s) outside the selection (-n/-l) not shown"),
        "{table}"
    );
    // -n and -A together, and a bad selector, are usage errors.
    let o = run(&["check", "--from-dump", &dump, "-n", "shop", "-A"]);
    assert_eq!(o.status.code(), Some(64));
    let o = run(&["check", "--from-dump", &dump, "-l", "app in web"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("invalid label selector \"app in web\""),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `report -l` shows what `check -l` shows on the same cluster: the aggregator's round
/// (which keeps no labels of running pods) carries each object's labels in the report.
#[tokio::test]
async fn report_selector_shows_what_check_selector_shows() {
    use caretaker_aggregator::cli::select::{SelectArgs, Selection, filter_report, parse_selector};
    use caretaker_aggregator::report::{self, MergeConfig};
    use caretaker_aggregator::round::{ClusterConfig, RoundConfig, Rounds, Source};
    let dir = tempfile::tempdir().unwrap();
    let dump = labelled_dump(dir.path());
    // A running pod in a crash loop, whose labels the aggregator does not keep, and its
    // ReplicaSet.
    let running = dir.path().join("running.json");
    std::fs::write(
        &running,
        r#"{"apiVersion":"v1","kind":"List","items":[
          {"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{"name":"api-7f9","namespace":"shop","uid":"rs-api","labels":{"app":"api","pod-template-hash":"7f9"}},
           "spec":{"replicas":1,"selector":{"matchLabels":{"app":"api"}},"template":{"metadata":{"labels":{"app":"api","pod-template-hash":"7f9"}},"spec":{"containers":[{"name":"c","image":"x"}]}}},
           "status":{"replicas":1}},
          {"apiVersion":"v1","kind":"Pod","metadata":{"name":"api-7f9-x","namespace":"shop","uid":"u-api","labels":{"app":"api","pod-template-hash":"7f9"},
            "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"api-7f9","uid":"rs-api","controller":true}],"creationTimestamp":"2026-11-01T00:00:00Z"},
           "spec":{"containers":[{"name":"c","image":"x","resources":{"requests":{"cpu":"1m","memory":"1Mi"},"limits":{"cpu":"1m","memory":"1Mi"}}}]},
           "status":{"phase":"Running","startTime":"2026-11-01T00:00:00Z","containerStatuses":[{"name":"c","image":"x","imageID":"","ready":false,"restartCount":40,
             "state":{"waiting":{"reason":"CrashLoopBackOff","message":"back-off"}}}]}}]}"#,
    )
    .unwrap();
    let running = running.to_string_lossy().into_owned();
    let mut round = Rounds::new(RoundConfig {
        cluster: ClusterConfig {
            source: Source::Dump,
            dump_paths: vec![dump.clone().into(), running.clone().into()],
            ..ClusterConfig::default()
        },
        ..RoundConfig::default()
    });
    let now: jiff::Timestamp = NOW.parse().unwrap();
    let merged = report::merge(
        &[],
        &round.run(&[], now).await,
        &MergeConfig::default(),
        now,
    );
    for selector in ["app=web", "app=api", "app in (api,db)", "app!=web"] {
        let mut r = merged.clone();
        let selection = Selection::resolve(
            &SelectArgs {
                selector: Some(parse_selector(selector).unwrap()),
                ..SelectArgs::default()
            },
            &mut Vec::new(),
        );
        filter_report(&mut r, &selection);
        let from_report = pod_names(&serde_json::to_string(&r).unwrap());
        let from_check = pod_names(&stdout_ok(&[
            "check",
            "--from-dump",
            &dump,
            "--from-dump",
            &running,
            "--now",
            NOW,
            "-o",
            "json",
            "-l",
            selector,
        ]));
        assert!(!from_check.is_empty(), "{selector}");
        assert_eq!(from_report, from_check, "{selector}");
    }
}

#[test]
fn wide_names_the_owner_of_each_object() {
    let dir = tempfile::tempdir().unwrap();
    let dump = labelled_dump(dir.path());
    let out = stdout_ok(&["check", "--from-dump", &dump, "--now", NOW, "-o", "wide"]);
    let header = out.lines().find(|l| l.starts_with("NAMESPACE")).unwrap();
    assert!(header.contains("   OWNER   "), "{header}");
    let row = out
        .lines()
        .find(|l| l.contains(" Pod/web-1 ") && l.contains(" failed "))
        .unwrap();
    assert!(row.contains(" ReplicaSet/web-abc "), "{row}");
    let row = out
        .lines()
        .find(|l| l.contains(" Pod/db-1 ") && l.contains(" failed "))
        .unwrap();
    assert!(!row.contains("ReplicaSet/"), "{row}");
}

#[test]
fn no_findings_is_said_instead_of_an_empty_table() {
    let dir = tempfile::tempdir().unwrap();
    let dump = labelled_dump(dir.path());
    let out = stdout_ok(&["check", "--from-dump", &dump, "--now", NOW, "-n", "nowhere"]);
    assert!(out.contains("\nNo findings.\n"), "{out}");
    assert!(!out.contains("NAMESPACE"), "{out}");
    let out = stdout_ok(&[
        "cleanup",
        "--from-dump",
        &dump,
        "--now",
        NOW,
        "-n",
        "nowhere",
    ]);
    assert!(out.contains("No proposals.\n"), "{out}");
}

#[test]
fn each_command_refuses_the_formats_it_cannot_print_with_exit_64() {
    let ex = example();
    for (args, bad) in [
        (vec!["cleanup", "--from-dump", &ex], "junit"),
        (vec!["cleanup", "--from-dump", &ex], "html"),
        (vec!["check", "--from-dump", &ex], "xml"),
    ] {
        let mut a = args.clone();
        a.extend(["-o", bad]);
        let o = run(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{a:?}: {err}");
        assert!(err.contains(&format!("invalid value '{bad}'")), "{err}");
        assert!(
            err.contains("[possible values: table, wide, json, yaml, markdown"),
            "{err}"
        );
    }
    // Every value each command lists works.
    for format in ["table", "wide", "json", "yaml", "markdown"] {
        stdout_ok(&["cleanup", "--from-dump", &ex, "--now", NOW, "-o", format]);
    }
    for format in ["table", "wide", "json", "yaml", "markdown", "html", "junit"] {
        stdout_ok(&["check", "--from-dump", &ex, "--now", NOW, "-o", format]);
    }
}

#[test]
fn an_error_chain_is_printed_once_naming_the_file_or_server() {
    let o = run(&["check", "--from-dump", "/nonexistent/dump.json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "caretaker-aggregator: error: cannot read dump /nonexistent/dump.json: No such file or directory (os error 2)\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: closed\nclusters:\n- name: closed\n  cluster:\n    server: http://127.0.0.1:1\ncontexts:\n- name: closed\n  context:\n    cluster: closed\n    user: me\nusers:\n- name: me\n  user:\n    token: not-a-secret\n",
    )
    .unwrap();
    let k = kubeconfig.to_str().unwrap();
    for command in ["check", "cleanup", "report"] {
        let o = run(&[command, "--kubeconfig", k, "--context", "prod"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert_eq!(
            err,
            format!(
                "caretaker-aggregator: error: kubeconfig {k}: no context named \"prod\" (it has: closed)\n"
            )
        );
        let o = run(&[command, "--kubeconfig", k]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        let line = err.lines().next().unwrap();
        assert!(
            line.starts_with(&format!(
                "caretaker-aggregator: error: cannot reach the Kubernetes API server http://127.0.0.1:1/ (kubeconfig {k}): "
            )),
            "{err}"
        );
        // Each cause once.
        let causes: Vec<&str> = line.split(": ").collect();
        let mut unique = causes.clone();
        unique.dedup();
        assert_eq!(causes, unique, "{line}");
    }
    // --context reads a live cluster: not with a dump.
    let o = run(&["check", "--from-dump", &example(), "--context", "x"]);
    assert_eq!(o.status.code(), Some(64));
}

#[test]
fn report_at_minus_24h_is_taken_as_the_readme_writes_it() {
    // README: `caretaker-aggregator report ... [--at TIME]`, TIME `-24h`; a server that is
    // not there is the error, not the flag.
    for args in [
        vec!["report", "--server", "http://127.0.0.1:9", "--at", "-24h"],
        vec!["report", "--server", "http://127.0.0.1:9", "--at=-24h"],
        vec![
            "report",
            "--server",
            "http://127.0.0.1:9",
            "--diff",
            "-48h",
            "-24h",
        ],
    ] {
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.starts_with("caretaker-aggregator: error: connect to http://127.0.0.1:9: "),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

/// Under a terminal (util-linux `script` gives the command a pty), severities are coloured
/// and the table fits the terminal's width (`COLUMNS` when the pty has no size); with
/// `NO_COLOR` set, no colour.
#[test]
fn colour_and_width_only_on_a_terminal_and_never_with_no_color() {
    let bin = env!("CARGO_BIN_EXE_caretaker-aggregator");
    let command = format!("{bin} check --from-dump {} --now {NOW} -n shop", example());
    let on_tty = |no_color: bool| {
        let mut c = Command::new("script");
        c.args(["-qec", &command, "/dev/null"])
            .env("COLUMNS", "80")
            .env("TERM", "dumb");
        if no_color {
            c.env("NO_COLOR", "1");
        } else {
            c.env_remove("NO_COLOR");
        }
        let o = c
            .output()
            .expect("util-linux `script` runs the command on a pty");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().replace('\r', "")
    };
    let coloured = on_tty(false);
    assert!(
        coloured.contains("\u{1b}[31mcritical\u{1b}[0m"),
        "{coloured}"
    );
    // Without the colour codes every table line fits (notes are text the terminal wraps).
    let visible = |l: &str| {
        let mut out = String::new();
        let mut rest = l;
        while let Some(at) = rest.find('\u{1b}') {
            out.push_str(&rest[..at]);
            rest = rest[at..].split_once('m').map_or("", |(_, r)| r);
        }
        out.push_str(rest);
        out.chars().count()
    };
    assert!(
        coloured
            .lines()
            .filter(|l| !l.starts_with("note: "))
            .all(|l| visible(l) <= 80),
        "fits 80 columns: {coloured}"
    );
    let plain = on_tty(true);
    assert!(!plain.contains('\u{1b}'), "{plain}");
    assert!(plain.contains("NAMESPACE"), "{plain}");
}

/// An API server on loopback that answers `/version` and every list with an empty list,
/// and records the paths asked.
fn empty_api() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::io::{BufRead, BufReader, Write};
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
            let target = parts.next().unwrap_or("");
            let path = target.split('?').next().unwrap_or("").to_string();
            log.lock().unwrap().push(format!("{method} {path}"));
            let body = if path == "/version" {
                serde_json::json!({"major": "1", "minor": "30", "gitVersion": "v1.30.0", "gitCommit": "mock", "gitTreeState": "clean", "buildDate": "2024-04-17T00:00:00Z", "goVersion": "go1.22.2", "compiler": "gc", "platform": "linux/amd64"})
            } else {
                serde_json::json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []})
            };
            let body = body.to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, seen)
}

#[test]
fn context_and_namespace_read_only_that_namespace_of_that_cluster() {
    let (addr, seen) = empty_api();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: other\nclusters:\n- name: mock\n  cluster:\n    server: http://{addr}\n- name: closed\n  cluster:\n    server: http://127.0.0.1:1\ncontexts:\n- name: mock\n  context:\n    cluster: mock\n    user: me\n- name: other\n  context:\n    cluster: closed\n    user: me\nusers:\n- name: me\n  user:\n    token: not-a-secret\n"
        ),
    )
    .unwrap();
    let out = stdout_ok(&[
        "check",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--context",
        "mock",
        "-n",
        "shop",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["source"], "live");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&"GET /version".to_string()), "{seen:?}");
    assert!(
        seen.contains(&"GET /api/v1/namespaces/shop/pods".to_string()),
        "{seen:?}"
    );
    // Nodes are cluster-scoped: listed whole; pods of other namespaces are not asked for.
    assert!(seen.contains(&"GET /api/v1/nodes".to_string()), "{seen:?}");
    assert!(!seen.contains(&"GET /api/v1/pods".to_string()), "{seen:?}");
    assert!(seen.iter().all(|s| s.starts_with("GET ")), "{seen:?}");
}
