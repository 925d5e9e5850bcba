//! The gateway on the router's Unix socket, as `make up` runs them, across a router restart.
//! Real processes: redis-server, the xds-connector, the router and the gateway; the replica
//! is a small HTTP server of the test's own.

mod common;

use common::{cluster_json, http, register, Replica, Stack, DEADLINE};
use sluice_common::testing::wait_for;

/// Calls in the gateway right now other than the `/healthz` call that asks.
async fn in_flight(stack: &Stack) -> u64 {
    stack.health().await["in_flight"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(1)
}

/// `hello` on a replica, behind a gateway on the router's Unix socket with the given
/// connect timeout, answered once through the socket.
async fn warm_hello(instance: &str, connect_timeout_ms: u64) -> (Replica, Stack) {
    let replica = Replica::start().await;
    let stack = Stack::start_unix(instance, "http://127.0.0.1:9", connect_timeout_ms).await;
    register(
        &stack.rest,
        "hello",
        cluster_json(10_000, 1 << 20),
        &[replica.addr],
    )
    .await;
    stack.wait_synced().await;
    let r = http()
        .get(stack.url("/hello"))
        .send()
        .await
        .expect("GET /hello");
    assert_eq!(r.status(), 200, "through the router's Unix socket");
    (replica, stack)
}

/// A call that arrives while the router is down (killed: its socket file left behind and
/// refusing) waits for the router to come back and is answered, instead of failing: the
/// gateway retries a refused connect within its connect timeout (set long here, so that
/// the test does not depend on how fast a router starts).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_during_a_router_restart_waits_for_it() {
    let (replica, mut stack) = warm_hello("gw-router-restart", 60_000).await;
    let c = http();
    let before = replica.arrivals();

    stack.kill_router();
    let call = tokio::spawn({
        let (c, url) = (c.clone(), stack.url("/hello/during"));
        async move {
            let r = c.get(url).send().await.expect("the call is answered");
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.ok())
        }
    });
    // The call is in the gateway, and the replica has not seen it: it waits for the router.
    wait_for("the call held in the gateway", DEADLINE, || async {
        (in_flight(&stack).await == 1).then_some(())
    })
    .await;
    assert_eq!(replica.arrivals(), before);

    stack.start_router().await;
    let (status, body) = call.await.expect("task");
    assert_eq!(status, 200, "answered once the router is back: {body:?}");
    assert_eq!(body.expect("json")["uri"], "/during");
    assert_eq!(replica.arrivals(), before + 1);
}

/// A router that stays down past the connect timeout: the call gets 502 naming the router
/// (on a connection the gateway then closes, and says so), and the gateway keeps serving
/// what it answers itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_router_down_past_the_connect_timeout_is_502() {
    let (_replica, mut stack) = warm_hello("gw-router-down", 300).await;
    let c = http();
    stack.kill_router();
    let r = c.get(stack.url("/hello")).send().await.expect("GET");
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.headers()["connection"],
        "close",
        "the gateway closes this connection: it says so"
    );
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["function"], "hello");
    assert!(
        body["error"].as_str().unwrap_or("").contains("router"),
        "{body}"
    );
    let r = c.get(stack.url("/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), 200);
}
