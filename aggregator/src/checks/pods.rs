//! Pod health: the `kubectl get pods -A | grep -v Running` review, done by the fields.
//!
//! Codes (one finding per pod and code):
//! - `crash_loop_back_off` (critical): a container waits in CrashLoopBackOff, whatever the
//!   pod's phase (a crash-looping pod is usually `Running`); the message gives the last
//!   termination's reason and exit code (`OOMKilled`, 137) when the status has them.
//! - `init_crash_loop_back_off` (critical): an init container does.
//! - `image_pull_back_off` (critical): a container or init container cannot pull its image
//!   (`ImagePullBackOff`, `ErrImagePull`, `InvalidImageName`).
//! - `evicted` (warning): phase Failed with reason Evicted; `failed` (warning): other Failed.
//! - `pending` (warning): Pending longer than `pending_grace` (and not already explained by
//!   an image pull or init container finding); `at` is the pod's creation.
//! - `not_ready` (warning): Running but not Ready for longer than `not_ready_grace`; `at` is
//!   when it stopped being Ready.
//!
//! Messages carry no relative ages ("for 3m"): times are the finding's `at`, so a message
//! changes only when the problem does.
//! - `unknown_phase` (warning): phase Unknown (its node stopped reporting).
//! - `restarts` (warning): a container restarted more than `restart_threshold` times and its
//!   last restart ended within `restart_window`.

use jiff::Timestamp;

use super::time::{age, human, sd};
use super::{
    CheckResult, ChecksConfig, Finding, ObjectRef, Severity, all_not_applicable, coverage_findings,
};
use crate::cluster::pod::{ContainerStatusInfo as ContainerStatus, PodInfo as Pod};
use crate::cluster::{ClusterState, Resource};

const IMAGE_PULL_REASONS: &[&str] = &["ImagePullBackOff", "ErrImagePull", "InvalidImageName"];

/// Runs the pods check.
pub fn check(state: &ClusterState, config: &ChecksConfig, now: Timestamp) -> CheckResult {
    let inputs = [Resource::Pod];
    if let Some(reason) = all_not_applicable(state, &inputs) {
        return CheckResult::not_applicable("pods", reason);
    }
    let mut findings = coverage_findings(state, &inputs);
    let mut unhealthy = 0usize;
    for pod in &state.pods {
        let before = findings.len();
        pod_findings(pod, config, now, &mut findings);
        if findings.len() > before {
            unhealthy += 1;
        }
    }
    CheckResult::new(
        "pods",
        format!("{} pods, {} with problems", state.pods.len(), unhealthy),
        findings,
    )
    .with_objects(state.pods.len())
}

fn waiting_reason(s: &ContainerStatus) -> Option<&str> {
    s.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}

fn waiting_message(s: &ContainerStatus) -> String {
    match s
        .state
        .as_ref()
        .and_then(|st| st.waiting.as_ref())
        .and_then(|w| w.message.as_deref())
    {
        Some(m) if !m.is_empty() => format!(": {m}"),
        _ => String::new(),
    }
}

/// `, last terminated OOMKilled (exit code 137)`: why the container last stopped, the
/// first thing to look at in a crash loop (`kubectl describe pod`'s "Last State").
fn last_termination(s: &ContainerStatus) -> String {
    let Some(t) = s.last_state.as_ref().and_then(|l| l.terminated.as_ref()) else {
        return String::new();
    };
    match t.reason.as_deref() {
        Some(r) if !r.is_empty() => format!(", last terminated {r} (exit code {})", t.exit_code),
        _ => format!(", last terminated with exit code {}", t.exit_code),
    }
}

fn last_finished(s: &ContainerStatus) -> Option<Timestamp> {
    s.last_state
        .as_ref()?
        .terminated
        .as_ref()?
        .finished_at
        .as_ref()
        .map(|t| t.0)
}

/// The findings of one pod, appended to `out`.
pub(crate) fn pod_findings(
    pod: &Pod,
    config: &ChecksConfig,
    now: Timestamp,
    out: &mut Vec<Finding>,
) {
    let cfg = &config.pods;
    let obj = || ObjectRef::new("Pod", &pod.metadata);
    let status = &pod.status;
    let phase = status.phase.as_deref().unwrap_or("");
    let containers = &status.container_statuses[..];
    let inits = &status.init_container_statuses[..];

    let mut explained = false;
    let crash: Vec<&ContainerStatus> = containers
        .iter()
        .filter(|c| waiting_reason(c) == Some("CrashLoopBackOff"))
        .collect();
    if let Some(first) = crash.first() {
        explained = true;
        let names: Vec<&str> = crash.iter().map(|c| c.name.as_str()).collect();
        out.push(Finding::new(
            "crash_loop_back_off",
            Severity::Critical,
            obj(),
            format!(
                "container {} in CrashLoopBackOff (restarted {} times{}, phase {phase}){}",
                names.join(", "),
                first.restart_count,
                last_termination(first),
                waiting_message(first)
            ),
        ));
    }
    if let Some(c) = inits
        .iter()
        .find(|c| waiting_reason(c) == Some("CrashLoopBackOff"))
    {
        explained = true;
        out.push(Finding::new(
            "init_crash_loop_back_off",
            Severity::Critical,
            obj(),
            format!(
                "init container {} in CrashLoopBackOff (restarted {} times){}",
                c.name,
                c.restart_count,
                waiting_message(c)
            ),
        ));
    }
    if let Some(c) = inits
        .iter()
        .chain(containers)
        .find(|c| waiting_reason(c).is_some_and(|r| IMAGE_PULL_REASONS.contains(&r)))
    {
        explained = true;
        let image = if c.image.is_empty() {
            String::new()
        } else {
            format!(" {}", c.image)
        };
        out.push(Finding::new(
            "image_pull_back_off",
            Severity::Critical,
            obj(),
            format!(
                "container {} cannot pull image{image} ({}){}",
                c.name,
                waiting_reason(c).unwrap_or(""),
                waiting_message(c)
            ),
        ));
    }

    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    match phase {
        "Failed" => {
            let reason = status.reason.as_deref().unwrap_or("");
            let message = status
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            if reason == "Evicted" {
                out.push(Finding::new(
                    "evicted",
                    Severity::Warning,
                    obj(),
                    format!("pod was evicted{message}"),
                ));
            } else {
                let r = if reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({reason})")
                };
                out.push(Finding::new(
                    "failed",
                    Severity::Warning,
                    obj(),
                    format!("pod failed{r}{message}"),
                ));
            }
        }
        "Unknown" => out.push(Finding::new(
            "unknown_phase",
            Severity::Warning,
            obj(),
            "pod phase is Unknown: its node stopped reporting",
        )),
        "Pending" if !explained => {
            if let Some(c) = created
                && age(now, c) > sd(cfg.pending_grace)
            {
                let why = status
                    .conditions
                    .iter()
                    .find(|c| c.status == "False" && c.message.is_some())
                    .and_then(|c| c.message.clone())
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                out.push(
                    Finding::new(
                        "pending",
                        Severity::Warning,
                        obj(),
                        format!("pod Pending{why}"),
                    )
                    .with_at(Some(c)),
                );
            }
        }
        "Running" if !explained => {
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
            if let Some(r) = ready
                && r.status != "True"
            {
                let since = r
                    .last_transition_time
                    .as_ref()
                    .map(|t| t.0)
                    .or(status.start_time.as_ref().map(|t| t.0))
                    .or(created);
                if since.is_some_and(|s| age(now, s) > sd(cfg.not_ready_grace)) {
                    let not_ready: Vec<&str> = containers
                        .iter()
                        .filter(|c| !c.ready)
                        .map(|c| c.name.as_str())
                        .collect();
                    let which = if not_ready.is_empty() {
                        String::new()
                    } else {
                        format!(" (containers not ready: {})", not_ready.join(", "))
                    };
                    out.push(
                        Finding::new(
                            "not_ready",
                            Severity::Warning,
                            obj(),
                            format!("pod Running but not Ready{which}"),
                        )
                        .with_at(since),
                    );
                }
            }
        }
        _ => {}
    }

    if !explained {
        let window = sd(cfg.restart_window);
        let restarted: Vec<&ContainerStatus> = inits
            .iter()
            .chain(containers)
            .filter(|c| c.restart_count > cfg.restart_threshold as i32)
            .filter(|c| last_finished(c).is_some_and(|t| age(now, t) <= window))
            .collect();
        if !restarted.is_empty() {
            let parts: Vec<String> = restarted
                .iter()
                .map(|c| {
                    let reason = c
                        .last_state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .and_then(|t| t.reason.as_deref())
                        .map(|r| format!(", last {r}"))
                        .unwrap_or_default();
                    format!("{} restarted {} times{reason}", c.name, c.restart_count)
                })
                .collect();
            out.push(Finding::new(
                "restarts",
                Severity::Warning,
                obj(),
                format!(
                    "{} (threshold {}, last restart within {})",
                    parts.join("; "),
                    cfg.restart_threshold,
                    human(window)
                ),
            ));
        }
    }
}
