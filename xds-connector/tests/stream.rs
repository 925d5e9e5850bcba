//! The discovery stream, driven through the real binary: the shared client
//! (`sluice_common::xds::client`) and raw tonic streams for hand-crafted requests.

mod support;

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use sluice_common::xds::client::{self, ClientConfig, ConnectionState};
use sluice_common::xds::Snapshot;
use support::*;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn config(c: &Connector, node: &str) -> ClientConfig {
    ClientConfig {
        server: c.grpc(),
        node_id: node.into(),
        node_kind: "router".into(),
        token: None,
    }
}

/// Waits (event-driven, with a deadline) until the client's snapshot satisfies `pred`.
async fn wait_snapshot(
    rx: &mut watch::Receiver<Arc<Snapshot>>,
    what: &str,
    pred: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let s = rx.borrow_and_update().clone();
            if pred(&s) {
                return s;
            }
            rx.changed().await.expect("client task alive");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn version<'a>(s: &'a Snapshot, type_url: &str) -> &'a str {
    s.versions.get(type_url).map(String::as_str).unwrap_or("")
}

fn versions(s: &Snapshot) -> [&str; 4] {
    TYPES.map(|t| version(s, t))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_subscription_gets_every_type_with_versions_and_acks_are_recorded() {
    let redis = RedisServer::start();
    let c = Connector::start(&redis, "t-initial").await;
    c.put_function("hello", &[("c1", "127.0.0.1:9001")]).await;

    let stop = CancellationToken::new();
    let mut rx = client::spawn(
        config(&c, "router-initial"),
        client::validate_basic,
        stop.clone(),
    );
    let s = wait_snapshot(&mut rx, "every type", |s| s.versions.len() == 4).await;

    assert_eq!(versions(&s), ["1", "1", "1", "1"]);
    assert_eq!(s.clusters["hello"].max_concurrency, 4);
    assert_eq!(s.endpoints["hello"].endpoints[0].address, "127.0.0.1:9001");
    assert_eq!(s.endpoints["hello"].endpoints[0].replica, "hello-c1");
    assert_eq!(
        s.cluster_for("hello").map(|c| c.name.as_str()),
        Some("hello")
    );
    assert_eq!(s.listeners["router"].route_config_name, "default");
    assert_eq!(s.listeners["router"].address, "0.0.0.0:10000");

    let entry = c.wait_all_acked("router-initial").await;
    assert_eq!(entry["kind"], "router");
    assert!(entry["connected_unix_ms"].as_u64().unwrap_or(0) > 0);
    for t in TYPES {
        assert_eq!(entry["types"][t]["acked_version"], "1", "{t}");
        assert!(entry["types"][t]["last_nack"].is_null(), "{t}");
        assert!(entry["types"][t]["sent_nonce"].is_string(), "{t}");
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_function_is_pushed_to_a_subscribed_client() {
    let redis = RedisServer::start();
    let c = Connector::start(&redis, "t-push").await;
    let stop = CancellationToken::new();
    let mut rx = client::spawn(
        config(&c, "router-push"),
        client::validate_basic,
        stop.clone(),
    );
    wait_snapshot(&mut rx, "the empty snapshot", |s| s.versions.len() == 4).await;
    c.wait_all_acked("router-push").await;

    let mut latencies = Vec::new();
    for i in 0..20 {
        let name = format!("fn-{i}");
        let start = Instant::now();
        c.put_function(&name, &[("c1", "127.0.0.1:9001")]).await;
        wait_snapshot(&mut rx, &name, |s| {
            s.cluster_for(&name).is_some() && s.healthy_endpoints(&name).count() == 1
        })
        .await;
        latencies.push(start.elapsed());
    }
    latencies.sort();
    println!(
        "PUT /v1/functions → routable in the client: min {:?}, median {:?}, max {:?} (20 pushes)",
        latencies[0], latencies[10], latencies[19]
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_increase_only_for_types_that_changed() {
    let redis = RedisServer::start();
    let c = Connector::start(&redis, "t-versions").await;
    let stop = CancellationToken::new();
    let mut rx = client::spawn(config(&c, "router-v"), client::validate_basic, stop.clone());
    let s = wait_snapshot(&mut rx, "the empty snapshot", |s| s.versions.len() == 4).await;
    assert_eq!(versions(&s), ["0", "0", "0", "0"]);

    c.put_function("hello", &[("c1", "127.0.0.1:9001")]).await;
    let s = wait_snapshot(&mut rx, "hello", |s| versions(s) == ["1", "1", "1", "1"]).await;
    assert!(s.clusters.contains_key("hello"));

    // One more endpoint: only endpoints move.
    let r = c
        .ok(
            "PUT",
            "/v1/endpoints/hello/c2",
            Some(r#"{"address":"127.0.0.1:9002"}"#),
        )
        .await;
    assert_eq!(r["changed"], true);
    let s = wait_snapshot(&mut rx, "endpoints v2", |s| {
        version(s, ENDPOINTS_TYPE) == "2"
    })
    .await;
    assert_eq!(versions(&s), ["1", "2", "1", "1"]);
    assert_eq!(s.endpoints["hello"].endpoints.len(), 2);

    // Draining an endpoint is an endpoints change too.
    c.ok(
        "POST",
        "/v1/endpoints/hello/c1/health",
        Some(r#"{"health":"draining"}"#),
    )
    .await;
    let s = wait_snapshot(&mut rx, "endpoints v3", |s| {
        version(s, ENDPOINTS_TYPE) == "3"
    })
    .await;
    assert_eq!(versions(&s), ["1", "3", "1", "1"]);
    let healthy: Vec<&str> = s
        .healthy_endpoints("hello")
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(healthy, ["c2"]);

    // Writing what is already there changes nothing.
    let cluster = c.ok("GET", "/v1/clusters/hello", None).await;
    let r = c
        .ok("PUT", "/v1/clusters/hello", Some(&cluster.to_string()))
        .await;
    assert_eq!(r["changed"], false);
    assert_eq!(r["versions"][CLUSTER_TYPE], "1");

    // A cluster change moves clusters only.
    let mut changed = cluster.clone();
    changed["max_concurrency"] = json!(9);
    let r = c
        .ok("PUT", "/v1/clusters/hello", Some(&changed.to_string()))
        .await;
    assert_eq!(r["changed"], true);
    let s = wait_snapshot(&mut rx, "clusters v2", |s| version(s, CLUSTER_TYPE) == "2").await;
    assert_eq!(versions(&s), ["2", "3", "1", "1"]);
    assert_eq!(s.clusters["hello"].max_concurrency, 9);

    let snap = c.ok("GET", "/v1/snapshot", None).await;
    assert_eq!(snap["versions"][CLUSTER_TYPE], "2");
    assert_eq!(snap["versions"][ENDPOINTS_TYPE], "3");
    assert_eq!(snap["versions"][ROUTES_TYPE], "1");
    assert_eq!(snap["versions"][LISTENER_TYPE], "1");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_is_recorded_and_the_client_keeps_its_last_good_snapshot() {
    let redis = RedisServer::start();
    let c = Connector::start(&redis, "t-nack").await;
    c.put_function("hello", &[("c1", "127.0.0.1:9001")]).await;
    let stop = CancellationToken::new();
    let sub = client::spawn_with_state(
        config(&c, "router-nack"),
        client::validate_basic,
        stop.clone(),
    );
    let mut rx = sub.snapshot.clone();
    let good = wait_snapshot(&mut rx, "hello", |s| versions(s) == ["1", "1", "1", "1"]).await;
    c.wait_all_acked("router-nack").await;

    // The REST layer accepts the shape; the client's validation rejects the address.
    c.ok(
        "PUT",
        "/v1/endpoints/hello/bad",
        Some(r#"{"address":"not-an-address"}"#),
    )
    .await;
    let entry = support_wait(&c, "the NACK in /v1/clients", |e| {
        !e["types"][ENDPOINTS_TYPE]["last_nack"].is_null()
    })
    .await;
    let t = &entry["types"][ENDPOINTS_TYPE];
    let nack = &t["last_nack"];
    assert!(
        nack["error"]
            .as_str()
            .unwrap_or("")
            .contains("address `not-an-address` is not ip:port"),
        "{nack}"
    );
    assert_eq!(nack["version"], "1", "the client still runs version 1");
    assert_eq!(
        nack["nonce"], t["sent_nonce"],
        "the NACK is for the latest response"
    );
    assert_eq!(t["sent_version"], "2");
    assert_eq!(t["acked_version"], "1");

    // The client kept its last good snapshot and says why.
    assert_eq!(**rx.borrow(), *good);
    let state: ConnectionState = sub.state.borrow().clone();
    let last = state.last_nack.expect("the client reports its NACK");
    assert_eq!(last.type_url, ENDPOINTS_TYPE);
    assert_eq!(last.version, "2");
    assert!(state.connected);

    // Fixing the config: the next push is accepted and the NACK is cleared.
    c.ok("DELETE", "/v1/endpoints/hello/bad", None).await;
    let s = wait_snapshot(&mut rx, "endpoints v3", |s| {
        version(s, ENDPOINTS_TYPE) == "3"
    })
    .await;
    assert_eq!(s.endpoints, good.endpoints);
    let entry = support_wait(&c, "the ACK of v3", |e| {
        e["types"][ENDPOINTS_TYPE]["acked_version"] == "3"
    })
    .await;
    assert!(entry["types"][ENDPOINTS_TYPE]["last_nack"].is_null());
    let stats = c.ok("GET", "/v1/stats", None).await;
    assert_eq!(stats["nacks"], 1);
    stop.cancel();
}

/// Polls `/v1/clients` until the (single) client entry satisfies `pred`.
async fn support_wait(
    c: &Connector,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    sluice_common::testing::wait_for(what, DEADLINE, || async {
        let clients = c.ok("GET", "/v1/clients", None).await;
        clients
            .as_array()
            .and_then(|a| a.first())
            .filter(|e| pred(e))
            .cloned()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_nonce_is_ignored() {
    let redis = RedisServer::start();
    let c = Connector::start(&redis, "t-stale").await;
    let mut s = RawStream::connect(&c.grpc(), "raw-stale").await;
    s.subscribe(CLUSTER_TYPE);
    let first = s.recv_ack().await;
    assert_eq!(first.version_info, "0");
    assert!(first.resources.is_empty());
    // The ACK of v0 must be in before v1 is pushed: read after v1, it quotes an older nonce
    // and is itself counted as stale (CI saw 2 stale requests where the test sends 1).
    support_wait(&c, "the ACK of v0", |e| {
        e["types"][CLUSTER_TYPE]["acked_version"] == "0"
    })
    .await;

    c.put_function("hello", &[("c1", "127.0.0.1:9001")]).await;
    let second = s.recv_ack().await;
    assert_eq!(second.type_url, CLUSTER_TYPE);
    assert_eq!(second.version_info, "1");
    assert_eq!(names(&second), ["hello"]);
    let before = support_wait(&c, "the ACK of v1", |e| {
        e["types"][CLUSTER_TYPE]["acked_version"] == "1"
    })
    .await;

    // A NACK quoting the first (no longer latest) nonce, then a fresh subscription whose
    // answer proves the server has processed the stale request.
    s.nack(&first, "0", "complaint about an old response");
    s.subscribe(ROUTES_TYPE);
    let next = s.recv().await;
    assert_eq!(
        short(&next.type_url),
        "routes",
        "the stale request got no response of its own"
    );
    let after = c.client("raw-stale").await.expect("still connected");
    assert_eq!(after["types"][CLUSTER_TYPE], before["types"][CLUSTER_TYPE]);
    assert!(after["types"][CLUSTER_TYPE]["last_nack"].is_null());
    let stats = c.ok("GET", "/v1/stats", None).await;
    assert_eq!(stats["stale_requests"], 1);
    assert_eq!(stats["nacks"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_of_the_world_a_removed_function_disappears() {
    let redis = RedisServer::start();
    let c = Connector::start(&redis, "t-sotw").await;
    c.put_function("alpha", &[("a1", "127.0.0.1:9001")]).await;
    c.put_function("beta", &[("b1", "127.0.0.1:9002")]).await;

    let mut s = RawStream::connect(&c.grpc(), "raw-sotw").await;
    for t in TYPES {
        s.subscribe(t);
    }
    for t in TYPES {
        let r = s.recv_ack().await;
        assert_eq!(r.type_url, t);
    }

    c.ok("DELETE", "/v1/functions/alpha", None).await;
    // Route first, then its endpoints, then its cluster; each response is the whole type.
    let r = s.recv_ack().await;
    assert_eq!(short(&r.type_url), "routes");
    assert_eq!(routed(&r), ["beta"]);
    let r = s.recv_ack().await;
    assert_eq!(short(&r.type_url), "endpoints");
    assert_eq!(names(&r), ["beta"]);
    let r = s.recv_ack().await;
    assert_eq!(short(&r.type_url), "clusters");
    assert_eq!(names(&r), ["beta"]);
    assert_eq!(r.version_info, "3");

    let (status, body) = c.call("GET", "/v1/functions/alpha", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["function"], "alpha");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_function_pushes_additions_before_removals() {
    let redis = RedisServer::start();
    let c = Connector::start(&redis, "t-order").await;
    c.put_function("fa", &[("a1", "127.0.0.1:9001")]).await;

    let mut s = RawStream::connect(&c.grpc(), "raw-order").await;
    for t in TYPES {
        s.subscribe(t);
    }
    for t in TYPES {
        assert_eq!(s.recv_ack().await.type_url, t);
    }

    // One atomic change replacing function fa by function fb.
    let snap = json!({
        "clusters": [{"name": "fb", "max_concurrency": 2}],
        "endpoints": [{"cluster_name": "fb", "endpoints": [{"id": "b1", "address": "127.0.0.1:9002"}]}],
        "routes": [{"name": "default", "routes": [{"function": "fb", "cluster": "fb"}]}],
        "listeners": [{"name": "router", "address": "0.0.0.0:10000", "route_config_name": "default"}],
    });
    let r = c.ok("PUT", "/v1/snapshot", Some(&snap.to_string())).await;
    assert_eq!(r["changed"], true);

    let mut got = Vec::new();
    for _ in 0..5 {
        let r = s.recv_ack().await;
        let content = if r.type_url == ROUTES_TYPE {
            routed(&r)
        } else {
            names(&r)
        };
        got.push((short(&r.type_url), content, r.version_info.clone()));
    }
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            ("clusters", v(&["fa", "fb"]), "2".to_string()),
            ("endpoints", v(&["fa", "fb"]), "2".to_string()),
            ("routes", v(&["fb"]), "2".to_string()),
            ("endpoints", v(&["fb"]), "2".to_string()),
            ("clusters", v(&["fb"]), "2".to_string()),
        ],
        "clusters(A∪B), endpoints(A∪B), routes(B), then endpoints(B), clusters(B)"
    );

    // The listener did not change and was not re-sent: the next message is the answer to a
    // fresh subscription.
    s.subscribe(LISTENER_TYPE);
    let r = s.recv().await;
    assert_eq!(short(&r.type_url), "listeners");
    assert_eq!(r.version_info, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_stream_requests_are_refused_with_a_clear_status() {
    let redis = RedisServer::start();
    let c = Connector::start(&redis, "t-malformed").await;

    let mut s = RawStream::connect(&c.grpc(), "raw-bad").await;
    s.send(sluice_common::xds::pb::DiscoveryRequest {
        type_url: CLUSTER_TYPE.into(),
        ..Default::default()
    });
    let status = s.next().await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("node.id"), "{}", status.message());

    let mut s = RawStream::connect(&c.grpc(), "raw-bad-2").await;
    s.subscribe("type.example/Nope");
    let status = s.next().await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("unknown type_url `type.example/Nope`"),
        "{}",
        status.message()
    );

    // The server is unharmed.
    let mut s = RawStream::connect(&c.grpc(), "raw-good").await;
    s.subscribe(CLUSTER_TYPE);
    assert_eq!(s.recv().await.version_info, "0");
    let stats = c.ok("GET", "/v1/stats", None).await;
    assert_eq!(stats["malformed_grpc_requests"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_cannot_connect_reports_it_and_keeps_trying() {
    let stop = CancellationToken::new();
    let port = sluice_common::testing::free_port();
    let sub = client::spawn_with_state(
        ClientConfig {
            server: format!("http://127.0.0.1:{port}"),
            node_id: "router-alone".into(),
            node_kind: "router".into(),
            token: None,
        },
        client::validate_basic,
        stop.clone(),
    );
    let mut state = sub.state.clone();
    let st = tokio::time::timeout(DEADLINE, state.wait_for(|s| s.last_error.is_some()))
        .await
        .expect("an error is reported")
        .expect("client alive")
        .clone();
    assert!(!st.connected);
    assert!(st.last_error.unwrap_or_default().contains("cannot connect"));
    assert_eq!(**sub.snapshot.borrow(), Snapshot::default());

    // A server showing up later is found by the retries.
    let redis = RedisServer::start();
    let c = Connector::start_on(
        &redis.url(),
        "t-late",
        port,
        sluice_common::testing::free_port(),
    )
    .await;
    c.put_function("late", &[("l1", "127.0.0.1:9009")]).await;
    let mut rx = sub.snapshot.clone();
    wait_snapshot(&mut rx, "late", |s| s.clusters.contains_key("late")).await;
    assert!(sub.state.borrow().connected);
    stop.cancel();
}
