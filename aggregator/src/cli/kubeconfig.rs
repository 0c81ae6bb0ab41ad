//! A Kubernetes client for `--kubeconfig`/`--context` (shared by `check`, `cleanup` and
//! `caretaker-standalone`), checked by asking the API server its version before anything
//! is read, so that a wrong name or an unreachable server is the error, not an empty run.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why no client could be made; each message names the kubeconfig and, once known, the
/// server URL.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("kubeconfig {}", place(.0))]
    Read(Option<PathBuf>, #[source] kube::config::KubeconfigError),
    #[error("kubeconfig {}: no context named {name:?} (it has: {})", place(.path), .known.join(", "))]
    UnknownContext {
        path: Option<PathBuf>,
        name: String,
        known: Vec<String>,
    },
    #[error("kubeconfig {}: cannot build a client", place(.0))]
    Client(Option<PathBuf>, #[source] kube::Error),
    #[error("cannot reach the Kubernetes API server {server} (kubeconfig {})", place(.path))]
    Unreachable {
        path: Option<PathBuf>,
        server: String,
        #[source]
        source: kube::Error,
    },
    #[error("the Kubernetes API server {server} (kubeconfig {}) did not answer within {after:?}", place(.path))]
    NoAnswer {
        path: Option<PathBuf>,
        server: String,
        after: Duration,
    },
}

/// The kubeconfig named in an error: the path given, else where kubectl looks.
fn place(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "($KUBECONFIG or ~/.kube/config)".into(),
    }
}

/// A client for the cluster of `context` (default: the current context) in `kubeconfig`
/// (default: `$KUBECONFIG`, else `~/.kube/config`, as kubectl), checked by asking the API
/// server its version (waiting at most `timeout`).
///
/// # Errors
/// See [`KubeconfigError`].
pub async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    timeout: Duration,
) -> Result<kube::Client, KubeconfigError> {
    client_and_server(kubeconfig, context, timeout)
        .await
        .map(|(c, _)| c)
}

/// [`client`] and the API server's URL (for messages).
///
/// # Errors
/// See [`KubeconfigError`].
pub async fn client_and_server(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    timeout: Duration,
) -> Result<(kube::Client, String), KubeconfigError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let path = kubeconfig.map(Path::to_path_buf);
    let file = match kubeconfig {
        Some(p) => Kubeconfig::read_from(p),
        None => Kubeconfig::read(),
    }
    .map_err(|e| KubeconfigError::Read(path.clone(), e))?;
    if let Some(name) = context
        && !file.contexts.iter().any(|c| c.name == name)
    {
        return Err(KubeconfigError::UnknownContext {
            path,
            name: name.to_string(),
            known: file.contexts.iter().map(|c| c.name.clone()).collect(),
        });
    }
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(file, &options)
        .await
        .map_err(|e| KubeconfigError::Read(path.clone(), e))?;
    let server = config.cluster_url.to_string();
    let client =
        kube::Client::try_from(config).map_err(|e| KubeconfigError::Client(path.clone(), e))?;
    match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Ok(Ok(_)) => Ok((client, server)),
        Ok(Err(source)) => Err(KubeconfigError::Unreachable {
            path,
            server,
            source,
        }),
        Err(_) => Err(KubeconfigError::NoAnswer {
            path,
            server,
            after: timeout,
        }),
    }
}
