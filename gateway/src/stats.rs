//! Process-wide counters, shown on `/healthz` (and a natural place for a metrics exporter
//! later), plus the in-flight request count graceful shutdown waits on.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Monotonic counters; all relaxed (they are statistics, not synchronisation).
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests seen (every request that reached the proxy logic).
    pub requests: AtomicU64,
    /// Requests refused as malformed (400).
    pub malformed: AtomicU64,
    /// Requests for functions that do not exist (404).
    pub not_found: AtomicU64,
    /// Requests refused because the body was too large (413).
    pub too_large: AtomicU64,
    /// Requests that had to wait for a scale-from-zero.
    pub held: AtomicU64,
    /// Cold starts begun (one per function per episode, however many requests wait).
    pub cold_starts: AtomicU64,
    /// Wake calls sent to the orchestrator (first attempts and retries).
    pub wake_calls: AtomicU64,
    /// Wake calls that failed (network error or unexpected status).
    pub wake_failures: AtomicU64,
    /// Held requests answered 503 because no replica became ready in time.
    pub cold_start_timeouts: AtomicU64,
    /// Requests that failed talking to the upstream (502/504 written by the gateway).
    pub upstream_errors: AtomicU64,
}

impl Stats {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "requests": g(&self.requests),
            "malformed_requests": g(&self.malformed),
            "not_found": g(&self.not_found),
            "too_large": g(&self.too_large),
            "held_requests": g(&self.held),
            "cold_starts": g(&self.cold_starts),
            "wake_calls": g(&self.wake_calls),
            "wake_failures": g(&self.wake_failures),
            "cold_start_timeouts": g(&self.cold_start_timeouts),
            "upstream_errors": g(&self.upstream_errors),
        })
    }
}

/// Requests currently being handled. Every request holds an [`InFlightGuard`] for its whole
/// life (including time spent held for a cold start); graceful shutdown waits for zero.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    /// Counts one more request until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    /// Requests in flight now.
    pub fn current(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Resolves once no request is in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.current() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Keeps one request counted in [`InFlight`].
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wait_idle_returns_when_the_last_guard_drops() {
        let f = Arc::new(InFlight::default());
        let g1 = f.enter();
        let g2 = f.enter();
        assert_eq!(f.current(), 2);
        let waiter = tokio::spawn({
            let f = f.clone();
            async move { f.wait_idle().await }
        });
        drop(g1);
        assert!(!waiter.is_finished());
        drop(g2);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("idle within 5 s")
            .expect("join");
        assert_eq!(f.current(), 0);
    }
}
