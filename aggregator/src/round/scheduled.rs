//! The scheduled rounds: daily, weekly and monthly slots of [`crate::schedule`], each run
//! as a round recorded in the history, with the run state persisted in the store.

use caretaker_core::error::Chain;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::schedule::runner::{RunnerOptions, SystemClock, run_scheduler};
use crate::schedule::runs::{RunState, Schedule};
use crate::state::State;

/// Key of the scheduler's run state in the store.
const RUN_STATE_KEY: &str = "schedule_run_state";

/// Daily, weekly and monthly runs: each due slot runs a round now (recorded in the
/// history) and then persists the run state, so a restart neither repeats nor skips a slot.
pub(crate) async fn run(state: Arc<State>, schedule: Schedule, shutdown: CancellationToken) {
    let run_state: RunState = match state.store().get_meta(RUN_STATE_KEY).await {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            warn!(error = %Chain(&e), "Cannot read the scheduler state; starting afresh.");
            RunState::default()
        }
    };
    let st = Arc::clone(&state);
    run_scheduler(&schedule, run_state, &SystemClock, RunnerOptions::default(), move |round, after| {
        let st = Arc::clone(&st);
        async move {
            let run = crate::report::ScheduledRun {
                kinds: round.kinds.iter().map(|k| k.name().to_string()).collect(),
                tasks: round.checks.iter().copied().collect(),
                trends: None,
                alert_review: None,
            };
            let kinds = run.kinds.join(",");
            match st.run_scheduled_now(run).await {
                Ok(()) => info!(%kinds, "Scheduled round recorded."),
                Err(e) => warn!(error = %Chain(&e), "Scheduled round failed; the slot is marked done anyway."),
            }
            if let Err(e) = st.store().put_meta(RUN_STATE_KEY, after).await {
                warn!(error = %Chain(&e), "Cannot store the scheduler state; the slot may run again after a restart.");
            }
        }
    }, shutdown)
    .await;
}
