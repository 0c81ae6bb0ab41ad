//! Hostile trees: what a pod that can write under /var/log can try against the agent
//! (which runs as root). Nothing outside the configured roots may be deleted, renamed,
//! created or modified, whatever is swapped, linked or named under them.
//!
//! `CARETAKER_RACE_SECONDS` (default 10, at most 30) bounds the symlink-swap race.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use caretaker_agent::cleanup::logs::{LogFile, LogReclaimer, RotatedLogs};
use caretaker_agent::config::LogsConfig;
use caretaker_agent::logs::engine::{LogEngine, RunOptions};
use caretaker_agent::logs::handle::{Dir, Roots};
use caretaker_agent::logs::state::State;
use caretaker_agent::logs::sweep::{self, RetentionRule};
use jiff::tz::TimeZone;
use sha2::{Digest, Sha256};

/// Every file below `dir` (links not followed): name → (kind, content hash, mode, mtime).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if m.is_symlink() {
                format!("link {:?}", std::fs::read_link(&p).unwrap())
            } else {
                format!(
                    "file {:x} {:o} {}",
                    Sha256::digest(std::fs::read(&p).unwrap()),
                    m.mode(),
                    m.mtime()
                )
            };
            out.insert(p, what);
        }
    }
    out
}

fn set_old(p: &Path) {
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        .unwrap();
}

fn engine(root: &Path, state: &Path, conf_text: &str) -> LogEngine {
    let conf = state.with_extension("conf");
    std::fs::write(&conf, conf_text).unwrap();
    let cfg = LogsConfig {
        roots: vec![root.to_path_buf()],
        state_file: state.to_path_buf(),
        ..LogsConfig::default()
    };
    LogEngine::new(&cfg, Some(&conf)).with_time_zone(TimeZone::UTC)
}

fn forced() -> RunOptions {
    RunOptions {
        force: true,
        ..RunOptions::default()
    }
}

fn race_seconds() -> u64 {
    std::env::var("CARETAKER_RACE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10u64)
        .clamp(1, 30)
}

/// The reproduction: a directory under the root and a symlink to a decoy
/// directory outside are swapped with renameat2(RENAME_EXCHANGE) in a loop while
/// `sweep --apply` and `rotate` run again and again. Decoys have the very names the
/// real files have. Before directory handles, decoys were deleted within 23 runs.
#[test]
fn symlink_swap_race_touches_nothing_outside_the_root() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let decoy = t.path().join("decoy");
    let work = t.path().join("work");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::create_dir_all(&decoy).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let names = ["app.log", "app.log.1", "app.log.2.gz", "old.log", "x.log.3"];
    for n in names {
        std::fs::write(decoy.join(n), format!("decoy {n}\n")).unwrap();
        set_old(&decoy.join(n));
    }
    std::os::unix::fs::symlink(&decoy, root.join("swap")).unwrap();
    let before = snapshot(&decoy);
    // The real directory, reached by a handle wherever the swap puts it.
    let real = Dir::open_trusted(&root.join("d")).unwrap();
    let refill = |real: &Dir| {
        for n in names {
            if let Ok(mut f) = real.create_new(OsStr::new(n), 0o644) {
                use std::io::Write;
                f.write_all(b"real line\n").unwrap();
                f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
                    .unwrap();
            }
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps, root) = (Arc::clone(&stop), Arc::clone(&swaps), root.clone());
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&root).unwrap();
            while !stop.load(Ordering::Relaxed) {
                nix::fcntl::renameat2(
                    &fd,
                    "d",
                    &fd,
                    "swap",
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                )
                .unwrap();
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let conf = format!(
        "{r}/d/*.log {r}/swap/*.log {{\n  rotate 2\n  compress\n  create\n  missingok\n}}\n",
        r = root.display()
    );
    let e = engine(&root, &work.join("status"), &conf);
    let roots = Roots::new(std::slice::from_ref(&root));
    let rules = [
        RetentionRule::new(format!("{}/d/*", root.display()), Duration::from_secs(60)),
        RetentionRule::new(
            format!("{}/swap/*", root.display()),
            Duration::from_secs(60),
        ),
        RetentionRule::new(
            format!("{}/*/*.log", root.display()),
            Duration::from_secs(60),
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(race_seconds());
    let (mut runs, mut swept, mut rotated) = (0u64, 0usize, 0u64);
    while Instant::now() < deadline {
        refill(&real);
        let s = sweep::sweep(&rules, &roots, SystemTime::now(), true);
        swept += s.files.len();
        refill(&real);
        let r = e
            .rotate(jiff::Timestamp::now(), forced())
            .expect("rotation runs");
        rotated += r.rotated;
        runs += 1;
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    assert_eq!(
        snapshot(&decoy),
        before,
        "the decoys outside the root changed"
    );
    // The race really ran and the real tree was really worked on.
    assert!(swaps.load(Ordering::Relaxed) > runs, "{runs} runs");
    assert!(
        runs >= 3 && swept > 0 && rotated > 0,
        "{runs} {swept} {rotated}"
    );
}

/// `**` over a symlink loop ends (links to directories are not followed), and one log
/// reachable by several paths (a hard link, two patterns, a loop) is rotated once.
#[test]
fn a_symlink_loop_ends_and_a_file_reached_by_several_paths_rotates_once() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::write(root.join("a/b/x.log"), "only once\n").unwrap();
    std::fs::hard_link(root.join("a/b/x.log"), root.join("a/y.log")).unwrap();
    std::os::unix::fs::symlink(root.join("a"), root.join("a/b/loop")).unwrap();
    std::os::unix::fs::symlink(".", root.join("a/self")).unwrap();
    let conf = format!(
        "{r}/**/*.log {r}/a/./b/x.log {r}/a/b/../b/x.log {{\n  rotate 5\n  allowhardlink\n}}\n",
        r = root.display()
    );
    let e = engine(&root, &t.path().join("status"), &conf);
    let s = e.rotate(jiff::Timestamp::now(), forced()).unwrap();
    assert_eq!(s.rotated, 1, "{s:#?}");
    let same: Vec<_> = s
        .skipped
        .iter()
        .filter(|n| n.message.contains("is the same file as"))
        .collect();
    assert_eq!(same.len(), 1, "{:#?}", s.skipped);
    let archives: Vec<_> = std::fs::read_dir(root.join("a/b"))
        .unwrap()
        .chain(std::fs::read_dir(root.join("a")).unwrap())
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".log."))
        .collect();
    assert_eq!(archives.len(), 1, "{archives:?}");
}

/// `createolddir` checks the roots before it creates (or chowns) anything, and a dry run
/// makes the same check and reports the same error.
#[test]
fn createolddir_outside_the_roots_creates_nothing_in_real_and_dry_runs() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let outside = t.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    std::fs::write(root.join("a.log"), "a\n").unwrap();
    std::fs::write(root.join("b.log"), "b\n").unwrap();
    let conf = format!(
        "{r}/a.log {{\n  rotate 1\n  olddir {o}/old\n  createolddir 0700 nobody nogroup\n}}\n\
         {r}/b.log {{\n  rotate 1\n  olddir link/old\n  createolddir\n}}\n",
        r = root.display(),
        o = outside.display()
    );
    let e = engine(&root, &t.path().join("status"), &conf);
    for dry_run in [true, false] {
        let s = e
            .rotate(
                jiff::Timestamp::now(),
                RunOptions {
                    dry_run,
                    ..forced()
                },
            )
            .unwrap();
        let errors: Vec<String> = s
            .errors
            .iter()
            .map(|n| format!("{}: {}", n.place, n.message))
            .collect();
        assert_eq!(s.rotated, 0, "dry run {dry_run}: {errors:?}");
        assert!(
            errors.iter().any(|m| m.contains("a.log")
                && m.contains(&format!(
                    "olddir {}/old is outside the configured roots",
                    outside.display()
                ))),
            "dry run {dry_run}: {errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|m| m.contains("b.log") && m.contains("symlink")),
            "dry run {dry_run}: {errors:?}"
        );
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert_eq!(std::fs::read_to_string(root.join("a.log")).unwrap(), "a\n");
    }
}

/// `compressext` and `extension` become part of archive names: `/` and `..` are refused
/// with the file and line.
#[test]
fn compressext_and_extension_with_a_slash_or_dotdot_are_refused_naming_the_line() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let conf = format!(
        "{r}/a.log {{\n  compress\n  compressext /../../x\n}}\n{r}/b.log {{\n  extension ../b\n}}\n{r}/c.log {{\n  compressext .gz\n}}\n",
        r = root.display()
    );
    let e = engine(&root, &t.path().join("status"), &conf);
    let errs: Vec<String> = e
        .load_errors()
        .iter()
        .map(|n| format!("{}: {}", n.place, n.message))
        .collect();
    let conf_path = t.path().join("status.conf");
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with(&format!("{}:3", conf_path.display()))
            && errs[0].contains("compressext"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with(&format!("{}:6", conf_path.display())) && errs[1].contains("extension"),
        "{errs:?}"
    );
}

/// The state file's temporary is created with O_EXCL | O_NOFOLLOW in the state
/// directory: a symlink planted at its name is removed, never written through.
#[test]
fn a_symlink_planted_at_the_state_temporary_is_not_followed() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let state_dir = t.path().join("state");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&state_dir).unwrap();
    let victim = t.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, state_dir.join(".status.caretaker-tmp")).unwrap();
    std::fs::write(root.join("a.log"), "x\n").unwrap();
    let e = engine(
        &root,
        &state_dir.join("status"),
        &format!("{}/a.log {{\n  daily\n}}\n", root.display()),
    );
    let s = e
        .rotate(jiff::Timestamp::now(), RunOptions::default())
        .unwrap();
    assert_eq!(s.errors, vec![]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let text = std::fs::read_to_string(state_dir.join("status")).unwrap();
    assert!(text.contains("a.log"), "{text}");
    assert!(!state_dir.join(".status.caretaker-tmp").exists());
}

/// A newline in a log's name is written to the state file as logrotate 3.21 writes it
/// (`\n`), so the file stays readable and the log keeps its schedule.
#[test]
fn a_newline_in_a_log_name_does_not_corrupt_the_state_file() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a\nb.log"), "x\n").unwrap();
    std::fs::write(root.join("c.log"), "y\n").unwrap();
    let state = t.path().join("status");
    let e = engine(
        &root,
        &state,
        &format!("{}/*.log {{\n  daily\n  rotate 1\n}}\n", root.display()),
    );
    e.rotate(
        "2026-01-01T10:00:00Z".parse().unwrap(),
        RunOptions::default(),
    )
    .unwrap();
    let text = std::fs::read_to_string(&state).unwrap();
    assert_eq!(text.lines().count(), 3, "{text:?}");
    assert!(
        text.contains(&format!(
            "\"{}/a\\nb.log\" 2026-1-1-10:0:0\n",
            root.display()
        )),
        "{text:?}"
    );
    let (st, warnings) = State::load(&state).unwrap();
    assert_eq!(warnings, vec![]);
    assert!(st.get(&root.join("a\nb.log")).is_some());
    // A fresh engine (reading the file) rotates it the next day like any log.
    let e = engine(
        &root,
        &state,
        &format!("{}/*.log {{\n  daily\n  rotate 1\n}}\n", root.display()),
    );
    let s = e
        .rotate(
            "2026-01-02T10:00:00Z".parse().unwrap(),
            RunOptions::default(),
        )
        .unwrap();
    assert_eq!((s.rotated, s.errors.len()), (2, 0), "{s:#?}");
    assert!(root.join("a\nb.log.1").exists());
}

/// `caretaker-agent sweep` obeys the roots: `--glob '/etc/*.conf'` is refused.
#[test]
fn sweep_cli_refuses_a_pattern_outside_the_roots() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("old.log"), "x").unwrap();
    set_old(&root.join("old.log"));
    let bin = env!("CARGO_BIN_EXE_caretaker-agent");
    let out = std::process::Command::new(bin)
        .args([
            "sweep",
            "--glob",
            "/etc/*.conf",
            "--max-age",
            "0s",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(v["files"].as_array().unwrap().len(), 0, "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("outside the configured roots (logs.roots: /var/log)"),
        "{v}"
    );
    let out = std::process::Command::new(bin)
        .args(["sweep", "--glob"])
        .arg(format!("{}/*.log", root.display()))
        .args(["--max-age", "1d", "--apply", "--output", "json", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["files"].as_array().unwrap().len(), 1, "{v}");
    assert!(!root.join("old.log").exists());
}

/// The emergency cleanup deletes and compresses through the engine's operations: a file
/// outside its roots is refused, and one a writer still has open is left alone.
#[test]
fn emergency_cleanup_uses_the_engine_root_check_and_write_lease() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let outside = t.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("x.log.1"), "outside\n").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    std::fs::write(root.join("busy.log.1"), "busy\n").unwrap();
    let r = RotatedLogs::new(vec![root.clone()], Duration::from_secs(1));
    let file = |p: PathBuf| LogFile {
        path: p,
        size_bytes: 8,
        modified: SystemTime::UNIX_EPOCH,
    };
    for p in [outside.join("x.log.1"), root.join("link/x.log.1")] {
        assert!(r.delete(&file(p.clone())).is_err(), "{p:?}");
        assert!(r.compress(&file(p.clone())).is_err(), "{p:?}");
    }
    assert_eq!(
        std::fs::read_to_string(outside.join("x.log.1")).unwrap(),
        "outside\n"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    let writer = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("busy.log.1"))
        .unwrap();
    let e = r.compress(&file(root.join("busy.log.1"))).unwrap_err();
    assert!(e.to_string().contains("open for writing"), "{e}");
    let e = r.delete(&file(root.join("busy.log.1"))).unwrap_err();
    assert!(e.to_string().contains("open for writing"), "{e}");
    assert!(root.join("busy.log.1").exists());
    drop(writer);
    assert!(r.compress(&file(root.join("busy.log.1"))).unwrap() < 100);
    assert!(root.join("busy.log.1.gz").exists());
    assert!(!root.join("busy.log.1").exists());
}
