//! `/v1/functions/{name}`: the orchestrator's calls. A function is its cluster, its load
//! assignment and its route in the `default` route configuration (served by the `router`
//! listener, both created on first use). Each call is one atomic snapshot change.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use sluice_common::xds::pb;

use super::change_body;
use super::error::ApiError;
use super::extract::{JsonBody, Names};
use crate::context::Ctx;
use crate::error::Error;
use crate::model::{self, AssignmentJson, ClusterJson, FunctionJson};
use crate::snapshot::Resources;

/// The route configuration functions are routed by.
pub const DEFAULT_ROUTES: &str = "default";
/// The listener created with the default route configuration.
pub const DEFAULT_LISTENER: &str = "router";
/// Its (informational) address.
pub const DEFAULT_LISTENER_ADDRESS: &str = "0.0.0.0:10000";

/// `GET /v1/functions/{name}`: the function's cluster, endpoints and whether it is routed.
pub async fn get(
    State(ctx): State<Arc<Ctx>>,
    Names(name): Names<String>,
) -> Result<Json<Value>, ApiError> {
    model::check_function_name(&name)?;
    let snap = ctx.store.current();
    let r = &snap.resources;
    let Some(cluster) = r.clusters.get(&name) else {
        return Err(Error::not_found(format!("function `{name}` not found"))
            .for_function(name)
            .into());
    };
    let endpoints = r
        .endpoints
        .get(&name)
        .map(AssignmentJson::from)
        .map(|a| a.endpoints)
        .unwrap_or_default();
    let routed = r
        .routes
        .get(DEFAULT_ROUTES)
        .is_some_and(|rc| rc.routes.iter().any(|rt| rt.function == name));
    Ok(Json(json!({
        "cluster": ClusterJson::from(cluster),
        "endpoints": endpoints,
        "routed": routed,
    })))
}

/// `PUT /v1/functions/{name}`: sets the cluster, the endpoints and the route at once.
pub async fn put(
    State(ctx): State<Arc<Ctx>>,
    Names(name): Names<String>,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    model::check_function_name(&name)?;
    let body: FunctionJson = body.parse().map_err(|e| e.for_function(&name))?;
    let cluster = body.cluster.into_pb(&name)?;
    let assignment = model::endpoints_to_pb(&name, body.endpoints)?;
    let change = ctx
        .store
        .update(|r| {
            r.clusters.insert(name.clone(), cluster);
            r.endpoints.insert(name.clone(), assignment);
            ensure_route(r, &name);
            Ok(())
        })
        .await
        .map_err(|e| e.for_function(&name))?;
    let mut body = change_body(&change);
    body["function"] = json!(name);
    Ok(Json(body))
}

/// `DELETE /v1/functions/{name}`: removes the route, the endpoints and the cluster (clients
/// get them in that order). 404 when none of them exists.
pub async fn delete(
    State(ctx): State<Arc<Ctx>>,
    Names(name): Names<String>,
) -> Result<Json<Value>, ApiError> {
    model::check_function_name(&name)?;
    let change = ctx
        .store
        .update(|r| {
            let mut found = false;
            if let Some(rc) = r.routes.get_mut(DEFAULT_ROUTES) {
                let before = rc.routes.len();
                rc.routes.retain(|rt| rt.function != name);
                found |= rc.routes.len() != before;
            }
            found |= r.endpoints.remove(&name).is_some();
            found |= r.clusters.remove(&name).is_some();
            if found {
                Ok(())
            } else {
                Err(Error::not_found(format!("function `{name}` not found")))
            }
        })
        .await
        .map_err(|e| e.for_function(&name))?;
    let mut body = change_body(&change);
    body["function"] = json!(name);
    Ok(Json(body))
}

/// Makes `default` route `function` to its cluster, creating the route configuration and the
/// `router` listener if missing. Routes stay sorted by function; an existing correct route is
/// left as is, so repeating the call changes nothing.
fn ensure_route(r: &mut Resources, function: &str) {
    let rc = r
        .routes
        .entry(DEFAULT_ROUTES.to_string())
        .or_insert_with(|| pb::RouteConfiguration {
            name: DEFAULT_ROUTES.to_string(),
            routes: Vec::new(),
        });
    match rc.routes.iter_mut().find(|rt| rt.function == function) {
        Some(route) => {
            if route.cluster != function {
                route.cluster = function.to_string();
            }
        }
        None => {
            let at = rc
                .routes
                .iter()
                .position(|rt| rt.function.as_str() > function)
                .unwrap_or(rc.routes.len());
            rc.routes.insert(
                at,
                pb::Route {
                    function: function.to_string(),
                    cluster: function.to_string(),
                },
            );
        }
    }
    r.listeners
        .entry(DEFAULT_LISTENER.to_string())
        .or_insert_with(|| pb::Listener {
            name: DEFAULT_LISTENER.to_string(),
            address: DEFAULT_LISTENER_ADDRESS.to_string(),
            route_config_name: DEFAULT_ROUTES.to_string(),
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_stay_sorted_and_repeats_change_nothing() {
        let mut r = Resources::default();
        for f in ["mid", "alpha", "zulu", "mid"] {
            ensure_route(&mut r, f);
        }
        let fns: Vec<&str> = r.routes[DEFAULT_ROUTES]
            .routes
            .iter()
            .map(|rt| rt.function.as_str())
            .collect();
        assert_eq!(fns, ["alpha", "mid", "zulu"]);
        assert_eq!(
            r.listeners[DEFAULT_LISTENER].route_config_name,
            DEFAULT_ROUTES
        );
        let before = r.clone();
        ensure_route(&mut r, "alpha");
        assert_eq!(r, before);
    }
}
