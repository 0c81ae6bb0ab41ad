//! One pass over one log file's records: every pattern counted at once, in a fixed-size
//! read buffer, with partial records (`P`) joined up to a cap.
//!
//! How it stays fast: lines that end in `F`, start no join and lie in the window
//! ("plain" lines, nearly all of them) are not matched one by one; a run of them is
//! searched in one go, and only a line holding a candidate is matched with the pattern
//! set. The search is the patterns' required literals (see
//! [`super::matcher::required_literals`]) with aho-corasick (Teddy, SIMD) in an
//! ASCII-lowercased copy of the run, or the union regex of all patterns when some pattern
//! has no such literals. The rest (joins, lines outside the window, over-long lines)
//! takes the per-line path.
//!
//! How it stays bounded: the buffer is [`READ_BUFFER_BYTES`] (and its lowercased copy as
//! much); a joined line keeps at most
//! [`MAX_LINE_BYTES`] of content. A logical line longer than that is counted once per
//! pattern that matches within its first [`MAX_LINE_BYTES`] bytes, and the rest of it is
//! read and dropped without being held (a 100 MB line costs 100 MB of reading, not of
//! memory).

use std::io::{self, Read};

use super::cri::{self, Record};
use super::matcher::Matcher;

/// The read buffer, allocated once per scanner.
pub(crate) const READ_BUFFER_BYTES: usize = 256 * 1024;
/// The longest logical line (joined content) matched; longer lines are matched on their
/// first this many bytes.
pub(crate) const MAX_LINE_BYTES: usize = 64 * 1024;

/// The time window, in Unix seconds: `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: i64,
    pub to: i64,
}

impl Window {
    pub fn contains(&self, t: i64) -> bool {
        self.from <= t && t < self.to
    }
}

/// Receives what a scan finds.
pub(crate) trait Sink {
    /// A logical line at `unix_seconds` matched pattern `pattern`; `line` is its content
    /// (at most [`MAX_LINE_BYTES`]).
    fn hit(&mut self, unix_seconds: i64, pattern: usize, line: &[u8]);
}

/// What to do with the end of the data: a record without its newline, a join whose `F`
/// record has not come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tail {
    /// The data is complete (the CLI, a rotated file): count them.
    Flush,
    /// The file is still written (the daemon's current log): leave them for the next
    /// check; [`ScanEnd::resume_at`] points at their start.
    Keep,
}

/// Records being dropped after a line passed [`MAX_LINE_BYTES`] (it was counted already).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Skip {
    #[default]
    None,
    /// The bytes up to the next newline, then (`then_until_f`) whole records up to and
    /// including the next `F` record.
    RestOfRecord { then_until_f: bool },
    /// Whole records up to and including the next `F` record.
    UntilF,
}

/// The result of one scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScanEnd {
    /// Bytes read from the reader.
    pub bytes_read: u64,
    /// Where the next scan of the same data resumes (relative to the reader's start):
    /// after the last record counted, or at the start of a join still open.
    pub(crate) resume_at: u64,
    /// The skip state to resume with.
    pub skip: Skip,
    /// Logical lines in the window that were looked at.
    pub lines: u64,
    /// Lines that are not CRI records (skipped).
    pub malformed: u64,
}

/// A scanner: its buffers are allocated once and reused for every file.
#[derive(Debug)]
pub(crate) struct Scanner {
    buf: Box<[u8]>,
    /// An ASCII-lowercased copy of runs of `buf`, for the matcher's literal prefilter.
    lowered: Box<[u8]>,
    joined: Vec<u8>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self {
            buf: vec![0; READ_BUFFER_BYTES].into_boxed_slice(),
            lowered: vec![0; READ_BUFFER_BYTES].into_boxed_slice(),
            joined: Vec::with_capacity(MAX_LINE_BYTES),
        }
    }
}

/// An open join of `P` records.
#[derive(Debug, Clone, Copy)]
struct Chain {
    /// Offset of its first record.
    start: u64,
    /// Time of its first record (the line's time).
    unix_seconds: i64,
}

struct Pass<'a, S: Sink> {
    matcher: &'a Matcher,
    times: cri::TimeCache,
    lowered: &'a mut [u8],
    window: Window,
    sink: &'a mut S,
    joined: &'a mut Vec<u8>,
    chain: Option<Chain>,
    skip: Skip,
    lines: u64,
    malformed: u64,
}

impl Scanner {
    /// Memory held by this scanner's buffers, in bytes; it does not grow with the input.
    #[cfg(test)]
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.buf.len() + self.lowered.len() + self.joined.capacity()
    }

    /// Scans `reader` from its current position to its end.
    ///
    /// # Errors
    /// A read error; what was counted before it stays counted.
    pub(crate) fn scan<R: Read, S: Sink>(
        &mut self,
        mut reader: R,
        matcher: &Matcher,
        window: Window,
        skip: Skip,
        tail: Tail,
        sink: &mut S,
    ) -> io::Result<ScanEnd> {
        self.joined.clear();
        let mut pass = Pass {
            matcher,
            times: cri::TimeCache::default(),
            lowered: &mut self.lowered,
            window,
            sink,
            joined: &mut self.joined,
            chain: None,
            skip,
            lines: 0,
            malformed: 0,
        };
        let buf = &mut self.buf;
        // `base`: the offset of buf[0]; `filled`: bytes in buf.
        let (mut base, mut filled, mut bytes_read) = (0u64, 0usize, 0u64);
        loop {
            let n = match reader.read(&mut buf[filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            bytes_read += n as u64;
            let eof = n == 0;
            filled += n;
            let mut pos = 0;
            if let Skip::RestOfRecord { then_until_f } = pass.skip {
                match memchr::memchr(b'\n', &buf[..filled]) {
                    Some(i) => {
                        pos = i + 1;
                        pass.skip = if then_until_f {
                            Skip::UntilF
                        } else {
                            Skip::None
                        };
                    }
                    None => {
                        base += filled as u64;
                        filled = 0;
                        if eof {
                            break;
                        }
                        continue;
                    }
                }
            }
            let end = match memchr::memrchr(b'\n', &buf[pos..filled]) {
                Some(i) => pos + i + 1,
                None => pos,
            };
            pass.lines_in(buf, pos, end, base);
            if eof {
                let rest = &buf[end..filled];
                if tail == Tail::Flush {
                    if !rest.is_empty() {
                        pass.line(rest, base + end as u64);
                    }
                    pass.close_chain();
                    base += filled as u64;
                } else {
                    base += end as u64;
                }
                break;
            }
            if end == 0 && filled == buf.len() {
                // One record fills the whole buffer: match its head, drop the rest.
                let head = &buf[..filled];
                match cri::parse(head) {
                    Some(rec) if pass.skip == Skip::UntilF => {
                        if !rec.partial {
                            pass.skip = Skip::None;
                        }
                        pass.skip = Skip::RestOfRecord {
                            then_until_f: pass.skip == Skip::UntilF,
                        };
                    }
                    Some(rec) => {
                        pass.slow(rec, base);
                        pass.close_chain();
                        pass.skip = Skip::RestOfRecord {
                            then_until_f: rec.partial,
                        };
                    }
                    None => {
                        pass.malformed += 1;
                        pass.skip = Skip::RestOfRecord {
                            then_until_f: false,
                        };
                    }
                }
                base += filled as u64;
                filled = 0;
                continue;
            }
            buf.copy_within(end..filled, 0);
            base += end as u64;
            filled -= end;
        }
        let resume_at = pass.chain.map_or(base, |c| c.start);
        Ok(ScanEnd {
            bytes_read,
            resume_at,
            skip: pass.skip,
            lines: pass.lines,
            malformed: pass.malformed,
        })
    }
}

impl<S: Sink> Pass<'_, S> {
    /// The complete lines in `buf[pos..end]` (`end` just after a newline, or `pos`).
    fn lines_in(&mut self, buf: &[u8], pos: usize, end: usize, base: u64) {
        if self.bulk(buf, pos, end) {
            return;
        }
        let mut run: Option<usize> = None;
        let mut i = pos;
        while i < end {
            let nl = memchr::memchr(b'\n', &buf[i..end]).map_or(end, |k| i + k);
            let line = &buf[i..nl];
            let plain = self.skip == Skip::None
                && self.chain.is_none()
                && !self.matcher.per_line()
                && match cri::parse_cached(line, &mut self.times) {
                    Some(r) => {
                        !r.partial
                            && r.content.len() <= MAX_LINE_BYTES
                            && self.window.contains(r.unix_seconds)
                    }
                    None => false,
                };
            if plain {
                self.lines += 1;
                run.get_or_insert(i);
            } else {
                if let Some(start) = run.take() {
                    self.run(buf, start, i);
                }
                self.line(line, base + i as u64);
            }
            i = nl + 1;
        }
        if let Some(start) = run {
            self.run(buf, start, end);
        }
    }

    /// The whole of `buf[pos..end]` as one run when it is all plain lines, without parsing
    /// each line's timestamp: no join or skip is open, no pattern is anchored, the first
    /// and the last line are full records inside the window (records are written in time
    /// order, so the lines between are too), and every line is at most [`MAX_LINE_BYTES`],
    /// starts with a digit and has a `stdout F ` or `stderr F ` header after its timestamp
    /// (any other line, a `P` record included, sends the whole region to the line-by-line
    /// path). Candidate lines are still parsed in full and checked against the window
    /// ([`Pass::run`]), so hits are exact; only the count of lines looked at takes a line
    /// written out of order across the window's edge, or with a bad timestamp, as inside.
    /// Returns whether it took the region.
    fn bulk(&mut self, buf: &[u8], pos: usize, end: usize) -> bool {
        if self.skip != Skip::None
            || self.chain.is_some()
            || self.matcher.per_line()
            || !self.matcher.has_prefilter()
            || end <= pos
        {
            return false;
        }
        let region = &buf[pos..end - 1];
        let last_start = memchr::memrchr(b'\n', region).map_or(0, |k| k + 1);
        let first_end = memchr::memchr(b'\n', region).unwrap_or(region.len());
        let in_window = |line: &[u8], times: &mut cri::TimeCache| {
            cri::parse_cached(line, times)
                .is_some_and(|r| !r.partial && self.window.contains(r.unix_seconds))
        };
        let mut times = std::mem::take(&mut self.times);
        let ends_inside = in_window(&region[..first_end], &mut times)
            && in_window(&region[last_start..], &mut times);
        self.times = times;
        if !ends_inside {
            return false;
        }
        let mut lines = 0u64;
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &buf[pos..end]) {
            let line = &buf[pos + start..pos + nl];
            start = nl + 1;
            lines += 1;
            let full = line.len() <= MAX_LINE_BYTES
                && line.first().is_some_and(u8::is_ascii_digit)
                && memchr::memchr(b' ', line).is_some_and(|sp| {
                    let h = &line[sp + 1..];
                    h.len() > 9 && (h.starts_with(b"stdout F ") || h.starts_with(b"stderr F "))
                });
            if !full {
                return false;
            }
        }
        self.lines += lines;
        self.run(buf, pos, end);
        true
    }

    /// A run of plain lines `buf[start..end]`: one search for candidates (the literal
    /// prefilter in a lowercased copy, else the union), the set on candidate lines.
    fn run(&mut self, buf: &[u8], start: usize, end: usize) {
        let hay = &buf[..end];
        let prefilter = self.matcher.has_prefilter();
        if prefilter {
            // One pass that the compiler vectorizes.
            for (l, b) in self.lowered[start..end].iter_mut().zip(&buf[start..end]) {
                *l = b.to_ascii_lowercase();
            }
        }
        let mut s = start;
        while s < end {
            let found = if prefilter {
                self.matcher.candidate_lowered(&self.lowered[..end], s)
            } else {
                self.matcher.candidate(hay, s)
            };
            let Some(p) = found else {
                break;
            };
            if p >= end {
                break;
            }
            let ls = memchr::memrchr(b'\n', &buf[s..p]).map_or(s, |k| s + k + 1);
            let le = memchr::memchr(b'\n', &buf[p..end]).map_or(end, |k| p + k);
            if let Some(rec) = cri::parse_cached(&buf[ls..le], &mut self.times)
                && !rec.partial
                && self.window.contains(rec.unix_seconds)
            {
                let (sink, t) = (&mut *self.sink, rec.unix_seconds);
                self.matcher
                    .matches(rec.content, |idx| sink.hit(t, idx, rec.content));
            }
            s = le + 1;
        }
    }

    /// One line on the per-line path.
    fn line(&mut self, line: &[u8], offset: u64) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let Some(rec) = cri::parse(line) else {
            if self.skip == Skip::None {
                self.malformed += 1;
            }
            return;
        };
        if self.skip == Skip::UntilF {
            if !rec.partial {
                self.skip = Skip::None;
            }
            return;
        }
        self.slow(rec, offset);
    }

    fn slow(&mut self, rec: Record<'_>, offset: u64) {
        let room = MAX_LINE_BYTES.saturating_sub(self.joined.len());
        let take = &rec.content[..rec.content.len().min(room)];
        match self.chain {
            Some(_) => {
                self.joined.extend_from_slice(take);
                if !rec.partial {
                    self.close_chain();
                } else if self.joined.len() >= MAX_LINE_BYTES {
                    self.close_chain();
                    self.skip = Skip::UntilF;
                }
            }
            None if rec.partial => {
                self.chain = Some(Chain {
                    start: offset,
                    unix_seconds: rec.unix_seconds,
                });
                self.joined.clear();
                self.joined.extend_from_slice(take);
                if self.joined.len() >= MAX_LINE_BYTES {
                    self.close_chain();
                    self.skip = Skip::UntilF;
                }
            }
            None => {
                if self.window.contains(rec.unix_seconds) {
                    self.lines += 1;
                    let (sink, t) = (&mut *self.sink, rec.unix_seconds);
                    self.matcher.matches(take, |idx| sink.hit(t, idx, take));
                }
            }
        }
    }

    /// Counts the open join, if any, as one line.
    fn close_chain(&mut self) {
        if let Some(c) = self.chain.take()
            && self.window.contains(c.unix_seconds)
        {
            self.lines += 1;
            let (sink, line) = (&mut *self.sink, &self.joined[..]);
            self.matcher
                .matches(line, |idx| sink.hit(c.unix_seconds, idx, line));
        }
        self.joined.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::super::matcher::default_patterns;
    use super::*;

    /// Hits as (time, pattern, line).
    #[derive(Default)]
    struct Hits(Vec<(i64, usize, Vec<u8>)>);
    impl Sink for Hits {
        fn hit(&mut self, t: i64, p: usize, line: &[u8]) {
            self.0.push((t, p, line.to_vec()));
        }
    }

    const T0: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z
    const ALL: Window = Window {
        from: i64::MIN,
        to: i64::MAX,
    };

    fn scan(data: &[u8], window: Window, tail: Tail) -> (ScanEnd, Vec<(i64, usize, String)>) {
        let m = Matcher::new(&default_patterns()).unwrap();
        let mut hits = Hits::default();
        let end = Scanner::default()
            .scan(data, &m, window, Skip::None, tail, &mut hits)
            .unwrap();
        let hits = hits
            .0
            .into_iter()
            .map(|(t, p, l)| (t, p, String::from_utf8_lossy(&l).into_owned()))
            .collect();
        (end, hits)
    }

    #[test]
    fn partial_records_are_joined_and_counted_once() {
        let data = b"2024-01-01T00:00:00Z stdout P user bob: authentication fa\n\
            2024-01-01T00:00:01Z stdout P iled (error 1, \n\
            2024-01-01T00:00:02Z stdout F error 2)\n\
            2024-01-01T00:00:03Z stderr F plain warn\n";
        let (end, hits) = scan(data, ALL, Tail::Keep);
        let joined = "user bob: authentication failed (error 1, error 2)";
        assert_eq!(
            hits,
            vec![
                (T0, 0, joined.into()),
                (T0, 2, joined.into()),
                (T0 + 3, 1, "plain warn".into()),
            ]
        );
        assert_eq!((end.lines, end.resume_at), (2, data.len() as u64));
    }

    #[test]
    fn lines_outside_the_window_are_ignored() {
        let data = b"2023-12-31T23:59:59Z stdout F error old\n\
            2024-01-01T00:00:00Z stdout F error in\n\
            2024-01-01T01:00:00Z stdout F error too new\n";
        let w = Window {
            from: T0,
            to: T0 + 3600,
        };
        let (end, hits) = scan(data, w, Tail::Flush);
        assert_eq!(hits, vec![(T0, 0, "error in".into())]);
        assert_eq!(end.lines, 1);
    }

    #[test]
    fn a_region_of_plain_lines_is_taken_whole_but_its_hits_still_honour_the_window() {
        // First and last line inside the window: the region goes the bulk way; the middle
        // line, written out of order before the window, is not a hit.
        let data = b"2024-01-01T00:00:00Z stdout F error one\n\
            2023-12-31T23:00:00Z stderr F error out of order\n\
            2024-01-01T00:00:01Z stdout F fine\n\
            2024-01-01T00:00:02Z stderr F WARN two\n";
        let w = Window {
            from: T0,
            to: T0 + 3600,
        };
        let (end, hits) = scan(data, w, Tail::Flush);
        assert_eq!(
            hits,
            vec![(T0, 0, "error one".into()), (T0 + 2, 1, "WARN two".into())]
        );
        assert_eq!(end.malformed, 0);
        // A malformed line or a P record in the middle sends the region line by line.
        let data = b"2024-01-01T00:00:00Z stdout F error one\n\
            not a cri line with error\n\
            2024-01-01T00:00:01Z stdout P warn jo\n\
            2024-01-01T00:00:02Z stdout F ined\n\
            2024-01-01T00:00:03Z stderr F status=503\n";
        let (end, hits) = scan(data, w, Tail::Flush);
        assert_eq!(
            hits,
            vec![
                (T0, 0, "error one".into()),
                (T0 + 1, 1, "warn joined".into()),
                (T0 + 3, 3, "status=503".into()),
            ]
        );
        assert_eq!((end.lines, end.malformed), (3, 1));
    }

    #[test]
    fn an_unfinished_tail_is_counted_or_kept() {
        let data = b"2024-01-01T00:00:00Z stdout F warn 1\n\
            2024-01-01T00:00:01Z stdout P error start\n\
            2024-01-01T00:00:02Z stdout F no newline error";
        let (end, hits) = scan(data, ALL, Tail::Flush);
        assert_eq!(hits.len(), 2, "{hits:?}");
        assert_eq!(hits[1].2, "error startno newline error");
        assert_eq!(end.resume_at, data.len() as u64);
        // Keep: the join (and the record without newline) stay for the next read.
        let (end, hits) = scan(data, ALL, Tail::Keep);
        assert_eq!(hits.len(), 1);
        let chain_start = data.iter().position(|&b| b == b'\n').unwrap() + 1;
        assert_eq!(end.resume_at, chain_start as u64);
        // A join never completed is flushed at the end of complete data.
        let (_, hits) = scan(b"2024-01-01T00:00:00Z stdout P error\n", ALL, Tail::Flush);
        assert_eq!(hits.len(), 1);
    }

    #[test]
    fn hostile_bytes_and_malformed_lines() {
        let data = b"garbage \xff\xfe error\n\
            2024-01-01T00:00:00Z stdout F \xff\xfeERROR\xc3\n\
            \n\
            2024-01-01T00:00:00Z stdout F status=503\n";
        let (end, hits) = scan(data, ALL, Tail::Flush);
        assert_eq!(hits.iter().map(|h| h.1).collect::<Vec<_>>(), vec![0, 3]);
        assert_eq!(end.malformed, 2);
    }

    /// `n` bytes of `fill`, with `at` written at offset `pos`, never held whole.
    struct Lazy {
        head: Vec<u8>,
        total: u64,
        served: u64,
        marks: Vec<(u64, &'static [u8])>,
        tail: Vec<u8>,
        largest_read: usize,
    }
    impl Read for Lazy {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.largest_read = self.largest_read.max(out.len());
            let body_end = self.head.len() as u64 + self.total;
            let end = body_end + self.tail.len() as u64;
            let n = (out.len() as u64).min(end - self.served) as usize;
            for (i, o) in out[..n].iter_mut().enumerate() {
                let p = self.served + i as u64;
                *o = if p < self.head.len() as u64 {
                    self.head[p as usize]
                } else if p >= body_end {
                    self.tail[(p - body_end) as usize]
                } else {
                    let q = p - self.head.len() as u64;
                    self.marks
                        .iter()
                        .find(|(at, m)| q >= *at && q < *at + m.len() as u64)
                        .map_or(b'x', |(at, m)| m[(q - at) as usize])
                };
            }
            self.served += n as u64;
            Ok(n)
        }
    }

    #[test]
    fn a_100_mb_line_is_matched_on_its_head_with_bounded_memory() {
        let m = Matcher::new(&default_patterns()).unwrap();
        let mut reader = Lazy {
            head: b"2024-01-01T00:00:00Z stdout F ".to_vec(),
            total: 100 << 20,
            served: 0,
            // `warn` within the first MAX_LINE_BYTES, `error` far beyond them.
            marks: vec![(10, b" warn "), (90 << 20, b" error ")],
            tail: b"\n2024-01-01T00:00:01Z stdout F status=404\n".to_vec(),
            largest_read: 0,
        };
        let mut scanner = Scanner::default();
        let before = scanner.allocated_bytes();
        let mut hits = Hits::default();
        let end = scanner
            .scan(&mut reader, &m, ALL, Skip::None, Tail::Keep, &mut hits)
            .unwrap();
        assert_eq!(
            hits.0.iter().map(|h| (h.0, h.1)).collect::<Vec<_>>(),
            vec![(T0, 1), (T0 + 1, 3)]
        );
        assert_eq!(hits.0[0].2.len(), MAX_LINE_BYTES);
        assert_eq!(end.bytes_read, reader.served);
        assert_eq!(end.resume_at, reader.served);
        assert_eq!(end.skip, Skip::None);
        assert_eq!(scanner.allocated_bytes(), before);
        assert_eq!(before, 2 * READ_BUFFER_BYTES + MAX_LINE_BYTES);
        assert!(reader.largest_read <= READ_BUFFER_BYTES);
    }

    #[test]
    fn a_long_partial_chain_is_counted_once_then_dropped_to_its_f_record() {
        let mut data = Vec::new();
        for _ in 0..5 {
            data.extend_from_slice(b"2024-01-01T00:00:00Z stdout P ");
            data.extend(std::iter::repeat_n(b'y', 20_000));
            data.extend_from_slice(b" warn\n");
        }
        data.extend_from_slice(b"2024-01-01T00:00:00Z stdout F error at the end\n");
        data.extend_from_slice(b"2024-01-01T00:00:09Z stdout F error next\n");
        let (end, hits) = scan(&data, ALL, Tail::Keep);
        // The joined line's first 64 KiB hold three `warn`s: one count; its `error` lies
        // beyond the cap.
        assert_eq!(
            hits.iter().map(|h| (h.0, h.1)).collect::<Vec<_>>(),
            vec![(T0, 1), (T0 + 9, 0)]
        );
        assert_eq!((end.lines, end.skip), (2, Skip::None));
    }

    #[test]
    fn anchored_patterns_are_matched_on_content() {
        let m = Matcher::new(&[super::super::matcher::Pattern {
            name: "start".into(),
            regex: "^error".into(),
        }])
        .unwrap();
        assert!(m.per_line());
        let data =
            b"2024-01-01T00:00:00Z stdout F error a\n2024-01-01T00:00:00Z stdout F no error\n";
        let mut hits = Hits::default();
        Scanner::default()
            .scan(&data[..], &m, ALL, Skip::None, Tail::Flush, &mut hits)
            .unwrap();
        assert_eq!(hits.0.len(), 1);
    }
}

#[cfg(test)]
mod prefilter_tests {
    use super::super::matcher::{Pattern, default_patterns};
    use super::*;
    use proptest::prelude::*;

    #[derive(Default)]
    struct Hits(Vec<(i64, usize, Vec<u8>)>);
    impl Sink for Hits {
        fn hit(&mut self, t: i64, p: usize, line: &[u8]) {
            self.0.push((t, p, line.to_vec()));
        }
    }

    /// Every full record's content matched alone with each pattern's own regex: what the
    /// scan must find, with or without the literal prefilter.
    fn model(data: &[u8], patterns: &[Pattern]) -> Vec<(i64, usize, Vec<u8>)> {
        let res: Vec<regex::bytes::Regex> = patterns
            .iter()
            .map(|p| {
                regex::bytes::RegexBuilder::new(&p.regex)
                    .case_insensitive(true)
                    .unicode(false)
                    .build()
                    .unwrap()
            })
            .collect();
        let mut out = Vec::new();
        for line in data.split(|&b| b == b'\n') {
            let Some(r) = cri::parse(line) else { continue };
            for (i, re) in res.iter().enumerate() {
                if re.is_match(r.content) {
                    out.push((r.unix_seconds, i, r.content.to_vec()));
                }
            }
        }
        out
    }

    const WORDS: &[&str] = &[
        "ok",
        "ERROR",
        "eRrOr",
        "Warn",
        "WARNING",
        "warm",
        "errr",
        "status=503",
        "STATUS=404",
        "status=200",
        "status=5",
        "Authentication FAILED",
        "authentication  failed",
        "tracing",
        "\u{e9}rror",
        "x|y",
        "\t",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn the_prefilter_finds_what_the_patterns_find(
            lines in proptest::collection::vec(
                proptest::collection::vec(0..WORDS.len(), 0..8), 1..400),
        ) {
            let mut data = Vec::new();
            for (n, words) in lines.iter().enumerate() {
                data.extend_from_slice(
                    format!("2024-01-01T00:{:02}:{:02}Z stdout F", n / 60 % 60, n % 60).as_bytes(),
                );
                for w in words {
                    data.push(b' ');
                    data.extend_from_slice(WORDS[*w].as_bytes());
                }
                data.push(b'\n');
            }
            let mut with_custom = default_patterns();
            with_custom.push(Pattern { name: "ing".into(), regex: "[a-z]+ing".into() });
            for patterns in [default_patterns(), with_custom] {
                let m = Matcher::new(&patterns).unwrap();
                let mut hits = Hits::default();
                let window = Window { from: i64::MIN, to: i64::MAX };
                Scanner::default()
                    .scan(&data[..], &m, window, Skip::None, Tail::Flush, &mut hits)
                    .unwrap();
                let mut got = hits.0;
                got.sort();
                let mut want = model(&data, &patterns);
                want.sort();
                prop_assert_eq!(got, want);
            }
        }
    }
}
