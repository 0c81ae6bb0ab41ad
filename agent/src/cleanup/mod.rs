//! `caretaker-agent cleanup --emergency`: free disk on a full node, without the aggregator,
//! in a safe order, stopping as soon as the target is met.
//!
//! # Layout
//! - [`logs`]: the [`logs::LogReclaimer`] interface the log steps need, and a simple
//!   implementation over globs of rotated logs under configured roots (never a live log).
//!   The log engine (`crate::logs`) can implement the same trait.
//! - [`consumers`]: the largest directories left, for the summary.
//! - [`emergency`]: the four steps, progress and the summary.
//! - [`cli`]: `caretaker-agent cleanup --emergency`.
//!
//! Start reading at [`emergency::run`].

pub mod cli;
pub(crate) mod consumers;
pub mod emergency;
pub mod logs;
