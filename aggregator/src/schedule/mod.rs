//! Schedules, the maintenance window and notifications: when the daily, weekly and
//! monthly rounds run, when destructive work may run, and when operators are paged.
//!
//! Everything here is pure logic over an injected clock (`now: Timestamp` arguments)
//! except [`notify::Webhook`] (one HTTP POST) and [`runner::run_scheduler`] (the loop that
//! sleeps until the next round).
//!
//! # Layout
//! - [`config`]: the `schedule:` config section, its defaults and where they come from.
//! - [`runs`]: the daily/weekly/monthly [`runs::Schedule`], what is due now given the
//!   persisted [`runs::RunState`], and why a slot never runs twice.
//! - [`notify`]: when a report pages (status worsened, new critical finding), the
//!   de-duplication state, and the Slack-compatible webhook.
//! - [`runner`]: [`runner::run_scheduler`], the loop the server runs.
//!
//! Cron expressions in a time zone (with the DST rules) and the maintenance window (the
//! decision whether destructive work may run now) are shared with the agent:
//! [`caretaker_core::cron`] and [`caretaker_core::window`].

pub mod config;
pub(crate) mod notify;
pub(crate) mod runner;
pub(crate) mod runs;
