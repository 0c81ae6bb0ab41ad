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

use k8s_openapi::api::core::v1::{ContainerState, PodCondition, PodSpec};
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
    pub ephemeral_containers: Vec<ContainerInfo>,
    #[serde(default, deserialize_with = "nullable")]
    pub volumes: Vec<VolumeInfo>,
    #[serde(default, deserialize_with = "nullable")]
    pub image_pull_secrets: Vec<NameRef>,
    #[serde(default)]
    pub overhead: Option<BTreeMap<String, Quantity>>,
    #[serde(default)]
    pub service_account_name: Option<String>,
}

impl PodSpecInfo {
    /// The view of a full pod spec (a workload's template).
    pub fn from_spec(spec: &PodSpec) -> PodSpecInfo {
        serde_json::to_value(spec).and_then(serde_json::from_value).unwrap_or_default()
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
    pub restart_policy: Option<String>,
    #[serde(default)]
    pub resources: Option<ResourcesInfo>,
    #[serde(default, deserialize_with = "nullable")]
    pub env: Vec<EnvVarInfo>,
    #[serde(default, deserialize_with = "nullable")]
    pub env_from: Vec<EnvFromInfo>,
}

/// Requests of a container (limits are not read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourcesInfo {
    #[serde(default)]
    pub requests: Option<BTreeMap<String, Quantity>>,
}

/// An env var; only where its value comes from matters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarInfo {
    #[serde(default)]
    pub value_from: Option<EnvVarSourceInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSourceInfo {
    #[serde(default)]
    pub config_map_key_ref: Option<NameRef>,
    #[serde(default)]
    pub secret_key_ref: Option<NameRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvFromInfo {
    #[serde(default)]
    pub config_map_ref: Option<NameRef>,
    #[serde(default)]
    pub secret_ref: Option<NameRef>,
}

/// A volume; only what it references.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub config_map: Option<NameRef>,
    #[serde(default)]
    pub secret: Option<SecretVolumeInfo>,
    #[serde(default)]
    pub projected: Option<ProjectedInfo>,
    #[serde(default)]
    pub persistent_volume_claim: Option<ClaimInfo>,
    /// Secrets named by volume plugins (`csi.nodePublishSecretRef`, `secretRef` of cephfs,
    /// rbd, iscsi, cinder, flexVolume, scaleIO, storageos; `azureFile.secretName`).
    #[serde(default, flatten, deserialize_with = "plugin_secrets", skip_serializing)]
    pub plugin_secrets: Vec<String>,
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

/// Collects the Secret names of volume plugins from the volume's remaining fields.
fn plugin_secrets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Plugins {
        #[serde(default)]
        csi: Option<CsiRef>,
        #[serde(default)]
        cephfs: Option<SecretRefHolder>,
        #[serde(default)]
        rbd: Option<SecretRefHolder>,
        #[serde(default)]
        iscsi: Option<SecretRefHolder>,
        #[serde(default)]
        cinder: Option<SecretRefHolder>,
        #[serde(default)]
        flex_volume: Option<SecretRefHolder>,
        #[serde(default, rename = "scaleIO")]
        scale_io: Option<SecretRefHolder>,
        #[serde(default)]
        storageos: Option<SecretRefHolder>,
        #[serde(default)]
        azure_file: Option<AzureFile>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct CsiRef {
        #[serde(default)]
        node_publish_secret_ref: Option<NameRef>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct SecretRefHolder {
        #[serde(default)]
        secret_ref: Option<NameRef>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct AzureFile {
        #[serde(default)]
        secret_name: Option<String>,
    }
    let p = Plugins::deserialize(d)?;
    let mut out = Vec::new();
    out.extend(p.csi.and_then(|c| c.node_publish_secret_ref).map(|r| r.name));
    for h in [p.cephfs, p.rbd, p.iscsi, p.cinder, p.flex_volume, p.scale_io, p.storageos].into_iter().flatten() {
        out.extend(h.secret_ref.map(|r| r.name));
    }
    out.extend(p.azure_file.and_then(|a| a.secret_name));
    Ok(out)
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
    pub start_time: Option<Time>,
    #[serde(default, deserialize_with = "nullable")]
    pub conditions: Vec<PodCondition>,
    #[serde(default, deserialize_with = "nullable")]
    pub container_statuses: Vec<ContainerStatusInfo>,
    #[serde(default, deserialize_with = "nullable")]
    pub init_container_statuses: Vec<ContainerStatusInfo>,
}

/// A container's status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatusInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub restart_count: i32,
    #[serde(default)]
    pub state: Option<ContainerState>,
    #[serde(default)]
    pub last_state: Option<ContainerState>,
}

impl PodInfo {
    /// Releases spare capacity and what no check reads (annotations, managed fields).
    pub fn compact(&mut self) {
        self.metadata.annotations = None;
        self.metadata.managed_fields = None;
        self.status.conditions.shrink_to_fit();
        self.status.container_statuses.shrink_to_fit();
        self.status.init_container_statuses.shrink_to_fit();
        self.spec.volumes.retain(|v| {
            v.config_map.is_some() || v.secret.is_some() || v.projected.is_some() || v.persistent_volume_claim.is_some() || !v.plugin_secrets.is_empty()
        });
        for v in &mut self.spec.volumes {
            if let Some(p) = v.projected.as_mut() {
                p.sources.retain(|s| s.config_map.is_some() || s.secret.is_some());
                p.sources.shrink_to_fit();
            }
        }
        self.spec.volumes.shrink_to_fit();
        for c in self.spec.containers.iter_mut().chain(&mut self.spec.init_containers).chain(&mut self.spec.ephemeral_containers) {
            c.env.retain(|e| e.value_from.as_ref().is_some_and(|v| v.config_map_key_ref.is_some() || v.secret_key_ref.is_some()));
            c.env.shrink_to_fit();
            c.env_from.shrink_to_fit();
        }
        self.spec.containers.shrink_to_fit();
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
        assert_eq!(p.spec.volumes.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), vec!["c", "a", "d"]);
        assert_eq!(p.spec.volumes[0].plugin_secrets, vec!["s2"]);
        assert_eq!(p.spec.volumes[1].plugin_secrets, vec!["s3"]);
        assert_eq!(p.spec.containers[0].env.len(), 1);
        assert_eq!(p.status.phase.as_deref(), Some("Running"));
        assert!(p.status.conditions.is_empty());
    }
}
