//! Logs another rotator owns: the agent leaves them alone and says so in its report.
//!
//! Two rotators on one file lose lines or rotate twice, so out of the box the agent
//! rotates only what nothing else does:
//! - the kubelet rotates container logs (`containerLogMaxSize`): everything below
//!   `logs.kubelet_log_dirs` (default `/var/log/pods`, `/var/log/containers`);
//! - the node's own logrotate rotates what `/etc/logrotate.conf` and the files of
//!   `/etc/logrotate.d` name (`logs.node_logrotate_conf`). Those files are only read for
//!   their patterns; nothing in them is run. When the agent's own `logrotate_conf` is
//!   that file, the agent has taken over from logrotate and the check is off.
//!
//! A log's owner is found by its path (before any file is opened), so the check costs a
//! prefix comparison per log when nothing else owns anything near it.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::conf;

/// Who rotates a log instead of the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The kubelet (container logs).
    Kubelet,
    /// The node's logrotate; `place` is the `file:line` of the block naming the log.
    NodeLogrotate { place: String },
}

impl Owner {
    /// A short name for reports: `kubelet`, or `logrotate (FILE:LINE)`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Kubelet => "kubelet".to_string(),
            Self::NodeLogrotate { place } => format!("logrotate ({place})"),
        }
    }
}

/// One pattern of the node's logrotate.
#[derive(Debug, Clone)]
struct NodePattern {
    /// The part before the first glob character (a path prefix every match has).
    prefix: String,
    glob: Option<glob::Pattern>,
    literal: String,
    place: String,
}

/// The other rotators' claims, loaded once.
#[derive(Debug, Clone, Default)]
pub(crate) struct Owners {
    kubelet: Vec<PathBuf>,
    /// Patterns whose directory is literal (`/var/log/*.log`, `/var/log/syslog`), by that
    /// directory: a log is compared with the patterns of its own directory only.
    by_dir: HashMap<String, Vec<NodePattern>>,
    /// Patterns with a glob in a directory part (`/var/log/*/*.log`).
    deep: Vec<NodePattern>,
}

impl Owners {
    /// Claims of the kubelet (`kubelet_dirs`) and of the node's logrotate config
    /// (`node_conf` with its includes, plus the `logrotate.d` directory beside it, which
    /// is what its `include /etc/logrotate.d` names when the agent sees the host's
    /// files under another prefix). `own_conf` is the agent's own `logrotate_conf`: when
    /// it is the node's file, the agent is the node's logrotate and claims nothing.
    /// Unreadable or missing files claim nothing.
    pub(crate) fn load(
        kubelet_dirs: &[PathBuf],
        node_conf: Option<&Path>,
        own_conf: Option<&Path>,
    ) -> Self {
        let mut node = Vec::new();
        let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        if let Some(nc) = node_conf.filter(|nc| own_conf.is_none_or(|o| !same(nc, o)))
            && nc.is_file()
        {
            // Read for the patterns only: nothing in it is interpreted or run (a block
            // whose `create` names a user unknown here still names its logs).
            let mut policies = conf::load_patterns(nc).policies;
            if let Some(d) = nc.parent().map(|d| d.join("logrotate.d"))
                && d.is_dir()
            {
                policies.extend(conf::load_patterns(&d).policies);
            }
            for p in policies {
                for pat in &p.patterns {
                    let cut = pat.find(['*', '?', '[']).unwrap_or(pat.len());
                    node.push(NodePattern {
                        prefix: pat[..cut].to_string(),
                        glob: (cut < pat.len())
                            .then(|| glob::Pattern::new(pat).ok())
                            .flatten(),
                        literal: pat.clone(),
                        place: p.place.clone(),
                    });
                }
            }
        }
        let mut by_dir: HashMap<String, Vec<NodePattern>> = HashMap::new();
        let mut deep = Vec::new();
        for n in node {
            // The directory is literal when no glob character comes before the last `/`.
            match n.literal.rfind('/') {
                Some(slash) if n.prefix.len() > slash => by_dir
                    .entry(n.literal[..slash].to_string())
                    .or_default()
                    .push(n),
                _ => deep.push(n),
            }
        }
        Self {
            kubelet: kubelet_dirs.to_vec(),
            by_dir,
            deep,
        }
    }

    /// Whether any claim is loaded.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.kubelet.is_empty() && self.by_dir.is_empty() && self.deep.is_empty()
    }

    /// Who else rotates `path` (an absolute, normal path), if anyone.
    pub(crate) fn owner_of(&self, path: &Path) -> Option<Owner> {
        let b = path.as_os_str().as_bytes();
        if self.kubelet.iter().any(|d| {
            let d = d.as_os_str().as_bytes();
            b.starts_with(d) && (b.len() == d.len() || b[d.len()] == b'/' || d.ends_with(b"/"))
        }) {
            return Some(Owner::Kubelet);
        }
        if self.by_dir.is_empty() && self.deep.is_empty() {
            return None;
        }
        let s = path.to_str()?;
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let dir = s.rfind('/').map_or("", |i| &s[..i]);
        self.by_dir
            .get(dir)
            .into_iter()
            .flatten()
            .chain(
                self.deep
                    .iter()
                    .filter(|n| s.starts_with(n.prefix.as_str())),
            )
            .find(|n| match &n.glob {
                Some(g) => g.matches_with(s, opts),
                None => n.literal == s,
            })
            .map(|n| Owner::NodeLogrotate {
                place: n.place.clone(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_dirs_and_the_node_logrotate_patterns_are_claimed() {
        let t = tempfile::tempdir().unwrap();
        let etc = t.path().join("etc");
        std::fs::create_dir_all(etc.join("logrotate.d")).unwrap();
        // The include names the host's path, which the agent may not see: the
        // logrotate.d beside the file is read anyway.
        std::fs::write(
            etc.join("logrotate.conf"),
            "weekly\nrotate 4\ninclude /nonexistent/logrotate.d\n/var/log/wtmp {\n monthly\n}\n",
        )
        .unwrap();
        std::fs::write(
            etc.join("logrotate.d/rsyslog"),
            "/var/log/syslog\n/var/log/auth.log\n{\n rotate 4\n postrotate\n  /usr/lib/rsyslog/rsyslog-rotate\n endscript\n}\n/var/log/app/*.log {\n daily\n create 0640 no-such-user-here adm\n}\n",
        )
        .unwrap();
        let o = Owners::load(
            &[
                PathBuf::from("/var/log/pods"),
                PathBuf::from("/var/log/containers"),
            ],
            Some(&etc.join("logrotate.conf")),
            None,
        );
        assert_eq!(
            o.owner_of(Path::new("/var/log/pods/ns_pod_uid/c/0.log")),
            Some(Owner::Kubelet)
        );
        assert_eq!(
            o.owner_of(Path::new("/var/log/containers/x.log")),
            Some(Owner::Kubelet)
        );
        let rsyslog = etc.join("logrotate.d/rsyslog").display().to_string();
        assert_eq!(
            o.owner_of(Path::new("/var/log/auth.log")),
            Some(Owner::NodeLogrotate {
                place: format!("{rsyslog}:1")
            })
        );
        assert_eq!(
            o.owner_of(Path::new("/var/log/app/a.log")),
            Some(Owner::NodeLogrotate {
                place: format!("{rsyslog}:9")
            })
        );
        assert_eq!(
            o.owner_of(Path::new("/var/log/wtmp")).map(|o| o.describe()),
            Some(format!(
                "logrotate ({}:4)",
                etc.join("logrotate.conf").display()
            ))
        );
        // Not claimed: another name, a deeper directory (`*` stops at `/`), a name
        // that only starts like a kubelet directory.
        for free in [
            "/var/log/myapp.log",
            "/var/log/app/sub/a.log",
            "/var/log/podsx/a.log",
            "/var/log/syslog.1",
        ] {
            assert_eq!(o.owner_of(Path::new(free)), None, "{free}");
        }
        // The agent's own logrotate_conf is the node's: it is the node's logrotate.
        let o = Owners::load(
            &[],
            Some(&etc.join("logrotate.conf")),
            Some(&etc.join("logrotate.conf")),
        );
        assert!(o.is_empty());
        assert_eq!(o.owner_of(Path::new("/var/log/syslog")), None);
    }
}
