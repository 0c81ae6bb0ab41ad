//! The cluster state the checks and cleanup proposals read: one snapshot of typed
//! Kubernetes objects, taken from a live API server ([`live`]) or from `kubectl get -o
//! json|yaml` files ([`dump`]).
//!
//! Built-in kinds are k8s-openapi types, except pods, which are the compact [`PodInfo`]
//! (a full k8s-openapi Pod takes ~12 KiB of memory; see [`pod`]); custom resources
//! (cert-manager, Velero, CSI snapshots, the metrics API) are [`DynamicObject`]s read through
//! small typed views in the checks. Large JSON dumps are read item by item ([`stream`]). [`ClusterState::coverage`] says for every resource whether it was listed, is not
//! applicable (CRD not installed / not in the dump), was forbidden or failed, so a check can
//! tell "nothing wrong" from "nothing known".

pub mod dump;
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
use kube::api::DynamicObject;
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

/// One snapshot of the cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    /// Pods in a compact form (see [`pod`]: a full k8s-openapi Pod is ~12 KiB in memory).
    pub pods: Vec<PodInfo>,
    pub nodes: Vec<Node>,
    pub events: Vec<Event>,
    pub config_maps: Vec<ConfigMap>,
    pub secrets: Vec<Secret>,
    pub(crate) service_accounts: Vec<ServiceAccount>,
    pub pvcs: Vec<PersistentVolumeClaim>,
    pub deployments: Vec<Deployment>,
    pub(crate) replica_sets: Vec<ReplicaSet>,
    pub(crate) stateful_sets: Vec<StatefulSet>,
    pub(crate) daemon_sets: Vec<DaemonSet>,
    pub jobs: Vec<Job>,
    pub(crate) cron_jobs: Vec<CronJob>,
    pub hpas: Vec<HorizontalPodAutoscaler>,
    pub certificates: Vec<DynamicObject>,
    pub backups: Vec<DynamicObject>,
    pub schedules: Vec<DynamicObject>,
    pub(crate) volume_snapshots: Vec<DynamicObject>,
    pub pod_metrics: Vec<DynamicObject>,
    pub(crate) node_metrics: Vec<DynamicObject>,
    pub ingresses: Vec<DynamicObject>,
    pub leases: Vec<DynamicObject>,
    pub(crate) validating_webhooks: Vec<DynamicObject>,
    pub(crate) mutating_webhooks: Vec<DynamicObject>,
    pub(crate) api_services: Vec<DynamicObject>,
    pub issuers: Vec<DynamicObject>,
    pub(crate) cluster_issuers: Vec<DynamicObject>,
    pub(crate) gateways: Vec<DynamicObject>,
    pub(crate) prometheuses: Vec<DynamicObject>,
    pub(crate) alertmanagers: Vec<DynamicObject>,
    pub services: Vec<DynamicObject>,
    pub endpoint_slices: Vec<DynamicObject>,
    pub pdbs: Vec<DynamicObject>,
    pub(crate) backup_storage_locations: Vec<DynamicObject>,
    /// trivy-operator's VulnerabilityReports (one per workload container image).
    pub vulnerability_reports: Vec<DynamicObject>,
    pub certificate_requests: Vec<DynamicObject>,
    /// Metadata only (`data` is dropped when read: a CRD's schema can be megabytes).
    pub crds: Vec<DynamicObject>,
    /// Volume filesystem figures reported by the node agents (empty for a dump).
    pub volume_stats: Vec<VolumeStat>,
    /// Per resource: listed, not applicable, forbidden or failed. A resource without an
    /// entry counts as listed when any object of it is present, else as not in the source.
    pub coverage: BTreeMap<Resource, Coverage>,
    pub load: LoadSummary,
    /// Whether the snapshot came from a dump (cleanup may then only be a dry run).
    pub from_dump: bool,
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
        let keep = |ns: &Option<String>| ns.as_ref().is_none_or(|n| namespaces.contains(n));
        self.pods.retain(|o| keep(&o.metadata.namespace));
        macro_rules! typed {
            ($($field:ident),* $(,)?) => {
                $(self.$field.retain(|o| keep(&o.metadata.namespace));)*
            };
        }
        typed!(
            events,
            config_maps,
            secrets,
            service_accounts,
            pvcs,
            deployments,
            replica_sets,
            stateful_sets,
            daemon_sets,
            jobs,
            cron_jobs,
            hpas,
        );
        for r in Resource::ALL {
            if r.namespaced()
                && let Some(objs) = self.dynamic_mut(r)
            {
                objs.retain(|o| keep(&o.metadata.namespace));
            }
        }
    }

    /// Number of objects held for `r`.
    pub fn count(&self, r: Resource) -> usize {
        match r {
            Resource::Pod => self.pods.len(),
            Resource::Node => self.nodes.len(),
            Resource::Event => self.events.len(),
            Resource::ConfigMap => self.config_maps.len(),
            Resource::Secret => self.secrets.len(),
            Resource::ServiceAccount => self.service_accounts.len(),
            Resource::PersistentVolumeClaim => self.pvcs.len(),
            Resource::Deployment => self.deployments.len(),
            Resource::ReplicaSet => self.replica_sets.len(),
            Resource::StatefulSet => self.stateful_sets.len(),
            Resource::DaemonSet => self.daemon_sets.len(),
            Resource::Job => self.jobs.len(),
            Resource::CronJob => self.cron_jobs.len(),
            Resource::HorizontalPodAutoscaler => self.hpas.len(),
            Resource::Certificate => self.certificates.len(),
            Resource::Backup => self.backups.len(),
            Resource::Schedule => self.schedules.len(),
            Resource::VolumeSnapshot => self.volume_snapshots.len(),
            Resource::PodMetrics => self.pod_metrics.len(),
            Resource::NodeMetrics => self.node_metrics.len(),
            r => self.dynamic(r).map_or(0, <[DynamicObject]>::len),
        }
    }

    /// The objects of a resource held as [`DynamicObject`]s (custom resources and the
    /// built-in kinds only cleanup reads), `None` for the typed ones.
    pub(crate) fn dynamic(&self, r: Resource) -> Option<&[DynamicObject]> {
        Some(match r {
            Resource::Certificate => &self.certificates,
            Resource::Backup => &self.backups,
            Resource::Schedule => &self.schedules,
            Resource::VolumeSnapshot => &self.volume_snapshots,
            Resource::PodMetrics => &self.pod_metrics,
            Resource::NodeMetrics => &self.node_metrics,
            Resource::Ingress => &self.ingresses,
            Resource::Lease => &self.leases,
            Resource::ValidatingWebhookConfiguration => &self.validating_webhooks,
            Resource::MutatingWebhookConfiguration => &self.mutating_webhooks,
            Resource::ApiService => &self.api_services,
            Resource::Issuer => &self.issuers,
            Resource::ClusterIssuer => &self.cluster_issuers,
            Resource::Gateway => &self.gateways,
            Resource::Prometheus => &self.prometheuses,
            Resource::Alertmanager => &self.alertmanagers,
            Resource::Service => &self.services,
            Resource::EndpointSlice => &self.endpoint_slices,
            Resource::PodDisruptionBudget => &self.pdbs,
            Resource::BackupStorageLocation => &self.backup_storage_locations,
            Resource::CertificateRequest => &self.certificate_requests,
            Resource::CustomResourceDefinition => &self.crds,
            Resource::VulnerabilityReport => &self.vulnerability_reports,
            _ => return None,
        })
    }

    /// Mutable [`ClusterState::dynamic`].
    pub(crate) fn dynamic_mut(&mut self, r: Resource) -> Option<&mut Vec<DynamicObject>> {
        Some(match r {
            Resource::Certificate => &mut self.certificates,
            Resource::Backup => &mut self.backups,
            Resource::Schedule => &mut self.schedules,
            Resource::VolumeSnapshot => &mut self.volume_snapshots,
            Resource::PodMetrics => &mut self.pod_metrics,
            Resource::NodeMetrics => &mut self.node_metrics,
            Resource::Ingress => &mut self.ingresses,
            Resource::Lease => &mut self.leases,
            Resource::ValidatingWebhookConfiguration => &mut self.validating_webhooks,
            Resource::MutatingWebhookConfiguration => &mut self.mutating_webhooks,
            Resource::ApiService => &mut self.api_services,
            Resource::Issuer => &mut self.issuers,
            Resource::ClusterIssuer => &mut self.cluster_issuers,
            Resource::Gateway => &mut self.gateways,
            Resource::Prometheus => &mut self.prometheuses,
            Resource::Alertmanager => &mut self.alertmanagers,
            Resource::Service => &mut self.services,
            Resource::EndpointSlice => &mut self.endpoint_slices,
            Resource::PodDisruptionBudget => &mut self.pdbs,
            Resource::BackupStorageLocation => &mut self.backup_storage_locations,
            Resource::CertificateRequest => &mut self.certificate_requests,
            Resource::CustomResourceDefinition => &mut self.crds,
            Resource::VulnerabilityReport => &mut self.vulnerability_reports,
            _ => return None,
        })
    }

    /// Moves everything `other` holds to the end of `self` (objects in order, problems,
    /// unknown kinds and object counts added up; `other`'s coverage wins).
    pub fn append(&mut self, other: ClusterState) {
        // Destructured so that a new field cannot be forgotten here.
        let ClusterState {
            pods,
            nodes,
            events,
            config_maps,
            secrets,
            service_accounts,
            pvcs,
            deployments,
            replica_sets,
            stateful_sets,
            daemon_sets,
            jobs,
            cron_jobs,
            hpas,
            certificates,
            backups,
            schedules,
            volume_snapshots,
            pod_metrics,
            node_metrics,
            ingresses,
            leases,
            validating_webhooks,
            mutating_webhooks,
            api_services,
            issuers,
            cluster_issuers,
            gateways,
            prometheuses,
            alertmanagers,
            services,
            endpoint_slices,
            pdbs,
            backup_storage_locations,
            certificate_requests,
            crds,
            vulnerability_reports,
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
        add(&mut self.pods, pods);
        add(&mut self.nodes, nodes);
        add(&mut self.events, events);
        add(&mut self.config_maps, config_maps);
        add(&mut self.secrets, secrets);
        add(&mut self.service_accounts, service_accounts);
        add(&mut self.pvcs, pvcs);
        add(&mut self.deployments, deployments);
        add(&mut self.replica_sets, replica_sets);
        add(&mut self.stateful_sets, stateful_sets);
        add(&mut self.daemon_sets, daemon_sets);
        add(&mut self.jobs, jobs);
        add(&mut self.cron_jobs, cron_jobs);
        add(&mut self.hpas, hpas);
        add(&mut self.certificates, certificates);
        add(&mut self.backups, backups);
        add(&mut self.schedules, schedules);
        add(&mut self.volume_snapshots, volume_snapshots);
        add(&mut self.pod_metrics, pod_metrics);
        add(&mut self.node_metrics, node_metrics);
        add(&mut self.ingresses, ingresses);
        add(&mut self.leases, leases);
        add(&mut self.validating_webhooks, validating_webhooks);
        add(&mut self.mutating_webhooks, mutating_webhooks);
        add(&mut self.api_services, api_services);
        add(&mut self.issuers, issuers);
        add(&mut self.cluster_issuers, cluster_issuers);
        add(&mut self.gateways, gateways);
        add(&mut self.prometheuses, prometheuses);
        add(&mut self.alertmanagers, alertmanagers);
        add(&mut self.services, services);
        add(&mut self.endpoint_slices, endpoint_slices);
        add(&mut self.pdbs, pdbs);
        add(&mut self.backup_storage_locations, backup_storage_locations);
        add(&mut self.certificate_requests, certificate_requests);
        add(&mut self.crds, crds);
        add(&mut self.vulnerability_reports, vulnerability_reports);
        add(&mut self.volume_stats, volume_stats);
        self.coverage.extend(coverage);
        for (kind, n) in load.unknown_kinds {
            *self.load.unknown_kinds.entry(kind).or_default() += n;
        }
        add(&mut self.load.problems, load.problems);
        self.load.objects += load.objects;
        self.from_dump |= from_dump;
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
