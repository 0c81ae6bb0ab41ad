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
    // Unique per test, not only per moment: the two Alertmanager tests run at once.
    let run = format!("kept-apart-{}", Timestamp::now().as_nanosecond());
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
        timeout: caretaker_aggregator::signals::config::Timeout::secs(5),
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

/// Two rounds against the real Alertmanager: between them one alert resolves (posted
/// again with `endsAt` now, as Prometheus does), one stays firing, one is silenced. The
/// records keep the fingerprint, state, silencedBy and endsAt, and the review counts the
/// resolved one as a short firing, the silenced one apart.
#[tokio::test]
async fn alertmanager_rounds_feed_the_alert_review() -> anyhow::Result<()> {
    use caretaker_aggregator::signals::alertmanager::AlertsNow;
    use caretaker_aggregator::signals::review::{AlertReviewConfig, ReviewState, review};
    let Some(url) = service("CARETAKER_TEST_ALERTMANAGER_URL") else {
        return Ok(());
    };
    let client = reqwest::Client::new();
    let run = format!("review-{}", Timestamp::now().as_nanosecond());
    let starts = Timestamp::now() - Duration::from_secs(120);
    let ends = (Timestamp::now() + Duration::from_secs(600)).to_string();
    let alert = |name: &str, ends: &str| serde_json::json!({"labels": {"alertname": name, "run": run}, "startsAt": starts.to_string(), "endsAt": ends});
    let post = |body: serde_json::Value| {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .post(format!("{url}/api/v2/alerts"))
                .json(&body)
                .send()
                .await?
                .error_for_status()
        }
    };
    post(serde_json::json!([
        alert("CaretakerReviewBrief", &ends),
        alert("CaretakerReviewSteady", &ends),
        alert("CaretakerReviewSilenced", &ends),
    ]))
    .await?;
    let silence = serde_json::json!({
        "matchers": [{"name": "alertname", "value": "CaretakerReviewSilenced", "isRegex": false}, {"name": "run", "value": run, "isRegex": false}],
        "startsAt": Timestamp::now().to_string(), "endsAt": ends, "createdBy": "caretaker-tests", "comment": "review test"
    });
    let silence_id = client
        .post(format!("{url}/api/v2/silences"))
        .json(&silence)
        .send()
        .await?
        .error_for_status()?
        .json::<serde_json::Value>()
        .await?["silenceID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let cfg = AlertmanagerConfig {
        url: url.clone(),
        timeout: caretaker_aggregator::signals::config::Timeout::secs(5),
    };
    let mine = |a: AlertsNow| AlertsNow {
        records: a
            .records
            .into_iter()
            .filter(|r| r.name.starts_with("CaretakerReview"))
            .collect(),
        ..AlertsNow::default()
    };
    // Round 1: all three, the silenced one with the silence's id.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let a = mine(alerts_now(&cfg).await?);
        let silenced = a
            .records
            .iter()
            .any(|r| r.name == "CaretakerReviewSilenced" && r.silenced_by == [silence_id.clone()]);
        if a.records.len() == 3 && silenced {
            break a;
        }
        anyhow::ensure!(Instant::now() < deadline, "round 1: {:?}", a.records);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let t1 = Timestamp::now();
    for r in &first.records {
        assert_eq!(r.fingerprint.len(), 16, "{r:?}");
        assert_eq!(r.starts_at.as_second(), starts.as_second(), "{r:?}");
        assert!(r.ends_at.is_some(), "{r:?}");
        let expected = if r.name == "CaretakerReviewSilenced" {
            "suppressed"
        } else {
            "active"
        };
        assert_eq!(r.state, expected, "{r:?}");
    }
    // The brief one resolves.
    post(serde_json::json!([alert(
        "CaretakerReviewBrief",
        &Timestamp::now().to_string()
    )]))
    .await?;
    let second = loop {
        let a = mine(alerts_now(&cfg).await?);
        if a.records.len() == 2 {
            break a;
        }
        anyhow::ensure!(Instant::now() < deadline, "round 2: {:?}", a.records);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let t2 = Timestamp::now();
    let r = review(
        &[(t1, &first), (t2, &second)],
        t2,
        &AlertReviewConfig::default(),
    );
    let rows: Vec<(&str, ReviewState, u32, u32, u32)> = r
        .alerts
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                a.state,
                a.times_fired,
                a.short_firings,
                a.still_firing,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("CaretakerReviewBrief", ReviewState::Active, 1, 1, 0),
            ("CaretakerReviewSteady", ReviewState::Active, 1, 0, 1),
            ("CaretakerReviewSilenced", ReviewState::Silenced, 1, 0, 1),
        ]
    );
    // Firing time: the brief one from its start to no later than the second round.
    let brief = &r.alerts[0];
    assert!(
        brief.firing_seconds >= 120
            && brief.firing_seconds <= t2.duration_since(starts).as_secs().unsigned_abs()
    );
    Ok(())
}
