//! Where the agent sees the host: node_exporter's `--path.procfs`, `--path.sysfs` and
//! `--path.rootfs`. In a pod these are host mounts (`/host/proc`, `/host/sys`,
//! `/host/root`); on the node itself the defaults `/proc`, `/sys`, `/`.

use std::io;
use std::path::{Path, PathBuf};

/// The three host mount points every reader goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    pub procfs: PathBuf,
    pub sysfs: PathBuf,
    pub rootfs: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        Self {
            procfs: "/proc".into(),
            sysfs: "/sys".into(),
            rootfs: "/".into(),
        }
    }
}

impl HostPaths {
    /// The host's mount table: PID 1's mountinfo (the host's init when the host procfs is
    /// mounted into a pod), else the agent's own (`self/mountinfo`), as node_exporter does.
    pub fn mountinfo(&self) -> [PathBuf; 2] {
        [
            self.procfs.join("1/mountinfo"),
            self.procfs.join("self/mountinfo"),
        ]
    }

    /// The host's network counters. `/proc/net/dev` is per network namespace: PID 1's
    /// entry is the host's even from a pod without `hostNetwork`; `net/dev` (the reader's
    /// own namespace) is the fallback, right on the node or with `hostNetwork: true`.
    pub fn net_dev(&self) -> [PathBuf; 2] {
        [self.procfs.join("1/net/dev"), self.procfs.join("net/dev")]
    }
}

/// Reads the first of `candidates` that exists and is readable.
///
/// # Errors
/// The error of the last candidate, with every path tried.
pub(crate) fn read_first(candidates: &[PathBuf]) -> Result<(PathBuf, String), (String, io::Error)> {
    let mut last = None;
    for p in candidates {
        match std::fs::read_to_string(p) {
            Ok(text) => return Ok((p.clone(), text)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                ) =>
            {
                last = Some(e)
            }
            Err(e) => return Err((p.display().to_string(), e)),
        }
    }
    let tried = candidates
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Err((
        tried,
        last.unwrap_or_else(|| io::Error::from(io::ErrorKind::NotFound)),
    ))
}

/// `path` displayed with a 1-based line number, the form collection errors use.
pub(crate) fn place(path: &Path, line: usize) -> String {
    format!("{}:{line}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pid1_first_then_self() {
        let dir = tempfile::tempdir().unwrap();
        let paths = HostPaths {
            procfs: dir.path().into(),
            ..HostPaths::default()
        };
        std::fs::create_dir_all(dir.path().join("self")).unwrap();
        std::fs::write(dir.path().join("self/mountinfo"), "own").unwrap();
        let (p, text) = read_first(&paths.mountinfo()).unwrap();
        assert_eq!(
            (p, text.as_str()),
            (dir.path().join("self/mountinfo"), "own")
        );
        std::fs::create_dir_all(dir.path().join("1")).unwrap();
        std::fs::write(dir.path().join("1/mountinfo"), "host").unwrap();
        assert_eq!(read_first(&paths.mountinfo()).unwrap().1, "host");
    }

    #[test]
    fn missing_files_name_every_path_tried() {
        let paths = HostPaths {
            procfs: "/nonexistent".into(),
            ..HostPaths::default()
        };
        let (tried, e) = read_first(&paths.net_dev()).unwrap_err();
        assert_eq!(tried, "/nonexistent/1/net/dev, /nonexistent/net/dev");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
