//! Read-mostly endpoints: `/healthz`, `/v1/snapshot` (and its atomic replacement),
//! `/v1/clients`, `/v1/stats`.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::change_body;
use super::error::ApiError;
use super::extract::JsonBody;
use crate::context::Ctx;
use crate::model::SnapshotJson;
use crate::snapshot::{version, Resources};

pub async fn healthz(State(ctx): State<Arc<Ctx>>) -> Json<Value> {
    let snap = ctx.store.current();
    Json(json!({
        "status": "ok",
        "clients": ctx.clients.len(),
        "versions": version::to_strings(&snap.versions),
    }))
}

/// `GET /v1/snapshot`: every resource with the per-type versions.
pub async fn get_snapshot(State(ctx): State<Arc<Ctx>>) -> Json<SnapshotJson> {
    let snap = ctx.store.current();
    Json(snap.resources.to_json(&snap.versions))
}

/// `PUT /v1/snapshot`: replaces every resource in one change (versions in the body are
/// ignored; the types that change get new versions). Lets a caller replace one function by
/// another atomically, or resynchronise everything after a restart.
pub async fn put_snapshot(
    State(ctx): State<Arc<Ctx>>,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    let resources = Resources::from_json(body.parse::<SnapshotJson>()?)?;
    let change = ctx
        .store
        .update(|r| {
            *r = resources;
            Ok(())
        })
        .await?;
    Ok(Json(change_body(&change)))
}

/// `GET /v1/clients`: every open stream with its per-type ACK/NACK state.
pub async fn clients(State(ctx): State<Arc<Ctx>>) -> Json<Value> {
    Json(json!(ctx.clients.list()))
}

/// `GET /v1/stats`: counters since start.
pub async fn stats(State(ctx): State<Arc<Ctx>>) -> Json<Value> {
    let mut v = ctx.stats.to_json();
    v["clients"] = json!(ctx.clients.len());
    Json(v)
}
