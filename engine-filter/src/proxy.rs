//! The "act" half: a Unix-socket HTTP/1.1 server in front of the engine's socket. Each
//! request is decided by [`Policy`]; allowed ones are forwarded on a fresh engine connection
//! and the answer streamed back (builds and the event stream stay streams). Refusals are
//! answered 403 with Docker's `{"message": ...}` shape, logged and counted.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

use crate::policy::{connect_target, BodyCheck, Decision, Policy, LABEL_INSTANCE};

/// Largest JSON body the filter reads to decide (a create or a network call).
const MAX_DECIDED_BODY: usize = 1 << 20;

type Body = BoxBody<Bytes, hyper::Error>;

pub struct Filter {
    pub policy: Policy,
    /// The engine's socket.
    pub engine: PathBuf,
    pub allowed: AtomicU64,
    pub denied: AtomicU64,
    /// Containers found to be this installation's, by the id or name they were asked by. A
    /// container's labels never change and an id is never reused, so a positive answer
    /// stays true; only the next calls on the same container skip the engine round trip
    /// (a pooled replica's unpause, a stop). Bounded: cleared when full.
    pub owned_cache: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Entries [`Filter::owned_cache`] holds at most.
const OWNED_CACHE_MAX: usize = 10_000;

impl Filter {
    pub fn new(policy: Policy, engine: PathBuf) -> Self {
        Filter {
            policy,
            engine,
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            owned_cache: Default::default(),
        }
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn answer(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

impl Filter {
    /// Sends `req` to the engine on a connection of its own; the answer streams back.
    async fn forward(&self, req: Request<Body>) -> Result<Response<Body>, String> {
        let stream = UnixStream::connect(&self.engine)
            .await
            .map_err(|e| format!("cannot reach the engine at {}: {e}", self.engine.display()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("engine handshake: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "engine connection ended");
            }
        });
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("engine request: {e}"))?;
        Ok(resp.map(BodyExt::boxed))
    }

    /// True when container `id` (id or name) carries this installation's label.
    async fn owned(&self, id: &str) -> Result<bool, String> {
        // Only ids are cached: a name can be given to another container once this one is
        // gone.
        let is_id = id.len() >= 12 && id.bytes().all(|b| b.is_ascii_hexdigit());
        if is_id && self.cache().contains(id) {
            return Ok(true);
        }
        let owned = self.ask_owned(id).await?;
        if owned && is_id {
            let mut cache = self.cache();
            if cache.len() >= OWNED_CACHE_MAX {
                cache.clear();
            }
            cache.insert(id.to_string());
        }
        Ok(owned)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.owned_cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn ask_owned(&self, id: &str) -> Result<bool, String> {
        let req = Request::get(format!("/containers/{id}/json"))
            .header(hyper::header::HOST, "docker")
            .body(full(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = self.forward(req).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        let body = Limited::new(resp.into_body(), 4 << 20)
            .collect()
            .await
            .map_err(|e| format!("engine answer: {e}"))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&body).map_err(|e| format!("engine answer: {e}"))?;
        Ok(v.pointer("/Config/Labels")
            .and_then(|l| l.get(LABEL_INSTANCE))
            .and_then(Value::as_str)
            == Some(self.policy.instance.as_str()))
    }

    async fn refuse(&self, method: &str, path: &str, why: &str) -> Response<Body> {
        let n = self.denied.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            method,
            path,
            reason = why,
            denied_total = n,
            "engine call refused"
        );
        answer(
            StatusCode::FORBIDDEN,
            &format!("refused by Sluice's engine filter: {why}"),
        )
    }

    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let decision = self.policy.decide(&method, &path, &query);
        let (parts, body) = req.into_parts();
        let req = match decision {
            Decision::Deny(why) => return Ok(self.refuse(&method, &path, &why).await),
            Decision::Allow => Request::from_parts(parts, body.boxed()),
            Decision::IfOwned(id) => match self.owned(&id).await {
                Ok(true) => Request::from_parts(parts, body.boxed()),
                Ok(false) => {
                    let why = format!("container `{id}` is not this installation's");
                    return Ok(self.refuse(&method, &path, &why).await);
                }
                Err(e) => return Ok(answer(StatusCode::BAD_GATEWAY, &e)),
            },
            Decision::IfBody(kind) => {
                let bytes = match Limited::new(body, MAX_DECIDED_BODY).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => {
                        return Ok(self
                            .refuse(&method, &path, "body too large or unreadable")
                            .await)
                    }
                };
                let json: Value = match serde_json::from_slice(&bytes) {
                    Ok(v) => v,
                    Err(_) => return Ok(self.refuse(&method, &path, "body is not JSON").await),
                };
                if let Err(why) = self.policy.check_body(kind, &json) {
                    return Ok(self.refuse(&method, &path, &why).await);
                }
                if kind == BodyCheck::ConnectNetwork {
                    let target = connect_target(&json).unwrap_or_default();
                    match self.owned(&target).await {
                        Ok(true) => {}
                        Ok(false) => {
                            let why = format!("container `{target}` is not this installation's");
                            return Ok(self.refuse(&method, &path, &why).await);
                        }
                        Err(e) => return Ok(answer(StatusCode::BAD_GATEWAY, &e)),
                    }
                }
                Request::from_parts(parts, full(bytes))
            }
        };
        self.allowed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(method = %method, path = %path, "engine call allowed");
        Ok(match self.forward(req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(method = %method, path = %path, error = %e, "engine unreachable");
                answer(StatusCode::BAD_GATEWAY, &e)
            }
        })
    }
}
