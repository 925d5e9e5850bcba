//! What the gateway knows about functions: a read-only view over the last xDS snapshot it
//! accepted, never a network round trip.
//!
//! Each accepted snapshot is indexed once (function → [`FunctionView`], a hash map) and the
//! index is swapped in atomically (`ArcSwap`), so a request's lookup is one hash probe with
//! no lock and no scan over the routes. The index is stored *before* the snapshot is passed
//! on to the gateway's own subscribers (cold starts, admission), so whoever is woken by a
//! new snapshot finds an index at least as new.
//!
//! A function exists when a route names it (the same rule the router uses); its settings come
//! from the cluster the route points at, and it is *ready* when that cluster has at least one
//! HEALTHY endpoint. Cluster numbers left at 0 fall back to the gateway's defaults.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sluice_common::xds::{pb, Snapshot, ROUTES_TYPE, TYPES};
use tokio::sync::watch;

use crate::admission::Capacity;

/// Values used when a cluster leaves a setting at 0.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub cold_start_timeout: Duration,
    pub max_body_bytes: u64,
    pub timeout: Duration,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            cold_start_timeout: Duration::from_secs(30),
            max_body_bytes: 6 * 1024 * 1024,
            timeout: Duration::from_secs(30),
        }
    }
}

/// One function as the gateway needs it for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionView {
    /// The cluster the function's route points at.
    pub cluster: String,
    /// HEALTHY endpoints right now (0: the function is scaled to zero).
    pub healthy: usize,
    pub cold_start_timeout: Duration,
    pub max_body_bytes: u64,
    /// Per-call timeout of the function (the gateway waits a little longer for the router).
    pub timeout: Duration,
    /// What the ready replicas and the router's queue can take (see [`crate::admission`]).
    pub capacity: Capacity,
    /// Callers need an API key with the invoke scope (`auth: key`).
    pub require_key: bool,
}

/// Looks a function up in `snapshot`; `None` when no route names it or its cluster is missing.
pub fn view(snapshot: &Snapshot, function: &str, defaults: &Defaults) -> Option<FunctionView> {
    Some(view_of(snapshot, snapshot.cluster_for(function)?, defaults))
}

/// The view of a function whose route points at `cluster`.
fn view_of(snapshot: &Snapshot, cluster: &pb::Cluster, defaults: &Defaults) -> FunctionView {
    let ms = |v: u64, d: Duration| {
        if v == 0 {
            d
        } else {
            Duration::from_millis(v)
        }
    };
    let mut healthy = 0usize;
    // Slots of the ready replicas; `None` once one of them has no cap.
    let mut slots = Some(0u64);
    for e in snapshot.healthy_endpoints(&cluster.name) {
        healthy += 1;
        let cap = if e.max_concurrency > 0 {
            e.max_concurrency
        } else {
            cluster.max_concurrency
        };
        slots = slots.and_then(|s| (cap > 0).then(|| s + u64::from(cap)));
    }
    let timeout = ms(cluster.timeout_ms, defaults.timeout);
    FunctionView {
        cluster: cluster.name.clone(),
        healthy,
        capacity: Capacity {
            ready: healthy,
            slots,
            queue_size: cluster.queue_size,
            queue_timeout: Duration::from_millis(cluster.queue_timeout_ms),
            timeout,
        },
        cold_start_timeout: ms(cluster.cold_start_timeout_ms, defaults.cold_start_timeout),
        max_body_bytes: if cluster.max_body_bytes == 0 {
            defaults.max_body_bytes
        } else {
            cluster.max_body_bytes
        },
        timeout,
        require_key: cluster.require_key,
    }
}

/// True when `function` exists and has at least one HEALTHY endpoint.
pub fn is_ready(snapshot: &Snapshot, function: &str) -> bool {
    snapshot
        .cluster_for(function)
        .is_some_and(|c| snapshot.healthy_endpoints(&c.name).next().is_some())
}

/// Every function of one snapshot, by name.
#[derive(Debug, Default)]
struct Index {
    has_routes: bool,
    functions: HashMap<String, Arc<FunctionView>>,
}

impl Index {
    fn build(snapshot: &Snapshot, defaults: &Defaults) -> Index {
        let mut functions = HashMap::new();
        let mut named = std::collections::HashSet::new();
        // One pass over the routes: the first route naming a function wins (even when its
        // cluster is missing), as in `Snapshot::cluster_for`.
        for route in snapshot.routes.values().flat_map(|rc| rc.routes.iter()) {
            if !named.insert(route.function.as_str()) {
                continue;
            }
            if let Some(cluster) = snapshot.clusters.get(&route.cluster) {
                let v = view_of(snapshot, cluster, defaults);
                functions.insert(route.function.clone(), Arc::new(v));
            }
        }
        Index {
            has_routes: snapshot.versions.contains_key(ROUTES_TYPE),
            functions,
        }
    }
}

/// Shared handle on the accepted configuration.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Snapshots as passed on after indexing.
    rx: watch::Receiver<Arc<Snapshot>>,
    index: Arc<ArcSwap<Index>>,
    defaults: Defaults,
}

impl Catalog {
    /// Indexes `source`'s snapshot now and every later one as it arrives (a task on the
    /// current Tokio runtime: call from within one). The task ends when `source`'s sender is
    /// dropped.
    pub fn new(mut source: watch::Receiver<Arc<Snapshot>>, defaults: Defaults) -> Self {
        let first = source.borrow_and_update().clone();
        let index = Arc::new(ArcSwap::from_pointee(Index::build(&first, &defaults)));
        let (tx, rx) = watch::channel(first);
        let relay_index = index.clone();
        tokio::spawn(async move {
            while source.changed().await.is_ok() {
                let snap = source.borrow_and_update().clone();
                relay_index.store(Arc::new(Index::build(&snap, &defaults)));
                tx.send_replace(snap);
            }
        });
        Catalog {
            rx,
            index,
            defaults,
        }
    }

    /// Fallbacks for settings a cluster leaves at 0.
    pub fn defaults(&self) -> Defaults {
        self.defaults
    }

    /// The snapshot in effect now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.rx.borrow().clone()
    }

    /// A receiver that is notified of every accepted snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.rx.clone()
    }

    /// True once the routes have been received from the control plane at least once (before
    /// that, "unknown function" would be a guess, not an answer).
    pub fn has_config(&self) -> bool {
        self.index.load().has_routes
    }

    /// Looks up a function in the snapshot in effect now.
    pub fn lookup(&self, function: &str) -> Option<Arc<FunctionView>> {
        self.index.load().functions.get(function).cloned()
    }

    /// Health summary: accepted versions per type, whether every type has been received,
    /// function counts.
    pub fn status_json(&self) -> serde_json::Value {
        let snap = self.snapshot();
        let synced = TYPES.iter().all(|t| snap.versions.contains_key(*t));
        let functions: Vec<&str> = snap
            .routes
            .values()
            .flat_map(|rc| rc.routes.iter().map(|r| r.function.as_str()))
            .collect();
        let ready = functions.iter().filter(|f| is_ready(&snap, f)).count();
        serde_json::json!({
            "synced": synced,
            "versions": snap.versions,
            "functions": functions.len(),
            "ready_functions": ready,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sluice_common::xds::pb;

    /// A snapshot with one function (`cluster == route == name`) and the given endpoints.
    pub(crate) fn snapshot_with(
        name: &str,
        cluster: pb::Cluster,
        endpoints: Vec<pb::Endpoint>,
    ) -> Snapshot {
        let mut s = Snapshot::default();
        s.clusters.insert(name.into(), cluster);
        s.endpoints.insert(
            name.into(),
            pb::ClusterLoadAssignment {
                cluster_name: name.into(),
                endpoints,
            },
        );
        s.routes.insert(
            "default".into(),
            pb::RouteConfiguration {
                name: "default".into(),
                routes: vec![pb::Route {
                    function: name.into(),
                    cluster: name.into(),
                }],
            },
        );
        s
    }

    pub(crate) fn endpoint(id: &str, health: pb::EndpointHealth) -> pb::Endpoint {
        pb::Endpoint {
            id: id.into(),
            address: "127.0.0.1:1".into(),
            weight: 1,
            max_concurrency: 0,
            health: health as i32,
            replica: id.into(),
        }
    }

    #[test]
    fn view_follows_routes_counts_healthy_and_applies_defaults() {
        let cluster = pb::Cluster {
            name: "hello".into(),
            max_body_bytes: 1024,
            ..Default::default()
        };
        let s = snapshot_with(
            "hello",
            cluster,
            vec![
                endpoint("a", pb::EndpointHealth::Healthy),
                endpoint("b", pb::EndpointHealth::Draining),
            ],
        );
        let d = Defaults::default();
        let v = view(&s, "hello", &d).expect("hello exists");
        assert_eq!(v.healthy, 1);
        assert_eq!(v.capacity.ready, 1);
        assert_eq!(v.capacity.slots, None, "a replica without a cap: unlimited");
        assert_eq!(v.max_body_bytes, 1024);
        assert_eq!(v.cold_start_timeout, d.cold_start_timeout);
        assert!(is_ready(&s, "hello"));
        assert!(view(&s, "nope", &d).is_none());

        let draining_only = snapshot_with(
            "hello",
            pb::Cluster {
                name: "hello".into(),
                ..Default::default()
            },
            vec![endpoint("b", pb::EndpointHealth::Draining)],
        );
        assert!(!is_ready(&draining_only, "hello"));
    }

    /// A subscriber woken by a new snapshot already finds it in the index: the index is
    /// stored before the snapshot is passed on (a cold start re-reads the capacity then).
    #[tokio::test]
    async fn the_index_is_current_for_whoever_a_new_snapshot_wakes() {
        let cluster = pb::Cluster {
            name: "hello".into(),
            ..Default::default()
        };
        let mut first = snapshot_with("hello", cluster.clone(), vec![]);
        first.versions.insert(ROUTES_TYPE.into(), "1".into());
        let (tx, rx) = watch::channel(Arc::new(first));
        let catalog = Catalog::new(rx, Defaults::default());
        assert!(catalog.has_config());
        assert_eq!(catalog.lookup("hello").expect("hello").healthy, 0);
        assert!(catalog.lookup("nope").is_none());
        let mut woken = catalog.subscribe();
        woken.borrow_and_update();
        for round in 1..=50usize {
            let endpoints = (0..round)
                .map(|i| endpoint(&format!("r{i}"), pb::EndpointHealth::Healthy))
                .collect();
            let mut next = snapshot_with("hello", cluster.clone(), endpoints);
            next.versions.insert(ROUTES_TYPE.into(), round.to_string());
            tx.send_replace(Arc::new(next));
            woken.changed().await.expect("relay runs");
            woken.borrow_and_update();
            assert_eq!(
                catalog.lookup("hello").expect("hello").healthy,
                round,
                "the lookup after the wake-up sees the snapshot that woke it"
            );
        }
        // A snapshot without the function: it is gone from the index.
        tx.send_replace(Arc::new(Snapshot::default()));
        woken.changed().await.expect("relay runs");
        assert!(catalog.lookup("hello").is_none());
        assert!(!catalog.has_config());
    }

    /// The index agrees with [`view`], route order included: the first route naming a
    /// function wins even when its cluster is missing.
    #[test]
    fn the_index_follows_the_first_route_like_view() {
        let mut s = snapshot_with(
            "b",
            pb::Cluster {
                name: "b".into(),
                ..Default::default()
            },
            vec![endpoint("r", pb::EndpointHealth::Healthy)],
        );
        let route = |function: &str, cluster: &str| pb::Route {
            function: function.into(),
            cluster: cluster.into(),
        };
        s.routes.insert(
            "more".into(),
            pb::RouteConfiguration {
                name: "more".into(),
                routes: vec![route("a", "missing"), route("a", "b"), route("c", "b")],
            },
        );
        let d = Defaults::default();
        let index = Index::build(&s, &d);
        for f in ["a", "b", "c", "nope"] {
            assert_eq!(
                index.functions.get(f).map(|v| v.as_ref().clone()),
                view(&s, f, &d),
                "{f}"
            );
        }
        assert!(!index.functions.contains_key("a"));
        assert_eq!(index.functions["c"].healthy, 1);
    }
}
