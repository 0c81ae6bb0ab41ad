//! The patterns a log check counts, compiled once: a [`RegexSet`] that says which patterns
//! a line matches, and a search that finds candidate lines in a whole buffer of records
//! at once (most lines match nothing, and one search over many lines is far cheaper than
//! one search per line): the patterns' required literals with aho-corasick in lowercased
//! text when every pattern has some, else one union [`Regex`].
//!
//! Every pattern is a Rust regex matched case-insensitively on bytes (as `grep -i`):
//! `(?i-u)` is not used, so `(?i)` folds Unicode case too where the text is UTF-8, and
//! bytes that are not UTF-8 never match a letter but do not stop the search.

use aho_corasick::AhoCorasick;
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
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
pub(crate) const MAX_PATTERNS: usize = 32;

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
    /// Literals one of which starts every match of every pattern, ASCII-lowercased, when
    /// they can be extracted (see [`required_literals`]): searched in a lowercased copy of
    /// the text, they find candidate lines far faster than the case-insensitive union.
    prefilter: Option<AhoCorasick>,
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
        let prefilter = patterns
            .iter()
            .map(|p| required_literals(&p.regex))
            .collect::<Option<Vec<_>>>()
            .and_then(|sets| small_literal_set(sets.into_iter().flatten().collect()))
            .and_then(|lits| {
                // Leftmost: the first candidate line in the text is the one reported.
                AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                    .build(lits)
                    .ok()
            });
        Ok(Self {
            prefilter,
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

    /// The literal prefilter, when every pattern has required literals: a match of it in
    /// the ASCII-lowercased text marks a candidate line (see [`Matcher::candidate_lowered`]).
    pub(crate) fn has_prefilter(&self) -> bool {
        self.prefilter.is_some()
    }

    /// With a prefilter, the first position at or after `start` in `lowered` (text with
    /// ASCII letters lowercased) where some pattern may match; `None` when none can, or
    /// without a prefilter. The line around it must still be checked with
    /// [`Matcher::matches`] on the original text.
    pub(crate) fn candidate_lowered(&self, lowered: &[u8], start: usize) -> Option<usize> {
        let ac = self.prefilter.as_ref()?;
        let input = aho_corasick::Input::new(lowered).span(start..lowered.len());
        ac.find(input).map(|m| m.start())
    }

    /// Whether every line must be matched alone (an anchored pattern).
    pub(crate) fn per_line(&self) -> bool {
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

/// More literals than this and aho-corasick cannot use its SIMD search (Teddy) and
/// falls back to an automaton slower than the union regex.
const MAX_PREFILTER_LITERALS: usize = 64;

/// `lits` made into a set Teddy can search: each literal cut to a prefix (a prefix of a
/// required prefix is still required), 8 bytes first and shorter while there are more
/// than [`MAX_PREFILTER_LITERALS`] (`status=[45][0-9][0-9]` alone gives 200 literals,
/// `status=4` and `status=5` once cut). `None` when even 3-byte prefixes are too many.
fn small_literal_set(lits: Vec<Vec<u8>>) -> Option<Vec<Vec<u8>>> {
    for len in [8, 6, 4, 3] {
        let mut cut: Vec<Vec<u8>> = lits
            .iter()
            .map(|l| l[..l.len().min(len)].to_vec())
            .collect();
        cut.sort();
        cut.dedup();
        if !cut.is_empty() && cut.len() <= MAX_PREFILTER_LITERALS {
            return Some(cut);
        }
    }
    None
}

/// ASCII-lowercased literals one of which starts every match of `pattern` (as the
/// matcher compiles it: case-insensitive, bytes), or `None` when there is no such finite
/// set without the empty literal (a pattern like `.*x` or `[a-z]+ing`).
///
/// Why lowercasing is sound: the patterns are matched case-insensitively with ASCII case
/// folding (`unicode(false)`), so a match `M` in the text equals, up to ASCII case, some
/// text `S` the pattern matches case-sensitively; `S` starts with a literal `L` of the
/// case-sensitive prefix set, so `lower(M)` starts with `lower(L)`. The literals only
/// select candidate lines: every candidate is matched with the real patterns.
pub(crate) fn required_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()?;
    let mut ex = Extractor::new();
    ex.kind(ExtractKind::Prefix);
    let seq = ex.extract(&hir);
    let lits = seq.literals()?;
    if lits.iter().any(|l| l.as_bytes().is_empty()) {
        return None;
    }
    Some(
        lits.iter()
            .map(|l| l.as_bytes().to_ascii_lowercase())
            .collect(),
    )
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
    fn required_literals_are_lowercased_prefixes_or_none() {
        let lits = |p: &str| {
            required_literals(p).map(|v| {
                v.into_iter()
                    .map(|l| String::from_utf8(l).unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(lits("Error"), Some(vec!["error".into()]));
        assert_eq!(
            lits("authentication failed"),
            Some(vec!["authentication failed".into()])
        );
        let status = lits("status=[45][0-9][0-9]").unwrap();
        assert!(
            status
                .iter()
                .all(|l| l.starts_with("status=4") || l.starts_with("status=5")),
            "{status:?}"
        );
        assert_eq!(
            lits("WARN|(?-i)Fatal"),
            Some(vec!["warn".into(), "fatal".into()])
        );
        assert_eq!(lits(".*x"), None);
        assert_eq!(lits("x?"), None, "the empty literal matches everywhere");
        assert_eq!(lits("[a-z]+ing"), None);
        assert_eq!(
            small_literal_set(required_literals("status=[45][0-9][0-9]").unwrap()),
            Some(vec![b"status=4".to_vec(), b"status=5".to_vec()])
        );
        assert_eq!(
            small_literal_set(vec![b"authentication failed".to_vec(), b"warn".to_vec()]),
            Some(vec![b"authenti".to_vec(), b"warn".to_vec()])
        );
        let m = Matcher::new(&default_patterns()).unwrap();
        assert!(m.has_prefilter());
        let low = b"ok\nget / status=503\n".to_ascii_lowercase();
        assert_eq!(m.candidate_lowered(&low, 0), Some(9));
        assert_eq!(m.candidate_lowered(&low, 10), None);
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
