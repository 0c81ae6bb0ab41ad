//! Proposals as a terminal or Markdown table.

use caretaker_core::render::Style;

use super::{Action, Proposal, Proposals};
use crate::checks::render::{cell, table};

/// One row per proposal.
pub fn proposals(style: Style, p: &[Proposal]) -> String {
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
pub fn kept_and_notes(
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
