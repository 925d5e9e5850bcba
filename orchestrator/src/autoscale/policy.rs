//! The scaling policy, after Knative's KPA, as a pure function of what was observed.
//!
//! * **Demand** is what the function really needs in flight, by Little's law: the arrival
//!   rate `λ` (calls per second counted at the gateways; the routers' finished calls when no
//!   gateway counts them) times the service time `s` (the routers' time from replica slot to
//!   response, queue wait excluded: the mean over the stable window, the median over the
//!   panic window so that a new replica's slow first calls do not size a scale-up), plus the backlog (calls held at gateways and
//!   queued at routers) drained over [`backlog_drain`] (half of `cold_start_timeout`, so
//!   held calls are served inside their wait). The slots that the replicas sized for
//!   `λ × s` leave free (the utilization target's headroom) drain the backlog first; only
//!   what they cannot drain in time adds demand, at most [`BACKLOG_SHARE`] of `λ × s`: calls
//!   that piled up during a cold start add a bounded margin, never a replica per call. Before any service time was observed, demand
//!   is the measured concurrency (in flight + queued at routers), as in Knative.
//! * Capacity of one replica = `target_concurrency × target_utilization`;
//!   `want(d) = ceil(d / capacity)`, clamped to `[min_replicas, max_replicas]`.
//! * **Stable mode**: demand averaged over the stable window (default 30 s); the only mode
//!   that scales down, so a short lull never removes replicas. Its answer never falls below
//!   what the panic window's demand needs: a load that rose recently (the 30 s average still
//!   remembers the quiet before it) keeps the replicas it uses.
//! * **Panic mode**: entered when calls wait (`pending + held > 0`) or when the demand of the
//!   panic window (3 s) reaches twice the capacity of the replicas that are ready. While
//!   panicking the target follows the panic window at once, one step at most doubling the
//!   ready replicas (at least +2), and never goes down; as in Knative, panic ends a whole
//!   stable window after its last trigger, so a burst's replicas are not removed seconds
//!   after they came up.
//! * **Scale to zero**: only with `min_replicas == 0`, when nothing is in flight, queued or
//!   held and the last activity (request, wake-up, manual scale) is older than
//!   `idle_timeout`.
//!
//! The caller applies a decision only when it differs from the previous decision for the
//! function (or it is a scale-up in panic mode, or a scale to zero): a manual
//! `/system/scale-function` is honoured until the policy's own answer changes.

use std::collections::VecDeque;
use std::time::Duration;

use sluice_common::registry::Scaling;

/// Window over which panic-mode demand is averaged.
pub const PANIC_WINDOW: Duration = Duration::from_secs(3);
/// Largest share of the arrival demand (`λ × s`) added to drain a backlog.
pub const BACKLOG_SHARE: f64 = 0.25;

/// How long a backlog may take to drain: half the callers' wait (`cold_start_timeout`),
/// between 1 s and 60 s. The calls at the front of a backlog are released first, so every
/// call waits for whichever is longer: the cold start it arrived in, or this.
pub fn backlog_drain(p: &Scaling) -> Duration {
    (p.cold_start_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Rates of one statistics window (a queueing signal has none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Calls arrived per second (at gateways); `None` when no gateway counts them.
    pub arrivals: Option<f64>,
    /// Calls finished per second (at routers).
    pub finished: f64,
    /// Mean service time of the window's calls, ms; `None` when none finished.
    pub service_ms: Option<f64>,
    /// Median service time of the window's calls, ms; `None` when none finished.
    pub median_ms: Option<f64>,
    /// Calls the mean is over.
    pub served: f64,
}

impl Rates {
    /// The arrival rate: counted at gateways, else what the routers finished.
    fn lambda(&self) -> f64 {
        self.arrivals.unwrap_or(self.finished)
    }
}

/// Which service-time statistic a window's demand uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Estimate {
    Mean,
    Median,
}

/// One observation (one statistics window, or a queueing signal).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub unix_ms: u64,
    /// Holding a replica slot.
    pub active: f64,
    /// Queued at routers.
    pub pending: f64,
    /// Held at gateways.
    pub held: f64,
    pub rates: Option<Rates>,
}

impl Sample {
    fn concurrency(&self) -> f64 {
        self.active + self.pending
    }

    fn backlog(&self) -> f64 {
        self.pending + self.held
    }
}

/// What the policy remembers about one function.
#[derive(Debug, Default)]
pub struct State {
    samples: VecDeque<Sample>,
    panic_until_ms: Option<u64>,
    /// The last service time observed, seconds (kept across windows without finished calls).
    last_service_s: Option<f64>,
    /// The policy's previous answer (for edge-triggered application).
    pub last_target: Option<u32>,
}

/// Inputs besides the samples.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub unix_ms: u64,
    /// Replicas ready now.
    pub ready: u32,
    /// Replicas desired now.
    pub desired: u32,
    /// Last request / wake-up / manual scale (unix ms).
    pub last_activity_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub target: u32,
    pub panicking: bool,
    pub reason: &'static str,
    /// Why, in numbers (logged with every applied decision).
    pub basis: Basis,
}

/// The numbers a decision rests on.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Basis {
    /// Demand (calls that should be in flight) of the window the decision followed.
    pub demand: f64,
    /// Arrival rate averaged over the panic window, calls/s.
    pub arrival_rps: f64,
    /// Service time used, ms (`None`: not observed yet).
    pub service_ms: Option<f64>,
    /// Calls waiting (held + queued) in the latest sample.
    pub backlog: f64,
}

impl State {
    /// Records a window or a signal. Older samples than the stable window are dropped.
    pub fn observe(&mut self, s: Sample, stable_window: Duration) {
        if let Some(ms) = s.rates.and_then(|r| r.service_ms) {
            if ms.is_finite() && ms > 0.0 {
                self.last_service_s = Some(ms / 1000.0);
            }
        }
        // Windows and signals arrive from two paths: keep the samples in time order.
        let at = self
            .samples
            .iter()
            .rposition(|x| x.unix_ms <= s.unix_ms)
            .map_or(0, |i| i + 1);
        self.samples.insert(at, s);
        let newest = self.samples.back().map_or(s.unix_ms, |b| b.unix_ms);
        let keep_from = newest.saturating_sub(stable_window.as_millis() as u64);
        while self.samples.front().is_some_and(|f| f.unix_ms < keep_from) {
            self.samples.pop_front();
        }
    }

    /// Mean of `f` over the samples since `from_ms` for which it is defined (0 if none).
    fn average_since(&self, from_ms: u64, f: impl Fn(&Sample) -> Option<f64>) -> f64 {
        let (sum, n) = self
            .samples
            .iter()
            .filter(|s| s.unix_ms >= from_ms)
            .filter_map(f)
            .fold((0.0, 0usize), |(sum, n), v| (sum + v, n + 1));
        if n == 0 {
            0.0
        } else {
            sum / n as f64
        }
    }

    /// The service time in seconds over the calls finished since `from_ms` (each window
    /// weighted by its calls), else the last mean observed. `Estimate::Mean` is Little's law's
    /// (the stable window); `Estimate::Median` (the panic window) is not moved by a new
    /// replica's slow first calls, which would otherwise size a whole scale-up.
    fn service_since(&self, from_ms: u64, estimate: Estimate) -> Option<f64> {
        let (sum, n) = self
            .samples
            .iter()
            .filter(|s| s.unix_ms >= from_ms)
            .filter_map(|s| s.rates)
            .filter_map(|r| {
                let ms = match estimate {
                    Estimate::Mean => r.service_ms?,
                    Estimate::Median => r.median_ms.or(r.service_ms)?,
                };
                (ms.is_finite() && ms > 0.0 && r.served > 0.0).then_some((ms * r.served, r.served))
            })
            .fold((0.0, 0.0), |(sum, n), (x, k)| (sum + x, n + k));
        if n > 0.0 {
            Some(sum / n / 1000.0)
        } else {
            self.last_service_s
        }
    }

    /// The demand (calls that should be in flight) over the samples since `from_ms`, with
    /// `backlog` calls waiting now (see the module docs).
    fn demand_since(&self, p: &Scaling, from_ms: u64, backlog: f64, estimate: Estimate) -> f64 {
        match self.service_since(from_ms, estimate) {
            Some(s) => {
                let lambda = self.average_since(from_ms, |x| x.rates.map(|r| r.lambda()));
                let base = lambda * s;
                // The replicas the arrivals need leave slots free (the utilization target's
                // headroom): they drain the backlog for nothing. Only what they cannot drain
                // within the bound asks for more, and at most a share of the arrival demand.
                let capacity = (p.target_concurrency * p.target_utilization).max(f64::MIN_POSITIVE);
                let spare = ((base / capacity).ceil() * p.target_concurrency - base).max(0.0);
                let catch_up = backlog * s / backlog_drain(p).as_secs_f64();
                base + (catch_up - spare).clamp(0.0, base * BACKLOG_SHARE)
            }
            None => self.average_since(from_ms, |x| Some(x.concurrency())),
        }
    }

    fn latest(&self) -> Option<Sample> {
        self.samples.back().copied()
    }

    /// The policy's answer for now.
    pub fn decide(&mut self, p: &Scaling, now: Now) -> Decision {
        let capacity = (p.target_concurrency * p.target_utilization).max(f64::MIN_POSITIVE);
        let clamp = |n: f64| -> u32 {
            let n = if n.is_finite() {
                n.ceil().max(0.0)
            } else {
                0.0
            };
            (n.min(u32::MAX as f64) as u32)
                .clamp(p.min_replicas, p.max_replicas.max(p.min_replicas))
        };
        let stable_from = now
            .unix_ms
            .saturating_sub(p.stable_window.as_millis() as u64);
        let panic_from = now.unix_ms.saturating_sub(PANIC_WINDOW.as_millis() as u64);
        let latest = self.latest();
        let backlog = latest.map(|s| s.backlog()).unwrap_or(0.0);
        let active = latest.map(|s| s.active).unwrap_or(0.0);
        let d_stable = self.demand_since(p, stable_from, backlog, Estimate::Mean);
        let d_panic = self.demand_since(p, panic_from, backlog, Estimate::Median);

        let arrival_rps = self.average_since(panic_from, |x| x.rates.map(|r| r.lambda()));
        let service_ms = self
            .service_since(panic_from, Estimate::Median)
            .map(|s| s * 1000.0);
        let basis = |demand: f64| Basis {
            demand,
            arrival_rps,
            service_ms,
            backlog,
        };
        let ready_capacity = capacity * f64::from(now.ready.max(1));
        let panic_now = backlog > 0.0 || d_panic >= 2.0 * ready_capacity;
        if panic_now {
            self.panic_until_ms = Some(now.unix_ms + p.stable_window.as_millis() as u64);
        }
        let panicking = self.panic_until_ms.is_some_and(|t| now.unix_ms < t);

        let idle_for = now.unix_ms.saturating_sub(now.last_activity_ms);
        let idle = active == 0.0 && backlog == 0.0 && idle_for >= p.idle_timeout.as_millis() as u64;

        if panicking {
            // Follow the short window at once; never go down; one step at most doubles the
            // replicas that are ready (at least +2), so a wrong reading costs one step.
            let max = p.max_replicas.max(p.min_replicas);
            let floor = now.desired.min(max);
            let want = clamp(d_panic.max(d_stable) / capacity);
            let step_cap = (now.ready.saturating_mul(2)).max(now.ready + 2);
            return Decision {
                target: want.min(step_cap).max(floor),
                panicking: true,
                reason: "panic: calls waiting or demand at twice the capacity",
                basis: basis(d_panic.max(d_stable)),
            };
        }
        let want = clamp(d_stable.max(d_panic) / capacity);
        if want == 0 {
            // Zero only once idle; until then keep one.
            if idle || p.min_replicas > 0 {
                return Decision {
                    target: p.min_replicas,
                    panicking: false,
                    reason: "idle",
                    basis: basis(d_stable),
                };
            }
            return Decision {
                target: now.desired.clamp(p.min_replicas, 1.max(p.min_replicas)),
                panicking: false,
                reason: "recently active: keep one replica until idle",
                basis: basis(d_stable),
            };
        }
        Decision {
            target: want,
            panicking: false,
            reason: "stable",
            basis: basis(d_stable.max(d_panic)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented defaults: target 4 × utilization 0.7 = 2.8 per replica, max 10,
    /// idle 10 s, stable window 30 s, cold start timeout 30 s (backlog drained over 15 s).
    fn scaling() -> Scaling {
        Scaling::default()
    }

    /// One window per second: `active`/`pending`/`held` at its end, `arrivals` calls/s at
    /// the gateway, service time `service_ms` (finished calls: what the slots could finish).
    #[derive(Clone, Copy)]
    struct W {
        active: f64,
        pending: f64,
        held: f64,
        arrivals: f64,
        service_ms: Option<f64>,
    }

    fn w(active: f64, pending: f64, held: f64, arrivals: f64, service_ms: Option<f64>) -> W {
        W {
            active,
            pending,
            held,
            arrivals,
            service_ms,
        }
    }

    fn feed(st: &mut State, p: &Scaling, from_s: u64, to_s: u64, x: W) {
        for t in from_s..to_s {
            let finished = x.service_ms.map_or(0.0, |ms| x.active / (ms / 1000.0));
            st.observe(
                Sample {
                    unix_ms: t * 1000,
                    active: x.active,
                    pending: x.pending,
                    held: x.held,
                    rates: Some(Rates {
                        arrivals: Some(x.arrivals),
                        finished,
                        service_ms: x.service_ms,
                        median_ms: x.service_ms,
                        served: finished,
                    }),
                },
                p.stable_window,
            );
        }
    }

    /// Concurrency only (no service time known yet, or a router without gateway counts).
    fn feed_concurrency(st: &mut State, p: &Scaling, from_s: u64, to_s: u64, a: f64, q: f64) {
        for t in from_s..to_s {
            st.observe(
                Sample {
                    unix_ms: t * 1000,
                    active: a,
                    pending: q,
                    held: 0.0,
                    rates: None,
                },
                p.stable_window,
            );
        }
    }

    fn now(t_s: u64, ready: u32, desired: u32, last_activity_s: u64) -> Now {
        Now {
            unix_ms: t_s * 1000,
            ready,
            desired,
            last_activity_ms: last_activity_s * 1000,
        }
    }

    /// The arrival-rate need of 50 calls/s of 200 ms: 10 in flight / 2.8 → 4 replicas.
    const NEED_50RPS_200MS: u32 = 4;

    #[test]
    fn desired_is_arrival_rate_times_service_time_over_capacity() {
        let p = scaling();
        let mut st = State::default();
        feed(&mut st, &p, 0, 31, w(10.0, 0.0, 0.0, 50.0, Some(200.0)));
        let d = st.decide(&p, now(31, 4, 4, 31));
        assert_eq!(d.target, NEED_50RPS_200MS);
        assert!(!d.panicking);
    }

    #[test]
    fn a_cold_start_backlog_adds_a_bounded_margin_not_a_replica_per_call() {
        let p = scaling();
        let mut st = State::default();
        // 3 s of cold start: 150 calls held at the gateway, nothing finished.
        feed(&mut st, &p, 0, 3, w(0.0, 0.0, 150.0, 50.0, None));
        let d = st.decide(&p, now(3, 0, 1, 3));
        assert!(d.panicking);
        assert_eq!(d.target, 1, "no service time yet: nothing to size with");
        // The first replica is ready and busy, 4 wait at the router, 170 held.
        feed(&mut st, &p, 3, 4, w(4.0, 4.0, 170.0, 50.0, Some(200.0)));
        let mut peak = 0;
        let mut ready = 1;
        for t in 4..20 {
            let d = st.decide(&p, now(t, ready, ready.max(peak), t));
            peak = peak.max(d.target);
            ready = d.target; // replicas come up at once: the worst case for overshoot
            let backlog = (170.0 - 25.0 * (t - 3) as f64).max(0.0);
            feed(
                &mut st,
                &p,
                t,
                t + 1,
                w(10.0, 0.0, backlog, 50.0, Some(200.0)),
            );
        }
        assert!(peak >= NEED_50RPS_200MS, "peak {peak}");
        assert!(
            f64::from(peak) <= 1.5 * f64::from(NEED_50RPS_200MS),
            "peak {peak} within 1.5 × the arrival-rate need"
        );
    }

    #[test]
    fn a_new_replicas_slow_first_calls_do_not_stand_for_the_service_time() {
        let p = scaling();
        let mut st = State::default();
        // A window with 4 calls at 450 ms (a new replica's first ones), then 50 at 200 ms.
        let window = |t: u64, served: f64, ms: f64| Sample {
            unix_ms: t * 1000,
            active: 10.0,
            pending: 0.0,
            held: 0.0,
            rates: Some(Rates {
                arrivals: Some(50.0),
                finished: served,
                service_ms: Some(ms),
                median_ms: Some(ms),
                served,
            }),
        };
        st.observe(window(0, 4.0, 450.0), p.stable_window);
        st.observe(window(1, 50.0, 200.0), p.stable_window);
        st.observe(window(2, 50.0, 200.0), p.stable_window);
        let d = st.decide(&p, now(2, 4, 4, 2));
        let service = d.basis.service_ms.expect("observed");
        assert!(
            (service - 209.6).abs() < 0.1,
            "weighted by calls: {service}"
        );
        assert_eq!(d.target, NEED_50RPS_200MS);
    }

    #[test]
    fn a_scale_up_follows_the_median_not_a_warm_up_inflated_mean() {
        let p = scaling();
        let mut st = State::default();
        // 20 quiet windows, then 50 calls/s whose first windows run on a replica still
        // warming up: median 205 ms, mean 320 ms (its first calls wait for workers).
        feed(&mut st, &p, 0, 20, w(0.0, 0.0, 0.0, 0.0, None));
        for t in 20..23 {
            st.observe(
                Sample {
                    unix_ms: t * 1000,
                    active: 4.0,
                    pending: 4.0,
                    held: 100.0,
                    rates: Some(Rates {
                        arrivals: Some(50.0),
                        finished: 20.0,
                        service_ms: Some(320.0),
                        median_ms: Some(205.0),
                        served: 20.0,
                    }),
                },
                p.stable_window,
            );
        }
        let d = st.decide(&p, now(23, 4, 4, 23));
        assert!(d.panicking);
        // 50 × 0.205 = 10.25 → 4 (the mean would say 16 → 6).
        assert_eq!(d.target, NEED_50RPS_200MS, "{d:?}");
    }

    #[test]
    fn a_backlog_the_headroom_cannot_drain_in_time_adds_replicas() {
        let p = scaling();
        // 50 calls/s of 200 ms need 4 replicas: 16 slots, 6 free for a backlog, which
        // drain 30 calls/s. 200 waiting drain within 15 s: nothing more.
        let mut st = State::default();
        feed(&mut st, &p, 0, 3, w(10.0, 0.0, 200.0, 50.0, Some(200.0)));
        assert_eq!(st.decide(&p, now(3, 4, 4, 3)).target, NEED_50RPS_200MS);
        // 600 waiting would take 20 s: more, by at most a quarter of the demand → 5.
        let mut st = State::default();
        feed(&mut st, &p, 0, 3, w(10.0, 0.0, 600.0, 50.0, Some(200.0)));
        assert_eq!(st.decide(&p, now(3, 4, 4, 3)).target, 5);
    }

    #[test]
    fn a_backlog_alone_never_asks_for_max_replicas() {
        let p = scaling();
        let mut st = State::default();
        // 1000 calls piled up at the gateway while 20 calls/s arrive.
        feed(&mut st, &p, 0, 5, w(4.0, 4.0, 1000.0, 20.0, Some(200.0)));
        let d = st.decide(&p, now(5, 8, 8, 5));
        // 20 × 0.2 = 4, plus at most a quarter: 5 / 2.8 → 2; never below what is desired.
        assert_eq!(d.target, 8, "panic never scales down");
        let mut st = State::default();
        feed(&mut st, &p, 0, 5, w(4.0, 4.0, 1000.0, 20.0, Some(200.0)));
        assert_eq!(st.decide(&p, now(5, 1, 1, 5)).target, 2);
    }

    #[test]
    fn a_burst_of_arrivals_scales_up_in_doubling_steps() {
        let p = scaling();
        let mut st = State::default();
        // 300 calls arrive at once; one replica works through them.
        feed(&mut st, &p, 0, 1, w(4.0, 4.0, 292.0, 300.0, Some(200.0)));
        let d = st.decide(&p, now(1, 1, 1, 1));
        assert!(d.panicking);
        assert_eq!(d.target, 3, "one step: 1 ready → 3");
        feed(&mut st, &p, 1, 2, w(12.0, 4.0, 250.0, 0.0, Some(200.0)));
        let d = st.decide(&p, now(2, 3, 3, 2));
        assert_eq!(
            d.target, 6,
            "300 calls/s over the 3 s panic window: 100 × 0.2 → 8"
        );
        // Once drained and quiet, panic holds for a stable window, then it scales down.
        feed(&mut st, &p, 2, 33, w(0.0, 0.0, 0.0, 0.0, Some(200.0)));
        let d = st.decide(&p, now(33, 6, 6, 3));
        assert!(!d.panicking);
        assert!(d.target < 6, "{d:?}");
    }

    #[test]
    fn the_queue_panics_and_scales_up_at_once_before_a_service_time_is_known() {
        let p = scaling();
        let mut st = State::default();
        feed_concurrency(&mut st, &p, 0, 2, 4.0, 6.0);
        let d = st.decide(&p, now(2, 1, 1, 2));
        assert!(d.panicking);
        assert_eq!(
            d.target, 3,
            "ceil(10 / 2.8) = 4, but one step grows 1 ready replica to 3"
        );
        let d = st.decide(&p, now(2, 3, 3, 2));
        assert_eq!(d.target, 4, "with 3 ready, the whole ceil(10 / 2.8)");
    }

    #[test]
    fn without_gateway_counts_the_finished_rate_is_the_arrival_rate() {
        let p = scaling();
        let mut st = State::default();
        for t in 0..31 {
            st.observe(
                Sample {
                    unix_ms: t * 1000,
                    active: 10.0,
                    pending: 0.0,
                    held: 0.0,
                    rates: Some(Rates {
                        arrivals: None,
                        finished: 50.0,
                        service_ms: Some(200.0),
                        median_ms: Some(200.0),
                        served: 50.0,
                    }),
                },
                p.stable_window,
            );
        }
        assert_eq!(st.decide(&p, now(31, 4, 4, 31)).target, NEED_50RPS_200MS);
    }

    #[test]
    fn no_scale_down_while_panicking() {
        let p = scaling();
        let mut st = State::default();
        feed(&mut st, &p, 0, 3, w(10.0, 5.0, 0.0, 80.0, Some(200.0)));
        assert_eq!(st.decide(&p, now(3, 3, 6, 3)).target, 6);
        // Load vanishes: still in panic for the stable window, target stays.
        feed(&mut st, &p, 3, 5, w(0.0, 0.0, 0.0, 0.0, None));
        let d = st.decide(&p, now(5, 6, 6, 3));
        assert!(d.panicking);
        assert_eq!(d.target, 6);
    }

    #[test]
    fn max_replicas_bounds_panic() {
        let p = Scaling {
            max_replicas: 3,
            ..scaling()
        };
        let mut st = State::default();
        feed(&mut st, &p, 0, 2, w(50.0, 50.0, 0.0, 500.0, Some(200.0)));
        assert_eq!(st.decide(&p, now(2, 2, 2, 2)).target, 3);
    }

    #[test]
    fn scales_down_only_over_the_stable_window() {
        let p = scaling();
        let mut st = State::default();
        feed(&mut st, &p, 0, 31, w(10.0, 0.0, 0.0, 50.0, Some(200.0)));
        assert_eq!(st.decide(&p, now(31, 4, 4, 31)).target, 4);
        // Ten quiet seconds: the 30 s average is still 2/3 of the load → 3 replicas.
        feed(&mut st, &p, 31, 41, w(0.0, 0.0, 0.0, 0.0, None));
        let d = st.decide(&p, now(41, 4, 4, 31));
        assert_eq!(d.target, 3);
    }

    #[test]
    fn scale_to_zero_only_when_idle_and_empty() {
        let p = scaling();
        let mut st = State::default();
        feed(&mut st, &p, 0, 40, w(0.0, 0.0, 0.0, 0.0, None));
        // Active 5 s ago (a wake-up): keep one.
        assert_eq!(st.decide(&p, now(40, 1, 1, 35)).target, 1);
        // Idle for idle_timeout: zero.
        assert_eq!(st.decide(&p, now(46, 1, 1, 35)).target, 0);
        // min_replicas 1 never goes to zero.
        let p1 = Scaling {
            min_replicas: 1,
            ..scaling()
        };
        assert_eq!(st.decide(&p1, now(46, 1, 1, 35)).target, 1);
    }

    #[test]
    fn in_flight_or_held_calls_block_scale_to_zero() {
        let p = scaling();
        for (active, held) in [(0.5, 0.0), (0.0, 1.0)] {
            let mut st = State::default();
            feed(&mut st, &p, 0, 40, w(0.0, 0.0, 0.0, 0.0, None));
            feed(&mut st, &p, 40, 41, w(active, 0.0, held, 0.0, None));
            // The last window still had a call in flight or held: not idle.
            assert_eq!(st.decide(&p, now(41, 1, 1, 0)).target, 1);
        }
    }

    #[test]
    fn panic_lasts_a_stable_window_after_its_last_trigger() {
        let p = scaling();
        let mut st = State::default();
        feed(&mut st, &p, 0, 3, w(10.0, 5.0, 0.0, 80.0, Some(200.0)));
        assert_eq!(st.decide(&p, now(3, 3, 6, 3)).target, 6);
        feed(&mut st, &p, 3, 32, w(2.0, 0.0, 0.0, 10.0, Some(200.0)));
        let d = st.decide(&p, now(32, 6, 6, 32));
        assert!(d.panicking, "29 s after the last queueing: still panicking");
        assert_eq!(d.target, 6);
        feed(&mut st, &p, 32, 34, w(2.0, 0.0, 0.0, 10.0, Some(200.0)));
        let d = st.decide(&p, now(34, 6, 6, 34));
        assert!(!d.panicking, "31 s after the last queueing: stable again");
        assert!(d.target < 6, "and free to scale down: {d:?}");
    }

    #[test]
    fn a_recent_rise_is_not_scaled_down_by_the_quiet_before_it() {
        // The load test's shape: 10 s at 10 calls/s, then 10 s at 50 calls/s (200 ms each).
        // The 30 s average alone would ask for 3 replicas while 50 calls/s need 4.
        let p = scaling();
        let mut st = State::default();
        feed(&mut st, &p, 0, 10, w(2.0, 0.0, 0.0, 10.0, Some(200.0)));
        feed(&mut st, &p, 10, 20, w(10.0, 0.0, 0.0, 50.0, Some(200.0)));
        let d = st.decide(&p, now(20, 6, 6, 20));
        assert!(!d.panicking);
        assert_eq!(d.target, 4, "ceil(50 × 0.2 / 2.8): what the last 3 s need");
    }
}
