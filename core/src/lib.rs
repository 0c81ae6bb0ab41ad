//! caretaker's shared core: what the agent and the aggregator both compute with.
//!
//! # Layout
//! - [`model`]: the domain types the programs compute with and print as JSON, one file per
//!   concept, each with its conversions to the wire types of `caretaker-proto` (`From`) and
//!   validated conversions back (`TryFrom`, whose error names the offending field).
//! - [`chain`]: an error and its causes on one line, each once (the programs' `main`s).
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
//!
//! # Where to look
//! This crate holds no decisions of its own: log rotation is decided in `caretaker-agent`'s
//! `logs::schedule` (carried out by `logs::engine`), whether an image is in use in its
//! `images::plan`, checks are defined in `caretaker-aggregator`'s `checks`, and a report
//! travels agent `stream` → aggregator `api::ingest` → `state` → `store`, crossing the wire
//! as `caretaker_proto::pb::NodeReport` and validated back by [`model`]'s `TryFrom`.

pub mod config;
pub mod cron;
pub mod error;
pub mod jitter;
pub mod model;
pub mod output;
pub mod render;
pub mod window;
