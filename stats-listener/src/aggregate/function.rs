//! The state of one function: its gauges (per router, persistent across windows) and the
//! current window's counters and latency samples (reset when the window closes).

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::event::{CounterId, GaugeId, Update};
use super::gauge::RouterGauges;
use super::report::{Num, WindowReport};
use super::reservoir::Reservoir;
use super::Settings;
use crate::signal::Throttle;

/// Counters of the open window.
#[derive(Debug)]
struct Window {
    rq_total: f64,
    rq_2xx: f64,
    rq_4xx: f64,
    rq_5xx: f64,
    /// Calls that arrived at gateways.
    arrived: f64,
    latency: Reservoir,
    /// Sum of every latency sample of the window (for the mean).
    latency_sum: f64,
    active_max: f64,
    pending_max: f64,
    held_max: f64,
}

impl Window {
    fn new(max_samples: usize, active: f64, pending: f64, held: f64) -> Window {
        Window {
            rq_total: 0.0,
            rq_2xx: 0.0,
            rq_4xx: 0.0,
            rq_5xx: 0.0,
            arrived: 0.0,
            latency: Reservoir::new(max_samples),
            latency_sum: 0.0,
            active_max: active,
            pending_max: pending,
            held_max: held,
        }
    }
}

/// Outcome of [`FunctionState::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Ok,
    /// The pending or held gauge changed (the caller checks whether to signal).
    BacklogChanged,
    /// Dropped: a router or endpoint limit was reached.
    OverLimit,
}

/// One function's gauges and open window.
#[derive(Debug)]
pub struct FunctionState {
    active: RouterGauges,
    pending: RouterGauges,
    /// Held at gateways, per gateway.
    held: RouterGauges,
    endpoints: BTreeMap<String, RouterGauges>,
    window: Window,
    last_request_unix_ms: u64,
    /// Last time any update arrived (for dropping idle functions).
    last_update: Instant,
    pub throttle: Throttle,
}

impl FunctionState {
    pub fn new(now: Instant, s: &Settings) -> FunctionState {
        FunctionState {
            active: RouterGauges::default(),
            pending: RouterGauges::default(),
            held: RouterGauges::default(),
            endpoints: BTreeMap::new(),
            window: Window::new(s.max_samples, 0.0, 0.0, 0.0),
            last_request_unix_ms: 0,
            last_update: now,
            throttle: Throttle::default(),
        }
    }

    pub fn apply(
        &mut self,
        router: &str,
        update: Update,
        now: Instant,
        s: &Settings,
        rng: &mut impl Rng,
    ) -> Applied {
        self.last_update = now;
        let exp = s.gauge_expiry;
        match update {
            Update::Gauge(GaugeId::Active, op) => {
                if !self.active.apply(router, op, now, exp, s.max_routers) {
                    return Applied::OverLimit;
                }
                self.window.active_max = self.window.active_max.max(self.active.sum(now, exp));
                Applied::Ok
            }
            Update::Gauge(GaugeId::Pending, op) => {
                if !self.pending.apply(router, op, now, exp, s.max_routers) {
                    return Applied::OverLimit;
                }
                self.window.pending_max = self.window.pending_max.max(self.pending.sum(now, exp));
                Applied::BacklogChanged
            }
            Update::Gauge(GaugeId::Held, op) => {
                if !self.held.apply(router, op, now, exp, s.max_routers) {
                    return Applied::OverLimit;
                }
                self.window.held_max = self.window.held_max.max(self.held.sum(now, exp));
                Applied::BacklogChanged
            }
            Update::Gauge(GaugeId::Endpoint(id), op) => {
                if !self.endpoints.contains_key(&id) {
                    if self.endpoints.len() >= s.max_endpoints {
                        self.expire_endpoints(now, exp);
                    }
                    if self.endpoints.len() >= s.max_endpoints {
                        return Applied::OverLimit;
                    }
                }
                let g = self.endpoints.entry(id).or_default();
                if g.apply(router, op, now, exp, s.max_routers) {
                    Applied::Ok
                } else {
                    Applied::OverLimit
                }
            }
            Update::Count(c, n) => {
                let slot = match c {
                    CounterId::Total => &mut self.window.rq_total,
                    CounterId::Status2xx => &mut self.window.rq_2xx,
                    CounterId::Status4xx => &mut self.window.rq_4xx,
                    CounterId::Status5xx => &mut self.window.rq_5xx,
                    CounterId::Arrived => &mut self.window.arrived,
                };
                *slot += n;
                Applied::Ok
            }
            Update::Latency(v) => {
                self.window.latency.push(v, rng);
                self.window.latency_sum += v;
                Applied::Ok
            }
        }
    }

    fn expire_endpoints(&mut self, now: Instant, exp: Duration) {
        self.endpoints.retain(|_, g| {
            g.expire(now, exp);
            !g.is_empty()
        });
    }

    /// Current pending total (live routers).
    pub fn pending(&self, now: Instant, exp: Duration) -> f64 {
        self.pending.sum(now, exp)
    }

    /// Current held total (live gateways).
    pub fn held(&self, now: Instant, exp: Duration) -> f64 {
        self.held.sum(now, exp)
    }

    /// Current active total (live routers).
    pub fn active(&self, now: Instant, exp: Duration) -> f64 {
        self.active.sum(now, exp)
    }

    /// Closes the open window: expires silent routers, builds the report, opens the next
    /// window.
    pub fn close(
        &mut self,
        name: &str,
        now: Instant,
        end_unix_ms: u64,
        window_ms: u64,
        s: &Settings,
    ) -> WindowReport {
        let exp = s.gauge_expiry;
        self.active.expire(now, exp);
        self.pending.expire(now, exp);
        self.held.expire(now, exp);
        self.expire_endpoints(now, exp);
        let active = self.active.sum(now, exp);
        let pending = self.pending.sum(now, exp);
        let held = self.held.sum(now, exp);
        self.throttle.observe(pending + held);

        let mut w = std::mem::replace(
            &mut self.window,
            Window::new(s.max_samples, active, pending, held),
        );
        let latency_samples = w.latency.seen();
        let mean_ms = if latency_samples > 0 {
            w.latency_sum / latency_samples as f64
        } else {
            0.0
        };
        let pct = w.latency.take();
        let traffic = w.rq_total > 0.0
            || latency_samples > 0
            || w.active_max > 0.0
            || w.pending_max > 0.0
            || w.held_max > 0.0
            || w.arrived > 0.0
            || w.rq_2xx + w.rq_4xx + w.rq_5xx > 0.0;
        if traffic {
            self.last_request_unix_ms = end_unix_ms;
        }
        let mut routers: Vec<&str> = self
            .active
            .routers(now, exp)
            .chain(self.pending.routers(now, exp))
            .chain(self.endpoints.values().flat_map(|g| g.routers(now, exp)))
            .collect();
        routers.sort_unstable();
        routers.dedup();
        let window_secs = s.window.as_secs_f64().max(0.001);
        WindowReport {
            function: name.to_string(),
            window_end_unix_ms: end_unix_ms,
            window_ms,
            active: Num(active),
            pending: Num(pending),
            active_max: Num(w.active_max.max(active)),
            pending_max: Num(w.pending_max.max(pending)),
            held: Num(held),
            held_max: Num(w.held_max.max(held)),
            rps: Num(w.rq_total / window_secs),
            arrival_rps: Num(w.arrived / window_secs),
            rq_total: Num(w.rq_total),
            rq_2xx: Num(w.rq_2xx),
            rq_4xx: Num(w.rq_4xx),
            rq_5xx: Num(w.rq_5xx),
            p50_ms: Num(pct.map_or(0.0, |p| p.p50)),
            p95_ms: Num(pct.map_or(0.0, |p| p.p95)),
            p99_ms: Num(pct.map_or(0.0, |p| p.p99)),
            mean_ms: Num(mean_ms),
            latency_samples,
            last_request_unix_ms: self.last_request_unix_ms,
            routers: routers.len() as u64,
            gateways: self.held.routers(now, exp).count() as u64,
            endpoints: self
                .endpoints
                .iter()
                .map(|(id, g)| (id.clone(), Num(g.sum(now, exp))))
                .collect(),
        }
    }

    /// True when nothing is live and no update came for `retention`: the function is
    /// forgotten (its Redis keys then expire by TTL).
    pub fn is_idle(&self, now: Instant, retention: Duration) -> bool {
        self.active.is_empty()
            && self.pending.is_empty()
            && self.held.is_empty()
            && self.endpoints.is_empty()
            && now.saturating_duration_since(self.last_update) > retention
    }
}
