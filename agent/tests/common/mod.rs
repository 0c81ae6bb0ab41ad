//! Helpers for the tests against the real runtimes: the services' environment variables,
//! hand-written docker-save tarballs with a chosen `created` date, and the docker CLI.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The path in `var`, or `None` (with the reason printed) outside CI. Under `CI=true` a
/// missing service is a failure, never a skip.
pub(crate) fn service(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "{var} is not set but CI=true: tests/run-all.sh must start the service (tests/services/*.sh)"
                );
            }
            eprintln!(
                "skipping: {var} is not set (run the tests through tests/run-all.sh to start the real service)"
            );
            None
        }
    }
}

/// The static busybox binary the services export (`CARETAKER_TEST_BUSYBOX`).
pub(crate) fn busybox() -> PathBuf {
    std::env::var_os("CARETAKER_TEST_BUSYBOX")
        .map_or_else(|| PathBuf::from("/bin/busybox"), PathBuf::from)
}

fn sha256_hex(b: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn layer_tar(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in files {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// One image of a docker-save tarball.
#[derive(Debug, Clone)]
pub(crate) struct TestImage {
    /// Tags (`ct/app:1`); none makes an untagged (dangling) image.
    pub tags: Vec<String>,
    /// RFC 3339 creation time written into the image config.
    pub created: String,
    /// Size of the image's own layer (on top of the shared busybox layer).
    pub own_bytes: usize,
    /// Distinguishes images that would otherwise be identical.
    pub label: String,
    /// A layer between busybox and the image's own, named and sized: images given the same
    /// one share it (None: busybox and the own layer only).
    pub middle: Option<(String, usize)>,
}

impl TestImage {
    pub(crate) fn new(
        tags: &[&str],
        created: jiff::Timestamp,
        own_bytes: usize,
        label: &str,
    ) -> Self {
        Self {
            tags: tags.iter().map(|s| s.to_string()).collect(),
            created: created.to_string(),
            own_bytes,
            label: label.into(),
            middle: None,
        }
    }

    /// The image with a middle layer `name` of `bytes` (shared by every image given it).
    pub(crate) fn on(mut self, name: &str, bytes: usize) -> Self {
        self.middle = Some((name.into(), bytes));
        self
    }
}

/// A docker-save (`docker load`, `ctr images import`) tarball of `images`, all sharing one
/// busybox layer, each with its own layer of `own_bytes` and its own config. Returns the
/// tarball and each image's ID (`sha256:` + the config's digest), in order.
pub(crate) fn docker_save_tar(images: &[TestImage]) -> (Vec<u8>, Vec<String>) {
    let bb = std::fs::read(busybox()).expect("read the static busybox binary");
    let base = layer_tar(&[("bin/busybox", &bb, 0o755)]);
    let base_id = sha256_hex(&base);
    let mut out = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        out.append(&h, data).unwrap();
    };
    add(&format!("{base_id}/layer.tar"), &base);
    let mut added = std::collections::HashSet::from([base_id.clone()]);
    let mut manifest = Vec::new();
    let mut ids = Vec::new();
    for img in images {
        let mut layers = vec![base_id.clone()];
        let mut blobs = Vec::new();
        if let Some((name, bytes)) = &img.middle {
            let mut content = format!("{name}\n").into_bytes();
            content.resize((*bytes).max(content.len()), b'm');
            blobs.push(layer_tar(&[("middle", &content, 0o644)]));
        }
        let mut content = format!("{}\n", img.label).into_bytes();
        content.resize(img.own_bytes.max(content.len()), b'x');
        blobs.push(layer_tar(&[("id", &content, 0o644)]));
        for blob in blobs {
            let id = sha256_hex(&blob);
            if added.insert(id.clone()) {
                add(&format!("{id}/layer.tar"), &blob);
            }
            layers.push(id);
        }
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "created": img.created,
            "config": {"Cmd": ["/bin/busybox", "sleep", "3600"], "Labels": {"caretaker.test": img.label}},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| format!("sha256:{l}")).collect::<Vec<_>>()},
            "history": layers.iter().map(|_| serde_json::json!({"created": img.created})).collect::<Vec<_>>()
        });
        let config = serde_json::to_vec(&config).unwrap();
        let config_id = sha256_hex(&config);
        add(&format!("{config_id}.json"), &config);
        manifest.push(serde_json::json!({
            "Config": format!("{config_id}.json"),
            "RepoTags": img.tags,
            "Layers": layers.iter().map(|l| format!("{l}/layer.tar")).collect::<Vec<_>>()
        }));
        ids.push(format!("sha256:{config_id}"));
    }
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    (out.into_inner().unwrap(), ids)
}

/// Runs a command, panicking with its output when it fails; returns stdout.
pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The docker CLI talking to the test engine.
pub(crate) fn docker(sock: &Path) -> Command {
    let mut c = Command::new("docker");
    c.env("DOCKER_HOST", format!("unix://{}", sock.display()));
    c
}

/// Writes `tar` to a temp file and `docker load`s it.
pub(crate) fn docker_load(sock: &Path, tar: &[u8]) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), tar).unwrap();
    run(docker(sock).arg("load").arg("-q").arg("-i").arg(f.path()));
}

/// Removes every container and image of the test engine, so each test starts clean.
pub(crate) fn docker_reset(sock: &Path) {
    let ids = run(docker(sock).args(["ps", "-aq"]));
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        run(docker(sock).args(["rm", "-f"]).args(&ids));
    }
    // Parents go with their children, so single removals may find an image gone already.
    for _ in 0..3 {
        let imgs = run(docker(sock).args(["images", "-aq", "--no-trunc"]));
        let mut imgs: Vec<&str> = imgs.split_whitespace().collect();
        imgs.dedup();
        if imgs.is_empty() {
            return;
        }
        for i in imgs {
            let _ = docker(sock).args(["rmi", "-f", i]).output();
        }
    }
    assert_eq!(
        run(docker(sock).args(["images", "-aq"])).trim(),
        "",
        "the test engine could not be emptied"
    );
}

/// Full IDs of every image the engine lists (`docker images -q --no-trunc`), sorted.
pub(crate) fn docker_image_ids(sock: &Path) -> Vec<String> {
    let mut v: Vec<String> = run(docker(sock).args(["images", "-q", "--no-trunc"]))
        .split_whitespace()
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// `ctr` talking to the test containerd in the CRI namespace.
pub(crate) fn ctr(sock: &Path) -> Command {
    let mut c = Command::new("ctr");
    c.arg("--address").arg(sock).args(["-n", "k8s.io"]);
    c
}

/// Writes `tar` to a temp file and imports it into containerd's CRI namespace.
pub(crate) fn ctr_import(sock: &Path, tar: &[u8]) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), tar).unwrap();
    run(ctr(sock)
        .args(["images", "import", "--no-unpack"])
        .arg(f.path()));
}
