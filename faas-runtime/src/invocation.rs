//! One call of the function as the backends see it: the request taken apart (method, path,
//! query, headers, whole body) plus its identity and deadline, and what the function answered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::StatusCode;

/// A request ready to hand to a python or binary backend (the body is fully read).
#[derive(Debug)]
pub struct Invocation {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?` (may be empty).
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub request_id: String,
    /// When the call must be answered (monotonic clock).
    pub deadline: Instant,
    /// The same deadline as seconds since the epoch (given to python handlers).
    pub deadline_epoch: f64,
}

impl Invocation {
    /// Builds an invocation from the request head, its whole body and its deadline.
    pub fn new(parts: hyper::http::request::Parts, body: Bytes, deadline: Instant) -> Self {
        let request_id = request_id(&parts.headers);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let deadline_epoch = (SystemTime::now() + remaining)
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        Invocation {
            method: parts.method.as_str().to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or("").to_string(),
            headers: parts.headers,
            body,
            request_id,
            deadline,
            deadline_epoch,
        }
    }

    /// The query decoded into `(name, value)` pairs, in order (`+` is a space; invalid
    /// percent escapes are kept literally; invalid UTF-8 is replaced).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        parse_query(&self.query)
    }
}

/// What the function answered.
#[derive(Debug)]
pub struct Outcome {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The request id: the caller's `X-Request-Id` when present and sane, else a fresh one.
pub fn request_id(headers: &HeaderMap) -> String {
    if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        if !id.is_empty() && id.len() <= 200 {
            return id.to_string();
        }
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{:016x}{:08x}{:04x}", nanos, std::process::id(), n & 0xffff)
}

/// Splits `a=1&b=x+y&c` into decoded pairs (`c` gets an empty value).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_decoded_in_order() {
        assert_eq!(
            parse_query("name=J%C3%BCrgen+X&flag&a=1&a=2&bad=%zz%4"),
            vec![
                ("name".into(), "Jürgen X".into()),
                ("flag".into(), "".into()),
                ("a".into(), "1".into()),
                ("a".into(), "2".into()),
                ("bad".into(), "%zz%4".into()),
            ]
        );
        assert!(parse_query("").is_empty());
    }

    #[test]
    fn request_id_prefers_the_callers() {
        let mut h = HeaderMap::new();
        assert_ne!(request_id(&h), request_id(&h));
        h.insert("x-request-id", "abc".parse().expect("valid header"));
        assert_eq!(request_id(&h), "abc");
    }
}
