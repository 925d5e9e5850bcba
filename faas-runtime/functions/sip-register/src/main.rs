//! sip-register — Sluice's SIP registrar (RFC 3261 §10.3), an `http`-mode function.
//!
//! The sip-proxy calls it through the gateway with a protobuf `Event` (the contract in
//! `common/proto/sluice_sip.proto`) for each REGISTER and OPTIONS; it answers with an
//! `Actions` body. Bindings live in Redis under the function's own prefix and ACL user
//! (`state: redis` in the registry), so every replica sees the same bindings.
//!
//! Also an HTTP API to provision digest users (`/users`, bearer token `SIP_ADMIN_TOKEN`).
//! Settings (environment, from the registry's `env:`) are listed in README.md.
#![forbid(unsafe_code)]

mod digest;
mod headers;
mod registrar;
mod store;

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;
use tiny_http::{Header, Request, Response, Server};

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
        if algorithms.is_empty() {
            return Err("SIP_AUTH_ALGORITHMS is empty".into());
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
    let server = match Server::http(("0.0.0.0", cfg.port)) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("sip-register: cannot listen on 0.0.0.0:{}: {e}", cfg.port);
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "sip-register: listening on 0.0.0.0:{} (auth {}, realm {:?}, {} threads)",
        cfg.port,
        if cfg.auth { "digest" } else { "off" },
        cfg.realm,
        cfg.threads
    );
    let app = Arc::new(App {
        cfg,
        store,
        nonce_secret,
    });
    let mut workers = Vec::new();
    for _ in 0..app.cfg.threads {
        let (server, app) = (server.clone(), app.clone());
        workers.push(std::thread::spawn(move || {
            let mut con = None;
            while let Ok(req) = server.recv() {
                serve(&app, &mut con, req);
            }
        }));
    }
    for w in workers {
        let _ = w.join();
    }
    ExitCode::SUCCESS
}

fn header(name: &str, value: &str) -> Header {
    // Names and values here are ASCII constants or checked text: from_bytes cannot fail on
    // them; fall back to a harmless header rather than panic.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap_or_else(|_| {
        Header::from_bytes(&b"X-Invalid"[..], &b"1"[..]).unwrap_or_else(|_| unreachable!())
    })
}

fn reply(req: Request, status: u16, ctype: &str, body: Vec<u8>) {
    let resp = Response::from_data(body)
        .with_status_code(status)
        .with_header(header("Content-Type", ctype));
    let _ = req.respond(resp);
}

fn json_reply(req: Request, status: u16, v: serde_json::Value) {
    reply(req, status, "application/json", v.to_string().into_bytes());
}

fn serve(app: &App, con: &mut Option<redis::Connection>, mut req: Request) {
    let mut body = Vec::new();
    if req
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .is_err()
    {
        return reply(req, 400, "text/plain", b"cannot read the body".to_vec());
    }
    if body.len() as u64 > MAX_BODY {
        return reply(req, 413, "text/plain", b"body too large".to_vec());
    }
    let path = req.url().split('?').next().unwrap_or("/").to_string();
    let method = req.method().as_str().to_string();
    if path == "/users" || path.starts_with("/users/") {
        return users_api(app, con, req, &method, &path, &body);
    }
    if method != "POST" || path != "/" {
        return json_reply(
            req,
            404,
            serde_json::json!({"error": "POST / with a protobuf sluice.sip.v1.Event, or /users"}),
        );
    }
    let event = match sip::Event::decode(body.as_slice()) {
        Ok(e) => e,
        Err(e) => {
            return json_reply(
                req,
                400,
                serde_json::json!({"error": format!("not a sluice.sip.v1.Event: {e}")}),
            )
        }
    };
    let actions = handle_event(app, con, &event);
    reply(req, 200, PROTOBUF, actions.encode_to_vec());
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

fn handle_event(
    app: &App,
    con: &mut Option<redis::Connection>,
    event: &sip::Event,
) -> sip::Actions {
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
                ("Supported".into(), String::new()),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect(),
        ),
        "REGISTER" => register(app, con, r, &hdrs),
        _ => respond(
            405,
            "Method Not Allowed",
            vec![("Allow".into(), ALLOW.into())],
        ),
    }
}

fn with_connection<T>(
    app: &App,
    con: &mut Option<redis::Connection>,
    f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
) -> redis::RedisResult<T> {
    if con.is_none() {
        *con = Some(app.store.connect()?);
    }
    let Some(c) = con.as_mut() else {
        return Err(redis::RedisError::from((
            redis::ErrorKind::IoError,
            "no connection",
        )));
    };
    let out = f(c);
    if let Err(e) = &out {
        // A broken connection is replaced on the next call.
        if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
            *con = None;
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

fn register(
    app: &App,
    con: &mut Option<redis::Connection>,
    r: &sip::Request,
    hdrs: &[(String, String)],
) -> sip::Actions {
    let reg = match registrar::parse_register(hdrs) {
        Ok(reg) => reg,
        Err(rej) => return respond(rej.status, rej.reason, rej.headers),
    };
    if app.cfg.auth {
        if let Some(refusal) = authenticate(app, con, r, hdrs, reg.user.as_deref()) {
            return refusal;
        }
    }
    let policy = app.cfg.policy;
    let result = with_connection(app, con, |c| {
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
    con: &mut Option<redis::Connection>,
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
    let alg = match c.algorithm {
        Algorithm::Sha256 => "sha256",
        Algorithm::Md5 => "md5",
    };
    let ha1 = match with_connection(app, con, |k| app.store.ha1(k, &c.username, &cfg.realm, alg)) {
        Ok(h) => h,
        Err(e) => return Some(unavailable(&e)),
    };
    // An unknown user and a wrong password get the same answer.
    let ok = ha1.is_some_and(|h| digest::expected_response(&c, &h, &r.method) == c.response);
    if !ok {
        return Some(respond(403, "Forbidden", Vec::new()));
    }
    // RFC 3261 §10.3 step 4: a user registers only its own address-of-record.
    if aor_user != Some(c.username.as_str()) {
        return Some(respond(403, "Not Your Address-of-Record", Vec::new()));
    }
    None
}

fn users_api(
    app: &App,
    con: &mut Option<redis::Connection>,
    req: Request,
    method: &str,
    path: &str,
    body: &[u8],
) {
    let Some(token) = &app.cfg.admin_token else {
        return json_reply(
            req,
            403,
            serde_json::json!({"error": "the users API is off: set SIP_ADMIN_TOKEN in the function's env"}),
        );
    };
    let given = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string())
        .unwrap_or_default();
    let expected = format!("Bearer {token}");
    let same = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0;
    if !same {
        return json_reply(
            req,
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
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b))
        && !name.contains('/');
    let result = match (method, name.is_empty()) {
        ("GET", true) => with_connection(app, con, |c| app.store.users(c))
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
                    let sha = digest::ha1(Algorithm::Sha256, name, realm, &p.password);
                    let md5 = digest::ha1(Algorithm::Md5, name, realm, &p.password);
                    with_connection(app, con, |c| app.store.put_user(c, name, realm, &sha, &md5))
                        .map(|()| (200, serde_json::json!({"user": name, "realm": realm})))
                }
            }
        }
        ("DELETE", false) => {
            with_connection(app, con, |c| app.store.delete_user(c, name)).map(|found| {
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
        Ok((status, v)) => json_reply(req, status, v),
        Err(e) => json_reply(
            req,
            503,
            serde_json::json!({"error": format!("state unavailable: {e}")}),
        ),
    }
}
