//! The loop that runs the scheduled rounds: sleep until the next slot (plus a little
//! jitter), hand the round to a callback, repeat until shutdown.
//!
//! The callback gets the [`DueRound`] and the [`RunState`] with that round marked done; it
//! runs the checks, stores the report and persists the state (best in the same write: then
//! a round counts as done exactly when its report is stored). The loop keeps its own copy.
//!
//! Shutdown (the token) ends a sleep at once and abandons a round in progress: the loop
//! returns the state without that round, so it runs again after the restart.

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::runs::{DueRound, RunState, Schedule};

/// Where the loop reads the time.
pub(crate) trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A wall clock driven by tokio's clock: `origin` plus the tokio time elapsed since it was
/// made. Under `tokio::time::pause` it advances only with tokio's virtual time, so tests run
/// days of schedule without waiting.
#[derive(Debug, Clone, Copy)]
#[cfg(test)]
pub(crate) struct TokioClock {
    origin: Timestamp,
    started: tokio::time::Instant,
}

#[cfg(test)]
impl TokioClock {
    pub(crate) fn starting_at(origin: Timestamp) -> TokioClock {
        TokioClock {
            origin,
            started: tokio::time::Instant::now(),
        }
    }
}

#[cfg(test)]
impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = jiff::SignedDuration::try_from(self.started.elapsed())
            .unwrap_or(jiff::SignedDuration::MAX);
        self.origin
            .saturating_add(elapsed)
            .unwrap_or(Timestamp::MAX)
    }
}

/// How the loop waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunnerOptions {
    /// A round starts up to this much after its slot, at random. Default 5 s: there is one
    /// aggregator, so this only spreads its calls to the API server and Prometheus away from
    /// other cron jobs that start on the minute.
    pub(crate) max_jitter: Duration,
    /// The longest single sleep; the loop wakes at least this often to re-read the wall
    /// clock, so a clock step (NTP, a suspended VM) delays a round by at most this. Default 60 s.
    pub(crate) max_sleep: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            max_jitter: Duration::from_secs(5),
            max_sleep: Duration::from_secs(60),
        }
    }
}

/// Runs `schedule` until `shutdown` fires and returns the state to persist.
///
/// `state` is what was persisted before (default when nothing was); kinds without a record
/// start being done through the first reading of `clock` (see [`Schedule::init_state`]).
/// For each due round `on_round(round, state_after)` is awaited before the next; see the
/// [module docs](self) for what it should do with `state_after`.
pub(crate) async fn run_scheduler<C, F, Fut>(
    schedule: &Schedule,
    mut state: RunState,
    clock: &C,
    options: RunnerOptions,
    mut on_round: F,
    shutdown: CancellationToken,
) -> RunState
where
    C: Clock,
    F: FnMut(DueRound, RunState) -> Fut,
    Fut: Future<Output = ()>,
{
    schedule.init_state(&mut state, clock.now());
    // The earliest pending slot; recomputed only when the state changes.
    let mut next = schedule.next_due(&state);
    loop {
        if shutdown.is_cancelled() {
            return state;
        }
        let now = clock.now();
        if let Some(round) = next
            .filter(|at| *at <= now)
            .and_then(|_| schedule.due(now, &state))
        {
            let mut after = state.clone();
            after.mark_done(&round, now);
            let kinds: Vec<&str> = round.kinds.iter().map(|k| k.name()).collect();
            info!(kinds = %kinds.join(","), checks = round.checks.len(), "A scheduled round starts.");
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    warn!(kinds = %kinds.join(","), "Shutdown during a scheduled round; it runs again after the restart.");
                    return state;
                }
                () = on_round(round, after.clone()) => state = after,
            }
            next = schedule.next_due(&state);
            continue;
        }
        let wait = match next {
            Some(at) => {
                let until = Duration::try_from(at.duration_since(now)).unwrap_or_default();
                if until > options.max_sleep {
                    options.max_sleep
                } else {
                    until + caretaker_core::jitter::up_to(options.max_jitter)
                }
            }
            // No enabled run: nothing will be due; just wait for shutdown.
            None => options.max_sleep,
        };
        tokio::select! {
            () = shutdown.cancelled() => return state,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::schedule::config::ScheduleConfig;
    use crate::schedule::runs::RunKind;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// What the callback saw of one round: its kinds, its slots, when it started, the state.
    type Seen = (
        Vec<RunKind>,
        BTreeMap<RunKind, Timestamp>,
        Timestamp,
        RunState,
    );

    /// Runs the default schedule from `start` on tokio's virtual clock until `rounds` rounds
    /// have run; returns what each round saw and the final state.
    async fn run(
        start: &str,
        state: RunState,
        options: RunnerOptions,
        rounds: usize,
    ) -> (Vec<Seen>, RunState) {
        let schedule = Schedule::new(&ScheduleConfig::default());
        let clock = TokioClock::starting_at(ts(start));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let shutdown = CancellationToken::new();
        let (log, stop) = (seen.clone(), shutdown.clone());
        let on_round = move |round: DueRound, st: RunState| {
            let (log, stop) = (log.clone(), stop.clone());
            async move {
                let mut log = log.lock().unwrap();
                log.push((
                    round.kinds.into_iter().collect(),
                    round.slots,
                    clock.now(),
                    st,
                ));
                if log.len() == rounds {
                    stop.cancel();
                }
            }
        };
        let last = run_scheduler(&schedule, state, &clock, options, on_round, shutdown).await;
        let seen = seen.lock().unwrap().clone();
        (seen, last)
    }

    fn no_jitter() -> RunnerOptions {
        RunnerOptions {
            max_jitter: Duration::ZERO,
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn runs_daily_then_the_sunday_first_as_one_round_on_virtual_time() {
        // Friday 2025-05-30 09:00 JST; Sunday 1 June is also the 1st.
        let (seen, last) = run("2025-05-30T00:00:00Z", RunState::default(), no_jitter(), 3).await;
        let summary: Vec<(Vec<RunKind>, Timestamp)> =
            seen.iter().map(|s| (s.0.clone(), s.2)).collect();
        assert_eq!(
            summary,
            [
                (vec![RunKind::Daily], ts("2025-05-30T18:00:00Z")),
                (
                    vec![RunKind::Daily, RunKind::Weekly, RunKind::Monthly],
                    ts("2025-05-31T18:00:00Z")
                ),
                (vec![RunKind::Daily], ts("2025-06-01T18:00:00Z")),
            ]
        );
        assert_eq!(
            seen[1].1,
            [RunKind::Daily, RunKind::Weekly, RunKind::Monthly]
                .map(|k| (k, ts("2025-05-31T18:00:00Z")))
                .into()
        );
        // The state handed to the callback already counts its own round.
        assert_eq!(
            seen[0].3.done_through[&RunKind::Daily],
            ts("2025-05-30T18:00:00Z")
        );
        assert_eq!(
            seen[0].3.done_through[&RunKind::Weekly],
            ts("2025-05-30T00:00:00Z")
        );
        assert_eq!(last, seen[2].3);
        assert_eq!(
            last.done_through,
            [
                (RunKind::Daily, ts("2025-06-01T18:00:00Z")),
                (RunKind::Weekly, ts("2025-05-31T18:00:00Z")),
                (RunKind::Monthly, ts("2025-05-31T18:00:00Z"))
            ]
            .into()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_delays_a_round_by_at_most_its_bound() {
        let options = RunnerOptions {
            max_jitter: Duration::from_secs(3),
            ..Default::default()
        };
        let (seen, _) = run("2025-05-30T00:00:00Z", RunState::default(), options, 3).await;
        for (kinds, slots, started, _) in &seen {
            let slot = slots[&kinds[0]];
            assert!(
                *started >= slot
                    && started.duration_since(slot) <= jiff::SignedDuration::from_secs(3),
                "{slot} started {started}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_restarted_runner_does_not_repeat_the_slot_it_persisted() {
        let (seen, _) = run("2025-05-30T00:00:00Z", RunState::default(), no_jitter(), 1).await;
        let persisted = seen[0].3.clone();
        // Restarted half a minute after the daily slot with the state the round persisted.
        let (seen, _) = run("2025-05-30T18:00:30Z", persisted, no_jitter(), 1).await;
        assert_eq!(
            seen[0].0,
            [RunKind::Daily, RunKind::Weekly, RunKind::Monthly]
        );
        assert_eq!(seen[0].2, ts("2025-05-31T18:00:00Z"));
        // Restarted after missing a slot: it runs once, at once.
        let (seen, _) = run("2025-05-30T00:00:00Z", RunState::default(), no_jitter(), 1).await;
        let (again, _) = run("2025-05-31T20:00:00Z", seen[0].3.clone(), no_jitter(), 1).await;
        assert_eq!(
            again[0].0,
            [RunKind::Daily, RunKind::Weekly, RunKind::Monthly]
        );
        assert_eq!(again[0].1[&RunKind::Daily], ts("2025-05-31T18:00:00Z"));
        assert_eq!(again[0].2, ts("2025-05-31T20:00:00Z"));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_sleep_and_abandons_a_round_in_progress() {
        let schedule = Schedule::new(&ScheduleConfig::default());
        let clock = TokioClock::starting_at(ts("2025-05-30T00:00:00Z"));
        let shutdown = CancellationToken::new();
        let calls = Arc::new(Mutex::new(0));
        let c = calls.clone();
        let on_round = move |_: DueRound, _: RunState| {
            *c.lock().unwrap() += 1;
            // A round that never finishes by itself.
            std::future::pending::<()>()
        };
        let task = {
            let (schedule, shutdown) = (schedule.clone(), shutdown.clone());
            tokio::spawn(async move {
                run_scheduler(
                    &schedule,
                    RunState::default(),
                    &clock,
                    no_jitter(),
                    on_round,
                    shutdown,
                )
                .await
            })
        };
        // An hour in: asleep, nothing ran.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(*calls.lock().unwrap(), 0);
        // Past the first slot: the round is in progress; shut down.
        tokio::time::sleep(Duration::from_secs(18 * 3600)).await;
        assert_eq!(*calls.lock().unwrap(), 1);
        shutdown.cancel();
        let last = task.await.unwrap();
        // The abandoned round is not marked done: it runs again after the restart.
        assert_eq!(
            last.done_through[&RunKind::Daily],
            ts("2025-05-30T00:00:00Z")
        );
        assert_eq!(
            schedule
                .due(ts("2025-05-30T19:00:00Z"), &last)
                .map(|r| r.kinds),
            Some([RunKind::Daily].into())
        );
    }
}
