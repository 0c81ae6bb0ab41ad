//! Rendering the merged [`ClusterReport`] for people: a terminal summary, a Markdown
//! maintenance record (date, who, what was done, results, problems, next actions, as the
//! operators write it by hand today) or the HTML report page ([`super::html`]). JSON is
//! the report's serde form.

use std::fmt::Write as _;

use caretaker_core::model::{Freshness, NodeStatus};
use caretaker_core::render::{self, Style};
use comfy_table::{Table, presets};

use super::{ClusterReport, PressureLevel};
use crate::checks::{CheckStatus, Severity};

/// Output formats of `report` and `caretaker-standalone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
    Markdown,
    /// The self-contained report page, as served at `GET /report`.
    Html,
}

/// Renders `report` in `output`.
///
/// # Errors
/// Only JSON serialization errors, which cannot happen for these types.
pub fn render(report: &ClusterReport, output: Output) -> Result<String, serde_json::Error> {
    Ok(match output {
        Output::Json => serde_json::to_string_pretty(report)? + "\n",
        Output::Table => text(report, Style::Terminal),
        Output::Markdown => text(report, Style::Markdown),
        Output::Html => super::html::html(report),
    })
}

/// Renders the findings that differ between two reports.
///
/// # Errors
/// Only JSON serialization errors.
pub fn render_diff(
    d: &crate::store::history::ReportDiff,
    output: Output,
) -> Result<String, serde_json::Error> {
    let style = match output {
        Output::Json => return Ok(serde_json::to_string_pretty(d)? + "\n"),
        Output::Html => return Ok(super::html::diff_html(d)),
        Output::Markdown => Style::Markdown,
        Output::Table => Style::Terminal,
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
    let mut t = table(style, &["check", "severity", "findings", "summary"]);
    for c in &report.checks {
        t.add_row(vec![
            c.name.clone(),
            if c.status == CheckStatus::NotApplicable {
                "n/a".into()
            } else {
                c.severity.to_string()
            },
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

fn findings_table(report: &ClusterReport, style: Style) -> String {
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

fn text(report: &ClusterReport, style: Style) -> String {
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
    let _ = writeln!(
        out,
        "- status: {} (score {}/100)",
        report.status, report.score
    );
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
            out.push_str(&findings_table(report, style));
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
