//! A request's claim on one endpoint slot.
//!
//! Created when a slot is taken, a `Lease` gives the slot back when dropped, on every path:
//! success, error, client disconnect, timeout, task cancellation. The proxy keeps it in the
//! per-request context, so the request's whole life is covered.

use std::sync::Arc;

use super::{ClusterState, Endpoint, Settings};

/// One taken endpoint slot; dropping it releases the slot and wakes queued requests.
#[derive(Debug)]
pub struct Lease {
    cluster: Arc<ClusterState>,
    endpoint: Arc<Endpoint>,
    settings: Settings,
}

impl Lease {
    pub(super) fn new(
        cluster: Arc<ClusterState>,
        endpoint: Arc<Endpoint>,
        settings: Settings,
    ) -> Self {
        Lease {
            cluster,
            endpoint,
            settings,
        }
    }

    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    pub fn cluster(&self) -> &Arc<ClusterState> {
        &self.cluster
    }

    /// The cluster's settings when the slot was taken.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.cluster.release(&self.endpoint);
    }
}
