//! The configuration a data-plane client holds: every resource of every type, as last
//! accepted from the control plane. Clients get it as a `tokio::sync::watch` of
//! `Arc<Snapshot>`; a new value is published once per accepted response.

use std::collections::BTreeMap;

use super::pb;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Function name → cluster.
    pub clusters: BTreeMap<String, pb::Cluster>,
    /// Cluster name → its endpoints.
    pub endpoints: BTreeMap<String, pb::ClusterLoadAssignment>,
    /// Route configuration name → routes.
    pub routes: BTreeMap<String, pb::RouteConfiguration>,
    /// Listener name → listener.
    pub listeners: BTreeMap<String, pb::Listener>,
    /// Type URL → version accepted for that type.
    pub versions: BTreeMap<String, String>,
}

impl Snapshot {
    /// Endpoints of `cluster` that take new requests.
    pub fn healthy_endpoints(&self, cluster: &str) -> impl Iterator<Item = &pb::Endpoint> {
        self.endpoints
            .get(cluster)
            .into_iter()
            .flat_map(|cla| cla.endpoints.iter())
            .filter(|e| e.health == pb::EndpointHealth::Healthy as i32)
    }

    /// The cluster a function's requests go to, following the route configurations
    /// (the first route naming the function wins); `None` when no route names it.
    pub fn cluster_for(&self, function: &str) -> Option<&pb::Cluster> {
        let cluster = self
            .routes
            .values()
            .flat_map(|rc| rc.routes.iter())
            .find(|r| r.function == function)
            .map(|r| r.cluster.as_str())?;
        self.clusters.get(cluster)
    }
}
