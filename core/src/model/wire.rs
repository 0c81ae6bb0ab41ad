//! Validation of wire messages: the error that names the offending field and the checks
//! every `TryFrom<pb::…>` conversion shares.

use jiff::Timestamp;

/// A wire message that cannot become a domain value; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidMessage {
    /// Dotted path of the field (`filesystems[3].used_percent`).
    pub field: String,
    pub reason: String,
}

impl InvalidMessage {
    pub(super) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(super) fn within(self, prefix: &str) -> Self {
        Self {
            field: format!("{prefix}.{}", self.field),
            reason: self.reason,
        }
    }
}

pub(super) fn ts_to_pb(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

pub(super) fn ts_from_pb(
    t: Option<prost_types::Timestamp>,
    field: &str,
) -> Result<Timestamp, InvalidMessage> {
    let t = t.ok_or_else(|| InvalidMessage::new(field, "missing"))?;
    Timestamp::new(t.seconds, t.nanos).map_err(|e| InvalidMessage::new(field, e.to_string()))
}

pub(super) fn finite(v: f64, field: &str) -> Result<f64, InvalidMessage> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(InvalidMessage::new(
            field,
            format!("{v} is not a finite number"),
        ))
    }
}

pub(super) fn percent(v: f64, field: &str) -> Result<f64, InvalidMessage> {
    let v = finite(v, field)?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(InvalidMessage::new(
            field,
            format!("{v} is outside 0..=100"),
        ))
    }
}

pub(super) fn non_negative(v: f64, field: &str) -> Result<f64, InvalidMessage> {
    let v = finite(v, field)?;
    if v >= 0.0 {
        Ok(v)
    } else {
        Err(InvalidMessage::new(field, format!("{v} is negative")))
    }
}

pub(super) fn bounded<T>(v: Vec<T>, max: usize, field: &str) -> Result<Vec<T>, InvalidMessage> {
    if v.len() <= max {
        Ok(v)
    } else {
        Err(InvalidMessage::new(
            field,
            format!("{} entries, at most {max} allowed", v.len()),
        ))
    }
}

pub(super) fn non_empty(v: String, field: &str) -> Result<String, InvalidMessage> {
    if v.is_empty() {
        Err(InvalidMessage::new(field, "empty"))
    } else {
        Ok(v)
    }
}
