//! The `schedule:` config section, every option with its default:
//!
//! ```yaml
//! schedule:
//!   time_zone: Asia/Tokyo          # IANA name; the operators' zone
//!   daily:
//!     enabled: true
//!     cron: "0 3 * * *"            # 5-field cron in time_zone: every day 03:00
//!     checks: [nodes, pods, workloads, pdbs, services, ingresses, cronjobs, events, certificates, velero, pvcs, hpas, helm, resources, vulnerabilities, signals]
//!   weekly:
//!     enabled: true
//!     cron: "0 3 * * 0"            # Sundays 03:00
//!     checks: [nodes, pods, workloads, pdbs, services, ingresses, cronjobs, events, certificates, velero, pvcs, hpas, helm, resources, vulnerabilities, signals, cleanup]
//!   monthly:
//!     enabled: true
//!     cron: "0 3 1 * *"            # the 1st, 03:00
//!     checks: [nodes, pods, workloads, pdbs, services, ingresses, cronjobs, events, certificates, velero, pvcs, hpas, helm, resources, vulnerabilities, signals, trends, chart_updates]
//!   maintenance_window:
//!     days: [sunday]               # weekdays the window opens on
//!     start: "03:00"               # wall-clock time in time_zone
//!     duration: 2h                 # 10m..24h
//!   notifications:
//!     webhook_url: https://hooks.slack.com/services/…   # optional; no URL, no notifications
//!     min_severity: warning        # a worsening status notifies from this level up
//!     flap_grace: 1h               # see schedule::notify
//!     timeout: 10s
//! ```
//!
//! The defaults are the seed's: checks every day at 03:00, the weekly review on Sunday, the
//! monthly capacity review on the 1st, destructive work on Sunday 03:00–05:00, all in
//! Asia/Tokyo, the operators' zone. A section given in the file replaces only the options
//! it names.

use std::collections::BTreeSet;
use std::fmt;

use caretaker_core::config::{BoundedDuration, ms};
use serde::{Deserialize, Deserializer, Serialize};

use crate::checks::Severity;
use caretaker_core::cron::Cron;
pub use caretaker_core::window::{Day, WindowConfig, Zone};

/// The `schedule:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Zone of every cron expression and of the maintenance window. Default `Asia/Tokyo`.
    #[serde(default)]
    pub time_zone: Zone,
    /// Default: every day at 03:00, [`Task::DAILY`].
    #[serde(default = "RunConfig::daily", deserialize_with = "daily")]
    pub daily: RunConfig,
    /// Default: Sundays at 03:00, [`Task::DAILY`] plus `cleanup`.
    #[serde(default = "RunConfig::weekly", deserialize_with = "weekly")]
    pub weekly: RunConfig,
    /// Default: the 1st of every month at 03:00, [`Task::DAILY`] plus `trends` and
    /// `chart_updates`.
    #[serde(default = "RunConfig::monthly", deserialize_with = "monthly")]
    pub monthly: RunConfig,
    /// Default: Sundays 03:00 for 2 h.
    #[serde(default)]
    pub maintenance_window: WindowConfig,
    /// Default: no webhook.
    #[serde(default)]
    pub notifications: NotificationsConfig,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            time_zone: Zone::default(),
            daily: RunConfig::daily(),
            weekly: RunConfig::weekly(),
            monthly: RunConfig::monthly(),
            maintenance_window: WindowConfig::default(),
            notifications: NotificationsConfig::default(),
        }
    }
}

/// What a scheduled run does; the aggregator maps each name to work.
///
/// All but the last four are the cluster checks of the same name ([`crate::checks::ALL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Nodes,
    Pods,
    Workloads,
    Pdbs,
    Services,
    Ingresses,
    Cronjobs,
    Events,
    Certificates,
    Velero,
    Pvcs,
    Hpas,
    Helm,
    Resources,
    /// trivy-operator's VulnerabilityReports ([`crate::checks::vulnerabilities`]).
    Vulnerabilities,
    /// HTTP endpoints, Prometheus and Alertmanager ([`crate::signals`]).
    Signals,
    /// Cleanup proposals ([`crate::cleanup`]); applying them is gated by the maintenance window.
    Cleanup,
    /// 30-day trends from the history: disk usage per node and mount with days until full,
    /// alert counts, the Prometheus trend (the monthly capacity review).
    Trends,
    /// Newer chart versions of the Helm releases in the configured repositories
    /// ([`crate::updates`], the monthly dependency review).
    ChartUpdates,
}

impl Task {
    /// The daily run: every check and every external signal (the seed's daily health,
    /// backup and metrics checks).
    pub(crate) const DAILY: &'static [Task] = &[
        Task::Nodes,
        Task::Pods,
        Task::Workloads,
        Task::Pdbs,
        Task::Services,
        Task::Ingresses,
        Task::Cronjobs,
        Task::Events,
        Task::Certificates,
        Task::Velero,
        Task::Pvcs,
        Task::Hpas,
        Task::Helm,
        Task::Resources,
        Task::Vulnerabilities,
        Task::Signals,
    ];

    /// The name used in the config and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Task::Nodes => "nodes",
            Task::Pods => "pods",
            Task::Workloads => "workloads",
            Task::Pdbs => "pdbs",
            Task::Services => "services",
            Task::Ingresses => "ingresses",
            Task::Cronjobs => "cronjobs",
            Task::Events => "events",
            Task::Certificates => "certificates",
            Task::Velero => "velero",
            Task::Pvcs => "pvcs",
            Task::Hpas => "hpas",
            Task::Helm => "helm",
            Task::Resources => "resources",
            Task::Vulnerabilities => "vulnerabilities",
            Task::Signals => "signals",
            Task::Cleanup => "cleanup",
            Task::Trends => "trends",
            Task::ChartUpdates => "chart_updates",
        }
    }
}

impl Task {
    /// The name of the cluster check in [`crate::checks::ALL`] this task is, if it is one.
    pub(crate) fn cluster_check(self) -> Option<&'static str> {
        match self {
            Task::Signals | Task::Cleanup | Task::Trends | Task::ChartUpdates => None,
            t => Some(t.name()),
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One of the daily, weekly and monthly runs. An option left out of the file keeps the
/// run's default (`weekly: {enabled: false}` turns the weekly run off, nothing else).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunConfig {
    /// false leaves the run out. Default true.
    pub enabled: bool,
    /// When, as a 5-field cron expression in `time_zone` (see [`caretaker_core::cron`]).
    pub cron: Cron,
    /// What the run does; duplicates count once. Defaults: see [`ScheduleConfig`].
    pub checks: BTreeSet<Task>,
}

/// A run section as written: what it leaves out comes from the run's defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunSection {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    cron: Option<Cron>,
    #[serde(default)]
    checks: Option<BTreeSet<Task>>,
}

impl RunSection {
    fn over(self, defaults: RunConfig) -> RunConfig {
        RunConfig {
            enabled: self.enabled.unwrap_or(defaults.enabled),
            cron: self.cron.unwrap_or(defaults.cron),
            checks: self.checks.unwrap_or(defaults.checks),
        }
    }
}

fn daily<'de, D: Deserializer<'de>>(d: D) -> Result<RunConfig, D::Error> {
    Ok(RunSection::deserialize(d)?.over(RunConfig::daily()))
}
fn weekly<'de, D: Deserializer<'de>>(d: D) -> Result<RunConfig, D::Error> {
    Ok(RunSection::deserialize(d)?.over(RunConfig::weekly()))
}
fn monthly<'de, D: Deserializer<'de>>(d: D) -> Result<RunConfig, D::Error> {
    Ok(RunSection::deserialize(d)?.over(RunConfig::monthly()))
}

impl RunConfig {
    fn new(cron: &str, extra: &[Task]) -> RunConfig {
        let cron = match Cron::parse(cron) {
            Ok(c) => c,
            Err(e) => unreachable!("built-in cron expression: {e}"),
        };
        RunConfig {
            enabled: true,
            cron,
            checks: Task::DAILY.iter().chain(extra).copied().collect(),
        }
    }

    /// Every day at 03:00.
    pub fn daily() -> RunConfig {
        RunConfig::new("0 3 * * *", &[])
    }

    /// Sundays at 03:00, with cleanup proposals (the seed's weekly cleanup review).
    pub fn weekly() -> RunConfig {
        RunConfig::new("0 3 * * 0", &[Task::Cleanup])
    }

    /// The 1st at 03:00, with the 30-day trends (the seed's monthly capacity review) and the
    /// chart updates (its monthly dependency review).
    pub fn monthly() -> RunConfig {
        RunConfig::new("0 3 1 * *", &[Task::Trends, Task::ChartUpdates])
    }
}

/// Webhook notifications (see [`super::notify`] for when they are sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// `http://` or `https://` URL that takes a POSTed JSON body with a `text` field, like a
    /// Slack incoming webhook. None: nothing is sent.
    #[serde(deserialize_with = "webhook_url")]
    pub webhook_url: Option<String>,
    /// A status that worsens to this level or above notifies. New critical findings
    /// notify whatever this is.
    pub min_severity: Severity,
    /// A finding that resolves and returns within this time, or a status that improves
    /// and worsens again within it, does not notify again. The default (1h) is long
    /// enough that a finding flapping between rounds pages once, short enough that a
    /// problem that comes back the next day pages again. 0s to 7 days.
    pub flap_grace: BoundedDuration<0, { 7 * ms::DAY }>,
    /// Whole-request timeout of a webhook POST. 100ms to 5m.
    pub timeout: BoundedDuration<100, { 5 * ms::MINUTE }>,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            min_severity: Severity::Warning,
            flap_grace: BoundedDuration::secs(3600),
            timeout: BoundedDuration::secs(10),
        }
    }
}

fn webhook_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    check_webhook_url(&s).map_err(serde::de::Error::custom)?;
    Ok(Some(s))
}

fn check_webhook_url(s: &str) -> Result<(), WebhookUrlError> {
    let u = reqwest::Url::parse(s).map_err(|e| WebhookUrlError::NotAUrl(Box::new(e)))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(WebhookUrlError::Scheme);
    }
    Ok(())
}

/// The environment variable that holds the webhook URL when the config file names none:
/// a Kubernetes Secret passed as an environment variable keeps the URL (a credential) out
/// of the ConfigMap (Helm `aggregator.notificationWebhookSecret`).
pub const WEBHOOK_URL_ENV: &str = "CARETAKER_WEBHOOK_URL";

/// A webhook URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebhookUrlError {
    #[error("webhook_url is not a URL")]
    NotAUrl(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("webhook_url must be an http:// or https:// URL")]
    Scheme,
}

impl NotificationsConfig {
    /// Takes `webhook_url` from [`WEBHOOK_URL_ENV`] (looked up with `env`) when the file
    /// names none and the variable is set and not empty.
    ///
    /// # Errors
    /// The variable's value is not an http:// or https:// URL.
    pub(crate) fn resolve_env(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), WebhookUrlError> {
        if self.webhook_url.is_none()
            && let Some(url) = env(WEBHOOK_URL_ENV).filter(|u| !u.trim().is_empty())
        {
            let url = url.trim().to_string();
            check_webhook_url(&url)?;
            self.webhook_url = Some(url);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use std::path::Path;

    #[test]
    fn webhook_url_comes_from_the_environment_only_when_the_file_names_none() {
        let env =
            |url: &'static str| move |k: &str| (k == WEBHOOK_URL_ENV).then(|| url.to_string());
        let mut n = NotificationsConfig::default();
        n.resolve_env(env("https://hooks.example/T0/secret\n"))
            .expect("valid");
        assert_eq!(
            n.webhook_url.as_deref(),
            Some("https://hooks.example/T0/secret")
        );
        let mut n = NotificationsConfig {
            webhook_url: Some("https://file.example/x".into()),
            ..NotificationsConfig::default()
        };
        n.resolve_env(env("https://hooks.example/y"))
            .expect("valid");
        assert_eq!(n.webhook_url.as_deref(), Some("https://file.example/x"));
        let mut n = NotificationsConfig::default();
        let err = n.resolve_env(env("ftp://hooks.example/y")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "webhook_url must be an http:// or https:// URL"
        );
        assert!(n.resolve_env(env("not a url")).is_err());
        n.resolve_env(env("")).expect("empty is unset");
        assert_eq!(n.webhook_url, None);
    }

    use caretaker_core::config::parse_yaml;
    use jiff::civil::Time;
    use jiff::tz::TimeZoneDatabase;

    use super::*;

    fn parse(yaml: &str) -> Result<ScheduleConfig, String> {
        parse_yaml::<ScheduleConfig>(yaml, Path::new("/etc/caretaker/aggregator.yaml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_seeds() {
        let c = parse("").unwrap();
        assert_eq!(c.time_zone.name(), "Asia/Tokyo");
        assert_eq!(c.daily.cron.as_str(), "0 3 * * *");
        assert_eq!(c.weekly.cron.as_str(), "0 3 * * 0");
        assert_eq!(c.monthly.cron.as_str(), "0 3 1 * *");
        let names = |r: &RunConfig| {
            r.checks
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(
            names(&c.daily),
            "nodes,pods,workloads,pdbs,services,ingresses,cronjobs,events,certificates,velero,pvcs,hpas,helm,resources,vulnerabilities,signals"
        );
        assert_eq!(
            names(&c.weekly),
            "nodes,pods,workloads,pdbs,services,ingresses,cronjobs,events,certificates,velero,pvcs,hpas,helm,resources,vulnerabilities,signals,cleanup"
        );
        assert_eq!(
            names(&c.monthly),
            "nodes,pods,workloads,pdbs,services,ingresses,cronjobs,events,certificates,velero,pvcs,hpas,helm,resources,vulnerabilities,signals,trends,chart_updates"
        );
        assert!(c.daily.enabled && c.weekly.enabled && c.monthly.enabled);
        assert_eq!(
            c.maintenance_window,
            WindowConfig {
                days: [Day::Sunday].into(),
                start: Time::constant(3, 0, 0, 0),
                duration: caretaker_core::config::BoundedDuration::secs(7200)
            }
        );
        assert_eq!(
            c.notifications,
            NotificationsConfig {
                webhook_url: None,
                min_severity: Severity::Warning,
                flap_grace: BoundedDuration::secs(3600),
                timeout: BoundedDuration::secs(10)
            }
        );
    }

    #[test]
    fn every_option_overridden() {
        let c = parse(
            "time_zone: Europe/Berlin\n\
             daily:\n  cron: '30 2 * * 1-5'\n  checks: [pods, pods, nodes]\n\
             weekly:\n  enabled: false\n\
             monthly:\n  cron: '0 4 L * *'\n\
             maintenance_window:\n  days: [saturday, sunday]\n  start: '22:30'\n  duration: 6h\n\
             notifications:\n  webhook_url: http://127.0.0.1:9/hook\n  min_severity: critical\n  flap_grace: 0s\n  timeout: 2s\n",
        )
        .unwrap();
        assert_eq!(c.time_zone.name(), "Europe/Berlin");
        assert_eq!(c.daily.cron.as_str(), "30 2 * * 1-5");
        assert_eq!(c.daily.checks, [Task::Nodes, Task::Pods].into());
        assert_eq!(
            c.weekly,
            RunConfig {
                enabled: false,
                ..RunConfig::weekly()
            }
        );
        assert_eq!(c.monthly.cron.as_str(), "0 4 L * *");
        assert_eq!(c.monthly.checks, RunConfig::monthly().checks);
        assert_eq!(
            c.maintenance_window.days,
            [Day::Saturday, Day::Sunday].into()
        );
        assert_eq!(c.maintenance_window.start, Time::constant(22, 30, 0, 0));
        assert_eq!(c.maintenance_window.duration, Duration::from_secs(6 * 3600));
        assert_eq!(
            c.notifications.webhook_url.as_deref(),
            Some("http://127.0.0.1:9/hook")
        );
        assert_eq!(c.notifications.min_severity, Severity::Critical);
        assert_eq!(c.notifications.flap_grace, Duration::ZERO);
        assert_eq!(c.notifications.timeout, Duration::from_secs(2));
    }

    #[test]
    fn every_cluster_check_is_a_task_and_daily_runs_them_all() {
        let all: Vec<&str> = crate::checks::ALL.iter().map(|c| c.name).collect();
        let tasks: Vec<&str> = Task::DAILY
            .iter()
            .filter_map(|t| t.cluster_check())
            .collect();
        let (mut a, mut t) = (all.clone(), tasks.clone());
        a.sort_unstable();
        t.sort_unstable();
        assert_eq!(a, t);
        assert_eq!(Task::Signals.cluster_check(), None);
    }

    #[test]
    fn the_readme_example_is_the_defaults() {
        let yaml = "time_zone: Asia/Tokyo\n\
            daily:   {enabled: true, cron: \"0 3 * * *\", checks: [nodes, pods, workloads, pdbs, services, ingresses, cronjobs, events, certificates, velero, pvcs, hpas, helm, resources, vulnerabilities, signals]}\n\
            weekly:  {enabled: true, cron: \"0 3 * * 0\", checks: [nodes, pods, workloads, pdbs, services, ingresses, cronjobs, events, certificates, velero, pvcs, hpas, helm, resources, vulnerabilities, signals, cleanup]}\n\
            monthly: {enabled: true, cron: \"0 3 1 * *\", checks: [nodes, pods, workloads, pdbs, services, ingresses, cronjobs, events, certificates, velero, pvcs, hpas, helm, resources, vulnerabilities, signals, trends, chart_updates]}\n\
            maintenance_window:\n  days: [sunday]\n  start: \"03:00\"\n  duration: 2h\n\
            notifications:\n  min_severity: warning\n  flap_grace: 1h\n  timeout: 10s\n";
        let c = parse(yaml).unwrap();
        let d = ScheduleConfig::default();
        assert_eq!(
            (c.daily, c.weekly, c.monthly),
            (d.daily, d.weekly, d.monthly)
        );
        assert_eq!(c.time_zone, d.time_zone);
        assert_eq!(c.maintenance_window, d.maintenance_window);
        assert_eq!(c.notifications, d.notifications);
    }

    #[test]
    fn errors_name_file_line_and_problem() {
        let err = parse("daily:\n  cron: '0 3 * *'\n  checks: [pods]\n").unwrap_err();
        assert!(
            err.starts_with("invalid config file /etc/caretaker/aggregator.yaml: "),
            "{err}"
        );
        assert!(
            err.contains("line 2") && err.contains("is not a 5-field cron expression"),
            "{err}"
        );

        let err = parse("# zone\ntime_zone: Asia/Tokio\n").unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("\"Asia/Tokio\" is not an IANA time zone name"),
            "{err}"
        );

        let err = parse("weekly:\n  cron: '0 3 * * 0'\n  checks: [pods, podz]\n").unwrap_err();
        assert!(err.contains("line 3") && err.contains("podz"), "{err}");

        let err = parse("maintenance_window:\n  start: '3am'\n").unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("\"3am\" is not a time of day; write HH:MM"),
            "{err}"
        );
        let err = parse("maintenance_window:\n  start: '24:00'\n").unwrap_err();
        assert!(err.contains("\"24:00\" is not a time of day"), "{err}");
        let err = parse("maintenance_window:\n  duration: 2d\n").unwrap_err();
        assert!(
            err.contains("line 2")
                && err.contains("2d is out of range: at least 10m, at most 1day"),
            "{err}"
        );
        let err = parse("maintenance_window:\n  days: []\n").unwrap_err();
        assert!(err.contains("needs at least one day"), "{err}");

        let err = parse("notifications:\n  webhook_url: ftp://x/hook\n").unwrap_err();
        assert!(
            err.contains("line 2")
                && err.contains("webhook_url must be an http:// or https:// URL"),
            "{err}"
        );
        let err = parse("notifications:\n  min_severity: loud\n").unwrap_err();
        assert!(err.contains("loud"), "{err}");
        let err =
            parse("daily:\n  cron: '0 3 * * *'\n  checks: [pods]\n  when: now\n").unwrap_err();
        assert!(err.contains("when"), "{err}");
    }

    #[test]
    fn zones_resolve_from_the_bundled_database_without_zoneinfo() {
        // What a distroless or scratch image has: no /usr/share/zoneinfo, only the copy
        // built into the binary.
        let bundled = TimeZoneDatabase::bundled();
        for name in ["Asia/Tokyo", "Europe/Berlin", "UTC"] {
            assert!(
                bundled.get(name).is_ok(),
                "{name} missing from the bundled tz database"
            );
        }
        let tokyo = bundled.get("Asia/Tokyo").unwrap();
        let t: jiff::Timestamp = "2025-06-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            t.to_zoned(tokyo).datetime().to_string(),
            "2025-06-01T09:00:00"
        );
        assert_eq!(Zone::default().name(), "Asia/Tokyo");
    }
}
