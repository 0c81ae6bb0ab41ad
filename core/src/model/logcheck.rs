//! The daily log check: per pattern, the containers with the most matching log lines in
//! the last 24 h (with a truncated sample line), and the counts worth a look.

use caretaker_proto::pb;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::wire::*;
use super::*;

/// At most this many patterns in one summary (the agent's `log_check.patterns` bound).
pub(crate) const MAX_LOG_CHECK_PATTERNS: usize = 32;
/// At most this many top entries: 50 (`log_check.top`'s bound) per pattern.
pub(crate) const MAX_LOG_CHECK_TOP: usize = 50 * MAX_LOG_CHECK_PATTERNS;
/// At most this many findings in one summary; the agent keeps the highest counts.
pub const MAX_LOG_CHECK_FINDINGS: usize = 1024;
/// Longest sample accepted, in bytes. The agent cuts samples to 200 bytes of the line;
/// lossy UTF-8 may turn each of those bytes into three.
pub(crate) const MAX_SAMPLE_BYTES: usize = 1024;
/// Longest namespace, pod or container name (a DNS subdomain).
const MAX_NAME_LEN: usize = 253;
/// Longest pattern name.
const MAX_PATTERN_NAME_LEN: usize = 128;

/// The log check on one node as of the agent's last check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCheckSummary {
    /// When the last check ended.
    pub checked_at: Timestamp,
    /// The pattern names, in the agent's configured order.
    pub patterns: Vec<String>,
    /// Per pattern, the containers with the highest non-zero 24 h counts, highest first.
    pub top: Vec<LogCheckEntry>,
    /// Counts at or above their threshold, or that jumped against the 24 h before.
    pub findings: Vec<LogCheckFinding>,
    /// Files the last check read (only new bytes: the check is incremental).
    pub files_read: u64,
    /// Bytes the last check read (decompressed).
    pub bytes_read: u64,
    /// Problems of the last check, each with its place (a file, the pods directory).
    #[serde(default)]
    pub errors: Vec<CollectorError>,
}

/// One container's count of one pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCheckEntry {
    /// One of [`LogCheckSummary::patterns`].
    pub pattern: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// Matching lines in the last 24 h.
    pub count: u64,
    /// Matching lines in the 24 h before.
    pub previous_count: u64,
    /// The latest matching line, cut to 200 bytes (never a whole log).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sample: Option<String>,
}

/// Why a count is a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogCheckReason {
    /// At or above `log_check.thresholds[pattern]`.
    Threshold,
    /// At least `log_check.jump_factor` times the 24 h before (and `jump_min_count`).
    Jump,
}

/// A count worth a look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCheckFinding {
    #[serde(flatten)]
    pub entry: LogCheckEntry,
    pub reason: LogCheckReason,
    /// The threshold crossed (`threshold`), or the count a jump had to reach (`jump`:
    /// `jump_factor` × `previous_count`, at least `jump_min_count`).
    pub limit: u64,
}

impl From<LogCheckSummary> for pb::LogCheckSummary {
    fn from(s: LogCheckSummary) -> Self {
        Self {
            checked_at: Some(ts_to_pb(s.checked_at)),
            patterns: s.patterns,
            top: s.top.into_iter().map(Into::into).collect(),
            findings: s.findings.into_iter().map(Into::into).collect(),
            files_read: s.files_read,
            bytes_read: s.bytes_read,
            errors: s.errors.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<LogCheckEntry> for pb::LogCheckEntry {
    fn from(e: LogCheckEntry) -> Self {
        Self {
            pattern: e.pattern,
            namespace: e.namespace,
            pod: e.pod,
            container: e.container,
            count: e.count,
            previous_count: e.previous_count,
            sample: e.sample,
        }
    }
}

impl From<LogCheckFinding> for pb::LogCheckFinding {
    fn from(f: LogCheckFinding) -> Self {
        Self {
            entry: Some(f.entry.into()),
            reason: match f.reason {
                LogCheckReason::Threshold => pb::LogCheckReason::Threshold,
                LogCheckReason::Jump => pb::LogCheckReason::Jump,
            }
            .into(),
            limit: f.limit,
        }
    }
}

impl TryFrom<pb::LogCheckSummary> for LogCheckSummary {
    type Error = InvalidMessage;

    fn try_from(s: pb::LogCheckSummary) -> Result<Self, Self::Error> {
        let patterns = bounded(s.patterns, MAX_LOG_CHECK_PATTERNS, "patterns")?;
        for (i, p) in patterns.iter().enumerate() {
            let field = format!("patterns[{i}]");
            if p.is_empty() || p.len() > MAX_PATTERN_NAME_LEN {
                return Err(InvalidMessage::new(
                    field,
                    format!("{} bytes, 1 to {MAX_PATTERN_NAME_LEN} allowed", p.len()),
                ));
            }
            if patterns[..i].contains(p) {
                return Err(InvalidMessage::new(field, format!("{p:?} given twice")));
            }
        }
        let top = bounded(s.top, MAX_LOG_CHECK_TOP, "top")?
            .into_iter()
            .enumerate()
            .map(|(i, e)| entry(e, &patterns).map_err(|e| e.within(&format!("top[{i}]"))))
            .collect::<Result<_, _>>()?;
        let findings = bounded(s.findings, MAX_LOG_CHECK_FINDINGS, "findings")?
            .into_iter()
            .enumerate()
            .map(|(i, f)| finding(f, &patterns).map_err(|e| e.within(&format!("findings[{i}]"))))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            checked_at: ts_from_pb(s.checked_at, "checked_at")?,
            top,
            findings,
            files_read: s.files_read,
            bytes_read: s.bytes_read,
            errors: bounded(s.errors, MAX_ERRORS, "errors")?
                .into_iter()
                .map(Into::into)
                .collect(),
            patterns,
        })
    }
}

fn finding(f: pb::LogCheckFinding, patterns: &[String]) -> Result<LogCheckFinding, InvalidMessage> {
    let reason = match pb::LogCheckReason::try_from(f.reason) {
        Ok(pb::LogCheckReason::Threshold) => LogCheckReason::Threshold,
        Ok(pb::LogCheckReason::Jump) => LogCheckReason::Jump,
        Ok(pb::LogCheckReason::Unspecified) | Err(_) => {
            return Err(InvalidMessage::new(
                "reason",
                format!("{} is not threshold or jump", f.reason),
            ));
        }
    };
    let entry = entry(
        f.entry
            .ok_or_else(|| InvalidMessage::new("entry", "missing"))?,
        patterns,
    )
    .map_err(|e| e.within("entry"))?;
    if entry.count < f.limit {
        return Err(InvalidMessage::new(
            "limit",
            format!("{} is above the count {}", f.limit, entry.count),
        ));
    }
    Ok(LogCheckFinding {
        entry,
        reason,
        limit: f.limit,
    })
}

fn entry(e: pb::LogCheckEntry, patterns: &[String]) -> Result<LogCheckEntry, InvalidMessage> {
    if !patterns.contains(&e.pattern) {
        return Err(InvalidMessage::new(
            "pattern",
            format!("{:?} is not one of the summary's patterns", e.pattern),
        ));
    }
    for (field, v) in [
        ("namespace", &e.namespace),
        ("pod", &e.pod),
        ("container", &e.container),
    ] {
        if v.is_empty() || v.len() > MAX_NAME_LEN {
            return Err(InvalidMessage::new(
                field,
                format!("{} bytes, 1 to {MAX_NAME_LEN} allowed", v.len()),
            ));
        }
    }
    if let Some(s) = &e.sample
        && s.len() > MAX_SAMPLE_BYTES
    {
        return Err(InvalidMessage::new(
            "sample",
            format!("{} bytes, at most {MAX_SAMPLE_BYTES}", s.len()),
        ));
    }
    Ok(LogCheckEntry {
        pattern: e.pattern,
        namespace: e.namespace,
        pod: e.pod,
        container: e.container,
        count: e.count,
        previous_count: e.previous_count,
        sample: e.sample,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample_report;
    use super::*;

    pub(crate) fn sample_log_check() -> LogCheckSummary {
        let entry = |pattern: &str, pod: &str, count, previous_count| LogCheckEntry {
            pattern: pattern.into(),
            namespace: "shop".into(),
            pod: pod.into(),
            container: "app".into(),
            count,
            previous_count,
            sample: Some(format!("{pattern} in {pod}")),
        };
        LogCheckSummary {
            checked_at: "2026-11-29T03:00:00Z".parse().unwrap(),
            patterns: vec!["error".into(), "warn".into()],
            top: vec![
                entry("error", "api-1", 500, 100),
                entry("warn", "web-1", 7, 0),
            ],
            findings: vec![LogCheckFinding {
                entry: entry("error", "api-1", 500, 100),
                reason: LogCheckReason::Jump,
                limit: 300,
            }],
            files_read: 3,
            bytes_read: 4096,
            errors: vec![CollectorError {
                collector: "log_check".into(),
                place: "/var/log/pods/x/app/0.log.gz".into(),
                message: "corrupt deflate stream".into(),
            }],
        }
    }

    #[test]
    fn a_report_with_a_log_check_round_trips_and_old_json_still_parses() {
        let mut r = sample_report();
        r.log_check = Some(sample_log_check());
        let wire: pb::NodeReport = r.clone().into();
        assert_eq!(
            wire.log_check.as_ref().unwrap().findings[0].reason,
            pb::LogCheckReason::Jump as i32
        );
        assert_eq!(NodeReport::try_from(wire).unwrap(), r);

        let json = serde_json::to_value(&r).unwrap();
        let f = &json["log_check"]["findings"][0];
        assert_eq!(
            (f["pod"].as_str(), f["reason"].as_str(), f["limit"].as_u64()),
            (Some("api-1"), Some("jump"), Some(300)),
            "a finding's entry is flattened"
        );
        assert_eq!(
            serde_json::from_value::<NodeReport>(json)
                .unwrap()
                .log_check,
            r.log_check
        );

        let mut old = serde_json::to_value(sample_report()).unwrap();
        old.as_object_mut().unwrap().remove("log_check");
        assert_eq!(
            serde_json::from_value::<NodeReport>(old).unwrap().log_check,
            None
        );
    }

    #[test]
    fn invalid_log_checks_are_rejected_naming_the_field() {
        type Case = (
            Box<dyn Fn(&mut pb::LogCheckSummary)>,
            &'static str,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                Box::new(|s| s.top[1].pattern = "eror".into()),
                "log_check.top[1].pattern",
                "\"eror\" is not one of the summary's patterns",
            ),
            (
                Box::new(|s| s.top[0].pod.clear()),
                "log_check.top[0].pod",
                "0 bytes, 1 to 253 allowed",
            ),
            (
                Box::new(|s| s.top[0].sample = Some("x".repeat(MAX_SAMPLE_BYTES + 1))),
                "log_check.top[0].sample",
                "1025 bytes, at most 1024",
            ),
            (
                Box::new(|s| s.findings[0].reason = 0),
                "log_check.findings[0].reason",
                "0 is not threshold or jump",
            ),
            (
                Box::new(|s| s.findings[0].reason = 9),
                "log_check.findings[0].reason",
                "9 is not threshold or jump",
            ),
            (
                Box::new(|s| s.findings[0].entry = None),
                "log_check.findings[0].entry",
                "missing",
            ),
            (
                Box::new(|s| s.findings[0].limit = 501),
                "log_check.findings[0].limit",
                "501 is above the count 500",
            ),
            (
                Box::new(|s| s.patterns.push("error".into())),
                "log_check.patterns[2]",
                "\"error\" given twice",
            ),
            (
                Box::new(|s| s.patterns = vec!["p".into(); MAX_LOG_CHECK_PATTERNS + 1]),
                "log_check.patterns",
                "33 entries, at most 32 allowed",
            ),
            (
                Box::new(|s| {
                    let f = s.findings[0].clone();
                    s.findings = vec![f; MAX_LOG_CHECK_FINDINGS + 1];
                }),
                "log_check.findings",
                "1025 entries, at most 1024 allowed",
            ),
            (
                Box::new(|s| s.checked_at = None),
                "log_check.checked_at",
                "missing",
            ),
        ];
        for (corrupt, field, reason) in cases {
            let mut r = sample_report();
            r.log_check = Some(sample_log_check());
            let mut wire: pb::NodeReport = r.into();
            corrupt(wire.log_check.as_mut().unwrap());
            let e = NodeReport::try_from(wire).unwrap_err();
            assert_eq!((e.field.as_str(), e.reason.as_str()), (field, reason));
        }
    }
}
