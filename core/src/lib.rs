//! caretaker's shared core: what the agent and the aggregator both compute with.
//!
//! # Layout
//! - [`model`]: the domain types the programs compute with and print as JSON, one file per
//!   concept, each with its conversions to the wire types of `caretaker-proto` (`From`) and
//!   validated conversions back (`TryFrom`, whose error names the offending field).
//! - [`config`]: loading YAML config files with errors that name the file, line and field.
//! - [`render`]: human tables of a node report, shared by `caretaker-agent stats` and
//!   `caretaker-aggregator report`.
//! - [`cron`] and [`window`]: cron expressions in a time zone and the maintenance window,
//!   which the aggregator's schedules and `cleanup --apply` and the agent's scheduled
//!   image pruning obey alike.

pub mod config;
pub mod cron;
pub mod model;
pub mod render;
pub mod window;
