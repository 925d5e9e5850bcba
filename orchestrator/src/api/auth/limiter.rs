//! Failed-attempt limiting, per client address: a token bucket of `burst` failures that
//! refills one every `refill`. While a source's bucket is empty every credential it presents
//! is refused unchecked (429 with `Retry-After`), the right one too: otherwise the limit
//! would still answer "right" or "wrong" to each guess.
//!
//! Pure: the caller passes the time in, so the tests need no clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Sources beyond this many share one bucket (an attacker with many addresses cannot grow
/// the table without bound, and still gets no more guesses than one address).
const OVERFLOW: &str = "*";

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub burst: u32,
    pub refill: Duration,
    pub max_sources: usize,
}

impl Default for Settings {
    /// 10 failures at once, then one every 6 s (10 a minute) per address.
    fn default() -> Self {
        Settings {
            burst: 10,
            refill: Duration::from_secs(6),
            max_sources: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    since: Instant,
}

#[derive(Debug)]
pub struct Limiter {
    settings: Settings,
    buckets: HashMap<String, Bucket>,
}

impl Limiter {
    pub fn new(settings: Settings) -> Self {
        Limiter {
            settings,
            buckets: HashMap::new(),
        }
    }

    /// `Err(wait)` when `source` has no attempt left: it may try again after `wait`.
    pub fn check(&mut self, source: &str, now: Instant) -> Result<(), Duration> {
        let settings = self.settings;
        let Some(b) = self.bucket(source, now, false) else {
            return Ok(());
        };
        if b.tokens > 0 {
            return Ok(());
        }
        Err(settings
            .refill
            .saturating_sub(now.saturating_duration_since(b.since)))
    }

    /// Records a failed attempt by `source`.
    pub fn failed(&mut self, source: &str, now: Instant) {
        let burst = self.settings.burst;
        if let Some(b) = self.bucket(source, now, true) {
            if b.tokens == burst {
                b.since = now;
            }
            b.tokens = b.tokens.saturating_sub(1);
        }
    }

    /// Sources with a bucket (bounded by `max_sources` + 1).
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// The refilled bucket of `source` (made when `create`; full buckets are not kept).
    fn bucket(&mut self, source: &str, now: Instant, create: bool) -> Option<&mut Bucket> {
        let s = self.settings;
        let mut key = source;
        if !self.buckets.contains_key(key) {
            if !create {
                // Unknown: full, unless the table overflowed into the shared bucket.
                if self.buckets.len() < s.max_sources {
                    return None;
                }
                key = OVERFLOW;
                self.buckets.get(key)?;
            } else {
                if self.buckets.len() >= s.max_sources {
                    self.forget_full(now);
                }
                if self.buckets.len() >= s.max_sources {
                    key = OVERFLOW;
                }
                self.buckets.entry(key.to_string()).or_insert(Bucket {
                    tokens: s.burst,
                    since: now,
                });
            }
        }
        let b = self.buckets.get_mut(key)?;
        refill(b, s, now);
        Some(b)
    }

    /// Drops the buckets that have refilled completely: they hold nothing.
    fn forget_full(&mut self, now: Instant) {
        let s = self.settings;
        self.buckets.retain(|_, b| {
            refill(b, s, now);
            b.tokens < s.burst
        });
    }
}

fn refill(b: &mut Bucket, s: Settings, now: Instant) {
    if b.tokens >= s.burst || s.refill.is_zero() {
        return;
    }
    let elapsed = now.saturating_duration_since(b.since);
    let n = (elapsed.as_nanos() / s.refill.as_nanos()).min(u128::from(s.burst)) as u32;
    if n == 0 {
        return;
    }
    b.tokens = (b.tokens + n).min(s.burst);
    b.since += s.refill * n;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_sources: usize) -> Limiter {
        Limiter::new(Settings {
            burst: 3,
            refill: Duration::from_secs(6),
            max_sources,
        })
    }

    #[test]
    fn a_source_gets_burst_failures_then_waits_for_a_refill() {
        let mut l = limiter(10);
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check("1.2.3.4", t), Ok(()));
            l.failed("1.2.3.4", t);
        }
        assert_eq!(l.check("1.2.3.4", t), Err(Duration::from_secs(6)));
        assert_eq!(
            l.check("1.2.3.4", t + Duration::from_secs(2)),
            Err(Duration::from_secs(4))
        );
        // Another address is not affected.
        assert_eq!(l.check("5.6.7.8", t), Ok(()));
        // One refill: one more attempt, then blocked again.
        let t6 = t + Duration::from_secs(6);
        assert_eq!(l.check("1.2.3.4", t6), Ok(()));
        l.failed("1.2.3.4", t6);
        assert!(l.check("1.2.3.4", t6).is_err());
        // Long quiet: the whole burst is back, and nothing is kept for a full bucket.
        let later = t + Duration::from_secs(600);
        for _ in 0..3 {
            assert_eq!(l.check("1.2.3.4", later), Ok(()));
            l.failed("1.2.3.4", later);
        }
        assert!(l.check("1.2.3.4", later).is_err());
    }

    #[test]
    fn the_table_is_bounded_and_overflow_shares_one_bucket() {
        let mut l = limiter(4);
        let t = Instant::now();
        for i in 0..100 {
            l.failed(&format!("10.0.0.{i}"), t);
        }
        assert!(l.tracked() <= 5, "{}", l.tracked());
        // Sources past the bound share the overflow bucket: 3 failures between them.
        assert!(l.check("10.0.0.99", t).is_err());
        assert!(l.check("10.9.9.9", t).is_err());
        // Once the old buckets are full again they are forgotten and room comes back.
        let later = t + Duration::from_secs(600);
        l.failed("192.0.2.1", later);
        assert_eq!(l.check("192.0.2.1", later), Ok(()));
        assert!(l.tracked() <= 2, "{}", l.tracked());
    }
}
