//! Proposals as a terminal table (kubectl's layout) or a Markdown table.

use caretaker_core::render::{Style, Tty, kubectl_table, table_text};

use super::{Action, Proposal, Proposals};
use crate::checks::render::{cell, kind_name, table};

/// One row per proposal.
pub(crate) fn proposals(style: Style, p: &[Proposal]) -> String {
    let mut t = table(style, &["action", "code", "object", "uid", "reason"]);
    for x in p {
        let action = match x.action {
            Action::Delete => "delete",
            Action::Report => "report",
            Action::Renew => "renew",
        };
        t.add_row(vec![
            action.to_string(),
            x.code.clone(),
            cell(style, &x.object.to_string()),
            x.object.uid.clone().unwrap_or_default(),
            cell(style, &x.message),
        ]);
    }
    t.to_string()
}

/// The protected objects kept and the notes, after the proposals table.
///
/// # Errors
/// Writing fails.
pub(crate) fn kept_and_notes(
    out: &mut dyn std::io::Write,
    style: Style,
    p: &Proposals,
) -> std::io::Result<()> {
    if !p.kept.is_empty() {
        let mut t = table(style, &["kept", "rule", "object", "protected by"]);
        for k in &p.kept {
            t.add_row(vec![
                "kept".to_string(),
                k.code.clone(),
                cell(style, &k.object.to_string()),
                cell(style, &k.rule),
            ]);
        }
        writeln!(out, "{t}")?;
    }
    for n in &p.notes {
        writeln!(out, "note: {n}")?;
    }
    Ok(())
}

/// Proposals as kubectl prints objects: NAMESPACE and NAME (`Kind/name`), the action, code
/// and reason; `wide` adds the uid the deletion is conditioned on and the propagation.
/// "No proposals." when there are none.
#[must_use]
pub(crate) fn proposals_kubectl(p: &[Proposal], wide: bool, tty: Tty) -> String {
    if p.is_empty() {
        return "No proposals.\n".into();
    }
    let mut header = vec!["namespace", "name", "action", "code", "reason"];
    if wide {
        header.extend(["uid", "propagation"]);
    }
    let mut t = kubectl_table(&header, tty);
    for x in p {
        let action = match x.action {
            Action::Delete => "delete",
            Action::Report => "report",
            Action::Renew => "renew",
        };
        let mut row = vec![
            x.object.namespace.clone().unwrap_or_default(),
            kind_name(&x.object),
            action.to_string(),
            x.code.clone(),
            cell(Style::Terminal, &x.message),
        ];
        if wide {
            row.push(x.object.uid.clone().unwrap_or_default());
            row.push(x.propagation.map_or_else(String::new, |p| {
                serde_json::to_value(p)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            }));
        }
        t.add_row(row);
    }
    table_text(&t)
}
