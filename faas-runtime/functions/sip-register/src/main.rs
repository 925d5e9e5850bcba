//! sip-register — Sluice's SIP registrar (RFC 3261 §10.3), an `http`-mode function.
//!
//! The sip-proxy calls it through the gateway with a protobuf `Event` (the contract in
//! `common/proto/sluice_sip.proto`) for each REGISTER and OPTIONS; it answers with an
//! `Actions` body. Bindings live in Redis under the function's own prefix and ACL user
//! (`state: redis` in the registry), so every replica sees the same bindings.
//!
//! Also an HTTP API to provision digest users (`/users`, bearer token `SIP_ADMIN_TOKEN`).
//! Settings (environment, from the registry's `env:`) are listed in README.md.
//!
//! Shape: hyper on a small tokio runtime takes any number of keep-alive connections without a
//! thread each (a function container has a pids limit); each call's work — the decision and
//! its Redis transaction, which are blocking — runs on at most `SIP_THREADS` blocking
//! threads, each taking a Redis connection from a pool.
#![forbid(unsafe_code)]

mod digest;
mod headers;
mod registrar;
mod store;

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use prost::Message;

use digest::{Algorithm, NonceState};
use registrar::{Outcome, Policy};

/// The generated SIP contract.
pub mod sip {
    include!(concat!(env!("OUT_DIR"), "/sluice.sip.v1.rs"));
}

const PROTOBUF: &str = "application/x-protobuf";
const MAX_BODY: u64 = 1 << 20;
const ALLOW: &str = "REGISTER, OPTIONS";

struct Config {
    port: u16,
    threads: usize,
    policy: Policy,
    /// Digest authentication on REGISTER (`SIP_AUTH=digest`).
    auth: bool,
    realm: String,
    algorithms: Vec<Algorithm>,
    nonce_lifetime_ms: u64,
    admin_token: Option<String>,
    events_maxlen: usize,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) if v.trim().is_empty() => Ok(default),
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}: cannot parse `{v}`")),
    }
}

impl Config {
    fn from_env() -> Result<Config, String> {
        let auth = match env_or("SIP_AUTH", "off".to_string())?.as_str() {
            "off" => false,
            "digest" => true,
            other => return Err(format!("SIP_AUTH: `{other}` is neither `off` nor `digest`")),
        };
        let mut algorithms = Vec::new();
        for a in env_or("SIP_AUTH_ALGORITHMS", "SHA-256,MD5".to_string())?.split(',') {
            algorithms.push(Algorithm::from_name(a.trim()).ok_or(format!(
                "SIP_AUTH_ALGORITHMS: unknown algorithm `{a}` (SHA-256, MD5)"
            ))?);
        }
        let policy = Policy {
            min_expires: env_or("SIP_MIN_EXPIRES", 60)?,
            max_expires: env_or("SIP_MAX_EXPIRES", 86_400)?,
            default_expires: env_or("SIP_DEFAULT_EXPIRES", 3_600)?,
        };
        if policy.min_expires > policy.default_expires
            || policy.default_expires > policy.max_expires
        {
            return Err(
                "expires: need SIP_MIN_EXPIRES ≤ SIP_DEFAULT_EXPIRES ≤ SIP_MAX_EXPIRES".into(),
            );
        }
        Ok(Config {
            port: env_or("PORT", 8081)?,
            threads: env_or("SIP_THREADS", 32usize)?.max(1),
            policy,
            auth,
            realm: env_or("SIP_REALM", "sluice".to_string())?,
            algorithms,
            nonce_lifetime_ms: env_or("SIP_NONCE_LIFETIME_S", 300u64)? * 1000,
            admin_token: std::env::var("SIP_ADMIN_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
            events_maxlen: env_or("SIP_EVENTS_MAXLEN", 100_000usize)?,
        })
    }
}

struct App {
    cfg: Config,
    store: store::Store,
    /// Idle Redis connections (a WATCH/MULTI transaction needs a connection of its own).
    pool: Mutex<Vec<redis::Connection>>,
    /// Signs nonces; derived from the function's own Redis credentials, which every replica
    /// shares and nothing else has.
    nonce_secret: Vec<u8>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn main() -> ExitCode {
    let cfg = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sip-register: {e}");
            return ExitCode::from(2);
        }
    };
    let (Ok(url), Ok(prefix)) = (
        std::env::var("SLUICE_STATE_REDIS_URL"),
        std::env::var("SLUICE_STATE_PREFIX"),
    ) else {
        eprintln!("sip-register: no state (declare `state: redis` in the registry)");
        return ExitCode::from(2);
    };
    let store = match store::Store::new(&url, &prefix, cfg.events_maxlen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sip-register: bad SLUICE_STATE_REDIS_URL: {e}");
            return ExitCode::from(2);
        }
    };
    let nonce_secret = digest::Algorithm::Sha256
        .hash(&format!("sip-register-nonce:{url}"))
        .into_bytes();
    let port = cfg.port;
    let threads = cfg.threads;
    let auth = if cfg.auth { "digest" } else { "off" };
    eprintln!(
        "sip-register: listening on 0.0.0.0:{port} (auth {auth}, realm {:?}, {threads} threads)",
        cfg.realm
    );
    let app = Arc::new(App {
        cfg,
        store,
        pool: Mutex::new(Vec::new()),
        nonce_secret,
    });
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sip-register: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(app, port)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sip-register: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Accepts connections until SIGTERM, then lets the calls in flight finish (at most 10 s).
async fn serve(app: Arc<App>, port: u16) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("sip-register: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = term.recv() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let conn = http1::Builder::new().keep_alive(true).serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| call(app.clone(), req)),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
}

/// What a call answers: status, content type, body.
type Answer = (u16, &'static str, Vec<u8>);

fn json(status: u16, v: serde_json::Value) -> Answer {
    (status, "application/json", v.to_string().into_bytes())
}

async fn call(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let answer = match Limited::new(body, MAX_BODY as usize).collect().await {
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            json(413, serde_json::json!({"error": "body too large"}))
        }
        Err(_) => json(400, serde_json::json!({"error": "cannot read the body"})),
        Ok(collected) => {
            let body = collected.to_bytes();
            let method = parts.method.as_str().to_string();
            let path = parts.uri.path().to_string();
            let bearer = parts
                .headers
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            tokio::task::spawn_blocking(move || route(&app, &method, &path, &bearer, &body))
                .await
                .unwrap_or_else(|_| json(500, serde_json::json!({"error": "the call failed"})))
        }
    };
    let (status, ctype, body) = answer;
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    Ok(resp)
}

/// One call, on a blocking thread: the SIP event or the users API.
fn route(app: &App, method: &str, path: &str, bearer: &str, body: &[u8]) -> Answer {
    if path == "/users" || path.starts_with("/users/") {
        return users_api(app, method, path, bearer, body);
    }
    if method != "POST" || path != "/" {
        return json(
            404,
            serde_json::json!({"error": "POST / with a protobuf sluice.sip.v1.Event, or /users"}),
        );
    }
    match sip::Event::decode(body) {
        Ok(event) => (200, PROTOBUF, handle_event(app, &event).encode_to_vec()),
        Err(e) => json(
            400,
            serde_json::json!({"error": format!("not a sluice.sip.v1.Event: {e}")}),
        ),
    }
}

fn respond(status: u16, reason: &str, headers: Vec<(String, String)>) -> sip::Actions {
    sip::Actions {
        actions: vec![sip::Action {
            kind: Some(sip::action::Kind::Respond(sip::Respond {
                status: u32::from(status),
                reason: reason.to_string(),
                headers: headers
                    .into_iter()
                    .map(|(name, value)| sip::Header { name, value })
                    .collect(),
                ..Default::default()
            })),
        }],
    }
}

fn handle_event(app: &App, event: &sip::Event) -> sip::Actions {
    let Some(sip::event::Kind::Request(r)) = &event.kind else {
        // Responses: this handler sends no requests, so there is nothing to match.
        return sip::Actions::default();
    };
    let hdrs: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    // RFC 3261 §10.3 step 2 (and §8.2.2.3 for OPTIONS): no extension is supported.
    let required: Vec<&str> = hdrs
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Require"))
        .flat_map(|(_, v)| headers::split_list(v))
        .collect();
    if !required.is_empty() {
        return respond(
            420,
            "Bad Extension",
            vec![("Unsupported".into(), required.join(", "))],
        );
    }
    match r.method.as_str() {
        "OPTIONS" => respond(
            200,
            "OK",
            vec![
                ("Allow".into(), ALLOW.into()),
                ("Accept".into(), "application/sdp".into()),
            ],
        ),
        "REGISTER" => register(app, r, &hdrs),
        _ => respond(
            405,
            "Method Not Allowed",
            vec![("Allow".into(), ALLOW.into())],
        ),
    }
}

/// Runs `f` on a Redis connection from the pool (a new one when none is idle); a connection
/// that failed is dropped, a healthy one goes back.
fn with_connection<T>(
    app: &App,
    f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
) -> redis::RedisResult<T> {
    let idle = app.pool.lock().ok().and_then(|mut p| p.pop());
    let mut con = match idle {
        Some(c) => c,
        None => app.store.connect()?,
    };
    let out = f(&mut con);
    let broken = matches!(&out, Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() || e.is_timeout());
    if !broken {
        if let Ok(mut p) = app.pool.lock() {
            p.push(con);
        }
    }
    out
}

fn unavailable(e: &redis::RedisError) -> sip::Actions {
    eprintln!("sip-register: state unavailable: {e}");
    respond(
        503,
        "Registrar State Unavailable",
        vec![("Retry-After".into(), "5".into())],
    )
}

fn register(app: &App, r: &sip::Request, hdrs: &[(String, String)]) -> sip::Actions {
    let reg = match registrar::parse_register(hdrs) {
        Ok(reg) => reg,
        Err(rej) => return respond(rej.status, rej.reason, rej.headers),
    };
    if app.cfg.auth {
        if let Some(refusal) = authenticate(app, r, hdrs, reg.user.as_deref()) {
            return refusal;
        }
    }
    let policy = app.cfg.policy;
    let result = with_connection(app, |c| {
        app.store.register(c, &reg.aor, now_ms, |current, now| {
            registrar::decide(&reg, current, now, &policy)
        })
    });
    match result {
        Ok(Outcome {
            status,
            reason,
            headers,
            ..
        }) => respond(status, reason, headers),
        Err(e) => unavailable(&e),
    }
}

/// `None`: authenticated as the AOR's owner. `Some`: the answer (a challenge or a refusal).
fn authenticate(
    app: &App,
    r: &sip::Request,
    hdrs: &[(String, String)],
    aor_user: Option<&str>,
) -> Option<sip::Actions> {
    let cfg = &app.cfg;
    let now = now_ms();
    let challenge = |stale: bool| {
        let nonce = digest::make_nonce(&app.nonce_secret, now);
        respond(
            401,
            "Unauthorized",
            digest::challenges(&cfg.realm, &nonce, &cfg.algorithms, stale),
        )
    };
    // Of several Authorization headers, the one for our realm.
    let creds: Vec<digest::Credentials> = hdrs
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Authorization"))
        .filter_map(|(_, v)| digest::parse_credentials(v))
        .collect();
    let Some(c) = creds.into_iter().find(|c| c.realm == cfg.realm) else {
        return Some(challenge(false));
    };
    if !cfg.algorithms.contains(&c.algorithm) {
        return Some(challenge(false));
    }
    match digest::check_nonce(&app.nonce_secret, &c.nonce, now, cfg.nonce_lifetime_ms) {
        NonceState::Valid => {}
        NonceState::Stale => return Some(challenge(true)),
        NonceState::Invalid => return Some(challenge(false)),
    }
    let ha1 = match with_connection(app, |k| {
        app.store.ha1(k, &c.username, &cfg.realm, c.algorithm)
    }) {
        Ok(h) => h,
        Err(e) => return Some(unavailable(&e)),
    };
    // An unknown user and a wrong password get the same answer.
    let ok = ha1.is_some_and(|h| {
        digest::same_secret(&digest::expected_response(&c, &h, &r.method), &c.response)
    });
    if !ok {
        return Some(respond(403, "Forbidden", Vec::new()));
    }
    // RFC 3261 §10.3 step 4: a user registers only its own address-of-record.
    if aor_user != Some(c.username.as_str()) {
        return Some(respond(403, "Not Your Address-of-Record", Vec::new()));
    }
    None
}

fn users_api(app: &App, method: &str, path: &str, bearer: &str, body: &[u8]) -> Answer {
    let Some(token) = &app.cfg.admin_token else {
        return json(
            403,
            serde_json::json!({"error": "the users API is off: set SIP_ADMIN_TOKEN in the function's env"}),
        );
    };
    if !digest::same_secret(bearer, &format!("Bearer {token}")) {
        return json(
            401,
            serde_json::json!({"error": "missing or wrong bearer token"}),
        );
    }
    let name = path
        .strip_prefix("/users")
        .unwrap_or("")
        .trim_start_matches('/');
    let valid_name = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?".contains(&b));
    let result = match (method, name.is_empty()) {
        ("GET", true) => with_connection(app, |c| app.store.users(c))
            .map(|u| (200, serde_json::json!({ "users": u }))),
        (_, false) if !valid_name => Ok((400, serde_json::json!({"error": "invalid user name"}))),
        ("PUT", false) => {
            #[derive(serde::Deserialize)]
            struct Put {
                password: String,
            }
            match serde_json::from_slice::<Put>(body) {
                Err(e) => Ok((
                    400,
                    serde_json::json!({"error": format!("expected {{\"password\": \"...\"}}: {e}")}),
                )),
                Ok(p) if p.password.is_empty() => {
                    Ok((400, serde_json::json!({"error": "empty password"})))
                }
                Ok(p) => {
                    let realm = &app.cfg.realm;
                    let ha1s =
                        Algorithm::ALL.map(|a| (a, digest::ha1(a, name, realm, &p.password)));
                    with_connection(app, |c| app.store.put_user(c, name, realm, &ha1s))
                        .map(|()| (200, serde_json::json!({"user": name, "realm": realm})))
                }
            }
        }
        ("DELETE", false) => {
            with_connection(app, |c| app.store.delete_user(c, name)).map(|found| {
                if found {
                    (200, serde_json::json!({"deleted": name}))
                } else {
                    (404, serde_json::json!({"error": "no such user"}))
                }
            })
        }
        _ => Ok((
            405,
            serde_json::json!({"error": "GET /users, PUT or DELETE /users/<name>"}),
        )),
    };
    match result {
        Ok((status, v)) => json(status, v),
        Err(e) => json(
            503,
            serde_json::json!({"error": format!("state unavailable: {e}")}),
        ),
    }
}
