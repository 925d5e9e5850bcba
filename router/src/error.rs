//! The router's one error type: a kind (which decides the HTTP status a client sees), a
//! message, an optional source, and whether retrying later may succeed.

use std::fmt;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No route names the function (404).
    UnknownFunction,
    /// The function was removed while the request waited for a slot (404).
    FunctionRemoved,
    /// Every endpoint is at its cap and the cluster's queue is full (429).
    QueueFull,
    /// The request waited `queue_timeout_ms` without getting a slot (503).
    QueueTimeout,
    /// The upstream could not be reached (502).
    Upstream,
    /// The upstream did not answer within the router's timeout (504).
    UpstreamTimeout,
    /// The router could not start (bad flag, port in use...).
    Startup,
}

impl ErrorKind {
    /// HTTP status a client gets for this kind.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::UnknownFunction | ErrorKind::FunctionRemoved => 404,
            ErrorKind::QueueFull => 429,
            ErrorKind::QueueTimeout => 503,
            ErrorKind::Upstream => 502,
            ErrorKind::UpstreamTimeout => 504,
            ErrorKind::Startup => 500,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::UnknownFunction => "unknown function",
            ErrorKind::FunctionRemoved => "function removed",
            ErrorKind::QueueFull => "queue full",
            ErrorKind::QueueTimeout => "queue wait expired",
            ErrorKind::Upstream => "upstream failed",
            ErrorKind::UpstreamTimeout => "upstream timed out",
            ErrorKind::Startup => "startup failed",
        };
        f.write_str(s)
    }
}

/// Error of the router crate.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct RouterError {
    pub kind: ErrorKind,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl RouterError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RouterError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        RouterError {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// True when the same request may succeed if the client tries again later.
    pub fn retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::QueueFull
                | ErrorKind::QueueTimeout
                | ErrorKind::Upstream
                | ErrorKind::UpstreamTimeout
        )
    }
}
