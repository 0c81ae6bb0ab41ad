//! caretaker-aggregator: cluster-wide checks, cleanup proposals and (soon) the report
//! ingest and query server.
//!
//! # Layout
//! - [`cluster`]: the [`cluster::ClusterState`] snapshot, read from a live API server
//!   ([`cluster::live`]) or from `kubectl get -o json|yaml` dumps ([`cluster::dump`]).
//! - [`checks`]: named checks with severities and findings; start at [`checks::run_all`].
//! - [`cleanup`]: reference-safe cleanup proposals and applying them.

pub mod checks;
pub mod cluster;
pub mod cleanup;
