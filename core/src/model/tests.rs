use caretaker_proto::pb;

use super::*;

/// A corruption of a wire message, the field the error must name, and what it must say.
type Case<T> = (Box<dyn Fn(&mut T)>, &'static str, &'static str);

pub(crate) fn sample_report() -> NodeReport {
    NodeReport {
        node_name: "node-a".into(),
        epoch: 1_700_000_000_000_000_000,
        seq: 7,
        collected_at: "2026-11-29T03:00:00Z".parse().unwrap(),
        report_interval_ms: 10_000,
        host: Host {
            cpu_count: 2,
            cpu_usage_percent: 12.5,
            memory_total_bytes: 1 << 30,
            ..Host::default()
        },
        filesystems: vec![Filesystem {
            device: "/dev/vda".into(),
            fstype: "ext4".into(),
            mountpoint: "/".into(),
            mountpoints: vec!["/".into(), "/mnt/bind".into()],
            device_id: "254:0".into(),
            read_only: false,
            size_bytes: 1000,
            free_bytes: 400,
            avail_bytes: 300,
            files: 0,
            files_free: 0,
            used_percent: 66.66666666666667,
            files_used_percent: None,
            stale: false,
        }],
        network: vec![NetworkInterface {
            device: "eth0".into(),
            receive_bytes_total: 10,
            rates: Some(NetworkRates {
                receive_bytes_per_second: 1.5,
                ..NetworkRates::default()
            }),
            ..NetworkInterface::default()
        }],
        agent: AgentCost {
            rss_bytes: 5 << 20,
            cpu_seconds_total: 0.25,
            ..AgentCost::default()
        },
        logs: Some(sample_logs()),
        errors: vec![CollectorError {
            collector: "network".into(),
            place: "/proc/net/dev:3".into(),
            message: "x".into(),
        }],
        images: Some(sample_images()),
        volumes: vec![sample_volume()],
        log_check: None,
    }
}

pub(crate) fn sample_images() -> ImagesSummary {
    ImagesSummary {
        dry_run: true,
        checked_at: "2026-11-29T02:59:30Z".parse().unwrap(),
        runtimes: vec![RuntimeImages {
            runtime: "docker".into(),
            image_fs_mountpoint: "/var/lib/docker".into(),
            image_fs_used_percent: Some(87.5),
            images_total: 12,
            images_unused: 5,
            reclaimable_bytes: 3 << 30,
            last_prune: Some(PruneRun {
                started_at: "2026-11-29T02:00:00Z".parse().unwrap(),
                trigger: PruneTrigger::DiskPressure,
                dry_run: true,
                removed: 3,
                removed_bytes: 2 << 30,
                kept: KeptCounts {
                    in_use: 7,
                    pinned: 0,
                    young: 1,
                    keep_list: 1,
                    below_threshold: 0,
                },
                failed: 0,
                waiting_for_window_until: None,
            }),
            removed_total: 0,
            removed_bytes_total: 0,
        }],
        errors: vec![CollectorError {
            collector: "images".into(),
            place: "/run/containerd/containerd.sock".into(),
            message: "cannot connect".into(),
        }],
    }
}

pub(crate) fn sample_volume() -> VolumeMount {
    let mp = "/var/lib/kubelet/pods/0b1c-22/volumes/kubernetes.io~csi/pvc-123/mount";
    VolumeMount {
        pod_uid: "0b1c-22".into(),
        plugin: "kubernetes.io~csi".into(),
        name: "pvc-123".into(),
        filesystem: Filesystem {
            device: "/dev/rbd0".into(),
            fstype: "ext4".into(),
            mountpoint: mp.into(),
            mountpoints: vec![mp.into()],
            device_id: "252:0".into(),
            read_only: false,
            size_bytes: 10 << 30,
            free_bytes: 4 << 30,
            avail_bytes: 4 << 30,
            files: 100,
            files_free: 90,
            used_percent: 60.0,
            files_used_percent: Some(10.0),
            stale: false,
        },
    }
}

#[test]
fn node_report_round_trips_through_the_wire_type() {
    let r = sample_report();
    let back = NodeReport::try_from(pb::NodeReport::from(r.clone())).unwrap();
    assert_eq!(back, r);
}

#[test]
fn a_report_without_images_and_volumes_round_trips_and_old_json_still_parses() {
    let mut r = sample_report();
    r.images = None;
    r.volumes.clear();
    let wire = pb::NodeReport::from(r.clone());
    assert_eq!((wire.images.is_none(), wire.volumes.len()), (true, 0));
    assert_eq!(NodeReport::try_from(wire).unwrap(), r);
    // JSON written before these fields existed.
    let mut v = serde_json::to_value(&r).unwrap();
    let obj = v.as_object_mut().unwrap();
    assert!(obj.get("images").is_none());
    obj.remove("volumes");
    let back: NodeReport = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

#[test]
fn invalid_images_and_volumes_are_rejected_naming_the_field() {
    let cases: Vec<Case<pb::NodeReport>> = vec![
        (
            Box::new(|p| {
                p.images.as_mut().unwrap().runtimes[0].image_fs_used_percent = Some(101.0)
            }),
            "images.runtimes[0].image_fs_used_percent",
            "101 is outside 0..=100",
        ),
        (
            Box::new(|p| p.images.as_mut().unwrap().runtimes[0].images_unused = 13),
            "images.runtimes[0].images_unused",
            "13 is more than images_total 12",
        ),
        (
            Box::new(|p| p.images.as_mut().unwrap().runtimes[0].runtime.clear()),
            "images.runtimes[0].runtime",
            "empty",
        ),
        (
            Box::new(|p| {
                p.images.as_mut().unwrap().runtimes[0]
                    .last_prune
                    .as_mut()
                    .unwrap()
                    .trigger = 9
            }),
            "images.runtimes[0].last_prune.trigger",
            "unknown value 9",
        ),
        (
            Box::new(|p| {
                p.images.as_mut().unwrap().runtimes[0]
                    .last_prune
                    .as_mut()
                    .unwrap()
                    .trigger = 0
            }),
            "images.runtimes[0].last_prune.trigger",
            "unknown value 0",
        ),
        (
            Box::new(|p| p.images.as_mut().unwrap().checked_at = None),
            "images.checked_at",
            "missing",
        ),
        (
            Box::new(|p| {
                let r = p.images.as_ref().unwrap().runtimes[0].clone();
                p.images.as_mut().unwrap().runtimes = vec![r; MAX_RUNTIMES + 1];
            }),
            "images.runtimes",
            "9 entries, at most 8 allowed",
        ),
        (
            Box::new(|p| p.volumes[0].name.clear()),
            "volumes[0].name",
            "empty",
        ),
        (
            Box::new(|p| p.volumes[0].pod_uid.clear()),
            "volumes[0].pod_uid",
            "empty",
        ),
        (
            Box::new(|p| p.volumes[0].filesystem = None),
            "volumes[0].filesystem",
            "missing",
        ),
        (
            Box::new(|p| p.volumes[0].filesystem.as_mut().unwrap().used_percent = -1.0),
            "volumes[0].filesystem.used_percent",
            "-1 is outside 0..=100",
        ),
    ];
    for (break_it, field, reason) in cases {
        let mut p = pb::NodeReport::from(sample_report());
        break_it(&mut p);
        let err = NodeReport::try_from(p).unwrap_err();
        assert_eq!((err.field.as_str(), err.reason.as_str()), (field, reason));
    }
}

#[test]
fn images_and_volumes_json_use_snake_case_names() {
    let v = serde_json::to_value(sample_report()).unwrap();
    let rt = &v["images"]["runtimes"][0];
    assert_eq!(v["images"]["dry_run"], true);
    assert_eq!(v["images"]["checked_at"], "2026-11-29T02:59:30Z");
    assert_eq!(rt["runtime"], "docker");
    assert_eq!(rt["image_fs_mountpoint"], "/var/lib/docker");
    assert_eq!(rt["image_fs_used_percent"], 87.5);
    assert_eq!(
        (rt["images_total"].as_u64(), rt["images_unused"].as_u64()),
        (Some(12), Some(5))
    );
    assert_eq!(rt["reclaimable_bytes"], 3u64 << 30);
    assert_eq!(rt["last_prune"]["trigger"], "disk_pressure");
    assert_eq!(rt["last_prune"]["kept"]["in_use"], 7);
    assert_eq!(rt["last_prune"]["kept"]["keep_list"], 1);
    assert_eq!(rt["removed_bytes_total"], 0);
    let vol = &v["volumes"][0];
    assert_eq!(
        (
            vol["pod_uid"].as_str(),
            vol["plugin"].as_str(),
            vol["name"].as_str()
        ),
        (Some("0b1c-22"), Some("kubernetes.io~csi"), Some("pvc-123"))
    );
    assert_eq!(vol["filesystem"]["size_bytes"], 10u64 << 30);
    let back: NodeReport = serde_json::from_value(v).unwrap();
    assert_eq!(back, sample_report());
}

#[test]
fn nan_percentage_is_rejected_naming_the_field() {
    let mut p = pb::NodeReport::from(sample_report());
    p.filesystems[0].used_percent = f64::NAN;
    let err = NodeReport::try_from(p).unwrap_err();
    assert_eq!(err.field, "filesystems[0].used_percent");
    assert_eq!(
        err.to_string(),
        "invalid filesystems[0].used_percent: NaN is not a finite number"
    );
}

#[test]
fn partial_rates_are_rejected() {
    let mut p = pb::NodeReport::from(sample_report());
    p.network[0].transmit_bytes_per_second = None;
    let err = NodeReport::try_from(p).unwrap_err();
    assert_eq!(err.field, "network[0].receive_bytes_per_second");
}

#[test]
fn bad_node_names_are_rejected() {
    assert!(validate_node_name("node-1.example").is_ok());
    assert_eq!(validate_node_name("").unwrap_err().reason, "empty");
    assert!(validate_node_name("a/b").is_err());
    assert!(validate_node_name("a b").is_err());
    assert!(validate_node_name(&"x".repeat(254)).is_err());
}

#[test]
fn json_uses_node_exporter_names_and_omits_absent_inode_percent() {
    let v = serde_json::to_value(sample_report()).unwrap();
    let fs = &v["filesystems"][0];
    for k in [
        "device",
        "fstype",
        "mountpoint",
        "size_bytes",
        "free_bytes",
        "avail_bytes",
        "files",
        "files_free",
        "used_percent",
    ] {
        assert!(fs.get(k).is_some(), "missing {k}");
    }
    assert!(fs.get("files_used_percent").is_none());
    assert_eq!(v["network"][0]["receive_bytes_total"], 10);
    assert_eq!(v["network"][0]["rates"]["receive_bytes_per_second"], 1.5);
    assert_eq!(v["collected_at"], "2026-11-29T03:00:00Z");
}

pub(crate) fn sample_logs() -> LogsSummary {
    let pass = LogCounts {
        files_checked: 40,
        rotated: 2,
        rotated_bytes: 300 << 20,
        compressed: 2,
        compressed_bytes_before: 300 << 20,
        compressed_bytes_after: 30 << 20,
        deleted: 1,
        deleted_bytes: 20 << 20,
        errors: 1,
    };
    let mut totals = pass;
    totals.add(&LogCounts {
        files_checked: 4000,
        rotated: 10,
        rotated_bytes: 1 << 30,
        deleted: 3,
        errors: 1,
        ..LogCounts::default()
    });
    LogsSummary {
        checked_at: "2026-11-29T02:59:50Z".parse().unwrap(),
        last_pass: pass,
        totals,
        reclaimable_bytes: 700 << 20,
        reclaimable_at: Some("2026-11-29T02:59:00Z".parse().unwrap()),
        errors: vec![CollectorError {
            collector: "logs".into(),
            place: "/etc/logrotate.d/app:3".into(),
            message: "unknown directive \"rotat\"".into(),
        }],
        owned_elsewhere: vec![
            OwnedLog {
                path: "/var/log/pods/shop_api-1_uid/api/0.log".into(),
                owner: "kubelet".into(),
            },
            OwnedLog {
                path: "/var/log/syslog".into(),
                owner: "logrotate (/etc/logrotate.d/rsyslog:1)".into(),
            },
        ],
        owned_elsewhere_total: 3,
    }
}

#[test]
fn logs_summary_round_trips_and_a_report_without_it_still_parses() {
    let r = sample_report();
    assert_eq!(
        NodeReport::try_from(pb::NodeReport::from(r.clone())).unwrap(),
        r
    );
    let mut without = r.clone();
    without.logs = None;
    let wire = pb::NodeReport::from(without.clone());
    assert!(wire.logs.is_none());
    assert_eq!(NodeReport::try_from(wire).unwrap(), without);
    // JSON written before the field existed.
    let v = serde_json::to_value(&without).unwrap();
    assert!(v.get("logs").is_none());
    assert_eq!(serde_json::from_value::<NodeReport>(v).unwrap(), without);
}

#[test]
fn invalid_logs_summaries_are_rejected_naming_the_field() {
    let cases: Vec<Case<pb::LogsSummary>> = vec![
        (
            Box::new(|l| l.checked_at = None),
            "logs.checked_at",
            "missing",
        ),
        (Box::new(|l| l.totals = None), "logs.totals", "missing"),
        (
            Box::new(|l| l.last_pass = None),
            "logs.last_pass",
            "missing",
        ),
        (
            Box::new(|l| l.last_pass.as_mut().unwrap().rotated = 13),
            "logs.last_pass.rotated",
            "13 is more than totals.rotated 12",
        ),
        (
            Box::new(|l| l.errors = vec![l.errors[0].clone(); MAX_ERRORS + 1]),
            "logs.errors",
            "257 entries, at most 256 allowed",
        ),
        (
            Box::new(|l| {
                l.owned_elsewhere = vec![l.owned_elsewhere[0].clone(); MAX_OWNED_LISTED + 1]
            }),
            "logs.owned_elsewhere",
            "101 entries, at most 100 allowed",
        ),
        (
            Box::new(|l| {
                l.reclaimable_at = Some(prost_types::Timestamp {
                    seconds: i64::MAX,
                    nanos: 0,
                })
            }),
            "logs.reclaimable_at",
            "",
        ),
    ];
    for (break_it, field, reason) in cases {
        let mut p = pb::NodeReport::from(sample_report());
        break_it(p.logs.as_mut().unwrap());
        let err = NodeReport::try_from(p).unwrap_err();
        assert_eq!(err.field, field);
        assert!(err.reason.starts_with(reason), "{field}: {}", err.reason);
    }
}

#[test]
fn logs_json_uses_snake_case_names() {
    let v = serde_json::to_value(sample_report()).unwrap();
    let l = &v["logs"];
    assert_eq!(l["checked_at"], "2026-11-29T02:59:50Z");
    assert_eq!(l["reclaimable_bytes"], 700u64 << 20);
    assert_eq!(l["reclaimable_at"], "2026-11-29T02:59:00Z");
    let p = &l["last_pass"];
    for (k, want) in [
        ("files_checked", 40u64),
        ("rotated", 2),
        ("rotated_bytes", 300 << 20),
        ("compressed", 2),
        ("compressed_bytes_before", 300 << 20),
        ("compressed_bytes_after", 30 << 20),
        ("deleted", 1),
        ("deleted_bytes", 20 << 20),
        ("errors", 1),
    ] {
        assert_eq!(p[k].as_u64(), Some(want), "last_pass.{k}");
    }
    assert_eq!(l["totals"]["rotated"], 12);
    assert_eq!(l["totals"]["files_checked"], 4040);
    assert_eq!(l["errors"][0]["place"], "/etc/logrotate.d/app:3");
    assert_eq!(l["errors"][0]["collector"], "logs");
}
