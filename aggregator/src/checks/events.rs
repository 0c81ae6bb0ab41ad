//! Recent Warning events (`kubectl get events -A --field-selector type=Warning`), grouped
//! by reason and involved object.
//!
//! An event's time is the first one set of `series.lastObservedTime`, `eventTime`,
//! `lastTimestamp`, `firstTimestamp` (newer clients set only `eventTime`/`series`, older
//! ones only the timestamps), and `metadata.creationTimestamp` as a last resort. Its count
//! is `series.count`, else `count`, else 1.
//!
//! Code: `warning_event` (warning), one per reason and object however many events repeat
//! it, with the total count, the first and last time seen (absolute, never a relative age)
//! and the newest message; the last time is also the finding's `at`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;

use super::time::{age, human, sd};
use super::{
    CheckResult, ChecksConfig, Finding, ObjectRef, Severity, all_not_applicable, coverage_findings,
};
use crate::cluster::{ClusterState, Resource};

/// When the event last happened (see the module docs for the order of fields).
pub fn event_time(e: &Event) -> Option<Timestamp> {
    e.series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// When the event first happened: `firstTimestamp`, else `eventTime`, else the
/// creation time (an event series keeps its first occurrence in these).
pub fn event_first_time(e: &Event) -> Option<Timestamp> {
    e.first_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// How many times the event happened.
pub fn event_count(e: &Event) -> u64 {
    e.series
        .as_ref()
        .and_then(|s| s.count)
        .or(e.count)
        .map_or(1, |c| c.max(1) as u64)
}

struct Group<'a> {
    count: u64,
    first: Timestamp,
    last: Timestamp,
    message: &'a str,
    uid: Option<&'a str>,
}

/// Runs the events check.
pub fn check(state: &ClusterState, config: &ChecksConfig, now: Timestamp) -> CheckResult {
    let inputs = [Resource::Event];
    if let Some(reason) = all_not_applicable(state, &inputs) {
        return CheckResult::not_applicable("events", reason);
    }
    let window = sd(config.events.window);
    let mut groups: BTreeMap<(&str, &str, &str, &str), Group> = BTreeMap::new();
    let mut warnings = 0u64;
    for e in &state.events {
        if e.type_.as_deref() != Some("Warning") {
            continue;
        }
        let Some(t) = event_time(e) else { continue };
        if age(now, t) > window {
            continue;
        }
        warnings += 1;
        let o = &e.involved_object;
        let key = (
            e.reason.as_deref().unwrap_or(""),
            o.kind.as_deref().unwrap_or(""),
            o.namespace
                .as_deref()
                .or(e.metadata.namespace.as_deref())
                .unwrap_or(""),
            o.name.as_deref().unwrap_or(""),
        );
        let message = e.message.as_deref().unwrap_or("");
        let first = event_first_time(e).map_or(t, |f| f.min(t));
        let g = groups.entry(key).or_insert(Group {
            count: 0,
            first,
            last: t,
            message,
            uid: o.uid.as_deref(),
        });
        g.count += event_count(e);
        g.first = g.first.min(first);
        if t >= g.last {
            g.last = t;
            g.message = message;
        }
    }
    let mut findings = coverage_findings(state, &inputs);
    for ((reason, kind, ns, name), g) in &groups {
        let object = ObjectRef {
            kind: kind.to_string(),
            namespace: (!ns.is_empty()).then(|| ns.to_string()),
            name: name.to_string(),
            uid: g.uid.map(str::to_string),
        };
        let msg = if g.message.is_empty() {
            String::new()
        } else {
            format!(": {}", g.message.trim())
        };
        // The time is the finding's `at`, not "2m ago" in the text: a message changes only
        // when the problem does, so `report --diff` shows real changes.
        findings.push(
            Finding::new(
                "warning_event",
                Severity::Warning,
                object,
                format!(
                    "{reason} x{} (first seen {}, last seen {}){msg}",
                    g.count,
                    g.first.round(jiff::Unit::Second).unwrap_or(g.first),
                    g.last.round(jiff::Unit::Second).unwrap_or(g.last)
                ),
            )
            .with_at(Some(g.last)),
        );
    }
    let summary = format!(
        "{} events, {} Warning events in the last {} on {} object/reason pairs",
        state.events.len(),
        warnings,
        human(window),
        groups.len()
    );
    // The objects judged: every object any event is about (a Warning makes one unhealthy).
    let objects = state
        .events
        .iter()
        .map(|e| {
            let o = &e.involved_object;
            (
                o.kind.as_deref(),
                o.namespace.as_deref().or(e.metadata.namespace.as_deref()),
                o.name.as_deref(),
            )
        })
        .collect::<std::collections::HashSet<_>>()
        .len();
    CheckResult::new("events", summary, findings).with_objects(objects)
}
