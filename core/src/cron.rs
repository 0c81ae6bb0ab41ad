//! Standard 5-field cron expressions evaluated in an IANA time zone.
//!
//! Parsing and matching are the `cronexpr` crate's (Vixie cron syntax: `minute hour
//! day-of-month month day-of-week`, Sunday is `0` or `7`, names like `SUN` and `JAN`,
//! lists, ranges and steps, and Vixie's rule that a restricted day-of-month and a restricted
//! day-of-week match either). `jiff-cron` was not used: it counts weekdays from Sunday = 1
//! (Quartz), so the standard `0 3 * * 0` would fail and `* * * * 1` would mean Sunday.
//!
//! The expression is matched against the *wall clock* of the time zone, then mapped to an
//! instant with jiff's "compatible" rule, which gives cron's behaviour on DST days:
//! - a wall-clock time that does not exist (spring forward, e.g. 02:30 in Berlin on the last
//!   Sunday of March) runs at the same distance after the gap (03:30 CEST), once;
//! - a wall-clock time that occurs twice (fall back) runs at its first occurrence only.
//!
//! Zones without DST (the default `Asia/Tokyo`) have neither case.

use std::fmt;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer};

/// Upper bound of the wall-clock steps [`Cron::next_after`] takes through a repeated
/// (fall-back) hour before giving up: one per minute of a day, so even `* * * * *` through
/// any real fold terminates well inside it.
const MAX_FOLD_STEPS: usize = 24 * 60;

/// Why a cron expression was rejected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{expr:?} is not a 5-field cron expression (minute hour day-of-month month day-of-week), e.g. \"0 3 * * 0\" for Sundays at 03:00; it has {fields} fields"
    )]
    FieldCount { expr: String, fields: usize },
    /// Five fields, one of which `cronexpr` rejects (the source says which and why).
    #[error("{expr:?} is not a valid cron expression")]
    Invalid {
        expr: String,
        #[source]
        source: cronexpr::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A parsed 5-field cron expression.
#[derive(Clone)]
pub struct Cron {
    source: String,
    /// The expression evaluated in UTC, which [`Cron::next_after`] feeds with wall-clock
    /// times: UTC has no DST, so matching is purely civil.
    civil: cronexpr::Crontab,
}

impl Cron {
    /// Parses `minute hour day-of-month month day-of-week`.
    ///
    /// # Errors
    /// [`Error::FieldCount`] unless exactly five fields, [`Error::Invalid`] with the field
    /// `cronexpr` rejects and why as its source.
    pub fn parse(expr: &str) -> Result<Cron> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(Error::FieldCount {
                expr: expr.to_string(),
                fields: fields.len(),
            });
        }
        let normalized = fields.join(" ");
        let civil = cronexpr::parse_crontab(&format!("{normalized} UTC")).map_err(|source| {
            Error::Invalid {
                expr: expr.to_string(),
                source,
            }
        })?;
        Ok(Cron {
            source: normalized,
            civil,
        })
    }

    /// The expression as written (whitespace normalised).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first instant strictly after `after` whose wall-clock time in `tz` matches, with
    /// the DST rules of the [module docs](self).
    ///
    /// `None` only past the end of jiff's range (year 9999) or for an expression that never
    /// matches within four years (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let mut civil = after.to_zoned(tz.clone()).datetime();
        for _ in 0..MAX_FOLD_STEPS {
            let as_utc = civil.to_zoned(TimeZone::UTC).ok()?.timestamp();
            let next_civil = self.civil.find_next(as_utc).ok()?.datetime();
            let at = tz.to_ambiguous_timestamp(next_civil).compatible().ok()?;
            if at > after {
                return Some(at);
            }
            // A wall-clock time of the repeated hour whose first occurrence has passed.
            civil = next_civil;
        }
        None
    }
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({:?})", self.source)
    }
}

impl PartialEq for Cron {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl serde::Serialize for Cron {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Cron {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // The config error is one line: the reason and the field cronexpr rejects.
        Cron::parse(&s).map_err(|e| match std::error::Error::source(&e) {
            Some(cause) => serde::de::Error::custom(format!("{e}: {cause}")),
            None => serde::de::Error::custom(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    fn next(expr: &str, after: &str, zone: &str) -> String {
        Cron::parse(expr)
            .unwrap()
            .next_after(ts(after), &tz(zone))
            .unwrap()
            .to_string()
    }

    #[test]
    fn five_fields_with_sunday_zero_in_tokyo() {
        // 2025-06-01 is a Sunday; 03:00 JST is 18:00 UTC the day before.
        assert_eq!(
            next("0 3 * * 0", "2025-05-30T00:00:00Z", "Asia/Tokyo"),
            "2025-05-31T18:00:00Z"
        );
        assert_eq!(
            next("0 3 * * 7", "2025-05-30T00:00:00Z", "Asia/Tokyo"),
            "2025-05-31T18:00:00Z"
        );
        assert_eq!(
            next("0 3 * * SUN", "2025-05-31T18:00:00Z", "Asia/Tokyo"),
            "2025-06-07T18:00:00Z"
        );
        // Monday is 1, as in crontab(5).
        assert_eq!(
            next("0 3 * * 1", "2025-05-30T00:00:00Z", "Asia/Tokyo"),
            "2025-06-01T18:00:00Z"
        );
    }

    #[test]
    fn strictly_after_and_month_boundaries() {
        // Exactly at a slot: the next one.
        assert_eq!(
            next("0 3 * * *", "2025-01-30T18:00:00Z", "Asia/Tokyo"),
            "2025-01-31T18:00:00Z"
        );
        // The 1st after the 31st, across a year and in a leap February.
        assert_eq!(
            next("0 3 1 * *", "2024-12-31T18:00:00Z", "Asia/Tokyo"),
            "2025-01-31T18:00:00Z"
        );
        assert_eq!(
            next("0 3 29 2 *", "2024-03-01T00:00:00Z", "Asia/Tokyo"),
            "2028-02-28T18:00:00Z"
        );
        // Vixie: both day fields restricted means either.
        assert_eq!(
            next("0 3 15 * 1", "2025-06-03T00:00:00Z", "UTC"),
            "2025-06-09T03:00:00Z"
        );
    }

    #[test]
    fn berlin_spring_forward_runs_a_missing_time_after_the_gap_once() {
        // 2025-03-30: 02:00 CET jumps to 03:00 CEST (01:00Z).
        assert_eq!(
            next("30 2 * * *", "2025-03-29T12:00:00Z", "Europe/Berlin"),
            "2025-03-30T01:30:00Z"
        ); // 03:30 CEST
        assert_eq!(
            next("30 2 * * *", "2025-03-30T01:30:00Z", "Europe/Berlin"),
            "2025-03-31T00:30:00Z"
        ); // 02:30 CEST
        // 03:00 exists on that day: 03:00 CEST.
        assert_eq!(
            next("0 3 * * *", "2025-03-29T12:00:00Z", "Europe/Berlin"),
            "2025-03-30T01:00:00Z"
        );
    }

    #[test]
    fn berlin_fall_back_runs_a_repeated_time_once() {
        // 2025-10-26: 03:00 CEST falls back to 02:00 CET (01:00Z); 02:30 happens at 00:30Z and 01:30Z.
        assert_eq!(
            next("30 2 * * *", "2025-10-25T12:00:00Z", "Europe/Berlin"),
            "2025-10-26T00:30:00Z"
        );
        assert_eq!(
            next("30 2 * * *", "2025-10-26T00:30:00Z", "Europe/Berlin"),
            "2025-10-27T01:30:00Z"
        );
        // Asked from inside the second 02:xx hour: not the second 02:30 either.
        assert_eq!(
            next("30 2 * * *", "2025-10-26T01:10:00Z", "Europe/Berlin"),
            "2025-10-27T01:30:00Z"
        );
        // Every 20 minutes through the fold: the repeated hour is not run twice.
        let cron = Cron::parse("*/20 * * * *").unwrap();
        let berlin = tz("Europe/Berlin");
        let mut at = ts("2025-10-26T00:10:00Z");
        let mut seen = Vec::new();
        for _ in 0..5 {
            at = cron.next_after(at, &berlin).unwrap();
            seen.push(at.to_string());
        }
        assert_eq!(
            seen,
            [
                "2025-10-26T00:20:00Z",
                "2025-10-26T00:40:00Z",
                "2025-10-26T02:00:00Z",
                "2025-10-26T02:20:00Z",
                "2025-10-26T02:40:00Z"
            ]
        );
        // 03:00 on that day exists once (CET).
        assert_eq!(
            next("0 3 * * *", "2025-10-25T12:00:00Z", "Europe/Berlin"),
            "2025-10-26T02:00:00Z"
        );
    }

    #[test]
    fn bad_expressions_are_sentences() {
        assert_eq!(
            Cron::parse("0 3 * *").unwrap_err().to_string(),
            "\"0 3 * *\" is not a 5-field cron expression (minute hour day-of-month month day-of-week), e.g. \"0 3 * * 0\" for Sundays at 03:00; it has 4 fields"
        );
        assert!(
            Cron::parse("0 0 3 * * 0")
                .unwrap_err()
                .to_string()
                .contains("it has 6 fields")
        );
        let err = Cron::parse("0 25 * * *").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"0 25 * * *\" is not a valid cron expression"
        );
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        assert!(cause.is_some_and(|c| !c.is_empty()));
        // In a config, the message carries the cause on one line.
        let err = serde_json::from_str::<Cron>("\"0 25 * * *\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("\"0 25 * * *\" is not a valid cron expression: "),
            "{err}"
        );
        assert_eq!(
            Cron::parse("  0   3 * *  0 ").unwrap().as_str(),
            "0 3 * * 0"
        );
    }

    #[test]
    fn never_matching_expression_gives_none() {
        assert_eq!(
            Cron::parse("0 0 30 2 *")
                .unwrap()
                .next_after(ts("2025-01-01T00:00:00Z"), &TimeZone::UTC),
            None
        );
    }
}
