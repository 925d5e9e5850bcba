//! The registry of connected clients behind `GET /v1/clients`: one entry per open stream,
//! with, per subscribed type, what was last sent, what was last ACKed and the last NACK.
//! An entry exists from the stream's first request until the stream ends (its
//! [`ClientHandle`] removes it on drop, whatever way the stream task ends).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

/// One connected client (one stream).
#[derive(Debug, Clone, Serialize)]
pub struct ClientInfo {
    pub node_id: String,
    /// The node's kind (`Node.cluster`): "router" or "gateway".
    pub kind: String,
    pub connected_unix_ms: u64,
    /// Identifies the stream (a node that reconnects gets a new one).
    pub stream_id: u64,
    /// The client's address, when known.
    pub peer: Option<String>,
    /// Type URL → state, for each type the client subscribed to.
    pub types: BTreeMap<String, TypeInfo>,
}

/// A client's state for one type.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TypeInfo {
    /// Version of the last response the client ACKed (`null` before its first ACK).
    pub acked_version: Option<String>,
    pub sent_version: Option<String>,
    pub sent_nonce: Option<String>,
    /// The client's last NACK of this type; cleared by a later ACK.
    pub last_nack: Option<Nack>,
}

/// A rejected response.
#[derive(Debug, Clone, Serialize)]
pub struct Nack {
    /// The version the client says it still runs (its last accepted one).
    pub version: String,
    /// Nonce of the rejected response.
    pub nonce: String,
    pub error: String,
}

/// Every open stream's [`ClientInfo`].
#[derive(Debug, Default)]
pub struct Registry {
    entries: Mutex<BTreeMap<u64, ClientInfo>>,
    next_id: AtomicU64,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, ClientInfo>> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a client; it stays listed until the handle is dropped.
    pub fn register(
        self: &Arc<Self>,
        node_id: String,
        kind: String,
        peer: Option<String>,
        connected_unix_ms: u64,
    ) -> ClientHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(
            id,
            ClientInfo {
                node_id,
                kind,
                connected_unix_ms,
                stream_id: id,
                peer,
                types: BTreeMap::new(),
            },
        );
        ClientHandle {
            registry: self.clone(),
            id,
        }
    }

    /// Every connected client, oldest stream first.
    pub fn list(&self) -> Vec<ClientInfo> {
        self.lock().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A stream's entry in the [`Registry`]; removes it when dropped.
#[derive(Debug)]
pub struct ClientHandle {
    registry: Arc<Registry>,
    id: u64,
}

impl ClientHandle {
    /// Updates the state of `type_url` (creating it on first use).
    pub fn update_type(&self, type_url: &str, f: impl FnOnce(&mut TypeInfo)) {
        if let Some(entry) = self.registry.lock().get_mut(&self.id) {
            f(entry.types.entry(type_url.to_string()).or_default());
        }
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}
