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
//!
//! Folding ([`fold`]): a `warning_event` about a Pod that the `pods` check, or a Node that
//! the `nodes` check, already reports (BackOff events of a crash-looping pod, NodeNotReady
//! of a NotReady node) is not reported again: its reason is added to that finding's message
//! (`; Warning events: BackOff`) and its last time to that finding's `times`
//! (`last_event`); the events summary says how many were folded.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;

use super::time::{age, human, sd};
use super::{
    CheckResult, ChecksConfig, Finding, ObjectRef, Severity, all_not_applicable, coverage_findings,
};
use crate::cluster::{ClusterState, Resource};

/// When the event last happened (see the module docs for the order of fields).
pub(crate) fn event_time(e: &Event) -> Option<Timestamp> {
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
pub(crate) fn event_first_time(e: &Event) -> Option<Timestamp> {
    e.first_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// How many times the event happened.
pub(crate) fn event_count(e: &Event) -> u64 {
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

/// Folds the `events` check's findings that repeat a finding of the `pods` check (same
/// Pod) or the `nodes` check (same Node) into that finding (see the module docs). The
/// worst finding of the object takes them; nothing happens unless both checks are in
/// `results`.
pub fn fold(results: &mut [super::CheckResult]) {
    let Some(ev) = results.iter().position(|r| r.name == "events") else {
        return;
    };
    // (kind, namespace, name) → (check index, finding index) of the object's worst finding
    // (findings are sorted worst first, so the first one seen).
    let mut targets: HashMap<(String, Option<String>, String), (usize, usize)> = HashMap::new();
    for (ci, r) in results.iter().enumerate() {
        let kind = match r.name.as_str() {
            "pods" => "Pod",
            "nodes" => "Node",
            _ => continue,
        };
        for (fi, f) in r.findings.iter().enumerate() {
            if f.object.kind == kind && !f.object.name.is_empty() {
                targets
                    .entry((
                        kind.to_string(),
                        f.object.namespace.clone(),
                        f.object.name.clone(),
                    ))
                    .or_insert((ci, fi));
            }
        }
    }
    if targets.is_empty() {
        return;
    }
    let mut folded: BTreeMap<(usize, usize), (Vec<String>, Option<Timestamp>)> = BTreeMap::new();
    let findings = std::mem::take(&mut results[ev].findings);
    let mut kept = Vec::with_capacity(findings.len());
    let mut n = 0usize;
    for f in findings {
        // Node events name a namespace (`default`) although Nodes have none.
        let ns = match f.object.kind.as_str() {
            "Node" => None,
            _ => f.object.namespace.clone(),
        };
        let key = (f.object.kind.clone(), ns, f.object.name.clone());
        match targets.get(&key).filter(|_| f.code == "warning_event") {
            Some(&target) => {
                n += 1;
                let reason = f.message.split(' ').next().unwrap_or_default().to_string();
                let e = folded.entry(target).or_default();
                if !e.0.contains(&reason) {
                    e.0.push(reason);
                }
                e.1 = e.1.max(f.at);
            }
            None => kept.push(f),
        }
    }
    results[ev].findings = kept;
    if n == 0 {
        return;
    }
    let r = &mut results[ev];
    r.recompute_severity();
    r.summary
        .push_str(&format!(", {n} folded into pod and node findings"));
    for ((ci, fi), (mut reasons, last)) in folded {
        reasons.sort();
        let f = &mut results[ci].findings[fi];
        f.message
            .push_str(&format!("; Warning events: {}", reasons.join(", ")));
        if let Some(t) = last {
            f.times.insert("last_event".to_string(), t);
        }
    }
}
