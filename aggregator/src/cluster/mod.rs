//! The cluster state the checks and cleanup proposals read: one snapshot of typed
//! Kubernetes objects, taken from a live API server ([`live`]) or from `kubectl get -o
//! json|yaml` files ([`dump`]).
//!
//! Built-in kinds are k8s-openapi types, except pods, which are the compact [`PodInfo`]
//! (a full k8s-openapi Pod takes ~12 KiB of memory; see [`pod`]); custom resources
//! (cert-manager, Velero, CSI snapshots, the metrics API) are [`DynamicObject`]s read through
//! small typed views in the checks. Large JSON dumps are read item by item ([`stream`]).
//! The objects' labels and owners are looked up through one [`labels::LabelIndex`].
//! [`ClusterState::coverage`] says for every resource whether it was listed, is not
//! applicable (CRD not installed / not in the dump), was forbidden or failed, so a check can
//! tell "nothing wrong" from "nothing known".

pub mod dump;
pub mod labels;
pub mod live;
pub(crate) mod pod;
pub(crate) mod stream;
pub(crate) mod volumes;

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Node, PersistentVolumeClaim, Secret, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use pod::PodInfo;
pub use volumes::VolumeStat;

/// Every resource the checks and proposals read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Resource {
    Pod,
    Node,
    Event,
    ConfigMap,
    Secret,
    ServiceAccount,
    PersistentVolumeClaim,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    HorizontalPodAutoscaler,
    /// cert-manager.io/v1 Certificate.
    Certificate,
    /// velero.io/v1 Backup.
    Backup,
    /// velero.io/v1 Schedule.
    Schedule,
    /// snapshot.storage.k8s.io/v1 VolumeSnapshot.
    VolumeSnapshot,
    /// metrics.k8s.io/v1beta1 PodMetrics.
    PodMetrics,
    /// metrics.k8s.io/v1beta1 NodeMetrics.
    NodeMetrics,
    /// networking.k8s.io/v1 Ingress (`tls[].secretName`, `*-secret` annotations).
    Ingress,
    /// coordination.k8s.io/v1 Lease (leader-election locks).
    Lease,
    /// admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration (CA injection).
    ValidatingWebhookConfiguration,
    /// admissionregistration.k8s.io/v1 MutatingWebhookConfiguration (CA injection).
    MutatingWebhookConfiguration,
    /// apiregistration.k8s.io/v1 APIService (CA injection).
    ApiService,
    /// cert-manager.io/v1 Issuer.
    Issuer,
    /// cert-manager.io/v1 ClusterIssuer.
    ClusterIssuer,
    /// gateway.networking.k8s.io/v1 Gateway (`certificateRefs`).
    Gateway,
    /// monitoring.coreos.com/v1 Prometheus (Prometheus Operator).
    Prometheus,
    /// monitoring.coreos.com/v1 Alertmanager (Prometheus Operator).
    Alertmanager,
    /// v1 Service (the services check: ready endpoints; Ingress backends).
    Service,
    /// discovery.k8s.io/v1 EndpointSlice (a Service's ready endpoints).
    EndpointSlice,
    /// policy/v1 PodDisruptionBudget.
    PodDisruptionBudget,
    /// velero.io/v1 BackupStorageLocation.
    BackupStorageLocation,
    /// cert-manager.io/v1 CertificateRequest (why a renewal fails).
    CertificateRequest,
    /// apiextensions.k8s.io/v1 CustomResourceDefinition (CA injection into conversion
    /// webhooks); only the metadata is kept.
    CustomResourceDefinition,
    /// aquasecurity.github.io/v1alpha1 VulnerabilityReport (trivy-operator's scans).
    VulnerabilityReport,
}

impl Resource {
    /// All resources, in the order the live source lists them.
    pub const ALL: [Resource; 37] = [
        Resource::Node,
        Resource::Pod,
        Resource::Event,
        Resource::ConfigMap,
        Resource::Secret,
        Resource::ServiceAccount,
        Resource::PersistentVolumeClaim,
        Resource::Deployment,
        Resource::ReplicaSet,
        Resource::StatefulSet,
        Resource::DaemonSet,
        Resource::Job,
        Resource::CronJob,
        Resource::HorizontalPodAutoscaler,
        Resource::Certificate,
        Resource::Backup,
        Resource::Schedule,
        Resource::VolumeSnapshot,
        Resource::PodMetrics,
        Resource::NodeMetrics,
        Resource::Ingress,
        Resource::Lease,
        Resource::ValidatingWebhookConfiguration,
        Resource::MutatingWebhookConfiguration,
        Resource::ApiService,
        Resource::Issuer,
        Resource::ClusterIssuer,
        Resource::Gateway,
        Resource::Prometheus,
        Resource::Alertmanager,
        Resource::Service,
        Resource::EndpointSlice,
        Resource::PodDisruptionBudget,
        Resource::BackupStorageLocation,
        Resource::CertificateRequest,
        Resource::CustomResourceDefinition,
        Resource::VulnerabilityReport,
    ];

    /// The API group ("" for core), version, kind and plural resource name.
    pub fn gvkp(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Resource::Pod => ("", "v1", "Pod", "pods"),
            Resource::Node => ("", "v1", "Node", "nodes"),
            Resource::Event => ("", "v1", "Event", "events"),
            Resource::ConfigMap => ("", "v1", "ConfigMap", "configmaps"),
            Resource::Secret => ("", "v1", "Secret", "secrets"),
            Resource::ServiceAccount => ("", "v1", "ServiceAccount", "serviceaccounts"),
            Resource::PersistentVolumeClaim => {
                ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims")
            }
            Resource::Deployment => ("apps", "v1", "Deployment", "deployments"),
            Resource::ReplicaSet => ("apps", "v1", "ReplicaSet", "replicasets"),
            Resource::StatefulSet => ("apps", "v1", "StatefulSet", "statefulsets"),
            Resource::DaemonSet => ("apps", "v1", "DaemonSet", "daemonsets"),
            Resource::Job => ("batch", "v1", "Job", "jobs"),
            Resource::CronJob => ("batch", "v1", "CronJob", "cronjobs"),
            Resource::HorizontalPodAutoscaler => (
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
            ),
            Resource::Certificate => ("cert-manager.io", "v1", "Certificate", "certificates"),
            Resource::Backup => ("velero.io", "v1", "Backup", "backups"),
            Resource::Schedule => ("velero.io", "v1", "Schedule", "schedules"),
            Resource::VolumeSnapshot => (
                "snapshot.storage.k8s.io",
                "v1",
                "VolumeSnapshot",
                "volumesnapshots",
            ),
            Resource::PodMetrics => ("metrics.k8s.io", "v1beta1", "PodMetrics", "pods"),
            Resource::NodeMetrics => ("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes"),
            Resource::Ingress => ("networking.k8s.io", "v1", "Ingress", "ingresses"),
            Resource::Lease => ("coordination.k8s.io", "v1", "Lease", "leases"),
            Resource::ValidatingWebhookConfiguration => (
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingWebhookConfiguration",
                "validatingwebhookconfigurations",
            ),
            Resource::MutatingWebhookConfiguration => (
                "admissionregistration.k8s.io",
                "v1",
                "MutatingWebhookConfiguration",
                "mutatingwebhookconfigurations",
            ),
            Resource::ApiService => ("apiregistration.k8s.io", "v1", "APIService", "apiservices"),
            Resource::Issuer => ("cert-manager.io", "v1", "Issuer", "issuers"),
            Resource::ClusterIssuer => ("cert-manager.io", "v1", "ClusterIssuer", "clusterissuers"),
            Resource::Gateway => ("gateway.networking.k8s.io", "v1", "Gateway", "gateways"),
            Resource::Prometheus => ("monitoring.coreos.com", "v1", "Prometheus", "prometheuses"),
            Resource::Alertmanager => (
                "monitoring.coreos.com",
                "v1",
                "Alertmanager",
                "alertmanagers",
            ),
            Resource::Service => ("", "v1", "Service", "services"),
            Resource::EndpointSlice => {
                ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")
            }
            Resource::PodDisruptionBudget => (
                "policy",
                "v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
            ),
            Resource::BackupStorageLocation => (
                "velero.io",
                "v1",
                "BackupStorageLocation",
                "backupstoragelocations",
            ),
            Resource::CertificateRequest => (
                "cert-manager.io",
                "v1",
                "CertificateRequest",
                "certificaterequests",
            ),
            Resource::CustomResourceDefinition => (
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
            ),
            Resource::VulnerabilityReport => (
                "aquasecurity.github.io",
                "v1alpha1",
                "VulnerabilityReport",
                "vulnerabilityreports",
            ),
        }
    }

    /// Whether only the metadata of its objects is read (the rest is dropped on load).
    pub(crate) fn metadata_only(self) -> bool {
        matches!(self, Resource::CustomResourceDefinition)
    }

    /// The kind, e.g. `Pod`.
    pub fn kind(self) -> &'static str {
        self.gvkp().2
    }

    /// Whether objects live in a namespace.
    pub(crate) fn namespaced(self) -> bool {
        !matches!(
            self,
            Resource::Node
                | Resource::NodeMetrics
                | Resource::ClusterIssuer
                | Resource::ValidatingWebhookConfiguration
                | Resource::MutatingWebhookConfiguration
                | Resource::ApiService
                | Resource::CustomResourceDefinition
        )
    }

    /// Whether the resource comes from an optional extension (CRD or aggregated API) whose
    /// absence makes the checks that need it "not applicable".
    pub fn optional(self) -> bool {
        matches!(
            self.gvkp().0,
            "cert-manager.io"
                | "velero.io"
                | "snapshot.storage.k8s.io"
                | "metrics.k8s.io"
                | "gateway.networking.k8s.io"
                | "monitoring.coreos.com"
        )
    }

    /// The resource a kind (and API group, `""` for core) is read into, if any.
    pub(crate) fn from_kind(group: &str, kind: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| {
            let (g, _, k, _) = r.gvkp();
            k == kind && g == group
        })
    }

    /// Human name for messages: `pods`, `certificates.cert-manager.io`.
    pub fn display_name(self) -> String {
        let (g, _, _, p) = self.gvkp();
        if g.is_empty() {
            p.to_string()
        } else {
            format!("{p}.{g}")
        }
    }
}

/// Whether a resource is known in this snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Coverage {
    /// Listed completely (possibly zero objects).
    Listed,
    /// Not served by this cluster (CRD or aggregated API not installed) or not in the dump.
    NotApplicable { reason: String },
    /// The API server answered 403.
    Forbidden { message: String },
    /// Listing failed otherwise (timeout, server error); the objects are unknown.
    Failed { message: String },
}

/// A document of a dump that could not be read; it was skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadProblem {
    pub file: PathBuf,
    /// 1-based index of the document in the file (JSON values or YAML documents).
    pub document: usize,
    /// 1-based index in the `items` of a List document, when the problem is one item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    pub message: String,
    /// Whether reading the file stopped here (a JSON syntax error: no later value can be
    /// found reliably); [`dump::load`] then fails instead of judging a partial source.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) ends_file: bool,
}

impl std::fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: document {}", self.file.display(), self.document)?;
        if let Some(i) = self.item {
            write!(f, ", item {i}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What loading a source saw besides the objects kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadSummary {
    /// Objects of kinds no check reads, by `Kind` or `Kind.group`; they were ignored.
    pub unknown_kinds: BTreeMap<String, u64>,
    /// Documents or items skipped because they could not be read.
    pub problems: Vec<LoadProblem>,
    /// Objects kept.
    pub objects: u64,
}

/// Declares [`ClusterState`] with one `Vec` per resource, and the methods that go through
/// every one of them, from the one list in the invocation below: adding a kind is adding
/// its line there (and its [`Resource`]; the `match`es here are exhaustive, so a resource
/// without a list does not compile).
macro_rules! cluster_state {
    (
        typed {
            $(
                $(#[$tdoc:meta])*
                $tfield:ident: $ty:ty = $tres:ident $({ trim: $trim:path })?
            ),* $(,)?
        }
        dynamic {
            $(
                $(#[$ddoc:meta])*
                $dfield:ident = $dres:ident
            ),* $(,)?
        }
    ) => {
        /// One snapshot of the cluster.
        #[derive(Debug, Clone, Default)]
        pub struct ClusterState {
            $($(#[$tdoc])* pub $tfield: Vec<$ty>,)*
            $($(#[$ddoc])* pub $dfield: Vec<DynamicObject>,)*
            /// Volume filesystem figures reported by the node agents (empty for a dump).
            pub volume_stats: Vec<VolumeStat>,
            /// Per resource: listed, not applicable, forbidden or failed. A resource without an
            /// entry counts as listed when any object of it is present, else as not in the source.
            pub coverage: BTreeMap<Resource, Coverage>,
            pub load: LoadSummary,
            /// Whether the snapshot came from a dump (cleanup may then only be a dry run).
            pub from_dump: bool,
        }

        $(
            impl Typed for $ty {
                $(
                    fn trim(&mut self) {
                        dump::slim(k8s_openapi::Metadata::metadata_mut(self));
                        $trim(self);
                    }
                )?
            }
        )*

        impl ClusterState {
            /// Number of objects held for `r`.
            pub fn count(&self, r: Resource) -> usize {
                match r {
                    $(Resource::$tres => self.$tfield.len(),)*
                    $(Resource::$dres => self.$dfield.len(),)*
                }
            }

            /// The objects of a resource held as [`DynamicObject`]s (custom resources and the
            /// built-in kinds only cleanup reads), `None` for the typed ones.
            pub fn dynamic(&self, r: Resource) -> Option<&[DynamicObject]> {
                match r {
                    $(Resource::$tres => None,)*
                    $(Resource::$dres => Some(&self.$dfield),)*
                }
            }

            /// Mutable [`ClusterState::dynamic`].
            pub fn dynamic_mut(&mut self, r: Resource) -> Option<&mut Vec<DynamicObject>> {
                match r {
                    $(Resource::$tres => None,)*
                    $(Resource::$dres => Some(&mut self.$dfield),)*
                }
            }

            /// `op` applied to the objects of `r` when they are held typed (see [`Typed`]),
            /// `None` for the ones held as [`DynamicObject`]s.
            pub fn typed_mut<'a, O: TypedOp<'a>>(
                &'a mut self,
                r: Resource,
                op: O,
            ) -> Option<O::Output> {
                match r {
                    $(Resource::$tres => Some(op.call(r, &mut self.$tfield)),)*
                    $(Resource::$dres => None,)*
                }
            }

            /// Calls `f` with the resource and metadata of every object held, resource by
            /// resource.
            pub fn for_each_meta<'a>(&'a self, mut f: impl FnMut(Resource, &'a ObjectMeta)) {
                $(for o in &self.$tfield {
                    f(Resource::$tres, k8s_openapi::Metadata::metadata(o));
                })*
                $(for o in &self.$dfield {
                    f(Resource::$dres, &o.metadata);
                })*
            }

            /// Keeps only the objects for which `keep` (given each one's resource and
            /// metadata) returns true.
            pub fn retain(&mut self, mut keep: impl FnMut(Resource, &ObjectMeta) -> bool) {
                $(self
                    .$tfield
                    .retain(|o| keep(Resource::$tres, k8s_openapi::Metadata::metadata(o)));)*
                $(self.$dfield.retain(|o| keep(Resource::$dres, &o.metadata));)*
            }

            /// Moves everything `other` holds to the end of `self` (objects in order, problems,
            /// unknown kinds and object counts added up; `other`'s coverage wins).
            pub fn append(&mut self, other: ClusterState) {
                let ClusterState {
                    $($tfield,)*
                    $($dfield,)*
                    volume_stats,
                    coverage,
                    load,
                    from_dump,
                } = other;
                fn add<T>(to: &mut Vec<T>, mut from: Vec<T>) {
                    if to.is_empty() {
                        // Keep the larger allocation.
                        std::mem::swap(to, &mut from);
                    }
                    to.append(&mut from);
                }
                $(add(&mut self.$tfield, $tfield);)*
                $(add(&mut self.$dfield, $dfield);)*
                add(&mut self.volume_stats, volume_stats);
                self.coverage.extend(coverage);
                for (kind, n) in load.unknown_kinds {
                    *self.load.unknown_kinds.entry(kind).or_default() += n;
                }
                add(&mut self.load.problems, load.problems);
                self.load.objects += load.objects;
                self.from_dump |= from_dump;
            }
        }
    };
}

cluster_state! {
    typed {
        /// Pods in a compact form (see [`pod`]: a full k8s-openapi Pod is ~12 KiB in memory).
        pods: PodInfo = Pod { trim: PodInfo::compact },
        nodes: Node = Node,
        events: Event = Event,
        config_maps: ConfigMap = ConfigMap,
        secrets: Secret = Secret,
        service_accounts: ServiceAccount = ServiceAccount,
        pvcs: PersistentVolumeClaim = PersistentVolumeClaim,
        deployments: Deployment = Deployment,
        replica_sets: ReplicaSet = ReplicaSet,
        stateful_sets: StatefulSet = StatefulSet,
        daemon_sets: DaemonSet = DaemonSet,
        jobs: Job = Job,
        cron_jobs: CronJob = CronJob,
        hpas: HorizontalPodAutoscaler = HorizontalPodAutoscaler,
    }
    dynamic {
        certificates = Certificate,
        backups = Backup,
        schedules = Schedule,
        volume_snapshots = VolumeSnapshot,
        pod_metrics = PodMetrics,
        node_metrics = NodeMetrics,
        ingresses = Ingress,
        leases = Lease,
        validating_webhooks = ValidatingWebhookConfiguration,
        mutating_webhooks = MutatingWebhookConfiguration,
        api_services = ApiService,
        issuers = Issuer,
        cluster_issuers = ClusterIssuer,
        gateways = Gateway,
        prometheuses = Prometheus,
        alertmanagers = Alertmanager,
        services = Service,
        endpoint_slices = EndpointSlice,
        pdbs = PodDisruptionBudget,
        backup_storage_locations = BackupStorageLocation,
        /// trivy-operator's VulnerabilityReports (one per workload container image).
        vulnerability_reports = VulnerabilityReport,
        certificate_requests = CertificateRequest,
        /// Metadata only (`data` is dropped when read: a CRD's schema can be megabytes).
        crds = CustomResourceDefinition,
    }
}

/// A kind a [`ClusterState`] holds typed: a k8s-openapi type, or [`PodInfo`]. What both
/// sources need to read one, whichever it is.
pub trait Typed:
    kube::Resource<DynamicType = (), Scope: live::ListScope>
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + DeserializeOwned
    + Clone
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Drops what no check reads, right after the object is read (from a dump or the API
    /// server alike): what [`dump::slim`] drops, and for pods what [`PodInfo::compact`] does.
    fn trim(&mut self) {
        dump::slim(self.metadata_mut());
    }
}

/// [`Typed::trim`] for the objects held as [`DynamicObject`]s: for the
/// [`Resource::metadata_only`] kinds (CustomResourceDefinitions) everything but the
/// metadata goes too.
pub fn trim_dynamic(r: Resource, o: &mut DynamicObject) {
    dump::slim(&mut o.metadata);
    if r.metadata_only() {
        o.data = serde_json::Value::Null;
    }
}

/// Something done to the objects of one typed resource, whatever their type (see
/// [`ClusterState::typed_mut`]).
pub trait TypedOp<'a> {
    type Output;
    fn call<T: Typed>(self, r: Resource, objects: &'a mut Vec<T>) -> Self::Output;
}

impl ClusterState {
    /// Keeps only the namespaced objects in `namespaces` (all of them when it is empty);
    /// cluster-scoped objects stay. What `checks.namespaces` and `-n` do to a live read,
    /// done to a dump.
    pub(crate) fn retain_namespaces(&mut self, namespaces: &[String]) {
        if namespaces.is_empty() {
            return;
        }
        // A resource the dump holds stays "listed" when none of its objects is in these
        // namespaces: it was read, and has nothing there (not "not in the source").
        for r in Resource::ALL {
            if self.count(r) > 0 && !self.coverage.contains_key(&r) {
                self.coverage.insert(r, Coverage::Listed);
            }
        }
        self.retain(|r, m| {
            !r.namespaced() || m.namespace.as_ref().is_none_or(|n| namespaces.contains(n))
        });
    }

    /// The coverage of `r` (see [`ClusterState::coverage`] field docs for the default).
    pub fn coverage(&self, r: Resource) -> Coverage {
        match self.coverage.get(&r) {
            Some(c) => c.clone(),
            None if self.count(r) > 0 => Coverage::Listed,
            None => Coverage::NotApplicable {
                reason: format!("no {} in the source", r.display_name()),
            },
        }
    }

    /// Whether `r` was listed (its objects are all known).
    pub fn listed(&self, r: Resource) -> bool {
        self.coverage(r) == Coverage::Listed
    }
}
