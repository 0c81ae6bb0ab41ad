//! The daily log check, side by side with the seed script's method in the same run.
//!
//! ```sh
//! cargo bench -p caretaker-agent --bench logcheck                 # 1 GiB, 3 runs
//! BENCH_MB=256 BENCH_RUNS=5 cargo bench -p caretaker-agent --bench logcheck
//! ```
//! Generates BENCH_MB of CRI log lines (kubelet format, all inside the 24 h window) in
//! 16 container log directories under a temporary `/var/log/pods`, then times, alternating:
//! 1. the seed's method: four `grep -c -i` passes over the same files (once in the
//!    environment's locale, as the script runs, and once with `LC_ALL=C`, grep's fastest);
//! 2. caretaker's one pass producing all four counts (`logcheck::check::check_once`).
//!
//! The files are read once before timing, so both read from the page cache. The counts of
//! both methods are compared (every generated record is a full `F` line in the window, so
//! they must agree exactly). Medians are printed with each run's figures.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use caretaker_agent::logcheck::check;
use caretaker_agent::logcheck::matcher::{Matcher, default_patterns};
use caretaker_agent::logcheck::scan::Window;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

const MESSAGES: &[&str] = &[
    "GET /api/v1/items?page=3 status=200 took 12ms user_agent=\"kube-probe/1.30\" request_id=7f3a9c",
    "POST /api/v1/orders status=201 took 48ms bytes=1832 upstream=orders-svc:8080 trace=ab12cd34",
    "level=info msg=\"reconciled object\" controller=deployment namespace=shop name=api duration=3.2ms",
    "{\"ts\":\"2026-12-04T10:00:00Z\",\"level\":\"info\",\"msg\":\"cache refreshed\",\"entries\":18234,\"took_ms\":91}",
    "I1204 10:00:00.123456       1 leaderelection.go:258] successfully acquired lease kube-system/lock",
    "level=debug msg=\"connection pool stats\" idle=12 in_use=3 wait_count=0 wait_duration=0s max_open=50",
    "GET /healthz status=200 took 0ms",
    "level=error msg=\"upstream timed out\" upstream=payments-svc:8443 attempt=3 err=\"context deadline exceeded\"",
    "WARN slow query detected: SELECT * FROM orders WHERE customer_id = $1 took 2304ms",
    "sshd[812]: Authentication failed for user deploy from 10.0.3.7 port 52344",
    "GET /api/v1/cart status=503 took 5002ms upstream=cart-svc error=\"no healthy upstream\"",
    "GET /api/v1/users/42 status=404 took 2ms",
];
/// Per thousand lines, how often each message above is written.
const WEIGHTS: &[u64] = &[400, 150, 150, 100, 60, 60, 24, 15, 20, 5, 8, 8];

fn generate(root: &Path, total_bytes: u64) -> Vec<PathBuf> {
    let containers = 16;
    let per = total_bytes / containers;
    let now = jiff::Timestamp::now().as_second();
    let mut rng = Lcg(42);
    let mut files = Vec::new();
    for c in 0..containers {
        let dir = root.join(format!("ns{}_pod-{c}_uid-{c}/app", c % 4));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("0.log");
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&path).unwrap());
        let mut written = 0u64;
        let mut t = now - 20 * 3600;
        while written < per {
            let mut pick = rng.next(1000);
            let mut i = 0;
            while pick >= WEIGHTS[i] {
                pick -= WEIGHTS[i];
                i += 1;
            }
            t += i64::from(rng.next(3) == 0);
            let ts = jiff::Timestamp::from_second(t.min(now - 1)).unwrap();
            let stream = if i >= 7 { "stderr" } else { "stdout" };
            let line = format!(
                "{}.{:09}Z {stream} F {}\n",
                ts.strftime("%Y-%m-%dT%H:%M:%S"),
                rng.next(1_000_000_000),
                MESSAGES[i]
            );
            w.write_all(line.as_bytes()).unwrap();
            written += line.len() as u64;
        }
        w.flush().unwrap();
        files.push(path);
    }
    files
}

fn grep_counts(files: &[PathBuf], c_locale: bool) -> Vec<u64> {
    [
        "error",
        "warn",
        "authentication failed",
        "status=[45][0-9][0-9]",
    ]
    .iter()
    .map(|p| {
        let mut cmd = Command::new("grep");
        cmd.arg("-c").arg("-i").arg("-e").arg(p).args(files);
        if c_locale {
            cmd.env("LC_ALL", "C");
        }
        let out = cmd.output().expect("run grep");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.rsplit(':').next().unwrap().parse::<u64>().unwrap())
            .sum()
    })
    .collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let mb = env_usize("BENCH_MB", 1024) as u64;
    let runs = env_usize("BENCH_RUNS", 3);
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let t = Instant::now();
    let files = generate(&pods, mb << 20);
    let bytes: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    println!(
        "generated {} files, {:.1} MiB of CRI lines in {:.1}s",
        files.len(),
        bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    // Warm the page cache for both.
    let _ = grep_counts(&files[..1], true);
    for f in &files {
        std::io::copy(&mut File::open(f).unwrap(), &mut std::io::sink()).unwrap();
    }
    let matcher = Matcher::new(&default_patterns()).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let window = Window {
        from: now - 24 * 3600,
        to: i64::MAX,
    };
    let (mut g_env, mut g_c, mut ours) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let t = Instant::now();
        let env_counts = grep_counts(&files, false);
        let te = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let c_counts = grep_counts(&files, true);
        let tc = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let out = check::check_once(&pods, &matcher, window).unwrap();
        let to = t.elapsed().as_secs_f64();
        let mut counts = vec![0u64; 4];
        for c in out.containers.values() {
            for (a, b) in counts.iter_mut().zip(c.sum(i64::MIN, i64::MAX, 4)) {
                *a += b;
            }
        }
        assert_eq!(
            counts, c_counts,
            "caretaker's counts differ from LC_ALL=C grep -c -i"
        );
        assert_eq!(env_counts, c_counts, "grep's counts differ between locales");
        println!(
            "run {run}: 4x grep -c -i ({}) {te:.2}s, 4x LC_ALL=C grep -c -i {tc:.2}s, caretaker one pass {to:.2}s; counts {counts:?} agree",
            std::env::var("LANG").unwrap_or_else(|_| "no LANG".into())
        );
        g_env.push(te);
        g_c.push(tc);
        ours.push(to);
    }
    let (e, c, o) = (median(&mut g_env), median(&mut g_c), median(&mut ours));
    let gib = bytes as f64 / 1073741824.0;
    println!(
        "median over {runs} runs, {gib:.2} GiB: grep (env locale) {e:.2}s = {:.2} GiB/s; grep (C) {c:.2}s; caretaker {o:.2}s = {:.2} GiB/s; speedup {:.1}x vs env-locale grep, {:.1}x vs LC_ALL=C grep",
        gib / e,
        gib / o,
        e / o,
        c / o
    );
}
