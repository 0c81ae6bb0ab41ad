//! The daily log check: per namespace, pod and container, how many lines of the last
//! 24 h match each of a set of patterns (by default the four greps of the maintenance
//! script: `error`, `warn`, `authentication failed`, `status=[45][0-9][0-9]`, all
//! case-insensitive), read from the kubelet's CRI logs under `/var/log/pods`, rotated and
//! gzip-compressed ones included.
//!
//! One pass per file produces every count (see [`scan`] for why it is fast and how its
//! memory stays bounded). The CLI (`caretaker-agent log-check`) reads each file of the
//! window once; the daemon reads only new bytes, remembering offsets per file across
//! rotations and restarts ([`state`]), with counts per hour so the window slides.
//!
//! # Layout
//! - [`cri`]: the record format (`TIMESTAMP STREAM P|F CONTENT`).
//! - [`matcher`]: the patterns, their defaults, the compiled set.
//! - [`scan`]: one pass over one file (buffer, joins, caps).
//! - [`walk`]: finding the files without following symlinks.
//! - [`counts`]: counts per hour and samples per container.
//! - [`check`]: a check over a pods directory, once.
//! - [`state`]: the incremental check and its state file.
//! - [`cli`]: the `log-check` output (table and JSON).
//! - [`config`]: the `log_check:` config section.
//! - [`daemon`]: the daemon task and the report summary.

pub mod check;
pub mod cli;
pub mod config;
pub(crate) mod counts;
pub(crate) mod cri;
pub mod daemon;
pub mod matcher;
pub mod scan;
pub mod state;
pub mod walk;
