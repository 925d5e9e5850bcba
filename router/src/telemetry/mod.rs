//! Request telemetry kept in atomics, per cluster and per endpoint.
//!
//! Everything here is lock-free and cheap to update on the request path. The admin API
//! serialises [`CountersSnapshot`]s; the statsD exporter ([`statsd`]) reads the same
//! counters. Gauges (`active`, `pending`) live next to the state they describe
//! ([`crate::cluster::ClusterState`]) and are mirrored into [`ClusterStats`] so an exporter
//! finds everything in one place.

pub mod statsd;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

/// Upper bounds (inclusive, milliseconds) of the latency histogram buckets; one more bucket
/// counts everything slower than the last bound.
pub const LATENCY_BUCKETS_MS: [u64; 12] =
    [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/// Totals, status classes and latency of finished requests.
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    status_2xx: AtomicU64,
    status_3xx: AtomicU64,
    status_4xx: AtomicU64,
    status_5xx: AtomicU64,
    /// Finished without a final status we could see (client gone, 101 upgrades...).
    status_other: AtomicU64,
    latency_sum_us: AtomicU64,
    latency_max_us: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
}

impl Counters {
    /// Records one finished request with its final status (0 when none was sent).
    pub fn record(&self, status: u16, elapsed: Duration) {
        self.requests.fetch_add(1, Relaxed);
        let class = match status {
            200..=299 => &self.status_2xx,
            300..=399 => &self.status_3xx,
            400..=499 => &self.status_4xx,
            500..=599 => &self.status_5xx,
            _ => &self.status_other,
        };
        class.fetch_add(1, Relaxed);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_us.fetch_add(us, Relaxed);
        self.latency_max_us.fetch_max(us, Relaxed);
        let ms = us / 1000;
        let idx = LATENCY_BUCKETS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.buckets[idx].fetch_add(1, Relaxed);
    }

    /// A point-in-time copy for reporting.
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            requests: self.requests.load(Relaxed),
            status_2xx: self.status_2xx.load(Relaxed),
            status_3xx: self.status_3xx.load(Relaxed),
            status_4xx: self.status_4xx.load(Relaxed),
            status_5xx: self.status_5xx.load(Relaxed),
            status_other: self.status_other.load(Relaxed),
            latency_sum_us: self.latency_sum_us.load(Relaxed),
            latency_max_us: self.latency_max_us.load(Relaxed),
            latency_buckets_ms: LATENCY_BUCKETS_MS.to_vec(),
            latency_bucket_counts: self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
        }
    }
}

/// Serialisable copy of [`Counters`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CountersSnapshot {
    pub requests: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub status_other: u64,
    pub latency_sum_us: u64,
    pub latency_max_us: u64,
    /// Bucket upper bounds; `latency_bucket_counts` has one more entry (the overflow bucket).
    pub latency_buckets_ms: Vec<u64>,
    pub latency_bucket_counts: Vec<u64>,
}

/// Telemetry of one cluster (function).
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Every request routed to the cluster, whatever its outcome.
    pub counters: Counters,
    /// Requests currently holding an endpoint slot (gauge).
    pub active: AtomicU64,
    /// Requests currently waiting in the queue (gauge). Written by the cluster under its
    /// lock, sequentially consistent: its lock-free paths read it as their gate.
    pub pending: AtomicU64,
    /// Requests that had to wait in the queue.
    pub queued_total: AtomicU64,
    /// Requests refused with 429 because the queue was full.
    pub rejected_queue_full: AtomicU64,
    /// Requests answered 503 because their queue wait expired.
    pub expired_queue_wait: AtomicU64,
    /// Connect failures that were retried on another endpoint.
    pub retries: AtomicU64,
    /// Latency samples since the last statsD flush (bounded: a reservoir).
    pub samples: LatencySamples,
}

/// Most latency samples kept per cluster between two statsD flushes; beyond it a uniform
/// reservoir keeps the percentiles honest at any request rate.
pub const MAX_SAMPLES_PER_FLUSH: usize = 2048;

/// A bounded, uniformly sampled set of request latencies (ms), filled on the request path
/// (no allocation once warm) and drained by the statsD exporter. The request path never
/// waits for the lock: a sample that finds it taken is skipped (counted in `skipped`), which
/// a uniform sample can afford.
#[derive(Debug, Default)]
pub struct LatencySamples {
    inner: std::sync::Mutex<Reservoir>,
    /// Samples not taken because another request held the reservoir.
    pub skipped: AtomicU64,
}

#[derive(Debug, Default)]
struct Reservoir {
    seen: u64,
    values: Vec<u32>,
}

impl LatencySamples {
    pub fn record(&self, elapsed: Duration) {
        let ms = u32::try_from(elapsed.as_millis()).unwrap_or(u32::MAX);
        let mut r = match self.inner.try_lock() {
            Ok(r) => r,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                self.skipped.fetch_add(1, Relaxed);
                return;
            }
        };
        r.seen += 1;
        if r.values.len() < MAX_SAMPLES_PER_FLUSH {
            r.values.push(ms);
        } else {
            let j = (rand::random::<u64>() % r.seen) as usize;
            if j < MAX_SAMPLES_PER_FLUSH {
                r.values[j] = ms;
            }
        }
    }

    /// Takes the samples gathered since the last call.
    pub fn take(&self) -> Vec<u32> {
        let mut r = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        r.seen = 0;
        std::mem::take(&mut r.values)
    }
}

/// Serialisable copy of [`ClusterStats`].
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatsSnapshot {
    pub active: u64,
    pub pending: u64,
    pub queued_total: u64,
    pub rejected_queue_full: u64,
    pub expired_queue_wait: u64,
    pub retries: u64,
    /// Latency samples skipped because the reservoir was busy (the statsD percentiles are
    /// a sample; this says how much of one).
    pub latency_samples_skipped: u64,
    #[serde(flatten)]
    pub counters: CountersSnapshot,
}

impl ClusterStats {
    pub fn snapshot(&self) -> ClusterStatsSnapshot {
        ClusterStatsSnapshot {
            active: self.active.load(Relaxed),
            pending: self.pending.load(Relaxed),
            queued_total: self.queued_total.load(Relaxed),
            rejected_queue_full: self.rejected_queue_full.load(Relaxed),
            expired_queue_wait: self.expired_queue_wait.load(Relaxed),
            retries: self.retries.load(Relaxed),
            latency_samples_skipped: self.samples.skipped.load(Relaxed),
            counters: self.counters.snapshot(),
        }
    }
}

/// Telemetry of one endpoint (replica). Its in-flight gauge is the endpoint's own counter.
#[derive(Debug, Default)]
pub struct EndpointStats {
    /// Requests that were sent (or tried to be sent) to this endpoint.
    pub counters: Counters,
    /// Connections to this endpoint that could not be established.
    pub connect_failures: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_samples_stay_bounded_and_are_taken_once() {
        let s = LatencySamples::default();
        for i in 0..(MAX_SAMPLES_PER_FLUSH as u64 * 5) {
            s.record(Duration::from_millis(i % 100));
        }
        let taken = s.take();
        assert_eq!(taken.len(), MAX_SAMPLES_PER_FLUSH);
        assert!(taken.iter().all(|&v| v < 100));
        assert!(s.take().is_empty(), "drained");
    }

    #[test]
    fn records_classes_and_buckets() {
        let c = Counters::default();
        c.record(200, Duration::from_millis(3));
        c.record(404, Duration::from_millis(30));
        c.record(503, Duration::from_secs(20));
        c.record(0, Duration::ZERO);
        let s = c.snapshot();
        assert_eq!(s.requests, 4);
        assert_eq!(
            (s.status_2xx, s.status_4xx, s.status_5xx, s.status_other),
            (1, 1, 1, 1)
        );
        assert_eq!(s.latency_bucket_counts.len(), LATENCY_BUCKETS_MS.len() + 1);
        assert_eq!(s.latency_bucket_counts[0], 1); // 0 ms
        assert_eq!(s.latency_bucket_counts[1], 1); // 3 ms -> <= 5
        assert_eq!(s.latency_bucket_counts[4], 1); // 30 ms -> <= 50
        assert_eq!(*s.latency_bucket_counts.last().expect("overflow bucket"), 1);
        assert_eq!(s.latency_max_us, 20_000_000);
    }
}
