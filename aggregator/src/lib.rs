//! caretaker-aggregator: receives every node's reports, keeps the latest per node
//! durably, runs cluster-wide checks, merges everything into one report and serves it.
//!
//! # Layout
//! - [`cluster`]: the [`cluster::ClusterState`] snapshot, read from a live API server
//!   ([`cluster::live`]) or from `kubectl get -o json|yaml` dumps ([`cluster::dump`]).
//! - [`checks`]: named checks with severities and findings; start at [`checks::run_all`].
//! - [`cleanup`]: reference-safe cleanup proposals and applying them.
//! - [`signals`]: HTTP endpoints, Prometheus and Alertmanager.
//! - [`config`]: the YAML config.
//! - [`store`]: the durable store (redb) and the duplicate/restart rule ([`store::decide`]).
//! - [`state`]: store + in-memory copy + freshness + metrics, shared by the servers.
//! - [`ingest`]: the `ReportIngest.Stream` gRPC service (validate, store, ack).
//! - [`query`]: the gRPC `Query` service; [`http`]: the same as JSON plus health/metrics.
//! - [`metrics`]: Prometheus metrics.
//! - [`report`]: the merged report as a table, Markdown, JSON or the HTML report page
//!   ([`report::html`], served at `GET /report`).
//! - [`schedule`]: daily/weekly/monthly runs, the maintenance window, notifications.
//! - [`server`]: wires gRPC + HTTP on given listeners until a shutdown token fires.
//! - [`tls`]: server TLS, node identity from client certificates, reload on change.
//! - [`auth`]: bearer tokens of the query APIs; [`certs`]: `caretaker-aggregator certs`.
//! - [`client`]: the gRPC `Query` client (`report`, `caretaker-standalone`, tests).
//! - [`leader`]: leader election between replicas through a Lease, and the pod label
//!   `caretaker.io/role` the Service selects; a standby serves only `/healthz` and
//!   `/readyz` (200 `standby`) until it holds the Lease.
//!
//! Start reading at [`ingest::IngestService`] and [`state::State::ingest`].

pub mod auth;
pub mod certs;
pub mod checks;
pub mod cleanup;
pub mod client;
pub mod cluster;
pub mod config;
pub mod history;
pub mod http;
pub mod ingest;
pub mod leader;
pub mod metrics;
pub mod query;
pub mod report;
pub mod rounds;
pub mod schedule;
pub mod server;
pub mod signals;
pub mod state;
pub mod store;
pub mod tls;
