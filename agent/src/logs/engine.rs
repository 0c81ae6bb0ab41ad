//! [`LogEngine`]: the entry point the daemon and the CLI call.
//!
//! ```no_run
//! # use caretaker_agent::{config::LogsConfig, logs::engine::{LogEngine, RunOptions}};
//! let engine = LogEngine::new(&LogsConfig::default(), None);
//! let summary = engine.run_due(jiff::Timestamp::now()); // one pass, blocking
//! println!("{} rotated, {} errors", summary.rotated, summary.errors.len());
//! ```
//! Every call is blocking (file I/O, compression): call it from `spawn_blocking`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::compress::{FailHook, no_fail};
use super::conf;
use super::handle::Roots;
use super::lock::{self, LockError};
use super::policy::{Permissions, Policy};
use super::rotate::{Pass, run_pass};
use super::state::{State, StateError};
use super::summary::{LogError, RotationSummary, SweepSummary};
use super::sweep::{self, RetentionRule};
use crate::config::LogsConfig;

/// Options of one rotation run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Rotate every log regardless of its criteria (logrotate `-f`); `notifempty` and
    /// `minage` still apply.
    pub force: bool,
    /// Decide and report, touch nothing (the state file is not written either).
    pub dry_run: bool,
    /// How long to wait for another run's lock. Zero: one try.
    pub lock_wait: Duration,
}

/// Why a run did not happen at all.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Loaded policies and settings; cheap to keep for the daemon's lifetime.
#[derive(Debug, Clone)]
pub struct LogEngine {
    policies: Vec<Policy>,
    load_errors: Vec<LogError>,
    roots: Roots,
    state_file: PathBuf,
    threads: usize,
    follow_symlinks: bool,
    retention: Vec<RetentionRule>,
    check_interval: Duration,
    lock_wait: Duration,
    tz: TimeZone,
    /// The state as this engine last read or wrote it (shared by clones).
    cache: Arc<Mutex<Option<StateCache>>>,
}

/// Identity of the state file's content: device, inode, size and mtime. A save replaces
/// the file by rename (a new inode), so any write by another run changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

fn file_id(path: &Path) -> Option<FileId> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileId {
        dev: m.dev(),
        ino: m.ino(),
        size: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
    })
}

/// A parsed state file and the identity of the file it is the content of (`None`: there
/// was no file). The daemon's passes reuse it instead of reading and parsing the file
/// again while the file is unchanged: a pass where nothing is due then costs the lock,
/// one `stat` of the state file and one `lstat` per log.
#[derive(Debug)]
struct StateCache {
    path: PathBuf,
    file: Option<FileId>,
    state: State,
    warnings: Vec<(usize, String)>,
}

impl LogEngine {
    /// Loads the YAML policies, the config's `logrotate_conf` and `extra_conf` (the CLI's
    /// `--logrotate-conf`). Bad blocks are left out and kept in [`Self::load_errors`];
    /// the rest loads.
    pub fn new(cfg: &LogsConfig, extra_conf: Option<&Path>) -> Self {
        let perms = Permissions {
            scripts: cfg.allow_scripts,
            external_compress: cfg.allow_compresscmd,
        };
        let mut policies = Vec::new();
        let mut load_errors = Vec::new();
        for (i, pc) in cfg.policies.iter().enumerate() {
            match pc.to_policy(i, perms) {
                Ok(p) => policies.push(p),
                Err(errs) => load_errors.extend(
                    errs.into_iter()
                        .map(|(place, message)| LogError { place, message }),
                ),
            }
        }
        for path in cfg
            .logrotate_conf
            .iter()
            .map(PathBuf::as_path)
            .chain(extra_conf)
        {
            let loaded = conf::load_file(path, perms);
            policies.extend(loaded.policies);
            load_errors.extend(loaded.errors.into_iter().map(|e| LogError {
                place: e.place,
                message: e.message,
            }));
        }
        Self {
            policies,
            load_errors,
            roots: Roots::new(&cfg.roots),
            state_file: cfg.state_file.clone(),
            threads: cfg.compress_threads.clamp(1, 64),
            follow_symlinks: cfg.rotate_symlinks,
            retention: cfg.retention.clone(),
            check_interval: cfg.check_interval,
            lock_wait: cfg.lock_wait,
            tz: TimeZone::system(),
            cache: Arc::default(),
        }
    }

    /// Uses `tz` for calendar decisions and date extensions instead of the system's.
    #[must_use]
    pub fn with_time_zone(mut self, tz: TimeZone) -> Self {
        self.tz = tz;
        self
    }

    /// Uses another state file (the CLI's `--state`).
    #[must_use]
    pub fn with_state_file(mut self, path: PathBuf) -> Self {
        self.state_file = path;
        self
    }

    /// Config problems found while loading (each names `file:line` or the YAML key).
    pub fn load_errors(&self) -> &[LogError] {
        &self.load_errors
    }

    /// The loaded policies.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// How often the daemon should call [`Self::run_due`].
    pub fn check_interval(&self) -> Duration {
        self.check_interval
    }

    /// The config's lock wait (what the CLI uses).
    pub fn lock_wait(&self) -> Duration {
        self.lock_wait
    }

    /// The config's retention rules (`logs.retention`).
    pub fn retention(&self) -> &[RetentionRule] {
        &self.retention
    }

    /// The configured roots (`logs.roots`).
    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    /// The state file in use.
    pub fn state_file(&self) -> &Path {
        &self.state_file
    }

    /// The daemon's periodic call: rotates what is due, without waiting for a lock held
    /// by someone else (that is reported as an error and the next tick tries again).
    /// The summary's `errors` start with [`Self::load_errors`].
    pub fn run_due(&self, now: Timestamp) -> RotationSummary {
        match self.rotate(now, RunOptions::default()) {
            Ok(s) => s,
            Err(e) => RotationSummary {
                errors: vec![LogError {
                    place: self.state_file.display().to_string(),
                    message: e.to_string(),
                }],
                ..RotationSummary::default()
            },
        }
    }

    /// One rotation run: lock, read state, pass, write state.
    ///
    /// # Errors
    /// The lock is busy past `opts.lock_wait`, or the state file cannot be read or
    /// written. Problems with single logs are in the summary instead.
    pub fn rotate(&self, now: Timestamp, opts: RunOptions) -> Result<RotationSummary, EngineError> {
        self.rotate_with(now, opts, &no_fail)
    }

    /// [`Self::rotate`] with a failure hook (crash-safety tests).
    ///
    /// # Errors
    /// See [`Self::rotate`]; a failure from `fail` ends the pass like a kill would,
    /// without saving state.
    pub fn rotate_with(
        &self,
        now: Timestamp,
        opts: RunOptions,
        fail: FailHook<'_>,
    ) -> Result<RotationSummary, EngineError> {
        let _lock = if opts.dry_run {
            None
        } else {
            Some(lock::acquire(&self.state_file, opts.lock_wait)?)
        };
        // Under the lock: reuse the state of the last pass when the file is still the one
        // it was read from or written to. A dry run reads the file (and never caches the
        // entries it adds in memory).
        let cached = if opts.dry_run {
            None
        } else {
            self.cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        };
        let current = file_id(&self.state_file);
        let (mut state, mut warnings) = match cached {
            Some(c) if c.path == self.state_file && c.file == current => (c.state, c.warnings),
            _ => State::load(&self.state_file)?,
        };
        let mut out = RotationSummary {
            dry_run: opts.dry_run,
            errors: self.load_errors.clone(),
            ..RotationSummary::default()
        };
        for (line, msg) in &warnings {
            out.errors.push(LogError {
                place: format!("{}:{line}", self.state_file.display()),
                message: format!("unreadable state entry ({msg}); the file is treated as new"),
            });
        }
        let pass = Pass {
            now: now.to_zoned(self.tz.clone()),
            roots: &self.roots,
            force: opts.force,
            dry_run: opts.dry_run,
            threads: self.threads,
            follow_symlinks: self.follow_symlinks,
            fail,
        };
        let changed = run_pass(&self.policies, &pass, &mut state, &mut out);
        if fail("save").is_err() {
            // As a kill would: nothing saved, nothing cached.
            return Ok(out);
        }
        if !opts.dry_run {
            if changed {
                state.save(&self.state_file)?;
                // The saved file holds only readable entries.
                warnings.clear();
            }
            let file = file_id(&self.state_file);
            *self.cache.lock().unwrap_or_else(PoisonError::into_inner) = Some(StateCache {
                path: self.state_file.clone(),
                file,
                state,
                warnings,
            });
        }
        Ok(out)
    }

    /// The config's retention rules, applied (the daemon's call; the CLI's `sweep` builds
    /// its own rule).
    pub fn sweep(&self, now: SystemTime) -> SweepSummary {
        sweep::sweep(&self.retention, &self.roots, now, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(dir: &Path, conf_text: &str) -> LogEngine {
        let conf = dir.join("lr.conf");
        std::fs::write(&conf, conf_text).unwrap();
        let cfg = LogsConfig {
            roots: vec![dir.to_path_buf()],
            state_file: dir.join("status"),
            ..LogsConfig::default()
        };
        LogEngine::new(&cfg, Some(&conf)).with_time_zone(TimeZone::UTC)
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn numbered_rotation_with_delaycompress_keeps_rotate_archives() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = engine(
            d,
            &format!(
                "{}/app.log {{\n  daily\n  rotate 2\n  compress\n  delaycompress\n  create 0600\n}}\n",
                d.display()
            ),
        );
        let mut day = 1;
        std::fs::write(d.join("app.log"), "gen0\n").unwrap();
        // First sight: recorded, not rotated.
        let s = e
            .rotate(ts("2026-01-01T10:00:00Z"), RunOptions::default())
            .unwrap();
        assert_eq!((s.rotated, s.errors.len()), (0, 0));
        for g in 1..=4 {
            day += 1;
            let s = e
                .rotate(
                    ts(&format!("2026-01-{day:02}T10:00:00Z")),
                    RunOptions::default(),
                )
                .unwrap();
            assert_eq!(s.rotated, 1, "{s:?}");
            std::fs::write(d.join("app.log"), format!("gen{g}\n")).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "app.log",
                "app.log.1",
                "app.log.2.gz",
                "lr.conf",
                "status",
                "status.lock"
            ]
        );
        assert_eq!(
            std::fs::read_to_string(d.join("app.log.1")).unwrap(),
            "gen3\n"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(d.join("app.log"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let state = std::fs::read_to_string(d.join("status")).unwrap();
        assert_eq!(
            state,
            format!(
                "logrotate state -- version 2\n\"{}/app.log\" 2026-1-5-10:0:0\n",
                d.display()
            )
        );
    }

    #[test]
    fn second_dateext_rotation_on_one_day_gets_a_counter_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = engine(
            d,
            &format!(
                "{}/a.log {{\n  size 1\n  rotate 5\n  dateext\n  compress\n}}\n",
                d.display()
            ),
        );
        for (i, t) in [
            "2026-03-04T01:00:00Z",
            "2026-03-04T02:00:00Z",
            "2026-03-04T03:00:00Z",
        ]
        .iter()
        .enumerate()
        {
            std::fs::write(d.join("a.log"), format!("line {i}\n")).unwrap();
            let s = e.rotate(ts(t), RunOptions::default()).unwrap();
            assert_eq!(
                (s.rotated, s.compressed, s.errors.len()),
                (1, 1, 0),
                "{s:?}"
            );
        }
        for n in [
            "a.log-20260304.gz",
            "a.log-20260304.1.gz",
            "a.log-20260304.2.gz",
        ] {
            assert!(d.join(n).exists(), "{n}");
        }
    }

    #[test]
    fn a_state_file_saved_by_another_run_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let conf = format!("{}/a.log {{\n  daily\n  rotate 3\n}}\n", d.display());
        let daemon = engine(d, &conf);
        let cli = engine(d, &conf); // another process: its own cache
        std::fs::write(d.join("a.log"), "1\n").unwrap();
        assert_eq!(
            daemon
                .rotate(ts("2026-01-01T10:00:00Z"), RunOptions::default())
                .unwrap()
                .rotated,
            0
        );
        assert_eq!(
            cli.rotate(ts("2026-01-02T10:00:00Z"), RunOptions::default())
                .unwrap()
                .rotated,
            1
        );
        std::fs::write(d.join("a.log"), "2\n").unwrap();
        // The daemon's cached state says "last rotated Jan 1"; the file says Jan 2.
        let s = daemon
            .rotate(ts("2026-01-02T11:00:00Z"), RunOptions::default())
            .unwrap();
        assert_eq!((s.rotated, s.errors.len()), (0, 0), "{s:?}");
        assert_eq!(
            daemon
                .rotate(ts("2026-01-03T11:00:00Z"), RunOptions::default())
                .unwrap()
                .rotated,
            1
        );
        assert_eq!(std::fs::read_to_string(d.join("a.log.2")).unwrap(), "1\n");
        assert_eq!(std::fs::read_to_string(d.join("a.log.1")).unwrap(), "2\n");
    }

    #[test]
    fn an_unchanged_state_file_is_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let conf = format!("{}/a.log {{\n  daily\n  rotate 3\n}}\n", d.display());
        let e = engine(d, &conf);
        std::fs::write(d.join("a.log"), "1\n").unwrap();
        e.rotate(ts("2026-01-01T10:00:00Z"), RunOptions::default())
            .unwrap();
        assert_eq!(
            e.rotate(ts("2026-01-02T10:00:00Z"), RunOptions::default())
                .unwrap()
                .rotated,
            1
        );
        std::fs::write(d.join("a.log"), "2\n").unwrap();
        // Rewrite the date in place, same size, same inode, same mtime: the identity
        // (dev, ino, size, mtime) is unchanged, so the pass keeps the state it holds.
        let st = d.join("status");
        let meta = std::fs::metadata(&st).unwrap();
        let text = std::fs::read_to_string(&st).unwrap();
        let old = text.replace("2026-1-2-10:0:0", "2025-1-2-10:0:0");
        assert_eq!(old.len(), text.len());
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).open(&st).unwrap();
            f.write_all(old.as_bytes()).unwrap();
            f.set_modified(meta.modified().unwrap()).unwrap();
        }
        assert_eq!(
            e.rotate(ts("2026-01-02T12:00:00Z"), RunOptions::default())
                .unwrap()
                .rotated,
            0
        );
        // A run without that state reads the file and finds the (forged) old date.
        let fresh = engine(d, &conf);
        assert_eq!(
            fresh
                .rotate(ts("2026-01-02T12:00:00Z"), RunOptions::default())
                .unwrap()
                .rotated,
            1
        );
    }

    #[test]
    fn dry_run_touches_nothing_and_reports_what_would_happen() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = engine(
            d,
            &format!("{}/a.log {{\n  rotate 1\n  compress\n}}\n", d.display()),
        );
        std::fs::write(d.join("a.log"), "x").unwrap();
        let s = e
            .rotate(
                ts("2026-03-04T01:00:00Z"),
                RunOptions {
                    force: true,
                    dry_run: true,
                    ..RunOptions::default()
                },
            )
            .unwrap();
        assert_eq!((s.rotated, s.compressed, s.dry_run), (1, 1, true));
        assert!(
            s.render_table().contains("would rotate"),
            "{}",
            s.render_table()
        );
        assert_eq!(std::fs::read_to_string(d.join("a.log")).unwrap(), "x");
        assert!(!d.join("status").exists());
        assert!(!d.join("a.log.1").exists());
    }

    #[test]
    fn hostile_tree_touches_nothing_outside_the_root_and_continues() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.log"), "keep").unwrap();
        std::fs::write(outside.join("hard.log"), "keep too").unwrap();
        std::os::unix::fs::symlink(outside.join("secret.log"), root.join("link.log")).unwrap();
        std::fs::hard_link(outside.join("hard.log"), root.join("hard.log")).unwrap();
        std::fs::create_dir(root.join("dir.log")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("sub")).unwrap();
        std::fs::write(root.join("ok.log"), "rotate me").unwrap();
        let conf = dir.path().join("lr.conf");
        std::fs::write(
            &conf,
            format!(
                "{r}/*.log {r}/sub/*.log {r}/gone.log {{\n  rotate 1\n  missingok\n}}\n",
                r = root.display()
            ),
        )
        .unwrap();
        let cfg = LogsConfig {
            roots: vec![root.clone()],
            state_file: dir.path().join("status"),
            ..LogsConfig::default()
        };
        let e = LogEngine::new(&cfg, Some(&conf)).with_time_zone(TimeZone::UTC);
        let s = e
            .rotate(
                ts("2026-03-04T01:00:00Z"),
                RunOptions {
                    force: true,
                    ..RunOptions::default()
                },
            )
            .unwrap();
        assert_eq!(s.rotated, 1, "{s:#?}");
        assert_eq!(
            std::fs::read_to_string(root.join("ok.log.1")).unwrap(),
            "rotate me"
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("secret.log")).unwrap(),
            "keep"
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("hard.log")).unwrap(),
            "keep too"
        );
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 2);
        let skipped: Vec<&str> = s.skipped.iter().map(|n| n.message.as_str()).collect();
        assert!(
            skipped.iter().any(|m| m.contains("is a symlink")),
            "{skipped:?}"
        );
        assert!(
            skipped.iter().any(|m| m.contains("hard links")),
            "{skipped:?}"
        );
        let errors: Vec<String> = s
            .errors
            .iter()
            .map(|n| format!("{}: {}", n.place, n.message))
            .collect();
        assert!(
            errors
                .iter()
                .any(|m| m.contains("dir.log: is not a regular file")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|m| m.contains("sub/*.log: a directory on its way is a symlink")),
            "{errors:?}"
        );
    }
}
