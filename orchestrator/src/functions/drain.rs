//! Draining a replica before it is stopped: take it out of routing, then wait until the
//! requests it is serving have finished (or the drain timeout passes).
//!
//! The data plane (xds-connector + router) plugs in here; with no data plane configured
//! nothing routes to replicas but the orchestrator's own probes, so there is nothing to wait for.

#[derive(Clone, Debug, Default)]
pub struct Drainer {}

impl Drainer {
    /// Removes the replica from routing and waits for its in-flight requests.
    pub async fn drain(&self, function: &str, container: &str, address: &str) {
        tracing::debug!(function, container, address, "drain: no data plane configured");
    }
}
