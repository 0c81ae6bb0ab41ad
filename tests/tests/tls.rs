//! Mutual TLS between agents and the aggregator, end to end over loopback: the node name
//! comes from the client certificate; unknown CAs, expired certificates, no certificate
//! and reports for another node are refused with a clear error on both sides; the
//! server certificate is reloaded without a restart and without losing reports; and the
//! query APIs need bearer tokens.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use caretaker_agent::collector::{BufferStats, Collector};
use caretaker_agent::config::{AgentConfig, ClientTlsConfig};
use caretaker_agent::paths::HostPaths;
use caretaker_aggregator::api::auth::{Auth, Scope};
use caretaker_aggregator::api::server::ServeOptions;
use caretaker_aggregator::api::tls::ReloadingTls;
use caretaker_proto::pb::{
    self, agent_message, aggregator_message, report_ingest_client::ReportIngestClient,
};
use caretaker_tests::{
    RunningAgent, RunningAggregator, TestPki, captured_log, tls_side, wait_until,
};
use jiff::Timestamp;
use time::Duration as Span;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::wrappers::ReceiverStream;

const INTERVAL: Duration = Duration::from_millis(100);
const WAIT: Duration = Duration::from_secs(20);
const READ_TOKEN: &str = "read-token-for-tests-0123456789";
const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";

fn stored(agg: &RunningAggregator, node: &str) -> u64 {
    agg.state
        .node(node, Timestamp::now())
        .map_or(0, |n| n.reports_stored_total)
}

fn options(tls: caretaker_aggregator::config::ServerTlsConfig) -> anyhow::Result<ServeOptions> {
    Ok(ServeOptions {
        tls: Some(Arc::new(ReloadingTls::load(tls)?)),
        auth: Arc::new(Auth::with_tokens(
            [
                ("ro".to_string(), Scope::Read, READ_TOKEN.to_string()),
                ("ops".to_string(), Scope::Admin, ADMIN_TOKEN.to_string()),
            ],
            false,
        )),
        reports_per_minute: 6000,
        ..ServeOptions::insecure()
    })
}

/// A valid report of this machine, named `node`.
async fn report(node: &str) -> pb::NodeReport {
    let cfg = AgentConfig {
        node_name: Some(node.into()),
        ..AgentConfig::default()
    };
    let settings =
        caretaker_agent::collector_settings(&cfg, HostPaths::default()).expect("settings");
    pb::NodeReport::from(
        Collector::new(settings, Arc::new(BufferStats::default()))
            .collect()
            .await,
    )
}

fn chain(e: &dyn std::error::Error) -> String {
    caretaker_core::error::Chain(e).to_string()
}

/// Opens an ingest stream with `identity` (cert, key) or none, sends one report for
/// `node` and returns the aggregator's first answer, or the error as text.
async fn try_report(
    port: u16,
    ca: &Path,
    identity: Option<&ClientTlsConfig>,
    node: &str,
) -> Result<pb::Ack, String> {
    let mut tls = tonic::transport::ClientTlsConfig::new().ca_certificate(
        tonic::transport::Certificate::from_pem(std::fs::read(ca).map_err(|e| e.to_string())?),
    );
    if let Some(id) = identity {
        let (c, k) = (
            std::fs::read(&id.cert_file).map_err(|e| e.to_string())?,
            std::fs::read(&id.key_file).map_err(|e| e.to_string())?,
        );
        tls = tls.identity(tonic::transport::Identity::from_pem(c, k));
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("https://localhost:{port}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| chain(&e))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| chain(&e))?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::AgentMessage {
        msg: Some(agent_message::Msg::Report(report(node).await)),
    })
    .await
    .map_err(|e| e.to_string())?;
    // The message, or for a transport failure the whole chain (the TLS alert is deep down).
    let status = |s: tonic::Status| {
        use tonic::Code::{PermissionDenied, Unauthenticated};
        if matches!(s.code(), PermissionDenied | Unauthenticated) {
            format!("{:?}: {}", s.code(), s.message())
        } else {
            format!("{:?}: {}", s.code(), chain(&s))
        }
    };
    let mut inbound = ReportIngestClient::new(channel)
        .stream(ReceiverStream::new(rx))
        .await
        .map_err(status)?
        .into_inner();
    let answer = tokio::time::timeout(WAIT, inbound.message())
        .await
        .map_err(|_| "no answer".to_string())?;
    drop(tx);
    match answer.map_err(status)? {
        Some(pb::AggregatorMessage {
            msg: Some(aggregator_message::Msg::Ack(a)),
        }) => Ok(a),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_reports_over_mutual_tls_as_the_node_its_certificate_names() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path(), "ca")?;
    let agg = RunningAggregator::start_with(
        &dir.path().join("data"),
        "127.0.0.1:0".parse()?,
        3,
        options(pki.server()?)?,
    )
    .await?;
    let port = agg.grpc.port();
    let agent_tls = pki.agent("node-a", Some("node-a"), Span::hours(-1), Span::days(1))?;
    let agent = RunningAgent::start_with(
        "node-a",
        tls_side(port, agent_tls.clone()),
        INTERVAL,
        HostPaths::default(),
    )?;
    wait_until("node-a has 3 reports", WAIT, || stored(&agg, "node-a") >= 3).await?;
    let summary = agent.stop().await?;
    assert_eq!((summary.rejected, summary.unacked_at_exit), (0, 0));
    assert_eq!(
        stored(&agg, "node-a"),
        summary.acked + summary.duplicates_acked
    );

    // A raw client with the same certificate gets its report acked.
    let ack = try_report(port, &pki.ca_file(), Some(&agent_tls), "node-a")
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(
        (ack.node_name.as_str(), ack.rejected.as_str()),
        ("node-a", "")
    );
    agg.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_certificates_get_a_clear_error_on_both_sides() -> anyhow::Result<()> {
    captured_log();
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path(), "ca")?;
    let other = TestPki::new(dir.path(), "other-ca")?;
    let agg = RunningAggregator::start_with(
        &dir.path().join("data"),
        "127.0.0.1:0".parse()?,
        3,
        options(pki.server()?)?,
    )
    .await?;
    let port = agg.grpc.port();
    let ca = pki.ca_file();

    // A certificate from another CA: the handshake fails. (With TLS 1.3 the client learns
    // it from the server's alert after sending its certificate; gRPC may see only the
    // closed connection, so the alert is read with a plain TLS client.)
    let foreign = other.agent("foreign", Some("node-f"), Span::hours(-1), Span::days(1))?;
    assert!(
        try_report(port, &ca, Some(&foreign), "node-f")
            .await
            .is_err()
    );
    assert_eq!(
        alert_after_handshake(port, &ca, &foreign).await?,
        "received fatal alert: UnknownCA"
    );

    // An expired certificate of the right CA: the handshake fails.
    let expired = pki.agent("expired", Some("node-e"), Span::days(-10), Span::days(-1))?;
    assert!(
        try_report(port, &ca, Some(&expired), "node-e")
            .await
            .is_err()
    );
    assert_eq!(
        alert_after_handshake(port, &ca, &expired).await?,
        "received fatal alert: CertificateExpired"
    );

    // No certificate: TLS works (Query clients have none), the stream is refused.
    let err = try_report(port, &ca, None, "node-n")
        .await
        .expect_err("no certificate");
    assert_eq!(
        err,
        "Unauthenticated: no client certificate: this aggregator takes reports over mutual TLS only; give the agent aggregator.tls.cert_file and key_file"
    );

    // A certificate for node-a reporting for node-b: the stream ends, nothing stored.
    let a = pki.agent("node-a", Some("node-a"), Span::hours(-1), Span::days(1))?;
    let err = try_report(port, &ca, Some(&a), "node-b")
        .await
        .expect_err("another node");
    assert_eq!(
        err,
        "PermissionDenied: the client certificate is for node \"node-a\"; it may not report for node \"node-b\""
    );

    // The certificate shared by all agents, not accepted by this aggregator.
    let shared = pki.agent("shared", None, Span::hours(-1), Span::days(1))?;
    let err = try_report(port, &ca, Some(&shared), "node-s")
        .await
        .expect_err("shared");
    assert!(err.starts_with("PermissionDenied: the client certificate is the one shared by all agents (caretaker-node:*)"), "{err}");

    for n in ["node-f", "node-e", "node-n", "node-b", "node-s"] {
        assert_eq!(stored(&agg, n), 0, "{n} stored nothing");
    }
    // The aggregator's side of each refusal, in its log.
    let log = captured_log();
    for said in [
        "TLS handshake failed; connection refused.",
        "invalid peer certificate: UnknownIssuer",
        "invalid peer certificate: certificate expired",
        "Refused an agent stream.",
        "Refused a report for another node than the client certificate's; closing the stream.",
    ] {
        assert!(log.contains(said), "the aggregator logs {said:?}:\n{log}");
    }

    // A real agent with the wrong node name keeps its reports and says why.
    let wrong =
        RunningAgent::start_with("node-b", tls_side(port, a), INTERVAL, HostPaths::default())?;
    wait_until("the agent logs the refusal", WAIT, || {
        captured_log().contains(r#"Report stream ended; reconnecting. reason=the client certificate is for node "node-a"; it may not report for node "node-b" (PermissionDenied)"#)
    })
    .await?;
    let summary = wrong.stop().await?;
    assert_eq!(summary.acked, 0);
    assert_eq!(stored(&agg, "node-b"), 0);
    agg.stop().await
}

fn client_config(
    ca: &Path,
    identity: Option<&ClientTlsConfig>,
) -> anyhow::Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    Ok(match identity {
        None => b.with_no_client_auth(),
        Some(id) => b.with_client_auth_cert(
            rustls_pki_types::CertificateDer::pem_file_iter(&id.cert_file)?
                .collect::<Result<_, _>>()?,
            rustls_pki_types::PrivateKeyDer::from_pem_file(&id.key_file)?,
        )?,
    })
}

/// Handshakes with a client certificate, then reads: the server's verdict on the
/// certificate arrives as an alert.
async fn alert_after_handshake(
    port: u16,
    ca: &Path,
    identity: &ClientTlsConfig,
) -> anyhow::Result<String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca, Some(identity))?))
        .connect("localhost".try_into()?, tcp)
        .await?;
    let mut buf = [0u8; 64];
    match tls.read(&mut buf).await {
        Ok(n) => anyhow::bail!("read {n} bytes instead of an alert"),
        Err(e) => Ok(e.to_string()),
    }
}

/// A TLS connection to `port` from a plain rustls client (no client certificate) that
/// trusts `ca`.
async fn plain_tls_client(
    port: u16,
    ca: &Path,
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into()?, tcp)
        .await?)
}

/// Connects with a plain rustls client and returns the server's certificate.
async fn served_certificate(port: u16, ca: &Path) -> anyhow::Result<Vec<u8>> {
    let tls = plain_tls_client(port, ca).await?;
    Ok(tls
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificate")[0]
        .to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotated_server_certificate_is_served_without_restart_and_no_report_is_lost()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path(), "ca")?;
    let agg = RunningAggregator::start_with(
        &dir.path().join("data"),
        "127.0.0.1:0".parse()?,
        3,
        options(pki.server()?)?,
    )
    .await?;
    let port = agg.grpc.port();
    let before = served_certificate(port, &pki.ca_file()).await?;
    let tls = pki.agent("node-r", Some("node-r"), Span::hours(-1), Span::days(1))?;
    let agent = RunningAgent::start_with(
        "node-r",
        tls_side(port, tls.clone()),
        INTERVAL,
        HostPaths::default(),
    )?;
    wait_until("node-r has 3 reports", WAIT, || stored(&agg, "node-r") >= 3).await?;

    // Renew the server certificate in place, as cert-manager or `certs` would.
    pki.server()?;
    let after = served_certificate(port, &pki.ca_file()).await?;
    assert_ne!(before, after, "new connections get the new certificate");
    assert_eq!(
        after,
        served_certificate(port, &pki.ca_file()).await?,
        "and keep getting it"
    );
    // The agent's stream goes on; a second agent connects with the new certificate.
    let n = stored(&agg, "node-r");
    let second = RunningAgent::start_with(
        "node-r2",
        tls_side(
            port,
            pki.agent("node-r2", Some("node-r2"), Span::hours(-1), Span::days(1))?,
        ),
        INTERVAL,
        HostPaths::default(),
    )?;
    wait_until("both agents report after the rotation", WAIT, || {
        stored(&agg, "node-r") >= n + 3 && stored(&agg, "node-r2") >= 2
    })
    .await?;
    for (a, node) in [(agent, "node-r"), (second, "node-r2")] {
        let s = a.stop().await?;
        assert_eq!(s.unacked_at_exit, 0, "{node}: every report acked");
        assert_eq!(
            stored(&agg, node),
            s.collected,
            "{node}: every collected report stored once"
        );
    }
    agg.stop().await
}

/// One HTTP/1.1 request over TLS; returns (status, body).
async fn https(
    port: u16,
    ca: &Path,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into()?, tcp)
        .await?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    tls.write_all(format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = text.split(' ').nth(1).unwrap_or("0").parse()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn query_apis_need_a_token_of_the_right_scope() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path(), "ca")?;
    let agg = RunningAggregator::start_with(
        &dir.path().join("data"),
        "127.0.0.1:0".parse()?,
        3,
        options(pki.server()?)?,
    )
    .await?;
    let (http, ca) = (agg.http.port(), pki.ca_file());
    let ack = try_report(
        agg.grpc.port(),
        &ca,
        Some(&pki.agent("n", Some("node-q"), Span::hours(-1), Span::days(1))?),
        "node-q",
    )
    .await;
    assert_eq!(ack.map_err(anyhow::Error::msg)?.node_name, "node-q");
    let report_before = agg.state.cluster_report(Timestamp::now()).nodes.len();

    // HTTPS: health without a token; the API with one.
    assert_eq!(
        https(http, &ca, "GET", "/healthz", None).await?,
        (200, "ok".into())
    );
    assert_eq!(https(http, &ca, "GET", "/readyz", None).await?.0, 200);
    assert_eq!(https(http, &ca, "GET", "/metrics", None).await?.0, 200);
    let (s, body) = https(http, &ca, "GET", "/api/v1/report", None).await?;
    assert_eq!(
        (s, body.as_str()),
        (
            401,
            r#"{"error":"this API needs a bearer token (Authorization: Bearer <token>)"}"#
        )
    );
    let (s, body) = https(
        http,
        &ca,
        "GET",
        "/api/v1/report",
        Some("wrong-token-0123456789"),
    )
    .await?;
    assert_eq!(
        (s, body.as_str()),
        (401, r#"{"error":"the bearer token is not valid"}"#)
    );
    let (s, body) = https(http, &ca, "GET", "/api/v1/nodes/node-q", Some(READ_TOKEN)).await?;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body)?["node_name"],
        "node-q"
    );
    // A change needs admin: refused for a read token before anything runs.
    let (s, body) = https(
        http,
        &ca,
        "DELETE",
        "/api/v1/nodes/node-q",
        Some(READ_TOKEN),
    )
    .await?;
    assert_eq!(
        (s, body.as_str()),
        (
            403,
            r#"{"error":"this action needs an admin token; the token given is read-only"}"#
        )
    );
    assert_eq!(
        https(
            http,
            &ca,
            "DELETE",
            "/api/v1/nodes/node-q",
            Some(ADMIN_TOKEN)
        )
        .await?
        .0,
        405,
        "admin passes auth; no such route yet"
    );
    assert_eq!(
        agg.state.cluster_report(Timestamp::now()).nodes.len(),
        report_before,
        "nothing changed"
    );

    // gRPC Query: the same tokens.
    let url = format!("https://localhost:{}", agg.grpc.port());
    let opts = |token: Option<&str>| caretaker_aggregator::client::QueryClientOptions {
        ca_file: Some(ca.clone()),
        token: token.map(str::to_string),
    };
    let err = caretaker_aggregator::client::fetch_report_with(&url, None, &opts(None))
        .await
        .expect_err("no token")
        .to_string();
    assert!(
        err.ends_with(
            "this API needs a bearer token (Authorization: Bearer <token>) (Unauthenticated)"
        ),
        "{err}"
    );
    let err = caretaker_aggregator::client::fetch_report_with(
        &url,
        None,
        &opts(Some("wrong-token-0123456789")),
    )
    .await
    .expect_err("wrong")
    .to_string();
    assert!(
        err.ends_with("the bearer token is not valid (Unauthenticated)"),
        "{err}"
    );
    let report =
        caretaker_aggregator::client::fetch_report_with(&url, None, &opts(Some(READ_TOKEN)))
            .await?;
    assert_eq!(
        report
            .nodes
            .iter()
            .map(|n| n.node_name.as_str())
            .collect::<Vec<_>>(),
        ["node-q"]
    );
    agg.stop().await
}

/// `ingest.max_connection_idle` closes connections without an RPC, found by the peer
/// address tonic records; over TLS that address is inside the TLS connect info. A TLS
/// agent that keeps its stream (idle_timeout 0s) and reports more often than the idle
/// limit keeps one connection for many idle periods, and a silent TLS client is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_tls_a_busy_connection_outlives_max_connection_idle_and_a_silent_one_does_not()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path(), "ca")?;
    let mut opts = options(pki.server()?)?;
    opts.ingest.max_connection_idle = Duration::from_millis(400);
    let agg =
        RunningAggregator::start_with(&dir.path().join("data"), "127.0.0.1:0".parse()?, 3, opts)
            .await?;
    let port = agg.grpc.port();
    let agent_tls = pki.agent("node-b", Some("node-b"), Span::hours(-1), Span::days(1))?;
    let mut side = tls_side(port, agent_tls);
    side.idle_timeout = caretaker_core::config::BoundedDuration::secs(0);
    let agent = RunningAgent::start_with("node-b", side, INTERVAL, HostPaths::default())?;
    // 100 ms reports for well over 400 ms, several times.
    wait_until("node-b has 20 reports", WAIT, || {
        stored(&agg, "node-b") >= 20
    })
    .await?;
    let summary = agent.stop().await?;
    assert_eq!(
        (
            summary.connections,
            summary.rejected,
            summary.unacked_at_exit
        ),
        (1, 0, 0),
        "{summary:?}"
    );

    // A client that completes the TLS handshake and never starts an RPC is closed.
    let mut tls = plain_tls_client(port, &pki.ca_file()).await?;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(WAIT, tls.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "still open after {WAIT:?}");
    agg.stop().await
}

/// Over TLS too, one source address holds at most `max_connections_per_source` slots of
/// the gRPC port: its next connection is closed as soon as it is accepted (its handshake
/// fails), whatever it would have sent, and once its held connection closes, an agent from
/// that address delivers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_connections_beyond_max_connections_per_source_are_closed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path(), "ca")?;
    let mut opts = options(pki.server()?)?;
    opts.ingest.max_connections_per_source = 1;
    let agg =
        RunningAggregator::start_with(&dir.path().join("data"), "127.0.0.1:0".parse()?, 3, opts)
            .await?;
    let port = agg.grpc.port();
    // A client with no certificate holds the address's only slot, silent.
    let held = plain_tls_client(port, &pki.ca_file()).await?;
    let second = plain_tls_client(port, &pki.ca_file()).await;
    assert!(second.is_err(), "a second connection was served");
    let text = agg.state.metrics.encode();
    assert!(
        text.contains("caretaker_ingest_connections_refused_per_source_total 1\n"),
        "{text}"
    );
    drop(held);
    let agent_tls = pki.agent("node-b", Some("node-b"), Span::hours(-1), Span::days(1))?;
    let agent = RunningAgent::start_with(
        "node-b",
        tls_side(port, agent_tls),
        INTERVAL,
        HostPaths::default(),
    )?;
    wait_until("node-b has 3 reports", WAIT, || stored(&agg, "node-b") >= 3).await?;
    agent.stop().await?;
    agg.stop().await
}
