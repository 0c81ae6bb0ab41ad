//! Agent cost, side by side with node_exporter in the same run.
//!
//! ```sh
//! cargo build --release -p caretaker-agent --bins
//! cargo bench -p caretaker-tests --bench bench-agent -- [--cycles 2000] [--steady-seconds 60] [--interval 10s]
//! ```
//!
//! 1. CPU time per collection cycle (all mounts, interfaces, host figures, own cost),
//!    in process: process CPU time (CLOCK_PROCESS_CPUTIME_ID, all threads) over `cycles`.
//! 2. node_exporter (Debian's prometheus-node-exporter, when installed) with the
//!    filesystem, netdev, meminfo, cpu and loadavg collectors: CPU time per scrape from
//!    its /proc/<pid>/stat over the same number of scrapes (curl), capped at 500.
//! 3. Steady-state RSS of the real `caretaker-agent run` process reporting every
//!    `interval` to an in-process aggregator, beside node_exporter scraped at the same
//!    interval, sampled every second for `steady-seconds`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use caretaker_agent::collector::{BufferStats, Collector};
use caretaker_agent::config::AgentConfig;
use caretaker_agent::paths::HostPaths;
use caretaker_agent::stats::host::process_cpu_time;
use caretaker_tests::{RunningAggregator, binary};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (utime + stime) in seconds and VmRSS in bytes of a process.
fn proc_cost(pid: u32) -> anyhow::Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the ")" that ends the command name; utime and stime are fields 14, 15.
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    let cpu = (f[11].parse::<f64>()? + f[12].parse::<f64>()?) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok((cpu, rss_kib * 1024))
}

fn start_node_exporter(port: u16) -> Option<Child> {
    let bin = [
        "/usr/bin/prometheus-node-exporter",
        "/usr/bin/node_exporter",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())?;
    let child = Command::new(bin)
        .args([
            &format!("--web.listen-address=127.0.0.1:{port}"),
            "--collector.disable-defaults",
            "--collector.filesystem",
            "--collector.netdev",
            "--collector.meminfo",
            "--collector.cpu",
            "--collector.loadavg",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(500));
    Some(child)
}

fn scrape(port: u16) -> bool {
    Command::new("curl")
        .args([
            "-sf",
            "-o",
            "/dev/null",
            &format!("http://127.0.0.1:{port}/metrics"),
        ])
        .status()
        .is_ok_and(|s| s.success())
}

fn main() -> anyhow::Result<()> {
    let cycles: u32 = arg("--cycles", 2000);
    let steady_seconds: u64 = arg("--steady-seconds", 60);
    let interval = humantime::parse_duration(&arg("--interval", "10s".to_string()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;

    // 1. caretaker collection cycle.
    let settings =
        caretaker_agent::collector_settings(&AgentConfig::default(), HostPaths::default())
            .map_err(anyhow::Error::msg)?;
    let (cpu_per_cycle, wall_per_cycle, mounts, ifs) = rt.block_on(async {
        let mut c = Collector::new(settings, Arc::new(BufferStats::default()));
        for _ in 0..20 {
            c.collect().await;
        }
        let (cpu0, wall0) = (process_cpu_time(), Instant::now());
        let mut last = None;
        for _ in 0..cycles {
            last = Some(c.collect().await);
        }
        let r = last.expect("at least one cycle");
        (
            (process_cpu_time() - cpu0) / cycles,
            wall0.elapsed() / cycles,
            r.filesystems.len(),
            r.network.len(),
        )
    });
    println!(
        "caretaker collection cycle ({mounts} filesystems, {ifs} interfaces, host, own cost), {cycles} cycles:"
    );
    println!("  CPU  {:>8.1} µs/cycle", cpu_per_cycle.as_secs_f64() * 1e6);
    println!(
        "  wall {:>8.1} µs/cycle",
        wall_per_cycle.as_secs_f64() * 1e6
    );

    // 2. node_exporter scrape.
    let ne_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut node_exporter = start_node_exporter(ne_port);
    match &node_exporter {
        Some(ne) => {
            let scrapes = cycles.min(500);
            for _ in 0..5 {
                scrape(ne_port);
            }
            let (cpu0, _) = proc_cost(ne.id())?;
            for _ in 0..scrapes {
                anyhow::ensure!(scrape(ne_port), "node_exporter scrape failed");
            }
            let (cpu1, rss) = proc_cost(ne.id())?;
            println!(
                "node_exporter (filesystem, netdev, meminfo, cpu, loadavg), {scrapes} scrapes:"
            );
            println!(
                "  CPU  {:>8.1} µs/scrape (10 ms clock ticks)",
                (cpu1 - cpu0) / f64::from(scrapes) * 1e6
            );
            println!(
                "  RSS  {:>8.1} MiB after the scrapes",
                rss as f64 / 1048576.0
            );
        }
        None => println!(
            "node_exporter: not installed (apt-get install prometheus-node-exporter), skipped"
        ),
    }

    // 3. Steady-state RSS of the real agent process.
    let dir = tempfile::tempdir()?;
    let agg = rt.block_on(RunningAggregator::start(
        dir.path(),
        "127.0.0.1:0".parse()?,
        3,
    ))?;
    let cfg = dir.path().join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen_http: 127.0.0.1:0\nreport_interval: {}\naggregator:\n  endpoint: {}\n  insecure_plaintext: true\n",
            humantime::format_duration(interval),
            agg.url()
        ),
    )?;
    let mut agent = Command::new(binary("caretaker-agent"))
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(Stdio::null())
        .spawn()?;
    let started = Instant::now();
    let (mut agent_max, mut ne_max, mut agent_last, mut ne_last) = (0u64, 0u64, 0u64, 0u64);
    let mut next_scrape = Instant::now();
    let (agent_cpu0, _) = proc_cost(agent.id())?;
    while started.elapsed() < Duration::from_secs(steady_seconds) {
        if let Some(ne) = &node_exporter {
            if Instant::now() >= next_scrape {
                scrape(ne_port);
                next_scrape += interval;
            }
            ne_last = proc_cost(ne.id())?.1;
            ne_max = ne_max.max(ne_last);
        }
        agent_last = proc_cost(agent.id())?.1;
        agent_max = agent_max.max(agent_last);
        std::thread::sleep(Duration::from_secs(1));
    }
    let (agent_cpu1, _) = proc_cost(agent.id())?;
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "steady state over {steady_seconds} s, one report / scrape every {}:",
        humantime::format_duration(interval)
    );
    println!(
        "  caretaker-agent RSS {:>6.1} MiB (max {:.1}), CPU {:.3} s in total",
        mib(agent_last),
        mib(agent_max),
        agent_cpu1 - agent_cpu0
    );
    if node_exporter.is_some() {
        println!(
            "  node_exporter   RSS {:>6.1} MiB (max {:.1})",
            mib(ne_last),
            mib(ne_max)
        );
    }
    let _ = agent.kill();
    if let Some(ne) = node_exporter.as_mut() {
        let _ = ne.kill();
    }
    rt.block_on(agg.stop())?;
    Ok(())
}
