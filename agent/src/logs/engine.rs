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

use caretaker_core::error::Chain;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::compress::{FailHook, no_fail};
use super::conf;
use super::handle::Roots;
use super::lock::{self, LockError};
use super::owners::Owners;
use super::policy::{Permissions, Policy};
use super::rotate::{Pass, run_pass};
use super::state::{State, StateError, is_writable_state};
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
    load_warnings: Vec<LogError>,
    roots: Roots,
    state_file: PathBuf,
    threads: usize,
    follow_symlinks: bool,
    mail_command: Option<PathBuf>,
    retention: Vec<RetentionRule>,
    check_interval: Duration,
    lock_wait: Duration,
    tz: TimeZone,
    /// Logs other rotators own (left alone, reported).
    owners: Owners,
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

/// The system's time zone, as [`TimeZone::system`] finds it but without its search of
/// the zone's name in the zoneinfo database (a walk of every directory of
/// /usr/share/zoneinfo, the largest start-up cost of `caretaker-agent rotate`): with `TZ`
/// unset, the rules of /etc/localtime are read directly (named after its link's target).
/// Only the rules matter here (calendar decisions, date extensions).
fn system_time_zone() -> TimeZone {
    const LOCALTIME: &str = "/etc/localtime";
    if std::env::var_os("TZ").is_none()
        && let Ok(data) = std::fs::read(LOCALTIME)
    {
        let name = std::fs::read_link(LOCALTIME)
            .ok()
            .and_then(|t| {
                let t = t.to_str()?.to_string();
                t.split_once("zoneinfo/").map(|(_, n)| n.to_string())
            })
            .unwrap_or_else(|| "Local".to_string());
        if let Ok(tz) = TimeZone::tzif(&name, &data) {
            return tz;
        }
    }
    TimeZone::system()
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
        let mut load_warnings = Vec::new();
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
            load_warnings.extend(loaded.warnings.into_iter().map(|e| LogError {
                place: e.place,
                message: e.message,
            }));
        }
        // Said once: the blocks rotate as configured, only the mail is not sent.
        if let Some(p) = policies
            .iter()
            .find(|p| p.mail.is_some() && cfg.mail_command.is_none())
        {
            load_warnings.push(LogError {
                place: p.place.clone(),
                message: "mail is not sent: logs.mail_command is not set in the agent config (the logs of blocks with `mail` are rotated as configured)".to_string(),
            });
        }
        let own_conf = cfg.logrotate_conf.as_deref().or(extra_conf);
        let owners = Owners::load(
            &cfg.kubelet_log_dirs,
            cfg.node_logrotate_conf.as_deref(),
            own_conf,
        );
        Self {
            policies,
            load_errors,
            load_warnings,
            owners,
            roots: Roots::new(&cfg.roots),
            state_file: cfg.state_file.clone(),
            threads: cfg.compress_threads.clamp(1, 64),
            follow_symlinks: cfg.rotate_symlinks,
            mail_command: cfg.mail_command.clone(),
            retention: cfg.retention.clone(),
            check_interval: cfg.check_interval.get(),
            lock_wait: cfg.lock_wait.get(),
            tz: system_time_zone(),
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

    /// Config lines that were ignored, with their `file:line` (the rest loaded).
    pub(crate) fn load_warnings(&self) -> &[LogError] {
        &self.load_warnings
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
                    message: Chain(&e).to_string(),
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
            warnings: self.load_warnings.clone(),
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
            mail_command: self.mail_command.as_deref(),
            owners: &self.owners,
            fail,
        };
        let changed = run_pass(&self.policies, &pass, &mut state, &mut out);
        if changed {
            // Only when the file is written anyway: an unchanged pass costs no lstat.
            state.prune(pass.now.datetime());
        }
        if fail("save").is_err() {
            // As a kill would: nothing saved, nothing cached.
            return Ok(out);
        }
        if !opts.dry_run {
            if changed && is_writable_state(&self.state_file) {
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
    use std::io::Read;

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

    #[test]
    fn a_state_path_that_is_not_a_regular_file_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let null = d.join("null-link");
        std::os::unix::fs::symlink("/dev/null", &null).unwrap();
        let fifo = d.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        for state in [&null, &fifo] {
            std::fs::write(d.join("app.log"), "x\n").unwrap();
            let e = engine(
                d,
                &format!("{}/app.log {{\n  size 1\n  rotate 1\n}}\n", d.display()),
            )
            .with_state_file(state.clone());
            let s = e
                .rotate(ts("2026-01-01T10:00:00Z"), RunOptions::default())
                .unwrap();
            assert_eq!((s.rotated, s.errors.len()), (1, 0), "{s:?}");
            let m = std::fs::symlink_metadata(state).unwrap();
            assert!(
                !m.is_file(),
                "{} was replaced by a regular file",
                state.display()
            );
        }
        assert_eq!(std::fs::read_link(&null).unwrap(), Path::new("/dev/null"));
        // Nothing created beside it either (with /dev/null itself: nothing in /dev).
        assert!(!d.join("null-link.lock").exists() && !d.join("fifo.lock").exists());
    }

    #[test]
    fn implausible_state_times_are_reported_with_their_line_and_the_log_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = engine(
            d,
            &format!("{}/app.log {{\n  daily\n  rotate 1\n}}\n", d.display()),
        );
        std::fs::write(d.join("app.log"), "x\n").unwrap();
        std::fs::write(
            d.join("status"),
            format!(
                "logrotate state -- version 2\n\"{0}/app.log\" 1969-12-31-0:0:0\n\"{0}/b.log\" 9999-1-1-0:0:0\n",
                d.display()
            ),
        )
        .unwrap();
        let s = e
            .rotate(ts("2026-01-01T10:00:00Z"), RunOptions::default())
            .unwrap();
        let places: Vec<String> = s.errors.iter().map(|e| e.place.clone()).collect();
        let st = d.join("status").display().to_string();
        assert_eq!(places, vec![format!("{st}:2"), format!("{st}:3")]);
        assert!(
            s.errors[0].message.contains("before 1970"),
            "{:?}",
            s.errors
        );
        assert!(
            s.errors[1].message.contains("years in the future"),
            "{:?}",
            s.errors
        );
        // Treated as never seen: recorded now, not rotated by time on this run.
        assert_eq!(s.rotated, 0);
        let text = std::fs::read_to_string(d.join("status")).unwrap();
        assert!(text.contains("2026-1-1-10:0:0"), "{text}");
    }

    /// What a dry run lists is exactly what the real run then does.
    #[test]
    fn dry_run_lists_exactly_the_real_runs_actions() {
        /// (name, content, age in days) of the files before the run.
        type Files = &'static [(&'static str, &'static str, u64)];
        let cases: &[(&str, Files)] = &[
            (
                "size 1\n rotate 2\n compress\n delaycompress",
                &[
                    ("app.log", "now\n", 0),
                    ("app.log.1", "one\n", 1),
                    ("app.log.2.gz", "", 2),
                    ("app.log.3.gz", "", 3),
                    ("app.log.4", "four\n", 4),
                    ("app.log.5.gz", "", 5),
                ],
            ),
            (
                "size 1\n rotate 3\n compress\n maxage 3\n dateext",
                &[
                    ("app.log", "now\n", 0),
                    ("app.log-20251220", "a\n", 12),
                    ("app.log-20251225.gz", "", 7),
                    ("app.log-20251229", "c\n", 3),
                    ("app.log-20251230.gz", "", 2),
                    ("app.log-20251231.gz", "", 1),
                ],
            ),
            (
                "size 1\n rotate 1\n copytruncate\n compress\n maxage 2",
                &[
                    ("app.log", "now\n", 0),
                    ("app.log.1", "left over\n", 5),
                    ("app.log.2.gz", "", 9),
                ],
            ),
            (
                "size 1\n rotate 3\n compress",
                &[
                    ("app.log", "now\n", 0),
                    ("app.log.1", "plain\n", 1),
                    ("app.log.1.gz", "", 1),
                ],
            ),
            (
                "size 1\n rotate 0\n create 0600",
                &[("app.log", "now\n", 0), ("app.log.1", "x\n", 1)],
            ),
        ];
        let now = ts("2026-01-01T10:00:00Z");
        for (body, files) in cases {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            for (name, content, age_days) in *files {
                let p = d.join(name);
                if name.ends_with(".gz") {
                    let mut enc = flate2::write::GzEncoder::new(
                        std::fs::File::create(&p).unwrap(),
                        flate2::Compression::fast(),
                    );
                    std::io::Write::write_all(&mut enc, name.as_bytes()).unwrap();
                    enc.finish().unwrap();
                } else {
                    std::fs::write(&p, content).unwrap();
                }
                let t = SystemTime::from(now) - Duration::from_secs(age_days * 86_400);
                std::fs::File::options()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_modified(t)
                    .unwrap();
            }
            let e = engine(d, &format!("{}/app.log {{\n {body}\n}}\n", d.display()));
            let key = |s: &RotationSummary| {
                let mut v: Vec<String> = s
                    .actions
                    .iter()
                    .map(|a| format!("{:?} {} {:?}", a.kind, a.path.display(), a.to))
                    .collect();
                v.sort();
                v
            };
            let dry = e
                .rotate(
                    now,
                    RunOptions {
                        dry_run: true,
                        ..RunOptions::default()
                    },
                )
                .unwrap();
            let real = e.rotate(now, RunOptions::default()).unwrap();
            assert_eq!(real.errors, vec![], "{body}");
            assert_eq!(key(&dry), key(&real), "{body}");
            assert_eq!(
                (dry.rotated, dry.compressed, dry.deleted),
                (real.rotated, real.compressed, real.deleted),
                "{body}"
            );
        }
    }

    #[test]
    fn a_leftover_uncompressed_archive_is_compressed_when_the_log_is_not_due() {
        for (delay, plain_after) in [(false, vec![]), (true, vec!["app.log.1"])] {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            let e = engine(
                d,
                &format!(
                    "{}/app.log {{\n  daily\n  rotate 5\n  compress\n{}}}\n",
                    d.display(),
                    if delay { "  delaycompress\n" } else { "" }
                ),
            );
            std::fs::write(d.join("app.log"), "now\n").unwrap();
            std::fs::write(d.join("app.log.1"), "one\n").unwrap();
            // Left by a run that died during compression.
            std::fs::write(d.join("app.log.2"), "two\n").unwrap();
            // Rotated today already: not due.
            std::fs::write(
                d.join("status"),
                format!(
                    "logrotate state -- version 2\n\"{}/app.log\" 2026-1-1-0:0:0\n",
                    d.display()
                ),
            )
            .unwrap();
            let s = e
                .rotate(ts("2026-01-01T10:00:00Z"), RunOptions::default())
                .unwrap();
            assert_eq!(s.errors, vec![]);
            assert_eq!(s.rotated, 0);
            let mut plain: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.starts_with("app.log.") && !n.ends_with(".gz"))
                .collect();
            plain.sort();
            assert_eq!(plain, plain_after, "delaycompress {delay}");
            let mut gz = Vec::new();
            flate2::read::GzDecoder::new(std::fs::File::open(d.join("app.log.2.gz")).unwrap())
                .read_to_end(&mut gz)
                .unwrap();
            assert_eq!(gz, b"two\n");
            assert_eq!(s.compressed, if delay { 1 } else { 2 });
        }
    }

    fn gz(path: &Path, content: &[u8]) {
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(path).unwrap(),
            flate2::Compression::fast(),
        );
        std::io::Write::write_all(&mut enc, content).unwrap();
        enc.finish().unwrap();
    }

    fn gunzip(path: &Path) -> Vec<u8> {
        let mut v = Vec::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
            .read_to_end(&mut v)
            .unwrap();
        v
    }

    #[test]
    fn two_archives_for_one_name_are_both_kept_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = engine(
            d,
            &format!(
                "{}/app.log {{\n  size 1\n  rotate 3\n  compress\n}}\n",
                d.display()
            ),
        );
        std::fs::write(d.join("app.log"), "now\n").unwrap();
        std::fs::write(d.join("app.log.1"), "plain\n").unwrap();
        gz(&d.join("app.log.1.gz"), b"other\n");
        let s = e
            .rotate(ts("2026-01-01T10:00:00Z"), RunOptions::default())
            .unwrap();
        assert_eq!(s.errors, vec![]);
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        let w = &s.warnings[0].message;
        assert!(
            w.contains(&d.join("app.log.1").display().to_string())
                && w.contains(&d.join("app.log.1.gz").display().to_string()),
            "{w}"
        );
        // Nothing lost: the new archive, and both old ones shifted together.
        assert_eq!(gunzip(&d.join("app.log.1.gz")), b"now\n");
        assert_eq!(std::fs::read(d.join("app.log.2")).unwrap(), b"plain\n");
        assert_eq!(gunzip(&d.join("app.log.2.gz")), b"other\n");

        // The same content twice (a run died after the rename, before the unlink): one stays.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = engine(
            d,
            &format!(
                "{}/app.log {{\n  size 1\n  rotate 3\n  compress\n}}\n",
                d.display()
            ),
        );
        std::fs::write(d.join("app.log"), "now\n").unwrap();
        std::fs::write(d.join("app.log.1"), "same\n").unwrap();
        gz(&d.join("app.log.1.gz"), b"same\n");
        let s = e
            .rotate(ts("2026-01-01T10:00:00Z"), RunOptions::default())
            .unwrap();
        assert_eq!((s.errors.len(), s.warnings.len()), (0, 0), "{s:?}");
        assert!(!d.join("app.log.2").exists());
        assert_eq!(gunzip(&d.join("app.log.2.gz")), b"same\n");
    }

    #[test]
    fn mail_goes_through_the_configured_command_and_is_only_announced_without_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let logs = d.join("logs");
        std::fs::create_dir(&logs).unwrap();
        // A mail command that records its arguments and the message.
        let mailer = d.join("mailer");
        std::fs::write(
            &mailer,
            format!(
                "#!/bin/sh\necho \"$@\" >> {0}/mails\ncat >> {0}/mails\n",
                d.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&mailer, std::fs::Permissions::from_mode(0o755)).unwrap();
        let conf = d.join("lr.conf");
        std::fs::write(
            &conf,
            format!(
                "{0}/first.log {{\n size 1\n rotate 1\n mail a@example.org\n mailfirst\n}}\n{0}/last.log {{\n size 1\n rotate 1\n compress\n mail b@example.org\n}}\n",
                logs.display()
            ),
        )
        .unwrap();
        let mut cfg = LogsConfig {
            roots: vec![logs.clone()],
            state_file: d.join("status"),
            ..LogsConfig::default()
        };
        // Without a command: rotation as usual, one warning.
        let e = LogEngine::new(&cfg, Some(&conf)).with_time_zone(TimeZone::UTC);
        assert_eq!(e.load_warnings().len(), 1);
        assert!(e.load_warnings()[0].message.starts_with("mail is not sent"));
        cfg.mail_command = Some(mailer);
        let e = LogEngine::new(&cfg, Some(&conf)).with_time_zone(TimeZone::UTC);
        assert_eq!(e.load_warnings(), &[]);
        for (day, text) in [(1, "one\n"), (2, "two\n")] {
            std::fs::write(logs.join("first.log"), text).unwrap();
            std::fs::write(logs.join("last.log"), text).unwrap();
            let s = e
                .rotate(
                    ts(&format!("2026-01-0{day}T10:00:00Z")),
                    RunOptions::default(),
                )
                .unwrap();
            assert_eq!((s.rotated, s.errors.len()), (2, 0), "{s:?}");
        }
        let l = logs.display();
        // mailfirst: each new archive; maillast: the archive expiring (decompressed).
        assert_eq!(
            std::fs::read_to_string(d.join("mails")).unwrap(),
            format!(
                "-s {l}/first.log.1 a@example.org\none\n-s {l}/first.log.1 a@example.org\ntwo\n-s {l}/last.log.2.gz b@example.org\none\n"
            )
        );
    }

    #[test]
    fn an_archive_past_the_count_is_deleted_not_renamed_over() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = engine(
            d,
            &format!("{}/app.log {{\n  size 1\n  rotate 2\n}}\n", d.display()),
        );
        std::fs::write(d.join("app.log"), "now\n").unwrap();
        std::fs::write(d.join("app.log.1"), "one\n").unwrap();
        std::fs::write(d.join("app.log.2"), "two\n").unwrap();
        // Left by an earlier `rotate 3`.
        std::fs::write(d.join("app.log.3"), "three\n").unwrap();
        let s = e
            .rotate(ts("2026-01-01T10:00:00Z"), RunOptions::default())
            .unwrap();
        assert_eq!(s.errors, vec![]);
        // Both expired archives are accounted for: the old .3, and .2 shifted past the count.
        assert_eq!((s.deleted, s.deleted_bytes), (2, 10));
        assert!(!d.join("app.log.3").exists());
        assert_eq!(std::fs::read(d.join("app.log.2")).unwrap(), b"one\n");
        assert_eq!(std::fs::read(d.join("app.log.1")).unwrap(), b"now\n");
    }

    /// The archive name is picked from the directory index; a file that appears at that
    /// name before the rename (a pod writing under /var/log, another rotator) must never
    /// be replaced: the rename of the log, and of copytruncate's copy, is no-replace.
    #[test]
    fn an_archive_made_after_its_name_was_picked_is_never_replaced() {
        for mode in ["create", "copytruncate"] {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            let e = engine(
                d,
                &format!(
                    "{}/app.log {{\n  size 1\n  rotate 5\n  dateext\n  {mode}\n}}\n",
                    d.display()
                ),
            );
            std::fs::write(d.join("app.log"), "the log\n").unwrap();
            let archive = d.join("app.log-20260101");
            // Planted right before the rename: the second "step" (after the name is
            // picked), or copytruncate's "rename" of its copy.
            let steps = std::sync::atomic::AtomicU32::new(0);
            let plant = |what: &str| -> std::io::Result<()> {
                let planting = match what {
                    "step" => {
                        steps.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 1
                            && mode == "create"
                    }
                    "rename" => mode == "copytruncate",
                    _ => false,
                };
                if planting {
                    std::fs::write(&archive, "someone else's archive\n").unwrap();
                }
                Ok(())
            };
            let s = e
                .rotate_with(
                    ts("2026-01-01T10:00:00Z"),
                    RunOptions {
                        force: true,
                        ..RunOptions::default()
                    },
                    &plant,
                )
                .unwrap();
            assert_eq!(s.rotated, 0, "{mode}: {s:?}");
            assert_eq!(s.errors.len(), 1, "{mode}: {s:?}");
            assert!(
                s.errors[0].place.ends_with("app.log"),
                "{mode}: {:?}",
                s.errors
            );
            assert_eq!(
                std::fs::read_to_string(&archive).unwrap(),
                "someone else's archive\n",
                "{mode}"
            );
            assert_eq!(
                std::fs::read_to_string(d.join("app.log")).unwrap(),
                "the log\n",
                "{mode}"
            );
            // No temporary of the copy is left behind.
            let mut names: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            assert_eq!(
                names,
                [
                    "app.log",
                    "app.log-20260101",
                    "lr.conf",
                    "status",
                    "status.lock"
                ],
                "{mode}"
            );
        }
    }

    /// The shift (`.1` → `.2` …) never renames over a file that is not one of the log's
    /// archives: a symlink at an archive's name (not followed, not replaced), or a file
    /// made at a name after the names were read. The log's rotation stops with an error
    /// naming both, as logrotate's does when a rename of the shift fails; the dry run says
    /// the same.
    #[test]
    fn the_shift_never_replaces_a_file_outside_the_chain() {
        // A symlink at `.2`: `.1` must not go over it.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = engine(
            d,
            &format!("{}/app.log {{\n  size 1\n  rotate 3\n}}\n", d.display()),
        );
        std::fs::write(d.join("app.log"), "now\n").unwrap();
        std::fs::write(d.join("app.log.1"), "one\n").unwrap();
        std::fs::write(d.join("elsewhere"), "not an archive\n").unwrap();
        std::os::unix::fs::symlink("elsewhere", d.join("app.log.2")).unwrap();
        let now = ts("2026-01-01T10:00:00Z");
        for dry_run in [true, false] {
            let s = e
                .rotate(
                    now,
                    RunOptions {
                        dry_run,
                        ..RunOptions::default()
                    },
                )
                .unwrap();
            assert_eq!((s.rotated, s.errors.len()), (0, 1), "dry {dry_run}: {s:?}");
            assert!(s.errors[0].place.ends_with("app.log"), "{:?}", s.errors);
            assert!(
                s.errors[0].message.contains("app.log.1")
                    && s.errors[0].message.contains("app.log.2"),
                "{:?}",
                s.errors
            );
        }
        assert!(
            std::fs::symlink_metadata(d.join("app.log.2"))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(std::fs::read(d.join("app.log.1")).unwrap(), b"one\n");
        assert_eq!(std::fs::read(d.join("app.log")).unwrap(), b"now\n");
        assert_eq!(
            std::fs::read(d.join("elsewhere")).unwrap(),
            b"not an archive\n"
        );

        // A file made at `.3` after the names were read (right before the first rename
        // of the shift, `.2` → `.3`).
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = engine(
            d,
            &format!("{}/app.log {{\n  size 1\n  rotate 5\n}}\n", d.display()),
        );
        std::fs::write(d.join("app.log"), "now\n").unwrap();
        std::fs::write(d.join("app.log.1"), "one\n").unwrap();
        std::fs::write(d.join("app.log.2"), "two\n").unwrap();
        let steps = std::sync::atomic::AtomicU32::new(0);
        let plant = |what: &str| -> std::io::Result<()> {
            if what == "step" && steps.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 1 {
                std::fs::write(d.join("app.log.3"), "someone else's\n").unwrap();
            }
            Ok(())
        };
        let s = e.rotate_with(now, RunOptions::default(), &plant).unwrap();
        assert_eq!((s.rotated, s.errors.len()), (0, 1), "{s:?}");
        assert_eq!(
            std::fs::read(d.join("app.log.3")).unwrap(),
            b"someone else's\n"
        );
        assert_eq!(std::fs::read(d.join("app.log.2")).unwrap(), b"two\n");
        assert_eq!(std::fs::read(d.join("app.log.1")).unwrap(), b"one\n");
        assert_eq!(std::fs::read(d.join("app.log")).unwrap(), b"now\n");
    }

    /// Out of the box the agent leaves the kubelet's container logs and the logs the
    /// node's logrotate names alone, and lists each with its owner; the rest rotates.
    /// When the agent's own logrotate_conf is the node's file, it has taken over.
    #[test]
    fn logs_another_rotator_owns_are_left_alone_and_listed_with_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let logs = d.join("log");
        let pods = logs.join("pods/ns_pod_uid/app");
        std::fs::create_dir_all(&pods).unwrap();
        std::fs::create_dir_all(d.join("etc/logrotate.d")).unwrap();
        std::fs::write(pods.join("0.log"), "container\n").unwrap();
        for n in ["syslog", "mine.log"] {
            std::fs::write(logs.join(n), "line\n").unwrap();
        }
        let node_conf = d.join("etc/logrotate.conf");
        // Its `include /etc/logrotate.d` is the host's path; the directory beside it is read.
        std::fs::write(&node_conf, "weekly\n").unwrap();
        std::fs::write(
            d.join("etc/logrotate.d/rsyslog"),
            format!(
                "{}/syslog\n{{\n rotate 4\n postrotate\n  kill -HUP 1\n endscript\n}}\n",
                logs.display()
            ),
        )
        .unwrap();
        let ours = d.join("ours.conf");
        std::fs::write(
            &ours,
            format!(
                "{0}/*.log {0}/syslog {0}/pods/*/*/*.log {{\n size 1\n rotate 1\n}}\n",
                logs.display()
            ),
        )
        .unwrap();
        let cfg = LogsConfig {
            roots: vec![logs.clone()],
            state_file: d.join("status"),
            kubelet_log_dirs: vec![logs.join("pods")],
            node_logrotate_conf: Some(node_conf.clone()),
            ..LogsConfig::default()
        };
        let e = LogEngine::new(&cfg, Some(&ours)).with_time_zone(TimeZone::UTC);
        let s = e
            .rotate(ts("2026-01-01T10:00:00Z"), RunOptions::default())
            .unwrap();
        assert_eq!(s.errors, vec![]);
        assert_eq!(s.rotated, 1, "{s:?}");
        assert!(logs.join("mine.log.1").exists());
        let mut owned: Vec<(String, String)> = s
            .owned
            .iter()
            .map(|o| (o.path.display().to_string(), o.owner.clone()))
            .collect();
        owned.sort();
        assert_eq!(
            owned,
            vec![
                (
                    pods.join("0.log").display().to_string(),
                    "kubelet".to_string()
                ),
                (
                    logs.join("syslog").display().to_string(),
                    format!(
                        "logrotate ({}:1)",
                        d.join("etc/logrotate.d/rsyslog").display()
                    )
                ),
            ]
        );
        assert_eq!(std::fs::read(logs.join("syslog")).unwrap(), b"line\n");
        assert_eq!(std::fs::read(pods.join("0.log")).unwrap(), b"container\n");
        assert!(
            s.render_table().contains(&format!(
                "left to kubelet: {}",
                pods.join("0.log").display()
            )),
            "{}",
            s.render_table()
        );

        // The agent runs the node's own logrotate.conf: nothing is another's.
        let cfg = LogsConfig {
            kubelet_log_dirs: vec![],
            logrotate_conf: Some(node_conf.clone()),
            state_file: d.join("status2"),
            ..cfg
        };
        let e = LogEngine::new(&cfg, Some(&ours)).with_time_zone(TimeZone::UTC);
        let s = e
            .rotate(ts("2026-01-01T10:00:00Z"), RunOptions::default())
            .unwrap();
        assert_eq!(s.owned, vec![]);
        assert_eq!(s.rotated, 2, "{s:?}");
        assert!(logs.join("syslog.1").exists());
    }

    /// The engine reads /etc/localtime itself (no walk of the zoneinfo database); the
    /// rules are the ones jiff's own look-up finds.
    #[test]
    fn the_system_time_zone_has_the_rules_jiff_finds() {
        let ours = system_time_zone();
        let jiffs = TimeZone::system();
        for t in [
            "2026-01-15T12:00:00Z",
            "2026-07-15T12:00:00Z",
            "1999-03-28T01:30:00Z",
            "2030-10-27T00:30:00Z",
        ] {
            let t: Timestamp = t.parse().unwrap();
            assert_eq!(ours.to_offset(t), jiffs.to_offset(t), "{t}");
        }
    }
}
