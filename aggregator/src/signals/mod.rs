//! External signals the aggregator reads besides the Kubernetes API: HTTP health
//! endpoints, Prometheus (request rate, error rate, p95 latency) and Alertmanager's
//! firing alerts. Each is optional and configured in the `signals:` section.
//!
//! # Layout
//! - [`config`]: the `signals:` config section with its defaults and their sources.
//! - [`endpoints`]: HTTP health endpoint probes.
//! - [`prometheus`]: Prometheus HTTP API instant and range queries.
//! - [`alertmanager`]: Alertmanager API v2 alerts, firing vs silenced/inhibited.
//! - [`review`]: the alert review over the history (firings, firing time, flapping).
//!
//! Every outbound call has the timeout of its section; a signal that cannot be read is a
//! result with an error, never a failed report.

pub mod alertmanager;
pub mod config;
pub(crate) mod endpoints;
pub mod prometheus;
pub mod review;

use std::time::Duration;

/// An HTTP client for the signals: rustls with the platform's root certificates.
///
/// # Errors
/// Only if the TLS backend cannot initialise.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("caretaker-aggregator/", env!("CARGO_PKG_VERSION")))
        .build()
}
