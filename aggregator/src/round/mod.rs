//! A round: read the cluster (a live API server, a dump, or nothing), run every check,
//! propose cleanups, read the external signals, and hand the result ([`CheckRound`]) to
//! the state, whose merged report joins it with the live node reports.
//!
//! [`scheduled`]: the daily, weekly and monthly rounds (recorded in the history).
//!
//! ```yaml
//! cluster:
//!   source: none          # none (default) | live | dump
//!   dump_paths: []        # files or directories of `kubectl get -o json|yaml`, for `dump`
//!   interval: 10m         # default 10m: how often a round runs; 1m..24h
//! ```

pub(crate) mod scheduled;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use caretaker_core::config::{BoundedDuration, ms};
use caretaker_core::error::Chain;
use caretaker_core::model::NodeReport;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::checks::{self, CheckResult, ChecksConfig, Finding, ObjectRef, Severity};
use crate::cleanup::{self, CleanupConfig};
use crate::cluster::{ClusterState, dump, live, volumes};
use crate::report::{CheckRound, NodeEvent, SignalsReport};
use crate::schedule::config::Task;
use crate::signals::config::SignalsConfig;
use crate::store;

/// Kubelet event reasons about a node's disk: image garbage collection and eviction
/// (`pkg/kubelet/events` and the eviction manager).
pub(crate) const DISK_EVENT_REASONS: &[&str] = &[
    "FreeDiskSpaceFailed",
    "ImageGCFailed",
    "EvictionThresholdMet",
    "NodeHasDiskPressure",
    "Evicted",
];

/// Where the cluster state comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// No cluster checks: nodes and signals only.
    #[default]
    None,
    /// The API server, through in-cluster config or kubeconfig.
    Live,
    /// `dump_paths`, re-read every round.
    Dump,
}

/// The `cluster:` config section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    pub source: Source,
    pub dump_paths: Vec<PathBuf>,
    /// How often a round runs. 1m to 24h.
    pub interval: BoundedDuration<{ ms::MINUTE }, { ms::DAY }>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            source: Source::None,
            dump_paths: Vec::new(),
            interval: BoundedDuration::secs(600),
        }
    }
}

/// Everything a round needs.
#[derive(Debug, Clone, Default)]
pub struct RoundConfig {
    pub cluster: ClusterConfig,
    pub checks: ChecksConfig,
    pub cleanup: CleanupConfig,
    pub signals: SignalsConfig,
    /// Chart repositories of the `chart_updates` task.
    pub charts: crate::updates::ChartsConfig,
    /// Recommendations and capacity ([`crate::capacity::review`]).
    pub capacity: crate::capacity::CapacityConfig,
}

/// Why the cluster could not be read; becomes the `cluster` check's finding, printed with
/// its causes.
#[derive(Debug, thiserror::Error)]
enum ClusterError {
    #[error("dump reader failed")]
    Task(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Dump(dump::DumpError),
    #[error("no Kubernetes client")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Live(live::LiveError),
}

/// Runs rounds; keeps the API client and the fetched chart versions between rounds.
#[derive(Default)]
pub struct Rounds {
    cfg: RoundConfig,
    client: Option<kube::Client>,
    /// Chart versions fetched from the repositories, reused for `charts.refresh`.
    chart_versions: crate::updates::Cache,
}

impl std::fmt::Debug for Rounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rounds")
            .field("cfg", &self.cfg)
            .field("connected", &self.client.is_some())
            .finish()
    }
}

impl Rounds {
    pub fn new(cfg: RoundConfig) -> Self {
        Self {
            cfg,
            client: None,
            chart_versions: crate::updates::Cache::default(),
        }
    }

    /// Rounds whose `live` source reads through `client` (e.g. one built from a chosen
    /// kubeconfig context) instead of in-cluster config or the default kubeconfig.
    pub fn with_client(cfg: RoundConfig, client: kube::Client) -> Self {
        Self {
            cfg,
            client: Some(client),
            chart_versions: crate::updates::Cache::default(),
        }
    }

    pub fn config(&self) -> &RoundConfig {
        &self.cfg
    }

    /// Reads the cluster as configured. `None` with no source; a source that cannot be
    /// read becomes a `cluster` check result saying why.
    async fn cluster(&mut self) -> Result<Option<ClusterState>, ClusterError> {
        match self.cfg.cluster.source {
            Source::None => Ok(None),
            Source::Dump => {
                let paths = self.cfg.cluster.dump_paths.clone();
                let namespaces = self.cfg.checks.namespaces.clone();
                tokio::task::spawn_blocking(move || {
                    dump::load(&paths).map(|mut s| {
                        s.retain_namespaces(&namespaces);
                        s
                    })
                })
                .await
                .map_err(ClusterError::Task)?
                .map(Some)
                .map_err(ClusterError::Dump)
            }
            Source::Live => {
                let client = match &self.client {
                    Some(c) => c,
                    None => self.client.insert(
                        kube::Client::try_default()
                            .await
                            .map_err(ClusterError::Client)?,
                    ),
                };
                live::load(client, &self.cfg.checks)
                    .await
                    .map(Some)
                    .map_err(ClusterError::Live)
            }
        }
    }

    /// One round as of `now`. `nodes` are the latest agent reports (their pod volume
    /// figures give PVC usage).
    pub async fn run(&mut self, nodes: &[NodeReport], now: Timestamp) -> CheckRound {
        self.run_tasks(nodes, now, None).await
    }

    /// A round of only `tasks` (a scheduled run's `checks:`), or of everything with
    /// `None`. The cluster is read only when a cluster check or `cleanup` is among them.
    pub async fn run_tasks(
        &mut self,
        nodes: &[NodeReport],
        now: Timestamp,
        tasks: Option<&BTreeSet<Task>>,
    ) -> CheckRound {
        let wants = |t: Task| tasks.is_none_or(|ts| ts.contains(&t));
        let mut round = CheckRound {
            at: Some(now),
            ..CheckRound::default()
        };
        let reads_cluster = tasks.is_none_or(|ts| {
            ts.iter().any(|t| {
                t.cluster_check().is_some() || matches!(t, Task::Cleanup | Task::ChartUpdates)
            })
        });
        let cluster = if reads_cluster {
            self.cluster().await
        } else {
            Ok(None)
        };
        match cluster {
            Ok(Some(mut state)) => {
                state.volume_stats = volumes::from_node_reports(nodes);
                round.checks = match tasks {
                    None => checks::run_all(&state, &self.cfg.checks, now),
                    Some(ts) => {
                        let names: BTreeSet<&str> =
                            ts.iter().filter_map(|t| t.cluster_check()).collect();
                        checks::ALL
                            .iter()
                            .filter(|c| names.contains(c.name))
                            .map(|c| (c.run)(&state, &self.cfg.checks, now))
                            .collect::<Vec<_>>()
                    }
                };
                checks::events::fold(&mut round.checks);
                let labels = crate::cluster::labels::LabelIndex::with_template_labels(&state);
                attach_labels(&mut round.checks, &labels);
                // Silenced findings are counted per check; expired entries are reported.
                checks::silence::apply_with_labels(
                    &mut round.checks,
                    &self.cfg.checks.exclude,
                    &self.cfg.checks.severity_overrides,
                    &[],
                    now,
                    Some(&labels),
                );
                if wants(Task::Cleanup) {
                    round.proposals = cleanup::propose(&state, &self.cfg.cleanup, now);
                    for p in &mut round.proposals {
                        if let Some(l) = labels.get(&p.object) {
                            p.labels.clone_from(l);
                        }
                    }
                }
                fill_node_facts(&state, &mut round);
                round.times = Some(crate::metrics::ClusterTimes::from_state(&state));
                round.planning.samples = crate::capacity::sample(&state, now);
                let releases = if wants(Task::ChartUpdates) {
                    checks::helm::releases(&state)
                } else {
                    Vec::new()
                };
                if wants(Task::ChartUpdates)
                    && let Some((check, report)) = crate::updates::check(
                        &releases,
                        &self.cfg.charts,
                        &mut self.chart_versions,
                        now,
                    )
                    .await
                {
                    let mut one = vec![check];
                    crate::updates::attach_release_labels(&mut one, &releases, &labels);
                    checks::silence::apply_with_labels(
                        &mut one,
                        &self.cfg.checks.exclude,
                        &self.cfg.checks.severity_overrides,
                        &[],
                        now,
                        Some(&labels),
                    );
                    round.checks.extend(one);
                    round.planning.chart_updates = Some(report);
                }
            }
            Ok(None) => {}
            Err(e) => {
                let e = Chain(&e).to_string();
                warn!(error = %e, "Cannot read the cluster; this round has no cluster checks.");
                round.checks.push(CheckResult::new(
                    "cluster",
                    "the cluster could not be read",
                    vec![Finding::new(
                        "cluster_unreadable",
                        Severity::Critical,
                        ObjectRef {
                            kind: "Cluster".into(),
                            ..ObjectRef::default()
                        },
                        e,
                    )],
                ));
            }
        }
        if wants(Task::Signals) {
            let (signal_checks, signals) = read_signals(&self.cfg.signals, now).await;
            round.checks.extend(signal_checks);
            round.signals = signals;
        }
        round
    }
}

/// Gives every finding the labels of its object (when the state holds them), so that the
/// report carries what `report -l` and `checks.exclude` selectors match.
fn attach_labels(results: &mut [CheckResult], labels: &crate::cluster::labels::LabelIndex<'_>) {
    for f in results.iter_mut().flat_map(|r| r.findings.iter_mut()) {
        if let Some(l) = labels.get(&f.object) {
            f.labels.clone_from(l);
        }
    }
}

/// Node names, DiskPressure conditions and disk-related kubelet events.
fn fill_node_facts(state: &ClusterState, round: &mut CheckRound) {
    if state.listed(crate::cluster::Resource::Node) {
        round.cluster_nodes = Some(
            state
                .nodes
                .iter()
                .filter_map(|n| n.metadata.name.clone())
                .collect(),
        );
    }
    round.disk_pressure_nodes = state
        .nodes
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "DiskPressure" && c.status == "True")
                })
        })
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let mut events: BTreeMap<String, Vec<NodeEvent>> = BTreeMap::new();
    for e in &state.events {
        let reason = e.reason.as_deref().unwrap_or("");
        if !DISK_EVENT_REASONS.contains(&reason) {
            continue;
        }
        let node = if e.involved_object.kind.as_deref() == Some("Node") {
            e.involved_object.name.clone()
        } else {
            e.source
                .as_ref()
                .and_then(|s| s.host.clone())
                .or_else(|| e.reporting_instance.clone())
        };
        let Some(node) = node else { continue };
        events.entry(node).or_default().push(NodeEvent {
            reason: reason.to_string(),
            message: e.message.clone().unwrap_or_default(),
            count: u32::try_from(checks::events::event_count(e)).unwrap_or(u32::MAX),
            last_seen: checks::events::event_time(e),
        });
    }
    for v in events.values_mut() {
        v.sort_by(|a, b| {
            b.last_seen
                .cmp(&a.last_seen)
                .then_with(|| a.reason.cmp(&b.reason))
        });
    }
    round.node_events = events;
}

/// Reads every configured signal; each becomes a check result beside its raw figures.
pub(crate) async fn read_signals(
    cfg: &SignalsConfig,
    now: Timestamp,
) -> (Vec<CheckResult>, Option<SignalsReport>) {
    if cfg.http_endpoints.is_empty() && cfg.prometheus.is_none() && cfg.alertmanager.is_none() {
        return (Vec::new(), None);
    }
    let mut checks = Vec::new();
    let mut report = SignalsReport::default();

    for c in checks::SIGNALS {
        if let Some(r) = (c.run)(cfg, now, &mut report).await {
            checks.push(r);
        }
    }
    (checks, Some(report))
}

/// Runs the notifier on the current merged report and keeps its state.
async fn notify(
    state: &crate::state::State,
    notifier: &crate::schedule::notify::Notifier,
    now: Timestamp,
) {
    let mut ns: crate::schedule::notify::NotifyState =
        match state.store().get_meta(NOTIFY_STATE_KEY).await {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => {
                warn!(error = %Chain(&e), "Cannot read the notifier state; starting afresh.");
                Default::default()
            }
        };
    let report = state.cluster_report(now);
    match notifier.process(&mut ns, &report, now).await {
        Ok(sent) => {
            if let Some(n) = sent {
                tracing::info!(text = %n.text, "Notification sent.");
            }
            if let Err(e) = state.store().put_meta(NOTIFY_STATE_KEY, ns).await {
                warn!(error = %Chain(&e), "Cannot store the notifier state; a notification may repeat.");
            }
        }
        Err(e) => {
            warn!(error = %Chain(&e), "Notification not delivered; it is retried after the next round.")
        }
    }
}

/// Records the round's usage and capacity samples and fills its recommendations and
/// capacity ([`crate::capacity::review`], through the store's facade); a store error is
/// logged and the round goes on.
///
/// # Errors
/// Only [`store::Error::Task`]: the review panicked, and the round is lost.
async fn review(
    state: &crate::state::State,
    cfg: &crate::capacity::CapacityConfig,
    mut round: CheckRound,
    now: Timestamp,
) -> Result<CheckRound, store::Error> {
    let cfg = cfg.clone();
    let (round, reviewed) = state
        .store()
        .call(move |store, _| {
            let reviewed = crate::capacity::review(store, &cfg, &mut round, now);
            Ok((round, reviewed))
        })
        .await?;
    if let Err(e) = reviewed {
        warn!(error = %Chain(&e), "Cannot record usage samples; this round has no recommendations or capacity.");
    }
    Ok(round)
}

/// Key of the notifier's state document in the store.
pub(crate) const NOTIFY_STATE_KEY: &str = "notify_state";

/// Runs a round now and then every `interval` (±10 % jitter) until `shutdown`, handing each
/// to the state, which records the merged report every `record_interval`. After each round
/// the notifier (when configured) looks at the merged report; its de-duplication state is
/// kept in the store, so a restart does not page again for the same finding. Round requests
/// arrive on `requests` (the receiving half of [`crate::state::round_requests`]).
pub(crate) async fn run_loop(
    state: std::sync::Arc<crate::state::State>,
    mut rounds: Rounds,
    record_interval: Duration,
    notifier: Option<crate::schedule::notify::Notifier>,
    mut requests: tokio::sync::mpsc::Receiver<crate::state::RoundRequest>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let interval = rounds.config().cluster.interval.get();
    let mut waiting: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
    let mut scheduled: Vec<crate::state::RoundRequest> = Vec::new();
    let mut next_full = tokio::time::Instant::now();
    loop {
        // Scheduled runs first, each as its own round of its tasks.
        for req in scheduled.drain(..) {
            let Some(run) = req.run else { continue };
            let now = Timestamp::now();
            let tasks: BTreeSet<Task> = run.tasks.iter().copied().collect();
            let partial = rounds
                .run_tasks(&state.node_reports(), now, Some(&tasks))
                .await;
            let kinds = run.kinds.join(",");
            let capacity = &rounds.config().capacity;
            let recorded = match review(&state, capacity, partial, now).await {
                Ok(partial) => state.finish_scheduled_round(partial, run, now).await,
                Err(e) => Err(e),
            };
            match recorded {
                Ok(rec) => tracing::info!(
                    kinds,
                    new = rec.new_findings,
                    resolved = rec.resolved_findings,
                    bytes = rec.stored_bytes,
                    "Scheduled run recorded in the history."
                ),
                Err(e @ store::Error::Task(_)) => {
                    warn!(kinds, error = %Chain(&e), "Scheduled run task failed.")
                }
                Err(e) => {
                    warn!(kinds, error = %Chain(&e), "Scheduled run finished but the history could not be written.")
                }
            }
            if let Some(n) = &notifier {
                notify(&state, n, now).await;
            }
            let _ = req.done.send(());
        }
        // A full round when its interval is up or someone waits for one.
        if !waiting.is_empty() || tokio::time::Instant::now() >= next_full {
            let now = Timestamp::now();
            let round = rounds.run(&state.node_reports(), now).await;
            let checks = round.checks.len();
            let force = !waiting.is_empty();
            let capacity = &rounds.config().capacity;
            let recorded = match review(&state, capacity, round, now).await {
                Ok(round) => state.finish_round(round, now, record_interval, force).await,
                Err(e) => Err(e),
            };
            match recorded {
                Ok(Some(rec)) => tracing::info!(
                    checks,
                    new = rec.new_findings,
                    resolved = rec.resolved_findings,
                    bytes = rec.stored_bytes,
                    "Round finished; report recorded in the history."
                ),
                Ok(None) => tracing::debug!(checks, "Round finished."),
                Err(e @ store::Error::Task(_)) => warn!(error = %Chain(&e), "Round task failed."),
                Err(e) => {
                    warn!(error = %Chain(&e), "Round finished but the history could not be written.")
                }
            }
            if let Some(n) = &notifier {
                notify(&state, n, now).await;
            }
            for w in waiting.drain(..) {
                let _ = w.send(());
            }
            next_full = tokio::time::Instant::now() + caretaker_core::jitter::jittered(interval);
        }
        let mut take = |req: crate::state::RoundRequest| match req.run {
            Some(_) => scheduled.push(req),
            None => waiting.push(req.done),
        };
        tokio::select! {
            () = tokio::time::sleep_until(next_full) => {}
            Some(req) = requests.recv() => take(req),
            () = shutdown.cancelled() => break,
        }
        while let Ok(req) = requests.try_recv() {
            take(req);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const DUMP: &str = r#"{"apiVersion":"v1","kind":"List","items":[
      {"apiVersion":"v1","kind":"Node","metadata":{"name":"node-a","uid":"n1","creationTimestamp":"2026-01-01T00:00:00Z"},
       "status":{"conditions":[{"type":"Ready","status":"True"},{"type":"DiskPressure","status":"True"}],
                 "allocatable":{"cpu":"4","memory":"8Gi"}}},
      {"apiVersion":"v1","kind":"Node","metadata":{"name":"node-b","uid":"n2","creationTimestamp":"2026-01-01T00:00:00Z"},
       "status":{"conditions":[{"type":"Ready","status":"True"}],"allocatable":{"cpu":"4","memory":"8Gi"}}},
      {"apiVersion":"v1","kind":"Event","metadata":{"name":"e1","namespace":"default","uid":"e1"},
       "involvedObject":{"kind":"Node","name":"node-a"},"reason":"FreeDiskSpaceFailed","type":"Warning",
       "message":"failed to garbage collect required amount of images","count":4,"lastTimestamp":"2026-11-29T02:00:00Z"},
      {"apiVersion":"v1","kind":"Event","metadata":{"name":"e2","namespace":"shop","uid":"e2"},
       "involvedObject":{"kind":"Pod","name":"api","namespace":"shop"},"reason":"Evicted","type":"Warning",
       "message":"The node was low on resource: ephemeral-storage.","source":{"host":"node-a"},"lastTimestamp":"2026-11-29T02:30:00Z"},
      {"apiVersion":"v1","kind":"Event","metadata":{"name":"e3","namespace":"shop","uid":"e3"},
       "involvedObject":{"kind":"Pod","name":"web","namespace":"shop"},"reason":"BackOff","type":"Warning",
       "message":"Back-off restarting failed container","lastTimestamp":"2026-11-29T02:30:00Z"}
    ]}"#;

    /// A round that reads its cluster from the dump at `path` (a file or directory).
    fn dump_config(path: std::path::PathBuf) -> RoundConfig {
        RoundConfig {
            cluster: ClusterConfig {
                source: Source::Dump,
                dump_paths: vec![path],
                interval: ClusterConfig::default().interval,
            },
            ..RoundConfig::default()
        }
    }

    #[tokio::test]
    async fn a_dump_round_gives_checks_nodes_pressure_and_disk_events() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cluster.json"), DUMP).unwrap();
        let cfg = dump_config(dir.path().into());
        let now: Timestamp = "2026-11-29T03:00:00Z".parse().unwrap();
        let round = Rounds::new(cfg).run(&[], now).await;
        assert_eq!(round.at, Some(now));
        assert_eq!(
            round.cluster_nodes,
            Some(vec!["node-a".to_string(), "node-b".to_string()])
        );
        assert_eq!(round.disk_pressure_nodes, vec!["node-a".to_string()]);
        let ev = &round.node_events["node-a"];
        assert_eq!(
            ev.iter()
                .map(|e| (e.reason.as_str(), e.count))
                .collect::<Vec<_>>(),
            vec![("Evicted", 1), ("FreeDiskSpaceFailed", 4)]
        );
        assert!(!round.node_events.contains_key("node-b"));
        let names: Vec<&str> = round.checks.iter().map(|c| c.name.as_str()).collect();
        assert!(
            names.contains(&"nodes") && names.contains(&"events") && names.contains(&"pods"),
            "{names:?}"
        );
        let nodes = round.checks.iter().find(|c| c.name == "nodes").unwrap();
        assert!(
            nodes.findings.iter().any(|f| f.object.name == "node-a"),
            "{:?}",
            nodes.findings
        );
        assert!(round.signals.is_none());
    }

    #[tokio::test]
    async fn a_scheduled_run_runs_only_its_tasks_and_records_them_over_the_latest_round() {
        use crate::report::ScheduledRun;
        use crate::state::State;
        use crate::store::Store;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cluster.json"), DUMP).unwrap();
        let cfg = dump_config(dir.path().into());
        let mut rounds = Rounds::new(cfg);
        let now: Timestamp = "2026-11-29T03:00:00Z".parse().unwrap();
        let names = |r: &CheckRound| r.checks.iter().map(|c| c.name.clone()).collect::<Vec<_>>();

        // Only pods and events: two checks, no signals, no proposals.
        let tasks: BTreeSet<Task> = [Task::Pods, Task::Events].into();
        let partial = rounds.run_tasks(&[], now, Some(&tasks)).await;
        assert_eq!(names(&partial), ["pods", "events"]);
        assert!(partial.signals.is_none() && partial.proposals.is_empty());
        // Only trends: the cluster is not even read.
        let trends_only: BTreeSet<Task> = [Task::Trends].into();
        let none = rounds.run_tasks(&[], now, Some(&trends_only)).await;
        assert!(none.checks.is_empty() && none.cluster_nodes.is_none());

        // Over a full round, the run replaces its checks and keeps the others.
        let state = State::new(Store::in_memory().unwrap(), 3).unwrap();
        let full = rounds.run(&[], now).await;
        let mut all = names(&full);
        all.sort();
        state.set_round(full);
        let mut changed = partial.clone();
        changed.checks[0].summary = "from the daily run".into();
        let later = now + Duration::from_secs(3600);
        changed.at = Some(later);
        let run = ScheduledRun {
            kinds: vec!["daily".into(), "monthly".into()],
            tasks: vec![Task::Pods, Task::Events, Task::Trends],
            trends: None,
            alert_review: None,
        };
        let rec = state
            .finish_scheduled_round(changed, run, later)
            .await
            .unwrap();
        assert!(rec.stored_bytes > 0);
        let stored = state.store().history_at(later).await.unwrap().unwrap();
        assert_eq!(
            stored
                .checks
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>(),
            all,
            "every check is still there"
        );
        assert_eq!(
            stored
                .checks
                .iter()
                .find(|c| c.name == "pods")
                .unwrap()
                .summary,
            "from the daily run"
        );
        assert_eq!(stored.checks_at, Some(later));
        let run = stored.run.expect("the record says which run it was");
        assert_eq!(run.kinds, ["daily", "monthly"]);
        assert_eq!(run.tasks, [Task::Pods, Task::Events, Task::Trends]);
        assert!(
            run.trends.is_some_and(|t| t.alerts_7d.is_empty()),
            "the trends task records trends"
        );
        let md = crate::report::render(
            &state.store().history_at(later).await.unwrap().unwrap(),
            crate::report::Output::Markdown,
        )
        .unwrap();
        assert!(
            md.contains("- run: daily, monthly (scheduled: pods, events, trends)\n"),
            "{md}"
        );
        assert!(md.contains("## Trends\n"), "{md}");
    }

    #[tokio::test]
    async fn a_round_records_its_capacity_samples_and_the_recorded_report_shows_capacity() {
        use crate::state::State;
        use crate::store::Store;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cluster.json"), DUMP).unwrap();
        let cfg = dump_config(dir.path().into());
        let mut rounds = Rounds::new(cfg);
        let state = State::new(Store::in_memory().unwrap(), 3).unwrap();
        let now: Timestamp = "2026-11-29T03:00:00Z".parse().unwrap();
        let round = rounds.run(&[], now).await;
        assert!(round.planning.samples.is_some());
        let round = review(&state, &rounds.config().capacity, round, now)
            .await
            .unwrap();
        assert!(
            round.planning.samples.is_none(),
            "the samples went to the store"
        );
        state
            .finish_round(round, now, Duration::from_secs(3600), true)
            .await
            .unwrap();
        let stored = state.store().history_at(now).await.unwrap().unwrap();
        let cap = stored
            .planning
            .capacity
            .expect("capacity in the recorded report");
        assert_eq!(
            cap.nodes
                .iter()
                .map(|n| (n.node.as_str(), n.cpu_millicores.allocatable, n.points))
                .collect::<Vec<_>>(),
            vec![("node-a", 4000, 1), ("node-b", 4000, 1)]
        );
        assert_eq!(cap.cluster.memory_bytes.allocatable, 16 << 30);
        assert!(stored.checks.iter().any(|c| c.name == "capacity"));
        let points: crate::capacity::NodeHistory = state
            .store()
            .get_meta(crate::capacity::NODES_KEY)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(points.nodes["node-a"].len(), 1);
    }

    #[tokio::test]
    async fn an_unreadable_dump_is_a_critical_finding_not_a_crash() {
        let cfg = dump_config(Path::new("/nonexistent/dump.json").into());
        let round = Rounds::new(cfg).run(&[], Timestamp::now()).await;
        assert_eq!(round.checks.len(), 1);
        assert_eq!(
            (round.checks[0].name.as_str(), round.checks[0].severity),
            ("cluster", Severity::Critical)
        );
        assert!(
            round.checks[0].findings[0]
                .message
                .contains("/nonexistent/dump.json"),
            "{:?}",
            round.checks[0].findings
        );
    }

    #[tokio::test]
    async fn unreachable_signals_are_findings() {
        let cfg: SignalsConfig = caretaker_core::config::parse_yaml(
            "http_endpoints:\n  - name: api\n    url: http://127.0.0.1:9/health\n    timeout: 1s\nalertmanager:\n  url: http://127.0.0.1:9\n  timeout: 1s\n",
            Path::new("s.yaml"),
        )
        .unwrap();
        let (checks, report) = read_signals(&cfg, Timestamp::now()).await;
        assert_eq!(
            checks
                .iter()
                .map(|c| (c.name.as_str(), c.severity))
                .collect::<Vec<_>>(),
            vec![
                ("http_endpoints", Severity::Critical),
                ("alertmanager", Severity::Warning),
            ]
        );
        assert_eq!(checks[0].findings[0].code, "endpoint_unhealthy");
        assert_eq!(checks[1].findings[0].code, "alertmanager_unreachable");
        assert_eq!(report.unwrap().endpoints.len(), 1);
    }
}
