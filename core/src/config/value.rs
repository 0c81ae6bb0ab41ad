//! Validated config values: one newtype per shape that options repeat (a duration, a whole
//! number or a percentage within bounds), each deserialized through
//! `#[serde(try_from = …)]` so that a bad value is an error naming its line and field, and
//! serialized back in the form a config file uses (`docs/config.md` shows the defaults that
//! way).
//!
//! The bounds are const generic parameters, so an option's type states them:
//! `BoundedDuration<{ ms::SECOND }, { 10 * ms::MINUTE }>` is "1s to 10m". Each type derefs
//! to its value and compares equal to it, so code reading a config needs no unwrapping.

use std::fmt;
use std::ops::Deref;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Milliseconds in the units duration bounds are written with.
pub mod ms {
    pub const SECOND: u64 = 1_000;
    pub const MINUTE: u64 = 60 * SECOND;
    pub const HOUR: u64 = 60 * MINUTE;
    pub const DAY: u64 = 24 * HOUR;
    /// Ten years, the longest age or retention any option takes.
    pub const TEN_YEARS: u64 = 3650 * DAY;
}

/// A value that does not fit its option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not a duration at all (the parser's reason is part of the message, as serde shows
    /// only this message).
    #[error("{text:?} is not a duration ({reason}); write e.g. 10s, 5m, 168h")]
    NotADuration { text: String, reason: String },
    #[error("{text} is out of range: at least {min}, at most {max}")]
    DurationOutOfRange {
        text: String,
        min: String,
        max: String,
    },
    #[error("{value} is out of range {min}..={max}")]
    OutOfRange { value: u64, min: u64, max: u64 },
    #[error("{value} is not a percentage (0 to 100)")]
    NotAPercentage { value: u64 },
    #[error("{value} is not a percentage between {min} and 100")]
    PercentageBelow { value: u64, min: u8 },
}

/// A duration written the human way (`10s`, `5m`, `168h`, `400d`) within
/// `MIN_MS..=MAX_MS` milliseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BoundedDuration<const MIN_MS: u64, const MAX_MS: u64>(Duration);

impl<const MIN_MS: u64, const MAX_MS: u64> BoundedDuration<MIN_MS, MAX_MS> {
    /// The least value.
    pub const MIN: Duration = Duration::from_millis(MIN_MS);
    /// The greatest value.
    pub const MAX: Duration = Duration::from_millis(MAX_MS);

    /// `d` if it is within the bounds.
    ///
    /// # Errors
    /// [`ValueError::DurationOutOfRange`].
    pub fn new(d: Duration) -> Result<Self, ValueError> {
        if d < Self::MIN || d > Self::MAX {
            return Err(ValueError::DurationOutOfRange {
                text: write_duration(d),
                min: humantime::format_duration(Self::MIN).to_string(),
                max: humantime::format_duration(Self::MAX).to_string(),
            });
        }
        Ok(Self(d))
    }

    /// A value the program itself writes (a default, a test's value).
    ///
    /// # Panics
    /// When `d` is out of bounds: a mistake in the program, not in a config file (in a
    /// `const` it fails the build).
    #[must_use]
    pub const fn of(d: Duration) -> Self {
        assert!(
            d.as_millis() >= MIN_MS as u128 && d.as_millis() <= MAX_MS as u128,
            "duration out of its option's bounds"
        );
        Self(d)
    }

    /// [`Self::of`] in seconds.
    #[must_use]
    pub const fn secs(s: u64) -> Self {
        Self::of(Duration::from_secs(s))
    }

    /// [`Self::of`] in milliseconds.
    #[must_use]
    pub const fn millis(m: u64) -> Self {
        Self::of(Duration::from_millis(m))
    }

    /// The duration.
    #[must_use]
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl<const A: u64, const B: u64> TryFrom<String> for BoundedDuration<A, B> {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        let d = humantime::parse_duration(&s).map_err(|e| ValueError::NotADuration {
            reason: e.to_string(),
            text: s.clone(),
        })?;
        // The message shows the value as written.
        Self::new(d).map_err(|e| match e {
            ValueError::DurationOutOfRange { min, max, .. } => {
                ValueError::DurationOutOfRange { text: s, min, max }
            }
            other => other,
        })
    }
}

impl<const A: u64, const B: u64> From<BoundedDuration<A, B>> for String {
    fn from(d: BoundedDuration<A, B>) -> String {
        write_duration(d.0)
    }
}

impl<const A: u64, const B: u64> From<BoundedDuration<A, B>> for Duration {
    fn from(d: BoundedDuration<A, B>) -> Duration {
        d.0
    }
}

impl<const A: u64, const B: u64> Deref for BoundedDuration<A, B> {
    type Target = Duration;
    fn deref(&self) -> &Duration {
        &self.0
    }
}

impl<const A: u64, const B: u64> PartialEq<Duration> for BoundedDuration<A, B> {
    fn eq(&self, other: &Duration) -> bool {
        self.0 == *other
    }
}

impl<const A: u64, const B: u64> fmt::Debug for BoundedDuration<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<const A: u64, const B: u64> fmt::Display for BoundedDuration<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&write_duration(self.0))
    }
}

/// A duration the way a config file writes it: one number in the largest unit that
/// divides it (`400d`, `90s`, `2ms`), which `humantime` parses back to the same value.
#[must_use]
pub(crate) fn write_duration(d: Duration) -> String {
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return humantime::format_duration(d).to_string().replace(' ', "");
    }
    let ms = d.as_millis();
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms > 0 && ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    if ms == 0 {
        "0s".to_string()
    } else {
        format!("{ms}ms")
    }
}

/// Whole-number newtypes within `MIN..=MAX`, one per integer type options use.
macro_rules! bounded_int {
    ($(#[$doc:meta])* $name:ident, $t:ty) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "u64", into = "u64")]
        pub struct $name<const MIN: $t, const MAX: $t>($t);

        impl<const MIN: $t, const MAX: $t> $name<MIN, MAX> {
            /// `v` if it is within the bounds.
            ///
            /// # Errors
            /// [`ValueError::OutOfRange`].
            pub fn new(v: $t) -> Result<Self, ValueError> {
                Self::try_from(v as u64)
            }

            /// A value the program itself writes (a default, a test's value).
            ///
            /// # Panics
            /// When `v` is out of bounds: a mistake in the program, not in a config file.
            #[must_use]
            pub const fn of(v: $t) -> Self {
                assert!(v >= MIN && v <= MAX, "value out of its option's bounds");
                Self(v)
            }

            /// The number.
            #[must_use]
            pub const fn get(self) -> $t {
                self.0
            }
        }

        impl<const MIN: $t, const MAX: $t> TryFrom<u64> for $name<MIN, MAX> {
            type Error = ValueError;
            fn try_from(v: u64) -> Result<Self, ValueError> {
                match <$t>::try_from(v) {
                    Ok(n) if (MIN..=MAX).contains(&n) => Ok(Self(n)),
                    _ => Err(ValueError::OutOfRange {
                        value: v,
                        min: MIN as u64,
                        max: MAX as u64,
                    }),
                }
            }
        }

        impl<const MIN: $t, const MAX: $t> From<$name<MIN, MAX>> for u64 {
            fn from(v: $name<MIN, MAX>) -> u64 {
                v.0 as u64
            }
        }

        impl<const MIN: $t, const MAX: $t> Deref for $name<MIN, MAX> {
            type Target = $t;
            fn deref(&self) -> &$t {
                &self.0
            }
        }

        impl<const MIN: $t, const MAX: $t> PartialEq<$t> for $name<MIN, MAX> {
            fn eq(&self, other: &$t) -> bool {
                self.0 == *other
            }
        }

        impl<const MIN: $t, const MAX: $t> fmt::Debug for $name<MIN, MAX> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl<const MIN: $t, const MAX: $t> fmt::Display for $name<MIN, MAX> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

bounded_int!(
    /// A `u32` option within `MIN..=MAX`.
    BoundedU32,
    u32
);
bounded_int!(
    /// A `u64` option within `MIN..=MAX`.
    BoundedU64,
    u64
);
bounded_int!(
    /// A `usize` option within `MIN..=MAX` (counts and byte sizes of buffers).
    BoundedUsize,
    usize
);

/// A whole percentage, `MIN` (0 unless given) to 100.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Percent<const MIN: u8 = 0>(u8);

impl<const MIN: u8> Percent<MIN> {
    /// A value the program itself writes (a default, a test's value).
    ///
    /// # Panics
    /// When `v` is out of bounds: a mistake in the program, not in a config file.
    #[must_use]
    pub const fn of(v: u8) -> Self {
        assert!(
            v >= MIN && v <= 100,
            "percentage out of its option's bounds"
        );
        Self(v)
    }

    /// The percentage.
    #[must_use]
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl<const MIN: u8> TryFrom<u64> for Percent<MIN> {
    type Error = ValueError;
    fn try_from(v: u64) -> Result<Self, ValueError> {
        match u8::try_from(v) {
            Ok(p) if p >= MIN && p <= 100 => Ok(Self(p)),
            _ if MIN == 0 => Err(ValueError::NotAPercentage { value: v }),
            _ => Err(ValueError::PercentageBelow { value: v, min: MIN }),
        }
    }
}

impl<const MIN: u8> From<Percent<MIN>> for u64 {
    fn from(p: Percent<MIN>) -> u64 {
        p.0.into()
    }
}

impl<const MIN: u8> Deref for Percent<MIN> {
    type Target = u8;
    fn deref(&self) -> &u8 {
        &self.0
    }
}

impl<const MIN: u8> PartialEq<u8> for Percent<MIN> {
    fn eq(&self, other: &u8) -> bool {
        self.0 == *other
    }
}

impl<const MIN: u8> fmt::Debug for Percent<MIN> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<const MIN: u8> fmt::Display for Percent<MIN> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse_yaml;

    #[derive(Debug, Default, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        every: Option<BoundedDuration<{ ms::SECOND }, { ms::MINUTE }>>,
        count: Option<BoundedU32<1, 1000>>,
        bytes: Option<BoundedUsize<{ 64 << 10 }, { 1 << 30 }>>,
        full: Option<Percent>,
        share: Option<Percent<1>>,
        wait: Option<BoundedDuration<0, { ms::SECOND }>>,
    }

    fn err(yaml: &str) -> String {
        parse_yaml::<Sample>(yaml, Path::new("c.yaml"))
            .unwrap_err()
            .to_string()
    }

    fn ok(yaml: &str) -> Sample {
        parse_yaml::<Sample>(yaml, Path::new("c.yaml")).unwrap()
    }

    #[test]
    fn durations_take_their_bounds_inclusively_and_name_the_line() {
        assert_eq!(ok("every: 1s\n").every.unwrap(), Duration::from_secs(1));
        assert_eq!(ok("every: 1m\n").every.unwrap(), Duration::from_secs(60));
        assert_eq!(ok("wait: 0s\n").wait.unwrap(), Duration::ZERO);
        assert_eq!(ok("wait: 2ms\n").wait.unwrap(), Duration::from_millis(2));
        let e = err("count: 3\nevery: 999ms\n");
        assert!(
            e.contains("999ms is out of range: at least 1s, at most 1m") && e.contains("line 2"),
            "{e}"
        );
        let e = err("every: 61s\n");
        assert!(
            e.contains("61s is out of range: at least 1s, at most 1m"),
            "{e}"
        );
        let e = err("every: soon\n");
        assert!(
            e.contains("\"soon\" is not a duration (") && e.contains("write e.g. 10s, 5m, 168h"),
            "{e}"
        );
    }

    #[test]
    fn whole_numbers_are_bounded_even_beyond_their_type() {
        assert_eq!(ok("count: 1\n").count.unwrap(), 1);
        assert_eq!(ok("count: 1000\n").count.unwrap(), 1000);
        assert!(err("count: 0\n").contains("0 is out of range 1..=1000"));
        assert!(err("count: 1001\n").contains("1001 is out of range 1..=1000"));
        let e = err("count: 18446744073709551615\n");
        assert!(
            e.contains("18446744073709551615 is out of range 1..=1000"),
            "{e}"
        );
        assert!(err("bytes: 1024\n").contains("1024 is out of range 65536..=1073741824"));
        assert!(err("count: -1\n").contains("line 1"));
    }

    #[test]
    fn percentages_say_their_range() {
        assert_eq!(ok("full: 0\n").full.unwrap(), 0);
        assert_eq!(ok("full: 100\n").full.unwrap(), 100);
        assert!(err("full: 101\n").contains("101 is not a percentage (0 to 100)"));
        assert!(err("full: 300\n").contains("300 is not a percentage (0 to 100)"));
        assert_eq!(ok("share: 1\n").share.unwrap(), 1);
        assert!(err("share: 0\n").contains("0 is not a percentage between 1 and 100"));
    }

    #[test]
    fn values_serialize_as_a_config_file_writes_them_and_parse_back() {
        for (d, text) in [
            (Duration::from_secs(400 * 86_400), "400d"),
            (Duration::from_secs(168 * 3600), "7d"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_millis(2), "2ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(write_duration(d), text);
            assert_eq!(humantime::parse_duration(text).unwrap(), d, "{text}");
        }
        let s = Sample {
            every: Some(BoundedDuration::secs(30)),
            count: Some(BoundedU32::of(7)),
            full: Some(Percent::of(85)),
            ..Sample::default()
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["every"], "30s");
        assert_eq!(json["count"], 7);
        assert_eq!(json["full"], 85);
    }

    #[test]
    fn programmatic_values_are_checked_too() {
        assert!(BoundedU32::<1, 10>::new(11).is_err());
        assert_eq!(BoundedU32::<1, 10>::new(10).unwrap().get(), 10);
        assert_eq!(
            BoundedDuration::<0, { ms::SECOND }>::new(Duration::from_secs(2))
                .unwrap_err()
                .to_string(),
            "2s is out of range: at least 0s, at most 1s"
        );
        assert!(std::panic::catch_unwind(|| BoundedU32::<1, 10>::of(0)).is_err());
    }
}
