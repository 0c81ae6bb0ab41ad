//! The daemon's HTTP endpoint (`listen_http`, default `0.0.0.0:9810`) for kubelet probes
//! and Prometheus.
//!
//! | path | answer |
//! |---|---|
//! | `GET /healthz` | 200 `ok` while the process runs (liveness) |
//! | `GET /readyz` | 200 `ready` once the first report was collected, else 503 (readiness) |
//! | `GET /metrics` | Prometheus text format 0.0.4 |
//!
//! Metrics are read at scrape time from the figures the daemon keeps anyway (the report
//! buffer's counters, the image task's latest summary), so nothing is counted twice and
//! nothing grows: names carry their unit and counters end in `_total`; the only label is
//! `runtime` (`docker`, `containerd`).
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `caretaker_agent_reports_collected_total` | counter | reports collected |
//! | `caretaker_agent_reports_acked_total` | counter | reports the aggregator acked as stored |
//! | `caretaker_agent_reports_buffered` | gauge | reports waiting for an ack |
//! | `caretaker_agent_reports_dropped_total` | counter | unacked reports dropped from the full buffer |
//! | `caretaker_agent_collection_cpu_seconds` | gauge | CPU time of the last collection cycle |
//! | `caretaker_agent_collection_wall_seconds` | gauge | wall time of the last collection cycle |
//! | `caretaker_agent_images_dry_run` | gauge | 1 while the image task only reports (`images.apply: false`) |
//! | `caretaker_agent_images{runtime}` | gauge | images the runtime lists |
//! | `caretaker_agent_images_unused{runtime}` | gauge | images no container or sandbox uses |
//! | `caretaker_agent_images_reclaimable_bytes{runtime}` | gauge | bytes of the unused images |
//! | `caretaker_agent_image_fs_used_percent{runtime}` | gauge | image filesystem usage, kubelet's way |
//! | `caretaker_agent_images_removed_total{runtime}` | counter | images really removed |
//! | `caretaker_agent_images_reclaimed_bytes_total{runtime}` | counter | bytes those removals freed |
//! | `caretaker_agent_image_check_errors` | gauge | errors of the last image check |
//! | `caretaker_agent_logs_rotated_total` | counter | logs rotated since the agent started |
//! | `caretaker_agent_logs_rotated_bytes_total` | counter | their sizes |
//! | `caretaker_agent_logs_compressed_total` | counter | archives compressed |
//! | `caretaker_agent_logs_compressed_input_bytes_total` | counter | their sizes before compression |
//! | `caretaker_agent_logs_compressed_output_bytes_total` | counter | their sizes after compression |
//! | `caretaker_agent_logs_deleted_total` | counter | archives and swept files deleted |
//! | `caretaker_agent_logs_deleted_bytes_total` | counter | their sizes |
//! | `caretaker_agent_logs_errors_total` | counter | failures of rotations, compressions, deletions |
//! | `caretaker_agent_logs_reclaimable_bytes` | gauge | bytes retention would free now |
//! | `caretaker_agent_logs_config_errors` | gauge | policy problems of the loaded config |

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use caretaker_core::listen::HttpLimits;
use caretaker_core::model::{ImagesSummary, LogsSummary};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::collector::BufferStats;

/// What the endpoint reads: the daemon's shared figures.
#[derive(Debug, Clone)]
pub(crate) struct Telemetry {
    pub stats: Arc<BufferStats>,
    /// The image task's latest summary (`None` before its first check or without the task).
    pub images: watch::Receiver<Option<ImagesSummary>>,
    /// The log task's latest summary (`None` before its first pass or without the task).
    pub logs: watch::Receiver<Option<LogsSummary>>,
}

impl Telemetry {
    /// Ready once the first report was collected.
    pub(crate) fn is_ready(&self) -> bool {
        self.stats.collected_total.load(Ordering::Relaxed) > 0
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub(crate) fn encode(&self) -> String {
        let mut registry = Registry::with_prefix("caretaker_agent");
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }
}

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, unit, c.metric_type())?)
}

fn gauge<N>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: N,
) -> Result<(), std::fmt::Error>
where
    ConstGauge<N>: EncodeMetric,
{
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, unit, g.metric_type())?)
}

/// Counts as integer gauge values (`12`, not `12.0`).
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One sample per runtime of a family labelled `runtime`.
fn per_runtime<M: EncodeMetric>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    samples: impl Iterator<Item = (String, M)>,
) -> Result<(), std::fmt::Error> {
    let mut family = e.encode_descriptor(name, help, unit, kind)?;
    for (runtime, m) in samples {
        m.encode(family.encode_family(&[("runtime", runtime.as_str())])?)?;
    }
    Ok(())
}

impl Collector for Telemetry {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut e,
            "reports_collected",
            "Node reports collected",
            None,
            load(&s.collected_total),
        )?;
        counter(
            &mut e,
            "reports_acked",
            "Node reports the aggregator acked as stored",
            None,
            load(&s.acked_total),
        )?;
        gauge(
            &mut e,
            "reports_buffered",
            "Node reports waiting for an ack",
            None,
            int(load(&s.buffered)),
        )?;
        counter(
            &mut e,
            "reports_dropped",
            "Unacked node reports dropped because the buffer was full",
            None,
            load(&s.dropped_total),
        )?;
        gauge(
            &mut e,
            "collection_cpu",
            "CPU time of the last collection cycle",
            Some(&Unit::Seconds),
            seconds(load(&s.last_collection_cpu_nanos)),
        )?;
        gauge(
            &mut e,
            "collection_wall",
            "Wall time of the last collection cycle",
            Some(&Unit::Seconds),
            seconds(load(&s.last_collection_wall_nanos)),
        )?;

        let logs = self.logs.borrow().clone();
        if let Some(l) = logs {
            let t = &l.totals;
            let bytes = Some(&Unit::Bytes);
            counter(
                &mut e,
                "logs_rotated",
                "Logs rotated since the agent started",
                None,
                t.rotated,
            )?;
            counter(
                &mut e,
                "logs_rotated",
                "Sizes of the logs rotated",
                bytes,
                t.rotated_bytes,
            )?;
            counter(
                &mut e,
                "logs_compressed",
                "Log archives compressed",
                None,
                t.compressed,
            )?;
            counter(
                &mut e,
                "logs_compressed_input",
                "Sizes of the archives before compression",
                bytes,
                t.compressed_bytes_before,
            )?;
            counter(
                &mut e,
                "logs_compressed_output",
                "Sizes of the archives after compression",
                bytes,
                t.compressed_bytes_after,
            )?;
            counter(
                &mut e,
                "logs_deleted",
                "Log archives and swept files deleted",
                None,
                t.deleted,
            )?;
            counter(
                &mut e,
                "logs_deleted",
                "Sizes of the files deleted",
                bytes,
                t.deleted_bytes,
            )?;
            counter(
                &mut e,
                "logs_errors",
                "Failed rotations, compressions and deletions",
                None,
                t.errors,
            )?;
            gauge(
                &mut e,
                "logs_reclaimable",
                "Bytes the retention rules would free now",
                bytes,
                int(l.reclaimable_bytes),
            )?;
            gauge(
                &mut e,
                "logs_config_errors",
                "Problems of the loaded log policies",
                None,
                int(l.errors.len() as u64),
            )?;
        }

        let images = self.images.borrow().clone();
        let Some(images) = images else { return Ok(()) };
        gauge(
            &mut e,
            "images_dry_run",
            "1 while the image task only reports what it would remove (images.apply is false)",
            None,
            i64::from(images.dry_run),
        )?;
        gauge(
            &mut e,
            "image_check_errors",
            "Errors of the last image check",
            None,
            int(images.errors.len() as u64),
        )?;
        let rts = &images.runtimes;
        let gauges = |f: fn(&caretaker_core::model::RuntimeImages) -> u64| {
            rts.iter()
                .map(move |r| (r.runtime.clone(), ConstGauge::new(int(f(r)))))
        };
        per_runtime(
            &mut e,
            "images",
            "Images the runtime lists",
            None,
            MetricType::Gauge,
            gauges(|r| r.images_total),
        )?;
        per_runtime(
            &mut e,
            "images_unused",
            "Images no container or pod sandbox uses",
            None,
            MetricType::Gauge,
            gauges(|r| r.images_unused),
        )?;
        per_runtime(
            &mut e,
            "images_reclaimable",
            "Bytes of the unused images, without shared layers",
            Some(&Unit::Bytes),
            MetricType::Gauge,
            gauges(|r| r.reclaimable_bytes),
        )?;
        per_runtime(
            &mut e,
            "image_fs_used_percent",
            "Used percent of the image filesystem as the kubelet's image GC computes it",
            None,
            MetricType::Gauge,
            rts.iter().filter_map(|r| {
                Some((r.runtime.clone(), ConstGauge::new(r.image_fs_used_percent?)))
            }),
        )?;
        let counters = |f: fn(&caretaker_core::model::RuntimeImages) -> u64| {
            rts.iter()
                .map(move |r| (r.runtime.clone(), ConstCounter::new(f(r))))
        };
        per_runtime(
            &mut e,
            "images_removed",
            "Images removed by the agent (dry runs never count)",
            None,
            MetricType::Counter,
            counters(|r| r.removed_total),
        )?;
        per_runtime(
            &mut e,
            "images_reclaimed_bytes",
            "Bytes freed by image removals",
            None,
            MetricType::Counter,
            counters(|r| r.removed_bytes_total),
        )?;
        Ok(())
    }
}

/// The routes over `telemetry`.
pub(crate) fn router(telemetry: Telemetry) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(telemetry)
}

async fn readyz(State(t): State<Telemetry>) -> Response {
    if t.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no report collected yet",
        )
            .into_response()
    }
}

async fn metrics(State(t): State<Telemetry>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        t.encode(),
    )
        .into_response()
}

/// Bounds of the endpoint: kubelet and Prometheus need a few connections; without a cap
/// and timeouts, idle connections from anyone who can reach the port exhaust the agent's
/// file descriptors. 64 connections at once (more wait to be accepted), 10 s to send a
/// request head (idle keep-alive connections are closed after it too), 5 s for requests in
/// progress at shutdown.
pub(crate) const LIMITS: HttpLimits = HttpLimits {
    max_connections: 64,
    header_read_timeout: std::time::Duration::from_secs(10),
    shutdown_grace: std::time::Duration::from_secs(5),
};

/// Serves [`router`] on `listener` until `shutdown`, within [`LIMITS`].
///
/// # Errors
/// None today; kept for callers that treat the server as fallible.
pub(crate) async fn serve(
    listener: TcpListener,
    telemetry: Telemetry,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, telemetry, LIMITS, shutdown).await;
    Ok(())
}

/// [`serve`] within `limits` (the listener shared with the aggregator's HTTP API).
pub(crate) async fn serve_with(
    listener: TcpListener,
    telemetry: Telemetry,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    caretaker_core::listen::serve(listener, router(telemetry), limits, shutdown).await;
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use caretaker_core::model::{KeptCounts, PruneRun, PruneTrigger, RuntimeImages};
    use tower::ServiceExt;

    use super::*;

    async fn get_body(app: &Router, uri: &str) -> (StatusCode, String, String) {
        let resp = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap(), ct)
    }

    fn summary() -> ImagesSummary {
        let rt = |name: &str, used: Option<f64>, removed: u64| RuntimeImages {
            runtime: name.into(),
            image_fs_mountpoint: "/var/lib/x".into(),
            image_fs_used_percent: used,
            images_total: 12,
            images_unused: 5,
            reclaimable_bytes: 4096,
            last_prune: Some(PruneRun {
                started_at: jiff::Timestamp::UNIX_EPOCH,
                trigger: PruneTrigger::Schedule,
                dry_run: false,
                removed,
                removed_bytes: 100,
                kept: KeptCounts::default(),
                failed: 0,
                waiting_for_window_until: None,
            }),
            removed_total: removed,
            removed_bytes_total: removed * 1000,
        };
        ImagesSummary {
            dry_run: false,
            checked_at: jiff::Timestamp::UNIX_EPOCH,
            runtimes: vec![rt("docker", Some(87.5), 3), rt("containerd", None, 0)],
            errors: vec![],
        }
    }

    #[tokio::test]
    async fn probes_follow_the_first_report_and_metrics_read_the_shared_figures() {
        let stats = Arc::new(BufferStats::default());
        let (tx, rx) = watch::channel(None);
        let (logs_tx, logs) = watch::channel(None);
        let app = router(Telemetry {
            stats: Arc::clone(&stats),
            images: rx,
            logs,
        });

        assert_eq!(get_body(&app, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get_body(&app, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let (_, m, ct) = get_body(&app, "/metrics").await;
        assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
        assert!(
            m.contains("caretaker_agent_reports_collected_total 0\n"),
            "{m}"
        );
        assert!(
            !m.contains("images") && !m.contains("logs"),
            "no image or log metrics before their tasks report: {m}"
        );

        stats.collected_total.store(7, Ordering::Relaxed);
        stats.acked_total.store(5, Ordering::Relaxed);
        stats.buffered.store(2, Ordering::Relaxed);
        stats.dropped_total.store(1, Ordering::Relaxed);
        stats
            .last_collection_cpu_nanos
            .store(250_000, Ordering::Relaxed);
        tx.send_replace(Some(summary()));
        logs_tx.send_replace(Some(caretaker_core::model::LogsSummary {
            checked_at: jiff::Timestamp::UNIX_EPOCH,
            last_pass: caretaker_core::model::LogCounts::default(),
            totals: caretaker_core::model::LogCounts {
                files_checked: 40,
                rotated: 4,
                rotated_bytes: 4000,
                compressed: 3,
                compressed_bytes_before: 3000,
                compressed_bytes_after: 300,
                deleted: 2,
                deleted_bytes: 250,
                errors: 1,
            },
            owned_elsewhere: vec![],
            owned_elsewhere_total: 0,
            reclaimable_bytes: 777,
            reclaimable_at: None,
            errors: vec![],
        }));
        assert_eq!(
            get_body(&app, "/readyz").await,
            (
                StatusCode::OK,
                "ready".into(),
                "text/plain; charset=utf-8".into()
            )
        );
        let (s, m, _) = get_body(&app, "/metrics").await;
        assert_eq!(s, StatusCode::OK);
        for line in [
            "# TYPE caretaker_agent_reports_collected_total counter",
            "caretaker_agent_reports_collected_total 7",
            "caretaker_agent_reports_acked_total 5",
            "# TYPE caretaker_agent_reports_buffered gauge",
            "caretaker_agent_reports_buffered 2",
            "caretaker_agent_reports_dropped_total 1",
            "caretaker_agent_collection_cpu_seconds 0.00025",
            "caretaker_agent_images_dry_run 0",
            "caretaker_agent_image_check_errors 0",
            "caretaker_agent_images{runtime=\"docker\"} 12",
            "caretaker_agent_images_unused{runtime=\"containerd\"} 5",
            "caretaker_agent_images_reclaimable_bytes{runtime=\"docker\"} 4096",
            "caretaker_agent_image_fs_used_percent{runtime=\"docker\"} 87.5",
            "# TYPE caretaker_agent_images_removed_total counter",
            "caretaker_agent_images_removed_total{runtime=\"docker\"} 3",
            "caretaker_agent_images_removed_total{runtime=\"containerd\"} 0",
            "caretaker_agent_images_reclaimed_bytes_total{runtime=\"docker\"} 3000",
            "# TYPE caretaker_agent_logs_rotated_total counter",
            "caretaker_agent_logs_rotated_total 4",
            "caretaker_agent_logs_rotated_bytes_total 4000",
            "caretaker_agent_logs_compressed_total 3",
            "caretaker_agent_logs_compressed_input_bytes_total 3000",
            "caretaker_agent_logs_compressed_output_bytes_total 300",
            "caretaker_agent_logs_deleted_total 2",
            "caretaker_agent_logs_deleted_bytes_total 250",
            "caretaker_agent_logs_errors_total 1",
            "caretaker_agent_logs_reclaimable_bytes 777",
            "caretaker_agent_logs_config_errors 0",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
        // A runtime whose filesystem could not be measured has no usage sample, not 0.
        assert!(
            !m.contains("caretaker_agent_image_fs_used_percent{runtime=\"containerd\"}"),
            "{m}"
        );
    }
}

#[cfg(test)]
mod listener_tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

    async fn read_to_close(s: &mut tokio::net::TcpStream) -> String {
        caretaker_core::listen::test_util::read_to_close(s, WAIT)
            .await
            .expect("the server closes the connection")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_are_capped_and_closed_and_probes_still_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_images_tx, images) = watch::channel(None);
        let (_logs_tx, logs) = watch::channel(None);
        let telemetry = Telemetry {
            stats: Arc::new(BufferStats::default()),
            images,
            logs,
        };
        let stop = CancellationToken::new();
        let limits = HttpLimits {
            max_connections: 4,
            header_read_timeout: std::time::Duration::from_secs(1),
            ..LIMITS
        };
        let server = tokio::spawn(serve_with(listener, telemetry, limits, stop.clone()));
        let mut held = Vec::new();
        for i in 0..4 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            if i == 3 {
                s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
            }
            held.push(s);
        }
        // A probe beyond the cap is answered once the held connections time out.
        let mut probe = tokio::net::TcpStream::connect(addr).await.unwrap();
        probe
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut probe).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        for s in &mut held {
            let got = read_to_close(s).await;
            assert!(!got.starts_with("HTTP/1.1 200"), "{got:?}");
        }
        stop.cancel();
        tokio::time::timeout(WAIT, server).await.unwrap().unwrap();
    }
}
