//! Forwarding a body the gateway had to buffer itself.
//!
//! A chunked request body has no announced size, so the gateway reads it (up to the
//! function's limit) *before* contacting the router — that is what lets it refuse an
//! oversized body with 413 without the upstream ever seeing it. pingora's own forwarding
//! reads the body from the client as it goes and cannot resend one already read beyond its
//! small retry buffer, so these requests are sent here instead: same peer settings, same
//! rewrite, same response headers, over a keep-alive pool of their own, and sent with a
//! `Content-Length` (the exact size is known now).

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::client::HttpSession as ClientSession;
use pingora::proxy::Session;
use pingora::{Error, ErrorType};

use super::{respond, Gateway, RequestCtx, Target};
use crate::error::{ErrorKind, GatewayError};

/// Request headers that describe the client connection or the old framing (and the
/// `Expect: 100-continue` the gateway already answered), not the request.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "expect",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Sends the admitted request with `body` to the router and streams the answer back.
/// Errors before the response began are answered as JSON 502/504 here; `Err` is only
/// returned once the response was partly written (the connection is then closed).
pub async fn forward(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    body: Bytes,
) -> pingora::Result<()> {
    let Target::Function {
        name,
        upstream_path,
        read_timeout,
        strip_credentials,
    } = &ctx.target
    else {
        return Error::e_explain(ErrorType::InternalError, "buffered body without a function");
    };
    let Some(addr) = gw.router.current() else {
        let err = GatewayError::new(
            ErrorKind::BadGateway,
            format!(
                "router address `{}` is not resolved yet",
                gw.router.authority()
            ),
        )
        .for_function(name.clone());
        return answer(session, ctx, err).await;
    };
    let peer = gw.peer(addr, *read_timeout)?;

    let mut req = session.req_header().clone();
    for h in HOP_BY_HOP {
        req.remove_header(h);
    }
    Gateway::rewrite_for_router(&mut req, name, upstream_path, *strip_credentials)?;
    req.insert_header("Content-Length", body.len().to_string())?;

    // A pooled connection may have been closed by the router while idle: one more try on
    // a fresh connection when a reused one fails before any response byte arrived.
    let mut up = None;
    let mut last_err = None;
    for _attempt in 0..2 {
        let (mut s, reused) = match gw.connector.get_http_session(&peer).await {
            Ok(pair) => pair,
            Err(e) => {
                last_err = Some(e);
                break;
            }
        };
        s.set_read_timeout(Some(*read_timeout));
        s.set_write_timeout(Some(*read_timeout));
        match send_and_read_head(&mut s, &req, &body).await {
            Ok(()) => {
                up = Some(s);
                break;
            }
            Err(e) => {
                let stale = reused
                    && matches!(
                        e.etype(),
                        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
                    );
                last_err = Some(e);
                if !stale {
                    break;
                }
            }
        }
    }
    let Some(mut up) = up else {
        let e = last_err.unwrap_or_else(|| Error::explain(ErrorType::ConnectError, "no attempt"));
        return match gw.upstream_failure(&e, ctx) {
            Some(err) => {
                tracing::warn!(function = %name, error = %e, "buffered request failed");
                answer(session, ctx, err).await
            }
            None => Err(e),
        };
    };

    let mut resp: ResponseHeader = match up.response_header() {
        Some(r) => r.clone(),
        None => return Error::e_explain(ErrorType::InternalError, "response header missing"),
    };
    resp.remove_header("connection");
    resp.remove_header("keep-alive");
    ctx.decorate(&mut resp)?;
    session.write_response_header(Box::new(resp), false).await?;
    loop {
        match up.read_response_body().await {
            Ok(Some(chunk)) => session.write_response_body(Some(chunk), false).await?,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "router failed while sending the response body");
                return Err(e);
            }
        }
    }
    session.write_response_body(None, true).await?;
    if up.response_done() {
        gw.connector
            .release_http_session(up, &peer, Some(gw.settings.pool_idle_timeout))
            .await;
    } else {
        up.shutdown().await;
    }
    Ok(())
}

/// Writes the request head and body, then reads the final response head (1xx skipped).
async fn send_and_read_head(
    s: &mut ClientSession,
    req: &pingora::http::RequestHeader,
    body: &Bytes,
) -> pingora::Result<()> {
    s.write_request_header(Box::new(req.clone())).await?;
    if !body.is_empty() {
        s.write_request_body(body.clone(), true).await?;
    }
    s.finish_request_body().await?;
    loop {
        s.read_response_header().await?;
        let informational = s
            .response_header()
            .is_some_and(|r| r.status.is_informational() && r.status.as_u16() != 101);
        if !informational {
            return Ok(());
        }
    }
}

async fn answer(session: &mut Session, ctx: &RequestCtx, err: GatewayError) -> pingora::Result<()> {
    respond::error(session, &err, ctx.function_headers()).await
}
