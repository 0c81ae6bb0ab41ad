//! Where the runtimes' sockets are, as the ecosystem's tools find them: the config's
//! `images.docker_socket` and `images.containerd_socket`, overridden by `DOCKER_HOST` (the
//! docker CLI's and bollard's variable) and `CONTAINER_RUNTIME_ENDPOINT` (crictl's), and
//! those by the command line's `--docker-socket` and `--containerd-socket`.

use std::path::{Path, PathBuf};

use crate::config::ImagesConfig;

/// The Docker engine's address, as the docker CLI reads it (`unix:///var/run/docker.sock`).
pub const DOCKER_HOST: &str = "DOCKER_HOST";
/// The CRI endpoint, as crictl reads it (`unix:///run/containerd/containerd.sock`).
pub const CONTAINER_RUNTIME_ENDPOINT: &str = "CONTAINER_RUNTIME_ENDPOINT";

/// An endpoint the agent cannot use.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Only local unix sockets are runtimes of this node.
    #[error("${var}={value}: only unix:// sockets (or an absolute socket path) are supported")]
    NotUnix { var: &'static str, value: String },
}

/// The socket path of `value` (`unix:///path` or `/path`), read from the variable `var`.
///
/// # Errors
/// Another scheme (`tcp://`, `npipe://`, `ssh://`) or a relative path.
pub(crate) fn unix_socket(var: &'static str, value: &str) -> Result<PathBuf, EndpointError> {
    let path = value.strip_prefix("unix://").unwrap_or(value);
    if !path.starts_with('/') {
        return Err(EndpointError::NotUnix {
            var,
            value: value.to_string(),
        });
    }
    Ok(PathBuf::from(path))
}

/// Applies the environment (looked up with `env`; unset or empty variables are ignored),
/// then the flags, to `cfg`'s sockets.
///
/// # Errors
/// A variable that does not name a unix socket.
pub fn resolve(
    cfg: &mut ImagesConfig,
    env: impl Fn(&str) -> Option<String>,
    docker_flag: Option<&Path>,
    containerd_flag: Option<&Path>,
) -> Result<(), EndpointError> {
    let var = |name: &'static str| env(name).filter(|v| !v.trim().is_empty());
    if let Some(v) = var(DOCKER_HOST) {
        cfg.docker_socket = unix_socket(DOCKER_HOST, v.trim())?;
    }
    if let Some(v) = var(CONTAINER_RUNTIME_ENDPOINT) {
        cfg.containerd_socket = unix_socket(CONTAINER_RUNTIME_ENDPOINT, v.trim())?;
    }
    if let Some(p) = docker_flag {
        cfg.docker_socket = p.to_path_buf();
    }
    if let Some(p) = containerd_flag {
        cfg.containerd_socket = p.to_path_buf();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let pairs = pairs.to_vec();
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flags_override_the_environment_which_overrides_the_config() {
        let mut cfg = ImagesConfig::default();
        resolve(&mut cfg, env(&[]), None, None).unwrap();
        assert_eq!(cfg.docker_socket, Path::new("/var/run/docker.sock"));
        assert_eq!(
            cfg.containerd_socket,
            Path::new("/run/containerd/containerd.sock")
        );

        let vars = env(&[
            (DOCKER_HOST, "unix:///tmp/d.sock"),
            (CONTAINER_RUNTIME_ENDPOINT, "unix:///tmp/c.sock"),
        ]);
        resolve(&mut cfg, &vars, None, None).unwrap();
        assert_eq!(cfg.docker_socket, Path::new("/tmp/d.sock"));
        assert_eq!(cfg.containerd_socket, Path::new("/tmp/c.sock"));

        resolve(
            &mut cfg,
            &vars,
            Some(Path::new("/f/d.sock")),
            Some(Path::new("/f/c.sock")),
        )
        .unwrap();
        assert_eq!(cfg.docker_socket, Path::new("/f/d.sock"));
        assert_eq!(cfg.containerd_socket, Path::new("/f/c.sock"));
    }

    #[test]
    fn a_remote_docker_host_is_refused_with_the_variable_named() {
        let mut cfg = ImagesConfig::default();
        let err = resolve(
            &mut cfg,
            env(&[(DOCKER_HOST, "tcp://10.0.0.1:2375")]),
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "$DOCKER_HOST=tcp://10.0.0.1:2375: only unix:// sockets (or an absolute socket path) are supported"
        );
        assert_eq!(
            unix_socket(
                CONTAINER_RUNTIME_ENDPOINT,
                "/run/k3s/containerd/containerd.sock"
            )
            .unwrap(),
            Path::new("/run/k3s/containerd/containerd.sock")
        );
        assert!(unix_socket(DOCKER_HOST, "unix://relative.sock").is_err());
    }
}
