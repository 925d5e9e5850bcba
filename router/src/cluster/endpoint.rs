//! One replica of a function as the router sees it: its address, limits and live counters.
//!
//! An `Endpoint` object lives as long as anything refers to it: the cluster's active list,
//! its draining list, or a [`super::Lease`] of a request in flight. Config updates that keep
//! the endpoint (same id and address) update its limits in place, so its in-flight counter
//! survives every push. The in-flight counter is changed by compare-and-swap (never above
//! the cap), with or without the cluster's lock; the draining flag only under the lock. Both
//! are sequentially consistent: the lock-free path writes the counter then reads the flag,
//! a retirement writes the flag then reads the counter (see the cluster's invariants).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::balance::Candidate;
use crate::telemetry::EndpointStats;

/// A replica endpoint with its live counters.
#[derive(Debug)]
pub struct Endpoint {
    id: String,
    addr: SocketAddr,
    replica: ArcSwap<String>,
    cap: AtomicU32,
    weight: AtomicU32,
    in_flight: AtomicU32,
    draining: AtomicBool,
    /// Request telemetry of this endpoint.
    pub stats: EndpointStats,
}

impl Endpoint {
    /// A new, healthy endpoint with nothing in flight. `cap` 0 means unlimited.
    pub fn new(id: &str, addr: SocketAddr, replica: &str, cap: u32, weight: u32) -> Self {
        Endpoint {
            id: id.to_string(),
            addr,
            replica: ArcSwap::from_pointee(replica.to_string()),
            cap: AtomicU32::new(cap),
            weight: AtomicU32::new(weight),
            in_flight: AtomicU32::new(0),
            draining: AtomicBool::new(false),
            stats: EndpointStats::default(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The replica's human name, or its id when the config gives none
    /// (the value of `X-Sluice-Replica`).
    pub fn replica_name(&self) -> String {
        let r = self.replica.load();
        if r.is_empty() {
            self.id.clone()
        } else {
            r.as_ref().clone()
        }
    }

    /// The replica name exactly as configured (possibly empty).
    pub fn replica(&self) -> Arc<String> {
        self.replica.load_full()
    }

    /// True once the endpoint takes no new requests (removed from config or DRAINING).
    pub fn is_draining(&self) -> bool {
        self.draining.load(SeqCst)
    }

    /// True when this object describes the replica `id` at `addr`.
    pub fn is(&self, id: &str, addr: SocketAddr) -> bool {
        self.id == id && self.addr == addr
    }

    pub(super) fn update(&self, cap: u32, weight: u32, replica: &str) {
        self.cap.store(cap, Relaxed);
        self.weight.store(weight, Relaxed);
        if self.replica.load().as_str() != replica {
            self.replica.store(Arc::new(replica.to_string()));
        }
    }

    /// Caller holds the cluster lock.
    pub(super) fn set_draining(&self, draining: bool) {
        self.draining.store(draining, SeqCst);
    }

    /// Takes one slot if the cap leaves room; false when it is full.
    pub(super) fn try_acquire_slot(&self) -> bool {
        let cap = self.cap.load(Relaxed);
        self.in_flight
            .fetch_update(SeqCst, SeqCst, |n| (cap == 0 || n < cap).then(|| n + 1))
            .is_ok()
    }

    /// Gives one slot back.
    pub(super) fn release_slot(&self) {
        let _ = self
            .in_flight
            .fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_sub(1)));
    }
}

impl Candidate for Endpoint {
    fn in_flight(&self) -> u32 {
        self.in_flight.load(SeqCst)
    }
    fn cap(&self) -> u32 {
        self.cap.load(Relaxed)
    }
    fn weight(&self) -> u32 {
        self.weight.load(Relaxed)
    }
}
