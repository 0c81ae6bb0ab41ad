//! Directory handles: the only way rotation, sweeps and the emergency cleanup reach a file.
//!
//! DESIGN.md safety rule 4: every open, create, rename and unlink is relative to a
//! directory handle that was itself opened without following symlinks, so the check and
//! the action touch the same object. [`Roots::open_dir`] opens a directory below one of
//! the configured roots with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` from the
//! root's descriptor (or, on kernels without openat2, one `O_NOFOLLOW | O_DIRECTORY`
//! `openat` per component). A [`Dir`] then works on `(descriptor, name)` pairs only:
//! `fstatat(AT_SYMLINK_NOFOLLOW)`, `openat(O_NOFOLLOW)`, `renameat`, `unlinkat`,
//! `mkdirat`, and `fchmod`/`fchown` on descriptors it created. A name is one path
//! component (no `/`, never `.` or `..`). A directory swapped for a symlink after the
//! handle was opened changes nothing: the handle still is the directory that was checked.
//!
//! The root's own path is configuration (trusted) and is opened following its links, so
//! `/var/log` → `/data/log` works.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;

use super::fsx;

/// Why a directory could not be opened as a handle.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum OpenDirError {
    /// The path is not below any configured root.
    #[error("{path} is outside the configured roots (logs.roots); not touched")]
    Outside { path: PathBuf },
    /// A component below the root is a symlink (or the path leaves the root).
    #[error(
        "{path}: a directory on the way is a symlink; caretaker never follows links below its roots, not touched"
    )]
    Symlink { path: PathBuf },
    /// Any other failure (missing, not a directory, permissions).
    #[error("cannot open directory {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
}

impl OpenDirError {
    /// The directory (or one on its way) does not exist.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The path exists but is not a directory.
    pub(crate) fn is_not_dir(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.raw_os_error() == Some(nix::libc::ENOTDIR))
    }
}

impl From<OpenDirError> for io::Error {
    fn from(e: OpenDirError) -> Self {
        let kind = match &e {
            OpenDirError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::PermissionDenied,
        };
        io::Error::new(kind, e)
    }
}

/// The configured roots (`logs.roots`).
#[derive(Debug, Clone, Default)]
pub struct Roots {
    roots: Vec<PathBuf>,
}

/// Set when openat2 answered ENOSYS once: the per-component fallback is used from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

impl Roots {
    /// Roots as configured (absolute paths; `.` and `..` are removed lexically).
    pub fn new(paths: &[PathBuf]) -> Self {
        Self {
            roots: paths.iter().map(|p| fsx::normalize(p)).collect(),
        }
    }

    /// The configured root paths.
    pub fn paths(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The root `dir` is lexically below, and the relative rest. A root that is itself a
    /// link (`/var/log` → `/data/log`) also matches paths under its target.
    fn locate(&self, dir: &Path) -> Option<(&Path, PathBuf)> {
        for r in &self.roots {
            if let Ok(rest) = dir.strip_prefix(r) {
                return Some((r, rest.to_path_buf()));
            }
        }
        for r in &self.roots {
            if let Ok(real) = std::fs::canonicalize(r)
                && let Ok(rest) = dir.strip_prefix(&real)
            {
                return Some((r, rest.to_path_buf()));
            }
        }
        None
    }

    /// Whether `path` is lexically below one of the roots (no disk access beyond resolving
    /// a root that is a link). Opening is what decides; this only picks messages.
    pub fn contains(&self, path: &Path) -> bool {
        self.locate(&fsx::normalize(path)).is_some()
    }

    /// Opens `dir` (absolute) as a handle: below a root, no symlink on the way.
    ///
    /// # Errors
    /// [`OpenDirError::Outside`] when no root contains it, [`OpenDirError::Symlink`] when
    /// a component below the root is a symlink, [`OpenDirError::Io`] otherwise.
    pub(crate) fn open_dir(&self, dir: &Path) -> Result<Dir, OpenDirError> {
        let dir = fsx::normalize(dir);
        let Some((root, rel)) = self.locate(&dir) else {
            return Err(OpenDirError::Outside { path: dir });
        };
        let io_err = |source: io::Error| OpenDirError::Io {
            path: dir.clone(),
            source: Arc::new(source),
        };
        let root_fd = nix::fcntl::open(root, dir_flags(), Mode::empty())
            .map_err(|e| io_err(io::Error::from(e)))?;
        if rel.as_os_str().is_empty() {
            return Ok(Dir {
                fd: root_fd,
                path: dir,
                default_acl: Default::default(),
            });
        }
        match open_beneath(&root_fd, &rel) {
            Ok(fd) => Ok(Dir {
                fd,
                path: dir,
                default_acl: Default::default(),
            }),
            Err(Errno::ELOOP | Errno::EXDEV) => Err(OpenDirError::Symlink { path: dir }),
            Err(e) => Err(io_err(io::Error::from(e))),
        }
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
}

/// `rel` (relative, no `..`) below `root`: openat2 with RESOLVE_BENEATH and
/// RESOLVE_NO_SYMLINKS, or the per-component fallback where openat2 does not exist.
fn open_beneath(root: &OwnedFd, rel: &Path) -> nix::Result<OwnedFd> {
    use nix::fcntl::{OpenHow, ResolveFlag};
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let how = OpenHow::new()
            // RESOLVE_NO_SYMLINKS covers the last component too (ELOOP); O_NOFOLLOW with
            // O_DIRECTORY would answer ENOTDIR for a symlink instead.
            .flags(dir_flags())
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        // EAGAIN: a rename elsewhere raced the lookup; the kernel asks for a retry.
        for _ in 0..8 {
            match nix::fcntl::openat2(root, rel, how) {
                Err(Errno::EAGAIN) => continue,
                Err(Errno::ENOSYS) => {
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                    break;
                }
                other => return other,
            }
        }
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            return Err(Errno::EAGAIN);
        }
    }
    open_per_component(root, rel)
}

/// The fallback: one `openat(O_NOFOLLOW | O_DIRECTORY)` per component, each relative to
/// the descriptor of the one before.
fn open_per_component(root: &OwnedFd, rel: &Path) -> nix::Result<OwnedFd> {
    let mut cur: Option<OwnedFd> = None;
    for c in rel.components() {
        let Component::Normal(name) = c else {
            // `..`, `.` or a root: never below the root by construction.
            return Err(Errno::EXDEV);
        };
        let base = cur.as_ref().unwrap_or(root);
        let next = nix::fcntl::openat(base, name, dir_flags() | OFlag::O_NOFOLLOW, Mode::empty())
            .map_err(|e| {
            // O_NOFOLLOW|O_DIRECTORY on a symlink: ELOOP, or ENOTDIR on some kernels.
            if e == Errno::ENOTDIR
                && nix::sys::stat::fstatat(base, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .is_ok_and(|s| s.st_mode & nix::libc::S_IFMT == nix::libc::S_IFLNK)
            {
                Errno::ELOOP
            } else {
                e
            }
        })?;
        cur = Some(next);
    }
    match cur {
        Some(fd) => Ok(fd),
        None => nix::unistd::dup(root),
    }
}

/// What `fstatat(AT_SYMLINK_NOFOLLOW)` says about a name.
#[derive(Clone, Copy)]
pub struct Stat(nix::sys::stat::FileStat);

impl std::fmt::Debug for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stat")
            .field("dev", &self.dev())
            .field("ino", &self.ino())
            .field("len", &self.len())
            .field("mode", &format_args!("{:o}", self.0.st_mode))
            .finish()
    }
}

impl Stat {
    fn kind(&self) -> u32 {
        self.0.st_mode & nix::libc::S_IFMT
    }
    pub fn is_file(&self) -> bool {
        self.kind() == nix::libc::S_IFREG
    }
    pub fn is_dir(&self) -> bool {
        self.kind() == nix::libc::S_IFDIR
    }
    pub fn is_symlink(&self) -> bool {
        self.kind() == nix::libc::S_IFLNK
    }
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.0.st_size as u64
    }
    /// Whether the size is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Permission bits (`& 0o7777`).
    pub fn mode(&self) -> u32 {
        self.0.st_mode & 0o7777
    }
    pub fn uid(&self) -> u32 {
        self.0.st_uid
    }
    pub fn gid(&self) -> u32 {
        self.0.st_gid
    }
    pub(crate) fn nlink(&self) -> u64 {
        self.0.st_nlink
    }
    pub fn dev(&self) -> u64 {
        self.0.st_dev
    }
    pub fn ino(&self) -> u64 {
        self.0.st_ino
    }
    /// Modification time in whole seconds since the epoch.
    pub fn mtime(&self) -> i64 {
        self.0.st_mtime
    }
    /// Modification time.
    pub fn modified(&self) -> SystemTime {
        let s = self.0.st_mtime;
        let ns = self.0.st_mtime_nsec.clamp(0, 999_999_999) as u32;
        if s >= 0 {
            SystemTime::UNIX_EPOCH + Duration::new(s as u64, ns)
        } else {
            SystemTime::UNIX_EPOCH - Duration::from_secs(s.unsigned_abs())
                + Duration::from_nanos(u64::from(ns))
        }
    }
    /// Bytes the file really occupies (`st_blocks` is in 512-byte units).
    pub(crate) fn allocated_bytes(&self) -> u64 {
        (self.0.st_blocks as u64) * 512
    }
}

/// The kind of a directory entry as `readdir` reports it (`None`: the filesystem did not
/// say; ask [`Dir::stat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryKind {
    Dir,
    Symlink,
    Other,
}

/// An open directory. Every operation names a single component in it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// For messages and for the paths a summary shows; never used to reach a file.
    path: PathBuf,
    /// Whether the directory has a default ACL (asked once; see [`Dir::has_default_acl`]).
    default_acl: std::sync::OnceLock<bool>,
}

/// A name is one path component: not empty, no `/`, not `.` or `..`.
fn check_name(name: &OsStr) -> io::Result<&OsStr> {
    let b = name.as_bytes();
    if b.is_empty() || b.contains(&b'/') || b == b"." || b == b".." || b.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single file name"),
        ));
    }
    Ok(name)
}

fn io(e: Errno) -> io::Error {
    io::Error::from(e)
}

impl Dir {
    /// Opens a directory by a trusted path (configuration such as the state file's
    /// directory), following its links. For files below the roots use [`Roots::open_dir`].
    ///
    /// # Errors
    /// As `open(2)` with `O_DIRECTORY`.
    pub fn open_trusted(path: &Path) -> io::Result<Self> {
        let fd = nix::fcntl::open(path, dir_flags(), Mode::empty()).map_err(io)?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
            default_acl: Default::default(),
        })
    }

    /// The path this handle was opened by (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path()` joined with `name` (for messages and summaries).
    pub fn display(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// `fstatat(name, AT_SYMLINK_NOFOLLOW)`.
    ///
    /// # Errors
    /// As fstatat(2).
    pub fn stat(&self, name: &OsStr) -> io::Result<Stat> {
        nix::sys::stat::fstatat(&self.fd, check_name(name)?, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map(Stat)
            .map_err(io)
    }

    /// Opens `name` without following a symlink (ELOOP for one) and without blocking on a
    /// FIFO; `write` adds write access. Only regular files are returned.
    ///
    /// # Errors
    /// As openat(2); `InvalidInput` when it is not a regular file.
    pub(crate) fn open_file(&self, name: &OsStr, write: bool) -> io::Result<File> {
        let acc = if write {
            OFlag::O_RDWR
        } else {
            OFlag::O_RDONLY
        };
        let fd = nix::fcntl::openat(
            &self.fd,
            check_name(name)?,
            acc | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .map_err(io)?;
        let f = File::from(fd);
        if !f.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", self.display(name).display()),
            ));
        }
        // Back to blocking I/O for the regular file (O_NONBLOCK only guarded the open).
        nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFL(acc)).map_err(io)?;
        Ok(f)
    }

    /// Creates `name` with `O_CREAT | O_EXCL | O_NOFOLLOW` (a planted file or symlink
    /// makes it fail with EEXIST), opened for reading and writing. The mode is subject
    /// to the umask; callers `fchmod` the file they created.
    ///
    /// # Errors
    /// As openat(2).
    pub fn create_new(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let fd = nix::fcntl::openat(
            &self.fd,
            check_name(name)?,
            OFlag::O_RDWR
                | OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC
                | OFlag::O_NOCTTY,
            Mode::from_bits_truncate(mode & 0o7777),
        )
        .map_err(io)?;
        Ok(File::from(fd))
    }

    /// `renameat(self, from, to_dir, to)`; replaces `to` as rename(2) does.
    ///
    /// # Errors
    /// As renameat(2).
    pub fn rename(&self, from: &OsStr, to_dir: &Dir, to: &OsStr) -> io::Result<()> {
        nix::fcntl::renameat(&self.fd, check_name(from)?, &to_dir.fd, check_name(to)?).map_err(io)
    }

    /// `renameat2(self, from, to_dir, to, RENAME_NOREPLACE)`: fails with `EEXIST`
    /// (`AlreadyExists`) instead of replacing a file that already has the name `to`, in
    /// one step, so nothing made between a check and the rename is ever overwritten. A
    /// filesystem without the flag (EINVAL) gets `linkat` + `unlinkat`, which does not
    /// replace either (a file with several names is then briefly seen by both).
    ///
    /// # Errors
    /// As renameat2(2); `AlreadyExists` when `to` exists.
    pub(crate) fn rename_noreplace(
        &self,
        from: &OsStr,
        to_dir: &Dir,
        to: &OsStr,
    ) -> io::Result<()> {
        let (from, to) = (check_name(from)?, check_name(to)?);
        match nix::fcntl::renameat2(
            &self.fd,
            from,
            &to_dir.fd,
            to,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        ) {
            Err(Errno::EINVAL) => {
                nix::unistd::linkat(&self.fd, from, &to_dir.fd, to, AtFlags::empty())
                    .map_err(io)?;
                self.unlink(from)
            }
            r => r.map_err(io),
        }
    }

    /// `unlinkat(name)` (files only).
    ///
    /// # Errors
    /// As unlinkat(2).
    pub(crate) fn unlink(&self, name: &OsStr) -> io::Result<()> {
        nix::unistd::unlinkat(
            &self.fd,
            check_name(name)?,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )
        .map_err(io)
    }

    /// `mkdirat(name, mode)`.
    ///
    /// # Errors
    /// As mkdirat(2).
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        nix::sys::stat::mkdirat(
            &self.fd,
            check_name(name)?,
            Mode::from_bits_truncate(mode & 0o7777),
        )
        .map_err(io)
    }

    /// Opens the subdirectory `name` without following a symlink.
    ///
    /// # Errors
    /// As openat(2) (ELOOP for a symlink, ENOTDIR for anything else).
    pub(crate) fn subdir(&self, name: &OsStr) -> io::Result<Dir> {
        let fd = nix::fcntl::openat(
            &self.fd,
            check_name(name)?,
            dir_flags() | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(io)?;
        Ok(Dir {
            fd,
            path: self.path.join(name),
            default_acl: Default::default(),
        })
    }

    /// The access ACL of `name` (the `system.posix_acl_access` attribute's bytes), `None`
    /// when it has none or the filesystem has no ACLs. The name is reached through this
    /// handle without following a symlink: `lgetxattr` on `/proc/self/fd/N/NAME` (one
    /// call, where opening the file costs four), or, without procfs, on a descriptor
    /// opened as [`Dir::open_file`] does.
    ///
    /// # Errors
    /// The file cannot be reached or its attribute read.
    pub(crate) fn acl_access(&self, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStringExt;
        let name = check_name(name)?;
        let mut via = OsString::from(format!("/proc/self/fd/{}/", self.fd.as_raw_fd()));
        via.push(name);
        let via = std::ffi::CString::new(via.into_vec())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let read = |buf: &mut [u8], f: &dyn Fn(&mut [u8]) -> isize| -> io::Result<Option<usize>> {
            let n = f(buf);
            if n >= 0 {
                return Ok(Some(n as usize));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(nix::libc::ENODATA | nix::libc::EOPNOTSUPP) => Ok(None),
                _ => Err(e),
            }
        };
        // SAFETY: a valid NUL-terminated path and name, and a buffer of the length passed.
        let by_path = |buf: &mut [u8]| unsafe {
            nix::libc::lgetxattr(
                via.as_ptr(),
                fsx::ACL_ACCESS.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        let mut small = [0u8; 1024];
        let got = match read(&mut small, &by_path) {
            Ok(Some(n)) => return Ok(Some(small[..n].to_vec())),
            Ok(None) => return Ok(None),
            Err(e) => e,
        };
        let mut buf = vec![0u8; 65_536];
        if got.raw_os_error() == Some(nix::libc::ERANGE) {
            // More than 1 KiB of ACL: the xattr maximum is 64 KiB.
            return Ok(read(&mut buf, &by_path)?.map(|n| buf[..n].to_vec()));
        }
        // No procfs (or it cannot reach our descriptor): through an opened descriptor.
        let f = self.open_file(name, false)?;
        // SAFETY: a descriptor we own, a valid name and a buffer of the length passed.
        let by_fd = |buf: &mut [u8]| unsafe {
            nix::libc::fgetxattr(
                f.as_raw_fd(),
                fsx::ACL_ACCESS.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        Ok(read(&mut buf, &by_fd)?.map(|n| buf[..n].to_vec()))
    }

    /// Whether the directory has a default ACL (which, not the umask, then decides the
    /// mode of files created in it). Asked once per handle; unreadable counts as yes.
    pub(crate) fn has_default_acl(&self) -> bool {
        use std::os::fd::AsRawFd;
        *self.default_acl.get_or_init(|| {
            // SAFETY: a descriptor we own, a valid name, and a zero-length query.
            let n = unsafe {
                nix::libc::fgetxattr(
                    self.fd.as_raw_fd(),
                    fsx::ACL_DEFAULT.as_ptr(),
                    std::ptr::null_mut(),
                    0,
                )
            };
            n >= 0
                || !matches!(
                    io::Error::last_os_error().raw_os_error(),
                    Some(nix::libc::ENODATA | nix::libc::EOPNOTSUPP)
                )
        })
    }

    /// fsyncs the directory (renames and unlinks in it become durable).
    ///
    /// # Errors
    /// As fsync(2).
    pub fn sync(&self) -> io::Result<()> {
        nix::unistd::fsync(self.fd.as_fd()).map_err(io)
    }

    /// `fchmod` of the directory itself (one caretaker just created).
    ///
    /// # Errors
    /// As fchmod(2).
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        nix::sys::stat::fchmod(&self.fd, Mode::from_bits_truncate(mode & 0o7777)).map_err(io)
    }

    /// `fchown` of the directory itself (one caretaker just created).
    ///
    /// # Errors
    /// As fchown(2).
    pub(crate) fn set_owner(&self, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        nix::unistd::fchown(
            &self.fd,
            uid.map(nix::unistd::Uid::from_raw),
            gid.map(nix::unistd::Gid::from_raw),
        )
        .map_err(io)
    }

    /// The names in the directory (without `.` and `..`) with the kind `readdir` gives.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn entries(&self) -> io::Result<Vec<(OsString, Option<EntryKind>)>> {
        use nix::dir::Type;
        let mut d = nix::dir::Dir::openat(&self.fd, ".", dir_flags(), Mode::empty()).map_err(io)?;
        let mut out = Vec::new();
        for e in d.iter() {
            let e = e.map_err(io)?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let kind = e.file_type().map(|t| match t {
                Type::Directory => EntryKind::Dir,
                Type::Symlink => EntryKind::Symlink,
                _ => EntryKind::Other,
            });
            out.push((OsStr::from_bytes(name).to_owned(), kind));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("inner")).unwrap();
        (t, root, outside)
    }

    #[test]
    fn open_dir_refuses_outside_paths_and_symlinks_below_the_root() {
        let (_t, root, outside) = tree();
        let roots = Roots::new(std::slice::from_ref(&root));
        assert!(roots.open_dir(&root).is_ok());
        assert!(roots.open_dir(&root.join("a/b")).is_ok());
        assert!(matches!(
            roots.open_dir(&outside),
            Err(OpenDirError::Outside { .. })
        ));
        assert!(matches!(
            roots.open_dir(&root.join("a/../../outside")),
            Err(OpenDirError::Outside { .. })
        ));
        // A link that leaves the root, and one that stays inside: both refused.
        for l in ["escape", "inner", "inner/b"] {
            assert!(
                matches!(
                    roots.open_dir(&root.join(l)),
                    Err(OpenDirError::Symlink { .. })
                ),
                "{l}: {:?}",
                roots.open_dir(&root.join(l))
            );
        }
        assert!(
            roots
                .open_dir(&root.join("missing"))
                .unwrap_err()
                .is_not_found()
        );
        std::fs::write(root.join("f"), "").unwrap();
        assert!(roots.open_dir(&root.join("f")).unwrap_err().is_not_dir());
    }

    #[test]
    fn the_per_component_fallback_refuses_symlinks_too() {
        let (_t, root, _outside) = tree();
        let fd = nix::fcntl::open(&root, dir_flags(), Mode::empty()).unwrap();
        assert!(open_per_component(&fd, Path::new("a/b")).is_ok());
        for l in ["escape", "inner", "inner/b", "a/../escape"] {
            let e = open_per_component(&fd, Path::new(l)).unwrap_err();
            assert!(matches!(e, Errno::ELOOP | Errno::EXDEV), "{l}: {e}");
        }
    }

    #[test]
    fn a_handle_keeps_the_directory_it_checked_when_the_path_is_swapped() {
        let (_t, root, outside) = tree();
        let roots = Roots::new(std::slice::from_ref(&root));
        let d = roots.open_dir(&root.join("a")).unwrap();
        std::fs::write(root.join("a/x.log"), "mine").unwrap();
        std::fs::write(outside.join("x.log"), "decoy").unwrap();
        // Swap: a → a-moved, a → symlink to outside.
        std::fs::rename(root.join("a"), root.join("a-moved")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a")).unwrap();
        d.unlink(OsStr::new("x.log")).unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join("x.log")).unwrap(),
            "decoy"
        );
        assert!(!root.join("a-moved/x.log").exists());
    }

    #[test]
    fn rename_noreplace_never_replaces_an_existing_name() {
        let (_t, root, _outside) = tree();
        let d = Roots::new(std::slice::from_ref(&root))
            .open_dir(&root)
            .unwrap();
        let b = d.subdir(OsStr::new("a")).unwrap();
        std::fs::write(root.join("x"), "x").unwrap();
        std::fs::write(root.join("a/y"), "y").unwrap();
        let e = d
            .rename_noreplace(OsStr::new("x"), &b, OsStr::new("y"))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(root.join("a/y")).unwrap(), "y");
        assert_eq!(std::fs::read_to_string(root.join("x")).unwrap(), "x");
        d.rename_noreplace(OsStr::new("x"), &b, OsStr::new("z"))
            .unwrap();
        assert_eq!(std::fs::read_to_string(root.join("a/z")).unwrap(), "x");
        assert!(!root.join("x").exists());
    }

    #[test]
    fn names_must_be_single_components_and_links_are_not_followed() {
        let (_t, root, outside) = tree();
        std::fs::write(outside.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("link")).unwrap();
        let d = Roots::new(std::slice::from_ref(&root))
            .open_dir(&root)
            .unwrap();
        for bad in ["", ".", "..", "a/b", "../outside"] {
            assert_eq!(
                d.stat(OsStr::new(bad)).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
        assert!(d.stat(OsStr::new("link")).unwrap().is_symlink());
        assert_eq!(
            d.open_file(OsStr::new("link"), false)
                .unwrap_err()
                .raw_os_error(),
            Some(nix::libc::ELOOP)
        );
        assert_eq!(
            d.create_new(OsStr::new("link"), 0o600).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("secret")).unwrap(),
            "s"
        );
        nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(
            d.open_file(OsStr::new("fifo"), false).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let mut names: Vec<_> = d.entries().unwrap().into_iter().collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                (OsString::from("a"), Some(EntryKind::Dir)),
                (OsString::from("escape"), Some(EntryKind::Symlink)),
                (OsString::from("fifo"), Some(EntryKind::Other)),
                (OsString::from("inner"), Some(EntryKind::Symlink)),
                (OsString::from("link"), Some(EntryKind::Symlink)),
            ]
        );
    }

    #[test]
    fn the_access_acl_is_read_through_the_handle_without_following_links() {
        let (_t, root, outside) = tree();
        // u::rw-,u:65534:r--,g::r--,m::r--,o::--- in the kernel's xattr format.
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (0x01u16, 6u16, u32::MAX),
            (0x02, 4, 65534),
            (0x04, 4, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            acl.extend_from_slice(&tag.to_le_bytes());
            acl.extend_from_slice(&perm.to_le_bytes());
            acl.extend_from_slice(&id.to_le_bytes());
        }
        std::fs::write(root.join("with"), "").unwrap();
        std::fs::write(root.join("without"), "").unwrap();
        std::fs::write(outside.join("secret"), "").unwrap();
        fsx::set_acl(&File::open(root.join("with")).unwrap(), &acl).unwrap();
        fsx::set_acl(&File::open(outside.join("secret")).unwrap(), &acl).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("link")).unwrap();
        let d = Roots::new(std::slice::from_ref(&root))
            .open_dir(&root)
            .unwrap();
        assert_eq!(d.acl_access(OsStr::new("with")).unwrap(), Some(acl));
        assert_eq!(d.acl_access(OsStr::new("without")).unwrap(), None);
        // The link itself has no ACL (symlinks carry none); its target's is not read.
        assert_ne!(
            d.acl_access(OsStr::new("link")).ok().flatten(),
            d.acl_access(OsStr::new("with")).unwrap()
        );
        assert!(d.acl_access(OsStr::new("missing")).is_err());
        assert!(d.acl_access(OsStr::new("../outside/secret")).is_err());
        assert!(!d.has_default_acl());
    }
}
