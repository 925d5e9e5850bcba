//! Unit tests of snapshot application, fed through a real watch channel.

use std::time::{Duration, Instant};

use sluice_common::xds::{pb, Snapshot, CLUSTER_TYPE};

use super::*;

fn cluster(name: &str, cap: u32) -> pb::Cluster {
    pb::Cluster {
        name: name.into(),
        max_concurrency: cap,
        queue_size: 10,
        queue_timeout_ms: 1000,
        timeout_ms: 1000,
        ..Default::default()
    }
}

fn ep(id: &str, port: u16) -> pb::Endpoint {
    pb::Endpoint {
        id: id.into(),
        address: format!("127.0.0.1:{port}"),
        weight: 1,
        ..Default::default()
    }
}

/// A snapshot with one function per (name, endpoints) entry, routed through `default`.
fn snapshot(functions: &[(&str, Vec<pb::Endpoint>)], version: u32) -> Arc<Snapshot> {
    let mut s = Snapshot::default();
    let mut routes = Vec::new();
    for (name, eps) in functions {
        s.clusters.insert(name.to_string(), cluster(name, 1));
        s.endpoints.insert(
            name.to_string(),
            pb::ClusterLoadAssignment {
                cluster_name: name.to_string(),
                endpoints: eps.clone(),
            },
        );
        routes.push(pb::Route {
            function: name.to_string(),
            cluster: name.to_string(),
        });
    }
    s.routes.insert(
        "default".into(),
        pb::RouteConfiguration {
            name: "default".into(),
            routes,
        },
    );
    s.listeners.insert(
        LISTENER_NAME.into(),
        pb::Listener {
            name: LISTENER_NAME.into(),
            address: "0.0.0.0:10000".into(),
            route_config_name: "default".into(),
        },
    );
    s.versions.insert(CLUSTER_TYPE.into(), version.to_string());
    Arc::new(s)
}

async fn until(what: &str, f: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        tokio::task::yield_now().await;
    }
    start.elapsed()
}

#[tokio::test]
async fn follow_applies_each_push_promptly() {
    let registry = Registry::new();
    let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
    tokio::spawn(follow(registry.clone(), rx));
    until("initial apply", || registry.applied().0 == 1).await;
    assert!(registry.route("hello").is_none());

    tx.send(snapshot(&[("hello", vec![ep("a", 1)])], 1))
        .expect("send");
    let took = until("hello routed", || registry.route("hello").is_some()).await;
    assert!(took < Duration::from_millis(50), "push took {took:?}");

    tx.send(snapshot(&[], 2)).expect("send");
    until("hello gone", || registry.route("hello").is_none()).await;
}

#[tokio::test]
async fn routes_need_an_existing_cluster_and_first_route_wins() {
    let registry = Registry::new();
    let mut s = (*snapshot(&[("a", vec![ep("1", 1)]), ("b", vec![ep("2", 2)])], 1)).clone();
    let rc = s.routes.get_mut("default").expect("default");
    rc.routes.insert(
        0,
        pb::Route {
            function: "alias".into(),
            cluster: "b".into(),
        },
    );
    rc.routes.push(pb::Route {
        function: "alias".into(),
        cluster: "a".into(),
    });
    rc.routes.push(pb::Route {
        function: "ghost".into(),
        cluster: "missing".into(),
    });
    registry.apply(&Arc::new(s));
    assert_eq!(registry.route("alias").expect("alias").name(), "b");
    assert!(registry.route("ghost").is_none());
    assert_eq!(registry.route("a").expect("a").name(), "a");
}

#[tokio::test]
async fn counters_survive_and_removed_functions_drain() {
    let registry = Registry::new();
    registry.apply(&snapshot(&[("f", vec![ep("a", 1), ep("b", 2)])], 1));
    let state = registry.route("f").expect("f");
    let l1 = state.acquire(None).await.expect("slot");
    let l2 = state.acquire(None).await.expect("slot");

    // Re-push the same endpoints plus one: both keep in_flight 1.
    registry.apply(&snapshot(
        &[("f", vec![ep("a", 1), ep("b", 2), ep("c", 3)])],
        2,
    ));
    let same = registry.route("f").expect("f");
    assert!(
        Arc::ptr_eq(&state, &same),
        "cluster state is kept across pushes"
    );
    let views = same.endpoint_views();
    assert_eq!(views.iter().map(|v| v.in_flight).sum::<u32>(), 2);
    assert_eq!(views.len(), 3);

    // Remove the function: not routable, but its in-flight requests still hold slots.
    registry.apply(&snapshot(&[], 3));
    assert!(registry.route("f").is_none());
    let listed: Vec<_> = registry
        .clusters()
        .iter()
        .flat_map(|c| c.endpoint_views())
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .all(|v| v.state == "draining" && v.in_flight == 1));
    drop((l1, l2));
    assert!(registry
        .clusters()
        .iter()
        .all(|c| c.endpoint_views().is_empty()));
    registry.apply(&snapshot(&[], 4));
    assert!(registry.clusters().is_empty(), "defunct cluster forgotten");
}

#[tokio::test]
async fn without_the_router_listener_all_route_configs_count() {
    let registry = Registry::new();
    let mut s = (*snapshot(&[("f", vec![ep("a", 1)])], 1)).clone();
    s.listeners.clear();
    registry.apply(&Arc::new(s));
    assert!(registry.route("f").is_some());
}
