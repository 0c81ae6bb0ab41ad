//! Wires the gRPC and HTTP servers over one [`State`]; takes its listeners and a
//! shutdown token as arguments so tests bind `127.0.0.1:0`.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use caretaker_proto::pb::{self, query_server::QueryServer, report_ingest_server::ReportIngestServer};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span};

use crate::ingest::IngestService;
use crate::query::QueryService;
use crate::state::State;

/// Largest message accepted from an agent. A report of a large node is tens of KiB;
/// the bound keeps a broken agent from making the aggregator buffer more.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Server errors.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server: {0}")]
    Http(#[from] std::io::Error),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves gRPC on `grpc` and HTTP on `http` until `shutdown` is cancelled, then stops
/// both (streams are closed by the ingest service, connections drained).
///
/// # Errors
/// A server failed.
pub async fn serve(
    state: Arc<State>,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<ReportIngestServer<IngestService>>().await;
    health_reporter.set_serving::<QueryServer<QueryService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let ingest = ReportIngestServer::new(IngestService::new(Arc::clone(&state), shutdown.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let query = QueryServer::new(QueryService::new(Arc::clone(&state)));

    let grpc_addr = grpc.local_addr()?;
    let http_addr = http.local_addr()?;
    let grpc_server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health)
        .add_service(reflection)
        .add_service(ingest)
        .add_service(query)
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), shutdown.clone().cancelled_owned())
        .instrument(info_span!("grpc", addr = %grpc_addr));
    let app = crate::http::router(Arc::clone(&state));
    let http_server = axum::serve(http, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future()
        .instrument(info_span!("http", addr = %http_addr));

    state.set_ready(true);
    info!(grpc = %grpc_addr, http = %http_addr, "Aggregator serving.");
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
    g?;
    h?;
    info!("Aggregator stopped.");
    Ok(())
}
