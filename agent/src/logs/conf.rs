//! The logrotate.conf parser: reads an operator's existing configuration unchanged.
//!
//! Syntax as in logrotate 3.21: one directive per line (`name args`, with an optional
//! `=` between name and value), `#` comments on their own line, global directives at the
//! top level that become the defaults of later blocks, blocks
//! `PATTERN [PATTERN…] { … }` whose patterns may be quoted (`'`, `"`, `\` as in the
//! shell) and may be spread over several lines before the `{` (Debian's rsyslog
//! snippet), text after `{` on the same line (`PATTERN { }`), script bodies from
//! `postrotate` (etc.) up to a line `endscript`, and `include FILE_OR_DIR` (a directory's
//! regular files in name order, skipping the taboo extensions and patterns).
//!
//! Errors never stop the load, and they are of three kinds, as in logrotate:
//! - an unknown or obsolete directive is a warning: the line is ignored, the block loads;
//! - a bad argument is an error: the block it is in is left out whole;
//! - a line that is neither a directive nor a file pattern (garbage, binary data, a
//!   pattern list not followed by `{`) is an error that abandons the rest of that file:
//!   the blocks before it load, nothing after it does (logrotate 3.21 does the same; before
//!   3.19 it read on and could apply a block's directives as global defaults).
//!
//! Every file is read once even when several `include`s name it (an include diamond would
//! otherwise take exponential time), only regular files are read, and the number of files
//! and lines is capped.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::policy::{Permissions, Policy, SCRIPT_DIRECTIVES, is_directive};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfError {
    /// `file:line`.
    pub place: String,
    pub message: String,
}

impl std::fmt::Display for ConfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// The result of loading: the good blocks, every error and every warning.
#[derive(Debug, Default, Clone)]
pub struct Loaded {
    pub policies: Vec<Policy>,
    pub errors: Vec<ConfError>,
    /// Lines ignored with a message (unknown or obsolete directives, a file included a
    /// second time); what they were in still loads. logrotate exits 0 on these.
    pub warnings: Vec<ConfError>,
}

/// How deep `include` may nest (logrotate has no limit; a loop would never end).
const MAX_INCLUDE_DEPTH: usize = 16;
/// Config files read in one load (`include` of directories included).
const MAX_FILES: usize = 10_000;
/// Size of one config file.
const MAX_FILE_BYTES: u64 = 4 << 20;
/// Lines read in one load, over all files.
const MAX_LINES: usize = 1_000_000;

/// Reads a logrotate.conf file (and what it includes).
pub(crate) fn load_file(path: &Path, perms: Permissions) -> Loaded {
    let mut p = Parser::new(perms);
    let mut globals = Policy::default();
    p.file(path, &mut globals, 0, None);
    p.out
}

/// Reads another rotator's logrotate.conf (the node's own, see [`super::owners`]) for
/// the patterns of its blocks only: the directives inside a block are not interpreted
/// (no user or group is looked up, a script or a bad argument does not drop the block),
/// so every block that is well formed names its logs. Nothing in it is ever run.
pub(crate) fn load_patterns(path: &Path) -> Loaded {
    let mut p = Parser::new(Permissions {
        scripts: true,
        external_compress: true,
    });
    p.patterns_only = true;
    let mut globals = Policy::default();
    p.file(path, &mut globals, 0, None);
    p.out
}

/// Parses config text; `name` is used in error places.
pub fn parse_str(text: &str, name: &str, perms: Permissions) -> Loaded {
    let mut p = Parser::new(perms);
    let mut globals = Policy::default();
    p.text(text, Path::new(name), &mut globals, 0);
    p.out
}

struct Parser {
    perms: Permissions,
    out: Loaded,
    /// Files being read (an include of one of them is a loop).
    visiting: HashSet<(u64, u64)>,
    /// Files read already, by (device, inode), with the path they were read as.
    read: HashMap<(u64, u64), PathBuf>,
    lines: usize,
    /// Only the blocks' patterns matter ([`load_patterns`]).
    patterns_only: bool,
}

/// A block being read.
struct Block {
    policy: Policy,
    failed: bool,
}

/// Where the reader is in a file.
enum At {
    Top,
    /// Patterns read (from this line on) without their `{` yet.
    Patterns(Vec<String>, usize),
    Block(Box<Block>),
}

/// Why the rest of a file is not read.
struct Abandon(usize, String);

impl Parser {
    fn new(perms: Permissions) -> Self {
        Self {
            perms,
            out: Loaded::default(),
            visiting: HashSet::new(),
            read: HashMap::new(),
            lines: 0,
            patterns_only: false,
        }
    }

    fn err(&mut self, file: &Path, line: usize, message: impl Into<String>) {
        self.out.errors.push(ConfError {
            place: format!("{}:{line}", file.display()),
            message: message.into(),
        });
    }

    fn warn(&mut self, file: &Path, line: usize, message: impl Into<String>) {
        self.out.warnings.push(ConfError {
            place: format!("{}:{line}", file.display()),
            message: message.into(),
        });
    }

    fn file(
        &mut self,
        path: &Path,
        globals: &mut Policy,
        depth: usize,
        from: Option<(&Path, usize)>,
    ) {
        let place = |s: &mut Self, m: String, warning: bool| {
            let e = ConfError {
                place: match from {
                    Some((f, l)) => format!("{}:{l}", f.display()),
                    None => path.display().to_string(),
                },
                message: m,
            };
            if warning {
                s.out.warnings.push(e);
            } else {
                s.out.errors.push(e);
            }
        };
        if depth > MAX_INCLUDE_DEPTH {
            place(
                self,
                format!(
                    "include of {} nests deeper than {MAX_INCLUDE_DEPTH} levels",
                    path.display()
                ),
                false,
            );
            return;
        }
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                place(self, format!("cannot read {}: {e}", path.display()), false);
                return;
            }
        };
        if meta.is_dir() {
            let mut names = match std::fs::read_dir(path) {
                Ok(rd) => rd
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .collect::<Vec<_>>(),
                Err(e) => {
                    place(
                        self,
                        format!("cannot read directory {}: {e}", path.display()),
                        false,
                    );
                    return;
                }
            };
            names.sort();
            for f in names {
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // Only regular files (after symlinks), as logrotate: a FIFO or a device
                // in /etc/logrotate.d is skipped, not read.
                if is_taboo(&name, globals) || !std::fs::metadata(&f).is_ok_and(|m| m.is_file()) {
                    continue;
                }
                self.file(&f, globals, depth + 1, from);
            }
            return;
        }
        if self.read.len() >= MAX_FILES {
            place(
                self,
                format!(
                    "{} not read: more than {MAX_FILES} config files",
                    path.display()
                ),
                false,
            );
            return;
        }
        // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        let f = std::fs::File::options()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
            .open(path);
        let (mut f, meta) = match f.and_then(|f| f.metadata().map(|m| (f, m))) {
            Ok(v) => v,
            Err(e) => {
                place(self, format!("cannot read {}: {e}", path.display()), false);
                return;
            }
        };
        if !meta.is_file() {
            place(
                self,
                format!("{} is not a regular file; not read", path.display()),
                false,
            );
            return;
        }
        let key = (meta.dev(), meta.ino());
        if self.visiting.contains(&key) {
            place(self, format!("{} includes itself", path.display()), false);
            return;
        }
        if let Some(first) = self.read.get(&key) {
            let m = format!(
                "{} was read already (as {}); not read again",
                path.display(),
                first.display()
            );
            place(self, m, true);
            return;
        }
        if meta.len() > MAX_FILE_BYTES {
            place(
                self,
                format!(
                    "{} is larger than {} MiB; not read",
                    path.display(),
                    MAX_FILE_BYTES >> 20
                ),
                false,
            );
            return;
        }
        let mut bytes = Vec::new();
        if let Err(e) = f.by_ref().take(MAX_FILE_BYTES).read_to_end(&mut bytes) {
            place(self, format!("cannot read {}: {e}", path.display()), false);
            return;
        }
        self.read.insert(key, path.to_path_buf());
        self.visiting.insert(key);
        // Invalid UTF-8 becomes U+FFFD, which the line check below refuses.
        let text = String::from_utf8_lossy(&bytes);
        self.text(&text, path, globals, depth);
        self.visiting.remove(&key);
    }

    fn text(&mut self, text: &str, file: &Path, globals: &mut Policy, depth: usize) {
        let lines: Vec<&str> = text.lines().collect();
        self.lines += lines.len();
        if self.lines > MAX_LINES {
            self.err(
                file,
                0,
                format!("more than {MAX_LINES} config lines in all; this file is not read"),
            );
            return;
        }
        if let Err(Abandon(line, msg)) = self.lines_of(&lines, file, globals, depth) {
            self.err(
                file,
                line,
                format!("{msg}; the rest of this file is not read (as logrotate 3.21)"),
            );
        }
    }

    /// Reads the lines of one file; an `Err` abandons the rest of it.
    fn lines_of(
        &mut self,
        lines: &[&str],
        file: &Path,
        globals: &mut Policy,
        depth: usize,
    ) -> Result<(), Abandon> {
        let mut i = 0;
        let mut at = At::Top;
        // What follows a `{` or `}` on its line, read as a line of its own.
        let mut carry: Option<(String, usize)> = None;
        loop {
            let (owned, lineno) = match carry.take() {
                Some(c) => c,
                None => {
                    let Some(l) = lines.get(i) else { break };
                    i += 1;
                    ((*l).to_string(), i)
                }
            };
            let line = owned.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line
                .chars()
                .any(|c| (c.is_control() && c != '\t') || c == '\u{FFFD}')
            {
                return Err(Abandon(
                    lineno,
                    "binary data or control characters".to_string(),
                ));
            }
            let first = line.chars().next().unwrap_or(' ');
            at = match at {
                At::Block(mut b) => {
                    if let Some(rest) = line.strip_prefix('}') {
                        self.finish_block(*b, file, lineno);
                        carry = Some((rest.to_string(), lineno));
                        At::Top
                    } else if first.is_ascii_alphabetic() {
                        if self.block_directive(&mut b, line, lines, &mut i, file, lineno) {
                            At::Block(b)
                        } else {
                            // A `}` as the directive's last word closes the block after it.
                            self.finish_block(*b, file, lineno);
                            At::Top
                        }
                    } else {
                        return Err(Abandon(
                            lineno,
                            format!(
                                "the block of line {} is not closed before this line",
                                block_line(&b)
                            ),
                        ));
                    }
                }
                At::Patterns(mut pats, at_line) => {
                    if is_pattern_start(first) || first == '{' {
                        match self.pattern_line(line, &mut pats, file, lineno) {
                            Some(rest) => {
                                carry = Some((rest, lineno));
                                At::Block(Box::new(self.open_block(globals, pats, file, at_line)))
                            }
                            None => At::Patterns(pats, at_line),
                        }
                    } else {
                        return Err(Abandon(
                            lineno,
                            format!("the file patterns of line {at_line} are not followed by '{{'"),
                        ));
                    }
                }
                At::Top => {
                    if line.starts_with('}') {
                        self.err(file, lineno, "'}' without an open block");
                        At::Top
                    } else if line.starts_with('{') {
                        return Err(Abandon(
                            lineno,
                            "'{' without file patterns before it".to_string(),
                        ));
                    } else if first.is_ascii_alphabetic() && !line.contains('{') {
                        self.top_directive(line, lines, &mut i, file, lineno, globals, depth)?;
                        At::Top
                    } else if is_pattern_start(first) || first.is_ascii_alphanumeric() {
                        let mut pats = Vec::new();
                        match self.pattern_line(line, &mut pats, file, lineno) {
                            Some(rest) => {
                                carry = Some((rest, lineno));
                                At::Block(Box::new(self.open_block(globals, pats, file, lineno)))
                            }
                            None => At::Patterns(pats, lineno),
                        }
                    } else {
                        return Err(Abandon(
                            lineno,
                            "a line must begin with a directive or a file pattern".to_string(),
                        ));
                    }
                }
            };
        }
        match at {
            At::Top => {}
            At::Block(b) => {
                let l = block_line(&b);
                self.err(file, l, "block is not closed with '}'");
            }
            At::Patterns(_, l) => self.err(file, l, "file patterns must be followed by '{'"),
        }
        Ok(())
    }

    /// Adds the patterns of `line` (up to an unquoted `{`) to `pats`; `Some(rest of the
    /// line)` when the `{` was there.
    fn pattern_line(
        &mut self,
        line: &str,
        pats: &mut Vec<String>,
        file: &Path,
        lineno: usize,
    ) -> Option<String> {
        let (before, rest) = match find_open_brace(line) {
            Some(at) => (&line[..at], Some(line[at + 1..].to_string())),
            None => (line, None),
        };
        match shell_words(before) {
            Ok(words) => pats.extend(words.into_iter().map(|w| expand_tilde(&w))),
            Err(e) => self.err(file, lineno, e.to_string()),
        }
        rest
    }

    /// A directive inside a block; `false` when its last word was a `}` that closes it.
    fn block_directive(
        &mut self,
        b: &mut Block,
        line: &str,
        lines: &[&str],
        i: &mut usize,
        file: &Path,
        lineno: usize,
    ) -> bool {
        let (name, args) = match split_directive(line) {
            Ok(v) => v,
            Err(e) => {
                self.err(file, lineno, e.to_string());
                b.failed = true;
                return true;
            }
        };
        let closes = args.last().is_some_and(|a| a == "}");
        let script = if SCRIPT_DIRECTIVES.contains(&name.as_str()) {
            match read_script(lines, i) {
                Some(s) => Some(s),
                None => {
                    self.err(file, lineno, format!("{name} has no endscript"));
                    b.failed = true;
                    return true;
                }
            }
        } else {
            None
        };
        if name == "include" {
            self.err(file, lineno, "include is not allowed inside a block");
            b.failed = true;
            return !closes;
        }
        if let Some(w) = ignored_directive(&name) {
            self.warn(file, lineno, w);
            return !closes;
        }
        if self.patterns_only {
            return !closes;
        }
        if let Err(e) = b.policy.apply(&name, &args, script.as_deref(), self.perms) {
            self.err(file, lineno, e.to_string());
            b.failed = true;
        }
        !closes
    }

    #[allow(clippy::too_many_arguments)]
    fn top_directive(
        &mut self,
        line: &str,
        lines: &[&str],
        i: &mut usize,
        file: &Path,
        lineno: usize,
        globals: &mut Policy,
        depth: usize,
    ) -> Result<(), Abandon> {
        let (name, args) = match split_directive(line) {
            Ok(v) => v,
            Err(e) => {
                self.err(file, lineno, e.to_string());
                return Ok(());
            }
        };
        if name == "include" {
            match args.as_slice() {
                [p] => {
                    let target = resolve_include(file, &expand_tilde(p));
                    self.file(&target, globals, depth + 1, Some((file, lineno)));
                }
                _ => self.err(file, lineno, "include takes one file or directory"),
            }
            return Ok(());
        }
        if SCRIPT_DIRECTIVES.contains(&name.as_str()) {
            if read_script(lines, i).is_none() {
                return Err(Abandon(lineno, format!("{name} has no endscript")));
            }
            self.err(
                file,
                lineno,
                format!("{name} is only allowed inside a block"),
            );
            return Ok(());
        }
        if let Some(w) = ignored_directive(&name) {
            self.warn(file, lineno, w);
            return Ok(());
        }
        if let Err(e) = globals.apply(&name, &args, None, self.perms) {
            self.err(file, lineno, e.to_string());
        }
        Ok(())
    }

    fn open_block(
        &mut self,
        globals: &Policy,
        patterns: Vec<String>,
        file: &Path,
        line: usize,
    ) -> Block {
        let mut policy = globals.clone();
        policy.patterns = patterns;
        policy.place = format!("{}:{line}", file.display());
        Block {
            policy,
            failed: false,
        }
    }

    fn finish_block(&mut self, b: Block, file: &Path, close_line: usize) {
        if self.patterns_only {
            self.out.policies.push(b.policy);
            return;
        }
        if b.failed {
            return;
        }
        if let Err(e) = b.policy.validate() {
            self.err(file, close_line, e.to_string());
            return;
        }
        self.out.policies.push(b.policy);
    }
}

/// The line a block was opened on (from its place `file:line`).
fn block_line(b: &Block) -> usize {
    b.policy
        .place
        .rsplit(':')
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0)
}

/// Characters a file pattern line may begin with (besides a letter or digit at the top
/// level, where a relative pattern is then refused with its own message).
fn is_pattern_start(c: char) -> bool {
    matches!(c, '/' | '"' | '\'' | '~' | '\\' | '*' | '?' | '[')
}

/// The byte offset of the first `{` outside quotes.
fn find_open_brace(line: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (at, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match (quote, c) {
            (_, '\\') if quote != Some('\'') => escaped = true,
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '{') => return Some(at),
            _ => {}
        }
    }
    None
}

/// logrotate's message for a directive it ignores: `None` for a directive caretaker knows.
fn ignored_directive(name: &str) -> Option<String> {
    if name == "errors" {
        return Some(
            "the errors directive is obsolete (logrotate no longer uses it); line ignored"
                .to_string(),
        );
    }
    if is_directive(name) {
        return None;
    }
    Some(format!(
        "unknown directive {name:?}; line ignored (as logrotate does), the rest of the block loads"
    ))
}

/// `~` and `~/x` become the home directory, `~user/x` that user's (glob's GLOB_TILDE, as
/// logrotate expands patterns); anything else, or an unknown user, is left as is.
fn expand_tilde(p: &str) -> String {
    let Some(rest) = p.strip_prefix('~') else {
        return p.to_string();
    };
    let (user, tail) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    let home = if user.is_empty() {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                nix::unistd::User::from_uid(nix::unistd::getuid())
                    .ok()
                    .flatten()
                    .map(|u| u.dir)
            })
    } else {
        nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .map(|u| u.dir)
    };
    match home {
        Some(h) => format!("{}{tail}", h.display().to_string().trim_end_matches('/')),
        None => p.to_string(),
    }
}

fn resolve_include(from: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        from.parent().unwrap_or(Path::new("/")).join(p)
    }
}

/// Whether `include DIR` skips the file `name` (`tabooext` endings, `taboopat` globs).
fn is_taboo(name: &str, p: &Policy) -> bool {
    p.tabooext.iter().any(|t| match t.strip_suffix('*') {
        Some(prefix) => name.contains(prefix),
        None => name.ends_with(t.as_str()),
    }) || p
        .taboopat
        .iter()
        .any(|t| glob::Pattern::new(t).is_ok_and(|g| g.matches(name)))
}

/// Reads script lines after the directive up to `endscript`; `None` when it never comes.
fn read_script(lines: &[&str], i: &mut usize) -> Option<String> {
    let mut body = Vec::new();
    while *i < lines.len() {
        let l = lines[*i];
        *i += 1;
        if l.trim() == "endscript" {
            return Some(body.join("\n"));
        }
        body.push(l);
    }
    None
}

/// Splits `name args…` or `name = value` / `name=value`.
fn split_directive(line: &str) -> Result<(String, Vec<String>), UnterminatedQuote> {
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let name = line[..end].to_string();
    let mut rest = line[end..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    Ok((name, shell_words(rest)?))
}

/// A quote that is never closed, and the text it opens in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unterminated {quote} in {text:?}")]
pub(crate) struct UnterminatedQuote {
    pub quote: char,
    pub text: String,
}

/// Splits words with the shell's `'`, `"` and `\` quoting.
///
/// # Errors
/// [`UnterminatedQuote`].
pub(crate) fn shell_words(s: &str) -> Result<Vec<String>, UnterminatedQuote> {
    let unterminated = |quote| UnterminatedQuote {
        quote,
        text: s.to_string(),
    };
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err(unterminated('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch) => cur.push(ch),
                            None => return Err(unterminated('"')),
                        },
                        Some(ch) => cur.push(ch),
                        None => return Err(unterminated('"')),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(ch) = chars.next() {
                    cur.push(ch);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::policy::{CreateSpec, Frequency};

    const ISSUE_CONF: &str = "/var/log/containers/*.log {\n  daily\n  rotate 7\n  compress\n  missingok\n  notifempty\n  dateext\n  dateformat -%Y%m%d-%s\n  create 0644 root root\n}\n";

    #[test]
    fn shell_words_quote_as_the_shell_and_name_an_unclosed_quote() {
        assert_eq!(
            shell_words(r#"a 'b c' "d \"e\"" f\ g"#).unwrap(),
            ["a", "b c", "d \"e\"", "f g"]
        );
        let e = shell_words("x 'y").unwrap_err();
        assert_eq!(
            e,
            UnterminatedQuote {
                quote: '\'',
                text: "x 'y".into()
            }
        );
        assert_eq!(e.to_string(), r#"unterminated ' in "x 'y""#);
        assert_eq!(
            shell_words("\"y").unwrap_err().to_string(),
            r#"unterminated " in "\"y""#
        );
    }

    #[test]
    fn the_issue_example_loads_unchanged() {
        let l = parse_str(ISSUE_CONF, "k.conf", Permissions::default());
        assert_eq!(l.errors, vec![]);
        let p = &l.policies[0];
        assert_eq!(p.patterns, vec!["/var/log/containers/*.log"]);
        assert_eq!(p.place, "k.conf:1");
        assert_eq!(
            (
                p.frequency,
                p.rotate,
                p.compress,
                p.missingok,
                p.ifempty,
                p.dateext
            ),
            (Some(Frequency::Daily), 7, true, true, false, true)
        );
        assert_eq!(p.dateformat().as_str(), "-%Y%m%d-%s");
        assert_eq!(
            p.create,
            Some(CreateSpec {
                mode: Some(0o644),
                uid: Some(0),
                gid: Some(0)
            })
        );
    }

    #[test]
    fn globals_apply_to_later_blocks_only_and_blocks_override() {
        let text = "/a/x.log {\n}\ncompress\nrotate=4\n\"/a/with space.log\" '/a/q.log' /a/b\\ c.log {\n  rotate 2\n}\n";
        let l = parse_str(text, "c", Permissions::default());
        assert_eq!(l.errors, vec![]);
        assert_eq!((l.policies[0].compress, l.policies[0].rotate), (false, 0));
        assert_eq!((l.policies[1].compress, l.policies[1].rotate), (true, 2));
        assert_eq!(
            l.policies[1].patterns,
            vec!["/a/with space.log", "/a/q.log", "/a/b c.log"]
        );
    }

    #[test]
    fn a_bad_argument_leaves_its_block_out_an_unknown_directive_only_its_line() {
        let text = "/a/1.log {\n  rotate 2\n  frobnicate\n}\n\n/a/2.log\n{\n  daily\n  size 10Q\n}\n/a/3.log {\n  weekly\n}\nbogus 1\n";
        let l = parse_str(text, "/etc/lr.conf", Permissions::default());
        let msgs: Vec<String> = l.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            vec![
                "/etc/lr.conf:9: size: \"10Q\" is not a size (write e.g. 100, 100k, 10M, 1G)"
                    .to_string(),
            ]
        );
        let warns: Vec<String> = l.warnings.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            warns,
            vec![
                "/etc/lr.conf:3: unknown directive \"frobnicate\"; line ignored (as logrotate does), the rest of the block loads".to_string(),
                "/etc/lr.conf:14: unknown directive \"bogus\"; line ignored (as logrotate does), the rest of the block loads".to_string(),
            ]
        );
        let pats: Vec<&str> = l.policies.iter().map(|p| p.patterns[0].as_str()).collect();
        assert_eq!(pats, vec!["/a/1.log", "/a/3.log"]);
        assert_eq!(l.policies[0].rotate, 2);
    }

    #[test]
    fn debian_rsyslog_lists_its_six_logs_one_per_line() {
        let text = "/var/log/syslog\n/var/log/mail.info\n/var/log/mail.warn\n/var/log/mail.err\n/var/log/mail.log\n/var/log/daemon.log\n{\n\trotate 4\n\tweekly\n\tmissingok\n}\n";
        let l = parse_str(text, "rsyslog", Permissions::default());
        assert_eq!(l.errors, vec![]);
        assert_eq!(l.policies.len(), 1);
        assert_eq!(
            l.policies[0].patterns,
            vec![
                "/var/log/syslog",
                "/var/log/mail.info",
                "/var/log/mail.warn",
                "/var/log/mail.err",
                "/var/log/mail.log",
                "/var/log/daemon.log"
            ]
        );
        assert_eq!((l.policies[0].rotate, l.policies[0].missingok), (4, true));
        assert_eq!(l.policies[0].place, "rsyslog:1");
        // Patterns and `{` on a later line, some on the `{` line itself.
        let l = parse_str(
            "/a/1.log\n/a/2.log /a/3.log {\n rotate 1\n}\n",
            "m",
            Permissions::default(),
        );
        assert_eq!(l.errors, vec![]);
        assert_eq!(
            l.policies[0].patterns,
            vec!["/a/1.log", "/a/2.log", "/a/3.log"]
        );
    }

    #[test]
    fn a_block_on_one_line_and_directives_after_the_brace() {
        let l = parse_str(
            "/a/1.log { }\n/a/2.log { rotate 3\n}\n/a/3.log {\n rotate 5 }\n/a/4.log {\n}\n",
            "o",
            Permissions::default(),
        );
        let pats: Vec<&str> = l.policies.iter().map(|p| p.patterns[0].as_str()).collect();
        // `rotate 5 }` is a bad argument, as in logrotate ("bad rotation count"): that
        // block is left out, the `}` still closes it and the next block loads.
        assert_eq!(pats, vec!["/a/1.log", "/a/2.log", "/a/4.log"]);
        assert_eq!(l.policies[1].rotate, 3);
        assert_eq!(l.errors.len(), 1, "{:?}", l.errors);
        assert_eq!(l.errors[0].place, "o:5");
    }

    #[test]
    fn obsolete_and_mail_directives_keep_the_block() {
        let text = "/a/x.log {\n  errors root@example.org\n  mail ops@example.org\n  mailfirst\n  maillast\n  norenamecopy\n  waeekly\n  rotate 2\n}\n/a/y.log {\n nomail\n}\n";
        let l = parse_str(text, "e", Permissions::default());
        assert_eq!(l.errors, vec![]);
        assert_eq!(l.policies.len(), 2);
        assert_eq!(l.policies[0].rotate, 2);
        assert_eq!(l.policies[0].mail.as_deref(), Some("ops@example.org"));
        assert_eq!(l.policies[1].mail, None);
        let places: Vec<&str> = l.warnings.iter().map(|w| w.place.as_str()).collect();
        assert_eq!(places, vec!["e:2", "e:7"]);
        assert!(
            l.warnings[0].message.contains("obsolete"),
            "{}",
            l.warnings[0]
        );
    }

    #[test]
    fn patterns_without_their_brace_abandon_the_rest_of_the_file() {
        // Before: the directives after the lost `{` became global defaults and the last
        // block inherited `rotate 0` + `copytruncate` (its contents deleted).
        let text = "/a/1.log {\n size 1\n}\n/a/2.log\n  rotate 0\n  copytruncate\n/a/3.log {\n  size 1\n}\n";
        let l = parse_str(text, "p", Permissions::default());
        let pats: Vec<&str> = l.policies.iter().map(|p| p.patterns[0].as_str()).collect();
        assert_eq!(pats, vec!["/a/1.log"]);
        assert_eq!(
            l.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            vec!["p:5: the file patterns of line 4 are not followed by '{'; the rest of this file is not read (as logrotate 3.21)".to_string()]
        );
    }

    #[test]
    fn garbage_or_binary_lines_abandon_the_rest_of_the_file() {
        for garbage in [
            "%garbage here",
            "\u{1}\u{2} binary",
            "x\u{0}\u{0}",
            "\u{FFFD}\u{FFFD}",
        ] {
            let text = format!("/a/1.log {{\n size 1\n}}\n{garbage}\n/a/2.log {{\n size 1\n}}\n");
            let l = parse_str(&text, "g", Permissions::default());
            let pats: Vec<&str> = l.policies.iter().map(|p| p.patterns[0].as_str()).collect();
            assert_eq!(pats, vec!["/a/1.log"], "{garbage:?}");
            assert_eq!(l.errors.len(), 1, "{garbage:?}: {:?}", l.errors);
            assert_eq!(l.errors[0].place, "g:4");
            assert!(
                l.errors[0]
                    .message
                    .ends_with("the rest of this file is not read (as logrotate 3.21)")
            );
        }
        // Inside a block: the block is lost too.
        let l = parse_str(
            "/a/1.log {\n size 1\n\u{1}\u{7f}\n}\n",
            "g",
            Permissions::default(),
        );
        assert!(l.policies.is_empty());
        assert_eq!(l.errors[0].place, "g:3");
    }

    #[test]
    fn invalid_utf8_in_a_file_abandons_it_from_that_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bin.conf");
        let mut bytes = b"/a/1.log {\n size 1\n}\n".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe, 0x80, b'\n']);
        bytes.extend_from_slice(b"/a/2.log {\n}\n");
        std::fs::write(&f, bytes).unwrap();
        let l = load_file(&f, Permissions::default());
        assert_eq!(l.policies.len(), 1);
        assert_eq!(l.errors[0].place, format!("{}:4", f.display()));
    }

    #[test]
    fn an_include_diamond_reads_each_file_once() {
        // Level k includes level k+1 twice: before, 2^16 parses (minutes, gigabytes).
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let levels = 16;
        for k in 0..levels {
            let next = d.join(format!("l{}", k + 1));
            std::fs::write(
                d.join(format!("l{k}")),
                format!(
                    "include {0}\ninclude {0}\n/a/{k}.log {{\n}}\n",
                    next.display()
                ),
            )
            .unwrap();
        }
        std::fs::write(d.join(format!("l{levels}")), "/a/last.log {\n}\n").unwrap();
        let l = load_file(&d.join("l0"), Permissions::default());
        assert_eq!(l.errors, vec![]);
        assert_eq!(l.policies.len(), levels + 1);
        assert_eq!(l.warnings.len(), levels);
        assert_eq!(
            l.warnings[0].to_string(),
            format!(
                "{}:2: {1} was read already (as {1}); not read again",
                d.join("l15").display(),
                d.join("l16").display()
            )
        );
    }

    #[test]
    fn a_fifo_or_device_is_never_read_as_config() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let main = dir.path().join("main.conf");
        std::fs::write(
            &main,
            format!(
                "include {}\ninclude /dev/zero\n/a/x.log {{\n}}\n",
                fifo.display()
            ),
        )
        .unwrap();
        let l = load_file(&main, Permissions::default());
        assert_eq!(l.policies.len(), 1);
        let msgs: Vec<String> = l.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            vec![
                format!(
                    "{}:1: {} is not a regular file; not read",
                    main.display(),
                    fifo.display()
                ),
                format!(
                    "{}:2: /dev/zero is not a regular file; not read",
                    main.display()
                ),
            ]
        );
        // The main file itself.
        let l = load_file(&fifo, Permissions::default());
        assert_eq!(l.errors.len(), 1);
        // A FIFO inside an included directory is skipped like logrotate does.
        let d = dir.path().join("d");
        std::fs::create_dir(&d).unwrap();
        nix::unistd::mkfifo(
            &d.join("a"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        std::fs::write(d.join("b"), "/a/b.log {\n}\n").unwrap();
        std::fs::write(&main, format!("include {}\n", d.display())).unwrap();
        let l = load_file(&main, Permissions::default());
        assert_eq!((l.policies.len(), l.errors.len()), (1, 0));
    }

    #[test]
    fn taboopat_and_tabooext_plus_skip_included_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        std::fs::create_dir(&d).unwrap();
        for n in ["keep", "skip.bak", "old-x", "c.dpkg-old"] {
            std::fs::write(d.join(n), format!("/a/{n}.log {{\n}}\n")).unwrap();
        }
        let main = dir.path().join("main.conf");
        std::fs::write(
            &main,
            format!("tabooext + .bak\ntaboopat old-*\ninclude {}\n", d.display()),
        )
        .unwrap();
        let l = load_file(&main, Permissions::default());
        let pats: Vec<&str> = l.policies.iter().map(|p| p.patterns[0].as_str()).collect();
        assert_eq!(pats, vec!["/a/keep.log"]);
    }

    #[test]
    fn tilde_in_a_pattern_is_the_home_directory() {
        let home = nix::unistd::User::from_name("root").unwrap().unwrap().dir;
        let l = parse_str("~root/x.log {\n}\n", "t", Permissions::default());
        assert_eq!(l.errors, vec![]);
        assert_eq!(
            l.policies[0].patterns,
            vec![format!("{}/x.log", home.display())]
        );
        assert_eq!(expand_tilde("~nosuchuser-xyz/a"), "~nosuchuser-xyz/a");
        assert_eq!(expand_tilde("/a/~b"), "/a/~b");
    }

    #[test]
    fn scripts_are_read_to_endscript_and_refused_without_permission() {
        let text = "/a/x.log {\n  sharedscripts\n  postrotate\n    kill -HUP $(cat /run/x.pid)\n  endscript\n}\n";
        let l = parse_str(text, "s", Permissions::default());
        assert_eq!(l.policies.len(), 0);
        assert_eq!(l.errors.len(), 1);
        assert!(
            l.errors[0]
                .to_string()
                .starts_with("s:3: postrotate scripts are disabled: set logs.allow_scripts: true"),
            "{}",
            l.errors[0]
        );
        let l = parse_str(
            text,
            "s",
            Permissions {
                scripts: true,
                external_compress: false,
            },
        );
        assert_eq!(l.errors, vec![]);
        assert_eq!(
            l.policies[0].scripts.postrotate.as_deref(),
            Some("    kill -HUP $(cat /run/x.pid)")
        );
        assert!(l.policies[0].scripts.shared);
    }

    #[test]
    fn unclosed_block_and_missing_endscript_are_reported() {
        let l = parse_str("/a/x.log {\n  daily\n", "u", Permissions::default());
        assert_eq!(l.errors[0].to_string(), "u:1: block is not closed with '}'");
        assert!(l.policies.is_empty());
        let l = parse_str(
            "/a/x.log {\n  postrotate\n  echo\n}\n",
            "u",
            Permissions {
                scripts: true,
                external_compress: false,
            },
        );
        assert_eq!(l.errors[0].to_string(), "u:2: postrotate has no endscript");
    }

    #[test]
    fn include_reads_files_and_directories_in_order_skipping_taboo() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("logrotate.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("b"), "/b.log {\n}\n").unwrap();
        std::fs::write(d.join("a"), "/a.log {\n}\n").unwrap();
        std::fs::write(d.join("c.dpkg-old"), "/c.log {\n}\n").unwrap();
        std::fs::write(d.join("d.swp"), "garbage {\n").unwrap();
        let main = dir.path().join("logrotate.conf");
        std::fs::write(
            &main,
            format!(
                "weekly\nrotate 4\ninclude {}\n/m.log {{\n}}\ninclude {}\n",
                d.display(),
                main.display()
            ),
        )
        .unwrap();
        let l = load_file(&main, Permissions::default());
        let pats: Vec<&str> = l.policies.iter().map(|p| p.patterns[0].as_str()).collect();
        assert_eq!(pats, vec!["/a.log", "/b.log", "/m.log"]);
        assert_eq!(l.policies[0].rotate, 4);
        assert_eq!(l.errors.len(), 1);
        assert!(
            l.errors[0].message.ends_with("includes itself"),
            "{}",
            l.errors[0]
        );
        assert_eq!(l.errors[0].place, format!("{}:6", main.display()));
    }

    #[test]
    fn relative_patterns_are_rejected() {
        let l = parse_str("x.log {\n}\n", "r", Permissions::default());
        assert_eq!(
            l.errors[0].to_string(),
            "r:2: file pattern \"x.log\" must be an absolute path"
        );
    }
}
