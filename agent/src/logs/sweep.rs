//! Retention sweeps: delete files matching a glob whose mtime is strictly older than an
//! age (`*.log` after 7 days, `*.log.gz` after 30 days).
//!
//! A file exactly at the limit stays. Directories and symlinks are never deleted. Sweeps
//! obey `logs.roots`: a pattern is expanded below the roots only ([`super::walk`], never
//! entering a symlinked directory), a pattern outside them is refused with an error, and
//! each file is checked and deleted through its directory's handle (opened below the
//! roots without following links), with the engine's delete ([`rotate::delete_in`]: not
//! while a writer has it open). Freed bytes count allocated blocks of files with a
//! single link (deleting one name of a hard-linked file frees nothing).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use caretaker_core::config::{BoundedDuration, ms};
use serde::{Deserialize, Serialize};

use super::compress::IN_USE;
use super::handle::{Dir, OpenDirError, Roots};
use super::rotate;
use super::summary::{LogError, SweepSummary, SweptFile};
use super::walk::{self, GlobError};

/// One retention rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Absolute glob, e.g. `/var/log/*.log.gz`. `*` does not match a leading dot.
    pub glob: String,
    /// Files whose mtime is more than this long ago are deleted, e.g. `30d` (any
    /// duration).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// How often the daemon applies this rule (the first time right after it starts).
    /// Default 1 h. 1s to 30d. The CLI's `sweep` ignores it.
    #[serde(default = "RetentionRule::default_interval")]
    pub interval: SweepInterval,
}

/// How often a retention rule is applied: 1s to 30d.
pub type SweepInterval = BoundedDuration<{ ms::SECOND }, { 30 * ms::DAY }>;

impl RetentionRule {
    /// A rule with the default interval.
    pub fn new(glob: impl Into<String>, max_age: Duration) -> Self {
        Self {
            glob: glob.into(),
            max_age,
            interval: Self::default_interval(),
        }
    }

    /// The default interval (a `serde(default)` function: `glob` and `max_age` are
    /// required, so a rule has no `Default`).
    fn default_interval() -> SweepInterval {
        SweepInterval::secs(3600)
    }
}

/// Runs the rules once below `roots`. Nothing is deleted unless `apply`.
pub fn sweep(rules: &[RetentionRule], roots: &Roots, now: SystemTime, apply: bool) -> SweepSummary {
    let mut out = SweepSummary {
        dry_run: !apply,
        ..SweepSummary::default()
    };
    for rule in rules {
        let paths = match walk::expand(roots, &rule.glob) {
            Ok(p) => p,
            Err(GlobError::Open(OpenDirError::Outside { .. })) => {
                let list: Vec<String> = roots
                    .paths()
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect();
                out.errors.push(LogError {
                    place: rule.glob.clone(),
                    message: format!(
                        "the pattern is outside the configured roots (logs.roots: {}); nothing swept",
                        list.join(", ")
                    ),
                });
                continue;
            }
            Err(GlobError::Open(e)) if e.is_not_found() => continue,
            Err(e) => {
                out.errors.push(LogError {
                    place: rule.glob.clone(),
                    message: e.to_string(),
                });
                continue;
            }
        };
        let mut dirs: HashMap<PathBuf, Result<Dir, OpenDirError>> = HashMap::new();
        for path in paths {
            out.files_checked += 1;
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            let dir = match dirs
                .entry(parent.to_path_buf())
                .or_insert_with(|| roots.open_dir(parent))
            {
                Ok(d) => d,
                // A literal pattern whose directory does not exist: nothing to do.
                Err(e) if e.is_not_found() => continue,
                Err(e) => {
                    out.errors.push(LogError {
                        place: path.display().to_string(),
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            if let Err(e) = one(dir, name, rule.max_age, now, apply, &mut out) {
                out.errors.push(LogError {
                    place: path.display().to_string(),
                    message: caretaker_core::error::Chain(&e).to_string(),
                });
            }
        }
    }
    out
}

/// Why one file could not be swept; reported with its path.
#[derive(Debug, thiserror::Error)]
enum FileError {
    #[error("cannot stat")]
    Stat(#[source] std::io::Error),
    /// The file is in use (held by a rotation in progress); the error says so itself.
    #[error(transparent)]
    InUse(std::io::Error),
    #[error("cannot delete")]
    Delete(#[source] std::io::Error),
}

fn one(
    dir: &Dir,
    name: &OsStr,
    max_age: Duration,
    now: SystemTime,
    apply: bool,
    out: &mut SweepSummary,
) -> Result<(), FileError> {
    let meta = match dir.stat(name) {
        Ok(m) => m,
        // Vanished since the walk saw it: nothing to do.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(FileError::Stat(e)),
    };
    if !meta.is_file() {
        return Ok(()); // directories, symlinks, sockets: never swept
    }
    let age = now
        .duration_since(meta.modified())
        .unwrap_or(Duration::ZERO);
    if age <= max_age {
        return Ok(());
    }
    let freed = if meta.nlink() == 1 {
        meta.allocated_bytes()
    } else {
        0
    };
    if apply {
        match rotate::delete_in(dir, name, None) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == IN_USE => return Err(FileError::InUse(e)),
            Err(e) => return Err(FileError::Delete(e)),
        }
    }
    out.freed_bytes += freed;
    out.files.push(SweptFile {
        path: dir.display(name),
        bytes: meta.len(),
        age_seconds: age.as_secs(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn touch(p: &Path, bytes: usize, mtime: SystemTime) {
        std::fs::write(p, vec![b'x'; bytes]).unwrap();
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }

    #[test]
    fn deletes_strictly_older_files_and_keeps_the_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let day = Duration::from_secs(86_400);
        touch(
            &dir.path().join("old.log"),
            5000,
            now - 7 * day - Duration::from_secs(1),
        );
        touch(&dir.path().join("edge.log"), 10, now - 7 * day);
        touch(&dir.path().join("new.log"), 10, now);
        touch(&dir.path().join(".hidden.log"), 10, now - 70 * day);
        std::fs::create_dir(dir.path().join("dir.log")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("old.log"), dir.path().join("link.log"))
            .unwrap();
        let rules = vec![RetentionRule::new(
            format!("{}/*.log", dir.path().display()),
            7 * day,
        )];
        let roots = Roots::new(&[dir.path().to_path_buf()]);
        let dry = sweep(&rules, &roots, now, false);
        assert_eq!(
            dry.files
                .iter()
                .map(|f| f.path.file_name().unwrap().to_str().unwrap())
                .collect::<Vec<_>>(),
            vec!["old.log"]
        );
        assert_eq!(dry.files[0].bytes, 5000);
        assert!(dry.freed_bytes >= 5000);
        assert!(
            dir.path().join("old.log").exists(),
            "dry run deletes nothing"
        );
        let real = sweep(&rules, &roots, now, true);
        assert_eq!(real.files.len(), 1);
        assert!(!dir.path().join("old.log").exists());
        for kept in ["edge.log", "new.log", ".hidden.log", "dir.log"] {
            assert!(dir.path().join(kept).exists(), "{kept}");
        }
        assert!(std::fs::symlink_metadata(dir.path().join("link.log")).is_ok());
        assert_eq!(real.errors, vec![]);
    }

    #[test]
    fn a_symlinked_directory_does_not_lead_out_of_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let now = SystemTime::now() + Duration::from_secs(10 * 86_400);
        touch(&outside.join("victim.log"), 10, SystemTime::now());
        touch(&root.join("sub/mine.log"), 10, SystemTime::now());
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        let roots = Roots::new(std::slice::from_ref(&root));
        let day = Duration::from_secs(86_400);
        let s = sweep(
            &[RetentionRule::new(
                format!("{}/*/*.log", root.display()),
                day,
            )],
            &roots,
            now,
            true,
        );
        assert!(outside.join("victim.log").exists());
        assert!(!root.join("sub/mine.log").exists());
        assert_eq!(s.errors, vec![]);
        // Named literally, the link is refused with a message.
        touch(&root.join("sub/mine.log"), 10, SystemTime::now());
        let s = sweep(
            &[RetentionRule::new(
                format!("{}/escape/*.log", root.display()),
                day,
            )],
            &roots,
            now,
            true,
        );
        assert!(outside.join("victim.log").exists());
        assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
        assert!(s.errors[0].message.contains("symlink"), "{:?}", s.errors);
    }

    #[test]
    fn a_pattern_outside_the_roots_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let other = dir.path().join("etc");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        touch(&other.join("a.conf"), 10, SystemTime::UNIX_EPOCH);
        let roots = Roots::new(std::slice::from_ref(&root));
        for pattern in [
            format!("{}/*.conf", other.display()),
            format!("{}/../etc/*.conf", root.display()),
            format!("{}/a.conf", other.display()),
        ] {
            let s = sweep(
                &[RetentionRule::new(pattern.clone(), Duration::from_secs(1))],
                &roots,
                SystemTime::now(),
                true,
            );
            assert!(other.join("a.conf").exists(), "{pattern}");
            assert_eq!(s.files.len(), 0, "{pattern}");
            assert_eq!(s.errors.len(), 1, "{pattern}: {:?}", s.errors);
            assert!(
                s.errors[0].message.contains("outside the configured roots"),
                "{pattern}: {:?}",
                s.errors
            );
        }
    }
}
