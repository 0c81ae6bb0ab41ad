//! caretaker's shared core: what the agent and the aggregator both compute with.
//!
//! # Layout
//! - [`model`]: the domain types the programs compute with and print as JSON, one file per
//!   concept, each with its conversions to the wire types of `caretaker-proto` (`From`) and
//!   validated conversions back (`TryFrom`, whose error names the offending field).
//! - [`config`]: loading YAML config files with errors that name the file, line and field.
//! - [`render`]: human tables of a node report, shared by `caretaker-agent stats` and
//!   `caretaker-aggregator report`, and kubectl-style tables that fit the terminal.
//! - [`output`]: the `--output` formats of every command, one type for all.
//! - [`cron`] and [`window`]: cron expressions in a time zone and the maintenance window,
//!   which the aggregator's schedules and `cleanup --apply` and the agent's scheduled
//!   image pruning obey alike.
//! - [`error`]: [`error::Chain`], an error printed with each of its causes once.
//! - [`jitter`]: random spreads of waits, so that nodes started together do not act in
//!   lockstep.
//! - `listen` (feature `http`): the one bounded HTTP/1 listener (connection cap,
//!   header-read timeout, graceful stop) of the agent's endpoint and the aggregator's API.
//!
//! # Where to look
//! This crate holds no decisions of its own: log rotation is decided in
//! `agent/src/logs/schedule.rs` (carried out by `agent/src/logs/engine.rs`), whether an
//! image is in use in `agent/src/images/plan.rs`, checks are defined in
//! `aggregator/src/checks/mod.rs` (the registries `ALL` and `SIGNALS`), and a report
//! travels agent `agent/src/stream.rs` → aggregator `aggregator/src/api/ingest.rs` →
//! `aggregator/src/state.rs` → `aggregator/src/store/mod.rs`, crossing the wire as
//! `caretaker_proto::pb::NodeReport` and validated back by [`model`]'s `TryFrom`.

pub mod config;
pub mod cron;
pub mod error;
pub mod jitter;
#[cfg(feature = "http")]
pub mod listen;
pub mod model;
pub mod output;
pub mod render;
pub mod window;
