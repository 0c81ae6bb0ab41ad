//! logrotate's `dateformat`: a strftime subset (`%Y %m %d %H %M %S %V %s`) that names
//! archives and, turned into a regex, finds them again for retention.

use jiff::Zoned;

/// A parsed `dateformat` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormat {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Spec(char),
}

/// A `dateformat` logrotate does not accept.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("dateformat {0:?} must not contain '/'")]
    Slash(String),
    #[error("dateformat {text:?}: %{spec} is not allowed (only %Y %m %d %H %M %S %V %s)")]
    Specifier { text: String, spec: String },
}

impl DateFormat {
    /// Parses a format.
    ///
    /// # Errors
    /// A specifier other than the eight logrotate allows, or a `/` (it would put the
    /// archive in another directory).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                if c == '/' {
                    return Err(Error::Slash(text.to_string()));
                }
                lit.push(c);
                continue;
            }
            match chars.next() {
                Some(s @ ('Y' | 'm' | 'd' | 'H' | 'M' | 'S' | 'V' | 's')) => {
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Spec(s));
                }
                Some('%') => lit.push('%'),
                other => {
                    return Err(Error::Specifier {
                        text: text.to_string(),
                        spec: other.map(String::from).unwrap_or_default(),
                    });
                }
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Self {
            text: text.to_string(),
            parts,
        })
    }

    /// The format as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The suffix for a time.
    pub fn format(&self, t: &Zoned) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Spec('Y') => out.push_str(&format!("{:04}", t.year())),
                Part::Spec('m') => out.push_str(&format!("{:02}", t.month())),
                Part::Spec('d') => out.push_str(&format!("{:02}", t.day())),
                Part::Spec('H') => out.push_str(&format!("{:02}", t.hour())),
                Part::Spec('M') => out.push_str(&format!("{:02}", t.minute())),
                Part::Spec('S') => out.push_str(&format!("{:02}", t.second())),
                Part::Spec('V') => out.push_str(&format!("{:02}", t.date().iso_week_date().week())),
                Part::Spec(_) => out.push_str(&t.timestamp().as_second().to_string()),
            }
        }
        out
    }

    /// A regex (no anchors) matching any suffix this format produces, as logrotate's
    /// glob of `[0-9]` per digit.
    pub(crate) fn regex(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(&regex::escape(l)),
                Part::Spec('Y') => out.push_str("[0-9]{4}"),
                Part::Spec('s') => out.push_str("[0-9]+"),
                Part::Spec(_) => out.push_str("[0-9]{2}"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_every_allowed_specifier() {
        let t: Zoned = "2024-01-05T07:08:09+00:00[UTC]".parse().unwrap();
        let f = DateFormat::parse("-%Y%m%d-%H%M%S.%V.%s%%").unwrap();
        assert_eq!(f.format(&t), "-20240105-070809.01.1704438489%");
        let re = regex::Regex::new(&format!("^{}$", f.regex())).unwrap();
        assert!(re.is_match(&f.format(&t)));
    }

    #[test]
    fn rejects_other_specifiers_and_slashes() {
        assert!(
            DateFormat::parse("-%y")
                .unwrap_err()
                .to_string()
                .contains("%y is not allowed")
        );
        assert!(
            DateFormat::parse("/%Y")
                .unwrap_err()
                .to_string()
                .contains("must not contain '/'")
        );
    }
}
