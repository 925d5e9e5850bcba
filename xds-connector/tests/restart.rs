//! Restarts and shutdown: the snapshot survives in Redis with its versions, clients keep their
//! last good snapshot while the connector is down, reconnect with backoff and resync.

mod support;

use std::sync::Arc;
use std::time::Instant;

use sluice_common::xds::client::{self, ClientConfig};
use sluice_common::xds::Snapshot;
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_connector_serves_the_same_snapshot_and_clients_resync() {
    let redis = RedisServer::start();
    let mut c = Connector::start(&redis, "t-restart").await;
    c.put_function("hello", &[("c1", "127.0.0.1:9001")]).await;
    c.put_function("world", &[("w1", "127.0.0.1:9002")]).await;
    c.ok(
        "POST",
        "/v1/endpoints/world/w1/health",
        Some(r#"{"health":"draining"}"#),
    )
    .await;

    let stop = CancellationToken::new();
    let sub = client::spawn_with_state(
        ClientConfig {
            server: c.grpc(),
            node_id: "router-restart".into(),
            node_kind: "router".into(),
            token: None,
        },
        client::validate_basic,
        stop.clone(),
    );
    let mut rx = sub.snapshot.clone();
    // Synced = every type received (they arrive one response at a time, clusters first).
    let synced: Arc<Snapshot> = tokio::time::timeout(
        DEADLINE,
        rx.wait_for(|s| {
            s.versions.get(ENDPOINTS_TYPE).map(String::as_str) == Some("3")
                && sluice_common::xds::TYPES
                    .iter()
                    .all(|t| s.versions.contains_key(*t))
        }),
    )
    .await
    .expect("client synced")
    .expect("client alive")
    .clone();
    c.wait_all_acked("router-restart").await;
    let before = c.ok("GET", "/v1/snapshot", None).await;
    assert_eq!(before["versions"][CLUSTER_TYPE], "2");
    assert_eq!(before["versions"][ENDPOINTS_TYPE], "3");

    // A raw stream sees its stream end cleanly (status OK), not a reset.
    let mut raw = RawStream::connect(&c.grpc(), "raw-restart").await;
    raw.subscribe(CLUSTER_TYPE);
    raw.recv_ack().await;

    let status = c.terminate().await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    match raw.next().await {
        Ok(None) => {}
        other => panic!("expected a clean end of stream, got {other:?}"),
    }

    // While the connector is down the client keeps its last good snapshot.
    let mut state = sub.state.clone();
    let down = tokio::time::timeout(DEADLINE, state.wait_for(|s| !s.connected))
        .await
        .expect("disconnect noticed")
        .expect("client alive")
        .clone();
    assert_eq!(down.connects, 1);
    assert_eq!(
        down.last_error.as_deref(),
        Some("server closed the stream"),
        "the connector closed the stream cleanly"
    );
    assert_eq!(*sub.snapshot.borrow(), synced);

    // Same ports, same Redis, same instance.
    let down_at = Instant::now();
    let c = Connector::start_on(&redis.url(), "t-restart", c.grpc_port, c.rest_port).await;
    let after = c.ok("GET", "/v1/snapshot", None).await;
    assert_eq!(after, before, "same resources, same versions");

    let up = tokio::time::timeout(DEADLINE, state.wait_for(|s| s.connected && s.connects == 2))
        .await
        .expect("client reconnected")
        .expect("client alive")
        .clone();
    println!(
        "client reconnected {:?} after the connector came back",
        down_at.elapsed()
    );
    assert!(up.connected);
    let entry = c.wait_all_acked("router-restart").await;
    for t in TYPES {
        assert_eq!(
            entry["types"][t]["acked_version"], before["versions"][t],
            "{t} resynced at the same version"
        );
    }
    assert_eq!(
        *sub.snapshot.borrow(),
        synced,
        "the client's snapshot is unchanged"
    );

    // And the restarted connector keeps counting from where it was.
    let r = c
        .ok(
            "PUT",
            "/v1/endpoints/hello/c2",
            Some(r#"{"address":"127.0.0.1:9003"}"#),
        )
        .await;
    assert_eq!(r["versions"][ENDPOINTS_TYPE], "4");
    assert_eq!(r["versions"][CLUSTER_TYPE], "2");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_with_clients_connected() {
    let redis = RedisServer::start();
    let mut c = Connector::start(&redis, "t-sigterm").await;
    let stop = CancellationToken::new();
    let _rx = client::spawn(
        ClientConfig {
            server: c.grpc(),
            node_id: "router-term".into(),
            node_kind: "router".into(),
            token: None,
        },
        client::validate_basic,
        stop.clone(),
    );
    c.wait_all_acked("router-term").await;
    let start = Instant::now();
    let status = c.terminate().await;
    assert!(status.success(), "exit status {status}");
    println!(
        "SIGTERM to exit with one client connected: {:?}",
        start.elapsed()
    );
    let log = c.log_text();
    assert!(log.contains("xds-connector stopped"), "log:\n{log}");
    stop.cancel();
}
