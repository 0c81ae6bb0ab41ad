//! Rendering the merged [`ClusterReport`] for people: a terminal table or a Markdown
//! maintenance record. JSON is the report's serde form (schema in `model.rs`).

use caretaker_proto::model::{ClusterReport, Freshness, NodeStatus};
use caretaker_proto::render::{self, Style};
use comfy_table::{Table, presets};

/// Output formats of `report` and `standalone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
    Markdown,
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
    })
}

fn worst_mount(n: &NodeStatus) -> String {
    n.report
        .filesystems
        .iter()
        .max_by(|a, b| a.used_percent.total_cmp(&b.used_percent))
        .map_or_else(|| "-".into(), |f| format!("{} {:.1} %", f.mountpoint, f.used_percent))
}

fn summary(report: &ClusterReport, style: Style) -> String {
    let mut t = Table::new();
    t.load_preset(if style == Style::Markdown { presets::ASCII_MARKDOWN } else { presets::UTF8_FULL_CONDENSED });
    t.set_header(vec!["node", "freshness", "last report", "reports", "fullest filesystem", "memory available", "agent RSS", "agent CPU"]);
    for n in &report.nodes {
        t.add_row(vec![
            n.node_name.clone(),
            match n.freshness {
                Freshness::Fresh => "fresh".into(),
                Freshness::Stale => "STALE".into(),
            },
            n.received_at.to_string(),
            n.reports_stored_total.to_string(),
            worst_mount(n),
            render::bytes(n.report.host.memory_available_bytes),
            render::bytes(n.report.agent.rss_bytes),
            format!("{:.3} s", n.report.agent.cpu_seconds_total),
        ]);
    }
    t.to_string()
}

fn text(report: &ClusterReport, style: Style) -> String {
    let stale = report.nodes.iter().filter(|n| n.freshness == Freshness::Stale).count();
    let mut out = String::new();
    if style == Style::Markdown {
        out.push_str(&format!("# caretaker cluster report, {}\n\n", report.generated_at.strftime("%Y-%m-%d %H:%M UTC")));
    } else {
        out.push_str(&format!("caretaker cluster report, generated {}\n", report.generated_at));
    }
    out.push_str(&format!("{} node(s), {} fresh, {} stale\n\n", report.nodes.len(), report.nodes.len() - stale, stale));
    out.push_str(&summary(report, style));
    out.push('\n');
    for n in &report.nodes {
        out.push('\n');
        if style == Style::Markdown {
            out.push_str(&format!("## {}\n\n", n.node_name));
        }
        out.push_str(&render::node_report(style, &n.report));
    }
    out
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::store::tests::report as node_report;

    fn cluster() -> ClusterReport {
        let t: Timestamp = "2026-11-29T03:00:00Z".parse().unwrap();
        let node = |name: &str, f| NodeStatus {
            node_name: name.into(),
            freshness: f,
            received_at: t,
            reports_stored_total: 4,
            report: node_report(name, 1, 4),
        };
        ClusterReport { schema_version: 1, generated_at: t, nodes: vec![node("a", Freshness::Fresh), node("b", Freshness::Stale)] }
    }

    #[test]
    fn markdown_is_a_dated_record_with_one_section_per_node() {
        let md = render(&cluster(), Output::Markdown).unwrap();
        assert!(md.starts_with("# caretaker cluster report, 2026-11-29 03:00 UTC\n\n2 node(s), 1 fresh, 1 stale\n"), "{md}");
        assert!(md.contains("\n## a\n") && md.contains("\n## b\n"), "{md}");
        assert!(md.lines().any(|l| l.starts_with("| b ") && l.contains("STALE")), "{md}");
    }

    #[test]
    fn json_has_the_schema_version_and_freshness() {
        let v: serde_json::Value = serde_json::from_str(&render(&cluster(), Output::Json).unwrap()).unwrap();
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["nodes"][1]["freshness"], "stale");
        assert_eq!(v["nodes"][0]["reports_stored_total"], 4);
    }
}
