//! The largest disk consumers left after a cleanup: the biggest directories directly under
//! the places that fill nodes (`/var/log`, `/var/lib/docker`, `/var/lib/containerd`,
//! `/var/lib/kubelet/pods`), measured like `du` (allocated blocks, each inode once,
//! symlinks not followed, one filesystem).

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Where the summary looks, relative to the host's root.
pub(crate) const DEFAULT_PLACES: &[&str] = &[
    "/var/log",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/kubelet/pods",
];

/// One directory and the bytes it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Consumer {
    pub path: PathBuf,
    pub bytes: u64,
}

/// Bytes allocated under `path` (st_blocks × 512), counting each inode once and staying on
/// `dev`.
fn du(path: &Path, dev: u64, seen: &mut HashSet<(u64, u64)>, depth: usize) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.dev() != dev || !seen.insert((meta.dev(), meta.ino())) {
        return 0;
    }
    let mut total = meta.blocks() * 512;
    if meta.is_dir()
        && depth < 64
        && let Ok(entries) = fs::read_dir(path)
    {
        for e in entries.flatten() {
            total += du(&e.path(), dev, seen, depth + 1);
        }
    }
    total
}

/// The `n` largest directories (or files) directly under each of `places`, largest first
/// overall. Places that do not exist are skipped. Blocking: call from `spawn_blocking`.
pub(crate) fn largest(places: &[PathBuf], n: usize) -> Vec<Consumer> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for place in places {
        let Ok(meta) = fs::symlink_metadata(place) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let Ok(entries) = fs::read_dir(place) else {
            continue;
        };
        for e in entries.flatten() {
            let bytes = du(&e.path(), meta.dev(), &mut seen, 0);
            if bytes > 0 {
                out.push(Consumer {
                    path: e.path(),
                    bytes,
                });
            }
        }
    }
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_directories_first_and_hard_links_counted_once() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("var/log");
        fs::create_dir_all(log.join("big")).unwrap();
        fs::create_dir_all(log.join("small")).unwrap();
        fs::write(log.join("big/a"), vec![1u8; 64 * 1024]).unwrap();
        fs::hard_link(log.join("big/a"), log.join("big/a-link")).unwrap();
        fs::write(log.join("small/b"), vec![1u8; 8 * 1024]).unwrap();
        let got = largest(&[log.clone(), d.path().join("var/lib/docker")], 5);
        let names: Vec<&Path> = got.iter().map(|c| c.path.as_path()).collect();
        assert_eq!(
            names,
            [log.join("big").as_path(), log.join("small").as_path()]
        );
        // 64 KiB of data once, plus the directory's own blocks.
        let dir_blocks = fs::symlink_metadata(log.join("big")).unwrap().blocks() * 512;
        let file_blocks = fs::symlink_metadata(log.join("big/a")).unwrap().blocks() * 512;
        assert_eq!(got[0].bytes, dir_blocks + file_blocks);
    }
}
