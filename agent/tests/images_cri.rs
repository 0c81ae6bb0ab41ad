//! Image pruning against a real containerd through the CRI (started by
//! tests/services/containerd.sh, sandbox image `caretaker.test/pause:1`).
//!
//! The tests share one containerd, so they run one at a time and each starts empty.

// Each test is a current-thread runtime of its own; the guard that serialises them is
// meant to be held across its awaits.
#![allow(clippy::await_holding_lock)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use caretaker_agent::images::cri::{CriRuntime, pb};
use caretaker_agent::images::execute::apply;
use caretaker_agent::images::plan::{KeepList, Mode, Policy, plan};
use caretaker_agent::images::runtime::{ImageRuntime, UserKind};
use common::{TestImage, ctr_import, docker_save_tar};

use jiff::{SignedDuration, Timestamp};

static RUNTIME: Mutex<()> = Mutex::new(());

fn sock() -> Option<PathBuf> {
    common::service("CARETAKER_TEST_CONTAINERD_SOCK")
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    RUNTIME.lock().unwrap_or_else(|p| p.into_inner())
}

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

async fn connect(sock: &Path) -> CriRuntime {
    CriRuntime::connect(sock, Path::new("/"), Duration::from_secs(30))
        .await
        .expect("connect to the test containerd")
}

/// Removes every CRI sandbox (with its containers) and every image.
async fn reset(rt: &CriRuntime, sock: &Path) {
    let mut r = rt.runtime_client();
    let pods = r
        .list_pod_sandbox(pb::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    for p in pods {
        r.stop_pod_sandbox(pb::StopPodSandboxRequest {
            pod_sandbox_id: p.id.clone(),
        })
        .await
        .unwrap();
        r.remove_pod_sandbox(pb::RemovePodSandboxRequest {
            pod_sandbox_id: p.id,
        })
        .await
        .unwrap();
    }
    let names = common::run(common::ctr(sock).args(["images", "ls", "-q"]));
    let names: Vec<&str> = names.split_whitespace().collect();
    if !names.is_empty() {
        common::run(
            common::ctr(sock)
                .args(["images", "rm", "--sync"])
                .args(&names),
        );
    }
}

/// Imports the tarball and waits until the CRI lists every tag: containerd's CRI plugin
/// updates its image cache from events, a moment after `ctr images import` returns.
async fn import(rt: &CriRuntime, sock: &Path, images: &[TestImage]) -> Vec<String> {
    let (tar, ids) = docker_save_tar(images);
    ctr_import(sock, &tar);
    let want: Vec<String> = images
        .iter()
        .flat_map(|i| i.tags.iter())
        .map(|t| caretaker_agent::images::runtime::normalize_reference(t))
        .collect();
    for _ in 0..100 {
        let listed: Vec<String> = rt
            .list_images()
            .await
            .unwrap()
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .map(|t| caretaker_agent::images::runtime::normalize_reference(&t))
            .collect();
        if want.iter().all(|t| listed.contains(t)) {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("containerd's CRI did not list the imported tags {want:?} within 10 s");
}

fn sandbox_config(name: &str, logs: &Path) -> pb::PodSandboxConfig {
    pb::PodSandboxConfig {
        metadata: Some(pb::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "caretaker-test".into(),
            attempt: 0,
        }),
        // Host network shares the host's UTS namespace too: no hostname may be set.
        hostname: String::new(),
        log_directory: logs.display().to_string(),
        linux: Some(pb::LinuxPodSandboxConfig {
            cgroup_parent: String::new(),
            // Host network: no CNI is configured in the test containerd.
            security_context: Some(pb::LinuxSandboxSecurityContext {
                namespace_options: Some(pb::NamespaceOption {
                    network: pb::NamespaceMode::Node as i32,
                    pid: pb::NamespaceMode::Node as i32,
                    ipc: pb::NamespaceMode::Node as i32,
                    target_id: String::new(),
                }),
            }),
        }),
        ..Default::default()
    }
}

/// A pod sandbox with one container per `(name, image, state)`; state is `created`,
/// `running` or `exited`.
async fn pod(
    rt: &CriRuntime,
    name: &str,
    logs: &Path,
    containers: &[(&str, &str, &str)],
) -> String {
    let mut r = rt.runtime_client();
    let cfg = sandbox_config(name, logs);
    let sandbox = r
        .run_pod_sandbox(pb::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    for (cname, image, state) in containers {
        let c = r
            .create_container(pb::CreateContainerRequest {
                pod_sandbox_id: sandbox.clone(),
                config: Some(pb::ContainerConfig {
                    metadata: Some(pb::ContainerMetadata {
                        name: cname.to_string(),
                        attempt: 0,
                    }),
                    image: Some(pb::ImageSpec {
                        image: image.to_string(),
                        ..Default::default()
                    }),
                    command: vec!["/bin/busybox".into(), "sleep".into(), "3600".into()],
                    log_path: format!("{cname}.log"),
                    linux: Some(pb::LinuxContainerConfig {}),
                    ..Default::default()
                }),
                sandbox_config: Some(cfg.clone()),
            })
            .await
            .expect("CreateContainer")
            .into_inner()
            .container_id;
        if *state != "created" {
            r.start_container(pb::StartContainerRequest {
                container_id: c.clone(),
            })
            .await
            .expect("StartContainer");
        }
        if *state == "exited" {
            r.stop_container(pb::StopContainerRequest {
                container_id: c.clone(),
                timeout: 0,
            })
            .await
            .expect("StopContainer");
        }
    }
    sandbox
}

fn reasons(
    ids: &BTreeMap<&'static str, String>,
    decisions: &[caretaker_agent::images::plan::Decision],
) -> BTreeMap<&'static str, String> {
    decisions
        .iter()
        .map(|d| {
            (
                ids.iter()
                    .find(|(_, v)| **v == d.id)
                    .map_or("?", |(k, _)| *k),
                d.reason.to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn cri_prune_keeps_images_of_containers_in_every_state_and_the_sandbox_image() {
    let Some(sock) = sock() else { return };
    let _g = lock();
    let rt = connect(&sock).await;
    reset(&rt, &sock).await;
    let images = [
        TestImage::new(&["caretaker.test/pause:1"], ago(500), 100, "pause"),
        TestImage::new(&["ct/old:1"], ago(48), 1000, "old"),
        TestImage::new(&["ct/young:1"], ago(1), 2000, "young"),
        TestImage::new(&["ct/running:1"], ago(48), 3000, "running"),
        TestImage::new(&["ct/exited:1"], ago(48), 4000, "exited"),
        TestImage::new(&["ct/created:1"], ago(48), 5000, "created"),
        TestImage::new(&["ct/multi:1", "ct/multi:2"], ago(72), 6000, "multi"),
    ];
    let id_list = import(&rt, &sock, &images).await;
    let ids: BTreeMap<&'static str, String> = [
        "pause", "old", "young", "running", "exited", "created", "multi",
    ]
    .into_iter()
    .zip(id_list)
    .collect();
    let logs = tempfile::tempdir().unwrap();
    pod(
        &rt,
        "p1",
        logs.path(),
        &[
            ("r", "ct/running:1", "running"),
            ("e", "ct/exited:1", "exited"),
            ("c", "ct/created:1", "created"),
        ],
    )
    .await;

    let listed = rt.list_images().await.unwrap();
    let old = listed
        .iter()
        .find(|i| i.id == ids["old"])
        .expect("ct/old:1 listed");
    assert_eq!(old.repo_tags, ["docker.io/ct/old:1"]);
    // Creation time from the verbose image status, to the second as written.
    assert_eq!(
        old.created.unwrap().as_second(),
        images[1].created.parse::<Timestamp>().unwrap().as_second()
    );
    let users = rt.list_users().await.unwrap();
    let mut states: Vec<(UserKind, String)> =
        users.iter().map(|u| (u.kind, u.state.clone())).collect();
    states.sort_by(|a, b| a.1.cmp(&b.1));
    states.dedup();
    assert_eq!(
        states,
        [
            (UserKind::Container, "created".into()),
            (UserKind::Container, "exited".into()),
            (UserKind::Sandbox, "ready".into()),
            (UserKind::Container, "running".into())
        ]
    );

    let p = plan(
        &listed,
        &users,
        &policy(24),
        Mode::Prune { disk: None },
        Timestamp::now(),
        &HashMap::new(),
    );
    let dry = apply(&rt, p.clone(), true, &mut |_| {}).await;
    assert_eq!(
        rt.list_images().await.unwrap().len(),
        listed.len(),
        "a dry run removes nothing"
    );
    let o = apply(&rt, p, false, &mut |_| {}).await;
    let want: BTreeMap<&str, String> = [
        ("created", "kept:in-use"),
        ("exited", "kept:in-use"),
        ("multi", "removed"),
        ("old", "removed"),
        ("pause", "kept:in-use"),
        ("running", "kept:in-use"),
        ("young", "kept:young"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    assert_eq!(reasons(&ids, &dry.decisions), want);
    assert_eq!(reasons(&ids, &o.decisions), want);
    let mut left: Vec<String> = rt
        .list_images()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    left.sort();
    let mut want_left: Vec<String> = ["pause", "young", "running", "exited", "created"]
        .iter()
        .map(|l| ids[l].clone())
        .collect();
    want_left.sort();
    assert_eq!(left, want_left);
    assert!(o.reclaimed_bytes.is_some());
    reset(&rt, &sock).await;
}

#[tokio::test]
async fn cri_container_created_between_plan_and_removal_keeps_its_image() {
    let Some(sock) = sock() else { return };
    let _g = lock();
    let rt = connect(&sock).await;
    reset(&rt, &sock).await;
    let ids = import(
        &rt,
        &sock,
        &[
            TestImage::new(&["caretaker.test/pause:1"], ago(500), 100, "pause"),
            TestImage::new(&["ct/a:1"], ago(49), 100, "a"),
            TestImage::new(&["ct/b:1"], ago(48), 100, "b"),
        ],
    )
    .await;
    let mut pol = policy(24);
    pol.keep = KeepList::new(&["caretaker.test/pause*"]).unwrap();
    let p = plan(
        &rt.list_images().await.unwrap(),
        &rt.list_users().await.unwrap(),
        &pol,
        Mode::Prune { disk: None },
        Timestamp::now(),
        &HashMap::new(),
    );
    assert_eq!(p.removals().count(), 2, "{:#?}", p.decisions);
    let logs = tempfile::tempdir().unwrap();
    pod(&rt, "late", logs.path(), &[("c", "ct/b:1", "created")]).await;
    let o = apply(&rt, p, false, &mut |_| {}).await;
    let got: Vec<(String, String)> = o
        .decisions
        .iter()
        .map(|d| (d.image.clone(), d.reason.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            ("docker.io/ct/a:1".to_string(), "removed".to_string()),
            ("docker.io/ct/b:1".to_string(), "kept:in-use".to_string()),
            (
                "caretaker.test/pause:1".to_string(),
                "kept:keep-list".to_string()
            ),
        ]
    );
    let mut left: Vec<String> = rt
        .list_images()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    left.sort();
    let mut want = vec![ids[0].clone(), ids[2].clone()];
    want.sort();
    assert_eq!(left, want);
    reset(&rt, &sock).await;
}

#[tokio::test]
async fn cri_image_fs_reports_the_snapshotter_mount_and_its_usage() {
    let Some(sock) = sock() else { return };
    let _g = lock();
    let rt = connect(&sock).await;
    assert_eq!(rt.runtime_name, "containerd");
    let fs = rt.image_fs().await.unwrap();
    assert!(
        fs.mountpoint
            .ends_with("io.containerd.snapshotter.v1.overlayfs"),
        "{}",
        fs.mountpoint.display()
    );
    assert!(fs.disk.capacity_bytes > 0 && fs.disk.available_bytes <= fs.disk.capacity_bytes);
}
