//! The report page: the merged [`ClusterReport`] as one self-contained HTML5 page, served
//! by the aggregator at `GET /report` and printed by `report --output html` and
//! `caretaker-standalone --once --output html`.
//!
//! # What the page shows, top to bottom
//! The page uses the whole width of the screen; on a wide one the overview's two columns
//! sit side by side.
//! - **Header**: date (UTC), status, score, node counts, when the checks ran.
//! - **Overview**: status and score per check, node freshness and disk pressure (the
//!   parts of the score, [`super::score`]); nodes not reporting; the fullest filesystems
//!   ([`OVERVIEW_DISK_ROWS`]) with both thresholds; certificate-expiry and backup timelines
//!   (the moments the `certificates` and `velero` checks' findings carry,
//!   [`crate::checks::Finding::at`], on a time axis with a "now" mark).
//! - **Findings** grouped by namespace and owner (the workload a pod's generated name
//!   comes from, [`owner_name`]), worst group first, each finding with its code's remedy,
//!   and a severity filter (all / critical / warning / info).
//! - **Daily log check** (when agents report one): per pattern the pods with the most
//!   matching lines in 24 h, with the latest matching line.
//! - **Vulnerabilities**: HIGH/CRITICAL per image with its workloads, fixable first, and
//!   the age of the oldest scan ([`images`]).
//! - **Disk usage**: every node and mount, coloured by the merge's thresholds
//!   ([`MergeConfig`] defaults: near at 80 %, kubelet's `imageGCLowThresholdPercent`;
//!   pressure at 85 %, kubelet's `imageGCHighThresholdPercent`).
//! - **Disk pressure**: the cross-links (node, mount, %, what the agent can reclaim, the
//!   kubelet's image-GC and eviction events), each node linking to its row in the node table.
//! - **Network throughput**: receive and transmit bytes per second of each node (the
//!   agent's rates between its two latest counter samples), summed over every interface
//!   except loopback, on one shared scale; left out when no node has a rate above zero.
//! - **Cleanup proposals**, **external signals** (HTTP endpoints, Prometheus figures,
//!   Alertmanager alerts) and a **node table** with one anchor per node.
//!
//! # Rules the page keeps
//! - **No external assets**: CSS is inline, charts are inline SVG whose coordinates are
//!   percentages (a bar of 87.5 % is `width="87.5%"`), and a `Content-Security-Policy` meta
//!   tag forbids loading anything else. It works with no network.
//! - **No script**: the severity filter is radio buttons and CSS sibling selectors; without
//!   CSS every finding is listed.
//! - **Every string from the cluster or an agent is escaped** by `maud`, which escapes
//!   every spliced value (text and attributes) unless told otherwise; the only unescaped
//!   text is the constant style sheet.
//! - **Deterministic**: the page is a function of the report alone (no clock, sorted
//!   input, no hash-map order), so it can be compared in tests.

use caretaker_core::model::{Filesystem, Freshness, NodeStatus};
use caretaker_core::render::bytes;
use jiff::{SignedDuration, Timestamp};
use maud::{DOCTYPE, Markup, PreEscaped, html as markup};

use super::score::{PartKind, ScorePart};
use super::{ClusterReport, MergeConfig, PressureLevel, TrackedFinding};
use crate::checks::{CheckStatus, Finding, ObjectRef, Severity};
use crate::cleanup::Action;

/// Renders `report` as a complete HTML5 page, with the disk thresholds of
/// [`MergeConfig::default`].
pub(crate) fn html(report: &ClusterReport) -> String {
    page(report, &MergeConfig::default()).into_string()
}

/// Renders the findings that differ between two recorded reports as a complete HTML5
/// page (same style sheet and policy as the report page): new, resolved and changed
/// findings, each table with its count.
pub(crate) fn diff_html(d: &crate::store::history::ReportDiff) -> String {
    let when = |t: Option<Timestamp>| t.map_or_else(|| "-".to_string(), fmt_time);
    let title = format!("caretaker findings from {} to {}", when(d.from), when(d.to));
    let section = |name: &str, list: &[super::TrackedFinding]| {
        markup! {
            h2 { (name) " (" (list.len()) ")" }
            @if list.is_empty() {
                p.empty { "None." }
            } @else {
                table {
                    thead { tr { th { "Severity" } th { "Check" } th { "Object" } th { "Finding" } th { "First seen" } th { "Last seen" } } }
                    tbody {
                        @for f in list {
                            tr data-severity=(f.severity.to_string()) {
                                td { span class={ "sev sev-" (f.severity) } { (f.severity) } }
                                td.code { (f.check) "/" (f.code) }
                                td { (f.object.to_string()) }
                                td { (f.message) }
                                td.nowrap { (fmt_time(f.first_seen)) }
                                td.nowrap { (fmt_time(f.last_seen)) }
                            }
                        }
                    }
                }
            }
        }
    };
    let body = markup! {
        main {
            h1 { (title) }
            p.meta { (d.new.len()) " new, " (d.resolved.len()) " resolved, " (d.changed.len()) " changed" }
            (section("New", &d.new))
            (section("Resolved", &d.resolved))
            (section("Changed", &d.changed))
        }
    };
    document(&title, body).into_string()
}

/// A complete page: the shared head (no external assets, the [`CSP`], the style sheet)
/// around `body`.
fn document(title: &str, body: Markup) -> Markup {
    markup! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content=(CSP);
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body { (body) }
        }
    }
}

/// The style sheet; constant, so it is the one thing spliced unescaped.
const CSS: &str = r#"
:root { --ok:#1a7f37; --info:#0969da; --warning:#bf8700; --critical:#cf222e; --muted:#656d76;
        --border:#d0d7de; --track:#eaeef2; --bg:#ffffff; --fg:#1f2328; --soft:#f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 "DejaVu Sans", system-ui, sans-serif; color: var(--fg); background: var(--bg); }
main { margin: 0; padding: 0 24px 40px; }
header.top { display: flex; gap: 20px; align-items: stretch; padding: 18px 20px; background: var(--soft);
             border-bottom: 1px solid var(--border); flex-wrap: wrap; }
header.top .title { flex: 1 1 420px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--border); }
h3 { font-size: 15px; margin: 16px 0 6px; }
.meta { color: var(--muted); margin: 2px 0; }
.tile { min-width: 130px; padding: 10px 16px; border-radius: 8px; color: #fff; text-align: center; }
.tile .label { display: block; font-size: 12px; text-transform: uppercase; letter-spacing: .05em; opacity: .9; }
.tile .value { display: block; font-size: 30px; font-weight: bold; line-height: 1.2; }
.tile .of { font-size: 14px; font-weight: normal; }
.bg-ok { background: var(--ok); } .bg-info { background: var(--info); }
.bg-warning { background: var(--warning); } .bg-critical { background: var(--critical); }
nav { margin: 10px 0 0; font-size: 13px; }
nav a { margin-right: 12px; }
a { color: var(--info); }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--border); vertical-align: top; }
td.wrap { overflow-wrap: anywhere; }
th { background: var(--soft); font-weight: 600; }
td.num, th.num { text-align: right; white-space: nowrap; }
.nowrap { white-space: nowrap; }
.sev { white-space: nowrap; display: inline-block; padding: 0 8px; border-radius: 10px; color: #fff; font-size: 12px; font-weight: 600; }
.sev-ok { background: var(--ok); } .sev-info { background: var(--info); }
.sev-warning { background: var(--warning); } .sev-critical { background: var(--critical); }
.fresh-stale, .fresh-missing { color: var(--critical); font-weight: 600; }
.empty { color: var(--muted); font-style: italic; }
.code { font-family: "DejaVu Sans Mono", monospace; font-size: 12px; }
/* Severity filter: radio buttons and sibling selectors, no script. */
.filter input { position: absolute; opacity: 0; pointer-events: none; }
.filter label { display: inline-block; margin: 0 6px 6px 0; padding: 2px 12px; border: 1px solid var(--border);
                border-radius: 14px; cursor: pointer; background: var(--soft); }
.filter input:checked + label { background: var(--fg); color: #fff; border-color: var(--fg); }
.filter input:focus-visible + label { outline: 2px solid var(--info); }
#sev-critical:checked ~ .groups tbody tr:not([data-severity="critical"]),
#sev-warning:checked ~ .groups tbody tr:not([data-severity="warning"]),
#sev-info:checked ~ .groups tbody tr:not([data-severity="info"]) { display: none; }
#sev-critical:checked ~ .groups .group:not([data-has-critical]),
#sev-warning:checked ~ .groups .group:not([data-has-warning]),
#sev-info:checked ~ .groups .group:not([data-has-info]) { display: none; }
/* Charts: one SVG per row, x in percent of the plot width. */
table.chart td { border-bottom: 1px solid var(--soft); padding: 2px 8px; }
table.chart td.plot { width: 55%; }
svg.bar { display: block; width: 100%; height: 16px; background: var(--track); }
svg.axis { display: block; width: 100%; height: 18px; overflow: visible; }
svg.axis text { font-size: 11px; fill: var(--muted); }
.fill-ok { fill: var(--ok); } .fill-near { fill: var(--warning); } .fill-pressure { fill: var(--critical); }
.fill-stale { fill: #8c959f; } .fill-rx { fill: #0969da; } .fill-tx { fill: #8250df; }
.th-low { stroke: var(--warning); stroke-width: 1.5; stroke-dasharray: 3 2; }
.th-high { stroke: var(--critical); stroke-width: 1.5; stroke-dasharray: 3 2; }
.now { stroke: var(--fg); stroke-width: 1.5; }
.span { stroke: #8c959f; stroke-width: 2; }
.dot-ok { fill: var(--ok); } .dot-info { fill: var(--info); }
.dot-warning { fill: var(--warning); } .dot-critical { fill: var(--critical); }
.legend { color: var(--muted); font-size: 12px; margin: 2px 0 6px; }
.legend .key { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 10px; vertical-align: -1px; }
.key-ok { background: var(--ok); } .key-near { background: var(--warning); } .key-pressure { background: var(--critical); }
.key-rx { background: #0969da; } .key-tx { background: #8250df; }
footer { color: var(--muted); font-size: 12px; margin-top: 30px; }
/* The overview: checks and their scores beside the charts on a wide screen, stacked below 1200 px. */
.overview { display: grid; grid-template-columns: minmax(0, 5fr) minmax(0, 6fr); gap: 8px 32px; align-items: start; }
@media (max-width: 1200px) { .overview { grid-template-columns: minmax(0, 1fr); } }
svg.score { display: inline-block; width: 90px; height: 10px; background: var(--track); vertical-align: middle; margin-right: 6px; }
tr.weightless td { color: var(--muted); }
/* Findings grouped by namespace and owner. */
.group { margin: 10px 0 14px; }
.group h3 { margin: 14px 0 4px; font-size: 14px; }
.group h3 .count { color: var(--muted); font-weight: normal; }
td.remedy { color: var(--muted); font-size: 12px; max-width: 48ch; }
pre.sample { margin: 0; white-space: pre-wrap; word-break: break-all; font-size: 12px; }
@media print { nav, .filter { display: none; } }
"#;

/// What the page forbids loading: nothing but its own inline styles.
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";

fn page(r: &ClusterReport, cfg: &MergeConfig) -> Markup {
    let title = format!(
        "caretaker report {} — {}",
        fmt_time(r.generated_at),
        r.status
    );
    let body = markup! {
        (header(r))
        main {
            (overview(r, cfg))
            (findings(r))
            (log_check(r))
            (vulnerabilities(r))
            (disk_chart(r, cfg))
            (disk_pressure(r))
            (network_chart(r))
            (proposals(r))
            (signals(r))
            (nodes_table(r))
            footer {
                "caretaker-aggregator " (env!("CARGO_PKG_VERSION")) " · report schema " (r.schema_version)
                " · generated " (fmt_time(r.generated_at))
            }
        }
    };
    document(&title, body)
}

// ---------------------------------------------------------------- formatting helpers

/// A time as the page shows it: UTC to the minute.
fn fmt_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// A number with at most two decimals and no trailing zeros (`87.5`, `40`, `66.67`):
/// the form of the percentages in chart coordinates.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return "0".into();
    }
    // Hundredths as an integer: formatting floats with a precision is the page's
    // costliest step at 40,000 bars, integers are cheap.
    let hundredths = (v * 100.0).round();
    if hundredths.abs() >= 1e15 {
        return format!("{v:.0}");
    }
    let h = hundredths as i64;
    let (sign, h) = if h < 0 {
        ("-", h.unsigned_abs())
    } else {
        ("", h.unsigned_abs())
    };
    match (h / 100, h % 100) {
        (0, 0) => "0".into(),
        (i, 0) => format!("{sign}{i}"),
        (i, f) if f % 10 == 0 => format!("{sign}{i}.{}", f / 10),
        (i, f) => format!("{sign}{i}.{f:02}"),
    }
}

/// A percentage clamped to 0–100, as a chart coordinate (`87.5%`).
fn pct(v: f64) -> String {
    format!("{}%", num(v.clamp(0.0, 100.0)))
}

fn rate(bytes_per_second: f64) -> String {
    format!("{}/s", bytes(bytes_per_second.max(0.0).round() as u64))
}

fn freshness_word(f: Freshness) -> &'static str {
    match f {
        Freshness::Fresh => "fresh",
        Freshness::Stale => "stale",
        Freshness::Missing => "missing",
    }
}

/// The anchor of a node's row in the node table.
fn node_anchor(name: &str) -> String {
    format!("node-{name}")
}

fn node_link(name: &str) -> Markup {
    markup! { a href=(format!("#{}", node_anchor(name))) { (name) } }
}

fn sev_badge(s: Severity) -> Markup {
    markup! { span class=(format!("sev sev-{s}")) { (s) } }
}

fn object(o: &ObjectRef) -> String {
    if o.name.is_empty() {
        format!("{} (all)", o.kind)
    } else {
        o.to_string()
    }
}

// ---------------------------------------------------------------- header

fn header(r: &ClusterReport) -> Markup {
    let count = |f: Freshness| r.nodes.iter().filter(|n| n.freshness == f).count();
    let (fresh, stale, missing) = (
        count(Freshness::Fresh),
        count(Freshness::Stale),
        count(Freshness::Missing),
    );
    let by_sev = |s: Severity| r.findings.iter().filter(|f| f.severity == s).count();
    markup! {
        header.top {
            div.title {
                h1 { "caretaker cluster report" }
                p.meta {
                    "Generated " time id="generated" datetime=(r.generated_at.to_string()) { (fmt_time(r.generated_at)) }
                    @match r.checks_at {
                        Some(t) => { " · checks ran " time datetime=(t.to_string()) { (fmt_time(t)) } }
                        None => { " · no cluster checks have run yet" }
                    }
                }
                p.meta {
                    (r.nodes.len()) " nodes: " (fresh) " fresh, " (stale) " stale, " (missing) " missing · findings: "
                    (by_sev(Severity::Critical)) " critical, " (by_sev(Severity::Warning)) " warning, "
                    (by_sev(Severity::Info)) " info"
                }
                nav {
                    a href="#overview" { "Overview" }
                    a href="#findings" { "Findings" }
                    @if r.log_check.is_some() { a href="#log-check" { "Log check" } }
                    a href="#vulnerabilities" { "Vulnerabilities" }
                    a href="#disk" { "Disk" }
                    a href="#pressure" { "Disk pressure" }
                    @if has_rates(r) { a href="#network" { "Network" } }
                    a href="#proposals" { "Cleanup" }
                    a href="#signals" { "Signals" }
                    a href="#nodes" { "Nodes" }
                }
            }
            div id="status" class=(format!("tile bg-{}", r.status)) {
                span.label { "status" }
                span.value { (r.status) }
            }
            div id="score" class=(format!("tile bg-{}", r.status)) {
                span.label { "score" }
                span.value { (r.score) span.of { " / 100" } }
            }
        }
    }
}

// ---------------------------------------------------------------- nodes not reporting

fn not_reporting(r: &ClusterReport) -> Markup {
    let down: Vec<&NodeStatus> = r
        .nodes
        .iter()
        .filter(|n| n.freshness != Freshness::Fresh)
        .collect();
    markup! {
        div id="not-reporting" {
            h3 { "Nodes not reporting" }
            @if down.is_empty() {
                p.empty { "Every node's agent reports." }
            } @else {
                table {
                    thead { tr { th { "node" } th { "state" } th { "last report" } th.num { "reports stored" } } }
                    tbody {
                        @for n in &down {
                            tr data-freshness=(freshness_word(n.freshness)) {
                                td { (node_link(&n.node_name)) }
                                td class=(format!("fresh-{}", freshness_word(n.freshness))) {
                                    @match n.freshness {
                                        Freshness::Missing => "missing: the cluster lists it, no agent report was ever stored",
                                        _ => "stale: no report for longer than its allowed intervals",
                                    }
                                }
                                td.nowrap { (n.received_at.map_or_else(|| "never".to_string(), fmt_time)) }
                                td.num { (n.reports_stored_total) }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- overview

/// Filesystems the overview's disk chart shows: the fullest ones (the whole list is in
/// the disk section further down).
pub(crate) const OVERVIEW_DISK_ROWS: usize = 12;

/// The status of a score part: a check's severity; for node freshness and disk pressure
/// the worst of their objects.
fn part_status(p: &ScorePart) -> Severity {
    if p.critical > 0 && p.kind != PartKind::Nodes {
        Severity::Critical
    } else if p.critical > 0 || p.warning > 0 {
        Severity::Warning
    } else if p.info > 0 {
        Severity::Info
    } else {
        Severity::Ok
    }
}

fn overview(r: &ClusterReport, cfg: &MergeConfig) -> Markup {
    markup! {
        section id="overview" {
            h2 { "Overview" }
            div.overview {
                div {
                    (score_breakdown(r))
                    (not_reporting(r))
                }
                div {
                    (disk_overview(r, cfg))
                    (timelines(r))
                }
            }
        }
    }
}

/// Status and score per check, node freshness and disk pressure: what the overall score
/// is the mean of.
fn score_breakdown(r: &ClusterReport) -> Markup {
    let check = |name: &str| r.checks.iter().find(|c| c.name == name);
    let count = |f: Freshness| r.nodes.iter().filter(|n| n.freshness == f).count();
    markup! {
        h3 id="checks" { "Checks and score" }
        p.legend {
            "Score " (r.score) " / 100: the mean of each part's healthy share of objects (a critical object costs 1, a warning ½; "
            "parts that judged nothing are not counted). Status " (r.status) " is the worst finding."
        }
        @if r.checks.is_empty() {
            p.empty { "No cluster checks have run yet." }
        }
        table id="score-parts" {
            thead { tr { th { "part" } th { "status" } th { "score" } th.num { "objects" } th.num { "critical" } th.num { "warning" } th { "summary" } } }
            tbody {
                @for p in &r.score_parts {
                    @let c = check(&p.name);
                    @let na = c.is_some_and(|c| c.status == CheckStatus::NotApplicable);
                    tr class=[(p.weight <= 0.0).then_some("weightless")] data-part=(p.name) data-score=(num(p.score)) {
                        td { (p.name) }
                        td {
                            @if na { span.empty { "n/a" } }
                            @else { (sev_badge(c.map_or_else(|| part_status(p), |c| c.severity))) }
                        }
                        td.nowrap {
                            @if p.weight > 0.0 {
                                svg.score aria-hidden="true" {
                                    rect class=(format!("fill-{}", score_level(p.score))) width=(pct(p.score)) height="100%" {}
                                }
                                (num(p.score))
                            } @else { span.empty { "not counted" } }
                        }
                        td.num { (p.objects) }
                        td.num { (p.critical) }
                        td.num { (p.warning) }
                        td.wrap {
                            @match (c, p.kind) {
                                (Some(c), _) => { (c.summary) }
                                (None, PartKind::Nodes) => {
                                    (r.nodes.len()) " nodes: " (count(Freshness::Fresh)) " fresh, "
                                    (count(Freshness::Stale)) " stale, " (count(Freshness::Missing)) " missing"
                                }
                                (None, _) => {
                                    (p.critical + p.warning) " of " (p.objects) " reporting nodes at or near disk pressure"
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn score_level(score: f64) -> &'static str {
    if score >= 90.0 {
        "ok"
    } else if score >= 60.0 {
        "near"
    } else {
        "pressure"
    }
}

// ---------------------------------------------------------------- findings, grouped

/// Kubernetes' alphabet for generated name suffixes (`rand.SafeEncodeString`): no vowels,
/// no digits that look like letters.
const GENERATED: &str = "bcdfghjklmnpqrstvwxz2456789";

fn is_generated(seg: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&seg.len()) && seg.chars().all(|c| GENERATED.contains(c))
}

/// The owner a finding is grouped under: the workload an object's name was generated
/// from. A Pod `api-7d9c8b6f5d-x2b4z` (Deployment → ReplicaSet hash → pod suffix), a Pod
/// `agent-x2b4z` (DaemonSet or Job) and a Pod `db-0` (StatefulSet) belong to `api`,
/// `agent` and `db`; a ReplicaSet `api-7d9c8b6f5d` to `api`; any other object to itself.
pub(crate) fn owner_name(o: &ObjectRef) -> &str {
    let name = o.name.as_str();
    match o.kind.as_str() {
        "Pod" => {
            if let Some((base, last)) = name.rsplit_once('-') {
                if is_generated(last, 5, 5) {
                    if let Some((owner, hash)) = base.rsplit_once('-')
                        && is_generated(hash, 6, 10)
                    {
                        return owner;
                    }
                    return base;
                }
                if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
                    return base;
                }
            }
            name
        }
        "ReplicaSet" => match name.rsplit_once('-') {
            Some((owner, hash)) if is_generated(hash, 6, 10) => owner,
            _ => name,
        },
        _ => name,
    }
}

/// The findings of one namespace and owner.
struct Group<'a> {
    namespace: Option<&'a str>,
    owner: &'a str,
    findings: Vec<&'a TrackedFinding>,
}

impl Group<'_> {
    fn worst(&self) -> Severity {
        self.findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok)
    }
    fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }
}

/// Findings above ok grouped by namespace and owner; groups worst first (then by the
/// number of critical and warning findings, namespace and owner), findings worst first.
fn groups(r: &ClusterReport) -> Vec<Group<'_>> {
    let mut by: std::collections::BTreeMap<(Option<&str>, &str), Vec<&TrackedFinding>> =
        std::collections::BTreeMap::new();
    for f in r.findings.iter().filter(|f| f.severity > Severity::Ok) {
        by.entry((f.object.namespace.as_deref(), owner_name(&f.object)))
            .or_default()
            .push(f);
    }
    let mut out: Vec<Group<'_>> = by
        .into_iter()
        .map(|((namespace, owner), mut findings)| {
            findings.sort_by(|a, b| {
                b.severity
                    .cmp(&a.severity)
                    .then_with(|| a.object.cmp(&b.object))
                    .then_with(|| a.key.cmp(&b.key))
            });
            Group {
                namespace,
                owner,
                findings,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.worst()
            .cmp(&a.worst())
            .then_with(|| {
                b.count(Severity::Critical)
                    .cmp(&a.count(Severity::Critical))
            })
            .then_with(|| b.count(Severity::Warning).cmp(&a.count(Severity::Warning)))
            .then_with(|| a.namespace.cmp(&b.namespace))
            .then_with(|| a.owner.cmp(b.owner))
    });
    out
}

fn remedy(code: &str) -> &'static str {
    crate::checks::codes::lookup(code).map_or("", |c| c.remedy)
}

fn findings(r: &ClusterReport) -> Markup {
    let shown = r
        .findings
        .iter()
        .filter(|f| f.severity > Severity::Ok)
        .count();
    let count = |s: Severity| r.findings.iter().filter(|f| f.severity == s).count();
    let groups = groups(r);
    markup! {
        section id="findings" {
            h2 { "Findings by namespace and owner" }
            @if shown == 0 {
                p.empty { "No findings." }
            } @else {
                p.legend { "Worst first; each with what to do (the codes and remedies are listed in aggregator/CHECKS.md)." }
                div.filter role="group" aria-label="severity filter" {
                    input type="radio" name="severity" id="sev-all" value="all" checked;
                    label for="sev-all" { "all (" (shown) ")" }
                    @for s in [Severity::Critical, Severity::Warning, Severity::Info] {
                        input type="radio" name="severity" id=(format!("sev-{s}")) value=(s.to_string());
                        label for=(format!("sev-{s}")) { (s) " (" (count(s)) ")" }
                    }
                    div.groups {
                        @for g in &groups {
                            div.group data-namespace=(g.namespace.unwrap_or("")) data-owner=(g.owner)
                                data-has-critical[g.count(Severity::Critical) > 0]
                                data-has-warning[g.count(Severity::Warning) > 0]
                                data-has-info[g.count(Severity::Info) > 0] {
                                h3 {
                                    (sev_badge(g.worst())) " "
                                    @match g.namespace { Some(ns) => { "namespace " (ns) }, None => { "cluster-scoped" } }
                                    " · " (g.owner)
                                    span.count { " (" (g.findings.len()) ")" }
                                }
                                table {
                                    thead {
                                        tr { th { "severity" } th { "check" } th { "object" } th { "finding" } th { "remedy" } th { "first seen" } th.num { "flaps" } }
                                    }
                                    tbody {
                                        @for f in &g.findings {
                                            tr data-severity=(f.severity.to_string()) {
                                                td { (sev_badge(f.severity)) }
                                                td { (f.check) br; span.code { (f.code) } }
                                                td { (object(&f.object)) }
                                                td { (f.message) }
                                                td.remedy { (remedy(&f.code)) }
                                                td.nowrap { (fmt_time(f.first_seen)) }
                                                td.num { (f.flaps) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- log check

/// Longest sample line shown, in characters (the agents truncate too).
const SAMPLE_CHARS: usize = 300;

fn sample_text(s: &str) -> String {
    let clean: String = s
        .chars()
        .take(SAMPLE_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if s.chars().nth(SAMPLE_CHARS).is_some() {
        clean + "…"
    } else {
        clean
    }
}

fn log_check(r: &ClusterReport) -> Markup {
    let Some(l) = &r.log_check else {
        return markup! {};
    };
    markup! {
        section id="log-check" {
            h2 { "Daily log check" }
            p.legend {
                "Lines of the last 24 h matching each pattern, per container, from " (l.nodes_checked) " node(s) (oldest check "
                (fmt_time(l.oldest_check)) ", " (bytes(l.bytes_read)) " read, " (l.errors) " error(s)); the pods with the most per pattern, with their latest matching line."
            }
            @if l.top.is_empty() {
                p.empty { "No line matched any pattern." }
            }
            @for pattern in &l.patterns {
                @let rows: Vec<_> = l.top.iter().filter(|e| &e.entry.pattern == pattern).collect();
                @if !rows.is_empty() {
                    h3 { "Pattern " span.code { (pattern) } }
                    table.log-check data-pattern=(pattern) {
                        thead { tr { th { "pod" } th { "container" } th { "node" } th.num { "24 h" } th.num { "24 h before" } th { "sample line" } } }
                        tbody {
                            @for e in rows {
                                tr {
                                    td { (e.entry.namespace) "/" (e.entry.pod) }
                                    td { (e.entry.container) }
                                    td { (node_link(&e.node_name)) }
                                    td.num { (e.entry.count) }
                                    td.num { (e.entry.previous_count) }
                                    td { @match &e.entry.sample { Some(s) => pre.sample { (sample_text(s)) }, None => span.empty { "-" } } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- vulnerabilities

/// HIGH and CRITICAL vulnerabilities of one image, as the `vulnerabilities` check's
/// findings state them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ImageVulnerabilities {
    pub image: String,
    pub critical: u64,
    pub critical_fixable: u64,
    pub high: u64,
    pub high_fixable: u64,
    /// `Kind/namespace/name (container)` of each workload running it.
    pub workloads: Vec<String>,
    /// The oldest scan of the image.
    pub(crate) oldest_scan: Option<Timestamp>,
}

/// Reads `container C image I: N CRITICAL (M fixable), H HIGH (K fixable)` from the head
/// of a `vulnerabilities_fixable`/`vulnerabilities_unfixed` message (the form
/// [`crate::checks::vulnerabilities::check`] writes; its test pins it).
fn parse_counts(message: &str) -> Option<(String, String, [u64; 4])> {
    let rest = message.strip_prefix("container ")?;
    let (container, rest) = rest.split_once(" image ")?;
    let (image, rest) = rest.split_once(": ")?;
    let nums: Vec<u64> = rest
        .split(';')
        .next()?
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .filter_map(|t| t.parse().ok())
        .collect();
    match nums.as_slice() {
        [c, cf, h, hf] => Some((container.to_string(), image.to_string(), [*c, *cf, *h, *hf])),
        _ => None,
    }
}

/// Per image, from the `vulnerabilities` check's findings: fixable first (most fixable
/// CRITICAL, then HIGH), then by CRITICAL and HIGH counts and name.
pub(crate) fn images(r: &ClusterReport) -> Vec<ImageVulnerabilities> {
    let mut by: std::collections::BTreeMap<String, ImageVulnerabilities> =
        std::collections::BTreeMap::new();
    let findings = r
        .checks
        .iter()
        .filter(|c| c.name == crate::checks::vulnerabilities::CHECK)
        .flat_map(|c| &c.findings)
        .filter(|f| {
            matches!(
                f.code.as_str(),
                "vulnerabilities_fixable" | "vulnerabilities_unfixed"
            )
        });
    for f in findings {
        let Some((container, image, [c, cf, h, hf])) = parse_counts(&f.message) else {
            continue;
        };
        let e = by
            .entry(image.clone())
            .or_insert_with(|| ImageVulnerabilities {
                image,
                ..ImageVulnerabilities::default()
            });
        // The same image scanned in several workloads has the same vulnerabilities: the
        // counts of one scan, the workloads of all.
        if e.workloads.is_empty() {
            (e.critical, e.critical_fixable, e.high, e.high_fixable) = (c, cf, h, hf);
        }
        e.workloads.push(format!("{} ({container})", f.object));
        e.oldest_scan = match (e.oldest_scan, f.at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let mut v: Vec<ImageVulnerabilities> = by.into_values().collect();
    v.sort_by(|a, b| {
        (b.critical_fixable, b.high_fixable, b.critical, b.high)
            .cmp(&(a.critical_fixable, a.high_fixable, a.critical, a.high))
            .then_with(|| a.image.cmp(&b.image))
    });
    v
}

fn vulnerabilities(r: &ClusterReport) -> Markup {
    let check = r
        .checks
        .iter()
        .find(|c| c.name == crate::checks::vulnerabilities::CHECK);
    let images = images(r);
    let age = |t: Timestamp| {
        let days = r.generated_at.duration_since(t).as_hours() / 24;
        format!("{days} d")
    };
    markup! {
        section id="vulnerabilities" {
            h2 { "Vulnerabilities (HIGH and CRITICAL, per image)" }
            @match check {
                None => p.empty { "The vulnerabilities check has not run." },
                Some(c) if c.status == CheckStatus::NotApplicable => p.empty { "No trivy-operator VulnerabilityReports: " (c.summary) },
                Some(c) => {
                    p.legend { (c.summary) ". Fixable (a fixed version exists) first; the scan age is the oldest scan's, as of the report." }
                    @if images.is_empty() {
                        p.empty { "No image has HIGH or CRITICAL vulnerabilities." }
                    } @else {
                        table id="vulnerability-images" {
                            thead { tr { th { "image" } th.num { "CRITICAL" } th.num { "fixable" } th.num { "HIGH" } th.num { "fixable" } th { "workloads" } th.nowrap { "scanned" } } }
                            tbody {
                                @for i in &images {
                                    tr data-image=(i.image) data-severity=(if i.critical_fixable > 0 { "critical" } else if i.high_fixable > 0 { "warning" } else { "info" }) {
                                        td.code { (i.image) }
                                        td.num { (i.critical) }
                                        td.num { (i.critical_fixable) }
                                        td.num { (i.high) }
                                        td.num { (i.high_fixable) }
                                        td { @for w in &i.workloads { div { (w) } } }
                                        td.nowrap {
                                            @match i.oldest_scan {
                                                Some(t) => { (t.strftime("%Y-%m-%d").to_string()) " (" (age(t)) " ago)" }
                                                None => span.empty { "unknown" },
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- disk chart

fn disk_level(used: f64, cfg: &MergeConfig) -> &'static str {
    if used >= cfg.pressure_percent {
        "pressure"
    } else if used >= cfg.near_percent {
        "near"
    } else {
        "ok"
    }
}

/// The percentage scale with the thresholds marked.
fn percent_axis(cfg: &MergeConfig) -> Markup {
    markup! {
        svg.axis role="presentation" {
            @for p in [0u32, 20, 40, 60, 80, 100] {
                text x=(format!("{p}%")) y="12" text-anchor=(match p { 0 => "start", 100 => "end", _ => "middle" }) { (p) " %" }
            }
            line.th-low x1=(pct(cfg.near_percent)) x2=(pct(cfg.near_percent)) y1="14" y2="18" {}
            line.th-high x1=(pct(cfg.pressure_percent)) x2=(pct(cfg.pressure_percent)) y1="14" y2="18" {}
        }
    }
}

fn by_mountpoint(fs: &[Filesystem]) -> Vec<&Filesystem> {
    let mut v: Vec<&Filesystem> = fs.iter().collect();
    v.sort_by(|a, b| {
        a.mountpoint
            .cmp(&b.mountpoint)
            .then_with(|| a.device_id.cmp(&b.device_id))
    });
    v
}

/// One filesystem's bar, with the node's link when `first` (the node's first row).
fn disk_row(node: &str, first: bool, f: &Filesystem, cfg: &MergeConfig) -> Markup {
    markup! {
        @let level = if f.stale { "stale" } else { disk_level(f.used_percent, cfg) };
                                    tr data-node=(node) data-mount=(f.mountpoint) data-level=(level) {
                                        td { @if first { (node_link(node)) } }
                                        td.code.wrap { (f.mountpoint) }
                                        td.plot {
                                            // The row's text says the same: the bar is decoration for
                                            // assistive technology, and lean (a row per mount at 5,000 nodes).
                                            svg.bar aria-hidden="true" {
                                                @if !f.stale {
                                                    rect class=(format!("used fill-{level}")) width=(pct(f.used_percent)) height="100%" {}
                                                }
                                                line.th-low x1=(pct(cfg.near_percent)) x2=(pct(cfg.near_percent)) y2="100%" {}
                                                line.th-high x1=(pct(cfg.pressure_percent)) x2=(pct(cfg.pressure_percent)) y2="100%" {}
                                            }
                                        }
                                        td.num {
                                            @if f.stale { "stale (statvfs timed out)" }
                                            @else { (format!("{:.1}", f.used_percent)) " % of " (bytes(f.size_bytes)) }
                                        }
                                    }
    }
}

/// The overview's disk chart: the [`OVERVIEW_DISK_ROWS`] fullest filesystems.
fn disk_overview(r: &ClusterReport, cfg: &MergeConfig) -> Markup {
    let mut all: Vec<(&str, &Filesystem)> = r
        .nodes
        .iter()
        .filter_map(|n| n.report.as_ref().map(|rep| (n.node_name.as_str(), rep)))
        .flat_map(|(name, rep)| {
            rep.filesystems
                .iter()
                .filter(|f| !f.stale)
                .map(move |f| (name, f))
        })
        .collect();
    let total = all.len();
    all.sort_by(|a, b| {
        b.1.used_percent
            .total_cmp(&a.1.used_percent)
            .then_with(|| a.0.cmp(b.0))
            .then_with(|| a.1.mountpoint.cmp(&b.1.mountpoint))
    });
    all.truncate(OVERVIEW_DISK_ROWS);
    markup! {
        h3 { "Fullest filesystems" }
        @if all.is_empty() {
            p.empty { "No agent reports a filesystem." }
        } @else {
            p.legend {
                "The " (all.len()) " fullest of " (total) " filesystems (all of them under " a href="#disk" { "Disk usage" } ")."
                span.key.key-near {} "near " (num(cfg.near_percent)) " %"
                span.key.key-pressure {} "pressure " (num(cfg.pressure_percent)) " %"
            }
            table.chart id="disk-overview" {
                thead { tr { th { "node" } th { "mount" } th.plot { (percent_axis(cfg)) } th.num { "used" } } }
                tbody {
                    @for (node, f) in &all {
                        (disk_row(node, true, f, cfg))
                    }
                }
            }
        }
    }
}

fn disk_chart(r: &ClusterReport, cfg: &MergeConfig) -> Markup {
    markup! {
        section id="disk" {
            h2 { "Disk usage per node and mount" }
            p.legend {
                "Used share of each filesystem (as df's Use%)."
                span.key.key-ok {} "below " (num(cfg.near_percent)) " %"
                span.key.key-near {} "near: from " (num(cfg.near_percent)) " % (kubelet imageGCLowThresholdPercent)"
                span.key.key-pressure {} "pressure: from " (num(cfg.pressure_percent)) " % (kubelet imageGCHighThresholdPercent)"
            }
            table.chart id="disk-chart" {
                thead { tr { th { "node" } th { "mount" } th.plot { (percent_axis(cfg)) } th.num { "used" } } }
                tbody {
                    @for n in &r.nodes {
                        @match &n.report {
                            None => {
                                tr data-node=(n.node_name) {
                                    td { (node_link(&n.node_name)) }
                                    td.empty colspan="3" { "no agent report (" (freshness_word(n.freshness)) ")" }
                                }
                            }
                            Some(rep) => {
                                @let fs = by_mountpoint(&rep.filesystems);
                                @if fs.is_empty() {
                                    tr data-node=(n.node_name) {
                                        td { (node_link(&n.node_name)) }
                                        td.empty colspan="3" { "the agent reports no filesystems" }
                                    }
                                }
                                @for (i, f) in fs.iter().enumerate() {
                                    (disk_row(&n.node_name, i == 0, f, cfg))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- disk pressure cross-links

fn disk_pressure(r: &ClusterReport) -> Markup {
    markup! {
        section id="pressure" {
            h2 { "Disk pressure" }
            @if r.disk_pressure.is_empty() {
                p.empty { "No node is at or near disk pressure." }
            } @else {
                table {
                    thead { tr { th { "node" } th { "mount" } th.num { "used" } th { "level" } th.num { "reclaimable by the agent" } th { "kubelet events" } } }
                    tbody {
                        @for d in &r.disk_pressure {
                            tr data-node=(d.node_name) {
                                td { (node_link(&d.node_name)) }
                                td.code { (d.mountpoint) }
                                td.num { (format!("{:.1}", d.used_percent)) " %" }
                                td {
                                    @match d.level {
                                        PressureLevel::Pressure => span.sev.sev-critical { "pressure" },
                                        PressureLevel::Near => span.sev.sev-warning { "near" },
                                    }
                                }
                                td.num { (d.reclaimable_bytes.map_or_else(|| "not reported".to_string(), bytes)) }
                                td {
                                    @if d.events.is_empty() { span.empty { "none" } }
                                    @for e in &d.events {
                                        div {
                                            span.code { (e.reason) } " ×" (e.count) ": " (e.message)
                                            @if let Some(t) = e.last_seen { " (last " (fmt_time(t)) ")" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- network chart

/// A node's receive and transmit bytes per second, summed over every interface but
/// loopback that has rates.
#[derive(Debug, Clone, Copy)]
struct Throughput {
    rx: f64,
    tx: f64,
    /// Interfaces summed.
    interfaces: usize,
}

fn node_rates(n: &NodeStatus) -> Option<Throughput> {
    let rep = n.report.as_ref()?;
    let mut rx = 0.0;
    let mut tx = 0.0;
    let mut count = 0;
    for i in rep.network.iter().filter(|i| i.device != "lo") {
        if let Some(r) = i.rates {
            rx += r.receive_bytes_per_second;
            tx += r.transmit_bytes_per_second;
            count += 1;
        }
    }
    (count > 0).then_some(Throughput {
        rx,
        tx,
        interfaces: count,
    })
}

/// Whether any node has a rate above zero to draw.
fn has_rates(r: &ClusterReport) -> bool {
    r.nodes
        .iter()
        .filter_map(node_rates)
        .any(|t| t.rx > 0.0 || t.tx > 0.0)
}

/// The nodes' throughput from their agents' rates (bytes per second between the agent's
/// two latest samples of the interface counters); left out entirely when no node has a
/// rate above zero, and nodes without rates are listed under the chart, not as empty bars.
fn network_chart(r: &ClusterReport) -> Markup {
    if !has_rates(r) {
        return markup! {};
    }
    let rows: Vec<(&NodeStatus, Throughput)> = r
        .nodes
        .iter()
        .filter_map(|n| node_rates(n).map(|t| (n, t)))
        .collect();
    let without: Vec<&str> = r
        .nodes
        .iter()
        .filter(|n| node_rates(n).is_none())
        .map(|n| n.node_name.as_str())
        .collect();
    let max = rows
        .iter()
        .map(|(_, t)| t.rx.max(t.tx))
        .fold(0.0_f64, f64::max);
    let share = |v: f64| {
        if max > 0.0 {
            pct(v / max * 100.0)
        } else {
            "0%".into()
        }
    };
    markup! {
        section id="network" {
            h2 { "Network throughput per node" }
            p.legend {
                "Bytes per second from each node's latest rates, summed over its interfaces except loopback; bars share one scale (longest = "
                (rate(max)) ")."
                span.key.key-rx {} "receive" span.key.key-tx {} "transmit"
            }
            table.chart id="network-chart" {
                thead { tr { th { "node" } th.plot { "throughput" } th.num { "receive" } th.num { "transmit" } } }
                tbody {
                    @for (n, t) in &rows {
                        tr data-node=(n.node_name) {
                            td { (node_link(&n.node_name)) }
                            td.plot {
                                svg.bar aria-hidden="true" {
                                    rect.rx.fill-rx y="0" width=(share(t.rx)) height="50%" {}
                                    rect.tx.fill-tx y="50%" width=(share(t.tx)) height="50%" {}
                                }
                            }
                            td.num title=(format!("{} interface(s)", t.interfaces)) { (rate(t.rx)) }
                            td.num { (rate(t.tx)) }
                        }
                    }
                }
            }
            @if !without.is_empty() {
                p.empty { "No rates yet (no agent report, first sample or counter reset): " (without.join(", ")) }
            }
        }
    }
}

// ---------------------------------------------------------------- timelines

/// One mark on a timeline.
struct Mark<'a> {
    finding: &'a Finding,
    at: Timestamp,
}

/// The findings of check `name` that carry a moment, oldest first.
fn marks<'a>(r: &'a ClusterReport, name: &str) -> Vec<Mark<'a>> {
    let mut v: Vec<Mark<'a>> = r
        .checks
        .iter()
        .filter(|c| c.name == name)
        .flat_map(|c| &c.findings)
        .filter_map(|f| f.at.map(|at| Mark { finding: f, at }))
        .collect();
    v.sort_by(|a, b| {
        a.at.cmp(&b.at)
            .then_with(|| a.finding.object.cmp(&b.finding.object))
            .then_with(|| a.finding.code.cmp(&b.finding.code))
    });
    v
}

/// A time axis from `start` to `end`, with ticks at round steps.
struct Axis {
    start: Timestamp,
    end: Timestamp,
}

impl Axis {
    /// Covers `now` and every mark, padded by 5 % on each side (one day each side when
    /// everything is at one moment).
    fn covering(now: Timestamp, marks: &[Timestamp]) -> Axis {
        let lo = marks.iter().copied().fold(now, Timestamp::min);
        let hi = marks.iter().copied().fold(now, Timestamp::max);
        let span = hi.duration_since(lo);
        let pad = if span.is_zero() {
            SignedDuration::from_hours(24)
        } else {
            span / 20
        };
        Axis {
            start: lo.saturating_sub(pad).unwrap_or(lo),
            end: hi.saturating_add(pad).unwrap_or(hi),
        }
    }

    /// Where `t` falls, in percent of the axis.
    fn x(&self, t: Timestamp) -> String {
        let total = self.end.duration_since(self.start).as_secs_f64();
        let at = t.duration_since(self.start).as_secs_f64();
        pct(if total > 0.0 {
            at / total * 100.0
        } else {
            50.0
        })
    }

    /// Ticks at the smallest round step that gives at most 7 of them, aligned to UTC.
    fn ticks(&self) -> (Vec<Timestamp>, &'static str) {
        const HOUR: i64 = 3600;
        const DAY: i64 = 24 * HOUR;
        let steps = [
            HOUR,
            3 * HOUR,
            6 * HOUR,
            12 * HOUR,
            DAY,
            2 * DAY,
            7 * DAY,
            14 * DAY,
            30 * DAY,
            90 * DAY,
            180 * DAY,
            365 * DAY,
        ];
        let (s, e) = (self.start.as_second(), self.end.as_second());
        let step = steps
            .iter()
            .copied()
            .find(|st| (e - s) / st <= 7)
            .unwrap_or(365 * DAY);
        let first = s.div_euclid(step) * step + if s.rem_euclid(step) == 0 { 0 } else { step };
        let ticks = (0..)
            .map(|i| first + i * step)
            .take_while(|t| *t <= e)
            .filter_map(|t| Timestamp::from_second(t).ok())
            .collect();
        (
            ticks,
            if step < DAY {
                "%m-%d %H:%M"
            } else {
                "%Y-%m-%d"
            },
        )
    }

    fn markup(&self, now: Timestamp) -> Markup {
        let (ticks, format) = self.ticks();
        markup! {
            svg.axis role="presentation" {
                @for t in ticks {
                    text x=(self.x(t)) y="12" text-anchor="middle" { (t.strftime(format).to_string()) }
                }
                line.now x1=(self.x(now)) x2=(self.x(now)) y1="13" y2="18" {}
            }
        }
    }
}

fn timeline(
    r: &ClusterReport,
    id: &str,
    title: &str,
    check: &str,
    when: &str,
    empty: &str,
) -> Markup {
    let marks = marks(r, check);
    let ran = r
        .checks
        .iter()
        .any(|c| c.name == check && c.status == CheckStatus::Ran);
    let now = r.generated_at;
    let axis = Axis::covering(now, &marks.iter().map(|m| m.at).collect::<Vec<_>>());
    markup! {
        h3 { (title) }
        @if marks.is_empty() {
            p.empty {
                @if ran { (empty) } @else { "The " (check) " check has not run or does not apply to this cluster." }
            }
        } @else {
            table.chart id=(id) {
                thead { tr { th { "object" } th.plot { (axis.markup(now)) } th.nowrap { (when) } th { "finding" } } }
                tbody {
                    @for m in &marks {
                        @let f = m.finding;
                        tr data-severity=(f.severity.to_string()) data-at=(m.at.to_string()) {
                            td.wrap { (object(&f.object)) }
                            td.plot {
                                svg.bar role="img" aria-label=(format!("{}: {}", object(&f.object), fmt_time(m.at))) {
                                    title { (object(&f.object)) ": " (fmt_time(m.at)) }
                                    line.span x1=(axis.x(now)) x2=(axis.x(m.at)) y1="50%" y2="50%" {}
                                    line.now x1=(axis.x(now)) x2=(axis.x(now)) y1="0" y2="100%" {}
                                    circle class=(format!("dot-{}", f.severity)) cx=(axis.x(m.at)) cy="50%" r="6" {}
                                }
                            }
                            td.nowrap { (fmt_time(m.at)) }
                            // Short in the overview: the message is the tooltip and in the findings.
                            td title=(f.message) { (sev_badge(f.severity)) " " span.code { (f.code) } }
                        }
                    }
                }
            }
        }
    }
}

fn timelines(r: &ClusterReport) -> Markup {
    markup! {
        div id="timelines" {
            h3 { "Certificates and backups" }
            p.legend { "The vertical line is the report's time (" (fmt_time(r.generated_at)) "); each dot is one object's moment, coloured by severity." }
            (timeline(r, "certificate-timeline", "Certificate expiry", "certificates", "expires (notAfter)",
                "No certificate expires within the warning window."))
            (timeline(r, "backup-timeline", "Backups", "velero", "backup time",
                "No backup or schedule has a problem."))
        }
    }
}

// ---------------------------------------------------------------- proposals, checks, signals

fn proposals(r: &ClusterReport) -> Markup {
    markup! {
        section id="proposals" {
            h2 { "Cleanup proposals" }
            @if r.proposals.is_empty() {
                p.empty { "Nothing to clean up." }
            } @else {
                p.legend { "Dry run: nothing here is deleted until `caretaker-aggregator cleanup --apply` runs in the maintenance window." }
                table {
                    thead { tr { th { "why" } th { "object" } th { "action" } th { "detail" } } }
                    tbody {
                        @for p in &r.proposals {
                            tr {
                                td.code { (p.code) }
                                td { (object(&p.object)) }
                                td { @match p.action { Action::Delete => "delete", Action::Report => "report only", Action::Renew => "renew" } }
                                td { (p.message) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn signals(r: &ClusterReport) -> Markup {
    markup! {
        section id="signals" {
            h2 { "External signals" }
            @match &r.signals {
                None => p.empty { "No external signals are configured or none has been read yet." },
                Some(s) => {
                    @if !s.endpoints.is_empty() {
                        h3 { "HTTP endpoints" }
                        table {
                            thead { tr { th { "endpoint" } th { "url" } th.num { "status" } th.num { "latency" } th { "health" } } }
                            tbody {
                                @for e in &s.endpoints {
                                    tr {
                                        td { (e.name) }
                                        td.code { (e.url) }
                                        td.num { (e.status.map_or_else(|| "-".to_string(), |s| s.to_string())) }
                                        td.num { (format!("{:.1}", e.latency_ms)) " ms" }
                                        td {
                                            @if e.healthy { span.sev.sev-ok { "healthy" } }
                                            @else { span.sev.sev-critical { "unhealthy" } " " (e.problem.clone().unwrap_or_default()) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(p) = &s.prometheus {
                        h3 { "Prometheus" }
                        table {
                            tbody {
                                tr { th { "request rate" } td.num { (p.request_rate_per_second.map_or_else(|| "no data".to_string(), |v| format!("{v:.2} /s"))) } }
                                tr { th { "error rate" } td.num { (p.error_rate.map_or_else(|| "no traffic".to_string(), |v| format!("{:.2} %", v * 100.0))) } }
                                tr { th { "p95 latency" } td.num { (p.p95_latency_seconds.map_or_else(|| "no data".to_string(), |v| format!("{:.3} s", v))) } }
                            }
                        }
                    }
                    @if let Some(a) = &s.alerts {
                        h3 { "Alertmanager: " (a.firing.len()) " firing, " (a.silenced.len()) " silenced, " (a.inhibited.len()) " inhibited" }
                        @if !(a.firing.is_empty() && a.silenced.is_empty() && a.inhibited.is_empty()) {
                            table {
                                thead { tr { th { "alert" } th { "state" } th { "severity" } th { "since" } th { "summary" } } }
                                tbody {
                                    @for (state, list) in [("firing", &a.firing), ("silenced", &a.silenced), ("inhibited", &a.inhibited)] {
                                        @for al in list {
                                            tr {
                                                td { (al.name) }
                                                td { (state) }
                                                td { (al.severity.clone().unwrap_or_default()) }
                                                td.nowrap { (fmt_time(al.starts_at)) }
                                                td { (al.summary.clone().unwrap_or_default()) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- node table

fn nodes_table(r: &ClusterReport) -> Markup {
    markup! {
        section id="nodes" {
            h2 { "Nodes" }
            @if r.nodes.is_empty() {
                p.empty { "No node has reported and the cluster's node list was not read." }
            } @else {
                table {
                    thead {
                        tr { th { "node" } th { "state" } th { "last report" } th.num { "reports" } th { "host" } th.num { "CPU" } th.num { "memory available" } th.num { "agent RSS" } th { "collection errors" } }
                    }
                    tbody {
                        @for n in &r.nodes {
                            tr id=(node_anchor(&n.node_name)) data-freshness=(freshness_word(n.freshness)) {
                                td { (n.node_name) }
                                td class=(format!("fresh-{}", freshness_word(n.freshness))) { (freshness_word(n.freshness)) }
                                td.nowrap { (n.received_at.map_or_else(|| "never".to_string(), fmt_time)) }
                                td.num { (n.reports_stored_total) }
                                @match &n.report {
                                    Some(rep) => {
                                        td { (rep.host.os_image) " " (rep.host.architecture) }
                                        td.num { (rep.host.cpu_count) " × " (format!("{:.1}", rep.host.cpu_usage_percent)) " %" }
                                        td.num { (bytes(rep.host.memory_available_bytes)) " of " (bytes(rep.host.memory_total_bytes)) }
                                        td.num { (bytes(rep.agent.rss_bytes)) }
                                        td {
                                            @for e in &rep.errors { div { (e.collector) " at " span.code { (e.place) } ": " (e.message) } }
                                        }
                                    }
                                    None => { td.empty colspan="5" { "no agent report" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use caretaker_core::model::{Filesystem, NetworkInterface, NetworkRates};

    use super::*;
    use crate::checks::CheckResult;
    use crate::report::tests::{at, round, stored};
    use crate::report::{SignalsReport, merge};
    use crate::signals::alertmanager::{Alert, AlertsNow};
    use crate::signals::endpoints::EndpointResult;

    const HOSTILE: &str = "<script>alert(1)</script>";

    fn fs(mount: &str, used: f64) -> Filesystem {
        let mut f = stored("x", 1, 1, used, 0).report.filesystems.remove(0);
        f.mountpoint = mount.into();
        f.mountpoints = vec![mount.into()];
        f
    }

    fn iface(device: &str, rx: f64, tx: f64) -> NetworkInterface {
        NetworkInterface {
            device: device.into(),
            rates: Some(NetworkRates {
                receive_bytes_per_second: rx,
                transmit_bytes_per_second: tx,
                ..NetworkRates::default()
            }),
            ..NetworkInterface::default()
        }
    }

    /// Three reporting nodes (one with two mounts near and under pressure), one missing,
    /// one missing with a hostile name; pods, certificate and backup findings; signals.
    pub(crate) fn sample() -> ClusterReport {
        let mut a = stored("node-a", 1, 4, 40.0, 0);
        a.report.filesystems.push(fs("/var/lib/containerd", 82.0));
        a.report.network = vec![
            iface("eth0", 2.0 * 1048576.0, 512.0 * 1024.0),
            iface("lo", 1e9, 1e9),
        ];
        let mut b = stored("node-b", 1, 9, 88.0, 0);
        b.report.network = vec![iface("eth0", 1048576.0, 1048576.0)];
        let c = stored("node-d", 1, 2, 12.5, -100);
        let mut r = round();
        r.cluster_nodes = Some(vec![
            "node-a".into(),
            "node-b".into(),
            "node-c".into(),
            "node-d".into(),
            HOSTILE.into(),
        ]);
        let cert = |name: &str, days: i64, sev| {
            let t = at(10 + days * 86_400);
            Finding::new(
                "certificate_expiring",
                sev,
                ObjectRef {
                    kind: "Certificate".into(),
                    namespace: Some("shop".into()),
                    name: name.into(),
                    uid: None,
                },
                format!("certificate expires in {days}d (notAfter {t})"),
            )
            .with_at(Some(t))
        };
        r.checks.push(CheckResult::new(
            "certificates",
            "2 cert-manager Certificates, 0 TLS Secrets",
            vec![
                cert("web-tls", 5, Severity::Critical),
                cert("api-tls", 20, Severity::Warning),
            ],
        ));
        r.checks.push(CheckResult::new(
            "velero",
            "3 backups, 1 schedules",
            vec![
                Finding::new(
                    "backup_stale",
                    Severity::Warning,
                    ObjectRef {
                        kind: "Schedule".into(),
                        namespace: Some("velero".into()),
                        name: "daily".into(),
                        uid: None,
                    },
                    "newest Completed backup finished 3d 0h ago",
                )
                .with_at(Some(at(10 - 3 * 86_400))),
                Finding::new(
                    "backup_failed",
                    Severity::Critical,
                    ObjectRef {
                        kind: "Backup".into(),
                        namespace: Some("velero".into()),
                        name: "adhoc-1".into(),
                        uid: None,
                    },
                    "backup phase Failed, started 1d 0h ago",
                )
                .with_at(Some(at(10 - 86_400))),
            ],
        ));
        r.checks.push(CheckResult::new(
            "events",
            "4 Warning events",
            vec![Finding::new(
                "warning_event",
                Severity::Info,
                ObjectRef {
                    kind: "Pod".into(),
                    namespace: Some("shop".into()),
                    name: "x".into(),
                    uid: None,
                },
                format!("message with markup {HOSTILE} & <img src=x onerror=alert(2)>"),
            )],
        ));
        r.signals = Some(SignalsReport {
            endpoints: vec![EndpointResult {
                name: "shop".into(),
                url: "http://shop.example/healthz".into(),
                status: Some(503),
                latency_ms: 12.25,
                healthy: false,
                problem: Some("status 503, expected 200".into()),
            }],
            prometheus: None,
            alerts: Some(AlertsNow {
                firing: vec![Alert {
                    name: "HighErrorRate".into(),
                    severity: Some("critical".into()),
                    labels: Default::default(),
                    starts_at: at(-600),
                    summary: Some("5xx above 5 %".into()),
                }],
                ..AlertsNow::default()
            }),
        });
        merge(&[a, b, c], &r, &MergeConfig::default(), at(10))
    }

    /// The `<tr …>` start tag of the row carrying `attrs` and the row's markup up to `</tr>`.
    fn row<'a>(page: &'a str, attrs: &str) -> &'a str {
        let start = page
            .find(attrs)
            .unwrap_or_else(|| panic!("no row with {attrs}"));
        let end = page[start..].find("</tr>").unwrap() + start;
        &page[start..end]
    }

    #[test]
    fn the_diff_page_lists_new_resolved_and_changed_findings_escaped() {
        let r = sample();
        assert!(r.findings.len() >= 2, "the sample has findings");
        let d = crate::store::history::ReportDiff {
            from: Some("2026-11-22T03:00:00Z".parse().unwrap()),
            to: Some("2026-11-29T03:00:00Z".parse().unwrap()),
            new: vec![r.findings[0].clone()],
            resolved: vec![r.findings[1].clone()],
            changed: vec![],
        };
        let page = diff_html(&d);
        assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
        assert!(page.contains("<title>caretaker findings from 2026-11-22 03:00 UTC to 2026-11-29 03:00 UTC</title>"), "{page}");
        assert!(page.contains("1 new, 1 resolved, 0 changed"), "{page}");
        assert!(
            page.contains("<h2>New (1)</h2>")
                && page.contains("<h2>Resolved (1)</h2>")
                && page.contains("<h2>Changed (0)</h2>"),
            "{page}"
        );
        let new_at = page.find("<h2>New (1)</h2>").unwrap();
        let resolved_at = page.find("<h2>Resolved (1)</h2>").unwrap();
        let first = maud::html! { (r.findings[0].message) }.into_string();
        let second = maud::html! { (r.findings[1].message) }.into_string();
        assert!(page[new_at..resolved_at].contains(&first), "{page}");
        assert!(page[resolved_at..].contains(&second), "{page}");
        assert!(!page.contains("<script"), "messages are escaped");
    }

    #[test]
    fn hostile_names_and_messages_are_escaped() {
        let page = html(&sample());
        assert!(!page.contains("<script"), "no script element may appear");
        assert!(!page.contains("<img"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // Also inside attributes (the node anchor and the data attribute).
        assert!(
            page.contains(r#"id="node-&lt;script&gt;alert(1)&lt;/script&gt;""#),
            "node anchor"
        );
        assert!(
            page.contains(r##"href="#node-&lt;script&gt;alert(1)&lt;/script&gt;""##),
            "node link"
        );
        assert!(page.contains("&amp; &lt;img src=x onerror=alert(2)&gt;"));
    }

    #[test]
    fn disk_bars_are_as_wide_as_the_used_percentage_and_coloured_by_threshold() {
        let page = html(&sample());
        let a_root = row(&page, r#"data-node="node-a" data-mount="/" "#);
        assert!(a_root.contains(r#"data-level="ok""#), "{a_root}");
        assert!(
            a_root.contains(r#"class="used fill-ok" width="40%""#),
            "{a_root}"
        );
        assert!(a_root.contains("40.0 % of 100.0 GiB"), "{a_root}");
        let a_cd = row(
            &page,
            r#"data-node="node-a" data-mount="/var/lib/containerd""#,
        );
        assert!(
            a_cd.contains(r#"class="used fill-near" width="82%""#),
            "{a_cd}"
        );
        let b_root = row(&page, r#"data-node="node-b" data-mount="/""#);
        assert!(
            b_root.contains(r#"class="used fill-pressure" width="88%""#),
            "{b_root}"
        );
        let d_root = row(&page, r#"data-node="node-d" data-mount="/""#);
        assert!(d_root.contains(r#"width="12.5%""#), "{d_root}");
        // kubelet's imageGC thresholds drawn on each bar.
        assert!(
            b_root.contains(r#"class="th-low" x1="80%" x2="80%""#),
            "{b_root}"
        );
        assert!(
            b_root.contains(r#"class="th-high" x1="85%" x2="85%""#),
            "{b_root}"
        );
        // A missing node has a row saying so.
        let c = row(&page, r#"<tr data-node="node-c">"#);
        assert!(c.contains("no agent report (missing)"), "{c}");
    }

    #[test]
    fn findings_table_has_a_severity_filter_and_one_row_per_finding() {
        let r = sample();
        let page = html(&r);
        for (id, label) in [
            ("all", "all (7)"),
            ("critical", "critical (3)"),
            ("warning", "warning (3)"),
            ("info", "info (1)"),
        ] {
            assert!(
                page.contains(&format!(
                    r#"<input type="radio" name="severity" id="sev-{id}" value="{id}""#
                )),
                "{id}"
            );
            assert!(
                page.contains(&format!(r#"<label for="sev-{id}">{label}</label>"#)),
                "{label}"
            );
        }
        assert!(
            page.contains(r#"id="sev-all" value="all" checked>"#),
            "all is chosen by default"
        );
        assert!(page.contains(
            r#"#sev-critical:checked ~ .groups tbody tr:not([data-severity="critical"])"#
        ));
        assert!(
            page.contains(r#"#sev-critical:checked ~ .groups .group:not([data-has-critical])"#)
        );
        let start = page.find(r#"<section id="findings">"#).unwrap();
        let section = &page[start..start + page[start..].find("</section>").unwrap()];
        assert_eq!(
            section.matches("<tr data-severity=").count(),
            r.findings.len()
        );
        assert_eq!(
            section.matches(r#"<tr data-severity="critical">"#).count(),
            3
        );
        assert!(section.contains("container api is in CrashLoopBackOff (12 restarts)"));
    }

    #[test]
    fn missing_and_stale_nodes_are_listed_first() {
        let page = html(&sample());
        let start = page.find(r#"<div id="not-reporting">"#).unwrap();
        let section = &page[start..start + page[start..].find("</table>").unwrap()];
        assert!(
            section.contains(
                r##"<tr data-freshness="missing"><td><a href="#node-node-c">node-c</a>"##
            ),
            "{section}"
        );
        assert_eq!(
            section.matches(r#"data-freshness="missing""#).count(),
            2,
            "node-c and the hostile one"
        );
        // node-d reported 110 s before the report at a 10 s interval: stale.
        assert!(row(section, r#"data-freshness="stale""#).contains("node-d"));
        assert!(page.contains(r#"<div id="status" class="tile bg-critical"><span class="label">status</span><span class="value">critical</span>"#));
        let r = sample();
        assert!(page.contains(&format!(
            r#"<span class="value">{}<span class="of"> / 100</span>"#,
            r.score
        )));
    }

    #[test]
    fn network_bars_share_one_scale_and_leave_out_loopback() {
        let page = html(&sample());
        let a = row(
            &page,
            r##"<tr data-node="node-a"><td><a href="#node-node-a">node-a</a></td><td class="plot">"##,
        );
        assert!(
            a.contains(r#"class="rx fill-rx" y="0" width="100%""#),
            "{a}"
        );
        assert!(
            a.contains(r#"class="tx fill-tx" y="50%" width="25%""#),
            "{a}"
        );
        assert!(a.contains("2.0 MiB/s") && a.contains("512.0 KiB/s"), "{a}");
        let b = row(
            &page,
            r##"<tr data-node="node-b"><td><a href="#node-node-b">node-b</a></td><td class="plot">"##,
        );
        assert!(b.contains(r#"width="50%""#), "{b}");
    }

    #[test]
    fn timelines_place_certificates_and_backups_on_a_time_axis() {
        let page = html(&sample());
        // Certificates: now = at(10), marks at +5 d and +20 d; axis from now − 1 d to +21 d.
        let web = row(&page, &format!(r#"data-at="{}""#, at(10 + 5 * 86_400)));
        assert!(web.contains("Certificate/shop/web-tls"), "{web}");
        assert!(web.contains(r#"class="dot-critical" cx="27.27%""#), "{web}");
        let api = row(&page, &format!(r#"data-at="{}""#, at(10 + 20 * 86_400)));
        assert!(api.contains(r#"class="dot-warning" cx="95.45%""#), "{api}");
        // The now line: 1 d of 22 d.
        assert!(api.contains(r#"class="now" x1="4.55%""#), "{api}");
        // Backups: the failed one and the stale schedule's last completion.
        let start = page.find(r#"id="backup-timeline""#).unwrap();
        let backups = &page[start..start + page[start..].find("</table>").unwrap()];
        assert!(
            backups.contains("Backup/velero/adhoc-1") && backups.contains("Schedule/velero/daily")
        );
        assert!(
            backups.find("Schedule/velero/daily").unwrap()
                < backups.find("Backup/velero/adhoc-1").unwrap(),
            "oldest first"
        );
    }

    #[test]
    fn axis_ticks_fall_on_round_steps() {
        let axis = Axis {
            start: "2027-01-01T05:00:00Z".parse().unwrap(),
            end: "2027-01-05T00:00:00Z".parse().unwrap(),
        };
        let (ticks, format) = axis.ticks();
        assert_eq!(
            ticks.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            vec![
                "2027-01-01T12:00:00Z",
                "2027-01-02T00:00:00Z",
                "2027-01-02T12:00:00Z",
                "2027-01-03T00:00:00Z",
                "2027-01-03T12:00:00Z",
                "2027-01-04T00:00:00Z",
                "2027-01-04T12:00:00Z",
                "2027-01-05T00:00:00Z",
            ]
        );
        assert_eq!(format, "%m-%d %H:%M");
    }

    #[test]
    fn cross_links_proposals_and_signals_are_shown() {
        let page = html(&sample());
        let p = row(
            &page,
            r##"<tr data-node="node-b"><td><a href="#node-node-b">node-b</a></td><td class="code">/</td>"##,
        );
        assert!(p.contains("88.0 %") && p.contains("pressure"), "{p}");
        assert!(
            p.contains("FreeDiskSpaceFailed") && p.contains("×3: failed to free 2 GiB"),
            "{p}"
        );
        assert!(page.contains("Job/batch/report-28") && page.contains("completed 3d ago"));
        assert!(page.contains("http://shop.example/healthz") && page.contains("12.2 ms"));
        assert!(
            page.contains("Alertmanager: 1 firing, 0 silenced, 0 inhibited")
                && page.contains("HighErrorRate")
        );
    }

    #[test]
    fn the_page_is_self_contained_and_deterministic() {
        let r = sample();
        let page = html(&r);
        assert!(page.starts_with("<!DOCTYPE html><html lang=\"en\">"));
        assert!(page.contains(r#"<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'"#));
        for external in [" src=\"", "<link", "<script", "url(", "@import"] {
            assert!(!page.contains(external), "{external}");
        }
        assert_eq!(page, html(&r.clone()));
        assert_eq!(
            crate::report::render(&r, crate::report::Output::Html).unwrap(),
            page
        );
    }

    #[test]
    fn an_empty_report_says_so_in_every_section() {
        let r = merge(&[], &Default::default(), &MergeConfig::default(), at(0));
        let page = html(&r);
        for text in [
            "Every node's agent reports.",
            "No findings.",
            "No node is at or near disk pressure.",
            "The certificates check has not run or does not apply to this cluster.",
            "Nothing to clean up.",
            "No cluster checks have run yet.",
            "No node has reported and the cluster's node list was not read.",
        ] {
            assert!(page.contains(text), "{text}");
        }
    }

    #[test]
    fn numbers_in_coordinates_have_no_trailing_zeros() {
        assert_eq!(num(87.5), "87.5");
        assert_eq!(num(40.0), "40");
        assert_eq!(num(200.0 / 3.0), "66.67");
        assert_eq!(num(-0.0001), "0");
        assert_eq!(
            (num(-12.345), num(0.05), num(3.1), num(1e20)),
            (
                "-12.35".into(),
                "0.05".into(),
                "3.1".into(),
                "100000000000000000000".into()
            )
        );
        assert_eq!(pct(120.0), "100%");
        assert_eq!(pct(f64::NAN), "0%");
    }

    /// The text between `<section id="ID">` and its `</section>`.
    fn section<'a>(page: &'a str, id: &str) -> &'a str {
        let start = page
            .find(&format!(r#"<section id="{id}">"#))
            .unwrap_or_else(|| panic!("no section {id}"));
        &page[start..start + page[start..].find("</section>").unwrap()]
    }

    #[test]
    fn the_overview_comes_first_with_the_score_per_part() {
        let r = sample();
        let page = html(&r);
        let overview = page.find(r#"<section id="overview">"#).unwrap();
        let findings = page.find(r#"<section id="findings">"#).unwrap();
        assert!(overview < findings, "the overview opens the page");
        for id in [
            r#"id="score-parts""#,
            r#"id="disk-overview""#,
            r#"id="certificate-timeline""#,
            r#"id="backup-timeline""#,
        ] {
            let at = page.find(id).unwrap_or_else(|| panic!("{id}"));
            assert!(overview < at && at < findings, "{id} is in the overview");
        }
        let o = section(&page, "overview");
        // One row per part, with its score: pods 2 of 12 objects (1 critical, 1 warning).
        assert_eq!(
            o.matches("<tr data-part=").count()
                + o.matches(r#"<tr class="weightless" data-part="#).count(),
            r.score_parts.len(),
            "{o}"
        );
        let pods = row(o, r#"data-part="pods""#);
        assert!(pods.contains(r#"data-score="87.5""#), "{pods}");
        assert!(
            pods.contains(r#"<td class="num">12</td><td class="num">1</td><td class="num">1</td>"#),
            "{pods}"
        );
        assert!(pods.contains("12 pods, 2 with problems"), "{pods}");
        let nodes = row(
            o,
            &format!(r#"data-part="{}""#, super::super::score::NODE_FRESHNESS),
        );
        assert!(
            nodes.contains("5 nodes: 2 fresh, 1 stale, 2 missing"),
            "{nodes}"
        );
        // The fullest filesystem first.
        let disk = &o[o.find(r#"id="disk-overview""#).unwrap()..];
        assert!(
            disk.find(r#"data-node="node-b""#).unwrap()
                < disk.find(r#"data-node="node-a""#).unwrap()
        );
    }

    #[test]
    fn content_is_not_capped_to_a_narrow_column() {
        assert!(CSS.contains("main { margin: 0; padding: 0 24px 40px; }"));
        assert!(!CSS.contains("max-width: 1200px; margin: 0 auto"));
    }

    #[test]
    fn findings_are_grouped_by_namespace_and_owner_worst_first_with_remedies() {
        let r = sample();
        let page = html(&r);
        let f = section(&page, "findings");
        let heads: Vec<&str> = f
            .match_indices("<div class=\"group\"")
            .map(|(i, _)| {
                let h = &f[i..];
                &h[..h.find('>').unwrap()]
            })
            .collect();
        assert_eq!(
            heads,
            vec![
                // Critical first; among equals by namespace and owner.
                r#"<div class="group" data-namespace="shop" data-owner="api-7d9" data-has-critical"#,
                r#"<div class="group" data-namespace="shop" data-owner="web-tls" data-has-critical"#,
                r#"<div class="group" data-namespace="velero" data-owner="adhoc-1" data-has-critical"#,
                r#"<div class="group" data-namespace="shop" data-owner="api-tls" data-has-warning"#,
                // Pod worker-1: a StatefulSet's ordinal.
                r#"<div class="group" data-namespace="shop" data-owner="worker" data-has-warning"#,
                r#"<div class="group" data-namespace="velero" data-owner="daily" data-has-warning"#,
                r#"<div class="group" data-namespace="shop" data-owner="x" data-has-info"#,
            ]
        );
        // Each finding carries its code's remedy.
        let crash = row(
            f,
            r#"<tr data-severity="critical"><td><span class="sev sev-critical">critical</span></td><td>pods<br><span class="code">crash_loop_back_off</span>"#,
        );
        let want = crate::checks::codes::lookup("crash_loop_back_off")
            .unwrap()
            .remedy;
        assert!(!want.is_empty());
        assert!(
            crash.contains(&maud::html! { td.remedy { (want) } }.into_string()),
            "{crash}"
        );
    }

    #[test]
    fn owners_come_from_generated_names() {
        let o = |kind: &str, name: &str| ObjectRef {
            kind: kind.into(),
            namespace: Some("ns".into()),
            name: name.into(),
            uid: None,
        };
        for (kind, name, owner) in [
            ("Pod", "api-7d9c8b6f5d-x2b4z", "api"),
            ("Pod", "node-agent-x2b4z", "node-agent"),
            ("Pod", "db-0", "db"),
            ("Pod", "db-12", "db"),
            ("Pod", "standalone", "standalone"),
            // "shop" has a vowel: not a generated suffix.
            ("Pod", "web-shop", "web-shop"),
            ("ReplicaSet", "api-7d9c8b6f5d", "api"),
            ("Deployment", "api-7d9c8b6f5d", "api-7d9c8b6f5d"),
            ("Certificate", "web-tls", "web-tls"),
        ] {
            assert_eq!(owner_name(&o(kind, name)), owner, "{kind} {name}");
        }
    }

    #[test]
    fn the_log_check_lists_top_pods_per_pattern_with_sample_lines() {
        use caretaker_core::model::LogCheckEntry;
        let mut r = sample();
        let entry = |pattern: &str, pod: &str, count, sample: Option<&str>| {
            super::super::logcheck::ClusterLogEntry {
                node_name: "node-a".into(),
                entry: LogCheckEntry {
                    pattern: pattern.into(),
                    namespace: "shop".into(),
                    pod: pod.into(),
                    container: "api".into(),
                    count,
                    previous_count: 3,
                    sample: sample.map(str::to_string),
                },
            }
        };
        r.log_check = Some(super::super::logcheck::ClusterLogCheck {
            nodes_checked: 2,
            oldest_check: at(0),
            patterns: vec![
                "error".into(),
                "warn".into(),
                "authentication failed".into(),
            ],
            top: vec![
                entry(
                    "error",
                    "api-1",
                    120,
                    Some("ERROR db timeout \u{1b}[31m<b>"),
                ),
                entry("error", "api-2", 7, None),
                entry("warn", "api-1", 40, Some(&"w".repeat(400))),
            ],
            bytes_read: 1 << 20,
            errors: 0,
        });
        let page = html(&r);
        let l = section(&page, "log-check");
        assert!(page.contains(r##"<a href="#log-check">Log check</a>"##));
        assert!(
            l.contains("from 2 node(s)") && l.contains("1.0 MiB read"),
            "{l}"
        );
        let error = &l
            [l.find(r#"data-pattern="error""#).unwrap()..l.find(r#"data-pattern="warn""#).unwrap()];
        assert_eq!(error.matches("<tr><td>").count(), 2, "{error}");
        assert!(error.find("api-1").unwrap() < error.find("api-2").unwrap());
        // Control characters replaced, markup escaped.
        assert!(
            error.contains(r#"<pre class="sample">ERROR db timeout �[31m&lt;b&gt;</pre>"#),
            "{error}"
        );
        // Long lines cut.
        let warn = &l[l.find(r#"data-pattern="warn""#).unwrap()..];
        assert!(
            warn.contains(&format!("{}…</pre>", "w".repeat(SAMPLE_CHARS))),
            "{warn}"
        );
        assert!(
            !l.contains("authentication failed</span>"),
            "a pattern with no pod has no table"
        );
        // No log check: no section.
        assert!(!html(&sample()).contains(r#"id="log-check""#));
    }

    #[test]
    fn vulnerabilities_are_listed_per_image_fixable_first_with_scan_age() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/vulnerabilityreports.json");
        let state = crate::cluster::dump::load(&[path]).unwrap();
        let now: Timestamp = "2026-12-05T03:00:00Z".parse().unwrap();
        let check = crate::checks::vulnerabilities::check(&state, &Default::default(), now);
        let mut r = sample();
        r.generated_at = now;
        r.checks.push(check);
        let images = images(&r);
        assert_eq!(
            images
                .iter()
                .map(|i| (
                    i.image.as_str(),
                    i.critical,
                    i.critical_fixable,
                    i.high,
                    i.high_fixable
                ))
                .collect::<Vec<_>>(),
            vec![
                ("index.docker.io/library/nginx:1.25.3", 2, 1, 3, 2),
                (
                    "docker.io/bitnami/postgresql:16.1.0-debian-11-r15",
                    0,
                    0,
                    1,
                    0
                ),
            ]
        );
        assert_eq!(
            images[1]
                .oldest_scan
                .map(|t| t.strftime("%Y-%m-%d").to_string()),
            Some("2026-11-20".to_string())
        );
        let page = html(&r);
        let v = section(&page, "vulnerabilities");
        assert!(
            v.find("nginx:1.25.3").unwrap() < v.find("postgresql").unwrap(),
            "fixable first"
        );
        let nginx = row(v, r#"data-image="index.docker.io/library/nginx:1.25.3""#);
        assert!(nginx.contains(r#"data-severity="critical""#), "{nginx}");
        assert!(nginx.contains("2026-11-30 (5 d ago)"), "{nginx}");
        let pg = row(v, r#"data-image="docker.io/bitnami/postgresql"#);
        assert!(pg.contains("2026-11-20 (14 d ago)"), "{pg}");
        // Not applicable: said so.
        let page = html(&sample());
        assert!(
            section(&page, "vulnerabilities").contains("The vulnerabilities check has not run.")
        );
    }

    #[test]
    fn the_network_chart_is_left_out_when_no_node_has_a_rate() {
        let mut r = sample();
        for n in &mut r.nodes {
            if let Some(rep) = &mut n.report {
                rep.network.clear();
            }
        }
        let page = html(&r);
        assert!(!page.contains(r#"id="network""#) && !page.contains("#network"));
        // With rates: nodes without any are named under the chart, not drawn empty.
        let page = html(&sample());
        let n = section(&page, "network");
        assert!(
            n.contains("No rates yet (no agent report, first sample or counter reset): ")
                && n.contains(", node-c, node-d</p>"),
            "{n}"
        );
        assert!(!n.contains(r#"<tr data-node="node-d">"#), "{n}");
    }
}
