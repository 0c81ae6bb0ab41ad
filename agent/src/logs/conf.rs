//! The logrotate.conf parser: reads an operator's existing configuration unchanged.
//!
//! Syntax as in logrotate 3.21: one directive per line (`name args`, with an optional
//! `=` between name and value), `#` comments on their own line, global directives at the
//! top level that become the defaults of later blocks, blocks
//! `PATTERN [PATTERN…] { … }` whose patterns may be quoted (`'`, `"`, `\` as in the
//! shell), script bodies from `postrotate` (etc.) up to a line `endscript`, and
//! `include FILE_OR_DIR` (a directory's regular files in name order, skipping the taboo
//! extensions).
//!
//! Errors never stop the load: each bad directive is reported with `file:line`, a block
//! with any error is left out whole (nothing it names is rotated), and every other block
//! still loads.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::policy::{Permissions, Policy, SCRIPT_DIRECTIVES};

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

/// The result of loading: the good blocks and every error.
#[derive(Debug, Default, Clone)]
pub struct Loaded {
    pub policies: Vec<Policy>,
    pub errors: Vec<ConfError>,
}

/// How deep `include` may nest (logrotate has no limit; a loop would never end).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Reads a logrotate.conf file (and what it includes).
pub fn load_file(path: &Path, perms: Permissions) -> Loaded {
    let mut p = Parser {
        perms,
        out: Loaded::default(),
        visiting: HashSet::new(),
    };
    let mut globals = Policy::default();
    p.file(path, &mut globals, 0, None);
    p.out
}

/// Parses config text; `name` is used in error places.
pub fn parse_str(text: &str, name: &str, perms: Permissions) -> Loaded {
    let mut p = Parser {
        perms,
        out: Loaded::default(),
        visiting: HashSet::new(),
    };
    let mut globals = Policy::default();
    p.text(text, Path::new(name), &mut globals, 0);
    p.out
}

struct Parser {
    perms: Permissions,
    out: Loaded,
    visiting: HashSet<PathBuf>,
}

/// A block being read.
struct Block {
    policy: Policy,
    failed: bool,
}

impl Parser {
    fn err(&mut self, file: &Path, line: usize, message: impl Into<String>) {
        self.out.errors.push(ConfError {
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
        let place = |s: &mut Self, m: String| match from {
            Some((f, l)) => s.err(f, l, m),
            None => s.out.errors.push(ConfError {
                place: path.display().to_string(),
                message: m,
            }),
        };
        if depth > MAX_INCLUDE_DEPTH {
            place(
                self,
                format!(
                    "include of {} nests deeper than {MAX_INCLUDE_DEPTH} levels",
                    path.display()
                ),
            );
            return;
        }
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                place(self, format!("cannot read {}: {e}", path.display()));
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
                if is_taboo(&name, &globals.tabooext) || !f.is_file() {
                    continue;
                }
                self.file(&f, globals, depth + 1, from);
            }
            return;
        }
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if !self.visiting.insert(key.clone()) {
            place(self, format!("{} includes itself", path.display()));
            return;
        }
        match std::fs::read_to_string(path) {
            Ok(text) => self.text(&text, path, globals, depth),
            Err(e) => place(self, format!("cannot read {}: {e}", path.display())),
        }
        self.visiting.remove(&key);
    }

    fn text(&mut self, text: &str, file: &Path, globals: &mut Policy, depth: usize) {
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        let mut block: Option<Block> = None;
        // Patterns read on a line without `{`, waiting for the `{` line.
        let mut pending: Option<(Vec<String>, usize)> = None;
        while i < lines.len() {
            let lineno = i + 1;
            let line = lines[i].trim();
            i += 1;
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(b) = block.as_mut() {
                if line == "}" {
                    let b = block.take().unwrap_or_else(|| unreachable!());
                    self.finish_block(b, file, lineno);
                    continue;
                }
                let (name, args) = match split_directive(line) {
                    Ok(v) => v,
                    Err(e) => {
                        self.err(file, lineno, e);
                        b.failed = true;
                        continue;
                    }
                };
                let script = if SCRIPT_DIRECTIVES.contains(&name.as_str()) {
                    match read_script(&lines, &mut i) {
                        Some(s) => Some(s),
                        None => {
                            self.err(file, lineno, format!("{name} has no endscript"));
                            b.failed = true;
                            break;
                        }
                    }
                } else {
                    None
                };
                if name == "include" {
                    self.err(file, lineno, "include is not allowed inside a block");
                    b.failed = true;
                    continue;
                }
                if let Err(e) = b.policy.apply(&name, &args, script.as_deref(), self.perms) {
                    self.err(file, lineno, e);
                    b.failed = true;
                }
                continue;
            }
            // Top level.
            if line == "{" {
                match pending.take() {
                    Some((patterns, at)) => {
                        block = Some(self.open_block(globals, patterns, file, at))
                    }
                    None => self.err(file, lineno, "'{' without file patterns before it"),
                }
                continue;
            }
            if let Some((_, at)) = pending.take() {
                self.err(file, at, "file patterns must be followed by '{'");
            }
            let first = line.chars().next().unwrap_or(' ');
            if first.is_ascii_alphabetic() && !line.ends_with('{') {
                let (name, args) = match split_directive(line) {
                    Ok(v) => v,
                    Err(e) => {
                        self.err(file, lineno, e);
                        continue;
                    }
                };
                if name == "include" {
                    match args.as_slice() {
                        [p] => {
                            let target = resolve_include(file, p);
                            self.file(&target, globals, depth + 1, Some((file, lineno)));
                        }
                        _ => self.err(file, lineno, "include takes one file or directory"),
                    }
                    continue;
                }
                if SCRIPT_DIRECTIVES.contains(&name.as_str()) {
                    if read_script(&lines, &mut i).is_none() {
                        self.err(file, lineno, format!("{name} has no endscript"));
                        break;
                    }
                    self.err(
                        file,
                        lineno,
                        format!("{name} is only allowed inside a block"),
                    );
                    continue;
                }
                if let Err(e) = globals.apply(&name, &args, None, self.perms) {
                    self.err(file, lineno, e);
                }
                continue;
            }
            if line == "}" {
                self.err(file, lineno, "'}' without an open block");
                continue;
            }
            // A pattern line, with or without the `{`.
            let (pat_text, opens) = match line.strip_suffix('{') {
                Some(p) => (p.trim(), true),
                None => (line, false),
            };
            let patterns = match shell_words(pat_text) {
                Ok(p) if !p.is_empty() => p,
                Ok(_) => {
                    self.err(file, lineno, "a block needs at least one file pattern");
                    Vec::new()
                }
                Err(e) => {
                    self.err(file, lineno, e);
                    Vec::new()
                }
            };
            if opens {
                let mut b = self.open_block(globals, patterns.clone(), file, lineno);
                b.failed |= patterns.is_empty();
                block = Some(b);
            } else if !patterns.is_empty() {
                pending = Some((patterns, lineno));
            }
        }
        if let Some(b) = block {
            self.err(
                file,
                b.policy
                    .place
                    .rsplit(':')
                    .next()
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0),
                "block is not closed with '}'",
            );
            let _ = b;
        }
        if let Some((_, at)) = pending {
            self.err(file, at, "file patterns must be followed by '{'");
        }
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
        if b.failed {
            return;
        }
        if let Err(e) = b.policy.validate() {
            self.err(file, close_line, e);
            return;
        }
        self.out.policies.push(b.policy);
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

fn is_taboo(name: &str, taboo: &[String]) -> bool {
    taboo.iter().any(|t| match t.strip_suffix('*') {
        Some(prefix) => name.contains(prefix),
        None => name.ends_with(t.as_str()),
    })
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
fn split_directive(line: &str) -> Result<(String, Vec<String>), String> {
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

/// Splits words with the shell's `'`, `"` and `\` quoting.
///
/// # Errors
/// An unterminated quote.
pub fn shell_words(s: &str) -> Result<Vec<String>, String> {
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
                        None => return Err(format!("unterminated ' in {s:?}")),
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
                            None => return Err(format!("unterminated \" in {s:?}")),
                        },
                        Some(ch) => cur.push(ch),
                        None => return Err(format!("unterminated \" in {s:?}")),
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
    fn a_broken_block_is_left_out_with_file_and_line_and_the_rest_loads() {
        let text = "/a/1.log {\n  rotate 2\n  frobnicate\n}\n\n/a/2.log\n{\n  daily\n  size 10Q\n}\n/a/3.log {\n  weekly\n}\nbogus 1\n";
        let l = parse_str(text, "/etc/lr.conf", Permissions::default());
        let msgs: Vec<String> = l.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            vec![
                "/etc/lr.conf:3: unknown directive \"frobnicate\"".to_string(),
                "/etc/lr.conf:9: size: \"10Q\" is not a size (write e.g. 100, 100k, 10M, 1G)"
                    .to_string(),
                "/etc/lr.conf:14: unknown directive \"bogus\"".to_string(),
            ]
        );
        assert_eq!(l.policies.len(), 1);
        assert_eq!(l.policies[0].patterns, vec!["/a/3.log"]);
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
