//! The router's own responses: JSON error bodies `{"error": "...", "function": "..."}`.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::error::{ErrorKind, RouterError};

/// A response the router writes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub error: String,
    pub function: Option<String>,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u32>,
}

impl Reply {
    pub fn new(status: u16, error: impl Into<String>, function: Option<&str>) -> Self {
        Reply {
            status,
            error: error.into(),
            function: function.map(str::to_string),
            retry_after: (status == 503 || status == 429).then_some(1),
        }
    }

    /// The same reply naming `function`.
    pub fn with_function(mut self, function: Option<&str>) -> Self {
        self.function = function.map(str::to_string);
        self
    }

    pub fn from_error(e: &RouterError, function: Option<&str>) -> Self {
        let error = match e.kind {
            ErrorKind::UnknownFunction => "unknown function".to_string(),
            _ => format!("{}: {}", e.kind, e.message),
        };
        Reply::new(e.kind.status(), error, function)
    }

    pub fn body(&self) -> Bytes {
        let v = match &self.function {
            Some(f) => serde_json::json!({ "error": self.error, "function": f }),
            None => serde_json::json!({ "error": self.error }),
        };
        Bytes::from(v.to_string())
    }

    pub fn header(&self, body_len: usize) -> pingora::Result<ResponseHeader> {
        let mut h = ResponseHeader::build(self.status, Some(4))?;
        h.insert_header("content-type", "application/json")?;
        h.insert_header("content-length", body_len.to_string())?;
        if let Some(s) = self.retry_after {
            h.insert_header("retry-after", s.to_string())?;
        }
        Ok(h)
    }

    /// Writes the reply as the whole response. Fails only when the client is gone.
    pub async fn send(&self, session: &mut Session) -> pingora::Result<()> {
        let body = self.body();
        let header = self.header(body.len())?;
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session.write_response_body(Some(body), true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body_names_the_function() {
        let r = Reply::from_error(
            &RouterError::new(ErrorKind::UnknownFunction, "x"),
            Some("nope"),
        );
        assert_eq!(r.status, 404);
        let v: serde_json::Value = serde_json::from_slice(&r.body()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"error": "unknown function", "function": "nope"})
        );
        let r = Reply::from_error(
            &RouterError::new(ErrorKind::QueueTimeout, "waited"),
            Some("f"),
        );
        assert_eq!((r.status, r.retry_after), (503, Some(1)));
        let h = r.header(10).expect("header");
        assert_eq!(h.headers.get("retry-after").expect("retry-after"), "1");
    }
}
