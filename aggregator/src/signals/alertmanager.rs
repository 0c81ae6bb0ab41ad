//! Alertmanager API v2 (`GET /api/v2/alerts`): alerts firing now, with silenced and
//! inhibited ones kept apart (the seed's weekly alert review looks at both).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::config::AlertmanagerConfig;

/// One alert as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The `alertname` label.
    pub name: String,
    /// The `severity` label, when set.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub severity: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub starts_at: Timestamp,
    /// `summary` or `description` annotation.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub summary: Option<String>,
}

/// Alerts now, split by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertsNow {
    /// Active: neither silenced nor inhibited.
    pub firing: Vec<Alert>,
    /// Matched by a silence.
    pub silenced: Vec<Alert>,
    /// Inhibited by another alert.
    pub inhibited: Vec<Alert>,
    /// Every alert as Alertmanager described it, one line each, for the alert review over
    /// the history ([`super::review`]): empty in reports recorded before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<AlertRecord>,
}

/// One alert of one round, as the history keeps it for the alert review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Alertmanager's fingerprint of the label set: the same alert across rounds.
    pub fingerprint: String,
    /// The `alertname` label.
    pub name: String,
    /// `active`, `suppressed` or `unprocessed`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silenced_by: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) inhibited_by: Vec<String>,
    pub starts_at: Timestamp,
    /// When Alertmanager will consider it resolved unless it is sent again (a firing alert's
    /// is a few evaluation intervals ahead; a resolved one's is its resolution time).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ends_at: Option<Timestamp>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GettableAlert {
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: Timestamp,
    #[serde(default)]
    ends_at: Option<Timestamp>,
    #[serde(default)]
    fingerprint: String,
    status: AlertStatus,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertStatus {
    state: String,
    #[serde(default)]
    silenced_by: Vec<String>,
    #[serde(default)]
    inhibited_by: Vec<String>,
}

/// Errors reading Alertmanager.
#[derive(Debug, thiserror::Error)]
#[error("Alertmanager at {url}")]
pub struct AlertmanagerError {
    pub url: String,
    #[source]
    pub source: reqwest::Error,
}

fn split(alerts: Vec<GettableAlert>) -> AlertsNow {
    let mut out = AlertsNow::default();
    for a in alerts {
        out.records.push(AlertRecord {
            fingerprint: a.fingerprint.clone(),
            name: a.labels.get("alertname").cloned().unwrap_or_default(),
            state: a.status.state.clone(),
            silenced_by: a.status.silenced_by.clone(),
            inhibited_by: a.status.inhibited_by.clone(),
            starts_at: a.starts_at,
            ends_at: a.ends_at,
        });
        let alert = Alert {
            name: a.labels.get("alertname").cloned().unwrap_or_default(),
            severity: a.labels.get("severity").cloned(),
            summary: a
                .annotations
                .get("summary")
                .or_else(|| a.annotations.get("description"))
                .cloned(),
            labels: a.labels,
            starts_at: a.starts_at,
        };
        if !a.status.silenced_by.is_empty() {
            out.silenced.push(alert);
        } else if !a.status.inhibited_by.is_empty() {
            out.inhibited.push(alert);
        } else if a.status.state == "active" {
            out.firing.push(alert);
        }
    }
    out.records.sort_by(|a, b| {
        (&a.name, &a.fingerprint, a.starts_at).cmp(&(&b.name, &b.fingerprint, b.starts_at))
    });
    for v in [&mut out.firing, &mut out.silenced, &mut out.inhibited] {
        v.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then(a.starts_at.cmp(&b.starts_at))
                .then(a.labels.cmp(&b.labels))
        });
    }
    out
}

/// Reads every alert Alertmanager holds now.
///
/// # Errors
/// HTTP errors or an answer that is not API v2 JSON.
pub async fn alerts_now(cfg: &AlertmanagerConfig) -> Result<AlertsNow, AlertmanagerError> {
    let url = format!("{}/api/v2/alerts", cfg.url.trim_end_matches('/'));
    let err = |source| AlertmanagerError {
        url: url.clone(),
        source,
    };
    let client = super::client(cfg.timeout.get()).map_err(err)?;
    let alerts: Vec<GettableAlert> = client
        .get(&url)
        .query(&[
            ("active", "true"),
            ("silenced", "true"),
            ("inhibited", "true"),
            ("unprocessed", "true"),
        ])
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(err)?
        .json()
        .await
        .map_err(err)?;
    Ok(split(alerts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_firing_silenced_and_inhibited() {
        let json = r#"[
          {"labels":{"alertname":"DiskFull","severity":"critical","instance":"n1"},"annotations":{"summary":"disk full"},
           "startsAt":"2026-11-29T01:00:00Z","endsAt":"2026-11-29T05:00:00Z","fingerprint":"a","receivers":[{"name":"null"}],"updatedAt":"2026-11-29T01:00:00Z",
           "status":{"state":"active","silencedBy":[],"inhibitedBy":[]}},
          {"labels":{"alertname":"HighLatency"},"annotations":{},"startsAt":"2026-11-29T02:00:00Z","endsAt":"2026-11-29T05:00:00Z","fingerprint":"b","receivers":[],"updatedAt":"2026-11-29T02:00:00Z",
           "status":{"state":"suppressed","silencedBy":["s1"],"inhibitedBy":[]}},
          {"labels":{"alertname":"NodeDown"},"annotations":{"description":"gone"},"startsAt":"2026-11-29T03:00:00Z","endsAt":"2026-11-29T05:00:00Z","fingerprint":"c","receivers":[],"updatedAt":"2026-11-29T03:00:00Z",
           "status":{"state":"suppressed","silencedBy":[],"inhibitedBy":["x"]}}
        ]"#;
        let now = split(serde_json::from_str(json).unwrap());
        assert_eq!(now.firing.len(), 1);
        assert_eq!(now.firing[0].name, "DiskFull");
        assert_eq!(now.firing[0].severity.as_deref(), Some("critical"));
        assert_eq!(now.firing[0].summary.as_deref(), Some("disk full"));
        assert_eq!(
            now.silenced
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>(),
            vec!["HighLatency"]
        );
        assert_eq!(now.inhibited[0].summary.as_deref(), Some("gone"));
        let records: Vec<String> = now
            .records
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {:?} {:?}",
                    r.name, r.fingerprint, r.state, r.silenced_by, r.inhibited_by
                )
            })
            .collect();
        assert_eq!(
            records,
            vec![
                r#"DiskFull a active [] []"#,
                r#"HighLatency b suppressed ["s1"] []"#,
                r#"NodeDown c suppressed [] ["x"]"#,
            ]
        );
        assert_eq!(
            now.records[0].ends_at,
            Some("2026-11-29T05:00:00Z".parse().unwrap())
        );
    }
}
