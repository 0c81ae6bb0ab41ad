//! Host-wide figures and what the agent itself costs.

use caretaker_proto::pb;
use serde::{Deserialize, Serialize};

use super::wire::*;

/// Host-wide figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub kernel_version: String,
    pub os_image: String,
    pub architecture: String,
    pub uptime_seconds: u64,
    pub cpu_count: u32,
    /// Whole-host CPU usage since the previous sample, 0–100.
    pub cpu_usage_percent: f64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub memory_total_bytes: u64,
    /// MemAvailable: the kernel's estimate of memory available without swapping.
    pub memory_available_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
}

/// What the agent itself costs the node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentCost {
    /// Resident set size of the agent process, in bytes.
    pub rss_bytes: u64,
    /// User + system CPU time of the agent process since it started, in seconds.
    pub cpu_seconds_total: f64,
    /// CPU time the last collection cycle took, in seconds.
    pub last_collection_cpu_seconds: f64,
    /// Wall time the last collection cycle took, in seconds.
    pub last_collection_wall_seconds: f64,
    /// Reports waiting for an ack from the aggregator.
    pub reports_buffered: u64,
    /// Reports dropped unacked because the buffer was full.
    pub reports_dropped_total: u64,
}

impl From<Host> for pb::Host {
    fn from(h: Host) -> Self {
        Self {
            kernel_version: h.kernel_version,
            os_image: h.os_image,
            architecture: h.architecture,
            uptime_seconds: h.uptime_seconds,
            cpu_count: h.cpu_count,
            cpu_usage_percent: h.cpu_usage_percent,
            load1: h.load1,
            load5: h.load5,
            load15: h.load15,
            memory_total_bytes: h.memory_total_bytes,
            memory_available_bytes: h.memory_available_bytes,
            swap_total_bytes: h.swap_total_bytes,
            swap_free_bytes: h.swap_free_bytes,
        }
    }
}

impl TryFrom<pb::Host> for Host {
    type Error = InvalidMessage;

    fn try_from(h: pb::Host) -> Result<Self, Self::Error> {
        Ok(Self {
            cpu_usage_percent: percent(h.cpu_usage_percent, "cpu_usage_percent")?,
            load1: non_negative(h.load1, "load1")?,
            load5: non_negative(h.load5, "load5")?,
            load15: non_negative(h.load15, "load15")?,
            kernel_version: h.kernel_version,
            os_image: h.os_image,
            architecture: h.architecture,
            uptime_seconds: h.uptime_seconds,
            cpu_count: h.cpu_count,
            memory_total_bytes: h.memory_total_bytes,
            memory_available_bytes: h.memory_available_bytes,
            swap_total_bytes: h.swap_total_bytes,
            swap_free_bytes: h.swap_free_bytes,
        })
    }
}

impl From<AgentCost> for pb::AgentCost {
    fn from(a: AgentCost) -> Self {
        Self {
            rss_bytes: a.rss_bytes,
            cpu_seconds_total: a.cpu_seconds_total,
            last_collection_cpu_seconds: a.last_collection_cpu_seconds,
            last_collection_wall_seconds: a.last_collection_wall_seconds,
            reports_buffered: a.reports_buffered,
            reports_dropped_total: a.reports_dropped_total,
        }
    }
}

impl TryFrom<pb::AgentCost> for AgentCost {
    type Error = InvalidMessage;

    fn try_from(a: pb::AgentCost) -> Result<Self, Self::Error> {
        Ok(Self {
            rss_bytes: a.rss_bytes,
            cpu_seconds_total: non_negative(a.cpu_seconds_total, "cpu_seconds_total")?,
            last_collection_cpu_seconds: non_negative(
                a.last_collection_cpu_seconds,
                "last_collection_cpu_seconds",
            )?,
            last_collection_wall_seconds: non_negative(
                a.last_collection_wall_seconds,
                "last_collection_wall_seconds",
            )?,
            reports_buffered: a.reports_buffered,
            reports_dropped_total: a.reports_dropped_total,
        })
    }
}
