//! A client of a running aggregator's gRPC `Query` service: `caretaker-aggregator report`,
//! `caretaker-standalone` and the tests fetch the merged report through it like any client.
//! [`fetch_report_via_proxy`] reads the same report from the HTTP API of an aggregator
//! inside a cluster, through the Kubernetes API server's service proxy (`report
//! --context`).

use std::time::Duration;

use caretaker_proto::pb::{GetClusterReportRequest, query_client::QueryClient};

use crate::report::ClusterReport;

/// Errors of the query client; each names the server URL or file involved.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid server URL {url:?}")]
    InvalidUrl {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cannot read CA file {}", path.display())]
    ReadCa {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS config")]
    Tls(#[source] tonic::transport::Error),
    #[error("connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the token has characters a header cannot carry")]
    Token,
    #[error("GetClusterReport at {url}: {} ({:?})", status.message(), status.code())]
    Rpc {
        url: String,
        status: Box<tonic::Status>,
    },
    #[error("answer from {url}")]
    Answer {
        url: String,
        #[source]
        source: crate::report::Error,
    },
    #[error("GET {path} through the Kubernetes API server {server}")]
    Proxy {
        server: String,
        path: String,
        #[source]
        source: kube::Error,
    },
    #[error("GET {path} through the Kubernetes API server {server}: no answer within {after:?}")]
    ProxyTimeout {
        server: String,
        path: String,
        after: Duration,
    },
    #[error("answer of {path} through the Kubernetes API server {server}")]
    ProxyAnswer {
        server: String,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("answer of {path} through the Kubernetes API server {server}")]
    ProxySchema {
        server: String,
        path: String,
        #[source]
        source: crate::report::Error,
    },
}

/// The aggregator's Service, reached through the API server's service proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    /// `https` (the aggregator's HTTP API serves TLS) or `http` (`insecure_plaintext`).
    pub scheme: String,
    /// The Service's port of the HTTP API (8080 in deploy/).
    pub port: u16,
}

impl ServiceRef {
    /// The API server path of `GET /api/v1/report[?at=TIME]` on this Service:
    /// `/api/v1/namespaces/{ns}/services/{scheme}:{name}:{port}/proxy/api/v1/report`.
    #[must_use]
    pub(crate) fn proxy_path(&self, at: Option<jiff::Timestamp>) -> String {
        let mut path = format!(
            "/api/v1/namespaces/{}/services/{}:{}:{}/proxy/api/v1/report",
            self.namespace, self.scheme, self.name, self.port
        );
        if let Some(t) = at {
            // RFC 3339 in UTC: digits, `-`, `:`, `.`, `T` and `Z`, nothing to escape.
            path.push_str(&format!("?at={t}"));
        }
        path
    }
}

/// The header that carries the aggregator's API token through the API server's service
/// proxy: the API server takes `Authorization` for itself and drops it before proxying.
pub const PROXY_TOKEN_HEADER: &str = "x-caretaker-authorization";

/// How long [`fetch_report_via_proxy`] waits for the whole answer.
pub(crate) const PROXY_TIMEOUT: Duration = Duration::from_secs(30);

/// Fetches the merged report from the HTTP API of the aggregator behind `service`,
/// through `client`'s API server (its service proxy, which needs the RBAC verb `get` on
/// `services/proxy` in the Service's namespace). The token, if any, goes in
/// [`PROXY_TOKEN_HEADER`]. `server` names the API server in errors.
///
/// # Errors
/// The request fails or is refused (the API server's or the aggregator's status), no
/// answer within [`PROXY_TIMEOUT`], or an answer that is not a report of this schema.
pub async fn fetch_report_via_proxy(
    client: &kube::Client,
    server: &str,
    service: &ServiceRef,
    at: Option<jiff::Timestamp>,
    token: Option<&str>,
) -> Result<ClusterReport, ClientError> {
    let path = service.proxy_path(at);
    let mut request = http::Request::get(&path).header(http::header::ACCEPT, "application/json");
    if let Some(t) = token {
        request = request.header(PROXY_TOKEN_HEADER, format!("Bearer {t}"));
    }
    let request = request.body(Vec::new()).map_err(|_| ClientError::Token)?;
    let err = |source| ClientError::Proxy {
        server: server.to_string(),
        path: path.clone(),
        source,
    };
    let text = match tokio::time::timeout(PROXY_TIMEOUT, client.request_text(request)).await {
        Ok(r) => r.map_err(err)?,
        Err(_) => {
            return Err(ClientError::ProxyTimeout {
                server: server.to_string(),
                path,
                after: PROXY_TIMEOUT,
            });
        }
    };
    let report: ClusterReport =
        serde_json::from_str(&text).map_err(|source| ClientError::ProxyAnswer {
            server: server.to_string(),
            path: path.clone(),
            source,
        })?;
    if report.schema_version != crate::report::SCHEMA_VERSION {
        return Err(ClientError::ProxySchema {
            server: server.to_string(),
            path,
            source: crate::report::Error::SchemaVersion(report.schema_version),
        });
    }
    Ok(report)
}

/// How a query client reaches an aggregator.
#[derive(Debug, Clone, Default)]
pub struct QueryClientOptions {
    /// CA of the aggregator's server certificate; needed for `https://`.
    pub ca_file: Option<std::path::PathBuf>,
    /// Bearer token (never logged).
    pub token: Option<String>,
}

/// Fetches the merged report from a running aggregator's gRPC `Query` service, over
/// plaintext without a token.
/// `at`: the live report when `None`, else the one recorded at or before that time.
///
/// # Errors
/// Connection, RPC or an invalid answer.
pub async fn fetch_report(
    url: &str,
    at: Option<jiff::Timestamp>,
) -> Result<ClusterReport, ClientError> {
    fetch_report_with(url, at, &QueryClientOptions::default()).await
}

/// [`fetch_report`] with TLS and a token.
///
/// # Errors
/// Connection, RPC or an invalid answer.
pub async fn fetch_report_with(
    url: &str,
    at: Option<jiff::Timestamp>,
    opts: &QueryClientOptions,
) -> Result<ClusterReport, ClientError> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|source| ClientError::InvalidUrl {
            url: url.to_string(),
            source,
        })?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    if let Some(ca) = &opts.ca_file {
        let pem = std::fs::read(ca).map_err(|source| ClientError::ReadCa {
            path: ca.clone(),
            source,
        })?;
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(pem));
        endpoint = endpoint.tls_config(tls).map_err(ClientError::Tls)?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|source| ClientError::Connect {
            url: url.to_string(),
            source,
        })?;
    let mut request = tonic::Request::new(GetClusterReportRequest {
        at: at.map(|t| prost_types::Timestamp {
            seconds: t.as_second(),
            nanos: t.subsec_nanosecond(),
        }),
    });
    if let Some(t) = &opts.token {
        let value = format!("Bearer {t}")
            .parse()
            .map_err(|_| ClientError::Token)?;
        request.metadata_mut().insert("authorization", value);
    }
    let reply = QueryClient::new(channel)
        .get_cluster_report(request)
        .await
        .map_err(|status| ClientError::Rpc {
            url: url.to_string(),
            status: Box::new(status),
        })?;
    ClusterReport::from_wire(&reply.into_inner()).map_err(|source| ClientError::Answer {
        url: url.to_string(),
        source,
    })
}
