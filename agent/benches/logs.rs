//! Log rotation benchmarks, side by side with `gzip -6` and logrotate in the same run.
//!
//! ```sh
//! cargo bench -p caretaker-agent --bench logs            # 1 GiB, 10,000 files
//! BENCH_MB=256 BENCH_FILES=2000 cargo bench -p caretaker-agent --bench logs
//! ```
//! 1. Compress BENCH_MB of realistic log text: `gzip -6` vs caretaker's gzip (both cores)
//!    vs caretaker's zstd.
//! 2. BENCH_FILES logs under `size 1M, rotate 2, create`: a pass where nothing is due vs
//!    one logrotate run; then a pass where every file rotates vs logrotate (sparse 1 MiB
//!    files, so the tree costs no disk).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use caretaker_agent::config::LogsConfig;
use caretaker_agent::logs::compress;
use caretaker_agent::logs::engine::{LogEngine, RunOptions};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Container-runtime style lines: timestamp, stream, JSON-ish app log with varying fields.
fn write_log_text(path: &Path, bytes: u64) {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut r = Lcg(1);
    let levels = ["info", "info", "info", "debug", "warn", "error"];
    let paths = ["/api/v1/orders", "/api/v1/users", "/healthz", "/metrics", "/api/v2/search", "/static/app.js"];
    let users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"];
    let mut n = 0u64;
    let mut t = 1_700_000_000_000u64;
    while n < bytes {
        t += r.next(50);
        let line = format!(
            "2024-11-{:02}T{:02}:{:02}:{:02}.{:06}Z stdout F {{\"level\":\"{}\",\"ts\":{},\"msg\":\"request completed\",\"method\":\"GET\",\"path\":\"{}\",\"status\":{},\"duration_ms\":{},\"user\":\"{}\",\"request_id\":\"{:016x}\",\"bytes\":{}}}\n",
            1 + (t / 86_400_000) % 28,
            (t / 3_600_000) % 24,
            (t / 60_000) % 60,
            (t / 1000) % 60,
            r.next(1_000_000),
            levels[r.next(6) as usize],
            t,
            paths[r.next(6) as usize],
            [200, 200, 200, 201, 304, 404, 500][r.next(7) as usize],
            r.next(2000),
            users[r.next(7) as usize],
            r.next(u64::MAX),
            r.next(100_000),
        );
        w.write_all(line.as_bytes()).unwrap();
        n += line.len() as u64;
    }
    w.flush().unwrap();
}

fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; nothing else is expected.
    let mb = env_usize("BENCH_MB", 1024) as u64;
    let files = env_usize("BENCH_FILES", 10_000);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let tmp = tempfile::Builder::new().prefix("caretaker-bench").tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into())).unwrap();
    let src = tmp.path().join("app.log");
    write_log_text(&src, mb << 20);
    let input = std::fs::metadata(&src).unwrap().len();
    println!("== compression of {:.0} MiB of log text ({threads} cores)", input as f64 / 1048576.0);
    // Warm the page cache for everyone.
    let _ = std::fs::read(&src);

    let t = Instant::now();
    let gz_ref = tmp.path().join("ref.gz");
    let status = Command::new("gzip").args(["-6", "-c"]).arg(&src).stdout(File::create(&gz_ref).unwrap()).status().unwrap();
    assert!(status.success());
    let gzip_s = secs(t);
    let gzip_size = std::fs::metadata(&gz_ref).unwrap().len();
    println!("gzip -6            {gzip_s:7.2} s  {:7.1} MiB/s  {gzip_size:>12} bytes", input as f64 / 1048576.0 / gzip_s);

    let compress_with = |how: caretaker_agent::logs::policy::Compressor, ext: &str| {
        let copy = tmp.path().join(format!("copy{ext}.log"));
        std::fs::copy(&src, &copy).unwrap();
        let dst = tmp.path().join(format!("out{ext}"));
        let t = Instant::now();
        let c = compress::compress_file(&copy, &dst, &how, threads, &compress::no_fail).unwrap();
        (secs(t), c.bytes_out)
    };
    for level in [6u32, 5] {
        let (s, size) = compress_with(caretaker_agent::logs::policy::Compressor::Gzip { level }, &format!(".{level}.gz"));
        println!(
            "caretaker gzip -{level}  {s:7.2} s  {:7.1} MiB/s  {size:>12} bytes  ({:.2}x gzip's speed, {:.4}x its size)",
            input as f64 / 1048576.0 / s,
            gzip_s / s,
            size as f64 / gzip_size as f64
        );
    }
    let (s, size) = compress_with(caretaker_agent::logs::policy::Compressor::Zstd { level: 3 }, ".zst");
    println!(
        "caretaker zstd -3  {s:7.2} s  {:7.1} MiB/s  {size:>12} bytes  ({:.2}x gzip's speed, {:.4}x its size)",
        input as f64 / 1048576.0 / s,
        gzip_s / s,
        size as f64 / gzip_size as f64
    );
    drop(tmp);

    println!("== {files} logs, size 1M, rotate 2, create");
    let Some(lr) = ["/usr/sbin/logrotate", "/sbin/logrotate"].into_iter().find(|p| Path::new(p).exists()) else {
        println!("logrotate is not installed: skipping the tree benchmarks");
        return;
    };
    let tmp = tempfile::Builder::new().prefix("caretaker-bench").tempdir_in("/var/tmp").unwrap();
    let make_tree = |name: &str, size: u64| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..files {
            let f = File::create(dir.join(format!("app-{i:05}.log"))).unwrap();
            f.set_len(size).unwrap();
        }
        let conf = tmp.path().join(format!("{name}.conf"));
        std::fs::write(&conf, format!("{}/*.log {{\n  size 1M\n  rotate 2\n  create\n}}\n", dir.display())).unwrap();
        (dir, conf)
    };
    let run_lr = |conf: &Path, state: &Path| {
        let t = Instant::now();
        let st = Command::new(lr).arg("-s").arg(state).arg(conf).stderr(Stdio::null()).status().unwrap();
        assert!(st.success() || st.code() == Some(1));
        secs(t)
    };
    let ct_engine = |dir: &Path, conf: &Path, name: &str| {
        let cfg = LogsConfig { roots: vec![dir.to_path_buf()], state_file: tmp.path().join(format!("{name}.ct-state")), ..LogsConfig::default() };
        LogEngine::new(&cfg, Some(conf))
    };

    // Nothing due: small files.
    let (dir, conf) = make_tree("small", 100);
    let lr_state = tmp.path().join("small.lr-state");
    run_lr(&conf, &lr_state);
    let lr_s = run_lr(&conf, &lr_state);
    let e = ct_engine(&dir, &conf, "small");
    e.rotate(jiff::Timestamp::now(), RunOptions::default()).unwrap();
    let t = Instant::now();
    let s = e.rotate(jiff::Timestamp::now(), RunOptions::default()).unwrap();
    let ct_s = secs(t);
    assert_eq!((s.files_checked as usize, s.rotated), (files, 0));
    println!("nothing due:   logrotate {:8.1} ms   caretaker {:8.1} ms   ({:.1}x less wall time)", lr_s * 1e3, ct_s * 1e3, lr_s / ct_s);

    // Everything due: sparse 1 MiB files, one tree per tool.
    let (dir_lr, conf_lr) = make_tree("big-lr", 1 << 20);
    let (dir_ct, conf_ct) = make_tree("big-ct", 1 << 20);
    let lr_s = run_lr(&conf_lr, &tmp.path().join("big.lr-state"));
    let e = ct_engine(&dir_ct, &conf_ct, "big");
    let t = Instant::now();
    let s = e.rotate(jiff::Timestamp::now(), RunOptions::default()).unwrap();
    let ct_s = secs(t);
    assert_eq!(s.rotated as usize, files);
    assert!(dir_lr.join("app-00000.log.1").exists(), "logrotate rotated");
    println!("all rotate:    logrotate {:8.1} ms   caretaker {:8.1} ms   ({:.1}x faster; directory fsyncs batched)", lr_s * 1e3, ct_s * 1e3, lr_s / ct_s);
}
