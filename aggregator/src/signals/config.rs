//! The `signals:` config section.
//!
//! ```yaml
//! signals:
//!   http_endpoints:
//!     - name: api
//!       url: https://api.example.com/health
//!       expected_status: 200          # default 200
//!       json_pointer: /status         # optional (RFC 6901) …
//!       json_equals: healthy          # … and the value it must have
//!       timeout: 5s                   # default 5s
//!   prometheus:
//!     url: http://prometheus.monitoring:9090
//!     timeout: 10s                    # default 10s
//!     window: 5m                      # default 5m: the rate() range
//!     error_rate_max: 0.05            # default 0.05 (the seed's alert rule: error rate > 5 %)
//!     p95_latency_max_seconds: 1.0    # default 1 (the seed's alert rule: p95 > 1 s)
//!     request_rate_query: …           # defaults below, with {window} replaced
//!   alertmanager:
//!     url: http://alertmanager.monitoring:9093
//!     timeout: 10s                    # default 10s
//!   alert_review:                     # the review of the recorded alerts (signals::review)
//!     days: 7                         # default 7
//!     flap_within: 15m                # default 15m: a firing this short is a false positive
//!     flap_min_count: 3               # default 3: this many short firings is flapping
//! ```

use caretaker_core::config::{BoundedDuration, ms};
use serde::{Deserialize, Deserializer, Serialize};

use super::review::AlertReviewConfig;

/// Default request-rate query (requests per second over the window), as in the seed's
/// runbook: `sum(rate(http_requests_total[5m]))`.
pub(crate) const DEFAULT_REQUEST_RATE_QUERY: &str = "sum(rate(http_requests_total[{window}]))";
/// Default error-rate query: the share of 5xx responses.
pub(crate) const DEFAULT_ERROR_RATE_QUERY: &str = "sum(rate(http_requests_total{code=~\"5..\"}[{window}])) / sum(rate(http_requests_total[{window}]))";
/// Default p95 latency query, in seconds, from the request-duration histogram.
pub(crate) const DEFAULT_P95_QUERY: &str =
    "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[{window}])))";

/// All external signals; each part is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalsConfig {
    pub http_endpoints: Vec<EndpointConfig>,
    pub prometheus: Option<PrometheusConfig>,
    pub alertmanager: Option<AlertmanagerConfig>,
    /// The alert review each scheduled run records from the history (see
    /// [`super::review`]).
    pub alert_review: AlertReviewConfig,
}

/// One HTTP health endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Name shown in the report.
    pub name: String,
    /// `http://` or `https://` URL, fetched with GET.
    #[serde(deserialize_with = "url")]
    pub url: String,
    /// Status the endpoint must answer. Default 200.
    #[serde(default = "default_status")]
    pub expected_status: u16,
    /// RFC 6901 pointer into a JSON body (`/status`); with `json_equals`, the value there
    /// must equal it.
    #[serde(default)]
    pub json_pointer: Option<String>,
    #[serde(default)]
    pub json_equals: Option<serde_json::Value>,
    /// Default 5s. 100ms to 5m.
    #[serde(default = "default_endpoint_timeout")]
    pub timeout: Timeout,
}

/// Prometheus HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    #[serde(deserialize_with = "url")]
    pub url: String,
    /// Default 10s. 100ms to 5m.
    #[serde(default = "default_api_timeout")]
    pub timeout: Timeout,
    /// Range of `rate()` in the queries (`{window}`). Default 5m.
    #[serde(default = "default_window")]
    pub window: String,
    /// Error rate above this (a fraction) is a warning. Default 0.05.
    #[serde(default = "default_error_rate_max")]
    pub error_rate_max: f64,
    /// p95 latency above this is a warning. Default 1 s.
    #[serde(default = "default_p95_max")]
    pub p95_latency_max_seconds: f64,
    #[serde(default = "default_request_rate_query")]
    pub request_rate_query: String,
    #[serde(default = "default_error_rate_query")]
    pub error_rate_query: String,
    #[serde(default = "default_p95_query")]
    pub p95_latency_query: String,
}

impl PrometheusConfig {
    /// Defaults for a Prometheus at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: default_api_timeout(),
            window: default_window(),
            error_rate_max: default_error_rate_max(),
            p95_latency_max_seconds: default_p95_max(),
            request_rate_query: default_request_rate_query(),
            error_rate_query: default_error_rate_query(),
            p95_latency_query: default_p95_query(),
        }
    }

    /// A query with `{window}` replaced.
    pub fn expand(&self, query: &str) -> String {
        query.replace("{window}", &self.window)
    }
}

/// Alertmanager API v2.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    #[serde(deserialize_with = "url")]
    pub url: String,
    /// Default 10s. 100ms to 5m.
    #[serde(default = "default_api_timeout")]
    pub timeout: Timeout,
}

fn default_status() -> u16 {
    200
}
/// A request timeout: 100ms to 5m.
pub type Timeout = BoundedDuration<100, { 5 * ms::MINUTE }>;

fn default_endpoint_timeout() -> Timeout {
    Timeout::secs(5)
}
fn default_api_timeout() -> Timeout {
    Timeout::secs(10)
}
fn default_window() -> String {
    "5m".into()
}
fn default_error_rate_max() -> f64 {
    0.05
}
fn default_p95_max() -> f64 {
    1.0
}
fn default_request_rate_query() -> String {
    DEFAULT_REQUEST_RATE_QUERY.into()
}
fn default_error_rate_query() -> String {
    DEFAULT_ERROR_RATE_QUERY.into()
}
fn default_p95_query() -> String {
    DEFAULT_P95_QUERY.into()
}
fn url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let u = reqwest::Url::parse(&s)
        .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(serde::de::Error::custom(format!(
            "{s:?} must be an http:// or https:// URL"
        )));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use caretaker_core::config::parse_yaml;

    use super::*;

    #[test]
    fn parses_with_defaults() {
        let c: SignalsConfig = parse_yaml(
            "http_endpoints:\n  - name: api\n    url: http://x/health\n    json_pointer: /status\n    json_equals: healthy\nprometheus:\n  url: http://p:9090\n",
            Path::new("s.yaml"),
        )
        .unwrap();
        assert_eq!(c.http_endpoints[0].expected_status, 200);
        assert_eq!(
            c.http_endpoints[0].json_equals,
            Some(serde_json::json!("healthy"))
        );
        let p = c.prometheus.unwrap();
        assert_eq!((p.error_rate_max, p.p95_latency_max_seconds), (0.05, 1.0));
        assert_eq!(
            p.expand(&p.request_rate_query),
            "sum(rate(http_requests_total[5m]))"
        );
        assert!(c.alertmanager.is_none());
    }

    #[test]
    fn bad_url_names_the_line() {
        let err =
            parse_yaml::<SignalsConfig>("alertmanager:\n  url: ftp://am\n", Path::new("s.yaml"))
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("must be an http:// or https:// URL") && err.contains("line 2"),
            "{err}"
        );
    }
}
