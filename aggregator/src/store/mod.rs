//! Durable store of every node's latest report (redb, one file in the data directory).
//!
//! A report is written and committed (fsync) before the ingest path acks it, so an acked
//! report survives a crash of the aggregator. The decision whether a report is new, a
//! duplicate or from an older agent run is taken inside the same write transaction as the
//! write, so two streams claiming the same node cannot interleave badly.
//!
//! [`history`]: every recorded merged report, in the same redb file.

pub mod history;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use caretaker_core::model::NodeReport;
use caretaker_proto::pb;
use jiff::Timestamp;
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// node name → prost-encoded `pb::NodeStatus` (freshness unset: it is computed on read).
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");

/// Small named state documents (JSON): the scheduler's run state, the notifier's state.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Name of the store file inside the data directory.
pub const STORE_FILE: &str = "caretaker.redb";

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
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
    #[error("store: {0}")]
    Redb(#[from] redb::Error),
    #[error("store holds an unreadable entry for node {node:?}: {reason}")]
    Corrupt { node: String, reason: String },
}

macro_rules! redb_err {
    ($($t:ty),*) => {$(impl From<$t> for StoreError { fn from(e: $t) -> Self { Self::Redb(e.into()) } })*};
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
/// buffer was full) is accepted.
pub fn decide(latest: Option<(u64, u64)>, epoch: u64, seq: u64) -> Outcome {
    match latest {
        None => Outcome::Stored,
        Some((e, _)) if epoch > e => Outcome::Stored,
        Some((e, _)) if epoch < e => Outcome::OlderRun,
        Some((_, s)) if seq > s => Outcome::Stored,
        Some(_) => Outcome::Duplicate,
    }
}

/// The store.
#[derive(Debug)]
pub struct Store {
    db: Arc<Database>,
}

impl Store {
    /// Opens (or creates) `data_dir/caretaker.redb`.
    ///
    /// # Errors
    /// The directory cannot be created, the file is not a redb database, or another
    /// process has it open ([`StoreError::Locked`]).
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let path = data_dir.join(STORE_FILE);
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Locked {
                    path: path.display().to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        Self::init(db)
    }

    /// A store that lives in memory only.
    ///
    /// # Errors
    /// Only if redb fails to set up its in-memory backend.
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, StoreError> {
        let txn = db.begin_write()?;
        txn.open_table(NODES)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    /// The database, shared with the report history.
    pub fn database(&self) -> Arc<Database> {
        Arc::clone(&self.db)
    }

    /// A state document stored under `key`, `None` when there is none.
    ///
    /// # Errors
    /// Read errors, or a document that does not decode as `T` (named by key).
    pub fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(META)?;
        let Some(v) = t.get(key)? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                node: key.into(),
                reason: e.to_string(),
            })
    }

    /// Stores a state document under `key`, durably.
    ///
    /// # Errors
    /// Write or commit errors.
    pub fn put_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
            node: key.into(),
            reason: e.to_string(),
        })?;
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(key, bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Every node's latest entry.
    ///
    /// # Errors
    /// Read errors, or an entry that does not decode (named by node).
    pub fn load_all(&self) -> Result<BTreeMap<String, StoredNode>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NODES)?;
        let mut out = BTreeMap::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let node = k.value().to_string();
            let entry = decode(&node, v.value())?;
            out.insert(node, entry);
        }
        Ok(out)
    }

    /// Stores `report` if it is newer than what is stored for its node (see [`decide`]),
    /// committing durably before returning. Returns the outcome and the entry now stored.
    ///
    /// # Errors
    /// Write or commit errors: nothing was stored, and the report must not be acked.
    pub fn put(
        &self,
        report: &NodeReport,
        received_at: Timestamp,
    ) -> Result<(Outcome, Option<StoredNode>), StoreError> {
        let txn = self.db.begin_write()?;
        let (outcome, entry) = {
            let mut table = txn.open_table(NODES)?;
            let previous = match table.get(report.node_name.as_str())? {
                Some(v) => Some(decode(&report.node_name, v.value())?),
                None => None,
            };
            let outcome = decide(
                previous.as_ref().map(|p| (p.report.epoch, p.report.seq)),
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
            (outcome, Some(entry))
        };
        txn.commit()?;
        Ok((outcome, entry))
    }
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

fn decode(node: &str, bytes: &[u8]) -> Result<StoredNode, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
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
        }
    }

    #[test]
    fn a_store_open_elsewhere_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        let path = dir.path().join(STORE_FILE);
        assert!(
            matches!(&err, StoreError::Locked { path: p } if *p == path.display().to_string()),
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
    fn decide_table() {
        assert_eq!(decide(None, 5, 9), Outcome::Stored);
        assert_eq!(decide(Some((5, 3)), 5, 4), Outcome::Stored);
        assert_eq!(
            decide(Some((5, 3)), 5, 9),
            Outcome::Stored,
            "a gap is accepted"
        );
        assert_eq!(decide(Some((5, 3)), 5, 3), Outcome::Duplicate);
        assert_eq!(decide(Some((5, 3)), 5, 1), Outcome::Duplicate);
        assert_eq!(
            decide(Some((5, 30)), 6, 1),
            Outcome::Stored,
            "restarted agent"
        );
        assert_eq!(decide(Some((6, 1)), 5, 31), Outcome::OlderRun);
    }

    #[test]
    fn put_counts_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Timestamp::from_second(1_800_000_100).unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(s.put(&report("a", 1, 1), t0).unwrap().0, Outcome::Stored);
            assert_eq!(s.put(&report("a", 1, 2), t0).unwrap().0, Outcome::Stored);
            assert_eq!(s.put(&report("a", 1, 2), t0).unwrap().0, Outcome::Duplicate);
            assert_eq!(s.put(&report("b", 7, 1), t0).unwrap().0, Outcome::Stored);
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
        assert_eq!(s.put(&report("a", 2, 1), t0).unwrap().0, Outcome::Stored);
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
                let expected = decide(model, epoch, seq);
                let (got, _) = s.put(&report("n", epoch, seq), t).unwrap();
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
