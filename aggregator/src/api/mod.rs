//! The aggregator's servers: what agents, operators and Kubernetes talk to.
//!
//! # Layout
//! - [`server`]: wires gRPC + HTTP on given listeners until a shutdown token fires.
//! - [`ingest`]: the `ReportIngest.Stream` gRPC service (validate, store, ack): how a
//!   report reaches the store.
//! - [`codec`]: the ingest service as served, with small per-stream codec buffers.
//! - [`connections`]: the connection cap of the gRPC port.
//! - [`commit`]: group commit, the one task that writes reports in batches.
//! - [`query`]: the gRPC `Query` service; [`http`]: the same as JSON plus health, metrics
//!   and the report page.
//! - [`listen`]: HTTP/1 serving with a connection cap and a header-read (idle) timeout.
//! - [`auth`]: bearer tokens of the query APIs.
//! - [`tls`]: server TLS, node identity from client certificates, reload on change.
//! - [`standby`]: what a standby replica serves on the HTTP port until it holds the Lease.

pub mod auth;
pub(crate) mod codec;
pub(crate) mod commit;
pub(crate) mod connections;
pub mod http;
pub mod ingest;
pub mod listen;
pub(crate) mod query;
pub mod server;
pub(crate) mod standby;
pub mod tls;
