//! The checks that read a signal source (HTTP endpoints, Prometheus, Alertmanager)
//! rather than the cluster state: asynchronous, each fills its part of the round's
//! [`SignalsReport`]. They are listed in [`super::SIGNALS`], beside the cluster checks.

use std::time::Duration;

use caretaker_core::error::Chain;
use futures_util::future::BoxFuture;
use jiff::Timestamp;
use tracing::warn;

use super::{CheckResult, Finding, ObjectRef, Severity};
use crate::report::SignalsReport;
use crate::signals::alertmanager;
use crate::signals::config::SignalsConfig;
use crate::signals::endpoints;
use crate::signals::prometheus::Prometheus;

/// `http_endpoints`: probes each configured endpoint; `None` when none is configured.
pub(crate) fn http_endpoints<'a>(
    cfg: &'a SignalsConfig,
    _now: Timestamp,
    report: &'a mut SignalsReport,
) -> BoxFuture<'a, Option<CheckResult>> {
    Box::pin(async move {
        if cfg.http_endpoints.is_empty() {
            return None;
        }
        let timeout = cfg
            .http_endpoints
            .iter()
            .map(|e| e.timeout.get())
            .max()
            .unwrap_or(Duration::from_secs(5));
        match crate::signals::client(timeout) {
            Ok(client) => {
                let probes = cfg
                    .http_endpoints
                    .iter()
                    .map(|e| endpoints::probe(&client, e));
                report.endpoints = futures_util::future::join_all(probes).await;
            }
            Err(e) => {
                warn!(error = %Chain(&e), "Cannot build the HTTP client for endpoint probes.")
            }
        }
        let findings = report
            .endpoints
            .iter()
            .filter(|r| !r.healthy)
            .map(|r| {
                Finding::new(
                    "endpoint_unhealthy",
                    Severity::Critical,
                    ObjectRef {
                        kind: "Endpoint".into(),
                        name: r.name.clone(),
                        ..ObjectRef::default()
                    },
                    format!(
                        "{} ({}): {}",
                        r.name,
                        r.url,
                        r.problem.as_deref().unwrap_or("unhealthy")
                    ),
                )
            })
            .collect::<Vec<_>>();
        let summary = format!(
            "{} endpoint(s), {} unhealthy",
            report.endpoints.len(),
            findings.len()
        );
        Some(
            CheckResult::new("http_endpoints", summary, findings)
                .with_objects(report.endpoints.len()),
        )
    })
}

/// `prometheus`: the service figures and their problems; `None` without a Prometheus.
pub(crate) fn prometheus<'a>(
    cfg: &'a SignalsConfig,
    now: Timestamp,
    report: &'a mut SignalsReport,
) -> BoxFuture<'a, Option<CheckResult>> {
    Box::pin(async move {
        let p = cfg.prometheus.as_ref()?;
        let object = ObjectRef {
            kind: "Prometheus".into(),
            name: p.url.clone(),
            ..ObjectRef::default()
        };
        let result = match Prometheus::new(p.clone()) {
            Ok(prom) => match prom.figures(now).await {
                Ok(f) => {
                    let findings = prom
                        .problems(&f)
                        .into_iter()
                        .map(|(code, msg)| {
                            Finding::new(code, Severity::Warning, object.clone(), msg)
                        })
                        .collect();
                    let summary = format!(
                        "request rate {}, error rate {}, p95 {}",
                        f.request_rate_per_second
                            .map_or_else(|| "-".into(), |r| format!("{r:.1}/s")),
                        f.error_rate
                            .map_or_else(|| "-".into(), |e| format!("{:.2} %", e * 100.0)),
                        f.p95_latency_seconds
                            .map_or_else(|| "-".into(), |l| format!("{l:.3} s")),
                    );
                    report.prometheus = Some(f);
                    CheckResult::new("prometheus", summary, findings)
                }
                Err(e) => CheckResult::new(
                    "prometheus",
                    "Prometheus could not be queried",
                    vec![Finding::new(
                        "prometheus_unreachable",
                        Severity::Warning,
                        object,
                        Chain(&e).to_string(),
                    )],
                ),
            },
            Err(e) => CheckResult::new(
                "prometheus",
                "no HTTP client",
                vec![Finding::new(
                    "prometheus_unreachable",
                    Severity::Warning,
                    object,
                    Chain(&e).to_string(),
                )],
            ),
        };
        Some(result)
    })
}

/// `alertmanager`: the firing alerts; `None` without an Alertmanager.
pub(crate) fn alertmanager<'a>(
    cfg: &'a SignalsConfig,
    _now: Timestamp,
    report: &'a mut SignalsReport,
) -> BoxFuture<'a, Option<CheckResult>> {
    Box::pin(async move {
        let a = cfg.alertmanager.as_ref()?;
        let result = match alertmanager::alerts_now(a).await {
            Ok(now_alerts) => {
                let findings = now_alerts
                    .firing
                    .iter()
                    .map(|al| {
                        let severity = match al.severity.as_deref() {
                            Some("critical" | "page") => Severity::Critical,
                            Some("warning") => Severity::Warning,
                            _ => Severity::Info,
                        };
                        let object = ObjectRef {
                            kind: "Alert".into(),
                            namespace: al.labels.get("namespace").cloned(),
                            name: al.name.clone(),
                            uid: None,
                        };
                        let msg = al
                            .summary
                            .clone()
                            .unwrap_or_else(|| format!("{} is firing", al.name));
                        Finding::new("alert_firing", severity, object, msg)
                    })
                    .collect();
                let summary = format!(
                    "{} firing, {} silenced, {} inhibited",
                    now_alerts.firing.len(),
                    now_alerts.silenced.len(),
                    now_alerts.inhibited.len()
                );
                report.alerts = Some(now_alerts);
                CheckResult::new("alertmanager", summary, findings)
            }
            Err(e) => CheckResult::new(
                "alertmanager",
                "Alertmanager could not be read",
                vec![Finding::new(
                    "alertmanager_unreachable",
                    Severity::Warning,
                    ObjectRef {
                        kind: "Alertmanager".into(),
                        name: a.url.clone(),
                        ..ObjectRef::default()
                    },
                    Chain(&e).to_string(),
                )],
            ),
        };
        Some(result)
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use caretaker_core::config::parse_yaml;

    use super::*;

    fn codes(r: &CheckResult) -> Vec<&str> {
        r.findings.iter().map(|f| f.code.as_str()).collect()
    }

    #[tokio::test]
    async fn signal_checks_run_in_registry_order_and_only_when_configured() {
        // Port 9 on loopback: nothing listens, every source is unreachable.
        let cfg: SignalsConfig = parse_yaml(
            "http_endpoints:\n  - name: api\n    url: http://127.0.0.1:9/health\n    timeout: 1s\nprometheus:\n  url: http://127.0.0.1:9\n  timeout: 1s\nalertmanager:\n  url: http://127.0.0.1:9\n  timeout: 1s\n",
            Path::new("s.yaml"),
        )
        .unwrap();
        let now = Timestamp::now();
        let (checks, report) = crate::round::read_signals(&cfg, now).await;
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["http_endpoints", "prometheus", "alertmanager"]);
        assert_eq!(
            names,
            super::super::SIGNALS
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
        );
        assert_eq!(codes(&checks[0]), ["endpoint_unhealthy"]);
        assert_eq!(checks[0].summary, "1 endpoint(s), 1 unhealthy");
        assert_eq!(codes(&checks[1]), ["prometheus_unreachable"]);
        assert_eq!(checks[1].summary, "Prometheus could not be queried");
        let msg = &checks[1].findings[0].message;
        // The finding shows the whole chain, each cause once.
        assert!(
            msg.starts_with("Prometheus at http://127.0.0.1:9/api/v1/query: error sending request"),
            "{msg}"
        );
        assert_eq!(msg.matches("error sending request").count(), 1, "{msg}");
        assert_eq!(codes(&checks[2]), ["alertmanager_unreachable"]);
        let msg = &checks[2].findings[0].message;
        assert!(
            msg.starts_with("Alertmanager at http://127.0.0.1:9"),
            "{msg}"
        );
        assert!(
            msg.len() > "Alertmanager at http://127.0.0.1:9".len() + 2,
            "{msg}"
        );
        let report = report.unwrap();
        assert_eq!(report.endpoints.len(), 1);
        assert!(report.prometheus.is_none() && report.alerts.is_none());

        let only_am = SignalsConfig {
            http_endpoints: Vec::new(),
            prometheus: None,
            ..cfg
        };
        let (checks, _) = crate::round::read_signals(&only_am, now).await;
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["alertmanager"]);
    }
}
