//! HTTP health endpoint probes: status, an optional JSON field check, latency.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::config::EndpointConfig;

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointResult {
    pub name: String,
    pub url: String,
    /// HTTP status, when an answer came.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    /// Time to the full body, in milliseconds.
    pub(crate) latency_ms: f64,
    /// Status as expected and, when configured, the JSON field equal to the expected value.
    pub healthy: bool,
    /// Why it is not healthy.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub problem: Option<String>,
}

/// Probes one endpoint (GET) with its own timeout.
pub(crate) async fn probe(client: &reqwest::Client, cfg: &EndpointConfig) -> EndpointResult {
    let started = Instant::now();
    let answer = async {
        let resp = client
            .get(&cfg.url)
            .timeout(cfg.timeout.get())
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await?;
        Ok::<_, reqwest::Error>((status, body))
    }
    .await;
    let latency_ms = started.elapsed().as_secs_f64() * 1e3;
    let (status, problem) = match answer {
        Err(e) => (e.status().map(|s| s.as_u16()), Some(describe(&e))),
        Ok((status, body)) => (Some(status), judge(cfg, status, &body)),
    };
    EndpointResult {
        name: cfg.name.clone(),
        url: cfg.url.clone(),
        status,
        latency_ms,
        healthy: problem.is_none(),
        problem,
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer within the timeout".into()
    } else if e.is_connect() {
        format!(
            "cannot connect: {}",
            std::error::Error::source(e).map_or_else(|| e.to_string(), ToString::to_string)
        )
    } else {
        e.to_string()
    }
}

/// `None` when the answer is healthy, else why not.
fn judge(cfg: &EndpointConfig, status: u16, body: &[u8]) -> Option<String> {
    if status != cfg.expected_status {
        return Some(format!("status {status}, expected {}", cfg.expected_status));
    }
    let (Some(pointer), Some(expected)) = (&cfg.json_pointer, &cfg.json_equals) else {
        return None;
    };
    let json: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Some(format!("body is not JSON: {e}")),
    };
    match json.pointer(pointer) {
        None => Some(format!("no field at {pointer}")),
        Some(v) if v == expected => None,
        Some(v) => Some(format!("{pointer} is {v}, expected {expected}")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;

    use super::*;

    fn cfg(url: String) -> EndpointConfig {
        EndpointConfig {
            name: "api".into(),
            url,
            expected_status: 200,
            json_pointer: Some("/status".into()),
            json_equals: Some(serde_json::json!("healthy")),
            timeout: crate::signals::config::Timeout::secs(2),
        }
    }

    #[tokio::test]
    async fn probes_status_json_field_and_failures_against_a_real_server() {
        let app = Router::new()
            .route("/ok", get(|| async { r#"{"status":"healthy","db":"up"}"# }))
            .route("/degraded", get(|| async { r#"{"status":"degraded"}"# }))
            .route("/plain", get(|| async { "fine" }))
            .route(
                "/down",
                get(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "{}") }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = crate::signals::client(Duration::from_secs(5)).unwrap();
        let url = |p: &str| format!("http://{addr}{p}");

        let ok = probe(&client, &cfg(url("/ok"))).await;
        assert_eq!(
            (ok.status, ok.healthy, ok.problem.as_deref()),
            (Some(200), true, None)
        );
        assert!(ok.latency_ms > 0.0);
        let degraded = probe(&client, &cfg(url("/degraded"))).await;
        assert_eq!(
            degraded.problem.as_deref(),
            Some(r#"/status is "degraded", expected "healthy""#)
        );
        let plain = probe(&client, &cfg(url("/plain"))).await;
        assert!(plain.problem.unwrap().starts_with("body is not JSON"));
        let down = probe(&client, &cfg(url("/down"))).await;
        assert_eq!(
            (down.status, down.problem.as_deref()),
            (Some(503), Some("status 503, expected 200"))
        );
        let mut slow_cfg = cfg(url("/slow"));
        slow_cfg.timeout = crate::signals::config::Timeout::millis(200);
        let slow = probe(&client, &slow_cfg).await;
        assert_eq!(
            (slow.status, slow.problem.as_deref()),
            (None, Some("no answer within the timeout"))
        );
        // A port nobody listens on.
        let closed = probe(&client, &cfg("http://127.0.0.1:9/health".into())).await;
        assert!(!closed.healthy && closed.problem.unwrap().starts_with("cannot connect"));
    }
}
