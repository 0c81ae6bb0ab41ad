//! The async facade of the store: every redb call the running aggregator makes goes through
//! a [`StoreHandle`], which runs it on tokio's blocking pool, so no async task blocks a
//! runtime thread on a read, a commit's fsync, a reopen or a close.
//!
//! [`Store`] and [`History`] stay synchronous: they are what runs *inside* the facade, and
//! the entry points of callers that are themselves sync (offline CLI commands opening the
//! store, tests, benchmarks; see [`StoreHandle::blocking`]).
//!
//! Why the blocking pool rather than one store thread fed by a bounded channel: the pool
//! runs calls side by side, as redb allows (readers beside its one writer), while a single
//! thread would queue a history query (reading a year of reports takes seconds) in front
//! of the group commit, delaying every ack. The writes need no thread of their own to stay
//! ordered: the group commit ([`crate::api::commit`]) is one task that awaits each batch
//! before it starts the next. The pool's dispatch costs microseconds per call against a
//! commit's milliseconds of fsync.

use std::sync::Arc;

use jiff::Timestamp;

use super::history::{self, DiskTrend, History};
use super::{Error, Result, Store};
use crate::report::ClusterReport;

/// Runs `f` on the blocking pool: store work that has no [`StoreHandle`] yet (opening the
/// file, building the state from it).
///
/// # Errors
/// What `f` returns, or [`Error::Task`] when it panicked or the runtime is stopping.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(Error::Task)?
}

/// The store and its history, reached from async code. Cheap to clone: the clones share
/// one database.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    history: History,
}

impl StoreHandle {
    /// The facade over `store` and `history` (which share one database).
    #[must_use]
    pub fn new(store: Store, history: History) -> Self {
        Self {
            inner: Arc::new(Inner { store, history }),
        }
    }

    /// Runs `f` with the sync store and history on the blocking pool: the one place where
    /// the server's store calls leave the async threads. For work of several steps that
    /// belong together (a round's capacity samples, a group commit and the JSON of what it
    /// stored).
    ///
    /// # Errors
    /// What `f` returns, or [`Error::Task`].
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store, &History) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || f(&inner.store, &inner.history)).await
    }

    /// The sync store, for callers that are themselves sync: tests, benchmarks, and tools
    /// that hold a [`crate::state::State`] outside a runtime. Code on a runtime uses the
    /// async methods: a call here blocks the calling thread on redb.
    #[must_use]
    pub fn blocking(&self) -> &Store {
        &self.inner.store
    }

    /// The sync history, for the same callers as [`StoreHandle::blocking`]. Reading the
    /// finding lifecycle ([`History::annotate`]) needs no store call and is fine anywhere.
    #[must_use]
    pub fn history(&self) -> &History {
        &self.inner.history
    }

    /// [`Store::get_meta`].
    ///
    /// # Errors
    /// As [`Store::get_meta`], or [`Error::Task`].
    pub async fn get_meta<T>(&self, key: &str) -> Result<Option<T>>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let key = key.to_string();
        self.call(move |s, _| s.get_meta(&key)).await
    }

    /// [`Store::put_meta`]: the write and its fsync.
    ///
    /// # Errors
    /// As [`Store::put_meta`], or [`Error::Task`].
    pub(crate) async fn put_meta<T>(&self, key: &str, value: T) -> Result<()>
    where
        T: serde::Serialize + Send + 'static,
    {
        let key = key.to_string();
        self.call(move |s, _| s.put_meta(&key, &value)).await
    }

    /// [`Store::reopen`]: closes and opens the file again and commits a probe write.
    ///
    /// # Errors
    /// As [`Store::reopen`], or [`Error::Task`].
    pub async fn reopen(&self) -> Result<()> {
        self.call(|s, _| s.reopen()).await
    }

    /// [`Store::close`]: closing writes the file's clean-shutdown header. Returns once the
    /// file's lock is released (unless a transaction still runs, see [`Store::close`]).
    pub async fn close(&self) {
        if let Err(e) = self
            .call(|s, _| {
                s.close();
                Ok(())
            })
            .await
        {
            tracing::warn!(error = %caretaker_core::error::Chain(&e), "Closing the store did not finish.");
        }
    }

    /// [`History::at`]: the latest readable report recorded at or before `at`.
    ///
    /// # Errors
    /// As [`History::at`], or [`Error::Task`].
    pub(crate) async fn history_at(&self, at: Timestamp) -> Result<Option<ClusterReport>> {
        self.call(move |_, h| h.at(at)).await
    }

    /// [`History::list`]: the recorded reports' times and stored sizes, oldest first.
    ///
    /// # Errors
    /// As [`History::list`], or [`Error::Task`].
    pub(crate) async fn history_list(&self) -> Result<Vec<(Timestamp, u64)>> {
        self.call(|_, h| h.list()).await
    }

    /// [`history::disk_trends`] over the last `days` before `now`.
    ///
    /// # Errors
    /// As [`history::disk_trends`], or [`Error::Task`].
    pub(crate) async fn disk_trends(&self, now: Timestamp, days: u32) -> Result<Vec<DiskTrend>> {
        self.call(move |_, h| history::disk_trends(h, now, days))
            .await
    }

    /// [`history::alert_counts`] over the last `days` before `now`.
    ///
    /// # Errors
    /// As [`history::alert_counts`], or [`Error::Task`].
    pub(crate) async fn alert_counts(
        &self,
        now: Timestamp,
        days: u32,
    ) -> Result<std::collections::BTreeMap<String, u64>> {
        self.call(move |_, h| history::alert_counts(h, now, days))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::history::Retention;

    fn handle() -> (StoreHandle, Arc<crate::store::DbHandle>) {
        let store = Store::in_memory().unwrap();
        let db = store.database();
        let history = History::new(store.database(), Retention::default()).unwrap();
        (StoreHandle::new(store, history), db)
    }

    /// The regression this facade exists for: a store call that waits (here for redb's
    /// write lock, as a commit waits for its fsync) must leave the runtime's thread free.
    /// On a current-thread runtime a call made inline would stall every other task, and
    /// the task below would never run.
    #[test]
    fn a_waiting_store_write_does_not_stall_a_current_thread_runtime() {
        let (handle, db) = handle();
        // Another writer holds redb's one write transaction: `put_meta` waits for it.
        let writer = db.begin_write().unwrap();
        let (answered_tx, answered) = std::sync::mpsc::channel();
        let runtime = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async move {
                let h = handle.clone();
                let (started, put_started) = tokio::sync::oneshot::channel();
                let put = tokio::spawn(async move {
                    started.send(()).unwrap();
                    h.put_meta("k", 7u32).await
                });
                // This task goes on only once the put task let go of the thread: made inline,
                // the put would hold it, waiting for the writer, and nothing below would run.
                put_started.await.unwrap();
                // Another task (a query) still runs on the runtime's one thread.
                let other = tokio::spawn(async { 6 * 7 }).await.unwrap();
                answered_tx.send(other == 42).unwrap();
                put.await.unwrap().unwrap();
                handle.get_meta::<u32>("k").await.unwrap()
            })
        });
        // Not a timing assertion: a guard so that a regression fails instead of hanging.
        let answered = answered.recv_timeout(Duration::from_secs(60));
        drop(writer);
        assert_eq!(
            answered,
            Ok(true),
            "a query answered while a store write waited"
        );
        assert_eq!(
            runtime.join().unwrap(),
            Some(7),
            "the write went through once the other writer was gone"
        );
    }

    #[tokio::test]
    async fn a_closed_handle_fails_later_calls_and_releases_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let history = History::new(store.database(), Retention::default()).unwrap();
        let handle = StoreHandle::new(store, history);
        handle.put_meta("k", 1u32).await.unwrap();
        handle.close().await;
        assert!(matches!(
            handle.get_meta::<u32>("k").await,
            Err(Error::Closed)
        ));
        assert!(matches!(handle.reopen().await, Err(Error::Closed)));
        let again = blocking({
            let dir = dir.path().to_path_buf();
            move || Store::open(&dir)
        })
        .await
        .expect("the file is free once close returned");
        assert_eq!(again.get_meta::<u32>("k").unwrap(), Some(1));
    }

    #[tokio::test]
    async fn a_panicking_store_call_is_a_task_error_not_a_crash() {
        let (handle, _db) = handle();
        let err = handle
            .call(|_, _| -> Result<()> { panic!("boom") })
            .await
            .unwrap_err();
        assert!(matches!(&err, Error::Task(j) if j.is_panic()), "{err:?}");
        assert_eq!(err.to_string(), "store task");
        // The handle still works.
        handle.put_meta("k", 2u32).await.unwrap();
        assert_eq!(handle.get_meta::<u32>("k").await.unwrap(), Some(2));
    }
}
