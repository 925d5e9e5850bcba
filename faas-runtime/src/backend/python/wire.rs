//! The worker protocol: length-prefixed frames over a Unix stream socket.
//!
//! A frame is `u32 header_len`, `u32 body_len` (big endian), a binary header, then the raw body
//! bytes — so binary bodies cross unchanged and nothing the function prints can interleave
//! (its stdout/stderr are other file descriptors). One request frame is answered by exactly
//! one response frame; a worker serves one request at a time.
//!
//! Headers are binary rather than JSON so the Python side needs no `json` import (milliseconds
//! of cold start). A *string* is `u32` length + UTF-8 bytes.
//! * request: `f64` deadline (epoch seconds), `u16` query pairs, `u16` header pairs, then the
//!   strings method, path, request id, query names/values, header names/values (lowercase).
//! * response: `u16` status, `u8` flags (`1` = the handler raised), `u16` header pairs, then
//!   the error message (when flagged) and header names/values.

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::UnixStream;

use crate::error::{ErrorKind, Result, RuntimeError};
use crate::invocation::{Invocation, Outcome};

/// Largest response body a worker may send (a guard against a runaway handler).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Largest response header (status + headers as JSON).
const MAX_RESPONSE_HEADER: usize = 1024 * 1024;

/// The runtime's end of one worker connection.
#[derive(Debug)]
pub struct WorkerConn {
    io: BufStream<UnixStream>,
}

impl WorkerConn {
    pub fn new(stream: UnixStream) -> Self {
        WorkerConn {
            io: BufStream::with_capacity(64 * 1024, 64 * 1024, stream),
        }
    }

    /// Sends `inv` and waits for the answer. An `Err` of kind `Internal` means the connection
    /// is unusable (the worker died or broke the protocol); a function error comes back as
    /// `Err` of kind `Function` with the connection still in step.
    pub async fn call(&mut self, inv: &Invocation) -> Result<Outcome> {
        let header = encode_request(inv)?;
        let body_len = u32::try_from(inv.body.len())
            .map_err(|_| RuntimeError::new(ErrorKind::TooLarge, "request body too large"))?;
        let head_len = u32::try_from(header.len())
            .map_err(|_| RuntimeError::new(ErrorKind::TooLarge, "request headers too large"))?;
        let mut prefix = [0u8; 8];
        prefix[..4].copy_from_slice(&head_len.to_be_bytes());
        prefix[4..].copy_from_slice(&body_len.to_be_bytes());
        let io_err = |what: &'static str| {
            move |e: std::io::Error| {
                RuntimeError::new(
                    ErrorKind::Internal,
                    format!("python worker connection failed while {what}"),
                )
                .with_source(e)
            }
        };
        self.io
            .write_all(&prefix)
            .await
            .map_err(io_err("sending"))?;
        self.io
            .write_all(&header)
            .await
            .map_err(io_err("sending"))?;
        self.io
            .write_all(&inv.body)
            .await
            .map_err(io_err("sending"))?;
        self.io.flush().await.map_err(io_err("sending"))?;

        let mut prefix = [0u8; 8];
        self.io
            .read_exact(&mut prefix)
            .await
            .map_err(io_err("waiting for the answer (the worker exited)"))?;
        let head_len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let body_len = u32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]) as usize;
        if head_len > MAX_RESPONSE_HEADER {
            return Err(RuntimeError::new(
                ErrorKind::Internal,
                "python worker sent an oversized response header",
            ));
        }
        if body_len > MAX_RESPONSE_BYTES {
            return Err(RuntimeError::new(
                ErrorKind::Internal,
                format!("function response exceeds {MAX_RESPONSE_BYTES} bytes"),
            ));
        }
        let mut head = vec![0u8; head_len];
        self.io
            .read_exact(&mut head)
            .await
            .map_err(io_err("reading the answer"))?;
        let mut body = vec![0u8; body_len];
        self.io
            .read_exact(&mut body)
            .await
            .map_err(io_err("reading the answer"))?;
        decode_response(&head, Bytes::from(body))
    }
}

fn put_str(buf: &mut Vec<u8>, s: &[u8]) -> Result<()> {
    let len = u32::try_from(s.len())
        .map_err(|_| RuntimeError::new(ErrorKind::TooLarge, "request field too large"))?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(s);
    Ok(())
}

fn encode_request(inv: &Invocation) -> Result<Vec<u8>> {
    let query = inv.query_pairs();
    let too_many = |what: &str| RuntimeError::new(ErrorKind::TooLarge, format!("too many {what}"));
    let nq = u16::try_from(query.len()).map_err(|_| too_many("query parameters"))?;
    let nh = u16::try_from(inv.headers.len()).map_err(|_| too_many("headers"))?;
    let mut buf = Vec::with_capacity(256 + inv.path.len() + inv.query.len());
    buf.extend_from_slice(&inv.deadline_epoch.to_be_bytes());
    buf.extend_from_slice(&nq.to_be_bytes());
    buf.extend_from_slice(&nh.to_be_bytes());
    put_str(&mut buf, inv.method.as_bytes())?;
    put_str(&mut buf, inv.path.as_bytes())?;
    put_str(&mut buf, inv.request_id.as_bytes())?;
    for (k, v) in &query {
        put_str(&mut buf, k.as_bytes())?;
        put_str(&mut buf, v.as_bytes())?;
    }
    for (k, v) in &inv.headers {
        put_str(&mut buf, k.as_str().as_bytes())?;
        put_str(&mut buf, v.as_bytes())?;
    }
    Ok(buf)
}

/// A cursor over a response header; every read is bounds-checked.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(RuntimeError::new(
                ErrorKind::Internal,
                "python worker sent a truncated answer",
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn string(&mut self) -> Result<&'a [u8]> {
        let b = self.take(4)?;
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        self.take(n)
    }
}

/// Turns a worker's answer into an outcome. Header names/values the handler returned that are
/// not valid HTTP make the call a function error (the handler's fault, reported clearly).
fn decode_response(head: &[u8], body: Bytes) -> Result<Outcome> {
    let mut cur = Cursor(head);
    let status = cur.u16()?;
    let flags = cur.take(1)?[0];
    let nh = cur.u16()?;
    if flags & 1 != 0 {
        let message = String::from_utf8_lossy(cur.string()?).into_owned();
        return Err(RuntimeError::new(ErrorKind::Function, message));
    }
    let status = StatusCode::from_u16(status).map_err(|_| {
        RuntimeError::new(
            ErrorKind::Function,
            format!("handler returned an invalid status {status}"),
        )
    })?;
    let mut headers = HeaderMap::with_capacity(usize::from(nh));
    for _ in 0..nh {
        let k = cur.string()?;
        let v = cur.string()?;
        let name = HeaderName::from_bytes(k).map_err(|_| {
            RuntimeError::new(
                ErrorKind::Function,
                format!(
                    "handler returned an invalid header name {:?}",
                    String::from_utf8_lossy(k)
                ),
            )
        })?;
        let value = HeaderValue::from_bytes(v).map_err(|_| {
            RuntimeError::new(
                ErrorKind::Function,
                format!("handler returned an invalid value for header {name}"),
            )
        })?;
        headers.append(name, value);
    }
    Ok(Outcome {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, flags: u8, strings: &[&[u8]], pairs: u16) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&status.to_be_bytes());
        b.push(flags);
        b.extend_from_slice(&pairs.to_be_bytes());
        for s in strings {
            put_str(&mut b, s).expect("small");
        }
        b
    }

    #[test]
    fn answers_decode_headers_and_errors() {
        let ok = decode_response(&head(201, 0, &[b"x-a", b"1"], 1), Bytes::from_static(b"hi"))
            .expect("valid answer");
        assert_eq!(ok.status, StatusCode::CREATED);
        assert_eq!(ok.headers["x-a"], "1");
        let err = decode_response(&head(500, 1, &[b"ValueError: bad"], 0), Bytes::new())
            .expect_err("handler error");
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Function, "ValueError: bad")
        );
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        assert!(decode_response(&[0, 200], Bytes::new()).is_err());
        assert!(decode_response(&head(200, 0, &[b"x"], 1), Bytes::new()).is_err());
        let bad_name = decode_response(&head(200, 0, &[b"bad name", b"v"], 1), Bytes::new());
        assert_eq!(bad_name.expect_err("invalid").kind, ErrorKind::Function);
        let bad_status = decode_response(&head(42, 0, &[], 0), Bytes::new());
        assert_eq!(bad_status.expect_err("invalid").kind, ErrorKind::Function);
    }
}
