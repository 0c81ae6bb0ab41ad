//! Benchmarks of image pruning (`cargo bench -p caretaker-agent --bench prune`).
//!
//! 1. Planning over 2,000 images and 5,000 containers on the fake runtime (goal ≤ 200 ms).
//! 2. With `CARETAKER_TEST_DOCKER_SOCK` set (tests/services/docker.sh): pruning 50 unused
//!    images with the agent vs `docker image prune -a -f` on the same set, wall time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use caretaker_agent::images::docker::DockerRuntime;
use caretaker_agent::images::execute::apply;
use caretaker_agent::images::plan::{KeepList, Mode, Policy, plan};
use caretaker_agent::images::runtime::{DiskUsage, Image, ImageRuntime, ImageUser, UserKind};
use jiff::{SignedDuration, Timestamp};

fn policy() -> Policy {
    Policy {
        min_age: Duration::from_secs(168 * 3600),
        keep: KeepList::new(&["registry.k8s.io/pause*", "k8s.gcr.io/pause*"]).unwrap(),
        keep_newest_per_repository: 2,
        high_threshold_percent: 85.0,
        low_threshold_percent: 80.0,
        pressure_min_age: Duration::from_secs(120),
    }
}

fn synthetic(n_images: usize, n_containers: usize) -> (Vec<Image>, Vec<ImageUser>) {
    let now = Timestamp::now();
    let images: Vec<Image> = (0..n_images)
        .map(|i| Image {
            id: format!("sha256:{i:064x}"),
            repo_tags: vec![format!(
                "registry.example.com/team{}/app{}:v{}",
                i % 20,
                i % 200,
                i
            )],
            repo_digests: vec![format!(
                "registry.example.com/team{}/app{}@sha256:{:064x}",
                i % 20,
                i % 200,
                i + 1_000_000
            )],
            created: Some(now - SignedDuration::from_hours((i % 500) as i64)),
            size_bytes: 50_000_000 + i as u64,
            shared_bytes: Some(10_000_000),
            layers: Vec::new(),
            pinned: i % 97 == 0,
        })
        .collect();
    let users: Vec<ImageUser> = (0..n_containers)
        .map(|c| {
            let i = (c * 7) % (n_images / 2);
            ImageUser {
                kind: UserKind::Container,
                id: format!("{c:064x}"),
                image_ref: if c % 2 == 0 {
                    format!("registry.example.com/team{}/app{}:v{}", i % 20, i % 200, i)
                } else {
                    format!("sha256:{i:064x}")
                },
                image_id: format!("sha256:{i:064x}"),
                state: "running".into(),
            }
        })
        .collect();
    (images, users)
}

fn bench_plan() {
    let (images, users) = synthetic(2000, 5000);
    let disk = DiskUsage {
        capacity_bytes: 100_000_000_000,
        available_bytes: 10_000_000_000,
    };
    let pol = policy();
    let mut times = Vec::new();
    let mut removed = 0;
    for _ in 0..21 {
        let t = Instant::now();
        let p = plan(
            &images,
            &users,
            &pol,
            Mode::Prune { disk: Some(disk) },
            Timestamp::now(),
            &HashMap::new(),
        );
        times.push(t.elapsed());
        removed = p.removals().count();
    }
    times.sort();
    println!(
        "plan 2000 images / 5000 containers: median {:.2} ms, min {:.2} ms, max {:.2} ms ({removed} removals planned)",
        times[10].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[20].as_secs_f64() * 1e3
    );
}

fn load_50(sock: &Path) {
    common::docker_reset(sock);
    let now = Timestamp::now();
    let set: Vec<common::TestImage> = (0..50)
        .map(|i| {
            common::TestImage::new(
                &[&format!("bench/app{i}:1")],
                now - SignedDuration::from_hours(48 + i),
                4096,
                &format!("bench{i}"),
            )
        })
        .collect();
    let (tar, _) = common::docker_save_tar(&set);
    common::docker_load(sock, &tar);
    assert_eq!(common::docker_image_ids(sock).len(), 50);
}

async fn bench_real(sock: &Path) {
    let rt = DockerRuntime::connect(sock, Path::new("/"), Duration::from_secs(60))
        .await
        .unwrap();
    let mut pol = policy();
    pol.min_age = Duration::from_secs(24 * 3600);
    pol.keep_newest_per_repository = 0;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..3 {
        load_50(sock);
        let t = Instant::now();
        let images = rt.list_images().await.unwrap();
        let users = rt.list_users().await.unwrap();
        let p = plan(
            &images,
            &users,
            &pol,
            Mode::Prune { disk: None },
            Timestamp::now(),
            &HashMap::new(),
        );
        let o = apply(&rt, p, false, &mut |_| {}).await;
        ours.push(t.elapsed());
        assert_eq!(o.removed, 50);
        assert!(common::docker_image_ids(sock).is_empty());

        load_50(sock);
        let t = Instant::now();
        common::run(common::docker(sock).args(["image", "prune", "-a", "-f"]));
        theirs.push(t.elapsed());
        assert!(common::docker_image_ids(sock).is_empty());
    }
    ours.sort();
    theirs.sort();
    println!(
        "prune 50 unused images, median of 3: caretaker {:.0} ms, docker image prune -a -f {:.0} ms, ratio {:.2}",
        ours[1].as_secs_f64() * 1e3,
        theirs[1].as_secs_f64() * 1e3,
        ours[1].as_secs_f64() / theirs[1].as_secs_f64()
    );
}

fn main() {
    bench_plan();
    match std::env::var_os("CARETAKER_TEST_DOCKER_SOCK") {
        Some(s) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(bench_real(Path::new(&s)));
        }
        None => println!("real-engine benchmark skipped: CARETAKER_TEST_DOCKER_SOCK is not set"),
    }
}
