//! Request and response bodies: reading a request body under the size cap, and the response
//! body type (a buffered body, or an http-mode upstream body streamed through unchanged).

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{HeaderMap, Response, StatusCode};

use crate::error::{ErrorKind, Result, RuntimeError};

/// Body of every response the runtime sends.
pub type RespBody = Either<Full<Bytes>, Incoming>;

/// A buffered response body.
pub fn full(bytes: impl Into<Bytes>) -> RespBody {
    Either::Left(Full::new(bytes.into()))
}

/// The `Content-Length` the client declared, if any (unparsable values count as absent:
/// hyper has already rejected malformed framing).
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The 413 error for a body over `max` bytes.
pub fn too_large(max: u64) -> RuntimeError {
    RuntimeError::new(
        ErrorKind::TooLarge,
        format!("request body exceeds the limit of {max} bytes"),
    )
}

/// Reads the whole request body, failing with 413 as soon as it passes `max` bytes and with
/// 408 when it has not arrived by `deadline`.
pub async fn read_capped(body: Incoming, max: u64, deadline: Instant) -> Result<Bytes> {
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout_at(deadline.into(), collect).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(max)),
        Ok(Err(e)) => Err(RuntimeError::new(
            ErrorKind::SlowRequest,
            "the request body could not be read",
        )
        .with_source(e)),
        Err(_) => Err(RuntimeError::new(
            ErrorKind::SlowRequest,
            "the request body did not arrive within the timeout",
        )),
    }
}

/// True when `err` (or any of its causes) is a body-length-limit error.
pub fn is_length_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<LengthLimitError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// A JSON response `{"error": message, "function": function}`.
pub fn json_error(status: StatusCode, message: &str, function: &str) -> Response<RespBody> {
    let body = serde_json::json!({ "error": message, "function": function });
    json_response(status, &body)
}

/// A JSON response with `body`.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<RespBody> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
