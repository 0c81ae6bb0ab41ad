//! The maintenance window: when destructive work (applying cleanup proposals, scheduled
//! pruning) may run.
//!
//! Rule (the seed's): inside the window, run; outside it, wait for the next opening unless
//! an operator forces it (`--force`) or it is an emergency (e.g. a node under disk
//! pressure); what waits is listed in the report with [`Decision::Wait`]'s `until` and
//! `reason`.
//!
//! A window opens at `start` on each of its `days` (wall clock in the time zone, with the DST
//! rules of [`super::cron`]) and stays open for `duration` of elapsed time: open at the
//! opening instant, closed at opening + duration.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp, Zoned};
use serde::{Deserialize, Serialize};

use std::collections::BTreeSet;
use std::fmt;

use jiff::civil::{Time, Weekday};
use jiff::tz::{TimeZone, TimeZoneDatabase};
use serde::Deserializer;

use crate::config::{BoundedDuration, ms};
use crate::cron::Cron;

/// Why a window setting cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{name:?} is not an IANA time zone name (e.g. Asia/Tokyo, Europe/Berlin, UTC)")]
    UnknownZone { name: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The maintenance window in its time zone.
#[derive(Debug, Clone)]
pub struct MaintenanceWindow {
    opens: Cron,
    duration: SignedDuration,
    zone: Zone,
    description: String,
}

/// Why destructive work may run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunReason {
    /// The window is open.
    InWindow,
    /// An operator asked for it (`--force`).
    Forced,
    /// An emergency (the caller decides what is one, e.g. disk pressure).
    Emergency,
}

/// Whether destructive work may run now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Run {
        reason: RunReason,
    },
    /// Not now: the window next opens at `until`. `reason` is a sentence for the report.
    Wait {
        until: Timestamp,
        reason: String,
    },
}

impl MaintenanceWindow {
    /// The window of `config` in `zone`.
    pub fn new(config: &WindowConfig, zone: &Zone) -> MaintenanceWindow {
        let days: Vec<String> = config
            .days
            .iter()
            .map(|d| cron_day(*d).to_string())
            .collect();
        let expr = format!(
            "{} {} * * {}",
            config.start.minute(),
            config.start.hour(),
            days.join(",")
        );
        let opens = match Cron::parse(&expr) {
            Ok(c) => c,
            Err(e) => unreachable!("minute, hour and weekdays from a validated config: {e}"),
        };
        let duration = SignedDuration::try_from(config.duration.get())
            .unwrap_or(SignedDuration::from_hours(24));
        MaintenanceWindow {
            opens,
            duration,
            zone: zone.clone(),
            description: describe(config, zone),
        }
    }

    /// The window of the default config: Sundays 03:00–05:00 Asia/Tokyo.
    pub fn default_window() -> MaintenanceWindow {
        MaintenanceWindow::new(&WindowConfig::default(), &Zone::default())
    }

    /// E.g. `Sunday 03:00 for 2h (Asia/Tokyo)`.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The window that contains `now`: its opening and closing instants.
    pub fn current(&self, now: Timestamp) -> Option<(Timestamp, Timestamp)> {
        // The first opening after now - duration is the only one whose window can contain
        // now; it does if it is not later than now.
        let from = now.checked_sub(self.duration).ok()?;
        let open = self.opens.next_after(from, self.zone.tz())?;
        (open <= now).then(|| {
            (
                open,
                open.saturating_add(self.duration).unwrap_or(Timestamp::MAX),
            )
        })
    }

    /// Whether the window is open at `now` (opening instant included, closing excluded).
    pub fn contains(&self, now: Timestamp) -> bool {
        self.current(now).is_some()
    }

    /// The next opening strictly after `now` (while the window is open, the one after it).
    /// `Timestamp::MAX` only past the end of jiff's range.
    pub fn next_open(&self, now: Timestamp) -> Timestamp {
        self.opens
            .next_after(now, self.zone.tz())
            .unwrap_or(Timestamp::MAX)
    }

    /// Whether destructive work may run at `now`: inside the window, or when `force`d, or in
    /// an `emergency`; otherwise wait for the next opening.
    pub fn allowed(&self, now: Timestamp, force: bool, emergency: bool) -> Decision {
        if emergency {
            return Decision::Run {
                reason: RunReason::Emergency,
            };
        }
        if force {
            return Decision::Run {
                reason: RunReason::Forced,
            };
        }
        if self.contains(now) {
            return Decision::Run {
                reason: RunReason::InWindow,
            };
        }
        let until = self.next_open(now);
        let local = until.to_zoned(self.zone.tz().clone());
        Decision::Wait {
            until,
            reason: format!(
                "outside the maintenance window ({}); waits until {} (use --force to run now)",
                self.description,
                local_text(&local)
            ),
        }
    }
}

/// cron's day-of-week number (Sunday 0).
fn cron_day(d: Day) -> u8 {
    d.weekday().to_sunday_zero_offset() as u8
}

fn describe(config: &WindowConfig, zone: &Zone) -> String {
    let days: Vec<String> = config.days.iter().map(|d| format!("{d:?}")).collect();
    format!(
        "{} {:02}:{:02} for {} ({})",
        days.join(", "),
        config.start.hour(),
        config.start.minute(),
        humantime::format_duration(Duration::from_secs(config.duration.as_secs())),
        zone
    )
}

/// `2025-06-08 03:00 +09:00`, the wall clock operators read.
fn local_text(z: &Zoned) -> String {
    z.strftime("%Y-%m-%d %H:%M %:z").to_string()
}

/// An IANA time zone, resolved while parsing.
///
/// Looked up in the system's database (`/usr/share/zoneinfo`, or `$ZONEINFO`), then in the
/// copy of the tz database built into the binary (jiff's `tzdb-bundle-always`), so that a
/// minimal image without zoneinfo still knows `Asia/Tokyo`.
#[derive(Clone, PartialEq)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Zone {
    /// The operators' zone, the default.
    pub(crate) const DEFAULT: &'static str = "Asia/Tokyo";

    /// Resolves an IANA name such as `Asia/Tokyo` or `UTC`.
    ///
    /// # Errors
    /// [`Error::UnknownZone`] when neither database knows the name.
    pub fn new(name: &str) -> Result<Zone> {
        let tz = jiff::tz::db()
            .get(name)
            .or_else(|_| TimeZoneDatabase::bundled().get(name))
            .map_err(|_| Error::UnknownZone {
                name: name.to_string(),
            })?;
        Ok(Zone {
            name: name.to_string(),
            tz,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }
}

impl Default for Zone {
    fn default() -> Self {
        match Zone::new(Zone::DEFAULT) {
            Ok(z) => z,
            // Unreachable with the bundled database; never fall back silently to another zone
            // without saying so in the name.
            Err(_) => Zone {
                name: "UTC".into(),
                tz: TimeZone::UTC,
            },
        }
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({:?})", self.name)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Zone::new(&s).map_err(serde::de::Error::custom)
    }
}

/// When destructive work may run: a window that opens on the given weekdays at `start`
/// (wall clock in `time_zone`) and stays open for `duration` (elapsed time, so a window
/// on a DST day is still exactly that long).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// The weekdays it opens on. At least one.
    #[serde(deserialize_with = "days")]
    pub days: BTreeSet<Day>,
    /// `HH:MM`, 24-hour.
    #[serde(deserialize_with = "start", serialize_with = "write_start")]
    pub start: Time,
    /// 10m to 24h.
    pub duration: BoundedDuration<{ 10 * ms::MINUTE }, { ms::DAY }>,
}

impl Default for WindowConfig {
    /// Sundays 03:00 for 2h: the seed's maintenance window.
    fn default() -> Self {
        Self {
            days: [Day::Sunday].into(),
            start: Time::constant(3, 0, 0, 0),
            duration: BoundedDuration::secs(2 * 3600),
        }
    }
}

/// A weekday, written `monday` … `sunday`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Day {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Day {
    pub fn weekday(self) -> Weekday {
        match self {
            Day::Monday => Weekday::Monday,
            Day::Tuesday => Weekday::Tuesday,
            Day::Wednesday => Weekday::Wednesday,
            Day::Thursday => Weekday::Thursday,
            Day::Friday => Weekday::Friday,
            Day::Saturday => Weekday::Saturday,
            Day::Sunday => Weekday::Sunday,
        }
    }
}

fn days<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<Day>, D::Error> {
    let days = BTreeSet::<Day>::deserialize(d)?;
    if days.is_empty() {
        return Err(serde::de::Error::custom(
            "the maintenance window needs at least one day, e.g. [sunday]",
        ));
    }
    Ok(days)
}

fn start<'de, D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
    let s = String::deserialize(d)?;
    let bad = || {
        serde::de::Error::custom(format!(
            "{s:?} is not a time of day; write HH:MM, e.g. \"03:00\""
        ))
    };
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.is_empty()
        || h.len() > 2
        || m.len() != 2
        || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let (h, m) = (
        h.parse::<i8>().map_err(|_| bad())?,
        m.parse::<i8>().map_err(|_| bad())?,
    );
    Time::new(h, m, 0, 0).map_err(|_| bad())
}

fn write_start<S: serde::Serializer>(t: &Time, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{:02}:{:02}", t.hour(), t.minute()))
}

#[cfg(test)]
mod tests {
    use jiff::civil::Time;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn window(days: &[Day], start: (i8, i8), hours: u64, zone: &str) -> MaintenanceWindow {
        let cfg = WindowConfig {
            days: days.iter().copied().collect(),
            start: Time::constant(start.0, start.1, 0, 0),
            duration: BoundedDuration::secs(hours * 3600),
        };
        MaintenanceWindow::new(&cfg, &Zone::new(zone).unwrap())
    }

    #[test]
    fn default_window_is_sunday_three_to_five_in_tokyo() {
        let w = MaintenanceWindow::default_window();
        assert_eq!(w.describe(), "Sunday 03:00 for 2h (Asia/Tokyo)");
        // Sunday 2025-06-08 03:00 JST = Saturday 18:00 UTC.
        assert!(!w.contains(ts("2025-06-07T17:59:59Z")));
        assert!(w.contains(ts("2025-06-07T18:00:00Z")));
        assert!(w.contains(ts("2025-06-07T19:59:59.999Z")));
        assert!(!w.contains(ts("2025-06-07T20:00:00Z")));
        assert_eq!(
            w.current(ts("2025-06-07T19:00:00Z")),
            Some((ts("2025-06-07T18:00:00Z"), ts("2025-06-07T20:00:00Z")))
        );
        // Saturday 03:00 JST is not in it.
        assert!(!w.contains(ts("2025-06-06T18:30:00Z")));
        assert_eq!(
            w.next_open(ts("2025-06-03T00:00:00Z")),
            ts("2025-06-07T18:00:00Z")
        );
        // While open, the next opening is a week later.
        assert_eq!(
            w.next_open(ts("2025-06-07T18:00:00Z")),
            ts("2025-06-14T18:00:00Z")
        );
    }

    #[test]
    fn allowed_runs_inside_forced_or_in_emergency_and_otherwise_waits() {
        let w = MaintenanceWindow::default_window();
        let inside = ts("2025-06-07T18:30:00Z");
        let outside = ts("2025-06-04T01:00:00Z"); // Wednesday 10:00 JST
        assert_eq!(
            w.allowed(inside, false, false),
            Decision::Run {
                reason: RunReason::InWindow
            }
        );
        assert_eq!(
            w.allowed(outside, true, false),
            Decision::Run {
                reason: RunReason::Forced
            }
        );
        assert_eq!(
            w.allowed(outside, false, true),
            Decision::Run {
                reason: RunReason::Emergency
            }
        );
        assert_eq!(
            w.allowed(outside, true, true),
            Decision::Run {
                reason: RunReason::Emergency
            }
        );
        assert_eq!(
            w.allowed(outside, false, false),
            Decision::Wait {
                until: ts("2025-06-07T18:00:00Z"),
                reason: "outside the maintenance window (Sunday 03:00 for 2h (Asia/Tokyo)); waits until 2025-06-08 03:00 +09:00 (use --force to run now)".into()
            }
        );
        assert_eq!(
            serde_json::to_value(w.allowed(outside, false, false)).unwrap()["until"],
            serde_json::json!("2025-06-07T18:00:00Z")
        );
        assert_eq!(
            serde_json::to_string(&w.allowed(inside, false, false)).unwrap(),
            r#"{"decision":"run","reason":"in_window"}"#
        );
    }

    #[test]
    fn window_across_midnight_and_several_days() {
        // Saturday and Sunday 22:30 for 6 h, in Tokyo: Sat 22:30 – Sun 04:30, Sun 22:30 – Mon 04:30.
        let w = window(&[Day::Saturday, Day::Sunday], (22, 30), 6, "Asia/Tokyo");
        assert_eq!(w.describe(), "Saturday, Sunday 22:30 for 6h (Asia/Tokyo)");
        // Monday 2025-06-09 04:00 JST = Sunday 19:00 UTC: inside Sunday's window.
        assert_eq!(
            w.current(ts("2025-06-08T19:00:00Z")),
            Some((ts("2025-06-08T13:30:00Z"), ts("2025-06-08T19:30:00Z")))
        );
        assert!(!w.contains(ts("2025-06-08T19:30:00Z")));
        // Sunday 04:29 JST: still Saturday's.
        assert_eq!(
            w.current(ts("2025-06-07T19:29:00Z")),
            Some((ts("2025-06-07T13:30:00Z"), ts("2025-06-07T19:30:00Z")))
        );
        assert_eq!(
            w.next_open(ts("2025-06-08T19:30:00Z")),
            ts("2025-06-14T13:30:00Z")
        );
    }

    #[test]
    fn berlin_windows_on_dst_days_open_at_wall_clock_and_last_their_duration() {
        // Sunday 2025-03-30 (spring forward at 02:00 CET): 03:00 CEST = 01:00Z, open 2 h.
        let w = window(&[Day::Sunday], (3, 0), 2, "Europe/Berlin");
        assert_eq!(
            w.current(ts("2025-03-30T01:00:00Z")),
            Some((ts("2025-03-30T01:00:00Z"), ts("2025-03-30T03:00:00Z")))
        );
        assert!(!w.contains(ts("2025-03-30T00:59:59Z")));
        // The Sunday before, in CET: 03:00 = 02:00Z.
        assert_eq!(
            w.next_open(ts("2025-03-20T00:00:00Z")),
            ts("2025-03-23T02:00:00Z")
        );
        // Sunday 2025-10-26 (fall back at 03:00 CEST): 03:00 CET = 02:00Z.
        assert_eq!(
            w.next_open(ts("2025-10-25T00:00:00Z")),
            ts("2025-10-26T02:00:00Z")
        );
        assert!(w.contains(ts("2025-10-26T03:59:00Z")));
        assert!(!w.contains(ts("2025-10-26T04:00:00Z")));
        // A window opening at 02:30, inside the spring gap, opens right after it (03:30 CEST).
        let w = window(&[Day::Sunday], (2, 30), 1, "Europe/Berlin");
        assert_eq!(
            w.next_open(ts("2025-03-29T00:00:00Z")),
            ts("2025-03-30T01:30:00Z")
        );
        // … and on the fall-back day at the first 02:30 (CEST), once.
        assert_eq!(
            w.next_open(ts("2025-10-25T00:00:00Z")),
            ts("2025-10-26T00:30:00Z")
        );
        assert_eq!(
            w.current(ts("2025-10-26T01:29:00Z")),
            Some((ts("2025-10-26T00:30:00Z"), ts("2025-10-26T01:30:00Z")))
        );
        assert!(!w.contains(ts("2025-10-26T01:30:00Z")));
    }
}
