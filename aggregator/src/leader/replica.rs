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
//!
//! The loop is a small state machine (kube-runtime's watcher style): each step above is a
//! named `State`, and `Machine::step` goes from one to the next until `State::Done`.

use std::future::Future;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use caretaker_core::error::Chain;

use super::config::{Election, Timing};
use super::lease::{Elector, LeaderError};
use super::role::{LabelError, LabelRetry, PodLabeler, ROLE_LABEL, Role};

/// The leader work's own error.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
pub(crate) struct Leading {
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
    pub(crate) fn listening(&mut self) {
        if let Some(tx) = self.listening.take() {
            let _ = tx.send(());
        }
    }
}

/// One replica: its side of the election and its pod's role label.
#[derive(Debug)]
pub(crate) struct Replica {
    elector: Elector,
    labeler: PodLabeler,
}

impl Replica {
    /// A replica of `election` talking to the API server through `client`.
    pub(crate) fn new(client: kube::Client, election: Election) -> Self {
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
    pub(crate) async fn run<F, Fut>(
        self,
        shutdown: &CancellationToken,
        work: F,
    ) -> Result<(), RunError>
    where
        F: FnOnce(Leading) -> Fut,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let Self { elector, labeler } = self;
        let mut machine = Machine {
            labeler,
            shutdown,
            work: Some(work),
        };
        let mut state = State::Labeling(elector);
        loop {
            state = match machine.step(state).await {
                State::Done(result) => return result,
                next => next,
            };
        }
    }
}

/// Where a replica is in its life (the steps of the module docs); [`Machine::step`] goes
/// from one state to the next until [`State::Done`].
enum State {
    /// Starting: label the pod standby (clearing a `leader` left by an earlier run).
    Labeling(Elector),
    /// Labeled standby: contend for the Lease until it is held or `shutdown` fires.
    Contending(Elector),
    /// Holding the Lease with the work started: wait until its servers listen.
    StartingWork(Lead, oneshot::Receiver<()>),
    /// The servers listen: label the pod leader, then serve until the work returns or
    /// leadership ends.
    Leading(Lead),
    /// A leader label may have been written: label the pod standby again.
    Unlabeling(Lead),
    /// Stop the work, stop renewing, release the Lease unless it was lost.
    SteppingDown(Lead),
    Done(Result<(), RunError>),
}

/// What a replica holding the Lease keeps until it steps down.
struct Lead {
    /// Renews the Lease; returns the elector (to release the Lease) and why holding ended.
    holder: tokio::task::JoinHandle<(Elector, Result<(), LeaderError>)>,
    /// Stops `holder` renewing.
    hold_stop: CancellationToken,
    /// Fires when leadership ends: SIGTERM or a lost Lease.
    ending: CancellationToken,
    /// [`Leading::stop`]: tells the work to drain and return.
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), BoxError>>,
    /// The work's result when it returned while leading.
    work_result: Option<Result<Result<(), BoxError>, tokio::task::JoinError>>,
    /// Why the replica stops with an error other than the work's own.
    failure: Option<RunError>,
}

/// What every step needs besides the state.
struct Machine<'a, F> {
    labeler: PodLabeler,
    shutdown: &'a CancellationToken,
    /// Taken when the Lease is first held; a replica leads at most once.
    work: Option<F>,
}

impl<F, Fut> Machine<'_, F>
where
    F: FnOnce(Leading) -> Fut,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    async fn step(&mut self, state: State) -> State {
        let labeler = &self.labeler;
        let retry = LabelRetry::PERSISTENT;
        match state {
            State::Labeling(elector) => {
                match labeler.current(retry.timeout).await {
                    Ok(Some(role)) if role == Role::Leader.as_str() => {
                        warn!(pod = %labeler.pod(), label = ROLE_LABEL, "This pod is still labeled leader by an earlier run; labeling it standby before contending.");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        debug!(pod = %labeler.pod(), error = %Chain(&e), "Cannot read this pod's labels; labeling it standby anyway.")
                    }
                }
                match labeler
                    .set_retrying(Role::Standby, retry, self.shutdown)
                    .await
                {
                    Ok(true) => State::Contending(elector),
                    Ok(false) => State::Done(Ok(())),
                    Err(e) => State::Done(Err(RunError::Standby(e))),
                }
            }
            State::Contending(mut elector) => {
                if !elector.acquire(self.shutdown).await {
                    info!("Stopped as a standby.");
                    return State::Done(Ok(()));
                }
                let Some(work) = self.work.take() else {
                    return State::Done(Ok(()));
                };
                let (lead, listening) = self.lead(elector, work);
                State::StartingWork(lead, listening)
            }
            State::StartingWork(lead, listening) => {
                let listening = tokio::select! {
                    r = listening => r.is_ok(),
                    () = lead.ending.cancelled() => false,
                };
                if listening {
                    State::Leading(lead)
                } else {
                    State::SteppingDown(lead)
                }
            }
            State::Leading(mut lead) => {
                // From here a leader label may have been written, even if a request timed out.
                match labeler
                    .set_retrying(Role::Leader, retry, &lead.ending)
                    .await
                {
                    Ok(true) => {
                        info!(pod = %labeler.pod(), "Leading: the Service routes to this pod.");
                        tokio::select! {
                            r = &mut lead.task => lead.work_result = Some(r),
                            () = lead.ending.cancelled() => {}
                        }
                    }
                    Ok(false) => {}
                    Err(e) => {
                        error!(error = %Chain(&e), "The Service would never route to this leader; stopping and giving the Lease up.");
                        lead.failure = Some(RunError::NotLabeled(e));
                    }
                }
                State::Unlabeling(lead)
            }
            State::Unlabeling(lead) => {
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
                State::SteppingDown(lead)
            }
            State::SteppingDown(lead) => State::Done(step_down(lead).await),
            State::Done(result) => State::Done(result),
        }
    }

    /// Starts renewing the Lease and the work; the receiver fires when its servers listen.
    fn lead(&self, mut elector: Elector, work: F) -> (Lead, oneshot::Receiver<()>) {
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
        let (a, b, c) = (self.shutdown.clone(), lost, ending.clone());
        tokio::spawn(async move {
            tokio::select! { () = a.cancelled() => {}, () = b.cancelled() => {}, () = c.cancelled() => {} }
            c.cancel();
        });
        let stop = CancellationToken::new();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(
            work(Leading {
                timing,
                stop: stop.clone(),
                listening: Some(tx),
            })
            .instrument(info_span!("leader")),
        );
        let lead = Lead {
            holder,
            hold_stop,
            ending,
            stop,
            task,
            work_result: None,
            failure: None,
        };
        (lead, rx)
    }
}

/// Stops the work (it drains and closes the store), stops renewing, and releases the Lease
/// unless it was lost.
async fn step_down(lead: Lead) -> Result<(), RunError> {
    lead.stop.cancel();
    let work_result = match lead.work_result {
        Some(r) => r,
        None => lead.task.await,
    };
    lead.hold_stop.cancel();
    lead.ending.cancel();
    let (mut elector, held) = lead.holder.await.map_err(|e| RunError::Work(Box::new(e)))?;
    if let Err(e) = held {
        return Err(RunError::Lost(e));
    }
    // The work has returned, so the store is closed: the next leader can open it.
    if let Err(e) = elector.release().await {
        warn!(error = %Chain(&e), "Cannot release the leader Lease; the other replica takes over once it expires.");
    }
    if let Some(f) = lead.failure {
        return Err(f);
    }
    match work_result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(RunError::Work(e)),
        Err(e) => Err(RunError::Work(Box::new(e))),
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
