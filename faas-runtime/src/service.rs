//! Request handling: `/_/health`, `/_/ready`, and everything else as one invocation.
//!
//! Admission order for an invocation: declared `Content-Length` over the cap → 413 at once;
//! no free in-flight slot → 429 at once; then the body is read under the cap and the deadline
//! and the backend runs the call. Python and binary calls run in their own task so a client
//! that hangs up does not cancel the function half-way (the worker stays in step and is
//! reused); the in-flight slot moves into that task and is released when the function is done.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Either;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};

use crate::backend::Backend;
use crate::body::{
    declared_length, full, json_error, json_response, read_capped, too_large, RespBody,
};
use crate::error::{ErrorKind, RuntimeError};
use crate::inflight::Inflight;
use crate::invocation::{Invocation, Outcome};

/// Header carrying the time spent in the function, in milliseconds.
pub const RUNTIME_MS_HEADER: &str = "x-sluice-runtime-ms";

/// Everything a request needs; shared by all connections.
#[derive(Debug)]
pub struct State {
    pub function: String,
    pub backend: Backend,
    pub inflight: Arc<Inflight>,
    /// Set on SIGTERM: readiness turns 503 while in-flight calls drain.
    pub stopping: Arc<AtomicBool>,
    pub timeout: Duration,
    pub max_body: u64,
    /// Required in every request's `x-sluice-runtime-token` (see `sluice_common::runtime`).
    pub token: Option<String>,
}

/// The hyper service entry point.
pub async fn serve(
    state: Arc<State>,
    mut req: Request<Incoming>,
) -> Result<Response<RespBody>, Infallible> {
    if let Some(token) = &state.token {
        let got = req.headers().get(sluice_common::runtime::HEADER);
        if !sluice_common::runtime::matches(got.map(HeaderValue::as_bytes), token) {
            tracing::warn!(function = %state.function, path = %req.uri().path(),
                "request without the runtime token refused (not from the platform)");
            return Ok(json_error(
                StatusCode::FORBIDDEN,
                "this runtime answers the platform only: call the function through the gateway",
                &state.function,
            ));
        }
    }
    req.headers_mut().remove(sluice_common::runtime::HEADER);
    if req.method() == Method::GET {
        match req.uri().path() {
            "/_/health" => return Ok(health()),
            "/_/ready" => return Ok(ready(&state)),
            _ => {}
        }
    }
    Ok(invoke(&state, req).await)
}

fn health() -> Response<RespBody> {
    json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

/// 200 only when loaded, below the cap and not stopping; else 503 with the reason, or 500
/// when the function can never become ready (see `Backend::broken`).
fn ready(state: &State) -> Response<RespBody> {
    if let Some(reason) = state.backend.broken() {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, &reason, &state.function);
    }
    let reason = if state.stopping.load(Ordering::Acquire) {
        Some("replica is shutting down".to_string())
    } else if let Err(reason) = state.backend.readiness() {
        Some(reason)
    } else if state.inflight.at_cap() {
        Some(at_cap_message(state.inflight.max()))
    } else {
        None
    };
    match reason {
        None => json_response(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        Some(reason) => json_error(StatusCode::SERVICE_UNAVAILABLE, &reason, &state.function),
    }
}

fn at_cap_message(max: usize) -> String {
    format!("replica at its concurrency limit ({max})")
}

async fn invoke(state: &Arc<State>, req: Request<Incoming>) -> Response<RespBody> {
    let deadline = Instant::now() + state.timeout;
    if declared_length(req.headers()).is_some_and(|n| n > state.max_body) {
        return error_response(state, &too_large(state.max_body), None);
    }
    let Some(slot) = state.inflight.try_acquire() else {
        let e = RuntimeError::new(ErrorKind::Overloaded, at_cap_message(state.inflight.max()));
        return error_response(state, &e, None);
    };

    if let Backend::Http(http) = &state.backend {
        let started = Instant::now();
        let res = http.forward(req, deadline).await;
        drop(slot);
        let elapsed = started.elapsed();
        return match res {
            Ok(resp) => with_runtime_ms(resp.map(Either::Right), elapsed),
            Err(e) => error_response(state, &e, Some(elapsed)),
        };
    }

    let (parts, body) = req.into_parts();
    let body = match read_capped(body, state.max_body, deadline).await {
        Ok(b) => b,
        Err(e) => return error_response(state, &e, None),
    };
    let inv = Invocation::new(parts, body, deadline);
    let request_id = inv.request_id.clone();
    let task_state = state.clone();
    let started = Instant::now();
    let task = tokio::spawn(async move {
        let _slot = slot;
        match &task_state.backend {
            Backend::Python(b) => b.invoke(inv).await,
            Backend::Binary(b) => b.invoke(inv).await,
            Backend::Http(_) => Err(RuntimeError::new(
                ErrorKind::Internal,
                "unreachable backend",
            )),
        }
    });
    let res = task.await.unwrap_or_else(|e| {
        Err(RuntimeError::new(ErrorKind::Internal, "the invocation task failed").with_source(e))
    });
    let elapsed = started.elapsed();
    match res {
        Ok(outcome) => with_runtime_ms(outcome_response(outcome), elapsed),
        Err(e) => {
            match e.kind {
                ErrorKind::Function | ErrorKind::Timeout | ErrorKind::Internal => {
                    tracing::warn!(function = %state.function, request_id = %request_id, error = %e, "invocation failed")
                }
                _ => {
                    tracing::debug!(function = %state.function, request_id = %request_id, error = %e, retryable = e.retryable(), "invocation refused")
                }
            }
            error_response(state, &e, Some(elapsed))
        }
    }
}

fn outcome_response(outcome: Outcome) -> Response<RespBody> {
    let mut resp = Response::new(full(outcome.body));
    *resp.status_mut() = outcome.status;
    *resp.headers_mut() = outcome.headers;
    resp
}

fn error_response(
    state: &State,
    e: &RuntimeError,
    elapsed: Option<Duration>,
) -> Response<RespBody> {
    let resp = json_error(e.status(), &e.message, &state.function);
    match elapsed {
        Some(d) => with_runtime_ms(resp, d),
        None => resp,
    }
}

fn with_runtime_ms(mut resp: Response<RespBody>, elapsed: Duration) -> Response<RespBody> {
    let ms = format!("{:.3}", elapsed.as_secs_f64() * 1000.0);
    if let Ok(v) = HeaderValue::from_str(&ms) {
        resp.headers_mut().insert(RUNTIME_MS_HEADER, v);
    }
    resp
}
