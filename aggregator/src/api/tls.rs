//! Server TLS (rustls with ring): mutual TLS for agents, the node name taken from the
//! client certificate, and certificate files that are reloaded when they change.
//!
//! # Node identity
//! An agent's client certificate carries the node it may report for as a URI SAN
//! `caretaker-node:<node name>` ([`NODE_URI_PREFIX`]); `caretaker-node:*` marks the one
//! certificate shared by all agents, accepted only with `tls.allow_shared_agent_cert`.
//! The certificate must chain to `tls.ca_file`, be within its validity period and allow
//! client authentication (extended key usage); otherwise the handshake fails.
//!
//! A client certificate is optional at the TLS level, because gRPC `Query` clients on
//! the same port authenticate with bearer tokens instead; the ingest service refuses a
//! stream without one ([`crate::api::ingest`]).
//!
//! # Reload
//! [`ReloadingTls::current`] looks at the three files' modification time, size and inode
//! at every new connection and rebuilds the server config when one changed (Kubernetes
//! swaps a Secret volume's files atomically). A set of files that does not load (say,
//! half written) is reported and the previous config kept. Established connections keep
//! their session; agents reconnect and resend what was not acked.

use caretaker_core::error::Chain;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::api::connections::{Capped, ConnectionCap, Slot};
use crate::config::ServerTlsConfig;

/// URI SAN prefix naming the node a client certificate may report for.
pub(crate) const NODE_URI_PREFIX: &str = "caretaker-node:";

/// The URI SAN of the certificate shared by all agents.
pub(crate) const SHARED_NODE_URI: &str = "caretaker-node:*";

/// A TLS handshake that takes longer is abandoned (a client that connects and sends
/// nothing cannot hold a task forever).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the server to take them.
const ACCEPT_QUEUE: usize = 64;

/// Connections a TLS listener without a cap of its own (the HTTP port: its server caps
/// what it takes, `http.max_connections`) holds between accepting them and handing them
/// over: in their handshake, or done and waiting for the server. Past it, it stops
/// accepting and new clients wait in the kernel's backlog, as on the plaintext HTTP port
/// at its cap. Without it every connection was accepted at once and, its handshake done
/// (no certificate needed), waited for the server without bound, a descriptor each: a
/// client that kept connecting could exhaust the process's descriptors.
pub(crate) const MAX_PENDING: usize = 64;

/// TLS setup errors, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS file {path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("TLS file {path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("TLS CA file {path}: {message}")]
    Ca { path: PathBuf, message: String },
    #[error("TLS certificate {cert} and key {key} do not make a server config")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// Who a verified client certificate says the peer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PeerIdentity {
    /// May report for this node only.
    Node(String),
    /// The certificate shared by all agents (`caretaker-node:*`).
    Shared,
}

/// Why a client certificate names no node this aggregator accepts; sent to the agent as
/// the reason of a PERMISSION_DENIED.
#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum IdentityError {
    #[error("unparsable client certificate")]
    Unparsable(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    #[error("the client certificate names an invalid node {0:?}")]
    InvalidNode(String),
    #[error(
        "the client certificate ({subject}) has no URI SAN {NODE_URI_PREFIX}<node>; issue agent certificates with `caretaker-aggregator certs`"
    )]
    NoNode { subject: String },
    #[error("the client certificate names several nodes: {0:?}")]
    SeveralNodes(Vec<String>),
}

/// Reads the node identity from a (verified) client certificate.
///
/// # Errors
/// Not a parsable certificate, or not exactly one `caretaker-node:` URI SAN.
pub(crate) fn peer_identity(cert: &CertificateDer<'_>) -> Result<PeerIdentity, IdentityError> {
    let (_, x509) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(IdentityError::Unparsable)?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = n
                && let Some(node) = uri.strip_prefix(NODE_URI_PREFIX)
            {
                names.push(node.to_string());
            }
        }
    }
    match names.as_slice() {
        [one] if one == "*" => Ok(PeerIdentity::Shared),
        [one] if caretaker_core::model::validate_node_name(one).is_ok() => {
            Ok(PeerIdentity::Node(one.clone()))
        }
        [one] => Err(IdentityError::InvalidNode(one.clone())),
        [] => Err(IdentityError::NoNode {
            subject: x509.subject().to_string(),
        }),
        _ => Err(IdentityError::SeveralNodes(names)),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.into(),
        source,
    })
}

/// All PEM certificates of a file.
///
/// # Errors
/// Unreadable, malformed or without any certificate.
pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.into(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.into() });
    }
    Ok(certs)
}

/// The first private key of a PEM file.
///
/// # Errors
/// Unreadable or without a key.
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.into(),
        message: format!("no usable private key ({e})"),
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a server config from the files as they are now.
///
/// # Errors
/// See [`TlsError`].
pub(crate) fn server_config(files: &ServerTlsConfig) -> Result<ServerConfig, TlsError> {
    let certs = load_certs(&files.cert_file)?;
    let key = load_key(&files.key_file)?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in load_certs(&files.ca_file)? {
        roots.add(ca).map_err(|e| TlsError::Ca {
            path: files.ca_file.clone(),
            message: e.to_string(),
        })?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Ca {
            path: files.ca_file.clone(),
            message: e.to_string(),
        })?;
    let config_err = |source| TlsError::Config {
        cert: files.cert_file.clone(),
        key: files.key_file.clone(),
        source,
    };
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(config_err)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // No session resumption: an agent keeps one connection for days, so a resumed
    // handshake would save little, while every ticket sent costs a server-side cache
    // entry (holding the client's certificate chain) and, at 5,000 agents reconnecting at
    // once, work and memory during the storm (issue 14).
    cfg.send_tls13_tickets = 0;
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(cfg)
}

/// Modification time, size and inode of a file; `None`: it cannot be stat'ed. A change
/// of any means the file was replaced or rewritten (a Secret update swaps a symlink).
pub(crate) type FileStamp = Option<(SystemTime, u64, u64)>;

/// The [`FileStamp`] of `path`; also used for the API token files.
pub(crate) fn file_stamp(path: &std::path::Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| {
        (
            m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            m.len(),
            m.ino(),
        )
    })
}

/// The stamps of the three files: a change of any means reload.
type Stamp = Vec<FileStamp>;

fn stamp(files: &ServerTlsConfig) -> Stamp {
    [&files.cert_file, &files.key_file, &files.ca_file]
        .iter()
        .map(|p| file_stamp(p))
        .collect()
}

/// A server config that follows its files; see the module docs.
#[derive(Debug)]
pub struct ReloadingTls {
    files: ServerTlsConfig,
    current: Mutex<(Stamp, Arc<ServerConfig>)>,
}

impl ReloadingTls {
    /// Loads the files; they must load now (later failures keep the last good config).
    ///
    /// # Errors
    /// See [`TlsError`].
    pub fn load(files: ServerTlsConfig) -> Result<Self, TlsError> {
        let s = stamp(&files);
        let cfg = Arc::new(server_config(&files)?);
        Ok(Self {
            files,
            current: Mutex::new((s, cfg)),
        })
    }

    /// The files' settings.
    pub fn files(&self) -> &ServerTlsConfig {
        &self.files
    }

    /// The config for a new connection, reloaded first if a file changed.
    pub fn current(&self) -> Arc<ServerConfig> {
        let now = stamp(&self.files);
        let mut cur = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cur.0 != now {
            match server_config(&self.files) {
                Ok(cfg) => {
                    info!(cert = %self.files.cert_file.display(), "TLS files changed; new connections use the new certificate.");
                    *cur = (now, Arc::new(cfg));
                }
                Err(e) => {
                    // Remember the stamp so that a broken set is reported once, not per connection.
                    warn!(error = %Chain(&e), "TLS files changed but do not load; still serving the previous certificate.");
                    cur.0 = now;
                }
            }
        }
        Arc::clone(&cur.1)
    }
}

/// Accepts TCP connections on `listener` and hands out those whose TLS handshake
/// succeeded, each handshake on its own task with [`HANDSHAKE_TIMEOUT`]. Handshake
/// failures (unknown CA, expired certificate, no TLS at all) are logged with the peer.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Arc<ReloadingTls>,
    shutdown: CancellationToken,
    what: &'static str,
) -> mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    accept_loop(listener, tls, shutdown, what, None, |stream, _, _| stream)
}

/// [`incoming`] within a connection cap: a connection is accepted (and its handshake
/// started) only once it has a slot ([`crate::api::connections`]), and each connection
/// handed out holds its slot until it closes.
pub(crate) fn incoming_capped(
    listener: TcpListener,
    tls: Arc<ReloadingTls>,
    shutdown: CancellationToken,
    what: &'static str,
    cap: Arc<ConnectionCap>,
) -> mpsc::Receiver<(Capped<TlsStream<TcpStream>>, SocketAddr)> {
    accept_loop(
        listener,
        tls,
        shutdown,
        what,
        Some(cap),
        |stream, slot, peer| {
            let (slot, cap) = slot.expect("a capped listener gives every connection a slot");
            Capped::new(stream, slot, cap, peer)
        },
    )
}

/// A connection's slot under a cap, and the cap.
type CapSlot = (Slot, Arc<ConnectionCap>);

/// The loop of [`incoming`]: with a `cap`, it waits for a slot before it accepts; `wrap`
/// makes what is handed out of the stream and its slot.
fn accept_loop<T: Send + 'static>(
    listener: TcpListener,
    tls: Arc<ReloadingTls>,
    shutdown: CancellationToken,
    what: &'static str,
    cap: Option<Arc<ConnectionCap>>,
    wrap: fn(TlsStream<TcpStream>, Option<CapSlot>, SocketAddr) -> T,
) -> mpsc::Receiver<(T, SocketAddr)> {
    let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
    // Without a cap, what bounds the connections accepted and not yet handed over.
    let pending = Arc::new(Semaphore::new(MAX_PENDING));
    tokio::spawn(
        async move {
            // The slot of a connection that was not handed out (refused for its source, or
            // the accept failed): the next connection takes it. Given back to the cap, it
            // would be taken again as a slot "free at once" while the port is at its cap
            // (a warning and an info line each time).
            let mut kept: Option<OwnedSemaphorePermit> = None;
            loop {
                let permit = match (&cap, kept.take()) {
                    (Some(_), Some(permit)) => Some(permit),
                    (Some(cap), None) => tokio::select! {
                        () = shutdown.cancelled() => break,
                        permit = cap.slot() => Some(permit),
                    },
                    (None, _) => None,
                };
                let pending_slot = match &cap {
                    Some(_) => None,
                    None => tokio::select! {
                        () = shutdown.cancelled() => break,
                        p = Arc::clone(&pending).acquire_owned() => p.ok(),
                    },
                };
                let (tcp, peer) = tokio::select! {
                    () = shutdown.cancelled() => break,
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            warn!(error = %Chain(&e), "Cannot accept a connection.");
                            kept = permit;
                            tokio::time::sleep(crate::api::connections::ACCEPT_ERROR_PAUSE).await;
                            continue;
                        }
                    },
                };
                let slot = match (permit, &cap) {
                    (Some(permit), Some(cap)) => match cap.admit(permit, peer) {
                        Ok(slot) => Some((slot, Arc::clone(cap))),
                        // Its source holds enough slots: closed (dropped) at once.
                        Err(permit) => {
                            kept = Some(permit);
                            continue;
                        }
                    },
                    _ => None,
                };
                // Small writes (acks, HTTP/2 settings) go out at once: with Nagle, a
                // connection's second small write waited for the peer's delayed ACK
                // (40 ms per exchange on Linux).
                if let Err(e) = tcp.set_nodelay(true) {
                    debug!(%peer, error = %e, "Cannot set TCP_NODELAY.");
                }
                let acceptor = TlsAcceptor::from(tls.current());
                let tx = tx.clone();
                tokio::spawn(async move {
                    // Held until the connection is handed over or closed.
                    let _pending = pending_slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            debug!(%peer, "TLS handshake done.");
                            let _ = tx.send((wrap(stream, slot, peer), peer)).await;
                        }
                        Ok(Err(e)) => {
                            warn!(%peer, error = %Chain(&e), "TLS handshake failed; connection refused.")
                        }
                        Err(_) => warn!(%peer, "TLS handshake timed out; connection closed."),
                    }
                });
            }
        }
        .instrument(info_span!("tls", listener = what)),
    );
    rx
}

/// [`incoming`] as an axum listener.
#[derive(Debug)]
pub(crate) struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub(crate) fn new(
        rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        local: SocketAddr,
    ) -> Self {
        Self { rx, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The acceptor stopped (shutdown): wait for the server's own shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {

    use prometheus_client::metrics::counter::Counter;

    use super::*;
    use crate::api::connections::tests::{CapturedLog, connect_from};

    /// A CA and a server certificate for `localhost` in `dir`, loaded.
    fn server_tls(dir: &Path) -> Arc<ReloadingTls> {
        let now = time::OffsetDateTime::now_utc();
        let (from, to) = (
            now - time::Duration::hours(1),
            now + time::Duration::days(1),
        );
        let ca = crate::cli::certs::Ca::new("test CA", from, to).unwrap();
        let server = ca.issue_server(&["localhost".into()], from, to).unwrap();
        let files = ServerTlsConfig {
            cert_file: dir.join("server.crt"),
            key_file: dir.join("server.key"),
            ca_file: dir.join("ca.crt"),
            allow_shared_agent_cert: false,
        };
        std::fs::write(&files.cert_file, &server.cert_pem).unwrap();
        std::fs::write(&files.key_file, &server.key_pem).unwrap();
        std::fs::write(&files.ca_file, ca.cert_pem()).unwrap();
        Arc::new(ReloadingTls::load(files).unwrap())
    }

    /// As on the plaintext port ([`crate::api::connections::plaintext`]): a connection
    /// refused for its source while the TLS port is at its cap hands its slot on to the
    /// next connection, so the port logs neither "below the cap again" nor a second
    /// warning (before: both, for every connection a client at its share opened while
    /// others waited).
    #[tokio::test]
    async fn a_connection_refused_at_the_cap_passes_its_slot_on_without_a_log_line() {
        let log = CapturedLog::start();
        let dir = tempfile::tempdir().unwrap();
        let refused = Counter::default();
        let cap = Arc::new(ConnectionCap::new(
            2,
            1,
            Duration::from_secs(60),
            refused.clone(),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let _rx = incoming_capped(
            listener,
            server_tls(dir.path()),
            stop.clone(),
            "grpc",
            Arc::clone(&cap),
        );
        // Two silent connections hold both slots while their handshakes wait.
        let _a = connect_from("127.0.0.1", addr).await;
        let b = connect_from("127.0.0.2", addr).await;
        while !cap.waiting() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The source 127.0.0.1 holds its share: its next connection is refused when a
        // slot comes free, and the one behind it takes that slot.
        let _refused = connect_from("127.0.0.1", addr).await;
        let _admitted = connect_from("127.0.0.3", addr).await;
        drop(b);
        while !(refused.get() == 1 && cap.waiting()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
        let log = log.text();
        assert_eq!(log.matches("at its connection cap").count(), 1, "{log}");
        assert_eq!(log.matches("connection cap again").count(), 0, "{log}");
    }

    /// Connections waiting in the kernel's accept queue of the listener on `port`
    /// (127.0.0.1), from /proc/net/tcp (a listener's `rx_queue`).
    fn accept_queue(port: u16) -> usize {
        let local = format!("0100007F:{port:04X}");
        std::fs::read_to_string("/proc/net/tcp")
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f[1] == local && f[3] == "0A")
            .and_then(|f| f[4].split_once(':').map(|(_, rx)| rx.to_string()))
            .map(|rx| usize::from_str_radix(&rx, 16).unwrap())
            .expect("the listener is in /proc/net/tcp")
    }

    /// The HTTP port's TLS listener (no connection cap of its own: its server caps what it
    /// takes) stops accepting while MAX_PENDING connections are in their handshake or
    /// wait for the server: the rest wait in the kernel's accept queue. Before, every
    /// connection was accepted at once and, handshake done (no certificate needed), waited
    /// for the server without bound, a descriptor each: a client that kept connecting
    /// exhausted the process's descriptors, the gRPC port's accepts included.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_uncapped_tls_listener_stops_accepting_at_max_pending() {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        // Nobody takes the handshaken connections (a server at its cap).
        let _rx = incoming(listener, server_tls(dir.path()), stop.clone(), "http");
        let mut held = Vec::new();
        for _ in 0..MAX_PENDING + 3 {
            held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while accept_queue(addr.port()) != 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} connections wait to be accepted, not 3",
                accept_queue(addr.port())
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
    }
}
