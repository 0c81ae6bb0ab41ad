//! The `log_check:` section of the agent config; every option with its default:
//!
//! ```yaml
//! log_check:
//!   enabled: true            # the daemon checks every interval (the CLI ignores this)
//!   interval: 5m             # between two checks (each reads only new bytes); 10s..24h
//!   pods_dir: null           # default: /var/log/pods under paths.rootfs
//!   state_file: /var/lib/caretaker/log-check.json   # offsets and hourly counts
//!   patterns:                # counted case-insensitively (LC_ALL=C grep -i)
//!     - {name: error, regex: error}
//!     - {name: warn, regex: warn}
//!     - {name: authentication_failed, regex: authentication failed}
//!     - {name: http_4xx_5xx, regex: 'status=[45][0-9][0-9]'}
//!   thresholds: {}           # pattern name → count in 24 h for one container that is a
//!                            # finding, e.g. {error: 1000}; a pattern without one has none
//!   jump_factor: 3.0         # a finding when a container's 24 h count is at least this
//!   jump_min_count: 100      # many times the previous 24 h, and at least this count
//!   top: 5                   # containers listed per pattern in the report
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::matcher::{Pattern, default_patterns};

/// The `log_check:` section (see the module docs for the YAML and defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogCheckConfig {
    /// Whether the daemon runs the check. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Time between two checks of the daemon. Default 5 min.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// The kubelet's pod log directory. Default `/var/log/pods` under `paths.rootfs`.
    #[serde(default)]
    pub pods_dir: Option<PathBuf>,
    /// Offsets per file and counts per hour, so that a restarted agent goes on where it
    /// stopped. Default `/var/lib/caretaker/log-check.json`.
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
    /// The patterns. Default: the script's four (see [`default_patterns`]).
    #[serde(default = "default_patterns")]
    pub patterns: Vec<Pattern>,
    /// Per pattern name, the 24 h count of one container that makes a finding.
    #[serde(default)]
    pub thresholds: BTreeMap<String, u64>,
    /// A finding when a container's 24 h count is at least this factor times its count in
    /// the 24 h before (and at least `jump_min_count`). Default 3.
    #[serde(default = "default_jump_factor")]
    pub jump_factor: f64,
    /// See `jump_factor`. Default 100.
    #[serde(default = "default_jump_min_count")]
    pub jump_min_count: u64,
    /// Containers listed per pattern in the node report (highest counts). Default 5.
    #[serde(default = "default_top")]
    pub top: usize,
}

impl Default for LogCheckConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: default_interval(),
            pods_dir: None,
            state_file: default_state_file(),
            patterns: default_patterns(),
            thresholds: BTreeMap::new(),
            jump_factor: default_jump_factor(),
            jump_min_count: default_jump_min_count(),
            top: default_top(),
        }
    }
}

/// A `log_check:` section that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("log_check.interval: {0:?} is outside 10s..24h")]
    Interval(Duration),
    #[error("log_check.thresholds: {0:?} is not a pattern name")]
    UnknownPattern(String),
    #[error("log_check.jump_factor: {0} must be a number >= 1")]
    JumpFactor(f64),
    #[error("log_check.top: {0} is outside 1..=50")]
    Top(usize),
}

impl LogCheckConfig {
    /// Checks the bounds and that every threshold names a pattern.
    ///
    /// # Errors
    /// The first bad option, by name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(Duration::from_secs(10)..=Duration::from_secs(86_400)).contains(&self.interval) {
            return Err(ConfigError::Interval(self.interval));
        }
        if let Some(k) = self
            .thresholds
            .keys()
            .find(|k| !self.patterns.iter().any(|p| &p.name == *k))
        {
            return Err(ConfigError::UnknownPattern(k.clone()));
        }
        if !(self.jump_factor.is_finite() && self.jump_factor >= 1.0) {
            return Err(ConfigError::JumpFactor(self.jump_factor));
        }
        if !(1..=50).contains(&self.top) {
            return Err(ConfigError::Top(self.top));
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}
fn default_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_state_file() -> PathBuf {
    "/var/lib/caretaker/log-check.json".into()
}
fn default_jump_factor() -> f64 {
    3.0
}
fn default_jump_min_count() -> u64 {
    100
}
fn default_top() -> usize {
    5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let c: LogCheckConfig = serde_saphyr::from_str("{}").unwrap();
        assert_eq!(c.patterns, default_patterns());
        assert_eq!(
            (c.interval, c.top, c.jump_min_count),
            (Duration::from_secs(300), 5, 100)
        );
        c.validate().unwrap();
        assert!(serde_saphyr::from_str::<LogCheckConfig>("{intervall: 5m}").is_err());
        let c: LogCheckConfig = serde_saphyr::from_str("{thresholds: {eror: 5}}").unwrap();
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "log_check.thresholds: \"eror\" is not a pattern name"
        );
    }
}
