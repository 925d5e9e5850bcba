//! Unit tests of slots, the queue and config application on one cluster.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::*;

fn settings(cap: u32, queue: u32, queue_timeout_ms: u64) -> Settings {
    Settings {
        max_concurrency: cap,
        queue_size: queue,
        queue_timeout: Duration::from_millis(queue_timeout_ms),
        ..Settings::default()
    }
}

fn pep(id: &str, port: u16) -> pb::Endpoint {
    pb::Endpoint {
        id: id.to_string(),
        address: format!("127.0.0.1:{port}"),
        weight: 1,
        max_concurrency: 0,
        health: pb::EndpointHealth::Healthy as i32,
        replica: format!("{id}-replica"),
    }
}

fn draining(mut e: pb::Endpoint) -> pb::Endpoint {
    e.health = pb::EndpointHealth::Draining as i32;
    e
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn pending(c: &ClusterState) -> usize {
    c.queue_view().queued
}

#[tokio::test]
async fn takes_free_slot_immediately_and_releases_on_drop() {
    let c = ClusterState::new("f", settings(1, 0, 0));
    c.apply(settings(1, 0, 0), &[pep("a", 1)]);
    let lease = c.acquire(None).await.expect("slot");
    assert_eq!(lease.endpoint().id(), "a");
    assert_eq!(lease.endpoint().in_flight(), 1);
    // At cap with no queue: 429.
    let err = c.acquire(None).await.expect_err("at cap");
    assert_eq!(err.kind, ErrorKind::QueueFull);
    drop(lease);
    assert_eq!(c.endpoint_views()[0].in_flight, 0);
    assert!(c.acquire(None).await.is_ok());
}

#[tokio::test]
async fn queue_is_fifo_and_woken_by_released_slots() {
    let c = ClusterState::new("f", settings(1, 10, 5000));
    c.apply(settings(1, 10, 5000), &[pep("a", 1)]);
    let first = c.acquire(None).await.expect("slot");
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for n in 0..3 {
        let (c2, order2) = (c.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let lease = c2.acquire(None).await.expect("granted");
            order2.lock().expect("lock").push(n);
            // Hold it briefly so the next one has to wait for this release.
            tokio::task::yield_now().await;
            drop(lease);
        }));
        // Make sure waiter n is queued before n+1.
        until("queued", || pending(&c) == n + 1).await;
    }
    assert_eq!(c.stats.pending.load(Ordering::Relaxed), 3);
    drop(first);
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(*order.lock().expect("lock"), vec![0, 1, 2]);
    assert_eq!(pending(&c), 0);
    assert_eq!(c.endpoint_views()[0].in_flight, 0);
}

#[tokio::test]
async fn full_queue_rejects_and_expired_wait_times_out() {
    let c = ClusterState::new("f", settings(1, 1, 200));
    c.apply(settings(1, 1, 200), &[pep("a", 1)]);
    let _held = c.acquire(None).await.expect("slot");
    let c2 = c.clone();
    let waiter = tokio::spawn(async move {
        let t = Instant::now();
        (c2.acquire(None).await.map(|_| ()), t.elapsed())
    });
    until("queued", || pending(&c) == 1).await;
    let err = c.acquire(None).await.expect_err("queue full");
    assert_eq!(err.kind, ErrorKind::QueueFull);
    let (res, waited) = waiter.await.expect("task");
    assert_eq!(res.expect_err("expired").kind, ErrorKind::QueueTimeout);
    assert!(waited >= Duration::from_millis(190), "{waited:?}");
    assert_eq!(pending(&c), 0);
    assert_eq!(c.stats.expired_queue_wait.load(Ordering::Relaxed), 1);
    assert_eq!(c.stats.rejected_queue_full.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn new_endpoint_wakes_waiter() {
    let c = ClusterState::new("f", settings(1, 5, 5000));
    let c2 = c.clone();
    let waiter = tokio::spawn(async move {
        c2.acquire(None)
            .await
            .map(|l| l.endpoint().id().to_string())
    });
    until("queued", || pending(&c) == 1).await;
    c.apply(settings(1, 5, 5000), &[pep("late", 1)]);
    assert_eq!(waiter.await.expect("task").expect("granted"), "late");
}

#[tokio::test]
async fn raising_the_cap_wakes_waiters() {
    let c = ClusterState::new("f", settings(1, 5, 5000));
    c.apply(settings(1, 5, 5000), &[pep("a", 1)]);
    let _held = c.acquire(None).await.expect("slot");
    let c2 = c.clone();
    let waiter =
        tokio::spawn(async move { c2.acquire(None).await.map(|l| l.endpoint().in_flight()) });
    until("queued", || pending(&c) == 1).await;
    c.apply(settings(2, 5, 5000), &[pep("a", 1)]);
    let in_flight_when_granted = waiter.await.expect("task").expect("granted");
    assert_eq!(in_flight_when_granted, 2);
}

#[tokio::test]
async fn cancelled_wait_leaves_the_queue_and_leaks_nothing() {
    let c = ClusterState::new("f", settings(1, 5, 60_000));
    c.apply(settings(1, 5, 60_000), &[pep("a", 1)]);
    let held = c.acquire(None).await.expect("slot");
    let c2 = c.clone();
    let waiter = tokio::spawn(async move { c2.acquire(None).await.map(|_| ()) });
    until("queued", || pending(&c) == 1).await;
    waiter.abort();
    let _ = waiter.await;
    assert_eq!(pending(&c), 0);
    drop(held);
    assert_eq!(c.endpoint_views()[0].in_flight, 0);
    assert_eq!(c.stats.active.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn surviving_endpoints_keep_their_counters() {
    let c = ClusterState::new("f", settings(4, 0, 0));
    c.apply(settings(4, 0, 0), &[pep("a", 1)]);
    let lease = c.acquire(None).await.expect("slot");
    // Same endpoint, new weight/cap/replica, plus a new one.
    let mut a = pep("a", 1);
    a.max_concurrency = 2;
    a.replica = "renamed".into();
    c.apply(settings(4, 0, 0), &[a, pep("b", 2)]);
    let views = c.endpoint_views();
    let a = views.iter().find(|v| v.id == "a").expect("a listed");
    assert_eq!((a.in_flight, a.max_concurrency, a.state), (1, 2, "active"));
    assert_eq!(a.replica, "renamed");
    assert!(Arc::ptr_eq(lease.endpoint(), &c.lock().active[0]));
    drop(lease);
    assert!(c.endpoint_views().iter().all(|v| v.in_flight == 0));
}

#[tokio::test]
async fn removed_endpoint_drains_then_disappears() {
    let c = ClusterState::new("f", settings(1, 5, 5000));
    c.apply(settings(1, 5, 5000), &[pep("a", 1), pep("b", 2)]);
    let on_a = loop {
        let l = c.acquire(None).await.expect("slot");
        if l.endpoint().id() == "a" {
            break l;
        }
    };
    c.apply(settings(1, 5, 5000), &[pep("b", 2)]);
    let views = c.endpoint_views();
    let a = views.iter().find(|v| v.id == "a").expect("a still listed");
    assert_eq!((a.state, a.in_flight), ("draining", 1));
    // New requests go to b only.
    for _ in 0..5 {
        let l = c.acquire(None).await.expect("slot");
        assert_eq!(l.endpoint().id(), "b");
    }
    drop(on_a);
    assert!(c.endpoint_views().iter().all(|v| v.id == "b"));
}

#[tokio::test]
async fn draining_health_takes_no_new_requests_and_can_come_back() {
    let c = ClusterState::new("f", settings(0, 5, 5000));
    c.apply(settings(0, 5, 5000), &[pep("a", 1), pep("b", 2)]);
    let mut leases = Vec::new();
    for _ in 0..6 {
        leases.push(c.acquire(None).await.expect("slot"));
    }
    let a_before = c
        .lock()
        .active
        .iter()
        .find(|e| e.id() == "a")
        .expect("a")
        .clone();
    let in_flight_a = a_before.in_flight();
    assert!(in_flight_a > 0);
    c.apply(settings(0, 5, 5000), &[draining(pep("a", 1)), pep("b", 2)]);
    for _ in 0..10 {
        assert_eq!(c.acquire(None).await.expect("slot").endpoint().id(), "b");
    }
    let views = c.endpoint_views();
    assert_eq!(
        views.iter().find(|v| v.id == "a").expect("a").state,
        "draining"
    );
    // Healthy again: same object, same counter.
    c.apply(settings(0, 5, 5000), &[pep("a", 1), pep("b", 2)]);
    let a_after = c
        .lock()
        .active
        .iter()
        .find(|e| e.id() == "a")
        .expect("a")
        .clone();
    assert!(Arc::ptr_eq(&a_before, &a_after));
    assert_eq!(a_after.in_flight(), in_flight_a);
    drop(leases);
    assert!(c
        .endpoint_views()
        .iter()
        .all(|v| v.in_flight == 0 && v.state == "active"));
}

#[tokio::test]
async fn removing_the_cluster_fails_waiters_and_drains() {
    let c = ClusterState::new("f", settings(1, 5, 60_000));
    c.apply(settings(1, 5, 60_000), &[pep("a", 1)]);
    let held = c.acquire(None).await.expect("slot");
    let c2 = c.clone();
    let waiter = tokio::spawn(async move { c2.acquire(None).await.map(|_| ()) });
    until("queued", || pending(&c) == 1).await;
    c.remove();
    let err = waiter.await.expect("task").expect_err("removed");
    assert_eq!(err.kind, ErrorKind::FunctionRemoved);
    assert!(!c.is_defunct(), "still draining");
    assert_eq!(c.endpoint_views()[0].state, "draining");
    drop(held);
    assert!(c.is_defunct());
    assert!(c.endpoint_views().is_empty());
}

#[tokio::test]
async fn exclusion_waits_for_another_endpoint() {
    let c = ClusterState::new("f", settings(1, 5, 5000));
    c.apply(settings(1, 5, 5000), &[pep("a", 1), pep("b", 2)]);
    let l1 = c.acquire(None).await.expect("slot");
    let l2 = c.acquire(None).await.expect("slot");
    let (on_a, on_b) = if l1.endpoint().id() == "a" {
        (l1, l2)
    } else {
        (l2, l1)
    };
    let a = on_a.endpoint().clone();
    drop(on_a); // a is free, but excluded
    let c2 = c.clone();
    let waiter = tokio::spawn(async move {
        c2.acquire(Some(a))
            .await
            .map(|l| l.endpoint().id().to_string())
    });
    until("queued", || pending(&c) == 1).await;
    // A request without exclusion is not blocked by the excluding waiter ahead of it.
    let other = c.acquire(None).await.expect("a is free for others");
    assert_eq!(other.endpoint().id(), "a");
    drop(on_b);
    assert_eq!(waiter.await.expect("task").expect("granted"), "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caps_hold_under_contention() {
    let c = ClusterState::new("f", settings(2, 1000, 30_000));
    c.apply(
        settings(2, 1000, 30_000),
        &[pep("a", 1), pep("b", 2), pep("c", 3)],
    );
    let max_seen = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (c2, max2) = (c.clone(), max_seen.clone());
        tasks.push(tokio::spawn(async move {
            let lease = c2.acquire(None).await.expect("granted");
            max2.fetch_max(lease.endpoint().in_flight(), Ordering::Relaxed);
            tokio::task::yield_now().await;
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert!(max_seen.load(Ordering::Relaxed) <= 2);
    assert!(c.endpoint_views().iter().all(|v| v.in_flight == 0));
    assert_eq!(c.stats.active.load(Ordering::Relaxed), 0);
    assert_eq!(pending(&c), 0);
}

/// The lock-free path next to the queue and to config changes: many tasks take and give
/// back slots on a cap of 1 while endpoints are retired and brought back. Every request is
/// served (a stranded waiter would hit the queue timeout and fail), no cap is ever
/// exceeded, and everything drains to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_free_slots_queue_and_config_changes_together() {
    let s = settings(1, 10_000, 20_000);
    let c = ClusterState::new("f", s);
    c.apply(s, &[pep("a", 1), pep("b", 2)]);
    let over_cap = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (c2, over) = (c.clone(), over_cap.clone());
        tasks.push(tokio::spawn(async move {
            for j in 0..200 {
                let lease = c2.acquire(None).await.expect("every request is served");
                if lease.endpoint().in_flight() > 1 {
                    over.fetch_add(1, Ordering::Relaxed);
                }
                if (i + j) % 3 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    let churn = {
        let c2 = c.clone();
        tokio::spawn(async move {
            for k in 0..300 {
                let eps = match k % 3 {
                    0 => vec![pep("a", 1)],
                    1 => vec![pep("a", 1), draining(pep("b", 2))],
                    _ => vec![pep("a", 1), pep("b", 2)],
                };
                c2.apply(s, &eps);
                tokio::task::yield_now().await;
            }
            c2.apply(s, &[pep("a", 1), pep("b", 2)]);
        })
    };
    for t in tasks {
        t.await.expect("task");
    }
    churn.await.expect("churn");
    assert_eq!(
        over_cap.load(Ordering::Relaxed),
        0,
        "a cap of 1 was exceeded"
    );
    assert!(c.endpoint_views().iter().all(|v| v.in_flight == 0));
    assert_eq!(c.stats.active.load(Ordering::Relaxed), 0);
    assert_eq!(pending(&c), 0);
    assert!(
        c.lock().draining.is_empty(),
        "retired endpoints left the draining list once idle"
    );
}
