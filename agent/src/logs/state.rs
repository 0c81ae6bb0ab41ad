//! The state file: when each log was last rotated, in logrotate's own format so that a
//! node switching from logrotate keeps every file's schedule.
//!
//! ```text
//! logrotate state -- version 2
//! "/var/log/syslog" 2024-1-15-3:0:0
//! ```
//! Version 1 files (`"path" 2024-1-15`, date only) are read too. Lines that cannot be
//! read are reported and their file is treated as new; a truncated file loses only the
//! cut line. Writes are atomic: a temporary file in the same directory, fsync, rename,
//! fsync of the directory.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::civil::DateTime;

use super::fsx;
use super::handle::Dir;

/// The first line logrotate 3.21 writes.
pub(crate) const HEADER: &str = "logrotate state -- version 2";

/// Last rotation per log path, in the node's local civil time (as logrotate stores it).
///
/// Keyed by the path's bytes, as logrotate compares them (`strcmp`): a pass looks up every
/// log, and `Path`'s ordering and hashing (component by component) were the largest cost
/// of a pass over 10,000 logs. The file is written sorted by path bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub entries: HashMap<OsString, DateTime>,
}

/// A state file error.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write state file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl State {
    /// The last rotation recorded for `path`.
    pub fn get(&self, path: &Path) -> Option<DateTime> {
        self.entries.get(path.as_os_str()).copied()
    }

    /// Records `t` as the last rotation of `path`.
    pub fn set(&mut self, path: &Path, t: DateTime) {
        self.entries.insert(path.as_os_str().to_owned(), t);
    }

    /// Reads a state file. A missing file is an empty state, and so is a file that is not
    /// a regular file (`--state /dev/null`: keep no state, as logrotate); it is not read
    /// (a FIFO would block, `/dev/zero` never end). [`is_writable_state`] tells whether
    /// it may be written.
    ///
    /// # Errors
    /// The file exists but cannot be read. Unreadable lines are not errors: they come
    /// back as `(line number, message)` warnings.
    pub fn load(path: &Path) -> Result<(Self, Vec<(usize, String)>), StateError> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |source| StateError::Read {
            path: path.into(),
            source,
        };
        let mut f = match std::fs::File::options()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Self::default(), Vec::new()));
            }
            Err(e) => return Err(err(e)),
        };
        if !f.metadata().map_err(err)?.is_file() {
            return Ok((Self::default(), Vec::new()));
        }
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(err)?;
        Ok(Self::parse(&String::from_utf8_lossy(&bytes)))
    }

    /// Drops the entries of logs that no longer exist and were last rotated more than a
    /// year before `now` (logrotate does the same when it writes its state). Returns how
    /// many were dropped.
    pub fn prune(&mut self, now: DateTime) -> usize {
        let Ok(limit) = now.checked_sub(jiff::Span::new().days(365)) else {
            return 0;
        };
        let before = self.entries.len();
        self.entries.retain(|p, t| {
            *t >= limit
                || !matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        });
        before - self.entries.len()
    }

    /// Parses state text (see the module docs).
    pub fn parse(text: &str) -> (Self, Vec<(usize, String)>) {
        let mut st = Self::default();
        st.entries.reserve(text.len() / 64);
        let mut warnings = Vec::new();
        // One clock read per file (not per line): the latest plausible year (UTC's: a
        // day's difference is nothing against the bound, and no time zone is looked up).
        let max_year = jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .year()
            .saturating_add(MAX_FUTURE_YEARS);
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if n == 1 && line.starts_with("logrotate state -- version") {
                continue;
            }
            match parse_line(line).and_then(|(p, t)| plausible(t, max_year).map(|()| (p, t))) {
                Ok((p, t)) => {
                    st.entries.insert(p, t);
                }
                Err(e) => warnings.push((n, e.to_string())),
            }
        }
        (st, warnings)
    }

    /// The file's text in logrotate 3.21's format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(64 * (self.entries.len() + 1));
        out.push_str(HEADER);
        out.push('\n');
        let mut sorted: Vec<(&OsString, &DateTime)> = self.entries.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (p, t) in sorted {
            out.push('"');
            let p = p.to_string_lossy();
            if p.contains(['"', '\\', '\n']) {
                // As logrotate 3.21 writes them: `\"`, `\\`, and a newline as `\n`.
                for c in p.chars() {
                    match c {
                        '"' | '\\' => {
                            out.push('\\');
                            out.push(c);
                        }
                        '\n' => out.push_str("\\n"),
                        c => out.push(c),
                    }
                }
            } else {
                out.push_str(&p);
            }
            let _ = writeln!(
                out,
                "\" {}-{}-{}-{}:{}:{}",
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
        }
        out
    }

    /// Writes the state atomically (temp file, fsync, rename, fsync of the directory).
    ///
    /// # Errors
    /// Any step fails; the old file is then untouched.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let err = |source| StateError::Write {
            path: path.into(),
            source,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(err)?;
        let name = path
            .file_name()
            .ok_or_else(|| err(std::io::Error::other("the state file needs a file name")))?;
        // Everything relative to the directory's handle: the temporary is created with
        // O_EXCL | O_NOFOLLOW, so a file or symlink planted at its name is never followed
        // (a leftover is removed first, as the link itself).
        let dir = Dir::open_trusted(dir).map_err(err)?;
        let tmp = fsx::temp_file_name(name);
        let _ = dir.unlink(&tmp);
        let res = (|| {
            let mut f = dir.create_new(&tmp, 0o644)?;
            f.write_all(self.render().as_bytes())?;
            f.sync_all()?;
            dir.rename(&tmp, &dir, name)?;
            dir.sync()
        })();
        if res.is_err() {
            let _ = dir.unlink(&tmp);
        }
        res.map_err(err)
    }
}

/// Why a state file line is skipped (with a warning naming its line number).
#[derive(Debug, thiserror::Error)]
enum LineError {
    #[error("{0:?} is not an absolute path")]
    NotAbsolute(String),
    #[error("bad date {0:?}")]
    BadDate(String),
    #[error("unterminated quote in {0:?}")]
    UnterminatedQuote(String),
    #[error("no date in {0:?}")]
    NoDate(String),
    #[error("time {0} is before 1970")]
    Before1970(DateTime),
    #[error("time {0} is more than {MAX_FUTURE_YEARS} years in the future")]
    TooFarAhead(DateTime),
}

fn parse_line(line: &str) -> Result<(OsString, DateTime), LineError> {
    // The common line: a quoted path without escapes, taken as it is.
    if let Some(r) = line.strip_prefix('"')
        && let Some(end) = r.find(['"', '\\'])
        && r.as_bytes()[end] == b'"'
    {
        let (path, rest) = (&r[..end], r[end + 1..].trim());
        if !path.starts_with('/') {
            return Err(LineError::NotAbsolute(path.to_string()));
        }
        let t = parse_time(rest).ok_or_else(|| LineError::BadDate(rest.to_string()))?;
        return Ok((OsString::from(path), t));
    }
    let (path, rest) = if let Some(r) = line.strip_prefix('"') {
        let mut p = String::new();
        let mut chars = r.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => p.push('\n'),
                    Some((_, n)) => p.push(n),
                    None => {}
                },
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                c => p.push(c),
            }
        }
        let end = end.ok_or_else(|| LineError::UnterminatedQuote(line.to_string()))?;
        (p, r[end..].trim())
    } else {
        let (p, r) = line
            .rsplit_once(char::is_whitespace)
            .ok_or_else(|| LineError::NoDate(line.to_string()))?;
        (p.trim().to_string(), r.trim())
    };
    if !path.starts_with('/') {
        return Err(LineError::NotAbsolute(path));
    }
    Ok((
        OsString::from(path),
        parse_time(rest).ok_or_else(|| LineError::BadDate(rest.to_string()))?,
    ))
}

/// How far ahead of the clock a recorded rotation may lie before it is taken for a
/// corrupt entry (a little ahead forces a rotation, logrotate's rule for a clock that
/// was set back).
const MAX_FUTURE_YEARS: i16 = 10;

/// A time before 1970 or after `max_year` (now plus [`MAX_FUTURE_YEARS`]) is not a
/// rotation that happened.
fn plausible(t: DateTime, max_year: i16) -> Result<(), LineError> {
    if t.year() < 1970 {
        return Err(LineError::Before1970(t));
    }
    if t.year() > max_year {
        return Err(LineError::TooFarAhead(t));
    }
    Ok(())
}

/// Whether the state may be written to `path`: it is missing or a regular file (after
/// symlinks). A device, FIFO or socket (`--state /dev/null`) is never replaced or written
/// into, as logrotate 3.22.
pub(crate) fn is_writable_state(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(m) => m.is_file(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// `Y-M-D` or `Y-M-D-H:M:S`, numbers without padding.
fn parse_time(s: &str) -> Option<DateTime> {
    let mut it = s.splitn(4, '-');
    let y: i16 = it.next()?.parse().ok()?;
    let m: i8 = it.next()?.parse().ok()?;
    let d: i8 = it.next()?.parse().ok()?;
    let (h, mi, se) = match it.next() {
        None => (0, 0, 0),
        Some(t) => {
            let mut p = t.split(':');
            let h: i8 = p.next()?.parse().ok()?;
            let mi: i8 = p.next()?.parse().ok()?;
            let se: i8 = p.next()?.parse().ok()?;
            if p.next().is_some() {
                return None;
            }
            (h, mi, se)
        }
    };
    DateTime::new(y, m, d, h, mi, se, 0).ok()
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[test]
    fn reads_logrotate_version_2_and_1_and_round_trips_version_2() {
        let v2 = "logrotate state -- version 2\n\"/var/log/a.log\" 2026-11-29-18:3:7\n\"/var/log/q\\\"x\" 2024-1-2-0:0:0\n";
        let (st, w) = State::parse(v2);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            st.entries[OsStr::new("/var/log/a.log")],
            DateTime::new(2026, 11, 29, 18, 3, 7, 0).unwrap()
        );
        assert_eq!(
            st.entries[OsStr::new("/var/log/q\"x")],
            DateTime::new(2024, 1, 2, 0, 0, 0, 0).unwrap()
        );
        assert_eq!(State::parse(&st.render()).0, st);
        assert_eq!(
            st.render().lines().nth(1).unwrap(),
            "\"/var/log/a.log\" 2026-11-29-18:3:7"
        );
        let (v1, w) = State::parse("logrotate state -- version 1\n\"/var/log/old\" 2008-1-28\n");
        assert!(w.is_empty());
        assert_eq!(
            v1.entries[OsStr::new("/var/log/old")],
            DateTime::new(2008, 1, 28, 0, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn corrupt_and_truncated_lines_are_reported_and_skipped() {
        let text = "logrotate state -- version 2\n\"/a\" 2024-1-2-3:4:5\ngarbage\n\"/b\" 2024-13-2\n\"/c\" 2024-1-";
        let (st, w) = State::parse(text);
        assert_eq!(
            st.entries.keys().collect::<Vec<_>>(),
            vec![OsStr::new("/a")]
        );
        assert_eq!(
            st.get(Path::new("/a")),
            DateTime::new(2024, 1, 2, 3, 4, 5, 0).ok()
        );
        let mut two = st.clone();
        two.entries
            .insert("/0".into(), DateTime::new(2024, 1, 1, 0, 0, 0, 0).unwrap());
        assert_eq!(
            two.render(),
            "logrotate state -- version 2\n\"/0\" 2024-1-1-0:0:0\n\"/a\" 2024-1-2-3:4:5\n"
        );
        assert_eq!(w.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![3, 4, 5]);
        let (st, w) = State::parse("\u{0}\u{1}binary junk");
        assert!(st.entries.is_empty());
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn save_is_atomic_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("status");
        let mut st = State::default();
        st.entries
            .insert("/x".into(), DateTime::new(2024, 5, 6, 7, 8, 9, 0).unwrap());
        st.save(&p).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "logrotate state -- version 2\n\"/x\" 2024-5-6-7:8:9\n"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("status")]);
        assert_eq!(
            State::load(&dir.path().join("missing")).unwrap().0,
            State::default()
        );
    }

    #[test]
    fn prune_drops_entries_of_missing_logs_older_than_a_year() {
        let dir = tempfile::tempdir().unwrap();
        let here = dir.path().join("here.log");
        std::fs::write(&here, "").unwrap();
        let gone = dir.path().join("gone.log");
        let gone_recent = dir.path().join("gone-recent.log");
        let mut st = State::default();
        let old = DateTime::new(2024, 1, 1, 0, 0, 0, 0).unwrap();
        st.set(&here, old);
        st.set(&gone, old);
        st.set(&gone_recent, DateTime::new(2025, 6, 1, 0, 0, 0, 0).unwrap());
        let now = DateTime::new(2026, 1, 1, 0, 0, 0, 0).unwrap();
        assert_eq!(st.prune(now), 1);
        assert_eq!(st.get(&gone), None);
        assert_eq!(st.get(&here), Some(old));
        assert!(st.get(&gone_recent).is_some());
    }
}
