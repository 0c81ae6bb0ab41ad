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
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectList};
use kube::{Client, Resource as KubeResource};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use super::dump::slim;
use super::{ClusterState, Coverage, Resource};
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

/// Lists a built-in resource, cluster-wide or in each configured namespace.
async fn list_typed<K>(
    client: &Client,
    r: Resource,
    cfg: &ChecksConfig,
) -> Result<Vec<K>, ListFailure>
where
    K: KubeResource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    K: KubeResource<Scope = NamespaceResourceScope>,
{
    if cfg.namespaces.is_empty() {
        return list_pages(
            &Api::<K>::all(client.clone()),
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
                &Api::<K>::namespaced(client.clone(), ns),
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

/// Where an object's metadata is (to slim it).
type MetaOf<T> = fn(&mut T) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn store<T>(
    state: &mut ClusterState,
    r: Resource,
    result: Result<Vec<T>, ListFailure>,
    meta: MetaOf<T>,
) -> Vec<T> {
    match result {
        Ok(mut items) => {
            debug!(resource = %r.display_name(), count = items.len(), "listed");
            for i in &mut items {
                slim(meta(i));
            }
            state.load.objects += items.len() as u64;
            state.coverage.insert(r, Coverage::Listed);
            items
        }
        Err(f) => {
            let c: Coverage = f.into();
            if !matches!(c, Coverage::NotApplicable { .. }) {
                warn!(resource = %r.display_name(), coverage = ?c, "could not list a resource; the checks that need it will say so");
            }
            state.coverage.insert(r, c);
            Vec::new()
        }
    }
}

fn dyn_meta(
    o: &mut DynamicObject,
) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    &mut o.metadata
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
    use k8s_openapi::Metadata;
    let mut s = ClusterState::default();
    for &r in resources {
        match r {
            Resource::Node => {
                let res = list_pages(
                    &Api::<k8s_openapi::api::core::v1::Node>::all(client.clone()),
                    r,
                    cfg.page_size,
                    cfg.list_timeout.get(),
                )
                .await;
                {
                    let v = store(&mut s, r, res, Metadata::metadata_mut);
                    s.nodes = v;
                };
            }
            Resource::Pod => {
                let res = list_typed::<super::PodInfo>(client, r, cfg)
                    .await
                    .map(|mut pods| {
                        pods.iter_mut().for_each(super::PodInfo::compact);
                        pods
                    });
                {
                    let v = store(&mut s, r, res, Metadata::metadata_mut);
                    s.pods = v;
                }
            }
            Resource::Event => {
                let v = store(
                    &mut s,
                    r,
                    list_typed(client, r, cfg).await,
                    Metadata::metadata_mut,
                );
                s.events = v;
            }
            Resource::ConfigMap => {
                let v = store(
                    &mut s,
                    r,
                    list_typed(client, r, cfg).await,
                    Metadata::metadata_mut,
                );
                s.config_maps = v;
            }
            Resource::Secret => {
                let v = store(
                    &mut s,
                    r,
                    list_typed(client, r, cfg).await,
                    Metadata::metadata_mut,
                );
                s.secrets = v;
            }
            Resource::ServiceAccount => {
                let v = store(
                    &mut s,
                    r,
                    list_typed(client, r, cfg).await,
                    Metadata::metadata_mut,
                );
                s.service_accounts = v;
            }
            Resource::PersistentVolumeClaim => {
                let v = store(
                    &mut s,
                    r,
                    list_typed(client, r, cfg).await,
                    Metadata::metadata_mut,
                );
                s.pvcs = v;
            }
            Resource::Deployment => {
                let v = store(
                    &mut s,
                    r,
                    list_typed(client, r, cfg).await,
                    Metadata::metadata_mut,
                );
                s.deployments = v;
            }
            Resource::ReplicaSet => {
                let v = store(
                    &mut s,
                    r,
                    list_typed(client, r, cfg).await,
                    Metadata::metadata_mut,
                );
                s.replica_sets = v;
            }
            Resource::StatefulSet => {
                let v = store(
                    &mut s,
                    r,
                    list_typed(client, r, cfg).await,
                    Metadata::metadata_mut,
                );
                s.stateful_sets = v;
            }
            Resource::DaemonSet => {
                let v = store(
                    &mut s,
                    r,
                    list_typed(client, r, cfg).await,
                    Metadata::metadata_mut,
                );
                s.daemon_sets = v;
            }
            Resource::Job => {
                let v = store(
                    &mut s,
                    r,
                    list_typed(client, r, cfg).await,
                    Metadata::metadata_mut,
                );
                s.jobs = v;
            }
            Resource::CronJob => {
                let v = store(
                    &mut s,
                    r,
                    list_typed(client, r, cfg).await,
                    Metadata::metadata_mut,
                );
                s.cron_jobs = v;
            }
            Resource::HorizontalPodAutoscaler => {
                let v = store(
                    &mut s,
                    r,
                    list_typed(client, r, cfg).await,
                    Metadata::metadata_mut,
                );
                s.hpas = v;
            }
            r => {
                let res = list_dynamic(client, r, cfg).await;
                let mut v = store(&mut s, r, res, dyn_meta);
                if r.metadata_only() {
                    for o in &mut v {
                        o.data = serde_json::Value::Null;
                    }
                }
                if let Some(target) = s.dynamic_mut(r) {
                    *target = v;
                }
            }
        }
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
