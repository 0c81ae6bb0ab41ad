//! Rendering the merged [`ClusterReport`] for people: a terminal summary, a Markdown
//! maintenance record (date, who, what was done, results, problems, next actions, as the
//! operators write it by hand today), the HTML report page ([`super::html`]) or JUnit XML
//! of its checks. JSON is the report's serde form, YAML the same document.
//!
//! The Markdown record also carries the seed's monthly checklist (security, performance,
//! dependencies, backups; [`CHECKLIST`]): each item a check covers is ticked from that
//! check's result in the report, with its counts and a link to the check's section
//! (`## Checks`, one `### name` per check); an item whose check did not run, did not apply
//! or could not list its objects stays open with the reason; the items no check can cover
//! (restore test, disaster-recovery drill) are listed open for a person.

use std::fmt::Write as _;

use caretaker_core::model::{Freshness, NodeStatus};
pub use caretaker_core::output::Output;
use caretaker_core::render::{self, Style, Tty};
use comfy_table::{Table, presets};

use super::{ClusterReport, PressureLevel};
use crate::checks::{CheckStatus, Severity};

/// The formats of `report` and `caretaker-standalone` (every one; `html` is the report
/// page served at `GET /report`). `--diff` takes all but `junit`.
pub const OUTPUTS: &[Output] = &Output::ALL;

/// A report that could not be written in its format (none of these happen for these
/// types; they are the serializers' own errors).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot write JSON")]
    Json(#[from] serde_json::Error),
    #[error("cannot write YAML")]
    Yaml(#[from] serde_saphyr_ser::SerializeError),
    #[error("cannot write JUnit XML")]
    Junit(#[from] quick_junit::SerializeError),
    /// `--diff` has no JUnit form (it is changes, not test results).
    #[error("a diff cannot be written as {0}")]
    Unsupported(Output),
}

/// Renders `report` in `output`, for a pipe or file (see [`render_for`]).
///
/// # Errors
/// See [`RenderError`].
pub fn render(report: &ClusterReport, output: Output) -> Result<String, RenderError> {
    render_for(report, output, Tty::PLAIN)
}

/// Renders `report` in `output`; tables are fitted to `tty`.
///
/// # Errors
/// See [`RenderError`].
pub fn render_for(report: &ClusterReport, output: Output, tty: Tty) -> Result<String, RenderError> {
    Ok(match output {
        Output::Json => serde_json::to_string_pretty(report)? + "\n",
        Output::Yaml => crate::checks::render::yaml(report)?,
        Output::Table => text(report, Style::Terminal, Layout::table(tty)),
        Output::Wide => text(report, Style::Terminal, Layout::wide(tty)),
        Output::Markdown => text(report, Style::Markdown, Layout::table(tty)),
        Output::Html => super::html::html(report),
        Output::Junit => crate::checks::render::junit(&report.checks, report.generated_at)? + "\n",
    })
}

/// Renders the findings that differ between two reports.
///
/// # Errors
/// See [`RenderError`] ([`RenderError::Unsupported`] for JUnit).
pub fn render_diff(
    d: &crate::store::history::ReportDiff,
    output: Output,
) -> Result<String, RenderError> {
    let style = match output {
        Output::Json => return Ok(serde_json::to_string_pretty(d)? + "\n"),
        Output::Yaml => return Ok(crate::checks::render::yaml(d)?),
        Output::Html => return Ok(super::html::diff_html(d)),
        Output::Junit => return Err(RenderError::Unsupported(output)),
        Output::Markdown => Style::Markdown,
        Output::Table | Output::Wide => Style::Terminal,
    };
    let when = |t: Option<jiff::Timestamp>| {
        t.map_or_else(
            || "-".into(),
            |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        )
    };
    let mut out = format!(
        "Findings from {} to {}: {} new, {} resolved, {} changed\n\n",
        when(d.from),
        when(d.to),
        d.new.len(),
        d.resolved.len(),
        d.changed.len()
    );
    let mut t = table(style, &["change", "severity", "check", "object", "finding"]);
    for (change, list) in [
        ("new", &d.new),
        ("resolved", &d.resolved),
        ("changed", &d.changed),
    ] {
        for f in list {
            t.add_row(vec![
                change.to_string(),
                f.severity.to_string(),
                f.check.clone(),
                f.object.to_string(),
                f.message.clone(),
            ]);
        }
    }
    out.push_str(&t.to_string());
    out.push('\n');
    Ok(out)
}

fn table(style: Style, header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(if style == Style::Markdown {
        presets::ASCII_MARKDOWN
    } else {
        presets::UTF8_FULL_CONDENSED
    });
    t.set_header(header.to_vec());
    t
}

fn freshness(f: Freshness) -> &'static str {
    match f {
        Freshness::Fresh => "fresh",
        Freshness::Stale => "STALE",
        Freshness::Missing => "MISSING",
    }
}

fn worst_mount(n: &NodeStatus) -> String {
    n.report
        .as_ref()
        .and_then(|r| {
            r.filesystems
                .iter()
                .max_by(|a, b| a.used_percent.total_cmp(&b.used_percent))
        })
        .map_or_else(
            || "-".into(),
            |f| format!("{} {:.1} %", f.mountpoint, f.used_percent),
        )
}

fn nodes_table(report: &ClusterReport, style: Style) -> String {
    let mut t = table(
        style,
        &[
            "node",
            "freshness",
            "last report",
            "reports",
            "fullest filesystem",
            "memory available",
            "agent RSS",
            "agent CPU",
        ],
    );
    for n in &report.nodes {
        let r = n.report.as_ref();
        t.add_row(vec![
            n.node_name.clone(),
            freshness(n.freshness).into(),
            n.received_at.map_or_else(
                || "never".into(),
                |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            ),
            n.reports_stored_total.to_string(),
            worst_mount(n),
            r.map_or_else(
                || "-".into(),
                |r| render::bytes(r.host.memory_available_bytes),
            ),
            r.map_or_else(|| "-".into(), |r| render::bytes(r.agent.rss_bytes)),
            r.map_or_else(
                || "-".into(),
                |r| format!("{:.3} s", r.agent.cpu_seconds_total),
            ),
        ]);
    }
    t.to_string()
}

fn checks_table(report: &ClusterReport, style: Style) -> String {
    let mut t = table(
        style,
        &["check", "severity", "score", "findings", "summary"],
    );
    let score = |name: &str| {
        report
            .score_parts
            .iter()
            .find(|p| p.name == name && p.weight > 0.0)
            .map_or_else(|| "-".to_string(), |p| format!("{:.1}", p.score))
    };
    for c in &report.checks {
        t.add_row(vec![
            c.name.clone(),
            if c.status == CheckStatus::NotApplicable {
                "n/a".into()
            } else {
                c.severity.to_string()
            },
            score(&c.name),
            c.findings.len().to_string(),
            c.summary.clone(),
        ]);
    }
    t.to_string()
}

/// The containers with the most matching log lines per pattern, with a sample each.
fn log_check_table(l: &super::logcheck::ClusterLogCheck, style: Style) -> String {
    let mut out = format!(
        "Log check (last 24 h, {} node(s), oldest check {}):\n\n",
        l.nodes_checked,
        l.oldest_check.strftime("%Y-%m-%d %H:%M UTC")
    );
    if l.top.is_empty() {
        out.push_str("No line matched any pattern.\n\n");
        return out;
    }
    let mut t = table(
        style,
        &[
            "pattern",
            "node",
            "pod",
            "container",
            "24 h",
            "24 h before",
            "latest line",
        ],
    );
    for e in &l.top {
        let e_ = &e.entry;
        t.add_row(vec![
            e_.pattern.clone(),
            e.node_name.clone(),
            format!("{}/{}", e_.namespace, e_.pod),
            e_.container.clone(),
            e_.count.to_string(),
            e_.previous_count.to_string(),
            e_.sample
                .as_deref()
                .map_or_else(|| "-".into(), |s| log_cell(s, style)),
        ]);
    }
    let _ = writeln!(out, "{t}\n");
    out
}

/// A log line fit for a table cell: control characters (terminal escapes, carriage
/// returns) shown as `\u{fffd}`, and `|` escaped in Markdown.
fn log_cell(s: &str, style: Style) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if style == Style::Markdown {
        clean.replace('|', "\\|")
    } else {
        clean
    }
}

/// How the terminal tables are laid out.
#[derive(Debug, Clone, Copy)]
struct Layout {
    tty: Tty,
    wide: bool,
}

impl Layout {
    fn table(tty: Tty) -> Layout {
        Layout { tty, wide: false }
    }
    fn wide(tty: Tty) -> Layout {
        Layout { tty, wide: true }
    }
}

/// The findings as kubectl prints objects (NAMESPACE, NAME); `wide` adds when each was
/// last seen and its remedy.
fn findings_kubectl(report: &ClusterReport, layout: Layout) -> String {
    use crate::checks::render::{cell, kind_name, kubectl_text};
    let mut header = vec![
        "namespace",
        "name",
        "check",
        "severity",
        "code",
        "finding",
        "since",
        "flaps",
    ];
    if layout.wide {
        header.extend(["last seen", "remedy"]);
    }
    let mut t = render::kubectl_table(&header, layout.tty);
    for f in report.findings.iter().filter(|f| f.severity > Severity::Ok) {
        let mut row = vec![
            f.object.namespace.clone().unwrap_or_default(),
            kind_name(&f.object),
            f.check.clone(),
            f.severity.to_string(),
            f.code.clone(),
            cell(Style::Terminal, &f.message),
            f.first_seen.strftime("%Y-%m-%d %H:%M").to_string(),
            f.flaps.to_string(),
        ];
        if layout.wide {
            row.push(f.last_seen.strftime("%Y-%m-%d %H:%M").to_string());
            row.push(
                crate::checks::codes::lookup(&f.code)
                    .map_or_else(String::new, |c| cell(Style::Terminal, c.remedy)),
            );
        }
        t.add_row(row);
    }
    kubectl_text(&t, layout.tty, "SEVERITY")
}

fn findings_table(report: &ClusterReport, style: Style, layout: Layout) -> String {
    if style == Style::Terminal {
        return findings_kubectl(report, layout);
    }
    let mut t = table(
        style,
        &["severity", "check", "object", "finding", "since", "flaps"],
    );
    for f in report.findings.iter().filter(|f| f.severity > Severity::Ok) {
        t.add_row(vec![
            f.severity.to_string(),
            f.check.clone(),
            f.object.to_string(),
            f.message.clone(),
            f.first_seen.strftime("%Y-%m-%d %H:%M").to_string(),
            f.flaps.to_string(),
        ]);
    }
    t.to_string()
}

fn text(report: &ClusterReport, style: Style, layout: Layout) -> String {
    let md = style == Style::Markdown;
    let h = |level: usize, title: &str| {
        if md {
            format!("{} {title}\n\n", "#".repeat(level))
        } else {
            format!("{title}\n")
        }
    };
    let mut out = String::new();
    let stale = report
        .nodes
        .iter()
        .filter(|n| n.freshness == Freshness::Stale)
        .count();
    let missing = report
        .nodes
        .iter()
        .filter(|n| n.freshness == Freshness::Missing)
        .count();
    let fresh = report.nodes.len() - stale - missing;
    let problems = report
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .count();

    out.push_str(&h(
        1,
        &format!(
            "caretaker maintenance record, {}",
            report.generated_at.strftime("%Y-%m-%d %H:%M UTC")
        ),
    ));
    let _ = writeln!(
        out,
        "- date: {}",
        report.generated_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(
        out,
        "- by: caretaker-aggregator {}",
        env!("CARGO_PKG_VERSION")
    );
    let _ = write!(
        out,
        "- status: {} (score {}/100",
        report.status, report.score
    );
    let own: Vec<String> = report
        .score_parts
        .iter()
        .filter(|p| p.kind != super::score::PartKind::Check && p.weight > 0.0)
        .map(|p| format!("{} {:.1}", p.name.replace('_', " "), p.score))
        .collect();
    if !own.is_empty() {
        let _ = write!(out, ": {}, checks as in Results", own.join(", "));
    }
    out.push_str(")\n");
    let _ = writeln!(
        out,
        "- nodes: {} ({fresh} fresh, {stale} stale, {missing} missing)",
        report.nodes.len()
    );
    if let Some(run) = &report.run {
        let tasks: Vec<String> = run
            .tasks
            .iter()
            .map(|t| {
                serde_json::to_value(t)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            })
            .collect();
        let _ = writeln!(
            out,
            "- run: {} (scheduled: {})",
            run.kinds.join(", "),
            tasks.join(", ")
        );
    }
    out.push('\n');

    out.push_str(&h(2, "What was done"));
    let reports: u64 = report.nodes.iter().map(|n| n.reports_stored_total).sum();
    let _ = writeln!(
        out,
        "- Collected node reports: {reports} stored in total from {} node(s).",
        report.nodes.len() - missing
    );
    match report.checks_at {
        Some(at) => {
            let ran = report
                .checks
                .iter()
                .filter(|c| c.status == CheckStatus::Ran)
                .count();
            let _ = writeln!(
                out,
                "- Ran {ran} of {} checks at {}.",
                report.checks.len(),
                at.strftime("%Y-%m-%d %H:%M UTC")
            );
        }
        None => out.push_str("- No cluster checks have run yet.\n"),
    }
    out.push('\n');

    out.push_str(&h(2, "Results"));
    out.push_str(&nodes_table(report, style));
    out.push_str("\n\n");
    if !report.checks.is_empty() {
        out.push_str(&checks_table(report, style));
        out.push_str("\n\n");
    }
    if let Some(l) = &report.log_check {
        out.push_str(&log_check_table(l, style));
    }

    if let Some(trends) = report.run.as_ref().and_then(|r| r.trends.as_ref()) {
        out.push_str(&h(2, "Trends"));
        let mut t = table(
            style,
            &[
                "Node",
                "Mount",
                "Used %",
                "Change per day",
                "Days until full",
            ],
        );
        for d in &trends.disk_30d {
            t.add_row(vec![
                d.node_name.clone(),
                d.mountpoint.clone(),
                d.points
                    .last()
                    .map_or_else(|| "-".into(), |p| format!("{:.1}", p.1)),
                d.slope_percent_per_day
                    .map_or_else(|| "-".into(), |v| format!("{v:+.2} pp")),
                d.days_until_full
                    .map_or_else(|| "-".into(), |v| format!("{v:.0}")),
            ]);
        }
        let _ = writeln!(out, "Disk usage over 30 days:\n\n{t}\n");
        if trends.alerts_7d.is_empty() {
            out.push_str("No alerts fired in the last 7 days.\n\n");
        } else {
            let mut t = table(style, &["Alert", "Reports firing (7 days)"]);
            for (name, n) in &trends.alerts_7d {
                t.add_row(vec![name.clone(), n.to_string()]);
            }
            let _ = writeln!(out, "Alerts over 7 days:\n\n{t}\n");
        }
    }
    if let Some(review) = report.run.as_ref().and_then(|r| r.alert_review.as_ref()) {
        out.push_str(&h(2, "Alert review"));
        out.push_str(&alert_review(review, style));
    }

    out.push_str(&super::planning::text(&report.planning, md));

    out.push_str(&h(2, "Problems"));
    if problems == 0 && report.disk_pressure.is_empty() && stale + missing == 0 {
        out.push_str("None.\n\n");
    } else {
        for n in report
            .nodes
            .iter()
            .filter(|n| n.freshness != Freshness::Fresh)
        {
            let _ = writeln!(
                out,
                "- Node {} is {}.",
                n.node_name,
                freshness(n.freshness).to_lowercase()
            );
        }
        for d in &report.disk_pressure {
            let level = if d.level == PressureLevel::Pressure {
                "under disk pressure"
            } else {
                "near disk pressure"
            };
            let _ = write!(
                out,
                "- Node {} is {level}: {} at {:.1} %",
                d.node_name, d.mountpoint, d.used_percent
            );
            if let Some(b) = d.reclaimable_bytes {
                let _ = write!(out, "; its agent can reclaim {}", render::bytes(b));
            }
            for e in &d.events {
                let _ = write!(out, "; kubelet {} ×{}: {}", e.reason, e.count, e.message);
            }
            out.push_str(".\n");
        }
        if problems > 0 {
            out.push('\n');
            out.push_str(&findings_table(report, style, layout));
            out.push('\n');
        }
        out.push('\n');
    }

    out.push_str(&h(2, "Next actions"));
    let deletions = report
        .proposals
        .iter()
        .filter(|p| p.action == crate::cleanup::Action::Delete)
        .count();
    if report.proposals.is_empty() && problems == 0 && stale + missing == 0 {
        out.push_str("None.\n");
    } else {
        if deletions > 0 {
            let _ = writeln!(
                out,
                "- Apply {deletions} cleanup proposal(s) in the maintenance window (`caretaker-aggregator cleanup --apply`)."
            );
        }
        let reports_only = report.proposals.len() - deletions;
        if reports_only > 0 {
            let _ = writeln!(
                out,
                "- Review {reports_only} object(s) reported for cleanup but not deleted automatically."
            );
        }
        if problems > 0 {
            let _ = writeln!(
                out,
                "- Resolve {problems} warning or critical finding(s), worst first."
            );
        }
        if stale + missing > 0 {
            let _ = writeln!(
                out,
                "- Check the caretaker agent on {} node(s) that do not report.",
                stale + missing
            );
        }
    }
    if md {
        out.push('\n');
        out.push_str(&checklist(report));
        out.push_str(&check_sections(report));
    }
    let reported: Vec<_> = report
        .nodes
        .iter()
        .filter_map(|n| n.report.as_ref())
        .collect();
    if !reported.is_empty() {
        out.push('\n');
        out.push_str(&h(2, "Node details"));
        for r in reported {
            if md {
                let _ = write!(out, "### {}\n\n", r.node_name);
            }
            out.push_str(&render::node_report(style, r));
            out.push('\n');
        }
    }
    out
}

/// One item of the monthly checklist that a check covers.
struct Covered {
    /// What the seed's checklist says, e.g. `certificate expiry checked`.
    what: &'static str,
    /// The check whose run is the evidence.
    check: &'static str,
    /// What the check's objects are, plural: `certificates`.
    objects: &'static str,
    /// What its objects with a warning or critical finding are: `expiring`.
    flagged: &'static str,
}

const fn covered(
    what: &'static str,
    check: &'static str,
    objects: &'static str,
    flagged: &'static str,
) -> Covered {
    Covered {
        what,
        check,
        objects,
        flagged,
    }
}

/// The monthly checklist (the seed's security, performance, dependencies and backups
/// review): the items a check covers, then the items only a person can do.
const CHECKLIST: &[(&str, &[Covered], &[&str])] = &[
    (
        "Security",
        &[
            covered(
                "certificate expiry checked",
                "certificates",
                "certificates",
                "expiring",
            ),
            covered(
                "vulnerability reports reviewed",
                "vulnerabilities",
                "image scans",
                "with fixable or stale findings",
            ),
            covered("firing alerts reviewed", "alertmanager", "alerts", "firing"),
        ],
        &[],
    ),
    (
        "Performance",
        &[
            covered(
                "node conditions and capacity checked",
                "nodes",
                "nodes",
                "with problems",
            ),
            covered(
                "requests and limits reviewed",
                "resources",
                "workloads",
                "without requests or limits",
            ),
            covered(
                "autoscalers checked",
                "hpas",
                "HPAs",
                "at their maximum or failing",
            ),
            covered(
                "volume usage checked",
                "pvcs",
                "claims",
                "full, pending or lost",
            ),
            covered(
                "daily log check reviewed",
                "log_check",
                "pods",
                "above a threshold or jumping",
            ),
            covered(
                "resource recommendations reviewed",
                "recommendations",
                "containers",
                "using more than they request",
            ),
            covered(
                "capacity trend reviewed",
                "capacity",
                "nodes and the cluster",
                "running out within the horizon",
            ),
        ],
        &[],
    ),
    (
        "Dependencies",
        &[
            covered(
                "Helm releases checked",
                "helm",
                "releases",
                "failed or stuck",
            ),
            covered(
                "rollouts checked",
                "workloads",
                "workloads",
                "unavailable or stuck",
            ),
            covered(
                "chart updates looked up",
                "chart_updates",
                "releases",
                "with an unreachable repository",
            ),
        ],
        &[],
    ),
    (
        "Backups",
        &[covered(
            "backups checked",
            "velero",
            "backups, schedules and storage locations",
            "failed, stale or unavailable",
        )],
        &[
            "restore test: restore a recent backup into a scratch namespace and verify the data",
            "disaster-recovery drill: rebuild a service from backups following the runbook",
        ],
    ),
];

/// The Markdown anchor of the record's section about check `name` (GitHub's rule for
/// `### name`: lower case, `_` kept).
fn check_anchor(name: &str) -> String {
    name.to_lowercase()
}

/// One checklist line: ticked from the evidence of the check that covers it, or unticked
/// with the reason.
fn checklist_line(report: &ClusterReport, item: &Covered) -> String {
    let Some(c) = report.checks.iter().find(|c| c.name == item.check) else {
        return format!(
            "- [ ] {}: the {} check did not run\n",
            item.what, item.check
        );
    };
    if c.status == CheckStatus::NotApplicable {
        return format!(
            "- [ ] {}: not applicable ({}) (see [{}](#{}))\n",
            item.what,
            c.summary,
            c.name,
            check_anchor(&c.name)
        );
    }
    if let Some(f) = c
        .findings
        .iter()
        .find(|f| matches!(f.code.as_str(), "list_forbidden" | "list_failed"))
    {
        return format!(
            "- [ ] {}: incomplete, {} (see [{}](#{}))\n",
            item.what,
            f.message,
            c.name,
            check_anchor(&c.name)
        );
    }
    let part = super::score::check_part(c);
    let evidence = match c.objects {
        Some(n) => format!(
            "{n} {}, {} {}",
            item.objects,
            part.critical + part.warning,
            item.flagged
        ),
        None => c.summary.clone(),
    };
    format!(
        "- [x] {}: {evidence} (see [{}](#{}))\n",
        item.what,
        c.name,
        check_anchor(&c.name)
    )
}

/// The monthly checklist of the Markdown record.
fn checklist(report: &ClusterReport) -> String {
    let mut out = String::from("## Monthly checklist\n\n");
    match (report.checks_at, &report.run) {
        (Some(at), Some(run)) => {
            let _ = write!(
                out,
                "Evidence: the checks of this report (latest round {}; this record is the {} run).\n\n",
                at.strftime("%Y-%m-%d %H:%M UTC"),
                run.kinds.join(", ")
            );
        }
        (Some(at), None) => {
            let _ = write!(
                out,
                "Evidence: the checks of this report (round of {}).\n\n",
                at.strftime("%Y-%m-%d %H:%M UTC")
            );
        }
        (None, _) => out.push_str("No cluster checks have run: every item is open.\n\n"),
    }
    for (area, items, by_hand) in CHECKLIST {
        let _ = write!(out, "### {area}\n\n");
        for item in *items {
            out.push_str(&checklist_line(report, item));
        }
        for task in *by_hand {
            let _ = writeln!(out, "- [ ] {task} (open: for a person, no check covers it)");
        }
        out.push('\n');
    }
    out
}

/// A section per check: its summary and findings, the targets of the checklist's links.
fn check_sections(report: &ClusterReport) -> String {
    if report.checks.is_empty() {
        return String::new();
    }
    let mut out = String::from("## Checks\n\n");
    for c in &report.checks {
        let _ = write!(out, "### {}\n\n", c.name);
        let state = if c.status == CheckStatus::NotApplicable {
            "not applicable".to_string()
        } else {
            c.severity.to_string()
        };
        let _ = write!(out, "{state}: {}.", c.summary);
        if c.silenced > 0 {
            let _ = write!(out, " {} finding(s) silenced.", c.silenced);
        }
        out.push_str("\n\n");
        for f in &c.findings {
            let _ = writeln!(out, "- {} {}: {}", f.severity, f.object, f.message);
        }
        if !c.findings.is_empty() {
            out.push('\n');
        }
    }
    // One line break at the end, like the sections before it.
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// The alert review section: one row per alert name and state, active ones first.
fn alert_review(r: &crate::signals::review::AlertReview, style: Style) -> String {
    use crate::signals::review::ReviewState;
    let mut out = String::new();
    let days = (r.to.duration_since(r.from).as_hours() + 12) / 24;
    let _ = write!(
        out,
        "{} round(s) with Alertmanager alerts from {} to {}; a firing shorter than {} is short, {} short firings are flapping.\n\n",
        r.rounds,
        r.from,
        r.to,
        crate::checks::time::human(jiff::SignedDuration::from_secs(
            i64::try_from(r.flap_within_seconds).unwrap_or(i64::MAX)
        )),
        r.flap_min_count
    );
    if r.alerts.is_empty() {
        let _ = writeln!(out, "No alerts fired in the last {days} days.\n");
        return out;
    }
    let mut t = table(
        style,
        &[
            "Alert",
            "State",
            "Times fired",
            "Time firing",
            "Short firings",
            "Flapping",
            "Still firing",
        ],
    );
    for a in &r.alerts {
        let state = match a.state {
            ReviewState::Active => "active",
            ReviewState::Silenced => "silenced",
            ReviewState::Inhibited => "inhibited",
        };
        t.add_row(vec![
            a.name.clone(),
            state.to_string(),
            a.times_fired.to_string(),
            crate::checks::time::human(jiff::SignedDuration::from_secs(
                i64::try_from(a.firing_seconds).unwrap_or(i64::MAX),
            )),
            a.short_firings.to_string(),
            if a.flapping { "yes" } else { "no" }.to_string(),
            a.still_firing.to_string(),
        ]);
    }
    let _ = writeln!(out, "Alerts over {days} days:\n\n{t}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{CheckResult, Finding, ObjectRef, Severity};
    use crate::report::tests::{at, round};
    use crate::report::{MergeConfig, merge};

    fn report() -> ClusterReport {
        let f = Finding::new(
            "crash_loop_back_off",
            Severity::Critical,
            ObjectRef {
                kind: "Pod".into(),
                namespace: Some("shop".into()),
                name: "api-1".into(),
                uid: None,
            },
            "container app in CrashLoopBackOff",
        );
        let round = super::super::CheckRound {
            checks: vec![CheckResult::new("pods", "1 pod", vec![f])],
            ..Default::default()
        };
        super::super::merge(
            &[],
            &round,
            &super::super::MergeConfig::default(),
            "2026-12-01T00:00:00Z".parse().unwrap(),
        )
    }

    #[test]
    fn report_tables_have_namespace_and_name_and_wide_adds_last_seen_and_remedy() {
        let r = report();
        let table = render(&r, Output::Table).unwrap();
        let header = table.lines().find(|l| l.starts_with("NAMESPACE")).unwrap();
        assert_eq!(
            header
                .split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>(),
            [
                "NAMESPACE",
                "NAME",
                "CHECK",
                "SEVERITY",
                "CODE",
                "FINDING",
                "SINCE",
                "FLAPS"
            ]
        );
        let row = table.lines().find(|l| l.starts_with("shop ")).unwrap();
        assert!(
            row.contains(" Pod/api-1 ") && row.contains(" crash_loop_back_off "),
            "{row}"
        );
        let wide = render(&r, Output::Wide).unwrap();
        let header = wide.lines().find(|l| l.starts_with("NAMESPACE")).unwrap();
        assert!(
            header.contains("   LAST SEEN   ") && header.ends_with("   REMEDY"),
            "{header}"
        );
        let row = wide.lines().find(|l| l.starts_with("shop ")).unwrap();
        let remedy = crate::checks::codes::lookup("crash_loop_back_off")
            .unwrap()
            .remedy;
        assert!(row.ends_with(remedy), "{row}");
    }

    #[test]
    fn report_yaml_is_its_json_and_junit_has_its_checks() {
        let r = report();
        let json: serde_json::Value =
            serde_json::from_str(&render(&r, Output::Json).unwrap()).unwrap();
        let yaml: serde_json::Value =
            serde_saphyr::from_str(&render(&r, Output::Yaml).unwrap()).unwrap();
        assert_eq!(yaml, json);
        let xml = render(&r, Output::Junit).unwrap();
        assert!(
            xml.contains(
                r#"<testsuite name="pods" tests="1" skipped="0" errors="0" failures="1">"#
            ),
            "{xml}"
        );
        let diff = crate::store::history::ReportDiff::default();
        assert!(matches!(
            render_diff(&diff, Output::Junit),
            Err(RenderError::Unsupported(Output::Junit))
        ));
    }

    #[test]
    fn a_check_that_could_not_list_its_objects_leaves_its_item_open_with_the_reason() {
        let mut r = round();
        r.checks.push(
            CheckResult::new(
                "certificates",
                "0 cert-manager Certificates, 3 TLS Secrets",
                vec![Finding::new(
                    "list_forbidden",
                    Severity::Warning,
                    ObjectRef {
                        kind: "Certificate".into(),
                        ..Default::default()
                    },
                    "no permission to list certificates.cert-manager.io: forbidden",
                )],
            )
            .with_objects(3),
        );
        let report = merge(&[], &r, &MergeConfig::default(), at(10));
        let md = text(&report, Style::Markdown, Layout::table(Tty::PLAIN));
        assert!(
            md.contains("- [ ] certificate expiry checked: incomplete, no permission to list certificates.cert-manager.io: forbidden (see [certificates](#certificates))\n"),
            "{md}"
        );
        // The checks of the round are ticked with their counts.
        assert!(
            md.contains("- [x] node conditions and capacity checked: 3 nodes, 0 with problems (see [nodes](#nodes))\n"),
            "{md}"
        );
        assert!(md.contains("\n### pods\n\ncritical: 12 pods, 2 with problems.\n\n- critical Pod/shop/api-7d9: container api is in CrashLoopBackOff (12 restarts)\n- warning Pod/shop/worker-1: Pending for 2h: 0/3 nodes are available\n"), "{md}");
        // The terminal output has no checklist.
        assert!(
            !text(&report, Style::Terminal, Layout::table(Tty::PLAIN))
                .contains("Monthly checklist")
        );
    }
}
