//! Log rotation benchmarks, side by side with `gzip -6` and logrotate in the same run.
//!
//! ```sh
//! cargo bench -p caretaker-agent --bench logs            # 1 GiB, 10,000 files, 5 runs
//! BENCH_MB=256 BENCH_FILES=2000 BENCH_RUNS=3 cargo bench -p caretaker-agent --bench logs
//! BENCH_TEXT=klog cargo bench -p caretaker-agent --bench logs   # kubelet-style lines
//! ```
//! 1. Compress BENCH_MB of realistic log text (BENCH_TEXT: `json`, container JSON lines,
//!    the default; or `klog`, klog-format component lines): `gzip -6` (what logrotate's
//!    `compress` runs) vs caretaker's gzip at level 6 (both cores) vs caretaker's zstd at
//!    its default level. Durable: caretaker's times include the fsyncs, gzip's do not.
//! 2. BENCH_FILES logs under `size 1M, rotate 2, create`: a pass where nothing is due vs
//!    one logrotate run on the same tree; then a pass where every file rotates vs
//!    logrotate (sparse 1 MiB files, so the tree costs no disk). Each is measured twice:
//!    the engine's pass inside this process (what the daemon does every 10 s), and
//!    `caretaker-agent rotate --logrotate-conf` as a whole process (start-up, config,
//!    state file) beside `logrotate` as a whole process.
//!
//! `BENCH_MB=0` skips the compression part.
//!
//! The machine may be shared: every comparison is repeated BENCH_RUNS times (default 5),
//! the two tools alternating, and the medians are printed with each run's figures.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use caretaker_agent::config::LogsConfig;
use caretaker_agent::logs::compress;
use caretaker_agent::logs::engine::{LogEngine, RunOptions};
use caretaker_agent::logs::policy::Compressor;

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
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Container-runtime style lines: timestamp, stream, JSON-ish app log with varying fields.
fn write_json_text(path: &Path, bytes: u64) {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut r = Lcg(1);
    let levels = ["info", "info", "info", "debug", "warn", "error"];
    let paths = [
        "/api/v1/orders",
        "/api/v1/users",
        "/healthz",
        "/metrics",
        "/api/v2/search",
        "/static/app.js",
    ];
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

/// klog lines as Kubernetes components write them (`I1129 03:00:00.123456 1234 file.go:12] "msg" k=v`).
fn write_klog_text(path: &Path, bytes: u64) {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut r = Lcg(7);
    let files = [
        "kubelet.go",
        "pod_workers.go",
        "prober.go",
        "controller.go",
        "reflector.go",
        "status_manager.go",
    ];
    let namespaces = [
        "default",
        "kube-system",
        "shop",
        "payments",
        "monitoring",
        "ingress-nginx",
    ];
    let apps = ["api", "web", "worker", "db"];
    let mut n = 0u64;
    let mut t = 0u64;
    while n < bytes {
        t += r.next(50_000);
        let ns = namespaces[r.next(6) as usize];
        let pod = format!(
            "{}-{:x}-{}{}",
            apps[r.next(4) as usize],
            1000 + r.next(9000),
            (b'a' + r.next(8) as u8) as char,
            10 + r.next(90)
        );
        let (a, b) = (r.next(256), r.next(256));
        let msg = match r.next(6) {
            0 => format!("\"Reconciling\" controller=\"deployment\" pod=\"{ns}/{pod}\""),
            1 => format!("\"Updated status\" node=\"worker-{a}\" conditions=4"),
            2 => format!(
                "\"Failed to pull image\" err=\"rpc error: code = NotFound desc = failed to resolve reference \\\"registry.example.com/{ns}/app:v1.{a}\\\"\""
            ),
            3 => format!(
                "\"SyncLoop (PLEG): event for pod\" pod=\"{ns}/{pod}\" event={{\"ID\":\"{:08x}-{:04x}\",\"Type\":\"ContainerStarted\"}}",
                r.next(1 << 32),
                r.next(1 << 16)
            ),
            4 => format!(
                "\"Observed a panic\" panic=\"runtime error: index out of range [{a}] with length {a}\""
            ),
            _ => format!(
                "\"Probe failed\" probeType=\"Readiness\" pod=\"{ns}/{pod}\" probeResult=\"failure\" output=\"Get \\\"http://10.244.{a}.{b}:8080/healthz\\\": dial tcp: connect: connection refused\""
            ),
        };
        let line = format!(
            "{}1129 {:02}:{:02}:{:02}.{:06} {:7} {}:{}] {msg}\n",
            ['I', 'I', 'I', 'I', 'W', 'E'][r.next(6) as usize],
            (t / 3_600_000_000) % 24,
            (t / 60_000_000) % 60,
            (t / 1_000_000) % 60,
            t % 1_000_000,
            1 + r.next(9999),
            files[r.next(6) as usize],
            10 + r.next(990),
        );
        w.write_all(line.as_bytes()).unwrap();
        n += line.len() as u64;
    }
    w.flush().unwrap();
}

/// User + system CPU seconds of every child process reaped so far.
fn children_cpu() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    tv(u.user_time()) + tv(u.system_time())
}

fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    // `cargo bench` passes --bench; nothing else is expected.
    let mb = env_usize("BENCH_MB", 1024) as u64;
    let files = env_usize("BENCH_FILES", 10_000);
    let runs = env_usize("BENCH_RUNS", 5).max(1);
    let text = std::env::var("BENCH_TEXT").unwrap_or_else(|_| "json".into());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    if mb > 0 {
        compression(mb, runs, &text, threads, &base);
    }
    trees(files, runs, &base);
}

fn compression(mb: u64, runs: usize, text: &str, threads: usize, base: &str) {
    let tmp = tempfile::Builder::new()
        .prefix("caretaker-bench")
        .tempdir_in(base)
        .unwrap();
    let src = tmp.path().join("app.log");
    match text {
        "klog" => write_klog_text(&src, mb << 20),
        _ => write_json_text(&src, mb << 20),
    }
    let input = std::fs::metadata(&src).unwrap().len();
    let mib = input as f64 / 1048576.0;
    println!(
        "== compression of {mib:.0} MiB of {text} log text ({threads} cores, {runs} runs, medians)"
    );
    // Warm the page cache for everyone.
    let _ = std::fs::read(&src);

    let gz_ref = tmp.path().join("ref.gz");
    let gzip = || {
        let t = Instant::now();
        let status = Command::new("gzip")
            .args(["-6", "-c"])
            .arg(&src)
            .stdout(File::create(&gz_ref).unwrap())
            .status()
            .unwrap();
        assert!(status.success());
        (secs(t), std::fs::metadata(&gz_ref).unwrap().len())
    };
    let caretaker = |how: Compressor, ext: &str| {
        let copy = tmp.path().join(format!("copy{ext}.log"));
        std::fs::copy(&src, &copy).unwrap();
        let dst = tmp.path().join(format!("out{ext}"));
        let _ = std::fs::remove_file(&dst);
        let t = Instant::now();
        let c = compress::compress_file(&copy, &dst, &how, threads, &compress::no_fail).unwrap();
        (secs(t), c.bytes_out)
    };
    let (mut g_s, mut gz_s, mut zs_s, mut gz_x, mut zs_x) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut g_size, mut gz_size, mut zs_size) = (0, 0, 0);
    for _ in 0..runs {
        let (g, gs) = gzip();
        let (c, cs) = caretaker(Compressor::Gzip { level: 6 }, ".gz");
        let (z, zs) = caretaker(Compressor::Zstd { level: 3 }, ".zst");
        (g_size, gz_size, zs_size) = (gs, cs, zs);
        g_s.push(g);
        gz_s.push(c);
        zs_s.push(z);
        gz_x.push(g / c);
        zs_x.push(g / z);
    }
    let g = median(g_s.clone());
    println!(
        "gzip -6                  {g:7.2} s  {:7.1} MiB/s  {g_size:>12} bytes   runs (s): {}",
        mib / g,
        list(&g_s)
    );
    for (name, s, x, size) in [
        ("caretaker gzip (-6)", &gz_s, &gz_x, gz_size),
        ("caretaker zstd (default)", &zs_s, &zs_x, zs_size),
    ] {
        let m = median(s.clone());
        println!(
            "{name:<24} {m:7.2} s  {:7.1} MiB/s  {size:>12} bytes  ({:.2}x gzip -6's speed, {:.4}x its size)   runs (x): {}",
            mib / m,
            median(x.clone()),
            size as f64 / g_size as f64,
            list(x)
        );
    }
    drop(tmp);
}

fn trees(files: usize, runs: usize, base: &str) {
    println!("== {files} logs, size 1M, rotate 2, create ({runs} runs, medians)");
    let Some(lr) = ["/usr/sbin/logrotate", "/sbin/logrotate"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        println!("logrotate is not installed: skipping the tree benchmarks");
        return;
    };
    let tmp = tempfile::Builder::new()
        .prefix("caretaker-bench")
        .tempdir_in(base)
        .unwrap();
    let make_tree = |name: &str, size: u64| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..files {
            let f = File::create(dir.join(format!("app-{i:05}.log"))).unwrap();
            f.set_len(size).unwrap();
        }
        let conf = tmp.path().join(format!("{name}.conf"));
        std::fs::write(
            &conf,
            format!(
                "{}/*.log {{\n  size 1M\n  rotate 2\n  create\n}}\n",
                dir.display()
            ),
        )
        .unwrap();
        (dir, conf)
    };
    // Each timed run starts with nothing dirty (tree creation, deletions, the other tool's
    // writes): a tool that fsyncs pays for its own writes only.
    // CPU time (user + system) of the last process run: on a shared machine the wall
    // time also holds the time spent waiting for a core.
    let last_cpu = std::cell::Cell::new(0.0f64);
    let run_lr = |conf: &Path, state: &Path| {
        nix::unistd::sync();
        let cpu0 = children_cpu();
        let t = Instant::now();
        let st = Command::new(lr)
            .arg("-s")
            .arg(state)
            .arg(conf)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success() || st.code() == Some(1));
        let wall = secs(t);
        last_cpu.set(children_cpu() - cpu0);
        wall
    };
    // `caretaker-agent rotate` as a whole process, as an operator or a cron job runs it.
    let run_ct = |dir: &Path, conf: &Path, state: &Path| {
        nix::unistd::sync();
        let cpu0 = children_cpu();
        let t = Instant::now();
        let st = Command::new(env!("CARGO_BIN_EXE_caretaker-agent"))
            .arg("rotate")
            .arg("--logrotate-conf")
            .arg(conf)
            .arg("--state")
            .arg(state)
            .arg("--root")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "caretaker-agent rotate: {st}");
        let wall = secs(t);
        last_cpu.set(children_cpu() - cpu0);
        wall
    };
    let ct_engine = |dir: &Path, conf: &Path, name: &str| {
        let cfg = LogsConfig {
            roots: vec![dir.to_path_buf()],
            state_file: tmp.path().join(format!("{name}.ct-state")),
            ..LogsConfig::default()
        };
        LogEngine::new(&cfg, Some(conf))
    };

    // Nothing due: small files; one engine, as in the daemon (one pass every 10 s).
    let (dir, conf) = make_tree("small", 100);
    let lr_state = tmp.path().join("small.lr-state");
    run_lr(&conf, &lr_state);
    let e = ct_engine(&dir, &conf, "small");
    e.rotate(jiff::Timestamp::now(), RunOptions::default())
        .unwrap();
    let (mut lr_t, mut ct_t, mut x) = (vec![], vec![], vec![]);
    for _ in 0..runs {
        let l = run_lr(&conf, &lr_state);
        nix::unistd::sync();
        let t = Instant::now();
        let s = e
            .rotate(jiff::Timestamp::now(), RunOptions::default())
            .unwrap();
        let c = secs(t);
        assert_eq!((s.files_checked as usize, s.rotated), (files, 0));
        lr_t.push(l * 1e3);
        ct_t.push(c * 1e3);
        x.push(l / c);
    }
    println!(
        "nothing due:   logrotate {:8.1} ms   caretaker {:8.1} ms   ({:.1}x less wall time; engine pass in this process)   runs (x): {}",
        median(lr_t),
        median(ct_t),
        median(x.clone()),
        list(&x)
    );
    let ct_state = tmp.path().join("small.ct-process-state");
    run_ct(&dir, &conf, &ct_state);
    let (mut lr_t, mut ct_t, mut x) = (vec![], vec![], vec![]);
    let (mut lr_c, mut ct_c, mut cx) = (vec![], vec![], vec![]);
    for _ in 0..runs {
        let l = run_lr(&conf, &lr_state);
        let lc = last_cpu.get();
        let c = run_ct(&dir, &conf, &ct_state);
        let cc = last_cpu.get();
        lr_t.push(l * 1e3);
        ct_t.push(c * 1e3);
        x.push(l / c);
        lr_c.push(lc * 1e3);
        ct_c.push(cc * 1e3);
        cx.push(lc / cc.max(1e-4));
    }
    println!(
        "nothing due:   logrotate {:8.1} ms   caretaker {:8.1} ms   ({:.1}x less wall time; whole processes)   runs (x): {}",
        median(lr_t),
        median(ct_t),
        median(x.clone()),
        list(&x)
    );
    println!(
        "nothing due:   logrotate {:8.1} ms   caretaker {:8.1} ms   ({:.1}x less CPU time, user + system; whole processes)   runs (x): {}",
        median(lr_c),
        median(ct_c),
        median(cx.clone()),
        list(&cx)
    );

    // Everything due: sparse 1 MiB files, a fresh tree per run and tool, all made before
    // the first timed run and none deleted until the end: ext4 skips inodes freed in the
    // last 30 s when it allocates new ones, which made file creation (both tools create
    // 10,000 logs) several times slower right after a tree was deleted.
    let trees: Vec<_> = (0..runs)
        .map(|r| {
            (
                make_tree(&format!("big-lr-{r}"), 1 << 20),
                make_tree(&format!("big-ct-{r}"), 1 << 20),
                make_tree(&format!("big-cp-{r}"), 1 << 20),
            )
        })
        .collect();
    let (mut lr_t, mut ct_t, mut x) = (vec![], vec![], vec![]);
    let (mut cp_t, mut cp_x) = (vec![], vec![]);
    let (mut lr_c, mut cp_c, mut cp_cx) = (vec![], vec![], vec![]);
    for (r, ((dir_lr, conf_lr), (dir_ct, conf_ct), (dir_cp, conf_cp))) in
        trees.into_iter().enumerate()
    {
        let l = run_lr(&conf_lr, &tmp.path().join(format!("big-{r}.lr-state")));
        let lc = last_cpu.get();
        let e = ct_engine(&dir_ct, &conf_ct, &format!("big-{r}"));
        nix::unistd::sync();
        let t = Instant::now();
        let s = e
            .rotate(jiff::Timestamp::now(), RunOptions::default())
            .unwrap();
        let c = secs(t);
        assert_eq!(s.rotated as usize, files);
        assert!(dir_lr.join("app-00000.log.1").exists(), "logrotate rotated");
        let p = run_ct(
            &dir_cp,
            &conf_cp,
            &tmp.path().join(format!("big-{r}.cp-state")),
        );
        let pc = last_cpu.get();
        lr_c.push(lc * 1e3);
        cp_c.push(pc * 1e3);
        cp_cx.push(lc / pc.max(1e-4));
        assert!(dir_cp.join("app-00000.log.1").exists(), "caretaker rotated");
        lr_t.push(l * 1e3);
        ct_t.push(c * 1e3);
        x.push(l / c);
        cp_t.push(p * 1e3);
        cp_x.push(l / p);
    }
    println!(
        "all rotate:    logrotate {:8.1} ms   caretaker {:8.1} ms   ({:.1}x faster; durable, engine pass in this process)   runs (x): {}",
        median(lr_t.clone()),
        median(ct_t),
        median(x.clone()),
        list(&x)
    );
    println!(
        "all rotate:    logrotate {:8.1} ms   caretaker {:8.1} ms   ({:.1}x faster; durable, whole processes)   runs (x): {}",
        median(lr_t),
        median(cp_t),
        median(cp_x.clone()),
        list(&cp_x)
    );
    println!(
        "all rotate:    logrotate {:8.1} ms   caretaker {:8.1} ms   ({:.1}x less CPU time, user + system; whole processes)   runs (x): {}",
        median(lr_c),
        median(cp_c),
        median(cp_cx.clone()),
        list(&cp_cx)
    );
}
