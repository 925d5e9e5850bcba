//! Routing through the real gateway → real router → a replica, plus the paths the gateway
//! answers itself and `/system/*` going to the orchestrator.

mod common;

use common::{cluster_json, http, register, OnWake, Orchestrator, Replica, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn function_paths_reach_the_replica_with_the_function_header_and_own_path() {
    let replica = Replica::start().await;
    // The orchestrator is not needed here: every function is warm.
    let stack = Stack::start("gw-routing", "http://127.0.0.1:9").await;
    register(
        &stack.rest,
        "hello",
        cluster_json(10_000, 1 << 20),
        &[replica.addr],
    )
    .await;
    stack.wait_synced().await;
    let c = http();

    let r = c.get(stack.url("/hello")).send().await.expect("GET /hello");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-sluice-cold-start"], "false");
    let d: f64 = r.headers()["x-duration-seconds"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("X-Duration-Seconds is a float");
    assert!(d > 0.0 && d < 10.0, "duration {d}");
    assert_eq!(r.headers()["x-sluice-replica"], "hello-replica-0");
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["uri"], "/");
    assert_eq!(body["function"], "hello");

    let r = c
        .post(stack.url("/function/hello/sub?x=1"))
        .body("payload")
        .send()
        .await
        .expect("POST /function/hello/sub");
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        body["uri"], "/sub?x=1",
        "the function sees its own subpath, not /function/hello"
    );
    assert_eq!(body["function"], "hello");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["body_len"], 7);

    let r = c
        .get(stack.url("/hello/a/b?q=%20z"))
        .send()
        .await
        .expect("GET subpath");
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["uri"], "/a/b?q=%20z");

    // A small chunked body is buffered (to check the limit) and then forwarded whole.
    let addr = stack.gateway.trim_start_matches("http://").to_string();
    let r = common::post_chunked(&addr, "/hello/upload", 100_000).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 100_000);
    assert_eq!(r.json()["uri"], "/upload");
    assert_eq!(r.header("x-sluice-cold-start"), Some("false"));
    assert_eq!(replica.seen().len(), 4);

    // Unknown function: 404 JSON naming it, nothing forwarded.
    let before = replica.arrivals();
    let r = c.get(stack.url("/nope")).send().await.expect("GET /nope");
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        body,
        serde_json::json!({"error": "function `nope` not found", "function": "nope"})
    );
    let r = c
        .get(stack.url("/function/nope/x"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 404);
    assert_eq!(replica.arrivals(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reserved_paths_health_and_malformed_requests() {
    let stack = Stack::start("gw-reserved", "http://127.0.0.1:9").await;
    let c = http();

    let h = stack.health().await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["xds"]["connected"], true);
    let malformed_before = h["malformed_requests"].as_u64().expect("counter");

    for (path, feature) in [
        ("/async-function/hello", "async-function"),
        ("/metrics", "metrics"),
        ("/ui/", "ui"),
        ("/activations/x", "activations"),
    ] {
        let r = c.get(stack.url(path)).send().await.expect("GET reserved");
        assert_eq!(r.status(), 501, "{path}");
        let body: serde_json::Value = r.json().await.expect("json");
        let msg = body["error"].as_str().expect("error message");
        assert!(msg.contains(feature), "{path}: {msg}");
    }

    for path in ["/Hello", "/a_b", "/function/", "/favicon.ico"] {
        let r = c.get(stack.url(path)).send().await.expect("GET malformed");
        assert_eq!(r.status(), 400, "{path}");
        let body: serde_json::Value = r.json().await.expect("json");
        assert!(body["error"].is_string(), "{path}");
    }
    let r = c.get(stack.url("/")).send().await.expect("GET /");
    assert_eq!(r.status(), 404);
    // No function registered at all: still a plain 404 (the config was received, empty).
    let r = c.get(stack.url("/nope")).send().await.expect("GET /nope");
    assert_eq!(r.status(), 404);

    let h = stack.health().await;
    assert_eq!(
        h["malformed_requests"].as_u64().expect("counter"),
        malformed_before + 4,
        "each malformed request is counted"
    );
    // Still serving after all of that.
    assert_eq!(stack.health().await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn system_paths_are_proxied_unchanged_to_the_orchestrator() {
    // The stand-in needs the connector's REST URL only for registrations, unused here.
    let orch = Orchestrator::start(String::new(), OnWake::Ignore).await;
    let stack = Stack::start("gw-system", &format!("http://{}", orch.addr)).await;
    let r = http()
        .get(stack.url("/system/functions?verbose=1"))
        .header("x-sluice-function", "spoofed")
        .send()
        .await
        .expect("GET /system/functions");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-sluice-cold-start").is_none());
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body, serde_json::json!([{"name": "hello", "replicas": 1}]));
    let calls = orch.system_calls.lock().expect("lock").clone();
    assert_eq!(
        calls,
        vec![(
            "GET".to_string(),
            "/system/functions?verbose=1".to_string(),
            false
        )]
    );

    // The orchestrator's own errors pass through as they are.
    let r = http()
        .get(stack.url("/system/nothing"))
        .send()
        .await
        .expect("GET /system/nothing");
    assert_eq!(r.status(), 404);
}
