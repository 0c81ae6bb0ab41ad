//! The `checks:` config section. Every option is optional; its default and where the
//! number comes from are in its doc. Durations are written `90s`, `10m`, `24h`, `30d`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use caretaker_core::config::{BoundedDuration, Percent, ms};

use super::silence::{ExcludeRule, SeverityOverride};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// Any age or window: one second to ten years.
pub(crate) type Age = BoundedDuration<{ ms::SECOND }, { ms::TEN_YEARS }>;

/// A share of a capacity, 1 to 100.
pub(crate) type Share = Percent<1>;

/// Thresholds and scope of the cluster checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChecksConfig {
    /// Namespaces to check, on a live cluster (only these are read) and in a dump (objects
    /// of other namespaces are dropped after reading). Default: empty, meaning all
    /// namespaces. Cluster-scoped objects (nodes) are always kept.
    pub namespaces: Vec<String>,
    /// Timeout of each list request (one page) on a live cluster. Default 30s, kubectl's
    /// usual request timeout order of magnitude; a page of 500 pods is well under 1 MiB.
    pub list_timeout: BoundedDuration<{ ms::SECOND }, { 10 * ms::MINUTE }>,
    /// Objects per page when listing (`limit`). Default 500, as kubectl's `--chunk-size`.
    pub page_size: u32,
    pub pods: PodsConfig,
    pub events: EventsConfig,
    pub certificates: CertificatesConfig,
    pub velero: VeleroConfig,
    pub pvcs: PvcsConfig,
    pub nodes: NodesConfig,
    pub helm: HelmConfig,
    /// Findings to silence (Popeye's spinach `exclude`): each entry matches by `code`,
    /// `check`, `kind`, `namespace` and `name` patterns (`*`, `?`), every field given must
    /// match, and `until: YYYY-MM-DD` ends it. Silenced findings leave the verdict, are
    /// counted per check and listed with `check --show-silenced`; an expired entry stops
    /// applying and is reported by the `silencing` check. Default: none.
    pub exclude: Vec<ExcludeRule>,
    /// Severity per finding code (`{code, severity: info|warning|critical, until?}`),
    /// applied before `exclude`. Default: none.
    pub severity_overrides: Vec<SeverityOverride>,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        ChecksConfig {
            namespaces: Vec::new(),
            list_timeout: BoundedDuration::secs(30),
            page_size: 500,
            pods: PodsConfig::default(),
            events: EventsConfig::default(),
            certificates: CertificatesConfig::default(),
            velero: VeleroConfig::default(),
            pvcs: PvcsConfig::default(),
            nodes: NodesConfig::default(),
            helm: HelmConfig::default(),
            exclude: Vec::new(),
            severity_overrides: Vec::new(),
        }
    }
}

/// Pod health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PodsConfig {
    /// A container restarted more than this many times is reported (when its last restart
    /// is within `restart_window`). Default 3 (issue 5, the operators' daily script).
    pub restart_threshold: u32,
    /// Restarts count only while the last one ended this recently; an old, settled
    /// restart count is not news. Default 24h, the daily review period.
    pub restart_window: Age,
    /// A pod Pending longer than this is reported. Default 10m: scheduling and image
    /// pulls normally finish within minutes.
    pub pending_grace: Age,
    /// A Running pod not Ready for longer than this is reported. Default 5m, above the
    /// usual readiness probe start-up delay.
    pub not_ready_grace: Age,
}

impl Default for PodsConfig {
    fn default() -> Self {
        PodsConfig {
            restart_threshold: 3,
            restart_window: Age::of(24 * HOUR),
            pending_grace: Age::of(10 * MINUTE),
            not_ready_grace: Age::of(5 * MINUTE),
        }
    }
}

/// Warning events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Warning events newer than this are reported. Default 24h (issue 5: the daily check).
    pub window: Age,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            window: Age::of(24 * HOUR),
        }
    }
}

/// Certificate expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CertificatesConfig {
    /// Warning when a certificate expires within this many days. Default 30 (cert-manager
    /// renews at two thirds of a 90-day lifetime, i.e. 30 days before expiry).
    pub warning_days: u32,
    /// Critical within this many days. Default 7.
    pub critical_days: u32,
}

impl Default for CertificatesConfig {
    fn default() -> Self {
        CertificatesConfig {
            warning_days: 30,
            critical_days: 7,
        }
    }
}

/// Velero backups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VeleroConfig {
    /// A schedule is stale when its newest Completed backup is older than its period plus
    /// this slack. Default 2h, so a daily schedule is stale after 26h (issue 5).
    pub stale_slack: Age,
}

impl Default for VeleroConfig {
    fn default() -> Self {
        VeleroConfig {
            stale_slack: Age::of(2 * HOUR),
        }
    }
}

/// PersistentVolumeClaims.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PvcsConfig {
    /// A claim Pending longer than this is reported. Default 10m.
    pub pending_grace: Age,
    /// Warning above this usage. Default 80 (the common Prometheus disk alert threshold).
    pub usage_warning_percent: Share,
    /// Critical above this usage. Default 90.
    pub usage_critical_percent: Share,
}

impl Default for PvcsConfig {
    fn default() -> Self {
        PvcsConfig {
            pending_grace: Age::of(10 * MINUTE),
            usage_warning_percent: Share::of(80),
            usage_critical_percent: Share::of(90),
        }
    }
}

/// Nodes and pod resource use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodesConfig {
    /// Warning when the requests of a node's pods exceed this share of its allocatable CPU
    /// or memory. Default 90: above it the scheduler can place little more.
    pub requested_warning_percent: Share,
    /// Warning when a node's measured usage (metrics API) exceeds this share of allocatable.
    /// Default 90.
    pub usage_warning_percent: Share,
    /// Pods using more CPU than this (metrics API) are reported. Default 400 millicores
    /// (issue 5: the operators' `kubectl top pods` review).
    pub pod_cpu_threshold_millicores: u64,
}

impl Default for NodesConfig {
    fn default() -> Self {
        NodesConfig {
            requested_warning_percent: Share::of(90),
            usage_warning_percent: Share::of(90),
            pod_cpu_threshold_millicores: 400,
        }
    }
}

/// Helm releases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HelmConfig {
    /// A release pending (install, upgrade, rollback) longer than this is reported as stuck.
    /// Default 15m, well above Helm's default `--timeout` of 5m.
    pub pending_grace: Age,
}

impl Default for HelmConfig {
    fn default() -> Self {
        HelmConfig {
            pending_grace: Age::of(15 * MINUTE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn partial_section_keeps_other_defaults() {
        let c: ChecksConfig = caretaker_core::config::parse_yaml(
            "pods:\n  restart_threshold: 5\nevents:\n  window: 12h\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        assert_eq!(c.pods.restart_threshold, 5);
        assert_eq!(c.pods.pending_grace, 10 * MINUTE);
        assert_eq!(c.events.window, 12 * HOUR);
        assert_eq!(c.page_size, 500);
    }

    #[test]
    fn unknown_option_and_bad_percent_name_their_line() {
        let e = caretaker_core::config::parse_yaml::<ChecksConfig>(
            "pods:\n  restart_treshold: 5\n",
            Path::new("c.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("restart_treshold") && e.contains("line 2"),
            "{e}"
        );
        let e = caretaker_core::config::parse_yaml::<ChecksConfig>(
            "pvcs:\n  usage_warning_percent: 120\n",
            Path::new("c.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("120 is not a percentage") && e.contains("line 2"),
            "{e}"
        );
    }
}
