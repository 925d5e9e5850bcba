//! Responses the gateway writes itself: JSON bodies with the right status and headers.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::error::GatewayError;

/// Builds a complete JSON response header for `body`, plus `extra` headers.
pub fn json_header(
    status: u16,
    body_len: usize,
    extra: &[(&'static str, String)],
) -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(status, Some(3 + extra.len()))?;
    resp.insert_header("Content-Type", "application/json")?;
    resp.insert_header("Content-Length", body_len.to_string())?;
    for (name, value) in extra {
        resp.insert_header(*name, value.as_str())?;
    }
    Ok(resp)
}

/// Writes `body` as a JSON response with `status` and `extra` headers.
pub async fn json(
    session: &mut Session,
    status: u16,
    body: &serde_json::Value,
    extra: &[(&'static str, String)],
) -> pingora::Result<()> {
    let bytes = Bytes::from(body.to_string());
    let resp = json_header(status, bytes.len(), extra)?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(bytes), true).await
}

/// Writes `err` as `{"error": ..., "function": ...}` with its status (and `Retry-After`).
pub async fn error(
    session: &mut Session,
    err: &GatewayError,
    mut extra: Vec<(&'static str, String)>,
) -> pingora::Result<()> {
    if let Some(after) = err.retry_after {
        extra.push(("Retry-After", after.as_secs().max(1).to_string()));
    }
    if err.kind == crate::error::ErrorKind::Unauthorized {
        let realm = sluice_common::auth::REALM;
        extra.push((
            "WWW-Authenticate",
            format!("Bearer realm=\"{realm}\", Basic realm=\"{realm}\", charset=\"UTF-8\""),
        ));
    }
    json(session, err.status(), &err.body(), &extra).await
}
