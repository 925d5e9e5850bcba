//! The gateway's xDS subscription (node kind `gateway`): the shared client from
//! `sluice_common::xds::client`, validated with the basic data-plane checks. The gateway
//! reads functions (routes → clusters) and ready replicas (HEALTHY endpoints) from it; it
//! never asks Redis or the orchestrator what exists.

use sluice_common::xds::client::{self, ClientConfig, Subscription};
use tokio_util::sync::CancellationToken;

/// Starts the client task on the current Tokio runtime (call from within one).
pub fn subscribe(
    server: &str,
    node_id: &str,
    token: Option<String>,
    stop: CancellationToken,
) -> Subscription {
    client::spawn_with_state(
        ClientConfig {
            server: server.to_string(),
            node_id: node_id.to_string(),
            node_kind: "gateway".to_string(),
            token,
        },
        client::validate_basic,
        stop,
    )
}
