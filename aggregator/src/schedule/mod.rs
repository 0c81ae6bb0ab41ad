//! Schedules, the maintenance window and notifications: when the daily, weekly and
//! monthly rounds run, when destructive work may run, and when operators are paged.
//!
//! Everything here is pure logic over an injected clock (`now: Timestamp` arguments)
//! except [`notify::Webhook`] (one HTTP POST) and [`runner::run_scheduler`] (the loop that
//! sleeps until the next round).
//!
//! # Layout
//! - [`config`]: the `schedule:` config section, its defaults and where they come from.
//! - [`cron`]: 5-field cron expressions in a time zone, with the DST rules.
//! - [`runs`]: the daily/weekly/monthly [`runs::Schedule`], what is due now given the
//!   persisted [`runs::RunState`], and why a slot never runs twice.
//! - [`window`]: the [`window::MaintenanceWindow`] and [`window::MaintenanceWindow::allowed`],
//!   the decision whether destructive work may run now.
//! - [`notify`]: when a report pages (status worsened, new critical finding), the
//!   de-duplication state, and the Slack-compatible webhook.
//! - [`runner`]: [`runner::run_scheduler`], the loop the server runs.

pub mod config;
pub mod cron;
pub mod notify;
pub mod runner;
pub mod runs;
pub mod window;
