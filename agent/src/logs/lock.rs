//! The rotation lock: two agents, or an agent and the CLI, never rotate at once.
//!
//! An exclusive `flock(2)` on `STATE.lock` next to the state file (the state file itself
//! is replaced by rename on every save, so it cannot carry the lock). The kernel drops
//! the lock when the holder dies, so a killed run never blocks the next one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// A held lock; released on drop.
#[derive(Debug)]
pub(crate) struct RotationLock {
    _lock: Flock<File>,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another caretaker run holds the rotation lock {path} (waited {waited:?}); try again when it has finished"
    )]
    Busy { path: PathBuf, waited: Duration },
    #[error("cannot open the rotation lock {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The lock file that guards `state_file`. A state path that is a device, FIFO or
/// socket (`--state /dev/null`: keep no state) is locked itself, as logrotate locks its
/// state file: nothing is created next to it (in /dev).
pub(crate) fn lock_path(state_file: &Path) -> PathBuf {
    if std::fs::metadata(state_file).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        return state_file.to_path_buf();
    }
    let mut s = state_file.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Takes the lock, polling every 50 ms for at most `wait` (zero: one try).
///
/// # Errors
/// [`LockError::Busy`] when another process keeps it; [`LockError::Open`] when the lock
/// file cannot be created.
pub(crate) fn acquire(state_file: &Path, wait: Duration) -> Result<RotationLock, LockError> {
    let path = lock_path(state_file);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| LockError::Open {
            path: path.clone(),
            source,
        })?;
    }
    let start = Instant::now();
    let mut opts = std::fs::OpenOptions::new();
    if path == state_file {
        // Read-only and non-blocking: a FIFO opens without a writer, nothing is written.
        use std::os::unix::fs::OpenOptionsExt;
        opts.read(true).custom_flags(nix::libc::O_NONBLOCK);
    } else {
        opts.create(true).truncate(false).write(true);
    }
    let mut file = opts.open(&path).map_err(|source| LockError::Open {
        path: path.clone(),
        source,
    })?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(RotationLock { _lock: l }),
            Err((f, Errno::EWOULDBLOCK)) if start.elapsed() < wait => {
                file = f;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, Errno::EWOULDBLOCK)) => return Err(LockError::Busy { path, waited: wait }),
            Err((_, e)) => {
                return Err(LockError::Open {
                    path,
                    source: e.into(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_gets_a_clear_busy_error_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let st = dir.path().join("status");
        let first = acquire(&st, Duration::ZERO).unwrap();
        let err = acquire(&st, Duration::from_millis(120))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "another caretaker run holds the rotation lock {}/status.lock",
                dir.path().display()
            )),
            "{err}"
        );
        drop(first);
        assert!(acquire(&st, Duration::ZERO).is_ok());
    }
}
