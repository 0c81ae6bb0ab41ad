//! Glob expansion below the roots, through directory handles ([`super::handle`]).
//!
//! A pattern's literal prefix (the components before the first wildcard) is opened with
//! [`Roots::open_dir`]; from there each component is matched against `readdir` names and
//! only real directories are entered: a symlinked directory is never followed, so a
//! symlink loop cannot make `**` run forever, and a link cannot lead the walk out of the
//! roots. `*`, `?` and `[…]` match within one component and not a leading dot; `**` as a
//! whole component matches zero or more directories. The walk stops with an error past
//! [`MAX_DEPTH`] levels or [`MAX_MATCHES`] matches (bind-mount loops, hostile trees).

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use super::fsx;
use super::handle::{Dir, EntryKind, OpenDirError, Roots};

/// Directory levels a pattern may descend below its literal prefix.
pub(crate) const MAX_DEPTH: usize = 32;
/// Matches one pattern may produce.
pub(crate) const MAX_MATCHES: usize = 1_000_000;

/// Why a pattern could not be expanded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GlobError {
    #[error("bad pattern {pattern:?}")]
    Pattern {
        pattern: String,
        #[source]
        source: glob::PatternError,
    },
    #[error("the pattern {pattern:?} must be an absolute path")]
    Relative { pattern: String },
    /// The literal prefix cannot be opened below the roots.
    #[error(transparent)]
    Open(#[from] OpenDirError),
    #[error("the pattern {pattern:?} goes deeper than {MAX_DEPTH} directories; stopped there")]
    TooDeep { pattern: String },
    #[error("the pattern {pattern:?} matches more than {MAX_MATCHES} paths; stopped there")]
    TooMany { pattern: String },
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

const OPTS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

enum Part {
    Literal(String),
    Wild(glob::Pattern),
    AnyDirs,
}

/// The paths `pattern` matches, sorted by their bytes. A pattern without wildcards comes
/// back as it is (normalised), whether it exists or not.
///
/// # Errors
/// See [`GlobError`].
pub(crate) fn expand(roots: &Roots, pattern: &str) -> Result<Vec<PathBuf>, GlobError> {
    if !pattern.starts_with('/') {
        return Err(GlobError::Relative {
            pattern: pattern.into(),
        });
    }
    let norm = fsx::normalize(Path::new(pattern));
    let comps: Vec<String> = norm
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let Some(first) = comps.iter().position(|c| has_wildcard(c)) else {
        return Ok(vec![norm]);
    };
    let mut parts = Vec::new();
    for c in &comps[first..] {
        parts.push(if c == "**" {
            Part::AnyDirs
        } else if has_wildcard(c) {
            Part::Wild(glob::Pattern::new(c).map_err(|source| GlobError::Pattern {
                pattern: pattern.into(),
                source,
            })?)
        } else {
            Part::Literal(c.clone())
        });
    }
    let mut prefix = PathBuf::from("/");
    prefix.extend(&comps[..first]);
    let dir = roots.open_dir(&prefix)?;
    let mut w = Walk {
        pattern,
        out: Vec::new(),
    };
    w.walk(&dir, &parts, 0)?;
    let mut out = w.out;
    out.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    out.dedup();
    Ok(out)
}

struct Walk<'p> {
    pattern: &'p str,
    out: Vec<PathBuf>,
}

impl Walk<'_> {
    fn push(&mut self, p: PathBuf) -> Result<(), GlobError> {
        if self.out.len() >= MAX_MATCHES {
            return Err(GlobError::TooMany {
                pattern: self.pattern.into(),
            });
        }
        self.out.push(p);
        Ok(())
    }

    /// Real subdirectories of `dir` whose names `keep` accepts (symlinks never).
    fn subdirs(dir: &Dir, keep: impl Fn(&str) -> bool) -> Vec<Dir> {
        let Ok(entries) = dir.entries() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, kind) in entries {
            let Some(n) = name.to_str() else { continue };
            if !keep(n) {
                continue;
            }
            let is_dir = match kind {
                Some(EntryKind::Dir) => true,
                Some(_) => false,
                None => dir.stat(&name).is_ok_and(|s| s.is_dir()),
            };
            if is_dir && let Ok(sub) = dir.subdir(&name) {
                out.push(sub);
            }
        }
        out
    }

    fn walk(&mut self, dir: &Dir, parts: &[Part], depth: usize) -> Result<(), GlobError> {
        if depth > MAX_DEPTH {
            return Err(GlobError::TooDeep {
                pattern: self.pattern.into(),
            });
        }
        let Some((part, rest)) = parts.split_first() else {
            return Ok(());
        };
        let last = rest.is_empty();
        match part {
            Part::Literal(name) => {
                let name = OsStr::new(name);
                if last {
                    if dir.stat(name).is_ok() {
                        self.push(dir.display(name))?;
                    }
                } else if let Ok(sub) = dir.subdir(name) {
                    self.walk(&sub, rest, depth + 1)?;
                }
            }
            Part::Wild(pat) => {
                if last {
                    let Ok(entries) = dir.entries() else {
                        return Ok(());
                    };
                    for (name, _) in entries {
                        if name.to_str().is_some_and(|n| pat.matches_with(n, OPTS)) {
                            self.push(dir.display(&name))?;
                        }
                    }
                } else {
                    for sub in Self::subdirs(dir, |n| pat.matches_with(n, OPTS)) {
                        self.walk(&sub, rest, depth + 1)?;
                    }
                }
            }
            Part::AnyDirs => {
                if last {
                    // Everything below, files and directories, not entering links.
                    let Ok(entries) = dir.entries() else {
                        return Ok(());
                    };
                    for (name, _) in entries {
                        if !name.as_encoded_bytes().starts_with(b".") {
                            self.push(dir.display(&name))?;
                        }
                    }
                    for sub in Self::subdirs(dir, |n| !n.starts_with('.')) {
                        self.walk(&sub, parts, depth + 1)?;
                    }
                } else {
                    // Zero directories, then one more level with `**` still ahead.
                    self.walk(dir, rest, depth)?;
                    for sub in Self::subdirs(dir, |n| !n.starts_with('.')) {
                        self.walk(&sub, parts, depth + 1)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(root: &Path, v: Vec<PathBuf>) -> Vec<String> {
        v.into_iter()
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn matches_components_and_does_not_enter_symlinked_directories() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        for d in ["a/x", "b/x", ".hidden/x", "c"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::create_dir_all(&outside).unwrap();
        for f in [
            "a/x/1.log",
            "b/x/2.log",
            ".hidden/x/3.log",
            "c/4.log",
            "c/.5.log",
        ] {
            std::fs::write(root.join(f), "").unwrap();
        }
        std::fs::write(outside.join("6.log"), "").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("d")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a/x/e")).unwrap();
        let roots = Roots::new(std::slice::from_ref(&root));
        let r = |p: &str| {
            names(
                &root,
                expand(&roots, &format!("{}/{p}", root.display())).unwrap(),
            )
        };
        assert_eq!(r("*/x/*.log"), ["a/x/1.log", "b/x/2.log"]);
        assert_eq!(r("*/*.log"), ["c/4.log"]);
        assert_eq!(r("**/*.log"), ["a/x/1.log", "b/x/2.log", "c/4.log"]);
        assert_eq!(r("c/[0-9].log"), ["c/4.log"]);
        let e = expand(&roots, &format!("{}/d/*.log", root.display())).unwrap_err();
        assert!(
            matches!(e, GlobError::Open(OpenDirError::Symlink { .. })),
            "{e}"
        );
        // A pattern without wildcards comes back as it is.
        assert_eq!(r("nope/x.log"), ["nope/x.log"]);
        let e = expand(&roots, &format!("{}/*.log", outside.display())).unwrap_err();
        assert!(
            matches!(e, GlobError::Open(OpenDirError::Outside { .. })),
            "{e}"
        );
        assert!(matches!(
            expand(&roots, "relative/*.log"),
            Err(GlobError::Relative { .. })
        ));
    }

    #[test]
    fn double_star_over_a_symlink_loop_ends() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/x.log"), "").unwrap();
        // Loops: a/b/up → a, a/self → ., and a chain of links.
        std::os::unix::fs::symlink(root.join("a"), root.join("a/b/up")).unwrap();
        std::os::unix::fs::symlink(".", root.join("a/self")).unwrap();
        std::os::unix::fs::symlink("..", root.join("a/b/parent")).unwrap();
        let roots = Roots::new(std::slice::from_ref(&root));
        let got = expand(&roots, &format!("{}/**/*.log", root.display())).unwrap();
        assert_eq!(names(&root, got), ["a/b/x.log"]);
        let all = expand(&roots, &format!("{}/**", root.display())).unwrap();
        assert_eq!(all.len(), 6, "{all:?}");
    }

    #[test]
    fn a_too_deep_tree_is_an_error_not_a_hang() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        let mut d = root.clone();
        for _ in 0..MAX_DEPTH + 3 {
            d.push("d");
        }
        std::fs::create_dir_all(&d).unwrap();
        let roots = Roots::new(std::slice::from_ref(&root));
        let e = expand(&roots, &format!("{}/**/*.log", root.display())).unwrap_err();
        assert!(matches!(e, GlobError::TooDeep { .. }), "{e}");
    }
}
