//! What the emergency cleanup may do to logs: delete rotated logs past retention and
//! compress rotated logs that are not compressed yet. Live logs are never touched.
//!
//! [`LogReclaimer`] is the interface; [`RotatedLogs`] implements it over file-name globs
//! of rotated logs under configured roots. A file counts as rotated only when its name
//! says so: `app.log.1`, `syslog.2`, `app.log.20240101-120000` (kubelet), `app.log-20240101`
//! (dateext), or a compressed `*.gz`/`*.zst`/`*.xz`/`*.bz2`. A plain `*.log` or any other name
//! is live. Symlinks are not followed and files with more than one hard link are skipped
//! (the agent never acts outside its roots).
//!
//! The walk goes through directory handles opened below the roots without following links
//! ([`crate::logs::handle`]), and deleting and compressing are the rotation engine's own
//! operations ([`rotate::delete_archive`], [`rotate::compress_archive`]): the same root
//! check, and a file someone still has open for writing is left alone.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::logs::handle::{Dir, EntryKind, Roots};
use crate::logs::rotate;

/// A rotated log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub modified: SystemTime,
}

/// The log steps of the emergency cleanup.
pub trait LogReclaimer: Send + Sync {
    /// Rotated logs (compressed or not) whose retention has passed, oldest first.
    ///
    /// # Errors
    /// A root that cannot be read.
    fn expired(&self, now: SystemTime) -> io::Result<Vec<LogFile>>;

    /// Rotated logs that are not compressed yet, largest first.
    ///
    /// # Errors
    /// A root that cannot be read.
    fn uncompressed_rotated(&self) -> io::Result<Vec<LogFile>>;

    /// Deletes one file from [`LogReclaimer::expired`]; returns the bytes freed.
    ///
    /// # Errors
    /// The file cannot be removed.
    fn delete(&self, file: &LogFile) -> io::Result<u64>;

    /// Compresses one file from [`LogReclaimer::uncompressed_rotated`] to `<name>.gz`; the
    /// source is removed only after the compressed file is complete and synced. Returns
    /// the bytes saved (source size minus compressed size).
    ///
    /// # Errors
    /// Reading, writing or syncing fails; the source is then left as it was.
    fn compress(&self, file: &LogFile) -> io::Result<u64>;
}

/// Rotated-log name patterns (see the module docs). `*` does not cross `/` here.
pub(crate) const ROTATED_GLOBS: &[&str] = &[
    "*.[0-9]",
    "*.[0-9][0-9]",
    "*.log.[0-9]*",
    "*.log-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]*",
    "*-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]",
    "*.gz",
    "*.zst",
    "*.xz",
    "*.bz2",
];

/// Compressed names: already as small as the cleanup can make them.
pub(crate) const COMPRESSED_GLOBS: &[&str] = &["*.gz", "*.zst", "*.xz", "*.bz2"];

/// Directories deeper than this under a root are not searched.
const MAX_DEPTH: usize = 16;

fn set(globs: &[&str]) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        // The patterns are constants of this module; a bad one is a bug caught by the tests.
        if let Ok(g) = Glob::new(g) {
            b.add(g);
        }
    }
    b.build().unwrap_or_else(|_| GlobSet::empty())
}

/// [`LogReclaimer`] over rotated-log globs under `roots`.
#[derive(Debug, Clone)]
pub struct RotatedLogs {
    roots: Vec<PathBuf>,
    handles: Roots,
    max_age: Duration,
    rotated: GlobSet,
    compressed: GlobSet,
}

impl RotatedLogs {
    /// `roots` as the agent sees them (already under `--path.rootfs`); rotated logs older
    /// than `max_age` are expired.
    pub fn new(roots: Vec<PathBuf>, max_age: Duration) -> Self {
        Self {
            handles: Roots::new(&roots),
            roots,
            max_age,
            rotated: set(ROTATED_GLOBS),
            compressed: set(COMPRESSED_GLOBS),
        }
    }

    /// True when the file name says the file is a rotated log.
    pub(crate) fn is_rotated(&self, name: &str) -> bool {
        self.rotated.is_match(name)
    }

    fn is_compressed(&self, name: &str) -> bool {
        self.compressed.is_match(name)
    }

    /// Every rotated regular file under the roots (no symlinks, single hard link).
    fn rotated_files(&self) -> io::Result<Vec<(LogFile, bool)>> {
        let mut out = Vec::new();
        for root in &self.roots {
            match self.handles.open_dir(root) {
                Ok(d) => self.walk(&d, 0, &mut out)?,
                Err(e) if e.is_not_found() || e.is_not_dir() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    fn walk(&self, dir: &Dir, depth: usize, out: &mut Vec<(LogFile, bool)>) -> io::Result<()> {
        if depth > MAX_DEPTH {
            return Ok(());
        }
        let entries = dir
            .entries()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.path().display())))?;
        for (name, kind) in entries {
            if kind == Some(EntryKind::Symlink) {
                continue;
            }
            let Ok(meta) = dir.stat(&name) else {
                continue;
            };
            if meta.is_dir() {
                // A subdirectory that cannot be read is skipped, not fatal.
                if let Ok(sub) = dir.subdir(&name) {
                    let _ = self.walk(&sub, depth + 1, out);
                }
                continue;
            }
            if !meta.is_file() || meta.nlink() > 1 {
                continue;
            }
            let Some(n) = name.to_str() else { continue };
            if !self.is_rotated(n) {
                continue;
            }
            let file = LogFile {
                path: dir.display(&name),
                size_bytes: meta.len(),
                modified: meta.modified(),
            };
            out.push((file, self.is_compressed(n)));
        }
        Ok(())
    }
}

impl LogReclaimer for RotatedLogs {
    fn expired(&self, now: SystemTime) -> io::Result<Vec<LogFile>> {
        let mut v: Vec<LogFile> = self
            .rotated_files()?
            .into_iter()
            .map(|(f, _)| f)
            .filter(|f| {
                now.duration_since(f.modified)
                    .is_ok_and(|age| age >= self.max_age)
            })
            .collect();
        v.sort_by(|a, b| {
            a.modified
                .cmp(&b.modified)
                .then_with(|| a.path.cmp(&b.path))
        });
        Ok(v)
    }

    fn uncompressed_rotated(&self) -> io::Result<Vec<LogFile>> {
        let mut v: Vec<LogFile> = self
            .rotated_files()?
            .into_iter()
            .filter(|(_, c)| !c)
            .map(|(f, _)| f)
            .collect();
        v.sort_by(|a, b| {
            b.size_bytes
                .cmp(&a.size_bytes)
                .then_with(|| a.path.cmp(&b.path))
        });
        Ok(v)
    }

    fn delete(&self, file: &LogFile) -> io::Result<u64> {
        let name = file.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !self.is_rotated(name) {
            return Err(io::Error::other(format!(
                "{} is not a rotated log; refusing to delete it",
                file.path.display()
            )));
        }
        rotate::delete_archive(&self.handles, &file.path)
    }

    fn compress(&self, file: &LogFile) -> io::Result<u64> {
        let name = file.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !self.is_rotated(name) || self.is_compressed(name) {
            return Err(io::Error::other(format!(
                "{} is not an uncompressed rotated log",
                file.path.display()
            )));
        }
        let c = rotate::compress_archive(&self.handles, &file.path, 2)?;
        Ok(c.bytes_in.saturating_sub(c.bytes_out))
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File};
    use std::io::Read;
    use std::path::Path;

    use super::*;

    fn write(dir: &Path, name: &str, bytes: usize, age: Duration) -> PathBuf {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, "log line\n".repeat(bytes / 9 + 1)).unwrap();
        let f = File::options().write(true).open(&p).unwrap();
        f.set_times(fs::FileTimes::new().set_modified(SystemTime::now() - age))
            .unwrap();
        p
    }

    const DAY: Duration = Duration::from_secs(86400);

    #[test]
    fn only_rotated_names_count_and_live_logs_never_do() {
        let r = RotatedLogs::new(vec![], DAY);
        for live in [
            "syslog",
            "app.log",
            "kern.log",
            "auth.log.tmp",
            "lastlog",
            "app.log.gz.caretaker-tmp",
        ] {
            assert!(!r.is_rotated(live), "{live}");
        }
        for rotated in [
            "syslog.1",
            "app.log.1",
            "app.log.12",
            "0.log.20240101-120000",
            "app.log-20240101",
            "messages-20240101",
            "app.log.2.gz",
            "x.zst",
        ] {
            assert!(r.is_rotated(rotated), "{rotated}");
        }
    }

    #[test]
    fn expired_are_old_rotated_files_oldest_first_and_never_links() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "app.log", 100, 30 * DAY);
        let old_gz = write(d.path(), "pods/a/0.log.20240101-000000.gz", 100, 20 * DAY);
        let old = write(d.path(), "syslog.2", 100, 10 * DAY);
        write(d.path(), "syslog.1", 100, DAY / 2);
        let linked = write(d.path(), "other.log.1", 100, 30 * DAY);
        fs::hard_link(&linked, d.path().join("hard.log.1")).unwrap();
        std::os::unix::fs::symlink(&old, d.path().join("sym.log.1")).unwrap();
        let r = RotatedLogs::new(vec![d.path().into(), d.path().join("missing")], 7 * DAY);
        let got: Vec<PathBuf> = r
            .expired(SystemTime::now())
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(got, [old_gz, old]);
    }

    #[test]
    fn compress_replaces_the_source_with_a_complete_gzip_of_the_same_age() {
        let d = tempfile::tempdir().unwrap();
        let src = write(d.path(), "app.log.1", 90_000, 3 * DAY);
        let original = fs::read(&src).unwrap();
        let r = RotatedLogs::new(vec![d.path().into()], 7 * DAY);
        let files = r.uncompressed_rotated().unwrap();
        assert_eq!(files.len(), 1);
        let saved = r.compress(&files[0]).unwrap();
        assert!(!src.exists());
        let gz = d.path().join("app.log.1.gz");
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(File::open(&gz).unwrap())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, original);
        assert_eq!(
            saved,
            original.len() as u64 - fs::metadata(&gz).unwrap().len()
        );
        assert_eq!(
            fs::metadata(&gz).unwrap().modified().unwrap(),
            files[0].modified
        );
        // The compressed file is no longer a candidate, and a live log is refused.
        assert!(r.uncompressed_rotated().unwrap().is_empty());
        let live = write(d.path(), "app.log", 10, DAY);
        let f = LogFile {
            path: live.clone(),
            size_bytes: 10,
            modified: SystemTime::now(),
        };
        assert!(r.compress(&f).is_err());
        assert!(r.delete(&f).is_err());
        assert!(live.exists());
    }
}
