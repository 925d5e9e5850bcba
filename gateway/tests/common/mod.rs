//! Real-process test stack for the gateway: a real `redis-server`, the real `xds-connector`
//! and `router` binaries, the real `gateway` binary, and two small HTTP servers written
//! here: a *replica* (the function's runtime, registered as an endpoint) that records what
//! reaches it, and an *orchestrator stand-in* that records wake calls and, when the test
//! lets it, registers the replica through the connector's REST API (what the real
//! orchestrator does after a cold start). Everything synchronises by polling with deadlines.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use sluice_common::testing::{free_port, wait_for, ChildGuard, RedisServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

pub const DEADLINE: Duration = Duration::from_secs(20);

/// The workspace root (`gateway/..`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("gateway has a parent dir")
        .to_path_buf()
}

/// `target/release/<name>`, built with cargo first when missing.
pub fn sibling_binary(name: &str) -> PathBuf {
    let path = workspace().join("target/release").join(name);
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", name])
            .current_dir(workspace())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p {name} failed");
    }
    path
}

/// Directory for the logs of one test's processes (kept after the run for debugging).
fn log_dir(instance: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("sluice-gateway-tests")
        .join(instance);
    std::fs::create_dir_all(&dir).expect("create log dir");
    dir
}

fn spawn_logged(bin: &Path, envs: &[(&str, String)], log: PathBuf) -> ChildGuard {
    let out = std::fs::File::create(&log).expect("create log file");
    let err = out.try_clone().expect("clone log file");
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("SLUICE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env("SLUICE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    ChildGuard(Some(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display())),
    ))
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("reqwest client")
}

async fn get_ok(url: impl AsRef<str>) -> Option<serde_json::Value> {
    let resp = http().get(url.as_ref()).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

// ---- replica ------------------------------------------------------------------------------

/// One request as the replica saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub function: Option<String>,
    pub body_len: usize,
}

/// A function replica: answers 200 JSON describing what it received. Requests to `/hold`
/// wait until [`Replica::release`] opens the gate.
pub struct Replica {
    pub addr: SocketAddr,
    /// Requests whose head arrived (counted before the body is read).
    pub arrivals: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    gate: watch::Sender<bool>,
}

impl Replica {
    pub async fn start() -> Replica {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind replica");
        let addr = listener.local_addr().expect("replica addr");
        let arrivals = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (gate, gate_rx) = watch::channel(false);
        let (a, s) = (arrivals.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (a, s, gate_rx) = (a.clone(), s.clone(), gate_rx.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (a, s, mut gate_rx) = (a.clone(), s.clone(), gate_rx.clone());
                            async move {
                                a.fetch_add(1, Ordering::SeqCst);
                                let method = req.method().to_string();
                                let uri = req
                                    .uri()
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default();
                                let function = req
                                    .headers()
                                    .get("x-sluice-function")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string);
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                if uri.starts_with("/hold") {
                                    let _ = gate_rx.wait_for(|open| *open).await;
                                }
                                let reply = serde_json::json!({
                                    "method": method, "uri": uri, "function": function, "body_len": body.len(),
                                });
                                s.lock().expect("seen lock").push(Seen {
                                    method,
                                    uri,
                                    function,
                                    body_len: body.len(),
                                });
                                Ok::<_, Infallible>(
                                    hyper::Response::builder()
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(reply.to_string())))
                                        .expect("response"),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Replica {
            addr,
            arrivals,
            seen,
            gate,
        }
    }

    /// Lets every `/hold` request (waiting or future) finish.
    pub fn release(&self) {
        self.gate.send_replace(true);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }

    pub fn arrivals(&self) -> usize {
        self.arrivals.load(Ordering::SeqCst)
    }
}

// ---- orchestrator stand-in -----------------------------------------------------------------

/// What the orchestrator stand-in does with a wake call (it always answers 202 first).
#[derive(Debug, Clone)]
pub enum OnWake {
    /// Register the replica for the woken function via the connector once the test opens
    /// the gate ([`Orchestrator::allow_registration`]).
    RegisterWhenAllowed { replica: SocketAddr },
    /// Never start anything (the cold start will time out).
    Ignore,
}

/// Stands in for the orchestrator: `POST /internal/wake/{fn}` (recorded, 202) and
/// `GET /system/functions` (recorded, 200 JSON list).
pub struct Orchestrator {
    pub addr: SocketAddr,
    pub wakes: Arc<Mutex<Vec<String>>>,
    /// Other `/system/*` requests: (method, path and query, had X-Sluice-Function).
    pub system_calls: Arc<Mutex<Vec<(String, String, bool)>>>,
    gate: watch::Sender<bool>,
}

impl Orchestrator {
    pub async fn start(connector_rest: String, on_wake: OnWake) -> Orchestrator {
        Self::start_on(0, connector_rest, on_wake).await
    }

    /// Like [`Orchestrator::start`] on a given port (0: any).
    pub async fn start_on(port: u16, connector_rest: String, on_wake: OnWake) -> Orchestrator {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind orchestrator stand-in");
        let addr = listener.local_addr().expect("addr");
        let wakes = Arc::new(Mutex::new(Vec::new()));
        let system_calls = Arc::new(Mutex::new(Vec::new()));
        let (gate, gate_rx) = watch::channel(false);
        let (w, sc) = (wakes.clone(), system_calls.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (w, sc, gate_rx) = (w.clone(), sc.clone(), gate_rx.clone());
                let (rest, on_wake) = (connector_rest.clone(), on_wake.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (w, sc, mut gate_rx) = (w.clone(), sc.clone(), gate_rx.clone());
                            let (rest, on_wake) = (rest.clone(), on_wake.clone());
                            async move {
                                let path = req.uri().path().to_string();
                                let (status, body) = if let Some(f) =
                                    path.strip_prefix("/internal/wake/")
                                {
                                    let f = f.to_string();
                                    w.lock().expect("wakes lock").push(f.clone());
                                    if let OnWake::RegisterWhenAllowed { replica } = on_wake {
                                        tokio::spawn(async move {
                                            let _ = gate_rx.wait_for(|open| *open).await;
                                            add_endpoint(&rest, &f, replica).await;
                                        });
                                    }
                                    (202, serde_json::json!({"status": "starting"}))
                                } else {
                                    let pq = req
                                        .uri()
                                        .path_and_query()
                                        .map(|p| p.to_string())
                                        .unwrap_or_default();
                                    let had = req.headers().contains_key("x-sluice-function");
                                    sc.lock().expect("system lock").push((
                                        req.method().to_string(),
                                        pq,
                                        had,
                                    ));
                                    if path == "/system/functions" {
                                        (200, serde_json::json!([{"name": "hello", "replicas": 1}]))
                                    } else {
                                        (404, serde_json::json!({"error": "no such system path"}))
                                    }
                                };
                                Ok::<_, Infallible>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(body.to_string())))
                                        .expect("response"),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Orchestrator {
            addr,
            wakes,
            system_calls,
            gate,
        }
    }

    /// Lets pending (and future) wake calls register their replica.
    pub fn allow_registration(&self) {
        self.gate.send_replace(true);
    }

    pub fn wakes(&self) -> Vec<String> {
        self.wakes.lock().expect("wakes lock").clone()
    }
}

// ---- connector REST --------------------------------------------------------------------------

/// A cluster body for `PUT /v1/functions/{name}`.
pub fn cluster_json(cold_start_timeout_ms: u64, max_body_bytes: u64) -> serde_json::Value {
    serde_json::json!({
        "max_concurrency": 100,
        "queue_size": 200,
        "queue_timeout_ms": 15_000,
        "cold_start_timeout_ms": cold_start_timeout_ms,
        "max_body_bytes": max_body_bytes,
        "timeout_ms": 30_000,
        "connect_timeout_ms": 1_000,
        "drain_timeout_ms": 5_000,
    })
}

/// Sets a function (cluster + endpoints + route) through the connector's REST API.
pub async fn register(rest: &str, name: &str, cluster: serde_json::Value, replicas: &[SocketAddr]) {
    let endpoints: Vec<serde_json::Value> = replicas
        .iter()
        .enumerate()
        .map(|(i, a)| {
            serde_json::json!({
                "id": format!("{name}-{i}"), "address": a.to_string(), "weight": 1,
                "health": "healthy", "replica": format!("{name}-replica-{i}"),
            })
        })
        .collect();
    let resp = http()
        .put(format!("{rest}/v1/functions/{name}"))
        .json(&serde_json::json!({"cluster": cluster, "endpoints": endpoints}))
        .send()
        .await
        .expect("PUT /v1/functions");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "PUT /v1/functions/{name}: {status} {text}"
    );
}

/// Adds one HEALTHY endpoint (`<name>-0` at `replica`) to an existing function, as the
/// orchestrator does once a started replica passed its readiness probe.
pub async fn add_endpoint(rest: &str, name: &str, replica: SocketAddr) {
    let resp = http()
        .put(format!("{rest}/v1/endpoints/{name}/{name}-0"))
        .json(&serde_json::json!({
            "address": replica.to_string(), "weight": 1, "health": "healthy",
            "replica": format!("{name}-replica-0"),
        }))
        .send()
        .await
        .expect("PUT /v1/endpoints");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "PUT /v1/endpoints/{name}/{name}-0: {status} {text}"
    );
}

// ---- the stack ------------------------------------------------------------------------------

/// Redis + xds-connector + router + gateway on free loopback ports.
pub struct Stack {
    pub instance: String,
    pub rest: String,
    pub grpc: String,
    pub router_listen: SocketAddr,
    pub router_admin: String,
    pub gateway: String,
    pub gateway_proc: ChildGuard,
    router: Option<ChildGuard>,
    router_env: Vec<(&'static str, String)>,
    router_log: PathBuf,
    /// The router's Unix socket when the gateway reaches it there ([`Stack::start_unix`]).
    pub router_socket: Option<PathBuf>,
    _socket_dir: Option<tempfile::TempDir>,
    _connector: ChildGuard,
    _redis: RedisServer,
}

impl Stack {
    /// Starts everything and waits until the gateway and router are connected to the
    /// connector. `orchestrator` is the base URL the gateway uses for `/system/*` and wakes.
    pub async fn start(instance: &str, orchestrator: &str) -> Stack {
        Self::start_with(instance, orchestrator, false, None).await
    }

    /// As [`Stack::start`], with the gateway reaching the router on the router's Unix
    /// socket (as `make up` runs them) and the gateway's upstream connect timeout set.
    pub async fn start_unix(instance: &str, orchestrator: &str, connect_timeout_ms: u64) -> Stack {
        Self::start_with(instance, orchestrator, true, Some(connect_timeout_ms)).await
    }

    async fn start_with(
        instance: &str,
        orchestrator: &str,
        unix: bool,
        connect_timeout_ms: Option<u64>,
    ) -> Stack {
        let logs = log_dir(instance);
        println!("logs of {instance}: {}", logs.display());
        let redis = RedisServer::start();
        let (grpc_port, rest_port) = (free_port(), free_port());
        let connector = spawn_logged(
            &sibling_binary("xds-connector"),
            &[
                ("SLUICE_GRPC_LISTEN", format!("127.0.0.1:{grpc_port}")),
                ("SLUICE_REST_LISTEN", format!("127.0.0.1:{rest_port}")),
                ("SLUICE_REDIS_URL", redis.url()),
                ("SLUICE_INSTANCE", instance.to_string()),
            ],
            logs.join("xds-connector.log"),
        );
        let rest = format!("http://127.0.0.1:{rest_port}");
        let grpc = format!("http://127.0.0.1:{grpc_port}");
        wait_for("xds-connector /healthz", DEADLINE, || {
            get_ok(format!("{rest}/healthz"))
        })
        .await;

        let (router_port, admin_port) = (free_port(), free_port());
        let socket_dir = unix.then(|| tempfile::tempdir().expect("socket dir"));
        let router_socket = socket_dir.as_ref().map(|d| d.path().join("router.sock"));
        let mut router_env = vec![
            ("SLUICE_LISTEN", format!("127.0.0.1:{router_port}")),
            ("SLUICE_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}")),
            ("SLUICE_XDS_SERVER", grpc.clone()),
            ("SLUICE_NODE_ID", format!("router-{instance}")),
            ("SLUICE_THREADS", "2".into()),
        ];
        if let Some(path) = &router_socket {
            router_env.push(("SLUICE_LISTEN_UNIX", path.display().to_string()));
        }
        let router_log = logs.join("router.log");
        let router = spawn_logged(&sibling_binary("router"), &router_env, router_log.clone());
        let router_admin = format!("http://127.0.0.1:{admin_port}");
        wait_for("router admin /healthz", DEADLINE, || {
            get_ok(format!("{router_admin}/healthz"))
        })
        .await;

        let gateway_port = free_port();
        let mut gateway_env = vec![
            ("SLUICE_LISTEN", format!("127.0.0.1:{gateway_port}")),
            (
                "SLUICE_ROUTER",
                match &router_socket {
                    Some(path) => format!("unix:{}", path.display()),
                    None => format!("http://127.0.0.1:{router_port}"),
                },
            ),
            ("SLUICE_ORCHESTRATOR", orchestrator.to_string()),
            ("SLUICE_XDS_SERVER", grpc.clone()),
            ("SLUICE_NODE_ID", format!("gateway-{instance}")),
            ("SLUICE_THREADS", "2".into()),
        ];
        if let Some(ms) = connect_timeout_ms {
            gateway_env.push(("SLUICE_UPSTREAM_CONNECT_TIMEOUT_MS", ms.to_string()));
        }
        let gateway_proc = spawn_logged(
            Path::new(env!("CARGO_BIN_EXE_gateway")),
            &gateway_env,
            logs.join("gateway.log"),
        );
        let gateway = format!("http://127.0.0.1:{gateway_port}");
        wait_for("gateway /healthz with xDS connected", DEADLINE, || {
            let url = format!("{gateway}/healthz");
            async move {
                let h = get_ok(&url).await?;
                (h["xds"]["connected"] == true).then_some(())
            }
        })
        .await;
        Stack {
            instance: instance.to_string(),
            rest,
            grpc,
            router_listen: SocketAddr::from(([127, 0, 0, 1], router_port)),
            router_admin,
            gateway,
            gateway_proc,
            router: Some(router),
            router_env,
            router_log,
            router_socket,
            _socket_dir: socket_dir,
            _connector: connector,
            _redis: redis,
        }
    }

    /// Kills the router (SIGKILL: its socket file stays behind, as after a crash).
    pub fn kill_router(&mut self) {
        drop(self.router.take());
    }

    /// Starts the router again with the same settings and waits until its admin answers.
    pub async fn start_router(&mut self) {
        let log = self.router_log.with_extension("restarted.log");
        self.router = Some(spawn_logged(
            &sibling_binary("router"),
            &self.router_env,
            log,
        ));
        let admin = self.router_admin.clone();
        wait_for("restarted router admin /healthz", DEADLINE, || {
            get_ok(format!("{admin}/healthz"))
        })
        .await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.gateway, path)
    }

    pub async fn health(&self) -> serde_json::Value {
        get_ok(&self.url("/healthz"))
            .await
            .expect("gateway /healthz")
    }

    /// Waits until the router and the gateway both accepted everything the connector holds
    /// now (same per-type versions), i.e. every REST change made so far is in effect.
    pub async fn wait_synced(&self) {
        let want = get_ok(&format!("{}/v1/snapshot", self.rest))
            .await
            .expect("connector snapshot")["versions"]
            .clone();
        for url in [
            format!("{}/v1/config", self.router_admin),
            format!("{}/healthz", self.gateway),
        ] {
            let key = if url.ends_with("/healthz") {
                "gateway"
            } else {
                "router"
            };
            wait_for(
                &format!("{key} at the connector's versions {want}"),
                DEADLINE,
                || {
                    let (url, want) = (url.clone(), want.clone());
                    async move {
                        let v = get_ok(&url).await?;
                        let got = if v["xds"]["versions"].is_object() {
                            v["xds"]["versions"].clone()
                        } else {
                            v["versions"].clone()
                        };
                        (got == want).then_some(())
                    }
                },
            )
            .await;
        }
    }
}

// ---- raw HTTP/1.1 (for chunked uploads) -------------------------------------------------------

/// A response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// Sends `POST path` with a chunked body of `total` bytes (64 KiB chunks) and reads the
/// response (which may arrive before the body is fully sent).
pub async fn post_chunked(addr: &str, path: &str, total: usize) -> RawResponse {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 64 * 1024];
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len());
            wr.write_all(format!("{n:x}\r\n").as_bytes()).await?;
            wr.write_all(&chunk[..n]).await?;
            wr.write_all(b"\r\n").await?;
            left -= n;
        }
        wr.write_all(b"0\r\n\r\n").await?;
        wr.flush().await?;
        // Keep the write half open until the reader is done.
        Ok::<_, std::io::Error>(wr)
    });
    let resp = tokio::time::timeout(DEADLINE, read_response(&mut rd))
        .await
        .expect("response within the deadline");
    writer.abort();
    resp
}

/// Reads one response (head and `Content-Length` body) off a raw connection.
pub async fn read_response(rd: &mut (impl AsyncReadExt + Unpin)) -> RawResponse {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = rd.read(&mut tmp).await.expect("read response head");
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .expect("the gateway's responses carry Content-Length");
    while body.len() < len {
        let n = rd.read(&mut tmp).await.expect("read response body");
        assert!(n > 0, "connection closed inside the body");
        body.extend_from_slice(&tmp[..n]);
    }
    body.truncate(len);
    RawResponse {
        status,
        headers,
        body,
    }
}
