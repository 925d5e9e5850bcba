//! The control API (HTTP/JSON; the OpenAPI document is `mdf/openapi.yaml`, also served at
//! `GET /v1/openapi.yaml`). The media handler function uses it to allocate and free relay
//! sessions; the orchestrator reads `/v1/status` to scale instances and drains them with
//! `POST /v1/drain`. With a token configured every `/v1/*` call needs
//! `Authorization: Bearer <token>`; `/healthz` is open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

use crate::error::Error;
use crate::relay::Relay;
use crate::session::{LegSpec, SessionSpec};

pub const OPENAPI: &str = include_str!("../openapi.yaml");

/// Longest session or leg id accepted.
const MAX_ID: usize = 256;

#[derive(Clone)]
pub struct Api {
    pub relay: Arc<Relay>,
    pub token: Option<Arc<str>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSession {
    id: Option<String>,
    legs: Vec<CreateLeg>,
    floor: Option<String>,
    max_talk_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateLeg {
    id: String,
    rtp: Option<String>,
    rtcp: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Remote {
    rtp: String,
    rtcp: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Grant {
    holder: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Drain {
    draining: bool,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        Error::bad(&field, e.inner().to_string())
    })
}

fn address(field: &str, text: &str) -> Result<SocketAddr, Error> {
    text.parse()
        .map_err(|_| Error::bad(field, format!("`{text}` is not an ip:port address")))
}

fn check_id(field: &str, id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > MAX_ID || id.chars().any(|c| c.is_control()) {
        return Err(Error::bad(
            field,
            format!("must be 1–{MAX_ID} printable characters"),
        ));
    }
    Ok(())
}

fn session_spec(req: CreateSession, default_talk: Duration) -> Result<SessionSpec, Error> {
    let id = match req.id {
        Some(id) => {
            check_id("id", &id)?;
            id
        }
        None => format!("s-{:016x}", rand::random::<u64>()),
    };
    if req.legs.is_empty() {
        return Err(Error::bad("legs", "at least one leg"));
    }
    let mut legs = Vec::with_capacity(req.legs.len());
    for (i, l) in req.legs.into_iter().enumerate() {
        check_id(&format!("legs[{i}].id"), &l.id)?;
        if legs.iter().any(|x: &LegSpec| x.id == l.id) {
            return Err(Error::bad(
                &format!("legs[{i}].id"),
                format!("`{}` appears twice", l.id),
            ));
        }
        let rtp = l
            .rtp
            .as_deref()
            .map(|a| address(&format!("legs[{i}].rtp"), a))
            .transpose()?;
        let rtcp = l
            .rtcp
            .as_deref()
            .map(|a| address(&format!("legs[{i}].rtcp"), a))
            .transpose()?;
        legs.push(LegSpec {
            id: l.id,
            rtp,
            rtcp,
        });
    }
    if let Some(h) = &req.floor {
        if !legs.iter().any(|l| &l.id == h) {
            return Err(Error::bad("floor", format!("`{h}` is not a leg")));
        }
    }
    let max_talk = match req.max_talk_ms {
        Some(0) => return Err(Error::bad("max_talk_ms", "must be > 0")),
        Some(ms) => Duration::from_millis(ms),
        None => default_talk,
    };
    Ok(SessionSpec {
        id,
        legs,
        holder: req.floor,
        max_talk,
    })
}

async fn create(State(api): State<Api>, body: Bytes) -> Result<Response, Error> {
    let spec = session_spec(parse(&body)?, api.relay.settings.max_talk)?;
    let session = api.relay.create(spec)?;
    Ok((
        StatusCode::CREATED,
        Json(session.json(&api.relay.settings.advertise)),
    )
        .into_response())
}

async fn list(State(api): State<Api>) -> Json<serde_json::Value> {
    let mut ids: Vec<String> = api.relay.sessions().iter().map(|s| s.id.clone()).collect();
    ids.sort();
    Json(serde_json::json!({"sessions": ids}))
}

async fn show(State(api): State<Api>, Path(id): Path<String>) -> Result<Response, Error> {
    let s = api.relay.get(&id)?;
    Ok(Json(s.json(&api.relay.settings.advertise)).into_response())
}

async fn remove(State(api): State<Api>, Path(id): Path<String>) -> Result<Response, Error> {
    let s = api.relay.remove(&id).await?;
    Ok(Json(s.json(&api.relay.settings.advertise)).into_response())
}

async fn set_remote(
    State(api): State<Api>,
    Path((id, leg)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Error> {
    let req: Remote = parse(&body)?;
    let rtp = address("rtp", &req.rtp)?;
    let rtcp = req
        .rtcp
        .as_deref()
        .map(|a| address("rtcp", a))
        .transpose()?;
    let s = api.relay.get(&id)?;
    s.set_remote(&leg, rtp, rtcp)
        .ok_or_else(|| Error::not_found("leg", &leg))?;
    Ok(Json(s.json(&api.relay.settings.advertise)).into_response())
}

async fn leave(
    State(api): State<Api>,
    Path((id, leg)): Path<(String, String)>,
) -> Result<Response, Error> {
    let s = api.relay.get(&id)?;
    s.leave(&leg).ok_or_else(|| Error::not_found("leg", &leg))?;
    Ok(Json(s.json(&api.relay.settings.advertise)).into_response())
}

async fn grant(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let req: Grant = parse(&body)?;
    let s = api.relay.get(&id)?;
    if !s.has_leg(&req.holder) {
        return Err(Error::bad(
            "holder",
            format!("`{}` is not a leg", req.holder),
        ));
    }
    s.grant(&req.holder);
    Ok(Json(s.json(&api.relay.settings.advertise)).into_response())
}

async fn drain(State(api): State<Api>, body: Bytes) -> Result<Response, Error> {
    let req: Drain = parse(&body)?;
    api.relay.set_draining(req.draining);
    Ok(Json(api.relay.status()).into_response())
}

/// Constant-time comparison of a presented token with the configured one.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorize(State(api): State<Api>, req: Request, next: Next) -> Response {
    if let Some(token) = &api.token {
        let presented = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same_token(presented.as_bytes(), token.as_bytes()) {
            return Error::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

pub fn router(api: Api) -> Router {
    let v1 = Router::new()
        .route("/v1/sessions", post(create).get(list))
        .route("/v1/sessions/{id}", get(show).delete(remove))
        .route(
            "/v1/sessions/{id}/legs/{leg}",
            put(set_remote).delete(leave),
        )
        .route("/v1/sessions/{id}/floor", post(grant))
        .route(
            "/v1/status",
            get(|State(api): State<Api>| async move { Json(api.relay.status()) }),
        )
        .route(
            "/v1/stats",
            get(|State(api): State<Api>| async move { Json(api.relay.totals.json()) }),
        )
        .route("/v1/drain", post(drain))
        .route(
            "/v1/openapi.yaml",
            get(|| async { ([("content-type", "application/yaml")], OPENAPI) }),
        )
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), authorize));
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .merge(v1)
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({"error": "no such path"})),
            )
        })
        .with_state(api)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<SessionSpec, Error> {
        session_spec(parse(json.as_bytes())?, Duration::from_secs(30))
    }

    #[test]
    fn a_session_request_is_checked_field_by_field() {
        let ok = spec(
            r#"{"id":"call-1","floor":"a","legs":[{"id":"a","rtp":"127.0.0.1:4000"},{"id":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(ok.id, "call-1");
        assert_eq!(ok.legs[0].rtp, Some("127.0.0.1:4000".parse().unwrap()));
        assert_eq!(ok.legs[1].rtp, None);
        assert_eq!(ok.holder.as_deref(), Some("a"));
        assert_eq!(ok.max_talk, Duration::from_secs(30));

        let field = |json: &str| match spec(json) {
            Err(Error::BadRequest { field, .. }) => field,
            other => panic!("{json}: {other:?}"),
        };
        assert_eq!(field(r#"{"legs":[]}"#), "legs");
        assert_eq!(
            field(r#"{"legs":[{"id":"a","rtp":"nowhere"}]}"#),
            "legs[0].rtp"
        );
        assert_eq!(field(r#"{"legs":[{"id":"a"},{"id":"a"}]}"#), "legs[1].id");
        assert_eq!(field(r#"{"legs":[{"id":"a"}],"floor":"z"}"#), "floor");
        assert_eq!(
            field(r#"{"legs":[{"id":"a"}],"max_talk_ms":0}"#),
            "max_talk_ms"
        );
        assert_eq!(field(r#"{"legs":[{"id":"a","port":1}]}"#), "legs[0].port");
        assert_eq!(field(r#"{"legs":[{"id":""}]}"#), "legs[0].id");
        assert_eq!(field("not json"), "body");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token(b"abc", b"abc"));
        assert!(!same_token(b"abc", b"abd"));
        assert!(!same_token(b"ab", b"abc"));
    }
}
