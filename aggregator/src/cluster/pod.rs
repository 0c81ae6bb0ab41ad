//! A compact Pod: the fields the checks and cleanup read, deserialized straight from the
//! API's (or kubectl's) Pod JSON.
//!
//! Why not k8s-openapi's `Pod`: its structs hold every optional field inline (a `Container`
//! is 2.3 KiB, a `Volume` 3.2 KiB before any content), so a typical pod takes ~12 KiB in
//! memory and 150,000 pods (issue 5's benchmark) ~1.8 GiB. This view keeps k8s-openapi's
//! types for metadata, conditions, container states and quantities, and only names where
//! a pod references ConfigMaps, Secrets and PVCs; it implements the k8s-openapi resource
//! traits, so kube's `Api<PodInfo>` lists pods into it directly. Unknown fields are
//! skipped while parsing. [`PodSpecInfo::from_spec`] gives the same view of a workload's
//! pod template.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Deserializer, Serialize};

/// `null` or absent as the default (the API omits empty lists, some tools write `null`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A Pod (v1) as the checks see it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodInfo {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: PodSpecInfo,
    #[serde(default, deserialize_with = "nullable")]
    pub status: PodStatusInfo,
}

/// A pod spec (or pod template spec) as the checks see it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecInfo {
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub containers: Vec<ContainerInfo>,
    #[serde(default, deserialize_with = "nullable")]
    pub init_containers: Vec<ContainerInfo>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) ephemeral_containers: Vec<ContainerInfo>,
    #[serde(default, deserialize_with = "nullable")]
    pub volumes: Vec<VolumeInfo>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) image_pull_secrets: Vec<NameRef>,
    #[serde(default)]
    pub(crate) overhead: Option<BTreeMap<String, Quantity>>,
    #[serde(default)]
    pub service_account_name: Option<String>,
}

impl PodSpecInfo {
    /// The view of a full pod spec (a workload's template).
    pub(crate) fn from_spec(spec: &PodSpec) -> PodSpecInfo {
        serde_json::to_value(spec)
            .and_then(serde_json::from_value)
            .unwrap_or_default()
    }
}

/// `{name: …}` (LocalObjectReference and the like).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRef {
    #[serde(default)]
    pub name: String,
}

/// A container, init container or ephemeral container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInfo {
    #[serde(default)]
    pub name: String,
    /// `Always` for a sidecar init container.
    #[serde(default)]
    pub(crate) restart_policy: Option<String>,
    #[serde(default)]
    pub resources: Option<ResourcesInfo>,
    #[serde(default, deserialize_with = "nullable")]
    pub env: Vec<EnvVarInfo>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) env_from: Vec<EnvFromInfo>,
    /// Kept only where a flag names an object (see [`crate::cleanup::references`]).
    #[serde(default, deserialize_with = "nullable")]
    pub command: Vec<String>,
    /// Kept only where a flag names an object.
    #[serde(default, deserialize_with = "nullable")]
    pub args: Vec<String>,
}

/// Requests and limits of a container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourcesInfo {
    #[serde(default)]
    pub requests: Option<RequestsInfo>,
    #[serde(default)]
    pub limits: Option<RequestsInfo>,
}

/// The CPU and memory requests or limits (other resources are not read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestsInfo {
    #[serde(default)]
    pub cpu: Option<Quantity>,
    #[serde(default)]
    pub memory: Option<Quantity>,
}

/// An env var: where its value comes from, and its name and value where a flag
/// expands it (`$(NAME)`) or a sidecar reads it (`LABEL`, `NAMESPACE` …).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub value_from: Option<EnvVarSourceInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSourceInfo {
    #[serde(default)]
    pub(crate) config_map_key_ref: Option<NameRef>,
    #[serde(default)]
    pub(crate) secret_key_ref: Option<NameRef>,
    #[serde(default)]
    pub field_ref: Option<FieldRefInfo>,
}

/// `fieldRef` of an env var (the downward API).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldRefInfo {
    #[serde(default)]
    pub field_path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EnvFromInfo {
    #[serde(default)]
    pub(crate) config_map_ref: Option<NameRef>,
    #[serde(default)]
    pub(crate) secret_ref: Option<NameRef>,
}

/// A volume; only what it references.
///
/// A volume has one source: each is boxed, so a volume takes 136 bytes plus its one
/// source instead of 360 with every source inline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub config_map: Option<Box<NameRef>>,
    #[serde(default)]
    pub secret: Option<Box<SecretVolumeInfo>>,
    #[serde(default)]
    pub projected: Option<Box<ProjectedInfo>>,
    #[serde(default)]
    pub persistent_volume_claim: Option<Box<ClaimInfo>>,
    #[serde(default)]
    pub csi: Option<Box<CsiInfo>>,
    #[serde(default)]
    pub(crate) cephfs: Option<Box<SecretRefHolder>>,
    #[serde(default)]
    pub rbd: Option<Box<SecretRefHolder>>,
    #[serde(default)]
    pub iscsi: Option<Box<SecretRefHolder>>,
    #[serde(default)]
    pub(crate) cinder: Option<Box<SecretRefHolder>>,
    #[serde(default)]
    pub(crate) flex_volume: Option<Box<SecretRefHolder>>,
    #[serde(default, rename = "scaleIO")]
    pub(crate) scale_io: Option<Box<SecretRefHolder>>,
    #[serde(default)]
    pub(crate) storageos: Option<Box<SecretRefHolder>>,
    #[serde(default)]
    pub(crate) azure_file: Option<Box<SecretVolumeInfo>>,
}

impl VolumeInfo {
    /// Secrets named by volume plugins (`csi.nodePublishSecretRef`, `secretRef` of cephfs,
    /// rbd, iscsi, cinder, flexVolume, scaleIO, storageos; `azureFile.secretName`).
    pub(crate) fn plugin_secrets(&self) -> impl Iterator<Item = &str> {
        let refs = [
            &self.cephfs,
            &self.rbd,
            &self.iscsi,
            &self.cinder,
            &self.flex_volume,
            &self.scale_io,
            &self.storageos,
        ];
        self.csi
            .as_ref()
            .and_then(|c| c.node_publish_secret_ref.as_ref())
            .map(|r| r.name.as_str())
            .into_iter()
            .chain(
                refs.into_iter()
                    .filter_map(|h| h.as_ref()?.secret_ref.as_ref().map(|r| r.name.as_str())),
            )
            .chain(
                self.azure_file
                    .as_ref()
                    .and_then(|a| a.secret_name.as_deref()),
            )
    }

    fn references_anything(&self) -> bool {
        self.config_map.is_some()
            || self.secret.is_some()
            || self.projected.is_some()
            || self.persistent_volume_claim.is_some()
            || self.plugin_secrets().next().is_some()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretVolumeInfo {
    #[serde(default)]
    pub secret_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProjectedInfo {
    #[serde(default, deserialize_with = "nullable")]
    pub sources: Vec<ProjectionInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectionInfo {
    #[serde(default)]
    pub config_map: Option<NameRef>,
    #[serde(default)]
    pub secret: Option<NameRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimInfo {
    #[serde(default)]
    pub claim_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsiInfo {
    #[serde(default)]
    pub(crate) node_publish_secret_ref: Option<NameRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRefHolder {
    #[serde(default)]
    pub(crate) secret_ref: Option<NameRef>,
}

/// A pod's status as the checks see it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatusInfo {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub(crate) start_time: Option<Time>,
    #[serde(default, deserialize_with = "nullable")]
    pub conditions: Vec<PodConditionInfo>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) container_statuses: Vec<ContainerStatusInfo>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) init_container_statuses: Vec<ContainerStatusInfo>,
}

/// A container's status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContainerStatusInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub(crate) restart_count: i32,
    /// `None` when the status has none or an empty one (`lastState: {}`).
    #[serde(default, deserialize_with = "state")]
    pub state: Option<ContainerStateInfo>,
    #[serde(default, deserialize_with = "state")]
    pub last_state: Option<ContainerStateInfo>,
}

/// A pod condition (`lastProbeTime` and `observedGeneration` are not read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodConditionInfo {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_transition_time: Option<Time>,
}

/// A container's state: running, terminated or waiting. The rare two are boxed, so a
/// status takes ~140 bytes instead of k8s-openapi's ~470 with both states inline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ContainerStateInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<ContainerStateRunningInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated: Option<Box<ContainerStateTerminatedInfo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Box<ContainerStateWaitingInfo>>,
}

impl ContainerStateInfo {
    fn is_empty(&self) -> bool {
        self.running.is_none() && self.terminated.is_none() && self.waiting.is_none()
    }
}

/// A state with none of the three set is no state (`lastState: {}` of a container that
/// never restarted).
fn state<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ContainerStateInfo>, D::Error> {
    Ok(Option::<ContainerStateInfo>::deserialize(d)?.filter(|s| !s.is_empty()))
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContainerStateRunningInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
}

/// A terminated state (`containerID` is not read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContainerStateTerminatedInfo {
    /// Required, as in k8s-openapi's `ContainerStateTerminated`.
    pub exit_code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) finished_at: Option<Time>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ContainerStateWaitingInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Whether [`PodInfo::compact`] keeps every pod's labels (see [`keep_labels`]).
static KEEP_LABELS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes [`PodInfo::compact`] keep every pod's labels from now on in this process: the
/// command line sets it for `--selector`, which shows findings by their objects' labels.
pub(crate) fn keep_labels() {
    KEEP_LABELS.store(true, std::sync::atomic::Ordering::Relaxed);
}

impl PodInfo {
    /// Releases spare capacity and what no check reads (labels and annotations except on
    /// Failed pods, which cleanup may propose and the protected list matches, and labels
    /// after [`keep_labels`]; managed fields, `generateName`, met conditions other than
    /// Ready, volumes, env vars and arguments that reference nothing).
    pub fn compact(&mut self) {
        if self.status.phase.as_deref() != Some("Failed") {
            self.metadata.annotations = None;
            if !KEEP_LABELS.load(std::sync::atomic::Ordering::Relaxed) {
                self.metadata.labels = None;
            }
        }
        self.metadata.managed_fields = None;
        self.metadata.generate_name = None;
        if let Some(o) = self.metadata.owner_references.as_mut() {
            o.shrink_to_fit();
        }
        // The checks read the Ready condition and the conditions that are not met.
        self.status
            .conditions
            .retain(|c| c.type_ == "Ready" || c.status != "True");
        self.status.conditions.shrink_to_fit();
        self.status.container_statuses.shrink_to_fit();
        self.status.init_container_statuses.shrink_to_fit();
        self.spec.volumes.retain(VolumeInfo::references_anything);
        for v in &mut self.spec.volumes {
            if let Some(p) = v.projected.as_mut() {
                p.sources
                    .retain(|s| s.config_map.is_some() || s.secret.is_some());
                p.sources.shrink_to_fit();
            }
        }
        self.spec.volumes.shrink_to_fit();
        for c in self
            .spec
            .containers
            .iter_mut()
            .chain(&mut self.spec.init_containers)
            .chain(&mut self.spec.ephemeral_containers)
        {
            crate::cleanup::references::compact_container(c);
            c.env.shrink_to_fit();
            c.env_from.shrink_to_fit();
        }
        self.spec.containers.shrink_to_fit();
        self.spec.init_containers.shrink_to_fit();
    }
}

impl k8s_openapi::Resource for PodInfo {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::ListableResource for PodInfo {
    const LIST_KIND: &'static str = "PodList";
}

impl k8s_openapi::Metadata for PodInfo {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_info_reads_references_and_skips_the_rest() {
        let p: PodInfo = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "n", "annotations": {"a": "b"}},
            "spec": {
                "containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "k"}}}],
                                "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}}}],
                "volumes": [
                    {"name": "e", "emptyDir": {}},
                    {"name": "c", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "s2"}}},
                    {"name": "a", "azureFile": {"secretName": "s3", "shareName": "x"}},
                    {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}
                ],
                "tolerations": [{"key": "x", "operator": "Exists"}]
            },
            "status": {"phase": "Running", "conditions": null}
        }))
        .unwrap();
        let mut p = p;
        p.compact();
        assert_eq!(p.metadata.annotations, None);
        assert_eq!(
            p.spec
                .volumes
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>(),
            vec!["c", "a", "d"]
        );
        assert_eq!(
            p.spec.volumes[0].plugin_secrets().collect::<Vec<_>>(),
            vec!["s2"]
        );
        assert_eq!(
            p.spec.volumes[1].plugin_secrets().collect::<Vec<_>>(),
            vec!["s3"]
        );
        assert_eq!(p.spec.containers[0].env.len(), 1);
        assert_eq!(p.status.phase.as_deref(), Some("Running"));
        assert!(p.status.conditions.is_empty());
    }

    #[test]
    fn container_states_and_conditions_keep_what_the_checks_read() {
        let mut p: PodInfo = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "generateName": "p-"},
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2025-01-01T00:00:00Z"},
                    {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": "containers with unready status: [a]", "lastTransitionTime": "2025-01-02T00:00:00Z", "observedGeneration": 3}
                ],
                "containerStatuses": [
                    {"name": "a", "image": "i", "restartCount": 4,
                     "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
                     "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "containerID": "containerd://x", "finishedAt": "2025-01-02T00:00:00Z"}}},
                    {"name": "b", "image": "i", "ready": true,
                     "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}, "lastState": {}}
                ]
            }
        }))
        .unwrap();
        p.compact();
        assert_eq!(p.metadata.generate_name, None);
        let ready = &p.status.conditions[0];
        assert_eq!(
            p.status.conditions.len(),
            1,
            "met conditions other than Ready go"
        );
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str()),
            ("Ready", "False")
        );
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [a]")
        );
        assert_eq!(
            ready.last_transition_time.as_ref().map(|t| t.0.to_string()),
            Some("2025-01-02T00:00:00Z".to_string())
        );
        let [a, b] = &p.status.container_statuses[..] else {
            panic!("two statuses: {:?}", p.status.container_statuses);
        };
        let waiting = a.state.as_ref().and_then(|s| s.waiting.as_ref()).unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(waiting.message.as_deref(), Some("back-off 5m0s"));
        let t = a
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (137, Some("OOMKilled")));
        assert_eq!(
            t.finished_at.as_ref().map(|t| t.0.to_string()),
            Some("2025-01-02T00:00:00Z".to_string())
        );
        assert!(b.state.as_ref().is_some_and(|s| s.running.is_some()));
        assert_eq!(b.last_state, None, "an empty lastState is no state");
    }

    #[test]
    fn a_terminated_state_without_exit_code_is_rejected_as_k8s_openapi_does() {
        let e = serde_json::from_value::<PodInfo>(serde_json::json!({
            "status": {"containerStatuses": [{"name": "a", "state": {"terminated": {"reason": "Error"}}}]}
        }))
        .unwrap_err();
        assert!(e.to_string().contains("exitCode"), "{e}");
    }
}
