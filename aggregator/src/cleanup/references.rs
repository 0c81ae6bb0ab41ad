//! What ConfigMaps, Secrets and PersistentVolumeClaims are referenced, and by whom.
//!
//! A pod spec references a ConfigMap or Secret through `volumes` (`configMap`, `secret`,
//! `projected.sources[]`, and the `secretRef`s of volume plugins), `envFrom` and
//! `env[].valueFrom` of containers, init containers and ephemeral containers, and Secrets
//! also through `imagePullSecrets`. ServiceAccounts reference Secrets through `secrets` and
//! `imagePullSecrets`. PVCs are referenced through `persistentVolumeClaim.claimName`.
//! References are per namespace: a pod can only use objects of its own namespace.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{PodSpec, ServiceAccount};

use crate::cluster::pod::PodSpecInfo;

/// Referenced objects, as (namespace, name).
#[derive(Debug, Default, Clone)]
pub struct References {
    pub config_maps: HashSet<(String, String)>,
    pub secrets: HashSet<(String, String)>,
    pub pvcs: HashSet<(String, String)>,
}

fn add(set: &mut HashSet<(String, String)>, ns: &str, name: Option<&str>) {
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        set.insert((ns.to_string(), n.to_string()));
    }
}

impl References {
    /// Adds everything a pod spec in namespace `ns` references.
    pub fn add_pod_spec(&mut self, ns: &str, spec: &PodSpecInfo) {
        for v in &spec.volumes {
            add(
                &mut self.config_maps,
                ns,
                v.config_map.as_ref().map(|c| c.name.as_str()),
            );
            add(
                &mut self.secrets,
                ns,
                v.secret.as_ref().and_then(|s| s.secret_name.as_deref()),
            );
            if let Some(p) = &v.projected {
                for s in &p.sources {
                    add(
                        &mut self.config_maps,
                        ns,
                        s.config_map.as_ref().map(|c| c.name.as_str()),
                    );
                    add(
                        &mut self.secrets,
                        ns,
                        s.secret.as_ref().map(|c| c.name.as_str()),
                    );
                }
            }
            add(
                &mut self.pvcs,
                ns,
                v.persistent_volume_claim
                    .as_ref()
                    .map(|c| c.claim_name.as_str()),
            );
            for s in v.plugin_secrets() {
                add(&mut self.secrets, ns, Some(s));
            }
        }
        for c in spec
            .containers
            .iter()
            .chain(&spec.init_containers)
            .chain(&spec.ephemeral_containers)
        {
            for f in &c.env_from {
                add(
                    &mut self.config_maps,
                    ns,
                    f.config_map_ref.as_ref().map(|r| r.name.as_str()),
                );
                add(
                    &mut self.secrets,
                    ns,
                    f.secret_ref.as_ref().map(|r| r.name.as_str()),
                );
            }
            for e in &c.env {
                if let Some(v) = &e.value_from {
                    add(
                        &mut self.config_maps,
                        ns,
                        v.config_map_key_ref.as_ref().map(|r| r.name.as_str()),
                    );
                    add(
                        &mut self.secrets,
                        ns,
                        v.secret_key_ref.as_ref().map(|r| r.name.as_str()),
                    );
                }
            }
        }
        for s in &spec.image_pull_secrets {
            add(&mut self.secrets, ns, Some(s.name.as_str()));
        }
    }

    /// Adds everything a workload's pod template in namespace `ns` references.
    pub fn add_template(&mut self, ns: &str, spec: &PodSpec) {
        self.add_pod_spec(ns, &PodSpecInfo::from_spec(spec));
    }

    /// Adds the Secrets a ServiceAccount references.
    pub fn add_service_account(&mut self, sa: &ServiceAccount) {
        let ns = sa.metadata.namespace.as_deref().unwrap_or("");
        for s in sa.secrets.as_deref().unwrap_or_default() {
            add(&mut self.secrets, ns, s.name.as_deref());
        }
        for s in sa.image_pull_secrets.as_deref().unwrap_or_default() {
            add(&mut self.secrets, ns, Some(s.name.as_str()));
        }
    }
}
