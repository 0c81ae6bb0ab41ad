//! What a standby serves on the HTTP port while it waits for the Lease: `/healthz` 200
//! (the process is alive), `/readyz` 200 `standby` (up and contending: the pod is Ready,
//! so the Deployment is available and rollouts finish; the Service still does not route
//! to it, it selects `caretaker.io/role: leader`) and 503 with a JSON error for everything
//! else, in case a client reaches the pod directly. The gRPC port stays closed.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span};

use crate::api::listen::{HttpLimits, serve as serve_limited};
use crate::api::tls::{ReloadingTls, TlsListener};

/// The `/readyz` answer of a standby (the leader answers `ready`): the role at a glance,
/// e.g. `kubectl exec` or a port-forward to one pod.
pub(crate) const STANDBY: &str = "standby";

/// The standby's routes.
pub(crate) fn router() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { STANDBY }))
        .fallback(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "error": "standby: not the leader; the Service routes requests to the leader" })),
            )
        })
}

/// Serves [`router`] on `http` (with TLS when given, as the leader does) until `stop`.
///
/// # Errors
/// The server failed.
pub(crate) async fn serve(
    http: TcpListener,
    tls: Option<Arc<ReloadingTls>>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let addr = http.local_addr()?;
    info!(http = %addr, "Standby serving /healthz and /readyz.");
    let app = router();
    let server = async move {
        match tls {
            None => serve_limited(http, app, HttpLimits::default(), stop).await,
            Some(tls) => {
                let incoming = crate::api::tls::incoming(http, tls, stop.clone(), "http");
                let listener = TlsListener::new(incoming, addr);
                serve_limited(listener, app, HttpLimits::default(), stop).await;
            }
        }
        Ok(())
    };
    server.instrument(info_span!("standby", addr = %addr)).await
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get_body(uri: &str) -> (StatusCode, String) {
        let resp = router()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        (
            status,
            String::from_utf8(to_bytes(resp.into_body(), 1 << 16).await.unwrap().to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_standby_is_alive_and_ready_and_serves_nothing_else() {
        assert_eq!(get_body("/healthz").await, (StatusCode::OK, "ok".into()));
        assert_eq!(
            get_body("/readyz").await,
            (StatusCode::OK, "standby".into())
        );
        for uri in ["/api/v1/report", "/metrics", "/report"] {
            assert_eq!(
                get_body(uri).await,
                (StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"standby: not the leader; the Service routes requests to the leader"}"#.into()),
                "{uri}"
            );
        }
    }

    #[tokio::test]
    async fn serve_stops_on_request() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, None, stop.clone()));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("\r\n\r\nstandby"), "{out}");
        stop.cancel();
        task.await.unwrap().unwrap();
    }
}
