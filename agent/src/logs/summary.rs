//! What a rotation pass or a sweep did: counts, bytes, actions, problems. The daemon puts
//! the counts into the node report and /metrics; the CLI prints them.

use std::path::PathBuf;

use comfy_table::{Table, presets};
use serde::Serialize;

/// A problem or a skip, with the place it concerns (`file:line` or a path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogError {
    pub place: String,
    pub message: String,
}

/// A log the policies name that another rotator rotates, left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnedLog {
    pub path: PathBuf,
    /// Who rotates it: `kubelet`, or `logrotate (FILE:LINE)` for the node's logrotate.
    pub owner: String,
}

/// What was (or, in a dry run, would be) done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Renamed to the archive name (rename mode).
    Rotate,
    /// Copied to the archive name, then truncated.
    CopyTruncate,
    /// Copied to the archive name, left as is.
    Copy,
    Compress,
    Delete,
}

impl ActionKind {
    fn verb(self, dry: bool) -> &'static str {
        match (self, dry) {
            (ActionKind::Rotate, false) => "rotated",
            (ActionKind::Rotate, true) => "would rotate",
            (ActionKind::CopyTruncate, false) => "copied+truncated",
            (ActionKind::CopyTruncate, true) => "would copy+truncate",
            (ActionKind::Copy, false) => "copied",
            (ActionKind::Copy, true) => "would copy",
            (ActionKind::Compress, false) => "compressed",
            (ActionKind::Compress, true) => "would compress",
            (ActionKind::Delete, false) => "deleted",
            (ActionKind::Delete, true) => "would delete",
        }
    }
}

/// One action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    pub kind: ActionKind,
    pub path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<PathBuf>,
    /// Size of `path` before the action.
    pub bytes: u64,
    /// Size of the archive after compression (not known in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bytes_after: Option<u64>,
}

/// The result of one rotation pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RotationSummary {
    pub dry_run: bool,
    /// Log files looked at.
    pub files_checked: u64,
    pub rotated: u64,
    /// Bytes of the logs rotated.
    pub rotated_bytes: u64,
    pub compressed: u64,
    pub compressed_bytes_before: u64,
    pub compressed_bytes_after: u64,
    /// Archives removed by `rotate N` / `maxage`.
    pub deleted: u64,
    pub deleted_bytes: u64,
    pub actions: Vec<Action>,
    /// Logs deliberately left alone (symlinks, hard links), with the reason.
    pub skipped: Vec<LogError>,
    /// Logs left alone because another rotator owns them (the kubelet, the node's
    /// logrotate), with the owner.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owned: Vec<OwnedLog>,
    /// Config errors and failures; the pass continued past each.
    pub errors: Vec<LogError>,
    /// Config lines ignored (unknown or obsolete directives, a file included twice) and
    /// features caretaker does not provide (`mail`); everything else was done.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<LogError>,
}

impl RotationSummary {
    /// A table of the actions followed by totals, skips and errors.
    pub fn render_table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .actions
            .iter()
            .map(|a| {
                vec![
                    a.kind.verb(self.dry_run).to_string(),
                    a.path.display().to_string(),
                    a.to.as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    a.bytes.to_string(),
                    a.bytes_after.map(|b| b.to_string()).unwrap_or_default(),
                ]
            })
            .collect();
        let t = condensed_table(&["action", "path", "to", "bytes", "after"], rows);
        let mut out = if self.actions.is_empty() {
            String::from("nothing to do\n")
        } else {
            t + "\n"
        };
        out.push_str(&format!(
            "{}{} checked, {} rotated ({} bytes), {} compressed ({} -> {} bytes), {} deleted ({} bytes), {} skipped, {} left to other rotators, {} errors\n",
            if self.dry_run { "dry run: " } else { "" },
            self.files_checked,
            self.rotated,
            self.rotated_bytes,
            self.compressed,
            self.compressed_bytes_before,
            self.compressed_bytes_after,
            self.deleted,
            self.deleted_bytes,
            self.skipped.len(),
            self.owned.len(),
            self.errors.len()
        ));
        for s in &self.skipped {
            out.push_str(&format!("skipped {}: {}\n", s.place, s.message));
        }
        for o in &self.owned {
            out.push_str(&format!(
                "left to {}: {} (another rotator owns it)\n",
                o.owner,
                o.path.display()
            ));
        }
        for e in &self.errors {
            out.push_str(&format!("error {}: {}\n", e.place, e.message));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning {}: {}\n", w.place, w.message));
        }
        out
    }
}

/// comfy-table's `UTF8_FULL_CONDENSED` table, written directly when every cell is printable
/// ASCII (one byte, one column): comfy-table measures and formats each cell through several
/// allocations, which for a pass that rotates 10,000 logs was ~40 ms of a ~450 ms
/// `caretaker-agent rotate` (issue 10's speed goal). Anything else (wide characters,
/// control characters, a newline in a hostile file name) goes through comfy-table itself.
fn condensed_table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let plain = |c: &str| c.bytes().all(|b| (b' '..=b'~').contains(&b));
    if !header.iter().all(|h| plain(h)) || !rows.iter().flatten().all(|c| plain(c)) {
        let mut t = Table::new();
        t.load_preset(presets::UTF8_FULL_CONDENSED);
        t.set_header(header.to_vec());
        for r in rows {
            t.add_row(r);
        }
        return t.to_string();
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let rule = |left: &str, line: &str, cross: &str, right: &str| {
        let cols: Vec<String> = widths.iter().map(|w| line.repeat(w + 2)).collect();
        format!("{left}{}{right}\n", cols.join(cross))
    };
    let mut out = String::with_capacity((rows.len() + 4) * (widths.iter().sum::<usize>() + 16));
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        out.push('│');
        for (i, (c, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                out.push('┆');
            }
            out.push(' ');
            out.push_str(c);
            out.extend(std::iter::repeat_n(' ', w - c.len() + 1));
        }
        out.push_str("│\n");
    };
    out.push_str(&rule("┌", "─", "┬", "┐"));
    line(&mut out, &mut header.iter().copied());
    out.push_str(&rule("╞", "═", "╪", "╡"));
    for r in &rows {
        line(&mut out, &mut r.iter().map(String::as_str));
    }
    out.push_str(&rule("└", "─", "┴", "┘"));
    out.pop();
    out
}

/// One file a sweep found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SweptFile {
    pub path: PathBuf,
    pub bytes: u64,
    /// Age in seconds (now minus mtime).
    pub(crate) age_seconds: u64,
}

/// The result of a retention sweep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepSummary {
    pub dry_run: bool,
    pub files_checked: u64,
    /// Files older than the limit (deleted unless `dry_run`).
    pub files: Vec<SweptFile>,
    /// Bytes of those files (freed when not a dry run).
    pub freed_bytes: u64,
    pub errors: Vec<LogError>,
}

impl SweepSummary {
    /// A table of the files followed by totals and errors.
    pub fn render_table(&self) -> String {
        let mut t = Table::new();
        t.load_preset(presets::UTF8_FULL_CONDENSED);
        t.set_header(vec!["action", "path", "bytes", "age"]);
        for f in &self.files {
            t.add_row(vec![
                if self.dry_run {
                    "would delete"
                } else {
                    "deleted"
                }
                .to_string(),
                f.path.display().to_string(),
                f.bytes.to_string(),
                humantime::format_duration(std::time::Duration::from_secs(f.age_seconds))
                    .to_string(),
            ]);
        }
        let mut out = if self.files.is_empty() {
            String::from("nothing older than the limit\n")
        } else {
            format!("{t}\n")
        };
        out.push_str(&format!(
            "{}{} checked, {} {}, {} bytes {}, {} errors\n",
            if self.dry_run {
                "dry run (add --apply to delete): "
            } else {
                ""
            },
            self.files_checked,
            self.files.len(),
            if self.dry_run {
                "would be deleted"
            } else {
                "deleted"
            },
            self.freed_bytes,
            if self.dry_run {
                "would be freed"
            } else {
                "freed"
            },
            self.errors.len()
        ));
        for e in &self.errors {
            out.push_str(&format!("error {}: {}\n", e.place, e.message));
        }
        out
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;

    fn comfy(header: &[&str], rows: &[Vec<String>]) -> String {
        let mut t = Table::new();
        t.load_preset(presets::UTF8_FULL_CONDENSED);
        t.set_header(header.to_vec());
        for r in rows {
            t.add_row(r.clone());
        }
        t.to_string()
    }

    #[test]
    fn the_direct_table_is_comfy_tables_byte_for_byte() {
        let header = ["action", "path", "to", "bytes", "after"];
        let row = |a: &str, b: &str, c: &str| {
            vec![
                a.to_string(),
                b.to_string(),
                c.to_string(),
                "1048576".to_string(),
                String::new(),
            ]
        };
        for rows in [
            vec![row("rotate", "/var/log/app.log", "/var/log/app.log.1")],
            vec![
                row("would rotate", "/var/log/a-much-longer-name.log", ""),
                row("compress", "/x", "/x.1.gz"),
                row("delete", "", ""),
            ],
            // Fallbacks: a wide character, a newline in a file name, a tab.
            vec![row("rotate", "/var/log/日本.log", "/var/log/日本.log.1")],
            vec![row("rotate", "/var/log/evil\nname.log", "")],
            vec![row("rotate", "/var/log/tab\there.log", "")],
        ] {
            assert_eq!(
                condensed_table(&header, rows.clone()),
                comfy(&header, &rows)
            );
        }
    }
}
