//! A gauge as reported by each router.
//!
//! Routers report their own view of a gauge; the function total is the sum of the entries
//! that are still live. An entry not refreshed within the expiry (3 s by default) belongs to
//! a router that stopped reporting: it no longer counts, and a delta arriving for it starts
//! from 0 as for a new entry. The number of entries is bounded by the caller's limit.

use std::time::Duration;

use tokio::time::Instant;

use super::event::GaugeOp;

#[derive(Debug)]
struct Entry {
    router: Box<str>,
    value: f64,
    seen: Instant,
}

/// Per-router values of one gauge.
#[derive(Debug, Default)]
pub struct RouterGauges {
    entries: Vec<Entry>,
}

fn live(e: &Entry, now: Instant, expiry: Duration) -> bool {
    now.saturating_duration_since(e.seen) <= expiry
}

impl RouterGauges {
    /// Applies `op` from `router`. Returns false (and changes nothing) when `router` is new
    /// and `max_routers` entries already exist.
    pub fn apply(
        &mut self,
        router: &str,
        op: GaugeOp,
        now: Instant,
        expiry: Duration,
        max_routers: usize,
    ) -> bool {
        let idx = match self.entries.iter().position(|e| &*e.router == router) {
            Some(i) => i,
            None => {
                self.entries.retain(|e| live(e, now, expiry));
                if self.entries.len() >= max_routers {
                    return false;
                }
                self.entries.push(Entry {
                    router: router.into(),
                    value: 0.0,
                    seen: now,
                });
                self.entries.len() - 1
            }
        };
        let e = &mut self.entries[idx];
        let base = if live(e, now, expiry) { e.value } else { 0.0 };
        e.value = match op {
            GaugeOp::Set(v) => v,
            GaugeOp::Delta(d) => base + d,
        };
        e.seen = now;
        true
    }

    /// Sum of the live entries.
    pub fn sum(&self, now: Instant, expiry: Duration) -> f64 {
        self.entries
            .iter()
            .filter(|e| live(e, now, expiry))
            .map(|e| e.value)
            .sum()
    }

    /// Live router names.
    pub fn routers(&self, now: Instant, expiry: Duration) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(move |e| live(e, now, expiry))
            .map(|e| &*e.router)
    }

    /// Drops expired entries.
    pub fn expire(&mut self, now: Instant, expiry: Duration) {
        self.entries.retain(|e| live(e, now, expiry));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXP: Duration = Duration::from_secs(3);

    #[test]
    fn routers_are_summed_and_deltas_apply_per_router() {
        let t = Instant::now();
        let mut g = RouterGauges::default();
        assert!(g.apply("a", GaugeOp::Set(3.0), t, EXP, 8));
        assert!(g.apply("b", GaugeOp::Set(4.0), t, EXP, 8));
        assert_eq!(g.sum(t, EXP), 7.0);
        assert!(g.apply("a", GaugeOp::Delta(2.0), t, EXP, 8));
        assert!(g.apply("b", GaugeOp::Delta(-1.0), t, EXP, 8));
        assert_eq!(g.sum(t, EXP), 8.0);
        assert!(g.apply("c", GaugeOp::Delta(1.0), t, EXP, 8));
        assert_eq!(g.sum(t, EXP), 9.0);
        assert_eq!(g.routers(t, EXP).count(), 3);
    }

    #[test]
    fn silent_routers_expire() {
        let t = Instant::now();
        let mut g = RouterGauges::default();
        g.apply("a", GaugeOp::Set(3.0), t, EXP, 8);
        g.apply("b", GaugeOp::Set(4.0), t, EXP, 8);
        let later = t + Duration::from_secs(2);
        g.apply("a", GaugeOp::Set(5.0), later, EXP, 8);
        let t4 = t + Duration::from_secs(4);
        assert_eq!(g.sum(t4, EXP), 5.0, "b expired, a refreshed at 2 s");
        // A delta for an expired entry starts from zero.
        g.apply("b", GaugeOp::Delta(1.0), t4, EXP, 8);
        assert_eq!(g.sum(t4, EXP), 6.0);
        g.expire(t + Duration::from_secs(10), EXP);
        assert!(g.is_empty());
    }

    #[test]
    fn router_limit_is_enforced() {
        let t = Instant::now();
        let mut g = RouterGauges::default();
        assert!(g.apply("a", GaugeOp::Set(1.0), t, EXP, 1));
        assert!(!g.apply("b", GaugeOp::Set(1.0), t, EXP, 1));
        assert!(g.apply("a", GaugeOp::Set(2.0), t, EXP, 1));
        assert_eq!(g.sum(t, EXP), 2.0);
        // Once "a" expired, a new router fits.
        let later = t + Duration::from_secs(5);
        assert!(g.apply("b", GaugeOp::Set(1.0), later, EXP, 1));
    }
}
