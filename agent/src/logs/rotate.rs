//! One rotation pass over a set of policies: find the logs, decide, rotate, compress,
//! apply retention, record the state.
//!
//! Order of operations for one log (every step is atomic on its own, so a kill between
//! any two leaves files that the next pass finishes without losing or duplicating a line):
//!
//! 1. Finish leftovers: every uncompressed archive of a compressing policy is compressed
//!    (the delayed one of `delaycompress`, or one a crash left behind; if its archive
//!    already exists the uncompressed copy is the complete one and wins).
//! 2. Numbered mode: shift `.N` to `.N+1`, oldest first. Date mode: pick the name, with
//!    a `.1`, `.2` … counter when it is taken.
//! 3. Rename mode: `rename(log, archive)`, then `create` with `O_EXCL` (a file a writer
//!    already recreated is left as it is). Copy modes: copy (holes kept) to a temporary,
//!    copy again what was appended, fsync, rename, then truncate (copytruncate).
//! 4. Compress unless delayed (see [`super::compress`]).
//! 5. Retention: archives beyond `rotate`, and older than `maxage`, are removed
//!    (shredded with `shred`).
//!
//! Directory fsyncs are batched: each directory touched is synced once at the end of the
//! pass, before the state file is written.
//!
//! Every file is reached through a directory handle opened below the roots without
//! following symlinks ([`super::handle`]): a log's directory is opened once per pass and
//! every stat, rename, create and unlink of the log and its archives is relative to it, so
//! a directory swapped for a symlink between the check and the action changes nothing.
//! One file reachable by several paths (links, two patterns) is rotated once per pass:
//! logs are told apart by (device, inode).
//!
//! An existing archive is never replaced: the rename of a log (or of its copy) to its
//! archive name is `renameat2(RENAME_NOREPLACE)`, and compression keeps both files, with
//! a warning, when an archive of other content already holds the compressed name.
//!
//! A dry run makes the same decisions as the real run: it keeps the directory index as
//! the real run would change it, and remembers which real file each name that would
//! exist by now stands for (`dry_names`), so retention sees their size and age.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use jiff::{ToSpan, Zoned};
use regex::Regex;

use super::compress::{self, FailHook};
use super::fsx;
use super::handle::{Dir, OpenDirError, Roots, Stat};
use super::owners::Owners;
use super::policy::{CreateSpec, Policy};
use super::schedule::{self, FileFacts};
use super::state::State;
use super::summary::{Action, ActionKind, LogError, OwnedLog, RotationSummary};
use super::walk;

/// Where kubelet keeps its symlinks to container logs; it rotates those itself.
pub(crate) const KUBELET_LINK_DIR: &str = "/var/log/containers";

/// Whether a path has `.` or `..` components, `//`, or a trailing `/`.
fn needs_normalizing(p: &Path) -> bool {
    let b = p.as_os_str().as_encoded_bytes();
    b.windows(2).any(|w| w == b"//" || w == b"/.") || b.ends_with(b"/")
}

/// Directory handles a pass keeps open at most (cached, or waiting for their fsync).
const MAX_OPEN_DIRS: usize = 256;

/// Options of one pass.
pub(crate) struct Pass<'a> {
    pub now: Zoned,
    /// Only files below these, reached without following a symlink, are touched.
    pub roots: &'a Roots,
    pub force: bool,
    pub dry_run: bool,
    /// Threads for one compression.
    pub threads: usize,
    /// Rotate the target of a symlink (inside the roots) instead of skipping it.
    pub(crate) follow_symlinks: bool,
    /// `logs.mail_command`: mails logs for blocks with `mail`.
    pub(crate) mail_command: Option<&'a Path>,
    /// Logs another rotator owns: left alone and listed in the summary's `owned`.
    pub owners: &'a Owners,
    /// Failure injection for tests (see [`compress::FailHook`]); also called with
    /// `"step"` before every mutating step.
    pub fail: FailHook<'a>,
}

/// The mutable context of a pass.
struct Run<'a, 'p> {
    pass: &'p Pass<'a>,
    state: &'p mut State,
    out: &'p mut RotationSummary,
    dirs_to_sync: BTreeMap<PathBuf, Arc<Dir>>,
    /// Names in each directory a pass looked into (read once, then kept up to date), so
    /// that finding a log's archives does not read the directory again.
    dir_index: HashMap<std::ffi::OsString, BTreeSet<String>>,
    /// Directory handles opened this pass (or why one could not be), and the last one
    /// asked for (most logs of a pass share their directory).
    dirs: HashMap<PathBuf, Result<Arc<Dir>, OpenDirError>>,
    last_dir: Option<(PathBuf, Arc<Dir>)>,
    /// (device, inode) of every log checked this pass, with the path it was seen by.
    seen_files: HashMap<(u64, u64), PathBuf>,
    /// The wall clock at the start of the pass, in seconds (file ages; one clock read
    /// per pass instead of one per log).
    wall_now: i64,
    /// One compiled archive-name regex per distinct pattern, shared (a clone of a `Regex`
    /// builds a new matching cache, which cost more than the match).
    regexes: RegexCache,
    /// The process's effective uid and gid, read once per pass.
    ids: (u32, u32),
    /// Whether `state` was changed (a new log recorded, a rotation).
    state_changed: bool,
    /// Dry run: a name that would exist now (its path) → the real file it would be (a
    /// rename, a compression keep size class and mtime), so retention decides as the
    /// real run.
    dry_names: HashMap<PathBuf, DryFile>,
    /// Logs first named by a block with `ignoreduplicates`.
    quiet_dups: HashSet<std::ffi::OsString>,
}

/// Runs every policy once. The state is updated in memory; the caller saves it. Returns
/// whether the state changed (a pass where nothing is due and no log is new leaves it as
/// it was, and nothing needs to be written).
pub(crate) fn run_pass(
    policies: &[Policy],
    pass: &Pass<'_>,
    state: &mut State,
    out: &mut RotationSummary,
) -> bool {
    let mut run = Run {
        pass,
        state,
        out,
        dirs_to_sync: BTreeMap::new(),
        dir_index: HashMap::new(),
        dirs: HashMap::new(),
        last_dir: None,
        seen_files: HashMap::new(),
        wall_now: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        regexes: HashMap::new(),
        ids: (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        ),
        state_changed: false,
        dry_names: HashMap::new(),
        quiet_dups: HashSet::new(),
    };
    let mut seen: HashSet<std::ffi::OsString> = HashSet::new();
    // With one pattern in all, no log can be named twice: no set of names is kept.
    let one_pattern = policies.iter().map(|p| p.patterns.len()).sum::<usize>() == 1;
    for p in policies {
        let files = if one_pattern {
            run.expand_one(p)
        } else {
            run.expand(p, &mut seen)
        };
        run.policy(p, &files);
    }
    run.sync_dirs();
    run.state_changed
}

impl Run<'_, '_> {
    fn error(&mut self, path: &Path, message: impl Into<String>) {
        let message = message.into();
        tracing::warn!(path = %path.display(), error = %message, "Log rotation problem.");
        self.out.errors.push(LogError {
            place: path.display().to_string(),
            message,
        });
    }

    fn note(&mut self, path: &Path, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(path = %path.display(), reason = %message, "Log skipped.");
        self.out.skipped.push(LogError {
            place: path.display().to_string(),
            message,
        });
    }

    fn act(&mut self, kind: ActionKind, path: &Path, to: Option<&Path>, bytes: u64) {
        self.out.actions.push(Action {
            kind,
            path: path.to_path_buf(),
            to: to.map(Path::to_path_buf),
            bytes,
            bytes_after: None,
        });
    }

    /// Glob expansion below the roots (see [`super::walk`]); a pattern matching nothing
    /// is taken literally (as logrotate does), so `missingok` decides whether its absence
    /// is an error, and a pattern whose directory is outside the roots or behind a
    /// symlink is reported by the check of that literal path.
    fn expand(&mut self, p: &Policy, seen: &mut HashSet<std::ffi::OsString>) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for pat in &p.patterns {
            let mut matched: Vec<PathBuf> = match walk::expand(self.pass.roots, pat) {
                Ok(paths) => paths,
                Err(walk::GlobError::Open(_)) => Vec::new(),
                Err(e) => {
                    self.out.errors.push(LogError {
                        place: p.place.clone(),
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            if matched.is_empty() {
                matched.push(PathBuf::from(pat));
            }
            for f in matched {
                if seen.insert(f.as_os_str().to_owned()) {
                    if p.ignoreduplicates {
                        // logrotate: later blocks naming it are ignored without an error.
                        self.quiet_dups.insert(f.as_os_str().to_owned());
                    }
                    files.push(f);
                } else if !pat.contains(['*', '?', '[']) && !self.quiet_dups.contains(f.as_os_str())
                {
                    self.error(
                        &f,
                        format!(
                            "duplicate log entry (also at {}); the first block wins",
                            p.place
                        ),
                    );
                }
            }
        }
        files
    }

    /// [`Self::expand`] of the only pattern of a pass (nothing to tell duplicates from).
    fn expand_one(&mut self, p: &Policy) -> Vec<PathBuf> {
        let Some(pat) = p.patterns.first() else {
            return Vec::new();
        };
        match walk::expand(self.pass.roots, pat) {
            Ok(paths) if !paths.is_empty() => paths,
            Ok(_) | Err(walk::GlobError::Open(_)) => vec![PathBuf::from(pat)],
            Err(e) => {
                self.out.errors.push(LogError {
                    place: p.place.clone(),
                    message: e.to_string(),
                });
                Vec::new()
            }
        }
    }

    /// The handle of `dir` (absolute), opened once per pass below the roots.
    fn dir_for(&mut self, dir: &Path) -> Result<Arc<Dir>, OpenDirError> {
        if let Some((last, d)) = &self.last_dir
            && last.as_os_str() == dir.as_os_str()
        {
            return Ok(Arc::clone(d));
        }
        let r = match self.dirs.get(dir) {
            Some(r) => r.clone(),
            None => {
                // Bounded: each handle is an open descriptor (a kubelet tree has one
                // directory per container).
                if self.dirs.len() >= MAX_OPEN_DIRS {
                    self.dirs.clear();
                }
                let r = self.pass.roots.open_dir(dir).map(Arc::new);
                self.dirs.insert(dir.to_path_buf(), r.clone());
                r
            }
        };
        if let Ok(d) = &r {
            self.last_dir = Some((dir.to_path_buf(), Arc::clone(d)));
        }
        r
    }

    /// Remembers a directory to fsync at the end of the pass; past [`MAX_OPEN_DIRS`] the
    /// ones remembered are synced now (their handles are descriptors).
    fn sync_later(&mut self, path: &Path, d: Arc<Dir>) {
        if self.dirs_to_sync.len() >= MAX_OPEN_DIRS && !self.dirs_to_sync.contains_key(path) {
            self.sync_dirs();
        }
        self.dirs_to_sync.insert(path.to_path_buf(), d);
    }

    fn sync_dirs(&mut self) {
        if self.pass.dry_run {
            return;
        }
        for (path, d) in std::mem::take(&mut self.dirs_to_sync) {
            if let Err(e) = d.sync() {
                self.error(&path, format!("cannot fsync directory: {e}"));
            }
        }
    }

    /// Why a log's directory could not be opened, as the log's error.
    fn dir_error(&mut self, f: &Path, e: &OpenDirError) {
        match e {
            OpenDirError::Outside { .. } => {
                self.error(f, "is outside the configured roots (logs.roots); not touched")
            }
            OpenDirError::Symlink { .. } => self.error(
                f,
                "a directory on its way is a symlink; caretaker never follows links below its roots (logs.roots), not touched",
            ),
            OpenDirError::Io { source, .. } => {
                self.error(f, format!("cannot open its directory: {source}"))
            }
        }
    }

    fn policy(&mut self, p: &Policy, files: &[PathBuf]) {
        let mut due: Vec<Due> = Vec::new();
        for f in files {
            self.out.files_checked += 1;
            if let Some(c) = self.check(p, f) {
                due.push(c);
            }
        }
        if due.is_empty() {
            return;
        }
        let pattern = p.patterns.join(" ");
        if let Some(s) = &p.scripts.firstaction
            && !self.script(s, &[pattern.as_str()], &p.place, "firstaction")
        {
            return;
        }
        if p.scripts.shared
            && let Some(s) = &p.scripts.prerotate
            && !self.script(s, &[pattern.as_str()], &p.place, "prerotate")
        {
            return;
        }
        // renamecopy with a shared postrotate: the copies wait until after it, as the
        // writers keep writing into `LOG.tmp` until it tells them to reopen.
        let mut deferred = Vec::new();
        for d in due {
            let f = d.path.clone();
            if !p.scripts.shared
                && let Some(s) = &p.scripts.prerotate
                && !self.script(s, &[&f.to_string_lossy()], &p.place, "prerotate")
            {
                continue;
            }
            let archive = match self.rotate_one(p, &d) {
                Ok(a) => a,
                Err(e) => {
                    self.error(&f, e.to_string());
                    continue;
                }
            };
            if !p.scripts.shared
                && let Some(s) = &p.scripts.postrotate
            {
                let a = archive
                    .as_ref()
                    .map(|r| r.dir.path.join(&r.name).to_string_lossy().into_owned())
                    .unwrap_or_default();
                self.script(s, &[&f.to_string_lossy(), &a], &p.place, "postrotate");
            }
            if p.scripts.shared
                && p.scripts.postrotate.is_some()
                && archive.as_ref().is_some_and(|r| r.tmp.is_some())
            {
                deferred.push((d, archive));
                continue;
            }
            if let Err(e) = self.after_rotation(p, &d, archive) {
                self.error(&f, e.to_string());
            }
        }
        if p.scripts.shared
            && let Some(s) = &p.scripts.postrotate
        {
            self.script(s, &[pattern.as_str()], &p.place, "postrotate");
        }
        for (d, archive) in deferred {
            if let Err(e) = self.after_rotation(p, &d, archive) {
                self.error(&d.path, e.to_string());
            }
        }
        if let Some(s) = &p.scripts.lastaction {
            self.script(s, &[pattern.as_str()], &p.place, "lastaction");
        }
    }

    fn script(&mut self, body: &str, args: &[&str], place: &str, what: &str) -> bool {
        if self.pass.dry_run {
            return true;
        }
        let res = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(body)
            .arg("caretaker-script")
            .args(args)
            .status();
        match res {
            Ok(s) if s.success() => true,
            Ok(s) => {
                self.out.errors.push(LogError {
                    place: place.into(),
                    message: format!("{what} script failed: {s}"),
                });
                false
            }
            Err(e) => {
                self.out.errors.push(LogError {
                    place: place.into(),
                    message: format!("cannot run {what} script: {e}"),
                });
                false
            }
        }
    }

    /// Looks at one path; returns it with its directory handle and metadata when it is due.
    fn check(&mut self, p: &Policy, f: &Path) -> Option<Due> {
        // Glob results are normal already; only a literal pattern may hold `.`, `..`, `//`.
        let normal;
        let f = if needs_normalizing(f) {
            normal = fsx::normalize(f);
            &normal
        } else {
            f
        };
        // Another rotator's log is left alone before anything is opened (quietly: a
        // kubelet tree holds thousands; the summary lists them).
        if let Some(owner) = self.pass.owners.owner_of(f) {
            tracing::debug!(path = %f.display(), owner = %owner.describe(), "Log left to its rotator.");
            self.out.owned.push(OwnedLog {
                path: f.to_path_buf(),
                owner: owner.describe(),
            });
            return None;
        }
        let (Some(parent), Some(name)) = (f.parent(), f.file_name()) else {
            self.error(f, "is not a file path");
            return None;
        };
        let missing = |run: &mut Self| {
            if !p.missingok {
                run.error(f, "log does not exist (add missingok to allow that)");
            }
        };
        let dir = match self.dir_for(parent) {
            Ok(d) => d,
            Err(e) if e.is_not_found() => {
                missing(self);
                return None;
            }
            Err(e) => {
                self.dir_error(f, &e);
                return None;
            }
        };
        let meta = match dir.stat(name) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing(self);
                return None;
            }
            Err(e) => {
                self.error(f, format!("cannot stat: {e}"));
                return None;
            }
        };
        let (path, dir, name, meta) = if meta.is_symlink() {
            let kubelet = f.parent() == Some(Path::new(KUBELET_LINK_DIR));
            if !self.pass.follow_symlinks {
                if kubelet {
                    self.note(f, "symlink to a container log: the kubelet rotates those (containerLogMaxSize); set logs.rotate_symlinks: true to rotate them anyway");
                } else {
                    self.note(f, "is a symlink; caretaker does not rotate symlinks (set logs.rotate_symlinks: true to rotate the target inside the roots)");
                }
                return None;
            }
            // The target is then reached like any log: its directory opened below the
            // roots without links, the name checked with fstatat.
            let target = match std::fs::canonicalize(f) {
                Ok(t) => t,
                Err(e) => {
                    self.error(f, format!("symlink cannot be resolved: {e}"));
                    return None;
                }
            };
            let (Some(tp), Some(tn)) = (target.parent(), target.file_name()) else {
                self.error(f, "symlink target is not a file");
                return None;
            };
            let td = match self.dir_for(tp) {
                Ok(d) => d,
                Err(e) => {
                    self.dir_error(&target, &e);
                    return None;
                }
            };
            match td.stat(tn) {
                Ok(m) => (target.clone(), td, tn.to_owned(), m),
                Err(e) => {
                    self.error(f, format!("symlink target cannot be read: {e}"));
                    return None;
                }
            }
        } else {
            (f.to_path_buf(), dir, name.to_owned(), meta)
        };
        if !meta.is_file() {
            self.error(&path, "is not a regular file; not touched");
            return None;
        }
        if meta.nlink() > 1 && !p.allowhardlink {
            self.note(&path, format!("has {} hard links (another name may be outside the roots); add allowhardlink to rotate it", meta.nlink()));
            return None;
        }
        match self.seen_files.entry((meta.dev(), meta.ino())) {
            std::collections::hash_map::Entry::Occupied(o) => {
                let other = o.get().display().to_string();
                self.note(
                    &path,
                    format!("is the same file as {other} (another path to it); a file is rotated once per pass"),
                );
                return None;
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(path.clone());
            }
        }
        let age = (self.wall_now - meta.mtime()).max(0);
        let now = &self.pass.now;
        let last = match self.state.get(&path) {
            Some(t) => t,
            None => {
                let t = schedule::first_seen(now);
                self.state.set(&path, t);
                self.state_changed = true;
                t
            }
        };
        let d = schedule::decide(
            p,
            FileFacts {
                size: meta.len(),
                age_seconds: age,
            },
            last,
            now,
            self.pass.force,
        );
        tracing::debug!(path = %path.display(), decision = ?d, "Log considered.");
        let due = Due {
            path,
            dir,
            name,
            meta,
        };
        if d.rotates() {
            Some(due)
        } else {
            if p.compress
                && let Err(e) = self.compress_leftovers(p, &due)
            {
                self.error(&due.path, e.to_string());
            }
            None
        }
    }

    /// A log that is not due: archives an earlier run left uncompressed (ENOSPC or a kill
    /// during compression) are compressed now rather than at the next rotation; with
    /// `delaycompress` the newest archive stays as it is. Costs one directory read per
    /// directory and pass (names only) when nothing is left over.
    fn compress_leftovers(&mut self, p: &Policy, due: &Due) -> io::Result<()> {
        if let Some(old) = &p.olddir {
            let log_dir = due.path.parent().unwrap_or(Path::new("/"));
            // Never created for this (or not a directory): no archives in it. It is not
            // created here; the rotation that needs it reports what is wrong with it.
            match self.dir_for(&fsx::normalize(&log_dir.join(old))) {
                Err(e) if e.is_not_found() || e.is_not_dir() => return Ok(()),
                _ => {}
            }
        }
        let dir = self.archive_dir(p, due)?;
        let lay = Layout::new(p, &due.name, dir, &mut self.regexes);
        let mut names = self.archive_names(&lay)?;
        if p.delaycompress {
            let newest = if p.dateext {
                names
                    .iter()
                    .max_by(|a, b| (&a.key, a.counter).cmp(&(&b.key, b.counter)))
            } else {
                names.iter().min_by_key(|a| a.counter)
            }
            .map(|a| a.name.clone());
            names.retain(|a| Some(&a.name) != newest.as_ref());
        }
        for a in names.into_iter().filter(|a| !a.compressed) {
            if self.lstat(&lay.dir, &a.name).is_ok_and(|m| m.is_file()) {
                self.compress(p, &a.name, &lay)?;
            }
        }
        Ok(())
    }

    /// Where the log's archives go: its own directory, or `olddir` opened (or, with
    /// `createolddir`, created) below the roots. The root check comes before anything is
    /// created, and a dry run makes the same checks (the handle is `None` only when a
    /// dry run would create the directory).
    fn archive_dir(&mut self, p: &Policy, due: &Due) -> io::Result<ArchDir> {
        let Some(old) = &p.olddir else {
            return Ok(ArchDir {
                path: due.dir.path().to_path_buf(),
                dir: Some(Arc::clone(&due.dir)),
            });
        };
        let log_dir = due.path.parent().unwrap_or(Path::new("/"));
        let od = fsx::normalize(&log_dir.join(old));
        let refuse = |what: String| io::Error::other(format!("olddir {}: {what}", od.display()));
        match self.dir_for(&od) {
            Ok(d) => Ok(ArchDir {
                path: od,
                dir: Some(d),
            }),
            Err(OpenDirError::Outside { .. }) => Err(io::Error::other(format!(
                "olddir {} is outside the configured roots",
                od.display()
            ))),
            Err(e) if e.is_not_dir() => Err(io::Error::other(format!(
                "olddir {} is not a directory",
                od.display()
            ))),
            Err(e) if e.is_not_found() => {
                let Some(spec) = p.createolddir else {
                    return Err(io::Error::other(format!(
                        "olddir {} does not exist (add createolddir to create it)",
                        od.display()
                    )));
                };
                let (Some(parent), Some(name)) = (od.parent(), od.file_name()) else {
                    return Err(refuse("cannot be created".into()));
                };
                let pd = self
                    .dir_for(parent)
                    .map_err(|e| refuse(format!("cannot be created: {e}")))?;
                if self.pass.dry_run {
                    return Ok(ArchDir {
                        path: od,
                        dir: None,
                    });
                }
                let mode = spec.mode.unwrap_or(0o755);
                let created = match pd.mkdir(name, mode) {
                    Ok(()) => true,
                    // Someone made it meanwhile: use it, but it is not ours to chmod.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                    Err(e) => return Err(e),
                };
                let d = Arc::new(pd.subdir(name)?);
                if created {
                    let (uid, gid) = p.su.map_or((None, None), |(u, g)| (Some(u), Some(g)));
                    d.set_mode(mode)?;
                    let _ = d.set_owner(
                        spec.uid.or(uid).or(Some(due.meta.uid())),
                        spec.gid.or(gid).or(Some(due.meta.gid())),
                    );
                    self.sync_later(parent, pd);
                }
                self.dirs.insert(od.clone(), Ok(Arc::clone(&d)));
                Ok(ArchDir {
                    path: od,
                    dir: Some(d),
                })
            }
            Err(e) => Err(refuse(e.to_string())),
        }
    }

    fn names(&mut self, dir: &ArchDir) -> io::Result<&mut BTreeSet<String>> {
        let key = dir.path.as_os_str();
        if !self.dir_index.contains_key(key) {
            let mut set = BTreeSet::new();
            if let Some(d) = &dir.dir {
                for (n, _) in d.entries()? {
                    if let Some(n) = n.to_str() {
                        set.insert(n.to_string());
                    }
                }
            }
            self.dir_index.insert(key.to_owned(), set);
        }
        Ok(self
            .dir_index
            .get_mut(key)
            .unwrap_or_else(|| unreachable!()))
    }

    /// Names in the log's archive directory that are archives of it (from the index,
    /// without looking at the files).
    fn archive_names(&mut self, lay: &Layout) -> io::Result<Vec<Archive>> {
        let prefix = lay.base.as_str();
        let re = &lay.regex;
        let names = self.names(&lay.dir)?;
        let (key_i, n_i, z_i) = (group(re, "key"), group(re, "n"), group(re, "z"));
        let mut locs = re.capture_locations();
        let mut out = Vec::new();
        for n in names
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|n| n.starts_with(prefix))
        {
            let rest = &n[prefix.len()..];
            if re.captures_read(&mut locs, rest).is_none() {
                continue;
            }
            let part = |i: Option<usize>| i.and_then(|i| locs.get(i)).map(|(a, b)| &rest[a..b]);
            out.push(Archive {
                name: n.clone(),
                key: part(key_i).unwrap_or("").to_string(),
                counter: part(n_i).and_then(|m| m.parse::<u64>().ok()).unwrap_or(0),
                compressed: part(z_i).is_some(),
            });
        }
        Ok(out)
    }

    /// Existing archives of one log. Only regular files: an archive name that is a
    /// symlink or a directory is never touched.
    fn archives(&mut self, lay: &Layout) -> io::Result<Vec<Archive>> {
        let mut out = self.archive_names(lay)?;
        out.retain(|a| self.lstat(&lay.dir, &a.name).is_ok_and(|m| m.is_file()));
        Ok(out)
    }

    /// Steps 1 to 3; returns where the archive went (with `renamecopy`: where it goes, the
    /// copy being made by [`Self::after_rotation`]).
    fn rotate_one(&mut self, p: &Policy, due: &Due) -> io::Result<Option<Rotated>> {
        (self.pass.fail)("step")?;
        let dir = self.archive_dir(p, due)?;
        let lay = Layout::new(p, &due.name, dir.clone(), &mut self.regexes);
        // 1. Finish leftovers and delayed compression.
        if p.compress {
            for a in self.archives(&lay)?.into_iter().filter(|a| !a.compressed) {
                self.compress(p, &a.name, &lay)?;
            }
        }
        // 2. Names.
        let target = if p.dateext {
            let when = if p.dateyesterday {
                self.pass
                    .now
                    .checked_sub(1.day())
                    .unwrap_or_else(|_| self.pass.now.clone())
            } else if p.datehourago {
                self.pass
                    .now
                    .checked_sub(1.hour())
                    .unwrap_or_else(|_| self.pass.now.clone())
            } else {
                self.pass.now.clone()
            };
            let stem = format!("{}{}", lay.base, p.dateformat().format(&when));
            let mut n = 0u64;
            loop {
                let cand = if n == 0 {
                    format!("{stem}{}", lay.ext)
                } else {
                    format!("{stem}.{n}{}", lay.ext)
                };
                let taken = {
                    let names = self.names(&dir)?;
                    names.contains(&cand) || names.contains(&format!("{cand}{}", lay.compext))
                };
                if !taken {
                    break cand;
                }
                n += 1;
            }
        } else {
            self.shift(p, &lay)?;
            format!("{}.{}{}", lay.base, p.start, lay.ext)
        };
        let target_path = dir.path.join(&target);
        let log_path = due.dir.display(&due.name);
        // 3. Move the log's content to the archive name (never over an existing file).
        (self.pass.fail)("step")?;
        let size = due.meta.len();
        if p.copy || p.copytruncate {
            if !self.pass.dry_run {
                let ad = dir.handle()?;
                copy_out(
                    &due.dir,
                    &due.name,
                    ad,
                    OsStr::new(&target),
                    p.copytruncate,
                    self.pass.fail,
                )?;
            } else {
                // A new file with the log's content, as new as the log.
                let real = self
                    .dry_names
                    .get(&log_path)
                    .cloned()
                    .unwrap_or_else(|| DryFile {
                        dir: due.dir.path().to_path_buf(),
                        name: due.name.clone(),
                        stat: Some(due.meta),
                    });
                self.dry_names.insert(target_path.clone(), real);
            }
            let kind = if p.copytruncate {
                ActionKind::CopyTruncate
            } else {
                ActionKind::Copy
            };
            self.act(kind, &due.path, Some(&target_path), size);
        } else {
            // renamecopy (logrotate): the log is renamed to `LOG.tmp` in its own directory
            // (never across filesystems) and copied to its archive name after postrotate,
            // so `olddir` may be on another filesystem.
            let tmp = p.renamecopy.then(|| {
                let mut t = due.name.clone();
                t.push(".tmp");
                t
            });
            if !self.pass.dry_run {
                match &tmp {
                    Some(t) => due.dir.rename_noreplace(&due.name, &due.dir, t)?,
                    None => {
                        due.dir
                            .rename_noreplace(&due.name, dir.handle()?, OsStr::new(&target))?
                    }
                }
            }
            self.dry_moved(&log_path, Some(&due.dir), &due.name, target_path.clone());
            self.act(ActionKind::Rotate, &due.path, Some(&target_path), size);
            if let Some(spec) = p.create {
                (self.pass.fail)("step")?;
                if !self.pass.dry_run {
                    let old_now = match &tmp {
                        Some(t) => (&*due.dir, t.as_os_str()),
                        None => (dir.handle()?, OsStr::new(&target)),
                    };
                    create_log(&due.dir, &due.name, spec, &due.meta, self.ids, old_now)?;
                }
            }
            if tmp.is_some() {
                self.sync_later(due.dir.path(), Arc::clone(&due.dir));
                self.state.set(&due.path, self.pass.now.datetime());
                self.state_changed = true;
                self.index_add(&dir.path, &target);
                self.out.rotated += 1;
                self.out.rotated_bytes += size;
                return Ok(Some(Rotated {
                    dir,
                    name: target,
                    tmp,
                }));
            }
        }
        self.index_add(&dir.path, &target);
        if let Some(d) = &dir.dir {
            let d = Arc::clone(d);
            self.sync_later(&dir.path, d);
        }
        self.sync_later(due.dir.path(), Arc::clone(&due.dir));
        self.out.rotated += 1;
        self.out.rotated_bytes += size;
        let now = self.pass.now.datetime();
        self.state.set(&due.path, now);
        self.state_changed = true;
        Ok(Some(Rotated {
            dir,
            name: target,
            tmp: None,
        }))
    }

    /// renamecopy's second half: `LOG.tmp` copied (holes kept) to a temporary in the
    /// archive's directory, fsynced, renamed to the archive's name (never over a file),
    /// that directory fsynced, and only then `LOG.tmp` unlinked: a crash leaves the
    /// content in one of the two names, never in none.
    fn finish_renamecopy(
        &mut self,
        due: &Due,
        dir: &ArchDir,
        name: &str,
        tmp: &OsStr,
    ) -> io::Result<()> {
        if self.pass.dry_run {
            return Ok(());
        }
        (self.pass.fail)("step")?;
        let ad = dir.handle()?;
        copy_out(&due.dir, tmp, ad, OsStr::new(name), false, self.pass.fail)?;
        ad.sync()?;
        due.dir.unlink(tmp)?;
        Ok(())
    }

    /// Steps 4 and 5, after the postrotate script.
    fn after_rotation(
        &mut self,
        p: &Policy,
        due: &Due,
        archive: Option<Rotated>,
    ) -> io::Result<()> {
        let Some(Rotated { dir, name, tmp }) = archive else {
            return Ok(());
        };
        if let Some(tmp) = tmp {
            self.finish_renamecopy(due, &dir, &name, &tmp)?;
        }
        let lay = Layout::new(p, &due.name, dir, &mut self.regexes);
        if p.mailfirst {
            self.mail(p, &lay.dir, &name);
        }
        if p.rotate == 0 {
            self.remove(p, &lay, &name)?;
            return Ok(());
        }
        if p.compress && !p.delaycompress {
            (self.pass.fail)("step")?;
            self.compress(p, &name, &lay)?;
        }
        self.retention(p, &lay)
    }

    fn compress(&mut self, p: &Policy, src: &str, lay: &Layout) -> io::Result<()> {
        let dst = format!("{src}{}", lay.compext);
        let src_path = lay.dir.path.join(src);
        let dst_path = lay.dir.path.join(&dst);
        // An archive of that name already: the same content (a run died after its
        // rename, before the unlink) is replaced by the same again; other content is
        // never replaced: both stay, under their own names, with a warning.
        // Existence from the directory index, which a dry run keeps as the real run's.
        if self.names(&lay.dir)?.contains(&dst) && !self.same_content(p, &lay.dir, src, &dst) {
            let message = format!(
                "{} and {} are two different archives for one place; both are kept and {} stays uncompressed",
                src_path.display(),
                dst_path.display(),
                src_path.display()
            );
            tracing::warn!(path = %src_path.display(), "{message}");
            self.out.warnings.push(LogError {
                place: src_path.display().to_string(),
                message,
            });
            return Ok(());
        }
        let before = match self.lstat(&lay.dir, src) {
            Ok(m) => m.len(),
            // Dry run: the archive does not exist yet; it is the log just "rotated".
            Err(_) => self
                .out
                .actions
                .iter()
                .rev()
                .find(|a| a.to.as_deref() == Some(src_path.as_path()))
                .map_or(0, |a| a.bytes),
        };
        let after = if self.pass.dry_run {
            None
        } else {
            match compress::compress_at(
                lay.dir.handle()?,
                OsStr::new(src),
                OsStr::new(&dst),
                &p.compressor,
                self.pass.threads,
                self.pass.fail,
            ) {
                Ok(c) => Some(c.bytes_out),
                Err(e) if e.kind() == compress::IN_USE => {
                    self.note(&src_path, e.to_string());
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        };
        self.index_remove(&lay.dir.path, src);
        self.index_add(&lay.dir.path, &dst);
        self.dry_moved(
            &src_path,
            lay.dir.dir.as_ref(),
            OsStr::new(src),
            dst_path.clone(),
        );
        self.out.compressed += 1;
        self.out.compressed_bytes_before += before;
        self.out.compressed_bytes_after += after.unwrap_or(0);
        self.out.actions.push(Action {
            kind: ActionKind::Compress,
            path: src_path,
            to: Some(dst_path),
            bytes: before,
            bytes_after: after,
        });
        Ok(())
    }

    /// Numbered mode: `.N` → `.N+1` from the oldest down, then the one past the count goes.
    fn shift(&mut self, p: &Policy, lay: &Layout) -> io::Result<()> {
        let archives = self.archives(lay)?;
        let mut by_index: BTreeMap<u64, Vec<Archive>> = BTreeMap::new();
        for a in archives {
            by_index.entry(a.counter).or_default().push(a);
        }
        let count = if p.rotate < 0 {
            by_index
                .keys()
                .next_back()
                .map_or(1, |m| m.saturating_sub(p.start) + 1)
        } else {
            (p.rotate as u64).max(1)
        };
        let last = p.start + count - 1;
        for i in (p.start..=last).rev() {
            let Some(list) = by_index.get(&i) else {
                continue;
            };
            for a in list {
                let new_name = a.name.replacen(
                    &format!("{}.{i}", lay.base),
                    &format!("{}.{}", lay.base, i + 1),
                    1,
                );
                // Past the count already (left by a larger `rotate`): it expires now, as a
                // reported deletion, instead of vanishing under the rename.
                if i == last
                    && by_index
                        .get(&(last + 1))
                        .is_some_and(|l| l.iter().any(|b| b.name == new_name))
                {
                    self.remove(p, lay, &new_name)?;
                }
                if new_name == a.name {
                    // A name such as `app.log.02` (counter 2, no `app.log.2` in it): it
                    // stays where it is.
                    continue;
                }
                (self.pass.fail)("step")?;
                let rename_error = |e: io::Error| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "error renaming {} to {}: {e}; not rotated, nothing replaced",
                            lay.dir.path.join(&a.name).display(),
                            lay.dir.path.join(&new_name).display()
                        ),
                    )
                };
                if self.pass.dry_run {
                    // The index holds what the real run would find there by now.
                    if self.names(&lay.dir)?.contains(&new_name) {
                        return Err(rename_error(io::ErrorKind::AlreadyExists.into()));
                    }
                } else {
                    // Never over a file outside the chain (a symlink, a FIFO, a
                    // directory, or a file made after the names were read): as logrotate
                    // on a failed rename, that log's rotation stops with an error.
                    let d = lay.dir.handle()?;
                    d.rename_noreplace(OsStr::new(&a.name), d, OsStr::new(&new_name))
                        .map_err(rename_error)?;
                }
                self.index_remove(&lay.dir.path, &a.name);
                self.index_add(&lay.dir.path, &new_name);
                self.dry_moved(
                    &lay.dir.path.join(&a.name),
                    lay.dir.dir.as_ref(),
                    OsStr::new(&a.name),
                    lay.dir.path.join(&new_name),
                );
            }
        }
        Ok(())
    }

    fn retention(&mut self, p: &Policy, lay: &Layout) -> io::Result<()> {
        if !p.dateext && p.maxage_days.is_none() {
            // Numbered, no maxage: only the archive shifted past the count goes; only it
            // needs a look at the file.
            let limit = if p.rotate >= 0 {
                p.start + (p.rotate as u64).max(1) - 1
            } else {
                u64::MAX
            };
            let names = self.archive_names(lay)?;
            let past: Vec<Archive> = names
                .into_iter()
                .filter(|a| {
                    a.counter == limit.saturating_add(1)
                        && self.lstat(&lay.dir, &a.name).is_ok_and(|m| m.is_file())
                })
                .collect();
            for a in past {
                self.remove(p, lay, &a.name)?;
            }
            return Ok(());
        }
        let mut archives = self.archives(lay)?;
        if p.dateext {
            archives.sort_by(|a, b| (&a.key, a.counter).cmp(&(&b.key, b.counter)));
        } else {
            // Highest number is oldest.
            archives.sort_by_key(|a| std::cmp::Reverse(a.counter));
        }
        let mut keep: Vec<Archive> = Vec::new();
        let mut remove: Vec<Archive> = Vec::new();
        if p.dateext {
            let excess = if p.rotate >= 0 {
                archives.len().saturating_sub(p.rotate as usize)
            } else {
                0
            };
            for (i, a) in archives.into_iter().enumerate() {
                if i < excess {
                    remove.push(a)
                } else {
                    keep.push(a)
                }
            }
        } else {
            let limit = if p.rotate >= 0 {
                p.start + (p.rotate as u64).max(1) - 1
            } else {
                u64::MAX
            };
            for a in archives {
                // Only the one shifted past the count, as logrotate; others are not ours to judge.
                if a.counter == limit + 1 {
                    remove.push(a)
                } else {
                    keep.push(a)
                }
            }
        }
        if let Some(days) = p.maxage_days {
            let cutoff = self.pass.now.timestamp().as_second() - (days as i64) * 86_400;
            let (old, _young): (Vec<_>, Vec<_>) = keep.into_iter().partition(|a| {
                self.lstat(&lay.dir, &a.name)
                    .is_ok_and(|m| m.mtime() < cutoff)
            });
            remove.extend(old);
        }
        for a in remove {
            self.remove(p, lay, &a.name)?;
        }
        Ok(())
    }

    /// logrotate's `mail`: `mailfirst` sends the archive just made, `maillast` the one
    /// about to be removed; only with `logs.mail_command`. A failure is an error for that
    /// log; the rotation goes on.
    fn mail(&mut self, p: &Policy, dir: &ArchDir, name: &str) {
        let (Some(to), Some(cmd)) = (&p.mail, self.pass.mail_command) else {
            return;
        };
        if self.pass.dry_run {
            return;
        }
        let path = dir.path.join(name);
        if let Err(e) = self
            .open_real(dir, name)
            .and_then(|file| send_mail(cmd, to, file, &path))
        {
            self.error(&path, format!("mail to {to} with {}: {e}", cmd.display()));
        }
    }

    fn remove(&mut self, p: &Policy, lay: &Layout, name: &str) -> io::Result<()> {
        if !p.mailfirst {
            self.mail(p, &lay.dir, name);
        }
        let path = lay.dir.path.join(name);
        let size = self.lstat(&lay.dir, name).map_or(0, |m| m.len());
        if let Some(s) = &p.scripts.preremove {
            let place = p.place.clone();
            self.script(s, &[&path.to_string_lossy()], &place, "preremove");
        }
        (self.pass.fail)("step")?;
        if !self.pass.dry_run {
            let d = Arc::clone(lay.dir.dir.as_ref().ok_or_else(|| {
                io::Error::other(format!("{} was not created", lay.dir.path.display()))
            })?);
            match delete_in(&d, OsStr::new(name), p.shred.then_some(p.shredcycles)) {
                Ok(_) => {}
                Err(e) if e.kind() == compress::IN_USE => {
                    self.note(&path, e.to_string());
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
            self.sync_later(&lay.dir.path, d);
        }
        self.index_remove(&lay.dir.path, name);
        self.out.deleted += 1;
        self.out.deleted_bytes += size;
        self.act(ActionKind::Delete, &path, None, size);
        Ok(())
    }

    /// Dry run: the real file a name of `dir` stands for, when the name only exists
    /// virtually (see `dry_names`).
    fn virtual_file(&self, dir: &ArchDir, name: &str) -> Option<&DryFile> {
        if self.dry_names.is_empty() {
            return None;
        }
        self.dry_names.get(&dir.path.join(name))
    }

    /// `fstatat(AT_SYMLINK_NOFOLLOW)` of a name of `dir`, and in a dry run of a name that
    /// would exist by now, of the file it would be.
    fn lstat(&self, dir: &ArchDir, name: &str) -> io::Result<Stat> {
        if let Some(v) = self.virtual_file(dir, name) {
            return v
                .stat
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound));
        }
        dir.handle()?.stat(OsStr::new(name))
    }

    /// Opens the (real) file behind a name of `dir` for reading (no link followed, only a
    /// regular file; a virtual name's directory is opened below the roots again).
    fn open_real(&self, dir: &ArchDir, name: &str) -> io::Result<std::fs::File> {
        if let Some(v) = self.virtual_file(dir, name) {
            return self.pass.roots.open_dir(&v.dir)?.open_file(&v.name, false);
        }
        dir.handle()?.open_file(OsStr::new(name), false)
    }

    /// Whether the plain archive `plain` and the compressed `archive` (both names of
    /// `dir`) hold the same bytes; anything unreadable counts as different.
    fn same_content(&self, p: &Policy, dir: &ArchDir, plain: &str, archive: &str) -> bool {
        match (self.open_real(dir, plain), self.open_real(dir, archive)) {
            (Ok(a), Ok(b)) => same_content(a, b, &p.compressor).unwrap_or(false),
            _ => false,
        }
    }

    /// Dry run: the file named `from` (`name` in `dir`, when it exists for real) would
    /// now be at `to`.
    fn dry_moved(&mut self, from: &Path, dir: Option<&Arc<Dir>>, name: &OsStr, to: PathBuf) {
        if !self.pass.dry_run {
            return;
        }
        let real = self.dry_names.remove(from).or_else(|| {
            dir.map(|d| DryFile {
                dir: d.path().to_path_buf(),
                name: name.to_owned(),
                stat: d.stat(name).ok(),
            })
        });
        if let Some(real) = real {
            self.dry_names.insert(to, real);
        }
    }

    fn index_add(&mut self, dir: &Path, name: &str) {
        if let Some(set) = self.dir_index.get_mut(dir.as_os_str()) {
            set.insert(name.to_string());
        }
    }

    fn index_remove(&mut self, dir: &Path, name: &str) {
        if let Some(set) = self.dir_index.get_mut(dir.as_os_str()) {
            set.remove(name);
        }
    }
}

/// Dry run: the real file behind a name that would exist by now. No handle is kept (a
/// pass holds at most [`MAX_OPEN_DIRS`] descriptors); a dry run changes no file, so what
/// `fstatat` said when it was first named stays true.
#[derive(Clone)]
struct DryFile {
    /// Its directory (reopened below the roots to read it) and name.
    dir: PathBuf,
    name: OsString,
    /// `None`: it could not be stat'ed (reported as not found).
    stat: Option<Stat>,
}

/// A log that is due, with the handle of its directory.
struct Due {
    /// The log's path (state key, messages).
    path: PathBuf,
    dir: Arc<Dir>,
    name: OsString,
    meta: Stat,
}

/// Where a rotated log's content went: `name` in `dir`; with `renamecopy`, `tmp` is the
/// name in the log's directory it waits under until it is copied there.
struct Rotated {
    dir: ArchDir,
    name: String,
    tmp: Option<OsString>,
}

/// The directory a log's archives go to. `dir` is `None` only in a dry run where
/// `createolddir` would create it.
#[derive(Clone)]
struct ArchDir {
    path: PathBuf,
    dir: Option<Arc<Dir>>,
}

impl ArchDir {
    fn handle(&self) -> io::Result<&Dir> {
        self.dir.as_deref().ok_or_else(|| {
            io::Error::other(format!("olddir {} was not created", self.path.display()))
        })
    }
}

/// Removes one archive through its directory handle: opened without following a link
/// (only a regular file), refused while someone has it open for writing (a read lease,
/// as before compression: deleting it would free nothing and lose what the writer
/// writes), checked to be still the file under that name, then overwritten (`shred`
/// cycles) and unlinked. Returns its size. The engine's retention and the emergency
/// cleanup both delete with this.
///
/// # Errors
/// Any step fails; an error of kind [`compress::IN_USE`] means a writer has it open.
pub(crate) fn delete_in(dir: &Dir, name: &OsStr, shred_cycles: Option<u32>) -> io::Result<u64> {
    // A lease needs a read-only descriptor and no writer, ourselves included: the lease
    // is checked first, the file opened for shredding after.
    let f = dir.open_file(name, false)?;
    let st = f.metadata()?;
    // A few tries: a child another thread is forking holds copies of our descriptors
    // (a just-written archive's too) until it execs.
    let mut tries = 0;
    while matches!(fsx::WriteWatch::take(&f), fsx::Writers::Open) {
        tries += 1;
        if tries == 5 {
            return Err(io::Error::new(
                compress::IN_USE,
                format!(
                    "{} is open for writing; not deleted",
                    dir.display(name).display()
                ),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if let Some(cycles) = shred_cycles {
        fsx::shred_file(&dir.open_file(name, true)?, cycles)?;
    }
    let now = dir.stat(name)?;
    if (now.dev(), now.ino()) != (st.dev(), st.ino()) {
        return Err(io::Error::other(format!(
            "{} was replaced while being deleted; left alone",
            dir.display(name).display()
        )));
    }
    dir.unlink(name)?;
    Ok(st.len())
}

/// Deletes one rotated file named by path, as the engine does (see [`delete_in`]): its
/// directory is opened below `roots` without following links.
///
/// # Errors
/// Outside the roots, behind a symlink, not a regular file, in use, or the unlink fails.
pub(crate) fn delete_archive(roots: &Roots, path: &Path) -> io::Result<u64> {
    let (dir, name) = open_parent(roots, path)?;
    let n = delete_in(&dir, name, None)?;
    dir.sync()?;
    Ok(n)
}

/// Compresses one rotated file named by path to `NAME.gz` (gzip, level 6) as the engine
/// does ([`compress::compress_at`]: the write-lease check, temporary, fsync, rename,
/// then unlink), its directory opened below `roots` without following links. The
/// archive keeps the source's mtime (retention by age still sees the log's age).
///
/// # Errors
/// As [`delete_archive`]; an error of kind [`compress::IN_USE`] means a writer has it open.
pub(crate) fn compress_archive(
    roots: &Roots,
    path: &Path,
    threads: usize,
) -> io::Result<compress::Compressed> {
    let (dir, name) = open_parent(roots, path)?;
    let mut dst = name.to_owned();
    dst.push(".gz");
    let mtime = dir.stat(name)?.modified();
    let c = compress::compress_at(
        &dir,
        name,
        &dst,
        &super::policy::Compressor::Gzip { level: 6 },
        threads,
        &compress::no_fail,
    )?;
    let out = dir.open_file(&dst, true)?;
    out.set_modified(mtime)?;
    out.sync_all()?;
    Ok(c)
}

fn open_parent<'p>(roots: &Roots, path: &'p Path) -> io::Result<(Dir, &'p OsStr)> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a file path", path.display()),
        ));
    };
    Ok((roots.open_dir(parent)?, name))
}

/// Archive-name regexes of one pass, by policy (its address: the policies outlive the
/// pass) and whether the log's name ends with the policy's `extension`.
type RegexCache = HashMap<(usize, bool), Arc<Regex>>;

/// How one log's archives are named.
struct Layout {
    dir: ArchDir,
    /// The log's name without `extension`.
    base: String,
    /// `extension` when the name ends with it, else empty.
    ext: String,
    compext: String,
    /// Matches a name after `base`. Captures: `key` (date), `n` (number or counter),
    /// `z` (compression extension).
    regex: Arc<Regex>,
}

impl Layout {
    fn new(p: &Policy, log_name: &OsStr, dir: ArchDir, cache: &mut RegexCache) -> Self {
        let name = log_name.to_string_lossy().into_owned();
        let (base, ext) = match p.extension.as_ref().or(p.addextension.as_ref()) {
            Some(e) if name.ends_with(e.as_str()) && name.len() > e.len() => {
                (name[..name.len() - e.len()].to_string(), e.clone())
            }
            // `addextension`: a name without the extension gets it.
            Some(e) if p.extension.is_none() => (name.clone(), e.clone()),
            _ => (name.clone(), String::new()),
        };
        let compext = p.compress_ext();
        // Matched against the name after `base`, so one compiled regex serves every log
        // of a policy (compiling one per log dominated a pass over 10,000 logs); it only
        // depends on the policy and on whether the name ends with `extension`.
        let key = (std::ptr::from_ref(p) as usize, ext.is_empty());
        let regex = Arc::clone(cache.entry(key).or_insert_with(|| {
            let z = format!("(?P<z>{})?", regex::escape(&compext));
            let re = if p.dateext {
                format!(
                    "^(?P<key>{})(?:\\.(?P<n>[0-9]+))?{}{z}$",
                    p.dateformat().regex(),
                    regex::escape(&ext)
                )
            } else {
                format!("^\\.(?P<n>[0-9]+){}{z}$", regex::escape(&ext))
            };
            Arc::new(
                Regex::new(&re)
                    .unwrap_or_else(|_| Regex::new("^$").unwrap_or_else(|_| unreachable!())),
            )
        }));
        Self {
            dir,
            base,
            ext,
            compext,
            regex,
        }
    }
}

#[derive(Debug, Clone)]
struct Archive {
    name: String,
    key: String,
    counter: u64,
    compressed: bool,
}

/// The index of a named capture group.
fn group(re: &Regex, name: &str) -> Option<usize> {
    re.capture_names().position(|n| n == Some(name))
}

/// Creates the new, empty log in its directory. `O_EXCL`: a file a writer already
/// recreated is left alone (caretaker never changes mode or owner of a file it did not
/// create). `ids` are the process's effective uid and gid; `old_now` is where the old log
/// is now (its directory and name).
fn create_log(
    dir: &Dir,
    name: &OsStr,
    spec: CreateSpec,
    old: &Stat,
    ids: (u32, u32),
    old_now: (&Dir, &OsStr),
) -> io::Result<()> {
    let mode = spec.mode.unwrap_or(old.mode());
    let file = match dir.create_new(name, mode) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    };
    // The umask (or a default ACL) may have cleared bits; this file is ours, so set
    // exactly what was asked. Nothing to set when neither could have (one syscall less
    // per log: a pass where every log rotates is made of such syscalls).
    let exact = mode & 0o7000 == 0
        && fsx::process_umask().is_some_and(|u| mode & u == 0)
        && !dir.has_default_acl();
    if !exact {
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    let uid = spec.uid.unwrap_or(old.uid());
    let gid = spec.gid.unwrap_or(old.gid());
    if (uid, gid) != ids {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
    }
    if spec.mode.is_none() {
        // No mode given: the old log's ACL too (logrotate with libacl).
        let (od, on) = old_now;
        if let Some(acl) = od.acl_access(on)? {
            fsx::set_acl(&file, &acl)?;
        }
    }
    Ok(())
}

/// copy / copytruncate: copy (keeping holes) to a temporary, copy again what was
/// appended meanwhile, rename to `target`, copy the last appended bytes and truncate the
/// log (copytruncate) with nothing slow in between, then fsync the copy.
fn copy_out(
    dir: &Dir,
    name: &OsStr,
    to_dir: &Dir,
    target: &OsStr,
    truncate: bool,
    fail: FailHook<'_>,
) -> io::Result<()> {
    let src = dir.open_file(name, truncate)?;
    let meta = src.metadata()?;
    let tmp = fsx::temp_file_name(target);
    let _ = to_dir.unlink(&tmp);
    let dst = to_dir.create_new(&tmp, meta.mode() & 0o7777)?;
    let res = (|| {
        let _ = std::os::unix::fs::fchown(&dst, Some(meta.uid()), Some(meta.gid()));
        let mut pos = fsx::copy_sparse_from(&src, &dst, 0)?;
        // Copy again whatever arrived during the copy, until the size holds still.
        for _ in 0..8 {
            let len = src.metadata()?.len();
            if len <= pos {
                break;
            }
            pos = fsx::copy_sparse_from(&src, &dst, pos)?;
        }
        // The copy gets its final name before the truncate, so a crash after the truncate
        // never leaves the data only in a temporary (which the next run would remove).
        fail("rename")?;
        // Never over an existing archive (one planted or made since the name was picked).
        to_dir.rename_noreplace(&tmp, to_dir, target)?;
        if truncate {
            // Last catch-up through the still-open descriptor right before the truncate:
            // the window for loss is only the gap between this size check and ftruncate,
            // so nothing slow (no fsync) goes between.
            let len = src.metadata()?.len();
            if len > pos {
                fsx::copy_sparse_from(&src, &dst, pos)?;
            }
            fail("truncate")?;
            src.set_len(0)?;
        }
        fail("fsync")?;
        dst.sync_all()?;
        Ok(())
    })();
    if res.is_err() {
        let _ = to_dir.unlink(&tmp);
    }
    res
}

/// Runs `cmd -s SUBJECT to` with the file's content (gzip and zstd decompressed by the
/// name's extension) on stdin; `path` is the file's name for the subject.
fn send_mail(cmd: &Path, to: &str, file: std::fs::File, path: &Path) -> io::Result<()> {
    use std::io::Read;
    let name = path.to_string_lossy();
    let mut content: Box<dyn Read> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(file)))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(file)?)
    } else {
        Box::new(file)
    };
    let mut child = std::process::Command::new(cmd)
        .arg("-s")
        .arg(path.as_os_str())
        .arg(to)
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        io::copy(&mut content, &mut stdin)?;
    }
    let status = child.wait()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("exited with {status}")))
    }
}

/// Whether `archive` (compressed with `c`) holds exactly the bytes of `plain`. Streams
/// both; an external compressor's output cannot be checked and counts as different.
fn same_content(
    plain: std::fs::File,
    archive: std::fs::File,
    c: &super::policy::Compressor,
) -> io::Result<bool> {
    use super::policy::Compressor;
    use std::io::Read;
    let mut dec: Box<dyn Read> = match c {
        Compressor::Gzip { .. } => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(
            archive,
        ))),
        Compressor::Zstd { .. } => Box::new(zstd::stream::read::Decoder::new(archive)?),
        Compressor::External { .. } => return Ok(false),
    };
    let mut p = io::BufReader::new(plain);
    let (mut x, mut y) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = p.read(&mut x)?;
        if n == 0 {
            return Ok(dec.read(&mut y[..1])? == 0);
        }
        if dec.read_exact(&mut y[..n]).is_err() || x[..n] != y[..n] {
            return Ok(false);
        }
    }
}
