//! `/system/secrets`, in OpenFaaS's shapes: `GET` lists names, `POST` creates, `PUT`
//! updates and `DELETE` removes, with `{"name", "value"}` or `{"name", "rawValue"}`
//! (base64) bodies. No answer ever holds a value. Writing a secret replaces the replicas of
//! the functions that list it, so each of them reads the new value.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{Api, ApiError, JsonBody};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretBody {
    name: String,
    value: Option<String>,
    #[serde(rename = "rawValue")]
    raw_value: Option<String>,
    /// Accepted for OpenFaaS clients, which send it; Sluice has one namespace.
    #[allow(dead_code)]
    namespace: Option<String>,
}

impl Drop for SecretBody {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.value.zeroize();
        self.raw_value.zeroize();
    }
}

#[derive(Deserialize)]
pub(super) struct NameBody {
    name: String,
    #[allow(dead_code)]
    namespace: Option<String>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg, None)
}

/// The value of a create/update body: exactly one of `value` and `rawValue`.
fn value_of(body: &SecretBody) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    match (&body.value, &body.raw_value) {
        (Some(v), None) => Ok(Zeroizing::new(v.as_bytes().to_vec())),
        (None, Some(raw)) => base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .map(Zeroizing::new)
            .map_err(|_| bad("rawValue: not base64")),
        (Some(_), Some(_)) => Err(bad("give either value or rawValue, not both")),
        (None, None) => Err(bad("value (text) or rawValue (base64) is required")),
    }
}

pub(super) async fn list(State(api): State<Api>) -> Result<Json<Value>, ApiError> {
    let secrets = api
        .sup
        .ctx()
        .secrets
        .list()
        .await
        .map_err(|e| ApiError::from_error(e, None))?;
    // One look at the functions for the whole list, not one per secret.
    let functions = api.sup.sources().await;
    let out = secrets
        .into_iter()
        .map(|s| {
            let used_by: Vec<&String> = functions
                .iter()
                .filter(|(_, (_, spec))| spec.secrets.contains(&s.name))
                .map(|(n, _)| n)
                .collect();
            json!({ "name": s.name, "updatedAt": s.updated_unix_ms, "usedBy": used_by })
        })
        .collect();
    Ok(Json(Value::Array(out)))
}

async fn put(api: Api, body: SecretBody, create: bool) -> Result<Response, ApiError> {
    let value = value_of(&body)?;
    let name = body.name.trim().to_string();
    api.sup
        .ctx()
        .secrets
        .put(&name, &value, create)
        .await
        .map_err(|e| ApiError::from_error(e, None))?;
    tracing::info!(secret = %name, bytes = value.len(), created = create, "secret written");
    // A function that waited for it (create) or holds the old value (update) starts over.
    api.sup.secret_changed(&name).await;
    let status = if create {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "name": name }))).into_response())
}

pub(super) async fn create(
    State(api): State<Api>,
    JsonBody(body): JsonBody<SecretBody>,
) -> Result<Response, ApiError> {
    put(api, body, true).await
}

pub(super) async fn update(
    State(api): State<Api>,
    JsonBody(body): JsonBody<SecretBody>,
) -> Result<Response, ApiError> {
    put(api, body, false).await
}

/// A secret a function lists is not deleted (its next replica could not start): remove it
/// from those functions first.
pub(super) async fn delete(
    State(api): State<Api>,
    JsonBody(body): JsonBody<NameBody>,
) -> Result<Response, ApiError> {
    let name = body.name.trim();
    let users = api.sup.using_secret(name).await;
    if !users.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "secret `{name}` is listed by {}: remove it from their `secrets:` first",
                users.join(", ")
            ),
            None,
        ));
    }
    let deleted = api
        .sup
        .ctx()
        .secrets
        .delete(name)
        .await
        .map_err(|e| ApiError::from_error(e, None))?;
    if !deleted {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("secret `{name}` does not exist"),
            None,
        ));
    }
    tracing::info!(secret = %name, "secret deleted");
    Ok((StatusCode::OK, Json(json!({ "name": name }))).into_response())
}
