//! Image pruning against a real Docker engine (started by tests/services/docker.sh).
//!
//! The tests share one engine, so they run one at a time and each starts from an empty
//! engine.

// Each test is a current-thread runtime of its own; the guard that serialises them is
// meant to be held across its awaits.
#![allow(clippy::await_holding_lock)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use caretaker_agent::images::docker::DockerRuntime;
use caretaker_agent::images::execute::apply;
use caretaker_agent::images::plan::{KeepList, Mode, Policy, plan};
use caretaker_agent::images::runtime::{
    Image, ImageFs, ImageRuntime, ImageUser, RemoveError, Result,
};
use common::{
    TestImage, docker, docker_image_ids, docker_load, docker_reset, docker_save_tar, run,
};
use jiff::{SignedDuration, Timestamp};

static ENGINE: Mutex<()> = Mutex::new(());

fn policy(min_age_hours: u64) -> Policy {
    Policy {
        min_age: Duration::from_secs(min_age_hours * 3600),
        keep: KeepList::new::<&str>(&[]).unwrap(),
        keep_newest_per_repository: 0,
        high_threshold_percent: 100.0,
        low_threshold_percent: 99.0,
        pressure_min_age: Duration::from_secs(120),
    }
}

fn ago(hours: i64) -> Timestamp {
    Timestamp::now() - SignedDuration::from_hours(hours)
}

/// The fixture: images of chosen ages and containers in every state. Returns label → ID.
fn fixture(sock: &Path) -> BTreeMap<&'static str, String> {
    let images = [
        TestImage::new(&["ct/old:1"], ago(48), 1000, "old"),
        TestImage::new(&[], ago(72), 2000, "dangling"),
        TestImage::new(&["ct/multi:1", "ct/multi:2"], ago(48), 3000, "multi"),
        TestImage::new(&["ct/young:1"], ago(1), 4000, "young"),
        TestImage::new(&["ct/running:1"], ago(48), 5000, "running"),
        TestImage::new(&["ct/stopped:1"], ago(48), 6000, "stopped"),
        TestImage::new(&["ct/created:1"], ago(48), 7000, "created"),
        TestImage::new(&[], ago(48), 8000, "by-id"),
    ];
    let (tar, ids) = docker_save_tar(&images);
    docker_load(sock, &tar);
    let by_label: BTreeMap<&'static str, String> = [
        "old", "dangling", "multi", "young", "running", "stopped", "created", "by-id",
    ]
    .into_iter()
    .zip(ids)
    .collect();
    run(docker(sock).args(["run", "-d", "--name", "running", "ct/running:1"]));
    run(docker(sock).args(["run", "-d", "--name", "stopped", "ct/stopped:1"]));
    run(docker(sock).args(["stop", "-t", "0", "stopped"]));
    run(docker(sock).args(["create", "--name", "created", "ct/created:1"]));
    // A container created from a short image ID, as `docker run 0123abcd…` allows.
    let short = &by_label["by-id"]["sha256:".len().."sha256:".len() + 12];
    run(docker(sock).args(["create", "--name", "by-id", short]));
    by_label
}

async fn connect(sock: &Path) -> DockerRuntime {
    DockerRuntime::connect(sock, Path::new("/"), Duration::from_secs(30))
        .await
        .expect("connect to the test dockerd")
}

fn label_of(ids: &BTreeMap<&'static str, String>, id: &str) -> &'static str {
    ids.iter()
        .find(|(_, v)| v.as_str() == id)
        .map_or("?", |(k, _)| k)
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ENGINE.lock().unwrap_or_else(|p| p.into_inner())
}

fn sock() -> Option<PathBuf> {
    common::service("CARETAKER_TEST_DOCKER_SOCK")
}

#[tokio::test]
async fn dry_run_plan_for_24h_equals_what_docker_image_prune_until_24h_removes() {
    let Some(sock) = sock() else { return };
    let _g = lock();
    docker_reset(&sock);
    let ids = fixture(&sock);
    let rt = connect(&sock).await;
    let images = rt.list_images().await.unwrap();
    let users = rt.list_users().await.unwrap();
    let p = plan(
        &images,
        &users,
        &policy(24),
        Mode::Prune { disk: None },
        Timestamp::now(),
        &HashMap::new(),
    );
    let mut planned: Vec<&str> = p.removals().map(|d| label_of(&ids, &d.id)).collect();
    planned.sort();
    assert_eq!(planned, ["dangling", "multi", "old"]);
    // The dry run touched nothing.
    let o = apply(&rt, p, true, &mut |_| {}).await;
    assert_eq!(o.removed, 3);
    let before = docker_image_ids(&sock);
    assert_eq!(before.len(), 8);

    run(docker(&sock).args(["image", "prune", "-a", "-f", "--filter", "until=24h"]));
    let after = docker_image_ids(&sock);
    let mut pruned: Vec<&str> = before
        .iter()
        .filter(|i| !after.contains(i))
        .map(|i| label_of(&ids, i))
        .collect();
    pruned.sort();
    assert_eq!(pruned, planned);
}

/// The engine's `LayersSize` (`GET /system/df`): every stored layer counted once, the
/// figure `docker system df` shows as the images' size, in bytes.
fn layers_size(sock: &Path) -> u64 {
    let out = run(std::process::Command::new("curl")
        .args(["-fsS", "--unix-socket"])
        .arg(sock)
        .arg("http://localhost/system/df"));
    let v: serde_json::Value = serde_json::from_str(&out).expect("/system/df JSON");
    v["LayersSize"].as_u64().expect("LayersSize")
}

#[tokio::test]
async fn the_dry_runs_reclaimable_bytes_are_what_docker_image_prune_frees() {
    let Some(sock) = sock() else { return };
    let _g = lock();
    docker_reset(&sock);
    // Every image sits on one busybox layer, which `kept` (used by a container) holds. `a`
    // and `b` share a 2 MB layer that goes when both go; `c` shares one with `young`,
    // which is too young to go, so it stays.
    let images = [
        TestImage::new(&["ct/kept:1"], ago(48), 300_000, "kept"),
        TestImage::new(&["ct/a:1"], ago(48), 100_000, "a").on("a+b", 2_000_000),
        TestImage::new(&["ct/b:1"], ago(48), 200_000, "b").on("a+b", 2_000_000),
        TestImage::new(&["ct/c:1"], ago(48), 400_000, "c").on("c+young", 700_000),
        TestImage::new(&["ct/young:1"], ago(1), 50_000, "young").on("c+young", 700_000),
    ];
    let (tar, ids) = docker_save_tar(&images);
    docker_load(&sock, &tar);
    let labels: BTreeMap<&'static str, String> = ["kept", "a", "b", "c", "young"]
        .into_iter()
        .zip(ids)
        .collect();
    run(docker(&sock).args(["create", "--name", "kept", "ct/kept:1"]));

    let rt = connect(&sock).await;
    let listed = rt.list_images().await.unwrap();
    assert!(
        listed.iter().all(|i| !i.layers.is_empty()),
        "every image's layers are known: {listed:?}"
    );
    let users = rt.list_users().await.unwrap();
    let p = plan(
        &listed,
        &users,
        &policy(24),
        Mode::Prune { disk: None },
        Timestamp::now(),
        &HashMap::new(),
    );
    let mut planned: Vec<&str> = p.removals().map(|d| label_of(&labels, &d.id)).collect();
    planned.sort();
    assert_eq!(planned, ["a", "b", "c"]);
    let promised = p.reclaimable_bytes();
    // Image by image (size minus SharedSize, which Docker 20.10 leaves unknown), the
    // shared layers were counted in every image: the overstatement of issue 13.
    let per_image: u64 = p.removals().map(|d| d.source.exclusive_bytes()).sum();

    let before = layers_size(&sock);
    run(docker(&sock).args(["image", "prune", "-a", "-f", "--filter", "until=24h"]));
    let freed = before - layers_size(&sock);
    assert_eq!(
        promised, freed,
        "caretaker's dry run promised {promised} bytes, `docker image prune` freed {freed}"
    );
    assert!(
        per_image > freed + 2_000_000,
        "per image {per_image}, freed {freed}"
    );
    // The own layers and the a+b layer, each once (file contents; tar headers are not stored).
    assert_eq!(freed, 100_000 + 200_000 + 2_000_000 + 400_000);
}

#[tokio::test]
async fn apply_removes_only_old_unused_images_and_gives_every_image_its_reason() {
    let Some(sock) = sock() else { return };
    let _g = lock();
    docker_reset(&sock);
    let ids = fixture(&sock);
    let rt = connect(&sock).await;
    let images = rt.list_images().await.unwrap();
    let users = rt.list_users().await.unwrap();
    let sizes: HashMap<String, u64> = images
        .iter()
        .map(|i| (i.id.clone(), i.size_bytes))
        .collect();
    let p = plan(
        &images,
        &users,
        &policy(24),
        Mode::Prune { disk: None },
        Timestamp::now(),
        &HashMap::new(),
    );
    let o = apply(&rt, p, false, &mut |_| {}).await;
    let got: BTreeMap<&str, String> = o
        .decisions
        .iter()
        .map(|d| (label_of(&ids, &d.id), d.reason.to_string()))
        .collect();
    let want: BTreeMap<&str, String> = [
        ("by-id", "kept:in-use"),
        ("created", "kept:in-use"),
        ("dangling", "removed"),
        ("multi", "removed"),
        ("old", "removed"),
        ("running", "kept:in-use"),
        ("stopped", "kept:in-use"),
        ("young", "kept:young"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    assert_eq!(got, want);
    let mut left: Vec<&str> = docker_image_ids(&sock)
        .iter()
        .map(|i| label_of(&ids, i))
        .collect();
    left.sort();
    assert_eq!(left, ["by-id", "created", "running", "stopped", "young"]);
    // Only the removed images' own layers (1000 + 2000 + 3000 bytes): the busybox layer
    // under them stays with the images in use. Docker 20.10 (API 1.41) reports no shared
    // sizes, so image by image the estimate was their whole sizes, busybox three times.
    assert_eq!(o.estimated_bytes, 6000);
    assert!(
        ["old", "dangling", "multi"]
            .iter()
            .all(|l| sizes[&ids[l]] > 6000)
    );
    assert!(o.reclaimed_bytes.is_some());
    // States as Docker names them.
    let states: BTreeMap<String, String> = users
        .iter()
        .map(|u| (u.id.clone(), u.state.clone()))
        .collect();
    let mut s: Vec<&str> = states.values().map(String::as_str).collect();
    s.sort();
    assert_eq!(s, ["created", "created", "exited", "running"]);
}

#[tokio::test]
async fn a_container_created_between_plan_and_removal_keeps_its_image() {
    let Some(sock) = sock() else { return };
    let _g = lock();
    docker_reset(&sock);
    let (tar, ids) = docker_save_tar(&[
        TestImage::new(&["ct/a:1"], ago(49), 100, "a"),
        TestImage::new(&["ct/b:1"], ago(48), 100, "b"),
    ]);
    docker_load(&sock, &tar);
    let rt = connect(&sock).await;
    let p = plan(
        &rt.list_images().await.unwrap(),
        &rt.list_users().await.unwrap(),
        &policy(24),
        Mode::Prune { disk: None },
        Timestamp::now(),
        &HashMap::new(),
    );
    assert_eq!(p.removals().count(), 2);
    run(docker(&sock).args(["create", "--name", "late", "ct/b:1"]));
    let o = apply(&rt, p, false, &mut |_| {}).await;
    let got: Vec<(String, String)> = o
        .decisions
        .iter()
        .map(|d| (d.image.clone(), d.reason.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            ("ct/a:1".to_string(), "removed".to_string()),
            ("ct/b:1".to_string(), "kept:in-use".to_string())
        ]
    );
    assert_eq!(docker_image_ids(&sock), [ids[1].clone()]);
}

/// A runtime whose re-check sees the users as they were when planning: the removal then
/// reaches Docker, which must refuse, and the refusal must count as kept, not failed.
struct StaleUsers<'a> {
    inner: &'a DockerRuntime,
    users: Vec<ImageUser>,
}

impl ImageRuntime for StaleUsers<'_> {
    fn name(&self) -> &'static str {
        "docker"
    }
    async fn list_images(&self) -> Result<Vec<Image>> {
        self.inner.list_images().await
    }
    async fn list_users(&self) -> Result<Vec<ImageUser>> {
        Ok(self.users.clone())
    }
    async fn image_fs(&self) -> Result<ImageFs> {
        self.inner.image_fs().await
    }
    async fn remove_image(&self, image: &Image) -> Result<(), RemoveError> {
        self.inner.remove_image(image).await
    }
}

#[tokio::test]
async fn docker_refusing_an_image_in_use_counts_as_kept_not_failed() {
    let Some(sock) = sock() else { return };
    let _g = lock();
    docker_reset(&sock);
    let (tar, ids) = docker_save_tar(&[
        TestImage::new(&["ct/a:1"], ago(48), 100, "a"),
        TestImage::new(&[], ago(48), 100, "b"),
    ]);
    docker_load(&sock, &tar);
    let real = connect(&sock).await;
    let rt = StaleUsers {
        inner: &real,
        users: vec![],
    };
    let p = plan(
        &rt.list_images().await.unwrap(),
        &[],
        &policy(24),
        Mode::Prune { disk: None },
        Timestamp::now(),
        &HashMap::new(),
    );
    run(docker(&sock).args(["create", "--name", "late-a", "ct/a:1"]));
    run(docker(&sock).args(["create", "--name", "late-b", &ids[1]]));
    let o = apply(&rt, p, false, &mut |_| {}).await;
    let reasons: Vec<String> = o.decisions.iter().map(|d| d.reason.to_string()).collect();
    assert_eq!(reasons, ["kept:in-use", "kept:in-use"]);
    assert!(
        o.decisions
            .iter()
            .all(|d| d.detail.starts_with("the runtime refused: conflict")),
        "{:?}",
        o.decisions
    );
    let mut want = ids.clone();
    want.sort();
    assert_eq!(docker_image_ids(&sock), want);
}

#[test]
fn prune_images_cli_is_a_dry_run_unless_apply_and_prints_json_reasons() {
    let Some(sock) = sock() else { return };
    let _g = lock();
    docker_reset(&sock);
    let (tar, ids) = docker_save_tar(&[
        TestImage::new(&["ct/old:1"], ago(48), 100, "old"),
        TestImage::new(&["registry.k8s.io/pause:3.9"], ago(480), 100, "pause"),
        TestImage::new(&["ct/young:1"], ago(2), 100, "young"),
    ]);
    docker_load(&sock, &tar);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.yaml");
    // Thresholds out of reach: the host disk's own usage must not add pressure removals.
    std::fs::write(
        &cfg,
        format!("images:\n  docker_socket: {}\n  high_threshold_percent: 100\n  low_threshold_percent: 99\n", sock.display()),
    )
    .unwrap();
    let cli = |extra: &[&str]| {
        let out = run(
            std::process::Command::new(env!("CARGO_BIN_EXE_caretaker-agent"))
                .args([
                    "prune-images",
                    "--runtime",
                    "docker",
                    "--min-age",
                    "24h",
                    "--output",
                    "json",
                    "--config",
                ])
                .arg(&cfg)
                .args(extra),
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let decisions: Vec<(String, String)> = v[0]["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["image"].as_str().unwrap().to_string(),
                    d["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (v[0]["dry_run"].as_bool().unwrap(), decisions)
    };
    let want = vec![
        ("ct/old:1".to_string(), "removed".to_string()),
        ("ct/young:1".to_string(), "kept:young".to_string()),
        (
            "registry.k8s.io/pause:3.9".to_string(),
            "kept:keep-list".to_string(),
        ),
    ];
    assert_eq!(cli(&[]), (true, want.clone()));
    assert_eq!(docker_image_ids(&sock).len(), 3);
    assert_eq!(cli(&["--apply"]), (false, want));
    let mut left = vec![ids[1].clone(), ids[2].clone()];
    left.sort();
    assert_eq!(docker_image_ids(&sock), left);
}

#[tokio::test]
async fn the_daemon_image_task_reports_the_engines_images_in_a_dry_run() {
    use std::sync::Arc;

    use caretaker_agent::collector::{BufferStats, Collector, CollectorSettings};
    use caretaker_agent::config::ImagesConfig;
    use caretaker_agent::images::daemon::{RuntimeAccess, run_on_runtimes};
    use caretaker_agent::images::select::RuntimeChoice;
    use caretaker_agent::paths::HostPaths;
    use caretaker_agent::stats::filesystems::FilesystemFilter;
    use caretaker_core::model::PruneTrigger;
    use tokio::sync::watch;
    use tokio_util::sync::CancellationToken;

    let Some(sock) = sock() else { return };
    let _g = lock();
    docker_reset(&sock);
    fixture(&sock);

    // The daemon's defaults but for the socket, a 24h age rule and thresholds this
    // machine's disk cannot reach (so the prune is the scheduled one); `apply` stays false.
    let cfg = ImagesConfig {
        runtime: RuntimeChoice::Docker,
        docker_socket: sock.clone(),
        min_age: caretaker_core::config::BoundedDuration::secs(24 * 3600),
        high_threshold_percent: caretaker_core::config::Percent::of(100),
        low_threshold_percent: caretaker_core::config::Percent::of(99),
        // The first check comes within a random fraction of this.
        pressure_check_interval: caretaker_core::config::BoundedDuration::secs(5),
        ..ImagesConfig::default()
    };
    let task = cfg
        .task_settings()
        .unwrap()
        .expect("the image task is on by default");
    assert!(!task.apply, "the daemon must default to a dry run");
    let (tx, mut rx) = watch::channel(None);
    let stop = CancellationToken::new();
    let handle = tokio::spawn(run_on_runtimes(
        task,
        RuntimeAccess::new(&cfg, Path::new("/")),
        tx,
        stop.clone(),
    ));
    tokio::time::timeout(Duration::from_secs(60), rx.changed())
        .await
        .expect("one image check within 60 s")
        .unwrap();
    stop.cancel();
    handle.await.unwrap();

    // The node report carries the summary.
    let settings = CollectorSettings {
        node_name: "docker-node".into(),
        report_interval: Duration::from_secs(10),
        paths: HostPaths::default(),
        filter: FilesystemFilter::default(),
        statvfs_timeout: Duration::from_secs(5),
        kubelet_root: None,
    };
    let report = Collector::new(settings, Arc::new(BufferStats::default()))
        .with_images(rx)
        .collect()
        .await;
    let images = report.images.expect("the report has the image summary");
    assert!(images.dry_run);
    assert!(images.errors.is_empty(), "{:?}", images.errors);
    assert_eq!(images.runtimes.len(), 1);
    let r = &images.runtimes[0];

    // What the engine itself says, through the docker CLI.
    let all = docker_image_ids(&sock);
    let containers: Vec<String> = run(docker(&sock).args(["ps", "-aq", "--no-trunc"]))
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let used: std::collections::BTreeSet<String> = run(docker(&sock)
        .args(["inspect", "--format", "{{.Image}}"])
        .args(&containers))
    .split_whitespace()
    .map(str::to_string)
    .collect();
    let unused: Vec<&String> = all.iter().filter(|i| !used.contains(*i)).collect();
    let size = |id: &str| -> u64 {
        run(docker(&sock).args(["image", "inspect", "--format", "{{.Size}}", id]))
            .trim()
            .parse()
            .unwrap()
    };
    let root_dir = run(docker(&sock).args(["info", "--format", "{{.DockerRootDir}}"]));

    assert_eq!(r.runtime, "docker");
    assert_eq!(
        (r.images_total, r.images_unused),
        (all.len() as u64, unused.len() as u64)
    );
    assert_eq!(
        (r.images_total, r.images_unused),
        (8, 4),
        "the fixture: 8 images, 4 used by containers"
    );
    // The unused images' own layers (old, dangling, multi, young), each once; the busybox
    // layer under them stays with the images in use. Image by image (Docker 20.10 reports
    // no shared sizes) the figure was their whole sizes.
    assert_eq!(r.reclaimable_bytes, 1000 + 2000 + 3000 + 4000);
    assert!(unused.iter().map(|i| size(i)).sum::<u64>() > r.reclaimable_bytes + 3 * 1_000_000);
    assert_eq!(r.image_fs_mountpoint, root_dir.trim());
    assert!(
        r.image_fs_used_percent
            .is_some_and(|p| (0.0..=100.0).contains(&p)),
        "{r:?}"
    );
    let p = r
        .last_prune
        .as_ref()
        .expect("the first check runs the scheduled prune");
    assert_eq!(
        (p.trigger, p.dry_run, p.failed),
        (PruneTrigger::Schedule, true, 0)
    );
    // As the dry-run plan for 24h: old, dangling and multi would go; the rest is kept.
    assert_eq!(
        (p.removed, p.kept.in_use, p.kept.young, p.kept.keep_list),
        (3, 4, 1, 0)
    );
    // The removed images' own layers; the busybox layer stays with the images in use.
    assert_eq!(p.removed_bytes, 1000 + 2000 + 3000);
    assert_eq!((r.removed_total, r.removed_bytes_total), (0, 0));
    // A dry run: every image is still there.
    assert_eq!(docker_image_ids(&sock), all);
    assert_eq!(all.len(), 8);
}
