//! Extractors whose rejections are JSON errors naming the problem (axum's own answer plain
//! text, and 422 for a JSON body of the wrong shape; the contract wants 400 JSON).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A request body to be parsed as JSON once the path has been checked (so a bad name is
/// reported before a bad body). Parse errors carry the JSON path of the offending field
/// (e.g. `cluster.max_concurrency: invalid type: string "x", expected u32`).
pub struct JsonBody(pub Bytes);

impl JsonBody {
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse(&self.0)
    }
}

impl<S> FromRequest<S> for JsonBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(JsonBody)
            .map_err(|e: BytesRejection| ApiError::with_status(e.status(), e.body_text()))
    }
}

/// Parses a JSON body, naming the field at fault.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::with_status(
            StatusCode::BAD_REQUEST,
            "the request body is empty; a JSON object is expected",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if path == "." || path.is_empty() {
            format!("invalid JSON body: {inner}")
        } else {
            format!("invalid JSON body at `{path}`: {inner}")
        };
        ApiError::with_status(StatusCode::BAD_REQUEST, msg)
    })?;
    de.end().map_err(|e| {
        ApiError::with_status(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: trailing data: {e}"),
        )
    })?;
    Ok(value)
}

/// Path parameters.
pub struct Names<T>(pub T);

impl<S, T> FromRequestParts<S> for Names<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Names(v))
            .map_err(|e: PathRejection| {
                ApiError::with_status(StatusCode::BAD_REQUEST, e.body_text())
            })
    }
}
