//! [`Replica::run`]: one replica's life under leader election, in the order that keeps the
//! Service pointed at exactly the replica that holds the Lease and serves:
//!
//! 1. Label the pod `caretaker.io/role=standby` (this also clears a `leader` left by a
//!    crashed earlier run of the same pod), then contend for the Lease. Labels that
//!    cannot be written even after retries end the process (exit 1): a replica that
//!    cannot label itself could never receive traffic as leader.
//! 2. Holding the Lease: renew it in the background and start the leader's work (store,
//!    servers). Once the work says its servers listen, label the pod `leader`: from then
//!    on the Service routes to it. If that label cannot be written after
//!    [`LabelRetry::PERSISTENT`], the leader would hold the Lease without traffic: it
//!    stops the work and releases the Lease so the other replica takes over, and fails.
//! 3. Stopping (SIGTERM, a lost Lease, or the work ended by itself): label the pod
//!    `standby` first (new connections stop coming), then stop the work (drain, close the
//!    store), then release the Lease unless it was lost. A lost Lease is an error (exit 1,
//!    as controller-runtime does).

use std::future::Future;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use caretaker_core::error::Chain;

use super::config::{Election, Timing};
use super::lease::{Elector, LeaderError};
use super::role::{LabelError, LabelRetry, PodLabeler, ROLE_LABEL, Role};

/// The leader work's own error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a replica stopped other than on request.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("before contending for the Lease")]
    Standby(#[source] LabelError),
    #[error(transparent)]
    Lost(LeaderError),
    /// Printed with its causes first (so not a `#[source]`).
    #[error("{}; released the Lease so that the other replica takes over", Chain(.0))]
    NotLabeled(LabelError),
    #[error("the leader stopped")]
    Work(#[source] BoxError),
}

/// What the leader's work gets.
#[derive(Debug)]
pub struct Leading {
    /// The election's timing.
    pub timing: Timing,
    /// Fires when the work must drain and return: SIGTERM, a lost Lease, or a pod that
    /// cannot be labeled leader. Only this, not the process's shutdown token, must stop the
    /// servers: the pod is labeled standby before it fires.
    pub stop: CancellationToken,
    listening: Option<oneshot::Sender<()>>,
}

impl Leading {
    /// Tells [`Replica::run`] that the servers listen, so the pod may be labeled leader.
    pub fn listening(&mut self) {
        if let Some(tx) = self.listening.take() {
            let _ = tx.send(());
        }
    }
}

/// One replica: its side of the election and its pod's role label.
#[derive(Debug)]
pub struct Replica {
    elector: Elector,
    labeler: PodLabeler,
}

impl Replica {
    /// A replica of `election` talking to the API server through `client`.
    pub fn new(client: kube::Client, election: Election) -> Self {
        let labeler = PodLabeler::new(client.clone(), &election.pod_namespace, &election.pod_name);
        Self {
            elector: Elector::new(client, election),
            labeler,
        }
    }

    /// Runs the steps of the module docs until `shutdown` (`Ok`) or a failure. `work` is
    /// started once this replica holds the Lease; it must call [`Leading::listening`] when
    /// its servers listen and return once [`Leading::stop`] fired and it has drained and
    /// closed the store.
    ///
    /// # Errors
    /// See [`RunError`]; the Lease is released before returning except after
    /// [`RunError::Lost`] (someone else holds it) and [`RunError::Standby`] (never held).
    pub async fn run<F, Fut>(self, shutdown: &CancellationToken, work: F) -> Result<(), RunError>
    where
        F: FnOnce(Leading) -> Fut,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let Self {
            mut elector,
            labeler,
        } = self;
        let retry = LabelRetry::PERSISTENT;
        match labeler.current(retry.timeout).await {
            Ok(Some(role)) if role == Role::Leader.as_str() => {
                warn!(pod = %labeler.pod(), label = ROLE_LABEL, "This pod is still labeled leader by an earlier run; labeling it standby before contending.");
            }
            Ok(_) => {}
            Err(e) => {
                debug!(pod = %labeler.pod(), error = %Chain(&e), "Cannot read this pod's labels; labeling it standby anyway.")
            }
        }
        if !labeler
            .set_retrying(Role::Standby, retry, shutdown)
            .await
            .map_err(RunError::Standby)?
        {
            return Ok(());
        }
        if !elector.acquire(shutdown).await {
            info!("Stopped as a standby.");
            return Ok(());
        }

        let timing = elector.timing();
        let (hold_stop, lost) = (CancellationToken::new(), CancellationToken::new());
        let (stop_renewing, lost_tx) = (hold_stop.clone(), lost.clone());
        let holder = tokio::spawn(
            async move {
                let r = elector.hold(&stop_renewing).await;
                if let Err(e) = &r {
                    error!(error = %Chain(&e), "Lost leadership; stopping so that Kubernetes restarts this replica as a standby.");
                    lost_tx.cancel();
                }
                (elector, r)
            }
            .instrument(info_span!("lease")),
        );
        // Leadership ends on SIGTERM or when the Lease is lost.
        let ending = CancellationToken::new();
        let (a, b, c) = (shutdown.clone(), lost.clone(), ending.clone());
        tokio::spawn(async move {
            tokio::select! { () = a.cancelled() => {}, () = b.cancelled() => {}, () = c.cancelled() => {} }
            c.cancel();
        });

        let stop = CancellationToken::new();
        let (tx, rx) = oneshot::channel();
        let mut task = tokio::spawn(
            work(Leading {
                timing,
                stop: stop.clone(),
                listening: Some(tx),
            })
            .instrument(info_span!("leader")),
        );
        let mut work_result = None;
        let mut failure = None;
        let listening = tokio::select! {
            r = rx => r.is_ok(),
            () = ending.cancelled() => false,
        };
        // From here a leader label may have been written, even if a request timed out.
        if listening {
            match labeler.set_retrying(Role::Leader, retry, &ending).await {
                Ok(true) => {
                    info!(pod = %labeler.pod(), "Leading: the Service routes to this pod.");
                    tokio::select! {
                        r = &mut task => work_result = Some(r),
                        () = ending.cancelled() => {}
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    error!(error = %Chain(&e), "The Service would never route to this leader; stopping and giving the Lease up.");
                    failure = Some(RunError::NotLabeled(e));
                }
            }
            if let Err(e) = labeler
                .set_retrying(
                    Role::Standby,
                    LabelRetry::STEP_DOWN,
                    &CancellationToken::new(),
                )
                .await
            {
                warn!(error = %Chain(&e), "Cannot label this pod standby on the way out; it leaves the Service's endpoints as it terminates anyway.");
            }
        }
        stop.cancel();
        let work_result = match work_result {
            Some(r) => r,
            None => task.await,
        };
        hold_stop.cancel();
        ending.cancel();
        let (mut elector, held) = holder.await.map_err(|e| RunError::Work(Box::new(e)))?;
        if let Err(e) = held {
            return Err(RunError::Lost(e));
        }
        // The work has returned, so the store is closed: the next leader can open it.
        if let Err(e) = elector.release().await {
            warn!(error = %Chain(&e), "Cannot release the leader Lease; the other replica takes over once it expires.");
        }
        if let Some(f) = failure {
            return Err(f);
        }
        match work_result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RunError::Work(e)),
            Err(e) => Err(RunError::Work(Box::new(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against the fake API server of [`crate::leader::fake`]: the exact pod PATCHes, in
    //! order with the Lease requests and the leader work's own steps. Paused time: the
    //! retries' waits pass at once, and nothing here asserts how long anything took.

    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use crate::leader::fake::{
        NAME, NS, PATH, PODS, PodPatch, Shared, client, held_by, shared, timing,
    };

    const POD: &str = "caretaker-aggregator-5d8f7-abcde";

    fn replica(fake: &Shared) -> Replica {
        let election = Election {
            lease_name: NAME.into(),
            namespace: NS.into(),
            identity: POD.into(),
            timing: timing(),
            pod_namespace: NS.into(),
            pod_name: POD.into(),
        };
        Replica::new(client(fake), election)
    }

    /// The PATCH that sets the role label to `role`.
    fn label_patch(role: &str) -> PodPatch {
        PodPatch {
            path: format!("{PODS}/{POD}"),
            content_type: "application/merge-patch+json".into(),
            query: "&fieldManager=caretaker-aggregator".into(),
            body: json!({"metadata": {"labels": {"caretaker.io/role": role}}}),
        }
    }

    /// Leader work that notes its steps in the fake's request log: it listens, then waits
    /// for `stop`; `before_listening` runs first.
    fn work(
        fake: &Shared,
        before_listening: impl FnOnce(&Shared) + Send + 'static,
    ) -> impl FnOnce(Leading) -> futures_util::future::BoxFuture<'static, Result<(), BoxError>>
    {
        let fake = Arc::clone(fake);
        move |mut leading: Leading| {
            Box::pin(async move {
                fake.lock().unwrap().seen.push("work: started".into());
                before_listening(&fake);
                leading.listening();
                leading.stop.cancelled().await;
                fake.lock()
                    .unwrap()
                    .seen
                    .push("work: stopped, store closed".into());
                Ok(())
            })
        }
    }

    async fn until(fake: &Shared, what: impl Fn(&crate::leader::fake::Fake) -> bool) {
        while !what(&fake.lock().unwrap()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn position(seen: &[String], entry: &str) -> usize {
        seen.iter()
            .rposition(|s| s == entry)
            .unwrap_or_else(|| panic!("{entry} in {seen:?}"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_labels_itself_standby_then_leader_then_standby_before_releasing_the_lease() {
        let fake = shared(None);
        // A crashed earlier run of this pod left it labeled leader.
        fake.lock()
            .unwrap()
            .add_pod(POD, json!({"caretaker.io/role": "leader"}));
        let shutdown = CancellationToken::new();
        let run = tokio::spawn({
            let (fake, shutdown) = (Arc::clone(&fake), shutdown.clone());
            async move { replica(&fake).run(&shutdown, work(&fake, |_| {})).await }
        });
        until(&fake, |f| f.patches.len() == 2).await;
        {
            let f = fake.lock().unwrap();
            assert_eq!(f.patches, [label_patch("standby"), label_patch("leader")]);
            assert_eq!(f.role(POD), "leader");
            assert_eq!(f.spec()["holderIdentity"], POD);
            let pod = format!("PATCH {PODS}/{POD}");
            assert_eq!(
                f.seen[..4],
                [
                    format!("GET {PODS}/{POD}"),
                    pod.clone(),
                    format!("GET {PATH}/{NAME}"),
                    format!("POST {PATH}")
                ],
                "standby (the stale leader label cleared) before contending"
            );
            assert!(
                position(&f.seen, "work: started") < position(&f.seen, &pod),
                "leader only once the servers listen: {:?}",
                f.seen
            );
            // The merge patch touched the role label only.
            assert_eq!(
                f.pods[POD]["metadata"]["labels"]["app.kubernetes.io/name"],
                "caretaker-aggregator"
            );
        }

        shutdown.cancel();
        run.await.unwrap().unwrap();
        let f = fake.lock().unwrap();
        assert_eq!(
            f.patches,
            [
                label_patch("standby"),
                label_patch("leader"),
                label_patch("standby")
            ]
        );
        assert_eq!(f.role(POD), "standby");
        assert_eq!(f.spec()["holderIdentity"], Value::Null, "released");
        let (step_down, stopped, release) = (
            position(&f.seen, &format!("PATCH {PODS}/{POD}")),
            position(&f.seen, "work: stopped, store closed"),
            position(&f.seen, &format!("PUT {PATH}/{NAME}")),
        );
        assert!(
            step_down < stopped && stopped < release,
            "standby label, then drain, then release: {:?}",
            f.seen
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_label_patch_is_retried() {
        let fake = shared(None);
        fake.lock().unwrap().add_pod(POD, json!({}));
        fake.lock().unwrap().fail_pod_patches = 2;
        let shutdown = CancellationToken::new();
        let run = tokio::spawn({
            let (fake, shutdown) = (Arc::clone(&fake), shutdown.clone());
            // The first leader PATCH fails too.
            async move {
                replica(&fake)
                    .run(
                        &shutdown,
                        work(&fake, |f| f.lock().unwrap().fail_pod_patches = 1),
                    )
                    .await
            }
        });
        until(&fake, |f| f.role(POD) == "leader").await;
        assert_eq!(
            fake.lock().unwrap().patches,
            [
                label_patch("standby"),
                label_patch("standby"),
                label_patch("standby"),
                label_patch("leader"),
                label_patch("leader")
            ]
        );
        shutdown.cancel();
        run.await.unwrap().unwrap();
        assert_eq!(fake.lock().unwrap().role(POD), "standby");
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_cannot_be_labeled_releases_the_lease_and_fails() {
        let fake = shared(None);
        fake.lock().unwrap().add_pod(POD, json!({}));
        let never = CancellationToken::new();
        let err = replica(&fake)
            .run(
                &never,
                work(&fake, |f| f.lock().unwrap().fail_pod_patches = usize::MAX),
            )
            .await
            .unwrap_err();
        let RunError::NotLabeled(LabelError::GaveUp { attempts, role, .. }) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            (*attempts, *role),
            (LabelRetry::PERSISTENT.attempts, Role::Leader)
        );
        assert!(
            err.to_string()
                .ends_with("released the Lease so that the other replica takes over"),
            "{err}"
        );
        assert!(
            err.to_string().contains("etcdserver: request timed out"),
            "{err}"
        );
        let f = fake.lock().unwrap();
        let mut expected = vec![label_patch("standby")];
        expected.extend(std::iter::repeat_n(
            label_patch("leader"),
            LabelRetry::PERSISTENT.attempts,
        ));
        expected.extend(std::iter::repeat_n(
            label_patch("standby"),
            LabelRetry::STEP_DOWN.attempts,
        ));
        assert_eq!(f.patches, expected);
        assert_eq!(
            f.spec()["holderIdentity"],
            Value::Null,
            "released for the other replica"
        );
        assert!(
            position(&f.seen, "work: stopped, store closed")
                < position(&f.seen, &format!("PUT {PATH}/{NAME}"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_that_cannot_label_itself_standby_never_contends() {
        let fake = shared(None);
        fake.lock().unwrap().add_pod(POD, json!({}));
        fake.lock().unwrap().fail_pod_patches = usize::MAX;
        let err = replica(&fake)
            .run(&CancellationToken::new(), work(&fake, |_| {}))
            .await
            .unwrap_err();
        let RunError::Standby(LabelError::GaveUp { attempts, role, .. }) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            (*attempts, *role),
            (LabelRetry::PERSISTENT.attempts, Role::Standby)
        );
        let f = fake.lock().unwrap();
        assert_eq!(f.patches.len(), LabelRetry::PERSISTENT.attempts);
        assert_eq!(f.lease, None, "the Lease was never touched");
        assert!(!f.seen.iter().any(|s| s.starts_with("work:")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_lease_labels_the_pod_standby_and_fails_without_releasing() {
        let fake = shared(None);
        fake.lock().unwrap().add_pod(POD, json!({}));
        let run = tokio::spawn({
            let fake = Arc::clone(&fake);
            async move {
                replica(&fake)
                    .run(&CancellationToken::new(), work(&fake, |_| {}))
                    .await
            }
        });
        until(&fake, |f| f.role(POD) == "leader").await;
        fake.lock()
            .unwrap()
            .set_spec(held_by("caretaker-aggregator-5d8f7-other", 1));
        let err = run.await.unwrap().unwrap_err();
        assert!(
            matches!(err, RunError::Lost(LeaderError::Lost { .. })),
            "{err:?}"
        );
        let f = fake.lock().unwrap();
        assert_eq!(
            f.patches,
            [
                label_patch("standby"),
                label_patch("leader"),
                label_patch("standby")
            ]
        );
        assert_eq!(
            f.spec()["holderIdentity"],
            "caretaker-aggregator-5d8f7-other",
            "not released: it is someone else's"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_standby_stopped_before_leading_only_labeled_itself_standby() {
        let fake = shared(Some(held_by("caretaker-aggregator-5d8f7-other", 0)));
        fake.lock().unwrap().add_pod(POD, json!({}));
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            s.cancel();
        });
        replica(&fake)
            .run(&shutdown, work(&fake, |_| {}))
            .await
            .unwrap();
        let f = fake.lock().unwrap();
        assert_eq!(f.patches, [label_patch("standby")]);
        assert!(
            !f.seen.iter().any(|s| s.starts_with("work:")),
            "no leader work without the Lease"
        );
    }
}
