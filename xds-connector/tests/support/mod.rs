//! Test harness: the real `xds-connector` binary on free ports with its own instance name and
//! a real redis-server, a REST helper, and a raw gRPC stream for crafting requests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::Value;
use sluice_common::testing::{free_port, wait_for};
use sluice_common::xds::pb;
use sluice_common::xds::pb::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

pub use sluice_common::testing::RedisServer;
pub use sluice_common::xds::{CLUSTER_TYPE, ENDPOINTS_TYPE, LISTENER_TYPE, ROUTES_TYPE, TYPES};

/// Generous deadline for anything that should happen "soon".
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A running connector process (SIGKILLed on drop).
pub struct Connector {
    child: Option<Child>,
    pub grpc_port: u16,
    pub rest_port: u16,
    pub instance: String,
    pub redis_url: String,
    pub log: PathBuf,
    http: reqwest::Client,
}

impl Connector {
    /// Starts a connector on free ports and waits until `/healthz` answers.
    pub async fn start(redis: &RedisServer, instance: &str) -> Connector {
        Connector::start_on(&redis.url(), instance, free_port(), free_port()).await
    }

    /// Starts a connector on the given ports (to restart one where it was).
    pub async fn start_on(
        redis_url: &str,
        instance: &str,
        grpc_port: u16,
        rest_port: u16,
    ) -> Connector {
        Connector::spawn(redis_url, instance, grpc_port, rest_port, None).await
    }

    /// Starts a connector that requires the token in `token_file` (which holds `token`); this
    /// harness's own REST calls send it.
    pub async fn start_with_token(
        redis: &RedisServer,
        instance: &str,
        token_file: &std::path::Path,
        token: &str,
    ) -> Connector {
        Connector::spawn(
            &redis.url(),
            instance,
            free_port(),
            free_port(),
            Some((token_file, token)),
        )
        .await
    }

    async fn spawn(
        redis_url: &str,
        instance: &str,
        grpc_port: u16,
        rest_port: u16,
        token: Option<(&std::path::Path, &str)>,
    ) -> Connector {
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{instance}.log"));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the connector log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xds-connector"));
        let mut headers = reqwest::header::HeaderMap::new();
        match token {
            Some((file, t)) => {
                cmd.env("SLUICE_XDS_TOKEN_FILE", file);
                headers.insert(
                    reqwest::header::AUTHORIZATION,
                    sluice_common::xds::bearer(t).parse().expect("header"),
                );
            }
            None => {
                cmd.env_remove("SLUICE_XDS_TOKEN_FILE");
            }
        }
        let child = cmd
            .env("SLUICE_GRPC_LISTEN", format!("127.0.0.1:{grpc_port}"))
            .env("SLUICE_REST_LISTEN", format!("127.0.0.1:{rest_port}"))
            .env("SLUICE_REDIS_URL", redis_url)
            .env("SLUICE_INSTANCE", instance)
            .env("SLUICE_LOG", "info,xds_connector=debug")
            .env_remove("SLUICE_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn xds-connector");
        let mut c = Connector {
            child: Some(child),
            grpc_port,
            rest_port,
            instance: instance.to_string(),
            redis_url: redis_url.to_string(),
            log,
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .expect("client"),
        };
        c.wait_ready().await;
        c
    }

    async fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "xds-connector exited early ({status}); log:\n{}",
                    self.log_text()
                );
            }
            if let Ok(r) = self
                .http
                .get(format!("{}/healthz", self.rest()))
                .send()
                .await
            {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                start.elapsed() < DEADLINE,
                "xds-connector not ready after {DEADLINE:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn rest(&self) -> String {
        format!("http://127.0.0.1:{}", self.rest_port)
    }

    pub fn grpc(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// Sends SIGTERM and waits (with a deadline) for the exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("connector running");
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -TERM failed");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if start.elapsed() > DEADLINE {
                let _ = child.kill();
                panic!(
                    "xds-connector did not exit within {DEADLINE:?} of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `method path [body]` → (status, JSON body).
    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.rest()));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("REST call");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("REST body");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("non-JSON answer to {path} ({status}): {e}: {text}"));
        (status, json)
    }

    /// A call that must succeed (2xx); returns its JSON.
    pub async fn ok(&self, method: &str, path: &str, body: Option<&str>) -> Value {
        let (status, json) = self.call(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} → {status}: {json}"
        );
        json
    }

    pub async fn put_function(&self, name: &str, endpoints: &[(&str, &str)]) -> Value {
        let eps: Vec<Value> = endpoints
            .iter()
            .map(|(id, addr)| serde_json::json!({"id": id, "address": addr, "replica": format!("{name}-{id}")}))
            .collect();
        let body = serde_json::json!({
            "cluster": {"max_concurrency": 4, "queue_size": 10, "queue_timeout_ms": 1000,
                        "cold_start_timeout_ms": 5000, "max_body_bytes": 1048576,
                        "timeout_ms": 30000, "connect_timeout_ms": 1000, "drain_timeout_ms": 10000},
            "endpoints": eps,
        });
        self.ok(
            "PUT",
            &format!("/v1/functions/{name}"),
            Some(&body.to_string()),
        )
        .await
    }

    /// The entry of `/v1/clients` for `node`, if connected.
    pub async fn client(&self, node: &str) -> Option<Value> {
        let clients = self.ok("GET", "/v1/clients", None).await;
        clients
            .as_array()
            .expect("clients is an array")
            .iter()
            .find(|c| c["node_id"] == node)
            .cloned()
    }

    /// Waits until `/v1/clients` shows `node` having ACKed the latest response of every type.
    pub async fn wait_all_acked(&self, node: &str) -> Value {
        wait_for(&format!("{node} to ACK every type"), DEADLINE, || async {
            let c = self.client(node).await?;
            let all = TYPES.iter().all(|t| {
                let s = &c["types"][*t];
                !s["sent_version"].is_null() && s["acked_version"] == s["sent_version"]
            });
            all.then_some(c)
        })
        .await
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A hand-driven discovery stream.
pub struct RawStream {
    tx: mpsc::UnboundedSender<pb::DiscoveryRequest>,
    rx: tonic::Streaming<pb::DiscoveryResponse>,
    pub node: String,
}

impl RawStream {
    pub async fn connect(grpc: &str, node: &str) -> RawStream {
        let mut client = AggregatedDiscoveryServiceClient::connect(grpc.to_string())
            .await
            .expect("connect to the gRPC port");
        let (tx, out) = mpsc::unbounded_channel();
        let rx = client
            .stream_aggregated_resources(UnboundedReceiverStream::new(out))
            .await
            .expect("open the stream")
            .into_inner();
        RawStream {
            tx,
            rx,
            node: node.to_string(),
        }
    }

    pub fn send(&self, req: pb::DiscoveryRequest) {
        self.tx.send(req).expect("stream open");
    }

    pub fn node_msg(&self) -> pb::Node {
        pb::Node {
            id: self.node.clone(),
            cluster: "router".into(),
            metadata: Default::default(),
        }
    }

    /// Subscribes to `type_url` (empty version and nonce).
    pub fn subscribe(&self, type_url: &str) {
        self.send(pb::DiscoveryRequest {
            node: Some(self.node_msg()),
            type_url: type_url.into(),
            ..Default::default()
        });
    }

    pub fn ack(&self, r: &pb::DiscoveryResponse) {
        self.send(pb::DiscoveryRequest {
            type_url: r.type_url.clone(),
            version_info: r.version_info.clone(),
            response_nonce: r.nonce.clone(),
            ..Default::default()
        });
    }

    pub fn nack(&self, r: &pb::DiscoveryResponse, kept_version: &str, error: &str) {
        self.send(pb::DiscoveryRequest {
            type_url: r.type_url.clone(),
            version_info: kept_version.into(),
            response_nonce: r.nonce.clone(),
            error_detail: Some(pb::Status {
                code: 3,
                message: error.into(),
            }),
            ..Default::default()
        });
    }

    /// The next message or end of stream, within the deadline.
    pub async fn next(&mut self) -> Result<Option<pb::DiscoveryResponse>, tonic::Status> {
        tokio::time::timeout(DEADLINE, self.rx.message())
            .await
            .expect("no message from the server within the deadline")
    }

    /// The next response (panics on end of stream or error).
    pub async fn recv(&mut self) -> pb::DiscoveryResponse {
        match self.next().await {
            Ok(Some(r)) => r,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// Receives one response and ACKs it.
    pub async fn recv_ack(&mut self) -> pb::DiscoveryResponse {
        let r = self.recv().await;
        self.ack(&r);
        r
    }
}

/// Resource names of a response, in order.
pub fn names(r: &pb::DiscoveryResponse) -> Vec<String> {
    r.resources.iter().map(|x| x.name.clone()).collect()
}

/// The functions routed by the `default` route configuration of a routes response.
pub fn routed(r: &pb::DiscoveryResponse) -> Vec<String> {
    r.resources
        .iter()
        .filter(|x| x.name == "default")
        .flat_map(|x| {
            pb::RouteConfiguration::decode(x.value.as_slice())
                .expect("route configuration decodes")
                .routes
        })
        .map(|rt| rt.function)
        .collect()
}

/// Short name of a type URL for readable assertions.
pub fn short(type_url: &str) -> &'static str {
    match type_url {
        CLUSTER_TYPE => "clusters",
        ENDPOINTS_TYPE => "endpoints",
        ROUTES_TYPE => "routes",
        LISTENER_TYPE => "listeners",
        _ => "unknown",
    }
}
