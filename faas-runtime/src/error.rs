//! The runtime's one error type. Every failure of an invocation maps to an HTTP status and a
//! JSON body `{"error": "...", "function": "..."}`; `retryable` says whether the same request
//! may succeed on another replica or later (the router may use it to decide on a retry).

use hyper::StatusCode;

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request body is larger than `--max-body-bytes` (413).
    TooLarge,
    /// `--max-inflight` invocations are already running (429).
    Overloaded,
    /// The client did not send its body in time (408).
    SlowRequest,
    /// The function did not answer within `--timeout-ms` (504).
    Timeout,
    /// The function raised, exited non-zero or returned something unusable (500).
    Function,
    /// The function is not loaded (yet), or the runtime is stopping (503).
    NotReady,
    /// The user's http-mode server could not be reached (502).
    Upstream,
    /// A fault of the runtime itself (500).
    Internal,
}

/// An error of one invocation, or of starting the function.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RuntimeError {
    pub kind: ErrorKind,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl RuntimeError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RuntimeError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause (kept for logs, not shown to callers).
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The HTTP status the caller gets.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::SlowRequest => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Function | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
        }
    }

    /// True when the request never reached the function, so sending it elsewhere is safe.
    pub fn retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Overloaded | ErrorKind::NotReady)
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
