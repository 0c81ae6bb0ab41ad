//! The subcommands' implementations that are not beside their capability
//! (`check` is in [`crate::checks::cli`], `cleanup` in [`crate::cleanup::cli`]).
//!
//! # Layout
//! - [`certs`]: `caretaker-aggregator certs`: the CA, certificates, tokens and Secrets.

pub mod certs;
