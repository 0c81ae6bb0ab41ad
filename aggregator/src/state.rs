//! The aggregator's shared state: the durable store, an in-memory copy of every node's
//! latest entry for fast queries, metrics, and the freshness rule.
//!
//! The store is reached through its async facade ([`StoreHandle`]): the methods that write
//! or read it are `async` and never block a runtime thread. The few sync ones that touch it
//! ([`State::build`], [`State::ingest`]) are for callers that are themselves sync: tests,
//! benchmarks and the one-process demo.

use caretaker_core::error::Chain;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use caretaker_core::model::{Freshness, NodeReport, NodeStatus};
use caretaker_core::window::MaintenanceWindow;
use jiff::Timestamp;

use crate::metrics::{FreshnessLabel, Metrics, ResultLabel};
use crate::report::{CheckRound, ClusterReport, MergeConfig, RunTrends, ScheduledRun};
use crate::schedule::config::Task;
use crate::signals::review::AlertReviewConfig;
use crate::store::history::{History, Recorded, Retention};
use crate::store::{self, Outcome, Store, StoreHandle, StoredNode};

/// Why a requested round did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RoundRequestError {
    #[error("no round loop runs in this process")]
    NoLoop,
    /// The round loop's queue of requests is full.
    #[error("cannot request a round: no available capacity")]
    Busy,
    /// The round loop ended before the request was queued.
    #[error("cannot request a round: channel closed")]
    Closed,
    /// The round loop ended before it answered.
    #[error("the round loop stopped")]
    Stopped,
}

/// Shared by the gRPC and HTTP servers.
#[derive(Debug)]
pub struct State {
    /// The store and the report history, behind the async facade.
    store: StoreHandle,
    /// Copy of the store's entries; written only after the store commit succeeded.
    nodes: RwLock<BTreeMap<String, StoredNode>>,
    /// Each node's latest report as JSON, serialized once when it is stored (updated under
    /// the `nodes` write lock, so both always agree): the JSON endpoint splices these in
    /// instead of cloning and serializing every report per query.
    node_json: RwLock<HashMap<String, Bytes>>,
    pub metrics: Metrics,
    merge: MergeConfig,
    /// The latest round of cluster checks and signals (empty until one has run).
    round: RwLock<CheckRound>,
    /// When a merged report was last recorded in the history.
    last_recorded: RwLock<Option<Timestamp>>,
    /// Requests for a round now, served by the round loop (`None`: no loop runs in this
    /// process); each carries the sender that is answered when the round is done and recorded.
    round_requests: Option<tokio::sync::mpsc::Sender<RoundRequest>>,
    /// The maintenance window, shown in every report (`None`: reports show none).
    window: Option<MaintenanceWindow>,
    /// The alert review's days and flapping thresholds.
    alert_review: AlertReviewConfig,
    ready: AtomicBool,
    /// False after a write failed with an I/O error, until [`State::check_store`] reopened
    /// the store and a probe write committed: meanwhile /readyz fails and ingest answers
    /// UNAVAILABLE (agents keep their reports and resend them).
    store_writable: AtomicBool,
    /// When the store was last reopened, so retries happen at most once a second.
    last_reopen: std::sync::Mutex<Option<std::time::Instant>>,
}

/// What a [`State`] is built with besides its store (see [`State::build`]).
#[derive(Debug)]
pub struct Options {
    /// A node is stale after this many of its report intervals without a report.
    pub stale_after_intervals: u32,
    /// How long recorded reports are kept.
    pub retention: Retention,
    /// The maintenance window shown in every report.
    pub window: Option<MaintenanceWindow>,
    /// Where round requests go: the sending half of [`round_requests`], whose receiving half
    /// the round loop ([`crate::round::run_loop`]) serves.
    pub(crate) round_requests: Option<tokio::sync::mpsc::Sender<RoundRequest>>,
    /// The alert review scheduled runs with the `signals` task record.
    pub(crate) alert_review: AlertReviewConfig,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            stale_after_intervals: MergeConfig::default().stale_after_intervals,
            retention: Retention::default(),
            window: None,
            round_requests: None,
            alert_review: AlertReviewConfig::default(),
        }
    }
}

/// The channel of round requests: the sender goes into [`Options::round_requests`], the
/// receiver to the round loop. A few queued requests at most: more callers wait for the
/// same next round anyway.
#[must_use]
pub(crate) fn round_requests() -> (
    tokio::sync::mpsc::Sender<RoundRequest>,
    tokio::sync::mpsc::Receiver<RoundRequest>,
) {
    tokio::sync::mpsc::channel(8)
}

/// A request to the round loop ([`crate::round::run_loop`]).
#[derive(Debug)]
pub(crate) struct RoundRequest {
    /// `None`: a full round. `Some`: a scheduled run of only its tasks.
    pub run: Option<ScheduledRun>,
    /// Answered once the round is done and recorded.
    pub done: tokio::sync::oneshot::Sender<()>,
}

impl State {
    /// Loads every stored node from `store`.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn new(store: Store, stale_after_intervals: u32) -> Result<Arc<Self>, store::Error> {
        Self::build(
            store,
            Options {
                stale_after_intervals,
                ..Options::default()
            },
        )
    }

    /// [`State::build`] on the blocking pool: how async code (the aggregator starting to
    /// serve) builds the state without blocking a runtime thread on the store.
    ///
    /// # Errors
    /// As [`State::build`], or [`store::Error::Task`].
    pub async fn load(store: Store, options: Options) -> Result<Arc<Self>, store::Error> {
        crate::store::handle::blocking(move || Self::build(store, options)).await
    }

    /// Loads every stored node from `store`; everything else the state holds comes from
    /// `options`, fixed from here on. Blocking (it reads the store): for sync callers;
    /// async code uses [`State::load`].
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn build(store: Store, options: Options) -> Result<Arc<Self>, store::Error> {
        let Options {
            stale_after_intervals,
            retention,
            window,
            round_requests,
            alert_review,
        } = options;
        let nodes = store.load_all()?;
        let node_json = nodes
            .iter()
            .filter_map(|(name, n)| Some((name.clone(), report_json(&n.report)?)))
            .collect();
        let history = History::new(store.database(), retention)?;
        let last_recorded = history.list()?.last().map(|(t, _)| *t);
        Ok(Arc::new(Self {
            store: StoreHandle::new(store, history),
            last_recorded: RwLock::new(last_recorded),
            round_requests,
            window,
            alert_review,
            nodes: RwLock::new(nodes),
            node_json: RwLock::new(node_json),
            metrics: Metrics::default(),
            merge: MergeConfig {
                stale_after_intervals,
                ..MergeConfig::default()
            },
            round: RwLock::new(CheckRound::default()),
            ready: AtomicBool::new(false),
            store_writable: AtomicBool::new(true),
            last_reopen: std::sync::Mutex::new(None),
        }))
    }

    /// Stores a report durably, then updates the in-memory copy and the metrics. Blocking
    /// (a durable write on the calling thread): for sync callers (tests, benchmarks, the
    /// one-process demo); the server ingests through the committer and
    /// [`State::ingest_batch`].
    ///
    /// # Errors
    /// The store failed: the report is not stored and must not be acked.
    pub fn ingest(&self, report: &NodeReport, now: Timestamp) -> Result<Outcome, store::Error> {
        if !self.check_store_blocking() {
            return Err(store::Error::Unwritable);
        }
        let batch = put_batch(
            self.store.blocking(),
            std::slice::from_ref(report),
            now,
            self.merge.stale_after_intervals,
        );
        let mut out = self.take_batch(Ok(batch), 1)?;
        out.pop().ok_or(store::Error::Unwritable)
    }

    /// Stores many reports in one store transaction and one commit (group commit,
    /// [`crate::store::Store::put_batch`]) through the store's facade, then updates the
    /// in-memory copy and the metrics; one outcome per report, in order.
    ///
    /// # Errors
    /// The store failed: none of the reports is stored and none may be acked.
    pub(crate) async fn ingest_batch(
        &self,
        reports: Vec<NodeReport>,
        now: Timestamp,
    ) -> Result<Vec<Outcome>, store::Error> {
        if !self.check_store().await {
            return Err(store::Error::Unwritable);
        }
        let count = reports.len();
        let stale_after_intervals = self.merge.stale_after_intervals;
        // The JSON of what was stored is written on the blocking pool too: up to a batch of
        // reports, too much work for an async thread.
        let batch = self
            .store
            .call(move |s, _| Ok(put_batch(s, &reports, now, stale_after_intervals)))
            .await;
        self.take_batch(batch, count)
    }

    /// Takes the result of a [`put_batch`] of `count` reports into the in-memory copy and
    /// the metrics.
    fn take_batch(
        &self,
        batch: Result<Batch, store::Error>,
        count: usize,
    ) -> Result<Vec<Outcome>, store::Error> {
        let stored = batch.and_then(|b| {
            self.metrics.store_write_seconds.observe(b.write_seconds);
            b.stored
        });
        let results = match stored {
            Ok(results) => results,
            Err(e) => {
                if !matches!(
                    e,
                    store::Error::Corrupt { .. } | store::Error::Closed | store::Error::Task(_)
                ) {
                    tracing::warn!(error = %Chain(&e), "A store write failed; not ready until the store is reopened and writes again.");
                    self.store_writable.store(false, Ordering::SeqCst);
                }
                self.metrics
                    .reports
                    .get_or_create(&ResultLabel {
                        result: "store_error",
                    })
                    .inc_by(count as u64);
                return Err(e);
            }
        };
        // A later report of a node in the batch wins.
        let fresh: Vec<&(StoredNode, Option<Bytes>)> = results
            .iter()
            .filter_map(|(o, e)| match (o, e) {
                (Outcome::Stored, Some(entry)) => Some(entry),
                _ => None,
            })
            .collect();
        if !fresh.is_empty()
            && let Ok(mut nodes) = self.nodes.write()
        {
            let mut cache = self.node_json.write().ok();
            for (entry, json) in fresh {
                nodes.insert(entry.report.node_name.clone(), entry.clone());
                if let (Some(cache), Some(json)) = (cache.as_mut(), json) {
                    cache.insert(entry.report.node_name.clone(), json.clone());
                }
            }
        }
        let mut out = Vec::with_capacity(results.len());
        for (outcome, _) in results {
            let label = match outcome {
                Outcome::Stored => "stored",
                Outcome::Duplicate => "duplicate",
                Outcome::OlderRun => "older_run",
            };
            self.metrics
                .reports
                .get_or_create(&ResultLabel { result: label })
                .inc();
            out.push(outcome);
        }
        Ok(out)
    }

    /// Counts a report rejected as invalid.
    pub(crate) fn count_rejected(&self) {
        self.metrics
            .reports
            .get_or_create(&ResultLabel { result: "rejected" })
            .inc();
    }

    fn status(&self, entry: &StoredNode, now: Timestamp) -> NodeStatus {
        NodeStatus {
            node_name: entry.report.node_name.clone(),
            freshness: crate::report::freshness(entry, self.merge.stale_after_intervals, now),
            received_at: Some(entry.received_at),
            reports_stored_total: entry.reports_stored_total,
            report: Some(entry.report.clone()),
        }
    }

    /// Every node, sorted by name.
    pub fn nodes(&self, now: Timestamp) -> Vec<NodeStatus> {
        self.nodes
            .read()
            .map(|n| n.values().map(|e| self.status(e, now)).collect())
            .unwrap_or_default()
    }

    /// What the store holds for one node.
    pub fn stored(&self, name: &str) -> Option<StoredNode> {
        self.nodes.read().ok()?.get(name).cloned()
    }

    /// One node.
    pub fn node(&self, name: &str, now: Timestamp) -> Option<NodeStatus> {
        self.nodes
            .read()
            .ok()?
            .get(name)
            .map(|e| self.status(e, now))
    }

    /// The merged cluster report: the latest report of every node and the latest round.
    pub fn cluster_report(&self, now: Timestamp) -> ClusterReport {
        let report = {
            let nodes = self
                .nodes
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let round = self
                .round
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            crate::report::merge_nodes(nodes.values(), &round, &self.merge, now, true)
        };
        self.finish_report(report, now)
    }

    /// [`State::cluster_report`] serialized as JSON, the same document `serde_json` would
    /// write (see [`State::cluster_report_json_parts`]).
    #[cfg(test)]
    pub(crate) fn cluster_report_json(&self, now: Timestamp) -> Vec<u8> {
        self.cluster_report_json_parts(now).concat()
    }

    /// `State::cluster_report_json` as consecutive pieces, for a response body that
    /// does not copy the node reports: the statuses are merged without the reports, and
    /// each node's report JSON, kept since the report was stored, is a shared piece
    /// spliced in as its status's last field (`report`).
    pub fn cluster_report_json_parts(&self, now: Timestamp) -> Vec<Bytes> {
        let nodes = self
            .nodes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cache = self
            .node_json
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let report = {
            let round = self
                .round
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            crate::report::merge_nodes(nodes.values(), &round, &self.merge, now, false)
        };
        let mut report = self.finish_report(report, now);
        let statuses = std::mem::take(&mut report.nodes);
        // Fields before `nodes` are four scalars, so `,"nodes":[]` is within the first
        // few dozen bytes, and the first occurrence is that field.
        const EMPTY: &[u8] = br#","nodes":[]"#;
        let head = serde_json::to_vec(&report).unwrap_or_default();
        let Some(at) = head[..head.len().min(256)]
            .windows(EMPTY.len())
            .position(|w| w == EMPTY)
        else {
            return vec![head.into()];
        };
        let mut parts = Vec::with_capacity(statuses.len() * 2 + 1);
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(&head[..at]);
        buf.extend_from_slice(br#","nodes":["#);
        for (i, st) in statuses.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            // Writing into a Vec cannot fail; the status has no map with non-string keys.
            let _ = serde_json::to_writer(&mut buf, st);
            let raw = nodes
                .get(&st.node_name)
                .and_then(|_| cache.get(&st.node_name));
            if let (Some(raw), Some(b'}')) = (raw, buf.last()) {
                buf.pop();
                buf.extend_from_slice(br#","report":"#);
                parts.push(Bytes::from(std::mem::replace(
                    &mut buf,
                    Vec::with_capacity(256),
                )));
                parts.push(raw.clone());
                buf.push(b'}');
            }
        }
        buf.push(b']');
        buf.extend_from_slice(&head[at + EMPTY.len()..]);
        parts.push(buf.into());
        parts
    }

    /// The parts of a merged report that come from the state rather than the merge: the
    /// maintenance window and the finding history.
    fn finish_report(&self, mut report: ClusterReport, now: Timestamp) -> ClusterReport {
        if let Some(w) = &self.window {
            let open = w.contains(now);
            report.maintenance = Some(crate::report::MaintenanceStatus {
                window: w.describe().to_string(),
                open,
                next_open: if open { now } else { w.next_open(now) },
                waiting_proposals: report
                    .proposals
                    .iter()
                    .filter(|p| p.action == crate::cleanup::Action::Delete)
                    .count(),
            });
        }
        self.store.history().annotate(&mut report);
        report
    }

    /// Runs a round now (checks, signals, cleanup proposals), records its report, and
    /// returns once that is done.
    ///
    /// # Errors
    /// No round loop runs, it is busy with too many requests, or it stopped.
    pub(crate) async fn run_round_now(&self) -> Result<(), RoundRequestError> {
        self.request_round(None).await
    }

    /// Runs a scheduled run's round now: only `run.tasks`, recorded in the history with
    /// `run` set (see [`State::finish_scheduled_round`]); returns once that is done.
    ///
    /// # Errors
    /// As [`State::run_round_now`].
    pub(crate) async fn run_scheduled_now(
        &self,
        run: ScheduledRun,
    ) -> Result<(), RoundRequestError> {
        self.request_round(Some(run)).await
    }

    async fn request_round(&self, run: Option<ScheduledRun>) -> Result<(), RoundRequestError> {
        let tx = self
            .round_requests
            .as_ref()
            .ok_or(RoundRequestError::NoLoop)?;
        let (done, done_rx) = tokio::sync::oneshot::channel();
        tx.try_send(RoundRequest { run, done })
            .map_err(|e| match e {
                tokio::sync::mpsc::error::TrySendError::Full(_) => RoundRequestError::Busy,
                tokio::sync::mpsc::error::TrySendError::Closed(_) => RoundRequestError::Closed,
            })?;
        done_rx.await.map_err(|_| RoundRequestError::Stopped)
    }

    /// Records a scheduled run: `partial` (a round of only `run.tasks`) updates the latest
    /// round ([`CheckRound::updated_with`]), and the merged report is recorded at once with
    /// `run` set; with the `trends` task it carries the 30-day disk and 7-day alert trends.
    ///
    /// # Errors
    /// The history cannot be read or written.
    pub(crate) async fn finish_scheduled_round(
        &self,
        partial: CheckRound,
        mut run: ScheduledRun,
        now: Timestamp,
    ) -> Result<Recorded, store::Error> {
        let tasks: std::collections::BTreeSet<Task> = run.tasks.iter().copied().collect();
        self.metrics.observe_round(&partial);
        let previous = self.round.read().map(|r| r.clone()).unwrap_or_default();
        self.replace_round(previous.updated_with(partial, &tasks));
        let trends = tasks.contains(&Task::Trends);
        // The alerts of the round just updated, for the review.
        let current = tasks
            .contains(&Task::Signals)
            .then(|| {
                self.round
                    .read()
                    .ok()
                    .map(|r| r.signals.as_ref().and_then(|s| s.alerts.clone()))
            })
            .map(Option::flatten);
        let review_cfg = self.alert_review;
        let (trends, review) = self
            .store
            .call(move |_, history| {
                let trends = if trends {
                    Some(RunTrends {
                        disk_30d: crate::store::history::disk_trends(history, now, 30)?,
                        alerts_7d: crate::store::history::alert_counts(history, now, 7)?,
                    })
                } else {
                    None
                };
                let review = match current {
                    Some(current) => Some(crate::store::history::alert_review(
                        history,
                        now,
                        current.as_ref(),
                        &review_cfg,
                    )?),
                    None => None,
                };
                Ok((trends, review))
            })
            .await?;
        if trends.is_some() {
            run.trends = trends;
        }
        if review.is_some() {
            run.alert_review = review;
        }
        self.record(now, Some(run)).await
    }

    /// Records the merged report as of `now` (with `run` when a scheduled run made it).
    async fn record(
        &self,
        now: Timestamp,
        run: Option<ScheduledRun>,
    ) -> Result<Recorded, store::Error> {
        let mut report = self.cluster_report(now);
        report.run = run;
        let rec = self
            .store
            .call(move |_, history| history.record(&mut report))
            .await?;
        if let Ok(mut l) = self.last_recorded.write() {
            *l = Some(now);
        }
        Ok(rec)
    }

    /// The durable store and the report history (scheduler and notifier state documents,
    /// history queries), behind their async facade.
    pub fn store(&self) -> &StoreHandle {
        &self.store
    }

    /// The latest agent report of every node.
    pub fn node_reports(&self) -> Vec<NodeReport> {
        self.nodes
            .read()
            .map(|n| n.values().map(|e| e.report.clone()).collect())
            .unwrap_or_default()
    }

    /// Sets the latest round, and records the merged report in the history when the last
    /// record is at least `record_interval` old (or `force`), through the store's facade.
    ///
    /// # Errors
    /// The history write failed; the round is still the current one.
    pub(crate) async fn finish_round(
        &self,
        round: CheckRound,
        now: Timestamp,
        record_interval: std::time::Duration,
        force: bool,
    ) -> Result<Option<Recorded>, store::Error> {
        self.set_round(round);
        let due = self
            .last_recorded
            .read()
            .map(|l| {
                l.is_none_or(|t| {
                    std::time::Duration::try_from(now.duration_since(t)).unwrap_or_default()
                        >= record_interval
                })
            })
            .unwrap_or(true);
        if !(due || force) {
            return Ok(None);
        }
        self.record(now, None).await.map(Some)
    }

    /// Replaces the latest round of checks and signals, a round that just ran (its time
    /// and checks are recorded in the metrics).
    pub fn set_round(&self, round: CheckRound) {
        self.metrics.observe_round(&round);
        self.replace_round(round);
    }

    fn replace_round(&self, round: CheckRound) {
        if let Ok(mut r) = self.round.write() {
            *r = round;
        }
    }

    /// The text of `/metrics` as of `now`: the gauges of the merged report refreshed.
    pub fn metrics_text(&self, now: Timestamp) -> String {
        let report = self.refresh_gauges(now);
        self.metrics.encode_with_report(&report)
    }

    /// Updates the per-freshness node gauges (called before each scrape) and returns the
    /// merged report (without node reports) they came from.
    pub(crate) fn refresh_gauges(&self, now: Timestamp) -> ClusterReport {
        let report = {
            let nodes = self
                .nodes
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let round = self
                .round
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            crate::report::merge_nodes(nodes.values(), &round, &self.merge, now, false)
        };
        let nodes = &report.nodes;
        for (label, f) in [
            ("fresh", Freshness::Fresh),
            ("stale", Freshness::Stale),
            ("missing", Freshness::Missing),
        ] {
            let n = nodes.iter().filter(|s| s.freshness == f).count();
            self.metrics
                .nodes
                .get_or_create(&FreshnessLabel { freshness: label })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        report
    }

    /// Marks the servers as listening (`/readyz`).
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Both listeners serve and the store can write.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && self.store_writable.load(Ordering::SeqCst)
    }

    /// Whether the store can write; after a failed write, reopens it (at most once a
    /// second, through the store's facade) and probes with a write of
    /// [`crate::store::PROBE_BYTES`].
    pub(crate) async fn check_store(&self) -> bool {
        match self.reopen_due() {
            Some(writable) => writable,
            None => self.reopened(self.store.reopen().await),
        }
    }

    /// [`State::check_store`] on the calling thread, for the sync [`State::ingest`].
    fn check_store_blocking(&self) -> bool {
        match self.reopen_due() {
            Some(writable) => writable,
            None => self.reopened(self.store.blocking().reopen()),
        }
    }

    /// Whether the store is writable (`Some(true)`), not and not to be retried yet
    /// (`Some(false)`: the last reopen was less than a second ago), or to be reopened now
    /// (`None`; the attempt is counted from here).
    fn reopen_due(&self) -> Option<bool> {
        if self.store_writable.load(Ordering::SeqCst) {
            return Some(true);
        }
        let mut last = self
            .last_reopen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
            return Some(false);
        }
        *last = Some(std::time::Instant::now());
        None
    }

    /// Takes the result of a reopen: whether the store writes again.
    fn reopened(&self, result: Result<(), store::Error>) -> bool {
        match result {
            Ok(()) => {
                tracing::info!("The store writes again.");
                self.store_writable.store(true, Ordering::SeqCst);
                true
            }
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "The store still cannot write; retrying.");
                false
            }
        }
    }
}

/// A node report as JSON, for `State::cluster_report_json`. `None` only if serializing
/// fails, which these types do not.
fn report_json(report: &NodeReport) -> Option<Bytes> {
    serde_json::to_vec(report).ok().map(Bytes::from)
}

/// What a group commit did: per report its outcome and, when it was stored, the entry now
/// stored with its report's JSON ([`report_json`]).
struct Batch {
    stored: Result<Vec<BatchEntry>, store::Error>,
    /// How long the write and its commit took.
    write_seconds: f64,
}

/// One report of a [`Batch`]: its outcome, and the entry now stored with its JSON when it
/// was stored.
type BatchEntry = (Outcome, Option<(StoredNode, Option<Bytes>)>);

/// [`Store::put_batch`], then the JSON of each report it stored. Blocking.
fn put_batch(
    store: &Store,
    reports: &[NodeReport],
    now: Timestamp,
    stale_after_intervals: u32,
) -> Batch {
    let started = std::time::Instant::now();
    let stored = store.put_batch(reports, now, stale_after_intervals);
    let write_seconds = started.elapsed().as_secs_f64();
    let stored = stored.map(|results| {
        results
            .into_iter()
            .map(|(outcome, entry)| {
                let entry = match outcome {
                    Outcome::Stored => entry.map(|e| {
                        let json = report_json(&e.report);
                        (e, json)
                    }),
                    Outcome::Duplicate | Outcome::OlderRun => None,
                };
                (outcome, entry)
            })
            .collect()
    });
    Batch {
        stored,
        write_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::report;

    #[tokio::test]
    async fn a_round_request_without_a_round_loop_says_so() {
        let st = State::new(Store::in_memory().unwrap(), 3).unwrap();
        let e = st.run_round_now().await.unwrap_err();
        assert_eq!(e, RoundRequestError::NoLoop);
        assert_eq!(e.to_string(), "no round loop runs in this process");
    }

    #[test]
    fn the_json_endpoint_writes_the_same_document_as_serializing_the_report() {
        let dir = tempfile::tempdir().unwrap();
        let now: Timestamp = "2026-11-29T03:00:00Z".parse().unwrap();
        let same = |state: &State, now: Timestamp| {
            let fast: serde_json::Value =
                serde_json::from_slice(&state.cluster_report_json(now)).unwrap();
            let slow = serde_json::to_value(state.cluster_report(now)).unwrap();
            assert_eq!(fast, slow);
            fast
        };
        {
            let state = State::new(Store::open(dir.path()).unwrap(), 3).unwrap();
            for (name, seq) in [("node-b", 1), ("node-a", 1), ("node-a", 2)] {
                state
                    .ingest(
                        &crate::report::tests::stored(name, 1, seq, 90.0, 0).report,
                        now,
                    )
                    .unwrap();
            }
            // A node the cluster lists without a report: a status with no `report`.
            state.set_round(CheckRound {
                cluster_nodes: Some(vec!["node-a".into(), "node-c".into()]),
                ..CheckRound::default()
            });
            let v = same(&state, now);
            let nodes = v["nodes"].as_array().unwrap();
            assert_eq!(
                nodes
                    .iter()
                    .map(|n| n["node_name"].as_str().unwrap())
                    .collect::<Vec<_>>(),
                ["node-a", "node-b", "node-c"]
            );
            assert_eq!(
                nodes[0]["report"]["seq"], 2,
                "the newest report is the one spliced in"
            );
            assert!(nodes[2].get("report").is_none());
            assert_eq!(v["disk_pressure"].as_array().unwrap().len(), 2);
            // Later, node-b is stale: freshness is computed per query.
            let later = now + std::time::Duration::from_secs(3600);
            assert_eq!(same(&state, later)["nodes"][1]["freshness"], "stale");
        }
        // Reopened: the JSON of the stored reports is rebuilt from the store.
        let state = State::new(Store::open(dir.path()).unwrap(), 3).unwrap();
        assert_eq!(same(&state, now)["nodes"][0]["report"]["seq"], 2);
    }

    #[test]
    fn a_node_turns_stale_after_three_missed_intervals() {
        let state = State::new(Store::in_memory().unwrap(), 3).unwrap();
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(
            state.ingest(&report("a", 1, 1), t0).unwrap(),
            Outcome::Stored
        );
        let at = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        // Interval 10 s: fresh up to and including 30 s, stale after.
        assert_eq!(state.node("a", at(30)).unwrap().freshness, Freshness::Fresh);
        assert_eq!(state.node("a", at(31)).unwrap().freshness, Freshness::Stale);
        assert_eq!(
            state.ingest(&report("a", 1, 2), at(31)).unwrap(),
            Outcome::Stored
        );
        assert_eq!(state.node("a", at(32)).unwrap().freshness, Freshness::Fresh);
        state.refresh_gauges(at(32));
        let text = state.metrics.encode();
        assert!(
            text.contains("caretaker_nodes{freshness=\"fresh\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("caretaker_ingest_reports_total{result=\"stored\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn the_report_shows_the_maintenance_window_and_what_waits_for_it() {
        use crate::schedule::config::ScheduleConfig;
        let state = State::new(Store::in_memory().unwrap(), 3).unwrap();
        assert_eq!(state.cluster_report(Timestamp::now()).maintenance, None);
        let cfg = ScheduleConfig::default();
        let state = State::build(
            Store::in_memory().unwrap(),
            Options {
                window: Some(MaintenanceWindow::new(
                    &cfg.maintenance_window,
                    &cfg.time_zone,
                )),
                ..Options::default()
            },
        )
        .unwrap();
        state.set_round(crate::report::tests::round());
        // Sunday 2026-11-29 03:30 in Tokyo is inside the default window; 06:00 is not.
        let inside: Timestamp = "2026-11-28T18:30:00Z".parse().unwrap();
        let m = state.cluster_report(inside).maintenance.unwrap();
        assert_eq!(
            (m.open, m.next_open, m.waiting_proposals),
            (true, inside, 1)
        );
        let after: Timestamp = "2026-11-28T21:00:00Z".parse().unwrap();
        let m = state.cluster_report(after).maintenance.unwrap();
        assert!(!m.open);
        assert_eq!(
            m.next_open,
            "2026-12-05T18:00:00Z".parse::<Timestamp>().unwrap()
        );
    }
}
