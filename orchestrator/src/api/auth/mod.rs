//! Who may call the API: every `/system/*` route requires a credential with the route's scope
//! (the contract, key format and scopes are in [`sluice_common::auth`]).
//!
//! * No `Authorization` header: 401 with `WWW-Authenticate` for Basic and Bearer.
//! * A wrong or malformed credential: 401, and one failed attempt for the client address.
//! * A right credential without the scope: 403.
//! * An address out of attempts ([`limiter`]): 429 with `Retry-After`, credentials unchecked.
//!
//! The client address is the gateway's `X-Sluice-Client` when present (the gateway always
//! overwrites it), else the peer. Only control-plane services reach this port directly.

pub mod limiter;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sluice_common::auth::{self, Credential, Scope};

use crate::state::Store;
use limiter::Limiter;

/// Shortest admin password accepted at start-up (`make up` generates 32 characters).
pub const MIN_PASSWORD_LEN: usize = 12;

/// Who a request was authenticated as (put in the request's extensions).
#[derive(Debug, Clone)]
pub struct Principal {
    /// `admin`, or `key:<id>`.
    pub name: String,
    pub scopes: Vec<Scope>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    Missing,
    Invalid(&'static str),
    Forbidden(Scope),
    Limited(Duration),
    Unavailable(&'static str),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let challenge = |mut r: Response| {
            let h = r.headers_mut();
            for v in [
                format!("Basic realm=\"{}\", charset=\"UTF-8\"", auth::REALM),
                format!("Bearer realm=\"{}\"", auth::REALM),
            ] {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.append(header::WWW_AUTHENTICATE, v);
                }
            }
            r
        };
        let body = |status: StatusCode, msg: String| (status, Json(json!({ "error": msg })));
        match self {
            Denied::Missing => challenge(
                body(
                    StatusCode::UNAUTHORIZED,
                    "credentials required: basic auth as `admin` or a bearer API key".into(),
                )
                .into_response(),
            ),
            Denied::Invalid(why) => {
                challenge(body(StatusCode::UNAUTHORIZED, why.into()).into_response())
            }
            Denied::Forbidden(scope) => body(
                StatusCode::FORBIDDEN,
                format!("this credential lacks the `{}` scope", scope.as_str()),
            )
            .into_response(),
            Denied::Limited(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let mut r = body(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("too many failed attempts from this address; retry in {secs} s"),
                )
                .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
                r
            }
            Denied::Unavailable(why) => {
                body(StatusCode::SERVICE_UNAVAILABLE, why.into()).into_response()
            }
        }
    }
}

pub struct Guard {
    password_file: PathBuf,
    store: Store,
    limiter: Mutex<Limiter>,
}

impl Guard {
    pub fn new(password_file: PathBuf, store: Store, limits: limiter::Settings) -> Self {
        Guard {
            password_file,
            store,
            limiter: Mutex::new(Limiter::new(limits)),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Checks `request` for a credential with `needed`.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        needed: Scope,
    ) -> Result<Principal, Denied> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(Denied::Missing);
        };
        let source = client(headers, peer);
        self.limit(&source)?;
        let found = match value.to_str().map(auth::parse_authorization) {
            Ok(Ok(c)) => self.check(c).await,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "malformed Authorization header");
                Err(Denied::Invalid("invalid credentials"))
            }
            Err(_) => Err(Denied::Invalid("invalid credentials")),
        };
        match found {
            Ok(p) if auth::allows(&p.scopes, needed) => Ok(p),
            Ok(p) => {
                tracing::warn!(principal = %p.name, scope = needed.as_str(), client = %source,
                    "refused: the credential lacks the scope");
                Err(Denied::Forbidden(needed))
            }
            Err(d @ Denied::Invalid(_)) => {
                if let Ok(mut l) = self.limiter.lock() {
                    l.failed(&source, Instant::now());
                }
                tracing::warn!(client = %source, "refused: wrong credentials");
                Err(d)
            }
            Err(d) => Err(d),
        }
    }

    fn limit(&self, source: &str) -> Result<(), Denied> {
        let mut l = match self.limiter.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        l.check(source, Instant::now()).map_err(|wait| {
            tracing::warn!(client = %source, "refused: out of attempts");
            Denied::Limited(wait)
        })
    }

    async fn check(&self, c: Credential) -> Result<Principal, Denied> {
        match c {
            Credential::Basic { user, password } => {
                let expected = auth::read_secret_line(&self.password_file).map_err(|e| {
                    tracing::error!(file = %self.password_file.display(), error = %e,
                        "cannot read the admin password");
                    Denied::Unavailable("the admin password cannot be read")
                })?;
                // Both comparisons always run: the time says nothing about which was wrong.
                let user_ok = auth::password_matches(&user, auth::ADMIN_USER);
                let pass_ok = auth::password_matches(&password, &expected);
                if user_ok & pass_ok {
                    Ok(Principal {
                        name: auth::ADMIN_USER.into(),
                        scopes: vec![Scope::Admin],
                    })
                } else {
                    Err(Denied::Invalid("invalid credentials"))
                }
            }
            Credential::Key { id, secret } => {
                let rec = self.store.api_key(&id).await.map_err(|e| {
                    tracing::error!(error = %e, "cannot look an API key up");
                    Denied::Unavailable("API keys cannot be checked now")
                })?;
                // An unknown id still costs one comparison, against a hash nothing matches.
                let stored = rec.as_ref().map_or("-", |r| r.hash.as_str());
                if auth::key_matches(&secret, stored) {
                    let scopes = rec.map(|r| r.scopes).unwrap_or_default();
                    Ok(Principal {
                        name: format!("key:{id}"),
                        scopes,
                    })
                } else {
                    Err(Denied::Invalid("invalid credentials"))
                }
            }
        }
    }
}

/// The client address a request is counted against.
fn client(headers: &HeaderMap, peer: Option<SocketAddr>) -> String {
    headers
        .get(auth::CLIENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .map(str::to_string)
        .or_else(|| peer.map(|p| p.ip().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

/// Start-up check of the admin password file, with what to do when it is not usable.
pub fn check_password_file(path: &std::path::Path) -> anyhow::Result<()> {
    let p = auth::read_secret_line(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the admin password from {} ({e}); `make up` generates it into \
             secrets/admin-password (SLUICE_ADMIN_PASSWORD_FILE names another file)",
            path.display()
        )
    })?;
    if p.chars().count() < MIN_PASSWORD_LEN {
        anyhow::bail!(
            "the admin password in {} is shorter than {MIN_PASSWORD_LEN} characters",
            path.display()
        );
    }
    Ok(())
}

/// The scope a `/system` route needs: keys and secrets are the admin's; the rest is deploy.
pub fn scope_for(path: &str) -> Scope {
    let admin_only = ["/system/keys", "/system/secrets"];
    if admin_only.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }) {
        Scope::Admin
    } else {
        Scope::Deploy
    }
}

fn peer(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// Middleware of the `/system` routes.
pub async fn require(State(guard): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_string(), |m| m.as_str().to_string());
    match guard
        .authorize(req.headers(), peer(&req), scope_for(&path))
        .await
    {
        Ok(p) => {
            if req.method() != axum::http::Method::GET {
                tracing::info!(principal = %p.name, method = %req.method(), path = %req.uri().path(),
                    "control API call");
            }
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(d) => d.into_response(),
    }
}

/// `POST /internal/auth/invoke`: the gateway asks whether a caller may invoke a function
/// declared `auth: key` (204: yes).
pub async fn verify_invoke(State(guard): State<Arc<Guard>>, req: Request) -> Response {
    match guard
        .authorize(req.headers(), peer(&req), Scope::Invoke)
        .await
    {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(d) => d.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_secrets_are_the_admins() {
        assert_eq!(scope_for("/system/keys"), Scope::Admin);
        assert_eq!(scope_for("/system/keys/{id}"), Scope::Admin);
        assert_eq!(scope_for("/system/secrets"), Scope::Admin);
        assert_eq!(scope_for("/system/functions"), Scope::Deploy);
        assert_eq!(scope_for("/system/keysmith"), Scope::Deploy);
    }

    #[test]
    fn the_gateways_client_header_wins_over_the_peer() {
        let peer: SocketAddr = "172.18.0.5:4000".parse().unwrap_or_else(|_| unreachable!());
        let mut h = HeaderMap::new();
        assert_eq!(client(&h, Some(peer)), "172.18.0.5");
        h.insert(auth::CLIENT_HEADER, HeaderValue::from_static("203.0.113.9"));
        assert_eq!(client(&h, Some(peer)), "203.0.113.9");
    }

    #[test]
    fn a_short_or_missing_password_file_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = dir.path().join("admin-password");
        let e = check_password_file(&f).err().map(|e| e.to_string());
        assert!(e.as_deref().is_some_and(|e| e.contains("make up")), "{e:?}");
        std::fs::write(&f, "short\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(check_password_file(&f).is_err());
        std::fs::write(&f, "a-long-enough-password\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(check_password_file(&f).is_ok());
        assert_eq!(
            auth::read_secret_line(&f).unwrap_or_default(),
            "a-long-enough-password"
        );
    }
}
