//! The kubelet's CRI log format, one record per line:
//! `TIMESTAMP STREAM TAG CONTENT`, e.g.
//! `2024-01-01T12:00:00.123456789Z stdout F the line`.
//!
//! `TIMESTAMP` is RFC 3339 with nanoseconds (`Z` or a `±HH:MM` offset), `STREAM` is
//! `stdout` or `stderr`, `TAG` is `F` (full: the record ends a line) or `P` (partial: the
//! line goes on in the next record); later tag fields after `:` are ignored. Parsing is
//! by hand on bytes: it runs once per record and must cost a few nanoseconds.

/// One parsed record header; `content` borrows the rest of the line (without `\n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    /// Unix time of the record, in seconds (sub-second precision is not needed: the
    /// window is in hours).
    pub(crate) unix_seconds: i64,
    /// `P`: the line continues in the next record.
    pub partial: bool,
    pub content: &'a [u8],
}

/// Parses one record (a line without its `\n`). `None` for a line that is not a CRI
/// record (such lines are skipped and counted as malformed).
pub(crate) fn parse(line: &[u8]) -> Option<Record<'_>> {
    parse_with(line, parse_timestamp)
}

/// [`parse`] remembering the last date and time to the second in `cache`: consecutive
/// records mostly share it, and then only the fraction and zone are read.
pub(crate) fn parse_cached<'a>(line: &'a [u8], cache: &mut TimeCache) -> Option<Record<'a>> {
    parse_with(line, |s| cache.timestamp(s))
}

/// The last `YYYY-MM-DDTHH:MM:SS` parsed and its seconds (before the zone offset).
#[derive(Debug, Clone, Default)]
pub(crate) struct TimeCache {
    head: [u8; 19],
    seconds: Option<i64>,
}

impl TimeCache {
    /// [`parse_timestamp`], reusing the last head when it is the same.
    pub(crate) fn timestamp(&mut self, s: &[u8]) -> Option<i64> {
        let base = match self.seconds {
            Some(b) if s.len() >= 20 && s[..19] == self.head => b,
            _ => {
                let b = parse_head(s)?;
                self.head.copy_from_slice(&s[..19]);
                self.seconds = Some(b);
                b
            }
        };
        Some(base - parse_zone(s)?)
    }
}

fn parse_with<'a>(
    line: &'a [u8],
    mut timestamp: impl FnMut(&[u8]) -> Option<i64>,
) -> Option<Record<'a>> {
    let sp1 = memchr::memchr(b' ', line)?;
    let unix_seconds = timestamp(&line[..sp1])?;
    let rest = &line[sp1 + 1..];
    let sp2 = memchr::memchr(b' ', rest)?;
    let stream = &rest[..sp2];
    if stream != b"stdout" && stream != b"stderr" {
        return None;
    }
    let rest = &rest[sp2 + 1..];
    // The tag runs to the next space or to the end of the line (an empty content).
    let (tag, content) = match memchr::memchr(b' ', rest) {
        Some(sp3) => (&rest[..sp3], &rest[sp3 + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let first = tag.split(|&b| b == b':').next()?;
    let partial = match first {
        b"F" => false,
        b"P" => true,
        _ => return None,
    };
    Some(Record {
        unix_seconds,
        partial,
        content,
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to Unix seconds (fraction dropped).
pub(crate) fn parse_timestamp(s: &[u8]) -> Option<i64> {
    Some(parse_head(s)? - parse_zone(s)?)
}

/// Seconds of `YYYY-MM-DDTHH:MM:SS` (the first 19 bytes; at least 20 must be there).
fn parse_head(s: &[u8]) -> Option<i64> {
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || s[10] != b'T' && s[10] != b't' {
        return None;
    }
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &b in &s[r] {
            if !b.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(b - b'0');
        }
        Some(v)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// The zone offset in seconds after the head (`[.frac](Z|±HH:MM)`), checking the fraction.
fn parse_zone(s: &[u8]) -> Option<i64> {
    let mut i = 19;
    if s[i] == b'.' {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match s.get(i..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let d = |b: u8| b.is_ascii_digit().then(|| i64::from(b - b'0'));
            let secs = (d(*h1)? * 10 + d(*h2)?) * 3600 + (d(*m1)? * 10 + d(*m2)?) * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    Some(offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jiff_secs(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_second()
    }

    #[test]
    fn timestamps_agree_with_jiff() {
        for s in [
            "2024-01-01T12:00:00.123456789Z",
            "1970-01-01T00:00:00Z",
            "2000-02-29T23:59:59.5+09:00",
            "2026-12-05T00:45:02.000000001-05:30",
            "2100-03-01T00:00:00Z",
        ] {
            assert_eq!(parse_timestamp(s.as_bytes()), Some(jiff_secs(s)), "{s}");
        }
        for bad in [
            "",
            "2024-01-01 12:00:00Z",
            "2024-13-01T12:00:00Z",
            "2024-01-01T12:00:00",
            "2024-01-01T12:00:00.Z",
            "2024-01-01T12:00:00+0900",
            "2024-0a-01T12:00:00Z",
        ] {
            assert_eq!(parse_timestamp(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn the_cache_gives_what_a_fresh_parse_gives() {
        let mut c = TimeCache::default();
        for s in [
            "2024-01-01T12:00:00.1Z",
            "2024-01-01T12:00:00.2Z",
            "2024-01-01T12:00:00.3+09:00",
            "2024-01-01T12:00:00.Z",
            "2024-01-01T12:00:00Zx",
            "2024-01-01T12:00:01Z",
            "2024-01-01T12:00:0",
            "2024-01-01T12:00:01-05:30",
            "2024-13-01T12:00:01Z",
        ] {
            assert_eq!(
                c.timestamp(s.as_bytes()),
                parse_timestamp(s.as_bytes()),
                "{s}"
            );
        }
    }

    #[test]
    fn records_full_partial_and_odd() {
        let r = parse(b"2024-01-01T00:00:00.1Z stdout F hello world").unwrap();
        assert_eq!((r.partial, r.content), (false, b"hello world".as_slice()));
        let r = parse(b"2024-01-01T00:00:00Z stderr P part").unwrap();
        assert_eq!((r.partial, r.content), (true, b"part".as_slice()));
        // An empty line: the tag ends the record.
        let r = parse(b"2024-01-01T00:00:00Z stdout F").unwrap();
        assert_eq!(r.content, b"");
        // Extra tag fields (CRI allows `F:x`).
        assert!(!parse(b"2024-01-01T00:00:00Z stdout F:x y").unwrap().partial);
        // Content keeps its own spaces and non-UTF-8 bytes.
        let r = parse(b"2024-01-01T00:00:00Z stdout F  \xff\xfe x").unwrap();
        assert_eq!(r.content, b" \xff\xfe x");
        for bad in [
            b"not a record".as_slice(),
            b"2024-01-01T00:00:00Z stdin F x",
            b"2024-01-01T00:00:00Z stdout X x",
            b"2024-01-01T00:00:00Z stdout",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
