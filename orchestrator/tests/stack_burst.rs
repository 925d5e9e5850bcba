//! Bursts from zero on the compose stack: calls held during a cold start (an image still
//! building, a slow import) are released at the rate the ready replicas take them, never
//! refused by the platform's own queue, and the autoscaler sizes replicas to the arrival
//! rate, not to the calls that piled up. One stack, the scenarios one after another.

use sluice_stack as stack_support;

use std::time::{Duration, Instant};

use sluice_common::testing::wait_for;
use stack_support::load::entry;
use stack_support::*;

/// 50 calls/s of 200 ms: 10 in flight, at 4 × 0.7 per replica → 4 replicas.
const NEED: u64 = 4;

/// Adds a function to the stack's registry file (the orchestrator reloads it on save) and
/// waits until the gateway routes it (it exists, with no replica yet; its image may still
/// be building).
async fn add_function(s: &ComposeStack, registry: &mut String, name: &str, folder: &str) {
    registry.push_str(&entry(name, folder, ""));
    let count = registry.matches("\n  name: ").count() as u64;
    std::fs::write(s.registry_path(), &*registry).expect("write registry");
    wait_for(
        &format!("the gateway to route {name}"),
        Duration::from_secs(30),
        || async {
            let r = s.http.get(s.url("/healthz")).send().await.ok()?;
            let h: serde_json::Value = r.json().await.ok()?;
            (h["xds"]["functions"].as_u64()? == count).then_some(())
        },
    )
    .await;
}

/// A new function, 50 calls/s for 15 s starting half a second after it was added: every
/// call answered, and the replicas asked for stay within 1.5 × what the arrival rate needs.
async fn new_function_under_load(s: &ComposeStack, name: &str) {
    tokio::time::sleep(Duration::from_millis(500)).await; // the scenario: load 0.5 s later
    let run = s
        .load(name, &format!("/{name}?ms=200"), "constant:50", "15s")
        .await;
    let (peak, steps) = s.peak_desired(name);
    let peak = peak.max(run.rows.iter().filter_map(|r| r.desired).max().unwrap_or(0));
    println!("{name}: autoscale decisions {steps:?}; peak desired {peak}");
    assert_eq!(run.failed(), 0, "{name}: no call failed");
    assert!(run.success, "{name}: every call answered 2xx");
    assert!(run.sent() >= 700, "{name}: about 750 calls sent");
    assert_eq!(run.ok(), run.sent(), "{name}: every call sent answered 2xx");
    assert!(
        peak as f64 <= 1.5 * NEED as f64,
        "{name}: peak desired {peak} within 1.5 × the arrival-rate need ({NEED})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bursts_from_zero_are_served_and_sized_to_the_arrival_rate() {
    let mut registry = entry("hello", "hello", "");
    let s = ComposeStack::up("burst", &registry).await;
    s.wait_built("hello").await;
    // Function images outlive a stack (and an unchanged function is never rebuilt): remove
    // the ones this test builds, so that every run builds them as a first run does.
    for f in ["fresh", "slowstart", "burst"] {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &format!("sluice/fn-{f}:0.1")])
            .output();
    }

    // 1. A function added while the load starts: its image is still building when the first
    //    calls arrive, so they are held for the build and the cold start.
    add_function(&s, &mut registry, "fresh", "sleep").await;
    new_function_under_load(&s, "fresh").await;

    // 2. The same with a 3 s import (its image built first): every replica, the first and
    //    those the autoscaler adds, takes over 3 s to become ready.
    add_function(&s, &mut registry, "slowstart", "slowstart").await;
    s.wait_built("slowstart").await;
    new_function_under_load(&s, "slowstart").await;

    // 3. 300 calls at once to a function at zero (built, no replica).
    add_function(&s, &mut registry, "burst", "sleep").await;
    s.wait_built("burst").await;
    assert!(s.containers("burst", false).is_empty(), "burst is at zero");
    let cold_start_timeout = Duration::from_secs(30);
    let started = Instant::now();
    let calls: Vec<_> = (0..300)
        .map(|_| {
            let http = s.http.clone();
            let url = s.url("/burst?ms=200");
            tokio::spawn(async move {
                let t = Instant::now();
                let r = http.get(&url).send().await.expect("answer");
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                (status, retry_after, t.elapsed(), body)
            })
        })
        .collect();
    let mut ok = 0;
    let mut slowest = Duration::ZERO;
    for c in calls {
        let (status, retry_after, took, body) = c.await.expect("join");
        slowest = slowest.max(took);
        match status {
            200 => {
                assert_eq!(body, serde_json::json!({"slept_ms": 200}));
                ok += 1;
            }
            503 => assert!(
                retry_after && took >= cold_start_timeout,
                "503 before the cold start timeout ({took:?}, Retry-After: {retry_after}): {body}"
            ),
            other => panic!("call answered {other} after {took:?}: {body}"),
        }
    }
    let (peak, steps) = s.peak_desired("burst");
    println!(
        "burst of 300: {ok} answered 200, slowest {slowest:?}, all within {:?}; \
         autoscale decisions {steps:?} (peak {peak})",
        started.elapsed()
    );
    assert_eq!(ok, 300, "every call of the burst answered 200");
}
