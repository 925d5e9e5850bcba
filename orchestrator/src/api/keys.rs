//! `/system/keys`: API keys, created, listed and revoked by the admin. The secret is shown
//! once, in the answer to its creation; only its hash is kept.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_common::auth::{self, KeyRecord, Scope};

use super::{Api, ApiError, JsonBody};

/// Keys an installation may hold.
const MAX_KEYS: usize = 1000;
const MAX_NAME: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewKeyRequest {
    name: String,
    scopes: Vec<Scope>,
}

fn key_json(r: &KeyRecord) -> Value {
    json!({ "id": r.id, "name": r.name, "scopes": r.scopes, "createdAt": r.created_unix_ms })
}

fn unavailable(e: crate::error::Error) -> ApiError {
    ApiError::from_error(e, None)
}

pub(super) async fn create(
    State(api): State<Api>,
    JsonBody(req): JsonBody<NewKeyRequest>,
) -> Result<Response, ApiError> {
    let bad = |msg: &str| ApiError::new(StatusCode::BAD_REQUEST, msg, None);
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(bad(
            "name: 1 to 64 printable characters (a label for the key)",
        ));
    }
    if req.scopes.is_empty() {
        return Err(bad("scopes: at least one of admin, deploy, invoke"));
    }
    let store = api.guard.store();
    if store.api_keys().await.map_err(unavailable)?.len() >= MAX_KEYS {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("this installation already holds {MAX_KEYS} keys: revoke some first"),
            None,
        ));
    }
    let mut scopes = req.scopes;
    scopes.sort();
    scopes.dedup();
    let k = auth::new_key();
    let rec = KeyRecord {
        id: k.id,
        name: name.to_string(),
        scopes,
        hash: k.hash,
        created_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    };
    store.put_api_key(&rec).await.map_err(unavailable)?;
    tracing::info!(key = %rec.id, name = %rec.name, scopes = ?rec.scopes, "API key created");
    let mut body = key_json(&rec);
    body["key"] = Value::String(k.token);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub(super) async fn list(State(api): State<Api>) -> Result<Json<Value>, ApiError> {
    let keys = api.guard.store().api_keys().await.map_err(unavailable)?;
    Ok(Json(Value::Array(keys.iter().map(key_json).collect())))
}

pub(super) async fn revoke(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if api
        .guard
        .store()
        .delete_api_key(&id)
        .await
        .map_err(unavailable)?
    {
        tracing::info!(key = %id, "API key revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no API key `{id}`"),
            None,
        ))
    }
}
