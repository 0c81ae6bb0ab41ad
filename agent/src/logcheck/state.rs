//! The incremental check of the daemon: each file is read from where the previous check
//! stopped, and the counts are kept per hour for the last 48 h (this day and the one
//! before, for the jump findings), in a small JSON state file that survives restarts.
//!
//! Files are known by device and inode, so the kubelet's rotation (`0.log` renamed to
//! `0.log.20240101-120000`) keeps a file's offset. A file shorter than its offset was
//! truncated and is read again from its start. A compressed rotated file
//! (`0.log.20240101-120000.gz`) is a new inode: it takes over the (decompressed) offset
//! of the uncompressed file of the same name in the same directory, if the previous check
//! knew it, so no line is counted twice; otherwise it is read whole. Only the current log
//! (`N.log`) keeps an unfinished last record or join for the next check; rotated files
//! are complete.
//!
//! Limits (documented, not hidden): when the agent is stopped through both the rotation
//! and the compression of a file, the compressed file is read whole, and the lines the
//! agent had counted from it before are counted again. An inode reused by another
//! container's file is detected (the container differs) and read from its start.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::check::{self, FileProblem, ReadFrom, ReadTotals};
use super::counts::ContainerCounts;
use super::matcher::Matcher;
use super::scan::{Scanner, Skip, Tail, Window};
use super::walk::{self, ContainerKey, WalkError};

/// Hours of counts kept: this day and the day before.
pub(crate) const KEPT_HOURS: i64 = 48;
/// Version of the state file's format.
const VERSION: u32 = 1;

/// What the daemon remembers between checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    /// The pattern names the counts are for; other names reset the counts.
    pub patterns: Vec<String>,
    pub files: Vec<FileState>,
    pub containers: Vec<(ContainerKey, ContainerCounts)>,
}

/// One file's read position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileState {
    pub dev: u64,
    pub ino: u64,
    pub container: ContainerKey,
    /// The file's name when last seen.
    pub name: String,
    pub gzip: bool,
    /// Where the next read starts (decompressed for `.gz`).
    pub offset: u64,
    pub skip: Skip,
}

/// The state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: cannot read the log check state")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: the log check state is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: cannot write the log check state")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The incremental checker.
#[derive(Debug)]
pub struct Incremental {
    matcher: Matcher,
    files: HashMap<(u64, u64), FileState>,
    pub containers: BTreeMap<ContainerKey, ContainerCounts>,
    scanner: Scanner,
}

/// What one incremental check did.
#[derive(Debug, Default)]
pub struct CheckResult {
    pub totals: ReadTotals,
    pub problems: Vec<FileProblem>,
}

impl Incremental {
    /// A checker with no memory.
    pub fn new(matcher: Matcher) -> Self {
        Self {
            matcher,
            files: HashMap::new(),
            containers: BTreeMap::new(),
            scanner: Scanner::default(),
        }
    }

    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// A checker that goes on from `state` (counts are dropped when the patterns differ).
    pub fn from_state(matcher: Matcher, state: State) -> Self {
        let mut me = Self::new(matcher);
        me.files = state
            .files
            .into_iter()
            .map(|f| ((f.dev, f.ino), f))
            .collect();
        if state.patterns == me.matcher.names() {
            me.containers = state.containers.into_iter().collect();
        }
        me
    }

    /// The state to save.
    pub fn state(&self) -> State {
        let mut files: Vec<FileState> = self.files.values().cloned().collect();
        files.sort_by_key(|f| (f.dev, f.ino));
        State {
            version: VERSION,
            patterns: self.matcher.names().to_vec(),
            files,
            containers: self
                .containers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Reads what is new under `pods_dir` up to `now` (Unix seconds) and drops hours
    /// older than [`KEPT_HOURS`].
    ///
    /// # Errors
    /// The pods directory cannot be listed or holds too many files.
    pub fn check(&mut self, pods_dir: &Path, now: i64) -> Result<CheckResult, WalkError> {
        let from = (now.div_euclid(3600) - (KEPT_HOURS - 1)) * 3600;
        let window = Window { from, to: i64::MAX };
        let (found, skipped) = walk::walk(pods_dir, from)?;
        let mut result = CheckResult {
            problems: skipped.into_iter().map(check::problem).collect(),
            ..CheckResult::default()
        };
        let n = self.matcher.names().len();
        let mut next: HashMap<(u64, u64), FileState> = HashMap::with_capacity(found.len());
        for mut f in found {
            let id = (f.dev, f.ino);
            let known = self
                .files
                .get(&id)
                .filter(|s| s.container == f.container && s.gzip == f.gzip);
            let (offset, skip) = match known {
                Some(s) if f.gzip => (s.offset, s.skip),
                Some(s) if s.offset <= f.size => (s.offset, s.skip),
                Some(_) => (0, Skip::None), // truncated
                None if f.gzip => self
                    .files
                    .values()
                    .find(|s| {
                        !s.gzip
                            && s.container == f.container
                            && f.name.strip_suffix(".gz") == Some(s.name.as_str())
                    })
                    .map_or((0, Skip::None), |s| (s.offset, s.skip)),
                None => (0, Skip::None),
            };
            let mut state = FileState {
                dev: f.dev,
                ino: f.ino,
                container: f.container.clone(),
                name: f.name.clone(),
                gzip: f.gzip,
                offset,
                skip,
            };
            // A compressed file never changes: once read, it is not read again.
            let done = f.gzip && known.is_some();
            if !done && (f.gzip || f.size > offset || skip != Skip::None) {
                let tail = if check::is_current(&f.name) {
                    Tail::Keep
                } else {
                    Tail::Flush
                };
                let counts = self.containers.entry(f.container.clone()).or_default();
                let from = ReadFrom { offset, skip, tail };
                match check::scan_file(
                    &mut self.scanner,
                    &mut f,
                    from,
                    &self.matcher,
                    window,
                    counts,
                ) {
                    Ok(end) => {
                        check::add(&mut result.totals, &end);
                        state.offset = end.resume_at;
                        state.skip = end.skip;
                    }
                    Err(e) => result.problems.push(FileProblem {
                        path: f.path.clone(),
                        reason: e.to_string(),
                    }),
                }
            }
            next.insert(id, state);
        }
        self.files = next;
        let keep_from = from.div_euclid(3600);
        for c in self.containers.values_mut() {
            c.prune(keep_from);
            c.samples.resize(n, None);
        }
        self.containers.retain(|_, c| !c.hours.is_empty());
        Ok(result)
    }
}

/// Reads a state file; a missing file is an empty state.
///
/// # Errors
/// The file exists but cannot be read or parsed.
pub fn load(path: &Path) -> Result<Option<State>, StateError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.into(),
                source,
            });
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| StateError::Parse {
            path: path.into(),
            source,
        })
}

/// Writes a state file atomically (a temporary sibling, fsync, rename).
///
/// # Errors
/// Any step fails.
pub fn save(path: &Path, state: &State) -> Result<(), StateError> {
    use std::io::Write;
    let err = |source| StateError::Write {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = crate::logs::fsx::temp_name(path);
    let body = serde_json::to_vec(state).map_err(|e| err(io::Error::other(e)))?;
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(&body)
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(())
}
