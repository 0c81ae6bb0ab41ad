//! Retention sweeps: delete files matching a glob whose mtime is strictly older than an
//! age (`*.log` after 7 days, `*.log.gz` after 30 days).
//!
//! A file exactly at the limit stays. Directories and symlinks are never deleted. A
//! match is only considered when its directory resolves inside the pattern's literal
//! prefix (the part before the first wildcard), so a symlinked directory cannot lead a
//! sweep out of the tree it names. Freed bytes count allocated blocks of files with a
//! single link (deleting one name of a hard-linked file frees nothing).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::fsx;
use super::summary::{LogError, SweepSummary, SweptFile};

/// One retention rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Absolute glob, e.g. `/var/log/*.log.gz`. `*` does not match a leading dot.
    pub glob: String,
    /// Files whose mtime is more than this long ago are deleted, e.g. `30d`.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// How often the daemon applies this rule (the first time right after it starts).
    /// Default 1 h; at least 1 s. The CLI's `sweep` ignores it.
    #[serde(default = "default_interval", deserialize_with = "interval")]
    pub interval: Duration,
}

impl RetentionRule {
    /// A rule with the default interval.
    pub fn new(glob: impl Into<String>, max_age: Duration) -> Self {
        Self {
            glob: glob.into(),
            max_age,
            interval: default_interval(),
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(3600)
}

fn interval<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    caretaker_core::config::bounded_duration(
        d,
        Duration::from_secs(1),
        Duration::from_secs(30 * 86_400),
    )
}

/// The directory part of a pattern before its first wildcard.
pub fn literal_root(pattern: &str) -> PathBuf {
    let cut = pattern.find(['*', '?', '[']).unwrap_or(pattern.len());
    let lit = &pattern[..cut];
    match lit.rfind('/') {
        Some(0) => PathBuf::from("/"),
        Some(i) => PathBuf::from(&lit[..i]),
        None => PathBuf::from("/"),
    }
}

/// Runs the rules once. Nothing is deleted unless `apply`.
pub fn sweep(rules: &[RetentionRule], now: SystemTime, apply: bool) -> SweepSummary {
    let mut out = SweepSummary {
        dry_run: !apply,
        ..SweepSummary::default()
    };
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    for rule in rules {
        if !rule.glob.starts_with('/') {
            out.errors.push(LogError {
                place: rule.glob.clone(),
                message: "the pattern must be an absolute path".into(),
            });
            continue;
        }
        let roots = vec![literal_root(&rule.glob)];
        let paths = match glob::glob_with(&rule.glob, opts) {
            Ok(p) => p,
            Err(e) => {
                out.errors.push(LogError {
                    place: rule.glob.clone(),
                    message: format!("bad pattern: {e}"),
                });
                continue;
            }
        };
        for entry in paths {
            let path = match entry {
                Ok(p) => p,
                Err(e) => {
                    out.errors.push(LogError {
                        place: e.path().display().to_string(),
                        message: e.error().to_string(),
                    });
                    continue;
                }
            };
            out.files_checked += 1;
            if let Err(message) = one(&path, rule.max_age, now, apply, &roots, &mut out) {
                out.errors.push(LogError {
                    place: path.display().to_string(),
                    message,
                });
            }
        }
    }
    out
}

fn one(
    path: &Path,
    max_age: Duration,
    now: SystemTime,
    apply: bool,
    roots: &[PathBuf],
    out: &mut SweepSummary,
) -> Result<(), String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        // Vanished since the glob saw it: nothing to do.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot stat: {e}")),
    };
    if !meta.is_file() {
        return Ok(()); // directories, symlinks, sockets: never swept
    }
    let mtime = meta.modified().map_err(|e| e.to_string())?;
    let age = now.duration_since(mtime).unwrap_or(Duration::ZERO);
    if age <= max_age {
        return Ok(());
    }
    if !fsx::inside_roots(path, roots) {
        return Err(format!(
            "resolves outside {}; not touched",
            roots[0].display()
        ));
    }
    let freed = if meta.nlink() == 1 {
        fsx::allocated_bytes(&meta)
    } else {
        0
    };
    if apply {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("cannot delete: {e}")),
        }
    }
    out.freed_bytes += freed;
    out.files.push(SweptFile {
        path: path.to_path_buf(),
        bytes: meta.len(),
        age_seconds: age.as_secs(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
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
        let dry = sweep(&rules, now, false);
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
        let real = sweep(&rules, now, true);
        assert_eq!(real.files.len(), 1);
        assert!(!dir.path().join("old.log").exists());
        for kept in ["edge.log", "new.log", ".hidden.log", "dir.log"] {
            assert!(dir.path().join(kept).exists(), "{kept}");
        }
        assert!(std::fs::symlink_metadata(dir.path().join("link.log")).is_ok());
        assert_eq!(real.errors, vec![]);
    }

    #[test]
    fn a_symlinked_directory_does_not_lead_out_of_the_pattern_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let now = SystemTime::now() + Duration::from_secs(10 * 86_400);
        touch(&outside.join("victim.log"), 10, SystemTime::now());
        touch(&root.join("sub/mine.log"), 10, SystemTime::now());
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        let rules = vec![RetentionRule::new(
            format!("{}/*/*.log", root.display()),
            Duration::from_secs(86_400),
        )];
        let s = sweep(&rules, now, true);
        assert!(outside.join("victim.log").exists());
        assert!(!root.join("sub/mine.log").exists());
        assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
        assert!(
            s.errors[0].message.starts_with("resolves outside"),
            "{:?}",
            s.errors
        );
    }

    #[test]
    fn literal_root_is_the_directory_before_the_first_wildcard() {
        assert_eq!(literal_root("/var/log/*.log"), PathBuf::from("/var/log"));
        assert_eq!(
            literal_root("/var/log/pods/*/x/*.gz"),
            PathBuf::from("/var/log/pods")
        );
        assert_eq!(
            literal_root("/var/log/exact.log"),
            PathBuf::from("/var/log")
        );
        assert_eq!(literal_root("/*.log"), PathBuf::from("/"));
    }
}
