//! What the pruner needs from a container runtime, and the facts it gets back.
//!
//! Both implementations ([`super::docker`], [`super::cri`]) and the test double
//! (`super::fake`, for tests) answer the same five questions: which images exist, which containers
//! and sandboxes reference which images, how full the image filesystem is, and "remove this
//! image, unless it is in use".

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Serialize;

use crate::stats::filesystems::{DfFigures, statvfs, under_root};

/// One image as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    /// The runtime's image ID (`sha256:…`).
    pub id: String,
    /// Tags, e.g. `registry.k8s.io/pause:3.9` (Docker shows Docker Hub images short:
    /// `busybox:1.36`).
    pub repo_tags: Vec<String>,
    /// Digest references, `repo@sha256:…`.
    pub repo_digests: Vec<String>,
    /// When the image was built (the config's `created`), which is what
    /// `docker image prune --filter until=` compares. `None` when the runtime does not say.
    pub created: Option<Timestamp>,
    /// Bytes of the image including layers shared with other images.
    pub size_bytes: u64,
    /// Bytes of those layers that other images share (Docker's `SharedSize`); `None` when
    /// unknown (CRI). Removing the image alone frees about `size_bytes - shared_bytes`.
    pub shared_bytes: Option<u64>,
    /// The image's layers, bottom first, each with the bytes it takes on disk once however
    /// many images use it; empty when unknown (CRI, or an engine whose history does not
    /// line up with the layers). With them the plan counts a layer shared by several
    /// removed images once and a layer a kept image uses not at all
    /// ([`super::plan::plan`]); without them it falls back to [`Image::exclusive_bytes`].
    pub layers: Vec<Layer>,
    /// The runtime asks that this image never be collected (CRI `pinned`, e.g. the sandbox
    /// image on containerd ≥ 1.7).
    pub pinned: bool,
}

/// One stored layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layer {
    /// The layer's identity in the store: Docker's chain ID (`sha256:…` over the diff IDs
    /// from the bottom layer up to this one), so two images hold the same stored layer
    /// exactly when their ids are equal.
    pub id: String,
    /// Bytes this layer alone takes (Docker's `DiffSize`, the figure `docker image prune`
    /// adds up as "reclaimed space").
    pub bytes: u64,
}

/// Bytes freed by removing the images `removed` from `all`, each stored layer counted once
/// and a layer an image that stays uses not at all (how `docker image prune` adds up its
/// reclaimed space). `None` when some image's layers are unknown ([`Image::layers`]).
pub(crate) fn layers_freed(removed: &[&Image], all: &[&Image]) -> Option<u64> {
    if all.iter().chain(removed).any(|i| i.layers.is_empty()) {
        return None;
    }
    let gone: HashSet<&str> = removed.iter().map(|i| i.id.as_str()).collect();
    let held: HashSet<&str> = all
        .iter()
        .filter(|i| !gone.contains(i.id.as_str()))
        .flat_map(|i| i.layers.iter().map(|l| l.id.as_str()))
        .collect();
    let mut counted = HashSet::new();
    Some(
        removed
            .iter()
            .flat_map(|i| &i.layers)
            .filter(|l| !held.contains(l.id.as_str()) && counted.insert(l.id.as_str()))
            .map(|l| l.bytes)
            .sum(),
    )
}

/// Docker's chain IDs of the layers with these diff IDs, bottom first:
/// `chain(0) = diff(0)`, `chain(n) = sha256(chain(n-1) + " " + diff(n))`
/// (moby `layer.CreateChainID`).
pub(crate) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let id = match out.last() {
            None => d.clone(),
            Some(parent) => {
                let digest = Sha256::digest(format!("{parent} {d}").as_bytes());
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                format!("sha256:{hex}")
            }
        };
        out.push(id);
    }
    out
}

impl Image {
    /// Bytes that removing this image alone frees: its size minus the layers it shares.
    pub fn exclusive_bytes(&self) -> u64 {
        self.size_bytes
            .saturating_sub(self.shared_bytes.unwrap_or(0))
    }

    /// No tag: what `docker image prune` (without `-a`) calls dangling.
    pub(crate) fn is_dangling(&self) -> bool {
        self.repo_tags.is_empty()
    }

    /// A short human name: the first tag, else the first digest, else the short ID.
    pub fn display_name(&self) -> String {
        if let Some(t) = self.repo_tags.first() {
            return t.clone();
        }
        if let Some(d) = self.repo_digests.first() {
            return d.clone();
        }
        short_id(&self.id).to_string()
    }
}

/// `sha256:0123456789ab…` → `0123456789ab`, as `docker images` prints IDs.
pub(crate) fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.get(..12).unwrap_or(hex)
}

/// What kind of thing references an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserKind {
    /// A container in any state: running, paused, stopped, created-only.
    Container,
    /// A CRI pod sandbox (its pause image).
    Sandbox,
}

/// A container or pod sandbox and the image it references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageUser {
    pub kind: UserKind,
    pub id: String,
    /// The reference as the container was created with it: a tag, a digest reference or
    /// an image ID (Docker's `Image`, CRI's `image.image`).
    pub image_ref: String,
    /// The resolved image ID or digest reference, when the runtime reports one (Docker's
    /// `ImageID`, CRI's `image_ref`/`image_id`). May be empty.
    pub image_id: String,
    /// The runtime's state word (`running`, `exited`, `created`, …), for messages only.
    pub state: String,
}

/// The filesystem that holds the images, measured with statvfs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    pub capacity_bytes: u64,
    pub available_bytes: u64,
}

impl DiskUsage {
    /// Used percent the way the kubelet's image GC computes it:
    /// `100 - available × 100 / capacity` (reserved blocks count as used). 0 for an empty
    /// (zero-capacity) filesystem.
    pub fn used_percent(&self) -> f64 {
        if self.capacity_bytes == 0 {
            return 0.0;
        }
        100.0
            - self.available_bytes.min(self.capacity_bytes) as f64 * 100.0
                / self.capacity_bytes as f64
    }

    /// Bytes to free so that usage drops to `target_percent`, as the kubelet's
    /// `amountToFree = capacity × (100 − low) / 100 − available`; 0 when already there.
    pub(crate) fn bytes_to_reach(&self, target_percent: f64) -> u64 {
        let want_available = self.capacity_bytes as f64 * (100.0 - target_percent) / 100.0;
        let missing = want_available - self.available_bytes as f64;
        if missing <= 0.0 {
            0
        } else {
            missing.ceil() as u64
        }
    }
}

impl From<&DfFigures> for DiskUsage {
    fn from(df: &DfFigures) -> Self {
        DiskUsage {
            capacity_bytes: df.size_bytes,
            available_bytes: df.avail_bytes,
        }
    }
}

/// statvfs(2) of the runtime's image directory `dir` (as the runtime names it on the host,
/// found under `rootfs`), on a blocking thread.
///
/// # Errors
/// [`Error::Statvfs`] when it cannot be measured.
pub(crate) async fn measure_image_fs(rootfs: &Path, dir: &Path) -> Result<DfFigures> {
    let path = under_root(rootfs, &dir.to_string_lossy());
    let p = path.clone();
    let s = tokio::task::spawn_blocking(move || statvfs(&p))
        .await
        .map_err(|e| Error::Statvfs {
            path: path.display().to_string(),
            message: e.to_string(),
        })?
        .map_err(|e| Error::Statvfs {
            path: path.display().to_string(),
            message: e.desc().to_string(),
        })?;
    Ok(s.df())
}

/// Where the runtime keeps its images and how much of that filesystem is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageFs {
    /// The directory as the runtime names it on the host (`/var/lib/docker`,
    /// `/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs`).
    pub mountpoint: PathBuf,
    pub disk: DiskUsage,
    /// Bytes used, measured the most exact way the runtime allows: CRI's `used_bytes` (the
    /// snapshotter's usage, which counts shared layers once); for Docker the filesystem's
    /// used bytes (capacity − available), since Docker 20.10's API has no exact figure.
    /// Only differences of two measurements are reported.
    pub used_bytes: u64,
}

/// Why a removal did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// The runtime refused because a container uses the image: counted as kept, not failed.
    #[error("image is in use: {0}")]
    InUse(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// A runtime call that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to {runtime} at {socket}: {message}")]
    Connect {
        runtime: &'static str,
        socket: String,
        message: String,
    },
    #[error("{runtime} {call} failed: {message}")]
    Call {
        runtime: &'static str,
        call: &'static str,
        message: String,
    },
    #[error("{runtime} {call} did not answer within {seconds} s")]
    Timeout {
        runtime: &'static str,
        call: &'static str,
        seconds: u64,
    },
    #[error("cannot measure the image filesystem {path}: {message}")]
    Statvfs { path: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A container runtime that stores images: Docker or a CRI runtime (containerd).
///
/// Every method is one or a few API calls with a timeout; none caches.
pub trait ImageRuntime: Send + Sync {
    /// `docker` or `containerd` (for output and metrics).
    fn name(&self) -> &'static str;

    /// Every top-level image (what `docker images` lists; no intermediate build layers).
    fn list_images(&self) -> impl Future<Output = Result<Vec<Image>>> + Send;

    /// Every container in any state, and on CRI every pod sandbox, with the image it uses.
    fn list_users(&self) -> impl Future<Output = Result<Vec<ImageUser>>> + Send;

    /// The image filesystem and its usage.
    fn image_fs(&self) -> impl Future<Output = Result<ImageFs>> + Send;

    /// Removes the image and all its tags, never forcing: a runtime that finds the image
    /// in use answers [`RemoveError::InUse`].
    fn remove_image(&self, image: &Image) -> impl Future<Output = Result<(), RemoveError>> + Send;
}

/// A shared runtime is a runtime (tests keep a handle on a fake the daemon task uses).
impl<R: ImageRuntime> ImageRuntime for std::sync::Arc<R> {
    fn name(&self) -> &'static str {
        self.as_ref().name()
    }

    fn list_images(&self) -> impl Future<Output = Result<Vec<Image>>> + Send {
        self.as_ref().list_images()
    }

    fn list_users(&self) -> impl Future<Output = Result<Vec<ImageUser>>> + Send {
        self.as_ref().list_users()
    }

    fn image_fs(&self) -> impl Future<Output = Result<ImageFs>> + Send {
        self.as_ref().image_fs()
    }

    fn remove_image(&self, image: &Image) -> impl Future<Output = Result<(), RemoveError>> + Send {
        self.as_ref().remove_image(image)
    }
}

/// Canonical form of an image reference so that the many spellings of one image compare
/// equal: `busybox`, `busybox:latest`, `docker.io/library/busybox:latest` and
/// `index.docker.io/library/busybox` all become `docker.io/library/busybox:latest`.
/// IDs (`sha256:…`) and digest references keep their digest and get the same registry
/// normalisation.
pub fn normalize_reference(r: &str) -> String {
    let r = r.trim();
    if r.starts_with("sha256:") {
        return r.to_string();
    }
    let (name, digest) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (r, None),
    };
    // A tag is after the last ':' that follows the last '/' (a registry port has a '/' after it).
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    let first = repo.split('/').next().unwrap_or("");
    let has_registry =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = if has_registry {
        repo.to_string()
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    if let Some(rest) = full.strip_prefix("index.docker.io/") {
        full = format!("docker.io/{rest}");
    }
    if full.starts_with("docker.io/") && full.matches('/').count() == 1 {
        full = full.replacen("docker.io/", "docker.io/library/", 1);
    }
    match (digest, tag) {
        (Some(d), _) => format!("{full}@{d}"),
        (None, Some(t)) => format!("{full}:{t}"),
        (None, None) => format!("{full}:latest"),
    }
}

/// Every image reference used by any container or sandbox, normalised, for "is this image
/// in use, and by whom?" in O(tags) per image.
#[derive(Debug, Default, Clone)]
pub struct InUseIndex {
    /// Reference (as given and normalised) → index of the first user in the input.
    refs: HashMap<String, usize>,
    /// Short forms: hex ID prefixes of 12 to 63 characters, which Docker accepts when
    /// creating a container, with their user.
    id_prefixes: Vec<(String, usize)>,
}

impl InUseIndex {
    /// Builds the index from the runtime's containers and sandboxes.
    pub fn new(users: &[ImageUser]) -> Self {
        let mut idx = Self::default();
        for (n, u) in users.iter().enumerate() {
            for r in [&u.image_ref, &u.image_id] {
                if r.is_empty() {
                    continue;
                }
                idx.refs.entry(r.clone()).or_insert(n);
                idx.refs.entry(normalize_reference(r)).or_insert(n);
                let hex = r.strip_prefix("sha256:").unwrap_or(r);
                if hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    if hex.len() == 64 {
                        idx.refs.entry(format!("sha256:{hex}")).or_insert(n);
                    } else if hex.len() >= 12 {
                        idx.id_prefixes.push((hex.to_string(), n));
                    }
                }
            }
        }
        idx
    }

    /// The index (into the slice given to [`InUseIndex::new`]) of a container or sandbox
    /// that references the image by ID, tag or digest.
    pub(crate) fn user_of(&self, image: &Image) -> Option<usize> {
        if let Some(&n) = self.refs.get(&image.id) {
            return Some(n);
        }
        let hex = image.id.strip_prefix("sha256:").unwrap_or(&image.id);
        if let Some((_, n)) = self
            .id_prefixes
            .iter()
            .find(|(p, _)| hex.starts_with(p.as_str()))
        {
            return Some(*n);
        }
        image
            .repo_tags
            .iter()
            .chain(&image.repo_digests)
            .find_map(|r| {
                self.refs
                    .get(r)
                    .or_else(|| self.refs.get(&normalize_reference(r)))
                    .copied()
            })
    }

    /// True when any container or sandbox references the image.
    pub fn uses(&self, image: &Image) -> bool {
        self.user_of(image).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise_like_the_docker_cli() {
        for (input, want) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            (
                "docker.io/library/busybox:1.36",
                "docker.io/library/busybox:1.36",
            ),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("grafana/loki:2.9", "docker.io/grafana/loki:2.9"),
            ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("localhost/app:v1", "localhost/app:v1"),
            ("busybox@sha256:abc", "docker.io/library/busybox@sha256:abc"),
            ("sha256:abc", "sha256:abc"),
        ] {
            assert_eq!(normalize_reference(input), want, "{input}");
        }
    }

    #[test]
    fn layers_freed_counts_each_layer_once_and_held_layers_not_at_all() {
        let layered = |id: &str, layers: &[(&str, u64)]| {
            let mut i = img(id, &[], &[]);
            i.layers = layers
                .iter()
                .map(|(l, b)| Layer {
                    id: (*l).into(),
                    bytes: *b,
                })
                .collect();
            i
        };
        let a = layered("a", &[("base", 100), ("ab", 30), ("a", 1)]);
        let b = layered("b", &[("base", 100), ("ab", 30), ("b", 2)]);
        let k = layered("k", &[("base", 100), ("k", 4)]);
        assert_eq!(layers_freed(&[&a, &b], &[&a, &b, &k]), Some(33));
        assert_eq!(layers_freed(&[&a], &[&a, &b, &k]), Some(1));
        assert_eq!(layers_freed(&[&a, &b, &k], &[&a, &b, &k]), Some(137));
        let unknown = img("u", &[], &[]);
        assert_eq!(layers_freed(&[&a], &[&a, &unknown]), None);
    }

    #[test]
    fn chain_ids_are_dockers() {
        // The expected digest is `printf 'sha256:aa sha256:bb' | sha256sum`.
        let ids = chain_ids(&["sha256:aa".into(), "sha256:bb".into()]);
        assert_eq!(ids[0], "sha256:aa");
        assert_eq!(
            ids[1],
            "sha256:b68ad689d6d1ec110ea1c13617437ad6f3766d4b3b309f6a603a222e07a0164f"
        );
    }

    fn img(id: &str, tags: &[&str], digests: &[&str]) -> Image {
        Image {
            id: id.into(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            created: None,
            size_bytes: 10,
            shared_bytes: None,
            layers: Vec::new(),
            pinned: false,
        }
    }

    fn user(image_ref: &str, image_id: &str) -> ImageUser {
        ImageUser {
            kind: UserKind::Container,
            id: "c".into(),
            image_ref: image_ref.into(),
            image_id: image_id.into(),
            state: "created".into(),
        }
    }

    #[test]
    fn an_image_is_in_use_by_id_tag_digest_or_short_id() {
        let id = format!("sha256:{}", "ab".repeat(32));
        let i = img(&id, &["busybox:1.36"], &["busybox@sha256:dd"]);
        assert!(!InUseIndex::new(&[]).uses(&i));
        assert!(InUseIndex::new(&[user("x", &id)]).uses(&i));
        assert!(InUseIndex::new(&[user("docker.io/library/busybox:1.36", "")]).uses(&i));
        assert!(InUseIndex::new(&[user("docker.io/library/busybox@sha256:dd", "")]).uses(&i));
        assert!(InUseIndex::new(&[user("abababababab", "")]).uses(&i));
        assert!(InUseIndex::new(&[user(&"ab".repeat(32), "")]).uses(&i));
        assert!(!InUseIndex::new(&[user("busybox:1.35", "sha256:other")]).uses(&i));
    }

    #[test]
    fn kubelet_disk_maths() {
        let d = DiskUsage {
            capacity_bytes: 1000,
            available_bytes: 100,
        };
        assert_eq!(d.used_percent(), 90.0);
        // To reach 80 %, 200 bytes must be available: 100 more.
        assert_eq!(d.bytes_to_reach(80.0), 100);
        assert_eq!(d.bytes_to_reach(95.0), 0);
        assert_eq!(
            DiskUsage {
                capacity_bytes: 0,
                available_bytes: 0
            }
            .used_percent(),
            0.0
        );
    }

    #[test]
    fn exclusive_bytes_subtract_shared_layers() {
        let mut i = img("sha256:1", &[], &[]);
        i.size_bytes = 100;
        i.shared_bytes = Some(30);
        assert_eq!(i.exclusive_bytes(), 70);
        assert!(i.is_dangling());
        assert_eq!(i.display_name(), "1");
        assert_eq!(
            short_id(&format!("sha256:{}", "f".repeat(64))),
            "ffffffffffff"
        );
    }
}
