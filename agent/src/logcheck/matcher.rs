//! The patterns a log check counts, compiled once: a [`RegexSet`] that says which patterns
//! a line matches, and one union [`Regex`] that finds candidate lines in a whole buffer of
//! records at once (most lines match nothing, and one search over many lines is far
//! cheaper than one search per line).
//!
//! Every pattern is a Rust regex matched case-insensitively on bytes (as `grep -i`):
//! `(?i-u)` is not used, so `(?i)` folds Unicode case too where the text is UTF-8, and
//! bytes that are not UTF-8 never match a letter but do not stop the search.

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};

/// The default patterns, the four greps of the daily log check script, each
/// case-insensitive: `error`, `warn`, `authentication failed`, `status=[45][0-9][0-9]`
/// (the script's "status=4xx|5xx": a 4xx or 5xx HTTP status after `status=`).
pub fn default_patterns() -> Vec<Pattern> {
    [
        ("error", "error"),
        ("warn", "warn"),
        ("authentication_failed", "authentication failed"),
        ("http_4xx_5xx", "status=[45][0-9][0-9]"),
    ]
    .into_iter()
    .map(|(name, regex)| Pattern {
        name: name.into(),
        regex: regex.into(),
    })
    .collect()
}

/// One pattern to count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    /// The name in reports and in the `pattern` field of the output.
    pub name: String,
    /// A Rust regex (`regex` crate syntax), matched case-insensitively.
    pub regex: String,
}

/// At most this many patterns (each costs a little on every line).
pub const MAX_PATTERNS: usize = 32;

/// A pattern set that cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    #[error("log_check.patterns: none given")]
    Empty,
    #[error("log_check.patterns: {0} patterns, at most {MAX_PATTERNS}")]
    TooMany(usize),
    #[error("log_check.patterns[{index}] ({name}): invalid regex")]
    Regex {
        index: usize,
        name: String,
        #[source]
        source: regex::Error,
    },
    #[error("log_check.patterns[{index}]: name {name:?} is empty or used twice")]
    Name { index: usize, name: String },
    #[error("log_check.patterns: the union of all patterns does not compile")]
    Union(#[source] regex::Error),
}

/// The compiled patterns.
#[derive(Debug, Clone)]
pub struct Matcher {
    names: Vec<String>,
    set: RegexSet,
    union: Regex,
    /// Some pattern is anchored (`^`, `$`, `\A`, `\z`): anchors mean the start and end
    /// of the line's content, which a search over many records cannot honour, so every
    /// line is matched alone.
    per_line: bool,
}

/// Compiled size limit per regex: big enough for any sensible pattern, small enough that
/// a hostile config cannot make the agent build a huge automaton.
const SIZE_LIMIT: usize = 8 << 20;

impl Matcher {
    /// Compiles `patterns` (case-insensitive).
    ///
    /// # Errors
    /// No pattern, too many, a duplicate name or a regex that does not compile.
    pub fn new(patterns: &[Pattern]) -> Result<Self, MatcherError> {
        if patterns.is_empty() {
            return Err(MatcherError::Empty);
        }
        if patterns.len() > MAX_PATTERNS {
            return Err(MatcherError::TooMany(patterns.len()));
        }
        for (index, p) in patterns.iter().enumerate() {
            if p.name.is_empty() || patterns[..index].iter().any(|q| q.name == p.name) {
                return Err(MatcherError::Name {
                    index,
                    name: p.name.clone(),
                });
            }
            RegexBuilder::new(&p.regex)
                .case_insensitive(true)
                .unicode(false)
                .size_limit(SIZE_LIMIT)
                .build()
                .map_err(|source| MatcherError::Regex {
                    index,
                    name: p.name.clone(),
                    source,
                })?;
        }
        let set = RegexSetBuilder::new(patterns.iter().map(|p| &p.regex))
            .case_insensitive(true)
            .unicode(false)
            .size_limit(SIZE_LIMIT)
            .build()
            .map_err(MatcherError::Union)?;
        let union = patterns
            .iter()
            .map(|p| format!("(?:{})", p.regex))
            .collect::<Vec<_>>()
            .join("|");
        let union = RegexBuilder::new(&union)
            .case_insensitive(true)
            .unicode(false)
            .size_limit(SIZE_LIMIT)
            .build()
            .map_err(MatcherError::Union)?;
        let per_line = patterns.iter().any(|p| {
            p.regex.contains(['^', '$']) || p.regex.contains("\\A") || p.regex.contains("\\z")
        });
        Ok(Self {
            per_line,
            names: patterns.iter().map(|p| p.name.clone()).collect(),
            set,
            union,
        })
    }

    /// The pattern names, in order; indexes of [`Matcher::matches`] refer to them.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The first position at or after `start` in `hay` where some pattern may match; the
    /// line around it must still be checked with [`Matcher::matches`].
    pub fn candidate(&self, hay: &[u8], start: usize) -> Option<usize> {
        self.union.find_at(hay, start).map(|m| m.start())
    }

    /// Whether every line must be matched alone (an anchored pattern).
    pub fn per_line(&self) -> bool {
        self.per_line
    }

    /// Whether any pattern matches `line`.
    pub fn any(&self, line: &[u8]) -> bool {
        self.union.is_match(line)
    }

    /// Calls `f` with the index of each pattern matching `line`.
    pub fn matches(&self, line: &[u8], mut f: impl FnMut(usize)) {
        for i in self.set.matches(line).iter() {
            f(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(m: &Matcher, line: &str) -> Vec<usize> {
        let mut v = Vec::new();
        m.matches(line.as_bytes(), |i| v.push(i));
        v
    }

    #[test]
    fn defaults_are_case_insensitive_like_grep_i() {
        let m = Matcher::new(&default_patterns()).unwrap();
        assert_eq!(
            m.names(),
            ["error", "warn", "authentication_failed", "http_4xx_5xx"]
        );
        assert_eq!(hits(&m, "an ERROR here"), [0]);
        assert_eq!(hits(&m, "Warning: Errors"), [0, 1]);
        assert_eq!(hits(&m, "user x: Authentication Failed"), [2]);
        assert_eq!(hits(&m, "GET / STATUS=503 took 3ms"), [3]);
        assert_eq!(
            hits(&m, "GET / status=200 status=3000"),
            Vec::<usize>::new()
        );
        assert_eq!(hits(&m, "status=4041"), [3], "grep matches a substring too");
        assert!(m.any(b"\xff\xfeerror\xff"), "non-UTF-8 around a match");
        assert_eq!(m.candidate(b"ok\nok\nwarn", 0), Some(6));
    }

    #[test]
    fn bad_configs_name_the_pattern() {
        let bad = vec![Pattern {
            name: "x".into(),
            regex: "(".into(),
        }];
        let e = Matcher::new(&bad).unwrap_err().to_string();
        assert_eq!(e, "log_check.patterns[0] (x): invalid regex");
        assert!(matches!(Matcher::new(&[]), Err(MatcherError::Empty)));
        let mut dup = default_patterns();
        dup[1].name = "error".into();
        assert!(matches!(
            Matcher::new(&dup),
            Err(MatcherError::Name { index: 1, .. })
        ));
    }
}
