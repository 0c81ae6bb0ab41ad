//! Domain types shared by the agent and the aggregator.
//!
//! These are what both programs compute with and print as JSON. Field names are part of
//! the public interface (operators script against the JSON): they follow node_exporter's
//! names for the same facts (`size_bytes`, `receive_bytes_total` …).
//!
//! Wire conversion: `From<model::X> for pb::X` is infallible; `TryFrom<pb::X> for
//! model::X` validates what arrives from the network and names the offending field.
//!
//! One file per concept, each with its wire conversions beside it; everything is
//! re-exported here, so `model::NodeReport` is the path to use.

mod filesystem;
mod host;
mod images;
mod logcheck;
mod logs;
mod network;
mod report;
mod status;
mod wire;

pub use filesystem::*;
pub use host::*;
pub use images::*;
pub use logcheck::*;
pub use logs::*;
pub use network::*;
pub use report::*;
pub use status::*;
pub use wire::InvalidMessage;

#[cfg(test)]
pub(crate) mod tests;
