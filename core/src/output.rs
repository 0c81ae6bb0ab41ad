//! The `--output`/`-o` formats of every command, as one type: each command accepts the
//! subset it can print ([`Output::only`]), so an unsupported value is a usage error (exit
//! 64) that lists the values that command takes, and `--help` shows only those.

use clap::builder::{PossibleValue, TypedValueParser};

/// An output format (kubectl's `-o` names, plus caretaker's Markdown, HTML and JUnit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    /// A table for people (kubectl's default).
    Table,
    /// The table with more columns (kubectl's `-o wide`).
    Wide,
    /// The serde form, pretty-printed.
    Json,
    /// The same document as `json`, in YAML.
    Yaml,
    /// A Markdown document (a maintenance record).
    Markdown,
    /// A self-contained HTML page.
    Html,
    /// JUnit XML, for CI systems that show test reports.
    Junit,
}

impl Output {
    /// Every format, in the order `--help` lists them.
    pub const ALL: [Output; 7] = [
        Output::Table,
        Output::Wide,
        Output::Json,
        Output::Yaml,
        Output::Markdown,
        Output::Html,
        Output::Junit,
    ];

    /// The name on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Output::Table => "table",
            Output::Wide => "wide",
            Output::Json => "json",
            Output::Yaml => "yaml",
            Output::Markdown => "markdown",
            Output::Html => "html",
            Output::Junit => "junit",
        }
    }

    /// A clap value parser that accepts only `supported` (for `#[arg(value_parser = …)]`).
    #[must_use]
    pub fn only(supported: &'static [Output]) -> OutputParser {
        OutputParser(supported)
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// See [`Output::only`].
#[derive(Debug, Clone, Copy)]
pub struct OutputParser(&'static [Output]);

impl TypedValueParser for OutputParser {
    type Value = Output;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Output, clap::Error> {
        let names = self.0.iter().map(|o| o.name());
        let name = clap::builder::PossibleValuesParser::new(names).parse_ref(cmd, arg, value)?;
        // The parser above accepted one of our names.
        Ok(self
            .0
            .iter()
            .copied()
            .find(|o| o.name() == name)
            .unwrap_or(Output::Table))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            self.0.iter().map(|o| PossibleValue::new(o.name())),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[arg(short, long, value_parser = Output::only(&[Output::Table, Output::Json]), default_value_t = Output::Table)]
        output: Output,
    }

    #[test]
    fn a_command_takes_its_subset_and_names_it_when_refusing_another_value() {
        assert_eq!(Cli::parse_from(["x"]).output, Output::Table);
        assert_eq!(Cli::parse_from(["x", "-o", "json"]).output, Output::Json);
        let e = Cli::try_parse_from(["x", "--output", "yaml"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        let msg = e.to_string();
        assert!(
            msg.contains("invalid value 'yaml'") && msg.contains("[possible values: table, json]"),
            "{msg}"
        );
    }

    #[test]
    fn names_round_trip() {
        for o in Output::ALL {
            let parsed = Output::only(&Output::ALL)
                .parse_ref(&clap::Command::new("x"), None, o.name().as_ref())
                .unwrap();
            assert_eq!(parsed, o);
        }
    }
}
