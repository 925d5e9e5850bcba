//! The real `stats-listener` binary on free ports against a real `redis-server`, fed real
//! UDP packets. Every wait polls with a deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use redis::AsyncCommands;
use serde_json::Value;
use sluice_common::testing::{free_port, wait_for, ChildGuard, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_stats-listener");
const DEADLINE: Duration = Duration::from_secs(10);

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free udp port")
}

/// A running stats-listener.
struct Listener {
    child: ChildGuard,
    udp: SocketAddr,
    admin: String,
    instance: String,
    http: reqwest::Client,
    sender: tokio::net::UdpSocket,
}

impl Listener {
    async fn start(redis_url: &str, instance: &str, env: &[(&str, &str)]) -> Listener {
        let udp: SocketAddr = format!("127.0.0.1:{}", free_udp_port())
            .parse()
            .expect("addr");
        let admin_port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.env("SLUICE_LISTEN", udp.to_string())
            .env("SLUICE_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
            .env("SLUICE_REDIS_URL", redis_url)
            .env("SLUICE_INSTANCE", instance)
            .env("SLUICE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = ChildGuard(Some(cmd.spawn().expect("spawn stats-listener")));
        let l = Listener {
            child,
            udp,
            admin: format!("http://127.0.0.1:{admin_port}"),
            instance: instance.to_string(),
            http: reqwest::Client::new(),
            sender: tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("udp sender"),
        };
        let url = format!("{}/healthz", l.admin);
        let http = l.http.clone();
        wait_for("stats-listener /healthz", DEADLINE, || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http.get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        l
    }

    async fn send(&self, packet: &str) {
        self.send_bytes(packet.as_bytes()).await;
    }

    async fn send_bytes(&self, packet: &[u8]) {
        self.sender
            .send_to(packet, self.udp)
            .await
            .expect("udp send");
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.admin))
            .send()
            .await
            .expect("admin request")
            .json()
            .await
            .expect("admin json")
    }

    /// Waits until `/v1/stats` shows `n` lines read.
    async fn wait_lines(&self, n: u64) -> Value {
        wait_for(&format!("{n} lines read"), DEADLINE, || async {
            let s = self.get("/v1/stats").await;
            (s["lines"].as_u64() == Some(n)).then_some(s)
        })
        .await
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.instance)
    }
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection")
}

async fn hgetall(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> HashMap<String, String> {
    conn.hgetall(key).await.expect("HGETALL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_hash_shows_gauges_counters_and_percentiles_of_the_window() {
    let redis = RedisServer::start();
    let l = Listener::start(&redis.url(), "t-load", &[("SLUICE_WINDOW", "2s")]).await;
    let mut conn = redis_conn(&redis.url()).await;

    // One packet (one window): gauges, 100 requests (sampled at 10 %), latencies 1..=100 ms.
    let samples: Vec<String> = (1..=100).map(|v| v.to_string()).collect();
    let packet = format!(
        "cluster.hello.upstream_rq_active:5|g|#router:r1\n\
         cluster.hello.upstream_rq_pending_active:0|g|#router:r1\n\
         cluster.hello.upstream_rq_total:10|c|@0.1|#router:r1\n\
         cluster.hello.upstream_rq_2xx:90|c|#router:r1\n\
         cluster.hello.upstream_rq_4xx:4|c|#router:r1\n\
         cluster.hello.upstream_rq_5xx:6|c|#router:r1\n\
         cluster.hello.endpoint.hello-1.upstream_rq_active:5|g|#router:r1\n\
         cluster.hello.upstream_rq_time:{}|ms|#router:r1\n",
        samples.join(":")
    );
    l.send(&packet).await;

    let key = l.key("load:hello");
    let h = wait_for("a window with the 100 requests", DEADLINE, || {
        let (key, mut conn) = (key.clone(), conn.clone());
        async move {
            let h = hgetall(&mut conn, &key).await;
            (h.get("rq_total").map(String::as_str) == Some("100")).then_some(h)
        }
    })
    .await;
    println!("{key}: {h:?}");
    let f = |k: &str| h.get(k).map(String::as_str).unwrap_or("<missing>");
    assert_eq!(f("active"), "5");
    assert_eq!(f("pending"), "0");
    assert_eq!(f("rps"), "50", "100 requests in a 2 s window");
    assert_eq!((f("rq_2xx"), f("rq_4xx"), f("rq_5xx")), ("90", "4", "6"));
    assert_eq!((f("p50_ms"), f("p95_ms"), f("p99_ms")), ("50", "95", "99"));
    assert_eq!(f("latency_samples"), "100");
    assert_eq!(f("routers"), "1");
    assert_eq!(f("endpoint.hello-1.active"), "5");
    let end: u64 = f("window_end_unix_ms").parse().expect("window end");
    assert_eq!(f("last_request_unix_ms"), end.to_string());
    let ttl: i64 = conn.pttl(&key).await.expect("PTTL");
    assert!(ttl > 0 && ttl <= 30_000, "hash TTL {ttl} ms");

    // The same window is on the history list as JSON.
    let hist: Vec<String> = conn
        .lrange(l.key("load:hello:history"), 0, -1)
        .await
        .expect("LRANGE");
    let w = hist
        .iter()
        .filter_map(|j| serde_json::from_str::<Value>(j).ok())
        .find(|w| w["rq_total"] == 100)
        .expect("window in history");
    assert_eq!(w["p99_ms"], 99);
    assert_eq!(w["window_end_unix_ms"], end);
    assert_eq!(w["function"], "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routers_are_summed_and_a_silent_router_expires() {
    let redis = RedisServer::start();
    let l = Listener::start(
        &redis.url(),
        "t-routers",
        &[("SLUICE_WINDOW", "200ms"), ("SLUICE_GAUGE_EXPIRY", "1s")],
    )
    .await;
    let conn = redis_conn(&redis.url()).await;
    let key = l.key("load:fn-a");
    let read = |want_active: &'static str, want_routers: &'static str| {
        let (key, conn) = (key.clone(), conn.clone());
        move || {
            let (key, mut conn) = (key.clone(), conn.clone());
            async move {
                let h = hgetall(&mut conn, &key).await;
                (h.get("active").map(String::as_str) == Some(want_active)
                    && h.get("routers").map(String::as_str) == Some(want_routers))
                .then_some(h)
            }
        }
    };
    l.send(
        "cluster.fn-a.upstream_rq_active:3|g|#router:r1\n\
         cluster.fn-a.upstream_rq_active:4|g|#router:r2\n",
    )
    .await;
    wait_for("active 3 + 4", DEADLINE, read("7", "2")).await;
    // Deltas apply per router.
    let r2_last = Instant::now();
    l.send("cluster.fn-a.upstream_rq_active:+2|g|#router:r2\n")
        .await;
    wait_for("active 3 + 6", DEADLINE, read("9", "2")).await;

    // r1 keeps reporting, r2 falls silent: its 6 stop counting after the expiry (1 s).
    let probe = read("3", "1");
    let h = wait_for("r2 expired", DEADLINE, || {
        let fut = probe();
        let l = &l;
        async move {
            l.send("cluster.fn-a.upstream_rq_active:3|g|#router:r1\n")
                .await;
            fut.await
        }
    })
    .await;
    let silent = r2_last.elapsed();
    println!("silent router dropped from the sum {silent:?} after its last report: {h:?}");
    assert!(
        silent >= Duration::from_millis(950),
        "not before the expiry: {silent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queueing_is_signalled_at_once_not_at_the_window_end() {
    let redis = RedisServer::start();
    let l = Listener::start(&redis.url(), "t-signal", &[("SLUICE_WINDOW", "10s")]).await;
    let client = redis::Client::open(redis.url()).expect("url");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub
        .subscribe(l.key("scale-signal"))
        .await
        .expect("SUBSCRIBE");
    let mut messages = pubsub.on_message();

    let mut latencies = Vec::new();
    for round in 0..5 {
        // 0 → 3 pending is a rising edge.
        l.send("cluster.sig.upstream_rq_pending_active:0|g|#router:r1\n")
            .await;
        l.send("cluster.sig.upstream_rq_active:8|g|#router:r1\n")
            .await;
        let sent = Instant::now();
        l.send("cluster.sig.upstream_rq_pending_active:3|g|#router:r1\n")
            .await;
        let msg = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("a scale signal within 5 s")
            .expect("pubsub stream open");
        let latency = sent.elapsed();
        let payload: String = msg.get_payload().expect("payload");
        let v: Value = serde_json::from_str(&payload).expect("signal JSON");
        assert_eq!(v["function"], "sig", "{payload}");
        assert_eq!(v["pending"].as_f64(), Some(3.0), "{payload}");
        assert_eq!(v["active"].as_f64(), Some(8.0), "{payload}");
        assert_eq!(v["held"].as_f64(), Some(0.0), "{payload}");
        assert!(v["unix_ms"].as_u64().is_some_and(|t| t > 1_600_000_000_000));
        println!("round {round}: scale signal after {latency:?}: {payload}");
        latencies.push(latency);
    }
    latencies.sort();
    println!(
        "scale signal latency: median {:?}, max {:?} (window 10 s)",
        latencies[2], latencies[4]
    );
    assert!(
        latencies[4] < Duration::from_millis(500),
        "signals must not wait for the window end: {latencies:?}"
    );
    let stats = l.get("/v1/stats").await;
    assert_eq!(stats["signals"]["published"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_lines_are_counted_and_good_lines_still_aggregated() {
    let redis = RedisServer::start();
    let l = Listener::start(&redis.url(), "t-garbage", &[("SLUICE_WINDOW", "300ms")]).await;
    let mut conn = redis_conn(&redis.url()).await;
    let mut packet = Vec::new();
    packet.extend_from_slice(b"cluster.mix.upstream_rq_total:4|c\n");
    packet.extend_from_slice(b"this is not statsd\n");
    packet.extend_from_slice(b"cluster.mix.upstream_rq_total:abc|c\n");
    packet.extend_from_slice(b"cluster.mix.upstream_rq_total:1|zz\n");
    packet.extend_from_slice(b"cluster.mix.upstream_rq_total:1|c|@7\n");
    packet.extend_from_slice(b"cluster.mix.upstream_rq_total:\xff\xfe|c\n");
    packet.extend_from_slice(b"cluster.mix.upstream_rq_total:NaN|c\n");
    packet.extend_from_slice(b":1|c\n");
    packet.extend_from_slice(b"cluster.mix.upstream_rq_total:3|c\n");
    packet.extend_from_slice(b"some.other.metric:1|c\n");
    l.send_bytes(&packet).await;

    let s = l.wait_lines(10).await;
    println!("/v1/stats: {s}");
    assert_eq!(s["lines_ok"], 3);
    let m = &s["malformed"];
    assert_eq!(m["total"], 7);
    for reason in [
        "missing_colon",
        "invalid_value",
        "unknown_type",
        "invalid_rate",
        "invalid_utf8",
        "non_finite_value",
        "empty_name",
    ] {
        assert_eq!(m[reason], 1, "{reason}: {m}");
    }
    assert_eq!(s["metrics"]["other"], 1);
    assert_eq!(s["metrics"]["known"], 2);

    // Good lines of the same packet were aggregated (4 + 3 in one window).
    let hist_key = l.key("load:mix:history");
    wait_for("the good lines' window", DEADLINE, || {
        let (k, mut conn) = (hist_key.clone(), conn.clone());
        async move {
            let h: Vec<String> = conn.lrange(&k, 0, -1).await.ok()?;
            h.iter()
                .filter_map(|j| serde_json::from_str::<Value>(j).ok())
                .any(|w| w["rq_total"] == 7)
                .then_some(())
        }
    })
    .await;

    // The counts reach Redis at the next window end.
    let key = l.key("stats-listener");
    let h = wait_for("malformed counts in redis", DEADLINE, || {
        let (key, mut conn) = (key.clone(), conn.clone());
        async move {
            let h = hgetall(&mut conn, &key).await;
            (h.get("malformed_total").map(String::as_str) == Some("7")).then_some(h)
        }
    })
    .await;
    assert_eq!(h["malformed.invalid_value"], "1");
    assert_eq!(h["malformed.invalid_utf8"], "1");
    assert_eq!(h["lines"], "10");
    let _: () = conn.del(&key).await.expect("DEL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_list_grows_and_is_capped() {
    let redis = RedisServer::start();
    let l = Listener::start(
        &redis.url(),
        "t-history",
        &[("SLUICE_WINDOW", "100ms"), ("SLUICE_HISTORY_LEN", "5")],
    )
    .await;
    let mut conn = redis_conn(&redis.url()).await;
    let key = l.key("load:hist:history");
    l.send("cluster.hist.upstream_rq_active:1|g\n").await;

    let lengths = std::sync::Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
    let newest_at_cap = wait_for("5 windows of history", DEADLINE, || {
        let (key, mut conn, lengths) = (key.clone(), conn.clone(), lengths.clone());
        async move {
            let len: usize = conn.llen(&key).await.ok()?;
            {
                let mut seen = lengths.lock().expect("lock");
                if seen.last() != Some(&len) {
                    seen.push(len);
                }
            }
            let newest: Option<String> = conn.lindex(&key, 0).await.ok()?;
            (len == 5).then_some(newest)
        }
    })
    .await
    .expect("newest window");
    let lengths = lengths.lock().expect("lock").clone();
    println!("history lengths seen: {lengths:?}");
    assert!(
        lengths.windows(2).all(|w| w[0] < w[1]),
        "grows: {lengths:?}"
    );

    // More windows close; the list stays at 5, newest first.
    let first: Value = serde_json::from_str(&newest_at_cap).expect("json");
    let first_end = first["window_end_unix_ms"].as_u64().expect("end");
    let items = wait_for("a newer window", DEADLINE, || {
        let (key, mut conn) = (key.clone(), conn.clone());
        async move {
            let items: Vec<String> = conn.lrange(&key, 0, -1).await.ok()?;
            let newest: Value = serde_json::from_str(items.first()?).ok()?;
            (newest["window_end_unix_ms"].as_u64()? > first_end + 300).then_some(items)
        }
    })
    .await;
    assert_eq!(items.len(), 5);
    let ends: Vec<u64> = items
        .iter()
        .map(|j| {
            serde_json::from_str::<Value>(j).expect("json")["window_end_unix_ms"]
                .as_u64()
                .expect("end")
        })
        .collect();
    assert!(
        ends.windows(2).all(|w| w[0] > w[1]),
        "newest first: {ends:?}"
    );
    let ttl: i64 = conn.pttl(&key).await.expect("PTTL");
    assert!(ttl > 0, "history has a TTL ({ttl})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_the_open_window_and_exits_0() {
    let redis = RedisServer::start();
    let mut l = Listener::start(&redis.url(), "t-term", &[("SLUICE_WINDOW", "60s")]).await;
    let mut conn = redis_conn(&redis.url()).await;
    l.send("cluster.bye.upstream_rq_total:5|c\ncluster.bye.upstream_rq_time:12|ms\n")
        .await;
    l.wait_lines(2).await;

    let term_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let (status, l) = tokio::task::spawn_blocking(move || {
        let s = l.child.terminate();
        (s, l)
    })
    .await
    .expect("join");
    assert!(status.success(), "exit status {status:?}");

    // The open window was written on the way out: it ends after SIGTERM, is shorter than
    // the 60 s window, and holds the 5 requests (the history also covers the unlikely case
    // of a 60 s boundary falling between the send and SIGTERM).
    let newest: Option<String> = conn
        .lindex(l.key("load:bye:history"), 0)
        .await
        .expect("LINDEX");
    let newest: Value = serde_json::from_str(&newest.expect("flushed window")).expect("json");
    assert!(
        newest["window_end_unix_ms"].as_u64().expect("end") >= term_unix_ms,
        "{newest}"
    );
    assert!(
        newest["window_ms"].as_u64().expect("len") < 60_000,
        "{newest}"
    );
    let hist: Vec<String> = conn
        .lrange(l.key("load:bye:history"), 0, -1)
        .await
        .expect("LRANGE");
    let total: u64 = hist
        .iter()
        .filter_map(|j| serde_json::from_str::<Value>(j).ok())
        .filter_map(|w| w["rq_total"].as_u64())
        .sum();
    assert_eq!(total, 5, "{hist:?}");
    let h = hgetall(&mut conn, &l.key("load:bye")).await;
    assert_eq!(
        h.get("window_end_unix_ms"),
        Some(&newest["window_end_unix_ms"].to_string())
    );
}

/// Waits until a window with `rq_total == n` is on `key` (a history list).
async fn wait_window_with_total(url: &str, key: &str, n: u64) {
    let conn = redis_conn(url).await;
    wait_for(
        &format!("a window with rq_total {n} on {key}"),
        Duration::from_secs(20),
        || {
            let (key, mut conn) = (key.to_string(), conn.clone());
            async move {
                let h: Vec<String> = conn.lrange(&key, 0, -1).await.ok()?;
                h.iter()
                    .filter_map(|j| serde_json::from_str::<Value>(j).ok())
                    .any(|w| w["rq_total"] == n)
                    .then_some(())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outages_keep_aggregating_and_windows_are_written_when_redis_is_back() {
    // A port where no redis runs yet: the listener starts anyway.
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let l = Listener::start(&url, "t-outage", &[("SLUICE_WINDOW", "200ms")]).await;
    let health = l.get("/healthz").await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["redis"]["reachable"], false, "{health}");
    let write_errors = || async {
        l.get("/v1/stats").await["windows"]["redis_write_errors"]
            .as_u64()
            .unwrap_or(0)
    };

    l.send("cluster.down.upstream_rq_total:7|c\n").await;
    l.wait_lines(1).await;
    wait_for("failed redis writes", DEADLINE, || async {
        (write_errors().await > 0).then_some(())
    })
    .await;
    let key = l.key("load:down:history");
    let mut redis = RedisServer::start_on(port);
    wait_window_with_total(&url, &key, 7).await;
    let health = l.get("/healthz").await;
    assert_eq!(health["redis"]["reachable"], true, "{health}");

    // Redis goes away while the listener is connected, then comes back (empty).
    let _ = redis.terminate();
    let errors_before = write_errors().await;
    l.send("cluster.down.upstream_rq_total:11|c\n").await;
    l.wait_lines(2).await;
    wait_for(
        "failed writes during the second outage",
        DEADLINE,
        || async { (write_errors().await > errors_before).then_some(()) },
    )
    .await;
    let _redis = RedisServer::start_on(port);
    wait_window_with_total(&url, &key, 11).await;
    let s = l.get("/v1/stats").await;
    println!("after two outages: windows {}", s["windows"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_subcommand_and_json_404() {
    let redis = RedisServer::start();
    let l = Listener::start(&redis.url(), "t-health", &[]).await;
    let ok = Command::new(BIN)
        .args(["healthcheck", &format!("{}/healthz", l.admin)])
        .status()
        .expect("run healthcheck");
    assert!(ok.success());
    let closed = Command::new(BIN)
        .args([
            "healthcheck",
            &format!("http://127.0.0.1:{}/healthz", free_port()),
        ])
        .stderr(Stdio::null())
        .status()
        .expect("run healthcheck");
    assert_eq!(closed.code(), Some(1));
    let health = l.get("/healthz").await;
    assert_eq!(health["redis"]["reachable"], true, "{health}");
    let r = l
        .http
        .get(format!("{}/nope", l.admin))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "not found");
}
