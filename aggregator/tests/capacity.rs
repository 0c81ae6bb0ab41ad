//! Resource recommendations and capacity: the samples a round takes from real object JSON
//! (Nodes, Pods of a Deployment, `metrics.k8s.io` PodMetrics) from a dump and from the live
//! API (kube's `Client` over a `tower_test` mock), then ten days of samples through the
//! store into the report's `recommendations` and `capacity`, their checks and the Markdown
//! record.

use std::time::Duration;

use caretaker_aggregator::capacity::{self, CapacityConfig, NodePoint, RoundSamples};
use caretaker_aggregator::checks::{ChecksConfig, Severity};
use caretaker_aggregator::report::{self, CheckRound, MergeConfig, Output};
use caretaker_aggregator::round::{ClusterConfig, RoundConfig, Rounds, Source};
use caretaker_aggregator::store::Store;
use jiff::Timestamp;
use serde_json::{Value, json};

fn t0() -> Timestamp {
    "2026-11-20T00:00:00Z".parse().unwrap()
}

fn node() -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-a", "uid": "n1", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                   "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"}}})
}

fn pod(name: &str, cpu_request: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                     "creationTimestamp": "2026-11-01T00:00:00Z",
                     "labels": {"app": "web", "pod-template-hash": "7c9d8f6b5d"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": "web-7c9d8f6b5d", "uid": "rs1", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"nodeName": "node-a", "containers": [
            {"name": "web", "image": "nginx:1.27",
             "resources": {"requests": {"cpu": cpu_request, "memory": "256Mi"},
                           "limits": {"cpu": "4", "memory": "512Mi"}}},
            {"name": "metrics", "image": "exporter:1",
             "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}]},
        "status": {"phase": "Running"}})
}

fn pod_metrics(name: &str, web_cpu: &str, web_mem: &str) -> Value {
    json!({"kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {"name": name, "namespace": "shop", "creationTimestamp": "2026-11-20T00:00:00Z"},
        "timestamp": "2026-11-20T00:00:00Z", "window": "20.022s",
        "containers": [
            {"name": "web", "usage": {"cpu": web_cpu, "memory": web_mem}},
            {"name": "metrics", "usage": {"cpu": "180123456n", "memory": "30Mi"}}]})
}

fn objects() -> Vec<Value> {
    vec![
        node(),
        pod("web-7c9d8f6b5d-abcde", "2"),
        pod("web-7c9d8f6b5d-fghij", "2"),
        pod_metrics("web-7c9d8f6b5d-abcde", "120m", "180Mi"),
        pod_metrics("web-7c9d8f6b5d-fghij", "250m", "150Mi"),
    ]
}

/// What both sources must sample.
fn assert_samples(s: &RoundSamples) {
    let rows: Vec<String> = s
        .containers
        .iter()
        .map(|c| {
            format!(
                "{}/{}/{} cpu {}m mem {} request {:?}/{:?} limit {:?}/{:?}",
                c.namespace,
                c.workload,
                c.container,
                c.cpu_millicores,
                c.memory_bytes,
                c.request.cpu_millicores,
                c.request.memory_bytes,
                c.limit.cpu_millicores,
                c.limit.memory_bytes
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            "shop/Deployment/web/metrics cpu 180m mem 31457280 request Some(50)/Some(67108864) limit None/None",
            "shop/Deployment/web/web cpu 250m mem 188743680 request Some(2000)/Some(268435456) limit Some(4000)/Some(536870912)",
        ],
        "per Deployment container, the largest of its pods"
    );
    let n = &s.nodes["node-a"];
    assert_eq!(
        (
            n.allocatable_cpu_millicores,
            n.requested_cpu_millicores,
            n.allocatable_memory_bytes,
            n.requested_memory_bytes,
            n.allocatable_pods,
            n.pods
        ),
        (4000, 4100, 16 << 30, 640 << 20, 110, 2)
    );
}

#[tokio::test]
async fn a_dump_round_samples_usage_per_workload_container_and_node_requests() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cluster.json"),
        json!({"apiVersion": "v1", "kind": "List", "items": objects()}).to_string(),
    )
    .unwrap();
    let cfg = RoundConfig {
        cluster: ClusterConfig {
            source: Source::Dump,
            dump_paths: vec![dir.path().into()],
            ..ClusterConfig::default()
        },
        ..RoundConfig::default()
    };
    let round = Rounds::new(cfg).run(&[], t0()).await;
    assert_samples(round.planning.samples.as_ref().unwrap());
}

type Handle =
    tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>;

#[tokio::test]
async fn live_objects_give_the_same_samples() {
    let (mock, mut handle): (_, Handle) = tower_test::mock::pair();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let path = req.uri().path().to_string();
            let all = objects();
            let (kind, api, items) = match path.as_str() {
                "/api/v1/nodes" => ("NodeList", "v1", vec![all[0].clone()]),
                "/api/v1/pods" => ("PodList", "v1", all[1..3].to_vec()),
                "/apis/metrics.k8s.io/v1beta1/pods" => (
                    "PodMetricsList",
                    "metrics.k8s.io/v1beta1",
                    all[3..].to_vec(),
                ),
                _ => ("List", "v1", vec![]),
            };
            seen.push(path);
            let body = json!({"kind": kind, "apiVersion": api,
                              "metadata": {"resourceVersion": "1"}, "items": items});
            send.send_response(
                http::Response::builder()
                    .status(200)
                    .body(kube::client::Body::from(body.to_string().into_bytes()))
                    .unwrap(),
            );
        }
        seen
    });
    let client = kube::Client::new(mock, "default");
    let cfg = RoundConfig {
        cluster: ClusterConfig {
            source: Source::Live,
            ..ClusterConfig::default()
        },
        checks: ChecksConfig::default(),
        ..RoundConfig::default()
    };
    let mut rounds = Rounds::with_client(cfg, client.clone());
    let round = rounds.run(&[], t0()).await;
    drop(rounds);
    drop(client);
    let seen = server.await.unwrap();
    assert!(
        seen.contains(&"/apis/metrics.k8s.io/v1beta1/pods".to_string()),
        "{seen:#?}"
    );
    assert_samples(round.planning.samples.as_ref().unwrap());
}

/// Ten days, three samples a day: the web container's CPU climbs 10m a sample, its
/// memory peaks 100 Mi + 10 Mi a day; the node's CPU requests grow 100m a day.
fn ten_days(store: &Store, cfg: &CapacityConfig) -> CheckRound {
    let mut last = CheckRound::default();
    for day in 0..10u32 {
        for (i, hour) in [0u64, 8, 16].into_iter().enumerate() {
            let k = day * 3 + i as u32; // 0..30
            let at = t0() + Duration::from_secs(u64::from(day) * 86_400 + hour * 3600);
            let mut s = RoundSamples::default();
            let mib = |m: u32| u64::from(m) << 20;
            let mut web = capacity::ContainerSample {
                namespace: "shop".into(),
                workload: "Deployment/web".into(),
                container: "web".into(),
                cpu_millicores: u64::from(10 * (k + 1)),
                memory_bytes: mib(90 + 10 * day + if i == 1 { 10 } else { 0 }),
                request: capacity::Req {
                    cpu_millicores: Some(2000),
                    memory_bytes: Some(mib(256)),
                },
                limit: capacity::Req {
                    cpu_millicores: Some(4000),
                    memory_bytes: Some(mib(512)),
                },
            };
            s.containers.push(web.clone());
            web.container = "worker".into();
            web.cpu_millicores = 400;
            web.request.cpu_millicores = Some(100);
            web.limit = capacity::Req::default();
            s.containers.push(web);
            s.nodes.insert(
                "node-a".into(),
                NodePoint {
                    at,
                    allocatable_cpu_millicores: 4000,
                    requested_cpu_millicores: 1000 + 100 * u64::from(day),
                    allocatable_memory_bytes: 16 << 30,
                    requested_memory_bytes: 4 << 30,
                    allocatable_pods: 110,
                    pods: 20,
                },
            );
            let mut round = CheckRound {
                at: Some(at),
                ..CheckRound::default()
            };
            round.planning.samples = Some(s);
            capacity::review(store, cfg, &mut round, at).unwrap();
            last = round;
        }
    }
    last
}

#[test]
fn ten_days_of_samples_give_vpa_recommendations_and_the_day_capacity_runs_out() {
    let store = Store::in_memory().unwrap();
    // Ten days of samples kept (VPA's default keeps eight).
    let cfg = CapacityConfig {
        window: caretaker_core::config::BoundedDuration::secs(10 * 86_400),
        ..CapacityConfig::default()
    };
    let round = ten_days(&store, &cfg);
    let now = round.at.unwrap();
    assert_eq!(now, "2026-11-29T16:00:00Z".parse::<Timestamp>().unwrap());

    let rec = round.planning.recommendations.as_ref().unwrap();
    assert_eq!((rec.containers.len(), rec.waiting_for_samples), (2, 0));
    let web = rec
        .containers
        .iter()
        .find(|c| c.container == "web")
        .unwrap();
    assert_eq!(web.samples, 30);
    // CPU: p90 of 10..300 by nearest rank is the 27th value, 270m; + 15 % = 311m (up).
    assert_eq!(web.cpu_millicores.usage_percentile, 270.0);
    assert_eq!(web.cpu_millicores.recommended_request, 311);
    assert_eq!(
        web.cpu_millicores.recommended_limit,
        Some(622),
        "limit:request 2:1 kept"
    );
    // Memory: daily peaks 100..190 Mi, p90 = 180 Mi, + 15 % = 207 Mi, below VPA's 250 Mi floor.
    assert_eq!(web.memory_bytes.usage_percentile, f64::from(180u32 << 20));
    assert_eq!(web.memory_bytes.recommended_request, 250 << 20);
    assert_eq!(
        web.verdict.as_deref(),
        Some("over"),
        "2000m requested, 311m recommended"
    );
    let worker = rec
        .containers
        .iter()
        .find(|c| c.container == "worker")
        .unwrap();
    assert_eq!(worker.cpu_millicores.recommended_request, 460);
    assert_eq!(worker.verdict.as_deref(), Some("under"));

    let cap = round.planning.capacity.as_ref().unwrap();
    let cpu = cap.nodes[0].cpu_millicores;
    assert_eq!(
        (cap.nodes[0].points, cpu.requested, cpu.allocatable),
        (10, 1900, 4000)
    );
    assert!((cpu.requested_slope_per_day.unwrap() - 100.0).abs() < 1e-6);
    assert!((cpu.days_until_full.unwrap() - 21.0).abs() < 1e-6);
    assert_eq!(cpu.full_on, Some("2026-12-20".parse().unwrap()));
    assert_eq!(
        cap.cluster.cpu_millicores, cpu,
        "one node: the cluster is the node"
    );
    assert_eq!(cap.nodes[0].pods.days_until_full, None, "flat");

    let by_check = |name: &str| {
        round
            .checks
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .findings
            .iter()
            .map(|f| (f.code.clone(), f.severity, f.object.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        by_check("recommendations"),
        vec![
            (
                "requests_below_use".into(),
                Severity::Warning,
                "Deployment/shop/web".into()
            ),
            (
                "requests_far_above_use".into(),
                Severity::Info,
                "Deployment/shop/web".into()
            ),
        ]
    );
    let caps = by_check("capacity");
    assert_eq!(
        caps,
        vec![
            (
                "capacity_runs_out".into(),
                Severity::Warning,
                "Cluster/cluster".into()
            ),
            (
                "capacity_runs_out".into(),
                Severity::Warning,
                "Node/node-a".into()
            ),
        ]
    );
    let msg = &round
        .checks
        .iter()
        .find(|c| c.name == "capacity")
        .unwrap()
        .findings[1]
        .message;
    assert_eq!(
        msg,
        "CPU requests 1900m of 4000m allocatable, +100.0m a day over 10 days: full in 21 days on 2026-12-20 (horizon 90 days)"
    );

    // A shorter horizon: not within it, no finding.
    let store2 = Store::in_memory().unwrap();
    let short = CapacityConfig {
        horizon_days: 14,
        ..cfg.clone()
    };
    let r2 = ten_days(&store2, &short);
    assert!(
        r2.checks
            .iter()
            .find(|c| c.name == "capacity")
            .unwrap()
            .findings
            .is_empty()
    );

    // The report: top-level fields and the Markdown sections.
    let merged = report::merge(&[], &round, &MergeConfig::default(), now);
    let json = serde_json::to_value(&merged).unwrap();
    assert_eq!(
        json["capacity"]["nodes"][0]["cpu_millicores"]["full_on"],
        "2026-12-20"
    );
    assert_eq!(json["recommendations"]["rule"]["margin_fraction"], 0.15);
    assert_eq!(
        json["recommendations"]["containers"][0]["cpu_millicores"]["recommended_request"],
        311
    );
    let md = report::render(&merged, Output::Markdown).unwrap();
    assert!(
        md.contains("| shop/Deployment/web | web | 30 | 270m | 2000m | 311m | 180Mi | 256Mi | 250Mi | over |\n"),
        "{md}"
    );
    assert!(
        md.contains("| node-a | 1900m of 4000m (48 %), full 2026-12-20 | 4.0Gi of 16.0Gi (25 %), not within 90 days | 20 of 110 (18 %), not within 90 days | 10 |\n"),
        "{md}"
    );

    // Samples survive in the store and stay bounded by the window.
    let usage: capacity::UsageHistory = store.get_meta(capacity::USAGE_KEY).unwrap().unwrap();
    assert_eq!(
        usage.containers["shop/Deployment/web/web"].samples.len(),
        30
    );
    let mut later = CheckRound::default();
    later.planning.samples = Some(RoundSamples::default());
    capacity::review(
        &store,
        &cfg,
        &mut later,
        now + Duration::from_secs(9 * 86_400),
    )
    .unwrap();
    let usage: capacity::UsageHistory = store.get_meta(capacity::USAGE_KEY).unwrap().unwrap();
    assert_eq!(
        usage.containers["shop/Deployment/web/web"].samples.len(),
        4,
        "10 days back from day 18 16:00 keeps day 8 16:00 and day 9's three"
    );
}

#[test]
fn too_few_samples_wait_and_rounds_within_the_sample_interval_add_none() {
    let store = Store::in_memory().unwrap();
    let cfg = CapacityConfig::default();
    let s = RoundSamples {
        containers: vec![capacity::ContainerSample {
            namespace: "a".into(),
            workload: "Pod/p".into(),
            container: "c".into(),
            cpu_millicores: 5,
            memory_bytes: 1,
            request: Default::default(),
            limit: Default::default(),
        }],
        nodes: Default::default(),
    };
    for minutes in [0u64, 10, 20, 70] {
        let mut r = CheckRound::default();
        r.planning.samples = Some(s.clone());
        capacity::review(
            &store,
            &cfg,
            &mut r,
            t0() + Duration::from_secs(minutes * 60),
        )
        .unwrap();
        let rec = r.planning.recommendations.unwrap();
        assert_eq!((rec.containers.len(), rec.waiting_for_samples), (0, 1));
        assert!(r.planning.capacity.is_none(), "no nodes listed");
    }
    let usage: capacity::UsageHistory = store.get_meta(capacity::USAGE_KEY).unwrap().unwrap();
    assert_eq!(
        usage.containers["a/Pod/p/c"].samples.len(),
        2,
        "0 and 70 minutes"
    );
}
