//! Reading a [`ClusterState`] from a live API server through kube-rs.
//!
//! Every resource of [`LIVE`] (all but Leases) is listed in pages of `page_size` objects (following
//! `continue` tokens), each page under `list_timeout`, in all namespaces or in each of the
//! configured ones. The outcome of each resource goes into [`ClusterState::coverage`]:
//! - 404 (the CRD or aggregated API is not installed: no cert-manager, no Velero, no
//!   metrics-server) → not applicable, never an error;
//! - 403 → forbidden: the checks that need the resource report "no permission to list X";
//! - any other failure → failed, with the error.
//!
//! Resources are listed one after another: the load on the API server stays that of one
//! `kubectl get` at a time.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectList};
use kube::{Client, Resource as KubeResource};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use super::{ClusterState, Coverage, Resource, Typed, TypedOp, trim_dynamic};
use crate::checks::ChecksConfig;

/// Nothing could be read from the API server.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("cannot reach the Kubernetes API server: {0}")]
    Unreachable(String),
}

/// Why listing one resource did not give all its objects.
enum ListFailure {
    NotFound(String),
    Forbidden(String),
    Failed(String),
}

impl From<ListFailure> for Coverage {
    fn from(f: ListFailure) -> Coverage {
        match f {
            ListFailure::NotFound(m) => Coverage::NotApplicable { reason: m },
            ListFailure::Forbidden(m) => Coverage::Forbidden { message: m },
            ListFailure::Failed(m) => Coverage::Failed { message: m },
        }
    }
}

fn classify(r: Resource, e: kube::Error) -> ListFailure {
    match e {
        kube::Error::Api(s) if s.code == 404 => ListFailure::NotFound(format!(
            "the API server does not serve {} (not installed)",
            r.display_name()
        )),
        kube::Error::Api(s) if s.code == 403 => ListFailure::Forbidden(s.message.clone()),
        other => ListFailure::Failed(other.to_string()),
    }
}

/// Lists every page of `api`.
async fn list_pages<K>(
    api: &Api<K>,
    r: Resource,
    page_size: u32,
    timeout: Duration,
) -> Result<Vec<K>, ListFailure>
where
    K: Clone + DeserializeOwned + Debug,
{
    let mut out = Vec::new();
    let mut lp = ListParams::default().limit(page_size);
    loop {
        let page: ObjectList<K> = match tokio::time::timeout(timeout, api.list(&lp)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Err(classify(r, e)),
            Err(_) => {
                return Err(ListFailure::Failed(format!(
                    "a page took longer than {}",
                    humantime::format_duration(timeout)
                )));
            }
        };
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => return Ok(out),
        }
    }
}

/// How the objects of a typed kind are listed: in one namespace or cluster-wide
/// (namespaced kinds), or only cluster-wide (cluster-scoped kinds such as Nodes).
pub trait ListScope {
    /// The API for `K`'s objects in `namespace` (`None`: in all).
    fn api<K>(client: Client, namespace: Option<&str>) -> Api<K>
    where
        K: KubeResource<Scope = Self, DynamicType = ()>;
}

impl ListScope for NamespaceResourceScope {
    fn api<K>(client: Client, namespace: Option<&str>) -> Api<K>
    where
        K: KubeResource<Scope = Self, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        }
    }
}

impl ListScope for ClusterResourceScope {
    fn api<K>(client: Client, _: Option<&str>) -> Api<K>
    where
        K: KubeResource<Scope = Self, DynamicType = ()>,
    {
        Api::all(client)
    }
}

/// Lists a built-in resource, cluster-wide or in each configured namespace.
async fn list_typed<K: Typed>(
    client: &Client,
    r: Resource,
    cfg: &ChecksConfig,
) -> Result<Vec<K>, ListFailure> {
    if cfg.namespaces.is_empty() || !r.namespaced() {
        return list_pages(
            &<<K as KubeResource>::Scope as ListScope>::api::<K>(client.clone(), None),
            r,
            cfg.page_size,
            cfg.list_timeout.get(),
        )
        .await;
    }
    let mut out = Vec::new();
    for ns in &cfg.namespaces {
        out.extend(
            list_pages(
                &<<K as KubeResource>::Scope as ListScope>::api::<K>(client.clone(), Some(ns)),
                r,
                cfg.page_size,
                cfg.list_timeout.get(),
            )
            .await?,
        );
    }
    Ok(out)
}

/// Lists a custom or aggregated resource as dynamic objects.
async fn list_dynamic(
    client: &Client,
    r: Resource,
    cfg: &ChecksConfig,
) -> Result<Vec<DynamicObject>, ListFailure> {
    let (group, version, kind, plural) = r.gvkp();
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    if cfg.namespaces.is_empty() || !r.namespaced() {
        return list_pages(
            &Api::<DynamicObject>::all_with(client.clone(), &ar),
            r,
            cfg.page_size,
            cfg.list_timeout.get(),
        )
        .await;
    }
    let mut out = Vec::new();
    for ns in &cfg.namespaces {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar);
        out.extend(list_pages(&api, r, cfg.page_size, cfg.list_timeout.get()).await?);
    }
    Ok(out)
}

/// Records in `state` how listing `r` went: the objects counted and the coverage.
fn record(state: &mut ClusterState, r: Resource, result: Result<usize, ListFailure>) {
    match result {
        Ok(count) => {
            debug!(resource = %r.display_name(), count, "listed");
            state.load.objects += count as u64;
            state.coverage.insert(r, Coverage::Listed);
        }
        Err(f) => {
            let c: Coverage = f.into();
            if !matches!(c, Coverage::NotApplicable { .. }) {
                warn!(resource = %r.display_name(), coverage = ?c, "could not list a resource; the checks that need it will say so");
            }
            state.coverage.insert(r, c);
        }
    }
}

/// Lists the objects of one typed resource onto its list (see [`ClusterState::typed_mut`]).
struct ListTyped<'c> {
    client: &'c Client,
    cfg: &'c ChecksConfig,
}

impl<'a> TypedOp<'a> for ListTyped<'a> {
    type Output = Pin<Box<dyn Future<Output = Result<usize, ListFailure>> + Send + 'a>>;

    fn call<T: Typed>(self, r: Resource, objects: &'a mut Vec<T>) -> Self::Output {
        Box::pin(async move {
            let mut items = list_typed::<T>(self.client, r, self.cfg).await?;
            items.iter_mut().for_each(T::trim);
            *objects = items;
            Ok(objects.len())
        })
    }
}

/// Reads every resource the checks use.
///
/// # Errors
/// [`LiveError::Unreachable`] when not a single resource could be listed (every list
/// failed otherwise than with 403 or 404); partial failures are recorded in
/// [`ClusterState::coverage`] instead.
pub async fn load(client: &Client, cfg: &ChecksConfig) -> Result<ClusterState, LiveError> {
    load_resources(client, cfg, &LIVE).await
}

/// What the live source lists: every resource but Leases, which the aggregator's RBAC
/// keeps to a Role in its own namespace (deploy/README.md); leader-lock ConfigMaps are
/// still recognised by their annotation, and a dump may carry Leases.
pub const LIVE: [Resource; Resource::ALL.len() - 1] = {
    let mut out = [Resource::Node; Resource::ALL.len() - 1];
    let mut i = 0;
    let mut j = 0;
    while i < Resource::ALL.len() {
        if !matches!(Resource::ALL[i], Resource::Lease) {
            out[j] = Resource::ALL[i];
            j += 1;
        }
        i += 1;
    }
    out
};

/// [`load`] for only `resources` (the others stay unlisted): the fresh reads cleanup makes
/// right before a deletion.
///
/// # Errors
/// As [`load`], when every one of `resources` failed.
pub(crate) async fn load_resources(
    client: &Client,
    cfg: &ChecksConfig,
    resources: &[Resource],
) -> Result<ClusterState, LiveError> {
    let mut s = ClusterState::default();
    for &r in resources {
        let listed = if let Some(listing) = s.typed_mut(r, ListTyped { client, cfg }) {
            listing.await
        } else {
            list_dynamic(client, r, cfg).await.map(|mut items| {
                items.iter_mut().for_each(|o| trim_dynamic(r, o));
                let count = items.len();
                if let Some(objects) = s.dynamic_mut(r) {
                    *objects = items;
                }
                count
            })
        };
        record(&mut s, r, listed);
    }
    let failures: Vec<String> = resources
        .iter()
        .filter_map(|r| match s.coverage.get(r) {
            Some(Coverage::Failed { message }) => Some(format!("{}: {message}", r.display_name())),
            _ => None,
        })
        .collect();
    if !resources.is_empty() && failures.len() == resources.len() {
        return Err(LiveError::Unreachable(
            failures.first().cloned().unwrap_or_default(),
        ));
    }
    Ok(s)
}
