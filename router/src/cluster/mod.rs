//! Per-cluster (per-function) state: the active endpoints, the draining ones, the bounded
//! FIFO queue of requests waiting for a slot, the cluster's settings and telemetry.
//!
//! The request path takes no lock while nobody waits: a request reads the published
//! [`View`] (an `ArcSwap`), picks with P2C and takes its slot with a compare-and-swap on the
//! endpoint's counter; giving the slot back is one atomic decrement. The cluster's
//! `Mutex<Inner>` is taken only to change the config, to queue, and to serve the queue.
//!
//! Invariants:
//! * a slot is taken only by a compare-and-swap that checks the cap, so `in_flight <= cap`
//!   for every endpoint (`cap == 0` meaning unlimited), with or without the lock;
//! * new requests only ever go to `active` endpoints; `draining` endpoints keep serving the
//!   requests they already have and leave the list when their in-flight count reaches 0. A
//!   slot taken without the lock on an endpoint that turned out draining is given back at
//!   once (the draining flag is written before the counter is read, and read after the
//!   counter is written, both sequentially consistent, so one side always sees the other);
//! * a waiter is never left queued while a slot it could use is free: it is counted in
//!   `stats.pending` (sequentially consistent) before it looks for a slot, and a release
//!   that sees `pending > 0` takes the lock and runs [`ClusterState::dispatch`]; the same holds
//!   after every config change. Waiters are served in arrival order;
//! * a request that finds waiters ahead of it queues behind them (no barging).
//!
//! The lock is held for microseconds and never across an `.await`. A [`Lease`] is never
//! dropped while the lock is held (its `Drop` may take the lock).

mod endpoint;
mod lease;
mod queue;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use sluice_common::xds::pb;

use crate::balance::{self, Candidate};
use crate::error::{ErrorKind, RouterError};
use crate::telemetry::ClusterStats;

pub use endpoint::Endpoint;
pub use lease::Lease;
use queue::{Grant, WaitGuard, Waiter};

/// Connect timeout used when a cluster does not set one.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much longer than the function's own timeout the router waits for an answer (the
/// runtime answers 504 itself first).
pub const UPSTREAM_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// A cluster's settings, from its `pb::Cluster`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings {
    /// Per-endpoint cap for endpoints that set none; 0 = unlimited.
    pub max_concurrency: u32,
    /// Waiters allowed in the queue; 0 = no queue (429 at once when all are at cap).
    pub queue_size: u32,
    /// Longest queue wait before 503.
    pub queue_timeout: Duration,
    /// The function's own timeout; zero = none.
    pub timeout: Duration,
    /// Zero = [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// How long a removed endpoint may keep serving (informational for the router: it never
    /// cuts a request; the orchestrator waits this long before stopping a replica).
    pub drain_timeout: Duration,
}

impl Settings {
    pub fn from_pb(c: &pb::Cluster) -> Self {
        Settings {
            max_concurrency: c.max_concurrency,
            queue_size: c.queue_size,
            queue_timeout: Duration::from_millis(c.queue_timeout_ms),
            timeout: Duration::from_millis(c.timeout_ms),
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            drain_timeout: Duration::from_millis(c.drain_timeout_ms),
        }
    }

    /// Upstream read/write timeout: the function timeout plus a margin; `None` when the
    /// function has no timeout.
    pub fn upstream_timeout(&self) -> Option<Duration> {
        (!self.timeout.is_zero()).then(|| self.timeout + UPSTREAM_TIMEOUT_MARGIN)
    }

    pub fn connect_timeout(&self) -> Duration {
        if self.connect_timeout.is_zero() {
            DEFAULT_CONNECT_TIMEOUT
        } else {
            self.connect_timeout
        }
    }
}

/// State of one cluster; shared (`Arc`) by the route table, the registry and every lease.
#[derive(Debug)]
pub struct ClusterState {
    name: String,
    inner: Mutex<Inner>,
    /// What the lock-free path reads; published under the lock after every config change.
    view: ArcSwap<View>,
    /// The function's runtime token, sent on every call to its replicas (swapped, not
    /// locked: read once per request).
    runtime_token: arc_swap::ArcSwapOption<hyper::header::HeaderValue>,
    next_waiter: AtomicU64,
    /// Request telemetry of this cluster.
    pub stats: ClusterStats,
}

/// The part of a cluster the request path reads without the lock.
#[derive(Debug, Default)]
struct View {
    settings: Settings,
    removed: bool,
    active: Vec<Arc<Endpoint>>,
}

/// Attempts of the lock-free path before it falls back to the lock (a failed attempt means
/// another request took the chosen endpoint's last slot in between).
const LOCK_FREE_ATTEMPTS: usize = 4;

#[derive(Debug, Default)]
struct Inner {
    settings: Settings,
    /// True once the cluster left the config (its draining endpoints may still serve).
    removed: bool,
    active: Vec<Arc<Endpoint>>,
    draining: Vec<Arc<Endpoint>>,
    waiters: VecDeque<Waiter>,
}

/// One row of the admin's `/v1/endpoints`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EndpointView {
    pub cluster: String,
    pub id: String,
    pub address: String,
    pub replica: String,
    pub in_flight: u32,
    pub max_concurrency: u32,
    /// `"active"` or `"draining"`.
    pub state: &'static str,
}

/// One row of the admin's `/v1/queues`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueueView {
    pub cluster: String,
    pub queued: usize,
    pub queue_size: u32,
    pub queue_timeout_ms: u64,
    pub active: u64,
}

impl ClusterState {
    /// An empty cluster (no endpoints) with the given settings.
    pub fn new(name: &str, settings: Settings) -> Arc<Self> {
        Arc::new(ClusterState {
            name: name.to_string(),
            inner: Mutex::new(Inner {
                settings,
                ..Inner::default()
            }),
            view: ArcSwap::from_pointee(View {
                settings,
                ..View::default()
            }),
            next_waiter: AtomicU64::new(1),
            stats: ClusterStats::default(),
            runtime_token: arc_swap::ArcSwapOption::empty(),
        })
    }

    /// The header value of the function's runtime token, if it has one.
    pub fn runtime_token(&self) -> Option<Arc<hyper::header::HeaderValue>> {
        self.runtime_token.load_full()
    }

    /// Sets the runtime token from the cluster's config (empty: none). A value that is not
    /// a valid header (never sent by the orchestrator) counts as none.
    pub fn set_runtime_token(&self, token: &str) {
        let current = self.runtime_token.load();
        if current.as_deref().map(|v| v.as_bytes()) == Some(token.as_bytes())
            || (current.is_none() && token.is_empty())
        {
            return;
        }
        let value = (!token.is_empty())
            .then(|| hyper::header::HeaderValue::from_str(token).ok())
            .flatten()
            .map(|mut v| {
                v.set_sensitive(true);
                Arc::new(v)
            });
        self.runtime_token.store(value);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave Inner half-updated in a way that breaks
        // its invariants badly enough to stop serving; keep going with the data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn settings(&self) -> Settings {
        self.view.load().settings
    }

    /// Publishes what the lock-free path reads. Caller holds the lock.
    fn publish(&self, inner: &Inner) {
        self.view.store(Arc::new(View {
            settings: inner.settings,
            removed: inner.removed,
            active: inner.active.clone(),
        }));
    }

    /// Records the queue length in `stats.pending`: the pending gauge, and the lock-free
    /// paths' gate (while non-zero, releases take the lock to serve the queue and new
    /// requests queue behind it). Caller holds the lock.
    fn sync_waiting(&self, inner: &Inner) {
        self.stats.pending.store(inner.waiters.len() as u64, SeqCst);
    }

    /// True while requests are queued (or being queued).
    fn has_waiters(&self) -> bool {
        self.stats.pending.load(SeqCst) > 0
    }

    /// Applies the cluster's settings and its endpoint list from a new snapshot.
    ///
    /// Endpoints that survive (same id and address) keep their object and in-flight counter
    /// and get their limits updated; HEALTHY ones are active. Endpoints that disappeared or
    /// became DRAINING take no new requests and stay listed as draining while requests are
    /// in flight. A draining endpoint that comes back HEALTHY is reactivated with its counter.
    /// Queued requests are woken if the change freed capacity.
    pub fn apply(&self, settings: Settings, endpoints: &[pb::Endpoint]) {
        let mut inner = self.lock();
        inner.removed = false;
        inner.settings = settings;
        let mut old_active = std::mem::take(&mut inner.active);
        let mut new_active: Vec<Arc<Endpoint>> = Vec::with_capacity(endpoints.len());
        for pe in endpoints {
            let Ok(addr) = pe.address.parse::<SocketAddr>() else {
                // The validator NACKs such snapshots; never reached with accepted config.
                tracing::warn!(cluster = %self.name, endpoint = %pe.id, address = %pe.address,
                    "skipping endpoint with unparsable address");
                continue;
            };
            if new_active.iter().any(|e| e.id() == pe.id) {
                continue;
            }
            let cap = if pe.max_concurrency > 0 {
                pe.max_concurrency
            } else {
                settings.max_concurrency
            };
            let healthy = pe.health == pb::EndpointHealth::Healthy as i32;
            let existing = take_matching(&mut old_active, &pe.id, addr).or_else(|| {
                if healthy {
                    take_matching(&mut inner.draining, &pe.id, addr)
                } else {
                    None
                }
            });
            match (existing, healthy) {
                (Some(ep), true) => {
                    ep.update(cap, pe.weight, &pe.replica);
                    ep.set_draining(false);
                    new_active.push(ep);
                }
                (None, true) => {
                    let ep = Endpoint::new(&pe.id, addr, &pe.replica, cap, pe.weight);
                    new_active.push(Arc::new(ep));
                }
                (Some(ep), false) => {
                    ep.update(cap, pe.weight, &pe.replica);
                    inner.retire(ep);
                }
                (None, false) => {}
            }
        }
        for ep in old_active {
            inner.retire(ep);
        }
        inner.active = new_active;
        self.publish(&inner);
        self.dispatch(&mut inner);
    }

    /// The cluster left the config: every endpoint drains, queued requests fail
    /// ([`ErrorKind::FunctionRemoved`]).
    pub fn remove(&self) {
        let mut inner = self.lock();
        inner.removed = true;
        for ep in std::mem::take(&mut inner.active) {
            inner.retire(ep);
        }
        inner.waiters.clear();
        self.publish(&inner);
        self.sync_waiting(&inner);
    }

    /// True when the cluster left the config and nothing of it is still serving.
    pub fn is_defunct(&self) -> bool {
        let inner = self.lock();
        inner.removed && inner.draining.is_empty()
    }

    /// True when an active endpoint other than `ep` exists (whatever its load).
    pub fn has_alternative(&self, ep: &Endpoint) -> bool {
        self.view.load().active.iter().any(|e| e.id() != ep.id())
    }

    /// Gets a slot on an endpoint (never `exclude`), waiting in the queue when every
    /// eligible endpoint is at its cap or there is none.
    ///
    /// Errors: [`ErrorKind::QueueFull`] (429), [`ErrorKind::QueueTimeout`] (503),
    /// [`ErrorKind::FunctionRemoved`] (404). Cancel-safe: dropping the future removes the
    /// waiter from the queue and gives back a slot granted in the meantime.
    pub async fn acquire(
        self: &Arc<Self>,
        exclude: Option<Arc<Endpoint>>,
    ) -> Result<Lease, RouterError> {
        if !self.has_waiters() {
            let view = self.view.load();
            if view.removed {
                return Err(self.removed_error());
            }
            if let Some(ep) = self.take_slot_lock_free(&view.active, exclude.as_deref()) {
                return Ok(Lease::new(self.clone(), ep, view.settings));
            }
        }
        let (id, rx, wait) = {
            let mut inner = self.lock();
            if inner.removed {
                return Err(self.removed_error());
            }
            if inner.waiters.is_empty() {
                if let Some(ep) = self.take_slot(&mut inner, exclude.as_deref()) {
                    let settings = inner.settings;
                    drop(inner);
                    return Ok(Lease::new(self.clone(), ep, settings));
                }
            }
            if inner.waiters.len() >= inner.settings.queue_size as usize {
                self.stats.rejected_queue_full.fetch_add(1, Relaxed);
                return Err(RouterError::new(
                    ErrorKind::QueueFull,
                    format!(
                        "all replicas are busy and the queue is full ({} waiting)",
                        inner.waiters.len()
                    ),
                ));
            }
            let id = self.next_waiter.fetch_add(1, Relaxed);
            let (tx, rx) = tokio::sync::oneshot::channel();
            inner.waiters.push_back(Waiter { id, tx, exclude });
            // Counted before it looks for a slot: a release from now on serves it.
            self.sync_waiting(&inner);
            self.stats.queued_total.fetch_add(1, Relaxed);
            // Capacity may exist that only this waiter can use (others exclude it).
            self.dispatch(&mut inner);
            (id, rx, inner.settings.queue_timeout)
        };
        let mut guard = WaitGuard::new(self, id, rx);
        match tokio::time::timeout(wait, guard.receiver()).await {
            Ok(Ok(grant)) => {
                guard.finish();
                Ok(Lease::new(self.clone(), grant.endpoint, grant.settings))
            }
            Ok(Err(_closed)) => {
                guard.finish();
                Err(self.removed_error())
            }
            Err(_elapsed) => match guard.cancel() {
                // Granted just as the wait expired: use it.
                Some(grant) => Ok(Lease::new(self.clone(), grant.endpoint, grant.settings)),
                None => {
                    self.stats.expired_queue_wait.fetch_add(1, Relaxed);
                    Err(RouterError::new(
                        ErrorKind::QueueTimeout,
                        format!("no replica became available within {} ms", wait.as_millis()),
                    ))
                }
            },
        }
    }

    fn removed_error(&self) -> RouterError {
        RouterError::new(ErrorKind::FunctionRemoved, "function was removed")
    }

    /// Picks an endpoint of `active` with P2C and takes a slot on it (compare-and-swap:
    /// another request may take the last slot in between, then it picks again). `None`
    /// when no endpoint has room.
    fn pick(
        &self,
        active: &[Arc<Endpoint>],
        exclude: Option<&Endpoint>,
        attempts: usize,
    ) -> Option<Arc<Endpoint>> {
        let skip = |e: &Arc<Endpoint>| exclude.is_some_and(|x| x.id() == e.id());
        let mut rng = rand::rng();
        for _ in 0..attempts {
            let idx = balance::select(active, skip, &mut rng)?;
            let ep = &active[idx];
            if ep.try_acquire_slot() {
                self.stats.active.fetch_add(1, Relaxed);
                return Some(ep.clone());
            }
        }
        None
    }

    /// The request path's slot, without the lock; `None` sends the caller to the locked
    /// path (no room, or too much contention).
    fn take_slot_lock_free(
        &self,
        active: &[Arc<Endpoint>],
        exclude: Option<&Endpoint>,
    ) -> Option<Arc<Endpoint>> {
        let ep = self.pick(active, exclude, LOCK_FREE_ATTEMPTS)?;
        if ep.is_draining() {
            // Retired by a config change after this view was read: give the slot back
            // (through the lock, which also drops it from the draining list).
            self.release(&ep);
            return None;
        }
        Some(ep)
    }

    /// Takes a slot on an active endpoint. Caller holds the lock (so the active list is
    /// current and no endpoint is retired meanwhile).
    fn take_slot(&self, inner: &mut Inner, exclude: Option<&Endpoint>) -> Option<Arc<Endpoint>> {
        // Lock-free requests may still take slots: retry a bounded number of times; should
        // every attempt lose a race, the winners' releases serve the queue.
        let attempts = inner.active.len() + LOCK_FREE_ATTEMPTS;
        self.pick(&inner.active, exclude, attempts)
    }

    /// Gives a slot back (called by [`Lease`]'s drop); takes the lock only when requests
    /// wait or the endpoint drains.
    fn release(&self, ep: &Arc<Endpoint>) {
        ep.release_slot();
        let _ = self
            .stats
            .active
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
        if !self.has_waiters() && !ep.is_draining() {
            return;
        }
        let mut inner = self.lock();
        if ep.is_draining() && ep.in_flight() == 0 {
            inner.draining.retain(|e| !Arc::ptr_eq(e, ep));
            tracing::info!(cluster = %self.name, endpoint = %ep.id(), "drained endpoint");
        }
        if !inner.waiters.is_empty() {
            self.dispatch(&mut inner);
        }
    }

    /// Serves queued requests in arrival order while capacity exists. A waiter that cannot
    /// be served only because of its exclusion is skipped; one without exclusion that cannot
    /// be served means no capacity is left, which ends the pass. Caller holds the lock.
    fn dispatch(&self, inner: &mut Inner) {
        let mut i = 0;
        while i < inner.waiters.len() {
            if inner.waiters[i].tx.is_closed() {
                inner.waiters.remove(i);
                continue;
            }
            let exclude = inner.waiters[i].exclude.clone();
            match self.take_slot(inner, exclude.as_deref()) {
                Some(endpoint) => {
                    let Some(w) = inner.waiters.remove(i) else {
                        break;
                    };
                    let grant = Grant {
                        endpoint,
                        settings: inner.settings,
                    };
                    if let Err(grant) = w.tx.send(grant) {
                        // The waiter went away just now: undo (still under the lock).
                        grant.endpoint.release_slot();
                        let _ = self
                            .stats
                            .active
                            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
                    }
                }
                None if exclude.is_none() => break,
                None => i += 1,
            }
        }
        self.sync_waiting(inner);
    }

    /// Removes waiter `id` if it is still queued; true when it was.
    fn dequeue(&self, id: u64) -> bool {
        let mut inner = self.lock();
        let found = inner.waiters.iter().position(|w| w.id == id);
        if let Some(pos) = found {
            inner.waiters.remove(pos);
            self.sync_waiting(&inner);
        }
        found.is_some()
    }

    /// Every endpoint object still in use: active ones, then draining ones.
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        let inner = self.lock();
        inner
            .active
            .iter()
            .chain(inner.draining.iter())
            .cloned()
            .collect()
    }

    /// Active and draining endpoints, for the admin API.
    pub fn endpoint_views(&self) -> Vec<EndpointView> {
        let inner = self.lock();
        let view = |e: &Arc<Endpoint>, state| EndpointView {
            cluster: self.name.clone(),
            id: e.id().to_string(),
            address: e.addr().to_string(),
            replica: e.replica().as_ref().clone(),
            in_flight: e.in_flight(),
            max_concurrency: e.cap(),
            state,
        };
        let mut out: Vec<EndpointView> = inner.active.iter().map(|e| view(e, "active")).collect();
        out.extend(
            inner
                .draining
                .iter()
                .filter(|e| e.in_flight() > 0)
                .map(|e| view(e, "draining")),
        );
        out
    }

    /// Queue state, for the admin API.
    pub fn queue_view(&self) -> QueueView {
        let inner = self.lock();
        QueueView {
            cluster: self.name.clone(),
            queued: inner.waiters.len(),
            queue_size: inner.settings.queue_size,
            queue_timeout_ms: u64::try_from(inner.settings.queue_timeout.as_millis())
                .unwrap_or(u64::MAX),
            active: self.stats.active.load(Relaxed),
        }
    }
}

impl Inner {
    /// Takes an endpoint out of service: it drains while requests are in flight.
    fn retire(&mut self, ep: Arc<Endpoint>) {
        ep.set_draining(true);
        if ep.in_flight() > 0 && !self.draining.iter().any(|e| Arc::ptr_eq(e, &ep)) {
            self.draining.push(ep);
        }
    }
}

fn take_matching(
    list: &mut Vec<Arc<Endpoint>>,
    id: &str,
    addr: SocketAddr,
) -> Option<Arc<Endpoint>> {
    let pos = list.iter().position(|e| e.is(id, addr))?;
    Some(list.remove(pos))
}

#[cfg(test)]
mod tests;
