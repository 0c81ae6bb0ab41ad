//! Which runtime(s) to prune: `docker`, `containerd`, or `auto` (every socket that answers;
//! a node can have both, e.g. Docker for builds next to containerd for the kubelet).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::debug;

use super::cri::CriRuntime;
use super::docker::DockerRuntime;
use super::runtime::{Error, Image, ImageFs, ImageRuntime, ImageUser, RemoveError, Result};

/// The `runtime` option and `--runtime` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeChoice {
    /// Every configured socket that answers.
    #[default]
    Auto,
    Docker,
    Containerd,
}

/// Either real runtime, so that one code path drives both.
#[derive(Debug)]
pub enum AnyRuntime {
    Docker(DockerRuntime),
    Cri(CriRuntime),
}

/// Connects to the chosen runtime(s).
///
/// # Errors
/// A named runtime that does not answer; with `auto`, the errors of both when neither does.
pub(crate) async fn connect(
    choice: RuntimeChoice,
    docker_socket: &Path,
    containerd_socket: &Path,
    rootfs: &Path,
    timeout: Duration,
) -> Result<Vec<AnyRuntime>> {
    match choice {
        RuntimeChoice::Docker => Ok(vec![AnyRuntime::Docker(
            DockerRuntime::connect(docker_socket, rootfs, timeout).await?,
        )]),
        RuntimeChoice::Containerd => Ok(vec![AnyRuntime::Cri(
            CriRuntime::connect(containerd_socket, rootfs, timeout).await?,
        )]),
        RuntimeChoice::Auto => {
            let (d, c) = tokio::join!(
                DockerRuntime::connect(docker_socket, rootfs, timeout),
                CriRuntime::connect(containerd_socket, rootfs, timeout)
            );
            let mut out = Vec::new();
            let mut errors = Vec::new();
            match d {
                Ok(d) => out.push(AnyRuntime::Docker(d)),
                Err(e) => errors.push(e.to_string()),
            }
            match c {
                Ok(c) => out.push(AnyRuntime::Cri(c)),
                Err(e) => errors.push(e.to_string()),
            }
            if out.is_empty() {
                return Err(Error::Connect {
                    runtime: "auto",
                    socket: "any".into(),
                    message: errors.join("; "),
                });
            }
            for e in errors {
                debug!(error = %e, "Runtime socket did not answer; skipping it.");
            }
            Ok(out)
        }
    }
}

impl ImageRuntime for AnyRuntime {
    fn name(&self) -> &'static str {
        match self {
            AnyRuntime::Docker(r) => r.name(),
            AnyRuntime::Cri(r) => r.name(),
        }
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        match self {
            AnyRuntime::Docker(r) => r.list_images().await,
            AnyRuntime::Cri(r) => r.list_images().await,
        }
    }

    async fn list_users(&self) -> Result<Vec<ImageUser>> {
        match self {
            AnyRuntime::Docker(r) => r.list_users().await,
            AnyRuntime::Cri(r) => r.list_users().await,
        }
    }

    async fn image_fs(&self) -> Result<ImageFs> {
        match self {
            AnyRuntime::Docker(r) => r.image_fs().await,
            AnyRuntime::Cri(r) => r.image_fs().await,
        }
    }

    async fn remove_image(&self, image: &Image) -> Result<(), RemoveError> {
        match self {
            AnyRuntime::Docker(r) => r.remove_image(image).await,
            AnyRuntime::Cri(r) => r.remove_image(image).await,
        }
    }
}
