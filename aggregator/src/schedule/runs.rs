//! The daily, weekly and monthly runs: when each is next, and what is due now given what
//! has already run.
//!
//! # Rules
//! - Each kind keeps the instant it is done through ([`RunState`]); it is due when its cron
//!   has a slot after that instant and not after now.
//! - A round runs once for everything due, however many slots were missed (an aggregator
//!   down for three days runs one daily round when it comes back, not three), and then the
//!   kind is done through the round's start: a slot never runs twice, across restarts too,
//!   as long as the caller persists the [`RunState`] it is handed with the round.
//! - Kinds due at the same instant form one round (on Sunday the 1st the daily, weekly
//!   and monthly runs are one round running the union of their checks).
//! - A kind with no record yet (first start, or newly enabled) starts being done through
//!   the moment it is first seen: slots before the first start are not run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::config::{RunConfig, ScheduleConfig, Task, Zone};
use caretaker_core::cron::Cron;

/// Which of the scheduled runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RunKind {
    Daily,
    Weekly,
    Monthly,
}

impl RunKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            RunKind::Daily => "daily",
            RunKind::Weekly => "weekly",
            RunKind::Monthly => "monthly",
        }
    }
}

impl fmt::Display for RunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The enabled runs in their time zone.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    zone: Zone,
    runs: Vec<(RunKind, RunConfig)>,
}

/// When a run is next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg(test)]
pub(crate) struct NextRun {
    pub kind: RunKind,
    pub at: Timestamp,
}

/// What has run: persisted by the caller (with the report of the round, ideally in the same
/// write), handed back at start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RunState {
    /// Per kind, the instant up to which every slot has run (or was before the first start).
    #[serde(default)]
    pub(crate) done_through: BTreeMap<RunKind, Timestamp>,
}

/// One round to run now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DueRound {
    /// The kinds this round stands for.
    pub kinds: BTreeSet<RunKind>,
    /// Per kind, the slot it was due at: the first slot after its last run, earlier than
    /// `now` by more than jitter when the aggregator was down at that time.
    pub slots: BTreeMap<RunKind, Timestamp>,
    /// The union of the kinds' checks.
    pub checks: BTreeSet<Task>,
}

impl Schedule {
    /// The enabled runs of `config`.
    pub(crate) fn new(config: &ScheduleConfig) -> Schedule {
        let runs = [
            (RunKind::Daily, &config.daily),
            (RunKind::Weekly, &config.weekly),
            (RunKind::Monthly, &config.monthly),
        ]
        .into_iter()
        .filter(|(_, r)| r.enabled)
        .map(|(k, r)| (k, r.clone()))
        .collect();
        Schedule {
            zone: config.time_zone.clone(),
            runs,
        }
    }

    /// The enabled kinds.
    pub(crate) fn kinds(&self) -> impl Iterator<Item = RunKind> + '_ {
        self.runs.iter().map(|(k, _)| *k)
    }

    fn cron(&self, kind: RunKind) -> Option<&Cron> {
        self.runs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, r)| &r.cron)
    }

    /// The next slot of every enabled run strictly after `after`, earliest first (ties in
    /// daily, weekly, monthly order). A run whose cron never matches is left out.
    #[cfg(test)]
    pub(crate) fn next_runs(&self, after: Timestamp) -> Vec<NextRun> {
        let mut out: Vec<NextRun> = self
            .runs
            .iter()
            .filter_map(|(kind, r)| {
                r.cron
                    .next_after(after, self.zone.tz())
                    .map(|at| NextRun { kind: *kind, at })
            })
            .collect();
        out.sort_by_key(|n| (n.at, n.kind));
        out
    }

    /// Adds a record for each enabled kind that has none, done through `now`.
    pub(crate) fn init_state(&self, state: &mut RunState, now: Timestamp) {
        for kind in self.kinds() {
            state.done_through.entry(kind).or_insert(now);
        }
    }

    /// The first slot of `kind` that has not run.
    fn pending_slot(&self, kind: RunKind, state: &RunState) -> Option<Timestamp> {
        let done = *state.done_through.get(&kind)?;
        self.cron(kind)?.next_after(done, self.zone.tz())
    }

    /// What is due at `now`: every kind with a slot after its record and not after `now`,
    /// as one round. `None` when nothing is. Kinds without a record are not due (see
    /// [`Schedule::init_state`]).
    pub(crate) fn due(&self, now: Timestamp, state: &RunState) -> Option<DueRound> {
        let mut round = DueRound {
            kinds: BTreeSet::new(),
            slots: BTreeMap::new(),
            checks: BTreeSet::new(),
        };
        for (kind, run) in &self.runs {
            if let Some(slot) = self.pending_slot(*kind, state).filter(|s| *s <= now) {
                round.kinds.insert(*kind);
                round.slots.insert(*kind, slot);
                round.checks.extend(run.checks.iter().copied());
            }
        }
        (!round.kinds.is_empty()).then_some(round)
    }

    /// When something is next due given `state`: the earliest pending slot (in the past
    /// when something is due now). `None` when no enabled kind has a record or a next slot.
    pub(crate) fn next_due(&self, state: &RunState) -> Option<Timestamp> {
        self.kinds()
            .filter_map(|k| self.pending_slot(k, state))
            .min()
    }
}

impl RunState {
    /// Records that `round` ran, started at `now`: its kinds are done through `now`.
    pub(crate) fn mark_done(&mut self, round: &DueRound, now: Timestamp) {
        for kind in &round.kinds {
            let entry = self.done_through.entry(*kind).or_insert(now);
            *entry = (*entry).max(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use caretaker_core::config::parse_yaml;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn default_schedule() -> Schedule {
        Schedule::new(&ScheduleConfig::default())
    }

    fn state(pairs: &[(RunKind, &str)]) -> RunState {
        RunState {
            done_through: pairs.iter().map(|(k, t)| (*k, ts(t))).collect(),
        }
    }

    #[test]
    fn next_runs_in_tokyo_across_a_month_boundary() {
        // Friday 2025-05-30 09:00 JST. Sunday 2025-06-01 is also the 1st.
        let next = default_schedule().next_runs(ts("2025-05-30T00:00:00Z"));
        assert_eq!(
            next,
            [
                NextRun {
                    kind: RunKind::Daily,
                    at: ts("2025-05-30T18:00:00Z")
                },
                NextRun {
                    kind: RunKind::Weekly,
                    at: ts("2025-05-31T18:00:00Z")
                },
                NextRun {
                    kind: RunKind::Monthly,
                    at: ts("2025-05-31T18:00:00Z")
                },
            ]
        );
        // From the 1st 03:00 JST itself: the next month, a Tuesday.
        let next = default_schedule().next_runs(ts("2025-05-31T18:00:00Z"));
        assert_eq!(
            next[2],
            NextRun {
                kind: RunKind::Monthly,
                at: ts("2025-06-30T18:00:00Z")
            }
        );
        assert_eq!(
            next[0],
            NextRun {
                kind: RunKind::Daily,
                at: ts("2025-06-01T18:00:00Z")
            }
        );
        assert_eq!(
            next[1],
            NextRun {
                kind: RunKind::Weekly,
                at: ts("2025-06-07T18:00:00Z")
            }
        );
    }

    #[test]
    fn nothing_is_due_before_the_first_slot_after_start() {
        let s = default_schedule();
        let mut st = RunState::default();
        s.init_state(&mut st, ts("2025-05-30T00:00:00Z"));
        assert_eq!(
            st,
            state(&[
                (RunKind::Daily, "2025-05-30T00:00:00Z"),
                (RunKind::Weekly, "2025-05-30T00:00:00Z"),
                (RunKind::Monthly, "2025-05-30T00:00:00Z")
            ])
        );
        assert_eq!(s.due(ts("2025-05-30T17:59:59Z"), &st), None);
        assert_eq!(s.next_due(&st), Some(ts("2025-05-30T18:00:00Z")));
        // Without a record nothing is ever due.
        assert_eq!(
            s.due(ts("2026-01-01T00:00:00Z"), &RunState::default()),
            None
        );
    }

    #[test]
    fn daily_weekly_and_monthly_due_together_make_one_round() {
        let s = default_schedule();
        let st = state(&[
            (RunKind::Daily, "2025-05-30T18:00:00Z"),
            (RunKind::Weekly, "2025-05-25T18:00:00Z"),
            (RunKind::Monthly, "2025-05-01T00:00:00Z"),
        ]);
        let now = ts("2025-05-31T18:00:02Z");
        let round = s.due(now, &st).unwrap();
        assert_eq!(
            round.kinds,
            [RunKind::Daily, RunKind::Weekly, RunKind::Monthly].into()
        );
        assert_eq!(
            round.slots.values().collect::<BTreeSet<_>>(),
            [&ts("2025-05-31T18:00:00Z")].into()
        );
        assert_eq!(round.checks.len(), 19);
        assert!(round.checks.contains(&Task::Cleanup) && round.checks.contains(&Task::Trends));
        let mut st2 = st.clone();
        st2.mark_done(&round, now);
        assert_eq!(s.due(now, &st2), None);
        assert_eq!(s.next_due(&st2), Some(ts("2025-06-01T18:00:00Z")));
    }

    #[test]
    fn a_slot_never_runs_twice_across_a_restart() {
        let s = default_schedule();
        let mut st = state(&[
            (RunKind::Daily, "2025-06-02T00:00:00Z"),
            (RunKind::Weekly, "2025-06-02T00:00:00Z"),
            (RunKind::Monthly, "2025-06-02T00:00:00Z"),
        ]);
        let now = ts("2025-06-02T18:00:01Z");
        let round = s.due(now, &st).unwrap();
        assert_eq!(round.kinds, [RunKind::Daily].into());
        assert_eq!(
            round.checks.iter().copied().collect::<Vec<_>>(),
            Task::DAILY
        );
        st.mark_done(&round, now);
        // The state as persisted and read back by a restarted aggregator.
        let persisted = serde_json::to_string(&st).unwrap();
        assert_eq!(
            persisted,
            r#"{"done_through":{"daily":"2025-06-02T18:00:01Z","weekly":"2025-06-02T00:00:00Z","monthly":"2025-06-02T00:00:00Z"}}"#
        );
        let mut back: RunState = serde_json::from_str(&persisted).unwrap();
        let restarted = default_schedule();
        restarted.init_state(&mut back, ts("2025-06-02T18:00:30Z"));
        assert_eq!(back, st);
        assert_eq!(restarted.due(ts("2025-06-02T18:00:30Z"), &back), None);
        assert_eq!(restarted.due(ts("2025-06-03T17:59:59Z"), &back), None);
        assert_eq!(
            restarted
                .due(ts("2025-06-03T18:00:00Z"), &back)
                .map(|r| r.kinds),
            Some([RunKind::Daily].into())
        );
    }

    #[test]
    fn missed_slots_run_once_when_the_aggregator_comes_back() {
        let s = default_schedule();
        // Done through Tuesday 10 June; down until Saturday 14 June 12:00 UTC.
        let st = state(&[
            (RunKind::Daily, "2025-06-10T00:00:00Z"),
            (RunKind::Weekly, "2025-06-10T00:00:00Z"),
            (RunKind::Monthly, "2025-06-10T00:00:00Z"),
        ]);
        let now = ts("2025-06-14T12:00:00Z");
        let round = s.due(now, &st).unwrap();
        assert_eq!(round.kinds, [RunKind::Daily].into());
        assert_eq!(round.slots[&RunKind::Daily], ts("2025-06-10T18:00:00Z"));
        let mut st = st;
        st.mark_done(&round, now);
        assert_eq!(s.due(now, &st), None);
        // Next: Sunday 15 June 03:00 JST, daily and weekly together.
        assert_eq!(s.next_due(&st), Some(ts("2025-06-14T18:00:00Z")));
        assert_eq!(
            s.due(ts("2025-06-14T18:00:00Z"), &st).map(|r| r.kinds),
            Some([RunKind::Daily, RunKind::Weekly].into())
        );
    }

    #[test]
    fn disabled_runs_and_a_dst_zone() {
        let cfg: ScheduleConfig = parse_yaml(
            "time_zone: Europe/Berlin\ndaily:\n  cron: '30 2 * * *'\n  checks: [pods]\nweekly:\n  enabled: false\n  cron: '0 3 * * 0'\n  checks: [cleanup]\nmonthly:\n  enabled: false\n  cron: '0 3 1 * *'\n  checks: [trends]\n",
            Path::new("c"),
        )
        .unwrap();
        let s = Schedule::new(&cfg);
        assert_eq!(s.kinds().collect::<Vec<_>>(), [RunKind::Daily]);
        // Spring forward: 02:30 does not exist on 30 March, the run is at 03:30 CEST.
        let runs = s.next_runs(ts("2025-03-29T12:00:00Z"));
        assert_eq!(
            runs,
            [NextRun {
                kind: RunKind::Daily,
                at: ts("2025-03-30T01:30:00Z")
            }]
        );
        let mut st = RunState::default();
        s.init_state(&mut st, ts("2025-03-29T12:00:00Z"));
        assert_eq!(
            st.done_through.keys().copied().collect::<Vec<_>>(),
            [RunKind::Daily]
        );
        // Fall back: 02:30 happens twice on 26 October, the run happens once.
        let mut st = state(&[(RunKind::Daily, "2025-10-25T12:00:00Z")]);
        let first = s.due(ts("2025-10-26T00:30:00Z"), &st).unwrap();
        st.mark_done(&first, ts("2025-10-26T00:30:00Z"));
        assert_eq!(s.due(ts("2025-10-26T01:30:00Z"), &st), None);
        assert_eq!(s.next_due(&st), Some(ts("2025-10-27T01:30:00Z")));
    }
}
