//! The connector's one error type: what failed (a kind), a message for humans, the function
//! it concerns when known, an optional source, and whether retrying later may succeed.

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A REST request is malformed (shape, types, names). Maps to 400.
    InvalidRequest,
    /// The resource named by a REST request does not exist. Maps to 404.
    NotFound,
    /// Redis could not be reached or refused a command. Maps to 503.
    Redis,
    /// The snapshot stored in Redis cannot be read back.
    CorruptSnapshot,
    /// A socket could not be bound or served.
    Io,
}

/// A connector error.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// The function the error concerns, echoed in JSON error bodies.
    pub function: Option<String>,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    pub retryable: bool,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            function: None,
            source: None,
            retryable: matches!(kind, ErrorKind::Redis | ErrorKind::Io),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, message)
    }

    pub fn redis(message: impl Into<String>, source: redis::RedisError) -> Self {
        Error::new(ErrorKind::Redis, message).with_source(source)
    }

    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Overrides whether retrying may help.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Names the function this error concerns.
    pub fn for_function(mut self, function: impl Into<String>) -> Self {
        self.function = Some(function.into());
        self
    }

    /// The message followed by its sources, `: `-separated.
    pub fn chain(&self) -> String {
        let mut s = self.message.clone();
        let mut src = std::error::Error::source(self);
        while let Some(cause) = src {
            s.push_str(": ");
            s.push_str(&cause.to_string());
            src = cause.source();
        }
        s
    }
}
