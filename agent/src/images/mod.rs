//! Image pruning through Docker (bollard) or containerd's CRI image service.
//!
//! Like `docker image prune -a --filter until=168h`, but never an image that any container
//! or pod sandbox references, never a pinned or keep-listed image, and with kubelet-style
//! disk thresholds (start removing above the high mark, stop at the low mark).
//!
//! # Layout
//! - [`runtime`]: the [`runtime::ImageRuntime`] trait, the image/container facts it returns,
//!   and reference matching (tag, digest, ID).
//! - [`docker`]: the Docker Engine API implementation (unix socket, version negotiated).
//! - [`cri`]: the CRI implementation (`runtime.v1` over a unix socket with tonic).
//! - [`select`]: `runtime: auto|docker|containerd`, picking whichever socket answers.
//! - [`plan`]: pure planning: one decision with a reason for every image.
//! - [`execute`]: applying a plan, re-checking each image right before its removal.
//! - `fake`: an in-memory runtime for tests (built for this crate's tests and with the
//!   `test-util` feature).
//! - [`cli`]: `caretaker-agent prune-images`.
//! - [`daemon`]: the agent daemon's image task: periodic checks, scheduled and
//!   disk-pressure prunes (dry run unless `images.apply`), the report's image summary.
//!
//! Start reading at [`plan::plan`], then [`execute::apply`].

pub mod cli;
pub mod cri;
pub mod daemon;
pub mod docker;
pub mod endpoint;
pub mod execute;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod plan;
pub mod runtime;
pub mod select;
