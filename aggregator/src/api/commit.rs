//! Group commit: reports from every ingest stream go to one committer task, which writes
//! the reports that arrived together in one store transaction with one commit (one fsync)
//! and answers each report only after that commit ([`crate::state::State::ingest_batch`]),
//! so "acked means durable" holds while the fsync cost is shared by the whole batch.
//!
//! A batch is closed when it holds [`CommitLimits::max_reports`] reports or
//! [`CommitLimits::max_bytes`] encoded bytes, or [`CommitLimits::max_wait`] after its first
//! report. Reports keep their order within a batch and between batches, so the reports of
//! one stream are decided in the order it sent them. Validation and decoding happen on the
//! streams' tasks, never on the commit path.

use std::sync::Arc;
use std::time::Duration;

use caretaker_core::model::NodeReport;
use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info_span, warn};

use crate::state::State;
use crate::store::{self, Outcome};

/// How large a batch may grow and how long its first report waits for company.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitLimits {
    /// Reports per transaction (default 1024).
    pub(crate) max_reports: usize,
    /// Encoded report bytes per transaction (default 8 MiB).
    pub(crate) max_bytes: usize,
    /// Longest a report waits for more reports before its batch is committed (default
    /// 2 ms; zero commits whatever is queued at once). While a commit runs, new reports
    /// queue anyway, so under load batches fill without waiting.
    pub(crate) max_wait: Duration,
}

impl Default for CommitLimits {
    fn default() -> Self {
        Self {
            max_reports: 1024,
            max_bytes: 8 << 20,
            max_wait: Duration::from_millis(2),
        }
    }
}

/// The answer to one submitted report: its outcome once committed, or the store error
/// that failed its whole batch (shared by every report of the batch).
pub(crate) type CommitResult = Result<Outcome, Arc<store::Error>>;

/// Why a report could not be submitted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommitError {
    /// The committer task has stopped (the server is shutting down).
    #[error("the committer has stopped")]
    Stopped,
}

struct Job {
    report: NodeReport,
    bytes: usize,
    reply: oneshot::Sender<CommitResult>,
}

/// The sending side of the committer; cheap to clone, one per stream.
#[derive(Debug, Clone)]
pub(crate) struct Committer {
    tx: mpsc::Sender<Job>,
}

/// The committer task itself, to end it: [`CommitTask::finish`] commits what is queued and
/// returns once the task has ended and let go of the state (and so of the store).
#[derive(Debug)]
pub(crate) struct CommitTask {
    close: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl CommitTask {
    /// Stops taking reports, commits those already queued (their streams may still be
    /// waiting for the answer) and waits until the task has ended.
    pub(crate) async fn finish(self) {
        self.close.cancel();
        if let Err(e) = self.handle.await {
            warn!(error = %e, "The committer task failed.");
        }
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("node", &self.report.node_name)
            .field("seq", &self.report.seq)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Committer {
    /// Starts the committer task on the current runtime. It stops when every
    /// [`Committer`] clone is dropped or [`CommitTask::finish`] is called, after
    /// committing what was queued.
    #[must_use]
    pub(crate) fn spawn(state: Arc<State>, limits: CommitLimits) -> (Self, CommitTask) {
        let limits = CommitLimits {
            max_reports: limits.max_reports.max(1),
            max_bytes: limits.max_bytes.max(1),
            max_wait: limits.max_wait,
        };
        // Bounded: a full queue makes the streams wait (their reports are counted in the
        // in-flight budget), it never grows.
        let (tx, rx) = mpsc::channel(limits.max_reports);
        let close = tokio_util::sync::CancellationToken::new();
        let handle =
            tokio::spawn(run(state, limits, rx, close.clone()).instrument(info_span!("commit")));
        (Self { tx }, CommitTask { close, handle })
    }

    /// Queues `report` (`bytes`: its encoded size) for the next batch; the receiver is
    /// answered after the commit that holds it.
    ///
    /// # Errors
    /// The committer has stopped.
    pub(crate) async fn submit(
        &self,
        report: NodeReport,
        bytes: usize,
    ) -> Result<oneshot::Receiver<CommitResult>, CommitError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                report,
                bytes,
                reply,
            })
            .await
            .map_err(|_| CommitError::Stopped)?;
        Ok(rx)
    }
}

/// Collects the next batch: `first`, then whatever arrives before a limit or the deadline
/// (or `close`, which ends the wait for more).
async fn next_batch(
    rx: &mut mpsc::Receiver<Job>,
    first: Job,
    limits: CommitLimits,
    close: &tokio_util::sync::CancellationToken,
) -> Vec<Job> {
    let mut bytes = first.bytes;
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + limits.max_wait;
    while batch.len() < limits.max_reports && bytes < limits.max_bytes {
        let job = match rx.try_recv() {
            Ok(job) => job,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {
                if limits.max_wait.is_zero() || close.is_cancelled() {
                    break;
                }
                let more = tokio::select! {
                    () = close.cancelled() => break,
                    more = tokio::time::timeout_at(deadline, rx.recv()) => more,
                };
                match more {
                    Ok(Some(job)) => job,
                    Ok(None) | Err(_) => break,
                }
            }
        };
        bytes = bytes.saturating_add(job.bytes);
        batch.push(job);
    }
    batch
}

async fn run(
    state: Arc<State>,
    limits: CommitLimits,
    mut rx: mpsc::Receiver<Job>,
    close: tokio_util::sync::CancellationToken,
) {
    loop {
        // `recv` is cancel-safe: a close between batches loses no report.
        let first = tokio::select! {
            () = close.cancelled(), if !rx.is_closed() => {
                // No new reports; what is queued is still committed.
                rx.close();
                continue;
            }
            job = rx.recv() => job,
        };
        let Some(first) = first else { break };
        let batch = next_batch(&mut rx, first, limits, &close).await;
        let (reports, replies): (Vec<NodeReport>, Vec<oneshot::Sender<CommitResult>>) =
            batch.into_iter().map(|j| (j.report, j.reply)).unzip();
        // The write and its fsync run on the store's facade, off this task's thread; the
        // next batch starts only after this one is answered, so batches stay in order.
        match state.ingest_batch(reports, Timestamp::now()).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // A stream that went away no longer needs its answer.
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                if let store::Error::Task(join) = &e {
                    warn!(error = %join, "A store batch did not finish; its reports are not acked.");
                }
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(Arc::clone(&e)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::tests::report;

    fn job(node: &str, seq: u64, bytes: usize) -> (Job, oneshot::Receiver<CommitResult>) {
        let (reply, rx) = oneshot::channel();
        (
            Job {
                report: report(node, 1, seq),
                bytes,
                reply,
            },
            rx,
        )
    }

    #[tokio::test]
    async fn a_batch_closes_at_its_count_or_byte_limit_and_keeps_the_order() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut answers = Vec::new();
        for seq in 1..=7 {
            let (j, a) = job("n", seq, 100);
            tx.send(j).await.unwrap();
            answers.push(a);
        }
        let limits = CommitLimits {
            max_reports: 3,
            max_bytes: 250,
            max_wait: Duration::ZERO,
        };
        let seqs = |b: Vec<Job>| b.iter().map(|j| j.report.seq).collect::<Vec<_>>();
        let first = |rx: &mut mpsc::Receiver<Job>| rx.try_recv().unwrap();
        let close = tokio_util::sync::CancellationToken::new();
        // 250 bytes: the third report (300 bytes in all) closes the batch.
        let f = first(&mut rx);
        assert_eq!(
            seqs(next_batch(&mut rx, f, limits, &close).await),
            vec![1, 2, 3]
        );
        let limits = CommitLimits {
            max_bytes: 10_000,
            max_reports: 2,
            ..limits
        };
        let f = first(&mut rx);
        assert_eq!(
            seqs(next_batch(&mut rx, f, limits, &close).await),
            vec![4, 5]
        );
        drop(tx);
        let f = first(&mut rx);
        assert_eq!(
            seqs(next_batch(&mut rx, f, limits, &close).await),
            vec![6, 7]
        );
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn reports_submitted_together_are_committed_in_one_transaction() {
        let state = State::new(Store::in_memory().unwrap(), 3).unwrap();
        let (committer, _task) = Committer::spawn(
            Arc::clone(&state),
            CommitLimits {
                max_wait: Duration::from_secs(3600),
                max_reports: 40,
                ..CommitLimits::default()
            },
        );
        let mut answers = Vec::new();
        for i in 0..20u64 {
            answers.push(
                committer
                    .submit(report(&format!("n{i}"), 1, 1), 10)
                    .await
                    .unwrap(),
            );
            // A resend of the same report in the same batch is a duplicate of the first.
            answers.push(
                committer
                    .submit(report(&format!("n{i}"), 1, 1), 10)
                    .await
                    .unwrap(),
            );
        }
        let mut outcomes = Vec::new();
        for a in answers {
            outcomes.push(a.await.unwrap().unwrap());
        }
        let expected: Vec<Outcome> = (0..20)
            .flat_map(|_| [Outcome::Stored, Outcome::Duplicate])
            .collect();
        assert_eq!(outcomes, expected);
        // One batch (40 reports, max_wait far away): one transaction, one write observed.
        let text = state.metrics.encode();
        let count = text
            .lines()
            .find(|l| l.starts_with("caretaker_store_write_duration_seconds_count"))
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            count, "caretaker_store_write_duration_seconds_count 1",
            "{text}"
        );
        assert_eq!(
            state
                .node("n7", Timestamp::now())
                .unwrap()
                .report
                .unwrap()
                .seq,
            1
        );
    }

    #[tokio::test]
    async fn finishing_commits_what_is_queued_and_lets_go_of_the_state() {
        let state = State::new(Store::in_memory().unwrap(), 3).unwrap();
        let (committer, task) = Committer::spawn(
            Arc::clone(&state),
            CommitLimits {
                // Without the close, these reports would wait an hour for company.
                max_wait: Duration::from_secs(3600),
                ..CommitLimits::default()
            },
        );
        let mut answers = Vec::new();
        for i in 0..5u64 {
            answers.push(
                committer
                    .submit(report(&format!("n{i}"), 1, 1), 10)
                    .await
                    .unwrap(),
            );
        }
        let weak = Arc::downgrade(&state);
        drop(state);
        // A committer clone is still alive (a stream that has not ended yet): finishing
        // does not wait for it.
        task.finish().await;
        for a in answers {
            assert_eq!(a.await.unwrap().unwrap(), Outcome::Stored);
        }
        assert_eq!(weak.strong_count(), 0, "the task let go of the state");
        assert!(matches!(
            committer.submit(report("late", 1, 1), 10).await,
            Err(CommitError::Stopped)
        ));
    }
}
