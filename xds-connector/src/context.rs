//! What every part of the running connector shares: the snapshot store, the registry of
//! connected clients, the counters, the shutdown token and the nonce source.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::grpc::clients::Registry;
use crate::snapshot::Store;
use crate::stats::Stats;

/// Shared by the gRPC streams and the REST handlers.
pub struct Ctx {
    pub store: Store,
    pub clients: Arc<Registry>,
    pub stats: Arc<Stats>,
    /// Cancelled on SIGTERM: servers stop accepting, streams close.
    pub shutdown: CancellationToken,
    /// The token both APIs require, if any (see [`sluice_common::xds::ENV_TOKEN_FILE`]).
    pub token: Option<String>,
    nonces: AtomicU64,
}

impl Ctx {
    pub fn new(
        store: Store,
        stats: Arc<Stats>,
        shutdown: CancellationToken,
        token: Option<String>,
    ) -> Ctx {
        Ctx {
            store,
            clients: Arc::new(Registry::default()),
            stats,
            shutdown,
            token,
            nonces: AtomicU64::new(0),
        }
    }

    /// True when `authorization` carries the token (always, when there is none).
    pub fn authorized(&self, authorization: Option<&str>) -> bool {
        match &self.token {
            None => true,
            Some(t) => sluice_common::xds::token_matches(authorization, t),
        }
    }

    /// A nonce never handed out before by this process.
    pub fn next_nonce(&self) -> String {
        (self.nonces.fetch_add(1, Ordering::Relaxed) + 1).to_string()
    }
}
