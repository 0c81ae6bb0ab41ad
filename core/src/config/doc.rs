//! Keeping a config module's documented defaults true (feature `test-util`, for tests).
//!
//! A config module's `//!` docs show its options as a YAML block. Lines whose comment
//! starts with `default` (`report_interval: 10s   # default; 100ms..1h`), and every line of
//! a section whose comment says `defaults shown`, state default values;
//! [`assert_documented_defaults`] compares each with the value at the same path in the
//! config's `Default`, serialized, so the block cannot drift from the code. Other lines
//! are examples and are not checked, nor are flow values (`{…}`, `[…]`) and list items.

use serde_json::Value;

/// The lines of the first ```` ```yaml ```` block in the `//!` docs of `source`.
#[must_use]
pub fn doc_yaml_block(source: &str) -> Vec<&str> {
    source
        .lines()
        .filter_map(|l| l.strip_prefix("//! ").or(l.strip_prefix("//!")))
        .skip_while(|l| !l.starts_with("```yaml"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect()
}

/// One value the block states as a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentedDefault {
    /// JSON pointer of the option (`/aggregator/buffer_reports`).
    pub pointer: String,
    /// The value as the block writes it, without YAML quotes.
    pub shown: String,
}

/// The values the YAML block of `source`'s module docs states as defaults.
#[must_use]
pub fn documented_defaults(source: &str) -> Vec<DocumentedDefault> {
    let (mut path, mut all_defaults_at) = (Vec::<String>::new(), None::<usize>);
    let mut out = Vec::new();
    for line in doc_yaml_block(source) {
        let depth = (line.len() - line.trim_start().len()) / 2;
        let (body, comment) = line.split_once(" #").unwrap_or((line, ""));
        let Some((key, value)) = body.trim().split_once(':') else {
            continue;
        };
        if key.starts_with('-') || key.is_empty() {
            continue;
        }
        path.truncate(depth);
        path.push(key.to_string());
        if all_defaults_at.is_some_and(|d| depth <= d) {
            all_defaults_at = None;
        }
        let value = value.trim();
        if value.is_empty() {
            if comment.contains("defaults shown") {
                all_defaults_at = Some(depth);
            }
            continue;
        }
        let marked = comment.trim_start().starts_with("default") || all_defaults_at.is_some();
        if !marked || value.starts_with(['{', '[']) {
            continue;
        }
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        out.push(DocumentedDefault {
            pointer: format!("/{}", path.join("/")),
            shown: unquoted.to_string(),
        });
    }
    out
}

/// Whether `shown` (as a config file or a field doc writes it) means `actual`: the same
/// text, the same duration (`168h` and `7d`, `5 s` and `5s`), the same number (`3.0` and
/// `3`, `1 GiB` and `1073741824`), `null`/`~` for null, or the same list item by item
/// (`[/a, /b]`).
#[must_use]
pub fn same_value(shown: &str, actual: &Value) -> bool {
    if let (Some(items), Value::Array(values)) = (
        shown.strip_prefix('[').and_then(|s| s.strip_suffix(']')),
        actual,
    ) {
        let items: Vec<&str> = items
            .split(',')
            .map(|i| i.trim().trim_matches(['"', '\'']))
            .filter(|i| !i.is_empty())
            .collect();
        return items.len() == values.len()
            && items.iter().zip(values).all(|(i, v)| same_value(i, v));
    }
    if actual.is_null() && shown == "~" {
        return true;
    }
    let actual_text = match actual {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if shown == actual_text {
        return true;
    }
    let compact = shown.replace(' ', "").replace("min", "m");
    if let (Ok(a), Ok(b)) = (
        humantime::parse_duration(&compact),
        humantime::parse_duration(&actual_text),
    ) {
        return a == b;
    }
    let number = |t: &str| -> Option<f64> {
        let (n, mult) = match t.split_once(' ') {
            Some((n, "KiB")) => (n, 1024.0),
            Some((n, "MiB")) => (n, 1024.0 * 1024.0),
            Some((n, "GiB")) => (n, 1024.0 * 1024.0 * 1024.0),
            Some(_) => return None,
            None => (t, 1.0),
        };
        n.parse::<f64>().ok().map(|n| n * mult)
    };
    matches!((number(shown), number(&actual_text)), (Some(a), Some(b)) if a == b)
}

/// Checks every default the YAML block of `source`'s module docs states (see the module
/// docs) against `defaults`, the config's `Default` serialized with `serde_json`, and
/// returns how many were checked.
///
/// # Panics
/// Listing every stated default that is not the value in `defaults` or not there at all.
#[must_use]
pub fn assert_documented_defaults(source: &str, defaults: &Value) -> usize {
    let stated = documented_defaults(source);
    let wrong: Vec<String> = stated
        .iter()
        .filter_map(|d| match defaults.pointer(&d.pointer) {
            None => Some(format!(
                "{}: documented as a default but not in the defaults",
                d.pointer
            )),
            Some(v) if !same_value(&d.shown, v) => Some(format!(
                "{}: the doc block says {}, Default has {v}",
                d.pointer, d.shown
            )),
            Some(_) => None,
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "the doc block's defaults drifted from Default:\n{}",
        wrong.join("\n")
    );
    stated.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = r#"//! A config.
//!
//! ```yaml
//! name: x                # an example, not checked
//! every: 168h            # default; 1s..1d
//! ratio: 3.0             # default
//! list: [a]              # default (flow values are not checked)
//! inner:                 # defaults shown
//!   path: "/var/x"
//!   off: null
//!   - item: 3
//! after: 5               # an example again
//! ```
fn code() {}
"#;

    #[test]
    fn marked_lines_and_sections_are_the_stated_defaults() {
        let d = documented_defaults(SOURCE);
        let pairs: Vec<(&str, &str)> = d
            .iter()
            .map(|d| (d.pointer.as_str(), d.shown.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("/every", "168h"),
                ("/ratio", "3.0"),
                ("/inner/path", "/var/x"),
                ("/inner/off", "null")
            ]
        );
    }

    #[test]
    fn values_compare_as_a_config_file_means_them() {
        let defaults = serde_json::json!({
            "every": "7d", "ratio": 3.0, "inner": {"path": "/var/x", "off": null}
        });
        assert_eq!(assert_documented_defaults(SOURCE, &defaults), 4);
        assert!(same_value("3", &serde_json::json!(3.0)));
        assert!(!same_value("10s", &serde_json::json!("30s")));
        assert!(same_value("true", &serde_json::json!(true)));
        let drifted = serde_json::json!({"every": "1d", "ratio": 3.0, "inner": {"path": "/x"}});
        let err =
            std::panic::catch_unwind(|| assert_documented_defaults(SOURCE, &drifted)).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(
            msg.contains("/every: the doc block says 168h, Default has \"1d\"")
                && msg.contains("/inner/path: the doc block says /var/x, Default has \"/x\"")
                && msg.contains("/inner/off: documented as a default but not in the defaults"),
            "{msg}"
        );
    }
}
