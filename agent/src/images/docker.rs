//! [`ImageRuntime`] over the Docker Engine API with bollard, on a unix socket, the API
//! version negotiated down to the daemon's (Docker 20.10 speaks 1.41).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{ListContainersOptions, ListImagesOptions, RemoveImageOptions};
use futures_util::StreamExt;
use jiff::Timestamp;
use tokio::sync::OnceCell;

use super::runtime::{
    DiskUsage, Error, Image, ImageFs, ImageRuntime, ImageUser, Layer, RemoveError, Result,
    UserKind, chain_ids, measure_image_fs,
};

const NAME: &str = "docker";

/// Images whose layers are asked at once (two calls each: inspect and history).
const LAYER_CONCURRENCY: usize = 8;

/// The layers of an image from its diff IDs (`RootFS.Layers`, bottom first), the sizes of
/// its history entries (oldest first) and its size: Docker gives each history entry that
/// made a layer that layer's `DiffSize`, and 0 to the others (`ENV`, `CMD` …), but the API
/// does not say which entries made layers. So the sizes are matched only when that is
/// unambiguous: one entry per layer, or exactly one non-zero entry per layer, or a single
/// layer; and the sizes must add up to the image's size. Otherwise empty (unknown).
pub(crate) fn match_layers(diff_ids: &[String], history: &[u64], size_bytes: u64) -> Vec<Layer> {
    let sizes: Vec<u64> = if history.len() == diff_ids.len() {
        history.to_vec()
    } else if history.iter().filter(|s| **s > 0).count() == diff_ids.len() {
        history.iter().copied().filter(|s| *s > 0).collect()
    } else if diff_ids.len() == 1 {
        vec![size_bytes]
    } else {
        return Vec::new();
    };
    if diff_ids.is_empty() || sizes.iter().sum::<u64>() != size_bytes {
        return Vec::new();
    }
    chain_ids(diff_ids)
        .into_iter()
        .zip(sizes)
        .map(|(id, bytes)| Layer { id, bytes })
        .collect()
}

/// A connected Docker engine.
#[derive(Debug)]
pub struct DockerRuntime {
    docker: Docker,
    /// The host's root as the agent sees it (`--path.rootfs`): Docker's data root
    /// (`/var/lib/docker`) is measured under it.
    rootfs: PathBuf,
    /// Docker's data root, asked once.
    data_root: OnceCell<PathBuf>,
}

fn call_error(call: &'static str, timeout: Duration) -> impl Fn(BollardError) -> Error {
    move |e| match e {
        BollardError::RequestTimeoutError => Error::Timeout {
            runtime: NAME,
            call,
            seconds: timeout.as_secs(),
        },
        e => Error::Call {
            runtime: NAME,
            call,
            message: e.to_string(),
        },
    }
}

impl DockerRuntime {
    /// Connects to the socket and negotiates the API version. Every request then has
    /// `timeout`.
    ///
    /// # Errors
    /// [`Error::Connect`] when the socket does not answer.
    pub async fn connect(socket: &Path, rootfs: &Path, timeout: Duration) -> Result<Self> {
        let connect_err = |message: String| Error::Connect {
            runtime: NAME,
            socket: socket.display().to_string(),
            message,
        };
        let path = socket
            .to_str()
            .ok_or_else(|| connect_err("the socket path is not UTF-8".into()))?;
        let docker =
            Docker::connect_with_unix(path, timeout.as_secs().max(1), bollard::API_DEFAULT_VERSION)
                .map_err(|e| connect_err(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        Ok(Self {
            docker,
            rootfs: rootfs.to_path_buf(),
            data_root: OnceCell::new(),
        })
    }

    /// The bollard client (tests use it to set up containers).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    async fn data_root(&self) -> Result<&PathBuf> {
        self.data_root
            .get_or_try_init(|| async {
                let info = self
                    .docker
                    .info()
                    .await
                    .map_err(call_error("info", self.docker.timeout()))?;
                Ok(PathBuf::from(
                    info.docker_root_dir
                        .unwrap_or_else(|| "/var/lib/docker".into()),
                ))
            })
            .await
    }
}

/// Docker answers 409 Conflict when a container uses the image; other conflicts (an image
/// with dependent child images) are real failures.
fn remove_error(e: BollardError) -> RemoveError {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 409,
            message,
        } if message.contains("container") => RemoveError::InUse(message),
        BollardError::DockerResponseServerError { message, .. } => RemoveError::Other(message),
        e => RemoveError::Other(e.to_string()),
    }
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl DockerRuntime {
    /// An image's layers ([`match_layers`]); empty when the engine does not answer (the
    /// image was removed meanwhile, or a call failed: the plan then estimates without them).
    async fn layers(&self, image: &Image) -> Vec<Layer> {
        let (inspect, history) = tokio::join!(
            self.docker.inspect_image(&image.id),
            self.docker.image_history(&image.id)
        );
        let (Ok(inspect), Ok(history)) = (inspect, history) else {
            return Vec::new();
        };
        let diff_ids = inspect.root_fs.and_then(|r| r.layers).unwrap_or_default();
        // The API lists the history newest first.
        let sizes: Vec<u64> = history
            .iter()
            .rev()
            .map(|h| u64::try_from(h.size).unwrap_or(0))
            .collect();
        match_layers(&diff_ids, &sizes, image.size_bytes)
    }

    /// Fills in each image's layers, [`LAYER_CONCURRENCY`] images at a time.
    async fn with_layers(&self, images: Vec<Image>) -> Vec<Image> {
        futures_util::stream::iter(images)
            .map(|mut i| async move {
                i.layers = self.layers(&i).await;
                i
            })
            .buffered(LAYER_CONCURRENCY)
            .collect()
            .await
    }
}

impl ImageRuntime for DockerRuntime {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        let opts = ListImagesOptions {
            all: false,
            shared_size: true,
            ..Default::default()
        };
        let list = self
            .docker
            .list_images(Some(opts))
            .await
            .map_err(call_error("list images", self.docker.timeout()))?;
        let images = list
            .into_iter()
            .map(|i| Image {
                id: i.id,
                // Untagged images show `<none>:<none>` on old engines.
                repo_tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect(),
                repo_digests: i
                    .repo_digests
                    .into_iter()
                    .filter(|t| t != "<none>@<none>")
                    .collect(),
                created: Timestamp::from_second(i.created).ok(),
                size_bytes: u64::try_from(i.size).unwrap_or(0),
                // -1: the engine did not compute it (API < 1.42).
                shared_bytes: u64::try_from(i.shared_size).ok(),
                layers: Vec::new(),
                pinned: false,
            })
            .collect::<Vec<Image>>();
        Ok(self.with_layers(images).await)
    }

    async fn list_users(&self) -> Result<Vec<ImageUser>> {
        let opts = ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(call_error("list containers", self.docker.timeout()))?;
        Ok(list
            .into_iter()
            .map(|c| ImageUser {
                kind: UserKind::Container,
                id: c.id.unwrap_or_default(),
                image_ref: c.image.unwrap_or_default(),
                image_id: c.image_id.unwrap_or_default(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            })
            .collect())
    }

    async fn image_fs(&self) -> Result<ImageFs> {
        let root = self.data_root().await?.clone();
        let df = measure_image_fs(&self.rootfs, &root).await?;
        Ok(ImageFs {
            mountpoint: root,
            disk: DiskUsage::from(&df),
            used_bytes: df.size_bytes.saturating_sub(df.free_bytes),
        })
    }

    /// Like `docker image prune`: each tag is removed (never forced; the last one deletes
    /// the image), then the image by ID if it is still there (digest-only images).
    async fn remove_image(&self, image: &Image) -> Result<(), RemoveError> {
        let opts = || {
            Some(RemoveImageOptions {
                force: false,
                noprune: false,
                ..Default::default()
            })
        };
        for tag in &image.repo_tags {
            match self.docker.remove_image(tag, opts(), None).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(remove_error(e)),
            }
        }
        match self.docker.inspect_image(&image.id).await {
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(remove_error(e)),
            Ok(_) => {}
        }
        match self.docker.remove_image(&image.id, opts(), None).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(remove_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|k| format!("sha256:{k:02}")).collect()
    }

    fn bytes(layers: &[Layer]) -> Vec<u64> {
        layers.iter().map(|l| l.bytes).collect()
    }

    #[test]
    fn history_sizes_are_matched_to_layers_only_when_unambiguous() {
        // One history entry per layer.
        assert_eq!(bytes(&match_layers(&ids(2), &[3, 4], 7)), vec![3, 4]);
        // Entries without a layer (CMD, ENV) have size 0.
        assert_eq!(bytes(&match_layers(&ids(2), &[3, 0, 4, 0], 7)), vec![3, 4]);
        // A single layer is the image.
        assert_eq!(bytes(&match_layers(&ids(1), &[], 9)), vec![9]);
        // An empty real layer among empty entries: which entry is which is unknown.
        assert!(match_layers(&ids(3), &[3, 0, 0, 4], 7).is_empty());
        // Sizes that do not add up to the image are not trusted.
        assert!(match_layers(&ids(2), &[3, 5], 7).is_empty());
        assert!(match_layers(&[], &[], 0).is_empty());
        let l = match_layers(&ids(2), &[3, 4], 7);
        assert_eq!(l[0].id, "sha256:00");
        assert_eq!(l[1].id, chain_ids(&ids(2))[1]);
    }
}
