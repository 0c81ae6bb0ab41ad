//! A log check over a pods directory: once (the CLI: every file in the window, from its
//! start) or incrementally (the daemon: each file from where the last check stopped,
//! see [`super::state`]).

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::counts::ContainerCounts;
use super::matcher::Matcher;
use super::scan::{ScanEnd, Scanner, Skip, Tail, Window};
use super::walk::{self, ContainerKey, LogFile, Skipped, WalkError};

/// What one check read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadTotals {
    pub files_read: u64,
    /// Bytes read (decompressed for `.gz` files).
    pub bytes_read: u64,
    /// Logical lines in the window.
    pub lines: u64,
    /// Lines that are not CRI records.
    pub malformed: u64,
}

/// A file that could not be read; the others still count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    pub path: PathBuf,
    pub reason: String,
}

/// The result of a one-shot check.
#[derive(Debug, Default)]
pub struct Outcome {
    pub containers: BTreeMap<ContainerKey, ContainerCounts>,
    pub totals: ReadTotals,
    pub problems: Vec<FileProblem>,
}

/// Where to start reading a file and how its end is treated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadFrom {
    /// Offset (decompressed for `.gz`).
    pub offset: u64,
    pub skip: Skip,
    pub tail: Tail,
}

/// Scans one file from `from`, adding to `counts`.
///
/// # Errors
/// Seeking or reading fails (a corrupt `.gz` too).
pub(crate) fn scan_file(
    scanner: &mut Scanner,
    file: &mut LogFile,
    from: ReadFrom,
    matcher: &Matcher,
    window: Window,
    counts: &mut ContainerCounts,
) -> io::Result<ScanEnd> {
    let mut sink = counts.sink(matcher.names().len());
    if file.gzip {
        let mut gz = flate2::read::MultiGzDecoder::new(&file.file);
        let skipped = io::copy(&mut (&mut gz).take(from.offset), &mut io::sink())?;
        let mut end = scanner.scan(gz, matcher, window, from.skip, from.tail, &mut sink)?;
        end.resume_at += skipped;
        Ok(end)
    } else {
        file.file.seek(SeekFrom::Start(from.offset))?;
        let mut end = scanner.scan(&file.file, matcher, window, from.skip, from.tail, &mut sink)?;
        end.resume_at += from.offset;
        Ok(end)
    }
}

/// Whether `name` is a container's current log (`N.log`), still being written.
pub(crate) fn is_current(name: &str) -> bool {
    name.ends_with(".log")
}

/// Counts every line of `window` in every log under `pods_dir`, each file read once from
/// its start; files last modified before the window are not opened for reading.
///
/// # Errors
/// The pods directory cannot be listed or holds too many files.
pub fn check_once(
    pods_dir: &Path,
    matcher: &Matcher,
    window: Window,
) -> Result<Outcome, WalkError> {
    let (files, skipped) = walk::walk(pods_dir, window.from)?;
    let mut out = Outcome {
        problems: skipped.into_iter().map(problem).collect(),
        ..Outcome::default()
    };
    let mut scanner = Scanner::default();
    for mut f in files {
        let counts = out.containers.entry(f.container.clone()).or_default();
        let from = ReadFrom {
            offset: 0,
            skip: Skip::None,
            tail: Tail::Flush,
        };
        match scan_file(&mut scanner, &mut f, from, matcher, window, counts) {
            Ok(end) => add(&mut out.totals, &end),
            Err(e) => out.problems.push(FileProblem {
                path: f.path.clone(),
                reason: e.to_string(),
            }),
        }
    }
    Ok(out)
}

pub(crate) fn add(t: &mut ReadTotals, end: &ScanEnd) {
    t.files_read += 1;
    t.bytes_read = t.bytes_read.saturating_add(end.bytes_read);
    t.lines = t.lines.saturating_add(end.lines);
    t.malformed = t.malformed.saturating_add(end.malformed);
}

pub(crate) fn problem(s: Skipped) -> FileProblem {
    FileProblem {
        path: s.path,
        reason: s.reason,
    }
}
