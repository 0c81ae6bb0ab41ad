//! `/metrics` over a real HTTP listener after a round on a dump of real cert-manager and
//! Velero objects (fixtures judged as of 2025-06-01T12:00:00Z): the values of the check
//! series, and the exposition checked by `promtool check metrics` (Prometheus's own
//! linter; installed with the suite's Prometheus, tests/services/prometheus.sh).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use caretaker_aggregator::api::http::router;
use caretaker_aggregator::checks::ChecksConfig;
use caretaker_aggregator::round::{ClusterConfig, RoundConfig, Rounds, Source};
use caretaker_aggregator::state::State;
use caretaker_aggregator::store::Store;
use jiff::Timestamp;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Serves `state`'s HTTP API on a loopback port and returns its `/metrics` text.
async fn scrape(state: Arc<State>) -> anyhow::Result<(String, String)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let resp = reqwest::get(format!("http://{addr}/metrics")).await?;
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.text().await?;
    server.abort();
    Ok((content_type, body))
}

/// The value of the sample written exactly as `series` (name and labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// Runs `promtool check metrics` on `text`. Without promtool the check is skipped with a
/// message, except under CI=true, where that is a failure.
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is not installed (tests/services/prometheus.sh installs prometheus)"
            );
            eprintln!("skipping promtool check: promtool is not installed");
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn metrics_export_findings_scores_and_certificate_and_backup_times() -> anyhow::Result<()> {
    let now: Timestamp = "2025-06-01T12:00:00Z".parse()?;
    let checks: ChecksConfig =
        serde_saphyr::from_str("exclude:\n  - code: backup_in_progress\n    check: velero\n")?;
    let mut rounds = Rounds::new(RoundConfig {
        cluster: ClusterConfig {
            source: Source::Dump,
            dump_paths: vec![fixture("certificates-renewal.json"), fixture("velero.json")],
            ..ClusterConfig::default()
        },
        checks,
        ..RoundConfig::default()
    });
    let round = rounds.run(&[], now).await;
    let state = State::new(Store::in_memory()?, 3)?;
    state.set_round(round);
    let report = state.cluster_report(Timestamp::now());

    let (content_type, text) = scrape(Arc::clone(&state)).await?;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no series {s} in\n{text}"));

    // cert-manager: shop-tls's renewal is overdue (renewalTime 2025-05-08, notAfter 06-06).
    assert_eq!(
        v(r#"caretaker_certificate_expiry_timestamp_seconds{namespace="shop",name="shop-tls"}"#),
        1_749_211_200.0
    );
    assert_eq!(
        v(r#"caretaker_certificate_renewal_timestamp_seconds{namespace="shop",name="shop-tls"}"#),
        1_746_705_600.0
    );
    assert_eq!(
        v(r#"caretaker_certificate_expiry_timestamp_seconds{namespace="shop",name="api-tls"}"#),
        1_755_518_400.0
    );
    assert_eq!(
        v(
            r#"caretaker_findings{check="certificates",severity="critical",code="certificate_renewal_overdue"}"#
        ),
        1.0
    );
    // Velero: daily's newest finished backup is PartiallyFailed (06-01 04:00), its newest
    // Completed one finished 05-31 03:10; hourly's newest is Completed (06-01 11:10).
    assert_eq!(
        v(
            r#"caretaker_velero_backup_last_successful_timestamp_seconds{namespace="velero",schedule="daily"}"#
        ),
        1_748_661_000.0
    );
    assert_eq!(
        v(
            r#"caretaker_velero_backup_last_finished_timestamp_seconds{namespace="velero",schedule="daily"}"#
        ),
        1_748_750_400.0
    );
    assert_eq!(
        v(
            r#"caretaker_velero_backup_last_successful_timestamp_seconds{namespace="velero",schedule="hourly"}"#
        ),
        1_748_776_200.0
    );
    assert_eq!(
        v(
            r#"caretaker_velero_backup_last_finished_timestamp_seconds{namespace="velero",schedule="hourly"}"#
        ),
        1_748_776_200.0
    );
    // The manual backups manual-1 (Failed) and manual-2 (FailedValidation) are critical;
    // daily's PartiallyFailed backup is a warning; manual-3 (InProgress) is silenced.
    assert_eq!(
        v(r#"caretaker_findings{check="velero",severity="critical",code="backup_failed"}"#),
        1.0
    );
    assert_eq!(
        v(
            r#"caretaker_findings{check="velero",severity="critical",code="backup_failed_validation"}"#
        ),
        1.0
    );
    assert_eq!(
        v(
            r#"caretaker_findings{check="velero",severity="warning",code="backup_partially_failed"}"#
        ),
        1.0
    );
    assert!(
        !text.contains(r#"code="backup_in_progress""#),
        "silenced findings are not in caretaker_findings:\n{text}"
    );
    assert_eq!(v(r#"caretaker_findings_silenced{check="velero"}"#), 1.0);
    assert_eq!(
        v(r#"caretaker_findings_silenced{check="certificates"}"#),
        0.0
    );
    // Every finding of the report is counted once.
    let total: usize = report.checks.iter().map(|c| c.findings.len()).sum();
    let counted: f64 = text
        .lines()
        .filter(|l| l.starts_with("caretaker_findings{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted, total as f64);
    // Scores: the report's own, and per check the same formula on that check alone.
    assert_eq!(v("caretaker_report_score"), f64::from(report.score));
    assert!(report.score < 100);
    for c in &report.checks {
        let (_, alone, _) = caretaker_aggregator::report::score::status_and_score(
            &[],
            std::slice::from_ref(c),
            &[],
        );
        assert_eq!(
            v(&format!("caretaker_check_score{{check=\"{}\"}}", c.name)),
            f64::from(alone)
        );
    }
    // 13 Velero objects, 2 critical and 3 warning: ⌊100 × (1 − (2 + 1.5) ÷ 13)⌋ = 73.
    assert_eq!(v(r#"caretaker_check_score{check="velero"}"#), 73.0);
    // Last runs: the round's time, for it and for each check it ran.
    assert_eq!(
        v("caretaker_round_last_run_timestamp_seconds"),
        1_748_779_200.0
    );
    assert_eq!(
        v(r#"caretaker_check_last_run_timestamp_seconds{check="certificates"}"#),
        1_748_779_200.0
    );
    assert_eq!(
        v(r#"caretaker_check_last_run_timestamp_seconds{check="pods"}"#),
        1_748_779_200.0
    );
    promtool_check(&text);
    Ok(())
}

/// Issue 12: `checks.namespaces` is honoured on a dump source: the round sees only them.
#[tokio::test]
async fn a_dump_round_keeps_only_the_configured_namespaces() -> anyhow::Result<()> {
    let now: Timestamp = "2025-06-01T12:00:00Z".parse()?;
    let checks: ChecksConfig = serde_saphyr::from_str("namespaces: [web]\n")?;
    let mut rounds = Rounds::new(RoundConfig {
        cluster: ClusterConfig {
            source: Source::Dump,
            dump_paths: vec![
                fixture("certificates-renewal.json"),
                fixture("certificate-requests.json"),
            ],
            ..ClusterConfig::default()
        },
        checks,
        ..RoundConfig::default()
    });
    let round = rounds.run(&[], now).await;
    let certs = round
        .checks
        .iter()
        .find(|c| c.name == "certificates")
        .unwrap();
    let mut names: Vec<&str> = certs
        .findings
        .iter()
        .map(|f| f.object.name.as_str())
        .collect();
    names.sort();
    assert_eq!(names, vec!["bad-csr-tls", "denied-tls", "new-tls"]);
    let times = round.times.unwrap();
    assert!(times.certificates.iter().all(|c| c.namespace == "web"));
    assert_eq!(times.certificates.len(), 3);
    Ok(())
}
