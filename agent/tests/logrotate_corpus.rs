//! Corpus test: the logrotate snippets that Debian packages ship, read under Debian's own
//! `/etc/logrotate.conf`, rotated over simulated weeks by the real logrotate 3.21 and by
//! caretaker; the resulting trees must be the same.
//!
//! The packages are listed in `tests/corpus/packages.txt`. At test time each is fetched
//! with `apt-get download` into a cache (`$CARETAKER_TEST_TMP/logrotate-corpus`, else
//! the target's test tmp dir) and unpacked with `dpkg-deb -x`; nothing is installed.
//! Each package's snippets are rewritten into a scratch tree: absolute paths get the
//! scratch root in front, owners that do not exist on this machine become root, and
//! every script body is replaced by one line that appends the script's name to
//! `scripts.log` (so both sides run the same neutral scripts, and the number and order of
//! script runs is compared too). Every log a pattern names is created (a glob's `*` as
//! `sample`) with some content, and lines are appended before each run.
//!
//! Time moves as in `logrotate_diff.rs`: the state file's entries are moved into the
//! past between runs. Under `CI=true` a missing logrotate or a failed download fails the
//! test; elsewhere it is reported and the test does not run.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use caretaker_agent::config::LogsConfig;
use caretaker_agent::logs::engine::{LogEngine, RunOptions};
use caretaker_agent::logs::state::State;

const LOGROTATE: &str = "/usr/sbin/logrotate";
const DAY: i64 = 86_400;
/// Days the state moves back before each run after the first: daily, weekly, monthly
/// and yearly criteria all come due at least once.
const SHIFTS: &[i64] = &[1, 1, 1, 1, 7, 8, 31, 1, 32, 366];
/// Script directives whose bodies are replaced.
const SCRIPTS: &[&str] = &[
    "prerotate",
    "postrotate",
    "firstaction",
    "lastaction",
    "preremove",
];

/// Packages whose trees differ, with the reason (also listed in agent/LOGS.md). The test
/// fails when one of them no longer differs, so the list only gets shorter.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Stops the test: a failure under CI, a message elsewhere.
fn not_run(why: &str) {
    assert!(!ci(), "{why}");
    eprintln!("NOT RUN: {why}");
}

fn cache_dir() -> PathBuf {
    let base = std::env::var_os("CARETAKER_TEST_TMP")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    base.join("logrotate-corpus")
}

fn packages() -> Vec<String> {
    let list = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/packages.txt"),
    )
    .unwrap();
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Downloads (once, cached) and unpacks a package; the directory it was unpacked into.
fn fetch(cache: &Path, pkg: &str) -> Result<PathBuf, String> {
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs).map_err(|e| e.to_string())?;
    let find = || {
        std::fs::read_dir(&debs).ok().and_then(|rd| {
            rd.filter_map(Result::ok).map(|e| e.path()).find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
            })
        })
    };
    let deb = match find() {
        Some(d) => d,
        None => {
            let out = Command::new("apt-get")
                .args(["download", "-q", pkg])
                .current_dir(&debs)
                .output()
                .map_err(|e| format!("apt-get download {pkg}: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "apt-get download {pkg} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            find().ok_or_else(|| format!("apt-get download {pkg} left no .deb"))?
        }
    };
    let dir = cache.join("x").join(pkg);
    if !dir.join(".done").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&dir)
            .output()
            .map_err(|e| format!("dpkg-deb -x {}: {e}", deb.display()))?;
        if !out.status.success() {
            return Err(format!(
                "dpkg-deb -x {} failed: {}",
                deb.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        std::fs::write(dir.join(".done"), "").map_err(|e| e.to_string())?;
    }
    Ok(dir)
}

fn user_exists(u: &str) -> bool {
    nix::unistd::User::from_name(u).ok().flatten().is_some()
}

fn group_exists(g: &str) -> bool {
    nix::unistd::Group::from_name(g).ok().flatten().is_some()
}

/// Rewrites one snippet into the scratch root `s`; returns the text and the patterns.
fn rewrite(text: &str, s: &Path, scripts_log: &Path) -> (String, Vec<String>) {
    let root = s.display().to_string();
    let mut out = String::new();
    let mut patterns = Vec::new();
    let mut in_script = false;
    for line in text.lines() {
        let t = line.trim();
        if in_script {
            if t == "endscript" {
                out.push_str(line);
                out.push('\n');
                in_script = false;
            }
            continue;
        }
        let mut words = t.split_whitespace();
        let first = words.next().unwrap_or("");
        if SCRIPTS.contains(&first) {
            out.push_str(&format!(
                "{line}\n\techo {first} >> {}\n",
                scripts_log.display()
            ));
            in_script = true;
            continue;
        }
        if matches!(first, "su" | "create" | "createolddir") {
            let rest: Vec<&str> = words.collect();
            // create [MODE [OWNER [GROUP]]], su USER [GROUP]: the owner fields.
            let owner_at = usize::from(first != "su");
            let mapped: Vec<String> = rest
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    if i == owner_at && !user_exists(w) || i == owner_at + 1 && !group_exists(w) {
                        "root".to_string()
                    } else {
                        (*w).to_string()
                    }
                })
                .collect();
            out.push_str(&format!("\t{first} {}\n", mapped.join(" ")));
            continue;
        }
        if t.starts_with('/') || t.starts_with('"') {
            let mut l = String::new();
            let mut prev = ' ';
            for c in line.chars() {
                if c == '/' && (prev.is_whitespace() || prev == '"' || prev == '\'') {
                    l.push_str(&root);
                }
                l.push(c);
                prev = c;
            }
            for w in l.split_whitespace() {
                let w = w.trim_matches(|c| c == '"' || c == '\'' || c == '{');
                if w.starts_with('/') {
                    patterns.push(w.to_string());
                }
            }
            out.push_str(&l);
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, patterns)
}

/// The log files a pattern names (a glob's wildcards as `sample`).
fn log_for(pattern: &str) -> Option<PathBuf> {
    if pattern.contains('[') {
        return None;
    }
    Some(PathBuf::from(
        pattern.replace('*', "sample").replace('?', "x"),
    ))
}

/// One side of the comparison: runs over the scratch tree, `true` when it reported an error.
trait Rotator {
    fn run(&self, root: &Path, conf: &Path, state: &Path) -> bool;
}

struct Logrotate;
impl Rotator for Logrotate {
    fn run(&self, _root: &Path, conf: &Path, state: &Path) -> bool {
        let out = Command::new(LOGROTATE)
            .arg("-s")
            .arg(state)
            .arg(conf)
            .output()
            .expect("run logrotate");
        !out.status.success()
    }
}

struct Caretaker;
impl Rotator for Caretaker {
    fn run(&self, root: &Path, conf: &Path, state: &Path) -> bool {
        let cfg = LogsConfig {
            roots: vec![root.to_path_buf()],
            state_file: state.to_path_buf(),
            allow_scripts: true,
            ..LogsConfig::default()
        };
        let e = LogEngine::new(&cfg, Some(conf));
        let s = e
            .rotate(jiff::Timestamp::now(), RunOptions::default())
            .expect("lock and state");
        !s.errors.is_empty()
    }
}

fn shift_state(state: &Path, seconds: i64) {
    let Ok(text) = std::fs::read_to_string(state) else {
        return;
    };
    let (mut st, _) = State::parse(&text);
    let tz = jiff::tz::TimeZone::system();
    for v in st.entries.values_mut() {
        let z = v.to_zoned(tz.clone()).unwrap();
        *v = z
            .checked_add(jiff::SignedDuration::from_secs(seconds))
            .unwrap()
            .datetime();
    }
    std::fs::write(state, st.render()).unwrap();
}

/// relative name → (content after decompression, mode, uid, gid).
type Tree = BTreeMap<String, (Vec<u8>, u32, u32, u32)>;

fn tree(root: &Path) -> Tree {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel == "etc" {
                continue;
            }
            let mode = m.permissions().mode() & 0o7777;
            if m.is_dir() {
                out.insert(format!("{rel}/"), (Vec::new(), mode, m.uid(), m.gid()));
                stack.push(p);
                continue;
            }
            let raw = std::fs::read(&p).unwrap();
            let content = if rel.ends_with(".gz") && !raw.is_empty() {
                let mut v = Vec::new();
                flate2::read::MultiGzDecoder::new(&raw[..])
                    .read_to_end(&mut v)
                    .unwrap();
                v
            } else {
                raw
            };
            out.insert(rel, (content, mode, m.uid(), m.gid()));
        }
    }
    out
}

fn show(t: &Tree) -> String {
    t.iter()
        .map(|(k, (c, m, u, g))| {
            format!(
                "  {k} {m:o} {u}:{g} {:?}\n",
                String::from_utf8_lossy(&c[..c.len().min(48)])
            )
        })
        .collect()
}

/// Plays one package on one side: (tree, error per run).
fn play(
    pkg: &str,
    main_conf: &str,
    snippets: &[(String, String)],
    r: &dyn Rotator,
) -> (Tree, Vec<bool>) {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("root");
    let etc = s.join("etc/logrotate.d");
    std::fs::create_dir_all(&etc).unwrap();
    let scripts_log = s.join("scripts.log");
    let mut logs = Vec::new();
    for (name, text) in snippets {
        let (t, pats) = rewrite(text, &s, &scripts_log);
        std::fs::write(etc.join(name), t).unwrap();
        logs.extend(pats.iter().filter_map(|p| log_for(p)));
    }
    let conf = s.join("etc/logrotate.conf");
    let (main, _) = rewrite(
        &main_conf.replace(
            "include /etc/logrotate.d",
            &format!("include {}", etc.display()),
        ),
        &s,
        &scripts_log,
    );
    std::fs::write(&conf, main).unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    logs.sort();
    logs.dedup();
    for (i, l) in logs.iter().enumerate() {
        std::fs::create_dir_all(l.parent().unwrap()).unwrap();
        let mut content = String::new();
        for n in 0..(40 + 30 * i) {
            content.push_str(&format!("{pkg} {n} GET /index.html 200 start\n"));
        }
        std::fs::write(l, content).unwrap();
        std::fs::set_permissions(l, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    let state = tmp.path().join("status");
    let mut errors = vec![r.run(&s, &conf, &state)];
    for (day, shift) in SHIFTS.iter().enumerate() {
        for l in &logs {
            // The daemon writing on: it recreates its log when there is none.
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .open(l)
                .unwrap();
            writeln!(f, "{pkg} day {day} line").unwrap();
        }
        shift_state(&state, -shift * DAY);
        errors.push(r.run(&s, &conf, &state));
    }
    (tree(&s), errors)
}

#[test]
fn debian_logrotate_snippets_rotate_as_with_logrotate_3_21() {
    if !Path::new(LOGROTATE).exists() {
        return not_run(&format!(
            "{LOGROTATE} is missing: tests/services/logrotate.sh installs Debian's logrotate"
        ));
    }
    let cache = cache_dir();
    let pkgs = packages();
    assert!(pkgs.len() >= 25, "the corpus needs at least 25 packages");
    let mut dirs = BTreeMap::new();
    let mut failed = Vec::new();
    let mut updated = false;
    for p in &pkgs {
        let mut got = fetch(&cache, p);
        if got.is_err() && !updated {
            // A machine whose package lists were never fetched: one `apt-get update`.
            updated = true;
            let _ = Command::new("apt-get").args(["update", "-qq"]).status();
            got = fetch(&cache, p);
        }
        match got {
            Ok(d) => {
                dirs.insert(p.clone(), d);
            }
            Err(e) => failed.push(e),
        }
    }
    if !failed.is_empty() {
        assert!(
            !ci(),
            "downloads failed under CI=true:\n{}",
            failed.join("\n")
        );
        eprintln!(
            "NOT RUN for {} packages:\n{}",
            failed.len(),
            failed.join("\n")
        );
    }
    let Some(lr) = dirs.get("logrotate") else {
        return not_run("the logrotate package (its /etc/logrotate.conf) could not be fetched");
    };
    let main_conf = std::fs::read_to_string(lr.join("etc/logrotate.conf")).unwrap();
    let mut identical = Vec::new();
    let mut differ = Vec::new();
    let mut cases: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (pkg, dir) in &dirs {
        let d = dir.join("etc/logrotate.d");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&d)
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        let snippets: Vec<(String, String)> = names
            .iter()
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(p).unwrap(),
                )
            })
            .collect();
        assert!(
            !snippets.is_empty(),
            "{pkg} ships no /etc/logrotate.d snippet: drop it from the list"
        );
        cases.push((pkg.clone(), snippets));
    }
    // And all of them together, as one node's /etc/logrotate.d.
    let mut all: Vec<(String, String)> = cases.iter().flat_map(|(_, s)| s.clone()).collect();
    all.sort();
    cases.push(("(all together)".to_string(), all));
    for (pkg, snippets) in &cases {
        let (want, want_err) = play(pkg, &main_conf, snippets, &Logrotate);
        let (got, got_err) = play(pkg, &main_conf, snippets, &Caretaker);
        assert!(
            want.len() > 1,
            "{pkg}: the scenario made no logs:\n{}",
            show(&want)
        );
        if std::env::var("CORPUS_DUMP").is_ok() {
            eprintln!("{pkg} {want_err:?}\n{}", show(&want));
        }
        if want == got && want_err == got_err {
            identical.push(pkg.clone());
        } else {
            differ.push((
                pkg.clone(),
                format!(
                    "{pkg}:\n logrotate (errors {want_err:?}):\n{} caretaker (errors {got_err:?}):\n{}",
                    show(&want),
                    show(&got)
                ),
            ));
        }
    }
    eprintln!(
        "corpus: {} packages, {} identical to logrotate 3.21 (and all together: {})",
        dirs.len(),
        identical.iter().filter(|p| !p.starts_with('(')).count(),
        identical.iter().any(|p| p.starts_with('('))
    );
    let unexpected: Vec<&String> = differ
        .iter()
        .filter(|(p, _)| !KNOWN_DIFFERENCES.iter().any(|(k, _)| k == p))
        .map(|(_, d)| d)
        .collect();
    let now_same: Vec<&str> = KNOWN_DIFFERENCES
        .iter()
        .filter(|(k, _)| identical.iter().any(|p| p == k))
        .map(|(k, _)| *k)
        .collect();
    assert!(
        unexpected.is_empty() && now_same.is_empty(),
        "{} packages differ from logrotate 3.21:\n{}\nknown differences that are now identical (remove them from the list): {now_same:?}",
        unexpected.len(),
        unexpected
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
