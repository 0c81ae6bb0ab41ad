//! The aggregator as one application: [`App::build`] checks a loaded config and turns it
//! into what the servers need (TLS, tokens, the leader election); [`App::run`] serves until
//! a shutdown token fires (or, with leader election, until leadership is lost).
//!
//! Without leader election `run` opens the store and serves. With it, the replica is a
//! standby (only `/healthz` and `/readyz`, see [`crate::api::standby`]) until it holds the
//! Lease; as the leader it opens the store (retrying while the former leader still holds
//! the file, [`Opening`]), serves, and closes the store before the Lease is released
//! (the order is [`crate::leader::replica`]'s).

use caretaker_core::error::Chain;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use caretaker_core::window::MaintenanceWindow;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, warn};

use crate::api::auth::{Auth, AuthError};
use crate::api::server::{self, ServeError, ServeOptions};
use crate::api::tls::{ReloadingTls, TlsError};
use crate::config::AggregatorConfig;
use crate::leader::config::{Election, Timing};
use crate::leader::replica::{BoxError, Leading, Replica};
use crate::schedule::notify::{Notifier, NotifyError};
use crate::schedule::runs::Schedule;
use crate::state::State;
use crate::store::{self, Store};

/// How long `run` waits for servers to drain after the stop before returning anyway.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(4);

/// A config that cannot run; all of them are usage errors (exit code 64).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The config's values do not fit together (`validate`).
    #[error(transparent)]
    Invalid(crate::config::Error),
    /// The `leader_election:` section cannot be used.
    #[error(transparent)]
    Election(#[from] crate::leader::config::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("bind HTTP on {addr}")]
    BindHttp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("bind gRPC on {addr}")]
    BindGrpc {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP listener")]
    Listener(#[source] std::io::Error),
    #[error("open the store in {}", dir.display())]
    OpenStore {
        dir: PathBuf,
        #[source]
        source: store::Error,
    },
    #[error("load the store")]
    LoadStore(#[source] store::Error),
    #[error("notifications")]
    Notifications(#[source] NotifyError),
    #[error("server")]
    Server(#[source] ServeError),
    #[error("server task")]
    ServerTask(#[source] tokio::task::JoinError),
    #[error("leader election needs the Kubernetes API (in-cluster config or kubeconfig)")]
    Kube(#[source] kube::Error),
    #[error(transparent)]
    Replica(#[from] crate::leader::replica::RunError),
}

/// A checked config, ready to serve.
#[derive(Debug)]
pub struct App {
    cfg: AggregatorConfig,
    election: Option<Election>,
    options: ServeOptions,
}

impl App {
    /// Checks `cfg` and loads what it names (TLS files, token files); `env` resolves the
    /// leader election's environment variables (the pod's name and namespace).
    ///
    /// # Errors
    /// The config is invalid, or a TLS or token file cannot be used.
    pub fn build(
        cfg: AggregatorConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<App, BuildError> {
        cfg.validate().map_err(BuildError::Invalid)?;
        let election = cfg
            .leader_election
            .as_ref()
            .map(|le| le.resolve(env))
            .transpose()?;
        let tls = cfg.tls.clone().map(ReloadingTls::load).transpose()?;
        let auth = Arc::new(Auth::from_config(&cfg.auth)?);
        if cfg.insecure_plaintext {
            warn!("insecure_plaintext: serving without TLS; agents are not authenticated.");
        }
        let options = ServeOptions {
            tls: tls.map(Arc::new),
            auth,
            reports_per_minute: cfg.max_reports_per_minute.get(),
            ingest: cfg.ingest.limits(),
            http: cfg.http.limits(),
        };
        Ok(App {
            cfg,
            election,
            options,
        })
    }

    /// Serves until `shutdown` (or, with leader election, until leadership is lost or this
    /// pod cannot be labeled: an error, so Kubernetes restarts the pod as a standby).
    ///
    /// # Errors
    /// See [`RunError`].
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RunError> {
        let App {
            cfg,
            election,
            options,
        } = self;
        open_files_for(&options);
        let http =
            std::net::TcpListener::bind(cfg.listen.http).map_err(|source| RunError::BindHttp {
                addr: cfg.listen.http,
                source,
            })?;
        http.set_nonblocking(true).map_err(RunError::Listener)?;
        let Some(election) = election else {
            let store = open_store(&cfg)
                .await
                .map_err(|source| RunError::OpenStore {
                    dir: cfg.data_dir.clone(),
                    source,
                })?;
            return serve_store(&cfg, store, http, options, shutdown, || {}).await;
        };

        // With leader election: a standby until this replica holds the Lease (leader::replica
        // labels the pod and orders the steps). The HTTP socket is bound once; the standby
        // serves a clone of it and the leader the socket itself, so the port never closes in
        // between.
        let client = kube::Client::try_default().await.map_err(RunError::Kube)?;
        let replica = Replica::new(client, election);
        let standby = Standby::start(&http, &options)?;
        let lead = {
            let standby = standby.clone();
            move |mut leading: Leading| async move {
                standby.stop().await;
                let Some(store) = open_store_as_leader(&cfg, leading.timing, &leading.stop).await?
                else {
                    return Ok(());
                };
                let stop = leading.stop.clone();
                serve_store(&cfg, store, http, options, stop, move || {
                    leading.listening()
                })
                .await
                .map_err(BoxError::from)
            }
        };
        let result = replica.run(&shutdown, lead).await;
        standby.stop().await;
        result?;
        Ok(())
    }
}

/// File descriptors kept for what is not a connection: the store, listeners, the
/// Kubernetes client, TLS and configuration files, logs.
const OTHER_OPEN_FILES: u64 = 256;

/// Raises the soft limit of open files to the hard limit, as Go's runtime does for every
/// Go program: containerd 2 and Docker 25 start containers with a soft limit of 1,024,
/// below the 2,048 connections of the gRPC port alone, and at the limit every accept, and
/// the store's next file, fails with `EMFILE`. Warns when even the hard limit is below
/// what the connection caps need.
fn open_files_for(options: &ServeOptions) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "Cannot read the limit of open files.");
            return;
        }
    };
    let soft = if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                tracing::info!(
                    from = soft,
                    to = hard,
                    "Raised the limit of open files to its hard limit."
                );
                hard
            }
            Err(e) => {
                warn!(error = %e, soft, hard, "Cannot raise the limit of open files.");
                soft
            }
        }
    } else {
        soft
    };
    let need = u64::try_from(options.ingest.max_connections + options.http.max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(OTHER_OPEN_FILES);
    if soft < need {
        warn!(
            limit = soft,
            need,
            "The limit of open files is below what ingest.max_connections and http.max_connections need; at it, connections and store writes fail with EMFILE. Raise the container's nofile limit or lower ingest.max_connections."
        );
    }
}

/// The standby's HTTP server, stopped once (when this replica leads, or at the end).
#[derive(Debug, Clone)]
struct Standby {
    stop: CancellationToken,
    task: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>>,
}

impl Standby {
    /// Serves the standby's answers on a clone of `http`.
    fn start(http: &std::net::TcpListener, options: &ServeOptions) -> Result<Self, RunError> {
        let stop = CancellationToken::new();
        let listener =
            tokio::net::TcpListener::from_std(http.try_clone().map_err(RunError::Listener)?)
                .map_err(RunError::Listener)?;
        let task = tokio::spawn(crate::api::standby::serve(
            listener,
            options.tls.clone(),
            stop.clone(),
        ));
        Ok(Self {
            stop,
            task: Arc::new(std::sync::Mutex::new(Some(task))),
        })
    }

    /// Stops the standby server and waits (up to 1 s) until it has.
    async fn stop(&self) {
        self.stop.cancel();
        let Some(handle) = self.task.lock().ok().and_then(|mut h| h.take()) else {
            return;
        };
        match tokio::time::timeout(Duration::from_secs(1), handle).await {
            Ok(Ok(Err(e))) => warn!(error = %Chain(&e), "The standby HTTP server failed."),
            Ok(_) => {}
            Err(_) => warn!("The standby HTTP server did not stop within 1s; going on."),
        }
    }
}

/// Opens the store on the blocking pool: opening reads the file (and repairs it after a
/// crash), which must not stall the runtime that serves the standby and renews the Lease.
async fn open_store(cfg: &AggregatorConfig) -> Result<Store, store::Error> {
    let (in_memory, dir) = (cfg.in_memory, cfg.data_dir.clone());
    crate::store::handle::blocking(move || {
        if in_memory {
            Store::in_memory()
        } else {
            Store::open(&dir)
        }
    })
    .await
}

/// The states of opening the store as the new leader.
#[derive(Debug)]
enum Opening {
    /// Try to open it now.
    Attempt,
    /// The former leader still holds the file: wait one `retry_period`.
    Waiting,
}

/// Opens the store as the new leader. A former leader may still be draining with the file
/// open (redb locks it): retry every `retry_period` for up to `lease_duration`. `None`:
/// stopped meanwhile.
async fn open_store_as_leader(
    cfg: &AggregatorConfig,
    timing: Timing,
    stop: &CancellationToken,
) -> Result<Option<Store>, RunError> {
    let give_up = tokio::time::Instant::now() + timing.lease_duration;
    let mut state = Opening::Attempt;
    loop {
        state = match state {
            Opening::Attempt => match open_store(cfg).await {
                Ok(s) => return Ok(Some(s)),
                Err(e @ store::Error::Locked { .. }) if tokio::time::Instant::now() < give_up => {
                    warn!(error = %Chain(&e), "The store is still open in the former leader; retrying.");
                    Opening::Waiting
                }
                Err(source) => {
                    return Err(RunError::OpenStore {
                        dir: cfg.data_dir.clone(),
                        source,
                    });
                }
            },
            Opening::Waiting => tokio::select! {
                () = tokio::time::sleep(timing.retry_period) => Opening::Attempt,
                () = stop.cancelled() => return Ok(None),
            },
        };
    }
}

/// Serves `store` until `stop`: gRPC (bound here) and HTTP, rounds and schedules. Calls
/// `listening` once both listeners are bound and the servers started. Returns after the
/// servers drained (or [`DRAIN_TIMEOUT`]) and the store is closed.
async fn serve_store(
    cfg: &AggregatorConfig,
    store: Store,
    http: std::net::TcpListener,
    options: ServeOptions,
    stop: CancellationToken,
    listening: impl FnOnce(),
) -> Result<(), RunError> {
    let (round_requests, requests) = crate::state::round_requests();
    let state = State::load(
        store,
        crate::state::Options {
            stale_after_intervals: cfg.stale_after_intervals.get(),
            retention: cfg.history.retention(),
            window: Some(MaintenanceWindow::new(
                &cfg.schedule.maintenance_window,
                &cfg.schedule.time_zone,
            )),
            round_requests: Some(round_requests),
            alert_review: cfg.signals.alert_review,
        },
    )
    .await
    .map_err(RunError::LoadStore)?;
    let rounds = crate::round::Rounds::new(cfg.rounds());
    let grpc = server::bind_grpc(cfg.listen.grpc).map_err(|source| RunError::BindGrpc {
        addr: cfg.listen.grpc,
        source,
    })?;
    let http = tokio::net::TcpListener::from_std(http).map_err(RunError::Listener)?;
    // The servers stop on `stop`, or when one of them fails (which cancels this child).
    let servers_stop = stop.child_token();
    let server = tokio::spawn(server::serve_with(
        Arc::clone(&state),
        grpc,
        http,
        servers_stop.clone(),
        options,
    ));
    listening();
    let notifier = match cfg.schedule.notifications.webhook_url {
        Some(_) => {
            Some(Notifier::new(&cfg.schedule.notifications).map_err(RunError::Notifications)?)
        }
        None => None,
    };
    let rounds_task = tokio::spawn(
        crate::round::run_loop(
            Arc::clone(&state),
            rounds,
            cfg.history.record_interval.get(),
            notifier,
            requests,
            servers_stop.clone(),
        )
        .instrument(tracing::info_span!("rounds")),
    );
    let scheduler_task = tokio::spawn(
        crate::round::scheduled::run(
            Arc::clone(&state),
            Schedule::new(&cfg.schedule),
            servers_stop.clone(),
        )
        .instrument(tracing::info_span!("scheduler")),
    );
    servers_stop.cancelled().await;
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let r = server.await;
        let _ = rounds_task.await;
        let _ = scheduler_task.await;
        r
    })
    .await;
    // The servers have drained (or DRAIN_TIMEOUT passed): the store file is closed, and its
    // lock released, here, before the Lease is given up and before `run` returns, even if
    // a connection task still holds the state.
    state.store().close().await;
    drop(state);
    match drained {
        Ok(Ok(r)) => r.map_err(RunError::Server)?,
        Ok(Err(e)) => return Err(RunError::ServerTask(e)),
        Err(_) => warn!("Servers did not drain within {DRAIN_TIMEOUT:?}; exiting anyway."),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use caretaker_proto::pb::{self, agent_message, report_ingest_client::ReportIngestClient};
    use tokio_stream::wrappers::ReceiverStream;

    use super::*;

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap()
    }

    /// Sends one report to the aggregator on `grpc` and waits for its ack.
    async fn report_once(grpc: SocketAddr) {
        let url = format!("http://{grpc}");
        let mut client = loop {
            match ReportIngestClient::connect(url.clone()).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let report = pb::NodeReport::from(crate::store::tests::report("n1", 1, 1));
        tx.send(pb::AgentMessage {
            msg: Some(agent_message::Msg::Report(report)),
        })
        .await
        .unwrap();
        let mut acks = client
            .stream(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let ack = acks.message().await.unwrap().unwrap();
        assert!(
            matches!(ack.msg, Some(pb::aggregator_message::Msg::Ack(a)) if a.seq == 1 && !a.duplicate),
            "acked"
        );
        // The stream stays open (an agent's would) while the aggregator stops.
        std::mem::forget(tx);
        tokio::spawn(async move { while let Ok(Some(_)) = acks.message().await {} });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_store_can_be_opened_as_soon_as_run_returns() {
        let dir = tempfile::tempdir().unwrap();
        let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let cfg = AggregatorConfig {
            listen: crate::config::ListenConfig {
                grpc,
                http: SocketAddr::from(([127, 0, 0, 1], 0)),
            },
            data_dir: dir.path().to_path_buf(),
            insecure_plaintext: true,
            auth: crate::config::AuthConfig {
                allow_anonymous: true,
                ..crate::config::AuthConfig::default()
            },
            ..AggregatorConfig::default()
        };
        let app = App::build(cfg, |_| None).unwrap();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(app.run(shutdown.clone()));
        report_once(grpc).await;
        shutdown.cancel();
        run.await.unwrap().unwrap();
        // At once: no wait for a task that still holds the store.
        let store = Store::open(dir.path()).expect("the store is released when run returns");
        assert_eq!(store.load_all().unwrap()["n1"].report.seq, 1);
    }
}
