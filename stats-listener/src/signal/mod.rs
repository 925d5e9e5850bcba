//! Scale signals: the orchestrator hears about queueing the moment it appears, not at the
//! window end.
//!
//! When a function's backlog (`pending` summed over live routers plus `held` summed over live
//! gateways) goes from 0 to above 0, the aggregator emits a [`Signal`] at once; while it stays
//! above 0, further updates emit at most one signal per interval (100 ms by default).
//! [`publish`] PUBLISHes each signal as JSON on `<instance>:scale-signal`:
//!
//! ```json
//! {"function":"hello","pending":3.0,"active":8.0,"held":0.0,"unix_ms":1700000000123}
//! ```

pub mod publish;

use std::time::Duration;

use tokio::time::Instant;

/// Payload published on the scale-signal channel (the contract lives in `sluice_common`).
pub use sluice_common::load::Signal;

/// Decides when a function's pending level deserves a signal (see the module doc).
#[derive(Debug, Default)]
pub struct Throttle {
    last: Option<Instant>,
    was_pending: bool,
}

impl Throttle {
    /// Observes the current pending total after an update; true when a signal is due.
    pub fn on_update(&mut self, pending: f64, now: Instant, interval: Duration) -> bool {
        if pending <= 0.0 {
            self.was_pending = false;
            return false;
        }
        let due = !self.was_pending
            || self
                .last
                .is_none_or(|l| now.saturating_duration_since(l) >= interval);
        self.was_pending = true;
        if due {
            self.last = Some(now);
        }
        due
    }

    /// Observes the level without emitting (window end: pending may have dropped to 0
    /// because the routers reporting it expired).
    pub fn observe(&mut self, pending: f64) {
        if pending <= 0.0 {
            self.was_pending = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IV: Duration = Duration::from_millis(100);

    #[test]
    fn rising_edge_fires_at_once_then_at_most_every_interval() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let mut th = Throttle::default();
        assert!(!th.on_update(0.0, ms(0), IV), "nothing pending");
        assert!(th.on_update(2.0, ms(1), IV), "0 -> 2 fires");
        assert!(!th.on_update(3.0, ms(50), IV), "within the interval");
        assert!(!th.on_update(3.0, ms(100), IV), "still within");
        assert!(
            th.on_update(3.0, ms(101), IV),
            "interval passed, still pending"
        );
        assert!(!th.on_update(0.0, ms(120), IV), "drained");
        assert!(
            th.on_update(1.0, ms(130), IV),
            "a new rising edge fires at once"
        );
    }

    #[test]
    fn expiry_to_zero_rearms_the_edge() {
        let t = Instant::now();
        let mut th = Throttle::default();
        assert!(th.on_update(1.0, t, IV));
        th.observe(0.0);
        assert!(th.on_update(1.0, t + Duration::from_millis(10), IV));
    }

    #[test]
    fn signal_json_has_the_documented_shape() {
        let s = Signal {
            function: "hello".into(),
            pending: 3.0,
            active: 8.0,
            held: 0.5,
            unix_ms: 1_700_000_000_123,
        };
        assert_eq!(
            serde_json::to_string(&s).expect("json"),
            r#"{"function":"hello","pending":3.0,"active":8.0,"held":0.5,"unix_ms":1700000000123}"#
        );
    }
}
