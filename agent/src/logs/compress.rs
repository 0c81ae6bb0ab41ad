//! Crash-safe compression of a rotated file.
//!
//! [`compress_file`] writes `.ARCHIVE.caretaker-tmp`, fsyncs it, renames it to the
//! archive name, fsyncs the directory, and only then unlinks the source. A failure at
//! any point (ENOSPC, EIO, a kill) leaves the source intact and at most a temporary file
//! that the next run removes and redoes.
//!
//! gzip is written natively in parallel ([`gzip`]): 1 MiB chunks, each compressed by
//! libdeflate on one of the worker threads into a gzip member, the members in order (the
//! layout of `bgzip`; any gunzip reads it as one stream). libdeflate runs at the level
//! [`gzip_engine_level`] picks: the fastest whose output stays within 1.02× of
//! `gzip -LEVEL`'s. zstd goes through libzstd with its own worker threads, at the level
//! [`zstd_engine_level`] picks by the same rule.
//!
//! A writer that still has the rotated file open would write into an unlinked file once
//! the source goes, and those lines would be lost. So before compressing, a read lease
//! ([`fsx::WriteWatch`]) asks the kernel whether anyone has the file open for writing:
//! if so, compression is deferred to the log's next rotation (the file stays as it is,
//! an uncompressed archive, which that rotation compresses first, as with
//! `delaycompress`). The lease stays held while the
//! file is compressed; a writer that opens it meanwhile breaks the lease, and the
//! compression is abandoned before the source is touched. A writer that opens it
//! between the last check and the unlink (a window of one syscall) is waited for, up to
//! [`WRITER_WAIT`]. Bytes that arrive after the source is unlinked (read through the
//! still-open descriptor) are appended as one more gzip member or zstd frame, which
//! decoders concatenate. On filesystems without leases (overlayfs, NFS) or without the
//! privilege to take one (a file the agent does not own, without CAP_LEASE), only the
//! tail-following guard applies; this is said in LOGS.md.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::fsx;
use super::handle::Dir;
use super::policy::Compressor;

/// Input chunk per gzip member (and per compression job).
const CHUNK: usize = 1 << 20;
/// How long compression waits for a writer that opened the rotated file in the last
/// instant before it was unlinked to close it again.
pub(crate) const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The error kind [`compress_file`] returns when a writer has the file open: the caller
/// defers the compression (not an error).
pub(crate) const IN_USE: io::ErrorKind = io::ErrorKind::ResourceBusy;

fn in_use(src: &Path) -> io::Error {
    io::Error::new(
        IN_USE,
        format!(
            "{} is open for writing; compression deferred to the next rotation",
            src.display()
        ),
    )
}

/// Bytes in and out of one compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compressed {
    pub(crate) bytes_in: u64,
    pub bytes_out: u64,
}

/// A hook that tests use to fail at a named step (`"write"`, `"fsync"`, `"rename"`,
/// `"unlink"`), as a crash or ENOSPC would.
pub(crate) type FailHook<'a> = &'a dyn Fn(&str) -> io::Result<()>;

/// No failures.
pub fn no_fail(_: &str) -> io::Result<()> {
    Ok(())
}

/// Compresses `src` into `dst`, both paths in one directory that the caller trusts
/// (tests, benchmarks). The engine uses [`compress_at`] with a handle opened below the
/// roots.
///
/// # Errors
/// See [`compress_at`].
pub fn compress_file(
    src: &Path,
    dst: &Path,
    how: &Compressor,
    threads: usize,
    fail: FailHook<'_>,
) -> io::Result<Compressed> {
    let dir = src.parent().unwrap_or(Path::new("/"));
    if dst.parent() != Some(dir) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "source and archive must be in one directory",
        ));
    }
    let (Some(s), Some(d)) = (src.file_name(), dst.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "source and archive must be file paths",
        ));
    };
    compress_at(&Dir::open_trusted(dir)?, s, d, how, threads, fail)
}

/// Compresses `src` into `dst`, both names in `dir` (see the module docs for the
/// guarantees). Every file operation is relative to the handle: the source is opened
/// without following a link, the temporary is created with `O_EXCL | O_NOFOLLOW`.
///
/// # Errors
/// Any I/O error; `src` is then untouched and no file named `dst` was created by this
/// call. An error of kind [`IN_USE`] means a writer has `src` open.
pub(crate) fn compress_at(
    dir: &Dir,
    src: &OsStr,
    dst: &OsStr,
    how: &Compressor,
    threads: usize,
    fail: FailHook<'_>,
) -> io::Result<Compressed> {
    let src_path = dir.display(src);
    let src_path = src_path.as_path();
    let input = dir.open_file(src, false)?;
    let meta = input.metadata()?;
    let watch = match fsx::WriteWatch::take(&input) {
        fsx::Writers::Open => return Err(in_use(src_path)),
        fsx::Writers::None(w) => Some(w),
        fsx::Writers::Unknown => None,
    };
    let tmp = fsx::temp_file_name(dst);
    // A leftover (or a planted link) at the temporary name goes; it is never followed.
    let _ = dir.unlink(&tmp);
    let out = dir.create_new(&tmp, meta.mode() & 0o777)?;
    let result = (|| {
        // The archive keeps the rotated file's owner, as gzip does; not being root is fine.
        let _ = std::os::unix::fs::fchown(&out, Some(meta.uid()), Some(meta.gid()));
        let mut reader = Following {
            file: &input,
            pos: 0,
            checks_left: 3,
        };
        let mut w = CountingWriter {
            inner: &out,
            n: 0,
            fail,
        };
        encode(how, &mut reader, &mut w, threads, src_path)?;
        w.flush()?;
        fail("fsync")?;
        out.sync_all()?;
        if watch.as_ref().is_some_and(fsx::WriteWatch::broken) {
            return Err(in_use(src_path));
        }
        fail("rename")?;
        Ok::<_, io::Error>((reader.pos, w.n))
    })();
    let (bytes_in, mut bytes_out) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = dir.unlink(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = dir.rename(&tmp, dir, dst) {
        let _ = dir.unlink(&tmp);
        return Err(e);
    }
    dir.sync()?;
    fail("unlink")?;
    dir.unlink(src)?;
    // Bytes a writer appended after the last size check are still readable through our
    // descriptor: keep them as one more member/frame. A writer that opened the file in
    // the last instant (it broke the lease) is let go and waited for until it closes.
    let mut tail = Vec::new();
    let mut r = Following {
        file: &input,
        pos: bytes_in,
        checks_left: 1,
    };
    if watch.as_ref().is_some_and(fsx::WriteWatch::broken) {
        drop(watch);
        let deadline = std::time::Instant::now() + WRITER_WAIT;
        loop {
            let closed = matches!(fsx::WriteWatch::take(&input), fsx::Writers::None(_));
            r.read_to_end(&mut tail)?;
            if closed {
                break;
            }
            if std::time::Instant::now() >= deadline {
                tracing::warn!(path = %src_path.display(), "A writer still has the rotated file open after it was compressed; what it writes from now on is lost.");
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    r.read_to_end(&mut tail)?;
    let mut total_in = bytes_in;
    if !tail.is_empty() && !matches!(how, Compressor::External { .. }) {
        // `out` is still open at the archive's end (the rename kept the inode).
        let mut w = CountingWriter {
            inner: &out,
            n: 0,
            fail,
        };
        encode(how, &mut &tail[..], &mut w, 1, src_path)?;
        out.sync_all()?;
        bytes_out += w.n;
        total_in += tail.len() as u64;
    }
    Ok(Compressed {
        bytes_in: total_in,
        bytes_out,
    })
}

fn encode(
    how: &Compressor,
    input: &mut (dyn Read + Send),
    out: &mut dyn Write,
    threads: usize,
    src: &Path,
) -> io::Result<()> {
    match how {
        Compressor::Gzip { level } => gzip(input, out, *level, threads),
        Compressor::Zstd { level } => {
            let mut enc = zstd::stream::write::Encoder::new(out, zstd_engine_level(*level))?;
            if threads > 1 {
                enc.multithread(threads as u32)?;
            }
            // Large reads: io::copy's 8 KiB buffer costs a syscall per 8 KiB.
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = input.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                enc.write_all(&buf[..n])?;
            }
            enc.finish()?;
            Ok(())
        }
        Compressor::External { command, options } => {
            let mut child = std::process::Command::new(command)
                .args(options)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| io::Error::other(format!("cannot run {}: {e}", command.display())))?;
            let mut stdin = child
                .stdin
                .take()
                .ok_or_else(|| io::Error::other("no stdin"))?;
            let mut stdout = child
                .stdout
                .take()
                .ok_or_else(|| io::Error::other("no stdout"))?;
            std::thread::scope(|s| {
                let feeder = s.spawn(move || io::copy(input, &mut stdin).map(|_| ()));
                let r = io::copy(&mut stdout, out);
                let f = feeder
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("feeder panicked")));
                r.and(f)
            })?;
            let status = child.wait()?;
            if !status.success() {
                return Err(io::Error::other(format!(
                    "{} {} failed on {}: {status}",
                    command.display(),
                    options.join(" "),
                    src.display()
                )));
            }
            Ok(())
        }
    }
}

/// Reads a file to its end, and at the end checks (a few times) whether it grew.
struct Following<'a> {
    file: &'a File,
    pos: u64,
    checks_left: u32,
}

impl Read for Following<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        loop {
            let n = self.file.read_at(buf, self.pos)?;
            if n > 0 {
                self.pos += n as u64;
                return Ok(n);
            }
            if self.checks_left == 0 || self.file.metadata()?.len() <= self.pos {
                return Ok(0);
            }
            self.checks_left -= 1;
        }
    }
}

struct CountingWriter<'a, 'f> {
    inner: &'a File,
    n: u64,
    fail: FailHook<'f>,
}

impl Write for CountingWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (self.fail)("write")?;
        let n = (&*self.inner).write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The libdeflate level used for a requested gzip level (1–9, as `gzip -LEVEL`): the
/// fastest level whose output stays within 1.02× of GNU gzip's at the requested level.
///
/// Measured (see `agent/benches/logs.rs`) on two kinds of log text, the benchmark's
/// container JSON lines and klog-style kubelet lines, 1 MiB chunks as written here, sizes
/// relative to `gzip -LEVEL` (GNU gzip 1.12):
///
/// | asked | used | JSON lines | klog lines | single-thread speed vs `gzip -LEVEL` (JSON) |
/// |---|---|---|---|---|
/// | 1, 2, 3 | 1 | 0.91–1.01× | 0.93–1.00× | |
/// | 4 | 3 | 0.98× | 0.99× | |
/// | 5, 6, 7 | 5 | 0.92–1.00× | 0.96–1.00× | 3.9× `gzip -6` |
/// | 8, 9 | 6 | 0.92× | 0.99× | |
///
/// libdeflate level 4 is 1.06× `gzip -6` on the JSON lines, so `gzip -6` (logrotate's
/// `compress`) maps to 5. Out-of-range levels are clamped.
pub(crate) fn gzip_engine_level(requested: u32) -> i32 {
    match requested {
        0..=3 => 1,
        4 => 3,
        5..=7 => 5,
        _ => 6,
    }
}

/// The zstd level used for a requested one (1–19, as `zstd -LEVEL`), by the rule of
/// [`gzip_engine_level`]: the fastest level whose output stays within 1.02× of
/// `zstd -LEVEL`'s. On both log texts measured, level 1 is 1.3–1.8× faster than levels
/// 2–5 and its output no larger than theirs within 2 % (JSON lines: 0.93× level 3's; klog
/// lines: 0.98×), so 1–5 use level 1 (`zstd` without a level means 3). From level 6 on
/// the level is used as asked.
pub(crate) fn zstd_engine_level(requested: i32) -> i32 {
    if requested <= 5 { 1 } else { requested.min(19) }
}

/// Writes everything `input` yields as gzip: the input is cut into 1 MiB chunks, each
/// compressed by libdeflate on one of `threads` workers into a gzip member of its own, the
/// members written in order (RFC 1952 §2.2: a gzip file is a series of members; every
/// gunzip reads them as one stream, as it reads `bgzip` output). While the workers
/// compress, another thread reads ahead, so reading, compressing and writing overlap.
/// `level` is gzip's (1–9), mapped by [`gzip_engine_level`]. Empty input gives one empty
/// member.
///
/// # Errors
/// Read or write errors.
pub fn gzip(
    input: &mut (dyn Read + Send),
    out: &mut dyn Write,
    level: u32,
    threads: usize,
) -> io::Result<()> {
    use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
    let threads = threads.clamp(1, 64);
    let lvl = libdeflater::CompressionLvl::new(gzip_engine_level(level))
        .map_err(|e| io::Error::other(format!("libdeflate level: {e:?}")))?;
    std::thread::scope(|s| {
        // Chunk i goes to worker i % threads; its member comes back on that worker's
        // result channel, so reading the result channels round-robin restores the order.
        let mut to_workers: Vec<SyncSender<Vec<u8>>> = Vec::with_capacity(threads);
        let mut from_workers: Vec<Receiver<io::Result<Vec<u8>>>> = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (job_tx, job_rx) = sync_channel::<Vec<u8>>(1);
            let (res_tx, res_rx) = sync_channel::<io::Result<Vec<u8>>>(1);
            to_workers.push(job_tx);
            from_workers.push(res_rx);
            s.spawn(move || {
                let mut c = libdeflater::Compressor::new(lvl);
                for chunk in job_rx {
                    let mut member = vec![0u8; c.gzip_compress_bound(chunk.len())];
                    let r = c.gzip_compress(&chunk, &mut member).map(|n| {
                        member.truncate(n);
                        member
                    });
                    if res_tx.send(r.map_err(io::Error::other)).is_err() {
                        break;
                    }
                }
            });
        }
        // The reader: a read error ends the stream there and is returned after the
        // members before it are written (the caller then discards the output).
        let reader = s.spawn(move || -> io::Result<u64> {
            let mut n = 0u64;
            loop {
                let chunk = read_chunk(input, CHUNK)?;
                if chunk.is_empty() {
                    // Empty input still needs one (empty) member to be a gzip file.
                    if n == 0 {
                        let _ = to_workers[0].send(Vec::new());
                        n = 1;
                    }
                    return Ok(n);
                }
                let last = chunk.len() < CHUNK;
                if to_workers[(n % threads as u64) as usize]
                    .send(chunk)
                    .is_err()
                {
                    return Ok(n);
                }
                n += 1;
                if last {
                    return Ok(n);
                }
            }
        });
        let mut i = 0usize;
        // A worker's result channel closes when the reader has no more chunks for it.
        while let Ok(member) = from_workers[i % threads].recv() {
            out.write_all(&member?)?;
            i += 1;
        }
        drop(from_workers);
        reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("gzip reader thread panicked")))?;
        Ok(())
    })
}

fn read_chunk(input: &mut dyn Read, size: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(size);
    input.take(size as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::MultiGzDecoder;

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        MultiGzDecoder::new(b).read_to_end(&mut out).unwrap();
        out
    }

    fn sample(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        let mut i = 0u64;
        while v.len() < n {
            v.extend_from_slice(
                format!(
                    "2024-01-01T00:00:{:02}Z INFO req={i} path=/api/v1/items/{} status=200\n",
                    i % 60,
                    i * 7919 % 10007
                )
                .as_bytes(),
            );
            i += 1;
        }
        v.truncate(n);
        v
    }

    /// Members in the output: gzip headers at the offsets a member-by-member walk finds.
    fn members(gz: &[u8]) -> usize {
        let mut d = flate2::bufread::GzDecoder::new(gz);
        let mut n = 0;
        loop {
            let mut sink = Vec::new();
            d.read_to_end(&mut sink).unwrap();
            n += 1;
            let rest = d.into_inner();
            if rest.is_empty() {
                return n;
            }
            d = flate2::bufread::GzDecoder::new(rest);
        }
    }

    #[test]
    fn parallel_gzip_round_trips_at_chunk_edges_with_one_member_per_chunk() {
        for threads in [1, 2, 3] {
            for (n, want_members) in [
                (0, 1),
                (1, 1),
                (CHUNK - 1, 1),
                (CHUNK, 1),
                (CHUNK + 1, 2),
                (3 * CHUNK + 17, 4),
            ] {
                let data = sample(n);
                let mut out = Vec::new();
                gzip(&mut &data[..], &mut out, 6, threads).unwrap();
                assert!(gunzip(&out) == data, "n = {n}, threads = {threads}");
                assert_eq!(members(&out), want_members, "n = {n}, threads = {threads}");
            }
        }
    }

    #[test]
    fn a_read_error_is_returned_not_a_short_archive() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::from_raw_os_error(nix::libc::EIO));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(b'a');
                self.0 -= n;
                Ok(n)
            }
        }
        let mut out = Vec::new();
        let err = gzip(&mut Failing(3 * CHUNK + 5), &mut out, 6, 2).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::EIO));
    }

    #[test]
    fn requested_levels_map_to_the_measured_engine_levels() {
        assert_eq!(
            (1..=9).map(gzip_engine_level).collect::<Vec<_>>(),
            vec![1, 1, 1, 3, 5, 5, 5, 6, 6]
        );
        assert_eq!(
            [1, 3, 5, 6, 19, 22].map(zstd_engine_level),
            [1, 1, 1, 6, 19, 19]
        );
    }

    #[test]
    fn gnu_gunzip_reads_the_parallel_output() {
        let data = sample(2 * CHUNK + 5);
        let mut out = Vec::new();
        gzip(&mut &data[..], &mut out, 6, 2).unwrap();
        let mut child = std::process::Command::new("gzip")
            .args(["-dc"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip is installed (tests/services/logrotate.sh)");
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&out));
        let res = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(res.status.success());
        assert!(res.stdout == data);
    }

    #[test]
    fn compress_file_replaces_the_source_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.log.1");
        let dst = dir.path().join("a.log.1.gz");
        let data = sample(300_000);
        std::fs::write(&src, &data).unwrap();
        for step in ["write", "fsync", "rename", "unlink"] {
            let fail = |s: &str| {
                if s == step {
                    Err(io::Error::from_raw_os_error(nix::libc::ENOSPC))
                } else {
                    Ok(())
                }
            };
            let err =
                compress_file(&src, &dst, &Compressor::Gzip { level: 6 }, 2, &fail).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(nix::libc::ENOSPC), "{step}");
            assert_eq!(
                std::fs::read(&src).unwrap(),
                data,
                "source intact after failing at {step}"
            );
            assert!(
                !fsx::temp_name(&dst).exists(),
                "no temporary left after {step}"
            );
            if step != "unlink" {
                assert!(!dst.exists(), "no archive after failing at {step}");
            }
        }
        let c = compress_file(&src, &dst, &Compressor::Gzip { level: 6 }, 2, &no_fail).unwrap();
        assert_eq!(c.bytes_in, data.len() as u64);
        assert_eq!(c.bytes_out, std::fs::metadata(&dst).unwrap().len());
        assert!(!src.exists());
        assert!(gunzip(&std::fs::read(&dst).unwrap()) == data);
    }

    #[test]
    fn zstd_archive_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("b.log.1");
        let dst = dir.path().join("b.log.1.zst");
        let data = sample(200_000);
        std::fs::write(&src, &data).unwrap();
        compress_file(&src, &dst, &Compressor::Zstd { level: 3 }, 2, &no_fail).unwrap();
        let back = zstd::stream::decode_all(&std::fs::read(&dst).unwrap()[..]).unwrap();
        assert!(back == data);
    }
}
