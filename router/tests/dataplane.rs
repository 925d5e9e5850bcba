//! Process-level tests of the router: the real xds-connector (with a real redis-server) pushes
//! config to the real router binary, which proxies to real HTTP upstreams on loopback.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_common::testing::wait_for;
use support::{
    client, closed_address, cluster, free_port, ControlPlane, Router, Upstream, ENDPOINTS_TYPE,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = client().get(url).send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn replica(h: &reqwest::header::HeaderMap) -> String {
    h.get("x-sluice-replica")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_header_and_first_segment_and_404s_unknown_functions() {
    let cp = ControlPlane::start("routing").await;
    let router = Router::start(&cp, "routing").await;
    let up = Upstream::start("hello-a").await;
    cp.put_function("hello", cluster(0, 10, 1000), json!([up.endpoint(0)]))
        .await;
    router.wait_routable("hello").await;

    // First path segment names the function and is stripped.
    let (status, headers, body) = get(&router.url("/hello/x/y?q=1&r=2")).await;
    assert_eq!(status, 200);
    assert_eq!(body["path"], "/x/y?q=1&r=2");
    assert_eq!(replica(&headers), "hello-a-replica");
    let (_, _, body) = get(&router.url("/hello")).await;
    assert_eq!(body["path"], "/");
    let (_, _, body) = get(&router.url("/hello?a=b")).await;
    assert_eq!(body["path"], "/?a=b");

    // The header names the function and the path is passed as is.
    let r = client()
        .post(router.url("/sub/path?z=9"))
        .header("X-Sluice-Function", "hello")
        .body("payload")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["path"], "/sub/path?z=9");

    // Unknown functions: 404 JSON naming the function, by path and by header.
    let (status, headers, body) = get(&router.url("/nope/x")).await;
    assert_eq!(status, 404);
    assert_eq!(
        headers.get("content-type").expect("content-type"),
        "application/json"
    );
    assert_eq!(
        body,
        json!({"error": "unknown function", "function": "nope"})
    );
    let r = client()
        .get(router.url("/hello"))
        .header("X-Sluice-Function", "ghost")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["function"], "ghost");
    let (status, _, body) = get(&router.url("/")).await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_of_endpoints_takes_effect_promptly() {
    let cp = ControlPlane::start("push").await;
    let router = Router::start(&cp, "push").await;
    let (a, b) = (
        Upstream::start("push-a").await,
        Upstream::start("push-b").await,
    );
    cp.put_function("fn1", cluster(0, 10, 1000), json!([a.endpoint(0)]))
        .await;
    router.wait_routable("fn1").await;

    // Swap the endpoint and time until the new one serves.
    let start = Instant::now();
    cp.put_function("fn1", cluster(0, 10, 1000), json!([b.endpoint(0)]))
        .await;
    let c = client();
    let url = router.url("/fn1/");
    wait_for("new endpoint serving", Duration::from_secs(5), || {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let r = c.get(&url).send().await.ok()?;
            (replica(r.headers()) == "push-b-replica").then_some(())
        }
    })
    .await;
    let swap = start.elapsed();

    // A brand-new function: PUT to first 200.
    let start = Instant::now();
    cp.put_function("fn2", cluster(0, 10, 1000), json!([a.endpoint(0)]))
        .await;
    let new_fn = start.elapsed() + router.wait_routable("fn2").await;
    println!("push-to-effect latency: endpoint swap {swap:?}, new function {new_fn:?}");
    assert!(swap < Duration::from_millis(1000), "swap took {swap:?}");
    assert!(
        new_fn < Duration::from_millis(1000),
        "new function took {new_fn:?}"
    );

    // Versions are reported by the admin API.
    let cfg = router.admin_json("/v1/config").await;
    assert_eq!(cfg["xds"]["connected"], true);
    assert!(cfg["versions"][ENDPOINTS_TYPE].is_string(), "{cfg}");
    assert_eq!(cfg["routes"]["fn2"], "fn2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_spreads_load_over_two_replicas() {
    let cp = ControlPlane::start("p2c").await;
    let router = Router::start(&cp, "p2c").await;
    let (a, b) = (
        Upstream::start("p2c-a").await,
        Upstream::start("p2c-b").await,
    );
    cp.put_function(
        "spread",
        cluster(0, 100, 5000),
        json!([a.endpoint(0), b.endpoint(0)]),
    )
    .await;
    router.wait_routable("spread").await;
    let (a0, b0) = (a.stats.total(), b.stats.total());

    let total = 400;
    let workers = 8;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let url = router.url("/spread/work?sleep_ms=2");
        tasks.push(tokio::spawn(async move {
            let c = client();
            for _ in 0..total / workers {
                let r = c.get(&url).send().await.expect("request");
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let took = start.elapsed();
    let (na, nb) = (a.stats.total() - a0, b.stats.total() - b0);
    println!(
        "p2c: {na} / {nb} requests over 2 replicas, {:.0} rps with {workers} clients",
        total as f64 / took.as_secs_f64()
    );
    assert_eq!(na + nb, total);
    assert!(
        na >= total / 4 && nb >= total / 4,
        "uneven spread: {na} / {nb}"
    );

    let stats = router.admin_json("/v1/stats").await;
    let s = &stats["clusters"]["spread"]["stats"];
    assert!(s["status_2xx"].as_u64().expect("2xx") >= total as u64);
    assert_eq!(s["active"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_replica_cap_serves_two_at_a_time() {
    let cp = ControlPlane::start("caps").await;
    let router = Router::start(&cp, "caps").await;
    let (a, b) = (
        Upstream::start("caps-a").await,
        Upstream::start("caps-b").await,
    );
    cp.put_function(
        "slow",
        cluster(1, 10, 10_000),
        json!([a.endpoint(0), b.endpoint(0)]),
    )
    .await;
    router.wait_routable("slow").await;

    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = router.url("/slow/?sleep_ms=1000");
        tasks.push(tokio::spawn(async move {
            let r = client().get(&url).send().await.expect("request");
            r.status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
    }
    let took = start.elapsed();
    println!("4 x 1 s calls over 2 replicas capped at 1: {took:?}");
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(took < Duration::from_millis(3500), "{took:?}");
    assert_eq!(a.stats.max_concurrent(), 1);
    assert_eq!(b.stats.max_concurrent(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_429_and_expired_wait_is_503() {
    let cp = ControlPlane::start("queue").await;
    let router = Router::start(&cp, "queue").await;
    let up = Upstream::start("queue-a").await;
    cp.put_function("q", cluster(1, 1, 1500), json!([up.endpoint(0)]))
        .await;
    router.wait_routable("q").await;

    // Occupy the only slot...
    let busy_url = router.url("/q/?sleep_ms=4000");
    let busy =
        tokio::spawn(async move { client().get(&busy_url).send().await.map(|r| r.status()) });
    wait_for("slot taken", Duration::from_secs(5), || async {
        (up.stats.current() == 1).then_some(())
    })
    .await;
    // ...fill the queue...
    let queued_url = router.url("/q/");
    let queued = tokio::spawn(async move {
        let start = Instant::now();
        let r = client().get(&queued_url).send().await.expect("request");
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (
            r.status().as_u16(),
            retry_after,
            r.json::<Value>().await.ok(),
            start.elapsed(),
        )
    });
    wait_for("one queued", Duration::from_secs(5), || async {
        let v = router.admin_json("/v1/queues").await;
        let q = v.as_array()?.iter().find(|q| q["cluster"] == "q")?.clone();
        (q["queued"] == 1).then_some(())
    })
    .await;
    // ...and overflow: 429 at once.
    let (status, _, body) = get(&router.url("/q/")).await;
    assert_eq!(status, 429);
    assert_eq!(body["function"], "q");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("queue full"),
        "{body}"
    );

    // The queued one expires: 503 JSON with Retry-After.
    let (status, retry_after, body, waited) = queued.await.expect("task");
    assert_eq!(status, 503);
    assert_eq!(retry_after.as_deref(), Some("1"));
    let body = body.expect("json body");
    assert_eq!(body["function"], "q");
    assert!(waited >= Duration::from_millis(1400), "{waited:?}");
    assert_eq!(busy.await.expect("task").expect("busy call"), 200);
    assert_eq!(up.stats.max_concurrent(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_on_the_other_endpoint() {
    let cp = ControlPlane::start("retry").await;
    let router = Router::start(&cp, "retry").await;
    let live = Upstream::start("retry-live").await;
    let dead =
        json!({"id": "retry-dead", "address": closed_address(), "weight": 1, "replica": "dead"});
    cp.put_function("r", cluster(0, 10, 2000), json!([dead, live.endpoint(0)]))
        .await;
    router.wait_routable("r").await;
    for _ in 0..20 {
        let (status, headers, _) = get(&router.url("/r/")).await;
        assert_eq!(status, 200);
        assert_eq!(replica(&headers), "retry-live-replica");
    }
    let stats = router.admin_json("/v1/stats").await;
    let retries = stats["clusters"]["r"]["stats"]["retries"]
        .as_u64()
        .expect("retries");
    let failures = stats["clusters"]["r"]["endpoints"]["retry-dead"]["connect_failures"]
        .as_u64()
        .expect("connect failures");
    println!("connect failures retried: {retries}");
    assert!(retries >= 1 && failures == retries, "{stats}");

    // Only a dead endpoint: 502 JSON, no endless retry.
    let dead = json!({"id": "only-dead", "address": closed_address(), "weight": 1});
    cp.put_function("d", cluster(0, 10, 2000), json!([dead]))
        .await;
    let c = client();
    let url = router.url("/d/");
    let body = wait_for(
        "502 from the dead-only function",
        Duration::from_secs(5),
        || {
            let (c, url) = (c.clone(), url.clone());
            async move {
                let r = c.get(&url).send().await.ok()?;
                if r.status() == 502 {
                    r.json::<Value>().await.ok()
                } else {
                    None
                }
            }
        },
    )
    .await;
    assert_eq!(body["function"], "d");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_endpoint_drains_its_in_flight_call() {
    let cp = ControlPlane::start("drain").await;
    let router = Router::start(&cp, "drain").await;
    let (a, b) = (
        Upstream::start("drain-a").await,
        Upstream::start("drain-b").await,
    );
    cp.put_function(
        "d",
        cluster(1, 10, 5000),
        json!([a.endpoint(0), b.endpoint(0)]),
    )
    .await;
    router.wait_routable("d").await;
    let before = [
        (a.name.clone(), a.stats.total()),
        (b.name.clone(), b.stats.total()),
    ];

    let long_url = router.url("/d/?sleep_ms=3000");
    let long = tokio::spawn(async move {
        let r = client().get(&long_url).send().await.expect("request");
        (r.status().as_u16(), replica(r.headers()))
    });
    let busy = wait_for("long call in flight", Duration::from_secs(5), || async {
        let eps = router.endpoints("d").await;
        eps.iter()
            .find(|e| e["in_flight"] == 1)
            .map(|e| e["id"].as_str().unwrap_or_default().to_string())
    })
    .await;
    let (gone, stays) = if busy == "drain-a" {
        (&a, &b)
    } else {
        (&b, &a)
    };

    // Remove the busy endpoint from the config.
    cp.put_function("d", cluster(1, 10, 5000), json!([stays.endpoint(0)]))
        .await;
    wait_for("draining shown", Duration::from_secs(5), || async {
        let eps = router.endpoints("d").await;
        let e = eps.iter().find(|e| e["id"] == gone.name)?;
        (e["state"] == "draining" && e["in_flight"] == 1).then_some(())
    })
    .await;
    // New requests go to the other endpoint.
    for _ in 0..5 {
        let (status, headers, _) = get(&router.url("/d/")).await;
        assert_eq!(status, 200);
        assert_eq!(replica(&headers), format!("{}-replica", stays.name));
    }
    let gone_before = before
        .iter()
        .find(|(n, _)| *n == gone.name)
        .map_or(0, |(_, t)| *t);
    assert_eq!(
        gone.stats.total() - gone_before,
        1,
        "the removed endpoint got new requests"
    );
    // The in-flight call completes, then the endpoint disappears.
    let (status, served_by) = long.await.expect("task");
    assert_eq!(status, 200);
    assert_eq!(served_by, format!("{}-replica", gone.name));
    wait_for("drained endpoint gone", Duration::from_secs(5), || async {
        let eps = router.endpoints("d").await;
        (eps.len() == 1 && eps[0]["id"] == stays.name.as_str()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_resource_is_nacked_and_previous_config_kept() {
    let cp = ControlPlane::start("nack").await;
    let router = Router::start(&cp, "nack").await;
    let up = Upstream::start("nack-a").await;
    cp.put_function("n", cluster(0, 10, 1000), json!([up.endpoint(0)]))
        .await;
    router.wait_routable("n").await;

    let bad = json!({"id": "bad", "address": "not-an-address", "weight": 1});
    cp.put_function("n", cluster(0, 10, 1000), json!([bad]))
        .await;
    let nack = wait_for(
        "NACK visible on the connector",
        Duration::from_secs(5),
        || async {
            let entry = cp.client_entry(&router.node_id).await?;
            let nack = entry["types"][ENDPOINTS_TYPE]["last_nack"].clone();
            (!nack.is_null()).then_some(nack)
        },
    )
    .await;
    assert!(
        nack["error"]
            .as_str()
            .expect("error text")
            .contains("not-an-address"),
        "{nack}"
    );
    // Still serving the previous endpoint.
    let (status, headers, _) = get(&router.url("/n/")).await;
    assert_eq!(status, 200);
    assert_eq!(replica(&headers), "nack-a-replica");
    let eps = router.endpoints("n").await;
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0]["address"], up.address());
    let cfg = router.admin_json("/v1/config").await;
    assert!(!cfg["xds"]["last_nack"].is_null(), "{cfg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_router_resyncs_and_serves_within_2s() {
    let cp = ControlPlane::start("restart").await;
    let (port, admin_port) = (free_port(), free_port());
    let mut router = Router::start_on(&cp, "restart", port, admin_port).await;
    let up = Upstream::start("restart-a").await;
    cp.put_function("rs", cluster(0, 10, 1000), json!([up.endpoint(0)]))
        .await;
    router.wait_routable("rs").await;

    // Kill it hard and start a new one on the same ports.
    if let Some(mut c) = router.child.0.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let start = Instant::now();
    let router = Router::start_on(&cp, "restart", port, admin_port).await;
    router.wait_routable("rs").await;
    let took = start.elapsed();
    println!("router restart to first 200: {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_keeps_serving_when_the_connector_stops() {
    let mut cp = ControlPlane::start("cpdown").await;
    let router = Router::start(&cp, "cpdown").await;
    let up = Upstream::start("cpdown-a").await;
    cp.put_function("k", cluster(0, 10, 1000), json!([up.endpoint(0)]))
        .await;
    router.wait_routable("k").await;

    cp.kill();
    wait_for(
        "router sees the stream down",
        Duration::from_secs(5),
        || async {
            let cfg = router.admin_json("/v1/config").await;
            (cfg["xds"]["connected"] == false).then_some(())
        },
    )
    .await;
    for _ in 0..10 {
        let (status, headers, _) = get(&router.url("/k/")).await;
        assert_eq!(status, 200);
        assert_eq!(replica(&headers), "cpdown-a-replica");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_call_in_flight_finish_and_exits_0() {
    let cp = ControlPlane::start("sigterm").await;
    let mut router = Router::start(&cp, "sigterm").await;
    let up = Upstream::start("sigterm-a").await;
    cp.put_function("t", cluster(0, 10, 1000), json!([up.endpoint(0)]))
        .await;
    router.wait_routable("t").await;

    let url = router.url("/t/?sleep_ms=1500");
    let call = tokio::spawn(async move {
        let r = client().get(&url).send().await.expect("request");
        (r.status().as_u16(), r.json::<Value>().await.ok())
    });
    wait_for("call in flight", Duration::from_secs(5), || async {
        (up.stats.current() == 1).then_some(())
    })
    .await;
    let status = tokio::task::spawn_blocking(move || router.child.terminate())
        .await
        .expect("join");
    assert!(status.success(), "router exit status {status:?}");
    let (code, body) = call.await.expect("task");
    assert_eq!(code, 200);
    assert_eq!(body.expect("json")["upstream"], "sigterm-a");
    assert_eq!(up.stats.current.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_passes_through() {
    let cp = ControlPlane::start("ws").await;
    let router = Router::start(&cp, "ws").await;
    let up = Upstream::start("ws-a").await;
    cp.put_function("ws", cluster(0, 10, 1000), json!([up.endpoint(0)]))
        .await;
    router.wait_routable("ws").await;

    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", router.port))
        .await
        .expect("connect");
    s.write_all(
        b"GET /ws/chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("101 in time")
            .expect("read");
        assert!(n > 0, "closed before the 101");
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("x-sluice-replica: ws-a-replica"), "{head}");
    s.write_all(b"ping-through-the-router")
        .await
        .expect("write");
    let mut echoed = vec![0u8; b"ping-through-the-router".len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .expect("read echo");
    assert_eq!(&echoed, b"ping-through-the-router");
    assert_eq!(up.stats.last_path().as_deref(), Some("/chat"));
    // While the tunnel is open it holds a slot.
    let eps = router.endpoints("ws").await;
    assert_eq!(eps[0]["in_flight"], 1);
    drop(s);

    // A replica that does not upgrade: its ordinary answer is relayed.
    let r = client()
        .get(router.url("/ws/plain?refuse_upgrade=1"))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(replica(r.headers()), "ws-a-replica");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["path"], "/plain?refuse_upgrade=1");

    wait_for(
        "slot released after the tunnel closed",
        Duration::from_secs(5),
        || async {
            let eps = router.endpoints("ws").await;
            (eps[0]["in_flight"] == 0).then_some(())
        },
    )
    .await;
}
