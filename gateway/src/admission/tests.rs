use super::*;
use crate::catalog::tests::{endpoint, snapshot_with};
use crate::catalog::Defaults;
use sluice_common::xds::pb;

fn capacity(ready: usize, slots: u64) -> Capacity {
    Capacity {
        ready,
        slots: Some(slots),
        queue_size: 100,
        queue_timeout: Duration::from_secs(30),
        timeout: Duration::from_secs(30),
    }
}

#[test]
fn the_limit_is_the_slots_plus_what_the_queue_drains_in_time() {
    // Nothing ready: nothing goes through.
    assert_eq!(forward_limit(&capacity(0, 0), None), 0);
    // No service time yet: the function's timeout is assumed (30 s), so the queue drains one
    // call per slot within its 30 s timeout: 4 slots + 4.
    assert_eq!(forward_limit(&capacity(1, 4), None), 8);
    // Fast calls: the queue could drain far more, but at most one per slot is sent ahead.
    assert_eq!(
        forward_limit(&capacity(1, 4), Some(Duration::from_millis(200))),
        8
    );
    // Slow calls (60 s) against a 30 s queue timeout: half a call per slot → 2.
    assert_eq!(
        forward_limit(&capacity(1, 4), Some(Duration::from_secs(60))),
        6
    );
    // Never more than half the router's queue ahead: 60 slots + 100 / 2.
    assert_eq!(
        forward_limit(&capacity(15, 60), Some(Duration::from_millis(10))),
        110
    );
    // No queue at all: exactly the slots.
    let c = Capacity {
        queue_size: 0,
        ..capacity(2, 8)
    };
    assert_eq!(forward_limit(&c, None), 8);
    // A replica without a cap: unlimited.
    let c = Capacity {
        slots: None,
        ..capacity(1, 0)
    };
    assert_eq!(forward_limit(&c, None), u64::MAX);
}

#[tokio::test]
async fn the_limit_keeps_the_router_queue_below_its_size() {
    // Whatever the numbers, forwarded calls beyond the slots never fill the router's queue.
    for slots in [1u64, 4, 16, 64, 400] {
        for queue_size in [0u32, 1, 2, 3, 10, 100, 1000] {
            for service_ms in [1u64, 200, 30_000, 120_000] {
                let c = Capacity {
                    ready: 1,
                    slots: Some(slots),
                    queue_size,
                    queue_timeout: Duration::from_secs(30),
                    timeout: Duration::from_secs(30),
                };
                let limit = forward_limit(&c, Some(Duration::from_millis(service_ms)));
                assert!(limit >= slots, "the slots are always used");
                let waiting = limit - slots;
                assert!(
                    queue_size == 0 && waiting == 0 || waiting < u64::from(queue_size),
                    "{waiting} may wait at a router queue of {queue_size}"
                );
            }
        }
    }
}

fn gates_with(endpoints: Vec<pb::Endpoint>) -> (Arc<Gates>, watch::Sender<Arc<Snapshot>>) {
    let cluster = pb::Cluster {
        name: "f".into(),
        max_concurrency: 2,
        queue_size: 2,
        queue_timeout_ms: 30_000,
        timeout_ms: 30_000,
        ..Default::default()
    };
    let (tx, rx) = watch::channel(Arc::new(snapshot_with("f", cluster, endpoints)));
    let gates = Gates::new(Catalog::new(rx, Defaults::default()));
    (gates, tx)
}

fn resnapshot(tx: &watch::Sender<Arc<Snapshot>>, gates: &Gates, endpoints: Vec<pb::Endpoint>) {
    let cluster = tx.borrow().clusters["f"].clone();
    tx.send_replace(Arc::new(snapshot_with("f", cluster, endpoints)));
    gates.apply(&tx.borrow());
}

fn granted_now(w: &mut Waiting) -> Option<Permit> {
    use std::future::Future;
    let mut fut = std::pin::pin!(w.granted());
    let waker = std::task::Waker::noop();
    match fut
        .as_mut()
        .poll(&mut std::task::Context::from_waker(waker))
    {
        std::task::Poll::Ready(p) => Some(p),
        std::task::Poll::Pending => None,
    }
}

fn held(e: Entry) -> Waiting {
    match e {
        Entry::Held(w) => w,
        Entry::Go(_) => panic!("expected the call to be held"),
    }
}

#[tokio::test]
async fn held_calls_are_released_in_order_as_capacity_frees() {
    let (gates, tx) = gates_with(vec![]);
    let gate = gates.gate("f");
    // A cold start: ten calls held in arrival order.
    let mut waiting: Vec<Waiting> = (0..10).map(|_| held(gate.enter())).collect();
    assert_eq!(gate.held(), 10);
    // One replica with 2 slots, a router queue of 2 (1 may wait there): 3 go on, the oldest.
    resnapshot(
        &tx,
        &gates,
        vec![endpoint("a", pb::EndpointHealth::Healthy)],
    );
    let mut permits: Vec<Permit> = Vec::new();
    for (i, w) in waiting.iter_mut().enumerate() {
        match granted_now(w) {
            Some(p) => {
                assert!(i < 3, "call {i} released beyond the limit");
                permits.push(p);
            }
            None => assert!(i >= 3, "call {i} not released"),
        }
    }
    assert_eq!(gate.held(), 7);
    // A newcomer queues behind the held calls (no barging), although a replica is ready.
    let mut late = held(gate.enter());
    // One call finishes: exactly the next one in line goes on.
    drop(permits.remove(0));
    let next = granted_now(&mut waiting[3]);
    assert!(next.is_some());
    assert!(granted_now(&mut waiting[4]).is_none());
    assert!(granted_now(&mut late).is_none());
    assert_eq!(gate.held(), 7);
}

#[tokio::test]
async fn a_waiter_that_leaves_gives_its_place_back() {
    let (gates, tx) = gates_with(vec![]);
    let gate = gates.gate("f");
    let a = held(gate.enter());
    let mut b = held(gate.enter());
    let c = held(gate.enter());
    let mut d = held(gate.enter());
    // `a` leaves before anything is ready: it simply leaves the line.
    drop(a);
    assert_eq!(gate.held(), 3);
    resnapshot(
        &tx,
        &gates,
        vec![endpoint("a", pb::EndpointHealth::Healthy)],
    );
    // Limit 3: b, c, d are granted; c's client went away before taking its place.
    let pb_ = granted_now(&mut b).expect("b released");
    drop(c);
    let pd = granted_now(&mut d).expect("d released");
    assert_eq!(gate.in_flight(), 2, "c's place was given back");
    drop((pb_, pd));
    assert_eq!(gate.in_flight(), 0);
    // With nothing held and a replica ready, calls go straight on.
    assert!(matches!(gate.enter(), Entry::Go(_)));
}

#[tokio::test]
async fn the_gate_of_a_removed_function_is_forgotten_once_idle() {
    let (gates, tx) = gates_with(vec![endpoint("a", pb::EndpointHealth::Healthy)]);
    let permit = match gates.gate("f").enter() {
        Entry::Go(p) => p,
        Entry::Held(_) => panic!("a replica is ready"),
    };
    tx.send_replace(Arc::new(Snapshot::default()));
    gates.apply(&tx.borrow());
    assert_eq!(gates.all().len(), 1, "a call is still in flight");
    drop(permit);
    gates.apply(&tx.borrow());
    assert!(gates.all().is_empty());
}

#[tokio::test]
async fn export_lines_carry_held_calls_and_arrivals() {
    let (gates, _tx) = gates_with(vec![]);
    let gate = gates.gate("f");
    let _w = (held(gate.enter()), held(gate.enter()));
    let mut reported = HashMap::new();
    assert_eq!(
        export::lines(&gates, "gw-1", &mut reported),
        vec![
            "cluster.f.gateway_rq_held:2|g|#gateway:gw-1".to_string(),
            "cluster.f.gateway_rq_arrived:2|c|#gateway:gw-1".to_string(),
        ]
    );
    // Nothing new arrived: the gauge again, no counter line.
    assert_eq!(
        export::lines(&gates, "gw-1", &mut reported),
        vec!["cluster.f.gateway_rq_held:2|g|#gateway:gw-1".to_string()]
    );
    let packed = export::pack(&["a".repeat(10), "b".repeat(10), "c".repeat(30)], 25);
    assert_eq!(
        packed,
        vec![
            format!("{}\n{}", "a".repeat(10), "b".repeat(10)),
            "c".repeat(30)
        ]
    );
}

/// The lock-free warm path next to held calls: 32 tasks make 200 calls each while the
/// function's one replica goes away and comes back. Every held call is released (a release
/// that missed it would leave it waiting: the test's deadline fails it), and every place is
/// given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn warm_calls_and_held_calls_together_never_strand_a_call() {
    let (gates, tx) = gates_with(vec![endpoint("a", pb::EndpointHealth::Healthy)]);
    let tx = Arc::new(tx);
    let gate = gates.gate("f");
    let mut tasks = Vec::new();
    for i in 0..32usize {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..200usize {
                let permit = match gate.enter() {
                    Entry::Go(p) => p,
                    Entry::Held(mut w) => {
                        tokio::time::timeout(Duration::from_secs(20), w.granted())
                            .await
                            .expect("a held call is released")
                    }
                };
                if (i + j) % 4 == 0 {
                    tokio::task::yield_now().await;
                }
                drop(permit);
            }
        }));
    }
    let flips = {
        let (gates, tx) = (gates.clone(), tx.clone());
        tokio::spawn(async move {
            for k in 0..200 {
                let eps = if k % 2 == 0 {
                    vec![]
                } else {
                    vec![endpoint("a", pb::EndpointHealth::Healthy)]
                };
                resnapshot(&tx, &gates, eps);
                tokio::task::yield_now().await;
            }
            resnapshot(
                &tx,
                &gates,
                vec![endpoint("a", pb::EndpointHealth::Healthy)],
            );
        })
    };
    flips.await.expect("flips");
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(gate.in_flight(), 0, "every place was given back");
    assert_eq!(gate.held(), 0);
}
