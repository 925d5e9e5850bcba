//! Admission: how many calls of a function the gateway lets through to the router, and the
//! per-function FIFO of the calls it holds back.
//!
//! A call is *held* when its function has no ready replica (a cold start), or when calls
//! held before it are still waiting (no barging: a burst keeps its arrival order). Held
//! calls are released one by one, oldest first, while the gateway's own in-flight count for
//! the function stays below [`forward_limit`]: the slots of the ready replicas
//! (`ready × max_concurrency`) plus what the router's queue can drain within its
//! `queue_timeout` at the service time observed so far (at most one slot's worth per slot,
//! at most half the queue). Every finished call frees its place and releases the next one.
//!
//! Invariants:
//! * **A held call is never refused by the router's queue.** The gateway forwards a held
//!   call only while `in_flight < forward_limit`, and `forward_limit` never exceeds
//!   `slots + queue_size / 2`, so the router (which answers 429 only when `queue_size` calls
//!   already wait) always has room for it. A held call leaves the FIFO only with a place, at
//!   its deadline (`cold_start_timeout` after it arrived: 503 + `Retry-After`), or when its
//!   function is gone (404) or cannot be started (503).
//! * A call that arrives while the FIFO is empty and a replica is ready goes straight on,
//!   even beyond the limit: load beyond capacity is the router queue's to judge
//!   (`queue_size`, `queue_timeout`), as for any warm call.
//! * `in_flight` counts exactly the [`Permit`]s alive: a permit is counted when it is made
//!   and released by its `Drop`; a grant sent to a waiter that went away is taken back by
//!   the waiter's `Drop` (never leaked, never counted twice).
//! * The capacity a gate uses comes from the snapshot in effect: set when the gate is made
//!   and after every accepted snapshot, under the gate's lock.
//! * **The warm path takes no lock.** While nothing is held and a replica is ready, a call
//!   goes on with one atomic increment and its permit gives back with one decrement (the
//!   service-time average is a compare-and-swap); the gate's lock is for holding calls and
//!   releasing them. A release cannot miss a held call: the call is counted in `held`
//!   before it looks at `in_flight`, and a release writes `in_flight` before it reads
//!   `held`, both sequentially consistent, so one of the two always sees the other.
//!
//! Each gate also counts arrivals and exposes the FIFO length: [`export`] sends both to the
//! stats-listener, so the autoscaler sees the arrival rate and the held backlog (calls the
//! router never saw).

pub mod export;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use sluice_common::xds::Snapshot;
use tokio::sync::{oneshot, watch};

use crate::catalog::{self, Catalog};

/// What the ready replicas of a function and the router's queue in front of them can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capacity {
    /// Ready (HEALTHY) replicas.
    pub ready: usize,
    /// Sum of the ready replicas' concurrency caps; `None`: some replica has no cap.
    pub slots: Option<u64>,
    /// The router's queue for the function (429 beyond it).
    pub queue_size: u32,
    /// Longest wait in the router's queue (503 after it).
    pub queue_timeout: Duration,
    /// The function's per-call timeout: the service time assumed before one was observed.
    pub timeout: Duration,
}

/// How many calls of a function may be in flight from this gateway before held calls wait
/// (see the module docs). 0 without a ready replica; unbounded when a replica has no cap.
pub fn forward_limit(c: &Capacity, service: Option<Duration>) -> u64 {
    if c.ready == 0 {
        return 0;
    }
    let Some(slots) = c.slots else {
        return u64::MAX;
    };
    let service = service
        .unwrap_or(c.timeout)
        .max(Duration::from_millis(1))
        .as_secs_f64();
    // Calls the slots finish within the queue timeout: what may wait at the router.
    let drainable = slots as f64 * c.queue_timeout.as_secs_f64() / service;
    let drainable = if drainable.is_finite() {
        drainable.floor().min(u64::MAX as f64) as u64
    } else {
        0
    };
    let allowance = drainable.min(slots).min(u64::from(c.queue_size) / 2);
    slots.saturating_add(allowance)
}

/// Weight of a new observation in the service-time average.
const SERVICE_EWMA_WEIGHT: f64 = 0.2;

/// All gates, by function.
#[derive(Debug)]
pub struct Gates {
    gates: RwLock<HashMap<String, Arc<Gate>>>,
    catalog: Catalog,
}

/// One function's admission state.
#[derive(Debug)]
pub struct Gate {
    function: String,
    inner: Mutex<Inner>,
    /// Calls that arrived (for the arrival rate).
    arrived: AtomicU64,
    /// Calls forwarded by this gateway and not finished ([`Permit`]s alive).
    in_flight: AtomicU64,
    /// Calls held now (the FIFO's length, written under the lock).
    held: AtomicUsize,
    /// Ready replicas (the capacity's, written under the lock).
    ready: AtomicUsize,
    /// Average time a forwarded call took, in seconds, as `f64` bits ([`NO_SERVICE`] until
    /// one finished).
    service: AtomicU64,
}

/// [`Gate::service`] before any call finished.
const NO_SERVICE: u64 = u64::MAX;

#[derive(Debug, Default)]
struct Inner {
    capacity: Capacity,
    queue: VecDeque<Waiter>,
    next_id: u64,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    tx: oneshot::Sender<()>,
}

/// How a call enters its gate.
#[derive(Debug)]
pub enum Entry {
    /// Go on now.
    Go(Permit),
    /// Held: wait for [`Waiting::granted`].
    Held(Waiting),
}

impl Gates {
    /// The gate registry; [`Gates::watch`] keeps it in step with the snapshots.
    pub fn new(catalog: Catalog) -> Arc<Self> {
        Arc::new(Gates {
            gates: RwLock::new(HashMap::new()),
            catalog,
        })
    }

    /// The gate of `function` (made from the snapshot in effect when it does not exist yet).
    pub fn gate(&self, function: &str) -> Arc<Gate> {
        if let Some(g) = self
            .gates
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(function)
        {
            return g.clone();
        }
        let mut gates = self.gates.write().unwrap_or_else(PoisonError::into_inner);
        gates
            .entry(function.to_string())
            .or_insert_with(|| {
                let capacity = self
                    .catalog
                    .lookup(function)
                    .map(|v| v.capacity)
                    .unwrap_or_default();
                Arc::new(Gate {
                    function: function.to_string(),
                    inner: Mutex::new(Inner {
                        capacity,
                        ..Inner::default()
                    }),
                    arrived: AtomicU64::new(0),
                    in_flight: AtomicU64::new(0),
                    held: AtomicUsize::new(0),
                    ready: AtomicUsize::new(capacity.ready),
                    service: AtomicU64::new(NO_SERVICE),
                })
            })
            .clone()
    }

    /// Every gate (for the statsD export and `/healthz`).
    pub fn all(&self) -> Vec<Arc<Gate>> {
        self.gates
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Calls held right now, per function (functions with none left out).
    pub fn held_now(&self) -> std::collections::BTreeMap<String, usize> {
        self.all()
            .into_iter()
            .map(|g| (g.function.clone(), g.held()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Applies every accepted snapshot to the gates (capacity, releases) and forgets idle
    /// gates of functions that are gone. Ends when the snapshot source closes.
    pub async fn watch(self: Arc<Self>, mut rx: watch::Receiver<Arc<Snapshot>>) {
        loop {
            let snap = rx.borrow_and_update().clone();
            self.apply(&snap);
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn apply(&self, snap: &Snapshot) {
        let mut gone = Vec::new();
        for gate in self.all() {
            match catalog::view(snap, &gate.function, &self.catalog.defaults()) {
                Some(v) => gate.set_capacity(v.capacity),
                None => {
                    gate.set_capacity(Capacity::default());
                    gone.push(gate);
                }
            }
        }
        if gone.is_empty() {
            return;
        }
        let mut gates = self.gates.write().unwrap_or_else(PoisonError::into_inner);
        for gate in gone {
            if gate.is_idle() && Arc::strong_count(&gate) <= 2 {
                gates.remove(&gate.function);
            }
        }
    }
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update is a few field writes that leave Inner consistent: a poisoned lock
        // is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn function(&self) -> &str {
        &self.function
    }

    /// Calls that arrived so far (monotonic).
    pub fn arrived(&self) -> u64 {
        self.arrived.load(Relaxed)
    }

    /// Calls held now.
    pub fn held(&self) -> usize {
        self.held.load(SeqCst)
    }

    /// Calls forwarded by this gateway and not finished.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(SeqCst)
    }

    fn is_idle(&self) -> bool {
        let g = self.lock();
        g.queue.is_empty() && self.in_flight() == 0
    }

    fn service(&self) -> Option<Duration> {
        let bits = self.service.load(Relaxed);
        (bits != NO_SERVICE).then(|| Duration::from_secs_f64(f64::from_bits(bits)))
    }

    /// A call arrives: it goes on at once when nothing is held before it and a replica is
    /// ready (without the lock); otherwise it joins the FIFO.
    pub fn enter(self: &Arc<Self>) -> Entry {
        self.arrived.fetch_add(1, Relaxed);
        if self.held.load(SeqCst) == 0 && self.ready.load(SeqCst) > 0 {
            self.in_flight.fetch_add(1, SeqCst);
            return Entry::Go(Permit::new(self.clone()));
        }
        let mut g = self.lock();
        if g.queue.is_empty() && g.capacity.ready > 0 {
            self.in_flight.fetch_add(1, SeqCst);
            drop(g);
            return Entry::Go(Permit::new(self.clone()));
        }
        g.next_id += 1;
        let id = g.next_id;
        let (tx, rx) = oneshot::channel();
        g.queue.push_back(Waiter { id, tx });
        // Counted before it looks at `in_flight`: a release from now on serves it.
        self.held.store(g.queue.len(), SeqCst);
        self.dispatch(&mut g);
        Entry::Held(Waiting {
            gate: self.clone(),
            id,
            rx,
            done: false,
        })
    }

    fn set_capacity(&self, capacity: Capacity) {
        let mut g = self.lock();
        g.capacity = capacity;
        self.ready.store(capacity.ready, SeqCst);
        self.dispatch(&mut g);
    }

    /// Releases held calls, oldest first, while the limit allows. Caller holds the lock.
    fn dispatch(&self, g: &mut Inner) {
        let limit = forward_limit(&g.capacity, self.service());
        while self.in_flight.load(SeqCst) < limit {
            let Some(w) = g.queue.pop_front() else {
                break;
            };
            // Counted before the grant is sent: the waiter may take its place, finish and
            // give it back on another thread before this one runs again.
            self.in_flight.fetch_add(1, SeqCst);
            // A receiver can only be gone here if its waiter is being dropped right now
            // (it then finds itself no longer queued and takes nothing back): undo.
            if w.tx.send(()).is_err() {
                self.in_flight.fetch_sub(1, SeqCst);
            }
        }
        self.held.store(g.queue.len(), SeqCst);
    }

    /// A forwarded call finished after `took`; takes the lock only when calls are held.
    fn release(&self, took: Duration) {
        let _ = self
            .in_flight
            .fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_sub(1)));
        let t = took.as_secs_f64();
        let _ = self.service.fetch_update(Relaxed, Relaxed, |bits| {
            Some(if bits == NO_SERVICE {
                t.to_bits()
            } else {
                let s = f64::from_bits(bits);
                (s + SERVICE_EWMA_WEIGHT * (t - s)).to_bits()
            })
        });
        if self.held.load(SeqCst) == 0 {
            return;
        }
        let mut g = self.lock();
        self.dispatch(&mut g);
    }
}

/// A call's place among the calls this gateway forwards for a function; freed on drop.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
    since: Instant,
}

impl Permit {
    fn new(gate: Arc<Gate>) -> Self {
        Permit {
            gate,
            since: Instant::now(),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release(self.since.elapsed());
    }
}

/// A held call. Dropping it leaves the FIFO (or gives back a place granted meanwhile).
#[derive(Debug)]
pub struct Waiting {
    gate: Arc<Gate>,
    id: u64,
    rx: oneshot::Receiver<()>,
    done: bool,
}

impl Waiting {
    /// Resolves when the call may go on. Cancel-safe (the place stays reserved until the
    /// `Waiting` is dropped).
    pub async fn granted(&mut self) -> Permit {
        if self.done {
            return std::future::pending().await;
        }
        match (&mut self.rx).await {
            Ok(()) => {
                self.done = true;
                Permit::new(self.gate.clone())
            }
            // The sender leaves the queue only by a send (above) or by this waiter's own
            // Drop, so it cannot be gone while the waiter waits.
            Err(_) => std::future::pending().await,
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let gate = &self.gate;
        let mut g = gate.lock();
        if let Some(pos) = g.queue.iter().position(|w| w.id == self.id) {
            g.queue.remove(pos);
            gate.held.store(g.queue.len(), SeqCst);
            return;
        }
        // Granted but never taken: give the place back.
        if self.rx.try_recv().is_ok() {
            let _ = gate
                .in_flight
                .fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_sub(1)));
            gate.dispatch(&mut g);
        }
    }
}

#[cfg(test)]
mod tests;
