//! Bearer-token authentication of the query APIs (HTTP JSON and gRPC `Query`).
//!
//! Which scope a request needs is decided by its path and method alone
//! ([`Auth::required_scope`]): health endpoints and ingest (authenticated by mutual TLS)
//! need none, reads need `read`, anything that changes something needs `admin`. A request
//! without a valid token gets 401 (gRPC `UNAUTHENTICATED`), one with a read token on an
//! admin action 403 (`PERMISSION_DENIED`). Tokens are compared in constant time and never
//! logged: the log names a token by its configured `name`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{HeaderMap, Method, Request, Response, StatusCode, header};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tracing::{debug, warn};

use crate::config::AuthConfig;

/// What a token may do. `Admin` includes `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Queries: reports, nodes, history, metrics.
    Read,
    /// Also `--apply` of cleanups and commands to agents.
    Admin,
}

/// gRPC methods that change something and so need an admin token. Every other
/// `caretaker.v1` method needs a read token.
pub const ADMIN_GRPC_METHODS: &[&str] = &["/caretaker.v1.Query/RunChecks"];

/// Errors loading the tokens.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("auth.tokens {name}: cannot read token file {path}: {source}")]
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
    #[error("auth.tokens {name}: the token is shorter than 16 characters; generate one with `caretaker-aggregator certs`")]
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
    pub fn http_status(self) -> StatusCode {
        match self {
            Self::Missing | Self::Invalid => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
        }
    }
}

struct Token {
    name: String,
    scope: Scope,
    secret: Vec<u8>,
}

/// The accepted tokens and the policy.
pub struct Auth {
    tokens: Vec<Token>,
    anonymous: bool,
    metrics_require_token: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names and scopes only: a token never reaches a log.
        let names: Vec<(&str, Scope)> = self.tokens.iter().map(|t| (t.name.as_str(), t.scope)).collect();
        f.debug_struct("Auth").field("tokens", &names).field("anonymous", &self.anonymous).finish_non_exhaustive()
    }
}

impl Auth {
    /// No tokens needed anywhere (in-process tests, `standalone` on loopback).
    pub fn anonymous() -> Self {
        Self { tokens: Vec::new(), anonymous: true, metrics_require_token: false }
    }

    /// Tokens given directly: `(name, scope, token)`.
    pub fn with_tokens(tokens: impl IntoIterator<Item = (String, Scope, String)>, metrics_require_token: bool) -> Self {
        Self {
            tokens: tokens.into_iter().map(|(name, scope, t)| Token { name, scope, secret: t.into_bytes() }).collect(),
            anonymous: false,
            metrics_require_token,
        }
    }

    /// Reads the tokens from their files and variables.
    ///
    /// # Errors
    /// A token that cannot be read, is empty or shorter than 16 characters.
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, AuthError> {
        let mut tokens = Vec::new();
        for t in &cfg.tokens {
            let raw = match (&t.file, &t.env) {
                (Some(path), _) => std::fs::read_to_string(path)
                    .map_err(|source| AuthError::Read { name: t.name.clone(), path: path.clone(), source })?,
                (None, Some(var)) => {
                    std::env::var(var).map_err(|_| AuthError::Env { name: t.name.clone(), var: var.clone() })?
                }
                (None, None) => String::new(),
            };
            let secret = raw.trim();
            if secret.is_empty() {
                return Err(AuthError::Empty { name: t.name.clone() });
            }
            if secret.len() < 16 {
                return Err(AuthError::Short { name: t.name.clone() });
            }
            tokens.push(Token { name: t.name.clone(), scope: t.scope, secret: secret.as_bytes().to_vec() });
        }
        Ok(Self { tokens, anonymous: cfg.allow_anonymous, metrics_require_token: cfg.metrics_require_token })
    }

    /// The scope a request needs, from its path and method; `None`: no token needed.
    pub fn required_scope(&self, path: &str, method: &Method) -> Option<Scope> {
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
    /// when no token was needed.
    ///
    /// # Errors
    /// Why the request is refused.
    pub fn check(&self, path: &str, method: &Method, headers: &HeaderMap) -> Result<Option<&str>, Denied> {
        let Some(needed) = self.required_scope(path, method) else { return Ok(None) };
        if self.anonymous {
            return Ok(None);
        }
        let Some(given) = bearer(headers) else { return Err(Denied::Missing) };
        // Compare against every token, without stopping at the first match.
        let mut found: Option<&Token> = None;
        for t in &self.tokens {
            if bool::from(t.secret.as_slice().ct_eq(given)) {
                found = Some(t);
            }
        }
        match found {
            None => Err(Denied::Invalid),
            Some(t) if t.scope < needed => Err(Denied::Forbidden),
            Some(t) => Ok(Some(&t.name)),
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = v.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| rest.trim_ascii())
}

/// axum middleware: refuses HTTP requests without the scope their route needs.
pub async fn http_middleware(
    axum::extract::State(auth): axum::extract::State<Arc<Auth>>,
    req: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match auth.check(req.uri().path(), req.method(), req.headers()) {
        Ok(token) => {
            debug!(path = %req.uri().path(), token = token.unwrap_or("-"), "Authorized an API request.");
            next.run(req).await
        }
        Err(d) => {
            warn!(path = %req.uri().path(), method = %req.method(), reason = d.message(), "Refused an API request.");
            let body = axum::Json(serde_json::json!({ "error": d.message() }));
            let mut resp = (d.http_status(), body).into_response();
            if d.http_status() == StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
            }
            resp
        }
    }
}

/// A tower layer for the gRPC server: refuses calls without the scope their method needs
/// with a gRPC status, before they reach any service.
#[derive(Debug, Clone)]
pub struct GrpcAuthLayer(pub Arc<Auth>);

impl<S> tower::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;
    fn layer(&self, inner: S) -> GrpcAuth<S> {
        GrpcAuth { inner, auth: Arc::clone(&self.0) }
    }
}

/// See [`GrpcAuthLayer`].
#[derive(Debug, Clone)]
pub struct GrpcAuth<S> {
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
        match self.auth.check(req.uri().path(), req.method(), req.headers()) {
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
            h.insert(header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
        }
        h
    }

    fn auth() -> Auth {
        Auth::with_tokens(
            [
                ("ro".to_string(), Scope::Read, "read-token-0123456789".to_string()),
                ("ops".to_string(), Scope::Admin, "admin-token-0123456789".to_string()),
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
        assert_eq!(a.required_scope("/caretaker.v1.ReportIngest/Stream", &Method::POST), None);
        assert_eq!(a.required_scope("/grpc.health.v1.Health/Check", &Method::POST), None);
        assert_eq!(a.required_scope("/caretaker.v1.Query/GetClusterReport", &Method::POST), Some(Scope::Read));
        assert_eq!(a.required_scope("/api/v1/report", &get), Some(Scope::Read));
        assert_eq!(a.required_scope("/api/v1/nodes/x", &Method::DELETE), Some(Scope::Admin));
        assert_eq!(a.required_scope("/api/v1/cleanup/apply", &Method::POST), Some(Scope::Admin));
        let m = Auth::with_tokens([], true);
        assert_eq!(m.required_scope("/metrics", &get), Some(Scope::Read));
    }

    #[test]
    fn tokens_are_checked_by_scope() {
        let a = auth();
        let (get, post) = (Method::GET, Method::POST);
        assert_eq!(a.check("/api/v1/report", &get, &headers(None)), Err(Denied::Missing));
        assert_eq!(a.check("/api/v1/report", &get, &headers(Some("read-token-012345678"))), Err(Denied::Invalid));
        assert_eq!(a.check("/api/v1/report", &get, &headers(Some("read-token-0123456789"))), Ok(Some("ro")));
        assert_eq!(a.check("/api/v1/x", &post, &headers(Some("read-token-0123456789"))), Err(Denied::Forbidden));
        assert_eq!(a.check("/api/v1/x", &post, &headers(Some("admin-token-0123456789"))), Ok(Some("ops")));
        assert_eq!(a.check("/healthz", &get, &headers(None)), Ok(None));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic cmVhZC10b2tlbg==".parse().unwrap());
        assert_eq!(a.check("/api/v1/report", &get, &h), Err(Denied::Missing));
        assert_eq!(Auth::anonymous().check("/api/v1/x", &post, &headers(None)), Ok(None));
        // The Debug form names tokens, never their secrets.
        let dbg = format!("{a:?}");
        assert!(dbg.contains("\"ro\"") && !dbg.contains("read-token"), "{dbg}");
    }

    #[test]
    fn tokens_load_from_files_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("read");
        std::fs::write(&f, "file-token-0123456789\n").unwrap();
        let cfg: AuthConfig = caretaker_proto::config::parse_yaml(
            &format!("tokens:\n  - {{name: ro, scope: read, file: {}}}\n", f.display()),
            std::path::Path::new("c"),
        )
        .unwrap();
        let a = Auth::from_config(&cfg).unwrap();
        assert_eq!(a.check("/api/v1/report", &Method::GET, &headers(Some("file-token-0123456789"))), Ok(Some("ro")));
        std::fs::write(&f, "short\n").unwrap();
        assert_eq!(
            Auth::from_config(&cfg).unwrap_err().to_string(),
            "auth.tokens ro: the token is shorter than 16 characters; generate one with `caretaker-aggregator certs`"
        );
        let cfg: AuthConfig = caretaker_proto::config::parse_yaml(
            "tokens:\n  - {name: ops, scope: admin, env: CARETAKER_TEST_UNSET_TOKEN_VAR}\n",
            std::path::Path::new("c"),
        )
        .unwrap();
        assert_eq!(Auth::from_config(&cfg).unwrap_err().to_string(), "auth.tokens ops: environment variable CARETAKER_TEST_UNSET_TOKEN_VAR is not set");
    }
}
