//! The crate's one error type: a kind, a message, an optional source and whether retrying
//! may succeed. Parse rejections have their own typed error ([`crate::parse::ParseError`]):
//! they are counted, never propagated.

use std::fmt;

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A setting is invalid.
    Config,
    /// A socket could not be bound.
    Bind,
    /// Redis was unreachable or answered an error.
    Redis,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Config => "config",
            ErrorKind::Bind => "bind",
            ErrorKind::Redis => "redis",
        })
    }
}

/// A stats-listener error.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    /// Whether the same operation may succeed later (Redis: yes; config: no).
    pub retryable: bool,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
            retryable: kind == ErrorKind::Redis,
        }
    }

    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Error {
        self.source = Some(source.into());
        self
    }

    /// A Redis failure (message includes the driver's text, which names the cause).
    pub fn redis(e: redis::RedisError) -> Error {
        Error::new(ErrorKind::Redis, e.to_string()).with_source(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
