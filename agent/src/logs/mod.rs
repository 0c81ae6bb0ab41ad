//! Log rotation, compression and retention sweeps, compatible with logrotate 3.21.
//!
//! Policies come from an existing logrotate.conf read unchanged ([`conf`]) or from the
//! agent's YAML ([`yaml`], same directive names and meaning); both go through
//! [`policy::Policy::apply`]. [`engine::LogEngine`] is what the daemon and the CLI call:
//! it takes the lock ([`lock`]), reads the logrotate-format state ([`state`]), runs one
//! pass ([`rotate`], deciding with [`schedule`], compressing with [`compress`]), saves
//! the state, and returns a [`summary::RotationSummary`]. [`sweep`] deletes files by age.
//! [`daemon`] is the agent daemon's task around the engine: passes on a jittered
//! interval, retention sweeps at their cadence, the report's `logs` summary.
//! [`owners`] knows which logs another rotator (the kubelet, the node's logrotate) owns:
//! those are left alone and listed in the report.
//!
//! Every directive, and every place where caretaker deliberately differs from
//! logrotate 3.21, is documented in `agent/LOGS.md`.

pub mod compress;
pub mod conf;
pub mod daemon;
pub(crate) mod dateformat;
pub mod engine;
pub(crate) mod fsx;
pub mod handle;
pub(crate) mod lock;
pub(crate) mod owners;
pub mod policy;
pub(crate) mod rotate;
pub(crate) mod schedule;
pub mod state;
pub(crate) mod summary;
pub mod sweep;
pub(crate) mod walk;
pub(crate) mod yaml;
