//! What happened in each second of the run.
//!
//! Requests belong to the second they were *due* in (not the one they finished in), so a
//! row's `sent` matches the profile's target and `ok + failed` reaches `sent` once every
//! answer is in. Latency is measured from send to the full body received, for every request
//! that got an HTTP answer (any status); connection errors and timeouts have none.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How one sent request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer with this status, body fully read.
    Answered(u16),
    /// No answer within `--timeout`.
    Timeout,
    /// Connection refused/reset or another transport error.
    Conn,
}

impl Outcome {
    /// Whether this counts as success (2xx).
    pub fn is_ok(self) -> bool {
        matches!(self, Outcome::Answered(s) if (200..300).contains(&s))
    }

    /// The key in error breakdowns (`503`, `timeout`, `conn`).
    pub fn error_key(self) -> String {
        match self {
            Outcome::Answered(s) => s.to_string(),
            Outcome::Timeout => "timeout".to_string(),
            Outcome::Conn => "conn".to_string(),
        }
    }
}

/// The function's replicas as the system API reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicas {
    /// `availableReplicas` (ready) and `replicas` (desired).
    Seen { ready: u64, desired: u64 },
    /// The poll failed (shown as `?`).
    Unknown,
}

/// One second of the run.
#[derive(Debug, Clone, Default)]
pub struct Second {
    /// Requests the profile asked for in this second (its average rate).
    pub target: f64,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Due but not sent: the concurrency cap was reached.
    pub skipped: u64,
    /// Latencies of answered requests, in microseconds.
    pub latencies_us: Vec<u64>,
    /// Failed requests by [`Outcome::error_key`].
    pub errors: BTreeMap<String, u64>,
    /// Last replica poll made during this second; `None` when no poll was made.
    pub replicas: Option<Replicas>,
}

impl Second {
    /// Sent requests that have neither succeeded nor failed yet.
    pub fn pending(&self) -> u64 {
        self.sent.saturating_sub(self.ok + self.failed)
    }

    /// Latency percentile in milliseconds over this second's answered requests.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        percentile(&v, p).map(us_to_ms)
    }
}

/// Microseconds to milliseconds.
pub fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Nearest-rank percentile (`p` in `(0, 100]`) of sorted values; `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted.len()) - 1;
    sorted.get(idx).copied()
}

/// Error breakdown as `key:count` joined by `sep` (`503:3;conn:1`).
pub fn format_errors(errors: &BTreeMap<String, u64>, sep: &str) -> String {
    errors
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k}:{n}"))
        .collect::<Vec<_>>()
        .join(sep)
}

/// The per-second record shared by the scheduler, the request tasks, the replica poller
/// and the live table. Seconds outside the run are ignored.
#[derive(Debug, Clone)]
pub struct Recorder {
    seconds: Arc<Mutex<Vec<Second>>>,
}

impl Recorder {
    /// One empty [`Second`] per target value.
    pub fn new(targets: Vec<f64>) -> Self {
        let seconds = targets
            .into_iter()
            .map(|target| Second {
                target,
                ..Second::default()
            })
            .collect();
        Recorder {
            seconds: Arc::new(Mutex::new(seconds)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Second>> {
        // A panic while holding the lock leaves plain counters behind; keep using them.
        self.seconds.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with(&self, second: usize, f: impl FnOnce(&mut Second)) {
        if let Some(s) = self.lock().get_mut(second) {
            f(s);
        }
    }

    pub fn sent(&self, second: usize) {
        self.with(second, |s| s.sent += 1);
    }

    pub fn skipped(&self, second: usize) {
        self.with(second, |s| s.skipped += 1);
    }

    /// Records how a request sent in `second` ended; `latency` is `None` without an answer.
    pub fn finished(&self, second: usize, outcome: Outcome, latency: Option<Duration>) {
        self.with(second, |s| {
            if let Some(l) = latency {
                s.latencies_us
                    .push(u64::try_from(l.as_micros()).unwrap_or(u64::MAX));
            }
            if outcome.is_ok() {
                s.ok += 1;
            } else {
                s.failed += 1;
                *s.errors.entry(outcome.error_key()).or_insert(0) += 1;
            }
        });
    }

    pub fn replicas(&self, second: usize, r: Replicas) {
        self.with(second, |s| s.replicas = Some(r));
    }

    /// Copy of one second.
    pub fn get(&self, second: usize) -> Option<Second> {
        self.lock().get(second).cloned()
    }

    /// Number of seconds in the run.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Ends the record: keeps the first `rows` seconds (fewer when the run was interrupted),
    /// counts requests still unanswered as failed (`cancelled`), and fills seconds without
    /// a replica poll from the second before.
    pub fn finish(&self, rows: usize) -> Vec<Second> {
        let mut seconds = std::mem::take(&mut *self.lock());
        seconds.truncate(rows);
        let mut prev: Option<Replicas> = None;
        for s in &mut seconds {
            let pending = s.pending();
            if pending > 0 {
                s.failed += pending;
                *s.errors.entry("cancelled".to_string()).or_insert(0) += pending;
            }
            if s.replicas.is_none() {
                s.replicas = prev;
            }
            prev = s.replicas;
        }
        seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 95.0), Some(95));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 99.0), Some(4));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn second_percentiles_are_in_ms_and_order_free() {
        let s = Second {
            latencies_us: vec![300_000, 100_000, 200_000],
            ..Second::default()
        };
        assert_eq!(s.percentile_ms(50.0), Some(200.0));
        assert_eq!(s.percentile_ms(99.0), Some(300.0));
    }

    #[test]
    fn outcomes_and_error_keys() {
        assert!(Outcome::Answered(200).is_ok());
        assert!(Outcome::Answered(204).is_ok());
        assert!(!Outcome::Answered(503).is_ok());
        assert!(!Outcome::Answered(301).is_ok());
        assert!(!Outcome::Timeout.is_ok());
        assert_eq!(Outcome::Answered(429).error_key(), "429");
        assert_eq!(Outcome::Conn.error_key(), "conn");
    }

    #[test]
    fn recorder_counts_per_second_and_finishes() {
        let r = Recorder::new(vec![2.0, 2.0, 2.0]);
        r.sent(0);
        r.sent(0);
        r.finished(0, Outcome::Answered(200), Some(Duration::from_millis(5)));
        r.finished(0, Outcome::Answered(503), Some(Duration::from_millis(1)));
        r.sent(1);
        r.skipped(1);
        r.replicas(
            0,
            Replicas::Seen {
                ready: 1,
                desired: 2,
            },
        );
        r.replicas(2, Replicas::Unknown);
        r.sent(9); // outside the run: ignored
        assert_eq!(r.get(1).map(|s| s.pending()), Some(1));
        let rows = r.finish(3);
        assert_eq!(rows[0].ok, 1);
        assert_eq!(rows[0].failed, 1);
        assert_eq!(format_errors(&rows[0].errors, ";"), "503:1");
        assert_eq!(rows[1].failed, 1, "unanswered at the end counts as failed");
        assert_eq!(format_errors(&rows[1].errors, ";"), "cancelled:1");
        assert_eq!(rows[1].skipped, 1);
        assert_eq!(
            rows[1].replicas,
            Some(Replicas::Seen {
                ready: 1,
                desired: 2
            })
        );
        assert_eq!(rows[2].replicas, Some(Replicas::Unknown));
    }

    #[test]
    fn error_breakdown_orders_statuses_first() {
        let mut e = BTreeMap::new();
        e.insert("timeout".to_string(), 1);
        e.insert("503".to_string(), 1);
        e.insert("conn".to_string(), 2);
        e.insert("429".to_string(), 3);
        assert_eq!(format_errors(&e, " "), "429:3 503:1 conn:2 timeout:1");
    }
}
