//! The labels and owners of the objects findings and proposals name, looked up in a
//! [`ClusterState`]: what `checks.exclude` selectors, `-l/--selector` and the `OWNER`
//! column read.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{ClusterState, Resource};
use crate::checks::ObjectRef;

/// (kind, namespace or `""`, name).
type Key<'a> = (&'a str, &'a str, &'a str);

/// An indexed object: its metadata, and the labels it is matched by.
#[derive(Debug, Clone, Copy)]
struct Entry<'a> {
    meta: &'a ObjectMeta,
    labels: Option<&'a BTreeMap<String, String>>,
}

/// The metadata (labels, owners) of every object of a [`ClusterState`], by kind,
/// namespace and name; indexed on first use, so that what looks nothing up costs
/// nothing.
#[derive(Debug)]
pub struct LabelIndex<'a> {
    state: Option<&'a ClusterState>,
    /// Whether a pod without labels takes those of its controller's pod template.
    template_labels: bool,
    map: OnceLock<HashMap<Key<'a>, Entry<'a>>>,
}

impl<'a> LabelIndex<'a> {
    /// The objects of `state` with their own labels (none at all when `wanted` is false:
    /// nothing needs labels then).
    #[must_use]
    pub fn new(state: &'a ClusterState, wanted: bool) -> LabelIndex<'a> {
        LabelIndex::of(wanted.then_some(state), false)
    }

    /// The objects of `state`, where a pod without labels has those of its controller's
    /// pod template (a ReplicaSet's, StatefulSet's, DaemonSet's or Job's): the loader
    /// drops the labels of pods that are not Failed (memory: 150,000 pods), and a pod's
    /// labels are its template's (plus a hash label). What `checks.exclude` selectors
    /// match.
    #[must_use]
    pub fn with_template_labels(state: &'a ClusterState) -> LabelIndex<'a> {
        LabelIndex::of(Some(state), true)
    }

    fn of(state: Option<&'a ClusterState>, template_labels: bool) -> LabelIndex<'a> {
        LabelIndex {
            state,
            template_labels,
            map: OnceLock::new(),
        }
    }

    /// The labels of `o`, when it is in the state and has any.
    #[must_use]
    pub fn get(&self, o: &ObjectRef) -> Option<&'a BTreeMap<String, String>> {
        self.entry(o)?.labels
    }

    /// The owner of `o` as `Kind/name` (its controller, else its first owner reference),
    /// or empty.
    #[must_use]
    pub fn owner(&self, o: &ObjectRef) -> String {
        let Some(refs) = self.entry(o).and_then(|e| e.meta.owner_references.as_ref()) else {
            return String::new();
        };
        refs.iter()
            .find(|r| r.controller == Some(true))
            .or_else(|| refs.first())
            .map_or_else(String::new, |r| format!("{}/{}", r.kind, r.name))
    }

    fn entry(&self, o: &ObjectRef) -> Option<Entry<'a>> {
        let map = self.map.get_or_init(|| self.build());
        map.get(&(
            o.kind.as_str(),
            o.namespace.as_deref().unwrap_or(""),
            o.name.as_str(),
        ))
        .copied()
    }

    fn build(&self) -> HashMap<Key<'a>, Entry<'a>> {
        let mut map = HashMap::new();
        let Some(state) = self.state else {
            return map;
        };
        let templates = if self.template_labels {
            pod_templates(state)
        } else {
            HashMap::new()
        };
        state.for_each_meta(|r, meta| {
            // No finding or proposal names an Event.
            if r == Resource::Event {
                return;
            }
            let Some(name) = meta.name.as_deref() else {
                return;
            };
            let ns = meta.namespace.as_deref().unwrap_or("");
            let labels = match &meta.labels {
                None if r == Resource::Pod => controller(meta)
                    .and_then(|(kind, owner)| templates.get(&(kind, ns, owner)).copied()),
                labels => labels.as_ref(),
            };
            map.insert((r.kind(), ns, name), Entry { meta, labels });
        });
        map
    }
}

/// The controller of an object, as (kind, name).
fn controller(meta: &ObjectMeta) -> Option<(&str, &str)> {
    let o = meta
        .owner_references
        .as_deref()?
        .iter()
        .find(|o| o.controller == Some(true))?;
    Some((o.kind.as_str(), o.name.as_str()))
}

/// The pod template labels of the controllers of pods, by (kind, namespace, name).
fn pod_templates(state: &ClusterState) -> HashMap<Key<'_>, &BTreeMap<String, String>> {
    type Templates<'s> = HashMap<Key<'s>, &'s BTreeMap<String, String>>;
    fn put<'s>(
        out: &mut Templates<'s>,
        kind: &'s str,
        m: &'s ObjectMeta,
        t: Option<&'s ObjectMeta>,
    ) {
        if let (Some(labels), Some(name)) = (t.and_then(|t| t.labels.as_ref()), m.name.as_deref()) {
            out.insert((kind, m.namespace.as_deref().unwrap_or(""), name), labels);
        }
    }
    let mut out = Templates::new();
    for o in &state.replica_sets {
        let t = o.spec.template.as_ref().and_then(|t| t.metadata.as_ref());
        put(&mut out, "ReplicaSet", &o.metadata, t);
    }
    for o in &state.stateful_sets {
        put(
            &mut out,
            "StatefulSet",
            &o.metadata,
            o.spec.template.metadata.as_ref(),
        );
    }
    for o in &state.daemon_sets {
        put(
            &mut out,
            "DaemonSet",
            &o.metadata,
            o.spec.template.metadata.as_ref(),
        );
    }
    for o in &state.jobs {
        let t = o.spec.as_ref().and_then(|s| s.template.metadata.as_ref());
        put(&mut out, "Job", &o.metadata, t);
    }
    out
}
