//! Autoscaling and the warm pool on the compose stack: router statsD → stats-listener →
//! Redis → orchestrator, driven by the project's load-test script.

mod stack_support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use sluice_common::testing::wait_for;
use stack_support::*;

fn entry(name: &str, folder: &str, extra: &str) -> String {
    format!(
        "{name}:\n  name: {name}\n  version: 0.1\n  configuration:\n    programing_language: python\n    base_function_file_name: handler.py\n    function_folder: {folder}\n    extra_dependencies: \"\"\n{extra}"
    )
}

/// The load-test script (built by `make images`; built here if missing).
fn load_tool() -> PathBuf {
    let bin = repo_root().join("target/release/sluice-load");
    if !bin.exists() {
        let ok = Command::new("cargo")
            .args([
                "build",
                "--release",
                "-p",
                "gateway",
                "--bin",
                "sluice-load",
            ])
            .current_dir(repo_root())
            .status()
            .expect("cargo");
        assert!(ok.success(), "building sluice-load");
    }
    bin
}

struct Row {
    t: u64,
    sent: u64,
    ok: u64,
    failed: u64,
    ready: Option<u64>,
}

fn read_csv(path: &std::path::Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).expect("load.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
    };
    let (t, sent, ok, failed, ready) = (
        col("t_s"),
        col("sent"),
        col("ok"),
        col("failed"),
        col("ready"),
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let num = |i: usize| {
                f.get(i)
                    .and_then(|v| v.parse::<f64>().ok())
                    .map(|v| v as u64)
            };
            Row {
                t: num(t).expect("t_s"),
                sent: num(sent).unwrap_or(0),
                ok: num(ok).unwrap_or(0),
                failed: num(failed).unwrap_or(0),
                ready: num(ready),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_follow_the_load_up_and_back_to_zero_without_errors() {
    let s = ComposeStack::up("as", &entry("sleep", "sleep", "")).await;
    s.wait_built("sleep").await;
    assert!(s.containers("sleep", true).is_empty());

    // 50 rps of 200 ms calls for 20 s (about 10 in flight: 4 replicas at 4 × 0.7 each).
    let out = s.dir.path().join("load");
    let started = Instant::now();
    let status = tokio::task::spawn_blocking({
        let out = out.clone();
        let url = s.url("/sleep?ms=200");
        move || {
            Command::new(load_tool())
                .args([
                    "--url",
                    &url,
                    "--profile",
                    "constant:50",
                    "--duration",
                    "20s",
                    "--quiet",
                    "--out",
                ])
                .arg(&out)
                .status()
                .expect("run sluice-load")
        }
    })
    .await
    .expect("task");
    let load_end = Instant::now();
    let rows = read_csv(&out.join("load.csv"));
    for r in &rows {
        println!(
            "t={:>2}s sent={:>3} ok={:>3} failed={} ready={:?}",
            r.t, r.sent, r.ok, r.failed, r.ready
        );
    }
    assert!(
        status.success(),
        "every request answered 2xx (exit {status:?})"
    );
    assert_eq!(rows.iter().map(|r| r.failed).sum::<u64>(), 0);
    assert!(
        rows.iter().map(|r| r.ok).sum::<u64>() >= 900,
        "about 1000 requests answered"
    );
    let first3 = rows.iter().find(|r| r.ready.unwrap_or(0) >= 3).map(|r| r.t);
    println!(
        "≥ 3 replicas ready at t={first3:?} s (load started {:?} before the first row)",
        started.elapsed() - load_end.elapsed()
    );
    assert!(
        first3.is_some_and(|t| t <= 5),
        "replicas rose to ≥ 3 within 5 s: {first3:?}"
    );

    // Scale-up reaction, from the orchestrator's log: queueing first signalled → the second
    // replica ready.
    let logs = String::from_utf8_lossy(&s.compose(&["logs", "--no-color", "orchestrator"]).stdout)
        .to_string();
    let events: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| l.find('{').and_then(|i| serde_json::from_str(&l[i..]).ok()))
        .filter(|v: &serde_json::Value| v["function"] == "sleep")
        .collect();
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
    assert!(first_signal.is_some(), "queueing was signalled");

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
