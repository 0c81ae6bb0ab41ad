//! [`ImageRuntime`] over the Kubernetes CRI API (`runtime.v1` ImageService and
//! RuntimeService) on a unix socket with tonic: containerd, CRI-O, any CRI runtime.
//!
//! The CRI lists no creation time, so each image's comes from `ImageStatus` with
//! `verbose: true`, whose `info` holds the OCI image config (`imageSpec.created`) on
//! containerd. A pod sandbox's image (pause) comes the same way from `PodSandboxStatus`'s
//! verbose `info` (`image`). Runtimes that do not say leave the creation time unknown
//! (never old enough for the age rule) and rely on `pinned` and the keep list for pause.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::runtime::{
    DiskUsage, Error, Image, ImageFs, ImageRuntime, ImageUser, RemoveError, Result, UserKind,
    measure_image_fs,
};

/// Generated CRI types and clients (the subset in `proto/cri/runtime/v1/api.proto`).
pub use caretaker_proto::cri as pb;

use pb::image_service_client::ImageServiceClient;
use pb::runtime_service_client::RuntimeServiceClient;

const NAME: &str = "containerd";

/// How many verbose status calls run at once.
const STATUS_CONCURRENCY: usize = 8;

/// A connected CRI runtime.
#[derive(Debug, Clone)]
pub struct CriRuntime {
    images: ImageServiceClient<Channel>,
    runtime: RuntimeServiceClient<Channel>,
    rootfs: PathBuf,
    /// `runtime_name` from `Version`, e.g. `containerd`.
    pub runtime_name: String,
}

/// Opens a gRPC channel over a unix socket. The URI is a placeholder: the connector ignores it.
///
/// # Errors
/// When the socket does not accept a connection within `timeout`.
pub(crate) async fn unix_channel(
    socket: &Path,
    timeout: Duration,
) -> std::result::Result<Channel, tonic::transport::Error> {
    let path = socket.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}

fn status_error(call: &'static str) -> impl Fn(tonic::Status) -> Error {
    move |s| match s.code() {
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => Error::Call {
            runtime: NAME,
            call,
            message: format!("timed out: {}", s.message()),
        },
        _ => Error::Call {
            runtime: NAME,
            call,
            message: format!("{:?}: {}", s.code(), s.message()),
        },
    }
}

impl CriRuntime {
    /// Connects and checks with `Version` that a CRI runtime answers.
    ///
    /// # Errors
    /// [`Error::Connect`] when the socket does not answer or is not a CRI runtime.
    pub async fn connect(socket: &Path, rootfs: &Path, timeout: Duration) -> Result<Self> {
        let connect_err = |message: String| Error::Connect {
            runtime: NAME,
            socket: socket.display().to_string(),
            message,
        };
        let channel = unix_channel(socket, timeout)
            .await
            .map_err(|e| connect_err(format!("{e:?}")))?;
        let mut runtime = RuntimeServiceClient::new(channel.clone());
        let v = runtime
            .version(pb::VersionRequest {
                version: "v1".into(),
            })
            .await
            .map_err(|s| connect_err(format!("CRI Version: {:?}: {}", s.code(), s.message())))?
            .into_inner();
        Ok(Self {
            images: ImageServiceClient::new(channel),
            runtime,
            rootfs: rootfs.to_path_buf(),
            runtime_name: v.runtime_name,
        })
    }

    /// The runtime service client (tests use it to create sandboxes and containers).
    pub fn runtime_client(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    async fn created(&self, id: String) -> Option<Timestamp> {
        let req = pb::ImageStatusRequest {
            image: Some(pb::ImageSpec {
                image: id,
                ..Default::default()
            }),
            verbose: true,
        };
        let resp = self
            .images
            .clone()
            .image_status(req)
            .await
            .ok()?
            .into_inner();
        created_from_info(&resp.info)
    }

    async fn sandbox_image(&self, id: String) -> Option<String> {
        let req = pb::PodSandboxStatusRequest {
            pod_sandbox_id: id,
            verbose: true,
        };
        let resp = self
            .runtime
            .clone()
            .pod_sandbox_status(req)
            .await
            .ok()?
            .into_inner();
        let info: serde_json::Value = serde_json::from_str(resp.info.get("info")?).ok()?;
        info.get("image")?.as_str().map(str::to_string)
    }
}

/// `imageSpec.created` (RFC 3339) in containerd's verbose image status.
pub(crate) fn created_from_info(info: &HashMap<String, String>) -> Option<Timestamp> {
    let v: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    v.pointer("/imageSpec/created")?.as_str()?.parse().ok()
}

fn container_state(s: i32) -> &'static str {
    match pb::ContainerState::try_from(s) {
        Ok(pb::ContainerState::ContainerCreated) => "created",
        Ok(pb::ContainerState::ContainerRunning) => "running",
        Ok(pb::ContainerState::ContainerExited) => "exited",
        _ => "unknown",
    }
}

impl ImageRuntime for CriRuntime {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        let list = self
            .images
            .clone()
            .list_images(pb::ListImagesRequest { filter: None })
            .await
            .map_err(status_error("ListImages"))?
            .into_inner()
            .images;
        let ids: Vec<String> = list.iter().map(|i| i.id.clone()).collect();
        let created: Vec<Option<Timestamp>> = futures_util::stream::iter(ids)
            .map(|id| self.created(id))
            .buffered(STATUS_CONCURRENCY)
            .collect()
            .await;
        Ok(list
            .into_iter()
            .zip(created)
            .map(|(i, created)| Image {
                id: i.id,
                repo_tags: i.repo_tags,
                repo_digests: i.repo_digests,
                created,
                size_bytes: i.size,
                shared_bytes: None,
                layers: Vec::new(),
                pinned: i.pinned,
            })
            .collect())
    }

    async fn list_users(&self) -> Result<Vec<ImageUser>> {
        let containers = self
            .runtime
            .clone()
            .list_containers(pb::ListContainersRequest { filter: None })
            .await
            .map_err(status_error("ListContainers"))?
            .into_inner()
            .containers;
        let sandboxes = self
            .runtime
            .clone()
            .list_pod_sandbox(pb::ListPodSandboxRequest { filter: None })
            .await
            .map_err(status_error("ListPodSandbox"))?
            .into_inner()
            .items;
        let mut users: Vec<ImageUser> = Vec::with_capacity(containers.len() * 2 + sandboxes.len());
        for c in containers {
            let state = container_state(c.state);
            let spec = c.image.map(|s| s.image).unwrap_or_default();
            users.push(ImageUser {
                kind: UserKind::Container,
                id: c.id.clone(),
                image_ref: spec,
                image_id: c.image_ref,
                state: state.into(),
            });
            if !c.image_id.is_empty() {
                users.push(ImageUser {
                    kind: UserKind::Container,
                    id: c.id,
                    image_ref: String::new(),
                    image_id: c.image_id,
                    state: state.into(),
                });
            }
        }
        let sandbox_images: Vec<(pb::PodSandbox, Option<String>)> =
            futures_util::stream::iter(sandboxes.into_iter().map(|s| async move {
                let image = self.sandbox_image(s.id.clone()).await;
                Ok::<_, Error>((s, image))
            }))
            .buffered(STATUS_CONCURRENCY)
            .try_collect()
            .await?;
        for (s, image) in sandbox_images {
            let state = if s.state == pb::PodSandboxState::SandboxReady as i32 {
                "ready"
            } else {
                "notready"
            };
            users.push(ImageUser {
                kind: UserKind::Sandbox,
                id: s.id,
                image_ref: image.unwrap_or_default(),
                image_id: String::new(),
                state: state.into(),
            });
        }
        Ok(users)
    }

    async fn image_fs(&self) -> Result<ImageFs> {
        let resp = self
            .images
            .clone()
            .image_fs_info(pb::ImageFsInfoRequest {})
            .await
            .map_err(status_error("ImageFsInfo"))?
            .into_inner();
        let fs = resp
            .image_filesystems
            .into_iter()
            .next()
            .ok_or(Error::Call {
                runtime: NAME,
                call: "ImageFsInfo",
                message: "no image filesystem in the answer".into(),
            })?;
        let mountpoint = PathBuf::from(fs.fs_id.map(|f| f.mountpoint).unwrap_or_default());
        let used_bytes = fs.used_bytes.map(|u| u.value).unwrap_or(0);
        let df = measure_image_fs(&self.rootfs, &mountpoint).await?;
        Ok(ImageFs {
            mountpoint,
            disk: DiskUsage::from(&df),
            used_bytes,
        })
    }

    /// `RemoveImage` by ID removes every tag and digest of the image. CRI runtimes do not
    /// check for users (the kubelet does), which is why the executor re-checks first.
    async fn remove_image(&self, image: &Image) -> Result<(), RemoveError> {
        let req = pb::RemoveImageRequest {
            image: Some(pb::ImageSpec {
                image: image.id.clone(),
                ..Default::default()
            }),
        };
        match self.images.clone().remove_image(req).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s)
                if s.code() == tonic::Code::FailedPrecondition
                    && s.message().contains("in use") =>
            {
                Err(RemoveError::InUse(s.message().to_string()))
            }
            Err(s) => Err(RemoveError::Other(format!(
                "{:?}: {}",
                s.code(),
                s.message()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_time_comes_from_the_verbose_image_spec() {
        let mut info = HashMap::new();
        info.insert("info".to_string(), r#"{"chainID":"sha256:x","imageSpec":{"created":"2024-03-01T10:00:00Z","architecture":"amd64"}}"#.to_string());
        assert_eq!(
            created_from_info(&info),
            Some("2024-03-01T10:00:00Z".parse().unwrap())
        );
        info.insert("info".to_string(), "{}".into());
        assert_eq!(created_from_info(&info), None);
        assert_eq!(created_from_info(&HashMap::new()), None);
    }
}
