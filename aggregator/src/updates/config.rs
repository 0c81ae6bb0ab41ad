//! The `charts:` config section: the chart repositories deployed releases come from.
//!
//! ```yaml
//! charts:
//!   repositories:
//!     - name: bitnami
//!       url: https://charts.bitnami.com/bitnami     # classic: <url>/index.yaml
//!     - name: internal
//!       url: oci://registry.example.com/helm-charts  # OCI: tags of <registry>/<path>/<chart>
//!       charts: [web, api]                           # optional: only these charts are looked up here
//!       plain_http: false                            # default false; true as `helm --plain-http`
//!   chart_repositories:              # optional: chart name → repository name
//!     postgresql: bitnami
//!   timeout: 10s                     # default 10s, per request
//!   max_index_bytes: 67108864        # default 64 MiB: a larger index.yaml is an error
//!   refresh: 6h                      # default 6h: how long fetched versions are reused
//! ```
//!
//! Which repository a release's chart is looked up in (as Renovate's `helm` manager needs a
//! `registryUrl` per dependency): the one `chart_repositories` names; else the
//! repositories whose `charts` list the chart; else every repository without a `charts`
//! list, in the order written, the first that has the chart winning.

use std::collections::BTreeMap;
use std::time::Duration;

use caretaker_core::config::{BoundedDuration, ms};
use caretaker_core::error::Chain;
use serde::{Deserialize, Serialize};

/// Where a repository's versions are read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RepoUrl {
    /// A classic repository: `GET <url>/index.yaml`.
    Classic { url: String },
    /// An OCI registry: `GET /v2/<path>/<chart>/tags/list` on `registry` (`host[:port]`).
    Oci { registry: String, path: String },
}

/// A repository URL that is neither classic nor OCI.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("{0:?}: oci:// needs a registry host, e.g. oci://ghcr.io/org/charts")]
    OciRegistry(String),
    #[error(
        "{0:?}: an OCI repository path has lower-case letters, digits, '.', '_', '-' and '/' only"
    )]
    OciPath(String),
    #[error("{url:?} is not a URL")]
    NotAUrl {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0:?} must be an https:// (or http://) repository URL or an oci:// registry")]
    Scheme(String),
}

/// A `charts:` section that cannot be used. Its messages carry their causes (serde shows
/// only the message), so no variant has a `#[source]`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("charts.repositories: {0:?} is named twice")]
    NamedTwice(String),
    #[error("charts.repositories[{name}].url: {}", Chain(.error))]
    Url { name: String, error: UrlError },
    #[error(
        "charts.chart_repositories: chart {chart:?} names repository {repo:?}, which charts.repositories does not define"
    )]
    UnknownRepository { chart: String, repo: String },
}

impl RepoUrl {
    /// Parses `https://…`/`http://…` (classic) or `oci://registry[:port]/path` (OCI).
    ///
    /// # Errors
    /// [`UrlError`] naming the URL when it is neither.
    pub fn parse(s: &str) -> Result<RepoUrl, UrlError> {
        if let Some(rest) = s.strip_prefix("oci://") {
            let rest = rest.trim_end_matches('/');
            let (registry, path) = rest.split_once('/').unwrap_or((rest, ""));
            if registry.is_empty()
                || !registry
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
            {
                return Err(UrlError::OciRegistry(s.to_string()));
            }
            if !path.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/')
            }) {
                return Err(UrlError::OciPath(s.to_string()));
            }
            return Ok(RepoUrl::Oci {
                registry: registry.to_string(),
                path: path.to_string(),
            });
        }
        let u = reqwest::Url::parse(s).map_err(|e| UrlError::NotAUrl {
            url: s.to_string(),
            source: Box::new(e),
        })?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(UrlError::Scheme(s.to_string()));
        }
        Ok(RepoUrl::Classic {
            url: s.trim_end_matches('/').to_string(),
        })
    }
}

/// One chart repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// Name shown in the report and used in `chart_repositories`.
    pub name: String,
    /// `https://…` for a classic repository (its `index.yaml` is read), `oci://registry/path`
    /// for an OCI registry.
    pub url: String,
    /// The charts looked up here; empty (the default): any chart not mapped elsewhere.
    #[serde(default)]
    pub charts: Vec<String>,
    /// Talk plain HTTP to an OCI registry, as `helm --plain-http`.
    #[serde(default)]
    pub plain_http: bool,
}

/// The `charts:` section as written (validated into [`ChartsConfig`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChartsSection {
    /// The chart repositories, in lookup order. None by default: no chart-update lookups.
    pub repositories: Vec<RepositoryConfig>,
    /// Chart name → the name of the repository it is looked up in (overrides the
    /// repositories' `charts` lists and the lookup order).
    pub chart_repositories: BTreeMap<String, String>,
    /// Per request (index, tag page, token). 100ms to 5m.
    pub timeout: BoundedDuration<100, { 5 * ms::MINUTE }>,
    /// Largest `index.yaml` read, in bytes; a larger one is a `chart_repository_unreachable`
    /// finding (the largest public indexes are a few tens of MiB).
    pub max_index_bytes: u64,
    /// How long fetched versions are reused before a repository is asked again (failed
    /// lookups are retried after 15m at most). 1m to 7d.
    pub refresh: BoundedDuration<{ ms::MINUTE }, { 7 * ms::DAY }>,
}

impl Default for ChartsSection {
    fn default() -> Self {
        Self {
            repositories: Vec::new(),
            chart_repositories: BTreeMap::new(),
            timeout: BoundedDuration::secs(10),
            max_index_bytes: 64 << 20,
            refresh: BoundedDuration::secs(6 * 3600),
        }
    }
}

/// The validated `charts:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ChartsSection", into = "ChartsSection")]
pub struct ChartsConfig {
    /// In the order written (the lookup order of unmapped charts), each with its parsed URL.
    pub repositories: Vec<(RepositoryConfig, RepoUrl)>,
    /// Chart name → repository name. Every name is one of `repositories`.
    pub chart_repositories: BTreeMap<String, String>,
    /// Per request ([`ChartsSection::timeout`]).
    pub timeout: Duration,
    /// Largest `index.yaml` read, in bytes.
    pub max_index_bytes: u64,
    /// Versions fetched from a repository are reused this long.
    pub refresh: Duration,
}

impl Default for ChartsConfig {
    fn default() -> Self {
        let d = ChartsSection::default();
        Self {
            repositories: Vec::new(),
            chart_repositories: d.chart_repositories,
            timeout: d.timeout.get(),
            max_index_bytes: d.max_index_bytes,
            refresh: d.refresh.get(),
        }
    }
}

impl From<ChartsConfig> for ChartsSection {
    fn from(c: ChartsConfig) -> Self {
        let d = ChartsSection::default();
        Self {
            repositories: c.repositories.into_iter().map(|(r, _)| r).collect(),
            chart_repositories: c.chart_repositories,
            // Within bounds unless a program set them otherwise.
            timeout: BoundedDuration::new(c.timeout).unwrap_or(d.timeout),
            max_index_bytes: c.max_index_bytes,
            refresh: BoundedDuration::new(c.refresh).unwrap_or(d.refresh),
        }
    }
}
impl TryFrom<ChartsSection> for ChartsConfig {
    type Error = Error;

    fn try_from(raw: ChartsSection) -> Result<Self, Error> {
        let mut repositories = Vec::with_capacity(raw.repositories.len());
        for r in raw.repositories {
            if repositories
                .iter()
                .any(|(o, _): &(RepositoryConfig, RepoUrl)| o.name == r.name)
            {
                return Err(Error::NamedTwice(r.name));
            }
            let url = match RepoUrl::parse(&r.url) {
                Ok(url) => url,
                Err(error) => {
                    return Err(Error::Url {
                        name: r.name,
                        error,
                    });
                }
            };
            repositories.push((r, url));
        }
        for (chart, repo) in &raw.chart_repositories {
            if !repositories.iter().any(|(r, _)| &r.name == repo) {
                return Err(Error::UnknownRepository {
                    chart: chart.clone(),
                    repo: repo.clone(),
                });
            }
        }
        Ok(ChartsConfig {
            repositories,
            chart_repositories: raw.chart_repositories,
            timeout: raw.timeout.get(),
            max_index_bytes: raw.max_index_bytes,
            refresh: raw.refresh.get(),
        })
    }
}

impl ChartsConfig {
    /// The repositories to look `chart` up in, in order (indexes into `repositories`).
    pub fn candidates(&self, chart: &str) -> Vec<usize> {
        if let Some(name) = self.chart_repositories.get(chart) {
            return self
                .repositories
                .iter()
                .position(|(r, _)| &r.name == name)
                .into_iter()
                .collect();
        }
        let listed: Vec<usize> = (0..self.repositories.len())
            .filter(|&i| self.repositories[i].0.charts.iter().any(|c| c == chart))
            .collect();
        if !listed.is_empty() {
            return listed;
        }
        (0..self.repositories.len())
            .filter(|&i| self.repositories[i].0.charts.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use caretaker_core::config::parse_yaml;

    use super::*;

    #[derive(Debug, Default, Deserialize)]
    struct Top {
        #[serde(default)]
        charts: ChartsConfig,
    }

    #[test]
    fn parses_classic_and_oci_repositories_with_defaults_and_picks_candidates() {
        let c = parse_yaml::<Top>(
            "charts:\n  repositories:\n    - name: bitnami\n      url: https://charts.bitnami.com/bitnami/\n    - name: internal\n      url: oci://registry.example.com:5000/helm/charts\n      charts: [web]\n    - name: other\n      url: oci://ghcr.io/org\n  chart_repositories:\n    postgresql: other\n",
            Path::new("a.yaml"),
        )
        .unwrap()
        .charts;
        assert_eq!(
            c.repositories
                .iter()
                .map(|r| r.1.clone())
                .collect::<Vec<_>>(),
            vec![
                RepoUrl::Classic {
                    url: "https://charts.bitnami.com/bitnami".into()
                },
                RepoUrl::Oci {
                    registry: "registry.example.com:5000".into(),
                    path: "helm/charts".into()
                },
                RepoUrl::Oci {
                    registry: "ghcr.io".into(),
                    path: "org".into()
                },
            ]
        );
        assert_eq!(
            (c.timeout, c.max_index_bytes, c.refresh),
            (
                Duration::from_secs(10),
                64 << 20,
                Duration::from_secs(21_600)
            )
        );
        assert_eq!(c.candidates("postgresql"), vec![2], "the mapping wins");
        assert_eq!(c.candidates("web"), vec![1], "the charts list");
        assert_eq!(
            c.candidates("redis"),
            vec![0, 2],
            "unlisted repositories in order"
        );
    }

    #[test]
    fn bad_urls_and_unknown_mapped_repositories_name_the_place() {
        let err = parse_yaml::<Top>(
            "charts:\n  repositories:\n    - name: x\n      url: ftp://x\n",
            Path::new("a.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("charts.repositories[x].url") && err.contains("oci://"),
            "{err}"
        );
        let err = parse_yaml::<Top>(
            "charts:\n  repositories:\n    - name: x\n      url: https://x\n  chart_repositories:\n    web: y\n",
            Path::new("a.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("chart \"web\" names repository \"y\""),
            "{err}"
        );
        assert!(matches!(
            RepoUrl::parse("oci:///charts"),
            Err(UrlError::OciRegistry(_))
        ));
        assert!(matches!(
            RepoUrl::parse("oci://r/UPPER"),
            Err(UrlError::OciPath(_))
        ));
        // Through serde only the message shows: it carries the cause.
        let err = parse_yaml::<Top>(
            "charts:\n  repositories:\n    - name: x\n      url: not a url\n",
            Path::new("a.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "charts.repositories[x].url: \"not a url\" is not a URL: relative URL without a base"
            ),
            "{err}"
        );
    }
}
