//! Check results as terminal tables or Markdown (JSON is their serde form).

use caretaker_core::render::Style;
use comfy_table::{ContentArrangement, Table, presets};

use super::{CheckResult, CheckStatus, Finding};
use crate::cluster::LoadSummary;

/// A table in `style` with `header`.
pub fn table(style: Style, header: &[&str]) -> Table {
    let mut t = Table::new();
    match style {
        Style::Terminal => {
            t.load_preset(presets::UTF8_FULL_CONDENSED);
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
        Style::Markdown => {
            t.load_preset(presets::ASCII_MARKDOWN);
        }
    }
    t.set_header(header.to_vec());
    t
}

/// A cell's text: one line, and pipes escaped for Markdown.
pub fn cell(style: Style, s: &str) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    match style {
        Style::Terminal => one_line,
        Style::Markdown => one_line.replace('|', "\\|"),
    }
}

fn status(r: &CheckResult) -> String {
    match r.status {
        CheckStatus::Ran => r.severity.to_string(),
        CheckStatus::NotApplicable => "not applicable".to_string(),
    }
}

/// The overview: one row per check.
pub fn overview(style: Style, results: &[CheckResult]) -> String {
    let mut t = table(style, &["check", "status", "findings", "summary"]);
    for r in results {
        t.add_row(vec![
            r.name.clone(),
            status(r),
            r.findings.len().to_string(),
            cell(style, &r.summary),
        ]);
    }
    t.to_string()
}

/// The findings of one check.
pub fn findings(style: Style, f: &[Finding]) -> String {
    let mut t = table(style, &["severity", "code", "object", "message"]);
    for x in f {
        t.add_row(vec![
            x.severity.to_string(),
            x.code.clone(),
            cell(style, &x.object.to_string()),
            cell(style, &x.message),
        ]);
    }
    t.to_string()
}

/// Everything: the overview, then each check with findings, then what loading skipped.
pub fn report(style: Style, results: &[CheckResult], load: &LoadSummary, title: &str) -> String {
    let mut out = String::new();
    match style {
        Style::Markdown => out.push_str(&format!("## {title}\n\n")),
        Style::Terminal => out.push_str(&format!("{title}\n")),
    }
    out.push_str(&overview(style, results));
    out.push('\n');
    for r in results.iter().filter(|r| !r.findings.is_empty()) {
        match style {
            Style::Markdown => out.push_str(&format!("\n### {} ({})\n\n", r.name, status(r))),
            Style::Terminal => {
                out.push_str(&format!("\n{} ({}): {}\n", r.name, status(r), r.summary))
            }
        }
        out.push_str(&findings(style, &r.findings));
        out.push('\n');
    }
    out.push_str(&load_notes(style, load));
    out
}

/// Unknown kinds and skipped documents, if any.
pub fn load_notes(style: Style, load: &LoadSummary) -> String {
    let mut out = String::new();
    if load.unknown_kinds.is_empty() && load.problems.is_empty() {
        return out;
    }
    if style == Style::Markdown {
        out.push_str("\n### Input\n\n");
    } else {
        out.push('\n');
    }
    if !load.unknown_kinds.is_empty() {
        let kinds: Vec<String> = load
            .unknown_kinds
            .iter()
            .map(|(k, n)| format!("{k} ({n})"))
            .collect();
        out.push_str(&format!(
            "ignored objects of kinds no check reads: {}\n",
            kinds.join(", ")
        ));
    }
    for p in &load.problems {
        let line = cell(style, &p.to_string());
        match style {
            Style::Markdown => out.push_str(&format!("- skipped {line}\n")),
            Style::Terminal => out.push_str(&format!("skipped {line}\n")),
        }
    }
    out
}
