//! Reading a large JSON dump without holding the whole file: a scanner that finds the
//! bounds of each value (string- and escape-aware, depth-counting) in a window of the file,
//! so a `List` is processed item by item while the file is read in chunks.
//!
//! Only the structure is scanned here; each item is then parsed by serde_json. The peak
//! memory is one chunk plus the largest item, instead of the whole file (a 150,000-pod
//! `kubectl get pods -A -o json` is ~450 MiB).

use std::io::Read;

/// Bytes read at a time (the window grows past it only for a larger value).
const CHUNK_BYTES: usize = 1 << 20;

/// A structural problem, or a read error, at a byte offset of the file.
#[derive(Debug)]
pub(crate) struct ScanError {
    pub offset: u64,
    pub message: String,
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl std::error::Error for ScanError {}

/// A window over a reader.
pub(crate) struct Scanner<R> {
    r: R,
    buf: Vec<u8>,
    /// Next byte to look at, in `buf`.
    pos: usize,
    /// Start of the value being scanned: bytes from here on are kept when refilling.
    mark: Option<usize>,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    chunk: usize,
}

impl<R: Read> Scanner<R> {
    pub(crate) fn new(r: R) -> Self {
        Self::with_chunk(r, CHUNK_BYTES)
    }

    /// A scanner reading `chunk` bytes at a time.
    pub(crate) fn with_chunk(r: R, chunk: usize) -> Self {
        Scanner {
            r,
            buf: Vec::new(),
            pos: 0,
            mark: None,
            base: 0,
            eof: false,
            chunk: chunk.max(1),
        }
    }

    fn err(&self, message: impl Into<String>) -> ScanError {
        ScanError {
            offset: self.base + self.pos as u64,
            message: message.into(),
        }
    }

    /// Makes a byte available at `pos`; false at the end of the input.
    fn fill(&mut self) -> Result<bool, ScanError> {
        if self.pos < self.buf.len() {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        let keep = self.mark.unwrap_or(self.pos);
        self.buf.drain(..keep);
        self.base += keep as u64;
        self.pos -= keep;
        if let Some(m) = self.mark.as_mut() {
            *m -= keep;
        }
        let old = self.buf.len();
        self.buf.resize(old + self.chunk, 0);
        let mut n = 0;
        while old + n < self.buf.len() {
            match self.r.read(&mut self.buf[old + n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(old + n);
                    return Err(self.err(format!("read error: {e}")));
                }
            }
        }
        self.buf.truncate(old + n);
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        Ok(true)
    }

    /// The next non-whitespace byte (not consumed), or `None` at the end.
    pub(crate) fn skip_ws(&mut self) -> Result<Option<u8>, ScanError> {
        loop {
            if !self.fill()? {
                return Ok(None);
            }
            match self.buf[self.pos] {
                b' ' | b'\n' | b'\r' | b'\t' => self.pos += 1,
                b => return Ok(Some(b)),
            }
        }
    }

    /// Consumes one byte (after [`Scanner::skip_ws`] returned it).
    pub(crate) fn bump(&mut self) {
        self.pos += 1;
    }

    /// Scans the value starting at the next non-whitespace byte and returns its bytes
    /// (valid until the next call).
    ///
    /// # Errors
    /// End of input inside the value, or a read error.
    pub(crate) fn value(&mut self) -> Result<&[u8], ScanError> {
        let first = self
            .skip_ws()?
            .ok_or_else(|| self.err("unexpected end of file, expected a value"))?;
        self.mark = Some(self.pos);
        let scalar = !matches!(first, b'{' | b'[' | b'"');
        let (mut depth, mut in_str, mut esc) = (0usize, false, false);
        'outer: loop {
            if !self.fill()? {
                if scalar {
                    break;
                }
                self.mark = None;
                return Err(self.err("unexpected end of file inside a value"));
            }
            let bytes = &self.buf[self.pos..];
            let mut i = 0;
            while i < bytes.len() {
                let b = bytes[i];
                i += 1;
                if in_str {
                    if esc {
                        esc = false;
                    } else if b == b'\\' {
                        esc = true;
                    } else if b == b'"' {
                        in_str = false;
                        if depth == 0 {
                            self.pos += i;
                            break 'outer;
                        }
                    }
                } else if scalar {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                        self.pos += i - 1;
                        break 'outer;
                    }
                } else {
                    match b {
                        b'"' => in_str = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                self.pos += i;
                                break 'outer;
                            }
                        }
                        _ => {}
                    }
                }
            }
            self.pos += i;
        }
        let start = self.mark.take().unwrap_or(self.pos);
        Ok(&self.buf[start..self.pos])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_delimited_across_refills_with_strings_and_escapes() {
        let text = br#" {"a":"x}\"]","b":[1,{"c":"{"}]} 42 "s\\" true"#;
        // Every chunk size, down to one byte, crosses the refill boundary somewhere else.
        for chunk in [1, 2, 3, 5, 7, 64] {
            let mut s = Scanner::with_chunk(&text[..], chunk);
            let mut got = Vec::new();
            while s.skip_ws().unwrap().is_some() {
                got.push(String::from_utf8(s.value().unwrap().to_vec()).unwrap());
            }
            assert_eq!(
                got,
                vec![
                    r#"{"a":"x}\"]","b":[1,{"c":"{"}]}"#,
                    "42",
                    r#""s\\""#,
                    "true"
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn truncated_value_is_an_error_with_offset() {
        let mut s = Scanner::new(&b"  {\"a\": [1, 2"[..]);
        let e = s.value().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unexpected end of file inside a value at byte 13"
        );
    }
}
