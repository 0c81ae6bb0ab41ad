//! Notifications: when a report pages the operators, and the Slack-compatible webhook.
//!
//! # When
//! Each merged report is compared with the [`NotifyState`] left by the previous one:
//! - **status worsened**: the status is worse than the previous report's and at least
//!   `min_severity` (default warning), unless the same or a worse status was notified less
//!   than `flap_grace` (default 1h) ago;
//! - **new critical finding**: a finding at `critical` whose key (see
//!   [`crate::report::finding_key`]) is not already notified.
//!
//! # De-duplication
//! A notified critical finding is not notified again while it stays critical. When it is
//! gone from a report, or no longer critical, it is *cleared*; if it returns within
//! `flap_grace` of clearing it does not notify (a flapping finding pages once); later it
//! notifies again as new. Cleared entries older than `flap_grace` are dropped, so the state
//! holds at most the current critical findings plus those cleared within the grace.
//!
//! The state is committed only once a notification was delivered (or when there is nothing
//! to deliver), so a webhook that fails is retried with the next report. The caller
//! persists [`NotifyState`] (serde) across restarts; a fresh state treats the previous
//! status as `ok`, so an aggregator started in a broken cluster pages once.
//!
//! # Payload
//! `POST` with `Content-Type: application/json`: `{"text": "…", "caretaker": {…}}`. `text`
//! is what Slack (and Mattermost, Rocket.Chat, Teams workflows) show; `caretaker` carries
//! the same facts as fields: `status`, `previous_status` (when it worsened), `score`,
//! `generated_at`, `new_critical_findings` and, when the status worsened,
//! `findings_at_status` (each list at most [`MAX_LISTED`], with `omitted` counting the rest).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::config::NotificationsConfig;
use crate::checks::Severity;
use crate::report::{ClusterReport, TrackedFinding};

/// Findings listed per list in one notification; the rest are counted in `omitted`.
pub(crate) const MAX_LISTED: usize = 20;

/// What has been notified; persisted by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NotifyState {
    /// Status of the last report processed; `None` before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_status: Option<Severity>,
    /// The last status notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) status_notified: Option<StatusNotified>,
    /// Critical findings notified, by key.
    #[serde(default)]
    pub findings: BTreeMap<String, NotifiedFinding>,
}

/// A status that was notified, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StatusNotified {
    pub status: Severity,
    pub at: Timestamp,
}

/// A critical finding that was notified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NotifiedFinding {
    pub(crate) notified_at: Timestamp,
    /// When it was first seen gone (or no longer critical) since it was notified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cleared_at: Option<Timestamp>,
}

/// The JSON body posted to the webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Notification {
    /// The message as people read it (Slack's `text`).
    pub text: String,
    pub caretaker: Details,
}

/// The facts of a notification as fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Details {
    pub status: Severity,
    /// Set when the status worsened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) previous_status: Option<Severity>,
    pub score: u8,
    pub(crate) generated_at: Timestamp,
    pub(crate) new_critical_findings: Listed,
    /// When the status worsened: the findings at the new status, worst first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) findings_at_status: Option<Listed>,
}

/// Up to [`MAX_LISTED`] findings and how many more there were.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Listed {
    pub items: Vec<Item>,
    pub(crate) omitted: usize,
}

/// One finding in a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Item {
    pub key: String,
    pub check: String,
    pub code: String,
    pub severity: Severity,
    /// `Kind/namespace/name`.
    pub object: String,
    pub message: String,
}

/// The notification rule of the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Policy {
    pub min_severity: Severity,
    pub(crate) flap_grace: Duration,
}

impl Policy {
    pub(crate) fn new(config: &NotificationsConfig) -> Policy {
        Policy {
            min_severity: config.min_severity,
            flap_grace: config.flap_grace.get(),
        }
    }

    /// What to send for `report` at `now` given `state`, and the state to keep once it is
    /// sent (or at once, when there is nothing to send).
    pub(crate) fn decide(
        &self,
        state: &NotifyState,
        report: &ClusterReport,
        now: Timestamp,
    ) -> (Option<Notification>, NotifyState) {
        let grace = SignedDuration::try_from(self.flap_grace).unwrap_or(SignedDuration::MAX);
        let within_grace = |since: Timestamp| now.duration_since(since) < grace;
        let mut next = state.clone();
        next.last_status = Some(report.status);

        let previous = state.last_status.unwrap_or(Severity::Ok);
        let recently_notified = state
            .status_notified
            .is_some_and(|s| s.status >= report.status && within_grace(s.at));
        let worsened =
            report.status > previous && report.status >= self.min_severity && !recently_notified;
        if worsened {
            next.status_notified = Some(StatusNotified {
                status: report.status,
                at: now,
            });
        }

        let mut new_critical: Vec<&TrackedFinding> = Vec::new();
        let critical: BTreeMap<&str, &TrackedFinding> = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Critical)
            .map(|f| (f.key.as_str(), f))
            .collect();
        for (key, f) in &critical {
            match state.findings.get(*key) {
                Some(NotifiedFinding {
                    cleared_at: None, ..
                }) => {}
                Some(
                    n @ NotifiedFinding {
                        cleared_at: Some(c),
                        ..
                    },
                ) if within_grace(*c) => {
                    next.findings.insert(
                        (*key).to_string(),
                        NotifiedFinding {
                            cleared_at: None,
                            ..*n
                        },
                    );
                }
                _ => {
                    new_critical.push(f);
                    next.findings.insert(
                        (*key).to_string(),
                        NotifiedFinding {
                            notified_at: now,
                            cleared_at: None,
                        },
                    );
                }
            }
        }
        for (key, n) in next.findings.iter_mut() {
            if !critical.contains_key(key.as_str()) && n.cleared_at.is_none() {
                n.cleared_at = Some(now);
            }
        }
        next.findings
            .retain(|_, n| n.cleared_at.is_none_or(&within_grace));

        if !worsened && new_critical.is_empty() {
            return (None, next);
        }
        let at_status = worsened.then(|| {
            listed(
                report
                    .findings
                    .iter()
                    .filter(|f| f.severity == report.status),
            )
        });
        let details = Details {
            status: report.status,
            previous_status: worsened.then_some(previous),
            score: report.score,
            generated_at: report.generated_at,
            new_critical_findings: listed(new_critical.into_iter()),
            findings_at_status: at_status,
        };
        (
            Some(Notification {
                text: text(&details),
                caretaker: details,
            }),
            next,
        )
    }
}

fn listed<'a>(findings: impl Iterator<Item = &'a TrackedFinding>) -> Listed {
    let mut out = Listed::default();
    for f in findings {
        if out.items.len() < MAX_LISTED {
            out.items.push(Item {
                key: f.key.clone(),
                check: f.check.clone(),
                code: f.code.clone(),
                severity: f.severity,
                object: f.object.to_string(),
                message: f.message.clone(),
            });
        } else {
            out.omitted += 1;
        }
    }
    out
}

fn text(d: &Details) -> String {
    let mut lines = Vec::new();
    match d.previous_status {
        Some(prev) => lines.push(format!(
            "caretaker: cluster status worsened from {prev} to {} (score {}/100)",
            d.status, d.score
        )),
        None => lines.push(format!(
            "caretaker: cluster status {} (score {}/100)",
            d.status, d.score
        )),
    }
    let mut section = |title: String, l: &Listed| {
        lines.push(title);
        lines.extend(
            l.items
                .iter()
                .map(|i| format!("• {} {} {}: {}", i.check, i.code, i.object, i.message)),
        );
        if l.omitted > 0 {
            lines.push(format!("… and {} more", l.omitted));
        }
    };
    let new = &d.new_critical_findings;
    let n = new.items.len() + new.omitted;
    if n > 0 {
        section(
            format!("{n} new critical finding{}:", if n == 1 { "" } else { "s" }),
            new,
        );
    }
    if let Some(at) = d
        .findings_at_status
        .as_ref()
        .filter(|l| !l.items.is_empty())
    {
        // The new critical findings are already listed above.
        let rest = Listed {
            items: at
                .items
                .iter()
                .filter(|i| !new.items.iter().any(|n| n.key == i.key))
                .cloned()
                .collect(),
            omitted: at.omitted,
        };
        if !rest.items.is_empty() {
            section(format!("Findings at {}:", d.status), &rest);
        }
    }
    lines.join("\n")
}

/// A webhook that could not be delivered. The URL is never in the message: a Slack
/// webhook URL is a secret.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot build the webhook HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("webhook POST to {host} failed")]
    Post {
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("webhook at {host} answered {status}: {body}")]
    Status {
        host: String,
        status: u16,
        body: String,
    },
}

/// A Slack-compatible incoming webhook.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    client: reqwest::Client,
    url: String,
    host: String,
}

impl Webhook {
    /// A webhook at `url` (validated by the config) with a whole-request `timeout`.
    ///
    /// # Errors
    /// [`NotifyError::Client`] when the TLS backend cannot initialise.
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Webhook, NotifyError> {
        let client = crate::signals::client(timeout).map_err(NotifyError::Client)?;
        // Scheme, host and port only: the path of a Slack webhook is its secret.
        let host = reqwest::Url::parse(url).map_or_else(
            |_| "the webhook".into(),
            |u| u.origin().ascii_serialization(),
        );
        Ok(Webhook {
            client,
            url: url.to_string(),
            host,
        })
    }

    /// Posts `n` as JSON.
    ///
    /// # Errors
    /// [`NotifyError::Post`] when there is no answer within the timeout or the connection
    /// fails; [`NotifyError::Status`] for an answer other than 2xx, with the start of its body.
    pub(crate) async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let post = |source: reqwest::Error| NotifyError::Post {
            host: self.host.clone(),
            source: source.without_url(),
        };
        let resp = self
            .client
            .post(&self.url)
            .json(n)
            .send()
            .await
            .map_err(post)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        let body: String = body.chars().take(200).collect();
        Err(NotifyError::Status {
            host: self.host.clone(),
            status: status.as_u16(),
            body,
        })
    }
}

/// The policy plus, when a webhook URL is configured, where to deliver.
#[derive(Debug, Clone)]
pub(crate) struct Notifier {
    pub policy: Policy,
    webhook: Option<Webhook>,
}

impl Notifier {
    /// # Errors
    /// See [`Webhook::new`].
    pub(crate) fn new(config: &NotificationsConfig) -> Result<Notifier, NotifyError> {
        let webhook = config
            .webhook_url
            .as_deref()
            .map(|u| Webhook::new(u, config.timeout.get()))
            .transpose()?;
        Ok(Notifier {
            policy: Policy::new(config),
            webhook,
        })
    }

    /// Decides on `report` and delivers what is due; `state` advances only when that
    /// succeeded (or there was nothing to deliver, or no webhook is configured). Returns the
    /// notification, for the log.
    ///
    /// # Errors
    /// The webhook failed; `state` is unchanged, so the next report retries.
    pub(crate) async fn process(
        &self,
        state: &mut NotifyState,
        report: &ClusterReport,
        now: Timestamp,
    ) -> Result<Option<Notification>, NotifyError> {
        let (notification, next) = self.policy.decide(state, report, now);
        if let (Some(n), Some(w)) = (&notification, &self.webhook) {
            w.send(n).await?;
        }
        *state = next;
        Ok(notification)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::post;
    use serde_json::{Value, json};

    use super::*;
    use crate::checks::ObjectRef;
    use crate::report::{SCHEMA_VERSION, finding_key};
    use caretaker_core::error::Chain;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn finding(
        check: &str,
        code: &str,
        severity: Severity,
        ns: &str,
        name: &str,
        message: &str,
    ) -> TrackedFinding {
        let object = ObjectRef {
            kind: "Pod".into(),
            namespace: Some(ns.into()),
            name: name.into(),
            uid: None,
        };
        TrackedFinding {
            key: finding_key(check, code, &object),
            check: check.into(),
            code: code.into(),
            severity,
            object,
            message: message.into(),
            first_seen: ts("2025-06-01T00:00:00Z"),
            last_seen: ts("2025-06-01T00:00:00Z"),
            flaps: 0,
        }
    }

    fn report(
        status: Severity,
        score: u8,
        at: &str,
        findings: Vec<TrackedFinding>,
    ) -> ClusterReport {
        ClusterReport {
            schema_version: SCHEMA_VERSION,
            generated_at: ts(at),
            status,
            score,
            score_parts: vec![],
            nodes: vec![],
            checks_at: None,
            checks: vec![],
            proposals: vec![],
            signals: None,
            disk_pressure: vec![],
            log_check: None,
            findings,
            maintenance: None,
            run: None,
            planning: Default::default(),
        }
    }

    fn crash() -> TrackedFinding {
        finding(
            "pods",
            "crash_loop_back_off",
            Severity::Critical,
            "shop",
            "web-1",
            "container web restarted 12 times",
        )
    }

    fn pending() -> TrackedFinding {
        finding(
            "pods",
            "pending",
            Severity::Warning,
            "shop",
            "worker-2",
            "pending for 20m",
        )
    }

    fn policy() -> Policy {
        Policy::new(&NotificationsConfig::default())
    }

    #[test]
    fn status_worsening_notifies_once_and_respects_min_severity() {
        let p = policy();
        let st = NotifyState::default();
        let (n, st) = p.decide(
            &st,
            &report(Severity::Ok, 100, "2025-06-01T00:00:00Z", vec![]),
            ts("2025-06-01T00:00:00Z"),
        );
        assert_eq!(n, None);
        // ok -> info: below min_severity (warning).
        let (n, st) = p.decide(
            &st,
            &report(Severity::Info, 98, "2025-06-01T00:05:00Z", vec![]),
            ts("2025-06-01T00:05:00Z"),
        );
        assert_eq!(n, None);
        let (n, st) = p.decide(
            &st,
            &report(
                Severity::Warning,
                90,
                "2025-06-01T00:10:00Z",
                vec![pending()],
            ),
            ts("2025-06-01T00:10:00Z"),
        );
        let n = n.unwrap();
        assert_eq!(
            n.text,
            "caretaker: cluster status worsened from info to warning (score 90/100)\nFindings at warning:\n• pods pending Pod/shop/worker-2: pending for 20m"
        );
        assert_eq!(n.caretaker.previous_status, Some(Severity::Info));
        assert_eq!(
            st.status_notified,
            Some(StatusNotified {
                status: Severity::Warning,
                at: ts("2025-06-01T00:10:00Z")
            })
        );
        // Same status again: nothing.
        let (n, st) = p.decide(
            &st,
            &report(
                Severity::Warning,
                90,
                "2025-06-01T00:15:00Z",
                vec![pending()],
            ),
            ts("2025-06-01T00:15:00Z"),
        );
        assert_eq!(n, None);
        // Back to ok and warning again within the grace: nothing; after it: notifies.
        let (_, st) = p.decide(
            &st,
            &report(Severity::Ok, 100, "2025-06-01T00:20:00Z", vec![]),
            ts("2025-06-01T00:20:00Z"),
        );
        let (n, st2) = p.decide(
            &st,
            &report(
                Severity::Warning,
                90,
                "2025-06-01T00:25:00Z",
                vec![pending()],
            ),
            ts("2025-06-01T00:25:00Z"),
        );
        assert_eq!(n, None);
        assert_eq!(st2.last_status, Some(Severity::Warning));
        let (n, _) = p.decide(
            &st,
            &report(
                Severity::Warning,
                90,
                "2025-06-01T01:10:00Z",
                vec![pending()],
            ),
            ts("2025-06-01T01:10:00Z"),
        );
        assert_eq!(n.unwrap().caretaker.previous_status, Some(Severity::Ok));
        // min_severity critical: a warning does not page.
        let strict = Policy {
            min_severity: Severity::Critical,
            ..policy()
        };
        let (n, _) = strict.decide(
            &NotifyState::default(),
            &report(
                Severity::Warning,
                90,
                "2025-06-01T00:00:00Z",
                vec![pending()],
            ),
            ts("2025-06-01T00:00:00Z"),
        );
        assert_eq!(n, None);
    }

    #[test]
    fn a_critical_finding_notifies_once_and_again_only_after_the_grace() {
        let p = policy();
        let t = |m: &str| ts(&format!("2025-06-01T{m}Z"));
        let (_, st) = p.decide(
            &NotifyState::default(),
            &report(Severity::Critical, 50, "2025-06-01T00:00:00Z", vec![]),
            t("00:00:00"),
        );
        // Status already critical (e.g. a stale node); a critical finding appears: notified,
        // without a status change.
        let (n, st) = p.decide(
            &st,
            &report(
                Severity::Critical,
                40,
                "2025-06-01T00:05:00Z",
                vec![crash()],
            ),
            t("00:05:00"),
        );
        let n = n.unwrap();
        assert_eq!(
            n.text,
            "caretaker: cluster status critical (score 40/100)\n1 new critical finding:\n• pods crash_loop_back_off Pod/shop/web-1: container web restarted 12 times"
        );
        assert_eq!(n.caretaker.previous_status, None);
        assert_eq!(n.caretaker.findings_at_status, None);
        // Still there: nothing.
        let (n, st) = p.decide(
            &st,
            &report(
                Severity::Critical,
                40,
                "2025-06-01T00:10:00Z",
                vec![crash()],
            ),
            t("00:10:00"),
        );
        assert_eq!(n, None);
        // Resolves, returns within the hour: nothing (a flap).
        let (_, st) = p.decide(
            &st,
            &report(Severity::Critical, 50, "2025-06-01T00:15:00Z", vec![]),
            t("00:15:00"),
        );
        let key = crash().key;
        assert_eq!(
            st.findings[&key],
            NotifiedFinding {
                notified_at: t("00:05:00"),
                cleared_at: Some(t("00:15:00"))
            }
        );
        let (n, st) = p.decide(
            &st,
            &report(
                Severity::Critical,
                40,
                "2025-06-01T00:20:00Z",
                vec![crash()],
            ),
            t("00:20:00"),
        );
        assert_eq!(n, None);
        assert_eq!(st.findings[&key].cleared_at, None);
        // Only a warning now: cleared, like gone. Gone for more than an hour: forgotten,
        // and its return notifies.
        let mut as_warning = crash();
        as_warning.severity = Severity::Warning;
        let (_, st) = p.decide(
            &st,
            &report(
                Severity::Critical,
                60,
                "2025-06-01T00:25:00Z",
                vec![as_warning],
            ),
            t("00:25:00"),
        );
        assert_eq!(st.findings[&key].cleared_at, Some(t("00:25:00")));
        let (_, st) = p.decide(
            &st,
            &report(Severity::Critical, 50, "2025-06-01T01:25:00Z", vec![]),
            t("01:25:00"),
        );
        assert!(st.findings.is_empty());
        let (n, _) = p.decide(
            &st,
            &report(
                Severity::Critical,
                40,
                "2025-06-01T01:30:00Z",
                vec![crash()],
            ),
            t("01:30:00"),
        );
        assert_eq!(n.unwrap().caretaker.new_critical_findings.items[0].key, key);
    }

    #[test]
    fn state_serializes_for_the_store() {
        let st = NotifyState {
            last_status: Some(Severity::Critical),
            status_notified: Some(StatusNotified {
                status: Severity::Critical,
                at: ts("2025-06-01T00:05:00Z"),
            }),
            findings: [(
                crash().key,
                NotifiedFinding {
                    notified_at: ts("2025-06-01T00:05:00Z"),
                    cleared_at: Some(ts("2025-06-01T00:15:00Z")),
                },
            )]
            .into(),
        };
        let json = serde_json::to_string(&st).unwrap();
        assert_eq!(
            json,
            r#"{"last_status":"critical","status_notified":{"status":"critical","at":"2025-06-01T00:05:00Z"},"findings":{"pods/crash_loop_back_off/Pod/shop/web-1":{"notified_at":"2025-06-01T00:05:00Z","cleared_at":"2025-06-01T00:15:00Z"}}}"#
        );
        assert_eq!(serde_json::from_str::<NotifyState>(&json).unwrap(), st);
        assert_eq!(
            serde_json::from_str::<NotifyState>("{}").unwrap(),
            NotifyState::default()
        );
    }

    #[test]
    fn long_lists_are_capped() {
        let many: Vec<TrackedFinding> = (0..25)
            .map(|i| {
                finding(
                    "pods",
                    "crash_loop_back_off",
                    Severity::Critical,
                    "shop",
                    &format!("web-{i:02}"),
                    "restarting",
                )
            })
            .collect();
        let (n, st) = policy().decide(
            &NotifyState::default(),
            &report(Severity::Critical, 0, "2025-06-01T00:00:00Z", many),
            ts("2025-06-01T00:00:00Z"),
        );
        let n = n.unwrap();
        assert_eq!(n.caretaker.new_critical_findings.items.len(), MAX_LISTED);
        assert_eq!(n.caretaker.new_critical_findings.omitted, 5);
        assert!(n.text.starts_with("caretaker: cluster status worsened from ok to critical (score 0/100)\n25 new critical findings:\n"), "{}", n.text);
        assert!(n.text.ends_with("\n… and 5 more"), "{}", n.text);
        assert_eq!(st.findings.len(), 25);
    }

    type Captured = (Arc<Mutex<Vec<Value>>>, Arc<Mutex<u16>>);

    /// A webhook receiver on 127.0.0.1:0 that records every body and answers with the
    /// status in `answer`.
    async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>, Arc<Mutex<u16>>) {
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let answer = Arc::new(Mutex::new(200u16));
        let app = Router::new()
            .route(
                "/hook/T000/B000/secret",
                post(
                    |State((bodies, answer)): State<Captured>, body: axum::Json<Value>| async move {
                        bodies.lock().unwrap().push(body.0);
                        let code = *answer.lock().unwrap();
                        (
                            StatusCode::from_u16(code).unwrap(),
                            if code == 200 { "ok" } else { "invalid_token" },
                        )
                    },
                ),
            )
            .with_state((bodies.clone(), answer.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (
            format!("http://{addr}/hook/T000/B000/secret"),
            bodies,
            answer,
        )
    }

    #[tokio::test]
    async fn webhook_posts_exact_json_once_per_finding_and_again_after_a_worsening() {
        let (url, bodies, answer) = receiver().await;
        let cfg = NotificationsConfig {
            webhook_url: Some(url.clone()),
            timeout: caretaker_core::config::BoundedDuration::secs(5),
            ..Default::default()
        };
        let notifier = Notifier::new(&cfg).unwrap();
        let mut st = NotifyState::default();

        let r1 = report(
            Severity::Critical,
            40,
            "2025-06-01T00:05:00Z",
            vec![crash(), pending()],
        );
        let sent = notifier
            .process(&mut st, &r1, ts("2025-06-01T00:05:00Z"))
            .await
            .unwrap();
        assert!(sent.is_some());
        assert_eq!(
            bodies.lock().unwrap().clone(),
            vec![json!({
                "text": "caretaker: cluster status worsened from ok to critical (score 40/100)\n1 new critical finding:\n• pods crash_loop_back_off Pod/shop/web-1: container web restarted 12 times",
                "caretaker": {
                    "status": "critical",
                    "previous_status": "ok",
                    "score": 40,
                    "generated_at": "2025-06-01T00:05:00Z",
                    "new_critical_findings": {"items": [{
                        "key": "pods/crash_loop_back_off/Pod/shop/web-1",
                        "check": "pods",
                        "code": "crash_loop_back_off",
                        "severity": "critical",
                        "object": "Pod/shop/web-1",
                        "message": "container web restarted 12 times"
                    }], "omitted": 0},
                    "findings_at_status": {"items": [{
                        "key": "pods/crash_loop_back_off/Pod/shop/web-1",
                        "check": "pods",
                        "code": "crash_loop_back_off",
                        "severity": "critical",
                        "object": "Pod/shop/web-1",
                        "message": "container web restarted 12 times"
                    }], "omitted": 0}
                }
            })]
        );

        // The same report again, and a better one: no post.
        assert_eq!(
            notifier
                .process(&mut st, &r1, ts("2025-06-01T00:10:00Z"))
                .await
                .unwrap(),
            None
        );
        let r2 = report(
            Severity::Warning,
            80,
            "2025-06-01T00:15:00Z",
            vec![pending()],
        );
        assert_eq!(
            notifier
                .process(&mut st, &r2, ts("2025-06-01T00:15:00Z"))
                .await
                .unwrap(),
            None
        );
        assert_eq!(bodies.lock().unwrap().len(), 1);

        // Worse again two hours later (beyond the grace): posted again, the returning
        // finding as new.
        let r3 = report(
            Severity::Critical,
            40,
            "2025-06-01T02:15:00Z",
            vec![crash(), pending()],
        );
        // A failing webhook first: an error without the secret URL, the state unchanged.
        *answer.lock().unwrap() = 500;
        let before = st.clone();
        let err = notifier
            .process(&mut st, &r3, ts("2025-06-01T02:15:00Z"))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "webhook at {} answered 500: invalid_token",
                url.split("/hook").next().unwrap()
            )
        );
        assert!(!err.contains("secret"));
        assert_eq!(st, before);
        // Retried with the next report once the webhook works.
        *answer.lock().unwrap() = 200;
        notifier
            .process(&mut st, &r3, ts("2025-06-01T02:20:00Z"))
            .await
            .unwrap();
        let posted = bodies.lock().unwrap().clone();
        assert_eq!(posted.len(), 3);
        assert_eq!(posted[2]["caretaker"]["previous_status"], json!("warning"));
        assert_eq!(
            posted[2]["caretaker"]["new_critical_findings"]["items"][0]["key"],
            json!("pods/crash_loop_back_off/Pod/shop/web-1")
        );
        assert_eq!(
            st.findings["pods/crash_loop_back_off/Pod/shop/web-1"].notified_at,
            ts("2025-06-01T02:20:00Z")
        );
    }

    #[tokio::test]
    async fn unreachable_webhook_is_an_error_not_a_panic() {
        let cfg = NotificationsConfig {
            webhook_url: Some("http://127.0.0.1:9/hook/secret".into()),
            timeout: caretaker_core::config::BoundedDuration::secs(2),
            ..Default::default()
        };
        let notifier = Notifier::new(&cfg).unwrap();
        let mut st = NotifyState::default();
        let err = notifier
            .process(
                &mut st,
                &report(
                    Severity::Critical,
                    40,
                    "2025-06-01T00:00:00Z",
                    vec![crash()],
                ),
                ts("2025-06-01T00:00:00Z"),
            )
            .await
            .unwrap_err();
        let err = Chain(&err).to_string();
        assert!(
            err.starts_with("webhook POST to http://127.0.0.1:9 failed: "),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
        assert_eq!(st, NotifyState::default());
        // Without a webhook the decision is still made and the state advances.
        let quiet = Notifier::new(&NotificationsConfig::default()).unwrap();
        assert!(
            quiet
                .process(
                    &mut st,
                    &report(
                        Severity::Critical,
                        40,
                        "2025-06-01T00:00:00Z",
                        vec![crash()]
                    ),
                    ts("2025-06-01T00:00:00Z")
                )
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(st.last_status, Some(Severity::Critical));
    }
}
