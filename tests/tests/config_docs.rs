//! `docs/config.md`, the page of every config option, is generated from the config types
//! themselves: every struct with `#[serde(deny_unknown_fields)]` in the agent's, the
//! aggregator's and core's sources, each field with its `///` doc (which states its unit
//! and bounds) and its default, which is the struct's `Default` value serialized the way
//! a config file writes it (so a changed default changes the page). A field doc that still
//! names a default ("Default 10s") must name the one `Default` has. This test regenerates
//! the page and fails when the checked-in copy differs;
//! `CARETAKER_BLESS=1 cargo test -p caretaker-tests --test config_docs` rewrites it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use caretaker_core::config::doc::same_value;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// One documented field: name, type, doc text.
type Field = (String, String, String);

/// The marker a field's doc gets when a `macro_rules!` repetition declares it
/// (`$( pub $field: Option<Arg>, )*`): [`generate`] replaces it with the field's own text.
const MACRO_FIELD: &str = "\u{0}macro field";

/// The identifiers a `macro_rules! NAME` in `src` is invoked with (`NAME!(a, b, c);`):
/// the fields its repetition declares.
fn macro_arguments(src: &str, name: &str) -> Vec<String> {
    let Some(start) = src.find(&format!("\n{name}!(")) else {
        return Vec::new();
    };
    let args = &src[start + name.len() + 3..];
    let end = args.find(')').unwrap_or(args.len());
    args[..end]
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

/// The config structs of one source file: struct name → (struct doc, fields).
fn config_structs(src: &str) -> Vec<(String, String, Vec<Field>)> {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        let Some(rest) = line.strip_prefix("pub struct ") else {
            i += 1;
            continue;
        };
        let Some(name) = rest.strip_suffix(" {") else {
            i += 1;
            continue;
        };
        // The attributes and docs above the struct.
        let mut j = i;
        let mut doc = Vec::new();
        let mut strict = false;
        while j > 0 {
            let above = lines[j - 1].trim();
            if let Some(d) = above.strip_prefix("///") {
                doc.push(d.trim().to_string());
            } else if above.starts_with("#[") {
                strict |= above.contains("deny_unknown_fields");
            } else {
                break;
            }
            j -= 1;
        }
        doc.reverse();
        if !strict || name.contains('<') {
            // Not a config struct (configs deny unknown fields).
            i += 1;
            continue;
        }
        let mut fields = Vec::new();
        let mut field_doc: Vec<String> = Vec::new();
        // Inside an attribute spread over several lines (`#[serde(\n default = ..\n)]`).
        let mut in_attr = false;
        i += 1;
        while i < lines.len() && lines[i].trim() != "}" {
            let l = lines[i].trim();
            if in_attr || (l.starts_with("#[") && !l.ends_with(']')) {
                in_attr = !l.ends_with(']');
            } else if let Some(d) = l.strip_prefix("///") {
                field_doc.push(d.trim().to_string());
            } else if let Some(rep) = l.strip_prefix("$(")
                && let Some((_, ty)) = rep.split_once("pub $")
                && let Some((_, ty)) = ty.split_once(':')
            {
                // A repetition: the fields are the arguments the enclosing macro is invoked with.
                let ty = ty
                    .trim()
                    .trim_end_matches(")*")
                    .trim()
                    .trim_end_matches(',');
                let macro_name = lines[..i]
                    .iter()
                    .rev()
                    .find_map(|m| m.trim().strip_prefix("macro_rules! "))
                    .map(|m| m.trim_end_matches(" {").trim());
                let args = macro_name.map_or_else(Vec::new, |m| macro_arguments(src, m));
                assert!(
                    !args.is_empty(),
                    "struct {name}: repetition {l:?} with no macro invocation"
                );
                for a in args {
                    fields.push((a, ty.to_string(), MACRO_FIELD.to_string()));
                }
                field_doc.clear();
            } else if let Some(f) = l.strip_prefix("pub ") {
                if let Some((fname, ty)) = f.split_once(':') {
                    fields.push((
                        fname.trim().to_string(),
                        ty.trim().trim_end_matches(',').to_string(),
                        field_doc.join(" "),
                    ));
                }
                field_doc.clear();
            } else if !l.starts_with("#[") && !l.starts_with("//") {
                field_doc.clear();
            }
            i += 1;
        }
        out.push((name.to_string(), doc.join(" "), fields));
    }
    out
}

/// The logrotate directives' meanings from `agent/LOGS.md`'s directive table (the one
/// place they are written): directive name → (its syntax, meaning). A row naming several
/// directives (`` `missingok` / `nomissingok` ``) gives each the row's text.
fn directive_meanings() -> BTreeMap<String, (String, String)> {
    let path = root().join("agent/LOGS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut out = BTreeMap::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("| directive | meaning") {
            in_table = true;
            continue;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        if !line.starts_with('|') {
            break;
        }
        let row = line.replace("\\|", "\u{1}");
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let [_, names, meaning, ..] = cells[..] else {
            continue;
        };
        let meaning = meaning.replace('\u{1}', "|");
        for (k, part) in names.split('`').enumerate() {
            if k % 2 == 1
                && let Some(directive) = part.split_whitespace().next()
            {
                out.entry(directive.to_string())
                    .or_insert_with(|| (part.replace('\u{1}', "|"), meaning.clone()));
            }
        }
    }
    out
}

/// The configs whose `Default` the page shows, by struct name: each whole config file, plus
/// the sections that are absent by default (so their own defaults are not inside the
/// file's). Nested sections are found by walking the fields ([`collect_defaults`]).
fn default_roots() -> Vec<(&'static str, Value)> {
    let v = |r: Result<Value, serde_json::Error>| r.expect("config serializes");
    vec![
        (
            "AggregatorConfig@aggregator",
            v(serde_json::to_value(
                caretaker_aggregator::config::AggregatorConfig::default(),
            )),
        ),
        (
            "AgentConfig@agent",
            v(serde_json::to_value(
                caretaker_agent::config::AgentConfig::default(),
            )),
        ),
        (
            "WindowConfig",
            v(serde_json::to_value(
                caretaker_core::window::WindowConfig::default(),
            )),
        ),
        (
            "LeaderElectionConfig",
            v(serde_json::to_value(
                caretaker_aggregator::leader::config::LeaderElectionConfig::default(),
            )),
        ),
    ]
}

/// The inner type name of a field type: `Option<Vec<crate::x::Y>>` → `Y`.
fn inner_type(ty: &str) -> &str {
    let mut t = ty.trim();
    for wrapper in ["Option<", "Vec<"] {
        while let Some(rest) = t.strip_prefix(wrapper) {
            t = rest.strip_suffix('>').unwrap_or(rest).trim();
        }
    }
    t.rsplit("::").next().unwrap_or(t)
}

/// Records `value` as the default of struct `name` and walks into its nested sections.
fn collect_defaults(
    name: &str,
    value: &Value,
    structs: &BTreeMap<String, (String, Vec<Field>)>,
    out: &mut BTreeMap<String, Value>,
) {
    if out.contains_key(name) {
        return;
    }
    out.insert(name.to_string(), value.clone());
    let Some((_, fields)) = structs.get(name) else {
        return;
    };
    for (f, ty, _) in fields {
        let inner = inner_type(ty);
        if let Some(v) = value.get(f)
            && v.is_object()
            && structs.contains_key(inner)
        {
            collect_defaults(inner, v, structs, out);
        }
    }
}

/// A default as the page shows it: the YAML a config file would hold.
fn render_default(v: &Value, nested: bool) -> String {
    match v {
        Value::Null => "none".to_string(),
        Value::Object(_) if nested => "(its table)".to_string(),
        Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

/// The value a field doc names as its default (`Default 10s.`, `Default 1 GiB`,
/// `` Default `0.0.0.0:9810` ``), if it names one.
fn stated_default(doc: &str) -> Option<String> {
    let at = doc.find("Default ")?;
    let rest = &doc[at + "Default ".len()..];
    if let Some(r) = rest.strip_prefix('`') {
        return r.split('`').next().map(str::to_string);
    }
    if !rest.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut words = rest.split_whitespace();
    let first = words.next()?.trim_end_matches(['.', ',', ';', ')', ':']);
    let unit = words
        .next()
        .map(|u| u.trim_end_matches(['.', ',', ';', ')', ':']))
        .filter(|u| ["ms", "s", "m", "h", "d", "KiB", "MiB", "GiB", "min"].contains(u));
    Some(match unit {
        Some(u) => format!("{first} {u}"),
        None => first.to_string(),
    })
}

fn generate() -> String {
    let meanings = directive_meanings();
    let roots = default_roots();
    let mut drift = Vec::new();
    let mut page = String::from(
        "# Configuration reference\n\n\
         Generated from the config types (`#[serde(deny_unknown_fields)]` structs and their\n\
         `///` docs) by `tests/tests/config_docs.rs`; do not edit by hand. Each table is one\n\
         YAML mapping; a field whose type is another table's name is that nested section.\n\
         Each option's default is its struct's `Default` value, written as in a config file\n\
         (`none`: absent or null); units and bounds are in its text. Regenerate with\n\
         `CARETAKER_BLESS=1 cargo test -p caretaker-tests --test config_docs`.\n",
    );
    for (crate_dir, title) in [
        ("agent/src", "agent (`caretaker-agent`, agent.yaml)"),
        (
            "aggregator/src",
            "aggregator (`caretaker-aggregator`, aggregator.yaml)",
        ),
        ("core/src", "shared (core)"),
    ] {
        let mut files = Vec::new();
        rust_files(&root().join(crate_dir), &mut files);
        let mut structs: BTreeMap<String, (String, Vec<Field>)> = BTreeMap::new();
        for f in files {
            let src = std::fs::read_to_string(&f).expect("read source");
            for (name, doc, fields) in config_structs(&src) {
                structs.insert(name, (doc, fields));
            }
        }
        page.push_str(&format!("\n## {title}\n"));
        let mut defaults = BTreeMap::new();
        for (root, value) in &roots {
            let (root, only) = root.split_once('@').unwrap_or((root, ""));
            if only.is_empty() || crate_dir.starts_with(only) {
                collect_defaults(root, value, &structs, &mut defaults);
            }
        }
        for (name, (doc, fields)) in &structs {
            page.push_str(&format!("\n### `{name}`\n\n"));
            if !doc.is_empty() {
                page.push_str(&format!("{doc}\n\n"));
            }
            page.push_str("| option | type | default | meaning, unit |\n|---|---|---|---|\n");
            let values = defaults.get(name.as_str());
            for (f, ty, d) in fields {
                let default = match values {
                    None => String::new(),
                    Some(v) => match v.get(f) {
                        None => "none".to_string(),
                        Some(fv) => {
                            if let Some(stated) = stated_default(d)
                                && !same_value(&stated, fv)
                            {
                                drift.push(format!(
                                    "{name}.{f}: the doc says default {stated:?}, Default has {fv}"
                                ));
                            }
                            render_default(fv, structs.contains_key(inner_type(ty)))
                        }
                    },
                };
                let d = if d == MACRO_FIELD {
                    let (syntax, meaning) = meanings.get(f.as_str()).unwrap_or_else(|| {
                        panic!("`{name}.{f}`: no row for directive `{f}` in agent/LOGS.md")
                    });
                    format!("logrotate `{syntax}` (agent/LOGS.md): {meaning}")
                } else {
                    d.clone()
                };
                let d = d.replace('|', "\\|");
                let ty = ty.replace('|', "\\|");
                let default = default.replace('|', "\\|");
                page.push_str(&format!("| `{f}` | `{ty}` | {default} | {d} |\n"));
            }
        }
    }
    assert!(
        drift.is_empty(),
        "field docs name defaults that Default does not have:\n{}",
        drift.join("\n")
    );
    page
}

#[test]
fn the_config_page_matches_the_config_types() {
    let page = generate();
    let path = root().join("docs/config.md");
    if std::env::var("CARETAKER_BLESS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().expect("docs")).expect("mkdir docs");
        std::fs::write(&path, &page).expect("write docs/config.md");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == page,
        "docs/config.md is not what the config types say; regenerate it with \
         CARETAKER_BLESS=1 cargo test -p caretaker-tests --test config_docs"
    );
    // The page covers the sections operators set.
    for section in [
        "### `LogsConfig`",
        "### `ImagesConfig`",
        "### `ScheduleConfig`",
        "### `ClusterConfig`",
        "### `ChecksConfig`",
        "### `SignalsConfig`",
        "| `docker_socket` |",
        "| `keep` |",
        "| `webhook_url` |",
        "| `rotate` | `Option<Arg>` |",
        "| `copytruncate` | `Option<Arg>` |",
    ] {
        assert!(page.contains(section), "{section} in docs/config.md");
    }
}

#[test]
fn a_field_doc_naming_another_default_than_default_is_drift() {
    let d = |doc: &str| stated_default(doc);
    assert_eq!(d("Timeout. Default 5 s."), Some("5 s".to_string()));
    assert_eq!(d("Default 10s; 100ms to 1h."), Some("10s".to_string()));
    assert_eq!(
        d("Default `0.0.0.0:9810`; null"),
        Some("0.0.0.0:9810".into())
    );
    assert_eq!(d("Default 1 GiB."), Some("1 GiB".to_string()));
    assert_eq!(d("Default: none."), None);
    assert_eq!(d("Off by default."), None);
    let v = |j: &str| serde_json::from_str::<Value>(j).unwrap();
    assert!(same_value("5 s", &v("\"5s\"")));
    assert!(same_value("168h", &v("\"7d\"")));
    assert!(!same_value("10s", &v("\"30s\"")));
    assert!(same_value("1 GiB", &v("1073741824")));
    assert!(!same_value("360", &v("400")));
    assert!(same_value("0.0.0.0:9810", &v("\"0.0.0.0:9810\"")));
    assert!(same_value("[/a, /b]", &v("[\"/a\",\"/b\"]")));
    assert!(same_value("[]", &v("[]")));
    assert!(!same_value("[/a]", &v("[\"/a\",\"/b\"]")));
}
