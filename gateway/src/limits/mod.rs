//! Request body limits, enforced before anything is forwarded.
//!
//! * A body announced with `Content-Length` is judged from the header alone: over the
//!   function's `max_body_bytes` → 413 without reading it.
//! * A chunked body has no announced size: it is read into a [`BodyBuffer`] that refuses the
//!   chunk that takes it past the limit, so the refusal happens before the upstream is
//!   contacted and memory per request is bounded by the limit.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use crate::error::{ErrorKind, GatewayError};

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (no `Content-Length`, no `Transfer-Encoding`).
    Empty,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked` (size unknown until read).
    Chunked,
}

/// Reads the framing headers. A `Transfer-Encoding` wins over `Content-Length` (RFC 9112
/// §6.3); an unparsable `Content-Length` is malformed.
pub fn framing(headers: &HeaderMap) -> Result<Framing, GatewayError> {
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        return Ok(Framing::Chunked);
    }
    let Some(cl) = headers.get(http::header::CONTENT_LENGTH) else {
        return Ok(Framing::Empty);
    };
    let n = cl
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| GatewayError::new(ErrorKind::Malformed, "invalid Content-Length header"))?;
    Ok(if n == 0 {
        Framing::Empty
    } else {
        Framing::Length(n)
    })
}

/// The 413 error for `function`.
pub fn too_large(function: &str, max: u64) -> GatewayError {
    GatewayError::new(
        ErrorKind::TooLarge,
        format!("request body is larger than the {max} bytes function `{function}` accepts"),
    )
    .for_function(function)
}

/// Refuses an announced length over `max`.
pub fn check_announced(function: &str, framing: Framing, max: u64) -> Result<(), GatewayError> {
    match framing {
        Framing::Length(n) if n > max => Err(too_large(function, max)),
        _ => Ok(()),
    }
}

/// Accumulates a body of unknown size, refusing to go past `max` bytes.
#[derive(Debug)]
pub struct BodyBuffer {
    max: u64,
    buf: BytesMut,
}

impl BodyBuffer {
    pub fn new(max: u64) -> Self {
        BodyBuffer {
            max,
            buf: BytesMut::new(),
        }
    }

    /// Appends a chunk; false (nothing appended) when the body would exceed the limit.
    #[must_use]
    pub fn push(&mut self, chunk: &[u8]) -> bool {
        let total = self.buf.len() as u64 + chunk.len() as u64;
        if total > self.max {
            return false;
        }
        self.buf.extend_from_slice(chunk);
        true
    }

    /// Bytes buffered so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The whole body.
    pub fn finish(self) -> Bytes {
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn framing_from_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(framing(&h).expect("empty"), Framing::Empty);
        h.insert("content-length", HeaderValue::from_static("12"));
        assert_eq!(framing(&h).expect("len"), Framing::Length(12));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        assert_eq!(framing(&h).expect("chunked"), Framing::Chunked);
        let mut bad = HeaderMap::new();
        bad.insert("content-length", HeaderValue::from_static("x1"));
        assert_eq!(framing(&bad).expect_err("bad").status(), 400);
    }

    #[test]
    fn announced_length_over_the_limit_is_413() {
        assert!(check_announced("f", Framing::Length(10), 10).is_ok());
        let e = check_announced("f", Framing::Length(11), 10).expect_err("too large");
        assert_eq!(e.status(), 413);
        assert_eq!(e.function.as_deref(), Some("f"));
        assert!(check_announced("f", Framing::Chunked, 0).is_ok());
    }

    #[test]
    fn buffer_stops_at_the_limit() {
        let mut b = BodyBuffer::new(10);
        assert!(b.push(b"12345"));
        assert!(b.push(b"67890"));
        assert!(!b.push(b"x"));
        assert_eq!(b.len(), 10);
        assert_eq!(&b.finish()[..], b"1234567890");
    }
}
