//! Loading YAML config files, shared by both programs.
//!
//! A config error names the file and, through serde-saphyr, the line, column and field;
//! `main` turns it into exit code 64 (EX_USAGE) before any port is bound. [`value`] holds
//! the validated newtypes options are declared with (bounded durations, whole numbers and
//! percentages), so a bound is stated once, in the option's type.

pub(crate) mod value;

pub use value::{BoundedDuration, BoundedU32, BoundedU64, BoundedUsize, Percent, ValueError, ms};

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Exit code for a bad command line or config file (sysexits.h EX_USAGE).
pub const EXIT_USAGE: i32 = 64;

/// Exit code for "not now, try again later" (sysexits.h `EX_TEMPFAIL`): another run holds
/// the lock, or destructive work outside the maintenance window.
pub const EXIT_TEMPFAIL: i32 = 75;

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Reads and deserializes a YAML file. An empty file gives the defaults.
///
/// # Errors
/// [`ConfigError::Read`] when the file cannot be read; [`ConfigError::Invalid`] with the
/// parser's message (line, column, field) otherwise.
pub fn load_yaml<T: DeserializeOwned + Default>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    parse_yaml(&text, path)
}

/// [`load_yaml`] on text already read; `path` is only used in errors.
///
/// # Errors
/// See [`load_yaml`].
pub fn parse_yaml<T: DeserializeOwned + Default>(
    text: &str,
    path: &Path,
) -> Result<T, ConfigError> {
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(T::default());
    }
    serde_saphyr::from_str(text).map_err(|e| ConfigError::Invalid {
        path: path.into(),
        message: e.to_string(),
    })
}

/// A duration option written the human way (`10s`, `5m`, `168h`), with bounds checked
/// while parsing so that the error carries the line of the option.
///
/// # Errors
/// Not a duration, or outside `min..=max`.
pub fn bounded_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
    min: Duration,
    max: Duration,
) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    let v = humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "{s:?} is not a duration ({e}); write e.g. 10s, 5m, 168h"
        ))
    })?;
    if v < min || v > max {
        return Err(serde::de::Error::custom(format!(
            "{s} is out of range: at least {}, at most {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        name: String,
        #[serde(default, deserialize_with = "short")]
        every: Duration,
    }

    fn short<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        bounded_duration(d, Duration::from_secs(1), Duration::from_secs(60))
    }

    #[test]
    fn unknown_field_error_names_file_line_and_field() {
        let err = parse_yaml::<Sample>("name: a\nnmae: b\n", Path::new("/etc/x.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid config file /etc/x.yaml: "),
            "{err}"
        );
        assert!(err.contains("nmae"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn bad_duration_names_its_line() {
        let err = parse_yaml::<Sample>("name: a\nevery: 2h\n", Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2h is out of range: at least 1s, at most 1m"),
            "{err}"
        );
        assert!(err.contains("line 2"), "{err}");
        let err = parse_yaml::<Sample>("every: soon\n", Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"soon\" is not a duration"), "{err}");
    }

    #[test]
    fn empty_or_comment_only_file_gives_defaults() {
        assert_eq!(
            parse_yaml::<Sample>("# nothing\n\n", Path::new("c")).unwrap(),
            Sample::default()
        );
        let ok = parse_yaml::<Sample>("every: 10s\n", Path::new("c")).unwrap();
        assert_eq!(ok.every, Duration::from_secs(10));
    }
}
