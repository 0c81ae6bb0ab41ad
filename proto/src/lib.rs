//! caretaker's protocol and shared domain model.
//!
//! # Layout
//! - [`pb`]: the generated gRPC/protobuf types of `proto/caretaker/v1/*.proto`. They stay at
//!   the edge of both programs.
//! - [`model`]: the domain types the programs compute with and print as JSON, with
//!   conversions to the wire types (`From`) and validated conversions back (`TryFrom`, whose
//!   error names the offending field).
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

/// Generated protobuf and gRPC types (package `caretaker.v1`).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("caretaker.v1");

    /// Encoded `FileDescriptorSet` of every caretaker proto, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/caretaker_descriptor.bin"));
}
