//! Bearer-token authentication of the query APIs (HTTP JSON and gRPC `Query`).
//!
//! Which scope a request needs is decided by its path and method alone
//! ([`Auth::required_scope`]): health endpoints and ingest (authenticated by mutual TLS)
//! need none, reads need `read`, anything that changes something needs `admin`. A request
//! without a valid token gets 401 (gRPC `UNAUTHENTICATED`), one with a read token on an
//! admin action 403 (`PERMISSION_DENIED`). Tokens are compared in constant time and never
//! logged: the log names a token by its configured `name`.
//!
//! # Reload
//! Token files are followed like the TLS files ([`crate::api::tls`]): before a request that
//! needs a token, each token file's modification time, size and inode are compared with
//! the last ones seen, and a changed file is read again (Kubernetes swaps a Secret volume's
//! files atomically), so a rotated token takes effect without a restart and the old one is
//! refused from then on. A changed file that cannot be read, is empty or too short keeps
//! the last good token and is logged once, naming the file. Tokens from environment
//! variables are read once.

use caretaker_core::error::Chain;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::http::{HeaderMap, Method, Request, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tracing::{debug, error, info, warn};

use crate::api::tls::{FileStamp as Stamp, file_stamp as stamp};
use crate::config::AuthConfig;

/// What a token may do. `Admin` includes `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Queries: reports, nodes, history, metrics.
    Read,
    /// Also `--apply` of cleanups and commands to agents.
    Admin,
}

/// gRPC methods that change something and so need an admin token. Every other
/// `caretaker.v1` method needs a read token.
pub(crate) const ADMIN_GRPC_METHODS: &[&str] = &["/caretaker.v1.Query/RunChecks"];

/// Errors loading the tokens.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("auth.tokens {name}: cannot read token file {path}")]
    Read {
        name: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("auth.tokens {name}: environment variable {var} is not set")]
    Env { name: String, var: String },
    #[error("auth.tokens {name}: the token is empty")]
    Empty { name: String },
    #[error(
        "auth.tokens {name}: the token is shorter than 16 characters; generate one with `caretaker-aggregator certs`"
    )]
    Short { name: String },
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer` header (401).
    Missing,
    /// A token that matches none (401).
    Invalid,
    /// A valid token whose scope is too small (403).
    Forbidden,
}

impl Denied {
    fn message(self) -> &'static str {
        match self {
            Self::Missing => "this API needs a bearer token (Authorization: Bearer <token>)",
            Self::Invalid => "the bearer token is not valid",
            Self::Forbidden => "this action needs an admin token; the token given is read-only",
        }
    }

    /// The answer to a gRPC request.
    pub fn status(self) -> tonic::Status {
        match self {
            Self::Missing | Self::Invalid => tonic::Status::unauthenticated(self.message()),
            Self::Forbidden => tonic::Status::permission_denied(self.message()),
        }
    }

    /// The HTTP status code.
    pub(crate) fn http_status(self) -> StatusCode {
        match self {
            Self::Missing | Self::Invalid => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
        }
    }
}

#[derive(Clone)]
struct Token {
    name: String,
    scope: Scope,
    secret: Vec<u8>,
}

/// A token read from a file, followed for changes.
struct Watched {
    /// Index of the token in [`Auth::tokens`].
    index: usize,
    path: PathBuf,
    /// What the file looked like when it was last read (successfully or not).
    stamp: Stamp,
}

/// The accepted tokens and the policy.
pub struct Auth {
    /// The current tokens, in config order. A lock, not a copy per request: a reload
    /// replaces one entry in place.
    tokens: Mutex<Vec<Token>>,
    /// The tokens that come from files (empty for tokens given directly or by variable).
    watched: Mutex<Vec<Watched>>,
    anonymous: bool,
    metrics_require_token: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names and scopes only: a token never reaches a log.
        let tokens = lock(&self.tokens);
        let names: Vec<(&str, Scope)> = tokens.iter().map(|t| (t.name.as_str(), t.scope)).collect();
        f.debug_struct("Auth")
            .field("tokens", &names)
            .field("anonymous", &self.anonymous)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A token's secret from its raw text: trimmed, non-empty, at least 16 characters.
fn secret(name: &str, raw: &str) -> Result<Vec<u8>, AuthError> {
    let secret = raw.trim();
    if secret.is_empty() {
        return Err(AuthError::Empty {
            name: name.to_string(),
        });
    }
    if secret.len() < 16 {
        return Err(AuthError::Short {
            name: name.to_string(),
        });
    }
    Ok(secret.as_bytes().to_vec())
}

fn read_token_file(name: &str, path: &std::path::Path) -> Result<Vec<u8>, AuthError> {
    let raw = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        name: name.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    secret(name, &raw)
}

impl Auth {
    /// No tokens needed anywhere (in-process tests, `standalone` on loopback).
    pub(crate) fn anonymous() -> Self {
        Self {
            tokens: Mutex::new(Vec::new()),
            watched: Mutex::new(Vec::new()),
            anonymous: true,
            metrics_require_token: false,
        }
    }

    /// Tokens given directly: `(name, scope, token)`.
    pub fn with_tokens(
        tokens: impl IntoIterator<Item = (String, Scope, String)>,
        metrics_require_token: bool,
    ) -> Self {
        Self {
            tokens: Mutex::new(
                tokens
                    .into_iter()
                    .map(|(name, scope, t)| Token {
                        name,
                        scope,
                        secret: t.into_bytes(),
                    })
                    .collect(),
            ),
            watched: Mutex::new(Vec::new()),
            anonymous: false,
            metrics_require_token,
        }
    }

    /// Reads the tokens from their files and variables; files are read again when they
    /// change (see the module docs).
    ///
    /// # Errors
    /// A token that cannot be read, is empty or shorter than 16 characters.
    pub(crate) fn from_config(cfg: &AuthConfig) -> Result<Self, AuthError> {
        let mut tokens = Vec::new();
        let mut watched = Vec::new();
        for t in &cfg.tokens {
            let secret = match (&t.file, &t.env) {
                (Some(path), _) => {
                    // Stamp first: a change while reading is seen at the next request.
                    let st = stamp(path);
                    let s = read_token_file(&t.name, path)?;
                    watched.push(Watched {
                        index: tokens.len(),
                        path: path.clone(),
                        stamp: st,
                    });
                    s
                }
                (None, Some(var)) => {
                    let raw = std::env::var(var).map_err(|_| AuthError::Env {
                        name: t.name.clone(),
                        var: var.clone(),
                    })?;
                    secret(&t.name, &raw)?
                }
                (None, None) => {
                    return Err(AuthError::Empty {
                        name: t.name.clone(),
                    });
                }
            };
            tokens.push(Token {
                name: t.name.clone(),
                scope: t.scope,
                secret,
            });
        }
        Ok(Self {
            tokens: Mutex::new(tokens),
            watched: Mutex::new(watched),
            anonymous: cfg.allow_anonymous,
            metrics_require_token: cfg.metrics_require_token,
        })
    }

    /// Reads again every token file whose stamp changed. A file that no longer loads keeps
    /// the last good token; the error, naming the file, is logged once per change.
    pub(crate) fn reload_changed(&self) {
        let mut watched = lock(&self.watched);
        for w in watched.iter_mut() {
            let now = stamp(&w.path);
            if now == w.stamp {
                continue;
            }
            w.stamp = now;
            let name = lock(&self.tokens)[w.index].name.clone();
            match read_token_file(&name, &w.path) {
                Ok(secret) => {
                    lock(&self.tokens)[w.index].secret = secret;
                    info!(token = %name, path = %w.path.display(), "Token file changed; the new token is in effect and the old one is refused.");
                }
                Err(e) => error!(
                    token = %name,
                    path = %w.path.display(),
                    error = %Chain(&e),
                    "Token file changed but does not hold a usable token; still accepting the previous token."
                ),
            }
        }
    }

    /// The scope a request needs, from its path and method; `None`: no token needed.
    pub(crate) fn required_scope(&self, path: &str, method: &Method) -> Option<Scope> {
        match path {
            "/healthz" | "/readyz" => None,
            "/metrics" => self.metrics_require_token.then_some(Scope::Read),
            p if p.starts_with("/caretaker.v1.ReportIngest/") => None,
            p if p.starts_with("/grpc.health.v1.Health/") => None,
            p if p.starts_with("/grpc.reflection.") => None,
            p if ADMIN_GRPC_METHODS.contains(&p) => Some(Scope::Admin),
            p if p.starts_with("/caretaker.v1.") => Some(Scope::Read),
            _ if method == Method::GET || method == Method::HEAD => Some(Scope::Read),
            _ => Some(Scope::Admin),
        }
    }

    /// Decides one request. On success returns the token's name (for the log), `None`
    /// when no token was needed. Token files that changed are read first.
    ///
    /// # Errors
    /// Why the request is refused.
    pub fn check(
        &self,
        path: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Option<String>, Denied> {
        let Some(needed) = self.required_scope(path, method) else {
            return Ok(None);
        };
        if self.anonymous {
            return Ok(None);
        }
        let Some(given) = bearer(headers) else {
            return Err(Denied::Missing);
        };
        self.reload_changed();
        let tokens = lock(&self.tokens);
        // Compare against every token, without stopping at the first match.
        let mut found: Option<&Token> = None;
        for t in tokens.iter() {
            if bool::from(t.secret.as_slice().ct_eq(given)) {
                found = Some(t);
            }
        }
        match found {
            None => Err(Denied::Invalid),
            Some(t) if t.scope < needed => Err(Denied::Forbidden),
            Some(t) => Ok(Some(t.name.clone())),
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    // Through the API server's service proxy (`report --context`) the token comes in
    // `X-Caretaker-Authorization`: the API server drops `Authorization` before proxying.
    let v = headers
        .get(header::AUTHORIZATION)
        .or_else(|| headers.get(crate::client::PROXY_TOKEN_HEADER))?
        .as_bytes();
    let (scheme, rest) = v.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// axum middleware: refuses HTTP requests without the scope their route needs.
pub(crate) async fn http_middleware(
    axum::extract::State(auth): axum::extract::State<Arc<Auth>>,
    req: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match auth.check(req.uri().path(), req.method(), req.headers()) {
        Ok(token) => {
            debug!(path = %req.uri().path(), token = token.as_deref().unwrap_or("-"), "Authorized an API request.");
            next.run(req).await
        }
        Err(d) => {
            warn!(path = %req.uri().path(), method = %req.method(), reason = d.message(), "Refused an API request.");
            let body = axum::Json(serde_json::json!({ "error": d.message() }));
            let mut resp = (d.http_status(), body).into_response();
            if d.http_status() == StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
            }
            resp
        }
    }
}

/// A tower layer for the gRPC server: refuses calls without the scope their method needs
/// with a gRPC status, before they reach any service.
#[derive(Debug, Clone)]
pub(crate) struct GrpcAuthLayer(pub Arc<Auth>);

impl<S> tower::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;
    fn layer(&self, inner: S) -> GrpcAuth<S> {
        GrpcAuth {
            inner,
            auth: Arc::clone(&self.0),
        }
    }
}

/// See [`GrpcAuthLayer`].
#[derive(Debug, Clone)]
pub(crate) struct GrpcAuth<S> {
    inner: S,
    auth: Arc<Auth>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<Request<B>> for GrpcAuth<S>
where
    S: tower::Service<Request<B>, Response = Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self
            .auth
            .check(req.uri().path(), req.method(), req.headers())
        {
            Ok(_) => {
                // The ready clone serves this call; a fresh clone waits for the next one.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(req))
            }
            Err(d) => {
                warn!(method = %req.uri().path(), reason = d.message(), "Refused a gRPC call.");
                let status = d.status();
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(token: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = token {
            h.insert(
                header::AUTHORIZATION,
                format!("Bearer {t}").parse().unwrap(),
            );
        }
        h
    }

    fn auth() -> Auth {
        Auth::with_tokens(
            [
                (
                    "ro".to_string(),
                    Scope::Read,
                    "read-token-0123456789".to_string(),
                ),
                (
                    "ops".to_string(),
                    Scope::Admin,
                    "admin-token-0123456789".to_string(),
                ),
            ],
            false,
        )
    }

    #[test]
    fn scopes_follow_path_and_method() {
        let a = auth();
        let get = Method::GET;
        assert_eq!(a.required_scope("/healthz", &get), None);
        assert_eq!(a.required_scope("/readyz", &get), None);
        assert_eq!(a.required_scope("/metrics", &get), None);
        assert_eq!(
            a.required_scope("/caretaker.v1.ReportIngest/Stream", &Method::POST),
            None
        );
        assert_eq!(
            a.required_scope("/grpc.health.v1.Health/Check", &Method::POST),
            None
        );
        assert_eq!(
            a.required_scope("/caretaker.v1.Query/GetClusterReport", &Method::POST),
            Some(Scope::Read)
        );
        assert_eq!(a.required_scope("/api/v1/report", &get), Some(Scope::Read));
        assert_eq!(
            a.required_scope("/api/v1/nodes/x", &Method::DELETE),
            Some(Scope::Admin)
        );
        assert_eq!(
            a.required_scope("/api/v1/cleanup/apply", &Method::POST),
            Some(Scope::Admin)
        );
        let m = Auth::with_tokens([], true);
        assert_eq!(m.required_scope("/metrics", &get), Some(Scope::Read));
    }

    #[test]
    fn a_token_through_the_service_proxy_comes_in_its_own_header() {
        let a = auth();
        let mut h = HeaderMap::new();
        h.insert(
            crate::client::PROXY_TOKEN_HEADER,
            "Bearer read-token-0123456789".parse().unwrap(),
        );
        assert_eq!(
            a.check("/api/v1/report", &Method::GET, &h),
            Ok(Some("ro".to_string()))
        );
        h.insert(
            crate::client::PROXY_TOKEN_HEADER,
            "Bearer wrong-token-0123456789".parse().unwrap(),
        );
        assert_eq!(
            a.check("/api/v1/report", &Method::GET, &h),
            Err(Denied::Invalid)
        );
    }

    #[test]
    fn tokens_are_checked_by_scope() {
        let a = auth();
        let (get, post) = (Method::GET, Method::POST);
        assert_eq!(
            a.check("/api/v1/report", &get, &headers(None)),
            Err(Denied::Missing)
        );
        assert_eq!(
            a.check(
                "/api/v1/report",
                &get,
                &headers(Some("read-token-012345678"))
            ),
            Err(Denied::Invalid)
        );
        assert_eq!(
            a.check(
                "/api/v1/report",
                &get,
                &headers(Some("read-token-0123456789"))
            ),
            Ok(Some("ro".into()))
        );
        assert_eq!(
            a.check("/api/v1/x", &post, &headers(Some("read-token-0123456789"))),
            Err(Denied::Forbidden)
        );
        assert_eq!(
            a.check("/api/v1/x", &post, &headers(Some("admin-token-0123456789"))),
            Ok(Some("ops".into()))
        );
        assert_eq!(a.check("/healthz", &get, &headers(None)), Ok(None));
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            "Basic cmVhZC10b2tlbg==".parse().unwrap(),
        );
        assert_eq!(a.check("/api/v1/report", &get, &h), Err(Denied::Missing));
        assert_eq!(
            Auth::anonymous().check("/api/v1/x", &post, &headers(None)),
            Ok(None)
        );
        // The Debug form names tokens, never their secrets.
        let dbg = format!("{a:?}");
        assert!(
            dbg.contains("\"ro\"") && !dbg.contains("read-token"),
            "{dbg}"
        );
    }

    #[test]
    fn tokens_load_from_files_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("read");
        std::fs::write(&f, "file-token-0123456789\n").unwrap();
        let cfg: AuthConfig = caretaker_core::config::parse_yaml(
            &format!(
                "tokens:\n  - {{name: ro, scope: read, file: {}}}\n",
                f.display()
            ),
            std::path::Path::new("c"),
        )
        .unwrap();
        let a = Auth::from_config(&cfg).unwrap();
        assert_eq!(
            a.check(
                "/api/v1/report",
                &Method::GET,
                &headers(Some("file-token-0123456789"))
            ),
            Ok(Some("ro".into()))
        );
        std::fs::write(&f, "short\n").unwrap();
        assert_eq!(
            Auth::from_config(&cfg).unwrap_err().to_string(),
            "auth.tokens ro: the token is shorter than 16 characters; generate one with `caretaker-aggregator certs`"
        );
        let cfg: AuthConfig = caretaker_core::config::parse_yaml(
            "tokens:\n  - {name: ops, scope: admin, env: CARETAKER_TEST_UNSET_TOKEN_VAR}\n",
            std::path::Path::new("c"),
        )
        .unwrap();
        assert_eq!(
            Auth::from_config(&cfg).unwrap_err().to_string(),
            "auth.tokens ops: environment variable CARETAKER_TEST_UNSET_TOKEN_VAR is not set"
        );
    }

    fn file_config(read: &std::path::Path, admin: &std::path::Path) -> AuthConfig {
        caretaker_core::config::parse_yaml(
            &format!(
                "tokens:\n  - {{name: ro, scope: read, file: {}}}\n  - {{name: ops, scope: admin, file: {}}}\n",
                read.display(),
                admin.display()
            ),
            std::path::Path::new("c"),
        )
        .unwrap()
    }

    /// Replaces a file the way Kubernetes updates a Secret volume: a new file renamed over it.
    fn swap(path: &std::path::Path, text: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    async fn status(app: &axum::Router, token: &str) -> StatusCode {
        use tower::ServiceExt;
        let req = Request::get("/api/v1/report")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap();
        app.clone().oneshot(req).await.unwrap().status()
    }

    #[tokio::test]
    async fn a_rotated_token_file_takes_effect_without_restart_and_the_old_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (read, admin) = (dir.path().join("read"), dir.path().join("admin"));
        std::fs::write(&read, "old-read-token-0123456789\n").unwrap();
        std::fs::write(&admin, "admin-token-0123456789\n").unwrap();
        let auth = Arc::new(Auth::from_config(&file_config(&read, &admin)).unwrap());
        let app = axum::Router::new()
            .route("/api/v1/report", axum::routing::get(|| async { "report" }))
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&auth),
                http_middleware,
            ));

        assert_eq!(
            status(&app, "old-read-token-0123456789").await,
            StatusCode::OK
        );
        assert_eq!(
            status(&app, "new-read-token-0123456789").await,
            StatusCode::UNAUTHORIZED
        );

        swap(&read, "new-read-token-0123456789\n");
        assert_eq!(
            status(&app, "old-read-token-0123456789").await,
            StatusCode::UNAUTHORIZED,
            "the old token is refused after rotation"
        );
        assert_eq!(
            status(&app, "new-read-token-0123456789").await,
            StatusCode::OK,
            "the new token is accepted without a restart"
        );
        assert_eq!(
            status(&app, "admin-token-0123456789").await,
            StatusCode::OK,
            "the other token is untouched"
        );

        // Rewritten in place (same inode, other size): seen as well.
        std::fs::write(&read, "third-read-token-0123456789-longer\n").unwrap();
        assert_eq!(
            status(&app, "new-read-token-0123456789").await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&app, "third-read-token-0123456789-longer").await,
            StatusCode::OK
        );
    }

    #[test]
    fn a_token_file_that_becomes_empty_unreadable_or_short_keeps_the_last_good_token() {
        let dir = tempfile::tempdir().unwrap();
        let (read, admin) = (dir.path().join("read"), dir.path().join("admin"));
        std::fs::write(&read, "good-read-token-0123456789").unwrap();
        std::fs::write(&admin, "admin-token-0123456789").unwrap();
        let a = Auth::from_config(&file_config(&read, &admin)).unwrap();
        let get = Method::GET;
        let good = headers(Some("good-read-token-0123456789"));
        assert_eq!(
            a.check("/api/v1/report", &get, &good),
            Ok(Some("ro".into()))
        );

        swap(&read, "");
        assert_eq!(
            a.check("/api/v1/report", &get, &good),
            Ok(Some("ro".into())),
            "empty: the last good token stays"
        );
        swap(&read, "short\n");
        assert_eq!(
            a.check("/api/v1/report", &get, &good),
            Ok(Some("ro".into())),
            "too short: the last good token stays"
        );
        assert_eq!(
            a.check("/api/v1/report", &get, &headers(Some("short"))),
            Err(Denied::Invalid)
        );
        std::fs::remove_file(&read).unwrap();
        assert_eq!(
            a.check("/api/v1/report", &get, &good),
            Ok(Some("ro".into())),
            "gone: the last good token stays"
        );
        std::fs::create_dir(&read).unwrap();
        assert_eq!(
            a.check("/api/v1/report", &get, &good),
            Ok(Some("ro".into())),
            "unreadable: the last good token stays"
        );
        std::fs::remove_dir(&read).unwrap();

        // A good file again is taken.
        swap(&read, "fresh-read-token-0123456789");
        assert_eq!(a.check("/api/v1/report", &get, &good), Err(Denied::Invalid));
        assert_eq!(
            a.check(
                "/api/v1/report",
                &get,
                &headers(Some("fresh-read-token-0123456789"))
            ),
            Ok(Some("ro".into()))
        );
    }
}
