//! The router reports load over statsD (to a real UDP socket standing where the
//! stats-listener would be).

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

/// Receives datagrams until `done` accepts the lines seen so far, or panics at the deadline.
async fn collect_until(
    sock: &tokio::net::UdpSocket,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if done(&lines) {
            return lines;
        }
        match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => lines.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_string),
            ),
            Ok(Err(e)) => panic!("recv: {e}"),
            Err(_) => panic!("timed out waiting for {what}; got {lines:#?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_reports_active_pending_totals_and_latency_per_function() {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    let statsd = sock.local_addr().expect("addr").to_string();
    let cp = ControlPlane::start("statsd").await;
    let router = Router::start_with(
        &cp,
        "statsd",
        free_port(),
        free_port(),
        &[
            ("SLUICE_STATSD", statsd),
            ("SLUICE_STATSD_FLUSH_MS", "100".into()),
        ],
    )
    .await;
    let up = Upstream::start("statsd-a").await;
    cp.put_function("fn1", cluster(1, 10, 10_000), json!([up.endpoint(0)]))
        .await;
    router.wait_routable("fn1").await;
    let tag = format!("|#router:{}", router.node_id);

    // One slow call holds the only slot, a second one queues behind it.
    let mut calls = Vec::new();
    for _ in 0..2 {
        let url = router.url("/fn1/?sleep_ms=800");
        calls.push(tokio::spawn(async move {
            client().get(&url).send().await.map(|r| r.status().as_u16())
        }));
    }
    // A flush's lines go through a queue to a sender thread that packs them into datagrams:
    // the per-endpoint gauge may arrive in a later datagram than the cluster's. Waiting for
    // all three is the assertion (collect_until fails at its deadline).
    collect_until(
        &sock,
        "active 1 and pending 1, and the per-endpoint gauge",
        |l| {
            l.iter()
                .any(|x| x == &format!("cluster.fn1.upstream_rq_active:1|g{tag}"))
                && l.iter()
                    .any(|x| x == &format!("cluster.fn1.upstream_rq_pending_active:1|g{tag}"))
                && l.iter().any(|x| {
                    x.starts_with("cluster.fn1.endpoint.") && x.contains(".upstream_rq_active:1|g")
                })
        },
    )
    .await;
    for c in calls {
        assert_eq!(c.await.expect("task").expect("call"), 200);
    }
    // Both finished: totals, status class and one latency sample each (≥ 800 ms).
    let lines = collect_until(&sock, "totals and timers", |l| {
        let total: u64 = l
            .iter()
            .filter_map(|x| x.strip_prefix("cluster.fn1.upstream_rq_total:"))
            .filter_map(|x| x.split('|').next()?.parse::<u64>().ok())
            .sum();
        total >= 2 && timer_values(l).len() >= 2
    })
    .await;
    let two_xx: u64 = lines
        .iter()
        .filter_map(|x| x.strip_prefix("cluster.fn1.upstream_rq_2xx:"))
        .filter_map(|x| x.split('|').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(two_xx, 2);
    // Latency samples travel as multi-value timer lines, one sample per request.
    let values = timer_values(&lines);
    assert_eq!(values.len(), 2, "{lines:#?}");
    assert!(values.iter().all(|&ms| ms >= 790), "{values:?}");
    for t in lines
        .iter()
        .filter(|x| x.starts_with("cluster.fn1.upstream_rq_time:"))
    {
        assert!(t.contains("|ms|") && t.ends_with(&tag), "{t}");
    }
}

/// Every value of every `cluster.fn1.upstream_rq_time` line (`name:v1:v2|ms|#tags`).
fn timer_values(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|x| x.strip_prefix("cluster.fn1.upstream_rq_time:"))
        .filter_map(|x| x.split('|').next())
        .flat_map(|vals| {
            vals.split(':')
                .filter_map(|v| v.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}
