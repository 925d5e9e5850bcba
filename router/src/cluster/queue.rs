//! The waiting side of a cluster's bounded FIFO queue.
//!
//! A queued request is a [`Waiter`] in the cluster's `VecDeque` holding the sending half of a
//! oneshot channel; [`super::ClusterState::dispatch`] takes a slot for it and sends a
//! [`Grant`]. The request awaits the receiving half inside a [`WaitGuard`], which on timeout
//! or cancellation removes the waiter from the queue, and if a grant raced in, hands it back
//! (or to the caller) so no slot is ever leaked. Grants carry plain `Arc`s with no drop side
//! effects, so a grant dropped under the cluster lock cannot deadlock.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::{ClusterState, Endpoint, Lease, Settings};

/// A slot taken on behalf of a waiter.
#[derive(Debug)]
pub(super) struct Grant {
    pub endpoint: Arc<Endpoint>,
    pub settings: Settings,
}

/// A queued request.
#[derive(Debug)]
pub(super) struct Waiter {
    pub id: u64,
    pub tx: oneshot::Sender<Grant>,
    /// Endpoint this request must not go to (the one whose connect just failed).
    pub exclude: Option<Arc<Endpoint>>,
}

/// Owns a queued request's receiver; cleans up the queue entry unless finished.
pub(super) struct WaitGuard<'a> {
    cluster: &'a Arc<ClusterState>,
    id: u64,
    rx: oneshot::Receiver<Grant>,
    finished: bool,
}

impl<'a> WaitGuard<'a> {
    pub fn new(cluster: &'a Arc<ClusterState>, id: u64, rx: oneshot::Receiver<Grant>) -> Self {
        WaitGuard {
            cluster,
            id,
            rx,
            finished: false,
        }
    }

    pub fn receiver(&mut self) -> &mut oneshot::Receiver<Grant> {
        &mut self.rx
    }

    /// The grant (or the closed channel) was received: nothing left to clean up.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Leaves the queue. Returns a grant that was sent before we could leave.
    pub fn cancel(&mut self) -> Option<Grant> {
        self.finished = true;
        if self.cluster.dequeue(self.id) {
            None
        } else {
            self.rx.try_recv().ok()
        }
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            if let Some(grant) = self.cancel() {
                // Not under the lock here: dropping the lease gives the slot back.
                drop(Lease::new(
                    self.cluster.clone(),
                    grant.endpoint,
                    grant.settings,
                ));
            }
        }
    }
}
