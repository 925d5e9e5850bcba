//! The per-replica concurrency cap. Admission is a single atomic increment: a call either gets
//! a slot at once or is refused (429) — the router queues, this replica never does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts running invocations against a fixed maximum.
#[derive(Debug)]
pub struct Inflight {
    running: AtomicUsize,
    max: usize,
}

/// One admitted invocation; its slot is released when this is dropped.
#[derive(Debug)]
pub struct Slot(Arc<Inflight>);

impl Inflight {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Inflight {
            running: AtomicUsize::new(0),
            max,
        })
    }

    /// Takes a slot, or `None` when `max` invocations are already running.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let admitted = self
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| Slot(self.clone()))
    }

    /// Invocations running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// True when no further invocation would be admitted.
    pub fn at_cap(&self) -> bool {
        self.running() >= self.max
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_released_on_drop() {
        let f = Inflight::new(2);
        let a = f.try_acquire().expect("first slot");
        let _b = f.try_acquire().expect("second slot");
        assert!(f.try_acquire().is_none());
        assert!(f.at_cap());
        drop(a);
        assert_eq!(f.running(), 1);
        assert!(f.try_acquire().is_some());
    }
}
