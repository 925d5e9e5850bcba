//! The REST API for the orchestrator (axum). Every answer is JSON; every error is
//! `{"error": "...", "function": "<name>"}` (function when known). Malformed requests (400,
//! 413) are counted in `/v1/stats`. The API is described in `xds-connector/openapi.yaml`.
//!
//! Handlers by role: [`functions`] (the orchestrator's per-function calls), [`resources`]
//! (generic clusters, endpoints, routes, listeners), [`status`] (health, snapshot, clients,
//! counters). [`extract`] turns axum's rejections into JSON 400s, [`error`] maps errors to
//! statuses.

pub mod error;
pub mod extract;
pub mod functions;
pub mod resources;
pub mod status;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::context::Ctx;
use crate::error::{Error, ErrorKind, Result};
use crate::snapshot::{version, Change};
use crate::stats::Stats;

/// The answer to a write: whether anything changed and the versions after it.
pub fn change_body(change: &Change) -> Value {
    json!({
        "changed": change.changed,
        "versions": version::to_strings(&change.versions),
    })
}

/// Every route of the API.
pub fn router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/healthz", get(status::healthz))
        .route(
            "/v1/snapshot",
            get(status::get_snapshot).put(status::put_snapshot),
        )
        .route("/v1/clients", get(status::clients))
        .route("/v1/stats", get(status::stats))
        .route(
            "/v1/functions/{name}",
            get(functions::get)
                .put(functions::put)
                .delete(functions::delete),
        )
        .route(
            "/v1/clusters/{name}",
            get(resources::get_cluster)
                .put(resources::put_cluster)
                .delete(resources::delete_cluster),
        )
        .route(
            "/v1/endpoints/{cluster}",
            get(resources::get_endpoints)
                .put(resources::put_endpoints)
                .delete(resources::delete_endpoints),
        )
        .route(
            "/v1/endpoints/{cluster}/{id}",
            get(resources::get_endpoint)
                .put(resources::put_endpoint)
                .delete(resources::delete_endpoint),
        )
        .route(
            "/v1/endpoints/{cluster}/{id}/health",
            post(resources::set_health),
        )
        .route(
            "/v1/routes/{name}",
            get(resources::get_routes)
                .put(resources::put_routes)
                .delete(resources::delete_routes),
        )
        .route(
            "/v1/listeners/{name}",
            get(resources::get_listener)
                .put(resources::put_listener)
                .delete(resources::delete_listener),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(ctx.clone(), require_token))
        .layer(middleware::from_fn_with_state(ctx.clone(), count_malformed))
        .with_state(ctx)
}

/// Every path but `/healthz` needs the token, when one is set: 401 otherwise.
async fn require_token(State(ctx): State<Arc<Ctx>>, req: Request, next: Next) -> Response {
    let auth = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if req.uri().path() == "/healthz" || ctx.authorized(auth) {
        return next.run(req).await;
    }
    tracing::warn!(method = %req.method(), path = %req.uri().path(), "REST call refused: no or wrong token");
    let mut r = (
        StatusCode::UNAUTHORIZED,
        Json(error::body("the xDS token is missing or wrong", None)),
    )
        .into_response();
    r.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer realm=\"sluice-xds\""),
    );
    r
}

async fn not_found(method: Method, uri: Uri) -> (StatusCode, Json<Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(error::body(
            &format!("no such endpoint: {method} {}", uri.path()),
            None,
        )),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> (StatusCode, Json<Value>) {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(error::body(
            &format!("method {method} is not allowed on {}", uri.path()),
            None,
        )),
    )
}

/// Counts requests refused for their shape.
async fn count_malformed(State(ctx): State<Arc<Ctx>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    if matches!(
        resp.status(),
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE
    ) {
        Stats::incr(&ctx.stats.malformed_rest);
        tracing::info!(%method, %path, status = %resp.status(), "malformed REST request refused");
    }
    resp.into_response()
}

/// Serves the API on `listener` until the shutdown token is cancelled.
pub async fn serve(ctx: Arc<Ctx>, listener: TcpListener) -> Result<()> {
    let shutdown = ctx.shutdown.clone();
    axum::serve(listener, router(ctx))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::new(ErrorKind::Io, "REST server failed").with_source(e))
}

#[cfg(test)]
mod tests {
    /// Every path served is described in `openapi.yaml`.
    #[test]
    fn openapi_describes_every_path() {
        let doc = include_str!("../../openapi.yaml");
        for path in [
            "/healthz:",
            "/v1/snapshot:",
            "/v1/clients:",
            "/v1/stats:",
            "/v1/functions/{name}:",
            "/v1/clusters/{name}:",
            "/v1/endpoints/{cluster}:",
            "/v1/endpoints/{cluster}/{id}:",
            "/v1/endpoints/{cluster}/{id}/health:",
            "/v1/routes/{name}:",
            "/v1/listeners/{name}:",
        ] {
            assert!(
                doc.contains(&format!("  {path}\n")),
                "{path} missing from openapi.yaml"
            );
        }
    }
}
