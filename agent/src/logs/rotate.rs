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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use jiff::{ToSpan, Zoned};
use regex::Regex;

use super::compress::{self, FailHook};
use super::fsx;
use super::policy::{CreateSpec, Policy};
use super::schedule::{self, FileFacts};
use super::state::State;
use super::summary::{Action, ActionKind, LogError, RotationSummary};

/// Where kubelet keeps its symlinks to container logs; it rotates those itself.
pub const KUBELET_LINK_DIR: &str = "/var/log/containers";

/// Options of one pass.
pub struct Pass<'a> {
    pub now: Zoned,
    /// Only paths whose directory resolves inside one of these are touched.
    pub roots: &'a [PathBuf],
    pub force: bool,
    pub dry_run: bool,
    /// Threads for one compression.
    pub threads: usize,
    /// Rotate the target of a symlink (inside the roots) instead of skipping it.
    pub follow_symlinks: bool,
    /// `logs.mail_command`: mails logs for blocks with `mail`.
    pub mail_command: Option<&'a Path>,
    /// Failure injection for tests (see [`compress::FailHook`]); also called with
    /// `"step"` before every mutating step.
    pub fail: FailHook<'a>,
}

/// The mutable context of a pass.
struct Run<'a, 'p> {
    pass: &'p Pass<'a>,
    state: &'p mut State,
    out: &'p mut RotationSummary,
    dirs_to_sync: BTreeSet<PathBuf>,
    /// Names in each directory a pass looked into (read once, then kept up to date), so
    /// that finding a log's archives does not read the directory again.
    dir_index: HashMap<std::ffi::OsString, BTreeSet<String>>,
    /// Whether a directory resolves inside the roots, and the last one asked (most logs of
    /// a pass share their directory).
    inside: HashMap<PathBuf, bool>,
    last_inside: Option<(PathBuf, bool)>,
    /// One compiled archive-name regex per distinct pattern, shared (a clone of a `Regex`
    /// builds a new matching cache, which cost more than the match).
    regexes: RegexCache,
    /// The process's effective uid and gid, read once per pass.
    ids: (u32, u32),
    /// Whether `state` was changed (a new log recorded, a rotation).
    state_changed: bool,
    /// Dry run: a name that would exist now → the real file it would be (a rename, a
    /// compression keep size class and mtime), so retention decides as the real run.
    dry_names: HashMap<PathBuf, PathBuf>,
    /// Logs first named by a block with `ignoreduplicates`.
    quiet_dups: HashSet<std::ffi::OsString>,
}

/// Runs every policy once. The state is updated in memory; the caller saves it. Returns
/// whether the state changed (a pass where nothing is due and no log is new leaves it as
/// it was, and nothing needs to be written).
pub fn run_pass(
    policies: &[Policy],
    pass: &Pass<'_>,
    state: &mut State,
    out: &mut RotationSummary,
) -> bool {
    let mut run = Run {
        pass,
        state,
        out,
        dirs_to_sync: BTreeSet::new(),
        dir_index: HashMap::new(),
        inside: HashMap::new(),
        last_inside: None,
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
    for p in policies {
        let files = run.expand(p, &mut seen);
        run.policy(p, &files);
    }
    if !pass.dry_run {
        for d in std::mem::take(&mut run.dirs_to_sync) {
            if let Err(e) = fsx::sync_dir(&d) {
                run.error(&d, format!("cannot fsync directory: {e}"));
            }
        }
    }
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

    /// Glob expansion; a pattern matching nothing is taken literally (as logrotate does),
    /// so `missingok` decides whether its absence is an error.
    fn expand(&mut self, p: &Policy, seen: &mut HashSet<std::ffi::OsString>) -> Vec<PathBuf> {
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let mut files = Vec::new();
        for pat in &p.patterns {
            let mut matched: Vec<PathBuf> = match expand_pattern(pat, opts) {
                Ok(paths) => paths,
                Err(e) => {
                    self.out.errors.push(LogError {
                        place: p.place.clone(),
                        message: format!("bad pattern {pat:?}: {e}"),
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

    fn is_inside(&mut self, path: &Path) -> bool {
        let parent = path.parent().unwrap_or(Path::new("/"));
        if let Some((last, v)) = &self.last_inside
            && last.as_os_str() == parent.as_os_str()
        {
            return *v;
        }
        let v = match self.inside.get(parent) {
            Some(v) => *v,
            None => {
                let v = fsx::inside_roots(path, self.pass.roots);
                self.inside.insert(parent.to_path_buf(), v);
                v
            }
        };
        self.last_inside = Some((parent.to_path_buf(), v));
        v
    }

    fn policy(&mut self, p: &Policy, files: &[PathBuf]) {
        let mut due: Vec<(PathBuf, std::fs::Metadata)> = Vec::new();
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
        for (f, meta) in due {
            if !p.scripts.shared
                && let Some(s) = &p.scripts.prerotate
                && !self.script(s, &[&f.to_string_lossy()], &p.place, "prerotate")
            {
                continue;
            }
            let archive = match self.rotate_one(p, &f, &meta) {
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
                    .as_deref()
                    .map(|a| a.to_string_lossy().into_owned())
                    .unwrap_or_default();
                self.script(s, &[&f.to_string_lossy(), &a], &p.place, "postrotate");
            }
            if let Err(e) = self.after_rotation(p, &f, archive.as_deref()) {
                self.error(&f, e.to_string());
            }
        }
        if p.scripts.shared
            && let Some(s) = &p.scripts.postrotate
        {
            self.script(s, &[pattern.as_str()], &p.place, "postrotate");
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

    /// Looks at one path; returns it with its metadata when it is due.
    fn check(&mut self, p: &Policy, f: &Path) -> Option<(PathBuf, std::fs::Metadata)> {
        let meta = match std::fs::symlink_metadata(f) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !p.missingok {
                    self.error(f, "log does not exist (add missingok to allow that)");
                }
                return None;
            }
            Err(e) => {
                self.error(f, format!("cannot stat: {e}"));
                return None;
            }
        };
        let (path, meta) = if meta.file_type().is_symlink() {
            let kubelet = f.parent() == Some(Path::new(KUBELET_LINK_DIR));
            if !self.pass.follow_symlinks {
                if kubelet {
                    self.note(f, "symlink to a container log: the kubelet rotates those (containerLogMaxSize); set logs.rotate_symlinks: true to rotate them anyway");
                } else {
                    self.note(f, "is a symlink; caretaker does not rotate symlinks (set logs.rotate_symlinks: true to rotate the target inside the roots)");
                }
                return None;
            }
            let target = match std::fs::canonicalize(f) {
                Ok(t) => t,
                Err(e) => {
                    self.error(f, format!("symlink cannot be resolved: {e}"));
                    return None;
                }
            };
            match std::fs::symlink_metadata(&target) {
                Ok(m) => (target, m),
                Err(e) => {
                    self.error(f, format!("symlink target cannot be read: {e}"));
                    return None;
                }
            }
        } else {
            (f.to_path_buf(), meta)
        };
        if !self.is_inside(&path) {
            self.error(
                &path,
                "is outside the configured roots (logs.roots); not touched",
            );
            return None;
        }
        if !meta.is_file() {
            self.error(&path, "is not a regular file; not touched");
            return None;
        }
        if meta.nlink() > 1 && !p.allowhardlink {
            self.note(&path, format!("has {} hard links (another name may be outside the roots); add allowhardlink to rotate it", meta.nlink()));
            return None;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .map_or(0, |d| d.as_secs() as i64);
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
        if d.rotates() {
            Some((path, meta))
        } else {
            if p.compress
                && let Err(e) = self.compress_leftovers(p, &path, &meta)
            {
                self.error(&path, e.to_string());
            }
            None
        }
    }

    /// A log that is not due: archives an earlier run left uncompressed (ENOSPC or a kill
    /// during compression) are compressed now rather than at the next rotation; with
    /// `delaycompress` the newest archive stays as it is. Costs one directory read per
    /// directory and pass (names only) when nothing is left over.
    fn compress_leftovers(
        &mut self,
        p: &Policy,
        f: &Path,
        meta: &std::fs::Metadata,
    ) -> io::Result<()> {
        if let Some(old) = &p.olddir {
            let dir = f.parent().unwrap_or(Path::new("/"));
            // Never created for this: no olddir, no archives in it.
            if !fsx::normalize(&dir.join(old)).is_dir() {
                return Ok(());
            }
        }
        let dir = self.archive_dir(p, f, meta)?;
        let lay = Layout::new(p, f, &dir, &mut self.regexes);
        let mut names = self.archive_names(&lay)?;
        if p.delaycompress {
            let newest = if p.dateext {
                names
                    .iter()
                    .max_by(|a, b| (&a.key, a.counter).cmp(&(&b.key, b.counter)))
            } else {
                names.iter().min_by_key(|a| a.counter)
            }
            .map(|a| a.path.clone());
            names.retain(|a| Some(&a.path) != newest.as_ref());
        }
        for a in names.into_iter().filter(|a| !a.compressed) {
            if self.lstat(&a.path).is_ok_and(|m| m.is_file()) {
                self.compress(p, &a.path, &lay)?;
            }
        }
        Ok(())
    }

    fn archive_dir(
        &mut self,
        p: &Policy,
        f: &Path,
        meta: &std::fs::Metadata,
    ) -> io::Result<PathBuf> {
        let dir = f.parent().unwrap_or(Path::new("/"));
        let Some(old) = &p.olddir else {
            return Ok(dir.to_path_buf());
        };
        let od = fsx::normalize(&dir.join(old));
        let probe = od.join("x");
        match std::fs::symlink_metadata(&od) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "olddir {} is not a directory",
                    od.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let Some(spec) = p.createolddir else {
                    return Err(io::Error::other(format!(
                        "olddir {} does not exist (add createolddir to create it)",
                        od.display()
                    )));
                };
                if !self.pass.dry_run {
                    std::fs::create_dir(&od)?;
                    let (uid, gid) = p.su.map_or((None, None), |(u, g)| (Some(u), Some(g)));
                    let mode = spec.mode.unwrap_or(0o755);
                    std::fs::set_permissions(&od, std::fs::Permissions::from_mode(mode))?;
                    let _ = std::os::unix::fs::chown(
                        &od,
                        spec.uid.or(uid).or(Some(meta.uid())),
                        spec.gid.or(gid).or(Some(meta.gid())),
                    );
                    self.dirs_to_sync.insert(dir.to_path_buf());
                }
            }
            Err(e) => return Err(e),
        }
        if !self.pass.dry_run && !self.is_inside(&probe) {
            return Err(io::Error::other(format!(
                "olddir {} is outside the configured roots",
                od.display()
            )));
        }
        Ok(od)
    }

    fn names(&mut self, dir: &Path) -> io::Result<&mut BTreeSet<String>> {
        let key = dir.as_os_str();
        if !self.dir_index.contains_key(key) {
            let mut set = BTreeSet::new();
            match std::fs::read_dir(dir) {
                Ok(rd) => {
                    for e in rd.flatten() {
                        if let Some(n) = e.file_name().to_str() {
                            set.insert(n.to_string());
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && self.pass.dry_run => {}
                Err(e) => return Err(e),
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
                path: lay.dir.join(n),
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
        out.retain(|a| self.lstat(&a.path).is_ok_and(|m| m.is_file()));
        Ok(out)
    }

    fn rotate_one(
        &mut self,
        p: &Policy,
        f: &Path,
        meta: &std::fs::Metadata,
    ) -> io::Result<Option<PathBuf>> {
        (self.pass.fail)("step")?;
        let dir = self.archive_dir(p, f, meta)?;
        let lay = Layout::new(p, f, &dir, &mut self.regexes);
        // 1. Finish leftovers and delayed compression.
        if p.compress {
            for a in self.archives(&lay)?.into_iter().filter(|a| !a.compressed) {
                self.compress(p, &a.path, &lay)?;
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
                    break dir.join(cand);
                }
                n += 1;
            }
        } else {
            self.shift(p, &lay)?;
            dir.join(format!("{}.{}{}", lay.base, p.start, lay.ext))
        };
        // 3. Move the log's content to the archive name.
        (self.pass.fail)("step")?;
        let size = meta.len();
        if p.copy || p.copytruncate {
            if !self.pass.dry_run {
                copy_out(f, &target, p.copytruncate, self.pass.fail)?;
            } else {
                // A new file with the log's content, as new as the log.
                let real = self
                    .dry_names
                    .get(f)
                    .cloned()
                    .unwrap_or_else(|| f.to_path_buf());
                self.dry_names.insert(target.clone(), real);
            }
            let kind = if p.copytruncate {
                ActionKind::CopyTruncate
            } else {
                ActionKind::Copy
            };
            self.act(kind, f, Some(&target), size);
        } else {
            if !self.pass.dry_run {
                std::fs::rename(f, &target)?;
            }
            self.dry_moved(f, &target);
            self.act(ActionKind::Rotate, f, Some(&target), size);
            if let Some(spec) = p.create {
                (self.pass.fail)("step")?;
                if !self.pass.dry_run {
                    create_log(f, spec, meta, self.ids, &target)?;
                }
            }
        }
        self.index_add(&target);
        self.dirs_to_sync.insert(dir.clone());
        if let Some(d) = f.parent() {
            self.dirs_to_sync.insert(d.to_path_buf());
        }
        self.out.rotated += 1;
        self.out.rotated_bytes += size;
        let now = self.pass.now.datetime();
        self.state.set(f, now);
        self.state_changed = true;
        Ok(Some(target))
    }

    /// Steps 4 and 5, after the postrotate script.
    fn after_rotation(&mut self, p: &Policy, f: &Path, archive: Option<&Path>) -> io::Result<()> {
        let Some(archive) = archive else {
            return Ok(());
        };
        let dir = archive.parent().unwrap_or(Path::new("/")).to_path_buf();
        let lay = Layout::new(p, f, &dir, &mut self.regexes);
        if p.mailfirst {
            self.mail(p, archive);
        }
        if p.rotate == 0 {
            self.remove(p, archive)?;
            return Ok(());
        }
        if p.compress && !p.delaycompress {
            (self.pass.fail)("step")?;
            self.compress(p, archive, &lay)?;
        }
        self.retention(p, &lay)
    }

    fn compress(&mut self, p: &Policy, src: &Path, lay: &Layout) -> io::Result<()> {
        let name = src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dst = src.with_file_name(format!("{name}{}", lay.compext));
        // An archive of that name already: the same content (a run died after its
        // rename, before the unlink) is replaced by the same again; other content is
        // never replaced: both stay, under their own names, with a warning.
        // Existence from the directory index, which a dry run keeps as the real run's.
        let dst_name = format!("{name}{}", lay.compext);
        let dst_taken = match src.parent() {
            Some(dir) => self.names(dir)?.contains(&dst_name),
            None => false,
        };
        if dst_taken
            && !same_content(&self.resolve(src), &self.resolve(&dst), &p.compressor)
                .unwrap_or(false)
        {
            let message = format!(
                "{} and {} are two different archives for one place; both are kept and {} stays uncompressed",
                src.display(),
                dst.display(),
                src.display()
            );
            tracing::warn!(path = %src.display(), "{message}");
            self.out.warnings.push(LogError {
                place: src.display().to_string(),
                message,
            });
            return Ok(());
        }
        let before = match self.lstat(src) {
            Ok(m) => m.len(),
            // Dry run: the archive does not exist yet; it is the log just "rotated".
            Err(_) => self
                .out
                .actions
                .iter()
                .rev()
                .find(|a| a.to.as_deref() == Some(src))
                .map_or(0, |a| a.bytes),
        };
        let after = if self.pass.dry_run {
            None
        } else {
            match compress::compress_file(
                src,
                &dst,
                &p.compressor,
                self.pass.threads,
                self.pass.fail,
            ) {
                Ok(c) => Some(c.bytes_out),
                Err(e) if e.kind() == compress::IN_USE => {
                    self.note(src, e.to_string());
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        };
        self.index_remove(src);
        self.index_add(&dst);
        self.dry_moved(src, &dst);
        self.out.compressed += 1;
        self.out.compressed_bytes_before += before;
        self.out.compressed_bytes_after += after.unwrap_or(0);
        self.out.actions.push(Action {
            kind: ActionKind::Compress,
            path: src.to_path_buf(),
            to: Some(dst),
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
                let to = lay.dir.join(&new_name);
                // Past the count already (left by a larger `rotate`): it expires now, as a
                // reported deletion, instead of vanishing under the rename.
                if i == last
                    && by_index
                        .get(&(last + 1))
                        .is_some_and(|l| l.iter().any(|b| b.name == new_name))
                {
                    self.remove(p, &to)?;
                }
                (self.pass.fail)("step")?;
                if !self.pass.dry_run {
                    std::fs::rename(&a.path, &to)?;
                }
                self.index_remove(&a.path);
                self.index_add(&to);
                self.dry_moved(&a.path, &to);
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
                        && self.lstat(&a.path).is_ok_and(|m| m.is_file())
                })
                .collect();
            for a in past {
                self.remove(p, &a.path)?;
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
            let (old, young): (Vec<_>, Vec<_>) = keep.into_iter().partition(|a| {
                self.lstat(&a.path)
                    .map(|m| m.mtime() < cutoff)
                    .unwrap_or(false)
            });
            remove.extend(old);
            let _ = young;
        }
        for a in remove {
            self.remove(p, &a.path)?;
        }
        Ok(())
    }

    /// logrotate's `mail`: `mailfirst` sends the archive just made, `maillast` the one
    /// about to be removed; only with `logs.mail_command`. A failure is an error for that
    /// log; the rotation goes on.
    fn mail(&mut self, p: &Policy, path: &Path) {
        let (Some(to), Some(cmd)) = (&p.mail, self.pass.mail_command) else {
            return;
        };
        if self.pass.dry_run {
            return;
        }
        if let Err(e) = send_mail(cmd, to, path) {
            self.error(path, format!("mail to {to} with {}: {e}", cmd.display()));
        }
    }

    fn remove(&mut self, p: &Policy, path: &Path) -> io::Result<()> {
        if !p.mailfirst {
            self.mail(p, path);
        }
        let size = self.lstat(path).map(|m| m.len()).unwrap_or(0);
        if let Some(s) = &p.scripts.preremove {
            let place = p.place.clone();
            self.script(s, &[&path.to_string_lossy()], &place, "preremove");
        }
        (self.pass.fail)("step")?;
        if !self.pass.dry_run {
            if p.shred {
                fsx::shred(path, p.shredcycles)?
            } else {
                std::fs::remove_file(path)?
            }
        }
        self.index_remove(path);
        if let Some(d) = path.parent() {
            self.dirs_to_sync.insert(d.to_path_buf());
        }
        self.out.deleted += 1;
        self.out.deleted_bytes += size;
        self.act(ActionKind::Delete, path, None, size);
        Ok(())
    }

    /// `lstat`, and in a dry run of a name that would exist by now, of the file it would be.
    fn lstat(&self, p: &Path) -> io::Result<std::fs::Metadata> {
        std::fs::symlink_metadata(self.dry_names.get(p).map_or(p, PathBuf::as_path))
    }

    /// The real file behind a name (in a dry run, a name may only exist virtually).
    fn resolve(&self, p: &Path) -> PathBuf {
        self.dry_names
            .get(p)
            .cloned()
            .unwrap_or_else(|| p.to_path_buf())
    }

    /// Dry run: `from` would now be at `to`.
    fn dry_moved(&mut self, from: &Path, to: &Path) {
        if self.pass.dry_run {
            let real = self
                .dry_names
                .remove(from)
                .unwrap_or_else(|| from.to_path_buf());
            self.dry_names.insert(to.to_path_buf(), real);
        }
    }

    fn index_add(&mut self, p: &Path) {
        if let (Some(d), Some(n)) = (p.parent(), p.file_name().and_then(|n| n.to_str()))
            && let Some(set) = self.dir_index.get_mut(d.as_os_str())
        {
            set.insert(n.to_string());
        }
    }

    fn index_remove(&mut self, p: &Path) {
        if let (Some(d), Some(n)) = (p.parent(), p.file_name().and_then(|n| n.to_str()))
            && let Some(set) = self.dir_index.get_mut(d.as_os_str())
        {
            set.remove(n);
        }
    }
}

/// Expands a glob. When only the last component has wildcards (the usual
/// `/var/log/x/*.log`), one `read_dir` and a name match per entry, without the extra
/// `stat` per entry that `glob::glob` makes; otherwise `glob::glob_with`.
fn expand_pattern(pat: &str, opts: glob::MatchOptions) -> Result<Vec<PathBuf>, glob::PatternError> {
    let (dir, last) = pat.rsplit_once('/').unwrap_or(("", pat));
    if dir.contains(['*', '?', '[']) || !last.contains(['*', '?', '[']) {
        return Ok(glob::glob_with(pat, opts)?.filter_map(Result::ok).collect());
    }
    let matcher = glob::Pattern::new(last)?;
    let dir = if dir.is_empty() {
        Path::new("/")
    } else {
        Path::new(dir)
    };
    let mut names: Vec<std::ffi::OsString> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|n| n.to_str().is_some_and(|n| matcher.matches_with(n, opts)))
            .collect(),
        Err(_) => Vec::new(),
    };
    // Sorting the names (bytes) gives the order of sorting the paths, without comparing
    // paths component by component.
    names.sort_unstable();
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// Archive-name regexes of one pass, by policy (its address: the policies outlive the
/// pass) and whether the log's name ends with the policy's `extension`.
type RegexCache = HashMap<(usize, bool), Arc<Regex>>;

/// How one log's archives are named.
struct Layout {
    dir: PathBuf,
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
    fn new(p: &Policy, f: &Path, dir: &Path, cache: &mut RegexCache) -> Self {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
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
            dir: dir.to_path_buf(),
            base,
            ext,
            compext,
            regex,
        }
    }
}

#[derive(Debug, Clone)]
struct Archive {
    path: PathBuf,
    name: String,
    key: String,
    counter: u64,
    compressed: bool,
}

/// The index of a named capture group.
fn group(re: &Regex, name: &str) -> Option<usize> {
    re.capture_names().position(|n| n == Some(name))
}

/// Creates the new, empty log. `O_EXCL`: a file a writer already recreated is left alone
/// (caretaker never changes mode or owner of a file it did not create).
/// `ids` are the process's effective uid and gid; `old_path` is where the old log is now.
fn create_log(
    f: &Path,
    spec: CreateSpec,
    old: &std::fs::Metadata,
    ids: (u32, u32),
    old_path: &Path,
) -> io::Result<()> {
    let mode = spec.mode.unwrap_or(old.mode() & 0o7777);
    let file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .mode(mode)
        .open(f)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    };
    // The umask (or a default ACL) may have cleared bits; this file is ours, so set
    // exactly what was asked.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    let uid = spec.uid.unwrap_or(old.uid());
    let gid = spec.gid.unwrap_or(old.gid());
    if (uid, gid) != ids {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
    }
    if spec.mode.is_none() {
        // No mode given: the old log's ACL too (logrotate with libacl).
        fsx::copy_acl(old_path, &file)?;
    }
    Ok(())
}

/// copy / copytruncate: copy (keeping holes) to a temporary, copy again what was
/// appended meanwhile, rename to `target`, copy the last appended bytes and truncate the
/// log (copytruncate) with nothing slow in between, then fsync the copy.
fn copy_out(f: &Path, target: &Path, truncate: bool, fail: FailHook<'_>) -> io::Result<()> {
    let src = std::fs::OpenOptions::new()
        .read(true)
        .write(truncate)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(f)?;
    let meta = src.metadata()?;
    let tmp = fsx::temp_name(target);
    let _ = std::fs::remove_file(&tmp);
    let dst = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .mode(meta.mode() & 0o7777)
        .open(&tmp)?;
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
        std::fs::rename(&tmp, target)?;
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
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Runs `cmd -s SUBJECT to` with the file's content (gzip and zstd decompressed) on stdin.
fn send_mail(cmd: &Path, to: &str, path: &Path) -> io::Result<()> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let name = path.to_string_lossy();
    let mut content: Box<dyn Read> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(f)))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(f)?)
    } else {
        Box::new(f)
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
fn same_content(plain: &Path, archive: &Path, c: &super::policy::Compressor) -> io::Result<bool> {
    use super::policy::Compressor;
    use std::io::Read;
    let a = std::fs::File::open(archive)?;
    let mut dec: Box<dyn Read> = match c {
        Compressor::Gzip { .. } => {
            Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(a)))
        }
        Compressor::Zstd { .. } => Box::new(zstd::stream::read::Decoder::new(a)?),
        Compressor::External { .. } => return Ok(false),
    };
    let mut p = io::BufReader::new(std::fs::File::open(plain)?);
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
