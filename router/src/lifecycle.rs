//! Process lifecycle: counts requests in progress so a graceful shutdown can wait for
//! exactly as long as needed (pingora's own graceful terminate sleeps a fixed grace period).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Requests in progress and the shutting-down flag.
#[derive(Debug, Default)]
pub struct Lifecycle {
    in_progress: AtomicUsize,
    idle: Notify,
    shutting_down: AtomicBool,
}

/// Held by each request (in its proxy context); dropping it marks the request finished.
#[derive(Debug)]
pub struct RequestGuard(Arc<Lifecycle>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.0.in_progress.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Lifecycle {
    pub fn new() -> Arc<Self> {
        Arc::new(Lifecycle::default())
    }

    /// Marks a request as started.
    pub fn enter(self: &Arc<Self>) -> RequestGuard {
        self.in_progress.fetch_add(1, Ordering::AcqRel);
        RequestGuard(self.clone())
    }

    pub fn in_progress(&self) -> usize {
        self.in_progress.load(Ordering::Acquire)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Waits until no request is in progress or `limit` passed; true when idle.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_progress() == 0 {
                return true;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => return self.in_progress() == 0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_the_last_request() {
        let lc = Lifecycle::new();
        assert!(lc.wait_idle(Duration::ZERO).await);
        let g1 = lc.enter();
        let g2 = lc.enter();
        assert!(!lc.wait_idle(Duration::from_millis(10)).await);
        let lc2 = lc.clone();
        let waiter = tokio::spawn(async move { lc2.wait_idle(Duration::from_secs(10)).await });
        drop(g1);
        drop(g2);
        assert!(waiter.await.expect("task"));
        assert_eq!(lc.in_progress(), 0);
    }
}
