//! Counters exposed by `GET /v1/stats`: what the connector pushed and received, and how many
//! malformed or stale requests it dropped.

use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters (monotonic since start).
#[derive(Debug, Default)]
pub struct Stats {
    /// Discovery responses sent.
    pub responses: AtomicU64,
    /// ACKs recorded.
    pub acks: AtomicU64,
    /// NACKs recorded.
    pub nacks: AtomicU64,
    /// Requests ignored because their nonce was not the latest sent for their type.
    pub stale_requests: AtomicU64,
    /// gRPC requests refused as malformed (missing node, unknown type URL, ...).
    pub malformed_grpc: AtomicU64,
    /// REST requests answered 4xx because of their shape.
    pub malformed_rest: AtomicU64,
    /// Snapshot changes applied (and persisted).
    pub snapshot_changes: AtomicU64,
}

impl Stats {
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "responses": get(&self.responses),
            "acks": get(&self.acks),
            "nacks": get(&self.nacks),
            "stale_requests": get(&self.stale_requests),
            "malformed_grpc_requests": get(&self.malformed_grpc),
            "malformed_rest_requests": get(&self.malformed_rest),
            "snapshot_changes": get(&self.snapshot_changes),
        })
    }
}
