//! The subcommands' implementations that are not beside their capability
//! (`check` is in [`crate::checks::cli`], `cleanup` in [`crate::cleanup::cli`]).
//!
//! # Layout
//! - [`args`]: the command line, parsed ([`args::Cli`]) and then checked ([`args::Args`]).
//! - [`select`]: kubectl's `-n`, `-A`, `-l` and what they show.
//! - [`kubeconfig`]: the client for `--kubeconfig`/`--context`.
//! - [`report`]: `caretaker-aggregator report`, read from the aggregator or through the
//!   API server's service proxy.
//! - [`certs`]: `caretaker-aggregator certs`: the CA, certificates, tokens and Secrets.

pub mod args;
pub mod certs;
pub mod kubeconfig;
pub mod report;
pub mod select;
