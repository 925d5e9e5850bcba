//! Applying xDS snapshots to the router's live state.
//!
//! [`Registry`] owns every [`ClusterState`] by name and the route table the proxy reads on
//! each request. [`Registry::apply`] turns one accepted [`Snapshot`] into that state:
//! clusters are updated in place (their endpoints keep their in-flight counters, see
//! [`ClusterState::apply`]), clusters that left the config drain, and a new route table is
//! swapped in atomically (`ArcSwap`), so a request sees either the old or the new routes,
//! never a mix. [`follow`] applies every snapshot the xDS client publishes as soon as it is
//! published (a watch channel: no polling, well within the 50 ms budget).

pub mod validate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use sluice_common::xds::{pb, Snapshot};
use tokio::sync::watch;

use crate::cluster::{ClusterState, Settings};

/// Name of the listener whose route configuration the router serves.
pub const LISTENER_NAME: &str = "router";

/// Function name → the cluster serving it.
#[derive(Debug, Default)]
pub struct RouteTable {
    functions: HashMap<String, Arc<ClusterState>>,
}

impl RouteTable {
    pub fn get(&self, function: &str) -> Option<&Arc<ClusterState>> {
        self.functions.get(function)
    }

    /// Function → cluster name, for the admin API.
    pub fn names(&self) -> std::collections::BTreeMap<String, String> {
        self.functions
            .iter()
            .map(|(f, c)| (f.clone(), c.name().to_string()))
            .collect()
    }
}

/// The router's live configuration.
#[derive(Debug)]
pub struct Registry {
    clusters: Mutex<HashMap<String, Arc<ClusterState>>>,
    routes: ArcSwap<RouteTable>,
    snapshot: ArcSwap<Snapshot>,
    applied: AtomicU64,
    applied_unix_ms: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            clusters: Mutex::new(HashMap::new()),
            routes: ArcSwap::from_pointee(RouteTable::default()),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            applied: AtomicU64::new(0),
            applied_unix_ms: AtomicU64::new(0),
        }
    }
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Registry::default())
    }

    /// The cluster serving `function`, if any route names it.
    pub fn route(&self, function: &str) -> Option<Arc<ClusterState>> {
        self.routes.load().get(function).cloned()
    }

    pub fn route_table(&self) -> Arc<RouteTable> {
        self.routes.load_full()
    }

    /// The last snapshot applied.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// How many snapshots were applied, and when the last one was (unix ms, 0 = never).
    pub fn applied(&self) -> (u64, u64) {
        (
            self.applied.load(Relaxed),
            self.applied_unix_ms.load(Relaxed),
        )
    }

    /// Every cluster still known: configured ones and removed ones still draining.
    pub fn clusters(&self) -> Vec<Arc<ClusterState>> {
        let mut v: Vec<_> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| a.name().cmp(b.name()));
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ClusterState>>> {
        self.clusters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `snap` the live configuration.
    pub fn apply(&self, snap: &Arc<Snapshot>) {
        let mut clusters = self.lock();
        for (name, c) in &snap.clusters {
            let settings = Settings::from_pb(c);
            let endpoints: &[pb::Endpoint] = snap
                .endpoints
                .get(name)
                .map(|cla| cla.endpoints.as_slice())
                .unwrap_or(&[]);
            let state = clusters
                .entry(name.clone())
                .or_insert_with(|| ClusterState::new(name, settings));
            state.apply(settings, endpoints);
            state.set_runtime_token(&c.runtime_token);
        }
        for (name, state) in clusters.iter() {
            if !snap.clusters.contains_key(name) {
                state.remove();
            }
        }
        clusters.retain(|name, state| snap.clusters.contains_key(name) || !state.is_defunct());

        let mut functions = HashMap::new();
        for route in routes_of(snap) {
            if functions.contains_key(&route.function) {
                continue; // first route naming a function wins
            }
            if let Some(state) = clusters.get(&route.cluster) {
                if snap.clusters.contains_key(&route.cluster) {
                    functions.insert(route.function.clone(), state.clone());
                }
            }
        }
        self.routes.store(Arc::new(RouteTable { functions }));
        self.snapshot.store(snap.clone());
        drop(clusters);
        self.applied.fetch_add(1, Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        self.applied_unix_ms.store(now, Relaxed);
    }
}

/// The routes the router serves: those of the route configuration named by the `router`
/// listener; without that listener (or its route configuration), every route configuration.
fn routes_of(snap: &Snapshot) -> Vec<&pb::Route> {
    let named = snap
        .listeners
        .get(LISTENER_NAME)
        .and_then(|l| snap.routes.get(&l.route_config_name));
    match named {
        Some(rc) => rc.routes.iter().collect(),
        None => snap
            .routes
            .values()
            .flat_map(|rc| rc.routes.iter())
            .collect(),
    }
}

/// Applies the current snapshot and then each new one as soon as it is published. Returns
/// when the publishing side is gone.
pub async fn follow(registry: Arc<Registry>, mut rx: watch::Receiver<Arc<Snapshot>>) {
    loop {
        let snap = rx.borrow_and_update().clone();
        registry.apply(&snap);
        tracing::info!(
            versions = ?snap.versions,
            clusters = snap.clusters.len(),
            "applied config"
        );
        if rx.changed().await.is_err() {
            tracing::warn!("xds client stopped publishing; keeping the last config");
            return;
        }
    }
}

#[cfg(test)]
mod tests;
