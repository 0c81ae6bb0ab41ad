//! The monthly review's parts of the report (flattened into its top level, so each is a
//! report field of its own): `chart_updates` ([`crate::updates`]), and their sections of
//! the Markdown record.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::updates::ChartUpdatesReport;

/// Results of the monthly review, each absent until its task ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Planning {
    /// Newer chart versions of the Helm releases (absent without `charts.repositories`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chart_updates: Option<ChartUpdatesReport>,
}

impl Planning {
    /// This planning updated by a later round's: each part it has replaces this one's.
    #[must_use]
    pub fn updated_with(mut self, later: Planning) -> Planning {
        if later.chart_updates.is_some() {
            self.chart_updates = later.chart_updates;
        }
        self
    }
}

/// A Markdown cell: pipes escaped, newlines flattened.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// A pipe table (Markdown; also readable in a terminal).
fn pipe_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = format!(
        "| {} |\n|{}\n",
        headers.join(" | "),
        "---|".repeat(headers.len())
    );
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| cell(c)).collect();
        let _ = writeln!(t, "| {} |", cells.join(" | "));
    }
    t
}

/// The sections of the record for `p` (empty when nothing ran); `md` for Markdown headings.
pub fn text(p: &Planning, md: bool) -> String {
    let h = |title: &str| {
        if md {
            format!("## {title}\n\n")
        } else {
            format!("{title}\n")
        }
    };
    let mut out = String::new();
    if let Some(c) = &p.chart_updates {
        out.push_str(&h("Chart updates"));
        let behind: Vec<_> = c
            .releases
            .iter()
            .filter(|r| !r.updates.is_empty())
            .collect();
        let _ = writeln!(
            out,
            "Checked {} releases against {} chart repositories at {}: {} with newer chart versions.\n",
            c.releases.len(),
            c.repositories.len(),
            c.checked_at.strftime("%Y-%m-%d %H:%M UTC"),
            behind.len()
        );
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let rows: Vec<Vec<String>> = c
            .releases
            .iter()
            .map(|r| {
                vec![
                    format!("{}/{}", r.namespace, r.release),
                    r.chart.clone(),
                    r.version.clone(),
                    dash(&r.updates.patch),
                    dash(&r.updates.minor),
                    dash(&r.updates.major),
                    r.repository
                        .clone()
                        .or_else(|| r.note.clone())
                        .unwrap_or_default(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.push_str(&pipe_table(
                &[
                    "Release",
                    "Chart",
                    "Deployed",
                    "Patch",
                    "Minor",
                    "Major",
                    "Repository",
                ],
                &rows,
            ));
            out.push('\n');
        }
        for r in c.repositories.iter().filter(|r| r.error.is_some()) {
            let _ = writeln!(
                out,
                "- Repository {} ({}) could not be read: {}",
                r.name,
                r.url,
                r.error.as_deref().unwrap_or("")
            );
        }
        if c.repositories.iter().any(|r| r.error.is_some()) {
            out.push('\n');
        }
    }
    out
}
