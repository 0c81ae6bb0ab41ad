//! Prometheus metrics of the aggregator (`/metrics`, text exposition format 0.0.4).
//!
//! Names follow Prometheus conventions: `caretaker_` prefix, unit suffix, `_total` for
//! counters, `_timestamp_seconds` for moments (Unix seconds). Labels are low-cardinality:
//! no node names; check names and finding codes are closed sets (`aggregator/CHECKS.md`);
//! the per-object series name one cert-manager Certificate or one Velero schedule each, so
//! they grow with those objects (tens, rarely hundreds), never with pods.
//!
//! The series of the checks (README, "Metrics" lists them all):
//! - `caretaker_findings{check,severity,code}`: findings of the latest round that are not
//!   silenced, after `checks.severity_overrides`; a combination with none has no series.
//! - `caretaker_findings_silenced{check}`: findings `checks.exclude` silenced (counted,
//!   never dropped unseen; they are not in `caretaker_findings`).
//! - `caretaker_report_score` (0-100) and `caretaker_check_score{check}`: the report's
//!   score, and the same formula ([`crate::report::score`]) applied to one check alone.
//! - `caretaker_certificate_expiry_timestamp_seconds{namespace,name}` and
//!   `caretaker_certificate_renewal_timestamp_seconds{namespace,name}`: a Certificate's
//!   `status.notAfter` and `status.renewalTime`.
//! - `caretaker_velero_backup_last_successful_timestamp_seconds{namespace,schedule}` and
//!   `caretaker_velero_backup_last_finished_timestamp_seconds{namespace,schedule}`: when a
//!   schedule's newest Completed backup, and its newest finished backup of any outcome,
//!   completed.
//! - `caretaker_round_last_run_timestamp_seconds` and
//!   `caretaker_check_last_run_timestamp_seconds{check}`: when the latest round, and the
//!   latest round that ran each check (scheduled runs run a few), ran.
//!
//! [`prometheus_client`] writes OpenMetrics text, whose counter families are named without
//! `_total`; [`Metrics::encode`] turns that into the Prometheus text format 0.0.4 that the
//! endpoint's content type announces and `promtool check metrics` accepts.

use std::sync::Mutex;

use jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cluster::ClusterState;
use crate::report::{CheckRound, ClusterReport};

/// Label of `caretaker_ingest_reports_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `stored`, `duplicate`, `older_run`, `rejected`, `store_error`.
    pub result: &'static str,
}

/// Label of `caretaker_nodes`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FreshnessLabel {
    /// `fresh` or `stale`.
    pub freshness: &'static str,
}

/// Labels of `caretaker_findings`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub check: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    pub code: String,
}

/// Label of the per-check series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CheckLabel {
    pub check: String,
}

/// Labels of the per-certificate series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ObjectLabels {
    pub namespace: String,
    pub name: String,
}

/// Labels of the per-schedule series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ScheduleLabels {
    pub namespace: String,
    pub schedule: String,
}

/// A cert-manager Certificate's moments, as its status gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateTimes {
    pub namespace: String,
    pub name: String,
    /// `status.notAfter`.
    pub not_after: Option<Timestamp>,
    /// `status.renewalTime`.
    pub renewal: Option<Timestamp>,
}

/// A Velero schedule's newest backups (by the `velero.io/schedule-name` label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleTimes {
    pub namespace: String,
    pub schedule: String,
    /// Completion of the newest Completed backup.
    pub(crate) last_successful: Option<Timestamp>,
    /// Completion of the newest finished backup (Completed, PartiallyFailed, Failed,
    /// FailedValidation).
    pub(crate) last_finished: Option<Timestamp>,
}

/// The moments of a round's cluster read that `/metrics` exports per object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterTimes {
    pub certificates: Vec<CertificateTimes>,
    pub schedules: Vec<ScheduleTimes>,
}

impl ClusterTimes {
    /// The moments of every Certificate and Velero schedule in `state`.
    pub fn from_state(state: &ClusterState) -> ClusterTimes {
        ClusterTimes {
            certificates: crate::checks::certificates::times(state),
            schedules: crate::checks::velero::schedule_times(state),
        }
    }
}

/// Every metric the aggregator exports.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub reports: Family<ResultLabel, Counter>,
    pub(crate) streams_active: Gauge,
    pub(crate) store_write_seconds: Histogram,
    pub nodes: Family<FreshnessLabel, Gauge>,
    /// Reports that had to wait because their stream was over its rate limit.
    pub ingest_throttled_total: Counter,
    /// Agent streams ended to make way for connections waiting at the gRPC port's cap.
    pub(crate) ingest_streams_made_way_total: Counter,
    /// gRPC connections closed because their source address held its share of the cap.
    pub(crate) ingest_connections_refused_per_source_total: Counter,
    pub findings: Family<FindingLabels, Gauge>,
    pub(crate) findings_silenced: Family<CheckLabel, Gauge>,
    pub(crate) report_score: Gauge,
    pub(crate) check_score: Family<CheckLabel, Gauge>,
    pub(crate) certificate_expiry: Family<ObjectLabels, Gauge>,
    pub(crate) certificate_renewal: Family<ObjectLabels, Gauge>,
    pub(crate) velero_last_successful: Family<ScheduleLabels, Gauge>,
    pub(crate) velero_last_finished: Family<ScheduleLabels, Gauge>,
    pub(crate) round_last_run: Gauge,
    pub(crate) check_last_run: Family<CheckLabel, Gauge>,
    /// Held while families are cleared and refilled and while the text is written, so a
    /// scrape never sees a family half refilled by a concurrent one.
    refresh: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("caretaker");
        let reports = Family::<ResultLabel, Counter>::default();
        registry.register(
            "ingest_reports",
            "Node reports received, by what ingest did with them",
            reports.clone(),
        );
        let streams_active = Gauge::default();
        registry.register(
            "ingest_streams_active",
            "Agent report streams currently open",
            streams_active.clone(),
        );
        // 0.1 ms .. ~3 s: a durable commit is an fsync.
        let store_write_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register_with_unit(
            "store_write_duration",
            "Time to write and commit one batch of reports durably (group commit)",
            prometheus_client::registry::Unit::Seconds,
            store_write_seconds.clone(),
        );
        let nodes = Family::<FreshnessLabel, Gauge>::default();
        registry.register(
            "nodes",
            "Nodes known to the aggregator, by freshness",
            nodes.clone(),
        );
        let ingest_throttled_total = Counter::default();
        registry.register(
            "ingest_throttled",
            "Reports held back because their agent stream was over max_reports_per_minute",
            ingest_throttled_total.clone(),
        );
        let ingest_streams_made_way_total = Counter::default();
        registry.register(
            "ingest_streams_made_way",
            "Agent streams ended (the agent reconnects) to make way for connections waiting at the gRPC port's cap (ingest.max_connections)",
            ingest_streams_made_way_total.clone(),
        );
        let ingest_connections_refused_per_source_total = Counter::default();
        registry.register(
            "ingest_connections_refused_per_source",
            "gRPC connections closed as soon as accepted because their source address held ingest.max_connections_per_source connections",
            ingest_connections_refused_per_source_total.clone(),
        );
        let findings = Family::<FindingLabels, Gauge>::default();
        registry.register(
            "findings",
            "Findings of the latest cluster checks that are not silenced, by check, severity and code",
            findings.clone(),
        );
        let findings_silenced = Family::<CheckLabel, Gauge>::default();
        registry.register(
            "findings_silenced",
            "Findings of the latest cluster checks silenced by checks.exclude or --exclude-code, by check",
            findings_silenced.clone(),
        );
        let report_score = Gauge::default();
        registry.register(
            "report_score",
            "Score of the merged cluster report, 0 to 100",
            report_score.clone(),
        );
        let check_score = Family::<CheckLabel, Gauge>::default();
        registry.register(
            "check_score",
            "The report's score formula applied to one check alone, 0 to 100",
            check_score.clone(),
        );
        let certificate_expiry = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "status.notAfter of a cert-manager Certificate, Unix seconds",
            certificate_expiry.clone(),
        );
        let certificate_renewal = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "certificate_renewal_timestamp_seconds",
            "status.renewalTime of a cert-manager Certificate (when cert-manager renews it), Unix seconds",
            certificate_renewal.clone(),
        );
        let velero_last_successful = Family::<ScheduleLabels, Gauge>::default();
        registry.register(
            "velero_backup_last_successful_timestamp_seconds",
            "Completion of a Velero schedule's newest Completed backup, Unix seconds",
            velero_last_successful.clone(),
        );
        let velero_last_finished = Family::<ScheduleLabels, Gauge>::default();
        registry.register(
            "velero_backup_last_finished_timestamp_seconds",
            "Completion of a Velero schedule's newest finished backup of any outcome, Unix seconds",
            velero_last_finished.clone(),
        );
        let round_last_run = Gauge::default();
        registry.register(
            "round_last_run_timestamp_seconds",
            "When the latest round of cluster checks ran, Unix seconds",
            round_last_run.clone(),
        );
        let check_last_run = Family::<CheckLabel, Gauge>::default();
        registry.register(
            "check_last_run_timestamp_seconds",
            "When the latest round that ran a check ran, Unix seconds",
            check_last_run.clone(),
        );
        Self {
            registry,
            reports,
            streams_active,
            store_write_seconds,
            nodes,
            ingest_throttled_total,
            ingest_streams_made_way_total,
            ingest_connections_refused_per_source_total,
            findings,
            findings_silenced,
            report_score,
            check_score,
            certificate_expiry,
            certificate_renewal,
            velero_last_successful,
            velero_last_finished,
            round_last_run,
            check_last_run,
            refresh: Mutex::new(()),
        }
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// The text exposition (Prometheus text format 0.0.4).
    pub fn encode(&self) -> String {
        let _guard = self
            .refresh
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.encode_locked()
    }

    fn encode_locked(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        to_text_format(&out)
    }

    /// Sets the series of the merged report (findings, silenced findings, scores) and
    /// returns the text exposition, both under one lock.
    pub(crate) fn encode_with_report(&self, report: &ClusterReport) -> String {
        let _guard = self
            .refresh
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.findings.clear();
        self.findings_silenced.clear();
        self.check_score.clear();
        self.report_score.set(i64::from(report.score));
        for c in &report.checks {
            let check = CheckLabel {
                check: c.name.clone(),
            };
            for f in &c.findings {
                self.findings
                    .get_or_create(&FindingLabels {
                        check: c.name.clone(),
                        severity: f.severity.to_string(),
                        code: f.code.clone(),
                    })
                    .inc();
            }
            self.findings_silenced
                .get_or_create(&check)
                .set(count(c.silenced));
            let (_, score, _) =
                crate::report::score::status_and_score(&[], std::slice::from_ref(c), &[]);
            self.check_score.get_or_create(&check).set(i64::from(score));
        }
        self.encode_locked()
    }

    /// Records a round that ran: its time, the time of each check it ran, and (when it
    /// read the cluster) the per-object moments, replacing the previous ones.
    pub(crate) fn observe_round(&self, round: &CheckRound) {
        let _guard = self
            .refresh
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(at) = round.at {
            self.round_last_run.set(at.as_second());
            for c in &round.checks {
                self.check_last_run
                    .get_or_create(&CheckLabel {
                        check: c.name.clone(),
                    })
                    .set(at.as_second());
            }
        }
        let Some(times) = &round.times else { return };
        self.certificate_expiry.clear();
        self.certificate_renewal.clear();
        for c in &times.certificates {
            let labels = ObjectLabels {
                namespace: c.namespace.clone(),
                name: c.name.clone(),
            };
            if let Some(t) = c.not_after {
                self.certificate_expiry
                    .get_or_create(&labels)
                    .set(t.as_second());
            }
            if let Some(t) = c.renewal {
                self.certificate_renewal
                    .get_or_create(&labels)
                    .set(t.as_second());
            }
        }
        self.velero_last_successful.clear();
        self.velero_last_finished.clear();
        for s in &times.schedules {
            let labels = ScheduleLabels {
                namespace: s.namespace.clone(),
                schedule: s.schedule.clone(),
            };
            if let Some(t) = s.last_successful {
                self.velero_last_successful
                    .get_or_create(&labels)
                    .set(t.as_second());
            }
            if let Some(t) = s.last_finished {
                self.velero_last_finished
                    .get_or_create(&labels)
                    .set(t.as_second());
            }
        }
    }
}

/// OpenMetrics text as prometheus-client writes it, in the Prometheus text format 0.0.4:
/// a counter family's `# HELP`/`# TYPE` name gets the `_total` its samples carry, and the
/// `# UNIT` and `# EOF` lines (which 0.0.4 does not have) are dropped.
fn to_text_format(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .filter(|name| !name.ends_with("_total"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + 16 * counters.len());
    for line in open_metrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((prefix, rest)) = meta {
            let name = rest.split(' ').next().unwrap_or_default();
            if counters.contains(name) {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str("_total");
                out.push_str(&rest[name.len()..]);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_families_are_named_with_total_and_openmetrics_lines_are_dropped() {
        let m = Metrics::default();
        m.ingest_throttled_total.inc();
        m.store_write_seconds.observe(0.001);
        let text = m.encode();
        assert!(
            text.contains("# HELP caretaker_ingest_throttled_total Reports held back"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE caretaker_ingest_throttled_total counter\ncaretaker_ingest_throttled_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE caretaker_store_write_duration_seconds histogram\n"),
            "{text}"
        );
        assert!(
            !text.contains("# UNIT") && !text.contains("# EOF"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_scheduled_run_moves_only_its_checks_and_keeps_the_object_times_it_did_not_read() {
        use crate::checks::CheckResult;
        use crate::report::ScheduledRun;
        use crate::schedule::config::Task;
        use crate::state::State;
        use crate::store::Store;

        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let state = State::new(Store::in_memory().unwrap(), 3).unwrap();
        let cert = |not_after: &str| CertificateTimes {
            namespace: "shop".into(),
            name: "web".into(),
            not_after: Some(t(not_after)),
            renewal: None,
        };
        state.set_round(CheckRound {
            at: Some(t("2026-12-01T00:00:00Z")),
            checks: vec![
                CheckResult::new("pods", "", vec![]),
                CheckResult::new("certificates", "", vec![]),
            ],
            times: Some(ClusterTimes {
                certificates: vec![cert("2027-01-01T00:00:00Z")],
                schedules: vec![],
            }),
            ..CheckRound::default()
        });
        // A daily run of the pods check only, which read no certificates.
        let partial = CheckRound {
            at: Some(t("2026-12-02T00:00:00Z")),
            checks: vec![CheckResult::new("pods", "", vec![])],
            ..CheckRound::default()
        };
        let run = ScheduledRun {
            kinds: vec!["daily".into()],
            tasks: vec![Task::Pods],
            trends: None,
            alert_review: None,
        };
        state
            .finish_scheduled_round(partial, run, t("2026-12-02T00:00:00Z"))
            .await
            .unwrap();
        let text = state.metrics_text(t("2026-12-02T00:00:00Z"));
        let line = |series: &str| {
            text.lines()
                .find(|l| l.starts_with(series))
                .unwrap_or_else(|| panic!("no {series} in\n{text}"))
                .to_string()
        };
        // 2026-12-02 and 2026-12-01 in Unix seconds.
        assert_eq!(
            line("caretaker_round_last_run_timestamp_seconds "),
            "caretaker_round_last_run_timestamp_seconds 1796169600"
        );
        assert_eq!(
            line(r#"caretaker_check_last_run_timestamp_seconds{check="pods"}"#),
            r#"caretaker_check_last_run_timestamp_seconds{check="pods"} 1796169600"#
        );
        assert_eq!(
            line(r#"caretaker_check_last_run_timestamp_seconds{check="certificates"}"#),
            r#"caretaker_check_last_run_timestamp_seconds{check="certificates"} 1796083200"#
        );
        assert_eq!(
            line("caretaker_certificate_expiry_timestamp_seconds"),
            r#"caretaker_certificate_expiry_timestamp_seconds{namespace="shop",name="web"} 1798761600"#
        );
        // A round that read the cluster replaces the object series: a gone one goes.
        state.set_round(CheckRound {
            at: Some(t("2026-12-03T00:00:00Z")),
            times: Some(ClusterTimes::default()),
            ..CheckRound::default()
        });
        let text = state.metrics_text(t("2026-12-03T00:00:00Z"));
        assert!(
            !text.contains("caretaker_certificate_expiry_timestamp_seconds{"),
            "{text}"
        );
    }
}
