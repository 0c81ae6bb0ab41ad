//! The `leader_election:` config section.
//!
//! ```yaml
//! leader_election:
//!   lease_name: caretaker-aggregator   # default
//!   namespace: caretaker               # default: $POD_NAMESPACE (downward API)
//!   identity: caretaker-aggregator-7c9d-x2x   # default: $POD_NAME (downward API)
//!   lease_duration: 15s                # default; client-go's LeaseDuration
//!   renew_deadline: 10s                # default; client-go's RenewDeadline
//!   retry_period: 2s                   # default; client-go's RetryPeriod
//! ```
//!
//! The pod labeled `caretaker.io/role` ([`super::role`]) is `$POD_NAME` in `$POD_NAMESPACE`
//! whatever `identity` and `namespace` say (they default to the same).
//!
//! The defaults are client-go's and controller-runtime's (15 s, 10 s, 2 s). A standby
//! takes over an abandoned Lease `lease_duration` after it last saw it change; a leader
//! that cannot renew for `renew_deadline` gives up, which is before any standby may take
//! over (`renew_deadline < lease_duration`).

use std::time::Duration;

use caretaker_core::config::{BoundedDuration, ms};
use serde::{Deserialize, Serialize};

/// Environment variable with the Lease's namespace when `namespace` is not set.
pub(crate) const NAMESPACE_ENV: &str = "POD_NAMESPACE";
/// Environment variable with this replica's identity when `identity` is not set.
pub(crate) const IDENTITY_ENV: &str = "POD_NAME";

/// The `leader_election:` section. Absent: no election, the aggregator serves at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderElectionConfig {
    /// Name of the Lease.
    pub lease_name: String,
    /// Namespace of the Lease. Default: the environment variable `POD_NAMESPACE`.
    pub namespace: Option<String>,
    /// This replica's `holderIdentity`, unique among the replicas. Default: the
    /// environment variable `POD_NAME`.
    pub identity: Option<String>,
    /// How long a Lease is valid after its holder last renewed it; a standby takes over
    /// once it has not seen the Lease change for this long. 2s to 5m.
    pub lease_duration: BoundedDuration<{ 2 * ms::SECOND }, { 5 * ms::MINUTE }>,
    /// How long the leader keeps retrying a failed renewal before it gives up leadership
    /// and exits. 1s to 5m; less than `lease_duration`.
    pub renew_deadline: BoundedDuration<{ ms::SECOND }, { 5 * ms::MINUTE }>,
    /// Time between attempts to acquire or renew. 100ms to 1m; at most
    /// `renew_deadline` / 1.2.
    pub retry_period: BoundedDuration<100, { ms::MINUTE }>,
}

impl Default for LeaderElectionConfig {
    /// client-go's and controller-runtime's timing.
    fn default() -> Self {
        Self {
            lease_name: "caretaker-aggregator".into(),
            namespace: None,
            identity: None,
            lease_duration: BoundedDuration::secs(15),
            renew_deadline: BoundedDuration::secs(10),
            retry_period: BoundedDuration::secs(2),
        }
    }
}

/// The timing of an election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub(crate) lease_duration: Duration,
    pub(crate) renew_deadline: Duration,
    pub(crate) retry_period: Duration,
}

/// A complete election setup: the config with namespace and identity resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Election {
    pub lease_name: String,
    pub namespace: String,
    pub identity: String,
    pub timing: Timing,
    /// This replica's pod, which gets the `caretaker.io/role` label: `$POD_NAMESPACE` and
    /// `$POD_NAME`, else the Lease's namespace and the identity.
    pub(crate) pod_namespace: String,
    pub pod_name: String,
}

/// Why the `leader_election:` section cannot be used; each names the options to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("leader_election.lease_name is empty")]
    EmptyLeaseName,
    #[error(
        "leader_election.renew_deadline ({}) must be less than lease_duration ({}): a leader must give up before a standby may take over",
        humantime::format_duration(*renew_deadline),
        humantime::format_duration(*lease_duration)
    )]
    RenewNotBeforeExpiry {
        renew_deadline: Duration,
        lease_duration: Duration,
    },
    #[error(
        "leader_election.renew_deadline ({}) must be more than 1.2 × retry_period ({})",
        humantime::format_duration(*renew_deadline),
        humantime::format_duration(*retry_period)
    )]
    RenewWithinRetry {
        renew_deadline: Duration,
        retry_period: Duration,
    },
    /// Neither the option nor its downward-API variable gives a value.
    #[error(
        "leader_election.{field} is not set and ${var} is empty: set it, or give the pod {var} from the downward API (fieldRef {field_path})"
    )]
    Unset {
        field: &'static str,
        var: &'static str,
        field_path: &'static str,
    },
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// client-go's `JitterFactor`: waits between acquire attempts last up to 2.2 retry periods,
/// and a renewal needs room for one such wait inside the renew deadline.
pub(crate) const JITTER_FACTOR: f64 = 1.2;

impl LeaderElectionConfig {
    /// Checks the timing the way client-go's `NewLeaderElector` does.
    ///
    /// # Errors
    /// A sentence naming the options to change.
    pub fn validate(&self) -> Result<()> {
        if self.lease_name.is_empty() {
            return Err(Error::EmptyLeaseName);
        }
        if self.renew_deadline.get() >= self.lease_duration.get() {
            return Err(Error::RenewNotBeforeExpiry {
                renew_deadline: self.renew_deadline.get(),
                lease_duration: self.lease_duration.get(),
            });
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return Err(Error::RenewWithinRetry {
                renew_deadline: self.renew_deadline.get(),
                retry_period: self.retry_period.get(),
            });
        }
        Ok(())
    }

    /// Fills in namespace and identity from `env` (`POD_NAMESPACE`, `POD_NAME`).
    ///
    /// # Errors
    /// Neither the config nor the environment gives a namespace or an identity.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<Election> {
        self.validate()?;
        let pick = |configured: &Option<String>,
                    var: &'static str,
                    field: &'static str,
                    field_path: &'static str| {
            configured
                .clone()
                .filter(|v| !v.is_empty())
                .or_else(|| env(var).filter(|v| !v.is_empty()))
                .ok_or(Error::Unset {
                    field,
                    var,
                    field_path,
                })
        };
        let namespace = pick(
            &self.namespace,
            NAMESPACE_ENV,
            "namespace",
            "metadata.namespace",
        )?;
        let identity = pick(&self.identity, IDENTITY_ENV, "identity", "metadata.name")?;
        Ok(Election {
            lease_name: self.lease_name.clone(),
            pod_namespace: env(NAMESPACE_ENV)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| namespace.clone()),
            pod_name: env(IDENTITY_ENV)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| identity.clone()),
            namespace,
            identity,
            timing: Timing {
                lease_duration: self.lease_duration.get(),
                renew_deadline: self.renew_deadline.get(),
                retry_period: self.retry_period.get(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use caretaker_core::config::parse_yaml;

    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_are_client_go_s_and_names_come_from_the_downward_api() {
        let c: LeaderElectionConfig = parse_yaml("{}", Path::new("c")).unwrap();
        assert_eq!(c, LeaderElectionConfig::default());
        let e = c
            .resolve(env(&[
                ("POD_NAMESPACE", "caretaker"),
                ("POD_NAME", "agg-1"),
            ]))
            .unwrap();
        assert_eq!(
            e,
            Election {
                lease_name: "caretaker-aggregator".into(),
                namespace: "caretaker".into(),
                identity: "agg-1".into(),
                timing: Timing {
                    lease_duration: Duration::from_secs(15),
                    renew_deadline: Duration::from_secs(10),
                    retry_period: Duration::from_secs(2)
                },
                pod_namespace: "caretaker".into(),
                pod_name: "agg-1".into(),
            }
        );
        let c: LeaderElectionConfig =
            parse_yaml("lease_name: l\nnamespace: ns\nidentity: me\nlease_duration: 30s\nrenew_deadline: 20s\nretry_period: 5s\n", Path::new("c")).unwrap();
        let e = c
            .resolve(env(&[("POD_NAMESPACE", "other"), ("POD_NAME", "other")]))
            .unwrap();
        assert_eq!(
            (
                e.lease_name.as_str(),
                e.namespace.as_str(),
                e.identity.as_str()
            ),
            ("l", "ns", "me"),
            "the config wins"
        );
        assert_eq!(e.timing.retry_period, Duration::from_secs(5));
        assert_eq!(
            (e.pod_namespace.as_str(), e.pod_name.as_str()),
            ("other", "other"),
            "the pod to label is always the downward API's"
        );
        let e = c.resolve(env(&[])).unwrap();
        assert_eq!(
            (e.pod_namespace.as_str(), e.pod_name.as_str()),
            ("ns", "me"),
            "outside a pod: the Lease's namespace and the identity"
        );
    }

    #[test]
    fn missing_identity_and_bad_timing_are_explained() {
        let c = LeaderElectionConfig::default();
        assert_eq!(
            c.resolve(env(&[("POD_NAMESPACE", "caretaker")]))
                .unwrap_err()
                .to_string(),
            "leader_election.identity is not set and $POD_NAME is empty: set it, or give the pod POD_NAME from the downward API (fieldRef metadata.name)"
        );
        assert!(
            c.resolve(env(&[("POD_NAME", "x")]))
                .unwrap_err()
                .to_string()
                .starts_with("leader_election.namespace is not set and $POD_NAMESPACE")
        );
        let c: LeaderElectionConfig =
            parse_yaml("lease_duration: 10s\nrenew_deadline: 10s\n", Path::new("c")).unwrap();
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "leader_election.renew_deadline (10s) must be less than lease_duration (10s): a leader must give up before a standby may take over"
        );
        let c: LeaderElectionConfig =
            parse_yaml("renew_deadline: 2s\nretry_period: 2s\n", Path::new("c")).unwrap();
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "leader_election.renew_deadline (2s) must be more than 1.2 × retry_period (2s)"
        );
        let err = parse_yaml::<LeaderElectionConfig>("\nlease_duration: 1s\n", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("at least 2s") && err.contains("line 2"),
            "{err}"
        );
        let err = parse_yaml::<LeaderElectionConfig>("leaseDuration: 15s\n", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("leaseDuration"), "{err}");
    }
}
