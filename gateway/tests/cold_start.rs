//! Scale from zero: requests for a function without a ready replica are held, ONE wake call
//! goes to the orchestrator however many arrive, and all of them are released the moment
//! the replica's endpoint is pushed; no replica in time → 503 with Retry-After.
//!
//! The orchestrator here is a stand-in (a small HTTP server in the test) that records wake
//! calls and registers the replica through the connector's REST API, as the real one does
//! after its readiness probe; the lead tests the full stack with the real orchestrator.

mod common;

use std::time::{Duration, Instant};

use common::{cluster_json, http, register, OnWake, Orchestrator, Replica, Stack, DEADLINE};
use sluice_common::testing::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_one_wake_call_all_released() {
    let replica = Replica::start().await;
    // The stand-in needs the connector's REST address, which exists only once the stack
    // runs; start the stack against the stand-in's fixed port.
    let orch_port = sluice_common::testing::free_port();
    let stack = Stack::start("gw-cold", &format!("http://127.0.0.1:{orch_port}")).await;
    let orch = Orchestrator::start_on(
        orch_port,
        stack.rest.clone(),
        OnWake::RegisterWhenAllowed {
            replica: replica.addr,
        },
    )
    .await;
    // Scaled to zero: the function exists, no endpoint.
    register(&stack.rest, "hello", cluster_json(20_000, 1 << 20), &[]).await;
    stack.wait_synced().await;

    let started = Instant::now();
    let requests: Vec<_> = (0..50)
        .map(|i| {
            let url = stack.url(&format!("/hello/n?i={i}"));
            tokio::spawn(async move { http().get(url).send().await })
        })
        .collect();

    let url = stack.url("/healthz");
    wait_for("50 requests held by the gateway", DEADLINE, || {
        let url = url.clone();
        async move {
            let h: serde_json::Value = http().get(&url).send().await.ok()?.json().await.ok()?;
            (h["held_now"]["hello"] == 50).then_some(())
        }
    })
    .await;
    println!("50 requests held after {:?}", started.elapsed());
    wait_for("the wake call", DEADLINE, || {
        let n = orch.wakes().len();
        async move { (n >= 1).then_some(()) }
    })
    .await;
    assert_eq!(
        orch.wakes(),
        vec!["hello".to_string()],
        "exactly one wake call"
    );
    assert_eq!(replica.arrivals(), 0);

    let released = Instant::now();
    orch.allow_registration();
    let mut durations = Vec::new();
    for r in requests {
        let r = r.await.expect("join").expect("held request answered");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-sluice-cold-start"], "true");
        assert_eq!(r.headers()["x-sluice-replica"], "hello-replica-0");
        let d: f64 = r.headers()["x-duration-seconds"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("float");
        durations.push(d);
    }
    println!(
        "all 50 answered {:?} after the registration was allowed; X-Duration-Seconds max {:.3}",
        released.elapsed(),
        durations.iter().cloned().fold(0.0, f64::max)
    );
    assert_eq!(replica.arrivals(), 50);

    let r = http()
        .get(stack.url("/hello"))
        .send()
        .await
        .expect("warm call");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-sluice-cold-start"], "false");
    assert_eq!(orch.wakes().len(), 1, "still exactly one wake call");
    let h = stack.health().await;
    assert_eq!(h["stats"]["cold_starts"], 1);
    assert_eq!(h["stats"]["wake_calls"], 1);
    assert_eq!(h["held_now"], serde_json::json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cold_start_timeout_is_503_with_retry_after() {
    let orch_port = sluice_common::testing::free_port();
    let stack = Stack::start("gw-cold-timeout", &format!("http://127.0.0.1:{orch_port}")).await;
    let orch = Orchestrator::start_on(orch_port, stack.rest.clone(), OnWake::Ignore).await;
    register(&stack.rest, "sleepy", cluster_json(600, 1 << 20), &[]).await;
    stack.wait_synced().await;

    let started = Instant::now();
    let r = http()
        .get(stack.url("/sleepy"))
        .send()
        .await
        .expect("GET /sleepy");
    let took = started.elapsed();
    println!("cold start timeout answered after {took:?}");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-sluice-cold-start"], "true");
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("Retry-After seconds");
    assert!(retry_after >= 1);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["function"], "sleepy");
    assert!(body["error"]
        .as_str()
        .expect("message")
        .contains("cold start"));
    assert!(
        took >= Duration::from_millis(600),
        "held for the timeout, took {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "not much longer than the timeout: {took:?}"
    );
    assert_eq!(orch.wakes(), vec!["sleepy".to_string()]);

    // The next request starts a new cold start (and a new wake call).
    let r = http()
        .get(stack.url("/sleepy"))
        .send()
        .await
        .expect("GET again");
    assert_eq!(r.status(), 503);
    assert_eq!(orch.wakes().len(), 2);
    assert_eq!(stack.health().await["stats"]["cold_start_timeouts"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wake_calls_are_retried_until_the_orchestrator_answers() {
    let replica = Replica::start().await;
    // Nothing listens on the orchestrator port at first: the wake call fails and is retried.
    let orch_port = sluice_common::testing::free_port();
    let stack = Stack::start("gw-cold-retry", &format!("http://127.0.0.1:{orch_port}")).await;
    register(&stack.rest, "late", cluster_json(20_000, 1 << 20), &[]).await;
    stack.wait_synced().await;

    let url = stack.url("/late");
    let request = tokio::spawn(async move { http().get(url).send().await });
    let health = stack.url("/healthz");
    wait_for("two failed wake attempts", DEADLINE, || {
        let url = health.clone();
        async move {
            let h: serde_json::Value = http().get(&url).send().await.ok()?.json().await.ok()?;
            (h["stats"]["wake_failures"].as_u64()? >= 2).then_some(())
        }
    })
    .await;
    let orch = Orchestrator::start_on(
        orch_port,
        stack.rest.clone(),
        OnWake::RegisterWhenAllowed {
            replica: replica.addr,
        },
    )
    .await;
    orch.allow_registration();
    let r = request.await.expect("join").expect("request answered");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-sluice-cold-start"], "true");
    assert_eq!(orch.wakes(), vec!["late".to_string()]);
}

/// A burst held for a cold start is larger than the router's queue: the gateway releases it
/// at the rate the replica takes it (its slots + half the queue), so the router never
/// refuses a held call; released all at once, most would get 429 here.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_burst_larger_than_the_router_queue_is_released_at_capacity_never_429() {
    let replica = Replica::start().await;
    let orch_port = sluice_common::testing::free_port();
    let stack = Stack::start("gw-cold-burst", &format!("http://127.0.0.1:{orch_port}")).await;
    let orch = Orchestrator::start_on(
        orch_port,
        stack.rest.clone(),
        OnWake::RegisterWhenAllowed {
            replica: replica.addr,
        },
    )
    .await;
    // 2 slots per replica, a router queue of 4 whose timeout is the function's (so before any
    // call finished, each slot is assumed to drain one queued call in time): at most
    // 2 + min(2, 4 / 2) = 4 forwarded at a time.
    let mut cluster = cluster_json(20_000, 1 << 20);
    cluster["max_concurrency"] = 2.into();
    cluster["queue_size"] = 4.into();
    cluster["queue_timeout_ms"] = 30_000.into();
    register(&stack.rest, "hello", cluster, &[]).await;
    stack.wait_synced().await;

    let requests: Vec<_> = (0..40)
        .map(|i| {
            let url = stack.url(&format!("/hello/hold?i={i}"));
            tokio::spawn(async move { http().get(url).send().await })
        })
        .collect();
    let health = stack.url("/healthz");
    let held = |n: u64| {
        let url = health.clone();
        async move {
            let h: serde_json::Value = http().get(&url).send().await.ok()?.json().await.ok()?;
            (h["held_now"]["hello"].as_u64() == Some(n)).then_some(())
        }
    };
    wait_for("40 calls held", DEADLINE, || held(40)).await;
    orch.allow_registration();
    // The replica holds every call: exactly 4 leave the gateway (2 at the replica, 2 in the
    // router's queue), 36 stay held in order.
    wait_for("4 released, 36 still held", DEADLINE, || held(36)).await;
    wait_for("2 at the replica", DEADLINE, || {
        let n = replica.arrivals();
        async move { (n == 2).then_some(()) }
    })
    .await;
    let queues = format!("{}/v1/queues", stack.router_admin);
    wait_for("2 in the router's queue", DEADLINE, || {
        let url = queues.clone();
        async move {
            let q: serde_json::Value = http().get(&url).send().await.ok()?.json().await.ok()?;
            let queued: u64 = q
                .as_array()?
                .iter()
                .filter(|c| c["cluster"] == "hello")
                .filter_map(|c| c["queued"].as_u64())
                .sum();
            assert!(queued <= 2, "never more than half the router's queue: {q}");
            (queued == 2).then_some(())
        }
    })
    .await;
    assert_eq!(held(36).await, Some(()), "nothing more left the gateway");

    replica.release();
    for r in requests {
        let r = r.await.expect("join").expect("answered");
        assert_eq!(r.status(), 200, "every held call is served");
    }
    assert_eq!(replica.arrivals(), 40);
    assert_eq!(stack.health().await["held_now"], serde_json::json!({}));
}
