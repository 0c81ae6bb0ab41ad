//! caretaker-aggregator: receives every node's reports, keeps the latest per node
//! durably, merges them into one cluster report and serves it.
//!
//! # Layout
//! - [`config`]: the YAML config.
//! - [`store`]: the durable store (redb) and the duplicate/restart rule ([`store::decide`]).
//! - [`state`]: store + in-memory copy + freshness + metrics, shared by the servers.
//! - [`ingest`]: the `ReportIngest.Stream` gRPC service (validate, store, ack).
//! - [`query`]: the gRPC `Query` service; [`http`]: the same as JSON plus health/metrics.
//! - [`metrics`]: Prometheus metrics.
//! - [`report`]: the merged report as a table, Markdown or JSON.
//! - [`server`]: wires gRPC + HTTP on given listeners until a shutdown token fires.
//! - [`tls`]: server TLS, node identity from client certificates, reload on change.
//! - [`auth`]: bearer tokens of the query APIs; [`certs`]: `caretaker-aggregator certs`.
//! - [`standalone`]: aggregator + agent of this machine in one process.
//!
//! Start reading at [`ingest::IngestService`] and [`state::State::ingest`].

pub mod auth;
pub mod certs;
pub mod config;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod query;
pub mod report;
pub mod server;
pub mod standalone;
pub mod state;
pub mod store;
pub mod tls;
