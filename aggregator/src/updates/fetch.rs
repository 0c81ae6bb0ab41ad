//! Reading the published versions of a chart: a classic repository's `index.yaml` and an
//! OCI registry's tag list (the distribution API, with its bearer-token challenge and
//! `Link` pagination).
//!
//! Every request has the section's timeout; bodies are read up to a bound (the index's
//! `max_index_bytes`, 4 MiB for a tag page or a token) so a hostile server cannot exhaust
//! memory; pagination stops after [`MAX_TAG_PAGES`] pages.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, LINK, WWW_AUTHENTICATE};
use serde::Deserialize;

/// Pages of a tag list followed at most (at [`TAG_PAGE_SIZE`] tags a page: 100,000 tags).
pub(crate) const MAX_TAG_PAGES: usize = 100;
/// Tags asked for per page (`?n=`); registries may answer fewer.
pub(crate) const TAG_PAGE_SIZE: usize = 1000;
/// Largest tag-list page or token answer read.
const MAX_SMALL_BODY: u64 = 4 << 20;

/// Errors reading a repository; each names the URL it was reading.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: request failed")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: answer larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: not a Helm repository index")]
    Index {
        url: String,
        #[source]
        source: serde_saphyr::Error,
    },
    #[error("{url}: not a tag list")]
    Tags {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{url}: unusable authentication challenge {challenge:?}")]
    Challenge { url: String, challenge: String },
    #[error("{url}: no token in the token service's answer")]
    Token { url: String },
    #[error("{url}: more than {MAX_TAG_PAGES} pages of tags")]
    TooManyPages { url: String },
}

/// Reads a body up to `limit` bytes.
async fn body(mut resp: reqwest::Response, url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(FetchError::TooLarge {
            url: url.into(),
            limit,
        });
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::Http {
        url: url.into(),
        source: e,
    })? {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(FetchError::TooLarge {
                url: url.into(),
                limit,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    headers: HeaderMap,
) -> Result<reqwest::Response, FetchError> {
    client
        .get(url)
        .headers(headers)
        .send()
        .await
        .map_err(|e| FetchError::Http {
            url: url.into(),
            source: e,
        })
}

/// The parts of a Helm repository index read here: chart name → published versions.
#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    entries: BTreeMap<String, Vec<IndexEntry>>,
}

#[derive(Debug, Deserialize)]
struct IndexEntry {
    #[serde(default)]
    version: Option<String>,
}

/// Every chart of a classic repository with its versions: `GET <url>/index.yaml`.
///
/// # Errors
/// The index cannot be fetched, is larger than `limit`, or is not an index.
pub(crate) async fn classic_index(
    client: &reqwest::Client,
    repo_url: &str,
    limit: u64,
) -> Result<BTreeMap<String, Vec<String>>, FetchError> {
    let url = format!("{}/index.yaml", repo_url.trim_end_matches('/'));
    let resp = get(client, &url, HeaderMap::new()).await?;
    if !resp.status().is_success() {
        return Err(FetchError::Status {
            url,
            status: resp.status().as_u16(),
        });
    }
    let bytes = body(resp, &url, limit).await?;
    let text = String::from_utf8_lossy(&bytes);
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_depth: 64 },
        strict_booleans: true,
        with_snippet: false,
    };
    let index: Index =
        serde_saphyr::from_str_with_options(&text, options).map_err(|e| FetchError::Index {
            url: url.clone(),
            source: e,
        })?;
    Ok(index
        .entries
        .into_iter()
        .map(|(name, es)| (name, es.into_iter().filter_map(|e| e.version).collect()))
        .collect())
}

#[derive(Debug, Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// The parameters of a `WWW-Authenticate: Bearer realm="…",service="…",scope="…"`
/// challenge (RFC 6750 §3, as the distribution token spec uses it).
pub(crate) fn bearer_challenge(header: &str) -> Option<BTreeMap<String, String>> {
    let rest = header.trim();
    let (scheme, params) = rest.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut out = BTreeMap::new();
    let mut s = params.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, rest) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        out.insert(key, value.to_string());
        s = rest.trim_start().trim_start_matches(',').trim_start();
    }
    out.contains_key("realm").then_some(out)
}

/// The `rel="next"` target of a `Link` header (RFC 8288), as the registry wrote it.
pub(crate) fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| target.to_string())
    })
}

/// Every tag of `<registry>/<path>/<chart>`, with `Link` pagination; `None` when the
/// registry does not know the repository (404). Anonymous pull tokens are fetched when
/// the registry answers 401 with a bearer challenge.
///
/// # Errors
/// The registry or its token service cannot be reached or answers something else.
pub async fn oci_tags(
    client: &reqwest::Client,
    registry: &str,
    path: &str,
    chart: &str,
    plain_http: bool,
    page_size: usize,
) -> Result<Option<Vec<String>>, FetchError> {
    let base = format!("{}://{registry}", if plain_http { "http" } else { "https" });
    let repo = if path.is_empty() {
        chart.to_string()
    } else {
        format!("{path}/{chart}")
    };
    let mut url = format!("{base}/v2/{repo}/tags/list?n={page_size}");
    let mut token: Option<String> = None;
    let mut tags = Vec::new();
    for _ in 0..MAX_TAG_PAGES {
        let mut headers = HeaderMap::new();
        if let Some(t) = &token
            && let Ok(v) = format!("Bearer {t}").parse()
        {
            headers.insert(AUTHORIZATION, v);
        }
        let mut resp = get(client, &url, headers.clone()).await?;
        if resp.status() == StatusCode::UNAUTHORIZED && token.is_none() {
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let params = bearer_challenge(&challenge).ok_or_else(|| FetchError::Challenge {
                url: url.clone(),
                challenge: challenge.clone(),
            })?;
            let t = fetch_token(client, &params, &repo).await?;
            let mut headers = HeaderMap::new();
            if let Ok(v) = format!("Bearer {t}").parse() {
                headers.insert(AUTHORIZATION, v);
            }
            token = Some(t);
            resp = get(client, &url, headers).await?;
        }
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => return Ok(None),
            s => {
                return Err(FetchError::Status {
                    url,
                    status: s.as_u16(),
                });
            }
        }
        let next = resp
            .headers()
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_link);
        let bytes = body(resp, &url, MAX_SMALL_BODY).await?;
        let page: TagList = serde_json::from_slice(&bytes).map_err(|e| FetchError::Tags {
            url: url.clone(),
            source: e,
        })?;
        tags.extend(page.tags.unwrap_or_default());
        match next {
            None => return Ok(Some(tags)),
            Some(n) if n.starts_with('/') => url = format!("{base}{n}"),
            Some(n) => url = n,
        }
    }
    Err(FetchError::TooManyPages { url })
}

/// A pull token from the challenge's realm (the distribution token spec:
/// `GET realm?service=…&scope=repository:<repo>:pull`).
async fn fetch_token(
    client: &reqwest::Client,
    params: &BTreeMap<String, String>,
    repo: &str,
) -> Result<String, FetchError> {
    let realm = params.get("realm").map_or("", String::as_str);
    let mut u = reqwest::Url::parse(realm).map_err(|_| FetchError::Challenge {
        url: realm.into(),
        challenge: format!("realm={realm}"),
    })?;
    {
        let mut q = u.query_pairs_mut();
        if let Some(s) = params.get("service") {
            q.append_pair("service", s);
        }
        let scope = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{repo}:pull"));
        q.append_pair("scope", &scope);
    }
    let url = u.to_string();
    let resp = get(client, &url, HeaderMap::new()).await?;
    if !resp.status().is_success() {
        return Err(FetchError::Status {
            url,
            status: resp.status().as_u16(),
        });
    }
    let bytes = body(resp, &url, MAX_SMALL_BODY).await?;
    let answer: TokenAnswer = serde_json::from_slice(&bytes).map_err(|e| FetchError::Tags {
        url: url.clone(),
        source: e,
    })?;
    answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or(FetchError::Token { url })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges_and_link_headers() {
        let c = bearer_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        )
        .unwrap();
        assert_eq!(c["realm"], "https://auth.docker.io/token");
        assert_eq!(c["service"], "registry.docker.io");
        assert_eq!(c["scope"], "repository:library/nginx:pull");
        assert!(bearer_challenge(r#"Basic realm="x""#).is_none());
        assert!(bearer_challenge("Bearer service=x").is_none(), "no realm");
        assert_eq!(
            next_link(r#"</v2/c/web/tags/list?last=1.0.1&n=2>; rel="next""#).as_deref(),
            Some("/v2/c/web/tags/list?last=1.0.1&n=2")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    }
}
