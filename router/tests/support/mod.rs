//! Test harness: a real redis-server, the real xds-connector and router binaries on free
//! loopback ports, and small real HTTP upstreams (hyper) that count what they see.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sluice_common::testing::{wait_for, ChildGuard, RedisServer};

pub const ENDPOINTS_TYPE: &str = sluice_common::xds::ENDPOINTS_TYPE;

/// A free loopback port never handed out before in this test process (tests run in parallel
/// and the kernel may return the same free port to two quick successive probes).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().expect("port list");
    loop {
        let port = sluice_common::testing::free_port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Directory holding the built binaries (`target/release`).
fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_router"))
        .parent()
        .expect("binary directory")
        .to_path_buf()
}

/// Path of the xds-connector binary, building it when missing.
fn connector_bin() -> PathBuf {
    let path = bin_dir().join("xds-connector");
    if !path.exists() {
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace")
            .to_path_buf();
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "xds-connector"])
            .current_dir(workspace)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building xds-connector failed");
    }
    path
}

fn log_file(name: &str) -> (Stdio, PathBuf) {
    let dir = std::env::temp_dir().join("sluice-router-tests");
    std::fs::create_dir_all(&dir).expect("log dir");
    let path = dir.join(name);
    let f = std::fs::File::create(&path).expect("log file");
    (Stdio::from(f), path)
}

/// HTTP client without connection reuse surprises: a fresh pool per test.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// The control plane: redis + xds-connector.
pub struct ControlPlane {
    pub redis: RedisServer,
    pub grpc_port: u16,
    pub rest_port: u16,
    pub instance: String,
    pub child: ChildGuard,
    pub log: PathBuf,
}

impl ControlPlane {
    pub async fn start(test: &str) -> ControlPlane {
        let redis = RedisServer::start();
        let (grpc_port, rest_port) = (free_port(), free_port());
        let instance = format!("rt-{test}-{grpc_port}");
        let (child, log) = Self::spawn(&redis, grpc_port, rest_port, &instance, test);
        let cp = ControlPlane {
            redis,
            grpc_port,
            rest_port,
            instance,
            child,
            log,
        };
        cp.wait_healthy().await;
        cp
    }

    fn spawn(
        redis: &RedisServer,
        grpc_port: u16,
        rest_port: u16,
        instance: &str,
        test: &str,
    ) -> (ChildGuard, PathBuf) {
        let (stderr, log) = log_file(&format!("{test}-connector-{grpc_port}.log"));
        let child = Command::new(connector_bin())
            .env("SLUICE_GRPC_LISTEN", format!("127.0.0.1:{grpc_port}"))
            .env("SLUICE_REST_LISTEN", format!("127.0.0.1:{rest_port}"))
            .env("SLUICE_REDIS_URL", redis.url())
            .env("SLUICE_INSTANCE", instance)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start xds-connector");
        (ChildGuard(Some(child)), log)
    }

    async fn wait_healthy(&self) {
        let c = client();
        let url = self.rest("/healthz");
        wait_for("xds-connector healthy", Duration::from_secs(20), || {
            let (c, url) = (c.clone(), url.clone());
            async move {
                let r = c.get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
    }

    pub fn grpc(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn rest(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.rest_port)
    }

    /// `PUT /v1/functions/{name}`.
    pub async fn put_function(&self, name: &str, cluster: Value, endpoints: Value) {
        let r = client()
            .put(self.rest(&format!("/v1/functions/{name}")))
            .json(&json!({ "cluster": cluster, "endpoints": endpoints }))
            .send()
            .await
            .expect("PUT function");
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "PUT /v1/functions/{name}: {status} {body}"
        );
    }

    /// The connector's `GET /v1/clients` entry for `node_id`.
    pub async fn client_entry(&self, node_id: &str) -> Option<Value> {
        let v: Value = client()
            .get(self.rest("/v1/clients"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v.as_array()?
            .iter()
            .find(|c| c["node_id"] == node_id)
            .cloned()
    }

    /// Kills the connector (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A router process.
pub struct Router {
    pub port: u16,
    pub admin_port: u16,
    pub node_id: String,
    pub child: ChildGuard,
    pub log: PathBuf,
}

impl Router {
    /// Starts the router on fresh ports and waits until its admin API answers.
    pub async fn start(cp: &ControlPlane, test: &str) -> Router {
        Self::start_on(cp, test, free_port(), free_port()).await
    }

    pub async fn start_on(cp: &ControlPlane, test: &str, port: u16, admin_port: u16) -> Router {
        Self::start_with(cp, test, port, admin_port, &[]).await
    }

    /// Like [`Router::start_on`], with extra environment variables.
    pub async fn start_with(
        cp: &ControlPlane,
        test: &str,
        port: u16,
        admin_port: u16,
        env: &[(&str, String)],
    ) -> Router {
        let node_id = format!("router-{test}-{port}");
        let (stderr, log) = log_file(&format!("{test}-router-{port}-{}.log", free_port()));
        let child = Command::new(env!("CARGO_BIN_EXE_router"))
            .env("SLUICE_LISTEN", format!("127.0.0.1:{port}"))
            .env("SLUICE_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
            .env("SLUICE_XDS_SERVER", cp.grpc())
            .env("SLUICE_NODE_ID", &node_id)
            .env("SLUICE_THREADS", "2")
            .env(
                "SLUICE_LOG",
                std::env::var("ROUTER_TEST_LOG").unwrap_or_else(|_| "info".to_string()),
            )
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start router");
        let r = Router {
            port,
            admin_port,
            node_id,
            child: ChildGuard(Some(child)),
            log,
        };
        let c = client();
        let url = r.admin("/healthz");
        wait_for("router admin healthy", Duration::from_secs(20), || {
            let (c, url) = (c.clone(), url.clone());
            async move {
                let r = c.get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        r
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub async fn admin_json(&self, path: &str) -> Value {
        client()
            .get(self.admin(path))
            .send()
            .await
            .expect("admin request")
            .json()
            .await
            .expect("admin json")
    }

    /// Polls until `GET /<function>/` answers 200; returns how long that took.
    pub async fn wait_routable(&self, function: &str) -> Duration {
        let start = std::time::Instant::now();
        let c = client();
        let url = self.url(&format!("/{function}/"));
        wait_for(
            &format!("{function} routable"),
            Duration::from_secs(10),
            || {
                let (c, url) = (c.clone(), url.clone());
                async move {
                    let r = c.get(&url).send().await.ok()?;
                    (r.status() == 200).then_some(())
                }
            },
        )
        .await;
        start.elapsed()
    }

    /// Endpoint rows of `/v1/endpoints` for `cluster`.
    pub async fn endpoints(&self, cluster: &str) -> Vec<Value> {
        let v = self.admin_json("/v1/endpoints").await;
        v.as_array()
            .expect("endpoint list")
            .iter()
            .filter(|e| e["cluster"] == cluster)
            .cloned()
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// What an upstream saw.
#[derive(Debug, Default)]
pub struct UpstreamStats {
    pub current: AtomicUsize,
    pub max_concurrent: AtomicUsize,
    pub total: AtomicUsize,
    pub paths: Mutex<Vec<String>>,
    pub function_headers: Mutex<Vec<String>>,
}

impl UpstreamStats {
    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent.load(Ordering::SeqCst)
    }
    pub fn current(&self) -> usize {
        self.current.load(Ordering::SeqCst)
    }
    pub fn last_path(&self) -> Option<String> {
        self.paths.lock().expect("lock").last().cloned()
    }
}

/// A real HTTP/1.1 server standing in for a replica runtime.
///
/// * `?sleep_ms=N` delays the answer by N ms;
/// * an `Upgrade` request is answered 101 and the connection then echoes bytes (unless
///   `?refuse_upgrade=1`, which answers it like any other request);
/// * the body is `{"upstream": <name>, "path": <path and query>}`.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    pub stats: Arc<UpstreamStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct InFlight(Arc<UpstreamStats>);

impl InFlight {
    fn enter(stats: &Arc<UpstreamStats>) -> InFlight {
        let now = stats.current.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_concurrent.fetch_max(now, Ordering::SeqCst);
        stats.total.fetch_add(1, Ordering::SeqCst);
        InFlight(stats.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(UpstreamStats::default());
        let (name2, stats2) = (name.to_string(), stats.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (name, stats) = (name2.clone(), stats2.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, name.clone(), stats.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Upstream {
            name: name.to_string(),
            addr,
            stats,
            task,
        }
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Endpoint JSON for the connector's REST API.
    pub fn endpoint(&self, max_concurrency: u32) -> Value {
        json!({
            "id": self.name,
            "address": self.address(),
            "weight": 1,
            "max_concurrency": max_concurrency,
            "replica": format!("{}-replica", self.name),
        })
    }
}

async fn handle(
    mut req: Request<Incoming>,
    name: String,
    stats: Arc<UpstreamStats>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let _in_flight = InFlight::enter(&stats);
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    stats.paths.lock().expect("lock").push(pq.clone());
    if let Some(h) = req.headers().get("x-sluice-function") {
        stats
            .function_headers
            .lock()
            .expect("lock")
            .push(h.to_str().unwrap_or_default().to_string());
    }
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(ms) = query.get("sleep_ms").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if req.headers().contains_key(hyper::header::UPGRADE) && !query.contains_key("refuse_upgrade") {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let resp = Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Full::new(Bytes::new()))
            .expect("101 response");
        return Ok(resp);
    }
    let body = json!({ "upstream": name, "path": pq }).to_string();
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("response"))
}

/// A cluster JSON for the connector's REST API.
pub fn cluster(max_concurrency: u32, queue_size: u32, queue_timeout_ms: u64) -> Value {
    json!({
        "max_concurrency": max_concurrency,
        "queue_size": queue_size,
        "queue_timeout_ms": queue_timeout_ms,
        "timeout_ms": 30_000,
        "connect_timeout_ms": 1_000,
        "drain_timeout_ms": 30_000,
    })
}

/// An address nobody listens on.
pub fn closed_address() -> String {
    format!("127.0.0.1:{}", free_port())
}
