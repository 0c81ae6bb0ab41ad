//! Host-wide figures through sysinfo, and the agent's own cost.
//!
//! sysinfo reads `/proc/meminfo`, `/proc/stat`, `/proc/loadavg` and `/proc/uptime` of the
//! agent's own `/proc`. Those files are not per-namespace, so in a pod they already show
//! the host's figures; `--path.procfs` does not change them.

use std::time::Duration;

use caretaker_core::model::{CollectorError, Host};
use nix::sys::resource::{UsageWho, getrusage};
use nix::time::{ClockId, clock_gettime};
use sysinfo::{
    CpuRefreshKind, MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, RefreshKind,
    System,
};

/// Keeps sysinfo's state between samples (CPU usage is a difference of two samples).
pub(crate) struct HostCollector {
    /// sysinfo's error when it could not initialise (no readable /proc); host figures are
    /// then zero and every report says why.
    system: Result<System, sysinfo::Error>,
    own_pid: Pid,
    kernel_version: String,
    os_image: String,
    architecture: String,
}

impl std::fmt::Debug for HostCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCollector")
            .field("own_pid", &self.own_pid)
            .finish_non_exhaustive()
    }
}

impl Default for HostCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl HostCollector {
    /// Takes the first CPU sample; the figures that never change are read once here.
    pub(crate) fn new() -> Self {
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_usage())
                .with_memory(MemoryRefreshKind::everything()),
        );
        Self {
            system,
            own_pid: Pid::from_u32(std::process::id()),
            kernel_version: System::kernel_version().unwrap_or_default(),
            os_image: System::long_os_version().unwrap_or_default(),
            architecture: System::cpu_arch(),
        }
    }

    /// Host figures now; CPU usage is over the time since the previous call. What cannot
    /// be read is left at 0 and pushed to `errors`.
    pub(crate) fn sample(&mut self, errors: &mut Vec<CollectorError>) -> Host {
        let mut error = |place: &str, message: String| {
            errors.push(CollectorError {
                collector: "host".into(),
                place: place.into(),
                message,
            });
        };
        let mut h = Host {
            kernel_version: self.kernel_version.clone(),
            os_image: self.os_image.clone(),
            architecture: self.architecture.clone(),
            ..Host::default()
        };
        match System::uptime() {
            Ok(u) => h.uptime_seconds = u,
            Err(e) => error("/proc/uptime", e.to_string()),
        }
        match System::load_average() {
            Ok(l) => (h.load1, h.load5, h.load15) = (l.one, l.five, l.fifteen),
            Err(e) => error("/proc/loadavg", e.to_string()),
        }
        match &mut self.system {
            Ok(sys) => {
                sys.refresh_cpu_usage();
                sys.refresh_memory();
                h.cpu_count = u32::try_from(sys.cpus().len()).unwrap_or(u32::MAX);
                h.cpu_usage_percent = f64::from(sys.global_cpu_usage()).clamp(0.0, 100.0);
                h.memory_total_bytes = sys.total_memory();
                h.memory_available_bytes = sys.available_memory();
                h.swap_total_bytes = sys.total_swap();
                h.swap_free_bytes = sys.free_swap();
            }
            Err(e) => error(
                "/proc",
                format!("sysinfo cannot read CPU and memory figures: {e}"),
            ),
        }
        h
    }

    /// Resident set size of the agent process, in bytes.
    pub(crate) fn own_rss_bytes(&mut self) -> u64 {
        let Ok(sys) = &mut self.system else { return 0 };
        sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.own_pid]),
            false,
            ProcessRefreshKind::nothing().with_memory(),
        );
        sys.process(self.own_pid)
            .map_or(0, sysinfo::Process::memory)
    }
}

/// User + system CPU time of the whole agent process so far (getrusage(RUSAGE_SELF)).
pub(crate) fn own_cpu_seconds_total() -> f64 {
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

/// CPU time of the whole process (all threads) so far, with nanosecond resolution:
/// the difference around a collection cycle is the cycle's CPU cost.
pub fn process_cpu_time() -> Duration {
    clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_sample_has_real_memory_and_cpus() {
        let mut h = HostCollector::new();
        let mut errors = Vec::new();
        let s = h.sample(&mut errors);
        assert_eq!(errors, vec![]);
        assert!(s.cpu_count >= 1);
        assert!(s.memory_total_bytes > s.memory_available_bytes);
        assert!(s.memory_available_bytes > 0);
        assert!((0.0..=100.0).contains(&s.cpu_usage_percent));
        // /proc/sys/kernel/osrelease is what sysinfo reports as the kernel version.
        let osrelease = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(s.kernel_version, osrelease.trim());
    }

    #[test]
    fn own_cost_is_measured() {
        let mut h = HostCollector::new();
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        let rss = h.own_rss_bytes();
        // Same order of magnitude as statm's resident pages (the heap moves in between).
        assert!(
            rss > 0 && rss.abs_diff(pages * 4096) < 64 << 20,
            "rss {rss} vs statm {}",
            pages * 4096
        );
        let before = process_cpu_time();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(process_cpu_time() > before);
        assert!(own_cpu_seconds_total() > 0.0);
    }
}
