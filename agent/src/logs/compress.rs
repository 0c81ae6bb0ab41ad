//! Crash-safe compression of a rotated file.
//!
//! [`compress_file`] writes `.ARCHIVE.caretaker-tmp`, fsyncs it, renames it to the
//! archive name, fsyncs the directory, and only then unlinks the source. A failure at
//! any point (ENOSPC, EIO, a kill) leaves the source intact and at most a temporary file
//! that the next run removes and redoes.
//!
//! gzip is written natively in parallel, the way `pigz` does it: the input is cut into
//! 1 MiB chunks, each compressed on its own thread as raw deflate primed with the 32 KiB
//! before it and ended with a sync flush, the pieces concatenated in order, the CRC-32s
//! combined. The result is one ordinary gzip member (any gunzip reads it) within a
//! fraction of a percent of `gzip -6`'s size. zstd goes through libzstd with its own
//! worker threads.
//!
//! A writer that still has the rotated file open would write into an unlinked file once
//! the source goes, and those lines would be lost. So before compressing, a read lease
//! ([`fsx::WriteWatch`]) asks the kernel whether anyone has the file open for writing:
//! if so, compression is deferred to the next pass (the file stays as it is, an
//! uncompressed archive, which the next pass finishes). The lease stays held while the
//! file is compressed; a writer that opens it meanwhile breaks the lease, and the
//! compression is abandoned before the source is touched. A writer that opens it
//! between the last check and the unlink (a window of one syscall) is waited for, up to
//! [`WRITER_WAIT`]. Bytes that arrive after the source is unlinked (read through the
//! still-open descriptor) are appended as one more gzip member or zstd frame, which
//! decoders concatenate. On filesystems without leases (overlayfs, NFS) or without the
//! privilege to take one (a file the agent does not own, without CAP_LEASE), only the
//! tail-following guard applies; this is said in LOGS.md.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use flate2::{Compress, Compression, FlushCompress};

use super::fsx;
use super::policy::Compressor;

/// Input chunk per deflate job.
const CHUNK: usize = 1 << 20;
/// Deflate's window: the dictionary carried from one chunk into the next.
const WINDOW: usize = 32 * 1024;
/// How long compression waits for a writer that opened the rotated file in the last
/// instant before it was unlinked to close it again.
pub const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The error kind [`compress_file`] returns when a writer has the file open: the caller
/// defers the compression (not an error).
pub const IN_USE: io::ErrorKind = io::ErrorKind::ResourceBusy;

fn in_use(src: &Path) -> io::Error {
    io::Error::new(IN_USE, format!("{} is open for writing; compression deferred to the next pass", src.display()))
}

/// Bytes in and out of one compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compressed {
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// A hook that tests use to fail at a named step (`"write"`, `"fsync"`, `"rename"`,
/// `"unlink"`), as a crash or ENOSPC would.
pub type FailHook<'a> = &'a dyn Fn(&str) -> io::Result<()>;

/// No failures.
pub fn no_fail(_: &str) -> io::Result<()> {
    Ok(())
}

/// Compresses `src` into `dst` (see the module docs for the guarantees).
///
/// # Errors
/// Any I/O error; `src` is then untouched and no file named `dst` was created by this
/// call. An error of kind [`IN_USE`] means a writer has `src` open.
pub fn compress_file(src: &Path, dst: &Path, how: &Compressor, threads: usize, fail: FailHook<'_>) -> io::Result<Compressed> {
    let input = fsx::open_nofollow(src)?;
    let meta = input.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!("{} is not a regular file", src.display())));
    }
    let watch = match fsx::WriteWatch::take(&input) {
        fsx::Writers::Open => return Err(in_use(src)),
        fsx::Writers::None(w) => Some(w),
        fsx::Writers::Unknown => None,
    };
    let tmp = fsx::temp_name(dst);
    let _ = std::fs::remove_file(&tmp);
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(meta.mode() & 0o777)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&tmp)?;
    let result = (|| {
        // The archive keeps the rotated file's owner, as gzip does; not being root is fine.
        let _ = std::os::unix::fs::fchown(&out, Some(meta.uid()), Some(meta.gid()));
        let mut reader = Following { file: &input, pos: 0, checks_left: 3 };
        let mut out = CountingWriter { inner: &out, n: 0, fail };
        encode(how, &mut reader, &mut out, threads, src)?;
        out.flush()?;
        fail("fsync")?;
        out.inner.sync_all()?;
        if watch.as_ref().is_some_and(fsx::WriteWatch::broken) {
            return Err(in_use(src));
        }
        fail("rename")?;
        Ok::<_, io::Error>((reader.pos, out.n))
    })();
    let (bytes_in, mut bytes_out) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = std::fs::rename(&tmp, dst) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let dir = dst.parent().unwrap_or(Path::new("/"));
    fsx::sync_dir(dir)?;
    fail("unlink")?;
    std::fs::remove_file(src)?;
    // Bytes a writer appended after the last size check are still readable through our
    // descriptor: keep them as one more member/frame. A writer that opened the file in
    // the last instant (it broke the lease) is let go and waited for until it closes.
    let mut tail = Vec::new();
    let mut r = Following { file: &input, pos: bytes_in, checks_left: 1 };
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
                tracing::warn!(path = %src.display(), "A writer still has the rotated file open after it was compressed; what it writes from now on is lost.");
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    r.read_to_end(&mut tail)?;
    let mut total_in = bytes_in;
    if !tail.is_empty() && !matches!(how, Compressor::External { .. }) {
        let f = std::fs::OpenOptions::new().append(true).custom_flags(nix::libc::O_NOFOLLOW).open(dst)?;
        let mut w = CountingWriter { inner: &f, n: 0, fail };
        encode(how, &mut &tail[..], &mut w, 1, src)?;
        f.sync_all()?;
        bytes_out += w.n;
        total_in += tail.len() as u64;
    }
    if src.parent() != Some(dir) {
        fsx::sync_dir(src.parent().unwrap_or(Path::new("/")))?;
    }
    Ok(Compressed { bytes_in: total_in, bytes_out })
}

fn encode(how: &Compressor, input: &mut (dyn Read + Send), out: &mut dyn Write, threads: usize, src: &Path) -> io::Result<()> {
    match how {
        Compressor::Gzip { level } => gzip(input, out, *level, threads),
        Compressor::Zstd { level } => {
            let mut enc = zstd::stream::write::Encoder::new(out, *level)?;
            if threads > 1 {
                enc.multithread(threads as u32)?;
            }
            io::copy(input, &mut enc)?;
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
            let mut stdin = child.stdin.take().ok_or_else(|| io::Error::other("no stdin"))?;
            let mut stdout = child.stdout.take().ok_or_else(|| io::Error::other("no stdout"))?;
            std::thread::scope(|s| {
                let feeder = s.spawn(move || io::copy(input, &mut stdin).map(|_| ()));
                let r = io::copy(&mut stdout, out);
                let f = feeder.join().unwrap_or_else(|_| Err(io::Error::other("feeder panicked")));
                r.and(f)
            })?;
            let status = child.wait()?;
            if !status.success() {
                return Err(io::Error::other(format!("{} {} failed on {}: {status}", command.display(), options.join(" "), src.display())));
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

/// Writes one gzip member of everything `input` yields, deflating `threads` chunks at a
/// time in parallel (see the module docs).
///
/// # Errors
/// Read or write errors.
pub fn gzip(input: &mut dyn Read, out: &mut dyn Write, level: u32, threads: usize) -> io::Result<()> {
    let threads = threads.max(1);
    // RFC 1952 header: no name, no mtime, OS = Unix.
    out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])?;
    let mut crc = crc32fast::Hasher::new();
    let mut total: u64 = 0;
    let mut dict: Vec<u8> = Vec::new();
    loop {
        let mut chunks = Vec::with_capacity(threads);
        for _ in 0..threads {
            let c = read_chunk(input, CHUNK)?;
            if c.is_empty() {
                break;
            }
            chunks.push(c);
        }
        if chunks.is_empty() {
            break;
        }
        let dicts: Vec<&[u8]> = (0..chunks.len())
            .map(|i| if i == 0 { &dict[..] } else { tail(&chunks[i - 1]) })
            .collect();
        let results: Vec<io::Result<(Vec<u8>, crc32fast::Hasher)>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .zip(&dicts)
                .skip(1)
                .map(|(c, d)| s.spawn(move || deflate_chunk(c, d, level)))
                .collect();
            let mut res = vec![deflate_chunk(&chunks[0], dicts[0], level)];
            res.extend(handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("deflate thread panicked")))));
            res
        });
        for r in results {
            let (bytes, h) = r?;
            out.write_all(&bytes)?;
            crc.combine(&h);
        }
        total += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
        let last = chunks.pop().unwrap_or_default();
        dict = tail(&last).to_vec();
        if last.len() < CHUNK {
            break;
        }
    }
    // A final, empty fixed-Huffman block ends the deflate stream.
    out.write_all(&[0x03, 0x00])?;
    out.write_all(&crc.finalize().to_le_bytes())?;
    out.write_all(&(total as u32).to_le_bytes())?;
    Ok(())
}

fn tail(b: &[u8]) -> &[u8] {
    &b[b.len().saturating_sub(WINDOW)..]
}

fn read_chunk(input: &mut dyn Read, size: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(size);
    input.take(size as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

fn deflate_chunk(data: &[u8], dict: &[u8], level: u32) -> io::Result<(Vec<u8>, crc32fast::Hasher)> {
    let mut h = crc32fast::Hasher::new();
    h.update(data);
    let mut c = Compress::new(Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(data.len() / 3 + 1024);
    loop {
        if out.capacity() - out.len() < 16 * 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = c.total_in() as usize;
        c.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync).map_err(io::Error::other)?;
        // Done when all input is in and the flush left room to spare.
        if c.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
    }
    Ok((out, h))
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
            v.extend_from_slice(format!("2024-01-01T00:00:{:02}Z INFO req={i} path=/api/v1/items/{} status=200\n", i % 60, i * 7919 % 10007).as_bytes());
            i += 1;
        }
        v.truncate(n);
        v
    }

    #[test]
    fn parallel_gzip_is_one_member_that_round_trips_at_chunk_edges() {
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let data = sample(n);
            let mut out = Vec::new();
            gzip(&mut &data[..], &mut out, 6, 2).unwrap();
            // flate2's single-member decoder proves it is one member.
            let mut single = Vec::new();
            flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut single).unwrap();
            assert_eq!(single.len(), data.len(), "n = {n}");
            assert!(single == data, "n = {n}");
        }
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
            let fail = |s: &str| if s == step { Err(io::Error::from_raw_os_error(nix::libc::ENOSPC)) } else { Ok(()) };
            let err = compress_file(&src, &dst, &Compressor::Gzip { level: 6 }, 2, &fail).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(nix::libc::ENOSPC), "{step}");
            assert_eq!(std::fs::read(&src).unwrap(), data, "source intact after failing at {step}");
            assert!(!fsx::temp_name(&dst).exists(), "no temporary left after {step}");
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
