//! Finding the kubelet's container logs: `<pods_dir>/<ns>_<pod>_<uid>/<container>/*.log*`,
//! without following any symlink below `pods_dir` (each directory and file is opened
//! relative to its parent's handle with `O_NOFOLLOW`, so a link swapped in between the
//! listing and the open is refused too).
//!
//! Files: the current log `N.log`, rotated ones `N.log.YYYYMMDD-HHMMSS` and compressed
//! rotated ones `N.log.YYYYMMDD-HHMMSS.gz`; the kubelet's temporary `*.tmp` files are
//! skipped.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;

/// More log files than this under the pods directory is an error: a node has a few
/// hundred containers with a handful of files each.
pub(crate) const MAX_FILES: usize = 100_000;

/// A container's identity as the directory names give it.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ContainerKey {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

/// One log file found.
#[derive(Debug)]
pub(crate) struct LogFile {
    pub container: ContainerKey,
    /// Its path (for messages; it is read through `file`).
    pub path: PathBuf,
    /// Its name in the container directory.
    pub name: String,
    pub file: File,
    /// Device and inode: the file's identity across renames.
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// gzip-compressed (`*.gz`).
    pub gzip: bool,
}

/// Walking the pods directory failed.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("{path}: cannot open the pods directory")]
    Root {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("{path}: more than {MAX_FILES} log files; refusing to read them all")]
    TooManyFiles { path: PathBuf },
}

/// A problem with one entry; the walk goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Splits `<ns>_<pod>_<uid>` (neither a namespace nor a pod name may hold `_`).
pub(crate) fn split_pod_dir(name: &str) -> Option<(&str, &str)> {
    let (ns, rest) = name.split_once('_')?;
    let (pod, uid) = rest.rsplit_once('_')?;
    (!ns.is_empty() && !pod.is_empty() && !uid.is_empty()).then_some((ns, pod))
}

/// Whether `name` is a container log the check reads; `Some(gzip)`.
pub(crate) fn log_file_kind(name: &str) -> Option<bool> {
    if name.starts_with('.') || name.ends_with(".tmp") {
        return None;
    }
    let (stem, rest) = name.split_once(".log")?;
    if stem.is_empty() {
        return None;
    }
    match rest {
        "" => Some(false),
        r if r.starts_with('.') => Some(r.ends_with(".gz")),
        _ => None,
    }
}

fn open_dir_at(parent: &impl AsFd, name: &std::ffi::CStr) -> nix::Result<Dir> {
    let fd: OwnedFd = openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Dir::from_fd(fd)
}

fn entries(dir: &mut Dir) -> Vec<(std::ffi::CString, Option<Type>)> {
    dir.iter()
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_bytes();
            n != b"." && n != b".."
        })
        .map(|e| (e.file_name().to_owned(), e.file_type()))
        .collect()
}

/// Lists every container log under `pods_dir` whose mtime is at or after
/// `modified_since` (Unix seconds; older files hold no line of the window), opened for
/// reading. Entries that cannot be read are returned as skipped, with the reason.
///
/// # Errors
/// The pods directory cannot be opened, or holds more than [`MAX_FILES`] logs.
pub(crate) fn walk(
    pods_dir: &Path,
    modified_since: i64,
) -> Result<(Vec<LogFile>, Vec<Skipped>), WalkError> {
    let mut root = Dir::open(
        pods_dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| WalkError::Root {
        path: pods_dir.into(),
        source,
    })?;
    let (mut files, mut skipped) = (Vec::new(), Vec::new());
    let mut pods = entries(&mut root);
    pods.sort_by(|a, b| a.0.cmp(&b.0));
    let mut seen = 0usize;
    for (pod_name, ty) in pods {
        let pod_str = pod_name.to_string_lossy().into_owned();
        let pod_path = pods_dir.join(&pod_str);
        if matches!(ty, Some(t) if t != Type::Directory) {
            continue;
        }
        let Some((ns, pod)) = split_pod_dir(&pod_str) else {
            skipped.push(Skipped {
                path: pod_path,
                reason: "not a <namespace>_<pod>_<uid> directory".into(),
            });
            continue;
        };
        let mut pod_dir = match open_dir_at(&root, &pod_name) {
            Ok(d) => d,
            Err(e) => {
                skipped.push(Skipped {
                    path: pod_path,
                    reason: why(e),
                });
                continue;
            }
        };
        let mut containers = entries(&mut pod_dir);
        containers.sort_by(|a, b| a.0.cmp(&b.0));
        for (c_name, ty) in containers {
            let c_str = c_name.to_string_lossy().into_owned();
            let c_path = pod_path.join(&c_str);
            if matches!(ty, Some(t) if t != Type::Directory) {
                continue;
            }
            let mut c_dir = match open_dir_at(&pod_dir, &c_name) {
                Ok(d) => d,
                Err(e) => {
                    skipped.push(Skipped {
                        path: c_path,
                        reason: why(e),
                    });
                    continue;
                }
            };
            let key = ContainerKey {
                namespace: ns.into(),
                pod: pod.into(),
                container: c_str.clone(),
            };
            let mut logs = entries(&mut c_dir);
            logs.sort_by(|a, b| a.0.cmp(&b.0));
            for (f_name, ty) in logs {
                let name = f_name.to_string_lossy().into_owned();
                let Some(gzip) = log_file_kind(&name) else {
                    continue;
                };
                let path = c_path.join(&name);
                if matches!(ty, Some(t) if t != Type::File) {
                    if ty == Some(Type::Symlink) {
                        skipped.push(Skipped {
                            path,
                            reason: "a symlink; not followed".into(),
                        });
                    }
                    continue;
                }
                seen += 1;
                if seen > MAX_FILES {
                    return Err(WalkError::TooManyFiles {
                        path: pods_dir.into(),
                    });
                }
                let opened = openat(
                    &c_dir,
                    f_name.as_c_str(),
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
                    Mode::empty(),
                )
                .map(File::from)
                .map_err(why)
                .and_then(|f| f.metadata().map(|m| (f, m)).map_err(|e| e.to_string()));
                let (file, meta) = match opened {
                    Ok(x) => x,
                    Err(reason) => {
                        skipped.push(Skipped { path, reason });
                        continue;
                    }
                };
                if !meta.is_file() {
                    continue;
                }
                if meta.mtime() < modified_since {
                    continue;
                }
                files.push(LogFile {
                    container: key.clone(),
                    path,
                    name,
                    file,
                    dev: meta.dev(),
                    ino: meta.ino(),
                    size: meta.len(),
                    gzip,
                });
            }
        }
    }
    Ok((files, skipped))
}

fn why(e: nix::Error) -> String {
    match e {
        nix::Error::ELOOP => "a symlink; not followed".into(),
        e => e.desc().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            split_pod_dir("kube-system_coredns-5d78c9869d-abcde_0f1e-22"),
            Some(("kube-system", "coredns-5d78c9869d-abcde"))
        );
        assert_eq!(split_pod_dir("nounderscore"), None);
        assert_eq!(split_pod_dir("ns__uid"), None);
        assert_eq!(log_file_kind("0.log"), Some(false));
        assert_eq!(log_file_kind("0.log.20240101-120000"), Some(false));
        assert_eq!(log_file_kind("0.log.20240101-120000.gz"), Some(true));
        assert_eq!(log_file_kind("0.log.20240101-120000.tmp"), None);
        assert_eq!(log_file_kind("0.logfoo"), None);
        assert_eq!(log_file_kind(".log"), None);
        assert_eq!(log_file_kind("notes.txt"), None);
    }
}
