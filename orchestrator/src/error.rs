//! The orchestrator's one error type: a kind, a message, an optional source and whether
//! retrying the same operation later may succeed.

use std::fmt;

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The Docker engine refused or could not be reached.
    Docker,
    /// Redis could not be reached or answered an error.
    Redis,
    /// A function image failed to build.
    Build,
    /// The registry (file or API entry) is invalid.
    Registry,
    /// A replica did not become ready.
    Readiness,
    /// No such function.
    NotFound,
    /// A request to the API is malformed or out of range.
    InvalidRequest,
    /// The orchestrator is shutting down or an internal channel closed.
    Unavailable,
    /// What a create asked for exists already.
    Conflict,
    /// A secret cannot be sealed or opened: no key configured, a wrong key, or a tampered
    /// value.
    Secret,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Docker => "docker",
            ErrorKind::Redis => "redis",
            ErrorKind::Build => "build",
            ErrorKind::Registry => "registry",
            ErrorKind::Readiness => "readiness",
            ErrorKind::NotFound => "not found",
            ErrorKind::InvalidRequest => "invalid request",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Secret => "secret",
        }
    }
}

/// An orchestrator error.
#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    pub retryable: bool,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let retryable = matches!(
            kind,
            ErrorKind::Docker | ErrorKind::Redis | ErrorKind::Readiness
        );
        Error {
            kind,
            message: message.into(),
            source: None,
            retryable,
        }
    }

    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    pub fn docker(message: impl Into<String>, source: bollard::errors::Error) -> Self {
        // 4xx answers (bad request, conflict, not found) do not get better by retrying.
        let retryable = !matches!(
            &source,
            bollard::errors::Error::DockerResponseServerError { status_code, .. } if *status_code < 500
        );
        Error::new(ErrorKind::Docker, message)
            .with_source(source)
            .retryable(retryable)
    }

    pub fn redis(message: impl Into<String>, source: redis::RedisError) -> Self {
        Error::new(ErrorKind::Redis, message).with_source(source)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.kind.as_str(), self.message)?;
        if let Some(src) = &self.source {
            write!(f, ": {src}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
