//! The container image on the real Docker engine, offline: the top-level `Dockerfile` is
//! built as it is, with its base images given as build arguments and assembled here from
//! this machine's own files (`docker import`; nothing is pulled): the builder stage gets the
//! binaries cargo already built (`PREBUILT`), the final base is glibc, libgcc_s and the CA
//! certificates. Then the agent and the aggregator run as containers with the mounts,
//! user, capabilities and read-only root filesystem that `kubectl kustomize
//! deploy/kustomize/base` renders for the DaemonSet and the Deployment (read from the
//! manifests, not re-typed), on a Docker network, over mutual TLS with certificates from
//! `caretaker-aggregator certs`. The merged report must show the host's root filesystem and
//! interfaces, and rotation must work on a log under the mounted `/var/log`.
//!
//! Needs `CARETAKER_TEST_DOCKER_SOCK` (tests/services/docker.sh) and kubectl; without them
//! the test says so and passes, except under `CI=true`, where it fails.
//! The shipped binaries and the size goal (≤ 40 MB uncompressed, asserted on the built
//! image's `Size`): `CARETAKER_IMAGE_RELEASE=1` makes the test build them first with the
//! Dockerfile's own commands (`--profile release-agent`, `--profile release-aggregator`,
//! into this workspace's target), `CARETAKER_IMAGE_BINARIES=DIR` takes them from DIR.
//! Without either, the image holds the debug binaries of this test run and only its
//! composition is checked.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec};
use serde_json::Value;

const NODE: &str = "image-test-node";
/// The image size goal for release binaries (uncompressed, as `docker images` shows it).
const SIZE_GOAL_BYTES: u64 = 40_000_000;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A service is missing: fail under CI, else say why the test did not run.
fn missing(what: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} (tests/run-all.sh sets it up)"
    );
    eprintln!("SKIPPED: {what}; run tests/run-all.sh to set it up");
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The Docker CLI talking to the test's private engine; everything it creates carries the
/// test's suffix and is removed on drop.
struct Engine {
    host: String,
    suffix: String,
    containers: Vec<String>,
    images: Vec<String>,
    networks: Vec<String>,
}

impl Engine {
    fn cmd(&self) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", &self.host).env("DOCKER_BUILDKIT", "0");
        c
    }

    /// Runs `docker ARGS`; panics with its output when it fails.
    fn run(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("the docker CLI runs");
        assert!(
            out.status.success(),
            "docker {}: {}",
            args.join(" "),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `docker import` of a directory as image NAME (owner root, numeric ids).
    fn import(&mut self, dir: &Path, name: &str) -> String {
        let name = format!("{name}:{}", self.suffix);
        let mut tar = Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
            .arg(dir)
            .args(["-cf", "-", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tar runs");
        let out = self
            .cmd()
            .args(["import", "-", &name])
            .stdin(tar.stdout.take().expect("tar stdout"))
            .output()
            .expect("docker import runs");
        assert!(tar.wait().expect("tar exits").success(), "tar of {dir:?}");
        assert!(out.status.success(), "docker import {name}: {}", text(&out));
        self.images.push(name.clone());
        name
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for c in &self.containers {
            if std::thread::panicking() {
                let logs = self.cmd().args(["logs", "--tail", "40", c]).output();
                if let Ok(out) = logs {
                    eprintln!("--- docker logs {c}:\n{}", text(&out));
                }
            }
            let _ = self.cmd().args(["rm", "-f", "-v", c]).output();
        }
        for n in &self.networks {
            let _ = self.cmd().args(["network", "rm", n]).output();
        }
        // The classic builder keeps each stage's intermediate images (untagged children of
        // the imported bases): remove every descendant of this test's images, children
        // first, and nothing else (other tests share the engine).
        for i in self.descendants().iter().rev() {
            let _ = self.cmd().args(["rmi", "-f", i]).output();
        }
        for i in self.images.iter().rev() {
            let _ = self.cmd().args(["rmi", "-f", i]).output();
        }
    }
}

impl Engine {
    /// Image IDs descending from this test's images (parents before children).
    fn descendants(&self) -> Vec<String> {
        let id = |name: &str| -> Option<String> {
            let out = self
                .cmd()
                .args(["image", "inspect", "-f", "{{.Id}}", name])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let mut ours: Vec<String> = self.images.iter().filter_map(|i| id(i)).collect();
        let Ok(all) = self
            .cmd()
            .args(["images", "-a", "-q", "--no-trunc"])
            .output()
        else {
            return vec![];
        };
        let all = String::from_utf8_lossy(&all.stdout).into_owned();
        let mut parents: Vec<(String, String)> = Vec::new();
        for image in all.lines().collect::<BTreeSet<_>>() {
            let out = self
                .cmd()
                .args(["image", "inspect", "-f", "{{.Parent}}", image])
                .output();
            if let Ok(out) = out {
                let parent = String::from_utf8_lossy(&out.stdout).trim().to_string();
                parents.push((image.to_string(), parent));
            }
        }
        let mut found = Vec::new();
        loop {
            let next: Vec<String> = parents
                .iter()
                .filter(|(i, p)| ours.contains(p) && !ours.contains(i))
                .map(|(i, _)| i.clone())
                .collect();
            if next.is_empty() {
                return found;
            }
            ours.extend(next.iter().cloned());
            found.extend(next);
        }
    }
}

/// The shared libraries `ldd` names for `bin` (absolute paths on this machine).
fn shared_libraries(bin: &Path) -> BTreeSet<PathBuf> {
    let out = Command::new("ldd").arg(bin).output().expect("ldd runs");
    assert!(out.status.success(), "ldd {bin:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let path = l.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn copy_into(rootfs: &Path, src: &Path, dest: &str) -> u64 {
    let target = rootfs.join(dest.trim_start_matches('/'));
    std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
    std::fs::copy(src, &target).unwrap_or_else(|e| panic!("copy {src:?}: {e}"))
}

/// A distroless-like base from this machine: the binaries' shared libraries, the CA
/// certificates, root and nonroot (65532) users, /tmp.
fn base_rootfs(dir: &Path, bins: &[PathBuf]) {
    let libs: BTreeSet<PathBuf> = bins.iter().flat_map(|b| shared_libraries(b)).collect();
    assert!(
        libs.iter().any(|l| l.to_string_lossy().contains("libc.so")),
        "ldd names libc: {libs:?}"
    );
    for lib in &libs {
        copy_into(dir, lib, &lib.to_string_lossy());
    }
    copy_into(
        dir,
        Path::new("/etc/ssl/certs/ca-certificates.crt"),
        "/etc/ssl/certs/ca-certificates.crt",
    );
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    .expect("passwd");
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnonroot:x:65532:\n").expect("group");
    std::fs::create_dir_all(dir.join("tmp")).expect("tmp");
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod tmp");
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let meta = e.metadata().expect("metadata");
        if meta.is_dir() {
            total += dir_bytes(&e.path());
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    total
}

/// The binaries the image ships, when asked for (see the module docs): built here with the
/// Dockerfile's commands under `CARETAKER_IMAGE_RELEASE=1`, else taken from
/// `CARETAKER_IMAGE_BINARIES`. `None`: use this test run's debug binaries.
fn shipped_binaries() -> Option<Vec<PathBuf>> {
    if std::env::var("CARETAKER_IMAGE_RELEASE").as_deref() == Ok("1") {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut bins = Vec::new();
        for (profile, package, bin) in [
            ("release-agent", "caretaker-agent", "caretaker-agent"),
            (
                "release-aggregator",
                "caretaker-aggregator",
                "caretaker-aggregator",
            ),
        ] {
            let out = Command::new(&cargo)
                .current_dir(root())
                .args(["build", "--locked", "--profile", profile, "-p", package])
                .args(["--bin", bin])
                .output()
                .expect("cargo runs");
            assert!(
                out.status.success(),
                "cargo build --profile {profile}: {}",
                text(&out)
            );
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| root().join("target"), PathBuf::from);
            bins.push(target.join(profile).join(bin));
        }
        return Some(bins);
    }
    let dir = std::env::var_os("CARETAKER_IMAGE_BINARIES")?;
    Some(
        ["caretaker-agent", "caretaker-aggregator"]
            .iter()
            .map(|b| Path::new(&dir).join(b))
            .collect(),
    )
}

/// The rendered base install as JSON documents.
fn rendered() -> Option<Vec<Value>> {
    let out = match Command::new("kubectl")
        .arg("kustomize")
        .arg(root().join("deploy/kustomize/base"))
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            missing(&format!("kubectl cannot run ({e})"));
            return None;
        }
    };
    assert!(out.status.success(), "kubectl kustomize: {}", text(&out));
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(
        &String::from_utf8_lossy(&out.stdout),
        serde_saphyr::options!(legacy_octal_numbers: true),
    )
    .expect("rendered YAML parses");
    Some(docs.into_iter().filter(|d| !d.is_null()).collect())
}

fn find<T: serde::de::DeserializeOwned>(docs: &[Value], kind: &str, name: &str) -> T {
    let doc = docs
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} is rendered"));
    serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{kind} {name}: {e}"))
}

/// What a pod volume is on this test machine.
enum Source {
    Bind(PathBuf),
    Tmpfs,
}

/// `docker run` options for one container of a rendered pod: its volume mounts (each
/// volume resolved by `source`), user, capabilities, read-only root filesystem,
/// no-new-privileges and environment; then the image, command and arguments.
fn run_options(
    pod: &PodSpec,
    c: &Container,
    image: &str,
    source: &dyn Fn(&k8s_openapi::api::core::v1::Volume) -> Source,
    field_env: &BTreeMap<&str, &str>,
    rslave_supported: bool,
) -> Vec<String> {
    let mut o: Vec<String> = Vec::new();
    let volumes = pod.volumes.as_deref().unwrap_or_default();
    for m in c.volume_mounts.as_deref().unwrap_or_default() {
        let v = volumes
            .iter()
            .find(|v| v.name == m.name)
            .unwrap_or_else(|| panic!("volume {} is declared", m.name));
        match source(v) {
            Source::Bind(src) => {
                let mut spec =
                    format!("type=bind,source={},target={}", src.display(), m.mount_path);
                if m.read_only == Some(true) {
                    spec.push_str(",readonly");
                }
                match m.mount_propagation.as_deref() {
                    None | Some("None") => {}
                    // kubelet's HostToContainer is rslave; it needs a shared or slave
                    // source mount, which a node's / is (systemd) but this machine's may not be.
                    Some("HostToContainer") if rslave_supported => {
                        spec.push_str(",bind-propagation=rslave")
                    }
                    Some("HostToContainer") => {}
                    Some(p) => panic!("mountPropagation {p} is not allowed"),
                }
                o.extend(["--mount".into(), spec]);
            }
            Source::Tmpfs => o.extend(["--tmpfs".into(), format!("{}:mode=1777", m.mount_path)]),
        }
    }
    let psc = pod.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    assert_ne!(sc.privileged, Some(true), "{}: privileged", c.name);
    let user = sc
        .run_as_user
        .or(psc.run_as_user)
        .expect("runAsUser is set");
    let group = sc
        .run_as_group
        .or(psc.run_as_group)
        .expect("runAsGroup is set");
    if sc.run_as_non_root.or(psc.run_as_non_root) == Some(true) {
        assert_ne!(user, 0, "{}: runAsNonRoot with UID 0", c.name);
    }
    o.extend(["--user".into(), format!("{user}:{group}")]);
    if let Some(fs_group) = psc.fs_group {
        o.extend(["--group-add".into(), fs_group.to_string()]);
    }
    if sc.read_only_root_filesystem == Some(true) {
        o.push("--read-only".into());
    }
    if sc.allow_privilege_escalation == Some(false) {
        o.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    let seccomp = sc.seccomp_profile.or(psc.seccomp_profile).map(|p| p.type_);
    assert_eq!(
        seccomp.as_deref(),
        Some("RuntimeDefault"),
        "{}: the engine's default seccomp profile",
        c.name
    );
    let caps = sc.capabilities.unwrap_or_default();
    for d in caps.drop.unwrap_or_default() {
        o.extend(["--cap-drop".into(), d]);
    }
    for a in caps.add.unwrap_or_default() {
        o.extend(["--cap-add".into(), a]);
    }
    for e in c.env.as_deref().unwrap_or_default() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), None) => v.clone(),
            (None, Some(from)) => {
                let path = &from.field_ref.as_ref().expect("fieldRef").field_path;
                field_env
                    .get(path.as_str())
                    .unwrap_or_else(|| panic!("no test value for fieldRef {path}"))
                    .to_string()
            }
            other => panic!("env {}: {other:?}", e.name),
        };
        o.extend(["--env".into(), format!("{}={value}", e.name)]);
    }
    let command = c.command.clone().expect("command");
    o.extend(["--entrypoint".into(), command[0].clone()]);
    o.push(image.into());
    o.extend(command[1..].iter().cloned());
    o.extend(c.args.clone().unwrap_or_default());
    o
}

/// Writes a ConfigMap's data as files (after `edit`), as the kubelet mounts it.
fn config_dir(dir: &Path, cm: &ConfigMap, edit: &dyn Fn(&str, String) -> String) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    for (k, v) in cm.data.clone().unwrap_or_default() {
        std::fs::write(dir.join(&k), edit(&k, v)).expect("write config");
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir.to_path_buf()
}

/// Copies a Secret's files with the volume's defaultMode; with an fsGroup, group-owned by
/// it (as the kubelet does).
fn secret_dir(dir: &Path, files: &[(&str, PathBuf)], mode: u32, fs_group: Option<i64>) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    for (name, src) in files {
        let dest = dir.join(name);
        std::fs::copy(src, &dest).unwrap_or_else(|e| panic!("copy {src:?}: {e}"));
        let gid = fs_group.map(|g| nix::unistd::Gid::from_raw(g as u32));
        nix::unistd::chown(&dest, Some(nix::unistd::Uid::from_raw(0)), gid).expect("chown");
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir.to_path_buf()
}

/// The device (`major:minor`) of this machine's `/` from its mountinfo.
fn root_device_id() -> String {
    let info = std::fs::read_to_string("/proc/1/mountinfo")
        .or_else(|_| std::fs::read_to_string("/proc/self/mountinfo"))
        .expect("mountinfo");
    info.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .rfind(|f| f.len() > 4 && f[4] == "/")
        .map(|f| f[2].to_string())
        .expect("/ in mountinfo")
}

/// Whether this machine's `/` is a shared or slave mount (needed for rslave binds).
fn root_propagates() -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .rfind(|f| f.len() > 6 && f[4] == "/")
        .is_some_and(|f| {
            f[6..]
                .iter()
                .take_while(|x| **x != "-")
                .any(|x| x.starts_with("shared:") || x.starts_with("master:"))
        })
}

fn interfaces(net_dev: &str) -> BTreeSet<String> {
    net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|s| s.trim().to_string())
        .collect()
}

#[test]
fn dockerfile_builds_offline_and_the_manifests_run_on_the_real_engine() {
    let Ok(sock) = std::env::var("CARETAKER_TEST_DOCKER_SOCK") else {
        return missing("CARETAKER_TEST_DOCKER_SOCK is not set (a running dockerd)");
    };
    if Command::new("docker").arg("--version").output().is_err() {
        return missing("the docker CLI is not installed");
    }
    let Some(docs) = rendered() else { return };
    let busybox = std::env::var("CARETAKER_TEST_BUSYBOX").unwrap_or("/bin/busybox".into());
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let mut engine = Engine {
        host: format!("unix://{sock}"),
        suffix: format!("t{}", std::process::id()),
        containers: vec![],
        images: vec![],
        networks: vec![],
    };

    // -- The image: the Dockerfile as users build it, with local bases.
    let shipped = shipped_binaries();
    let bins: Vec<PathBuf> = shipped.clone().unwrap_or_else(|| {
        vec![
            caretaker_tests::binary("caretaker-agent"),
            caretaker_tests::binary("caretaker-aggregator"),
        ]
    });
    let base_dir = t.join("base");
    base_rootfs(&base_dir, &bins);
    let base_bytes = dir_bytes(&base_dir);
    let base = engine.import(&base_dir, "caretaker-test-base");
    let builder_dir = t.join("builder");
    base_rootfs(&builder_dir, &bins);
    copy_into(&builder_dir, Path::new(&busybox), "/bin/busybox");
    for applet in ["sh", "cp", "mkdir"] {
        symlink("busybox", builder_dir.join("bin").join(applet)).expect("symlink");
    }
    let mut bin_bytes = 0;
    std::fs::create_dir_all(builder_dir.join("prebuilt")).expect("mkdir");
    for b in &bins {
        let name = b.file_name().expect("name").to_string_lossy();
        let dest = builder_dir.join("prebuilt").join(&*name);
        // A hard link where possible: the debug binaries are large.
        if std::fs::hard_link(b, &dest).is_err() {
            std::fs::copy(b, &dest).unwrap_or_else(|e| panic!("copy {b:?}: {e}"));
        }
        bin_bytes += std::fs::metadata(&dest).expect("metadata").len();
    }
    let builder = engine.import(&builder_dir, "caretaker-test-builder");
    let image = format!("caretaker-test:{}", engine.suffix);
    let root = root();
    let started = Instant::now();
    engine.run(&[
        "build",
        "--quiet",
        "--build-arg",
        &format!("BUILDER_IMAGE={builder}"),
        "--build-arg",
        &format!("BASE_IMAGE={base}"),
        "--build-arg",
        "PREBUILT=/prebuilt",
        "--tag",
        &image,
        &root.to_string_lossy(),
    ]);
    engine.images.push(image.clone());
    eprintln!("docker build took {:?}", started.elapsed());
    let inspect: Value =
        serde_json::from_str(&engine.run(&["image", "inspect", &image])).expect("inspect JSON");
    let config = &inspect[0]["Config"];
    assert_eq!(config["User"], "65532:65532", "non-root by default");
    let size = inspect[0]["Size"].as_u64().expect("Size");
    eprintln!(
        "image size {size} bytes ({:.1} MB): base {base_bytes}, binaries {bin_bytes}",
        size as f64 / 1e6
    );
    // The final image is the base plus the two binaries, nothing else.
    assert!(
        size >= base_bytes + bin_bytes && size <= base_bytes + bin_bytes + 64 * 1024,
        "image {size} bytes = base {base_bytes} + binaries {bin_bytes}"
    );
    if shipped.is_some() {
        assert!(
            size <= SIZE_GOAL_BYTES,
            "image {size} bytes > goal {SIZE_GOAL_BYTES}"
        );
    }
    // Both programs run from the image; there is no shell.
    for (prog, want) in [
        ("caretaker-agent", "caretaker-agent 0.1.0"),
        ("caretaker-aggregator", "caretaker-aggregator 0.1.0"),
    ] {
        let out = engine.run(&[
            "run",
            "--rm",
            "--network",
            "none",
            &image,
            prog,
            "--version",
        ]);
        assert_eq!(out, want);
    }
    let sh = engine
        .cmd()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            &image,
            "sh",
            "-c",
            "true",
        ])
        .output()
        .expect("docker runs");
    assert!(!sh.status.success(), "the image has no shell");

    // -- Certificates, as an operator makes them.
    let pki = t.join("pki");
    let certs = Command::new(caretaker_tests::binary("caretaker-aggregator"))
        .args(["certs", "--out"])
        .arg(&pki)
        .output()
        .expect("certs runs");
    assert!(certs.status.success(), "certs: {}", text(&certs));
    let tls_files =
        |who: &str| ["tls.crt", "tls.key", "ca.crt"].map(|f| (f, pki.join(who).join(f)));

    // -- The network: the aggregator answers to its Service's name.
    let network = format!("caretaker-test-{}", engine.suffix);
    let net_id = engine.run(&["network", "create", &network]);
    engine.networks.push(network.clone());
    let bridge = format!("br-{}", &net_id[..12]);

    // -- The aggregator, as the Deployment runs it.
    let deploy: Deployment = find(&docs, "Deployment", "caretaker-aggregator");
    let agg_pod = deploy.spec.template.spec.expect("pod spec");
    let agg_c = agg_pod.containers[0].clone();
    let agg_cm: ConfigMap = find(&docs, "ConfigMap", "caretaker-aggregator-config");
    let fs_group = agg_pod.security_context.as_ref().and_then(|s| s.fs_group);
    let data_dir = t.join("aggregator-data");
    std::fs::create_dir_all(&data_dir).expect("mkdir");
    let gid = fs_group.map(|g| nix::unistd::Gid::from_raw(g as u32));
    nix::unistd::chown(&data_dir, None, gid).expect("chown data");
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o2775)).expect("chmod");
    let agg_source = |v: &k8s_openapi::api::core::v1::Volume| -> Source {
        let mode = |s: &k8s_openapi::api::core::v1::SecretVolumeSource| {
            s.default_mode.unwrap_or(0o644) as u32
        };
        if let Some(cm) = &v.config_map {
            assert_eq!(cm.name, "caretaker-aggregator-config");
            // No API server offline: no leader election, no cluster source.
            Source::Bind(config_dir(&t.join("agg-config"), &agg_cm, &|_, yaml| {
                let mut cfg: Value = serde_saphyr::from_str(&yaml).expect("aggregator.yaml");
                let obj = cfg.as_object_mut().expect("a mapping");
                obj.remove("leader_election");
                obj.insert("cluster".into(), serde_json::json!({"source": "none"}));
                cfg.to_string()
            }))
        } else if let Some(s) = &v.secret {
            match s.secret_name.as_deref() {
                Some("caretaker-aggregator-tls") => Source::Bind(secret_dir(
                    &t.join("agg-tls"),
                    &tls_files("aggregator"),
                    mode(s),
                    fs_group,
                )),
                Some("caretaker-api-tokens") => Source::Bind(secret_dir(
                    &t.join("agg-api"),
                    &["read", "admin"].map(|f| (f, pki.join("tokens").join(f))),
                    mode(s),
                    fs_group,
                )),
                other => panic!("aggregator secret {other:?}"),
            }
        } else if v.persistent_volume_claim.is_some() {
            Source::Bind(data_dir.clone())
        } else if v.empty_dir.is_some() {
            Source::Tmpfs
        } else {
            panic!("aggregator volume {} has no test source", v.name)
        }
    };
    let agg_name = format!("caretaker-aggregator-{}", engine.suffix);
    let pod_env = BTreeMap::from([
        ("metadata.name", agg_name.as_str()),
        ("metadata.namespace", "caretaker"),
        ("spec.nodeName", NODE),
    ]);
    let mut args: Vec<String> = vec![
        "run".into(),
        "--detach".into(),
        "--name".into(),
        agg_name.clone(),
        "--network".into(),
        network.clone(),
        "--network-alias".into(),
        "caretaker-aggregator.caretaker.svc".into(),
    ];
    args.extend(run_options(
        &agg_pod,
        &agg_c,
        &image,
        &agg_source,
        &pod_env,
        false,
    ));
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    engine.run(&args_ref);
    engine.containers.push(agg_name.clone());

    // -- The agent, as the DaemonSet runs it: the host's /proc, /sys and /; /var/log and
    // the state directory from temp dirs (the test does not touch this machine's logs).
    let ds: DaemonSet = find(&docs, "DaemonSet", "caretaker-agent");
    let agent_pod = ds.spec.template.spec.expect("pod spec");
    let agent_c = agent_pod.containers[0].clone();
    let agent_cm: ConfigMap = find(&docs, "ConfigMap", "caretaker-agent-config");
    let var_log = t.join("var-log");
    let state = t.join("state");
    std::fs::create_dir_all(&var_log).expect("mkdir");
    std::fs::create_dir_all(&state).expect("mkdir");
    let host_paths: BTreeMap<&str, PathBuf> = BTreeMap::from([
        ("/proc", PathBuf::from("/proc")),
        ("/sys", PathBuf::from("/sys")),
        ("/", PathBuf::from("/")),
        ("/var/log", var_log.clone()),
        ("/var/lib/caretaker", state.clone()),
    ]);
    let agent_source = |v: &k8s_openapi::api::core::v1::Volume| -> Source {
        if let Some(h) = &v.host_path {
            Source::Bind(
                host_paths
                    .get(h.path.as_str())
                    .unwrap_or_else(|| panic!("hostPath {} has no test source", h.path))
                    .clone(),
            )
        } else if v.config_map.is_some() {
            // The shipped policies rotate nothing another rotator owns (none by default):
            // add one for an application's logs, as an operator would.
            Source::Bind(config_dir(&t.join("agent-config"), &agent_cm, &|k, v| {
                if k != "logrotate.conf" {
                    return v;
                }
                format!(
                    "{v}\n/var/log/app/*.log {{\n    size 1k\n    rotate 2\n    missingok\n    compress\n    copytruncate\n}}\n"
                )
            }))
        } else if let Some(s) = &v.secret {
            assert_eq!(s.secret_name.as_deref(), Some("caretaker-agent-tls"));
            Source::Bind(secret_dir(
                &t.join("agent-tls"),
                &tls_files("agent"),
                s.default_mode.unwrap_or(0o644) as u32,
                None,
            ))
        } else if v.empty_dir.is_some() {
            Source::Tmpfs
        } else {
            panic!("agent volume {} has no test source", v.name)
        }
    };
    let declared: BTreeSet<&str> = agent_pod
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.host_path.as_ref().map(|h| h.path.as_str()))
        .collect();
    assert_eq!(
        declared,
        host_paths.keys().copied().collect(),
        "the DaemonSet's hostPaths are the ones this test mounts"
    );
    let agent_name = format!("caretaker-agent-{}", engine.suffix);
    let mut args: Vec<String> = vec![
        "run".into(),
        "--detach".into(),
        "--name".into(),
        agent_name.clone(),
        "--network".into(),
        network.clone(),
    ];
    args.extend(run_options(
        &agent_pod,
        &agent_c,
        &image,
        &agent_source,
        &pod_env,
        root_propagates(),
    ));
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    engine.run(&args_ref);
    engine.containers.push(agent_name.clone());
    let state_inspect: Value =
        serde_json::from_str(&engine.run(&["container", "inspect", &agent_name]))
            .expect("inspect JSON");
    let host_config = &state_inspect[0]["HostConfig"];
    assert_eq!(host_config["ReadonlyRootfs"], true);
    let caps = |key: &str| -> Vec<String> {
        let list = host_config[key].as_array().cloned().unwrap_or_default();
        list.iter()
            .filter_map(|c| c.as_str())
            .map(|c| c.trim_start_matches("CAP_").to_string())
            .collect()
    };
    assert_eq!(caps("CapDrop"), ["ALL"]);
    assert_eq!(
        caps("CapAdd"),
        [
            "CHOWN",
            "DAC_OVERRIDE",
            "DAC_READ_SEARCH",
            "FOWNER",
            "LEASE"
        ]
    );

    // -- The merged report, read from the aggregator with the read token over TLS.
    let deadline = Instant::now() + Duration::from_secs(60);
    let node = loop {
        let out = engine
            .cmd()
            .args([
                "exec",
                &agg_name,
                "caretaker-aggregator",
                "report",
                "--server",
                "https://caretaker-aggregator.caretaker.svc:7443",
                "--ca-file",
                "/var/run/secrets/caretaker/tls/ca.crt",
                "--token-file",
                "/var/run/secrets/caretaker/api/read",
                "--output",
                "json",
            ])
            .output()
            .expect("docker exec runs");
        if out.status.success() {
            let report: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
            let node = report["nodes"]
                .as_array()
                .and_then(|n| n.iter().find(|n| n["node_name"] == NODE).cloned());
            if let Some(n) = node.filter(|n| !n["report"].is_null()) {
                break n;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no report of {NODE} within 60 s; last answer: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let report = &node["report"];

    // The host's root filesystem (its device), not the container's overlay.
    let root_fs = report["filesystems"]
        .as_array()
        .expect("filesystems")
        .iter()
        .find(|f| f["mountpoint"] == "/")
        .unwrap_or_else(|| panic!("the host's / is reported: {}", report["filesystems"]));
    assert_eq!(root_fs["device_id"], root_device_id().as_str());
    assert_ne!(root_fs["fstype"], "overlay");
    let st = nix::sys::statvfs::statvfs("/").expect("statvfs /");
    assert_eq!(
        root_fs["size_bytes"].as_u64(),
        Some(st.blocks() as u64 * st.fragment_size() as u64)
    );
    // The host's interfaces: the test network's bridge exists only on the host, and every
    // interface of the host's init namespace is there (veth pairs may come and go).
    let reported: BTreeSet<String> = report["network"]
        .as_array()
        .expect("network")
        .iter()
        .filter_map(|i| i["device"].as_str().map(String::from))
        .collect();
    assert!(reported.contains(&bridge), "{bridge} in {reported:?}");
    let host: BTreeSet<String> =
        interfaces(&std::fs::read_to_string("/proc/1/net/dev").expect("the host's net/dev"))
            .into_iter()
            .filter(|i| !i.starts_with("veth"))
            .collect();
    let reported_stable: BTreeSet<String> = reported
        .iter()
        .filter(|i| !i.starts_with("veth"))
        .cloned()
        .collect();
    assert_eq!(reported_stable, host, "the host's interfaces");

    // -- Rotation under the mounted /var/log, by the agent inside its container.
    std::fs::create_dir_all(var_log.join("app")).expect("mkdir");
    let log = var_log.join("app/image-test.log");
    let body = "line one\nline two\n".repeat(100);
    std::fs::write(&log, &body).expect("write log");
    let out = engine.run(&[
        "exec",
        &agent_name,
        "caretaker-agent",
        "rotate",
        "--config",
        "/etc/caretaker/agent.yaml",
        "--force",
        "--output",
        "json",
    ]);
    assert!(!out.is_empty(), "rotate prints its result");
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "",
        "copytruncate leaves the live log empty"
    );
    let rotated = var_log.join("app/image-test.log.1.gz");
    let gz = Command::new("gzip")
        .arg("-dc")
        .arg(&rotated)
        .output()
        .expect("gzip runs");
    assert!(gz.status.success(), "{rotated:?}: {}", text(&gz));
    assert_eq!(String::from_utf8_lossy(&gz.stdout), body);
    assert!(
        state.join("logrotate.status").is_file(),
        "state kept under the mounted /var/lib/caretaker"
    );
}

#[test]
fn prune_images_finds_the_engine_by_docker_host_or_flag_and_a_dry_run_says_would_remove() {
    let Ok(sock) = std::env::var("CARETAKER_TEST_DOCKER_SOCK") else {
        return missing("CARETAKER_TEST_DOCKER_SOCK is not set (a running dockerd)");
    };
    if Command::new("docker").arg("--version").output().is_err() {
        return missing("the docker CLI is not installed");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut engine = Engine {
        host: format!("unix://{sock}"),
        suffix: format!("p{}", std::process::id()),
        containers: vec![],
        images: vec![],
        networks: vec![],
    };
    std::fs::write(tmp.path().join("f"), "x").expect("write");
    let image = engine.import(tmp.path(), "caretaker-test-prune");
    let agent = caretaker_tests::binary("caretaker-agent");
    let prune = |env: &[(&str, &str)], extra: &[&str]| -> Output {
        let mut c = Command::new(&agent);
        c.env_remove("DOCKER_HOST")
            .env_remove("CONTAINER_RUNTIME_ENDPOINT")
            .args(["prune-images", "--runtime", "docker", "--min-age", "0s"])
            .args(extra);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("caretaker-agent runs")
    };
    let decision_of = |out: &Output| -> Value {
        assert!(out.status.success(), "prune-images: {}", text(out));
        let outcomes: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(outcomes[0]["dry_run"], true, "no --apply: a dry run");
        outcomes[0]["decisions"]
            .as_array()
            .expect("decisions")
            .iter()
            .find(|d| d["image"] == image.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("{image} in {outcomes}"))
    };
    // $DOCKER_HOST, as the docker CLI reads it.
    let host = format!("unix://{sock}");
    let d = decision_of(&prune(&[("DOCKER_HOST", &host)], &["--output", "json"]));
    assert_eq!(d["reason"], "removed", "unused and old enough: {d}");
    // --docker-socket wins over $DOCKER_HOST.
    let d = decision_of(&prune(
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
        &["--docker-socket", &sock, "--output", "json"],
    ));
    assert_eq!(d["reason"], "removed");
    // The table of a dry run says "would remove", never "removed".
    let out = prune(&[], &["--docker-socket", &sock, "--output", "table"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.contains(image.as_str()))
        .unwrap_or_else(|| panic!("{image} in {table}"));
    assert!(row.contains("would remove"), "{row}");
    assert!(!row.contains(" removed "), "{row}");
    // Only unix sockets: a remote engine is a usage error naming the variable.
    let out = prune(&[("DOCKER_HOST", "tcp://127.0.0.1:2375")], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("$DOCKER_HOST=tcp://127.0.0.1:2375"));
    // Nothing was removed.
    engine.run(&["image", "inspect", &image]);
}
