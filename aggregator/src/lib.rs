//! caretaker-aggregator: receives every node's reports, keeps the latest per node
//! durably, runs cluster-wide checks, merges everything into one report and serves it.
//!
//! # Layout
//! - [`app`]: [`app::App::build`] checks a config, [`app::App::run`] serves it (leader or
//!   standby, store, servers, rounds, schedules) until a shutdown token fires; `main.rs`
//!   only parses the command line, maps errors to exit codes and waits.
//! - [`api`]: the servers. [`api::server`] wires gRPC + HTTP; [`api::ingest`] is the
//!   `ReportIngest.Stream` service (validate, store, ack); [`api::query`] the gRPC `Query`
//!   service and [`api::http`] the same as JSON plus health, metrics and the report page;
//!   [`api::auth`] bearer tokens; [`api::tls`] server TLS and node identity from client
//!   certificates; [`api::standby`] what a standby replica serves.
//! - [`store`]: the durable store (redb) and the duplicate/restart rule
//!   ([`store::decide`]); [`store::history`]: every recorded merged report;
//!   [`store::StoreHandle`]: the async facade every store call of the server goes through.
//! - [`state`]: store + in-memory copy + freshness + metrics, shared by the servers.
//! - [`round`]: one round of checks, signals and cleanup proposals merged with the node
//!   reports, and the loop that runs them periodically.
//! - [`cluster`]: the [`cluster::ClusterState`] snapshot, read from a live API server
//!   ([`cluster::live`]) or from `kubectl get -o json|yaml` dumps ([`cluster::dump`]).
//! - [`checks`]: named checks with severities and findings; start at [`checks::run_all`].
//! - [`cleanup`]: reference-safe cleanup proposals and applying them.
//! - [`signals`]: HTTP endpoints, Prometheus and Alertmanager.
//! - [`report`]: the merged report as a table, Markdown, JSON or the HTML report page
//!   ([`report::html`], served at `GET /report`).
//! - [`schedule`]: daily/weekly/monthly runs, notifications (cron and the maintenance
//!   window are shared with the agent in `caretaker_core`).
//! - [`leader`]: leader election between replicas through a Lease, and the pod label
//!   `caretaker.io/role` the Service selects; a standby serves only `/healthz` and
//!   `/readyz` (200 `standby`) until it holds the Lease.
//! - [`config`]: the YAML config; [`metrics`]: Prometheus metrics.
//! - [`cli`]: subcommands not beside their capability (`certs`); [`client`]: the gRPC
//!   `Query` client (`report`, `caretaker-standalone`, tests).
//!
//! # Where to look
//! - How a report reaches the store: the agent's `agent/src/stream.rs` sends it, then
//!   [`api::ingest::IngestService`] validates it, the group commit ([`api::commit`]) hands
//!   a batch to [`state::State::ingest_batch`], which writes it with
//!   [`store::Store::put_batch`] through the async facade [`store::handle::StoreHandle`]
//!   (deciding duplicates and restarts in [`store::decide`]) before the ack goes back.
//! - Where a check is defined: [`checks`]: the registries [`checks::ALL`] (the cluster
//!   checks, one file per check family, run by [`checks::run_all`]) and
//!   [`checks::SIGNALS`] (the checks in [`checks::signals`] that read HTTP endpoints,
//!   Prometheus and Alertmanager).
//! - Log rotation and image pruning are decided on the node, in `caretaker-agent`:
//!   whether a log is due in `agent/src/logs/schedule.rs`, whether an image is in use in
//!   `agent/src/images/plan.rs`.

pub mod api;
pub mod app;
pub mod capacity;
pub mod checks;
pub mod cleanup;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod leader;
pub mod metrics;
pub mod renew;
pub mod report;
pub mod round;
pub mod schedule;
pub mod signals;
pub mod state;
pub mod store;
pub mod updates;
