//! The aggregator driven directly with events and explicit instants.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::time::Instant;

use super::event::{CounterId, Event, GaugeId, GaugeOp, Update};
use super::{Aggregator, Num, Settings};
use crate::stats::Stats;

fn settings() -> Settings {
    Settings {
        window: Duration::from_secs(1),
        gauge_expiry: Duration::from_secs(3),
        signal_interval: Duration::from_millis(100),
        retention: Duration::from_secs(10),
        max_samples: 10_000,
        max_functions: 3,
        max_routers: 8,
        max_endpoints: 8,
    }
}

fn agg(t0: Instant) -> (Aggregator, Arc<Stats>) {
    let stats = Arc::new(Stats::new(0));
    (
        Aggregator::new(settings(), SmallRng::seed_from_u64(7), t0, stats.clone()),
        stats,
    )
}

fn ev(function: &str, router: &str, update: Update) -> Event {
    Event {
        function: function.into(),
        router: router.into(),
        update,
    }
}

fn gauge(function: &str, router: &str, id: GaugeId, v: f64) -> Event {
    ev(function, router, Update::Gauge(id, GaugeOp::Set(v)))
}

#[test]
fn a_window_reports_counters_gauges_and_percentiles_then_resets() {
    let t0 = Instant::now();
    let (mut a, _) = agg(t0);
    let t = t0 + Duration::from_millis(10);
    a.apply(gauge("f", "r1", GaugeId::Active, 4.0), t, 1);
    a.apply(gauge("f", "r1", GaugeId::Pending, 2.0), t, 1);
    for _ in 0..50 {
        a.apply(ev("f", "r1", Update::Count(CounterId::Total, 1.0)), t, 1);
    }
    a.apply(
        ev("f", "r1", Update::Count(CounterId::Status2xx, 45.0)),
        t,
        1,
    );
    a.apply(
        ev("f", "r1", Update::Count(CounterId::Status5xx, 5.0)),
        t,
        1,
    );
    for ms in 1..=100 {
        a.apply(ev("f", "r1", Update::Latency(ms as f64)), t, 1);
    }
    let batch = a.close_window(t0 + Duration::from_secs(1), 5_000);
    assert_eq!(batch.reports.len(), 1);
    let r = &batch.reports[0];
    assert_eq!(r.function, "f");
    assert_eq!(r.window_end_unix_ms, 5_000);
    assert_eq!(r.window_ms, 1000);
    assert_eq!((r.active, r.pending), (Num(4.0), Num(2.0)));
    assert_eq!((r.rq_total, r.rps), (Num(50.0), Num(50.0)));
    assert_eq!(
        (r.rq_2xx, r.rq_4xx, r.rq_5xx),
        (Num(45.0), Num(0.0), Num(5.0))
    );
    assert_eq!(
        (r.p50_ms, r.p95_ms, r.p99_ms),
        (Num(50.0), Num(95.0), Num(99.0))
    );
    assert_eq!(r.latency_samples, 100);
    assert_eq!(r.last_request_unix_ms, 5_000);
    assert_eq!(r.routers, 1);

    // Next window: gauges persist, counters and samples reset; last request stays.
    let t2 = t0 + Duration::from_millis(1500);
    a.apply(gauge("f", "r1", GaugeId::Active, 0.0), t2, 1);
    a.apply(gauge("f", "r1", GaugeId::Pending, 0.0), t2, 1);
    let batch = a.close_window(t0 + Duration::from_secs(2), 6_000);
    let r = &batch.reports[0];
    assert_eq!((r.active, r.pending), (Num(0.0), Num(0.0)));
    assert_eq!(
        r.active_max,
        Num(4.0),
        "active was 4 when the window opened"
    );
    assert_eq!((r.rq_total, r.latency_samples), (Num(0.0), 0));
    assert_eq!(r.p99_ms, Num(0.0));
    assert_eq!(r.last_request_unix_ms, 6_000, "active was 4 at its start");
    let batch = a.close_window(t0 + Duration::from_secs(3), 7_000);
    assert_eq!(batch.reports[0].last_request_unix_ms, 6_000, "idle window");
}

#[test]
fn gauges_of_two_routers_are_summed_and_a_silent_router_expires() {
    let t0 = Instant::now();
    let (mut a, _) = agg(t0);
    a.apply(gauge("f", "a", GaugeId::Active, 3.0), t0, 1);
    a.apply(gauge("f", "b", GaugeId::Active, 4.0), t0, 1);
    a.apply(gauge("f", "a", GaugeId::Endpoint("e1".into()), 2.0), t0, 1);
    a.apply(gauge("f", "b", GaugeId::Endpoint("e1".into()), 1.0), t0, 1);
    let r = &a.close_window(t0 + Duration::from_secs(1), 1).reports[0];
    assert_eq!(r.active, Num(7.0));
    assert_eq!(r.routers, 2);
    assert_eq!(r.endpoints.get("e1"), Some(&Num(3.0)));
    // Router a keeps reporting, b falls silent.
    let t = t0 + Duration::from_secs(2);
    a.apply(gauge("f", "a", GaugeId::Active, 3.0), t, 1);
    a.apply(gauge("f", "a", GaugeId::Endpoint("e1".into()), 2.0), t, 1);
    let r = &a.close_window(t0 + Duration::from_millis(4500), 2).reports[0];
    assert_eq!(r.active, Num(3.0));
    assert_eq!(r.routers, 1);
    assert_eq!(r.endpoints.get("e1"), Some(&Num(2.0)));
}

#[test]
fn sample_rate_scaled_counts_and_deltas() {
    let t0 = Instant::now();
    let (mut a, _) = agg(t0);
    a.apply(gauge("f", "", GaugeId::Active, 5.0), t0, 1);
    a.apply(
        ev(
            "f",
            "",
            Update::Gauge(GaugeId::Active, GaugeOp::Delta(-2.0)),
        ),
        t0,
        1,
    );
    a.apply(ev("f", "", Update::Count(CounterId::Total, 10.0)), t0, 1);
    let r = &a.close_window(t0 + Duration::from_secs(1), 1).reports[0];
    assert_eq!(r.active, Num(3.0));
    assert_eq!(r.active_max, Num(5.0));
    assert_eq!(r.rq_total, Num(10.0));
}

#[test]
fn pending_signals_on_the_rising_edge_and_is_throttled() {
    let t0 = Instant::now();
    let (mut a, _) = agg(t0);
    let ms = |n| t0 + Duration::from_millis(n);
    assert!(a
        .apply(gauge("f", "r", GaugeId::Pending, 0.0), ms(0), 1)
        .is_none());
    a.apply(gauge("f", "r", GaugeId::Active, 8.0), ms(1), 1);
    let s = a
        .apply(gauge("f", "r", GaugeId::Pending, 3.0), ms(2), 42)
        .expect("0 -> 3 signals");
    assert_eq!(s.function, "f");
    assert_eq!(
        (s.pending, s.active, s.held, s.unix_ms),
        (3.0, 8.0, 0.0, 42)
    );
    assert!(a
        .apply(gauge("f", "r", GaugeId::Pending, 4.0), ms(50), 1)
        .is_none());
    assert!(a
        .apply(gauge("f", "r", GaugeId::Pending, 4.0), ms(102), 1)
        .is_some());
    // A second router's queue adds to the total.
    let s = a
        .apply(gauge("f", "r2", GaugeId::Pending, 1.0), ms(300), 1)
        .expect("still pending after the interval");
    assert_eq!(s.pending, 5.0);
}

#[test]
fn calls_held_at_a_gateway_signal_and_its_arrivals_give_the_arrival_rate() {
    let t0 = Instant::now();
    let (mut a, _) = agg(t0);
    let ms = |n| t0 + Duration::from_millis(n);
    // A cold start: nothing at the router, calls held at the gateway.
    let s = a
        .apply(gauge("f", "gateway:g1", GaugeId::Held, 12.0), ms(1), 7)
        .expect("held calls signal at once");
    assert_eq!((s.pending, s.held), (0.0, 12.0));
    a.apply(
        ev("f", "gateway:g1", Update::Count(CounterId::Arrived, 50.0)),
        ms(2),
        1,
    );
    for v in [200.0, 200.0, 260.0] {
        a.apply(ev("f", "r1", Update::Latency(v)), ms(3), 1);
    }
    let r = &a.close_window(t0 + Duration::from_secs(1), 1).reports[0];
    assert_eq!(r.held, Num(12.0));
    assert_eq!(r.held_max, Num(12.0));
    assert_eq!(r.arrival_rps, Num(50.0));
    assert_eq!(r.mean_ms, Num(220.0));
    assert_eq!(r.gateways, 1);
    assert_eq!(r.routers, 0, "a gateway is not a router");
    // Released: the backlog is gone; the gateway stays counted while its gauge is live.
    a.apply(gauge("f", "gateway:g1", GaugeId::Held, 0.0), ms(1100), 1);
    let r = &a.close_window(t0 + Duration::from_secs(2), 2).reports[0];
    assert_eq!((r.held, r.held_max, r.gateways), (Num(0.0), Num(12.0), 1));
    assert_eq!(r.arrival_rps, Num(0.0));
    assert_eq!(r.mean_ms, Num(0.0), "no call finished in the window");
}

#[test]
fn function_limit_and_idle_functions_are_forgotten() {
    let t0 = Instant::now();
    let (mut a, stats) = agg(t0);
    for f in ["a", "b", "c", "d"] {
        a.apply(ev(f, "", Update::Count(CounterId::Total, 1.0)), t0, 1);
    }
    assert_eq!(
        stats.over_limit.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let names: Vec<String> = a
        .close_window(t0 + Duration::from_secs(1), 1)
        .reports
        .into_iter()
        .map(|r| r.function)
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    // Retention is 10 s: still reported (as idle) before, forgotten after.
    assert_eq!(
        a.close_window(t0 + Duration::from_secs(9), 2).reports.len(),
        3
    );
    assert!(a
        .close_window(t0 + Duration::from_secs(11), 3)
        .reports
        .is_empty());
}

#[test]
fn latency_memory_is_capped_per_window() {
    let t0 = Instant::now();
    let stats = Arc::new(Stats::new(0));
    let mut s = settings();
    s.max_samples = 100;
    let mut a = Aggregator::new(s, SmallRng::seed_from_u64(1), t0, stats);
    for i in 0..100_000u64 {
        a.apply(ev("f", "", Update::Latency((i % 100) as f64)), t0, 1);
    }
    let r = &a.close_window(t0 + Duration::from_secs(1), 1).reports[0];
    assert_eq!(r.latency_samples, 100_000);
    assert!(r.p50_ms.0 > 30.0 && r.p50_ms.0 < 70.0, "{:?}", r.p50_ms);
}
