//! Containers that declare no CPU/memory requests or no limits (Popeye's `POP-106`/`POP-107`,
//! k8sgpt's resource analyzer): without requests the scheduler places a pod blind and it is
//! among the first evicted under pressure (BestEffort); without limits one container can
//! take a node's whole memory.
//!
//! Judged on what an operator edits: the pod templates of Deployments, StatefulSets,
//! DaemonSets, CronJobs (their job template) and Jobs no CronJob owns, and pods no
//! controller owns. Init containers (sidecars included) count too, named `init:NAME`. One
//! finding per object and code, naming its containers.
//!
//! Codes:
//! - `container_no_requests` (warning): containers with neither a CPU nor a memory request.
//! - `container_no_limits` (info): containers with neither a CPU nor a memory limit.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{
    CheckResult, ChecksConfig, Finding, ObjectRef, Severity, all_not_applicable, coverage_findings,
};
use crate::cluster::pod::ContainerInfo;
use crate::cluster::{ClusterState, Resource};

/// Requests and limits of one container: (has a CPU or memory request, has a CPU or memory limit).
type Declared = (bool, bool);

fn of_container(c: &Container) -> Declared {
    let r = c.resources.as_ref();
    let has = |m: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >| { m.is_some_and(|m| m.contains_key("cpu") || m.contains_key("memory")) };
    (
        has(r.and_then(|r| r.requests.as_ref())),
        has(r.and_then(|r| r.limits.as_ref())),
    )
}

fn of_info(c: &ContainerInfo) -> Declared {
    let r = c.resources.as_ref();
    let has = |q: Option<&crate::cluster::pod::RequestsInfo>| {
        q.is_some_and(|q| q.cpu.is_some() || q.memory.is_some())
    };
    (
        has(r.and_then(|r| r.requests.as_ref())),
        has(r.and_then(|r| r.limits.as_ref())),
    )
}

/// Adds the findings of one object whose containers are `(name, declared)`; true when any.
fn judge(
    kind: &str,
    meta: &ObjectMeta,
    containers: impl Iterator<Item = (String, Declared)>,
    out: &mut Vec<Finding>,
) -> bool {
    let (mut no_req, mut no_lim) = (Vec::new(), Vec::new());
    for (name, (req, lim)) in containers {
        if !req {
            no_req.push(name.clone());
        }
        if !lim {
            no_lim.push(name);
        }
    }
    let obj = || ObjectRef::new(kind, meta);
    let plural = |v: &[String]| {
        if v.len() == 1 {
            "container"
        } else {
            "containers"
        }
    };
    if !no_req.is_empty() {
        out.push(Finding::new(
            "container_no_requests",
            Severity::Warning,
            obj(),
            format!(
                "{} {} {} no CPU or memory request (BestEffort: placed blind, evicted first)",
                plural(&no_req),
                no_req.join(", "),
                if no_req.len() == 1 { "has" } else { "have" }
            ),
        ));
    }
    if !no_lim.is_empty() {
        out.push(Finding::new(
            "container_no_limits",
            Severity::Info,
            obj(),
            format!(
                "{} {} {} no CPU or memory limit",
                plural(&no_lim),
                no_lim.join(", "),
                if no_lim.len() == 1 { "has" } else { "have" }
            ),
        ));
    }
    !no_req.is_empty() || !no_lim.is_empty()
}

/// The containers of a pod template, init containers (sidecars included) as `init:NAME`.
fn template(spec: Option<&PodSpec>) -> impl Iterator<Item = (String, Declared)> {
    spec.into_iter().flat_map(|s| {
        s.init_containers
            .iter()
            .flatten()
            .map(|c| (format!("init:{}", c.name), of_container(c)))
            .chain(
                s.containers
                    .iter()
                    .map(|c| (c.name.clone(), of_container(c))),
            )
    })
}

/// Runs the resources check.
pub(crate) fn check(state: &ClusterState, _config: &ChecksConfig, _now: Timestamp) -> CheckResult {
    let inputs = [
        Resource::Deployment,
        Resource::StatefulSet,
        Resource::DaemonSet,
        Resource::Job,
        Resource::CronJob,
        Resource::Pod,
    ];
    if let Some(reason) = all_not_applicable(state, &inputs) {
        return CheckResult::not_applicable("resources", reason);
    }
    let mut findings = coverage_findings(state, &inputs);
    let (mut judged, mut bad) = (0usize, 0usize);
    for d in &state.deployments {
        judged += 1;
        let spec = d.spec.template.spec.as_ref();
        bad += usize::from(judge(
            "Deployment",
            &d.metadata,
            template(spec),
            &mut findings,
        ));
    }
    for s in &state.stateful_sets {
        judged += 1;
        let spec = s.spec.template.spec.as_ref();
        bad += usize::from(judge(
            "StatefulSet",
            &s.metadata,
            template(spec),
            &mut findings,
        ));
    }
    for d in &state.daemon_sets {
        judged += 1;
        let spec = d.spec.template.spec.as_ref();
        bad += usize::from(judge(
            "DaemonSet",
            &d.metadata,
            template(spec),
            &mut findings,
        ));
    }
    let cron_owned = |meta: &ObjectMeta| {
        meta.owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| o.kind == "CronJob"))
    };
    for j in &state.jobs {
        // A CronJob's Jobs are judged by its job template, below.
        if cron_owned(&j.metadata) {
            continue;
        }
        judged += 1;
        let spec = j.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        bad += usize::from(judge("Job", &j.metadata, template(spec), &mut findings));
    }
    for c in &state.cron_jobs {
        judged += 1;
        let spec = c
            .spec
            .job_template
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref());
        bad += usize::from(judge("CronJob", &c.metadata, template(spec), &mut findings));
    }
    for p in &state.pods {
        let owned = p
            .metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| o.controller == Some(true)));
        if owned {
            continue;
        }
        judged += 1;
        let containers = p
            .spec
            .init_containers
            .iter()
            .map(|c| (format!("init:{}", c.name), of_info(c)))
            .chain(
                p.spec
                    .containers
                    .iter()
                    .map(|c| (c.name.clone(), of_info(c))),
            );
        bad += usize::from(judge("Pod", &p.metadata, containers, &mut findings));
    }
    CheckResult::new(
        "resources",
        format!("{judged} workloads and unowned pods, {bad} without requests or limits"),
        findings,
    )
    .with_objects(judged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(json: &str) -> ClusterState {
        let mut s = ClusterState::default();
        crate::cluster::dump::load_bytes(&mut s, std::path::Path::new("t.json"), json.as_bytes());
        assert!(s.load.problems.is_empty(), "{:?}", s.load.problems);
        s
    }

    #[test]
    fn templates_and_unowned_pods_without_requests_or_limits_are_reported() {
        let s = state(
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop"},
                "spec":{"selector":{},"template":{"spec":{"containers":[
                  {"name":"app","image":"a","resources":{"requests":{"cpu":"100m"},"limits":{"memory":"1Gi"}}},
                  {"name":"proxy","image":"p"},
                  {"name":"log","image":"l","resources":{"limits":{"cpu":"1"}}}]}}}}
               {"apiVersion":"v1","kind":"Pod","metadata":{"name":"debug","namespace":"shop"},"spec":{"containers":[{"name":"sh","image":"busybox","resources":{}}]}}
               {"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-1","namespace":"shop","ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-1","uid":"u","controller":true}]},"spec":{"containers":[{"name":"app","image":"a"}]}}
               {"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"db","namespace":"shop"},
                "spec":{"selector":{},"serviceName":"db","template":{"spec":{"containers":[{"name":"pg","image":"pg","resources":{"requests":{"memory":"1Gi"},"limits":{"memory":"1Gi"}}}]}}}}"#,
        );
        let r = check(&s, &ChecksConfig::default(), Timestamp::UNIX_EPOCH);
        let got: Vec<(String, Severity, String, String)> = r
            .findings
            .iter()
            .map(|f| {
                (
                    f.code.clone(),
                    f.severity,
                    f.object.to_string(),
                    f.message.clone(),
                )
            })
            .collect();
        let mut want: Vec<(String, Severity, String, String)> = vec![
                (
                    "container_no_requests".into(),
                    Severity::Warning,
                    "Deployment/shop/web".into(),
                    "containers proxy, log have no CPU or memory request (BestEffort: placed blind, evicted first)".into()
                ),
                (
                    "container_no_requests".into(),
                    Severity::Warning,
                    "Pod/shop/debug".into(),
                    "container sh has no CPU or memory request (BestEffort: placed blind, evicted first)".into()
                ),
                (
                    "container_no_limits".into(),
                    Severity::Info,
                    "Deployment/shop/web".into(),
                    "container proxy has no CPU or memory limit".into()
                ),
                (
                    "container_no_limits".into(),
                    Severity::Info,
                    "Pod/shop/debug".into(),
                    "container sh has no CPU or memory limit".into()
                ),
            ];
        // Worst first, then by code, namespace and name.
        want.swap(0, 1);
        want.swap(2, 3);
        assert_eq!(got, want);
        assert_eq!(
            r.objects,
            Some(3),
            "the Deployment, StatefulSet and the unowned pod"
        );
        assert_eq!(r.severity, Severity::Warning);
    }

    #[test]
    fn init_containers_and_job_and_cronjob_templates_are_judged() {
        let s = state(
            r#"{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"report","namespace":"batch","uid":"c1"},
                "spec":{"schedule":"0 3 * * *","jobTemplate":{"spec":{"template":{"spec":{"restartPolicy":"OnFailure","containers":[
                  {"name":"run","image":"r","resources":{"requests":{"cpu":"100m","memory":"64Mi"},"limits":{"memory":"256Mi"}}}]}}}}}}
               {"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"report-29001","namespace":"batch","ownerReferences":[{"apiVersion":"batch/v1","kind":"CronJob","name":"report","uid":"c1","controller":true}]},
                "spec":{"template":{"spec":{"restartPolicy":"OnFailure","containers":[{"name":"run","image":"r"}]}}}}
               {"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"migrate","namespace":"batch"},
                "spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"m","image":"m"}]}}}}
               {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop"},
                "spec":{"selector":{},"template":{"spec":{
                  "initContainers":[{"name":"setup","image":"s"},{"name":"mesh","image":"p","restartPolicy":"Always","resources":{"requests":{"cpu":"10m"},"limits":{"cpu":"1"}}}],
                  "containers":[{"name":"app","image":"a","resources":{"requests":{"cpu":"100m"},"limits":{"memory":"1Gi"}}}]}}}}
               {"apiVersion":"v1","kind":"Pod","metadata":{"name":"debug","namespace":"shop"},"spec":{
                  "initContainers":[{"name":"wait","image":"busybox"}],
                  "containers":[{"name":"sh","image":"busybox","resources":{"requests":{"cpu":"1m"},"limits":{"cpu":"1"}}}]}}"#,
        );
        let r = check(&s, &ChecksConfig::default(), Timestamp::UNIX_EPOCH);
        let got: Vec<(String, String, String)> = r
            .findings
            .iter()
            .map(|f| (f.code.clone(), f.object.to_string(), f.message.clone()))
            .collect();
        let row = |c: &str, o: &str, m: &str| (c.to_string(), o.to_string(), m.to_string());
        assert_eq!(
            got,
            vec![
                row(
                    "container_no_requests",
                    "Job/batch/migrate",
                    "container m has no CPU or memory request (BestEffort: placed blind, evicted first)"
                ),
                // Same namespace: by name.
                row(
                    "container_no_requests",
                    "Pod/shop/debug",
                    "container init:wait has no CPU or memory request (BestEffort: placed blind, evicted first)"
                ),
                row(
                    "container_no_requests",
                    "Deployment/shop/web",
                    "container init:setup has no CPU or memory request (BestEffort: placed blind, evicted first)"
                ),
                row(
                    "container_no_limits",
                    "Job/batch/migrate",
                    "container m has no CPU or memory limit"
                ),
                // Same namespace: by name.
                row(
                    "container_no_limits",
                    "Pod/shop/debug",
                    "container init:wait has no CPU or memory limit"
                ),
                row(
                    "container_no_limits",
                    "Deployment/shop/web",
                    "container init:setup has no CPU or memory limit"
                ),
            ]
        );
        // The CronJob, the Job it does not own, the Deployment and the pod; the CronJob's
        // own Job is judged by its template.
        assert_eq!(r.objects, Some(4));
    }
}
