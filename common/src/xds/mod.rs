//! Sluice's xDS-style discovery protocol (`proto/sluice_xds.proto`): generated types, the
//! type URLs, and helpers shared by the server (xds-connector) and clients (router, gateway).
//!
//! [`client`] is the data-plane side of the stream (router, gateway): [`client::spawn`] keeps a
//! validated [`Snapshot`] up to date on a `watch`.

#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("sluice.xds.v1");
}

/// Type URL of [`pb::Cluster`] resources.
pub const CLUSTER_TYPE: &str = "type.sluice.dev/sluice.xds.v1.Cluster";
/// Type URL of [`pb::ClusterLoadAssignment`] resources.
pub const ENDPOINTS_TYPE: &str = "type.sluice.dev/sluice.xds.v1.ClusterLoadAssignment";
/// Type URL of [`pb::RouteConfiguration`] resources.
pub const ROUTES_TYPE: &str = "type.sluice.dev/sluice.xds.v1.RouteConfiguration";
/// Type URL of [`pb::Listener`] resources.
pub const LISTENER_TYPE: &str = "type.sluice.dev/sluice.xds.v1.Listener";

/// Every type, in the order additions are pushed (clusters and endpoints before the routes
/// and listeners that use them). Removals go the other way.
pub const TYPES: [&str; 4] = [CLUSTER_TYPE, ENDPOINTS_TYPE, ROUTES_TYPE, LISTENER_TYPE];

pub mod client;
pub mod snapshot;
pub use snapshot::Snapshot;
