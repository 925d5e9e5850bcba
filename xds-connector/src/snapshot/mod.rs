//! The connector's state: every resource of every type plus the per-type versions.
//!
//! * [`Snapshot`] is immutable once built; each change produces a new one, published on a
//!   `watch` that every client stream task follows (a slow stream simply sees the latest).
//! * [`Store`] is the only writer. Changes are serialised by one lock; a change that alters
//!   nothing keeps the versions and is not published; a change that alters something bumps
//!   the versions of exactly the types that changed, is written to Redis, and only then
//!   published (so a restarted connector never serves less than its clients have seen).
//!
//! Sub-modules: [`version`] (per-type versioning), [`persist`] (the Redis record),
//! [`wire`] (the encoded form streamed to clients).

pub mod persist;
pub mod version;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_common::xds::pb;
use tokio::sync::{watch, Mutex};

use crate::error::{Error, Result};
use crate::kind::{Kind, PerKind};
use crate::model::{AssignmentJson, ClusterJson, ListenerJson, RouteConfigJson, SnapshotJson};
use crate::stats::Stats;
use persist::Persist;
use version::Versions;
use wire::TypeSet;

/// Every resource, keyed by name (cluster name for load assignments).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub clusters: BTreeMap<String, pb::Cluster>,
    pub endpoints: BTreeMap<String, pb::ClusterLoadAssignment>,
    pub routes: BTreeMap<String, pb::RouteConfiguration>,
    pub listeners: BTreeMap<String, pb::Listener>,
}

impl Resources {
    /// Which types differ between `self` and `other`.
    pub fn changed_kinds(&self, other: &Resources) -> PerKind<bool> {
        [
            self.clusters != other.clusters,
            self.endpoints != other.endpoints,
            self.routes != other.routes,
            self.listeners != other.listeners,
        ]
    }

    /// The JSON form, resources sorted by name.
    pub fn to_json(&self, versions: &Versions) -> SnapshotJson {
        SnapshotJson {
            versions: version::to_strings(versions),
            clusters: self.clusters.values().map(ClusterJson::from).collect(),
            endpoints: self.endpoints.values().map(AssignmentJson::from).collect(),
            routes: self.routes.values().map(RouteConfigJson::from).collect(),
            listeners: self.listeners.values().map(ListenerJson::from).collect(),
        }
    }

    /// Builds resources from the JSON form, checking every resource as the REST API would
    /// and refusing duplicate names. Versions in `json` are not looked at.
    pub fn from_json(json: SnapshotJson) -> Result<Resources> {
        fn insert<T>(map: &mut BTreeMap<String, T>, what: &str, name: String, v: T) -> Result<()> {
            if map.insert(name.clone(), v).is_some() {
                return Err(Error::invalid(format!("{what} `{name}` appears twice")));
            }
            Ok(())
        }
        let mut r = Resources::default();
        for c in json.clusters {
            let name = c.name.clone();
            if name.is_empty() {
                return Err(Error::invalid("a cluster has no `name`"));
            }
            insert(&mut r.clusters, "cluster", name.clone(), c.into_pb(&name)?)?;
        }
        for a in json.endpoints {
            let name = a.cluster_name.clone();
            if name.is_empty() {
                return Err(Error::invalid("a load assignment has no `cluster_name`"));
            }
            insert(
                &mut r.endpoints,
                "load assignment",
                name.clone(),
                a.into_pb(&name)?,
            )?;
        }
        for rc in json.routes {
            let name = rc.name.clone();
            if name.is_empty() {
                return Err(Error::invalid("a route configuration has no `name`"));
            }
            insert(
                &mut r.routes,
                "route configuration",
                name.clone(),
                rc.into_pb(&name)?,
            )?;
        }
        for l in json.listeners {
            let name = l.name.clone();
            if name.is_empty() {
                return Err(Error::invalid("a listener has no `name`"));
            }
            insert(
                &mut r.listeners,
                "listener",
                name.clone(),
                l.into_pb(&name)?,
            )?;
        }
        Ok(r)
    }
}

/// One immutable state of the control plane.
#[derive(Debug)]
pub struct Snapshot {
    pub resources: Resources,
    pub versions: Versions,
    /// Each type encoded once, shared by every stream.
    pub encoded: PerKind<Arc<TypeSet>>,
}

impl Snapshot {
    pub fn new(resources: Resources, versions: Versions) -> Snapshot {
        let encoded = Kind::ALL.map(|k| Arc::new(wire::encode(&resources, k)));
        Snapshot {
            resources,
            versions,
            encoded,
        }
    }
}

/// What a change did.
#[derive(Debug, Clone)]
pub struct Change {
    /// False when the change left every type as it was (no version bump, nothing pushed).
    pub changed: bool,
    /// The versions after the change.
    pub versions: Versions,
}

/// The single writer of the snapshot.
pub struct Store {
    tx: watch::Sender<Arc<Snapshot>>,
    write: Mutex<()>,
    persist: Persist,
    stats: Arc<Stats>,
}

impl Store {
    /// A store starting from `initial` (as loaded from Redis, or empty at version 0).
    pub fn new(initial: Snapshot, persist: Persist, stats: Arc<Stats>) -> Store {
        let (tx, _) = watch::channel(Arc::new(initial));
        Store {
            tx,
            write: Mutex::new(()),
            persist,
            stats,
        }
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    /// A receiver of every future snapshot (each stream task holds one).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    /// Applies `f` to a copy of the resources as one atomic change. When `f` fails nothing
    /// changes. When the result differs, versions of the changed types are bumped, the new
    /// snapshot is written to Redis and then published; a Redis failure leaves the old
    /// snapshot in effect and returns the error.
    pub async fn update(&self, f: impl FnOnce(&mut Resources) -> Result<()>) -> Result<Change> {
        let _guard = self.write.lock().await;
        let current = self.current();
        let mut next = current.resources.clone();
        f(&mut next)?;
        let changed = current.resources.changed_kinds(&next);
        if !changed.contains(&true) {
            return Ok(Change {
                changed: false,
                versions: current.versions,
            });
        }
        let versions = version::bump(current.versions, changed);
        let snapshot = Snapshot::new(next, versions);
        self.persist.save(&snapshot).await?;
        self.tx.send_replace(Arc::new(snapshot));
        Stats::incr(&self.stats.snapshot_changes);
        let kinds: Vec<&str> = Kind::ALL
            .into_iter()
            .filter(|k| changed[*k as usize])
            .map(Kind::short)
            .collect();
        tracing::info!(changed = ?kinds, versions = ?versions, "snapshot changed");
        Ok(Change {
            changed: true,
            versions,
        })
    }
}
