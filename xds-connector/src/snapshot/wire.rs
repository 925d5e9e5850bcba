//! The encoded form of one resource type as streamed to clients: resource name → encoded
//! protobuf message. Encoding is deterministic, so equal maps mean equal content; the push
//! planner compares and merges these maps without knowing the message types.

use std::collections::BTreeMap;

use prost::Message;

use super::Resources;
use crate::kind::Kind;

/// Resource name → encoded message, for one type.
pub type TypeSet = BTreeMap<String, Vec<u8>>;

/// Encodes every resource of `kind`.
pub fn encode(r: &Resources, kind: Kind) -> TypeSet {
    fn all<M: Message>(map: &BTreeMap<String, M>) -> TypeSet {
        map.iter()
            .map(|(name, m)| (name.clone(), m.encode_to_vec()))
            .collect()
    }
    match kind {
        Kind::Clusters => all(&r.clusters),
        Kind::Endpoints => all(&r.endpoints),
        Kind::Routes => all(&r.routes),
        Kind::Listeners => all(&r.listeners),
    }
}
