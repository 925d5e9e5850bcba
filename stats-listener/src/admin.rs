//! The admin HTTP API (axum): `GET /healthz` and `GET /v1/stats`. JSON everywhere, unknown
//! paths answer 404 JSON. See `stats-listener/openapi.yaml`.
//!
//! `/healthz` is 200 whenever the listener runs — it keeps aggregating while Redis is down —
//! and reports Redis reachability (a fresh PING, bounded by the link timeouts) in the body.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::stats::Stats;
use crate::store::link;

#[derive(Clone)]
struct Ctx {
    stats: Arc<Stats>,
    redis: redis::Client,
    instance: String,
}

/// The admin router.
pub fn router(stats: Arc<Stats>, redis: redis::Client, instance: String) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/stats", get(v1_stats))
        .fallback(not_found)
        .with_state(Ctx {
            stats,
            redis,
            instance,
        })
}

async fn healthz(State(ctx): State<Ctx>) -> impl IntoResponse {
    let redis = match link::ping(&ctx.redis).await {
        Ok(()) => json!({"reachable": true}),
        Err(e) => json!({"reachable": false, "error": e.to_string()}),
    };
    Json(json!({
        "status": "ok",
        "component": "stats-listener",
        "version": sluice_common::SLUICE_VERSION,
        "instance": ctx.instance,
        "redis": redis,
    }))
}

async fn v1_stats(State(ctx): State<Ctx>) -> impl IntoResponse {
    Json(ctx.stats.snapshot())
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, Json(json!({"error": "not found"})))
}
