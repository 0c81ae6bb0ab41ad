//! Prometheus metrics of the aggregator (`/metrics`, text exposition format).
//!
//! Names follow Prometheus conventions: `caretaker_` prefix, unit suffix, `_total` for
//! counters. Labels are low-cardinality (no node names).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of `caretaker_ingest_reports_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `stored`, `duplicate`, `older_run`, `rejected`, `store_error`.
    pub result: &'static str,
}

/// Label of `caretaker_nodes`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FreshnessLabel {
    /// `fresh` or `stale`.
    pub freshness: &'static str,
}

/// Every metric the aggregator exports.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub reports: Family<ResultLabel, Counter>,
    pub streams_active: Gauge,
    pub store_write_seconds: Histogram,
    pub nodes: Family<FreshnessLabel, Gauge>,
    /// Reports that had to wait because their stream was over its rate limit.
    pub ingest_throttled_total: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("caretaker");
        let reports = Family::<ResultLabel, Counter>::default();
        registry.register(
            "ingest_reports",
            "Node reports received, by what ingest did with them",
            reports.clone(),
        );
        let streams_active = Gauge::default();
        registry.register(
            "ingest_streams_active",
            "Agent report streams currently open",
            streams_active.clone(),
        );
        // 0.1 ms .. ~3 s: a durable commit is an fsync.
        let store_write_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register_with_unit(
            "store_write_duration",
            "Time to write and commit one batch of reports durably (group commit)",
            prometheus_client::registry::Unit::Seconds,
            store_write_seconds.clone(),
        );
        let nodes = Family::<FreshnessLabel, Gauge>::default();
        registry.register(
            "nodes",
            "Nodes known to the aggregator, by freshness",
            nodes.clone(),
        );
        let ingest_throttled_total = Counter::default();
        registry.register(
            "ingest_throttled",
            "Reports held back because their agent stream was over max_reports_per_minute",
            ingest_throttled_total.clone(),
        );
        Self {
            registry,
            reports,
            streams_active,
            store_write_seconds,
            nodes,
            ingest_throttled_total,
        }
    }
}

impl Metrics {
    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
