//! The admin HTTP API (default :10001), served by axum on the router's runtime.
//!
//! * `GET /healthz` — 200 `{"status":"ok"}`; 503 `{"status":"shutting_down"}` once a
//!   graceful shutdown began.
//! * `GET /v1/endpoints` — every active endpoint and every draining one with requests in
//!   flight: `[{"cluster","id","address","replica","in_flight","max_concurrency","state"}]`.
//! * `GET /v1/config` — accepted versions per type, the xDS connection state, the routes.
//! * `GET /v1/queues` — per cluster: queued count, queue size and timeout, active requests.
//! * `GET /v1/stats` — per cluster and endpoint telemetry (totals, status classes, latency).
//!
//! Everything else answers 404 JSON.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};
use sluice_common::xds::client::ConnectionState;
use tokio::sync::watch;

use crate::balance::Candidate;
use crate::cluster::{EndpointView, QueueView};
use crate::config::Registry;
use crate::lifecycle::Lifecycle;

/// What the admin handlers read.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub registry: Arc<Registry>,
    pub lifecycle: Arc<Lifecycle>,
    pub node_id: String,
    pub xds: watch::Receiver<ConnectionState>,
}

/// The admin API's routes.
pub fn router(state: AdminState) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/endpoints", get(endpoints))
        .route("/v1/config", get(config))
        .route("/v1/queues", get(queues))
        .route("/v1/stats", get(stats))
        .fallback(not_found)
        .with_state(Arc::new(state))
}

async fn healthz(State(s): State<Arc<AdminState>>) -> Response {
    if s.lifecycle.is_shutting_down() {
        let body = json!({"status": "shutting_down", "in_progress": s.lifecycle.in_progress()});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    } else {
        Json(json!({"status": "ok"})).into_response()
    }
}

async fn endpoints(State(s): State<Arc<AdminState>>) -> Json<Vec<EndpointView>> {
    let mut all: Vec<EndpointView> = s
        .registry
        .clusters()
        .iter()
        .flat_map(|c| c.endpoint_views())
        .collect();
    all.sort_by(|a, b| (&a.cluster, &a.id, a.state).cmp(&(&b.cluster, &b.id, b.state)));
    Json(all)
}

async fn config(State(s): State<Arc<AdminState>>) -> Json<Value> {
    let snap = s.registry.snapshot();
    let (applied, applied_unix_ms) = s.registry.applied();
    let xds = s.xds.borrow().clone();
    Json(json!({
        "node_id": s.node_id,
        "versions": snap.versions,
        "xds": xds,
        "applied_snapshots": applied,
        "applied_unix_ms": applied_unix_ms,
        "clusters": snap.clusters.keys().collect::<Vec<_>>(),
        "routes": s.registry.route_table().names(),
    }))
}

async fn queues(State(s): State<Arc<AdminState>>) -> Json<Vec<QueueView>> {
    Json(
        s.registry
            .clusters()
            .iter()
            .map(|c| c.queue_view())
            .collect(),
    )
}

async fn stats(State(s): State<Arc<AdminState>>) -> Json<Value> {
    let mut clusters = BTreeMap::new();
    for c in s.registry.clusters() {
        let endpoints: BTreeMap<String, Value> = c
            .endpoints()
            .iter()
            .map(|e| {
                let v = json!({
                    "address": e.addr().to_string(),
                    "in_flight": e.in_flight(),
                    "draining": e.is_draining(),
                    "connect_failures": e.stats.connect_failures.load(std::sync::atomic::Ordering::Relaxed),
                    "counters": e.stats.counters.snapshot(),
                });
                (e.id().to_string(), v)
            })
            .collect();
        clusters.insert(
            c.name().to_string(),
            json!({ "stats": c.stats.snapshot(), "endpoints": endpoints }),
        );
    }
    Json(json!({ "clusters": clusters }))
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response()
}
