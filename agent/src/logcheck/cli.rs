//! `caretaker-agent log-check`: the output of a one-shot check.
//!
//! JSON (the contract operators script against; field names are stable):
//!
//! ```json
//! {
//!   "since": "2026-12-04T00:45:00Z",
//!   "until": "2026-12-05T00:45:00Z",
//!   "patterns": [{"name": "error", "regex": "error"}, …],
//!   "counts": [{"namespace": "shop", "pod": "api-7d9f", "container": "api",
//!               "pattern": "error", "count": 12}, …],
//!   "files_read": 31, "bytes_read": 52428800, "lines": 400000, "malformed_lines": 0,
//!   "problems": [{"path": "…", "reason": "…"}]
//! }
//! ```
//!
//! `counts` has one entry per container found and pattern, zeros included, sorted by
//! namespace, pod, container and pattern order. The table shows one row per container
//! with one column per pattern.

use jiff::Timestamp;
use serde::Serialize;

use super::check::Outcome;
use super::matcher::Pattern;

/// The JSON output.
#[derive(Debug, Serialize)]
pub struct Report {
    pub since: Timestamp,
    pub until: Timestamp,
    pub patterns: Vec<Pattern>,
    pub counts: Vec<CountRow>,
    pub files_read: u64,
    pub bytes_read: u64,
    pub lines: u64,
    pub(crate) malformed_lines: u64,
    pub problems: Vec<ProblemRow>,
}

/// One count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountRow {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub pattern: String,
    pub count: u64,
}

/// A file or directory that could not be read.
#[derive(Debug, Serialize)]
pub struct ProblemRow {
    pub path: String,
    pub reason: String,
}

impl Report {
    /// The report of `outcome` for the window `since..until`.
    pub fn new(
        outcome: &Outcome,
        patterns: &[Pattern],
        since: Timestamp,
        until: Timestamp,
    ) -> Self {
        let n = patterns.len();
        let mut counts = Vec::new();
        for (key, c) in &outcome.containers {
            let sums = c.sum(i64::MIN, i64::MAX, n);
            for (p, count) in patterns.iter().zip(sums) {
                counts.push(CountRow {
                    namespace: key.namespace.clone(),
                    pod: key.pod.clone(),
                    container: key.container.clone(),
                    pattern: p.name.clone(),
                    count,
                });
            }
        }
        Self {
            since,
            until,
            patterns: patterns.to_vec(),
            counts,
            files_read: outcome.totals.files_read,
            bytes_read: outcome.totals.bytes_read,
            lines: outcome.totals.lines,
            malformed_lines: outcome.totals.malformed,
            problems: outcome
                .problems
                .iter()
                .map(|p| ProblemRow {
                    path: p.path.display().to_string(),
                    reason: p.reason.clone(),
                })
                .collect(),
        }
    }

    /// The table: one row per container, one column per pattern.
    pub fn render_table(&self) -> String {
        let mut header = vec!["NAMESPACE".to_string(), "POD".into(), "CONTAINER".into()];
        header.extend(self.patterns.iter().map(|p| p.name.to_uppercase()));
        let mut rows = vec![header];
        for chunk in self.counts.chunks(self.patterns.len().max(1)) {
            let Some(first) = chunk.first() else { continue };
            let mut row = vec![
                first.namespace.clone(),
                first.pod.clone(),
                first.container.clone(),
            ];
            row.extend(chunk.iter().map(|c| c.count.to_string()));
            rows.push(row);
        }
        let cols = rows[0].len();
        let widths: Vec<usize> = (0..cols)
            .map(|i| {
                rows.iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out.push_str(&format!(
            "{} files, {} bytes, {} lines from {} to {}\n",
            self.files_read, self.bytes_read, self.lines, self.since, self.until
        ));
        for p in &self.problems {
            out.push_str(&format!("problem: {}: {}\n", p.path, p.reason));
        }
        out
    }
}
