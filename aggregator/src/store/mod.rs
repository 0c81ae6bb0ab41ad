//! Durable store of every node's latest report (redb, one file in the data directory).
//!
//! A report is written and committed (fsync) before the ingest path acks it, so an acked
//! report survives a crash of the aggregator. The decision whether a report is new, a
//! duplicate or from an older agent run is taken inside the same write transaction as the
//! write, so two streams claiming the same node cannot interleave badly.
//!
//! After an I/O error (a full disk) redb fails every later write until the file is opened
//! again: [`Store::reopen`] swaps the database behind its [`DbHandle`] (shared with the
//! history) and proves a write of [`PROBE_BYTES`] commits; the state retries it on each
//! readiness probe and report while the store cannot write.
//!
//! [`history`]: every recorded merged report, in the same redb file.
//!
//! [`handle`]: the async facade. [`Store`] and [`history::History`] are synchronous; the
//! running aggregator reaches them only through a [`StoreHandle`], which runs each call on
//! the blocking pool, so no async task waits on redb on a runtime thread. The sync types are
//! for callers that are themselves sync: offline CLI commands, tests and benchmarks.

// The one module allowed to call redb (clippy.toml forbids it elsewhere).
#![allow(clippy::disallowed_methods)]

pub(crate) mod handle;
pub mod history;

pub use handle::StoreHandle;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use caretaker_core::model::NodeReport;
use caretaker_proto::pb;
use jiff::Timestamp;
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// node name → prost-encoded `pb::NodeStatus` (freshness unset: it is computed on read).
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");

/// Small named state documents (JSON): the scheduler's run state, the notifier's state.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Node entries that did not decode when read, moved aside so the rest of the store loads:
/// `node@time-it-was-found` → the bytes as they were.
const QUARANTINE: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes_quarantine");

/// How far ahead of the aggregator's clock an agent's epoch (its start time in Unix
/// nanoseconds) may be. A report whose epoch is beyond it is rejected: stored, it would
/// make every later report of that node look like an older run.
pub(crate) const EPOCH_SKEW_ALLOWANCE: std::time::Duration = std::time::Duration::from_secs(300);

/// Room a probe write needs before a store that failed is taken as writable again: a
/// few reports of a large node.
pub(crate) const PROBE_BYTES: usize = 1 << 20;

/// redb's page cache (read cache and write buffer together). redb's default is 1 GiB, a
/// bound far above the Deployment's 256 MiB memory limit (the cache grows with what is read
/// and written; how much of the storm's peak it took was not separated, see issue 14's
/// notes). The nodes' latest entries (~8 MiB at 5,000 nodes) are in memory anyway
/// ([`crate::state`]), and a group commit of 1,024 reports dirties ~2 MiB, so a small cache
/// costs little: reads it misses come from the kernel's page cache.
pub(crate) const CACHE_BYTES: usize = 16 << 20;

/// Name of the store file inside the data directory.
pub const STORE_FILE: &str = "caretaker.redb";

/// What a store call returns.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create data directory {path}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Another process has the file open: redb takes an exclusive file lock. With leader
    /// election only the Lease holder opens the store; a former leader that has not exited
    /// yet still holds it for a moment.
    #[error(
        "store file {path} is locked by another process (another aggregator has it open; with leader election only the Lease holder may open it)"
    )]
    Locked { path: String },
    #[error("store")]
    Redb(#[from] redb::Error),
    /// A write failed earlier and reopening the store has not yet made writes work.
    #[error("store cannot write since an I/O error (a full disk?); retrying")]
    Unwritable,
    /// The database is closed for a reopen after an I/O error.
    #[error("store is being reopened after an I/O error")]
    Reopening,
    /// [`Store::close`] was called: the aggregator is stopping.
    #[error("store is closed")]
    Closed,
    #[error("store holds an unreadable entry for node {node:?}: {reason}")]
    Corrupt { node: String, reason: String },
    /// A report of the history does not decode (or one to record could not be read back).
    #[error("history entry {entry}")]
    History {
        entry: String,
        #[source]
        source: history::CodecError,
    },
    /// A store call on the blocking pool did not finish (it panicked, or the runtime is
    /// shutting down).
    #[error("store task")]
    Task(#[source] tokio::task::JoinError),
}

macro_rules! redb_err {
    ($($t:ty),*) => {$(impl From<$t> for Error { fn from(e: $t) -> Self { Self::Redb(e.into()) } })*};
}
redb_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What the store knows of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredNode {
    pub report: NodeReport,
    /// Aggregator clock when the report was stored.
    pub received_at: Timestamp,
    /// Reports stored from this node since the store was created.
    pub reports_stored_total: u64,
}

/// What ingest did with a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written; the node's latest report now.
    Stored,
    /// Already stored (same run, same or lower sequence): a resend after a lost ack.
    Duplicate,
    /// From an agent run older than the one already seen (an old pod still draining
    /// during a rolling update): acked so the sender drops it, not stored.
    OlderRun,
}

/// Whether a report `(epoch, seq)` is new given the latest stored `(epoch, seq)`.
///
/// A larger epoch is a restarted agent: its `seq` starts at 1 again and is new. Within one
/// epoch only a larger `seq` is new. A gap in `seq` (reports the agent dropped because its
/// buffer was full) is accepted. A smaller epoch is an older run still draining, unless the
/// node has been silent for its stale period (`latest_stale`): then no newer run is
/// reporting, and the smaller epoch is an agent whose clock went back (or whose earlier
/// epoch was bogus), taken as the node's run from now on.
pub(crate) fn decide(
    latest: Option<(u64, u64)>,
    latest_stale: bool,
    epoch: u64,
    seq: u64,
) -> Outcome {
    match latest {
        None => Outcome::Stored,
        Some((e, _)) if epoch > e => Outcome::Stored,
        Some((e, _)) if epoch < e && latest_stale => Outcome::Stored,
        Some((e, _)) if epoch < e => Outcome::OlderRun,
        Some((_, s)) if seq > s => Outcome::Stored,
        Some(_) => Outcome::Duplicate,
    }
}

/// Why a report's epoch is refused, `None` when it is acceptable: an epoch beyond the
/// aggregator's clock plus [`EPOCH_SKEW_ALLOWANCE`] (the agent's clock is ahead, or the
/// epoch is forged). The reason goes back to the agent in `Ack.rejected`.
pub(crate) fn epoch_rejection(epoch: u64, now: Timestamp) -> Option<String> {
    let limit = now
        .as_nanosecond()
        .saturating_add(EPOCH_SKEW_ALLOWANCE.as_nanos() as i128);
    if i128::from(epoch) <= limit {
        return None;
    }
    let at = i64::try_from(epoch / 1_000_000_000)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
        .map_or_else(|| "beyond year 9999".to_string(), |t| t.to_string());
    Some(format!(
        "epoch {epoch} (agent start {at}) is more than {}s ahead of the aggregator's clock ({now}); fix the node's clock and restart the agent",
        EPOCH_SKEW_ALLOWANCE.as_secs()
    ))
}

/// The store's database, replaceable: after an I/O error (a full disk) redb fails every
/// later write ("Previous I/O error occurred") until the file is opened again, so the
/// node store and the history reach the database through this handle and [`Store::reopen`]
/// swaps it.
#[derive(Debug)]
pub struct DbHandle {
    /// `None` while being reopened (redb locks the file: the old handle must close first).
    db: RwLock<Option<Arc<Database>>>,
    /// The file, `None` in memory (nothing to reopen).
    path: Option<PathBuf>,
    /// redb's page cache, kept when the file is reopened.
    cache_bytes: usize,
    /// Set by [`Store::close`]: no reopen after it.
    closed: std::sync::atomic::AtomicBool,
}

impl DbHandle {
    fn current(&self) -> Result<Arc<Database>> {
        let db = self
            .db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match db {
            Some(db) => Ok(db),
            None if self.closed.load(std::sync::atomic::Ordering::SeqCst) => Err(Error::Closed),
            None => Err(Error::Reopening),
        }
    }

    /// A write transaction on the current database.
    ///
    /// # Errors
    /// The database is being reopened, or redb failed.
    pub(crate) fn begin_write(&self) -> Result<redb::WriteTransaction> {
        Ok(self.current()?.begin_write()?)
    }

    /// A read transaction on the current database.
    ///
    /// # Errors
    /// The database is being reopened, or redb failed.
    pub(crate) fn begin_read(&self) -> Result<redb::ReadTransaction> {
        Ok(self.current()?.begin_read()?)
    }

    /// Every entry of the quarantine table `table` (key → bytes), by key.
    ///
    /// # Errors
    /// The database is being reopened, or redb failed.
    #[cfg(test)]
    fn quarantined(&self, table: TableDefinition<&str, &[u8]>) -> Result<Vec<(String, Vec<u8>)>> {
        let txn = self.begin_read()?;
        let t = txn.open_table(table)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}

/// The store.
#[derive(Debug)]
pub struct Store {
    db: Arc<DbHandle>,
}

impl Store {
    /// Opens (or creates) `data_dir/caretaker.redb`.
    ///
    /// # Errors
    /// The directory cannot be created, the file is not a redb database, or another
    /// process has it open ([`Error::Locked`]).
    pub fn open(data_dir: &Path) -> Result<Self> {
        Self::open_with_cache(data_dir, CACHE_BYTES)
    }

    /// [`Store::open`] with a page cache of `cache_bytes` instead of [`CACHE_BYTES`].
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with_cache(data_dir: &Path, cache_bytes: usize) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::CreateDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let path = data_dir.join(STORE_FILE);
        let db = create(&path, cache_bytes)?;
        Self::init(db, Some(path), cache_bytes)
    }

    /// Closes the database file and opens it again, then proves a write commits: redb
    /// fails every write after one I/O error (a full disk) until reopened. In memory there
    /// is nothing to reopen: only the probe write is tried.
    ///
    /// # Errors
    /// The file cannot be opened yet, or the probe write fails (the disk is still full).
    pub fn reopen(&self) -> Result<()> {
        if let Some(path) = &self.db.path {
            let mut slot = self
                .db
                .db
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if self.db.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Error::Closed);
            }
            // Dropped before opening: redb holds a lock on the file while it is open.
            *slot = None;
            *slot = Some(Arc::new(create(path, self.db.cache_bytes)?));
        }
        self.probe()
    }

    /// Closes the database file now, releasing its lock, whoever else still holds this
    /// store (a task that has not ended yet): every later call fails with
    /// [`Error::Closed`]. A transaction still running keeps the file open until it
    /// ends; the aggregator closes the store after its writers have stopped, so that the
    /// next leader (or a test) can open the file as soon as serving returned.
    pub fn close(&self) {
        let mut slot = self
            .db
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.db
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        *slot = None;
    }

    /// Commits a write of [`PROBE_BYTES`] and then its removal, to learn whether the store
    /// can take reports again: a small write can fit where a report does not, which would
    /// make readiness flap.
    ///
    /// # Errors
    /// A write or its commit failed.
    pub fn probe(&self) -> Result<()> {
        let room = vec![0u8; PROBE_BYTES];
        let txn = self.db.begin_write()?;
        txn.open_table(META)?
            .insert("store_probe", room.as_slice())?;
        txn.commit()?;
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.remove("store_probe")?;
        txn.commit()?;
        Ok(())
    }

    /// A store that lives in memory only.
    ///
    /// # Errors
    /// Only if redb fails to set up its in-memory backend.
    pub fn in_memory() -> Result<Self> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::init(db, None, CACHE_BYTES)
    }

    fn init(db: Database, path: Option<PathBuf>, cache_bytes: usize) -> Result<Self> {
        let txn = db.begin_write()?;
        txn.open_table(NODES)?;
        txn.open_table(META)?;
        txn.open_table(QUARANTINE)?;
        txn.commit()?;
        Ok(Self {
            db: Arc::new(DbHandle {
                db: RwLock::new(Some(Arc::new(db))),
                path,
                cache_bytes,
                closed: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The database, shared with the report history.
    pub fn database(&self) -> Arc<DbHandle> {
        Arc::clone(&self.db)
    }

    /// A state document stored under `key`, `None` when there is none.
    ///
    /// # Errors
    /// Read errors, or a document that does not decode as `T` (named by key).
    pub fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(META)?;
        let Some(v) = t.get(key)? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| Error::Corrupt {
                node: key.into(),
                reason: e.to_string(),
            })
    }

    /// Stores a state document under `key`, durably.
    ///
    /// # Errors
    /// Write or commit errors.
    pub(crate) fn put_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Corrupt {
            node: key.into(),
            reason: e.to_string(),
        })?;
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(key, bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// A second handle on the same database (a task that still holds the store).
    #[cfg(test)]
    fn handle(&self) -> Store {
        Store {
            db: Arc::clone(&self.db),
        }
    }

    /// Every node's latest entry. An entry that does not decode is moved to the quarantine
    /// table with a warning naming the node (its next report starts it afresh), so one bad
    /// entry does not keep every other node's data from loading.
    ///
    /// # Errors
    /// Read errors, or the quarantine cannot be written.
    pub fn load_all(&self) -> Result<BTreeMap<String, StoredNode>> {
        let mut out = BTreeMap::new();
        let mut bad = Vec::new();
        {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(NODES)?;
            for item in table.iter()? {
                let (k, v) = item?;
                let node = k.value().to_string();
                match decode(&node, v.value()) {
                    Ok(entry) => {
                        out.insert(node, entry);
                    }
                    Err(e) => bad.push((node, v.value().to_vec(), e)),
                }
            }
        }
        if !bad.is_empty() {
            let txn = self.db.begin_write()?;
            {
                let mut nodes = txn.open_table(NODES)?;
                let mut q = txn.open_table(QUARANTINE)?;
                for (node, bytes, e) in &bad {
                    quarantine(&mut nodes, &mut q, node, bytes, e)?;
                }
            }
            txn.commit()?;
        }
        Ok(out)
    }

    /// Node entries moved to quarantine (`node@time` → bytes), oldest key first.
    ///
    /// # Errors
    /// Read errors.
    #[cfg(test)]
    pub(crate) fn quarantined(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.db.quarantined(QUARANTINE)
    }

    /// Stores `report` if it is newer than what is stored for its node (see [`decide`]),
    /// committing durably before returning. Returns the outcome and the entry now stored.
    ///
    /// # Errors
    /// Write or commit errors: nothing was stored, and the report must not be acked.
    ///
    /// `stale_after_intervals`: when the stored entry is that many of its intervals old, a
    /// smaller epoch is taken (see [`decide`]). A stored entry that does not decode is moved
    /// to quarantine and the report stored in its place.
    pub fn put(
        &self,
        report: &NodeReport,
        received_at: Timestamp,
        stale_after_intervals: u32,
    ) -> Result<(Outcome, Option<StoredNode>)> {
        let mut out = self.put_batch(
            std::slice::from_ref(report),
            received_at,
            stale_after_intervals,
        )?;
        out.pop().ok_or(Error::Unwritable)
    }

    /// [`Store::put`] for many reports in one write transaction and one commit (one fsync):
    /// group commit. Reports are decided in order, each against what the reports before it
    /// in the batch left, so two reports of one node in a batch behave as two `put`s.
    /// Returns one `(outcome, entry)` per report, in order; the entry of a report that was
    /// not stored is what was stored before it.
    ///
    /// # Errors
    /// Write or commit errors: nothing of the batch was stored, and none of it may be acked.
    pub(crate) fn put_batch(
        &self,
        reports: &[NodeReport],
        received_at: Timestamp,
        stale_after_intervals: u32,
    ) -> Result<Vec<(Outcome, Option<StoredNode>)>> {
        let txn = self.db.begin_write()?;
        let mut out = Vec::with_capacity(reports.len());
        {
            let mut table = txn.open_table(NODES)?;
            for report in reports {
                out.push(put_one(
                    &txn,
                    &mut table,
                    report,
                    received_at,
                    stale_after_intervals,
                )?);
            }
        }
        txn.commit()?;
        Ok(out)
    }
}

/// One report of [`Store::put_batch`], inside its transaction.
fn put_one(
    txn: &redb::WriteTransaction,
    table: &mut redb::Table<&str, &[u8]>,
    report: &NodeReport,
    received_at: Timestamp,
    stale_after_intervals: u32,
) -> Result<(Outcome, Option<StoredNode>)> {
    let stored = table
        .get(report.node_name.as_str())?
        .map(|v| v.value().to_vec());
    let previous = match stored {
        None => None,
        Some(bytes) => match decode(&report.node_name, &bytes) {
            Ok(p) => Some(p),
            Err(e) => {
                let mut q = txn.open_table(QUARANTINE)?;
                quarantine(table, &mut q, &report.node_name, &bytes, &e)?;
                None
            }
        },
    };
    let stale = previous.as_ref().is_some_and(|p| {
        crate::report::freshness(p, stale_after_intervals, received_at)
            == caretaker_core::model::Freshness::Stale
    });
    let outcome = decide(
        previous.as_ref().map(|p| (p.report.epoch, p.report.seq)),
        stale,
        report.epoch,
        report.seq,
    );
    if outcome != Outcome::Stored {
        return Ok((outcome, previous));
    }
    let entry = StoredNode {
        report: report.clone(),
        received_at,
        reports_stored_total: previous.map_or(0, |p| p.reports_stored_total) + 1,
    };
    table.insert(report.node_name.as_str(), encode(&entry).as_slice())?;
    Ok((outcome, Some(entry)))
}

fn create(path: &Path, cache_bytes: usize) -> Result<Database> {
    match Database::builder().set_cache_size(cache_bytes).create(path) {
        Ok(db) => Ok(db),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(Error::Locked {
            path: path.display().to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Moves one undecodable node entry from `nodes` to `q`, with a warning.
fn quarantine(
    nodes: &mut redb::Table<&str, &[u8]>,
    q: &mut redb::Table<&str, &[u8]>,
    node: &str,
    bytes: &[u8],
    error: &Error,
) -> Result<()> {
    let key = format!("{node}@{}", Timestamp::now());
    tracing::warn!(%node, %error, quarantined_as = %key, "A stored node entry does not decode; moved it to quarantine, the node starts afresh with its next report.");
    q.insert(key.as_str(), bytes)?;
    nodes.remove(node)?;
    Ok(())
}

fn encode(e: &StoredNode) -> Vec<u8> {
    pb::NodeStatus {
        node_name: e.report.node_name.clone(),
        freshness: 0,
        received_at: Some(prost_types::Timestamp {
            seconds: e.received_at.as_second(),
            nanos: e.received_at.subsec_nanosecond(),
        }),
        reports_stored_total: e.reports_stored_total,
        report: Some(e.report.clone().into()),
    }
    .encode_to_vec()
}

fn decode(node: &str, bytes: &[u8]) -> Result<StoredNode> {
    let corrupt = |reason: String| Error::Corrupt {
        node: node.to_string(),
        reason,
    };
    let s = pb::NodeStatus::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    let ts = s
        .received_at
        .ok_or_else(|| corrupt("no received_at".into()))?;
    Ok(StoredNode {
        received_at: Timestamp::new(ts.seconds, ts.nanos).map_err(|e| corrupt(e.to_string()))?,
        reports_stored_total: s.reports_stored_total,
        report: NodeReport::try_from(s.report.ok_or_else(|| corrupt("no report".into()))?)
            .map_err(|e| corrupt(e.to_string()))?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use caretaker_core::model::{AgentCost, Host};
    use proptest::prelude::*;

    use super::*;

    pub(crate) fn report(node: &str, epoch: u64, seq: u64) -> NodeReport {
        NodeReport {
            node_name: node.into(),
            epoch,
            seq,
            collected_at: Timestamp::from_second(1_800_000_000).unwrap(),
            report_interval_ms: 10_000,
            host: Host::default(),
            logs: None,
            filesystems: vec![],
            network: vec![],
            agent: AgentCost::default(),
            errors: vec![],
            images: None,
            volumes: vec![],
            log_check: None,
        }
    }

    #[test]
    fn a_store_open_elsewhere_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        let path = dir.path().join(STORE_FILE);
        assert!(
            matches!(&err, Error::Locked { path: p } if *p == path.display().to_string()),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with(&format!(
                "store file {} is locked by another process",
                path.display()
            )),
            "{err}"
        );
        drop(first);
        Store::open(dir.path()).expect("free again once the holder closed it");
    }

    #[test]
    fn a_closed_store_releases_the_file_while_still_held_and_is_not_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let held = first.handle();
        first.put(&report("n1", 1, 1), Timestamp::now(), 3).unwrap();
        first.close();
        // `held` (a task that has not ended yet) no longer keeps the file locked.
        let second = Store::open(dir.path()).expect("the file is free after close");
        assert_eq!(second.load_all().unwrap()["n1"].report.seq, 1);
        drop(second);
        assert!(matches!(
            held.put(&report("n1", 1, 2), Timestamp::now(), 3),
            Err(Error::Closed)
        ));
        assert!(matches!(held.reopen(), Err(Error::Closed)));
        assert!(matches!(held.load_all(), Err(Error::Closed)));
    }

    #[test]
    fn a_store_open_failure_prints_each_cause_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let data_dir = file.join("data");
        let err = Store::open(&data_dir).unwrap_err();
        let Error::CreateDir { source, .. } = &err else {
            panic!("{err:?}");
        };
        let own = format!("cannot create data directory {}", data_dir.display());
        assert_eq!(err.to_string(), own);
        assert_eq!(
            caretaker_core::error::Chain(&err).to_string(),
            format!("{own}: {source}")
        );
    }

    #[test]
    fn decide_table() {
        assert_eq!(decide(None, false, 5, 9), Outcome::Stored);
        assert_eq!(decide(Some((5, 3)), false, 5, 4), Outcome::Stored);
        assert_eq!(
            decide(Some((5, 3)), false, 5, 9),
            Outcome::Stored,
            "a gap is accepted"
        );
        assert_eq!(decide(Some((5, 3)), false, 5, 3), Outcome::Duplicate);
        assert_eq!(decide(Some((5, 3)), false, 5, 1), Outcome::Duplicate);
        assert_eq!(
            decide(Some((5, 30)), false, 6, 1),
            Outcome::Stored,
            "restarted agent"
        );
        assert_eq!(decide(Some((6, 1)), false, 5, 31), Outcome::OlderRun);
        assert_eq!(
            decide(Some((6, 1)), true, 5, 31),
            Outcome::Stored,
            "a smaller epoch after the node went stale"
        );
    }

    #[test]
    fn an_epoch_far_ahead_is_rejected_and_a_smaller_one_is_taken_once_the_node_is_stale() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let now_ns = u64::try_from(now.as_nanosecond()).unwrap();
        assert_eq!(epoch_rejection(now_ns, now), None);
        assert_eq!(epoch_rejection(now_ns + 299_000_000_000, now), None);
        let reason = epoch_rejection(u64::MAX, now).unwrap();
        assert!(
            reason.starts_with("epoch 18446744073709551615 (agent start 2554-07-21T23:34:33Z) is more than 300s ahead of the aggregator's clock"),
            "{reason}"
        );
        assert!(epoch_rejection(now_ns + 301_000_000_000, now).is_some());

        // Without the rejection a huge epoch was stored and silenced the node for good;
        // stored anyway (an older aggregator let it in), the node recovers once stale.
        let s = Store::in_memory().unwrap();
        assert_eq!(
            s.put(&report("a", u64::MAX, 1), now, 3).unwrap().0,
            Outcome::Stored
        );
        let later = |secs: i64| Timestamp::from_second(1_800_000_000 + secs).unwrap();
        assert_eq!(
            s.put(&report("a", now_ns, 1), later(10), 3).unwrap().0,
            Outcome::OlderRun,
            "within the stale period (3 x 10 s) a smaller epoch is an older run"
        );
        assert_eq!(
            s.put(&report("a", now_ns, 2), later(31), 3).unwrap().0,
            Outcome::Stored
        );
        assert_eq!(
            s.put(&report("a", now_ns, 3), later(41), 3).unwrap().0,
            Outcome::Stored
        );
        assert_eq!(s.load_all().unwrap()["a"].report.epoch, now_ns);
    }

    #[test]
    fn an_unreadable_node_entry_is_quarantined_and_the_rest_loads() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Timestamp::from_second(1_800_000_100).unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.put(&report("good", 1, 1), t0, 3).unwrap();
            s.put(&report("bad", 1, 1), t0, 3).unwrap();
            let txn = s.db.begin_write().unwrap();
            txn.open_table(NODES)
                .unwrap()
                .insert("bad", b"\xff\xff not protobuf".as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let all = s.load_all().unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), vec!["good"]);
        let q = s.quarantined().unwrap();
        assert_eq!(q.len(), 1);
        assert!(q[0].0.starts_with("bad@"), "{q:?}");
        assert_eq!(q[0].1, b"\xff\xff not protobuf");
        // Moved, not just skipped: the next load is clean, and the node starts afresh.
        assert_eq!(s.load_all().unwrap().len(), 1);
        assert_eq!(s.quarantined().unwrap().len(), 1);
        assert_eq!(
            s.put(&report("bad", 1, 1), t0, 3).unwrap().0,
            Outcome::Stored
        );
        assert_eq!(s.load_all().unwrap()["bad"].reports_stored_total, 1);
    }

    #[test]
    fn a_report_over_an_unreadable_entry_quarantines_it_and_is_stored() {
        let s = Store::in_memory().unwrap();
        let t0 = Timestamp::from_second(1_800_000_100).unwrap();
        let txn = s.db.begin_write().unwrap();
        txn.open_table(NODES)
            .unwrap()
            .insert("n", b"\xff".as_slice())
            .unwrap();
        txn.commit().unwrap();
        assert_eq!(s.put(&report("n", 1, 1), t0, 3).unwrap().0, Outcome::Stored);
        assert_eq!(s.quarantined().unwrap().len(), 1);
        assert_eq!(s.load_all().unwrap()["n"].report.seq, 1);
    }

    #[test]
    fn put_counts_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Timestamp::from_second(1_800_000_100).unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(s.put(&report("a", 1, 1), t0, 3).unwrap().0, Outcome::Stored);
            assert_eq!(s.put(&report("a", 1, 2), t0, 3).unwrap().0, Outcome::Stored);
            assert_eq!(
                s.put(&report("a", 1, 2), t0, 3).unwrap().0,
                Outcome::Duplicate
            );
            assert_eq!(s.put(&report("b", 7, 1), t0, 3).unwrap().0, Outcome::Stored);
        }
        let s = Store::open(dir.path()).unwrap();
        let all = s.load_all().unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(
            (
                all["a"].report.seq,
                all["a"].reports_stored_total,
                all["a"].received_at
            ),
            (2, 2, t0)
        );
        assert_eq!(s.put(&report("a", 2, 1), t0, 3).unwrap().0, Outcome::Stored);
        assert_eq!(s.load_all().unwrap()["a"].reports_stored_total, 3);
    }

    #[test]
    fn meta_documents_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(s.get_meta::<Vec<u32>>("x").unwrap(), None);
            s.put_meta("x", &vec![1u32, 2]).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.get_meta::<Vec<u32>>("x").unwrap(), Some(vec![1, 2]));
        assert!(
            s.get_meta::<String>("x").is_err(),
            "a document of another type is an error"
        );
    }

    #[test]
    fn a_file_that_is_not_a_store_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(STORE_FILE),
            b"not a database at all, definitely not",
        )
        .unwrap();
        assert!(Store::open(dir.path()).is_err());
    }

    proptest! {
        /// Group commit changes nothing but the number of transactions: any deliveries cut
        /// into any batches end with the outcomes and the store of one `put` each.
        #[test]
        fn a_batch_decides_as_its_reports_one_by_one(
            deliveries in proptest::collection::vec((0usize..3, 1u64..3, 1u64..6), 1..60),
            cuts in proptest::collection::vec(1usize..8, 1..20),
        ) {
            let one = Store::in_memory().unwrap();
            let batched = Store::in_memory().unwrap();
            let t = Timestamp::from_second(1_800_000_000).unwrap();
            let reports: Vec<NodeReport> = deliveries
                .iter()
                .map(|(n, e, s)| report(&format!("n{n}"), *e, *s))
                .collect();
            let expected: Vec<Outcome> =
                reports.iter().map(|r| one.put(r, t, 3).unwrap().0).collect();
            let mut got = Vec::new();
            let mut rest = reports.as_slice();
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (batch, tail) = rest.split_at((*cut).min(rest.len()));
                got.extend(batched.put_batch(batch, t, 3).unwrap().into_iter().map(|(o, _)| o));
                rest = tail;
            }
            prop_assert_eq!(got, expected);
            prop_assert_eq!(batched.load_all().unwrap(), one.load_all().unwrap());
        }
    }

    proptest! {
        /// Model: whatever order and repetition reports of two runs arrive in, the store
        /// ends at the highest (epoch, seq) delivered and counts each distinct report of
        /// the latest runs exactly once.
        #[test]
        fn store_matches_model(deliveries in proptest::collection::vec((1u64..3, 1u64..8), 1..60)) {
            let s = Store::in_memory().unwrap();
            let t = Timestamp::from_second(1_800_000_000).unwrap();
            let mut model: Option<(u64, u64)> = None;
            let mut stored = 0u64;
            for (epoch, seq) in deliveries {
                let expected = decide(model, false, epoch, seq);
                let (got, _) = s.put(&report("n", epoch, seq), t, 3).unwrap();
                prop_assert_eq!(got, expected);
                if expected == Outcome::Stored {
                    model = Some((epoch, seq));
                    stored += 1;
                }
            }
            let all = s.load_all().unwrap();
            prop_assert_eq!((all["n"].report.epoch, all["n"].report.seq), model.unwrap());
            prop_assert_eq!(all["n"].reports_stored_total, stored);
        }
    }
}
