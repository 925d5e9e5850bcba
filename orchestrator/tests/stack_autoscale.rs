//! Autoscaling and the warm pool on the compose stack: router statsD → stats-listener →
//! Redis → orchestrator, driven by the project's load-test script.

use sluice_stack as stack_support;

use std::time::{Duration, Instant};

use sluice_common::testing::wait_for;
use stack_support::load::entry;
use stack_support::*;

/// 50 calls/s of 200 ms: 10 in flight, at 4 × 0.7 per replica → 4 replicas.
const NEED: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_follow_the_load_up_and_back_to_zero_without_errors() {
    let s = ComposeStack::up("as", &entry("sleep", "sleep", "")).await;
    s.wait_built("sleep").await;
    assert!(s.containers("sleep", true).is_empty());

    // 50 rps of 200 ms calls for 20 s, from zero: the first calls are held for the cold
    // start, then released as the replicas take them.
    let run = s.load("load", "/sleep?ms=200", "constant:50", "20s").await;
    let load_end = Instant::now();
    assert_eq!(run.failed(), 0, "no call failed");
    assert!(run.success, "every request answered 2xx");
    assert!(run.sent() >= 900, "about 1000 requests sent");
    assert_eq!(run.ok(), run.sent(), "every request sent answered 2xx");
    let peak_ready = run.rows.iter().filter_map(|r| r.ready).max().unwrap_or(0);
    let (peak, steps) = s.peak_desired("sleep");
    let peak = peak.max(run.rows.iter().filter_map(|r| r.desired).max().unwrap_or(0));
    println!("autoscale decisions: {steps:?}; peak desired {peak}, peak ready {peak_ready}");
    assert!(
        peak_ready >= NEED - 1,
        "replicas rose with the load: {peak_ready} ready at most"
    );
    assert!(
        peak as f64 <= 1.5 * NEED as f64,
        "peak desired {peak} within 1.5 × the arrival-rate need ({NEED})"
    );

    // Scale-up reaction, from the orchestrator's log: queueing first signalled → the second
    // replica ready (printed; speed is measured by `make bench`; the decision may come from
    // the signal or from the next window, whichever the autoscaler sees first).
    let events = s.orchestrator_events("sleep");
    let at = |v: &serde_json::Value| {
        v["timestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let first_signal = events
        .iter()
        .find(|v| v["message"] == "autoscale: queueing signal")
        .and_then(at);
    let second_ready = events
        .iter()
        .filter(|v| v["message"] == "replica ready")
        .nth(1)
        .and_then(at);
    if let (Some(a), Some(b)) = (first_signal, second_ready) {
        println!(
            "scale-up reaction: queueing first signalled → second replica ready: {} ms",
            (b - a).num_milliseconds()
        );
    } else {
        println!("scale-up reaction: not found in the log (signal {first_signal:?}, ready {second_ready:?})");
    }

    // After the load: back to zero within idle_timeout + stable window + 5 s = 45 s.
    wait_for("scaled back to zero", Duration::from_secs(45), || async {
        let f = s.function("sleep").await;
        (f["availableReplicas"] == 0 && s.containers("sleep", false).is_empty()).then_some(())
    })
    .await;
    println!("back to zero {:?} after the load ended", load_end.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn warm_pool_cold_starts_side_by_side() {
    let reg = [
        entry("pooled", "hello", "  scaling:\n    warm_pool: 1\n"),
        entry("plain", "hello", ""),
    ]
    .join("");
    // Replica counts move only by wake-ups and API calls here.
    let s = ComposeStack::up_with("wp", &reg, false).await;
    s.wait_built("pooled").await;
    s.wait_built("plain").await;
    let mut medians = Vec::new();
    for f in ["pooled", "plain"] {
        let mut times = Vec::new();
        for i in 0..10 {
            if f == "pooled" {
                wait_for("pool member ready", Duration::from_secs(60), || async {
                    (s.function(f).await["pooledReplicas"] == 1).then_some(())
                })
                .await;
            }
            let t = Instant::now();
            let r = s
                .http
                .get(s.url(&format!("/{f}?name={i}")))
                .send()
                .await
                .expect("call");
            let cold = r
                .headers()
                .get("x-sluice-cold-start")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            assert_eq!(r.status(), 200);
            assert_eq!(r.text().await.expect("body"), format!("Hello, {i}"));
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(cold, "true", "{f} call {i} was a cold start");
            assert_eq!(s.scale(f, 0).await, 202);
            wait_for("back to zero", Duration::from_secs(60), || async {
                let fj = s.function(f).await;
                (fj["availableReplicas"] == 0 && fj["replicas"] == 0 && fj["startingReplicas"] == 0)
                    .then_some(())
            })
            .await;
            wait_for("no running replica", Duration::from_secs(60), || async {
                let running = s
                    .containers(f, false)
                    .into_iter()
                    .filter(|id| docker(&["inspect", "-f", "{{.State.Paused}}", id]) != "true")
                    .count();
                (running == 0).then_some(())
            })
            .await;
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let median = (times[4] + times[5]) / 2.0;
        println!("{f}: cold calls through the gateway, median {median:.1} ms, all {times:.1?}");
        medians.push(median);
    }
    println!(
        "cold start median: with warm pool {:.1} ms, without {:.1} ms",
        medians[0], medians[1]
    );
}
