//! Leader election between aggregator replicas through a `coordination.k8s.io/v1` Lease,
//! with client-go's semantics (`k8s.io/client-go/tools/leaderelection`).
//!
//! With `leader_election` in the config a replica first waits to acquire the Lease. While
//! it waits it is a standby: it serves only the HTTP port, `/healthz` 200, `/readyz` 503
//! ("standby: not the leader") and 503 for everything else ([`standby`]), and it does not
//! open the store (the leader has it open; redb locks the file). Kubernetes routes the
//! Service to ready pods, so the Service reaches the leader only. Once it holds the Lease
//! it starts the full server (store, gRPC ingest, query API, schedules, cleanups) and
//! renews the Lease every `retry_period`. If a renewal does not succeed within
//! `renew_deadline`, or another replica holds the Lease, it has lost leadership: it stops
//! and exits non-zero so Kubernetes restarts it as a standby (what controller-runtime
//! does). On SIGTERM the leader drains, closes the store and then releases the Lease, so
//! the standby takes over within one `retry_period`.
//!
//! Why not a crate: `kube-leader-election` needs kube 4; `kube-lease-manager` (kube 5)
//! writes the Lease with server-side apply and strategic-merge PATCH, which needs the
//! `patch` verb, renews without a `resourceVersion` precondition and has no renew
//! deadline. [`lease::Elector`] uses only get, create and update (PUT with the
//! `resourceVersion` it read), the three verbs the aggregator's Role grants.
//!
//! # Layout
//! - [`config`]: the `leader_election:` config section and its client-go defaults.
//! - [`lease`]: [`lease::Elector`]: acquire, renew, detect loss, release.
//! - [`standby`]: the HTTP answers of a standby.

pub mod config;
pub mod lease;
pub mod standby;
