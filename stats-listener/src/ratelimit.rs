//! Log rate limiting: a flood of bad packets or a Redis outage yields one log line per
//! interval (with the number of suppressed ones), not one per event.

use std::time::Duration;

use tokio::time::Instant;

/// Allows one event per `every`; counts the others.
#[derive(Debug)]
pub struct LogEvery {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogEvery {
    pub fn new(every: Duration) -> LogEvery {
        LogEvery {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when the caller may log now (`n` events were suppressed since the last
    /// log), `None` when it should stay quiet.
    pub fn check(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_log_per_interval_with_the_suppressed_count() {
        let t0 = Instant::now();
        let mut l = LogEvery::new(Duration::from_secs(1));
        assert_eq!(l.check(t0), Some(0));
        assert_eq!(l.check(t0 + Duration::from_millis(10)), None);
        assert_eq!(l.check(t0 + Duration::from_millis(999)), None);
        assert_eq!(l.check(t0 + Duration::from_millis(1000)), Some(2));
        assert_eq!(l.check(t0 + Duration::from_millis(1001)), None);
    }
}
