//! Table tests of every check on small dumps shaped like `kubectl get -o json|yaml` output
//! (see fixtures/generate.py), judged as of 2025-06-01T12:00:00Z.

use std::path::PathBuf;

use caretaker_aggregator::checks::{self, CheckResult, CheckStatus, ChecksConfig, Severity};
use caretaker_aggregator::cluster::{ClusterState, Coverage, Resource, VolumeStat, dump};
use jiff::Timestamp;

use Severity::{Critical, Info, Warning};

fn now() -> Timestamp {
    "2025-06-01T12:00:00Z".parse().unwrap()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(names: &[&str]) -> ClusterState {
    dump::load(&names.iter().map(|n| fixture(n)).collect::<Vec<_>>()).unwrap()
}

/// (code, severity, object) of every finding, in the result's order.
fn rows(r: &CheckResult) -> Vec<(&str, Severity, String)> {
    r.findings
        .iter()
        .map(|f| (f.code.as_str(), f.severity, f.object.to_string()))
        .collect()
}

fn msg<'a>(r: &'a CheckResult, object: &str) -> &'a str {
    &r.findings
        .iter()
        .find(|f| f.object.to_string() == object)
        .unwrap_or_else(|| panic!("no finding for {object}"))
        .message
}

fn row(code: &str, s: Severity, o: &str) -> (String, Severity, String) {
    (code.to_string(), s, o.to_string())
}

fn owned(r: &CheckResult) -> Vec<(String, Severity, String)> {
    rows(r)
        .into_iter()
        .map(|(c, s, o)| (c.to_string(), s, o))
        .collect()
}

#[test]
fn pods_check_finds_each_unhealthy_pod_once_including_crash_loop_while_running() {
    let s = load(&["pods.json"]);
    let r = checks::pods::check(&s, &ChecksConfig::default(), now());
    assert_eq!(r.severity, Critical);
    assert_eq!(r.summary, "13 pods, 9 with problems");
    assert_eq!(
        owned(&r),
        vec![
            row("crash_loop_back_off", Critical, "Pod/default/crashy"),
            row("image_pull_back_off", Critical, "Pod/default/pull"),
            row(
                "init_crash_loop_back_off",
                Critical,
                "Pod/default/init-crash"
            ),
            row("evicted", Warning, "Pod/default/evicted"),
            row("failed", Warning, "Pod/default/failed-once"),
            row("not_ready", Warning, "Pod/default/not-ready"),
            row("pending", Warning, "Pod/default/pending-long"),
            row("restarts", Warning, "Pod/default/restarty"),
            row("unknown_phase", Warning, "Pod/default/lost-node"),
        ]
    );
    assert_eq!(
        msg(&r, "Pod/default/crashy"),
        "container app in CrashLoopBackOff (restarted 12 times, last terminated Error (exit code 1), phase Running): back-off 5m0s restarting failed container=app pod=crashy_default(x)"
    );
    assert_eq!(
        msg(&r, "Pod/default/pending-long"),
        "pod Pending: 0/3 nodes are available: 3 Insufficient cpu."
    );
    assert_eq!(
        msg(&r, "Pod/default/restarty"),
        "app restarted 5 times, last OOMKilled (threshold 3, last restart within 1d 0h)"
    );
    // The finding names the pod's uid, so a later cleanup can be conditioned on it.
    assert_eq!(
        r.findings[0].object.uid.as_deref(),
        Some("0b6e5f0c-1111-4a2b-9c3d-000000000002")
    );
}

#[test]
fn pods_thresholds_come_from_config() {
    let s = load(&["pods.json"]);
    let mut c = ChecksConfig::default();
    c.pods.restart_threshold = 5; // restarty has exactly 5: not above
    c.pods.pending_grace = caretaker_core::config::BoundedDuration::secs(2 * 3600);
    c.pods.not_ready_grace = caretaker_core::config::BoundedDuration::secs(3600);
    let r = checks::pods::check(&s, &c, now());
    let codes: Vec<&str> = r.findings.iter().map(|f| f.code.as_str()).collect();
    assert_eq!(
        codes,
        vec![
            "crash_loop_back_off",
            "image_pull_back_off",
            "init_crash_loop_back_off",
            "evicted",
            "failed",
            "unknown_phase"
        ]
    );
}

#[test]
fn events_are_grouped_by_reason_and_object_using_whichever_time_is_set() {
    let s = load(&["events.yaml"]);
    let r = checks::events::check(&s, &ChecksConfig::default(), now());
    assert_eq!(
        r.summary,
        "6 events, 4 Warning events in the last 1d 0h on 3 object/reason pairs"
    );
    assert_eq!(
        owned(&r),
        vec![
            row("warning_event", Warning, "Pod/default/crashy"),
            row("warning_event", Warning, "Node/default/node-b"),
            row("warning_event", Warning, "Pod/default/pending-long"),
        ]
    );
    // count 12 (lastTimestamp) + series.count 3 (lastTimestamp null, series.lastObservedTime);
    // the 2-day-old BackOff is outside the window; the newest message wins; first seen is
    // the older event's firstTimestamp, last seen the series' lastObservedTime.
    assert_eq!(
        msg(&r, "Pod/default/crashy"),
        "BackOff x15 (first seen 2025-06-01T09:00:00Z, last seen 2025-06-01T11:58:00Z): Back-off restarting failed container app in pod crashy"
    );
    // Only eventTime set.
    assert_eq!(
        msg(&r, "Pod/default/pending-long"),
        "FailedScheduling x1 (first seen 2025-06-01T11:00:00Z, last seen 2025-06-01T11:00:00Z): 0/3 nodes are available: 3 Insufficient cpu."
    );
    // Only firstTimestamp set.
    assert_eq!(
        msg(&r, "Node/default/node-b"),
        "NodeNotReady x1 (first seen 2025-06-01T10:00:00Z, last seen 2025-06-01T10:00:00Z): Node node-b status is now: NodeNotReady"
    );
    // The time is a field, not text.
    let f = r
        .findings
        .iter()
        .find(|f| f.object.to_string() == "Node/default/node-b")
        .unwrap();
    assert_eq!(f.at, Some("2025-06-01T10:00:00Z".parse().unwrap()));
}

#[test]
fn dump_with_unknown_kind_and_malformed_document_reports_both() {
    let s = load(&["events.yaml"]);
    assert_eq!(
        s.load.unknown_kinds.get("NetworkPolicy.networking.k8s.io"),
        Some(&1)
    );
    assert_eq!(s.load.problems.len(), 1);
    let p = &s.load.problems[0];
    assert_eq!((p.document, p.item), (4, None));
    assert!(p.file.ends_with("fixtures/events.yaml"));
    assert!(
        p.message.starts_with("invalid YAML: unclosed bracket"),
        "{}",
        p.message
    );
}

#[test]
fn nodes_check_reports_conditions_requests_usage_and_hot_pods() {
    let s = load(&["nodes.json"]);
    let r = checks::nodes::check(&s, &ChecksConfig::default(), now());
    assert_eq!(
        r.summary,
        "3 nodes, 1 not ready; requests CPU 46%, memory 7% of allocatable"
    );
    assert_eq!(
        owned(&r),
        vec![
            row("node_not_ready", Critical, "Node/node-b"),
            row("disk_pressure", Warning, "Node/node-b"),
            row("requests_high", Warning, "Node/node-c"),
            row("usage_high", Warning, "Node/node-a"),
            row("cordoned", Info, "Node/node-b"),
            row("pod_cpu_high", Info, "Pod/default/hot"),
        ]
    );
    assert_eq!(
        msg(&r, "Node/node-b"),
        "node not ready: Ready is Unknown since 2025-06-01T09:00:00Z: Kubelet stopped posting node status."
    );
    let f = r
        .findings
        .iter()
        .find(|f| f.code == "node_not_ready")
        .unwrap();
    assert_eq!(
        serde_json::to_value(&f.times).unwrap(),
        serde_json::json!({"since": "2025-06-01T09:00:00Z"})
    );
    // busy-1 2000m + busy-2 max(1800m, init 3000m); the Succeeded pod holds nothing.
    assert_eq!(
        msg(&r, "Node/node-c"),
        "pod requests above 90% of allocatable: CPU 5000m of 4000m (125%)"
    );
    // 350000000n + 100m; the pod at exactly 400m is not above the threshold.
    assert_eq!(
        msg(&r, "Pod/default/hot"),
        "pod uses 450m CPU (threshold 400m)"
    );
}

#[test]
fn certificates_are_judged_by_not_after_even_when_ready() {
    let s = load(&["certificates.yaml"]);
    let r = checks::certificates::check(&s, &ChecksConfig::default(), now());
    assert_eq!(r.summary, "5 cert-manager Certificates, 6 TLS Secrets");
    assert_eq!(
        owned(&r),
        vec![
            row(
                "certificate_expired",
                Critical,
                "Secret/web/manual-expired-tls"
            ),
            row(
                "certificate_expired",
                Critical,
                "Certificate/web/ready-but-expired"
            ),
            row(
                "certificate_expiring",
                Critical,
                "Secret/web/manual-soon-tls"
            ),
            // Its renewalTime passed 23 days ago: cert-manager is failing to renew it.
            row(
                "certificate_renewal_overdue",
                Critical,
                "Certificate/web/expiring-critical"
            ),
            row("certificate_expiring", Warning, "Secret/web/chain-tls"),
            row(
                "certificate_expiring",
                Warning,
                "Certificate/web/expiring-warning"
            ),
            row(
                "certificate_not_issued",
                Warning,
                "Certificate/web/not-issued"
            ),
            row("tls_secret_invalid", Warning, "Secret/web/garbage-tls"),
        ]
    );
    assert_eq!(
        msg(&r, "Certificate/web/ready-but-expired"),
        "renewal overdue: renewalTime 2025-05-04T12:00:00Z passed and cert-manager has not renewed it; \
         certificate (Ready condition: True) expired at 2025-05-30T12:00:00Z (notAfter)"
    );
    // renewBefore 7d: its renewal is still ahead, so it is only expiring.
    assert_eq!(
        msg(&r, "Certificate/web/expiring-warning"),
        "certificate (Ready condition: True) expires at 2025-06-21T12:00:00Z (notAfter), within the 30-day warning threshold"
    );
    // The bundle is judged by its earliest certificate: the intermediate.
    assert_eq!(
        msg(&r, "Secret/web/chain-tls"),
        "TLS certificate CN=Example Intermediate CA expires at 2025-06-21T13:00:00Z (notAfter), within the 30-day warning threshold"
    );
    // The times are fields, not relative ages in the text: a day later the messages are
    // the same (issue 12: `report --diff` shows real changes only).
    let later = checks::certificates::check(
        &s,
        &ChecksConfig::default(),
        now() + jiff::SignedDuration::from_hours(24),
    );
    let messages = |r: &CheckResult| {
        r.findings
            .iter()
            .map(|f| (f.object.to_string(), f.message.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(messages(&later), messages(&r));
    let f = r
        .findings
        .iter()
        .find(|f| f.object.to_string() == "Certificate/web/ready-but-expired")
        .unwrap();
    assert_eq!(
        serde_json::to_value(&f.times).unwrap(),
        serde_json::json!({"not_after": "2025-05-30T12:00:00Z", "renewal_time": "2025-05-04T12:00:00Z"})
    );
}

#[test]
fn velero_classifies_phases_and_finds_stale_schedules() {
    let s = load(&["velero.json"]);
    let r = checks::velero::check(&s, &ChecksConfig::default(), now());
    assert_eq!(
        owned(&r),
        vec![
            row("backup_failed", Critical, "Backup/velero/manual-1"),
            row(
                "backup_failed_validation",
                Critical,
                "Backup/velero/manual-2"
            ),
            row(
                "backup_partially_failed",
                Warning,
                "Backup/velero/daily-20250601030000"
            ),
            row("backup_stale", Warning, "Schedule/velero/daily"),
            row("schedule_never_completed", Warning, "Schedule/velero/never"),
            row("backup_in_progress", Info, "Backup/velero/manual-3"),
            row("schedule_paused", Info, "Schedule/velero/weekly"),
        ]
    );
    assert_eq!(
        msg(&r, "Backup/velero/daily-20250601030000"),
        "backup phase PartiallyFailed, started 2025-06-01T03:00:00Z (2 errors, 5 warnings)"
    );
    assert_eq!(
        msg(&r, "Schedule/velero/daily"),
        "newest Completed backup finished 2025-05-31T03:10:00Z, longer ago than the schedule's period 1d 0h plus 2h 0m slack"
    );
    let times = |o: &str| {
        let f = r
            .findings
            .iter()
            .find(|f| f.object.to_string() == o)
            .unwrap();
        serde_json::to_value(&f.times).unwrap()
    };
    assert_eq!(
        times("Backup/velero/daily-20250601030000"),
        serde_json::json!({"started": "2025-06-01T03:00:00Z", "completed": "2025-06-01T04:00:00Z"})
    );
    assert_eq!(
        times("Schedule/velero/daily"),
        serde_json::json!({"last_completed": "2025-05-31T03:10:00Z"})
    );
    // No relative ages: an hour later every message reads the same.
    let later = checks::velero::check(
        &s,
        &ChecksConfig::default(),
        now() + jiff::SignedDuration::from_hours(1),
    );
    assert_eq!(
        later
            .findings
            .iter()
            .map(|f| &f.message)
            .collect::<Vec<_>>(),
        r.findings.iter().map(|f| &f.message).collect::<Vec<_>>()
    );
    // With 9h of slack the daily schedule's 32h50m is within its 24h period plus 9h.
    let mut c = ChecksConfig::default();
    c.velero.stale_slack = caretaker_core::config::BoundedDuration::secs(9 * 3600);
    let r = checks::velero::check(&s, &c, now());
    assert!(!r.findings.iter().any(|f| f.code == "backup_stale"));
}

/// Issue 12: the newest backup of a schedule still running (`FinalizingPartiallyFailed`)
/// must not hide the `Failed` one before it.
#[test]
fn velero_judges_the_newest_finished_backup_and_reports_the_running_one_beside_it() {
    let s = load(&["velero-running.json"]);
    let r = checks::velero::check(&s, &ChecksConfig::default(), now());
    let mut got = owned(&r);
    got.sort();
    assert_eq!(
        got,
        vec![
            row(
                "backup_failed",
                Critical,
                "Backup/velero/nightly-20250531020000"
            ),
            row(
                "backup_in_progress",
                Info,
                "Backup/velero/nightly-20250601020000"
            ),
            row(
                "schedule_never_completed",
                Warning,
                "Schedule/velero/nightly"
            ),
        ]
    );
    assert!(
        msg(&r, "Backup/velero/nightly-20250531020000")
            .ends_with(": backup storage location default is unavailable"),
        "{}",
        msg(&r, "Backup/velero/nightly-20250531020000")
    );
    assert!(
        msg(&r, "Backup/velero/nightly-20250601020000")
            .starts_with("backup phase FinalizingPartiallyFailed"),
    );
}

/// Issue 12: a Certificate whose renewalTime passed 24 days ago and that expires in 5 days
/// says "renewal overdue" with cert-manager's reason, not only "expires in 5 days".
#[test]
fn certificates_whose_renewal_time_passed_are_renewal_overdue_with_the_reason() {
    let s = load(&["certificates-renewal.json"]);
    let r = checks::certificates::check(&s, &ChecksConfig::default(), now());
    assert_eq!(
        owned(&r),
        vec![row(
            "certificate_renewal_overdue",
            Critical,
            "Certificate/shop/shop-tls"
        )]
    );
    assert_eq!(
        msg(&r, "Certificate/shop/shop-tls"),
        "renewal overdue: renewalTime 2025-05-08T12:00:00Z passed and cert-manager has not renewed it; \
         certificate (Ready condition: True) expires at 2025-06-06T12:00:00Z (notAfter), within the 7-day critical threshold; \
         Issuing False: Failed (The certificate request has failed to complete and will be retried: \
         Failed to wait for order resource \"shop-tls-1-123\" to become ready: order is in \"invalid\" state: \
         403 urn:ietf:params:acme:error:unauthorized)"
    );
}

#[test]
fn pvc_usage_counts_each_claim_once_and_unknown_is_not_zero() {
    let mut s = load(&["pvcs.yaml"]);
    let stat = |node: &str, pv: &str, used: u64, at: &str| VolumeStat {
        node: node.into(),
        pv_name: pv.into(),
        size_bytes: 100,
        used_bytes: used,
        avail_bytes: 100 - used,
        collected_at: at.parse().unwrap(),
    };
    s.volume_stats = vec![
        stat("node-a", "pvc-1", 50, "2025-06-01T11:59:00Z"),
        // pvc-2 is mounted on two nodes (ReadWriteMany): the newest figure counts, once.
        stat("node-a", "pvc-2", 70, "2025-06-01T11:50:00Z"),
        stat("node-b", "pvc-2", 95, "2025-06-01T11:59:30Z"),
    ];
    let r = checks::pvcs::check(&s, &ChecksConfig::default(), now());
    assert_eq!(r.summary, "6 claims, usage known for 2, unknown for 4");
    assert_eq!(
        owned(&r),
        vec![
            row("pvc_lost", Critical, "PersistentVolumeClaim/data/data-lost"),
            row(
                "pvc_usage_high",
                Critical,
                "PersistentVolumeClaim/data/data-full"
            ),
            row(
                "pvc_pending",
                Warning,
                "PersistentVolumeClaim/data/data-pending"
            ),
        ]
    );
    assert_eq!(
        msg(&r, "PersistentVolumeClaim/data/data-full"),
        "volume pvc-2 is 95.0% full (95 of 100 bytes)"
    );
    let usage = checks::pvcs::claim_usage(&s);
    let unknown = usage
        .iter()
        .find(|u| u.claim.name == "data-unknown")
        .unwrap();
    assert_eq!((unknown.used_percent, unknown.size_bytes), (None, None));
    assert_eq!(
        serde_json::to_value(unknown).unwrap()["used_percent"],
        serde_json::Value::Null
    );
}

#[test]
fn hpas_at_max_when_desired_and_current_reach_max_whatever_the_conditions() {
    let s = load(&["hpas.json"]);
    let r = checks::hpas::check(&s, &ChecksConfig::default(), now());
    assert_eq!(r.summary, "4 HPAs, 2 capped at max");
    assert_eq!(
        owned(&r),
        vec![
            row(
                "hpa_at_max",
                Warning,
                "HorizontalPodAutoscaler/web/at-max-content"
            ),
            row("hpa_at_max", Warning, "HorizontalPodAutoscaler/web/capped"),
            row(
                "hpa_scaling_inactive",
                Warning,
                "HorizontalPodAutoscaler/web/no-metrics"
            ),
        ]
    );
}

/// Issue 12: an HPA with no conditions at desired = current = max is at max; one pinned on
/// purpose (minReplicas == maxReplicas) is info at most; one still scaling up is not at max.
#[test]
fn hpas_without_conditions_are_judged_and_pinned_ones_are_info() {
    let s = load(&["hpas-conditions.json"]);
    let r = checks::hpas::check(&s, &ChecksConfig::default(), now());
    assert_eq!(r.summary, "3 HPAs, 1 capped at max");
    let mut got = owned(&r);
    got.sort();
    assert_eq!(
        got,
        vec![
            row(
                "hpa_at_max",
                Warning,
                "HorizontalPodAutoscaler/shop/no-conditions"
            ),
            row("hpa_pinned", Info, "HorizontalPodAutoscaler/shop/pinned"),
        ]
    );
    assert_eq!(
        msg(&r, "HorizontalPodAutoscaler/shop/no-conditions"),
        "Deployment/cart capped at maxReplicas 6 (current 6, desired 6)"
    );
}

#[test]
fn helm_releases_are_judged_at_their_newest_revision_with_chart_version() {
    let s = load(&["helm.json"]);
    let r = checks::helm::check(&s, &ChecksConfig::default(), now());
    assert_eq!(r.summary, "5 Helm releases");
    assert_eq!(
        owned(&r),
        vec![
            row("helm_release_failed", Critical, "HelmRelease/apps/api"),
            row("helm_release_pending", Warning, "HelmRelease/apps/db"),
            row(
                "helm_release_unreadable",
                Warning,
                "Secret/apps/sh.helm.release.v1.broken.v1"
            ),
        ]
    );
    assert_eq!(
        msg(&r, "HelmRelease/apps/api"),
        "release failed at revision 3, chart api-1.4.2, app 5.2.0: Upgrade \"api\" failed: context deadline exceeded"
    );
    let rels = checks::helm::releases(&s);
    let web = rels.iter().find(|r| r.name == "web").unwrap();
    assert_eq!(
        (
            web.revision,
            web.status.as_str(),
            web.chart_version.as_deref()
        ),
        (2, "deployed", Some("1.1.0"))
    );
}

#[test]
fn run_all_marks_checks_without_inputs_not_applicable() {
    let s = load(&["hpas.json"]);
    let results = checks::run_all(&s, &ChecksConfig::default(), now());
    let names: Vec<(&str, CheckStatus)> = results
        .iter()
        .map(|r| (r.name.as_str(), r.status))
        .collect();
    use CheckStatus::{NotApplicable, Ran};
    assert_eq!(
        names,
        vec![
            ("nodes", NotApplicable),
            ("pods", NotApplicable),
            ("workloads", NotApplicable),
            ("pdbs", NotApplicable),
            ("services", NotApplicable),
            ("ingresses", NotApplicable),
            ("cronjobs", NotApplicable),
            ("events", NotApplicable),
            ("certificates", NotApplicable),
            ("velero", NotApplicable),
            ("pvcs", NotApplicable),
            ("hpas", Ran),
            ("helm", NotApplicable),
            ("resources", NotApplicable),
            ("vulnerabilities", NotApplicable),
        ]
    );
    assert_eq!(
        results[9].summary,
        "no backups.velero.io in the source; no schedules.velero.io in the source; no backupstoragelocations.velero.io in the source"
    );
}

#[test]
fn forbidden_resource_becomes_a_finding_of_the_checks_that_need_it() {
    let mut s = load(&["pods.json"]);
    s.coverage.insert(
        Resource::Pod,
        Coverage::Forbidden {
            message: "pods is forbidden: User \"x\" cannot list resource \"pods\"".into(),
        },
    );
    s.pods.clear();
    let r = checks::pods::check(&s, &ChecksConfig::default(), now());
    assert_eq!(owned(&r), vec![row("list_forbidden", Warning, "Pod/")]);
    assert_eq!(
        r.findings[0].message,
        "no permission to list pods: pods is forbidden: User \"x\" cannot list resource \"pods\""
    );
}

#[test]
fn check_result_json_field_names_are_stable() {
    let s = load(&["hpas.json"]);
    let r = checks::hpas::check(&s, &ChecksConfig::default(), now());
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["name"], "hpas");
    assert_eq!(v["severity"], "warning");
    assert_eq!(v["status"], "ran");
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["object"]["name"] == "capped")
        .unwrap();
    assert_eq!(f["code"], "hpa_at_max");
    assert_eq!(f["severity"], "warning");
    assert_eq!(
        f["object"],
        serde_json::json!({"kind": "HorizontalPodAutoscaler", "namespace": "web", "name": "capped", "uid": "0b6e5f0c-1111-4a2b-9c3d-000000000059"})
    );
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .starts_with("Deployment/capped capped at maxReplicas 10")
    );
    let back: CheckResult = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

/// (code, severity, object, message) of every finding, in the result's order.
fn full(r: &CheckResult) -> Vec<(String, Severity, String, String)> {
    r.findings
        .iter()
        .map(|f| {
            (
                f.code.clone(),
                f.severity,
                f.object.to_string(),
                f.message.clone(),
            )
        })
        .collect()
}

fn f4(code: &str, s: Severity, o: &str, m: &str) -> (String, Severity, String, String) {
    (code.to_string(), s, o.to_string(), m.to_string())
}

#[test]
fn workloads_check_reports_stuck_rollouts_and_missing_replicas_but_not_scaled_to_zero() {
    let s = load(&["workloads.json"]);
    let r = checks::workloads::check(&s, &ChecksConfig::default(), now());
    assert_eq!(r.severity, Critical);
    assert_eq!(
        r.summary,
        "8 workloads (5 Deployments, 1 StatefulSets, 2 DaemonSets), 5 with problems"
    );
    assert_eq!(r.objects, Some(8));
    assert_eq!(
        full(&r),
        vec![
            f4(
                "no_replicas_available",
                Critical,
                "Deployment/shop/search",
                "none of 2 replicas available"
            ),
            f4(
                "rollout_stuck",
                Critical,
                "Deployment/shop/checkout",
                "rollout stuck (ProgressDeadlineExceeded): ReplicaSet \"checkout-6d4cf56db6\" has timed out progressing."
            ),
            f4(
                "replicas_unavailable",
                Warning,
                "DaemonSet/kube-system/log-shipper",
                "1 of 4 replicas not available"
            ),
            f4(
                "replicas_unavailable",
                Warning,
                "Deployment/shop/cart",
                "2 of 3 replicas not available"
            ),
            f4(
                "replicas_unavailable",
                Warning,
                "StatefulSet/shop/db",
                "1 of 3 replicas not ready"
            ),
        ]
    );
    assert_eq!(
        r.findings[1].at,
        Some("2025-06-01T11:00:00Z".parse().unwrap())
    );
}

#[test]
fn pdbs_check_reports_budgets_that_block_drains() {
    let s = load(&["workloads.json"]);
    let r = checks::pdbs::check(&s, &ChecksConfig::default(), now());
    assert_eq!(
        r.summary,
        "3 PodDisruptionBudgets, 1 allowing no disruption"
    );
    assert_eq!(
        full(&r),
        vec![
            f4(
                "pdb_blocks_disruption",
                Warning,
                "PodDisruptionBudget/shop/db",
                "allows no disruption (maxUnavailable 0; 2 of 3 pods healthy, 3 required): node drains will wait"
            ),
            f4(
                "pdb_no_pods",
                Info,
                "PodDisruptionBudget/shop/legacy",
                "selects no pods"
            ),
        ]
    );
}

#[test]
fn services_check_reports_selectors_without_ready_endpoints() {
    let s = load(&["workloads.json"]);
    let r = checks::services::check(&s, &ChecksConfig::default(), now());
    assert_eq!(
        r.summary,
        "5 Services, 3 with a selector, 2 without ready endpoints"
    );
    assert_eq!(
        full(&r),
        vec![
            f4(
                "service_no_ready_endpoints",
                Warning,
                "Service/shop/cart",
                "no ready endpoints (selector app=cart)"
            ),
            f4(
                "service_no_ready_endpoints",
                Warning,
                "Service/shop/search",
                "no ready endpoints (selector app=search)"
            ),
        ]
    );
    // Without the EndpointSlices nothing is judged (every Service would look empty).
    let mut no_slices = s.clone();
    no_slices.endpoint_slices.clear();
    let r = checks::services::check(&no_slices, &ChecksConfig::default(), now());
    assert!(r.findings.is_empty(), "{:?}", r.findings);
}

#[test]
fn ingresses_check_reports_missing_backends_and_tls_secrets() {
    let s = load(&["workloads.json"]);
    let r = checks::services::ingresses(&s, &ChecksConfig::default(), now());
    assert_eq!(r.summary, "2 Ingresses, 1 pointing at missing objects");
    assert_eq!(
        full(&r),
        vec![
            f4(
                "ingress_backend_missing",
                Warning,
                "Ingress/shop/old-shop",
                "backend Service legacy-web not found"
            ),
            f4(
                "ingress_tls_secret_missing",
                Warning,
                "Ingress/shop/old-shop",
                "TLS Secret old-shop-tls not found"
            ),
        ]
    );
}

#[test]
fn velero_check_reports_unavailable_storage_locations() {
    let s = load(&["workloads.json"]);
    let r = checks::velero::check(&s, &ChecksConfig::default(), now());
    assert_eq!(r.status, CheckStatus::Ran);
    assert_eq!(
        owned(&r),
        vec![row(
            "storage_location_unavailable",
            Critical,
            "BackupStorageLocation/velero/offsite"
        )]
    );
    assert!(
        r.findings[0].message.starts_with(
            "backup storage location Unavailable: BackupStorageLocation \"offsite\" is unavailable: rpc error"
        ),
        "{}",
        r.findings[0].message
    );
    assert_eq!(
        r.findings[0].at,
        Some("2025-06-01T11:59:00Z".parse().unwrap())
    );
    assert_eq!(
        serde_json::to_value(&r.findings[0].times).unwrap(),
        serde_json::json!({"last_validation": "2025-06-01T11:59:00Z"})
    );
}

#[test]
fn cronjobs_check_reports_failed_last_run_never_run_and_suspended() {
    let s = load(&["workloads.json"]);
    let r = checks::cronjobs::check(&s, &ChecksConfig::default(), now());
    assert_eq!(r.summary, "5 CronJobs, 3 with problems");
    assert_eq!(
        full(&r),
        vec![
            f4(
                "cronjob_last_run_failed",
                Warning,
                "CronJob/ops/report",
                "last run Job report-29150520 failed (BackoffLimitExceeded: Job has reached the specified backoff limit)"
            ),
            f4(
                "cronjob_never_run",
                Warning,
                "CronJob/ops/never",
                "never run although scheduled 0 4 * * *"
            ),
            f4(
                "cronjob_suspended",
                Info,
                "CronJob/ops/paused",
                "suspended: no run is started"
            ),
        ]
    );
    assert_eq!(
        r.findings[0].at,
        Some("2025-06-01T08:00:00Z".parse().unwrap())
    );
}

#[test]
fn crash_loop_message_names_the_last_termination_reason_and_exit_code() {
    let s = load(&["workloads.json"]);
    let r = checks::pods::check(&s, &ChecksConfig::default(), now());
    assert_eq!(
        full(&r),
        vec![f4(
            "crash_loop_back_off",
            Critical,
            "Pod/shop/worker-7f9c-x2x",
            "container worker in CrashLoopBackOff (restarted 31 times, last terminated OOMKilled (exit code 137), phase Running): back-off 5m0s restarting failed container=worker pod=worker-7f9c-x2x_shop(y)"
        )]
    );
}

/// Every finding the checks emit on the fixtures has a code from the code table, so a
/// remedy and a line in aggregator/CHECKS.md.
#[test]
fn every_finding_on_the_fixtures_has_a_remedy() {
    let s = load(&[
        "pods.json",
        "events.yaml",
        "certificates.yaml",
        "certificates-renewal.json",
        "velero.json",
        "velero-running.json",
        "hpas.json",
        "hpas-conditions.json",
        "nodes.json",
        "helm.json",
        "pvcs.yaml",
        "workloads.json",
    ]);
    let results = checks::run_all(&s, &ChecksConfig::default(), now());
    let mut codes = std::collections::BTreeSet::new();
    for r in &results {
        for f in &r.findings {
            assert!(
                f.remedy.is_some(),
                "{} {} has no remedy: add it to checks::codes::CODES",
                r.name,
                f.code
            );
            let c = checks::codes::lookup(&f.code).unwrap();
            assert!(
                c.check == r.name || c.check == "*",
                "{} in {}",
                f.code,
                r.name
            );
            codes.insert(f.code.clone());
        }
    }
    assert!(codes.len() >= 30, "{codes:?}");
}

/// Issue 12: the renewal-overdue and expiry messages end with the failure of the
/// Certificate's latest CertificateRequest (by ownerReference or the
/// `cert-manager.io/certificate-name` annotation; latest by revision, else by creation).
#[test]
fn certificate_messages_carry_the_latest_certificate_request_failure() {
    let s = load(&["certificates-renewal.json", "certificate-requests.json"]);
    let r = checks::certificates::check(&s, &ChecksConfig::default(), now());
    assert_eq!(
        owned(&r),
        vec![
            row(
                "certificate_expired",
                Critical,
                "Certificate/web/bad-csr-tls"
            ),
            row(
                "certificate_expiring",
                Critical,
                "Certificate/web/denied-tls"
            ),
            row(
                "certificate_renewal_overdue",
                Critical,
                "Certificate/shop/shop-tls"
            ),
            row("certificate_not_issued", Warning, "Certificate/web/new-tls"),
        ]
    );
    // Revision 2 (Ready False: Failed) is latest; revision 1 issued, and shop-tls-9 is
    // another namespace's.
    assert!(
        msg(&r, "Certificate/shop/shop-tls").ends_with(
            "; latest CertificateRequest shop-tls-2 (revision 2): Ready False: Failed \
             (Failed to wait for order resource \"shop-tls-2-3071850735\" to become ready: \
             order is in \"invalid\" state: 403 urn:ietf:params:acme:error:unauthorized)"
        ),
        "{}",
        msg(&r, "Certificate/shop/shop-tls")
    );
    // Linked by annotation only; Denied=True is the reason, before Ready's.
    assert_eq!(
        msg(&r, "Certificate/web/denied-tls"),
        "certificate (Ready condition: True) expires at 2025-06-04T12:00:00Z (notAfter), within the 7-day critical threshold; \
         latest CertificateRequest denied-tls-2 (revision 2): Denied True: policy.cert-manager.io \
         (No policy approved this request: [letsencrypt-prod: spec.allowed.dnsNames.values: Invalid value: \"denied-tls.example.com\"])"
    );
    // Revision 4 is latest although revision 3 was created later; InvalidRequest=True.
    assert!(
        msg(&r, "Certificate/web/bad-csr-tls").ends_with(
            "; latest CertificateRequest bad-csr-tls-4 (revision 4): InvalidRequest True: RequestValidation \
             (spec.request: Invalid value: []byte{...}: CSR is missing a subject alternative name)"
        ),
        "{}",
        msg(&r, "Certificate/web/bad-csr-tls")
    );
    // No revisions: the newest request (Pending) counts, not the older invalid one.
    assert_eq!(
        msg(&r, "Certificate/web/new-tls"),
        "certificate has no status.notAfter: it has not been issued yet; \
         latest CertificateRequest new-tls-8jzk5: Ready False: Pending \
         (Waiting on certificate issuance from order web/new-tls-8jzk5-1441870392: \"pending\")"
    );
}

/// Issue 12: an events finding that repeats a pod or node finding is folded into it.
#[test]
fn event_findings_about_reported_pods_and_nodes_fold_into_those_findings() {
    let s = load(&["pods.json", "nodes.json", "events.yaml"]);
    let results = checks::run_all(&s, &ChecksConfig::default(), now());
    let check = |name: &str| results.iter().find(|r| r.name == name).unwrap();
    let events = check("events");
    // crashy (crash loop), pending-long (Pending) and node-b (NotReady) are all reported
    // by their own checks: nothing is left in events.
    assert_eq!(owned(events), vec![]);
    assert_eq!(events.severity, Severity::Ok);
    assert_eq!(
        events.summary,
        "6 events, 4 Warning events in the last 1d 0h on 3 object/reason pairs, 3 folded into pod and node findings"
    );
    let finding = |check_name: &str, object: &str| {
        check(check_name)
            .findings
            .iter()
            .find(|f| f.object.to_string() == object)
            .unwrap()
            .clone()
    };
    let crashy = finding("pods", "Pod/default/crashy");
    assert_eq!(crashy.code, "crash_loop_back_off");
    assert!(
        crashy.message.ends_with("; Warning events: BackOff"),
        "{}",
        crashy.message
    );
    // The newest BackOff: series.lastObservedTime two minutes before now.
    assert_eq!(
        crashy.times.get("last_event").map(|t| t.to_string()),
        Some("2025-06-01T11:58:00Z".to_string())
    );
    let pending = finding("pods", "Pod/default/pending-long");
    assert!(
        pending
            .message
            .ends_with("; Warning events: FailedScheduling"),
        "{}",
        pending.message
    );
    let node = finding("nodes", "Node/node-b");
    assert_eq!(node.code, "node_not_ready");
    assert!(
        node.message.ends_with("; Warning events: NodeNotReady"),
        "{}",
        node.message
    );
    // Without the pods and nodes checks' findings, the events stay.
    let events_only = load(&["events.yaml"]);
    let results = checks::run_all(&events_only, &ChecksConfig::default(), now());
    let events = results.iter().find(|r| r.name == "events").unwrap();
    assert_eq!(events.findings.len(), 3);
}
