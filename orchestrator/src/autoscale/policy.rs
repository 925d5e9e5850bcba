//! The scaling policy, after Knative's KPA, as a pure function of what was observed.
//!
//! * Concurrency `c` = requests in flight at the replicas + requests queued at the routers.
//! * Capacity of one replica = `target_concurrency × target_utilization`.
//! * `want(c) = ceil(c / capacity)`, clamped to `[min_replicas, max_replicas]`.
//! * **Stable mode**: `c` averaged over the stable window (default 30 s); the only mode that
//!   scales down, so a short lull never removes replicas. Its answer never falls below what
//!   the concurrency of the panic window needs: a load that rose recently (the 30 s average
//!   still remembers the quiet before it) keeps the replicas it uses.
//! * **Panic mode**: entered when requests queue (`pending > 0`) or when the concurrency
//!   averaged over the panic window (3 s) reaches twice the capacity of the replicas that are
//!   ready. While panicking the target follows the panic window at once, one step at most
//!   doubling the ready replicas (at least +2), and never goes down; as in Knative, panic
//!   ends a whole stable window after its last trigger, so a burst's replicas are not
//!   removed seconds after they came up.
//! * **Scale to zero**: only with `min_replicas == 0`, when nothing is in flight or queued and
//!   the last activity (request, wake-up, manual scale) is older than `idle_timeout`.
//!
//! The caller applies a decision only when it differs from the previous decision for the
//! function (or it is a scale-up in panic mode, or a scale to zero): a manual
//! `/system/scale-function` is honoured until the policy's own answer changes.

use std::collections::VecDeque;
use std::time::Duration;

use sluice_common::registry::Scaling;

/// Window over which panic-mode concurrency is averaged.
pub const PANIC_WINDOW: Duration = Duration::from_secs(3);
/// How far back the queue's trend is judged (growing: scale; shrinking: hold).
pub const QUEUE_TREND: Duration = Duration::from_secs(1);

/// One observation (one statistics window, or a queueing signal).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub unix_ms: u64,
    pub active: f64,
    pub pending: f64,
}

impl Sample {
    fn concurrency(&self) -> f64 {
        self.active + self.pending
    }
}

/// What the policy remembers about one function.
#[derive(Debug, Default)]
pub struct State {
    samples: VecDeque<Sample>,
    panic_until_ms: Option<u64>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub target: u32,
    pub panicking: bool,
    pub reason: &'static str,
}

impl State {
    /// Records a window or a signal. Older samples than the stable window are dropped.
    pub fn observe(&mut self, s: Sample, stable_window: Duration) {
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

    fn average_since(&self, from_ms: u64) -> f64 {
        let in_window: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.unix_ms >= from_ms)
            .map(Sample::concurrency)
            .collect();
        if in_window.is_empty() {
            0.0
        } else {
            in_window.iter().sum::<f64>() / in_window.len() as f64
        }
    }

    /// True when the latest queue length is shorter than it was about a second before.
    fn queue_shrinking(&self) -> bool {
        let Some(latest) = self.latest() else {
            return false;
        };
        let from = latest
            .unix_ms
            .saturating_sub(QUEUE_TREND.as_millis() as u64);
        self.samples
            .iter()
            .find(|s| s.unix_ms >= from && s.unix_ms < latest.unix_ms)
            .is_some_and(|earlier| latest.pending < earlier.pending)
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
        let c_stable = self.average_since(stable_from);
        let c_panic = self.average_since(panic_from);
        let latest = self.latest();
        let pending = latest.map(|s| s.pending).unwrap_or(0.0);
        let active = latest.map(|s| s.active).unwrap_or(0.0);

        let ready_capacity = capacity * f64::from(now.ready.max(1));
        let panic_now = pending > 0.0 || c_panic >= 2.0 * ready_capacity;
        if panic_now {
            self.panic_until_ms = Some(now.unix_ms + p.stable_window.as_millis() as u64);
        }
        let panicking = self.panic_until_ms.is_some_and(|t| now.unix_ms < t);

        let idle_for = now.unix_ms.saturating_sub(now.last_activity_ms);
        let idle = active == 0.0 && pending == 0.0 && idle_for >= p.idle_timeout.as_millis() as u64;

        if panicking {
            // Follow the short window (and what is queued right now) at once; never go down.
            // The backlog that piled up while replicas were starting inflates that number, so
            // one step may at most double the replicas that are ready (at least +2), and a
            // queue that is already shrinking (the ready replicas outpace arrivals) asks for
            // nothing more: a transient backlog drains without a tenfold overshoot.
            let max = p.max_replicas.max(p.min_replicas);
            let floor = now.desired.min(max);
            if self.queue_shrinking() {
                return Decision {
                    target: floor,
                    panicking: true,
                    reason: "panic: queue draining, holding",
                };
            }
            let want = clamp((c_panic.max(active + pending)) / capacity);
            let step_cap = (now.ready.saturating_mul(2)).max(now.ready + 2);
            return Decision {
                target: want.min(step_cap).max(floor),
                panicking: true,
                reason: "panic: requests queueing or concurrency at twice the capacity",
            };
        }
        let want = clamp(c_stable.max(c_panic) / capacity);
        if want == 0 {
            // Zero only once idle; until then keep one.
            if idle || p.min_replicas > 0 {
                return Decision {
                    target: p.min_replicas,
                    panicking: false,
                    reason: "idle",
                };
            }
            return Decision {
                target: now.desired.clamp(p.min_replicas, 1.max(p.min_replicas)),
                panicking: false,
                reason: "recently active: keep one replica until idle",
            };
        }
        Decision {
            target: want,
            panicking: false,
            reason: "stable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented defaults: target 4 × utilization 0.7 = 2.8 per replica, max 10,
    /// idle 10 s, stable window 30 s.
    fn scaling() -> Scaling {
        Scaling::default()
    }

    fn feed(st: &mut State, p: &Scaling, from_s: u64, to_s: u64, active: f64, pending: f64) {
        for t in from_s..to_s {
            st.observe(
                Sample {
                    unix_ms: t * 1000,
                    active,
                    pending,
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

    #[test]
    fn desired_is_concurrency_over_target_times_utilization() {
        let p = scaling();
        let mut st = State::default();
        // 10 in flight, capacity 2.8 per replica → ceil(3.57) = 4, after a full stable window.
        feed(&mut st, &p, 0, 31, 10.0, 0.0);
        let d = st.decide(&p, now(31, 4, 4, 31));
        assert_eq!(d.target, 4);
        assert!(!d.panicking);
    }

    #[test]
    fn queueing_panics_and_scales_up_at_once() {
        let p = scaling();
        let mut st = State::default();
        feed(&mut st, &p, 0, 2, 4.0, 6.0);
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
    fn a_cold_start_backlog_does_not_overshoot_tenfold() {
        let p = scaling();
        let mut st = State::default();
        // One replica just became ready with 30 calls queued behind it (a burst that arrived
        // during the cold start): the panic window alone would ask for 13 replicas.
        feed(&mut st, &p, 0, 1, 4.0, 30.0);
        assert_eq!(st.decide(&p, now(1, 1, 1, 1)).target, 3);
        // With 3 ready the queue grows further: the next step may double.
        feed(&mut st, &p, 1, 2, 12.0, 40.0);
        assert_eq!(st.decide(&p, now(2, 3, 3, 2)).target, 6);
        // Then it shrinks (6 ready outpace arrivals): nothing more is asked for.
        feed(&mut st, &p, 2, 3, 24.0, 20.0);
        let d = st.decide(&p, now(3, 6, 6, 3));
        assert!(d.panicking);
        assert_eq!(d.target, 6);
    }

    #[test]
    fn no_scale_down_while_panicking() {
        let p = scaling();
        let mut st = State::default();
        feed(&mut st, &p, 0, 3, 10.0, 5.0);
        assert_eq!(st.decide(&p, now(3, 3, 6, 3)).target, 6);
        // Load vanishes: still in panic for the stable window, target stays.
        feed(&mut st, &p, 3, 5, 0.0, 0.0);
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
        feed(&mut st, &p, 0, 2, 50.0, 50.0);
        assert_eq!(st.decide(&p, now(2, 2, 2, 2)).target, 3);
    }

    #[test]
    fn scales_down_only_over_the_stable_window() {
        let p = scaling();
        let mut st = State::default();
        feed(&mut st, &p, 0, 31, 10.0, 0.0);
        assert_eq!(st.decide(&p, now(31, 4, 4, 31)).target, 4);
        // Ten quiet seconds: the 30 s average is still 2/3 of the load → 3 replicas.
        feed(&mut st, &p, 31, 41, 0.0, 0.0);
        let d = st.decide(&p, now(41, 4, 4, 31));
        assert_eq!(d.target, 3);
    }

    #[test]
    fn scale_to_zero_only_when_idle_and_empty() {
        let p = scaling();
        let mut st = State::default();
        feed(&mut st, &p, 0, 40, 0.0, 0.0);
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
    fn in_flight_requests_block_scale_to_zero() {
        let p = scaling();
        let mut st = State::default();
        feed(&mut st, &p, 0, 40, 0.0, 0.0);
        st.observe(
            Sample {
                unix_ms: 40_000,
                active: 0.5,
                pending: 0.0,
            },
            p.stable_window,
        );
        // The last window still had a request in flight: not idle.
        assert_eq!(st.decide(&p, now(40, 1, 1, 0)).target, 1);
    }

    #[test]
    fn panic_lasts_a_stable_window_after_its_last_trigger() {
        let p = scaling();
        let mut st = State::default();
        feed(&mut st, &p, 0, 3, 10.0, 5.0);
        assert_eq!(st.decide(&p, now(3, 3, 6, 3)).target, 6);
        feed(&mut st, &p, 3, 32, 2.0, 0.0);
        let d = st.decide(&p, now(32, 6, 6, 32));
        assert!(d.panicking, "29 s after the last queueing: still panicking");
        assert_eq!(d.target, 6);
        feed(&mut st, &p, 32, 34, 2.0, 0.0);
        let d = st.decide(&p, now(34, 6, 6, 34));
        assert!(!d.panicking, "31 s after the last queueing: stable again");
        assert!(d.target < 6, "and free to scale down: {d:?}");
    }

    #[test]
    fn a_recent_rise_is_not_scaled_down_by_the_quiet_before_it() {
        // The load test's shape: 10 s at 2 in flight, then 10 s at 10 in flight. The 30 s
        // average (about 6) alone would ask for 3 replicas while 10 calls need 4.
        let p = scaling();
        let mut st = State::default();
        feed(&mut st, &p, 0, 10, 2.0, 0.0);
        feed(&mut st, &p, 10, 20, 10.0, 0.0);
        let d = st.decide(&p, now(20, 6, 6, 20));
        assert!(!d.panicking);
        assert_eq!(d.target, 4, "ceil(10 / 2.8): what the last 3 s need");
    }
}
