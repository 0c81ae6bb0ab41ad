//! The HTTP listener of the API and the standby endpoint: caretaker-core's bounded HTTP/1
//! listener (one connection cap, header-read timeout and graceful stop for the agent and
//! the aggregator), configured by the `http:` section (`max_connections`,
//! `header_read_timeout`). Kept under this name for the config and the tests that set
//! [`HttpLimits`].

pub use caretaker_core::listen::{HttpLimits, serve};
