//! The gateway's one error type.
//!
//! Every refusal the gateway answers itself (unknown function, body too large, cold start
//! timed out, ...) is a [`GatewayError`] whose [`ErrorKind`] decides the HTTP status; the
//! caller sees `{"error": "<message>", "function": "<name>"}` (function when known). Errors
//! that are not about one request (bad configuration, a failed wake call) use the same type;
//! `retryable` says whether trying again later may succeed.

use std::time::Duration;

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed: bad function name, unreadable body (400, counted).
    Malformed,
    /// No function of that name (404).
    NotFound,
    /// The request body is larger than the function accepts (413).
    TooLarge,
    /// A reserved path whose feature is not built yet (501).
    NotImplemented,
    /// The function did not get a ready replica in time, or the orchestrator refused to start
    /// it (503 with `Retry-After`).
    Unavailable,
    /// The router (or orchestrator) could not be reached or failed mid-response (502).
    BadGateway,
    /// The upstream did not answer in time (504).
    Timeout,
    /// A call to the orchestrator failed (wake-up).
    Orchestrator,
    /// Invalid settings at start-up.
    Config,
    /// A function declared `auth: key` called without a credential, or a wrong one (401 with
    /// `WWW-Authenticate`).
    Unauthorized,
    /// A credential without the `invoke` scope (403).
    Forbidden,
    /// Too many failed attempts from the caller's address (429 with `Retry-After`).
    TooManyAttempts,
    /// A fault of the gateway itself (500).
    Internal,
}

/// An error of the gateway; see the module docs.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct GatewayError {
    pub kind: ErrorKind,
    pub message: String,
    /// The function concerned, when known (put in the JSON body).
    pub function: Option<String>,
    /// Seconds for `Retry-After` (503s).
    pub retry_after: Option<Duration>,
    /// Whether the same operation may succeed when tried again.
    pub retryable: bool,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl GatewayError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        GatewayError {
            kind,
            message: message.into(),
            function: None,
            retry_after: None,
            retryable: matches!(
                kind,
                ErrorKind::Unavailable
                    | ErrorKind::BadGateway
                    | ErrorKind::Timeout
                    | ErrorKind::Orchestrator
            ),
            source: None,
        }
    }

    /// Names the function concerned.
    pub fn for_function(mut self, function: impl Into<String>) -> Self {
        self.function = Some(function.into());
        self
    }

    /// Adds `Retry-After` to the response.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Overrides whether the error is worth retrying.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Attaches the underlying cause (logged, not shown to callers).
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The unknown-function error every path uses.
    pub fn not_found(function: &str) -> Self {
        GatewayError::new(
            ErrorKind::NotFound,
            format!("function `{function}` not found"),
        )
        .for_function(function)
    }

    /// The HTTP status the caller gets.
    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::Malformed => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::TooLarge => 413,
            ErrorKind::NotImplemented => 501,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::TooManyAttempts => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::BadGateway | ErrorKind::Orchestrator => 502,
            ErrorKind::Timeout => 504,
            ErrorKind::Config | ErrorKind::Internal => 500,
        }
    }

    /// The JSON body: `{"error": "...", "function": "..."}` (function only when known).
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some(f) = &self.function {
            body["function"] = serde_json::Value::String(f.clone());
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_function_body_names_it() {
        let e = GatewayError::not_found("x");
        assert_eq!(e.status(), 404);
        assert_eq!(
            e.body(),
            serde_json::json!({"error": "function `x` not found", "function": "x"})
        );
    }

    #[test]
    fn body_omits_function_when_unknown() {
        let e = GatewayError::new(ErrorKind::Malformed, "bad");
        assert_eq!(e.body(), serde_json::json!({"error": "bad"}));
        assert!(!e.retryable);
        assert!(GatewayError::new(ErrorKind::Unavailable, "x").retryable);
    }
}
