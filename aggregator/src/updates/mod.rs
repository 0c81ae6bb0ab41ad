//! Helm chart updates (the seed's monthly dependency review, done there by Renovate): for
//! every deployed release, the newer versions of its chart in the chart's repository,
//! reported as patch, minor and major updates apart.
//!
//! # Layout
//! - [`config`]: the `charts:` section (repositories, chart → repository mapping).
//! - [`fetch`]: a classic repository's `index.yaml`; an OCI registry's tag list.
//! - [`version`]: which versions are newer and of which update type.
//! - this file: [`check`], the `chart_updates` check with its report
//!   ([`ChartUpdatesReport`]) and the [`Cache`] of fetched versions kept between rounds.
//!
//! Releases are read from Helm's release Secrets ([`crate::checks::helm::releases`]); the
//! newest revision of each release counts (the one the next `helm upgrade` starts from),
//! except uninstalled ones. Codes: `chart_update_patch`, `chart_update_minor`,
//! `chart_update_major` (info: Renovate's three update types), `chart_not_in_repositories`
//! (info), `chart_repository_unreachable` (warning: the repository URL and why; the rest
//! of the round goes on).

pub(crate) mod config;
pub mod fetch;
pub(crate) mod version;

use caretaker_core::error::Chain;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::checks::helm::HelmRelease;
use crate::checks::{CheckResult, Finding, ObjectRef, Severity};
pub use config::{ChartsConfig, RepoUrl, RepositoryConfig};
pub use version::Updates;

/// Name of the check.
pub const CHECK: &str = "chart_updates";

/// A failed lookup is tried again after this long at most (sooner with a shorter
/// `refresh`).
const RETRY_FAILED: Duration = Duration::from_secs(15 * 60);

/// One release and its chart's newer versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseUpdates {
    pub namespace: String,
    pub release: String,
    pub chart: String,
    /// The deployed chart version.
    pub version: String,
    /// The repository the chart was found in.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub repository: Option<String>,
    /// Newest of each update type (absent: none).
    #[serde(flatten)]
    pub updates: Updates,
    /// Newest version published (prereleases only from a prerelease).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub latest: Option<String>,
    /// Why the release has no verdict (chart in no repository, repository unreachable,
    /// version not SemVer).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
}

/// What one repository answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositoryStatus {
    pub name: String,
    pub url: String,
    /// Deployed charts found there.
    pub charts_found: usize,
    /// When its versions were fetched (they are reused for `charts.refresh`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) fetched_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// The report's `chart_updates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChartUpdatesReport {
    pub checked_at: Timestamp,
    /// By namespace and release name.
    pub releases: Vec<ReleaseUpdates>,
    /// In the order configured.
    pub repositories: Vec<RepositoryStatus>,
}

/// What a repository said about one chart.
#[derive(Debug, Clone, PartialEq)]
enum Lookup {
    Found(Vec<String>),
    Absent,
    Failed(String),
}

/// Versions fetched per (repository, chart), reused for `charts.refresh` between rounds.
#[derive(Debug, Default)]
pub struct Cache {
    entries: HashMap<(String, String), (Timestamp, Lookup)>,
}

impl Cache {
    fn fresh(
        &self,
        repo: &str,
        chart: &str,
        cfg: &ChartsConfig,
        now: Timestamp,
    ) -> Option<&(Timestamp, Lookup)> {
        let e = self.entries.get(&(repo.to_string(), chart.to_string()))?;
        let max = match e.1 {
            Lookup::Failed(_) => cfg.refresh.min(RETRY_FAILED),
            _ => cfg.refresh,
        };
        let age = std::time::Duration::try_from(now.duration_since(e.0)).unwrap_or_default();
        (age < max).then_some(e)
    }
}

/// An error with its causes, `a: b: c` (each cause once).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Fetches what `charts` (chart names) need from repository `i` into the cache.
async fn fill(
    client: &reqwest::Client,
    cfg: &ChartsConfig,
    cache: &mut Cache,
    i: usize,
    charts: &[&str],
    now: Timestamp,
) {
    let (repo, url) = &cfg.repositories[i];
    let missing: Vec<&str> = charts
        .iter()
        .copied()
        .filter(|c| cache.fresh(&repo.name, c, cfg, now).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    match url {
        RepoUrl::Classic { url } => {
            let answer = fetch::classic_index(client, url, cfg.max_index_bytes).await;
            for c in missing {
                let l = match &answer {
                    Ok(index) => index
                        .get(c)
                        .map_or(Lookup::Absent, |v| Lookup::Found(v.clone())),
                    Err(e) => Lookup::Failed(chain(e)),
                };
                cache
                    .entries
                    .insert((repo.name.clone(), c.to_string()), (now, l));
            }
        }
        RepoUrl::Oci { registry, path } => {
            for c in missing {
                let l = match fetch::oci_tags(
                    client,
                    registry,
                    path,
                    c,
                    repo.plain_http,
                    fetch::TAG_PAGE_SIZE,
                )
                .await
                {
                    Ok(Some(tags)) => {
                        Lookup::Found(tags.iter().map(|t| version::from_oci_tag(t)).collect())
                    }
                    Ok(None) => Lookup::Absent,
                    Err(e) => Lookup::Failed(chain(&e)),
                };
                cache
                    .entries
                    .insert((repo.name.clone(), c.to_string()), (now, l));
            }
        }
    }
}

/// Gives the `HelmRelease` findings of `results` the labels of their release's newest
/// Secret (Helm's `name`, `owner`, `status`, `version`, and any given with `helm install
/// --labels`): a HelmRelease is no object of its own, and its Secret is what carries
/// the release's labels. `checks.exclude` selectors and `report -l` match these.
pub(crate) fn attach_release_labels(
    results: &mut [CheckResult],
    releases: &[HelmRelease],
    labels: &crate::cluster::labels::LabelIndex<'_>,
) {
    let by_release: HashMap<(&str, &str), &HelmRelease> = releases
        .iter()
        .map(|r| ((r.namespace.as_str(), r.name.as_str()), r))
        .collect();
    for f in results.iter_mut().flat_map(|r| r.findings.iter_mut()) {
        if f.object.kind != "HelmRelease" {
            continue;
        }
        let key = (
            f.object.namespace.as_deref().unwrap_or(""),
            f.object.name.as_str(),
        );
        if let Some(l) = by_release.get(&key).and_then(|r| labels.get(&r.secret)) {
            f.labels.clone_from(l);
        }
    }
}

/// The chart-updates check over `releases`, or `None` when no repository is configured.
/// Repositories are read through `cache` (see [`Cache`]); a repository that cannot be read
/// is a `chart_repository_unreachable` finding naming its URL, never a failed round.
pub async fn check(
    releases: &[HelmRelease],
    cfg: &ChartsConfig,
    cache: &mut Cache,
    now: Timestamp,
) -> Option<(CheckResult, ChartUpdatesReport)> {
    if cfg.repositories.is_empty() {
        return None;
    }
    let deployed: Vec<(&HelmRelease, &str, &str)> = releases
        .iter()
        .filter(|r| !matches!(r.status.as_str(), "uninstalled" | "uninstalling"))
        .filter_map(|r| Some((r, r.chart.as_deref()?, r.chart_version.as_deref()?)))
        .filter(|(_, c, v)| !c.is_empty() && !v.is_empty())
        .collect();
    let client = match crate::signals::client(cfg.timeout) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %Chain(&e), "Cannot build the HTTP client for chart repositories.");
            None
        }
    };
    // Repositories in the order written; each is asked about the charts that name it as a
    // candidate and were not found in an earlier one (a classic index is fetched once for
    // all of them).
    let mut per_repo: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for i in 0..cfg.repositories.len() {
        let mut charts: Vec<&str> = Vec::new();
        for (_, chart, _) in &deployed {
            let cands = cfg.candidates(chart);
            let Some(pos) = cands.iter().position(|c| *c == i) else {
                continue;
            };
            let found_earlier = cands[..pos].iter().any(|j| {
                matches!(
                    cache
                        .entries
                        .get(&(cfg.repositories[*j].0.name.clone(), (*chart).to_string())),
                    Some((_, Lookup::Found(_)))
                )
            });
            if !found_earlier && !charts.contains(chart) {
                charts.push(chart);
            }
        }
        if charts.is_empty() {
            continue;
        }
        if let Some(client) = &client {
            fill(client, cfg, cache, i, &charts, now).await;
        }
        per_repo.insert(i, charts);
    }

    let mut findings = Vec::new();
    let mut repo_status: Vec<RepositoryStatus> = cfg
        .repositories
        .iter()
        .map(|(r, _)| RepositoryStatus {
            name: r.name.clone(),
            url: r.url.clone(),
            charts_found: 0,
            fetched_at: None,
            error: None,
        })
        .collect();
    for (i, charts) in &per_repo {
        let name = &cfg.repositories[*i].0.name;
        for c in charts {
            match cache.entries.get(&(name.clone(), (*c).to_string())) {
                Some((at, Lookup::Found(_))) => {
                    repo_status[*i].charts_found += 1;
                    repo_status[*i].fetched_at = Some(*at);
                }
                Some((at, Lookup::Absent)) => repo_status[*i].fetched_at = Some(*at),
                Some((_, Lookup::Failed(e))) => repo_status[*i].error = Some(e.clone()),
                None => repo_status[*i].error = Some("no HTTP client".into()),
            }
        }
    }
    for s in &repo_status {
        if let Some(e) = &s.error {
            findings.push(Finding::new(
                "chart_repository_unreachable",
                Severity::Warning,
                ObjectRef {
                    kind: "ChartRepository".into(),
                    name: s.name.clone(),
                    ..ObjectRef::default()
                },
                format!(
                    "chart repository {} ({}) could not be read: {e}",
                    s.name, s.url
                ),
            ));
        }
    }

    let mut out = Vec::with_capacity(deployed.len());
    let mut behind = 0usize;
    for (r, chart, current) in deployed {
        let object = ObjectRef {
            kind: "HelmRelease".into(),
            namespace: Some(r.namespace.clone()),
            name: r.name.clone(),
            uid: None,
        };
        let mut row = ReleaseUpdates {
            namespace: r.namespace.clone(),
            release: r.name.clone(),
            chart: chart.to_string(),
            version: current.to_string(),
            repository: None,
            updates: Updates::default(),
            latest: None,
            note: None,
        };
        let candidates = cfg.candidates(chart);
        let mut failed = Vec::new();
        let mut found = None;
        for i in &candidates {
            let name = &cfg.repositories[*i].0.name;
            match cache.entries.get(&(name.clone(), chart.to_string())) {
                Some((_, Lookup::Found(v))) => {
                    found = Some((name.clone(), v));
                    break;
                }
                Some((_, Lookup::Failed(_))) | None => failed.push(name.as_str()),
                Some((_, Lookup::Absent)) => {}
            }
        }
        match found {
            Some((repo, versions)) => {
                row.repository = Some(repo.clone());
                match version::classify(current, versions.iter().map(String::as_str)) {
                    Some(u) => {
                        let unstable_ok =
                            version::parse(current).is_some_and(|v| !v.pre.is_empty());
                        row.latest = versions
                            .iter()
                            .filter_map(|s| Some((version::parse(s)?, s)))
                            .filter(|(v, _)| unstable_ok || v.pre.is_empty())
                            .max_by(|a, b| a.0.cmp_precedence(&b.0))
                            .map(|(_, s)| s.clone());
                        for (code, kind, to) in [
                            ("chart_update_major", "major", &u.major),
                            ("chart_update_minor", "minor", &u.minor),
                            ("chart_update_patch", "patch", &u.patch),
                        ] {
                            if let Some(to) = to {
                                findings.push(Finding::new(
                                    code,
                                    Severity::Info,
                                    object.clone(),
                                    format!(
                                        "chart {chart} {current}: {kind} update to {to} in repository {repo}"
                                    ),
                                ));
                            }
                        }
                        if !u.is_empty() {
                            behind += 1;
                        }
                        row.updates = u;
                    }
                    None => {
                        row.note = Some(format!(
                            "deployed version {current:?} is not SemVer; not compared"
                        ));
                    }
                }
            }
            None if !failed.is_empty() => {
                row.note = Some(format!(
                    "not looked up: repository {} could not be read",
                    failed.join(", ")
                ));
            }
            None => {
                let tried: Vec<&str> = candidates
                    .iter()
                    .map(|i| cfg.repositories[*i].0.name.as_str())
                    .collect();
                let msg = if tried.is_empty() {
                    format!("chart {chart} is in no configured repository's `charts` list")
                } else {
                    format!(
                        "chart {chart} not found in repositories {}",
                        tried.join(", ")
                    )
                };
                findings.push(Finding::new(
                    "chart_not_in_repositories",
                    Severity::Info,
                    object.clone(),
                    msg.clone(),
                ));
                row.note = Some(msg);
            }
        }
        out.push(row);
    }
    out.sort_by(|a, b| (&a.namespace, &a.release).cmp(&(&b.namespace, &b.release)));
    let summary = format!(
        "{} releases, {} with newer chart versions; {} repositories, {} unreachable",
        out.len(),
        behind,
        repo_status.len(),
        repo_status.iter().filter(|s| s.error.is_some()).count()
    );
    let result = CheckResult::new(CHECK, summary, findings).with_objects(out.len());
    Some((
        result,
        ChartUpdatesReport {
            checked_at: now,
            releases: out,
            repositories: repo_status,
        },
    ))
}
