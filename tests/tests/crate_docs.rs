//! The crate docs tell a newcomer where to look (issue 16): where log rotation is decided,
//! where an image is judged in use, where a check is defined and how a report reaches the
//! store. Each crate's `# Where to look` section must name all four, and every file and
//! Rust path it names must exist, so the docs cannot silently point at code that moved.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The `# Where to look` section of a crate's `//!` docs.
fn where_to_look(lib_rs: &str) -> String {
    let docs: Vec<&str> = lib_rs
        .lines()
        .map_while(|l| l.strip_prefix("//!"))
        .map(str::trim_start)
        .collect();
    let start = docs
        .iter()
        .position(|l| *l == "# Where to look")
        .expect("a `# Where to look` section");
    docs[start + 1..]
        .iter()
        .take_while(|l| !l.starts_with('#'))
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

/// The code spans of `text`, each with whether it is an intra-doc link (`[`...`]`).
fn code_spans(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('`') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('`') else { break };
        let link = rest[..open].ends_with('[') && after[close + 1..].starts_with(']');
        out.push((after[..close].replace('\n', " "), link));
        rest = &after[close + 1..];
    }
    out
}

fn is_rust_path(s: &str) -> bool {
    !s.is_empty()
        && s.split("::").all(|seg| {
            seg.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Whether `path` (`module::module::Item::method`) exists in the crate at `krate`: modules
/// as files, the rest as items declared in the last module's file. Generated code
/// (`include_proto!`) is taken on trust.
fn resolves(krate: &Path, path: &str) -> Result<(), String> {
    let mut dir = krate.join("src");
    let mut file = dir.join("lib.rs");
    let mut segments = path.split("::").peekable();
    while let Some(seg) = segments.next() {
        let (as_file, as_mod) = (dir.join(format!("{seg}.rs")), dir.join(seg).join("mod.rs"));
        if as_file.is_file() {
            file = as_file;
            dir = dir.join(seg);
            continue;
        }
        if as_mod.is_file() {
            file = as_mod;
            dir = dir.join(seg);
            continue;
        }
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{file:?}: {e}"))?;
        if text.contains("include_proto!") {
            return Ok(());
        }
        // This item and what follows it (a method of a type) are declared in `file`.
        for item in std::iter::once(seg).chain(segments.by_ref()) {
            let declared = [
                "fn", "struct", "enum", "trait", "const", "static", "type", "mod",
            ]
            .iter()
            .any(|kw| {
                text.contains(&format!("{kw} {item}("))
                    || text.contains(&format!("{kw} {item} "))
                    || text.contains(&format!("{kw} {item}:"))
                    || text.contains(&format!("{kw} {item};"))
                    || text.contains(&format!("{kw} {item}<"))
            });
            if !declared {
                return Err(format!("{path}: no {item} in {}", file.display()));
            }
        }
        return Ok(());
    }
    Ok(())
}

fn check_crate(dir: &str, krate_name: &str) -> Vec<String> {
    let root = root();
    let lib = std::fs::read_to_string(root.join(dir).join("src/lib.rs")).expect("lib.rs");
    let section = where_to_look(&lib);
    let mut problems = Vec::new();
    let lower = section.to_lowercase();
    for topic in ["log rotation", "image", "check", "store"] {
        if !lower.contains(topic) {
            problems.push(format!(
                "{dir}: `# Where to look` does not mention {topic:?}"
            ));
        }
    }
    let crates = [
        ("caretaker_core", "core"),
        ("caretaker_proto", "proto"),
        ("caretaker_agent", "agent"),
        ("caretaker_aggregator", "aggregator"),
    ];
    let mut checked = 0;
    for (span, link) in code_spans(&section) {
        if span.contains('/') && !span.contains(' ') {
            checked += 1;
            if !root.join(&span).exists() {
                problems.push(format!("{dir}: `{span}` does not exist"));
            }
        } else if is_rust_path(&span) && (link || span.contains("::")) {
            let (krate, path) = match crates
                .iter()
                .find(|(name, _)| span == *name || span.starts_with(&format!("{name}::")))
            {
                Some((name, d)) => (root.join(d), span[name.len()..].trim_start_matches("::")),
                None => (root.join(dir), span.as_str()),
            };
            checked += 1;
            if !path.is_empty()
                && let Err(e) = resolves(&krate, path)
            {
                problems.push(format!("{dir} ({krate_name}): {e}"));
            }
        }
    }
    if checked < 4 {
        problems.push(format!("{dir}: only {checked} paths named"));
    }
    problems
}

#[test]
fn where_to_look_names_the_four_paths_and_they_exist() {
    let mut problems = Vec::new();
    for (dir, name) in [
        ("core", "caretaker-core"),
        ("agent", "caretaker-agent"),
        ("aggregator", "caretaker-aggregator"),
    ] {
        problems.extend(check_crate(dir, name));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_moved_module_is_caught() {
    let agent = root().join("agent");
    assert_eq!(resolves(&agent, "logs::schedule::decide"), Ok(()));
    assert!(resolves(&agent, "logs::schedule::no_such_fn").is_err());
    assert!(resolves(&agent, "logs::nowhere").is_err());
    assert_eq!(
        code_spans("see [`a::b`] and `c/d.rs`"),
        [("a::b".to_string(), true), ("c/d.rs".to_string(), false)]
    );
}
