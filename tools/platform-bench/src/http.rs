//! A raw HTTP/1.1 `GET` over a fresh TCP connection, timed to the first byte of the response.
//! No connection pool, no client library in the way: what a cold start measures is exactly
//! connect → request → first response byte.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response read to its end (`Connection: close`).
#[derive(Debug)]
pub struct Reply {
    /// From just before connecting until the first response byte arrived.
    pub first_byte: Duration,
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on `addr` within `timeout` (connect, first byte and the rest together).
/// `token`: a runtime token to send (a replica answers nothing without its own).
pub async fn get(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Reply> {
    match tokio::time::timeout(timeout, get_inner(addr, path, token)).await {
        Ok(r) => r,
        Err(_) => bail!("GET http://{addr}{path}: no complete response within {timeout:?}"),
    }
}

async fn get_inner(addr: SocketAddr, path: &str, token: Option<&str>) -> Result<Reply> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true).ok();
    let token = token
        .map(|t| format!("{}: {t}\r\n", sluice_common::runtime::HEADER))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{token}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.context("send request")?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let n = s.read(&mut chunk).await.context("read response")?;
    let first_byte = start.elapsed();
    if n == 0 {
        bail!("GET http://{addr}{path}: connection closed without a response");
    }
    buf.extend_from_slice(&chunk[..n]);
    loop {
        let n = s.read(&mut chunk).await.context("read response")?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse(&buf, first_byte).with_context(|| format!("GET http://{addr}{path}"))
}

fn parse(buf: &[u8], first_byte: Duration) -> Result<Reply> {
    let text = String::from_utf8_lossy(buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("incomplete response head");
    };
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .context("bad status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Reply {
        first_byte,
        status,
        headers,
        body: body.to_string(),
    })
}

/// Polls `GET /_/ready` on a runtime every `interval` until it answers 200; the time from
/// `since` to that answer. Connection refused and non-200 answers are retried.
pub async fn until_ready(
    addr: SocketAddr,
    since: Instant,
    interval: Duration,
    timeout: Duration,
) -> Result<Duration> {
    loop {
        if let Ok(r) = get(addr, "/_/ready", None, Duration::from_secs(2)).await {
            if r.status == 200 {
                return Ok(since.elapsed());
            }
        }
        if since.elapsed() > timeout {
            bail!("{addr}: /_/ready did not answer 200 within {timeout:?}");
        }
        tokio::time::sleep(interval).await;
    }
}
