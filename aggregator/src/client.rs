//! A client of a running aggregator's gRPC `Query` service: `caretaker-aggregator report`,
//! `caretaker-standalone` and the tests fetch the merged report through it like any client.

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
