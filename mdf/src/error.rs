//! The crate's one error type: what went wrong, whether trying again (elsewhere or later) can
//! help, and the HTTP answer the control API gives for it.

use axum::http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {message}")]
    BadRequest { field: String, message: String },
    #[error("no such {what} `{id}`")]
    NotFound { what: &'static str, id: String },
    #[error("session `{0}` exists")]
    Conflict(String),
    #[error("no free {0}: this instance is full")]
    NoCapacity(&'static str),
    #[error("this instance is draining: it takes no new sessions")]
    Draining,
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("socket: {0}")]
    Io(#[source] std::io::Error),
    #[error("internal error")]
    Internal,
}

impl Error {
    pub fn bad(field: &str, message: impl Into<String>) -> Error {
        Error::BadRequest {
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub fn not_found(what: &'static str, id: &str) -> Error {
        Error::NotFound {
            what,
            id: id.to_string(),
        }
    }

    /// True when the same request may succeed on another instance or later.
    pub fn retryable(&self) -> bool {
        matches!(self, Error::NoCapacity(_) | Error::Draining | Error::Io(_))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::NoCapacity(_) | Error::Draining => StatusCode::SERVICE_UNAVAILABLE,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Io(_) | Error::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"error": self.to_string(), "retryable": self.retryable()});
        if let Error::BadRequest { field, .. } = self {
            v["field"] = field.clone().into();
        }
        v
    }
}

impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        let mut res = (self.status(), axum::Json(self.json())).into_response();
        if self.retryable() {
            res.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        if matches!(self, Error::Unauthorized) {
            res.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer realm=\"sluice-mdf\""),
            );
        }
        res
    }
}
