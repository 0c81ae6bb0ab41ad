//! Merged-report query cost at 5,000 nodes and the history's size for a year of daily
//! reports of 500 nodes.
//!
//! ```sh
//! cargo bench -p caretaker-aggregator --bench bench-report [-- --nodes 5000 --queries 200 --history-nodes 500 --days 365]
//! ```
//!
//! 1. An in-memory state holds `nodes` synthetic node reports (8 filesystems, 4 interfaces
//!    each) and a round of checks with 1,000 findings; `queries` times it builds the merged
//!    report as JSON the way `GET /api/v1/report` does (`State::cluster_report_json_parts`:
//!    merge + finding history + serialization, the node reports being pieces of JSON kept
//!    since they were stored, sent without copying), and renders the HTML page (`State::cluster_report` + the page); p50/p99
//!    are printed.
//! 2. A history on disk records `days` daily merged reports of `history-nodes` nodes whose
//!    figures drift a little every day (as real ones do); the time to record them, the time
//!    to read them all back (`History::between`: decompression and parsing) and the store
//!    file's size are printed, with the reports' JSON size, the compression ratio and the
//!    median time to compress and to decompress one report's JSON (the history codec alone,
//!    measured on each recorded report after it was recorded).

use std::time::{Duration, Instant};

use caretaker_aggregator::checks::{CheckResult, Finding, ObjectRef, Severity};
use caretaker_aggregator::report::{self, CheckRound, MergeConfig};
use caretaker_aggregator::state::State;
use caretaker_aggregator::store::history::{self, History, Retention};
use caretaker_aggregator::store::{STORE_FILE, Store, StoredNode};
use caretaker_core::model::{
    AgentCost, Filesystem, Host, NetworkInterface, NetworkRates, NodeReport,
};
use jiff::Timestamp;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn node_report(i: u64, day: u64, at: Timestamp) -> NodeReport {
    let used = 30.0 + ((i * 7 + day) % 60) as f64;
    NodeReport {
        node_name: format!("node-{i:05}"),
        epoch: 1,
        seq: day + 1,
        collected_at: at,
        report_interval_ms: 10_000,
        logs: None,
        host: Host {
            kernel_version: "6.1.0-26-amd64".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            architecture: "x86_64".into(),
            uptime_seconds: 86_400 * (day + 1),
            cpu_count: 8,
            cpu_usage_percent: (i % 100) as f64,
            load1: 1.5,
            load5: 1.2,
            load15: 1.0,
            memory_total_bytes: 32 << 30,
            memory_available_bytes: (8 + i % 16) << 30,
            swap_total_bytes: 0,
            swap_free_bytes: 0,
        },
        filesystems: (0..8)
            .map(|f| Filesystem {
                device: format!("/dev/nvme0n1p{f}"),
                fstype: "ext4".into(),
                mountpoint: if f == 0 {
                    "/".into()
                } else {
                    format!("/var/lib/vol{f}")
                },
                mountpoints: vec![if f == 0 {
                    "/".into()
                } else {
                    format!("/var/lib/vol{f}")
                }],
                device_id: format!("259:{f}"),
                read_only: false,
                size_bytes: 200 << 30,
                free_bytes: ((100.0 - used) * 2.0) as u64 * (1 << 30),
                avail_bytes: ((100.0 - used) * 2.0) as u64 * (1 << 30),
                files: 13_107_200,
                files_free: 12_000_000,
                used_percent: used,
                files_used_percent: Some(8.4),
                stale: false,
            })
            .collect(),
        network: (0..4)
            .map(|n| NetworkInterface {
                device: format!("eth{n}"),
                receive_bytes_total: 1_000_000_000 * (day + 1) + i,
                receive_packets_total: 1_000_000 * (day + 1),
                transmit_bytes_total: 500_000_000 * (day + 1) + i,
                transmit_packets_total: 700_000 * (day + 1),
                rates: Some(NetworkRates {
                    receive_bytes_per_second: 12_345.0,
                    transmit_bytes_per_second: 6_789.0,
                    receive_packets_per_second: 120.0,
                    transmit_packets_per_second: 80.0,
                }),
                ..NetworkInterface::default()
            })
            .collect(),
        agent: AgentCost {
            rss_bytes: 9 << 20,
            cpu_seconds_total: 12.5,
            ..AgentCost::default()
        },
        errors: vec![],
        images: None,
        volumes: vec![],
        log_check: None,
    }
}

fn round(findings: usize) -> CheckRound {
    let f = (0..findings)
        .map(|i| {
            Finding::new(
                "crash_loop_back_off",
                if i % 10 == 0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                ObjectRef {
                    kind: "Pod".into(),
                    namespace: Some(format!("ns-{}", i % 50)),
                    name: format!("pod-{i}"),
                    uid: None,
                },
                format!("container app is in CrashLoopBackOff ({i} restarts)"),
            )
        })
        .collect();
    CheckRound {
        at: Some(Timestamp::now()),
        checks: vec![CheckResult::new("pods", "synthetic", f)],
        ..CheckRound::default()
    }
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p = |q: f64| {
        ms(v[((v.len() as f64 * q).ceil() as usize)
            .saturating_sub(1)
            .min(v.len() - 1)])
    };
    (p(0.5), p(0.99), ms(v[v.len() - 1]))
}

fn main() -> anyhow::Result<()> {
    let nodes = arg("--nodes", 5000);
    let queries = arg("--queries", 200) as usize;
    let history_nodes = arg("--history-nodes", 500);
    let days = arg("--days", 365);

    // 1. Query cost.
    let state = State::new(Store::in_memory()?, 3)?;
    let now = Timestamp::now();
    for i in 0..nodes {
        state.ingest(&node_report(i, 0, now), now)?;
    }
    state.set_round(round(1000));
    let mut json_times = Vec::with_capacity(queries);
    let mut bytes = 0;
    for _ in 0..queries {
        let t = Instant::now();
        let body = state.cluster_report_json_parts(Timestamp::now());
        json_times.push(t.elapsed());
        bytes = body.iter().map(|b| b.len()).sum();
    }
    let (p50, p99, max) = percentiles(json_times);
    println!(
        "merged report, {nodes} nodes, 1000 findings, JSON ({:.1} MiB), {queries} queries:",
        bytes as f64 / 1048576.0
    );
    println!("  p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");
    let mut html_times = Vec::with_capacity(queries);
    for _ in 0..queries.min(50) {
        let t = Instant::now();
        let r = state.cluster_report(Timestamp::now());
        let page = report::render(&r, report::Output::Html)?;
        html_times.push(t.elapsed());
        bytes = page.len();
    }
    let (p50, p99, max) = percentiles(html_times);
    println!(
        "merged report rendered as the HTML page ({:.1} MiB), {} renders:",
        bytes as f64 / 1048576.0,
        queries.min(50)
    );
    println!("  p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");

    // 2. History size.
    let dir = std::env::temp_dir().join(format!("caretaker-bench-report-{}", std::process::id()));
    let store = Store::open(&dir)?;
    let history = History::new(store.database(), Retention::default())?;
    let start = Timestamp::now() - Duration::from_secs(days * 86_400);
    let t = Instant::now();
    let mut stored = 0u64;
    let mut json_bytes = 0u64;
    let mut compress_times = Vec::with_capacity(days as usize);
    let mut decompress_times = Vec::with_capacity(days as usize);
    let mut codec_in = Duration::ZERO;
    for day in 0..days {
        let at = start + Duration::from_secs(day * 86_400);
        let entries: Vec<StoredNode> = (0..history_nodes)
            .map(|i| StoredNode {
                report: node_report(i, day, at),
                received_at: at,
                reports_stored_total: day + 1,
            })
            .collect();
        let mut r = report::merge(&entries, &round(200), &MergeConfig::default(), at);
        stored += history.record(&mut r)?.stored_bytes;
        // The JSON `record` stored (it fills the findings' history in `r` first), through
        // the codec alone; excluded from the recording time.
        let c = Instant::now();
        let json = serde_json::to_vec(&r)?;
        json_bytes += json.len() as u64;
        let t = Instant::now();
        let frame = history::compress(&json)?;
        compress_times.push(t.elapsed());
        let t = Instant::now();
        let back = history::decompress(&frame, history::MAX_REPORT_JSON_BYTES)?;
        decompress_times.push(t.elapsed());
        anyhow::ensure!(
            back == json,
            "day {day}: the report does not decode to its JSON"
        );
        codec_in += c.elapsed();
    }
    let recorded_in = t.elapsed() - codec_in;
    let t = Instant::now();
    let read = history.between(start, Timestamp::now())?.len();
    let read_in = t.elapsed();
    drop(history);
    drop(store);
    let file = std::fs::metadata(dir.join(STORE_FILE))?.len();
    std::fs::remove_dir_all(&dir)?;
    println!(
        "history: {days} daily reports of {history_nodes} nodes recorded in {:.1} s, {read} read back (decompressed and parsed) in {:.2} s",
        recorded_in.as_secs_f64(),
        read_in.as_secs_f64()
    );
    println!(
        "  compressed reports {:.1} MiB, store file {:.1} MiB (goal ≤ 1024 MiB)",
        stored as f64 / 1048576.0,
        file as f64 / 1048576.0
    );
    let (c50, c99, _) = percentiles(compress_times);
    let (d50, d99, _) = percentiles(decompress_times);
    println!(
        "  report JSON {:.1} MiB ({:.0} KiB each), ratio {:.2}; per report: compress p50 {c50:.2} ms (p99 {c99:.2}), decompress p50 {d50:.2} ms (p99 {d99:.2})",
        json_bytes as f64 / 1048576.0,
        json_bytes as f64 / days.max(1) as f64 / 1024.0,
        json_bytes as f64 / stored.max(1) as f64,
    );
    Ok(())
}
