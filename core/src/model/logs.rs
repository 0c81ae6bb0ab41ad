//! Log rotation: the summary of the agent's last log check.

use caretaker_proto::pb;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::wire::*;
use super::*;

/// Log rotation on one node: the last pass, totals since the agent started, and what
/// the retention rules could delete now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsSummary {
    /// When the last pass (rotation check plus any retention sweep due) ended.
    pub checked_at: Timestamp,
    /// What the last pass did; most passes find nothing due and are all zero.
    pub last_pass: LogCounts,
    /// Sums over every pass since the agent started.
    pub totals: LogCounts,
    /// Bytes (allocated blocks of files with one link) that the retention rules
    /// (`logs.retention`) would delete now: rotated and compressed logs past their age.
    pub reclaimable_bytes: u64,
    /// When `reclaimable_bytes` was measured (a dry run of the retention rules); absent
    /// without retention rules.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reclaimable_at: Option<Timestamp>,
    /// Problems of the last pass, then config problems, each with its place
    /// (`file:line`, log path or glob); at most [`MAX_ERRORS`].
    pub errors: Vec<CollectorError>,
    /// Logs the policies name that another rotator rotates (the kubelet, the node's own
    /// logrotate), left alone in the last pass, with their owner; the first
    /// [`MAX_OWNED_LISTED`] by path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owned_elsewhere: Vec<OwnedLog>,
    /// How many logs the last pass left to another rotator in all.
    #[serde(default)]
    pub owned_elsewhere_total: u64,
}

/// How many logs owned by another rotator a report lists (their total is counted).
pub const MAX_OWNED_LISTED: usize = 100;

/// A log another rotator owns, left alone by the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedLog {
    pub path: String,
    /// `kubelet`, or `logrotate (FILE:LINE)`: the node logrotate's block naming it.
    pub owner: String,
}

impl From<OwnedLog> for pb::OwnedLog {
    fn from(o: OwnedLog) -> Self {
        Self {
            path: o.path,
            owner: o.owner,
        }
    }
}

impl From<pb::OwnedLog> for OwnedLog {
    fn from(o: pb::OwnedLog) -> Self {
        Self {
            path: o.path,
            owner: o.owner,
        }
    }
}

/// Counts and bytes of log maintenance (one pass, or totals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCounts {
    /// Logs looked at.
    pub files_checked: u64,
    /// Logs rotated (renamed or copied to an archive).
    pub rotated: u64,
    /// Sizes of the logs rotated, in bytes.
    pub rotated_bytes: u64,
    /// Archives compressed.
    pub compressed: u64,
    /// Their size before compression, in bytes.
    pub compressed_bytes_before: u64,
    /// Their size after compression, in bytes.
    pub compressed_bytes_after: u64,
    /// Files deleted: archives beyond `rotate N` or `maxage`, and retention sweeps.
    pub deleted: u64,
    /// Sizes of the files deleted, in bytes.
    pub deleted_bytes: u64,
    /// Failures (a log that could not be rotated, a file a sweep could not delete …).
    pub errors: u64,
}

impl LogCounts {
    /// Adds `other` to these counts (saturating).
    pub fn add(&mut self, other: &LogCounts) {
        self.files_checked = self.files_checked.saturating_add(other.files_checked);
        self.rotated = self.rotated.saturating_add(other.rotated);
        self.rotated_bytes = self.rotated_bytes.saturating_add(other.rotated_bytes);
        self.compressed = self.compressed.saturating_add(other.compressed);
        self.compressed_bytes_before = self
            .compressed_bytes_before
            .saturating_add(other.compressed_bytes_before);
        self.compressed_bytes_after = self
            .compressed_bytes_after
            .saturating_add(other.compressed_bytes_after);
        self.deleted = self.deleted.saturating_add(other.deleted);
        self.deleted_bytes = self.deleted_bytes.saturating_add(other.deleted_bytes);
        self.errors = self.errors.saturating_add(other.errors);
    }

    /// The first field where `self` is larger than `total` (a pass larger than the totals
    /// that include it), with both values.
    fn first_above(&self, total: &LogCounts) -> Option<(&'static str, u64, u64)> {
        [
            ("files_checked", self.files_checked, total.files_checked),
            ("rotated", self.rotated, total.rotated),
            ("rotated_bytes", self.rotated_bytes, total.rotated_bytes),
            ("compressed", self.compressed, total.compressed),
            (
                "compressed_bytes_before",
                self.compressed_bytes_before,
                total.compressed_bytes_before,
            ),
            (
                "compressed_bytes_after",
                self.compressed_bytes_after,
                total.compressed_bytes_after,
            ),
            ("deleted", self.deleted, total.deleted),
            ("deleted_bytes", self.deleted_bytes, total.deleted_bytes),
            ("errors", self.errors, total.errors),
        ]
        .into_iter()
        .find(|(_, a, b)| a > b)
    }
}

impl From<LogsSummary> for pb::LogsSummary {
    fn from(s: LogsSummary) -> Self {
        Self {
            checked_at: Some(ts_to_pb(s.checked_at)),
            last_pass: Some(s.last_pass.into()),
            totals: Some(s.totals.into()),
            reclaimable_bytes: s.reclaimable_bytes,
            reclaimable_at: s.reclaimable_at.map(ts_to_pb),
            errors: s.errors.into_iter().map(Into::into).collect(),
            owned_elsewhere: s.owned_elsewhere.into_iter().map(Into::into).collect(),
            owned_elsewhere_total: s.owned_elsewhere_total,
        }
    }
}

impl TryFrom<pb::LogsSummary> for LogsSummary {
    type Error = InvalidMessage;

    fn try_from(s: pb::LogsSummary) -> Result<Self, Self::Error> {
        let last_pass: LogCounts = s
            .last_pass
            .ok_or_else(|| InvalidMessage::new("last_pass", "missing"))?
            .into();
        let totals: LogCounts = s
            .totals
            .ok_or_else(|| InvalidMessage::new("totals", "missing"))?
            .into();
        if let Some((field, pass, total)) = last_pass.first_above(&totals) {
            return Err(InvalidMessage::new(
                format!("last_pass.{field}"),
                format!("{pass} is more than totals.{field} {total}"),
            ));
        }
        Ok(Self {
            checked_at: ts_from_pb(s.checked_at, "checked_at")?,
            reclaimable_at: s
                .reclaimable_at
                .map(|t| ts_from_pb(Some(t), "reclaimable_at"))
                .transpose()?,
            errors: bounded(s.errors, MAX_ERRORS, "errors")?
                .into_iter()
                .map(Into::into)
                .collect(),
            owned_elsewhere: bounded(s.owned_elsewhere, MAX_OWNED_LISTED, "owned_elsewhere")?
                .into_iter()
                .map(Into::into)
                .collect(),
            owned_elsewhere_total: s.owned_elsewhere_total,
            last_pass,
            totals,
            reclaimable_bytes: s.reclaimable_bytes,
        })
    }
}

impl From<LogCounts> for pb::LogCounts {
    fn from(c: LogCounts) -> Self {
        Self {
            files_checked: c.files_checked,
            rotated: c.rotated,
            rotated_bytes: c.rotated_bytes,
            compressed: c.compressed,
            compressed_bytes_before: c.compressed_bytes_before,
            compressed_bytes_after: c.compressed_bytes_after,
            deleted: c.deleted,
            deleted_bytes: c.deleted_bytes,
            errors: c.errors,
        }
    }
}

impl From<pb::LogCounts> for LogCounts {
    fn from(c: pb::LogCounts) -> Self {
        Self {
            files_checked: c.files_checked,
            rotated: c.rotated,
            rotated_bytes: c.rotated_bytes,
            compressed: c.compressed,
            compressed_bytes_before: c.compressed_bytes_before,
            compressed_bytes_after: c.compressed_bytes_after,
            deleted: c.deleted,
            deleted_bytes: c.deleted_bytes,
            errors: c.errors,
        }
    }
}
