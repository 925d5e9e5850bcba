//! The data-plane side of the discovery stream, shared by the router and the gateway.
//!
//! [`spawn`] starts one task that keeps a stream open to the control plane (xds-connector),
//! subscribes to every type in [`TYPES`], and turns each response into a candidate
//! [`Snapshot`] (the previous accepted snapshot with that one type replaced). The candidate is
//! checked by the caller's validator; an accepted candidate is ACKed and published on the
//! returned `watch`, a rejected one is NACKed and the last good snapshot stays in effect.
//!
//! Invariants:
//! * The published snapshot only ever holds accepted content; it survives disconnects, so a
//!   data plane keeps serving its last good configuration while the control plane is down.
//! * Responses are applied strictly in the order they arrive, which is what lets the server's
//!   push order (additions before removals) keep every intermediate snapshot consistent.
//! * Nothing received from the network can make the task panic: undecodable resources,
//!   duplicate names and unknown types are NACKed with a message saying what was wrong.
//! * After a disconnect the task reconnects with jittered exponential backoff (100 ms doubling
//!   to 5 s, reset once a connection delivered a response) and resubscribes with the versions
//!   it last accepted.
//!
//! Besides the snapshot, [`spawn_with_state`] also returns a `watch` of the
//! [`ConnectionState`] (connected or not, last error, last NACK), for admin endpoints.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;

use super::pb;
use super::pb::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use super::{Snapshot, CLUSTER_TYPE, ENDPOINTS_TYPE, LISTENER_TYPE, ROUTES_TYPE, TYPES};

/// First reconnect delay.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest response accepted from the control plane.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Upper bound accepted for concurrency caps (cluster and endpoint).
pub const MAX_CONCURRENCY: u32 = 100_000;
/// Upper bound accepted for `queue_size`.
pub const MAX_QUEUE_SIZE: u32 = 1_000_000;
/// Upper bound accepted for every `*_ms` duration of a cluster (24 h).
pub const MAX_DURATION_MS: u64 = 24 * 60 * 60 * 1000;
/// Upper bound accepted for `max_body_bytes` (16 GiB).
pub const MAX_BODY_BYTES: u64 = 16 << 30;

/// Where and who the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The control plane's gRPC address, e.g. `http://127.0.0.1:18000`.
    pub server: String,
    /// Unique per client instance, e.g. `router-1`; shown by the server's `/v1/clients`.
    pub node_id: String,
    /// `"router"` or `"gateway"`.
    pub node_kind: String,
    /// The connector's token ([`super::ENV_TOKEN_FILE`]), sent as `authorization` metadata.
    pub token: Option<String>,
}

/// The client's view of its connection to the control plane.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionState {
    /// The configured server address.
    pub server: String,
    /// True while a stream to the server is open.
    pub connected: bool,
    /// When `connected` last changed (Unix ms); 0 before the first attempt finished.
    pub since_unix_ms: u64,
    /// Streams opened so far (1 after the first successful connection).
    pub connects: u64,
    /// Why the last connection attempt or stream failed, if one did.
    pub last_error: Option<String>,
    /// The last response this client rejected; cleared once a later response of the same
    /// type is accepted.
    pub last_nack: Option<NackInfo>,
}

/// A response the client rejected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NackInfo {
    pub type_url: String,
    /// The version that was rejected.
    pub version: String,
    pub error: String,
}

/// The receiving ends returned by [`spawn_with_state`].
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The last accepted snapshot (empty until the first response is accepted).
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// The connection state, updated on connect, disconnect and NACK.
    pub state: watch::Receiver<ConnectionState>,
}

/// Spawns the client task: connects, subscribes to every type in [`TYPES`], decodes each
/// response, builds the candidate snapshot (that type replaced), runs `validate` on it, then
/// ACKs and publishes, or NACKs (keeping the last good snapshot). Reconnects with backoff
/// (100 ms doubling to 5 s, jittered) and resubscribes sending its last accepted versions.
/// Never panics on anything received. The task ends when `stop` is cancelled.
///
/// Must be called from within a Tokio runtime.
pub fn spawn(
    cfg: ClientConfig,
    validate: impl Fn(&Snapshot) -> Result<(), String> + Send + Sync + 'static,
    stop: CancellationToken,
) -> watch::Receiver<Arc<Snapshot>> {
    spawn_with_state(cfg, validate, stop).snapshot
}

/// Like [`spawn`], and also returns a `watch` of the [`ConnectionState`] (for admin ports).
pub fn spawn_with_state(
    cfg: ClientConfig,
    validate: impl Fn(&Snapshot) -> Result<(), String> + Send + Sync + 'static,
    stop: CancellationToken,
) -> Subscription {
    let (snap_tx, snap_rx) = watch::channel(Arc::new(Snapshot::default()));
    let (state_tx, state_rx) = watch::channel(ConnectionState {
        server: cfg.server.clone(),
        ..ConnectionState::default()
    });
    let task = Task {
        cfg,
        validate: Box::new(validate),
        snap_tx,
        state_tx,
    };
    tokio::spawn(task.run(stop));
    Subscription {
        snapshot: snap_rx,
        state: state_rx,
    }
}

type Validator = Box<dyn Fn(&Snapshot) -> Result<(), String> + Send + Sync>;

struct Task {
    cfg: ClientConfig,
    validate: Validator,
    snap_tx: watch::Sender<Arc<Snapshot>>,
    state_tx: watch::Sender<ConnectionState>,
}

/// How a stream ended.
struct SessionEnd {
    error: String,
    /// At least one response arrived (the server was really serving us).
    received: bool,
}

impl Task {
    async fn run(self, stop: CancellationToken) {
        let mut backoff = Backoff::default();
        loop {
            let end = tokio::select! {
                _ = stop.cancelled() => break,
                end = self.session() => end,
            };
            if end.received {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            tracing::warn!(
                server = %self.cfg.server,
                node = %self.cfg.node_id,
                error = %end.error,
                retry_in_ms = delay.as_millis() as u64,
                "xDS stream down, keeping the last good snapshot"
            );
            self.state_tx.send_modify(|s| {
                if s.connected || s.since_unix_ms == 0 {
                    s.since_unix_ms = now_unix_ms();
                }
                s.connected = false;
                s.last_error = Some(end.error);
            });
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        self.state_tx.send_modify(|s| {
            if s.connected {
                s.connected = false;
                s.since_unix_ms = now_unix_ms();
            }
        });
        tracing::info!(node = %self.cfg.node_id, "xDS client stopped");
    }

    /// One connection: subscribe, then handle responses until the stream ends.
    async fn session(&self) -> SessionEnd {
        let fail = |error: String| SessionEnd {
            error,
            received: false,
        };
        let endpoint = match tonic::transport::Endpoint::from_shared(self.cfg.server.clone()) {
            Ok(e) => e
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5))
                .keep_alive_while_idle(true),
            Err(e) => return fail(format!("invalid server address `{}`: {e}", self.cfg.server)),
        };
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => return fail(format!("cannot connect: {}", error_chain(&e))),
        };
        let mut client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES);

        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let accepted = self.snap_tx.borrow().clone();
        for type_url in TYPES {
            let req = pb::DiscoveryRequest {
                node: Some(self.node()),
                type_url: type_url.to_string(),
                version_info: accepted.versions.get(type_url).cloned().unwrap_or_default(),
                ..Default::default()
            };
            // The receiver is alive: it is right here.
            let _ = out_tx.send(req);
        }
        let mut request = tonic::Request::new(UnboundedReceiverStream::new(out_rx));
        if let Some(t) = &self.cfg.token {
            match super::bearer(t).parse() {
                Ok(v) => {
                    request.metadata_mut().insert("authorization", v);
                }
                Err(_) => return fail("the xDS token is not a valid header value".into()),
            }
        }
        let mut inbound = match client.stream_aggregated_resources(request).await {
            Ok(r) => r.into_inner(),
            Err(status) => return fail(format!("stream refused: {status}")),
        };
        self.state_tx.send_modify(|s| {
            s.connected = true;
            s.connects += 1;
            s.since_unix_ms = now_unix_ms();
        });
        tracing::info!(server = %self.cfg.server, node = %self.cfg.node_id, "xDS stream open");

        let mut received = false;
        loop {
            let error = match inbound.message().await {
                Ok(Some(resp)) => {
                    received = true;
                    let reply = self.on_response(resp);
                    if out_tx.send(reply).is_ok() {
                        continue;
                    }
                    "request stream closed".to_string()
                }
                Ok(None) => "server closed the stream".to_string(),
                Err(status) => format!("stream failed: {status}"),
            };
            return SessionEnd { error, received };
        }
    }

    fn node(&self) -> pb::Node {
        pb::Node {
            id: self.cfg.node_id.clone(),
            cluster: self.cfg.node_kind.clone(),
            metadata: Default::default(),
        }
    }

    /// Applies one response and returns the ACK or NACK to send back.
    fn on_response(&self, resp: pb::DiscoveryResponse) -> pb::DiscoveryRequest {
        let current = self.snap_tx.borrow().clone();
        let verdict = candidate(&current, &resp).and_then(|c| (self.validate)(&c).map(|()| c));
        match verdict {
            Ok(next) => {
                tracing::debug!(
                    type_url = %resp.type_url,
                    version = %resp.version_info,
                    resources = resp.resources.len(),
                    "xDS response accepted"
                );
                self.snap_tx.send_if_modified(|cur| {
                    if **cur == next {
                        false
                    } else {
                        *cur = Arc::new(next);
                        true
                    }
                });
                self.state_tx.send_if_modified(|s| {
                    let clear = s
                        .last_nack
                        .as_ref()
                        .is_some_and(|n| n.type_url == resp.type_url);
                    if clear {
                        s.last_nack = None;
                    }
                    clear
                });
                pb::DiscoveryRequest {
                    type_url: resp.type_url,
                    version_info: resp.version_info,
                    response_nonce: resp.nonce,
                    ..Default::default()
                }
            }
            Err(error) => {
                tracing::warn!(
                    type_url = %resp.type_url,
                    version = %resp.version_info,
                    error = %error,
                    "xDS response rejected (NACK), keeping the last good snapshot"
                );
                self.state_tx.send_modify(|s| {
                    s.last_nack = Some(NackInfo {
                        type_url: resp.type_url.clone(),
                        version: resp.version_info.clone(),
                        error: error.clone(),
                    });
                });
                pb::DiscoveryRequest {
                    version_info: current
                        .versions
                        .get(&resp.type_url)
                        .cloned()
                        .unwrap_or_default(),
                    type_url: resp.type_url,
                    response_nonce: resp.nonce,
                    error_detail: Some(pb::Status {
                        // google.rpc.Code INVALID_ARGUMENT
                        code: 3,
                        message: error,
                    }),
                    ..Default::default()
                }
            }
        }
    }
}

/// The snapshot `current` would become with `resp`'s type replaced by `resp`'s resources.
fn candidate(current: &Snapshot, resp: &pb::DiscoveryResponse) -> Result<Snapshot, String> {
    let mut next = current.clone();
    match resp.type_url.as_str() {
        CLUSTER_TYPE => next.clusters = decode_set(resp, |c: &pb::Cluster| &c.name)?,
        ENDPOINTS_TYPE => {
            next.endpoints = decode_set(resp, |c: &pb::ClusterLoadAssignment| &c.cluster_name)?
        }
        ROUTES_TYPE => next.routes = decode_set(resp, |r: &pb::RouteConfiguration| &r.name)?,
        LISTENER_TYPE => next.listeners = decode_set(resp, |l: &pb::Listener| &l.name)?,
        other => return Err(format!("unexpected type_url `{other}` (not subscribed)")),
    }
    next.versions
        .insert(resp.type_url.clone(), resp.version_info.clone());
    Ok(next)
}

/// Decodes every resource of a response, keyed by the name `key` reads from the message.
/// Rejects undecodable resources, empty names, a `Resource.name` that disagrees with the
/// message, and duplicate names.
fn decode_set<M: Message + Default>(
    resp: &pb::DiscoveryResponse,
    key: impl Fn(&M) -> &String,
) -> Result<BTreeMap<String, M>, String> {
    let mut out = BTreeMap::new();
    for r in &resp.resources {
        let msg = M::decode(r.value.as_slice())
            .map_err(|e| format!("resource `{}` cannot be decoded: {e}", r.name))?;
        let name = key(&msg).clone();
        if name.is_empty() {
            return Err(format!("resource `{}` has an empty name", r.name));
        }
        if !r.name.is_empty() && r.name != name {
            return Err(format!(
                "resource `{}` carries a message named `{name}`",
                r.name
            ));
        }
        if out.insert(name.clone(), msg).is_some() {
            return Err(format!("resource `{name}` appears twice"));
        }
    }
    Ok(out)
}

/// Validation every data-plane client wants: endpoint addresses parse as ip:port, weights > 0,
/// no duplicate endpoint ids within a cluster, routes point at existing clusters, cluster
/// numbers in range. Router and gateway call it (and may add their own checks).
///
/// Returns every problem found (up to 10), joined with `; `.
pub fn validate_basic(s: &Snapshot) -> Result<(), String> {
    let mut errs: Vec<String> = Vec::new();
    for (name, c) in &s.clusters {
        if c.max_concurrency > MAX_CONCURRENCY {
            errs.push(format!(
                "cluster `{name}`: max_concurrency {} is over {MAX_CONCURRENCY}",
                c.max_concurrency
            ));
        }
        if c.queue_size > MAX_QUEUE_SIZE {
            errs.push(format!(
                "cluster `{name}`: queue_size {} is over {MAX_QUEUE_SIZE}",
                c.queue_size
            ));
        }
        for (field, ms) in [
            ("queue_timeout_ms", c.queue_timeout_ms),
            ("cold_start_timeout_ms", c.cold_start_timeout_ms),
            ("timeout_ms", c.timeout_ms),
            ("connect_timeout_ms", c.connect_timeout_ms),
            ("drain_timeout_ms", c.drain_timeout_ms),
        ] {
            if ms > MAX_DURATION_MS {
                errs.push(format!(
                    "cluster `{name}`: {field} {ms} is over {MAX_DURATION_MS} (24 h)"
                ));
            }
        }
        if c.max_body_bytes > MAX_BODY_BYTES {
            errs.push(format!(
                "cluster `{name}`: max_body_bytes {} is over {MAX_BODY_BYTES}",
                c.max_body_bytes
            ));
        }
    }
    for (cluster, cla) in &s.endpoints {
        let mut ids = HashSet::new();
        for e in &cla.endpoints {
            let at = format!("cluster `{cluster}` endpoint `{}`", e.id);
            if e.id.is_empty() {
                errs.push(format!("cluster `{cluster}`: an endpoint has an empty id"));
            } else if !ids.insert(e.id.as_str()) {
                errs.push(format!("{at}: duplicate endpoint id"));
            }
            match e.address.parse::<SocketAddr>() {
                Ok(a) if a.port() == 0 => {
                    errs.push(format!("{at}: address `{}` has port 0", e.address))
                }
                Ok(_) => {}
                Err(_) => errs.push(format!("{at}: address `{}` is not ip:port", e.address)),
            }
            if e.weight == 0 {
                errs.push(format!("{at}: weight must be > 0"));
            }
            if e.max_concurrency > MAX_CONCURRENCY {
                errs.push(format!(
                    "{at}: max_concurrency {} is over {MAX_CONCURRENCY}",
                    e.max_concurrency
                ));
            }
            if pb::EndpointHealth::try_from(e.health).is_err() {
                errs.push(format!("{at}: unknown health value {}", e.health));
            }
        }
    }
    for (rc_name, rc) in &s.routes {
        for r in &rc.routes {
            if r.function.is_empty() {
                errs.push(format!(
                    "route configuration `{rc_name}`: a route has an empty function"
                ));
            }
            if !s.clusters.contains_key(&r.cluster) {
                errs.push(format!(
                    "route configuration `{rc_name}`: function `{}` points at unknown cluster `{}`",
                    r.function, r.cluster
                ));
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        let more = errs.len().saturating_sub(10);
        errs.truncate(10);
        let mut msg = errs.join("; ");
        if more > 0 {
            msg.push_str(&format!("; and {more} more"));
        }
        Err(msg)
    }
}

/// Jittered exponential backoff: 100 ms doubling to 5 s; each delay is drawn uniformly from
/// the upper half of the current step.
#[derive(Debug)]
struct Backoff {
    step: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            step: BACKOFF_START,
        }
    }
}

impl Backoff {
    fn reset(&mut self) {
        self.step = BACKOFF_START;
    }

    fn next_delay(&mut self) -> Duration {
        use rand::Rng;
        let step = self.step;
        self.step = (step * 2).min(BACKOFF_MAX);
        let ms = step.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `e` and its sources, `: `-separated (tonic's transport errors hide the cause otherwise).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(id: &str, address: &str) -> pb::Endpoint {
        pb::Endpoint {
            id: id.into(),
            address: address.into(),
            weight: 1,
            ..Default::default()
        }
    }

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::default();
        s.clusters.insert(
            "hello".into(),
            pb::Cluster {
                name: "hello".into(),
                max_concurrency: 4,
                timeout_ms: 30_000,
                ..Default::default()
            },
        );
        s.endpoints.insert(
            "hello".into(),
            pb::ClusterLoadAssignment {
                cluster_name: "hello".into(),
                endpoints: vec![endpoint("a", "10.0.0.1:8080"), endpoint("b", "[::1]:8080")],
            },
        );
        s.routes.insert(
            "default".into(),
            pb::RouteConfiguration {
                name: "default".into(),
                routes: vec![pb::Route {
                    function: "hello".into(),
                    cluster: "hello".into(),
                }],
            },
        );
        s
    }

    #[test]
    fn a_consistent_snapshot_passes() {
        assert_eq!(validate_basic(&snapshot()), Ok(()));
        assert_eq!(validate_basic(&Snapshot::default()), Ok(()));
    }

    #[test]
    fn each_basic_problem_is_named() {
        type Mutation = Box<dyn Fn(&mut Snapshot)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|s| {
                    s.endpoints.get_mut("hello").expect("cla").endpoints[0].address =
                        "not-an-address".into()
                }),
                "address `not-an-address` is not ip:port",
            ),
            (
                Box::new(|s| {
                    s.endpoints.get_mut("hello").expect("cla").endpoints[0].address =
                        "10.0.0.1:0".into()
                }),
                "has port 0",
            ),
            (
                Box::new(|s| s.endpoints.get_mut("hello").expect("cla").endpoints[1].weight = 0),
                "endpoint `b`: weight must be > 0",
            ),
            (
                Box::new(|s| {
                    s.endpoints.get_mut("hello").expect("cla").endpoints[1].id = "a".into()
                }),
                "endpoint `a`: duplicate endpoint id",
            ),
            (
                Box::new(|s| s.endpoints.get_mut("hello").expect("cla").endpoints[1].health = 9),
                "unknown health value 9",
            ),
            (
                Box::new(|s| {
                    s.clusters.remove("hello");
                }),
                "function `hello` points at unknown cluster `hello`",
            ),
            (
                Box::new(|s| {
                    s.clusters.get_mut("hello").expect("cluster").timeout_ms = MAX_DURATION_MS + 1
                }),
                "timeout_ms",
            ),
            (
                Box::new(|s| {
                    s.clusters
                        .get_mut("hello")
                        .expect("cluster")
                        .max_concurrency = MAX_CONCURRENCY + 1
                }),
                "max_concurrency",
            ),
        ];
        for (mutate, expected) in cases {
            let mut s = snapshot();
            mutate(&mut s);
            let err = validate_basic(&s).expect_err(expected);
            assert!(
                err.contains(expected),
                "`{err}` should mention `{expected}`"
            );
        }
    }

    fn response(
        type_url: &str,
        version: &str,
        resources: Vec<pb::Resource>,
    ) -> pb::DiscoveryResponse {
        pb::DiscoveryResponse {
            version_info: version.into(),
            resources,
            type_url: type_url.into(),
            nonce: "n1".into(),
        }
    }

    #[test]
    fn a_response_replaces_only_its_type() {
        let current = snapshot();
        let c = pb::Cluster {
            name: "other".into(),
            ..Default::default()
        };
        let resp = response(
            CLUSTER_TYPE,
            "7",
            vec![pb::Resource {
                name: "other".into(),
                value: c.encode_to_vec(),
            }],
        );
        let next = candidate(&current, &resp).expect("decodes");
        assert_eq!(next.clusters.keys().collect::<Vec<_>>(), vec!["other"]);
        assert_eq!(next.endpoints, current.endpoints);
        assert_eq!(next.routes, current.routes);
        assert_eq!(
            next.versions.get(CLUSTER_TYPE).map(String::as_str),
            Some("7")
        );
        // The route now points nowhere: the basic validation refuses it.
        assert!(validate_basic(&next).is_err());
    }

    #[test]
    fn garbage_responses_are_errors_not_panics() {
        let current = snapshot();
        let garbage = response(
            ENDPOINTS_TYPE,
            "1",
            vec![pb::Resource {
                name: "x".into(),
                value: vec![0xff, 0xff, 0xff, 0xff],
            }],
        );
        assert!(candidate(&current, &garbage)
            .expect_err("garbage")
            .contains("cannot be decoded"));
        let l = pb::Listener {
            name: "router".into(),
            ..Default::default()
        };
        let dup = response(
            LISTENER_TYPE,
            "1",
            vec![
                pb::Resource {
                    name: "router".into(),
                    value: l.encode_to_vec(),
                },
                pb::Resource {
                    name: String::new(),
                    value: l.encode_to_vec(),
                },
            ],
        );
        assert!(candidate(&current, &dup)
            .expect_err("dup")
            .contains("twice"));
        let unknown = response("type.example/Nope", "1", vec![]);
        assert!(candidate(&current, &unknown)
            .expect_err("unknown")
            .contains("unexpected type_url"));
    }

    #[test]
    fn backoff_doubles_to_five_seconds_with_jitter() {
        let mut b = Backoff::default();
        let mut last_step = Duration::ZERO;
        for _ in 0..12 {
            let step = b.step;
            let d = b.next_delay();
            assert!(d >= step / 2 && d <= step, "{d:?} within {step:?}");
            assert!(step >= last_step);
            last_step = step;
        }
        assert_eq!(b.step, BACKOFF_MAX);
        b.reset();
        assert_eq!(b.step, BACKOFF_START);
    }
}
