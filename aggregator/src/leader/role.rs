//! [`PodLabeler`]: this replica's pod carries the label `caretaker.io/role` = `standby` or
//! `leader`, and the aggregator's Service selects `caretaker.io/role: leader`, so ingest
//! and query traffic reach the leader only while both replicas are Ready (the pattern
//! Patroni uses for PostgreSQL).
//!
//! The label is written with a JSON merge patch of `metadata.labels` on
//! `/api/v1/namespaces/NS/pods/NAME` (the `patch` verb on pods in the aggregator's own
//! namespace; pod names are generated, so RBAC `resourceNames` cannot narrow it). A merge
//! patch touches only this one key: other labels and the rest of the pod are left alone.
//!
//! Every request has its own timeout and failed ones are retried with an exponential
//! backoff (backon, the agent's backoff crate) a bounded number of times
//! ([`LabelRetry`]); the caller decides what giving up means ([`super::replica`]).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use caretaker_core::error::Chain;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The label the Service selects on.
pub(crate) const ROLE_LABEL: &str = "caretaker.io/role";

/// `fieldManager` of the label patches (shown in the pod's `managedFields`).
pub(crate) const FIELD_MANAGER: &str = "caretaker-aggregator";

/// A replica's role, as its pod label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Up and contending for the Lease; not selected by the Service.
    Standby,
    /// Holds the Lease and its servers listen; the Service's only endpoint.
    Leader,
}

impl Role {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standby => "standby",
            Self::Leader => "leader",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Labeling errors.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("cannot label pod {pod} {ROLE_LABEL}={role} (does the Role grant patch on pods?)")]
    Api {
        pod: String,
        role: Role,
        #[source]
        source: kube::Error,
    },
    #[error(
        "cannot label pod {pod} {ROLE_LABEL}={role}: no answer from the API server within {timeout:?}"
    )]
    Timeout {
        pod: String,
        role: Role,
        timeout: Duration,
    },
    /// `last` is printed with its causes (it is not a `#[source]`).
    #[error(
        "gave up labeling pod {pod} {ROLE_LABEL}={role} after {attempts} attempts; last: {}",
        Chain(&**last)
    )]
    GaveUp {
        pod: String,
        role: Role,
        attempts: usize,
        last: Box<LabelError>,
    },
}

/// Why this pod's labels could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error(transparent)]
    Api(kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// How often and how patiently a label is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LabelRetry {
    /// Requests in all, the first included.
    pub(crate) attempts: usize,
    /// Timeout of one request.
    pub timeout: Duration,
    /// First wait between requests; doubled each time (with jitter) up to `max_delay`.
    pub(crate) min_delay: Duration,
    pub(crate) max_delay: Duration,
}

impl LabelRetry {
    /// At start and on becoming leader: 6 requests over about 5 s of waits, each up to 5 s.
    /// That is long enough to ride out an API server restart blip, short enough that a
    /// leader which cannot be labeled (and so gets no traffic) gives the Lease up well
    /// within a minute.
    pub(crate) const PERSISTENT: Self = Self {
        attempts: 6,
        timeout: Duration::from_secs(5),
        min_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(2),
    };

    /// On the way out (SIGTERM, lost Lease): 2 requests of up to 1 s, so the pod's 10 s
    /// termination grace period still has room to drain and release the Lease. A
    /// terminating pod leaves the Service's endpoints anyway; this label is the second line.
    pub(crate) const STEP_DOWN: Self = Self {
        attempts: 2,
        timeout: Duration::from_secs(1),
        min_delay: Duration::from_millis(200),
        max_delay: Duration::from_millis(200),
    };

    fn delays(self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.attempts.saturating_sub(1))
            .build()
    }
}

/// Writes this replica's role onto its own pod.
#[derive(Debug, Clone)]
pub(crate) struct PodLabeler {
    api: Api<Pod>,
    namespace: String,
    name: String,
}

impl PodLabeler {
    /// The labeler of pod `namespace/name` (from `POD_NAMESPACE` and `POD_NAME`).
    pub(crate) fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// `namespace/name`, for messages.
    pub(crate) fn pod(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The pod's current role label, if any (read once at start, to report a stale
    /// `leader` left by an earlier run of this pod).
    ///
    /// # Errors
    /// The API server refused or failed the request, or did not answer within `timeout`.
    pub(crate) async fn current(&self, timeout: Duration) -> Result<Option<String>, ReadError> {
        match tokio::time::timeout(timeout, self.api.get(&self.name)).await {
            Ok(Ok(pod)) => Ok(pod.metadata.labels.and_then(|mut l| l.remove(ROLE_LABEL))),
            Ok(Err(e)) => Err(ReadError::Api(e)),
            Err(_) => Err(ReadError::Timeout(timeout)),
        }
    }

    /// One merge patch setting `caretaker.io/role` to `role`, within `timeout`.
    ///
    /// # Errors
    /// The API server refused or failed it, or did not answer in time.
    pub(crate) async fn set(&self, role: Role, timeout: Duration) -> Result<(), LabelError> {
        let patch = serde_json::json!({ "metadata": { "labels": { ROLE_LABEL: role.as_str() } } });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match tokio::time::timeout(
            timeout,
            self.api.patch(&self.name, &params, &Patch::Merge(&patch)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(LabelError::Api {
                pod: self.pod(),
                role,
                source,
            }),
            Err(_) => Err(LabelError::Timeout {
                pod: self.pod(),
                role,
                timeout,
            }),
        }
    }

    /// [`Self::set`], retried as `retry` says. `Ok(false)`: `stop` fired first.
    ///
    /// # Errors
    /// [`LabelError::GaveUp`] with the last failure, after `retry.attempts` requests.
    pub(crate) async fn set_retrying(
        &self,
        role: Role,
        retry: LabelRetry,
        stop: &CancellationToken,
    ) -> Result<bool, LabelError> {
        let mut delays = retry.delays();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = tokio::select! {
                r = self.set(role, retry.timeout) => r,
                () = stop.cancelled() => return Ok(false),
            };
            let err = match result {
                Ok(()) => {
                    info!(pod = %self.pod(), label = ROLE_LABEL, %role, "Labeled this pod.");
                    return Ok(true);
                }
                Err(e) => e,
            };
            let Some(wait) = delays.next().filter(|_| attempts < retry.attempts) else {
                return Err(LabelError::GaveUp {
                    pod: self.pod(),
                    role,
                    attempts,
                    last: Box::new(err),
                });
            };
            warn!(error = %Chain(&err), attempt = attempts, of = retry.attempts, retry_in = ?wait, "Cannot label this pod; retrying.");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => return Ok(false),
            }
        }
    }
}
