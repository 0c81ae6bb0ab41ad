//! The `log_check:` section of the agent config; every option with its default (a test
//! checks them against [`LogCheckConfig::default`]):
//!
//! ```yaml
//! log_check:                 # defaults shown
//!   enabled: true            # the daemon checks every interval (the CLI ignores this)
//!   interval: 5m             # between two checks (each reads only new bytes); 10s..24h
//!   pods_dir: null           # null: /var/log/pods under paths.rootfs
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
//!   top: 5                   # containers listed per pattern in the report; 1..=50
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use caretaker_core::config::{BoundedDuration, BoundedUsize, ms};
use serde::{Deserialize, Serialize};

use super::matcher::{Pattern, default_patterns};

/// The `log_check:` section (see the module docs for the YAML and defaults).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogCheckConfig {
    /// Whether the daemon runs the check. Default true.
    pub enabled: bool,
    /// Time between two checks of the daemon. Default 5 min. 10s to 24h.
    pub interval: BoundedDuration<{ 10 * ms::SECOND }, { ms::DAY }>,
    /// The kubelet's pod log directory; none (the default) means `/var/log/pods` under
    /// `paths.rootfs`.
    pub pods_dir: Option<PathBuf>,
    /// Offsets per file and counts per hour, so that a restarted agent goes on where it
    /// stopped. Default `/var/lib/caretaker/log-check.json`.
    pub state_file: PathBuf,
    /// The patterns. Default: the script's four (see [`default_patterns`]).
    pub patterns: Vec<Pattern>,
    /// Per pattern name, the 24 h count of one container that makes a finding.
    pub thresholds: BTreeMap<String, u64>,
    /// A finding when a container's 24 h count is at least this factor times its count in
    /// the 24 h before (and at least `jump_min_count`). Default 3. At least 1.
    pub jump_factor: f64,
    /// See `jump_factor`. Default 100.
    pub jump_min_count: u64,
    /// Containers listed per pattern in the node report (highest counts). Default 5.
    /// 1 to 50.
    pub top: BoundedUsize<1, 50>,
}

impl Default for LogCheckConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: BoundedDuration::secs(300),
            pods_dir: None,
            state_file: "/var/lib/caretaker/log-check.json".into(),
            patterns: default_patterns(),
            thresholds: BTreeMap::new(),
            jump_factor: 3.0,
            jump_min_count: 100,
            top: BoundedUsize::of(5),
        }
    }
}

/// A `log_check:` section that cannot be used (the bounded options are checked while
/// the file is read).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("log_check.thresholds: {0:?} is not a pattern name")]
    UnknownPattern(String),
    #[error("log_check.jump_factor: {0} must be a number >= 1")]
    JumpFactor(f64),
}

impl LogCheckConfig {
    /// Checks that every threshold names a pattern and the jump factor.
    ///
    /// # Errors
    /// The first bad option, by name.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_documented_defaults_are_the_default_values() {
        let defaults = serde_json::json!({ "log_check": LogCheckConfig::default() });
        let checked = caretaker_core::config::doc::assert_documented_defaults(
            include_str!("config.rs"),
            &defaults,
        );
        assert_eq!(checked, 7);
    }

    #[test]
    fn defaults_and_unknown_fields() {
        let c: LogCheckConfig = serde_saphyr::from_str("{}").unwrap();
        assert_eq!(c.patterns, default_patterns());
        assert_eq!(
            (c.interval.get(), c.top.get(), c.jump_min_count),
            (Duration::from_secs(300), 5, 100)
        );
        c.validate().unwrap();
        assert!(serde_saphyr::from_str::<LogCheckConfig>("{intervall: 5m}").is_err());
        let c: LogCheckConfig = serde_saphyr::from_str("{thresholds: {eror: 5}}").unwrap();
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "log_check.thresholds: \"eror\" is not a pattern name"
        );
        let e = serde_saphyr::from_str::<LogCheckConfig>("{interval: 5s}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("5s is out of range: at least 10s"), "{e}");
        let e = serde_saphyr::from_str::<LogCheckConfig>("{top: 51}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("51 is out of range 1..=50"), "{e}");
    }
}
