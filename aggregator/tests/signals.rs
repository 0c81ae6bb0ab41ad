//! External signals against the real Prometheus and Alertmanager that `tests/run-all.sh`
//! starts (tests/services/prometheus.sh). Outside CI, without them, the tests say so and
//! pass; under CI=true a missing service fails them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use caretaker_aggregator::signals::alertmanager::alerts_now;
use caretaker_aggregator::signals::config::{AlertmanagerConfig, PrometheusConfig};
use caretaker_aggregator::signals::prometheus::Prometheus;
use jiff::Timestamp;

fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok_and(|c| c == "true") => {
            panic!("{var} is not set: tests/run-all.sh starts that service")
        }
        _ => {
            eprintln!("skipped: {var} is not set (run through tests/run-all.sh)");
            None
        }
    }
}

/// A scrape target whose counters grow at a fixed rate: 90 requests/s answered 200 and
/// 10/s answered 500 (error rate 10 %), every request taking between 1 and 2 s (the
/// histogram's (1, 2] bucket), so p95 interpolates to 1.95 s.
fn metrics_text(started: Instant) -> String {
    let t = started.elapsed().as_secs_f64() + 100.0;
    let (ok, err) = (90.0 * t, 10.0 * t);
    let all = ok + err;
    format!(
        "# TYPE http_requests_total counter\n\
         http_requests_total{{code=\"200\"}} {ok}\n\
         http_requests_total{{code=\"500\"}} {err}\n\
         # TYPE http_request_duration_seconds histogram\n\
         http_request_duration_seconds_bucket{{le=\"0.5\"}} 0\n\
         http_request_duration_seconds_bucket{{le=\"1\"}} 0\n\
         http_request_duration_seconds_bucket{{le=\"2\"}} {all}\n\
         http_request_duration_seconds_bucket{{le=\"+Inf\"}} {all}\n\
         http_request_duration_seconds_sum {s}\n\
         http_request_duration_seconds_count {all}\n",
        s = all * 1.5
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_figures_and_thresholds_from_a_target_the_test_controls() -> anyhow::Result<()> {
    let (Some(url), Some(targets)) = (
        service("CARETAKER_TEST_PROMETHEUS_URL"),
        service("CARETAKER_TEST_PROMETHEUS_TARGETS"),
    ) else {
        return Ok(());
    };
    let started = Arc::new(Instant::now());
    let s = Arc::clone(&started);
    let app = Router::new().route(
        "/metrics",
        get(move || std::future::ready(metrics_text(*s))),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    std::fs::write(
        &targets,
        format!(r#"[{{"targets":["{addr}"],"labels":{{"test":"signals"}}}}]"#),
    )?;

    let mut cfg = PrometheusConfig::new(url);
    cfg.window = "10s".into();
    let prom = Prometheus::new(cfg)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let figures = loop {
        let f = prom.figures(Timestamp::now()).await?;
        // rate() divides by the whole window: wait until scrapes cover it (about 12 s).
        if f.request_rate_per_second.is_some_and(|r| r > 95.0)
            && f.error_rate.is_some()
            && f.p95_latency_seconds.is_some()
        {
            break f;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "Prometheus never had two scrapes of the target: {f:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    std::fs::write(&targets, "[]")?;

    let rate = figures.request_rate_per_second.unwrap();
    assert!((rate - 100.0).abs() < 5.0, "request rate {rate}");
    assert!(
        (figures.error_rate.unwrap() - 0.10).abs() < 1e-6,
        "{figures:?}"
    );
    assert!(
        (figures.p95_latency_seconds.unwrap() - 1.95).abs() < 1e-6,
        "{figures:?}"
    );
    let problems = prom.problems(&figures);
    assert_eq!(
        problems.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec!["error_rate_high", "p95_latency_high"]
    );
    assert_eq!(problems[0].1, "error rate 10.00 % is above 5.00 %");

    // The trend (what the monthly review shows over 30 days), here over the last 20 s.
    let now = Timestamp::now();
    let trend = prom
        .range(
            &prom.config().expand(&prom.config().error_rate_query),
            now - Duration::from_secs(20),
            now,
            2,
        )
        .await?;
    assert!(!trend.is_empty());
    assert!(
        trend.iter().all(|p| (p.value - 0.10).abs() < 1e-6),
        "{trend:?}"
    );

    // A broken query is an error naming it.
    let err = prom
        .instant("sum(", Timestamp::now())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("Prometheus rejected query \"sum(\": bad_data"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn alertmanager_firing_and_silenced_alerts_are_kept_apart() -> anyhow::Result<()> {
    let Some(url) = service("CARETAKER_TEST_ALERTMANAGER_URL") else {
        return Ok(());
    };
    let client = reqwest::Client::new();
    let run = Timestamp::now().as_nanosecond().to_string();
    let ends = (Timestamp::now() + Duration::from_secs(600)).to_string();
    let alerts = serde_json::json!([
        {"labels": {"alertname": "CaretakerTestDiskFull", "severity": "critical", "run": run}, "annotations": {"summary": "disk full"}, "endsAt": ends},
        {"labels": {"alertname": "CaretakerTestLatency", "severity": "warning", "run": run}, "endsAt": ends},
    ]);
    client
        .post(format!("{url}/api/v2/alerts"))
        .json(&alerts)
        .send()
        .await?
        .error_for_status()?;
    let silence = serde_json::json!({
        "matchers": [{"name": "alertname", "value": "CaretakerTestLatency", "isRegex": false}, {"name": "run", "value": run, "isRegex": false}],
        "startsAt": Timestamp::now().to_string(), "endsAt": ends, "createdBy": "caretaker-tests", "comment": "test"
    });
    client
        .post(format!("{url}/api/v2/silences"))
        .json(&silence)
        .send()
        .await?
        .error_for_status()?;

    let cfg = AlertmanagerConfig {
        url,
        timeout: Duration::from_secs(5),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = alerts_now(&cfg).await?;
        let mine = |v: &[caretaker_aggregator::signals::alertmanager::Alert]| {
            v.iter()
                .filter(|a| a.labels.get("run") == Some(&run))
                .map(|a| a.name.clone())
                .collect::<Vec<_>>()
        };
        let (firing, silenced) = (mine(&now.firing), mine(&now.silenced));
        if firing == ["CaretakerTestDiskFull"] && silenced == ["CaretakerTestLatency"] {
            let disk = now
                .firing
                .iter()
                .find(|a| a.labels.get("run") == Some(&run))
                .unwrap();
            assert_eq!(
                (disk.severity.as_deref(), disk.summary.as_deref()),
                (Some("critical"), Some("disk full"))
            );
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "firing {firing:?}, silenced {silenced:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
