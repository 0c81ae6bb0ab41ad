//! HTTP API: the same data as gRPC `Query`, as JSON, plus health and metrics.
//!
//! | path | answer |
//! |---|---|
//! | `GET /api/v1/report[?at=TIME]` | the merged `ClusterReport`; with `at` (RFC 3339, a date, or `-24h`) the one recorded at or before then, 404 if none |
//! | `POST /api/v1/run` | runs a round now (checks, signals, proposals), records it, answers the new report |
//! | `GET /api/v1/history` | `{"reports": [{"at": …, "stored_bytes": …}]}` oldest first |
//! | `GET /api/v1/trends` | `{"disk": [DiskTrend…] (30 days), "alerts": {name: reports firing} (7 days)}` |
//! | `GET /report` | the report page (HTML, no external assets; see [`crate::report::html`]) |
//! | `GET /api/v1/nodes` | `{"nodes": [NodeStatus…]}` |
//! | `GET /api/v1/nodes/{name}` | one `NodeStatus`, 404 `{"error": …}` if unknown |
//! | `GET /healthz` | 200 `ok` while the process serves |
//! | `GET /readyz` | 200 `ready` once both listeners serve and the store can write, else 503 (a failed store is reopened and retried here) |
//! | `GET /metrics` | Prometheus text format 0.0.4 |

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use caretaker_core::error::Chain;
use jiff::Timestamp;
use serde_json::json;

use crate::state::State;

/// The HTTP routes over `state`.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/api/v1/report", get(report))
        .route("/report", get(report_page))
        .route("/api/v1/history", get(history))
        .route("/api/v1/run", axum::routing::post(run_now))
        .route("/api/v1/trends", get(trends))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/nodes/{name}", get(node))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

#[derive(Debug, serde::Deserialize)]
struct ReportQuery {
    at: Option<String>,
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

/// A history read's error as a 500 answer.
fn store_error(e: &crate::store::Error) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, Chain(e))
}

async fn report(AxState(state): AxState<Arc<State>>, Query(q): Query<ReportQuery>) -> Response {
    let now = Timestamp::now();
    let Some(at) = q.at else {
        // The node reports go out as the pieces kept since they were stored, uncopied.
        let parts = state.cluster_report_json_parts(now);
        let length = parts.iter().map(bytes::Bytes::len).sum::<usize>();
        let body = axum::body::Body::from_stream(futures_util::stream::iter(
            parts.into_iter().map(Ok::<_, std::convert::Infallible>),
        ));
        return (
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    "application/json".to_string(),
                ),
                (axum::http::header::CONTENT_LENGTH, length.to_string()),
            ],
            body,
        )
            .into_response();
    };
    let at = match crate::report::parse_time(&at, now) {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("at: {}", caretaker_core::error::Chain(&e)),
            );
        }
    };
    match state.store().history_at(at).await {
        Ok(Some(r)) => Json(r).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no report recorded at or before {at}"),
        ),
        Err(e) => store_error(&e),
    }
}

async fn run_now(AxState(state): AxState<Arc<State>>) -> Response {
    match state.run_round_now().await {
        Ok(()) => Json(state.cluster_report(Timestamp::now())).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, Chain(&e)),
    }
}

async fn history(AxState(state): AxState<Arc<State>>) -> Response {
    match state.store().history_list().await {
        Ok(list) => {
            let reports: Vec<_> = list
                .into_iter()
                .map(|(at, bytes)| json!({ "at": at, "stored_bytes": bytes }))
                .collect();
            Json(json!({ "reports": reports })).into_response()
        }
        Err(e) => store_error(&e),
    }
}

async fn trends(AxState(state): AxState<Arc<State>>) -> Response {
    let now = Timestamp::now();
    let disk = match state.store().disk_trends(now, 30).await {
        Ok(d) => d,
        Err(e) => return store_error(&e),
    };
    match state.store().alert_counts(now, 7).await {
        Ok(alerts) => Json(json!({ "disk": disk, "alerts": alerts })).into_response(),
        Err(e) => store_error(&e),
    }
}

async fn report_page(AxState(state): AxState<Arc<State>>) -> Html<String> {
    Html(crate::report::html::html(
        &state.cluster_report(Timestamp::now()),
    ))
}

async fn nodes(AxState(state): AxState<Arc<State>>) -> Response {
    Json(json!({ "nodes": state.nodes(Timestamp::now()) })).into_response()
}

async fn node(AxState(state): AxState<Arc<State>>, Path(name): Path<String>) -> Response {
    match state.node(&name, Timestamp::now()) {
        Some(n) => Json(n).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no report from node {name:?}") })),
        )
            .into_response(),
    }
}

async fn readyz(AxState(state): AxState<Arc<State>>) -> Response {
    // After a failed write this is where the store is reopened and retried, so writes
    // resume by themselves once the probes come (the kubelet asks every few seconds).
    state.check_store().await;
    if state.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn metrics(AxState(state): AxState<Arc<State>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics_text(Timestamp::now()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::store::Store;
    use crate::store::tests::report;

    async fn get_body(app: &Router, uri: &str) -> (StatusCode, String) {
        let resp = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// While a group commit waits for the store (here for redb's write lock, held by the
    /// test; in production a slow fsync), the queries of a current-thread runtime still
    /// answer: the commit waits on the store's facade, not on the runtime's only thread.
    #[test]
    fn queries_answer_while_a_commit_waits_for_the_store() {
        let state = State::new(Store::in_memory().unwrap(), 3).unwrap();
        state
            .ingest(&report("node-1", 1, 1), Timestamp::now())
            .unwrap();
        let writer = state.store().blocking().database().begin_write().unwrap();
        let (answered_tx, answered) = std::sync::mpsc::channel();
        let st = Arc::clone(&state);
        let runtime = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = router(Arc::clone(&st));
                let (started, ingest_started) = tokio::sync::oneshot::channel();
                let ingest = tokio::spawn({
                    let st = Arc::clone(&st);
                    async move {
                        started.send(()).unwrap();
                        st.ingest_batch(vec![report("node-1", 1, 2)], Timestamp::now())
                            .await
                    }
                });
                // The queries run only once the commit task let go of the thread: a commit
                // made inline would hold it, waiting for the writer.
                ingest_started.await.unwrap();
                let nodes = get_body(&app, "/api/v1/nodes/node-1").await;
                let report = get_body(&app, "/api/v1/report").await;
                answered_tx.send((nodes, report)).unwrap();
                ingest.await.unwrap()
            })
        });
        // Not a timing assertion: a guard so that a regression fails instead of hanging.
        let answered = answered.recv_timeout(std::time::Duration::from_secs(60));
        drop(writer);
        let ((nodes_status, nodes), (report_status, report)) =
            answered.expect("the queries answered while the commit waited");
        assert_eq!(nodes_status, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&nodes).unwrap()["report"]["seq"],
            1,
            "the waiting report is not served before its commit"
        );
        assert_eq!(report_status, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&report).unwrap()["nodes"][0]["report"]["seq"],
            1
        );
        assert_eq!(
            runtime.join().unwrap().unwrap(),
            vec![crate::store::Outcome::Stored]
        );
        assert_eq!(
            state
                .node("node-1", Timestamp::now())
                .unwrap()
                .report
                .unwrap()
                .seq,
            2
        );
    }

    #[tokio::test]
    async fn routes_answer_json_health_and_metrics() {
        let state = State::new(Store::in_memory().unwrap(), 3).unwrap();
        state
            .ingest(&report("node-1", 1, 1), Timestamp::now())
            .unwrap();
        let app = router(Arc::clone(&state));

        let (s, body) = get_body(&app, "/api/v1/report").await;
        assert_eq!(s, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["schema_version"], crate::report::SCHEMA_VERSION);
        assert_eq!(v["nodes"][0]["node_name"], "node-1");
        assert_eq!(v["nodes"][0]["freshness"], "fresh");

        let (s, body) = get_body(&app, "/api/v1/nodes/node-1").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["report"]["seq"],
            1
        );
        let (s, body) = get_body(&app, "/api/v1/nodes/nope").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(body, r#"{"error":"no report from node \"nope\""}"#);
        let (_, body) = get_body(&app, "/api/v1/nodes").await;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["nodes"]
                .as_array()
                .unwrap()
                .len(),
            1
        );

        // History: nothing recorded yet, then one report.
        assert_eq!(
            get_body(&app, "/api/v1/report?at=-1h").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get_body(&app, "/api/v1/report?at=yesterday").await.0,
            StatusCode::BAD_REQUEST
        );
        // A time the client sends beyond the supported range: 400, not a panic.
        assert_eq!(
            get_body(&app, "/api/v1/report?at=-99999999999h").await,
            (
                StatusCode::BAD_REQUEST,
                r#"{"error":"at: \"-99999999999h\" reaches before the earliest time supported"}"#
                    .into()
            )
        );
        let t = Timestamp::now();
        state
            .finish_round(
                crate::report::CheckRound::default(),
                t,
                std::time::Duration::from_secs(3600),
                false,
            )
            .await
            .unwrap();
        let (s, body) = get_body(&app, "/api/v1/history").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["reports"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let (s, body) = get_body(
            &app,
            &format!(
                "/api/v1/report?at={}",
                t + std::time::Duration::from_secs(1)
            ),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["nodes"][0]["node_name"],
            "node-1"
        );
        let (s, body) = get_body(&app, "/api/v1/trends").await;
        assert_eq!(s, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["disk"].as_array().unwrap().len(),
            0,
            "the test report has no filesystems"
        );
        assert_eq!(v["alerts"], serde_json::json!({}));

        assert_eq!(
            get_body(&app, "/healthz").await,
            (StatusCode::OK, "ok".into())
        );
        assert_eq!(
            get_body(&app, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.set_ready(true);
        assert_eq!(
            get_body(&app, "/readyz").await,
            (StatusCode::OK, "ready".into())
        );
        let (_, m) = get_body(&app, "/metrics").await;
        assert!(m.contains("caretaker_nodes{freshness=\"fresh\"} 1"), "{m}");
        assert!(
            m.contains("# TYPE caretaker_store_write_duration_seconds histogram"),
            "{m}"
        );
    }

    #[tokio::test]
    async fn report_page_is_html_with_the_nodes() {
        let state = State::new(Store::in_memory().unwrap(), 3).unwrap();
        state
            .ingest(&report("node-1", 1, 1), Timestamp::now())
            .unwrap();
        let app = router(state);
        let resp = app
            .clone()
            .oneshot(Request::get("/report").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let body =
            String::from_utf8(to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
        assert!(body.starts_with("<!DOCTYPE html>"), "{body}");
        assert!(
            body.contains(r#"<tr id="node-node-1" data-freshness="fresh">"#),
            "{body}"
        );
        assert!(body.contains(r#"<span class="value">ok</span>"#), "{body}");
    }
}
