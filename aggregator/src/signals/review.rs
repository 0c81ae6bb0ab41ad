//! The weekly alert review (the seed's script counted firing alerts per name over 7 days
//! and looked for alerts resolved shortly after firing: false positives) from the alerts
//! each recorded round saw ([`super::alertmanager::AlertRecord`]).
//!
//! A *firing* is one alert (Alertmanager's fingerprint) from one `startsAt`: the same
//! alert seen in several rounds is one firing; when it resolves and fires again it gets a
//! new `startsAt` and counts again. Alertmanager's API stops listing an alert once it is
//! resolved, so a firing ends at the earlier of its last `endsAt` and the first round that
//! no longer lists it (never before the last round that did); a firing listed by the latest
//! round is still going and runs until now. Firing time is counted inside the review's
//! window only. A firing that ended within `flap_within` of its start is *short*; an alert
//! name with at least `flap_min_count` short firings is *flapping*. What a round never saw
//! (an alert shorter than the round interval, default 10 min) is not counted.
//!
//! Silenced and inhibited firings are counted apart from active ones: a firing is
//! `active` when any round saw it neither silenced nor inhibited (someone was notified),
//! else `silenced` when any round saw it silenced, else `inhibited`.
//!
//! ```yaml
//! signals:
//!   alert_review:
//!     days: 7               # default 7 (the seed's weekly review)
//!     flap_within: 15m      # default 15m
//!     flap_min_count: 3     # default 3
//! ```

use std::collections::BTreeMap;

use caretaker_core::config::{BoundedDuration, ms};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Deserializer, Serialize};

use super::alertmanager::{AlertRecord, AlertsNow};

/// The `signals.alert_review:` config section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertReviewConfig {
    /// Days of history the review covers; the default is the seed's weekly alert review.
    /// 1 to 90.
    #[serde(deserialize_with = "days")]
    pub days: u32,
    /// A firing that resolves within this time of its start is short (a likely false
    /// positive). The default is caretaker's choice, not the seed's: fifteen of
    /// Prometheus' default 1m evaluation intervals. 1m to 24h.
    pub flap_within: BoundedDuration<{ ms::MINUTE }, { ms::DAY }>,
    /// An alert name with at least this many short firings in the review is flapping.
    /// At least 1.
    #[serde(deserialize_with = "min_count")]
    pub flap_min_count: u32,
}

impl Default for AlertReviewConfig {
    fn default() -> Self {
        Self {
            days: 7,
            flap_within: BoundedDuration::secs(15 * 60),
            flap_min_count: 3,
        }
    }
}

fn days<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if (1..=90).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "days must be 1 to 90, not {v}"
        )))
    }
}

fn min_count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if v >= 1 {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(
            "flap_min_count must be at least 1",
        ))
    }
}

/// How the firings of a row were treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// Seen neither silenced nor inhibited at least once: notified.
    Active,
    /// Matched by a silence every time it was seen.
    Silenced,
    /// Inhibited by another alert (and not silenced) every time it was seen.
    Inhibited,
}

/// One alert name in one state over the review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertReviewRow {
    /// The `alertname` label.
    pub name: String,
    pub state: ReviewState,
    /// Firings seen in the review (one per alert and `startsAt`).
    pub times_fired: u32,
    /// Their firing time inside the review's window, in seconds.
    pub firing_seconds: u64,
    /// Firings that ended within `flap_within` of their start.
    pub short_firings: u32,
    /// `short_firings >= flap_min_count`.
    pub(crate) flapping: bool,
    /// Firings still going at the end of the review.
    pub still_firing: u32,
}

/// The alert review of a scheduled run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertReview {
    pub from: Timestamp,
    pub to: Timestamp,
    /// Rounds with Alertmanager alerts that the review read.
    pub rounds: usize,
    pub(crate) flap_within_seconds: u64,
    pub(crate) flap_min_count: u32,
    /// Active rows first, then silenced, then inhibited; each by name.
    pub alerts: Vec<AlertReviewRow>,
}

/// One firing being followed through the rounds.
struct Firing {
    name: String,
    starts_at: Timestamp,
    last_seen: Timestamp,
    ends_at: Option<Timestamp>,
    state: ReviewState,
}

fn state_of(r: &AlertRecord) -> ReviewState {
    if !r.silenced_by.is_empty() {
        ReviewState::Silenced
    } else if !r.inhibited_by.is_empty() {
        ReviewState::Inhibited
    } else {
        ReviewState::Active
    }
}

/// The review of `rounds` (each round's time and the alerts it saw, in any order) over
/// `[to - cfg.days, to]`; rounds outside that window are ignored.
pub fn review(
    rounds: &[(Timestamp, &AlertsNow)],
    to: Timestamp,
    cfg: &AlertReviewConfig,
) -> AlertReview {
    let from = to - SignedDuration::from_hours(24 * i64::from(cfg.days));
    let mut rounds: Vec<&(Timestamp, &AlertsNow)> = rounds
        .iter()
        .filter(|(t, _)| *t >= from && *t <= to)
        .collect();
    rounds.sort_by_key(|(t, _)| *t);
    let times: Vec<Timestamp> = rounds.iter().map(|(t, _)| *t).collect();
    let mut firings: BTreeMap<(String, Timestamp), Firing> = BTreeMap::new();
    for (t, alerts) in &rounds {
        for r in &alerts.records {
            let key = (r.fingerprint.clone(), r.starts_at);
            let f = firings.entry(key).or_insert_with(|| Firing {
                name: r.name.clone(),
                starts_at: r.starts_at,
                last_seen: *t,
                ends_at: r.ends_at,
                state: state_of(r),
            });
            f.last_seen = *t;
            f.ends_at = r.ends_at;
            f.state = f.state.min(state_of(r));
        }
    }
    let latest = times.last().copied();
    let within = SignedDuration::try_from(cfg.flap_within.get()).unwrap_or(SignedDuration::MAX);
    let mut rows: BTreeMap<(ReviewState, String), AlertReviewRow> = BTreeMap::new();
    for f in firings.into_values() {
        let ongoing = Some(f.last_seen) == latest;
        let end = if ongoing {
            to
        } else {
            // The first round after the last one that listed it.
            let next = times
                .iter()
                .find(|t| **t > f.last_seen)
                .copied()
                .unwrap_or(to);
            f.ends_at.map_or(next, |e| e.min(next)).max(f.last_seen)
        };
        let seconds = end
            .duration_since(f.starts_at.max(from))
            .as_secs()
            .max(0)
            .unsigned_abs();
        let short = !ongoing && end.duration_since(f.starts_at) <= within;
        let row = rows
            .entry((f.state, f.name.clone()))
            .or_insert_with(|| AlertReviewRow {
                name: f.name.clone(),
                state: f.state,
                times_fired: 0,
                firing_seconds: 0,
                short_firings: 0,
                flapping: false,
                still_firing: 0,
            });
        row.times_fired += 1;
        row.firing_seconds += seconds;
        row.short_firings += u32::from(short);
        row.still_firing += u32::from(ongoing);
    }
    let alerts = rows
        .into_values()
        .map(|mut r| {
            r.flapping = r.short_firings >= cfg.flap_min_count;
            r
        })
        .collect();
    AlertReview {
        from,
        to,
        rounds: rounds.len(),
        flap_within_seconds: cfg.flap_within.as_secs(),
        flap_min_count: cfg.flap_min_count,
        alerts,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const TO: &str = "2026-12-06T00:00:00Z";

    fn t(offset_minutes: i64) -> Timestamp {
        TO.parse::<Timestamp>().unwrap() + SignedDuration::from_mins(offset_minutes)
    }

    fn rec(
        name: &str,
        fp: &str,
        start: i64,
        end: i64,
        silenced: bool,
        inhibited: bool,
    ) -> AlertRecord {
        AlertRecord {
            fingerprint: fp.into(),
            name: name.into(),
            state: if silenced || inhibited {
                "suppressed"
            } else {
                "active"
            }
            .into(),
            silenced_by: if silenced { vec!["s".into()] } else { vec![] },
            inhibited_by: if inhibited { vec!["i".into()] } else { vec![] },
            starts_at: t(start),
            ends_at: Some(t(end)),
        }
    }

    /// Rounds every 10 minutes over 8 days; `alerts(minute)` says what each round saw.
    fn history(alerts: impl Fn(i64) -> Vec<AlertRecord>) -> Vec<(Timestamp, AlertsNow)> {
        (0..=8 * 24 * 6)
            .map(|i| {
                let m = -8 * 24 * 60 + i * 10;
                (
                    t(m),
                    AlertsNow {
                        records: alerts(m),
                        ..AlertsNow::default()
                    },
                )
            })
            .collect()
    }

    fn run(h: &[(Timestamp, AlertsNow)], cfg: &AlertReviewConfig) -> AlertReview {
        let rounds: Vec<(Timestamp, &AlertsNow)> = h.iter().map(|(t, a)| (*t, a)).collect();
        review(&rounds, t(0), cfg)
    }

    #[test]
    fn a_synthetic_week_counts_firings_time_and_flapping_with_silenced_and_inhibited_apart() {
        let day = 24 * 60;
        let h = history(|m| {
            let mut v = Vec::new();
            // DiskFull: fires for 5 minutes (seen by one round) at 02:00 of each of the
            // last 4 days: short each time, so flapping.
            for d in 1..=4 {
                let start = -d * day + 120;
                if m == start {
                    v.push(rec("DiskFull", "fp-disk", start, start + 5, false, false));
                }
            }
            // NodeDown: one firing of 3 h starting 2 days ago (ends_at 4 min ahead while
            // firing, as Prometheus sends it).
            let start = -2 * day;
            if (start..start + 180).contains(&m) {
                v.push(rec("NodeDown", "fp-node", start, m + 4, false, false));
            }
            // HighLatency: silenced, firing since 10 days ago (before the window) and
            // still firing: counted from the window's start until now.
            v.push(rec("HighLatency", "fp-lat", -10 * day, m + 4, true, false));
            // Watchdog-like inhibited alert, a 20-minute firing a day ago.
            let start = -day;
            if (start..start + 20).contains(&m) {
                v.push(rec("TargetDown", "fp-td", start, m + 4, false, true));
            }
            // A firing older than the window is not counted.
            if m == -8 * day + 30 {
                v.push(rec("Old", "fp-old", m, m + 4, false, false));
            }
            v
        });
        let r = run(&h, &AlertReviewConfig::default());
        assert_eq!(r.from, t(-7 * day));
        assert_eq!(r.rounds, 7 * 24 * 6 + 1);
        let rows: Vec<(&str, ReviewState, u32, u64, u32, bool, u32)> = r
            .alerts
            .iter()
            .map(|a| {
                (
                    a.name.as_str(),
                    a.state,
                    a.times_fired,
                    a.firing_seconds,
                    a.short_firings,
                    a.flapping,
                    a.still_firing,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                // 4 firings of 5 min each (ends_at before the next round).
                ("DiskFull", ReviewState::Active, 4, 4 * 300, 4, true, 0),
                // 180 min: last seen at start+170, its ends_at 174 min, next round at 180.
                ("NodeDown", ReviewState::Active, 1, 174 * 60, 0, false, 0),
                (
                    "HighLatency",
                    ReviewState::Silenced,
                    1,
                    7 * 86_400,
                    0,
                    false,
                    1
                ),
                // 20 min: last seen at +10, ends_at +14.
                (
                    "TargetDown",
                    ReviewState::Inhibited,
                    1,
                    14 * 60,
                    1,
                    false,
                    0
                ),
            ]
        );
    }

    #[test]
    fn flapping_needs_the_configured_count_and_window() {
        let h = history(|m| {
            // A 30-minute firing every 6 hours over the last 2 days (8 firings).
            let k = m.rem_euclid(360);
            if (-2 * 24 * 60..0).contains(&m) && k < 30 {
                vec![rec("Flappy", "fp", m - k, m + 4, false, false)]
            } else {
                vec![]
            }
        });
        let default = run(&h, &AlertReviewConfig::default());
        assert_eq!(default.alerts[0].times_fired, 8);
        // Ends at the last sighting (+20) + 4 min = 24 min: not short under 15m.
        assert_eq!(default.alerts[0].short_firings, 0);
        assert!(!default.alerts[0].flapping);
        let cfg = AlertReviewConfig {
            flap_within: BoundedDuration::secs(30 * 60),
            flap_min_count: 8,
            ..AlertReviewConfig::default()
        };
        let r = run(&h, &cfg);
        assert_eq!((r.alerts[0].short_firings, r.alerts[0].flapping), (8, true));
        let cfg = AlertReviewConfig {
            flap_min_count: 9,
            ..cfg
        };
        assert!(!run(&h, &cfg).alerts[0].flapping);
    }

    #[test]
    fn an_alert_silenced_for_part_of_a_firing_counts_as_active() {
        let h = history(|m| {
            if (-60..=-30).contains(&m) {
                vec![rec("X", "fp", -60, m + 4, m > -50, false)]
            } else {
                vec![]
            }
        });
        let r = run(&h, &AlertReviewConfig::default());
        assert_eq!(r.alerts.len(), 1);
        assert_eq!(r.alerts[0].state, ReviewState::Active);
    }

    #[test]
    fn config_defaults_and_bounds() {
        let c: AlertReviewConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, AlertReviewConfig::default());
        let c: AlertReviewConfig =
            serde_json::from_str(r#"{"flap_within": "5m", "flap_min_count": 2}"#).unwrap();
        assert_eq!(c.flap_within, Duration::from_secs(300));
        assert!(serde_json::from_str::<AlertReviewConfig>(r#"{"flap_min_count": 0}"#).is_err());
        assert!(serde_json::from_str::<AlertReviewConfig>(r#"{"days": 0}"#).is_err());
        assert!(serde_json::from_str::<AlertReviewConfig>(r#"{"flap_within": "1s"}"#).is_err());
        assert!(serde_json::from_str::<AlertReviewConfig>(r#"{"other": 1}"#).is_err());
    }
}
