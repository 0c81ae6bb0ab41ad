//! What ConfigMaps, Secrets and PersistentVolumeClaims are referenced, and by whom.
//!
//! A pod spec references a ConfigMap or Secret through `volumes` (`configMap`, `secret`,
//! `projected.sources[]`, and the `secretRef`s of volume plugins), `envFrom` and
//! `env[].valueFrom` of containers, init containers and ephemeral containers, and Secrets
//! also through `imagePullSecrets`. ServiceAccounts reference Secrets through `secrets` and
//! `imagePullSecrets`. PVCs are referenced through `persistentVolumeClaim.claimName`.
//! References are per namespace: a pod can only use objects of its own namespace.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar, PodSpec, ServiceAccount};

/// Referenced objects, as (namespace, name).
#[derive(Debug, Default, Clone)]
pub struct References {
    pub config_maps: HashSet<(String, String)>,
    pub secrets: HashSet<(String, String)>,
    pub pvcs: HashSet<(String, String)>,
}

impl References {
    fn cm(&mut self, ns: &str, name: Option<&str>) {
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            self.config_maps.insert((ns.to_string(), n.to_string()));
        }
    }

    fn secret(&mut self, ns: &str, name: Option<&str>) {
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            self.secrets.insert((ns.to_string(), n.to_string()));
        }
    }

    fn env(&mut self, ns: &str, env_from: Option<&[EnvFromSource]>, env: Option<&[EnvVar]>) {
        for f in env_from.unwrap_or_default() {
            self.cm(ns, f.config_map_ref.as_ref().map(|r| r.name.as_str()));
            self.secret(ns, f.secret_ref.as_ref().map(|r| r.name.as_str()));
        }
        for e in env.unwrap_or_default() {
            if let Some(v) = &e.value_from {
                self.cm(ns, v.config_map_key_ref.as_ref().map(|r| r.name.as_str()));
                self.secret(ns, v.secret_key_ref.as_ref().map(|r| r.name.as_str()));
            }
        }
    }

    /// Adds everything a pod spec in namespace `ns` references.
    pub fn add_pod_spec(&mut self, ns: &str, spec: &PodSpec) {
        for v in spec.volumes.as_deref().unwrap_or_default() {
            self.cm(ns, v.config_map.as_ref().map(|c| c.name.as_str()));
            self.secret(ns, v.secret.as_ref().and_then(|s| s.secret_name.as_deref()));
            if let Some(p) = &v.projected {
                for s in p.sources.as_deref().unwrap_or_default() {
                    self.cm(ns, s.config_map.as_ref().map(|c| c.name.as_str()));
                    self.secret(ns, s.secret.as_ref().map(|c| c.name.as_str()));
                }
            }
            if let Some(c) = &v.persistent_volume_claim {
                self.pvcs.insert((ns.to_string(), c.claim_name.clone()));
            }
            // Volume plugins that read credentials from a Secret.
            self.secret(ns, v.csi.as_ref().and_then(|c| c.node_publish_secret_ref.as_ref()).map(|r| r.name.as_str()));
            self.secret(ns, v.flex_volume.as_ref().and_then(|c| c.secret_ref.as_ref()).map(|r| r.name.as_str()));
            self.secret(ns, v.cephfs.as_ref().and_then(|c| c.secret_ref.as_ref()).map(|r| r.name.as_str()));
            self.secret(ns, v.rbd.as_ref().and_then(|c| c.secret_ref.as_ref()).map(|r| r.name.as_str()));
            self.secret(ns, v.iscsi.as_ref().and_then(|c| c.secret_ref.as_ref()).map(|r| r.name.as_str()));
            self.secret(ns, v.cinder.as_ref().and_then(|c| c.secret_ref.as_ref()).map(|r| r.name.as_str()));
            self.secret(ns, v.azure_file.as_ref().map(|c| c.secret_name.as_str()));
            self.secret(ns, v.scale_io.as_ref().map(|c| c.secret_ref.name.as_str()));
            self.secret(ns, v.storageos.as_ref().and_then(|c| c.secret_ref.as_ref()).map(|r| r.name.as_str()));
        }
        for c in spec.containers.iter().chain(spec.init_containers.as_deref().unwrap_or_default()) {
            self.env(ns, c.env_from.as_deref(), c.env.as_deref());
        }
        for c in spec.ephemeral_containers.as_deref().unwrap_or_default() {
            self.env(ns, c.env_from.as_deref(), c.env.as_deref());
        }
        for s in spec.image_pull_secrets.as_deref().unwrap_or_default() {
            self.secret(ns, Some(s.name.as_str()));
        }
    }

    /// Adds the Secrets a ServiceAccount references.
    pub fn add_service_account(&mut self, sa: &ServiceAccount) {
        let ns = sa.metadata.namespace.as_deref().unwrap_or("");
        for s in sa.secrets.as_deref().unwrap_or_default() {
            self.secret(ns, s.name.as_deref());
        }
        for s in sa.image_pull_secrets.as_deref().unwrap_or_default() {
            self.secret(ns, Some(s.name.as_str()));
        }
    }
}
