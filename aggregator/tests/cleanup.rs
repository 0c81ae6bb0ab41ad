//! Cleanup proposals on a dump (fixtures/cleanup.json, see generate.py for each object's role).

use std::path::PathBuf;

use caretaker_aggregator::cleanup::{
    Action, CleanupConfig, CleanupKind, Propagation, propose, propose_with_notes,
};
use caretaker_aggregator::cluster::{ClusterState, dump};
use jiff::Timestamp;

fn now() -> Timestamp {
    "2025-06-01T12:00:00Z".parse().unwrap()
}

fn load() -> ClusterState {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    dump::load(&[
        dir.join("cleanup.json"),
        dir.join("cleanup-empty-lists.json"),
    ])
    .unwrap()
}

fn rows(c: &CleanupConfig) -> Vec<(String, Action, String)> {
    propose(&load(), c, now())
        .into_iter()
        .map(|p| (p.code, p.action, p.object.to_string()))
        .collect()
}

fn r(code: &str, a: Action, o: &str) -> (String, Action, String) {
    (code.into(), a, o.into())
}

use Action::{Delete, Report};

#[test]
fn proposals_follow_every_rule_and_never_touch_what_is_referenced() {
    assert_eq!(
        rows(&CleanupConfig::default()),
        vec![
            // Completed over 24h ago; nightly-3/4 are kept by the CronJob's limit of 2.
            r("completed_job", Delete, "Job/default/job-old-done"),
            r("completed_job", Delete, "Job/default/nightly-1"),
            r("completed_job", Delete, "Job/default/nightly-2"),
            // Revisions 8..4 kept (8 despite its old creation time), 2 has a terminating
            // pod, the ownerless one is never proposed.
            r("old_replica_set", Delete, "ReplicaSet/default/web-rev3"),
            r("failed_pod", Delete, "Pod/default/evicted-old"),
            r(
                "excess_volume_snapshot",
                Delete,
                "VolumeSnapshot/data/db-snap-01"
            ),
            r(
                "excess_volume_snapshot",
                Delete,
                "VolumeSnapshot/data/db-snap-00"
            ),
            // cm-old-rs was referenced only by web-rev3, deleted in the same run. The
            // projected, init-container env, Deployment and CronJob template references keep
            // theirs; young, kube-root-ca.crt, kube-system, Helm and keep-annotated are skipped.
            r("unused_config_map", Delete, "ConfigMap/default/cm-old-rs"),
            r("unused_config_map", Delete, "ConfigMap/default/cm-orphan"),
            // Helm-managed: reported with what to do in Helm, never deleted.
            r("unused_config_map", Report, "ConfigMap/default/cm-helm"),
            // imagePullSecrets, projected and service account references keep theirs; the
            // token Secret is never proposed; Secrets are reported by default.
            r("unused_secret", Report, "Secret/default/secret-unused"),
            r(
                "unused_pvc",
                Report,
                "PersistentVolumeClaim/default/pvc-unused"
            ),
            r(
                "unbound_pvc",
                Report,
                "PersistentVolumeClaim/default/pvc-unbound"
            ),
        ]
    );
}

#[test]
fn jobs_and_failed_pods_are_deleted_with_background_propagation_and_their_uid() {
    let p = propose(
        &load(),
        &CleanupConfig {
            kinds: vec![CleanupKind::Job, CleanupKind::Pod],
            ..Default::default()
        },
        now(),
    );
    assert_eq!(p.len(), 4);
    assert!(
        p.iter()
            .all(|p| p.propagation == Some(Propagation::Background))
    );
    assert_eq!(
        p[0].object.uid.as_deref(),
        Some("0b6e5f0c-1111-4a2b-9c3d-000000000078")
    );
    assert_eq!(p[0].message, "completed 2025-05-30T12:00:00Z");
    assert_eq!(
        p[0].times
            .get("completed")
            .map(ToString::to_string)
            .as_deref(),
        Some("2025-05-30T12:00:00Z")
    );
}

/// Messages name moments, never ages: the same proposal a month later says the same, so
/// `report --diff` shows only real changes.
#[test]
fn a_proposal_says_the_same_at_every_now() {
    let state = load();
    let later = now() + jiff::SignedDuration::from_hours(24 * 30);
    let key = |p: &caretaker_aggregator::cleanup::Proposal| (p.code.clone(), p.object.to_string());
    let before: std::collections::BTreeMap<_, _> =
        propose(&state, &CleanupConfig::default(), now())
            .into_iter()
            .map(|p| (key(&p), p))
            .collect();
    let after = propose(&state, &CleanupConfig::default(), later);
    let mut compared = 0;
    for p in &after {
        if let Some(b) = before.get(&key(p)) {
            assert_eq!(b.message, p.message, "{:?}", key(p));
            assert_eq!(b.times, p.times, "{:?}", key(p));
            compared += 1;
        }
    }
    // Every rule with an age in its message is among them.
    let codes: std::collections::BTreeSet<&str> = after.iter().map(|p| p.code.as_str()).collect();
    for code in [
        "completed_job",
        "failed_pod",
        "unused_config_map",
        "unused_secret",
        "unused_pvc",
        "unbound_pvc",
    ] {
        assert!(codes.contains(code), "{code} not proposed");
    }
    assert_eq!(
        compared,
        before.len(),
        "every proposal of the first run is proposed later too"
    );
    let pvc = after.iter().find(|p| p.code == "unbound_pvc").unwrap();
    let created = pvc.times["created"];
    assert_eq!(
        pvc.message,
        format!("claim unbound since it was created at {created}")
    );
}

#[test]
fn config_map_referenced_by_a_kept_replica_set_is_kept_when_replica_sets_are_not_cleaned() {
    let c = CleanupConfig {
        kinds: vec![CleanupKind::ConfigMap],
        ..Default::default()
    };
    assert_eq!(
        rows(&c),
        vec![
            r("unused_config_map", Delete, "ConfigMap/default/cm-orphan"),
            r("unused_config_map", Report, "ConfigMap/default/cm-helm")
        ]
    );
}

#[test]
fn keep_counts_and_secret_deletion_come_from_config() {
    let c = CleanupConfig {
        kinds: vec![
            CleanupKind::ReplicaSet,
            CleanupKind::VolumeSnapshot,
            CleanupKind::Secret,
        ],
        replica_sets_keep: 3,
        snapshots_keep: 11,
        delete_unused_secrets: true,
        ..Default::default()
    };
    assert_eq!(
        rows(&c),
        vec![
            r("old_replica_set", Delete, "ReplicaSet/default/web-rev5"),
            r("old_replica_set", Delete, "ReplicaSet/default/web-rev4"),
            r("old_replica_set", Delete, "ReplicaSet/default/web-rev3"),
            r(
                "excess_volume_snapshot",
                Delete,
                "VolumeSnapshot/data/db-snap-00"
            ),
            r("unused_secret", Delete, "Secret/default/secret-unused"),
        ]
    );
}

#[test]
fn references_unknown_means_no_config_map_proposals() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    // Without the StatefulSet and DaemonSet lists, their templates' references are unknown.
    let s = dump::load(&[dir.join("cleanup.json")]).unwrap();
    let p = propose_with_notes(
        &s,
        &CleanupConfig {
            kinds: vec![CleanupKind::ConfigMap],
            ..Default::default()
        },
        now(),
    );
    assert!(p.proposals.is_empty());
    assert_eq!(
        p.notes,
        vec![
            "unused_config_map not proposed: what it needs to know is incomplete, these lists were not listed completely: statefulsets.apps (not listed), daemonsets.apps (not listed)"
        ]
    );
}

#[test]
fn cleanup_kind_accepts_kubectl_names() {
    let k: Vec<CleanupKind> = ["cm", "ReplicaSet", "jobs", "pvc", "VS"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(
        k,
        vec![
            CleanupKind::ConfigMap,
            CleanupKind::ReplicaSet,
            CleanupKind::Job,
            CleanupKind::PersistentVolumeClaim,
            CleanupKind::VolumeSnapshot
        ]
    );
    assert!(
        "deployment"
            .parse::<CleanupKind>()
            .unwrap_err()
            .to_string()
            .starts_with("unknown kind \"deployment\"")
    );
}
