//! Proposals as a terminal or Markdown table.

use caretaker_core::render::Style;

use super::{Action, Proposal};
use crate::checks::render::{cell, table};

/// One row per proposal.
pub fn proposals(style: Style, p: &[Proposal]) -> String {
    let mut t = table(style, &["action", "code", "object", "uid", "reason"]);
    for x in p {
        let action = match x.action {
            Action::Delete => "delete",
            Action::Report => "report",
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
