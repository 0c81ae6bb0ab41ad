//! Every finding code: the check that emits it, its severity, what it is read from and
//! the remedy (what to do, with the kubectl command where one fits). `reference_page`
//! renders the table as `aggregator/CHECKS.md`; a test keeps the page current and another
//! that every finding the checks emit has its code here.

/// One finding code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub code: &'static str,
    /// The check (`*` for the coverage codes every check emits).
    pub check: &'static str,
    /// `critical`, `warning`, `info`, or two of them when a threshold decides.
    pub severity: &'static str,
    /// What the verdict is read from.
    pub source: &'static str,
    pub remedy: &'static str,
}

const fn c(
    code: &'static str,
    check: &'static str,
    severity: &'static str,
    source: &'static str,
    remedy: &'static str,
) -> Code {
    Code {
        code,
        check,
        severity,
        source,
        remedy,
    }
}

/// Every code, by check in report order.
pub const CODES: &[Code] = &[
    c(
        "list_forbidden",
        "*",
        "warning",
        "the API server's 403 on a list",
        "Grant the aggregator's ClusterRole `list` on the resource (deploy/README.md, RBAC): `kubectl auth can-i list <resource> --as=system:serviceaccount:caretaker:caretaker-aggregator`.",
    ),
    c(
        "list_failed",
        "*",
        "warning",
        "a list that timed out or failed",
        "Check the API server's health and the aggregator's logs; raise `checks.list_timeout` for very large lists.",
    ),
    c(
        "node_not_ready",
        "nodes",
        "critical",
        "Node `Ready` condition",
        "`kubectl describe node <name>`; check the kubelet (`journalctl -u kubelet`) and the container runtime on the node.",
    ),
    c(
        "memory_pressure",
        "nodes",
        "warning",
        "Node `MemoryPressure` condition",
        "Find the biggest consumers (`kubectl top pods -A --sort-by=memory`), set memory limits, or add capacity.",
    ),
    c(
        "disk_pressure",
        "nodes",
        "warning",
        "Node `DiskPressure` condition",
        "Free disk on the node: `caretaker-agent cleanup` (images, logs), or grow the disk.",
    ),
    c(
        "pid_pressure",
        "nodes",
        "warning",
        "Node `PIDPressure` condition",
        "Find the pod forking processes (`kubectl top pods`, `ps` on the node); set `pids` limits.",
    ),
    c(
        "network_unavailable",
        "nodes",
        "critical",
        "Node `NetworkUnavailable` condition",
        "Check the CNI plugin's pods on the node: `kubectl -n kube-system get pods -o wide --field-selector spec.nodeName=<node>`.",
    ),
    c(
        "cordoned",
        "nodes",
        "info",
        "Node `spec.unschedulable`",
        "Uncordon when maintenance is over: `kubectl uncordon <node>`.",
    ),
    c(
        "requests_high",
        "nodes",
        "warning",
        "pods' requests against Node allocatable",
        "Right-size requests (`kubectl top pods`) or add nodes; the scheduler can place little more here.",
    ),
    c(
        "usage_high",
        "nodes",
        "warning",
        "NodeMetrics against allocatable",
        "Move load away (`kubectl drain` in the window) or add capacity.",
    ),
    c(
        "pod_cpu_high",
        "nodes",
        "info",
        "PodMetrics",
        "Check the pod's CPU limit and whether it should scale out (HPA).",
    ),
    c(
        "crash_loop_back_off",
        "pods",
        "critical",
        "container `state.waiting.reason`, `lastState.terminated`",
        "`kubectl logs <pod> -c <container> --previous`; an OOMKilled (exit code 137) needs a higher memory limit.",
    ),
    c(
        "init_crash_loop_back_off",
        "pods",
        "critical",
        "init container `state.waiting.reason`",
        "`kubectl logs <pod> -c <init-container> --previous`.",
    ),
    c(
        "image_pull_back_off",
        "pods",
        "critical",
        "container `state.waiting.reason`",
        "Check the image name and tag and the pull secret: `kubectl describe pod <pod>` (Events).",
    ),
    c(
        "evicted",
        "pods",
        "warning",
        "Pod phase Failed, reason Evicted",
        "See why the kubelet evicted it (`kubectl describe pod`); delete the pod once understood (cleanup proposes it).",
    ),
    c(
        "failed",
        "pods",
        "warning",
        "Pod phase Failed",
        "`kubectl describe pod <pod>` and `kubectl logs <pod>`.",
    ),
    c(
        "pending",
        "pods",
        "warning",
        "Pod phase Pending past `pods.pending_grace`",
        "`kubectl describe pod <pod>`: usually Insufficient cpu/memory, an unbound PVC or a node selector no node matches.",
    ),
    c(
        "not_ready",
        "pods",
        "warning",
        "Pod `Ready` condition past `pods.not_ready_grace`",
        "Check the readiness probe and the container's logs: `kubectl describe pod <pod>`.",
    ),
    c(
        "unknown_phase",
        "pods",
        "warning",
        "Pod phase Unknown",
        "The node stopped reporting: check the node (`kubectl get node <node>`).",
    ),
    c(
        "restarts",
        "pods",
        "warning",
        "container `restartCount` and last termination",
        "`kubectl logs <pod> -c <container> --previous`; check limits and probes.",
    ),
    c(
        "rollout_stuck",
        "workloads",
        "critical",
        "Deployment `Progressing` False, ProgressDeadlineExceeded",
        "`kubectl rollout status deploy/<name>`; fix the new pods (see the pods check) or `kubectl rollout undo deploy/<name>`.",
    ),
    c(
        "no_replicas_available",
        "workloads",
        "critical",
        "Deployment/StatefulSet/DaemonSet status replica counts",
        "The workload is down: `kubectl describe <kind>/<name>` and its pods' findings.",
    ),
    c(
        "replicas_unavailable",
        "workloads",
        "warning",
        "Deployment/StatefulSet/DaemonSet status replica counts",
        "`kubectl get pods -l <selector>` and the pods check's findings for the missing ones.",
    ),
    c(
        "pdb_blocks_disruption",
        "pdbs",
        "warning",
        "PodDisruptionBudget `status.disruptionsAllowed` 0",
        "Node drains will wait: add replicas or relax `minAvailable`/`maxUnavailable` before the maintenance window.",
    ),
    c(
        "pdb_no_pods",
        "pdbs",
        "info",
        "PodDisruptionBudget `status.expectedPods` 0",
        "Fix the selector or delete the stale budget: `kubectl delete pdb <name>`.",
    ),
    c(
        "service_no_ready_endpoints",
        "services",
        "warning",
        "EndpointSlices labelled `kubernetes.io/service-name`",
        "No pod behind the Service is ready: `kubectl get pods -l <selector>`; check the selector matches the pods' labels.",
    ),
    c(
        "ingress_backend_missing",
        "ingresses",
        "warning",
        "Ingress backends against Services",
        "Create the Service or fix the Ingress's backend: `kubectl get svc -n <ns>`.",
    ),
    c(
        "ingress_tls_secret_missing",
        "ingresses",
        "warning",
        "Ingress `tls[].secretName` against Secrets",
        "Create the TLS Secret (or the cert-manager Certificate that writes it): `kubectl get certificate,secret -n <ns>`.",
    ),
    c(
        "cronjob_last_run_failed",
        "cronjobs",
        "warning",
        "the newest Job owned by the CronJob, `Failed` condition",
        "`kubectl logs job/<job>`; rerun once fixed: `kubectl create job --from=cronjob/<name> <name>-manual`.",
    ),
    c(
        "cronjob_never_run",
        "cronjobs",
        "warning",
        "CronJob `status.lastScheduleTime` and its schedule",
        "Check the controller's events (`kubectl describe cronjob <name>`), `startingDeadlineSeconds` and the time zone.",
    ),
    c(
        "cronjob_suspended",
        "cronjobs",
        "info",
        "CronJob `spec.suspend`",
        "Resume when intended: `kubectl patch cronjob <name> -p '{\"spec\":{\"suspend\":false}}'`.",
    ),
    c(
        "warning_event",
        "events",
        "warning",
        "Warning Events within `events.window`",
        "`kubectl get events -n <ns> --field-selector involvedObject.name=<name>`.",
    ),
    c(
        "certificate_expired",
        "certificates",
        "critical",
        "Certificate `status.notAfter`, TLS Secret `tls.crt`",
        "Renew now: `cmctl renew <name>` (cert-manager) or replace the Secret's certificate.",
    ),
    c(
        "certificate_renewal_overdue",
        "certificates",
        "critical",
        "Certificate `status.renewalTime`, Issuing/Ready conditions, CertificateRequests",
        "cert-manager is failing to renew: `kubectl describe certificate <name>` and its latest CertificateRequest; fix the Issuer.",
    ),
    c(
        "certificate_expiring",
        "certificates",
        "warning or critical",
        "Certificate `status.notAfter`, TLS Secret `tls.crt`",
        "Renew before expiry: `cmctl renew <name>`, or replace the Secret.",
    ),
    c(
        "certificate_not_issued",
        "certificates",
        "warning",
        "Certificate `Ready` condition",
        "`kubectl describe certificate <name>`; check the Issuer and the CertificateRequest.",
    ),
    c(
        "tls_secret_invalid",
        "certificates",
        "warning",
        "TLS Secret `tls.crt`",
        "Replace the Secret's `tls.crt` with a PEM certificate.",
    ),
    c(
        "backup_failed",
        "velero",
        "critical",
        "Backup `status.phase` Failed",
        "`velero backup describe <name> --details` and `velero backup logs <name>`; check the storage location.",
    ),
    c(
        "backup_failed_validation",
        "velero",
        "critical",
        "Backup `status.phase` FailedValidation",
        "`velero backup describe <name>`: fix the spec (storage location, namespaces).",
    ),
    c(
        "backup_partially_failed",
        "velero",
        "warning",
        "Backup `status.phase` PartiallyFailed",
        "`velero backup logs <name> | grep -i error`.",
    ),
    c(
        "backup_in_progress",
        "velero",
        "info",
        "Backup `status.phase` running",
        "Nothing unless it stays: `velero backup describe <name>`.",
    ),
    c(
        "backup_unknown_phase",
        "velero",
        "warning",
        "Backup `status.phase`",
        "`velero backup describe <name>`; check the Velero version.",
    ),
    c(
        "backup_stale",
        "velero",
        "warning",
        "the schedule's newest Completed backup against its cron period",
        "`velero schedule describe <name>`; check the server's logs: `kubectl -n velero logs deploy/velero`.",
    ),
    c(
        "schedule_never_completed",
        "velero",
        "warning",
        "Schedule with no Completed backup",
        "`velero backup get --selector velero.io/schedule-name=<name>`.",
    ),
    c(
        "schedule_paused",
        "velero",
        "info",
        "Schedule `spec.paused`",
        "Unpause when intended: `velero schedule unpause <name>`.",
    ),
    c(
        "schedule_unparsed",
        "velero",
        "info",
        "Schedule `spec.schedule`",
        "Write a 5-field cron expression.",
    ),
    c(
        "storage_location_unavailable",
        "velero",
        "critical",
        "BackupStorageLocation `status.phase` Unavailable",
        "Check the bucket and credentials: `velero backup-location get`, `kubectl -n velero logs deploy/velero | grep -i storage`.",
    ),
    c(
        "pvc_pending",
        "pvcs",
        "warning",
        "PVC phase Pending past `pvcs.pending_grace`",
        "`kubectl describe pvc <name>`: check the StorageClass and the provisioner.",
    ),
    c(
        "pvc_lost",
        "pvcs",
        "critical",
        "PVC phase Lost",
        "The bound PV is gone: restore from backup (`velero restore create`).",
    ),
    c(
        "pvc_usage_high",
        "pvcs",
        "warning or critical",
        "agents' volume statistics",
        "Grow the volume (`kubectl patch pvc <name>` with a larger request, if the StorageClass allows expansion) or free space.",
    ),
    c(
        "hpa_at_max",
        "hpas",
        "warning",
        "HPA desired/current replicas against `maxReplicas`",
        "Raise `maxReplicas` or the target's capacity: `kubectl describe hpa <name>`.",
    ),
    c(
        "hpa_pinned",
        "hpas",
        "info",
        "HPA `minReplicas` = `maxReplicas`",
        "Nothing if intended.",
    ),
    c(
        "hpa_unable_to_scale",
        "hpas",
        "warning",
        "HPA `AbleToScale` condition",
        "`kubectl describe hpa <name>`: check the scale target exists.",
    ),
    c(
        "hpa_scaling_inactive",
        "hpas",
        "warning",
        "HPA `ScalingActive` condition",
        "Check the metrics source (`kubectl top pods`, metrics-server) and the pods' requests.",
    ),
    c(
        "helm_release_failed",
        "helm",
        "critical",
        "Helm release Secret status",
        "`helm history <release> -n <ns>`; `helm rollback <release> <revision>`.",
    ),
    c(
        "helm_release_pending",
        "helm",
        "warning",
        "Helm release Secret status",
        "A stuck install/upgrade: `helm history`, then `helm rollback` to unlock.",
    ),
    c(
        "helm_release_uninstalling",
        "helm",
        "warning",
        "Helm release Secret status",
        "`helm uninstall <release> -n <ns>` again, or remove the leftover release Secret.",
    ),
    c(
        "helm_release_unknown_status",
        "helm",
        "warning",
        "Helm release Secret status",
        "`helm status <release> -n <ns>`.",
    ),
    c(
        "helm_release_unreadable",
        "helm",
        "warning",
        "Helm release Secret payload",
        "The release Secret is damaged: `helm history <release>`; restore it from backup.",
    ),
    c(
        "container_no_requests",
        "resources",
        "warning",
        "pod template (Deployment, StatefulSet, DaemonSet) or unowned Pod `resources.requests`",
        "Set CPU and memory requests from observed use (`kubectl top pods -n <ns>`): `kubectl set resources deployment/<name> -c <container> --requests=cpu=100m,memory=128Mi`.",
    ),
    c(
        "container_no_limits",
        "resources",
        "info",
        "pod template (Deployment, StatefulSet, DaemonSet) or unowned Pod `resources.limits`",
        "Set at least a memory limit: `kubectl set resources deployment/<name> -c <container> --limits=memory=512Mi`.",
    ),
    c(
        "silence_expired",
        "silencing",
        "info",
        "`checks.exclude` / `checks.severity_overrides` entry's `until` date",
        "The accepted exception ended: fix what it silenced, or extend or remove the entry in the config.",
    ),
    c(
        "vulnerabilities_fixable",
        "vulnerabilities",
        "critical or warning",
        "trivy-operator VulnerabilityReport: HIGH/CRITICAL with a `fixedVersion`",
        "Rebuild or update the image to a version with the fixes (`kubectl get vulnerabilityreport -n <ns> <name> -o yaml` lists each fixed version), then roll the workload.",
    ),
    c(
        "vulnerabilities_unfixed",
        "vulnerabilities",
        "info",
        "trivy-operator VulnerabilityReport: HIGH/CRITICAL without a fix",
        "No fix is released yet: check whether the vulnerable package is reachable, consider another base image, and watch for a fixed version.",
    ),
    c(
        "vulnerability_scan_stale",
        "vulnerabilities",
        "warning",
        "trivy-operator VulnerabilityReport `report.updateTimestamp` older than 7 days",
        "trivy-operator stopped rescanning: check its pod and logs (`kubectl -n trivy-system logs deploy/trivy-operator`); delete the report to force a rescan.",
    ),
    c(
        "log_lines_above_threshold",
        "log_check",
        "warning",
        "the agents' log check: lines of a container matching a pattern in 24 h, against `log_check.thresholds`",
        "Read the sample line in the report's log check, then the log: `kubectl logs -n <ns> <pod> -c <container> --since=24h | grep -i <pattern>`; fix the cause or raise the agent's threshold.",
    ),
    c(
        "log_lines_jumped",
        "log_check",
        "warning",
        "the agents' log check: 24 h count against the 24 h before (`log_check.jump_factor`, `jump_min_count`)",
        "Something changed in the last day (a deploy, a failing dependency): compare `kubectl logs -n <ns> <pod> -c <container> --since=24h` with the rollout history (`kubectl rollout history`).",
    ),
    c(
        "chart_update_patch",
        "chart_updates",
        "info",
        "a deployed release's chart version against its repository (`charts:`): newest version of the same major.minor",
        "Patch releases fix bugs: read the chart's changelog and `helm upgrade <release> <repo>/<chart> --version <version> --reuse-values -n <ns>` (try `helm diff upgrade` or `--dry-run` first).",
    ),
    c(
        "chart_update_minor",
        "chart_updates",
        "info",
        "a deployed release's chart version against its repository: newest version of the same major",
        "Read the chart's release notes for new defaults, then upgrade with `--dry-run` first and review the rendered changes.",
    ),
    c(
        "chart_update_major",
        "chart_updates",
        "info",
        "a deployed release's chart version against its repository: newest version of a newer major",
        "A major chart version may break values or need a migration: read the chart's upgrade notes and plan the upgrade in a maintenance window.",
    ),
    c(
        "chart_not_in_repositories",
        "chart_updates",
        "info",
        "a deployed release's chart, looked up in the configured chart repositories",
        "Add the chart's repository to `charts.repositories` (or map the chart to one in `charts.chart_repositories`) so its updates are followed.",
    ),
    c(
        "chart_repository_unreachable",
        "chart_updates",
        "warning",
        "GET `<url>/index.yaml` of a classic repository, or the OCI registry's tag list",
        "Check the URL in `charts.repositories` and that the aggregator can reach it (`curl -fsS <url>/index.yaml`, or the registry's `/v2/`); a private registry needs network access from the aggregator's pod.",
    ),
    c(
        "requests_far_above_use",
        "recommendations",
        "info",
        "metrics API usage samples per container over `capacity.window`, against the container's requests (VPA's percentile + margin)",
        "Lower the requests toward the recommendation (the report's `recommendations`): `kubectl set resources -n <ns> <workload> -c <container> --requests=cpu=<cpu>,memory=<memory>`; the freed capacity goes back to the scheduler.",
    ),
    c(
        "requests_below_use",
        "recommendations",
        "warning",
        "metrics API usage samples per container over `capacity.window`, against the container's requests",
        "Raise the requests to the recommendation: a container using far more than it requests is throttled or evicted first under node pressure (`kubectl set resources …`).",
    ),
    c(
        "capacity_runs_out",
        "capacity",
        "warning",
        "requests against allocatable per node and cluster, least-squares trend of daily points over `capacity.trend_days`",
        "Add nodes (or raise the autoscaler's maximum) before the date, or reclaim requests (see `recommendations`).",
    ),
];

/// The entry of `code`, if known.
pub fn lookup(code: &str) -> Option<&'static Code> {
    CODES.iter().find(|c| c.code == code)
}

/// `aggregator/CHECKS.md`.
#[cfg(test)]
pub(crate) fn reference_page() -> String {
    let mut s = String::from(
        "# Check codes\n\n\
         Generated from `aggregator/src/checks/codes.rs` (`CODES`) by \
         `cargo test -p caretaker-aggregator --lib checks::codes::tests::reference_page_is_current` \
         (set `UPDATE_CHECKS_MD=1` to rewrite it); do not edit by hand.\n\n\
         Every finding carries one of these codes and its remedy (JSON field `remedy`).\n\n\
         | code | check | severity | source | remedy |\n\
         |---|---|---|---|---|\n",
    );
    for c in CODES {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            c.code,
            c.check,
            c.severity,
            c.source,
            c.remedy.replace('|', "\\|")
        ));
    }
    s.push_str(&crate::report::score::reference_section());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_each_has_a_remedy() {
        let mut seen = std::collections::BTreeSet::new();
        for c in CODES {
            assert!(seen.insert(c.code), "{} twice", c.code);
            assert!(!c.remedy.is_empty() && !c.source.is_empty(), "{}", c.code);
        }
    }

    #[test]
    fn reference_page_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/CHECKS.md");
        let page = reference_page();
        if std::env::var_os("UPDATE_CHECKS_MD").is_some() {
            std::fs::write(path, &page).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == page,
            "aggregator/CHECKS.md differs from the code table: run with UPDATE_CHECKS_MD=1"
        );
    }
}
