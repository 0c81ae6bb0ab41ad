//! Check results as terminal tables (kubectl's layout: NAMESPACE and NAME columns, fitted
//! to the terminal), Markdown, JUnit XML or YAML (JSON is their serde form).

use caretaker_core::render::{Style, Tty, kubectl_table, paint_column, table_text};
use comfy_table::{ContentArrangement, Table, presets};

use super::{CheckResult, CheckStatus, Finding, ObjectRef, Severity};
use crate::cluster::LoadSummary;

/// A table in `style` with `header`.
pub(crate) fn table(style: Style, header: &[&str]) -> Table {
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
pub(crate) fn cell(style: Style, s: &str) -> String {
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
pub(crate) fn overview(style: Style, results: &[CheckResult]) -> String {
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
pub(crate) fn findings(style: Style, f: &[Finding]) -> String {
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
pub(crate) fn report(
    style: Style,
    results: &[CheckResult],
    load: &LoadSummary,
    title: &str,
) -> String {
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
pub(crate) fn load_notes(style: Style, load: &LoadSummary) -> String {
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

/// The ANSI colour of a severity or status word (red, yellow, cyan, green).
#[must_use]
pub(crate) fn severity_colour(word: &str) -> Option<&'static str> {
    match word {
        "critical" => Some("31"),
        "warning" => Some("33"),
        "info" => Some("36"),
        "ok" => Some("32"),
        _ => None,
    }
}

/// A kubectl table's text, its `column` coloured by severity when `tty` allows colour.
#[must_use]
pub(crate) fn kubectl_text(t: &Table, tty: Tty, column: &str) -> String {
    let text = table_text(t);
    if tty.colour {
        paint_column(&text, column, severity_colour)
    } else {
        text
    }
}

/// `Kind/name` (kubectl's NAME column when several kinds are listed).
#[must_use]
pub(crate) fn kind_name(o: &ObjectRef) -> String {
    if o.name.is_empty() {
        o.kind.clone()
    } else {
        format!("{}/{}", o.kind, o.name)
    }
}

/// The overview as kubectl would print it: one row per check.
#[must_use]
pub(crate) fn overview_kubectl(results: &[CheckResult], tty: Tty) -> String {
    let mut t = kubectl_table(&["check", "status", "findings", "summary"], tty);
    for r in results {
        t.add_row(vec![
            r.name.clone(),
            status(r),
            r.findings.len().to_string(),
            cell(Style::Terminal, &r.summary),
        ]);
    }
    kubectl_text(&t, tty, "STATUS")
}

/// Every finding, one row each, with kubectl's NAMESPACE and NAME columns; `wide` adds
/// the finding's time, the object's owner (from `owner`), the remedy and the object's uid.
/// "No findings." when there are none.
#[must_use]
pub(crate) fn findings_kubectl(
    results: &[CheckResult],
    wide: bool,
    tty: Tty,
    owner: &dyn Fn(&ObjectRef) -> String,
) -> String {
    if results.iter().all(|r| r.findings.is_empty()) {
        return "No findings.\n".into();
    }
    let mut header = vec!["namespace", "name", "check", "severity", "code", "message"];
    if wide {
        header.extend(["at", "owner", "remedy", "uid"]);
    }
    let mut t = kubectl_table(&header, tty);
    for r in results {
        for f in &r.findings {
            let mut row = vec![
                f.object.namespace.clone().unwrap_or_default(),
                kind_name(&f.object),
                r.name.clone(),
                f.severity.to_string(),
                f.code.clone(),
                cell(Style::Terminal, &f.message),
            ];
            if wide {
                row.extend([
                    f.at.map_or_else(String::new, |t| t.to_string()),
                    owner(&f.object),
                    f.remedy
                        .as_deref()
                        .map_or_else(String::new, |r| cell(Style::Terminal, r)),
                    f.object.uid.clone().unwrap_or_default(),
                ]);
            }
            t.add_row(row);
        }
    }
    kubectl_text(&t, tty, "SEVERITY")
}

/// Check results as JUnit XML: one test suite per check, one test case per finding
/// (failed for warning and critical, passed for info), a passed case for a check without
/// findings and a skipped one for a check that is not applicable. `now` is each suite's
/// `now` property (when the checks judged ages).
///
/// # Errors
/// Only XML writing errors, which cannot happen for these strings.
pub(crate) fn junit(
    results: &[CheckResult],
    now: jiff::Timestamp,
) -> Result<String, quick_junit::SerializeError> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("caretaker checks");
    for r in results {
        let mut suite = TestSuite::new(r.name.as_str());
        suite.add_property(("now", now.to_string().as_str()));
        suite.add_property(("summary", r.summary.as_str()));
        let classname = format!("caretaker.{}", r.name);
        if r.status == CheckStatus::NotApplicable {
            let mut status = TestCaseStatus::skipped();
            status.set_message(r.summary.as_str());
            let mut case = TestCase::new(r.name.as_str(), status);
            case.set_classname(classname.as_str());
            suite.add_test_case(case);
        } else if r.findings.is_empty() {
            let mut case = TestCase::new(r.name.as_str(), TestCaseStatus::success());
            case.set_classname(classname.as_str());
            case.set_system_out(r.summary.as_str());
            suite.add_test_case(case);
        }
        for f in &r.findings {
            let status = if f.severity >= Severity::Warning {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(f.message.as_str());
                s.set_type(format!("{} {}", f.severity, f.code));
                if let Some(remedy) = &f.remedy {
                    s.set_description(remedy.as_ref());
                }
                s
            } else {
                TestCaseStatus::success()
            };
            let mut case = TestCase::new(format!("{} {}", f.code, f.object), status);
            case.set_classname(classname.as_str());
            if f.severity < Severity::Warning {
                case.set_system_out(format!("{}: {}", f.severity, f.message));
            }
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string()
}

/// The YAML form of `value` (the same document as its JSON).
///
/// # Errors
/// Only serialization errors, which cannot happen for these types.
pub(crate) fn yaml<T: serde::Serialize>(
    value: &T,
) -> Result<String, serde_saphyr_ser::SerializeError> {
    serde_saphyr_ser::to_string(value)
}
