//! HTTP/1.1 `Upgrade` (WebSocket) passthrough.
//!
//! Upgrade requests are tunnelled here rather than through pingora's h1 proxy loop: in
//! pingora 0.9 an upgraded tunnel can be torn down right after the `101` when the upstream
//! answers before the proxy has consumed the request's (empty) body
//! (cloudflare/pingora#946), which makes WebSockets to fast replicas fail at random.
//!
//! 1. The request head (path rewritten as for any request, headers as received) goes to the
//!    leased endpoint over a fresh connection (hyper client; tunnels are long-lived, so no
//!    pooling). A connect failure is retried once on another endpoint, as on the proxy path.
//! 2. The response head is relayed with `X-Sluice-Replica`. A non-101 answer is relayed with
//!    its body and ends the request.
//! 3. After a `101` bytes are copied both ways until either side closes. The request's slot
//!    (its lease) is held for the whole life of the tunnel.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::reply::Reply;
use super::{RequestCtx, REPLICA_HEADER};
use crate::cluster::Settings;

/// Largest request body accepted on an upgrade request (they normally have none).
const MAX_UPGRADE_BODY: usize = 1 << 20;
/// Copy buffer for the tunnel.
const TUNNEL_BUF: usize = 16 * 1024;

enum Failure {
    /// Nothing was sent: another endpoint may be tried.
    Connect(String),
    /// The replica failed after the request was sent.
    Upstream(String),
    /// The replica did not answer in time.
    Timeout(Duration),
}

/// Serves an upgrade request whose slot is already leased in `ctx`. Always writes a response
/// (or finds the client gone).
pub(super) async fn serve(session: &mut Session, ctx: &mut RequestCtx) {
    let f = ctx.function.clone();
    let body = match read_small_body(session).await {
        Ok(b) => b,
        Err(reply) => {
            return ctx
                .respond(session, &reply.with_function(f.as_deref()))
                .await
        }
    };
    let response = loop {
        let Some(lease) = ctx.lease.as_ref() else {
            let reply = Reply::new(500, "no replica leased", f.as_deref());
            return ctx.respond(session, &reply).await;
        };
        let (addr, settings) = (lease.endpoint().addr(), *lease.settings());
        let token = ctx.cluster.as_ref().and_then(|c| c.runtime_token());
        let request = match build_request(
            session,
            ctx.upstream_path.as_deref(),
            token.as_deref(),
            body.clone(),
        ) {
            Ok(r) => r,
            Err(e) => {
                let reply = Reply::new(400, format!("bad upgrade request: {e}"), f.as_deref());
                return ctx.respond(session, &reply).await;
            }
        };
        match send(addr, &settings, request).await {
            Ok(resp) => break resp,
            Err(Failure::Connect(e)) => {
                tracing::warn!(function = ?f, %addr, error = %e, "upgrade: connect to replica failed");
                if !ctx.connect_failed() {
                    let reply = Reply::new(502, "could not connect to a replica", f.as_deref());
                    return ctx.respond(session, &reply).await;
                }
                if let Err(reply) = ctx.reacquire().await {
                    return ctx.respond(session, &reply).await;
                }
            }
            Err(Failure::Upstream(e)) => {
                tracing::warn!(function = ?f, %addr, error = %e, "upgrade: replica failed");
                let reply = Reply::new(502, "replica failed while answering", f.as_deref());
                return ctx.respond(session, &reply).await;
            }
            Err(Failure::Timeout(t)) => {
                let msg = format!("function did not answer within {} ms", t.as_millis());
                return ctx
                    .respond(session, &Reply::new(504, msg, f.as_deref()))
                    .await;
            }
        }
    };
    relay(session, ctx, response).await;
}

/// Reads the (normally empty) request body of an upgrade request.
async fn read_small_body(session: &mut Session) -> Result<Bytes, Reply> {
    if session.is_body_empty() {
        return Ok(Bytes::new());
    }
    let mut buf = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > MAX_UPGRADE_BODY {
                    return Err(Reply::new(413, "upgrade request body too large", None));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Bytes::from(buf)),
            Err(e) => return Err(Reply::new(400, format!("reading request body: {e}"), None)),
        }
    }
}

fn build_request(
    session: &Session,
    upstream_path: Option<&str>,
    runtime_token: Option<&hyper::header::HeaderValue>,
    body: Bytes,
) -> Result<hyper::Request<Full<Bytes>>, String> {
    let req = session.req_header();
    let path = upstream_path
        .map(str::to_string)
        .or_else(|| req.uri.path_and_query().map(|p| p.as_str().to_string()))
        .unwrap_or_else(|| "/".to_string());
    let mut out = hyper::Request::builder()
        .method(req.method.clone())
        .uri(path)
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    *out.headers_mut() = req.headers.clone();
    let headers = out.headers_mut();
    headers.remove(sluice_common::runtime::HEADER);
    if let Some(t) = runtime_token {
        headers.insert(sluice_common::runtime::HEADER, t.clone());
    }
    Ok(out)
}

async fn send(
    addr: SocketAddr,
    settings: &Settings,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<Incoming>, Failure> {
    let connect = tokio::net::TcpStream::connect(addr);
    let stream = match tokio::time::timeout(settings.connect_timeout(), connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(Failure::Connect(e.to_string())),
        Err(_) => return Err(Failure::Connect("connect timed out".to_string())),
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::Connect(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upgrade: upstream connection ended with an error");
        }
    });
    let answer = sender.send_request(request);
    let res = match settings.upstream_timeout() {
        Some(t) => tokio::time::timeout(t, answer)
            .await
            .map_err(|_| Failure::Timeout(t))?,
        None => answer.await,
    };
    res.map_err(|e| Failure::Upstream(e.to_string()))
}

async fn relay(session: &mut Session, ctx: &mut RequestCtx, mut resp: hyper::Response<Incoming>) {
    let status = resp.status().as_u16();
    let header = ResponseHeader::build(status, Some(resp.headers().len() + 1)).and_then(|mut h| {
        for (name, value) in resp.headers() {
            h.append_header(name.clone(), value.clone())?;
        }
        if let Some(lease) = &ctx.lease {
            h.insert_header(REPLICA_HEADER, lease.endpoint().replica_name())?;
        }
        Ok(h)
    });
    let header = match header {
        Ok(h) => h,
        Err(e) => {
            let reply = Reply::new(
                502,
                format!("bad response from replica: {e}"),
                ctx.function.as_deref(),
            );
            return ctx.respond(session, &reply).await;
        }
    };
    if session
        .write_response_header(Box::new(header), false)
        .await
        .is_err()
    {
        return; // client gone
    }
    if status == 101 {
        match hyper::upgrade::on(&mut resp).await {
            Ok(upgraded) => tunnel(session, TokioIo::new(upgraded)).await,
            Err(e) => {
                tracing::warn!(function = ?ctx.function, error = %e, "upgrade: replica did not hand over the connection")
            }
        }
    } else {
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return; // replica failed mid-body: the client sees a truncated response
            };
            if let Ok(data) = frame.into_data() {
                if session
                    .write_response_body(Some(data), false)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    let _ = session.write_response_body(None, true).await;
}

enum Event {
    FromClient(pingora::Result<Option<Bytes>>),
    FromUpstream(std::io::Result<usize>),
}

/// Copies bytes both ways until either side closes or fails.
async fn tunnel<T>(session: &mut Session, upstream: T)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut up_read, mut up_write) = tokio::io::split(upstream);
    let mut buf = vec![0u8; TUNNEL_BUF];
    loop {
        let event = tokio::select! {
            r = session.read_request_body() => Event::FromClient(r),
            r = up_read.read(&mut buf) => Event::FromUpstream(r),
        };
        match event {
            Event::FromClient(Ok(Some(data))) => {
                if up_write.write_all(&data).await.is_err() || up_write.flush().await.is_err() {
                    break;
                }
            }
            Event::FromClient(_) => break,
            Event::FromUpstream(Ok(n)) if n > 0 => {
                let data = Bytes::copy_from_slice(&buf[..n]);
                if session
                    .write_response_body(Some(data), false)
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Event::FromUpstream(_) => break,
        }
    }
    let _ = up_write.shutdown().await;
}
