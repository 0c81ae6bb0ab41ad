//! Filesystem primitives with the safety rules built in: temporary names that globs do
//! not match, sparse-aware copies, shredding, write leases. Root containment is
//! [`super::handle`]'s: files are reached through directory handles, never by a path
//! string checked and then used.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
#[cfg(test)]
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Marker in every temporary file caretaker writes; a run removes leftovers with it.
pub(crate) const TEMP_MARK: &str = ".caretaker-tmp";

/// A temporary sibling of `path`: `.NAME.caretaker-tmp` (hidden, so `*` globs skip it).
pub(crate) fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}{TEMP_MARK}"))
}

/// The temporary sibling name of `name`: `.NAME.caretaker-tmp`.
pub(crate) fn temp_file_name(name: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut t = std::ffi::OsString::from(".");
    t.push(name);
    t.push(TEMP_MARK);
    t
}

/// Lexically normalises an absolute path (`.` and `..` removed) without touching the disk.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Copies `src` (from `offset`) to the end of `dst` keeping holes: data ranges found with
/// `SEEK_DATA`/`SEEK_HOLE` are copied, holes are skipped so `dst` stays sparse.
/// Returns the offset reached (the source size seen).
///
/// # Errors
/// Read or write errors.
pub(crate) fn copy_sparse_from(src: &File, dst: &File, mut offset: u64) -> io::Result<u64> {
    use nix::unistd::{Whence, lseek};
    let len = src.metadata()?.len();
    let mut buf = vec![0u8; 1 << 20];
    while offset < len {
        let data = match lseek(src, offset as i64, Whence::SeekData) {
            Ok(d) => d as u64,
            Err(nix::errno::Errno::ENXIO) => break, // only a hole up to EOF
            Err(_) => offset,                       // no SEEK_DATA support: copy all
        };
        let hole = match lseek(src, data as i64, Whence::SeekHole) {
            Ok(h) => (h as u64).min(len),
            Err(_) => len,
        };
        let mut pos = data;
        while pos < hole {
            let want = ((hole - pos) as usize).min(buf.len());
            let n = src.read_at(&mut buf[..want], pos)?;
            if n == 0 {
                break;
            }
            dst.write_all_at(&buf[..n], pos)?;
            pos += n as u64;
        }
        offset = hole.max(pos);
    }
    // A trailing hole still counts towards the size.
    if dst.metadata()?.len() < len {
        dst.set_len(len)?;
    }
    Ok(len)
}

/// Overwrites an open file's bytes `cycles` times with zeros and syncs (the caller
/// unlinks it through its directory handle).
///
/// # Errors
/// Write or sync fails.
pub(crate) fn shred_file(f: &File, cycles: u32) -> io::Result<()> {
    let len = f.metadata()?.len();
    let zeros = vec![0u8; 1 << 16];
    for _ in 0..cycles.max(1) {
        let mut pos = 0;
        while pos < len {
            let n = ((len - pos) as usize).min(zeros.len());
            f.write_all_at(&zeros[..n], pos)?;
            pos += n as u64;
        }
        f.sync_data()?;
    }
    Ok(())
}

/// Bytes a file really occupies (`st_blocks` is in 512-byte units).
#[cfg(test)]
pub(crate) fn allocated_bytes(m: &std::fs::Metadata) -> u64 {
    m.blocks() * 512
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_copy_keeps_holes_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let src_p = dir.path().join("s");
        let src = File::create(&src_p).unwrap();
        src.write_all_at(b"head", 0).unwrap();
        src.write_all_at(b"tail", 64 << 20).unwrap();
        src.set_len((64 << 20) + 4 + (8 << 20)).unwrap();
        let src = File::open(&src_p).unwrap();
        let dst = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .read(true)
            .open(dir.path().join("d"))
            .unwrap();
        let n = copy_sparse_from(&src, &dst, 0).unwrap();
        assert_eq!(n, (72 << 20) + 4);
        assert_eq!(
            std::fs::read(&src_p).unwrap(),
            std::fs::read(dir.path().join("d")).unwrap()
        );
        let allocated = allocated_bytes(&dst.metadata().unwrap());
        assert!(
            allocated < 1 << 20,
            "copy is not sparse: {allocated} bytes allocated"
        );
    }

    #[test]
    fn temporary_names_are_hidden_siblings() {
        assert_eq!(
            temp_name(Path::new("/d/x.log.1.gz")),
            PathBuf::from("/d/.x.log.1.gz.caretaker-tmp")
        );
        assert_eq!(
            temp_file_name(std::ffi::OsStr::new("status")),
            std::ffi::OsString::from(".status.caretaker-tmp")
        );
    }
}

/// A read lease (`fcntl(F_SETLEASE, F_RDLCK)`, see fcntl(2) "Leases") on a file opened
/// read-only: the kernel grants it only while no one has the file open for writing, and
/// breaks it as soon as someone opens it for writing. Compression uses it to know that
/// no writer can still append to a rotated file that is about to be unlinked.
#[derive(Debug)]
pub(crate) struct WriteWatch<'a> {
    file: &'a File,
}

/// What [`WriteWatch::take`] found.
#[derive(Debug)]
pub(crate) enum Writers<'a> {
    /// No writer has the file open; the watch reports any that opens it from now on.
    None(WriteWatch<'a>),
    /// Someone has the file open for writing.
    Open,
    /// The filesystem or our privileges do not allow leases (e.g. overlayfs, NFS, or a
    /// file we do not own without CAP_LEASE): writers cannot be seen.
    Unknown,
}

impl<'a> WriteWatch<'a> {
    /// Takes a read lease on `file` (which must be open read-only).
    pub(crate) fn take(file: &'a File) -> Writers<'a> {
        use std::os::fd::AsRawFd;
        ignore_lease_signal();
        // SAFETY: fcntl on a descriptor we own, with integer arguments only.
        let r = unsafe {
            nix::libc::fcntl(file.as_raw_fd(), nix::libc::F_SETLEASE, nix::libc::F_RDLCK)
        };
        if r == 0 {
            return Writers::None(WriteWatch { file });
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(nix::libc::EAGAIN | nix::libc::EBUSY) => Writers::Open,
            _ => Writers::Unknown,
        }
    }

    /// Whether a writer opened the file since the lease was taken (the kernel is breaking it).
    pub(crate) fn broken(&self) -> bool {
        use std::os::fd::AsRawFd;
        // SAFETY: as in `take`.
        let r = unsafe { nix::libc::fcntl(self.file.as_raw_fd(), nix::libc::F_GETLEASE) };
        r != nix::libc::F_RDLCK
    }
}

impl Drop for WriteWatch<'_> {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as in `take`. Releasing lets a writer blocked by the lease break go on.
        unsafe {
            nix::libc::fcntl(
                self.file.as_raw_fd(),
                nix::libc::F_SETLEASE,
                nix::libc::F_UNLCK,
            )
        };
    }
}

/// A lease break is announced with SIGIO, whose default action ends the process; the
/// agent polls the lease instead, so the signal is ignored (nothing else uses it).
fn ignore_lease_signal() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use nix::sys::signal::{SigHandler, Signal, signal};
        // SAFETY: installs SIG_IGN, which runs no code in signal context.
        let _ = unsafe { signal(Signal::SIGIO, SigHandler::SigIgn) };
    });
}

/// The POSIX access ACL's extended attribute (what libacl's `acl_get_fd` reads).
pub(crate) const ACL_ACCESS: &std::ffi::CStr = c"system.posix_acl_access";
pub(crate) const ACL_DEFAULT: &std::ffi::CStr = c"system.posix_acl_default";

/// Sets `acl` (the bytes of a `system.posix_acl_access` attribute) on `to`.
///
/// # Errors
/// As fsetxattr(2).
pub(crate) fn set_acl(to: &File, acl: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a descriptor we own, a valid name and the bytes of `acl`.
    let r = unsafe {
        nix::libc::fsetxattr(
            to.as_raw_fd(),
            ACL_ACCESS.as_ptr(),
            acl.as_ptr().cast(),
            acl.len(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The process's umask, read once from /proc/self/status (`Umask:`, Linux 4.7 and
/// later); `None` where it cannot be read. Read rather than set: `umask(2)` cannot be
/// read without changing it for every thread for a moment.
pub(crate) fn process_umask() -> Option<u32> {
    static UMASK: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    })
}
