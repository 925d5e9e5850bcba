//! The data plane as users meet it: the compose stack (gateway, router, xds-connector,
//! orchestrator, redis) on the real engine, called through the gateway's published port.

use sluice_stack as stack_support;

use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_common::testing::wait_for;
use stack_support::*;

/// Every service of docker-compose.yml.
const SERVICES: [&str; 9] = [
    "engine-filter",
    "redis",
    "state-redis",
    "xds-connector",
    "stats-listener",
    "orchestrator",
    "router",
    "gateway",
    "sip-proxy",
];

fn entry(name: &str, folder: &str, extra: &str) -> String {
    format!(
        "{name}:\n  name: {name}\n  version: 0.1\n  configuration:\n    programing_language: python\n    base_function_file_name: handler.py\n    function_folder: {folder}\n    extra_dependencies: \"\"\n{extra}"
    )
}

fn registry() -> String {
    [
        entry("hello", "hello", ""),
        entry("tiny", "hello", "  limits:\n    max_body: 1Mi\n"),
        entry("sleep", "sleep", ""),
        entry(
            "slow",
            "sleep",
            "  scaling:\n    max_concurrency: 1\n    max_replicas: 2\n",
        ),
        entry(
            "tight",
            "sleep",
            "  scaling:\n    max_concurrency: 1\n    max_replicas: 1\n    queue_size: 1\n",
        ),
    ]
    .join("")
}

async fn get(s: &ComposeStack, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = s.http.get(s.url(path)).send().await.expect("request");
    let code = r.status().as_u16();
    let headers = r.headers().clone();
    (code, headers, r.text().await.expect("body"))
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_router_and_orchestrator_serve_cold_and_warm_calls() {
    let s = ComposeStack::up_with("dp", &registry(), false).await;
    for f in ["hello", "tiny", "sleep", "slow", "tight"] {
        s.wait_built(f).await;
    }

    // A fresh install publishes one port on the host: the gateway's, on loopback only.
    let published: Vec<(String, String)> = SERVICES
        .iter()
        .flat_map(|svc| {
            let out = docker(&["port", &s.service(svc)]);
            out.lines()
                .map(|l| (svc.to_string(), l.trim().to_string()))
                .collect::<Vec<_>>()
        })
        .filter(|(_, l)| !l.is_empty())
        .collect();
    assert_eq!(
        published,
        [(
            "gateway".to_string(),
            format!("8080/tcp -> 127.0.0.1:{}", s.port)
        )],
        "published ports"
    );

    // Every service is hardened: non-root but the engine filter (the owner of the engine's
    // socket, and the only one holding it), a read-only root filesystem, no capability, no
    // privilege gain, memory and pids bounded.
    for svc in SERVICES {
        let c: Value =
            serde_json::from_str(&docker(&["inspect", &s.service(svc)])).expect("inspect");
        let (config, hc) = (&c[0]["Config"], &c[0]["HostConfig"]);
        let user = config["User"].as_str().unwrap_or("");
        let holds_engine = c[0]["Mounts"].as_array().is_some_and(|m| {
            m.iter()
                .any(|m| m["Source"].as_str() == Some("/var/run/docker.sock"))
        });
        if svc == "engine-filter" {
            assert!(user.is_empty() || user.starts_with('0'), "{svc}: {user}");
            assert!(holds_engine, "{svc}");
            assert_eq!(hc["NetworkMode"], "none", "{svc}: no network");
        } else {
            assert!(!holds_engine, "{svc} holds the engine's socket");
            assert!(
                !user.is_empty() && !user.starts_with('0') && user != "root",
                "{svc} runs as non-root: `{user}`"
            );
        }
        assert_eq!(hc["ReadonlyRootfs"], true, "{svc}: read-only root");
        assert_eq!(
            hc["CapDrop"],
            serde_json::json!(["ALL"]),
            "{svc}: capabilities"
        );
        assert!(
            hc["SecurityOpt"]
                .as_array()
                .is_some_and(|o| o.iter().any(|x| x
                    .as_str()
                    .is_some_and(|x| x.starts_with("no-new-privileges")))),
            "{svc}: no-new-privileges"
        );
        assert!(
            hc["Memory"].as_i64().is_some_and(|m| m > 0),
            "{svc}: memory"
        );
        assert!(
            hc["PidsLimit"].as_i64().is_some_and(|p| p > 0),
            "{svc}: pids"
        );
        assert_eq!(hc["Privileged"], false, "{svc}");
    }

    // Cold start through the gateway, then warm.
    let (code, h, body) = get(&s, "/hello").await;
    assert_eq!((code, body.as_str()), (200, "Hello, world"));
    assert_eq!(header(&h, "x-sluice-cold-start"), "true");
    assert!(
        !header(&h, "x-sluice-replica").is_empty(),
        "names the replica"
    );
    assert!(header(&h, "x-duration-seconds").parse::<f64>().is_ok());
    let (code, h, _) = get(&s, "/hello").await;
    assert_eq!(code, 200);
    assert_eq!(header(&h, "x-sluice-cold-start"), "false");
    let (code, _, body) = get(&s, "/function/hello?name=x").await;
    assert_eq!((code, body.as_str()), (200, "Hello, x"));

    // Unknown function → 404 JSON.
    let (code, _, body) = get(&s, "/nope").await;
    assert_eq!(code, 404);
    let v: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(v["function"], "nope");

    // 2 MB to a function with a 1 MB limit → 413, and nothing was started for it.
    let big = vec![b'x'; 2 * 1024 * 1024];
    let r = s
        .http
        .post(s.url("/tiny"))
        .body(big)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);
    assert!(
        s.containers("tiny", true).is_empty(),
        "a refused body wakes nothing"
    );

    // 50 concurrent calls to a function at zero: all 200, exactly one container launched.
    assert!(s.containers("sleep", true).is_empty());
    let calls = (0..50).map(|_| {
        let http = s.http.clone();
        let url = s.url("/sleep?ms=50");
        tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) })
    });
    let codes: Vec<u16> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("request"))
        .collect();
    assert!(codes.iter().all(|&c| c == 200), "{codes:?}");
    assert_eq!(
        s.containers("sleep", true).len(),
        1,
        "one cold start, one container"
    );

    // Balancing and queueing: 2 replicas with max concurrency 1, 4 concurrent 1 s calls →
    // two at a time, all 200, about 2 s.
    assert_eq!(s.scale("slow", 2).await, 202);
    s.wait_ready("slow", 2).await;
    let t = Instant::now();
    let calls = (0..4).map(|_| {
        let http = s.http.clone();
        let url = s.url("/slow?ms=1000");
        tokio::spawn(async move {
            let r = http.get(url).send().await.expect("call");
            let replica = r
                .headers()
                .get("x-sluice-replica")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            (r.status().as_u16(), replica)
        })
    });
    let results: Vec<(u16, String)> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let took = t.elapsed();
    assert!(results.iter().all(|(c, _)| *c == 200), "{results:?}");
    let mut replicas: Vec<&String> = results.iter().map(|(_, r)| r).collect();
    replicas.sort();
    replicas.dedup();
    assert_eq!(replicas.len(), 2, "both replicas served: {results:?}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(3500),
        "took {took:?}"
    );

    // Queue overflow: 1 replica, cap 1, queue 1 → the third concurrent call gets 429.
    assert_eq!(s.scale("tight", 1).await, 202);
    s.wait_ready("tight", 1).await;
    let calls = (0..3).map(|_| {
        let http = s.http.clone();
        let url = s.url("/tight?ms=1500");
        tokio::spawn(async move {
            let r = http.get(url).send().await.expect("call");
            let code = r.status().as_u16();
            (code, r.text().await.unwrap_or_default())
        })
    });
    let mut results: Vec<(u16, String)> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    results.sort();
    assert_eq!(
        results.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![200, 200, 429],
        "{results:?}"
    );
    let v: Value = serde_json::from_str(&results[2].1).expect("429 is JSON");
    assert_eq!(v["function"], "tight");

    // Drain: a 3 s call in flight on a replica being scaled down completes with 200.
    assert_eq!(s.scale("slow", 0).await, 202);
    wait_for("slow scaled to zero", Duration::from_secs(60), || async {
        s.containers("slow", true).is_empty().then_some(())
    })
    .await;
    let (code, _, _) = get(&s, "/sleep?ms=10").await; // sleep is warm (1 replica)
    assert_eq!(code, 200);
    let http = s.http.clone();
    let url = s.url("/sleep?ms=3000");
    let long = tokio::spawn(async move {
        let r = http.get(url).send().await.expect("call");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    });
    // Once it is in flight at the gateway, scale the function to zero.
    wait_for(
        "the 3 s call in flight",
        Duration::from_secs(10),
        || async {
            let h: Value = s
                .http
                .get(s.url("/healthz"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (h["in_flight"].as_u64()? >= 1).then_some(())
        },
    )
    .await;
    assert_eq!(s.scale("sleep", 0).await, 202);
    let (code, body) = long.await.expect("task");
    assert_eq!(
        code, 200,
        "the in-flight call survived the scale-down: {body}"
    );
    assert!(body.contains("3000"), "{body}");
    wait_for(
        "sleep drained and removed",
        Duration::from_secs(60),
        || async { s.containers("sleep", true).is_empty().then_some(()) },
    )
    .await;

    // A function added to the registry while the stack runs is callable, nothing restarted.
    let mut reg = registry();
    reg.push_str(&entry("late", "hello", ""));
    std::fs::write(s.registry_path(), reg).expect("write registry");
    let body = wait_for(
        "the new function answers",
        Duration::from_secs(180),
        || async {
            let (code, _, body) = get(&s, "/late?name=new").await;
            (code == 200).then_some(body)
        },
    )
    .await;
    assert_eq!(body, "Hello, new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn router_and_control_plane_restarts_keep_serving() {
    let s = ComposeStack::up_with("rs", &entry("hello", "hello", ""), false).await;
    s.wait_built("hello").await;
    assert_eq!(s.scale("hello", 1).await, 202);
    s.wait_ready("hello", 1).await;
    assert_eq!(get(&s, "/hello").await.0, 200);
    let versions = |h: &Value| h["xds"]["versions"].clone();
    let before: Value = s
        .http
        .get(s.url("/healthz"))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");

    // Router restart: resynced and serving again within 2 s of coming back.
    let router = s.service("router");
    assert!(!router.is_empty());
    docker(&["restart", "-t", "5", &router]);
    let t = Instant::now();
    wait_for("router serving again", Duration::from_secs(10), || async {
        (get(&s, "/hello").await.0 == 200).then_some(())
    })
    .await;
    let back = t.elapsed();
    println!("router restart → serving again after {back:?}");
    assert!(back < Duration::from_secs(2), "took {back:?}");

    // The control plane goes down: the data plane keeps serving its last config.
    let xds = s.service("xds-connector");
    docker(&["stop", "-t", "5", &xds]);
    for _ in 0..20 {
        assert_eq!(
            get(&s, "/hello").await.0,
            200,
            "served while the xds-connector is down"
        );
    }
    // It comes back with the same config (from Redis); the gateway resyncs to the same versions.
    docker(&["start", &xds]);
    wait_for(
        "gateway resynced to the same versions",
        Duration::from_secs(30),
        || async {
            let h: Value = s
                .http
                .get(s.url("/healthz"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (h["xds"]["connected"] == true && versions(&h) == versions(&before)).then_some(())
        },
    )
    .await;
    assert_eq!(get(&s, "/hello").await.0, 200);
}
