//! When a log is due: logrotate 3.21's `findNeedRotating`, as a pure function.

use jiff::Zoned;
use jiff::civil::DateTime;

use super::policy::{Frequency, Policy};

/// logrotate's criterion when a block names neither a frequency nor `size`: 1 MiB.
pub(crate) const DEFAULT_SIZE: u64 = 1024 * 1024;

/// Why a log is (not) rotated; shown in dry runs and debug logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Decision {
    Forced,
    SizeReached,
    BelowSize,
    PeriodElapsed,
    PeriodNotElapsed,
    BelowMinsize,
    AboveMaxsize,
    LastRotatedInFuture,
    Empty,
    YoungerThanMinage,
}

impl Decision {
    pub(crate) fn rotates(self) -> bool {
        matches!(
            self,
            Decision::Forced
                | Decision::SizeReached
                | Decision::PeriodElapsed
                | Decision::AboveMaxsize
                | Decision::LastRotatedInFuture
        )
    }
}

/// What the decision looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileFacts {
    pub size: u64,
    /// Seconds since the file's mtime (for `minage`).
    pub(crate) age_seconds: i64,
}

/// The time a file seen for the first time is recorded with: now, truncated to the hour
/// (so a new daily log waits for the next day, as with logrotate).
pub(crate) fn first_seen(now: &Zoned) -> DateTime {
    let d = now.datetime();
    DateTime::new(d.year(), d.month(), d.day(), d.hour(), 0, 0, 0).unwrap_or(d)
}

/// Decides whether a log is due. `last` is the state entry in local civil time.
pub(crate) fn decide(
    p: &Policy,
    facts: FileFacts,
    last: DateTime,
    now: &Zoned,
    force: bool,
) -> Decision {
    let mut d = if force {
        Decision::Forced
    } else if p.size.is_some() || p.frequency.is_none() {
        let threshold = p.size.unwrap_or(DEFAULT_SIZE);
        if facts.size >= threshold {
            Decision::SizeReached
        } else {
            Decision::BelowSize
        }
    } else {
        let freq = p.frequency.unwrap_or(Frequency::Daily);
        let last_z = last
            .to_zoned(now.time_zone().clone())
            .unwrap_or_else(|_| now.clone());
        let ahead = last_z.timestamp().as_second() - now.timestamp().as_second();
        if ahead > 25 * 3600 {
            // 25 hours allows for DST changes and moves between zones (logrotate's rule).
            Decision::LastRotatedInFuture
        } else {
            let n = now.datetime();
            let due = match freq {
                Frequency::Hourly => n.date() != last.date() || n.hour() != last.hour(),
                Frequency::Daily => n.date() != last.date(),
                Frequency::Monthly => (n.year(), n.month()) != (last.year(), last.month()),
                Frequency::Yearly => n.year() != last.year(),
                Frequency::Weekly(wd) => {
                    let days = last
                        .date()
                        .until(n.date())
                        .map(|s| s.get_days())
                        .unwrap_or(0);
                    let today = n.weekday().to_sunday_zero_offset() as u8;
                    days >= 7 || (wd != 7 && today == wd && days >= 1)
                }
            };
            let mut d = if due {
                Decision::PeriodElapsed
            } else {
                Decision::PeriodNotElapsed
            };
            if due && p.minsize.is_some_and(|m| facts.size < m) {
                d = Decision::BelowMinsize;
            }
            if p.maxsize.is_some_and(|m| facts.size > m) {
                d = Decision::AboveMaxsize;
            }
            d
        }
    };
    if d.rotates() && !p.ifempty && facts.size == 0 {
        d = Decision::Empty;
    }
    // logrotate 3.21 checks minage only for a time criterion: a `size` log rotates at its
    // size however young it is.
    if d.rotates()
        && d != Decision::SizeReached
        && p.minage_days
            .is_some_and(|m| facts.age_seconds < (m as i64) * 86_400)
    {
        d = Decision::YoungerThanMinage;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Zoned {
        format!("{s}[UTC]").parse().unwrap()
    }
    fn dt(s: &str) -> DateTime {
        s.parse().unwrap()
    }
    fn pol(f: Option<Frequency>) -> Policy {
        Policy {
            frequency: f,
            ..Policy::default()
        }
    }
    const FACTS: FileFacts = FileFacts {
        size: 10,
        age_seconds: 0,
    };

    #[test]
    fn daily_follows_the_calendar_day_not_24_hours() {
        let p = pol(Some(Frequency::Daily));
        let now = at("2026-11-29T00:10:00+00:00");
        assert_eq!(
            decide(&p, FACTS, dt("2026-11-28T23:59:00"), &now, false),
            Decision::PeriodElapsed
        );
        assert_eq!(
            decide(&p, FACTS, dt("2026-11-29T00:00:00"), &now, false),
            Decision::PeriodNotElapsed
        );
    }

    #[test]
    fn weekly_matches_logrotate_3_21_on_a_sunday() {
        // Measured with logrotate 3.21 on Sunday 2026-11-29 (`weekly 3` and `weekly`).
        let now = at("2026-11-29T18:00:00+00:00");
        let wed = pol(Some(Frequency::Weekly(3)));
        for (last, due) in [
            ("2026-11-28", false),
            ("2026-11-25", false),
            ("2026-11-24", false),
            ("2026-11-22", true),
            ("2026-11-21", true),
        ] {
            let d = decide(&wed, FACTS, dt(&format!("{last}T10:00:00")), &now, false);
            assert_eq!(d.rotates(), due, "weekly 3, last {last}");
        }
        let sun = pol(Some(Frequency::Weekly(0)));
        assert!(decide(&sun, FACTS, dt("2026-11-28T10:00:00"), &now, false).rotates());
        assert!(!decide(&sun, FACTS, dt("2026-11-29T01:00:00"), &now, false).rotates());
        assert_eq!(
            decide(&sun, FACTS, dt("2026-11-30T10:00:00"), &now, false),
            Decision::PeriodNotElapsed
        );
        assert_eq!(
            decide(&sun, FACTS, dt("2026-12-01T10:00:00"), &now, false),
            Decision::LastRotatedInFuture
        );
    }

    #[test]
    fn size_min_max_and_notifempty_interact_as_documented() {
        let now = at("2026-11-29T18:00:00+00:00");
        let mut p = pol(None);
        assert_eq!(
            decide(
                &p,
                FileFacts {
                    size: DEFAULT_SIZE - 1,
                    age_seconds: 0
                },
                dt("2020-01-01T00:00:00"),
                &now,
                false
            ),
            Decision::BelowSize
        );
        p.size = Some(100);
        assert_eq!(
            decide(
                &p,
                FileFacts {
                    size: 100,
                    age_seconds: 0
                },
                dt("2026-11-29T18:00:00"),
                &now,
                false
            ),
            Decision::SizeReached
        );
        let mut p = pol(Some(Frequency::Hourly));
        p.minsize = Some(100);
        assert_eq!(
            decide(&p, FACTS, dt("2026-11-29T16:00:00"), &now, false),
            Decision::BelowMinsize
        );
        p.maxsize = Some(5);
        assert_eq!(
            decide(&p, FACTS, dt("2026-11-29T18:00:00"), &now, false),
            Decision::AboveMaxsize
        );
        p.ifempty = false;
        assert_eq!(
            decide(
                &p,
                FileFacts {
                    size: 0,
                    age_seconds: 0
                },
                dt("2026-11-29T10:00:00"),
                &now,
                true
            ),
            Decision::Empty
        );
        p.ifempty = true;
        p.minage_days = Some(1);
        assert_eq!(
            decide(
                &p,
                FileFacts {
                    size: 10,
                    age_seconds: 3600
                },
                dt("2026-11-29T10:00:00"),
                &now,
                true
            ),
            Decision::YoungerThanMinage
        );
    }

    #[test]
    fn first_seen_is_truncated_to_the_hour() {
        assert_eq!(
            first_seen(&at("2026-11-29T18:02:57+00:00")),
            dt("2026-11-29T18:00:00")
        );
    }
}
