//! Leader election between aggregator replicas through a `coordination.k8s.io/v1` Lease,
//! with client-go's semantics (`k8s.io/client-go/tools/leaderelection`), and the pod label
//! `caretaker.io/role` that the Service selects on (the pattern Patroni uses).
//!
//! With `leader_election` in the config a replica labels its pod `caretaker.io/role=standby`
//! and waits to acquire the Lease. While it waits it is a standby: it serves only the HTTP
//! port, `/healthz` 200, `/readyz` 200 `standby` (it is up and contending, so the
//! Deployment counts it available and rollouts finish) and 503 for everything else
//! ([`crate::api::standby`]), and it does not open the store (the leader has it open; redb locks the
//! file). The Service selects `caretaker.io/role: leader`, so it does not reach a standby.
//! Once it holds the Lease it starts the full server (store, gRPC ingest, query API,
//! schedules, cleanups), labels its pod `leader` once the servers listen, and renews the
//! Lease every `retry_period`. If a renewal does not succeed within `renew_deadline`, or
//! another replica holds the Lease, it has lost leadership: it stops and exits non-zero so
//! Kubernetes restarts it as a standby (what controller-runtime does). On SIGTERM the
//! leader labels its pod `standby`, drains, closes the store and then releases the Lease,
//! so the standby takes over within one `retry_period`. The order and the failure cases
//! are in [`replica`].
//!
//! Why not a crate: `kube-leader-election` needs kube 4; `kube-lease-manager` (kube 5)
//! writes the Lease with server-side apply and strategic-merge PATCH, which needs the
//! `patch` verb on Leases, renews without a `resourceVersion` precondition and has no
//! renew deadline. [`lease::Elector`] uses only get, create and update (PUT with the
//! `resourceVersion` it read), the three Lease verbs the aggregator's Role grants.
//!
//! # Layout
//! - [`config`]: the `leader_election:` config section and its client-go defaults.
//! - [`lease`]: [`lease::Elector`]: acquire, renew, detect loss, release.
//! - [`role`]: [`role::PodLabeler`]: the `caretaker.io/role` label on this replica's pod.
//! - [`replica`]: [`replica::Replica::run`]: label, contend, lead, step down, in order.
//! - The HTTP answers of a standby are a server, so they live in [`crate::api::standby`].

pub mod config;
#[cfg(test)]
pub(crate) mod fake;
pub(crate) mod lease;
pub(crate) mod replica;
pub(crate) mod role;
