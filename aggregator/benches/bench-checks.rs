//! Benchmark of the cluster checks on a large dump (issue 5: 150,000 pods, 5,000 nodes,
//! 50,000 events, 20,000 ConfigMaps; goal ≤ 2 s and ≤ 1 GiB peak RSS), with what the
//! workload checks read (issue 12): 1,000 Deployments with their ReplicaSets, Services and
//! EndpointSlices, and per namespace a PodDisruptionBudget, an Ingress, an HPA and a
//! CronJob, some of each unhealthy.
//!
//! ```text
//! cargo bench -p caretaker-aggregator --bench bench-checks -- generate /tmp/bench-dump
//! cargo bench -p caretaker-aggregator --bench bench-checks -- run /tmp/bench-dump
//! ```
//!
//! `generate` writes one `kubectl get <kind> -A -o json` style file per kind (a `List` with
//! full objects as the API returns them). `run` loads the dump, runs every check and the
//! cleanup proposals, and prints wall times and the peak RSS (`getrusage` `ru_maxrss`).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const PODS: usize = 150_000;
const NODES: usize = 5_000;
const EVENTS: usize = 50_000;
const CONFIG_MAPS: usize = 20_000;
const NAMESPACES: usize = 200;
/// Deployments (each with its ReplicaSet, Service and EndpointSlice): pod `i` belongs to
/// app `i % APPS`, in namespace `i % NAMESPACES`.
const APPS: usize = 1_000;
/// The instant the dump is "taken" and judged.
const NOW: &str = "2025-06-01T12:00:00Z";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("generate"), Some(dir)) => generate(Path::new(dir)),
        (Some("run"), Some(dir)) => run(Path::new(dir)),
        _ => {
            eprintln!("usage: bench-checks generate DIR | bench-checks run DIR");
            std::process::exit(64);
        }
    }
}

fn now() -> Timestamp {
    NOW.parse().expect("constant timestamp")
}

fn ago(secs: i64) -> String {
    (now() - SignedDuration::from_secs(secs)).to_string()
}

fn uid(kind: u32, i: usize) -> String {
    format!("{kind:08x}-0000-4000-8000-{i:012x}")
}

/// Writes a kubectl-style `List` of `n` items made by `item`.
fn write_list(path: &Path, n: usize, item: impl Fn(usize) -> Value) -> anyhow::Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    w.write_all(b"{\n    \"apiVersion\": \"v1\",\n    \"items\": [\n")?;
    for i in 0..n {
        if i > 0 {
            w.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut w, &item(i))?;
    }
    w.write_all(b"\n    ],\n    \"kind\": \"List\",\n    \"metadata\": {\n        \"resourceVersion\": \"\"\n    }\n}\n")?;
    w.flush()?;
    Ok(())
}

fn pod(i: usize) -> Value {
    let ns = format!("ns-{}", i % NAMESPACES);
    let name = format!("app-{}-{:05}", i % 1000, i);
    // ConfigMaps referenced: half of them (see config_map).
    let cm = format!(
        "cm-{}",
        ((i / NAMESPACES) % (CONFIG_MAPS / NAMESPACES / 2)) * NAMESPACES + i % NAMESPACES
    );
    let node = format!("node-{:04}", i % NODES);
    let (phase, waiting, restarts, reason) = match i % 200 {
        0 => ("Pending", None, 0, None),
        1 => ("Failed", None, 0, Some("Evicted")),
        2 | 3 => ("Running", Some("CrashLoopBackOff"), 14, None),
        4 => ("Pending", Some("ImagePullBackOff"), 0, None),
        5..=8 => ("Running", None, 5, None),
        _ => ("Running", None, 0, None),
    };
    let ready = waiting.is_none() && phase == "Running";
    let state = match waiting {
        Some(r) => {
            json!({"waiting": {"reason": r, "message": "back-off 5m0s restarting failed container"}})
        }
        None if phase == "Running" => json!({"running": {"startedAt": ago(86_400 * 3)}}),
        None => json!({}),
    };
    let last_state = if restarts > 0 {
        json!({"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": ago(7200), "finishedAt": ago(3600), "containerID": "containerd://0123"}})
    } else {
        json!({})
    };
    let mut p = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": uid(1, i),
            "resourceVersion": format!("{}", 100_000 + i),
            "creationTimestamp": ago(86_400 * 3 + (i % 1000) as i64),
            "generateName": format!("app-{}-7d9f8c6b5-", i % 1000),
            "labels": {"app.kubernetes.io/name": format!("app-{}", i % 1000), "pod-template-hash": "7d9f8c6b5"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("app-{}-7d9f8c6b5", i % 1000), "uid": uid(2, i % 1000), "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "containers": [{
                "name": "app",
                "image": format!("registry.example/app-{}:1.{}", i % 1000, i % 7),
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                "env": [
                    {"name": "LOG_LEVEL", "value": "info"},
                    {"name": "FEATURE", "valueFrom": {"configMapKeyRef": {"name": cm, "key": "feature"}}}
                ],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"
            }],
            "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}}
            ]}}],
            "nodeName": node,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "tolerations": [
                {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}
            ]
        },
        "status": {
            "phase": phase,
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": null, "lastTransitionTime": ago(86_400 * 3)},
                {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": ago(86_400 * 3)},
                {"type": "Ready", "status": if ready { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": ago(86_400)},
                {"type": "ContainersReady", "status": if ready { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": ago(86_400)},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": ago(86_400 * 3)}
            ],
            "containerStatuses": [{
                "name": "app", "image": format!("registry.example/app-{}:1.{}", i % 1000, i % 7),
                "imageID": "registry.example/app@sha256:4f1c4a9a0b0e8f1f3c1d1e1f0a0b0c0d0e0f101112131415161718191a1b1c1d",
                "containerID": "containerd://5e2b0c8d9f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4",
                "ready": ready, "started": ready, "restartCount": restarts, "state": state, "lastState": last_state
            }],
            "hostIP": "10.0.0.1",
            "podIP": format!("10.{}.{}.{}", 1 + i / 65536 % 250, i / 256 % 256, i % 256),
            "qosClass": "Burstable",
            "startTime": ago(86_400 * 3)
        }
    });
    if let Some(r) = reason {
        p["status"]["reason"] = json!(r);
        p["status"]["message"] = json!("The node was low on resource: memory.");
    }
    p
}

fn node(i: usize) -> Value {
    let not_ready = i.is_multiple_of(100);
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": format!("node-{i:04}"), "uid": uid(3, i), "resourceVersion": "1", "creationTimestamp": ago(86_400 * 100),
            "labels": {"kubernetes.io/hostname": format!("node-{i:04}"), "kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": "m5.2xlarge", "topology.kubernetes.io/zone": format!("zone-{}", i % 3)},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"}
        },
        "spec": {"podCIDR": "10.244.0.0/24", "providerID": format!("aws:///zone/i-{i:08x}")},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": format!("node-{i:04}")}],
            "allocatable": {"cpu": "7910m", "ephemeral-storage": "95551679124", "memory": "31Gi", "pods": "110"},
            "capacity": {"cpu": "8", "ephemeral-storage": "103682020Ki", "memory": "32Gi", "pods": "110"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": ago(30), "lastTransitionTime": ago(86_400 * 100), "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available"},
                {"type": "DiskPressure", "status": if i % 250 == 1 { "True" } else { "False" }, "lastHeartbeatTime": ago(30), "lastTransitionTime": ago(86_400 * 100), "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure"},
                {"type": "PIDPressure", "status": "False", "lastHeartbeatTime": ago(30), "lastTransitionTime": ago(86_400 * 100), "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available"},
                {"type": "Ready", "status": if not_ready { "Unknown" } else { "True" }, "lastHeartbeatTime": ago(30), "lastTransitionTime": ago(86_400), "reason": "KubeletReady", "message": "kubelet is posting ready status"}
            ],
            "nodeInfo": {"architecture": "amd64", "bootID": "b", "containerRuntimeVersion": "containerd://1.7.22", "kernelVersion": "6.1.0", "kubeProxyVersion": "", "kubeletVersion": "v1.33.1", "machineID": "m", "operatingSystem": "linux", "osImage": "Debian GNU/Linux 12 (bookworm)", "systemUUID": "s"}
        }
    })
}

fn event(i: usize) -> Value {
    let reasons = [
        "BackOff",
        "Unhealthy",
        "FailedScheduling",
        "FailedMount",
        "Pulled",
        "Killing",
    ];
    let reason = reasons[i % reasons.len()];
    let warning = !matches!(reason, "Pulled" | "Killing");
    let pod_i = (i * 7) % PODS;
    let old = i.is_multiple_of(10);
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("app-{}.{i:x}", pod_i), "namespace": format!("ns-{}", pod_i % NAMESPACES), "uid": uid(4, i), "resourceVersion": "1", "creationTimestamp": ago(if old { 200_000 } else { 600 })},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": format!("app-{}-{:05}", pod_i % 1000, pod_i), "namespace": format!("ns-{}", pod_i % NAMESPACES), "uid": uid(1, pod_i), "fieldPath": "spec.containers{app}"},
        "reason": reason,
        "message": "Readiness probe failed: HTTP probe failed with statuscode: 503",
        "source": {"component": "kubelet", "host": format!("node-{:04}", pod_i % NODES)},
        "firstTimestamp": if i.is_multiple_of(3) { Value::Null } else { json!(ago(if old { 200_000 } else { 3600 })) },
        "lastTimestamp": if i.is_multiple_of(3) { Value::Null } else { json!(ago(if old { 190_000 } else { 60 })) },
        "eventTime": if i.is_multiple_of(3) { json!(format!("{}", now() - SignedDuration::from_secs(120))) } else { Value::Null },
        "count": 1 + (i % 5),
        "type": if warning { "Warning" } else { "Normal" },
        "reportingComponent": "kubelet",
        "reportingInstance": format!("node-{:04}", pod_i % NODES)
    })
}

fn config_map(i: usize) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": format!("cm-{i}"), "namespace": format!("ns-{}", i % NAMESPACES), "uid": uid(5, i), "resourceVersion": "1", "creationTimestamp": ago(86_400 * 60),
                     "labels": {"app.kubernetes.io/name": format!("app-{}", i % 1000)}},
        "data": {"feature": "on", "config.yaml": "server:\n  port: 8080\n  timeout: 30s\nlogging:\n  level: info\n"}
    })
}

fn app_meta(kind_no: u32, k: usize, name: &str) -> Value {
    json!({
        "name": name,
        "namespace": format!("ns-{}", k % NAMESPACES),
        "uid": uid(kind_no, k),
        "resourceVersion": format!("{}", 500_000 + k),
        "creationTimestamp": ago(86_400 * 30),
        "labels": {"app.kubernetes.io/name": format!("app-{k}")},
    })
}

fn pod_template(k: usize) -> Value {
    json!({
        "metadata": {"labels": {"app.kubernetes.io/name": format!("app-{k}"), "pod-template-hash": "7d9f8c6b5"}},
        "spec": {"containers": [{
            "name": "app",
            "image": format!("registry.example/app-{k}:1.0"),
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
        }]}
    })
}

/// Per app: 150 pods; every 100th app's rollout is stuck past its deadline.
fn deployment(k: usize) -> Value {
    let replicas = PODS / APPS;
    let stuck = k.is_multiple_of(100);
    let available = if stuck { replicas - 10 } else { replicas };
    let progressing = if stuck {
        json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": format!("ReplicaSet \"app-{k}-7d9f8c6b5\" has timed out progressing."), "lastUpdateTime": ago(7200), "lastTransitionTime": ago(7200)})
    } else {
        json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"app-{k}-7d9f8c6b5\" has successfully progressed."), "lastUpdateTime": ago(86_400), "lastTransitionTime": ago(86_400 * 30)})
    };
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": app_meta(0x13, k, &format!("app-{k}")),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": format!("app-{k}")}},
            "template": pod_template(k),
            "progressDeadlineSeconds": 600,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
        },
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": available,
            "availableReplicas": available,
            "unavailableReplicas": replicas - available,
            "conditions": [
                {"type": "Available", "status": if stuck { "False" } else { "True" }, "reason": if stuck { "MinimumReplicasUnavailable" } else { "MinimumReplicasAvailable" }, "lastUpdateTime": ago(7200), "lastTransitionTime": ago(7200)},
                progressing
            ]
        }
    })
}

fn replica_set(k: usize) -> Value {
    let replicas = PODS / APPS;
    let mut meta = app_meta(2, k, &format!("app-{k}-7d9f8c6b5"));
    meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": format!("app-{k}"), "uid": uid(0x13, k), "controller": true, "blockOwnerDeletion": true}]);
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": meta,
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app.kubernetes.io/name": format!("app-{k}"), "pod-template-hash": "7d9f8c6b5"}}, "template": pod_template(k)},
        "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas, "fullyLabeledReplicas": replicas, "observedGeneration": 1}
    })
}

fn service(k: usize) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": app_meta(0x14, k, &format!("app-{k}")),
        "spec": {
            "type": "ClusterIP",
            "clusterIP": format!("10.96.{}.{}", k / 256, k % 256),
            "selector": {"app.kubernetes.io/name": format!("app-{k}")},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]
        }
    })
}

/// Ten endpoints per Service; every 50th Service has none ready.
fn endpoint_slice(k: usize) -> Value {
    let ready = !k.is_multiple_of(50);
    let endpoints: Vec<Value> = (0..10)
        .map(|e| {
            json!({
                "addresses": [format!("10.{}.{}.{}", 1 + k / 256 % 250, k % 256, e)],
                "conditions": {"ready": ready, "serving": ready, "terminating": false},
                "targetRef": {"kind": "Pod", "namespace": format!("ns-{}", k % NAMESPACES), "name": format!("app-{k}-{:05}", k + e * APPS)},
                "nodeName": format!("node-{:04}", (k + e * APPS) % NODES)
            })
        })
        .collect();
    let mut meta = app_meta(0x15, k, &format!("app-{k}-abcde"));
    meta["labels"] = json!({"kubernetes.io/service-name": format!("app-{k}"), "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"});
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta,
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    })
}

/// One per namespace, on its first app; every 10th allows no disruption.
fn pdb(n: usize) -> Value {
    let blocked = n.is_multiple_of(10);
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": app_meta(0x16, n, &format!("app-{n}")),
        "spec": {"minAvailable": if blocked { json!("100%") } else { json!("90%") }, "selector": {"matchLabels": {"app.kubernetes.io/name": format!("app-{n}")}}},
        "status": {"currentHealthy": 150, "desiredHealthy": if blocked { 150 } else { 135 }, "disruptionsAllowed": if blocked { 0 } else { 15 }, "expectedPods": 150, "observedGeneration": 1}
    })
}

/// One per namespace; the TLS Secret exists for every other namespace.
fn ingress(n: usize) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": app_meta(0x17, n, &format!("app-{n}")),
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": [format!("app-{n}.example.com")], "secretName": format!("app-{n}-tls")}],
            "rules": [{"host": format!("app-{n}.example.com"), "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": format!("app-{n}"), "port": {"name": "http"}}}}]}}]
        }
    })
}

fn tls_secret(i: usize) -> Value {
    let n = i * 2;
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": app_meta(0x18, n, &format!("app-{n}-tls")),
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "", "tls.key": ""}
    })
}

/// One per namespace; every 4th is at its maximum.
fn hpa(n: usize) -> Value {
    let capped = n.is_multiple_of(4);
    let current = if capped { 150 } else { 120 };
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": app_meta(0x19, n, &format!("app-{n}")),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": format!("app-{n}")},
            "minReplicas": 10,
            "maxReplicas": 150,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
        },
        "status": {
            "currentReplicas": current,
            "desiredReplicas": current,
            "conditions": [
                {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "lastTransitionTime": ago(86_400)},
                {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound", "lastTransitionTime": ago(86_400)},
                {"type": "ScalingLimited", "status": if capped { "True" } else { "False" }, "reason": if capped { "TooManyReplicas" } else { "DesiredWithinRange" }, "lastTransitionTime": ago(3600)}
            ]
        }
    })
}

/// One per namespace: every 10th suspended, every 7th never run.
fn cron_job(n: usize) -> Value {
    let status = if n.is_multiple_of(7) {
        json!({})
    } else {
        json!({"lastScheduleTime": ago(3600), "lastSuccessfulTime": ago(3500)})
    };
    json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": app_meta(0x1a, n, &format!("report-{n}")),
        "spec": {
            "schedule": "0 * * * *",
            "suspend": n.is_multiple_of(10),
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "report", "image": "registry.example/report:2.1"}]}}}}
        },
        "status": status
    })
}

fn generate(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let t = Instant::now();
    write_list(&dir.join("pods.json"), PODS, pod)?;
    write_list(&dir.join("nodes.json"), NODES, node)?;
    write_list(&dir.join("events.json"), EVENTS, event)?;
    write_list(&dir.join("configmaps.json"), CONFIG_MAPS, config_map)?;
    // The workloads the pods belong to, and what the workload checks read about them.
    write_list(&dir.join("deployments.json"), APPS, deployment)?;
    write_list(&dir.join("replicasets.json"), APPS, replica_set)?;
    write_list(&dir.join("services.json"), APPS, service)?;
    write_list(&dir.join("endpointslices.json"), APPS, endpoint_slice)?;
    write_list(&dir.join("poddisruptionbudgets.json"), NAMESPACES, pdb)?;
    write_list(&dir.join("ingresses.json"), NAMESPACES, ingress)?;
    write_list(&dir.join("secrets.json"), NAMESPACES / 2, tls_secret)?;
    write_list(&dir.join("horizontalpodautoscalers.json"), NAMESPACES, hpa)?;
    write_list(&dir.join("cronjobs.json"), NAMESPACES, cron_job)?;
    for kind in ["StatefulSet", "DaemonSet"] {
        std::fs::write(
            dir.join(format!("{}s.json", kind.to_lowercase())),
            format!("{{\"apiVersion\":\"apps/v1\",\"kind\":\"{kind}List\",\"items\":[]}}\n"),
        )?;
    }
    std::fs::write(
        dir.join("jobs.json"),
        "{\"apiVersion\":\"batch/v1\",\"kind\":\"JobList\",\"items\":[]}\n",
    )?;
    let mut total = 0u64;
    for e in std::fs::read_dir(dir)? {
        total += e?.metadata()?.len();
    }
    println!(
        "generated {} in {:.2?}: {PODS} pods, {NODES} nodes, {EVENTS} events, {CONFIG_MAPS} ConfigMaps, {:.0} MiB",
        dir.display(),
        t.elapsed(),
        total as f64 / (1u64 << 20) as f64
    );
    Ok(())
}

fn peak_rss_mib() -> anyhow::Result<f64> {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)?;
    // Linux reports ru_maxrss in KiB.
    Ok(u.max_rss() as f64 / 1024.0)
}

fn run(dir: &Path) -> anyhow::Result<()> {
    use caretaker_aggregator::{checks, cleanup, cluster};
    let t0 = Instant::now();
    let state = cluster::dump::load(&[PathBuf::from(dir)])?;
    let load = t0.elapsed();
    let rss_after_load = peak_rss_mib()?;
    let t1 = Instant::now();
    let results = checks::run_all(&state, &checks::ChecksConfig::default(), now());
    let check_time = t1.elapsed();
    let t2 = Instant::now();
    let proposals = cleanup::propose(&state, &cleanup::CleanupConfig::default(), now());
    let propose_time = t2.elapsed();
    let total = t0.elapsed();
    println!(
        "loaded {} pods, {} nodes, {} events, {} ConfigMaps ({} objects, {} problems) in {load:.2?}",
        state.pods.len(),
        state.nodes.len(),
        state.events.len(),
        state.config_maps.len(),
        state.load.objects,
        state.load.problems.len()
    );
    for r in &results {
        println!(
            "  {:<13} {:<9} {:>6} findings  {}",
            r.name,
            r.severity.to_string(),
            r.findings.len(),
            r.summary
        );
    }
    println!(
        "checks: {check_time:.2?}; cleanup proposals: {} in {propose_time:.2?}",
        proposals.len()
    );
    println!(
        "total wall time {total:.2?}; peak RSS {:.0} MiB (after load {rss_after_load:.0} MiB)",
        peak_rss_mib()?
    );
    Ok(())
}
