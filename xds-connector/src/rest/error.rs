//! JSON error answers: `{"error": "...", "function": "<name>"}` (function when known), with
//! the status the error's kind calls for.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::{Error, ErrorKind};

/// An [`Error`] on its way to a REST client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: Error,
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let status = match error.kind {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Redis => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::CorruptSnapshot | ErrorKind::Io => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError { status, error }
    }
}

impl ApiError {
    /// Names the function the error concerns, unless it already names one.
    pub fn for_function(mut self, function: &str) -> Self {
        if self.error.function.is_none() {
            self.error.function = Some(function.to_string());
        }
        self
    }

    pub fn with_status(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error: Error::invalid(message),
        }
    }
}

/// The JSON body of an error.
pub fn body(message: &str, function: Option<&str>) -> serde_json::Value {
    match function {
        Some(f) => serde_json::json!({ "error": message, "function": f }),
        None => serde_json::json!({ "error": message }),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(error = %self.error.chain(), status = %self.status, "REST request failed");
        } else {
            tracing::debug!(error = %self.error.chain(), status = %self.status, "REST request refused");
        }
        let mut resp = (
            self.status,
            Json(body(&self.error.chain(), self.error.function.as_deref())),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}
