//! Report history: every recorded merged report (zstd-compressed JSON, bounded when read
//! back: [`decompress`]) and the lifecycle
//! of every finding, in the same redb file as the node store.
//!
//! - A finding carries `first_seen` and `last_seen`; when it is gone from a recorded report
//!   it resolves; when it comes back it counts one more `flap`.
//! - Retention: reports older than `max_age` go, then the oldest go until the stored bytes
//!   are under `max_bytes`; resolved findings older than `max_age` go too.
//! - Trends: disk usage per node and mount over 30 days with a days-until-full estimate
//!   (least-squares slope of the daily points), and firing-alert counts per alert name
//!   over 7 days (the seed's weekly alert review).
//! - [`diff`]: new, resolved and changed findings between two reports.

use caretaker_core::error::Chain;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::checks::{ObjectRef, Severity};
use crate::report::{ClusterReport, TrackedFinding};
use crate::store::{Error, Result};

/// generated_at in Unix milliseconds → zstd(JSON of the report).
const REPORTS: TableDefinition<u64, &[u8]> = TableDefinition::new("history_reports");
/// finding key → JSON of [`FindingState`].
const FINDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("history_findings");
/// History entries that did not decode when read, moved aside so startup, queries and
/// recording go on without them: `reports/<ms>@<found>` or `findings/<key>@<found>` → the
/// bytes as they were.
const QUARANTINE: TableDefinition<&str, &[u8]> = TableDefinition::new("history_quarantine");

/// A history entry that did not decode.
#[derive(Debug)]
enum Bad {
    Report(u64),
    Finding(String),
}

/// zstd level for stored reports: level 3, zstd's default; on report JSON it compresses as
/// C zstd's level 3 does (see [`compress`]).
const ZSTD_LEVEL: i32 = 3;

/// History retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Default 400 days: a year of daily reports plus a month to compare with.
    pub max_age: Duration,
    /// Default 1 GiB.
    pub(crate) max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(400 * 86_400),
            max_bytes: 1 << 30,
        }
    }
}

/// The stored lifecycle of one finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FindingState {
    pub check: String,
    pub code: String,
    pub severity: Severity,
    pub object: ObjectRef,
    pub message: String,
    pub first_seen: Timestamp,
    pub(crate) last_seen: Timestamp,
    /// Set while the finding is gone.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) resolved_at: Option<Timestamp>,
    pub(crate) flaps: u32,
}

/// What [`History::record`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    pub(crate) new_findings: usize,
    pub(crate) resolved_findings: usize,
    pub(crate) flapped_findings: usize,
    pub stored_bytes: u64,
    pub(crate) reports_deleted: usize,
}

/// The history over a shared database.
#[derive(Debug, Clone)]
pub struct History {
    db: Arc<super::DbHandle>,
    retention: Retention,
    /// What [`History::annotate`] reads, kept in memory: finding key → (`first_seen`, flaps
    /// counting a current resolution). Loaded when the history is opened and replaced after
    /// each committed [`History::record`] (the only writer of findings), so serving a report
    /// reads no store.
    seen: Arc<RwLock<Seen>>,
}

type Seen = HashMap<String, (Timestamp, u32)>;

fn seen(states: &BTreeMap<String, FindingState>) -> Seen {
    states
        .iter()
        .map(|(k, s)| {
            (
                k.clone(),
                (s.first_seen, s.flaps + u32::from(s.resolved_at.is_some())),
            )
        })
        .collect()
}

fn ms(t: Timestamp) -> u64 {
    u64::try_from(t.as_millisecond()).unwrap_or(0)
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        node: what.to_string(),
        reason: e.to_string(),
    }
}

impl History {
    /// History in `db` (the store's database), creating its tables.
    ///
    /// # Errors
    /// The tables cannot be created.
    pub fn new(db: Arc<super::DbHandle>, retention: Retention) -> Result<Self> {
        let txn = db.begin_write()?;
        txn.open_table(REPORTS)?;
        txn.open_table(FINDINGS)?;
        txn.open_table(QUARANTINE)?;
        txn.commit()?;
        let mut history = Self {
            db,
            retention,
            seen: Arc::default(),
        };
        history.seen = Arc::new(RwLock::new(seen(&history.load_findings()?)));
        Ok(history)
    }

    /// Moves entries that did not decode to [`QUARANTINE`], each with a warning. Best
    /// effort: when the store cannot write, the entries stay and are skipped again on the
    /// next read, and the read that found them still answers.
    fn quarantine(&self, bad: Vec<(Bad, Vec<u8>, Error)>) {
        if bad.is_empty() {
            return;
        }
        let moved = (|| -> Result<()> {
            let txn = self.db.begin_write()?;
            {
                let mut q = txn.open_table(QUARANTINE)?;
                let mut reports = txn.open_table(REPORTS)?;
                let mut findings = txn.open_table(FINDINGS)?;
                for (entry, bytes, error) in &bad {
                    let key = match entry {
                        Bad::Report(ms) => {
                            reports.remove(*ms)?;
                            format!("reports/{ms}@{}", Timestamp::now())
                        }
                        Bad::Finding(k) => {
                            findings.remove(k.as_str())?;
                            format!("findings/{k}@{}", Timestamp::now())
                        }
                    };
                    tracing::warn!(error = %Chain(error), quarantined_as = %key, "A history entry does not decode; moved it to quarantine, the rest of the history is served.");
                    q.insert(key.as_str(), bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })();
        if let Err(e) = moved {
            tracing::warn!(error = %Chain(&e), entries = bad.len(), "Cannot move unreadable history entries to quarantine; skipping them.");
        }
    }

    /// History entries moved to quarantine (`reports/<ms>@time` or `findings/<key>@time`
    /// → bytes), by key.
    ///
    /// # Errors
    /// Read errors.
    #[cfg(test)]
    pub(crate) fn quarantined(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.db.quarantined(QUARANTINE)
    }

    fn load_findings(&self) -> Result<BTreeMap<String, FindingState>> {
        let mut out = BTreeMap::new();
        let mut bad = Vec::new();
        {
            let txn = self.db.begin_read()?;
            let t = txn.open_table(FINDINGS)?;
            for item in t.iter()? {
                let (k, v) = item?;
                match serde_json::from_slice::<FindingState>(v.value()) {
                    Ok(state) => {
                        out.insert(k.value().to_string(), state);
                    }
                    Err(e) => bad.push((
                        Bad::Finding(k.value().to_string()),
                        v.value().to_vec(),
                        corrupt(k.value(), e),
                    )),
                }
            }
        }
        self.quarantine(bad);
        Ok(out)
    }

    /// Fills `first_seen` and `flaps` of the report's findings from the stored lifecycle
    /// (for reports served between recordings), from its copy in memory: no store call.
    pub(crate) fn annotate(&self, report: &mut ClusterReport) {
        let seen = self
            .seen
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for f in &mut report.findings {
            if let Some((first_seen, flaps)) = seen.get(&f.key) {
                f.first_seen = *first_seen;
                f.flaps = *flaps;
            }
        }
    }

    /// Records `report`: updates every finding's lifecycle (and writes it into the
    /// report's `findings`), stores the report, applies retention. One durable transaction.
    ///
    /// # Errors
    /// Read, write or commit errors; nothing is recorded then.
    pub fn record(&self, report: &mut ClusterReport) -> Result<Recorded> {
        let now = report.generated_at;
        let mut rec = Recorded::default();
        let mut states = self.load_findings()?;
        let current: BTreeMap<&str, &TrackedFinding> = report
            .findings
            .iter()
            .map(|f| (f.key.as_str(), f))
            .collect();
        for (key, f) in &current {
            match states.get_mut(*key) {
                Some(s) => {
                    if s.resolved_at.take().is_some() {
                        s.flaps += 1;
                        rec.flapped_findings += 1;
                    }
                    s.last_seen = now;
                    s.severity = f.severity;
                    s.message.clone_from(&f.message);
                }
                None => {
                    rec.new_findings += 1;
                    states.insert(
                        (*key).to_string(),
                        FindingState {
                            check: f.check.clone(),
                            code: f.code.clone(),
                            severity: f.severity,
                            object: f.object.clone(),
                            message: f.message.clone(),
                            first_seen: now,
                            last_seen: now,
                            resolved_at: None,
                            flaps: 0,
                        },
                    );
                }
            }
        }
        for (key, s) in &mut states {
            if s.resolved_at.is_none() && !current.contains_key(key.as_str()) {
                s.resolved_at = Some(now);
                rec.resolved_findings += 1;
            }
        }
        for f in &mut report.findings {
            if let Some(s) = states.get(&f.key) {
                (f.first_seen, f.last_seen, f.flaps) = (s.first_seen, s.last_seen, s.flaps);
            }
        }
        let json = serde_json::to_vec(report).map_err(|e| corrupt("report", e))?;
        let compressed = compress(&json).map_err(|source| Error::History {
            entry: report_entry(ms(now)),
            source,
        })?;
        rec.stored_bytes = compressed.len() as u64;

        let oldest_allowed = now - self.retention.max_age;
        let txn = self.db.begin_write()?;
        {
            let mut reports = txn.open_table(REPORTS)?;
            reports.insert(ms(now), compressed.as_slice())?;
            // Age, then size, oldest first.
            let expired: Vec<u64> = reports
                .range(..ms(oldest_allowed))?
                .map(|i| i.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            for k in &expired {
                reports.remove(k)?;
            }
            rec.reports_deleted += expired.len();
            let mut sizes: Vec<(u64, u64)> = reports
                .iter()?
                .map(|i| i.map(|(k, v)| (k.value(), v.value().len() as u64)))
                .collect::<Result<_, _>>()?;
            let mut total: u64 = sizes.iter().map(|s| s.1).sum();
            sizes.reverse();
            while total > self.retention.max_bytes && sizes.len() > 1 {
                let Some((k, size)) = sizes.pop() else { break };
                reports.remove(k)?;
                total -= size;
                rec.reports_deleted += 1;
            }
            let mut findings = txn.open_table(FINDINGS)?;
            for (key, s) in &states {
                if s.resolved_at.is_some_and(|r| r < oldest_allowed) {
                    findings.remove(key.as_str())?;
                } else {
                    let v = serde_json::to_vec(s).map_err(|e| corrupt(key, e))?;
                    findings.insert(key.as_str(), v.as_slice())?;
                }
            }
        }
        txn.commit()?;
        states.retain(|_, s| s.resolved_at.is_none_or(|r| r >= oldest_allowed));
        *self
            .seen
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = seen(&states);
        Ok(rec)
    }

    /// Times of the stored reports, oldest first, with their stored (compressed) sizes.
    ///
    /// # Errors
    /// Read errors.
    pub fn list(&self) -> Result<Vec<(Timestamp, u64)>> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        {
            let txn = self.db.begin_read()?;
            let t = txn.open_table(REPORTS)?;
            for item in t.iter()? {
                let (k, v) = item?;
                match i64::try_from(k.value())
                    .map_err(|e| corrupt("history key", e))
                    .and_then(|ms| {
                        Timestamp::from_millisecond(ms).map_err(|e| corrupt("history key", e))
                    }) {
                    Ok(at) => out.push((at, v.value().len() as u64)),
                    Err(e) => bad.push((Bad::Report(k.value()), v.value().to_vec(), e)),
                }
            }
        }
        self.quarantine(bad);
        Ok(out)
    }

    /// The latest readable report recorded at or before `at` (unreadable ones on the way
    /// are quarantined and skipped).
    ///
    /// # Errors
    /// Read errors.
    pub fn at(&self, at: Timestamp) -> Result<Option<ClusterReport>> {
        let mut found = None;
        let mut bad = Vec::new();
        {
            let txn = self.db.begin_read()?;
            let t = txn.open_table(REPORTS)?;
            for item in t.range(..=ms(at))?.rev() {
                let (k, v) = item?;
                match decode(k.value(), v.value()) {
                    Ok(r) => {
                        found = Some(r);
                        break;
                    }
                    Err(e) => bad.push((Bad::Report(k.value()), v.value().to_vec(), e)),
                }
            }
        }
        self.quarantine(bad);
        Ok(found)
    }

    /// Every readable report recorded in `[from, to]`, oldest first (unreadable ones are
    /// quarantined and skipped).
    ///
    /// # Errors
    /// Read errors.
    pub fn between(&self, from: Timestamp, to: Timestamp) -> Result<Vec<ClusterReport>> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        {
            let txn = self.db.begin_read()?;
            let t = txn.open_table(REPORTS)?;
            for item in t.range(ms(from)..=ms(to))? {
                let (k, v) = item?;
                match decode(k.value(), v.value()) {
                    Ok(r) => out.push(r),
                    Err(e) => bad.push((Bad::Report(k.value()), v.value().to_vec(), e)),
                }
            }
        }
        self.quarantine(bad);
        Ok(out)
    }
}

/// The largest report JSON the history writes or reads back: 256 MiB, ten times a merged
/// report of 5,000 nodes (bench-report: 10 MiB of JSON at 2,000 nodes). A stored frame that
/// declares or decodes to more is refused before that memory is taken, so a corrupt or
/// hostile entry costs at most this much (plus the decoder's window, bounded the same way).
pub const MAX_REPORT_JSON_BYTES: usize = 256 << 20;

/// Window ceiling for frames without a content size (only other writers make them, such as
/// the `zstd` CLI reading a pipe): 8 MiB, the largest window C zstd uses below level 20
/// without `--long` (level 3's is 2 MiB). Frames with a content size decode into a buffer
/// of that size, which [`MAX_REPORT_JSON_BYTES`] bounds.
const MAX_STREAM_WINDOW_BYTES: u64 = 8 << 20;

/// Why stored bytes are not a report (or a report is too large to store).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("report JSON of {bytes} bytes is over the {limit}-byte limit")]
    JsonTooLarge { bytes: usize, limit: usize },
    #[error("not a zstd frame")]
    Header(#[source] structured_zstd::decoding::errors::ReadFrameHeaderError),
    #[error("the frame declares {declared} bytes of JSON, over the {limit}-byte limit")]
    DeclaredTooLarge { declared: u64, limit: usize },
    #[error("the frame decodes to more than the {limit}-byte limit")]
    DecodedTooLarge { limit: usize },
    #[error("zstd frame")]
    Frame(#[source] structured_zstd::decoding::errors::FrameDecoderError),
    #[error("zstd frame")]
    Stream(#[source] std::io::Error),
    #[error("{0} bytes follow the zstd frame")]
    Trailing(usize),
    #[error("report JSON")]
    Json(#[source] serde_json::Error),
}

/// A report's JSON as stored: one zstd frame (pure-Rust `structured-zstd` at level 3, which
/// C zstd and its CLI decode), with the content size in its header.
///
/// # Errors
/// [`CodecError::JsonTooLarge`] over [`MAX_REPORT_JSON_BYTES`]: it could not be read back.
pub fn compress(json: &[u8]) -> Result<Vec<u8>, CodecError> {
    if json.len() > MAX_REPORT_JSON_BYTES {
        return Err(CodecError::JsonTooLarge {
            bytes: json.len(),
            limit: MAX_REPORT_JSON_BYTES,
        });
    }
    Ok(structured_zstd::encoding::compress_slice_to_vec(
        json,
        structured_zstd::encoding::CompressionLevel::Level(ZSTD_LEVEL),
    ))
}

/// The JSON in one stored zstd frame (written by [`compress`], or by C zstd before it),
/// decoding at most `limit` bytes: a frame declaring more is refused from its header, one
/// without a declared size is cut off after `limit` bytes. Content checksums are verified.
///
/// # Errors
/// Not a single well-formed frame, or over `limit`.
pub fn decompress(frame: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    use structured_zstd::decoding::{
        ContentChecksum, FrameContentSize, FrameDecoder, StreamingDecoder, read_frame_content_size,
    };
    let mut decoder = FrameDecoder::new();
    decoder.set_content_checksum(ContentChecksum::Verify);
    match read_frame_content_size(frame).map_err(CodecError::Header)? {
        FrameContentSize::Known(declared) => {
            let size = usize::try_from(declared)
                .ok()
                .filter(|n| *n <= limit)
                .ok_or(CodecError::DeclaredTooLarge { declared, limit })?;
            // A single-segment frame's window is its content size.
            decoder
                .set_max_window_size(
                    (limit as u64)
                        .clamp(1 << 10, structured_zstd::decoding::MAX_DECODER_WINDOW_SIZE),
                )
                .map_err(CodecError::Frame)?;
            let mut out = Vec::with_capacity(size);
            decoder
                .decode_all_to_vec(frame, &mut out)
                .map_err(CodecError::Frame)?;
            Ok(out)
        }
        FrameContentSize::Unknown => {
            use std::io::Read;
            decoder
                .set_max_window_size(MAX_STREAM_WINDOW_BYTES)
                .map_err(CodecError::Frame)?;
            let mut stream = StreamingDecoder::new_with_decoder(frame, decoder);
            let mut out = Vec::new();
            (&mut stream)
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(CodecError::Stream)?;
            if out.len() > limit {
                return Err(CodecError::DecodedTooLarge { limit });
            }
            match stream.get_ref().len() {
                0 => Ok(out),
                n => Err(CodecError::Trailing(n)),
            }
        }
    }
}

/// `reports/<ms>`, the entry's key as quarantine names it, with its time when it has one.
fn report_entry(ms: u64) -> String {
    match i64::try_from(ms)
        .ok()
        .and_then(|m| Timestamp::from_millisecond(m).ok())
    {
        Some(at) => format!("reports/{ms} ({at})"),
        None => format!("reports/{ms}"),
    }
}

fn decode(ms: u64, bytes: &[u8]) -> Result<ClusterReport> {
    let failed = |source| Error::History {
        entry: report_entry(ms),
        source,
    };
    let json = decompress(bytes, MAX_REPORT_JSON_BYTES).map_err(failed)?;
    serde_json::from_slice(&json).map_err(|e| failed(CodecError::Json(e)))
}

/// Findings that differ between two reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportDiff {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// In `to`, not in `from`.
    pub new: Vec<TrackedFinding>,
    /// In `from`, gone in `to`.
    pub resolved: Vec<TrackedFinding>,
    /// In both with another severity or message (`to`'s version).
    pub changed: Vec<TrackedFinding>,
}

/// New, resolved and changed findings from `a` to `b`.
pub fn diff(a: &ClusterReport, b: &ClusterReport) -> ReportDiff {
    let before: BTreeMap<&str, &TrackedFinding> =
        a.findings.iter().map(|f| (f.key.as_str(), f)).collect();
    let after: BTreeMap<&str, &TrackedFinding> =
        b.findings.iter().map(|f| (f.key.as_str(), f)).collect();
    ReportDiff {
        from: Some(a.generated_at),
        to: Some(b.generated_at),
        new: after
            .iter()
            .filter(|(k, _)| !before.contains_key(*k))
            .map(|(_, f)| (*f).clone())
            .collect(),
        resolved: before
            .iter()
            .filter(|(k, _)| !after.contains_key(*k))
            .map(|(_, f)| (*f).clone())
            .collect(),
        changed: after
            .iter()
            .filter(|(k, f)| {
                before
                    .get(*k)
                    .is_some_and(|o| o.severity != f.severity || o.message != f.message)
            })
            .map(|(_, f)| (*f).clone())
            .collect(),
    }
}

/// Disk usage of one node's mount over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DiskTrend {
    pub node_name: String,
    pub mountpoint: String,
    /// (time, used_percent), oldest first, at most one point per recorded report.
    pub points: Vec<(Timestamp, f64)>,
    /// Percentage points per day (least-squares slope).
    pub(crate) slope_percent_per_day: Option<f64>,
    /// Days until 100 % at that slope; absent when usage is flat or falling, or with fewer
    /// than two points.
    pub days_until_full: Option<f64>,
}

/// Least-squares slope of `points` in percent per day (the capacity trend's fit).
fn slope_per_day(points: &[(Timestamp, f64)]) -> Option<f64> {
    crate::capacity::trend::slope_per_day(points)
}

/// Disk trends over the reports recorded in the last `days` before `now`.
///
/// # Errors
/// Read errors.
pub(crate) fn disk_trends(history: &History, now: Timestamp, days: u32) -> Result<Vec<DiskTrend>> {
    let from = now - Duration::from_secs(u64::from(days) * 86_400);
    let mut series: BTreeMap<(String, String), Vec<(Timestamp, f64)>> = BTreeMap::new();
    for r in history.between(from, now)? {
        for n in &r.nodes {
            let Some(rep) = &n.report else { continue };
            for f in rep.filesystems.iter().filter(|f| !f.stale) {
                let s = series
                    .entry((n.node_name.clone(), f.mountpoint.clone()))
                    .or_default();
                // A node report repeated in several merged reports counts once.
                if s.last().is_none_or(|(t, _)| *t != rep.collected_at) {
                    s.push((rep.collected_at, f.used_percent));
                }
            }
        }
    }
    Ok(series
        .into_iter()
        .map(|((node_name, mountpoint), points)| {
            let slope = slope_per_day(&points);
            let last = points.last().map_or(0.0, |p| p.1);
            let days_until_full = slope
                .filter(|s| *s > 1e-9)
                .map(|s| (100.0 - last).max(0.0) / s);
            DiskTrend {
                node_name,
                mountpoint,
                points,
                slope_percent_per_day: slope,
                days_until_full,
            }
        })
        .collect())
}

/// For each alert name, in how many recorded reports of the last `days` it was firing
/// (and how many distinct label sets fired).
///
/// # Errors
/// Read errors.
pub(crate) fn alert_counts(
    history: &History,
    now: Timestamp,
    days: u32,
) -> Result<BTreeMap<String, u64>> {
    let from = now - Duration::from_secs(u64::from(days) * 86_400);
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for r in history.between(from, now)? {
        for a in r
            .signals
            .iter()
            .filter_map(|s| s.alerts.as_ref())
            .flat_map(|a| &a.firing)
        {
            *out.entry(a.name.clone()).or_default() += 1;
        }
    }
    Ok(out)
}

/// The alert review ([`crate::signals::review`]) over the reports recorded in the last
/// `cfg.days` before `now`, plus `current` (the alerts of the round being recorded now).
///
/// # Errors
/// Read errors.
pub(crate) fn alert_review(
    history: &History,
    now: Timestamp,
    current: Option<&crate::signals::alertmanager::AlertsNow>,
    cfg: &crate::signals::review::AlertReviewConfig,
) -> Result<crate::signals::review::AlertReview> {
    let from = now - Duration::from_secs(u64::from(cfg.days) * 86_400);
    let reports = history.between(from, now)?;
    let mut rounds: Vec<(Timestamp, &crate::signals::alertmanager::AlertsNow)> = Vec::new();
    for r in &reports {
        // The round's own time: the report repeats the last round until the next one.
        let at = r.checks_at.unwrap_or(r.generated_at);
        if let Some(a) = r.signals.as_ref().and_then(|s| s.alerts.as_ref())
            && rounds.last().is_none_or(|(t, _)| *t != at)
        {
            rounds.push((at, a));
        }
    }
    if let Some(a) = current {
        rounds.retain(|(t, _)| *t < now);
        rounds.push((now, a));
    }
    Ok(crate::signals::review::review(&rounds, now, cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{at, round, stored};
    use crate::report::{MergeConfig, merge};
    use crate::store::Store;

    fn history(retention: Retention) -> (Store, History) {
        let store = Store::in_memory().unwrap();
        let h = History::new(store.database(), retention).unwrap();
        (store, h)
    }

    fn report_at(s: i64, with_pending: bool, root_used: f64) -> ClusterReport {
        let mut r = round();
        if !with_pending {
            r.checks[0].findings.retain(|f| f.code != "pending");
        }
        merge(
            &[stored("node-a", 1, 4, root_used, s)],
            &r,
            &MergeConfig::default(),
            at(s),
        )
    }

    #[test]
    fn the_alert_review_reads_the_alerts_of_recorded_rounds_and_the_current_one() {
        use crate::report::SignalsReport;
        use crate::signals::alertmanager::{AlertRecord, AlertsNow};
        use crate::signals::review::{AlertReviewConfig, ReviewState};
        let (_s, h) = history(Retention::default());
        let alerts = |names: &[(&str, bool)], s: i64| AlertsNow {
            records: names
                .iter()
                .map(|(n, silenced)| AlertRecord {
                    fingerprint: format!("fp-{n}"),
                    name: (*n).to_string(),
                    state: if *silenced { "suppressed" } else { "active" }.into(),
                    silenced_by: if *silenced { vec!["s1".into()] } else { vec![] },
                    inhibited_by: vec![],
                    starts_at: at(0),
                    ends_at: Some(at(s + 240)),
                })
                .collect(),
            ..AlertsNow::default()
        };
        // Rounds at 0 and 600 s see both; the one at 1200 s sees only the silenced one.
        for (s, names) in [
            (0, &[("Flap", false), ("Quiet", true)][..]),
            (600, &[("Flap", false), ("Quiet", true)][..]),
        ] {
            let mut r = report_at(s, true, 40.0);
            r.checks_at = Some(at(s));
            r.signals = Some(SignalsReport {
                alerts: Some(alerts(names, s)),
                ..SignalsReport::default()
            });
            h.record(&mut r).unwrap();
        }
        let current = alerts(&[("Quiet", true)], 1200);
        let review =
            alert_review(&h, at(1200), Some(&current), &AlertReviewConfig::default()).unwrap();
        assert_eq!(review.rounds, 3);
        let rows: Vec<(&str, ReviewState, u32, u64, u32, u32)> = review
            .alerts
            .iter()
            .map(|a| {
                (
                    a.name.as_str(),
                    a.state,
                    a.times_fired,
                    a.firing_seconds,
                    a.short_firings,
                    a.still_firing,
                )
            })
            .collect();
        // Flap: last listed at 600 s with endsAt 840 s, gone at 1200 s: 14 min, short.
        assert_eq!(
            rows,
            vec![
                ("Flap", ReviewState::Active, 1, 840, 1, 0),
                ("Quiet", ReviewState::Silenced, 1, 1200, 0, 1),
            ]
        );
    }

    #[test]
    fn findings_resolve_flap_and_keep_first_seen() {
        let (_s, h) = history(Retention::default());
        let mut r1 = report_at(0, true, 40.0);
        let rec = h.record(&mut r1).unwrap();
        assert_eq!(
            (
                rec.new_findings,
                rec.resolved_findings,
                rec.flapped_findings
            ),
            (2, 0, 0)
        );
        let mut r2 = report_at(3600, false, 40.0);
        let rec = h.record(&mut r2).unwrap();
        assert_eq!((rec.new_findings, rec.resolved_findings), (0, 1));
        assert_eq!(
            r2.findings[0].first_seen,
            at(0),
            "the crash loop was first seen in r1"
        );
        assert_eq!(r2.findings[0].last_seen, at(3600));
        let mut r3 = report_at(7200, true, 40.0);
        let rec = h.record(&mut r3).unwrap();
        assert_eq!(rec.flapped_findings, 1);
        let pending = r3.findings.iter().find(|f| f.code == "pending").unwrap();
        assert_eq!((pending.first_seen, pending.flaps), (at(0), 1));
        // A report served between recordings shows the same history.
        let mut live = report_at(7300, true, 40.0);
        h.annotate(&mut live);
        assert_eq!(
            live.findings
                .iter()
                .find(|f| f.code == "pending")
                .unwrap()
                .flaps,
            1
        );

        let d = diff(&r1, &r2);
        assert_eq!(
            d.resolved
                .iter()
                .map(|f| f.code.as_str())
                .collect::<Vec<_>>(),
            vec!["pending"]
        );
        assert!(d.new.is_empty() && d.changed.is_empty());
        let d = diff(&r2, &r3);
        assert_eq!(
            d.new.iter().map(|f| f.code.as_str()).collect::<Vec<_>>(),
            vec!["pending"]
        );
    }

    #[test]
    fn retention_deletes_oldest_first_by_age_and_size() {
        let (_s, h) = history(Retention {
            max_age: Duration::from_secs(86_400 * 10),
            max_bytes: u64::MAX,
        });
        for day in 0..15 {
            h.record(&mut report_at(day * 86_400, true, 40.0)).unwrap();
        }
        let kept: Vec<Timestamp> = h.list().unwrap().into_iter().map(|x| x.0).collect();
        assert_eq!(
            kept.first(),
            Some(&at(4 * 86_400)),
            "older than 10 days before day 14 is gone"
        );
        assert_eq!(kept.len(), 11);

        let one = {
            let (_s, h) = history(Retention::default());
            h.record(&mut report_at(0, true, 40.0))
                .unwrap()
                .stored_bytes
        };
        let (_s, h) = history(Retention {
            max_age: Duration::from_secs(86_400 * 1000),
            max_bytes: one * 3 + one / 2,
        });
        for day in 0..6 {
            h.record(&mut report_at(day * 86_400, true, 40.0)).unwrap();
        }
        let kept: Vec<Timestamp> = h.list().unwrap().into_iter().map(|x| x.0).collect();
        assert_eq!(kept, vec![at(3 * 86_400), at(4 * 86_400), at(5 * 86_400)]);
        assert_eq!(
            h.at(at(4 * 86_400 + 5)).unwrap().unwrap().generated_at,
            at(4 * 86_400)
        );
        assert!(h.at(at(0)).unwrap().is_none());
    }

    #[test]
    fn disk_trend_estimates_days_until_full() {
        let (_s, h) = history(Retention::default());
        // 50 % rising 2 points a day for 10 days.
        for day in 0..10 {
            h.record(&mut report_at(day * 86_400, true, 50.0 + 2.0 * day as f64))
                .unwrap();
        }
        let t = disk_trends(&h, at(9 * 86_400), 30).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(
            (
                t[0].node_name.as_str(),
                t[0].mountpoint.as_str(),
                t[0].points.len()
            ),
            ("node-a", "/", 10)
        );
        assert!((t[0].slope_percent_per_day.unwrap() - 2.0).abs() < 1e-9);
        // 68 % now: 32 points at 2 a day.
        assert!((t[0].days_until_full.unwrap() - 16.0).abs() < 1e-9);
    }

    #[test]
    fn history_survives_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            let h = History::new(s.database(), Retention::default()).unwrap();
            h.record(&mut report_at(0, true, 40.0)).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let h = History::new(s.database(), Retention::default()).unwrap();
        assert_eq!(h.list().unwrap().len(), 1);
        let r = h.at(at(10)).unwrap().unwrap();
        assert_eq!(r.findings.len(), 2);
    }

    #[test]
    fn a_served_report_shows_the_lifecycle_read_when_the_history_opened_without_a_store_call() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            let h = History::new(s.database(), Retention::default()).unwrap();
            h.record(&mut report_at(0, true, 40.0)).unwrap();
            // The pending pod resolves, so a report showing it again counts one flap.
            h.record(&mut report_at(3600, false, 40.0)).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let h = History::new(s.database(), Retention::default()).unwrap();
        // Closed: any store read would fail now, and annotating still works.
        s.close();
        let mut live = report_at(7200, true, 40.0);
        h.annotate(&mut live);
        let pending = live.findings.iter().find(|f| f.code == "pending").unwrap();
        assert_eq!((pending.first_seen, pending.flaps), (at(0), 1));
        assert!(h.list().is_err(), "the store is closed");
    }

    #[test]
    fn unreadable_history_entries_are_quarantined_and_the_rest_is_served() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            let h = History::new(s.database(), Retention::default()).unwrap();
            for t in [0, 100, 200] {
                h.record(&mut report_at(t, true, 40.0)).unwrap();
            }
            let txn = s.database().begin_write().unwrap();
            {
                let mut reports = txn.open_table(REPORTS).unwrap();
                reports.insert(ms(at(100)), b"not zstd".as_slice()).unwrap();
                // A key no timestamp has (year > 9999).
                reports.insert(u64::MAX, b"x".as_slice()).unwrap();
                let mut findings = txn.open_table(FINDINGS).unwrap();
                let key = findings
                    .iter()
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .0
                    .value()
                    .to_string();
                findings
                    .insert(key.as_str(), b"{not json".as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        // Startup (what State::build reads) goes on: the bad key is skipped.
        let s = Store::open(dir.path()).unwrap();
        let h = History::new(s.database(), Retention::default()).unwrap();
        let listed: Vec<Timestamp> = h.list().unwrap().into_iter().map(|(t, _)| t).collect();
        assert_eq!(listed, vec![at(0), at(100), at(200)]);
        // A query at the unreadable report answers with the one before it.
        assert_eq!(h.at(at(150)).unwrap().unwrap().generated_at, at(0));
        let between: Vec<Timestamp> = h
            .between(at(0), at(300))
            .unwrap()
            .into_iter()
            .map(|r| r.generated_at)
            .collect();
        assert_eq!(between, vec![at(0), at(200)]);
        // Recording goes on past the unreadable finding.
        h.record(&mut report_at(300, true, 40.0)).unwrap();
        let q: Vec<String> = h
            .quarantined()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(q.len(), 3, "{q:?}");
        assert!(q[0].starts_with("findings/"), "{q:?}");
        assert!(
            q[1].starts_with(&format!("reports/{}@", ms(at(100)))),
            "{q:?}"
        );
        assert!(q[2].starts_with(&format!("reports/{}@", u64::MAX)), "{q:?}");
        assert_eq!(h.list().unwrap().len(), 3, "moved, not only skipped");
    }

    /// A report JSON the standalone program (this machine's agent and the example cluster
    /// dump) produced, and the frames C zstd 1.5 wrote of it: `report.bulk.zst` as the
    /// aggregator's history did before (one frame at level 3, content size, no checksum:
    /// `zstd -3 --no-check`), `report.stream.zst` as the CLI reading a pipe writes (no
    /// content size, XXH64 checksum).
    const FIXTURE_JSON: &[u8] = include_bytes!("../../tests/fixtures/history/report.json");
    const FIXTURE_BULK: &[u8] = include_bytes!("../../tests/fixtures/history/report.bulk.zst");
    const FIXTURE_STREAM: &[u8] = include_bytes!("../../tests/fixtures/history/report.stream.zst");

    /// A frame header: magic, descriptor, optional window byte, content size bytes.
    fn frame_header(descriptor: u8, window: Option<u8>, content_size: &[u8]) -> Vec<u8> {
        let mut f = vec![0x28, 0xB5, 0x2F, 0xFD, descriptor];
        f.extend(window);
        f.extend_from_slice(content_size);
        // One last raw block of 0 bytes.
        f.extend_from_slice(&[0x01, 0x00, 0x00]);
        f
    }

    #[test]
    fn frames_c_zstd_wrote_decode_to_the_exact_bytes() {
        for (name, frame) in [("bulk", FIXTURE_BULK), ("stream", FIXTURE_STREAM)] {
            let json = decompress(frame, MAX_REPORT_JSON_BYTES).unwrap();
            assert!(json == FIXTURE_JSON, "{name} frame decodes to other bytes");
        }
        // Through the history, as a store written before the switch holds it.
        let (s, h) = history(Retention::default());
        let expected: ClusterReport = serde_json::from_slice(FIXTURE_JSON).unwrap();
        let key = ms(expected.generated_at);
        let txn = s.database().begin_write().unwrap();
        txn.open_table(REPORTS)
            .unwrap()
            .insert(key, FIXTURE_BULK)
            .unwrap();
        txn.commit().unwrap();
        let read = h.at(expected.generated_at).unwrap().unwrap();
        assert_eq!(read, expected);
        assert_eq!(read.nodes.len(), 4, "three dump nodes and this machine");
        assert!(h.quarantined().unwrap().is_empty());
    }

    /// The `zstd` CLI, or None outside CI when it is not installed (under CI=true a missing
    /// CLI fails the test: tests/services/logrotate.sh installs it).
    fn zstd_cli() -> Option<&'static str> {
        match std::process::Command::new("zstd").arg("--version").output() {
            Ok(o) if o.status.success() => Some("zstd"),
            _ if std::env::var("CI").is_ok_and(|c| c == "true") => {
                panic!("the zstd CLI is not installed (tests/services/logrotate.sh installs it)")
            }
            _ => {
                eprintln!("skipped: the zstd CLI is not installed");
                None
            }
        }
    }

    #[test]
    fn frames_the_encoder_writes_decode_with_the_zstd_cli_to_the_same_bytes() {
        use std::io::Write;
        let Some(cli) = zstd_cli() else { return };
        // The fixture, and 3 MiB of reports (past one 128 KiB block and one 2 MiB window).
        let big: Vec<u8> = (0..48)
            .flat_map(|i| {
                format!("\n{i}:")
                    .into_bytes()
                    .into_iter()
                    .chain(FIXTURE_JSON.iter().copied())
            })
            .collect();
        for json in [FIXTURE_JSON, big.as_slice()] {
            let frame = compress(json).unwrap();
            assert!(
                frame.len() < json.len() / 4,
                "compresses: {} of {}",
                frame.len(),
                json.len()
            );
            let mut child = std::process::Command::new(cli)
                .args(["-d", "-c", "-q"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let writer = std::thread::spawn(move || stdin.write_all(&frame));
            let out = child.wait_with_output().unwrap();
            writer.join().unwrap().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.stdout == json,
                "zstd -d gives other bytes ({} of {})",
                out.stdout.len(),
                json.len()
            );
            // And this decoder reads its own frames back.
            assert!(decompress(&compress(json).unwrap(), json.len()).unwrap() == json);
        }
    }

    #[test]
    fn a_frame_declaring_a_huge_content_size_is_refused_from_its_header() {
        // 8-byte content size of 1 TiB, window 1 KiB, one empty raw block.
        let huge = frame_header(0xC0, Some(0x00), &(1u64 << 40).to_le_bytes());
        assert!(matches!(
            decompress(&huge, MAX_REPORT_JSON_BYTES),
            Err(CodecError::DeclaredTooLarge { declared, limit })
                if declared == 1 << 40 && limit == MAX_REPORT_JSON_BYTES
        ));
        // A real frame over a smaller limit.
        assert!(matches!(
            decompress(FIXTURE_BULK, 1000),
            Err(CodecError::DeclaredTooLarge {
                declared: 63_668,
                limit: 1000
            })
        ));
        // One without a content size is cut off at the limit.
        assert!(matches!(
            decompress(FIXTURE_STREAM, 1000),
            Err(CodecError::DecodedTooLarge { limit: 1000 })
        ));
        assert_eq!(
            decompress(FIXTURE_STREAM, FIXTURE_JSON.len())
                .unwrap()
                .len(),
            FIXTURE_JSON.len(),
            "exactly the limit is allowed"
        );
        // No content size and a 2 TiB window (exponent 31): refused, not allocated.
        let window = frame_header(0x00, Some(31 << 3), &[]);
        assert!(matches!(
            decompress(&window, MAX_REPORT_JSON_BYTES),
            Err(CodecError::Stream(_))
        ));

        // Through the history: a typed error naming the entry, then quarantine.
        let err = decode(ms(at(100)), &huge).unwrap_err();
        let Error::History { entry, source } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(entry, &format!("reports/{} ({})", ms(at(100)), at(100)));
        assert!(matches!(source, CodecError::DeclaredTooLarge { .. }));
        assert_eq!(
            Chain(&err).to_string(),
            format!(
                "history entry reports/{} ({}): the frame declares 1099511627776 bytes of JSON, over the 268435456-byte limit",
                ms(at(100)),
                at(100)
            )
        );
    }

    #[test]
    fn truncated_and_padded_frames_are_errors() {
        for cut in [FIXTURE_BULK.len() - 1, FIXTURE_BULK.len() / 2, 12, 5, 3, 0] {
            assert!(
                decompress(&FIXTURE_BULK[..cut], MAX_REPORT_JSON_BYTES).is_err(),
                "bulk frame cut at {cut}"
            );
        }
        for cut in [FIXTURE_STREAM.len() - 1, FIXTURE_STREAM.len() / 2, 12] {
            assert!(
                decompress(&FIXTURE_STREAM[..cut], MAX_REPORT_JSON_BYTES).is_err(),
                "stream frame cut at {cut}"
            );
        }
        for frame in [FIXTURE_BULK, FIXTURE_STREAM] {
            let padded = [frame, b"junk"].concat();
            assert!(decompress(&padded, MAX_REPORT_JSON_BYTES).is_err());
        }
        // A flipped byte in the checksummed frame's last block fails its checksum or decoding.
        let mut flipped = FIXTURE_STREAM.to_vec();
        let n = flipped.len();
        flipped[n - 10] ^= 0x40;
        assert!(decompress(&flipped, MAX_REPORT_JSON_BYTES).is_err());

        let truncated = &FIXTURE_BULK[..FIXTURE_BULK.len() / 2];
        let err = decode(ms(at(200)), truncated).unwrap_err();
        assert!(
            matches!(&err, Error::History { entry, source: CodecError::Frame(_) }
                if entry == &format!("reports/{} ({})", ms(at(200)), at(200))),
            "{err:?}"
        );
    }

    #[test]
    fn hostile_frames_in_the_store_are_quarantined_and_the_rest_is_served() {
        let (s, h) = history(Retention::default());
        for t in [0, 300] {
            h.record(&mut report_at(t, true, 40.0)).unwrap();
        }
        let huge = frame_header(0xC0, Some(0x00), &(1u64 << 40).to_le_bytes());
        let txn = s.database().begin_write().unwrap();
        {
            let mut reports = txn.open_table(REPORTS).unwrap();
            reports.insert(ms(at(100)), huge.as_slice()).unwrap();
            reports
                .insert(ms(at(200)), &FIXTURE_BULK[..FIXTURE_BULK.len() / 2])
                .unwrap();
        }
        txn.commit().unwrap();
        let served: Vec<Timestamp> = h
            .between(at(0), at(300))
            .unwrap()
            .into_iter()
            .map(|r| r.generated_at)
            .collect();
        assert_eq!(served, vec![at(0), at(300)]);
        let q: Vec<String> = h
            .quarantined()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(q.len(), 2, "{q:?}");
        assert!(
            q[0].starts_with(&format!("reports/{}@", ms(at(100)))),
            "{q:?}"
        );
        assert!(
            q[1].starts_with(&format!("reports/{}@", ms(at(200)))),
            "{q:?}"
        );
    }

    #[test]
    fn a_report_too_large_to_read_back_is_not_compressed() {
        // Zeroed pages: not touched before the size check.
        let json = vec![0u8; MAX_REPORT_JSON_BYTES + 1];
        assert!(matches!(
            compress(&json),
            Err(CodecError::JsonTooLarge { bytes, limit })
                if bytes == MAX_REPORT_JSON_BYTES + 1 && limit == MAX_REPORT_JSON_BYTES
        ));
    }
}
