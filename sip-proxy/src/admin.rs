//! The admin HTTP API: `/healthz` (200 once SIP is received) and `/v1/stats` (the counters).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::stats::Stats;

pub fn router(stats: Arc<Stats>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/v1/stats",
            get(|State(s): State<Arc<Stats>>| async move { Json(s.json()) }),
        )
        .fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                Json(serde_json::json!({"error": "no such path"})),
            )
        })
        .with_state(stats)
}
