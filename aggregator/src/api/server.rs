//! Wires the gRPC and HTTP servers over one [`State`]; takes its listeners and a
//! shutdown token as arguments so tests bind `127.0.0.1:0`.
//!
//! [`serve`] is plaintext with no tokens (loopback: tests, `standalone`); [`serve_with`]
//! takes [`ServeOptions`]: TLS on both listeners (mutual for agents, see [`crate::api::tls`]),
//! bearer tokens ([`crate::api::auth`]) and the ingest rate.

use std::sync::Arc;
use std::time::Duration;

use caretaker_proto::pb::{self, query_server::QueryServer};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span};

use crate::api::auth::{Auth, GrpcAuthLayer};
use crate::api::codec::IngestServer;
use crate::api::connections::ConnectionCap;
use crate::api::ingest::{DEFAULT_REPORTS_PER_MINUTE, IdentityPolicy, IngestLimits, IngestService};
use crate::api::listen::HttpLimits;
use crate::api::query::QueryService;
use crate::api::tls::{ReloadingTls, TlsListener};
use crate::state::State;

/// How [`serve_with`] secures its listeners.
#[derive(Debug)]
pub struct ServeOptions {
    /// TLS on gRPC and HTTP; `None`: plaintext, and agents may report for any node.
    pub tls: Option<Arc<ReloadingTls>>,
    /// Tokens of the query APIs.
    pub auth: Arc<Auth>,
    /// Ingest rate per node, over all its streams.
    pub reports_per_minute: u32,
    /// Memory bounds and group commit of ingest.
    pub ingest: IngestLimits,
    /// Connection cap and timeouts of the HTTP listener.
    pub http: HttpLimits,
}

impl ServeOptions {
    /// Plaintext, no tokens: only for loopback.
    pub fn insecure() -> Self {
        Self {
            tls: None,
            auth: Arc::new(Auth::anonymous()),
            reports_per_minute: DEFAULT_REPORTS_PER_MINUTE,
            ingest: IngestLimits::default(),
            http: HttpLimits::default(),
        }
    }
}

/// HTTP/2 receive window per stream and per connection on the gRPC port: what an agent may
/// send ahead of what ingest has read. hyper's default (1 MiB each) let 5,000 agents
/// resending their backlogs park 2.2 GB in receive buffers (bench-ingest, issue 14), outside
/// the in-flight budget. Not below HTTP/2's own initial window (65,535): a client may send
/// that much on a new connection's first stream before it has the server's settings, and
/// h2 mishandles a stream whose window the settings then shrink below what was sent
/// (hyperium/h2#630): a few agents in a reconnect storm stalled for good, every report
/// sent and none read (bench-ingest, 6 KiB windows). So memory is bounded by the number of
/// connections instead (`ingest.max_connections`): 64 KiB each at most.
pub(crate) const STREAM_WINDOW_BYTES: u32 = 65_535;
/// See [`STREAM_WINDOW_BYTES`].
pub(crate) const CONNECTION_WINDOW_BYTES: u32 = 64 << 10;

/// Largest message accepted from an agent by default (`ingest.max_message_bytes`). A report
/// of a large node is tens of KiB; the bound keeps a broken agent from making the
/// aggregator buffer more.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Backlog of the gRPC port's listening socket: connections waiting at the cap wait there
/// (the kernel bounds it further by `net.core.somaxconn`, 4096 by default).
pub const LISTEN_BACKLOG: u32 = 8192;

/// Binds `addr` for the gRPC port with [`LISTEN_BACKLOG`].
///
/// # Errors
/// The socket cannot be created, bound or put to listen.
pub fn bind_grpc(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std's and tokio's `bind`: a restarted aggregator can bind while old connections
    // are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

type BoxedServer =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ServeError>> + Send>>;

/// Server errors.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server")]
    Http(#[from] std::io::Error),
    #[error("gRPC reflection")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves gRPC on `grpc` and HTTP on `http` until `shutdown` is cancelled, then stops
/// both (streams are closed by the ingest service, connections drained). Plaintext and
/// without tokens ([`ServeOptions::insecure`]): for loopback only.
///
/// # Errors
/// A server failed.
pub async fn serve(
    state: Arc<State>,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    serve_with(state, grpc, http, shutdown, ServeOptions::insecure()).await
}

/// [`serve`] with TLS, tokens and limits.
///
/// # Errors
/// A server failed.
pub async fn serve_with(
    state: Arc<State>,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
    options: ServeOptions,
) -> Result<(), ServeError> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<IngestServer>().await;
    health_reporter
        .set_serving::<QueryServer<QueryService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let identity = match &options.tls {
        Some(t) => IdentityPolicy::Certificate {
            allow_shared: t.files().allow_shared_agent_cert,
        },
        None => IdentityPolicy::Any,
    };
    let grpc_cap = Arc::new(ConnectionCap::new(
        options.ingest.max_connections,
        options.ingest.max_connections_per_source,
        options.ingest.max_connection_idle,
        state
            .metrics
            .ingest_connections_refused_per_source_total
            .clone(),
    ));
    let ingest_service = IngestService::new(Arc::clone(&state), shutdown.clone(), options.ingest)
        .with_identity(identity)
        .with_reports_per_minute(options.reports_per_minute)
        .with_cap(Arc::clone(&grpc_cap));
    let ingest = IngestServer::new(ingest_service.clone(), options.ingest.max_message_bytes);
    let query = QueryServer::new(QueryService::new(Arc::clone(&state)));

    let grpc_addr = grpc.local_addr()?;
    let http_addr = http.local_addr()?;
    let (shutdown_grpc, shutdown_http) = (shutdown.clone(), shutdown.clone());
    let http_limits = options.http;
    let routes = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .initial_stream_window_size(Some(options.ingest.stream_window_bytes))
        .initial_connection_window_size(Some(options.ingest.connection_window_bytes))
        .layer(crate::api::connections::RpcLayer(Arc::clone(&grpc_cap)))
        .layer(GrpcAuthLayer(Arc::clone(&options.auth)))
        .add_service(health)
        .add_service(reflection)
        .add_service(ingest)
        .add_service(query);
    let app =
        crate::api::http::router(Arc::clone(&state)).layer(axum::middleware::from_fn_with_state(
            Arc::clone(&options.auth),
            crate::api::auth::http_middleware,
        ));
    let (grpc_server, http_server): (BoxedServer, BoxedServer) = match &options.tls {
        None => (
            Box::pin(async move {
                routes
                    .serve_with_incoming_shutdown(
                        crate::api::connections::plaintext(grpc, grpc_cap),
                        shutdown_grpc.cancelled_owned(),
                    )
                    .await
                    .map_err(ServeError::from)
            }),
            Box::pin(async move {
                crate::api::listen::serve(http, app, http_limits, shutdown_http).await;
                Ok(())
            }),
        ),
        Some(tls) => {
            let grpc_in = crate::api::tls::incoming_capped(
                grpc,
                Arc::clone(tls),
                shutdown.clone(),
                "grpc",
                grpc_cap,
            );
            let http_in =
                crate::api::tls::incoming(http, Arc::clone(tls), shutdown.clone(), "http");
            let grpc_stream = tokio_stream::wrappers::ReceiverStream::new(grpc_in)
                .map(|(s, _)| Ok::<_, std::io::Error>(s));
            (
                Box::pin(async move {
                    routes
                        .serve_with_incoming_shutdown(grpc_stream, shutdown_grpc.cancelled_owned())
                        .await
                        .map_err(ServeError::from)
                }),
                Box::pin(async move {
                    let listener = TlsListener::new(http_in, http_addr);
                    crate::api::listen::serve(listener, app, http_limits, shutdown_http).await;
                    Ok(())
                }),
            )
        }
    };
    let grpc_server = grpc_server.instrument(info_span!("grpc", addr = %grpc_addr));
    let http_server = http_server.instrument(info_span!("http", addr = %http_addr));

    state.set_ready(true);
    info!(grpc = %grpc_addr, http = %http_addr, tls = options.tls.is_some(), "Aggregator serving.");
    // One server failing stops the other.
    let stop_on_error = |failed: bool| {
        if failed {
            shutdown.cancel();
        }
    };
    let (g, h) = tokio::join!(
        async {
            let r = grpc_server.await;
            stop_on_error(r.is_err());
            r
        },
        async {
            let r = http_server.await;
            stop_on_error(r.is_err());
            r
        }
    );
    state.set_ready(false);
    // Every stream has ended (the servers only return once their connections closed, and
    // a stream task ends on `shutdown` anyway): commit what is queued and end the
    // committer, so that when this returns no ingest task holds the state (and the store).
    shutdown.cancel();
    ingest_service.finish().await;
    g?;
    h?;
    info!("Aggregator stopped.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use caretaker_proto::pb::{
        agent_message, aggregator_message, report_ingest_client::ReportIngestClient,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;

    use super::*;
    use crate::api::connections::tests::connect_from;
    use crate::store::Store;

    fn report(node: &str, seq: u64) -> pb::AgentMessage {
        pb::AgentMessage {
            msg: Some(agent_message::Msg::Report(pb::NodeReport::from(
                crate::store::tests::report(node, 1, seq),
            ))),
        }
    }

    /// A server as [`serve_with`] runs it, on loopback ports, for a test.
    struct Served {
        state: Arc<State>,
        grpc: std::net::SocketAddr,
        http: std::net::SocketAddr,
        url: String,
        stop: CancellationToken,
        server: tokio::task::JoinHandle<Result<(), ServeError>>,
    }

    impl Served {
        async fn start(options: ServeOptions) -> Self {
            let state = State::new(Store::in_memory().unwrap(), 3).unwrap();
            let grpc = bind_grpc("127.0.0.1:0".parse().unwrap()).unwrap();
            let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
            let stop = CancellationToken::new();
            let server = tokio::spawn(serve_with(
                Arc::clone(&state),
                grpc,
                http,
                stop.clone(),
                options,
            ));
            Self {
                state,
                grpc: grpc_addr,
                http: http_addr,
                url: format!("http://{grpc_addr}"),
                stop,
                server,
            }
        }

        async fn stop(self) {
            self.stop.cancel();
            self.server.await.unwrap().unwrap();
        }
    }

    /// One slot on the gRPC port, and connections without an RPC closed after 400 ms: what
    /// the tests of clients that would hold it for good start with.
    fn one_slot_closed_when_idle() -> IngestLimits {
        IngestLimits {
            max_connections: 1,
            max_connection_idle: Duration::from_millis(400),
            ..IngestLimits::default()
        }
    }

    /// A gRPC channel to `url`.
    async fn connect(url: &str) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(url.to_string())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Opens a stream as `node` on `url`, sends `seq` and returns the stream once its ack came.
    async fn acked_stream(
        url: &str,
        node: &str,
        seq: u64,
    ) -> Result<
        (
            mpsc::Sender<pb::AgentMessage>,
            tonic::Streaming<pb::AggregatorMessage>,
        ),
        String,
    > {
        let mut client = ReportIngestClient::connect(url.to_string())
            .await
            .map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel(4);
        tx.send(report(node, seq))
            .await
            .map_err(|e| e.to_string())?;
        let mut acks = client
            .stream(ReceiverStream::new(rx))
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        expect_ack(&mut acks, seq).await?;
        Ok((tx, acks))
    }

    async fn expect_ack(
        acks: &mut tonic::Streaming<pb::AggregatorMessage>,
        seq: u64,
    ) -> Result<(), String> {
        match acks.message().await {
            Ok(Some(pb::AggregatorMessage {
                msg: Some(aggregator_message::Msg::Ack(a)),
            })) if a.seq == seq && !a.duplicate && a.rejected.is_empty() => Ok(()),
            other => Err(format!("expected the ack of {seq}, got {other:?}")),
        }
    }

    /// The first bytes the server sends on `s` within `wait` (empty: nothing yet).
    async fn first_bytes(s: &mut TcpStream, wait: Duration) -> Vec<u8> {
        let mut buf = vec![0; 64];
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(n)) => buf[..n].to_vec(),
            _ => Vec::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_beyond_the_grpc_cap_wait_their_turn_and_old_streams_make_way() {
        let options = ServeOptions {
            ingest: IngestLimits {
                max_connections: 3,
                max_connection_age_at_cap: Duration::from_millis(100),
                retry_pushback_at_cap: Duration::from_secs(1),
                ..IngestLimits::default()
            },
            ..ServeOptions::insecure()
        };
        let served = Served::start(options).await;
        let state = Arc::clone(&served.state);
        let url = served.url.clone();
        let grpc_addr = served.grpc;
        let http_addr = served.http;

        // An agent's stream, then two connections that send nothing: the cap of three is
        // full. An accepted connection hears the server's HTTP/2 settings at once.
        let (tx, mut acks) = acked_stream(&url, "a", 1).await.unwrap();
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut c = TcpStream::connect(grpc_addr).await.unwrap();
            assert!(
                !first_bytes(&mut c, Duration::from_secs(10))
                    .await
                    .is_empty()
            );
            held.push(c);
        }
        // One more is not refused: it waits in the accept queue, the server silent.
        let mut waiting = TcpStream::connect(grpc_addr).await.unwrap();
        assert_eq!(
            first_bytes(&mut waiting, Duration::from_millis(300)).await,
            Vec::<u8>::new()
        );

        // While it waits, the agent's stream (older than the age at the cap) takes its next
        // report, acks it, and ends with status OK ...
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(report("a", 2)).await.unwrap();
        expect_ack(&mut acks, 2).await.unwrap();
        assert!(
            matches!(acks.message().await, Ok(None)),
            "the stream ended with OK"
        );
        // ... telling the agent to wait half to one and a half times the pushback.
        let trailers = acks.trailers().await.unwrap().expect("trailers");
        let pushback: u64 = trailers
            .get(pb::RETRY_PUSHBACK_TRAILER)
            .expect("a pushback")
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((500..=1500).contains(&pushback), "{pushback}");
        assert_eq!(state.metrics.ingest_streams_made_way_total.get(), 1);
        assert_eq!(
            state
                .node("a", jiff::Timestamp::now())
                .map(|n| n.reports_stored_total),
            Some(2)
        );
        // The HTTP port keeps answering.
        let mut h = TcpStream::connect(http_addr).await.unwrap();
        h.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        h.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        // A closed connection gives its slot to the one waiting.
        drop(held.pop());
        assert!(
            !first_bytes(&mut waiting, Duration::from_secs(10))
                .await
                .is_empty(),
            "the waiting connection was accepted"
        );
        // Then another agent gets in once the first one has hung up.
        drop((tx, acks, waiting));
        let mut second = None;
        for _ in 0..200 {
            if let Ok(s) = acked_stream(&url, "b", 1).await {
                second = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(second.is_some(), "a slot came free");
        assert_eq!(
            state
                .node("b", jiff::Timestamp::now())
                .map(|n| n.reports_stored_total),
            Some(1)
        );

        drop((held, second));
        served.stop().await;
    }

    /// Health checks need no certificate or token: a client that keeps checking does not
    /// keep its connection (and its slot under the cap) past max_connection_idle, or
    /// anybody could hold every slot for good with a check a minute.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_checks_do_not_hold_a_slot_past_max_connection_idle() {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let options = ServeOptions {
            ingest: one_slot_closed_when_idle(),
            ..ServeOptions::insecure()
        };
        let served = Served::start(options).await;
        let url = served.url.clone();

        let channel = connect(&url).await;
        let mut health = HealthClient::new(channel);
        let check = HealthCheckRequest {
            service: String::new(),
        };
        health.check(check.clone()).await.unwrap();
        let checker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = health.check(check.clone()).await;
            }
        });
        // The only slot comes free while the checks go on: an agent gets in.
        let agent = tokio::time::timeout(Duration::from_secs(10), acked_stream(&url, "a", 1))
            .await
            .expect("the checking client's slot came free")
            .unwrap();

        checker.abort();
        let _ = checker.await;
        drop(agent);
        served.stop().await;
    }

    /// A refused RPC (here a query without a token) does not keep its connection (and its
    /// slot under the cap) past max_connection_idle either, or anybody could hold every
    /// slot for good with a refused call a minute.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refused_rpcs_do_not_hold_a_slot_past_max_connection_idle() {
        use caretaker_proto::pb::query_client::QueryClient;
        let options = ServeOptions {
            ingest: one_slot_closed_when_idle(),
            auth: Arc::new(Auth::with_tokens(
                [(
                    "ro".to_string(),
                    crate::api::auth::Scope::Read,
                    "secret".to_string(),
                )],
                false,
            )),
            ..ServeOptions::insecure()
        };
        let served = Served::start(options).await;
        let url = served.url.clone();

        let channel = connect(&url).await;
        let mut query = QueryClient::new(channel);
        let refused = query.list_nodes(pb::ListNodesRequest::default()).await;
        assert_eq!(refused.unwrap_err().code(), tonic::Code::Unauthenticated);
        let caller = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = query.list_nodes(pb::ListNodesRequest::default()).await;
            }
        });
        // The only slot comes free while the refused calls go on: an agent gets in.
        let agent = tokio::time::timeout(Duration::from_secs(10), acked_stream(&url, "a", 1))
            .await
            .expect("the refused client's slot came free")
            .unwrap();

        caller.abort();
        let _ = caller.await;
        drop(agent);
        served.stop().await;
    }

    /// A client that takes no acks (a stream window of 0) cannot hold its connection, and
    /// its slot under the cap, for good: its stream ends after max_connection_idle without
    /// a report, and then its connection is closed as idle.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_takes_no_acks_does_not_hold_a_slot_for_good() {
        let options = ServeOptions {
            ingest: one_slot_closed_when_idle(),
            reports_per_minute: 1_000_000,
            ..ServeOptions::insecure()
        };
        let served = Served::start(options).await;
        let state = Arc::clone(&served.state);
        let url = served.url.clone();

        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .initial_stream_window_size(0)
            .connect()
            .await
            .unwrap();
        let mut client = ReportIngestClient::new(channel);
        // More reports than the stream's queue of acks, and the encoder's buffer, hold.
        let (tx, rx) = mpsc::channel(64);
        let n = 4000;
        tokio::spawn({
            let tx = tx.clone();
            async move {
                for seq in 1..=n {
                    if tx.send(report("stuck", seq)).await.is_err() {
                        break;
                    }
                }
            }
        });
        let acks = client
            .stream(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        // Stored, but its ack cannot be sent.
        for _ in 0..100 {
            if state.node("stuck", jiff::Timestamp::now()).is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(state.node("stuck", jiff::Timestamp::now()).is_some());
        // The only slot comes free: an agent gets in.
        let agent = tokio::time::timeout(Duration::from_secs(10), acked_stream(&url, "a", 1))
            .await
            .expect("the stuck client's slot came free")
            .unwrap();

        drop((agent, tx, acks, client));
        served.stop().await;
    }

    /// A health `Watch` needs no certificate or token and is silent while the status holds:
    /// it does not keep its connection (and its slot under the cap) past
    /// max_connection_idle, or anybody could hold every slot for good.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_health_watch_does_not_hold_a_slot_past_max_connection_idle() {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let options = ServeOptions {
            ingest: one_slot_closed_when_idle(),
            ..ServeOptions::insecure()
        };
        let served = Served::start(options).await;
        let url = served.url.clone();

        let channel = connect(&url).await;
        let mut health = HealthClient::new(channel);
        let mut watch = health
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(matches!(watch.message().await, Ok(Some(_))));
        let ended = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("the watch's connection was closed");
        assert!(!matches!(ended, Ok(Some(_))), "{ended:?}");
        // The only slot is free again: an agent gets in.
        drop((watch, health));
        let agent = acked_stream(&url, "a", 1).await.unwrap();

        drop(agent);
        served.stop().await;
    }

    /// One client cannot hold the gRPC port's slots: its connections beyond
    /// `max_connections_per_source` are closed at once, without a byte, while another
    /// source address is served, and a slot of the source that comes free is its own again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_beyond_max_connections_per_source_are_closed_at_once() {
        let options = ServeOptions {
            ingest: IngestLimits {
                max_connections_per_source: 2,
                ..IngestLimits::default()
            },
            ..ServeOptions::insecure()
        };
        let served = Served::start(options).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut c = connect_from("127.0.0.1", served.grpc).await;
            assert!(
                !first_bytes(&mut c, Duration::from_secs(10))
                    .await
                    .is_empty()
            );
            held.push(c);
        }
        let mut third = connect_from("127.0.0.1", served.grpc).await;
        let mut got = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), third.read_to_end(&mut got))
            .await
            .expect("closed at once");
        assert!(
            got.is_empty(),
            "closed without the server's settings: {closed:?} {got:?}"
        );
        assert_eq!(
            served
                .state
                .metrics
                .ingest_connections_refused_per_source_total
                .get(),
            1
        );
        let mut other = connect_from("127.0.0.2", served.grpc).await;
        assert!(
            !first_bytes(&mut other, Duration::from_secs(10))
                .await
                .is_empty()
        );
        drop(held.pop());
        // The server sees the close a moment later.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut again = connect_from("127.0.0.1", served.grpc).await;
            if !first_bytes(&mut again, Duration::from_secs(2))
                .await
                .is_empty()
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the slot never came free"
            );
        }
        drop((held, other));
        served.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_grpc_connections_and_streams_are_closed_after_max_connection_idle() {
        let idle = Duration::from_millis(400);
        let options = ServeOptions {
            ingest: IngestLimits {
                max_connection_idle: idle,
                ..IngestLimits::default()
            },
            ..ServeOptions::insecure()
        };
        let served = Served::start(options).await;
        let state = Arc::clone(&served.state);
        let url = served.url.clone();
        let grpc_addr = served.grpc;

        // A connection that never starts an RPC: the server's settings, then the close.
        let mut silent = TcpStream::connect(grpc_addr).await.unwrap();
        assert!(
            !first_bytes(&mut silent, Duration::from_secs(10))
                .await
                .is_empty()
        );
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut rest))
            .await
            .expect("closed within max_connection_idle and some");
        assert!(closed.is_ok(), "{closed:?}");

        // A stream that keeps reporting keeps its connection past max_connection_idle ...
        let (tx, mut acks) = acked_stream(&url, "a", 1).await.unwrap();
        for seq in 2..=6 {
            tokio::time::sleep(idle / 4).await;
            tx.send(report("a", seq)).await.unwrap();
            expect_ack(&mut acks, seq).await.unwrap();
        }
        // ... and one that falls silent ends with status OK.
        assert!(matches!(acks.message().await, Ok(None)));
        assert_eq!(
            state
                .node("a", jiff::Timestamp::now())
                .map(|n| n.reports_stored_total),
            Some(6)
        );

        drop((tx, acks));
        served.stop().await;
    }
}
