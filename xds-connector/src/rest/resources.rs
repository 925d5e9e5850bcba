//! Generic resources: `/v1/clusters/{name}`, `/v1/endpoints/{cluster}[/{id}[/health]]`,
//! `/v1/routes/{name}`, `/v1/listeners/{name}`. Each write is one atomic snapshot change;
//! writing what is already there changes nothing (no version bump, no push).

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
use crate::model::{
    self, AssignmentJson, ClusterJson, EndpointJson, HealthJson, ListenerJson, RouteConfigJson,
};

type ApiResult = Result<Json<Value>, ApiError>;

fn missing(what: &str, name: &str) -> Error {
    Error::not_found(format!("{what} `{name}` not found"))
}

// ---- clusters ----------------------------------------------------------------------------

pub async fn get_cluster(State(ctx): State<Arc<Ctx>>, Names(name): Names<String>) -> ApiResult {
    model::check_function_name(&name)?;
    let snap = ctx.store.current();
    let c = snap
        .resources
        .clusters
        .get(&name)
        .ok_or_else(|| missing("cluster", &name).for_function(&name))?;
    Ok(Json(json!(ClusterJson::from(c))))
}

pub async fn put_cluster(
    State(ctx): State<Arc<Ctx>>,
    Names(name): Names<String>,
    body: JsonBody,
) -> ApiResult {
    model::check_function_name(&name)?;
    let cluster = body
        .parse::<ClusterJson>()
        .and_then(|b| Ok(b.into_pb(&name)?))
        .map_err(|e| e.for_function(&name))?;
    let change = ctx
        .store
        .update(|r| {
            r.clusters.insert(name.clone(), cluster);
            Ok(())
        })
        .await
        .map_err(|e| e.for_function(&name))?;
    Ok(Json(change_body(&change)))
}

pub async fn delete_cluster(State(ctx): State<Arc<Ctx>>, Names(name): Names<String>) -> ApiResult {
    model::check_function_name(&name)?;
    let change = ctx
        .store
        .update(|r| {
            r.clusters
                .remove(&name)
                .map(drop)
                .ok_or_else(|| missing("cluster", &name))
        })
        .await
        .map_err(|e| e.for_function(&name))?;
    Ok(Json(change_body(&change)))
}

// ---- endpoints ---------------------------------------------------------------------------

pub async fn get_endpoints(
    State(ctx): State<Arc<Ctx>>,
    Names(cluster): Names<String>,
) -> ApiResult {
    model::check_function_name(&cluster)?;
    let snap = ctx.store.current();
    let a = snap
        .resources
        .endpoints
        .get(&cluster)
        .ok_or_else(|| missing("load assignment", &cluster).for_function(&cluster))?;
    Ok(Json(json!(AssignmentJson::from(a))))
}

pub async fn put_endpoints(
    State(ctx): State<Arc<Ctx>>,
    Names(cluster): Names<String>,
    body: JsonBody,
) -> ApiResult {
    model::check_function_name(&cluster)?;
    let assignment = body
        .parse::<AssignmentJson>()
        .and_then(|b| Ok(b.into_pb(&cluster)?))
        .map_err(|e| e.for_function(&cluster))?;
    let change = ctx
        .store
        .update(|r| {
            r.endpoints.insert(cluster.clone(), assignment);
            Ok(())
        })
        .await
        .map_err(|e| e.for_function(&cluster))?;
    Ok(Json(change_body(&change)))
}

pub async fn delete_endpoints(
    State(ctx): State<Arc<Ctx>>,
    Names(cluster): Names<String>,
) -> ApiResult {
    model::check_function_name(&cluster)?;
    let change = ctx
        .store
        .update(|r| {
            r.endpoints
                .remove(&cluster)
                .map(drop)
                .ok_or_else(|| missing("load assignment", &cluster))
        })
        .await
        .map_err(|e| e.for_function(&cluster))?;
    Ok(Json(change_body(&change)))
}

pub async fn get_endpoint(
    State(ctx): State<Arc<Ctx>>,
    Names((cluster, id)): Names<(String, String)>,
) -> ApiResult {
    model::check_function_name(&cluster)?;
    let snap = ctx.store.current();
    let e = snap
        .resources
        .endpoints
        .get(&cluster)
        .and_then(|a| a.endpoints.iter().find(|e| e.id == id))
        .ok_or_else(|| missing("endpoint", &format!("{cluster}/{id}")).for_function(&cluster))?;
    Ok(Json(json!(EndpointJson::from(e))))
}

/// Adds or replaces one endpoint (in place, keeping the others' order); creates the load
/// assignment if the cluster has none.
pub async fn put_endpoint(
    State(ctx): State<Arc<Ctx>>,
    Names((cluster, id)): Names<(String, String)>,
    body: JsonBody,
) -> ApiResult {
    model::check_function_name(&cluster)?;
    model::check_endpoint_id(&id).map_err(|e| e.for_function(&cluster))?;
    let endpoint = body
        .parse::<EndpointJson>()
        .and_then(|b| Ok(b.into_pb(Some(&id))?))
        .map_err(|e| e.for_function(&cluster))?;
    let change =
        ctx.store
            .update(|r| {
                let a = r.endpoints.entry(cluster.clone()).or_insert_with(|| {
                    pb::ClusterLoadAssignment {
                        cluster_name: cluster.clone(),
                        endpoints: Vec::new(),
                    }
                });
                match a.endpoints.iter_mut().find(|e| e.id == id) {
                    Some(e) => *e = endpoint,
                    None => a.endpoints.push(endpoint),
                }
                Ok(())
            })
            .await
            .map_err(|e| e.for_function(&cluster))?;
    Ok(Json(change_body(&change)))
}

pub async fn delete_endpoint(
    State(ctx): State<Arc<Ctx>>,
    Names((cluster, id)): Names<(String, String)>,
) -> ApiResult {
    model::check_function_name(&cluster)?;
    let change = ctx
        .store
        .update(|r| {
            let a = r
                .endpoints
                .get_mut(&cluster)
                .ok_or_else(|| missing("endpoint", &format!("{cluster}/{id}")))?;
            let before = a.endpoints.len();
            a.endpoints.retain(|e| e.id != id);
            if a.endpoints.len() == before {
                return Err(missing("endpoint", &format!("{cluster}/{id}")));
            }
            Ok(())
        })
        .await
        .map_err(|e| e.for_function(&cluster))?;
    Ok(Json(change_body(&change)))
}

/// `POST /v1/endpoints/{cluster}/{id}/health` `{"health": "draining" | "healthy"}`.
pub async fn set_health(
    State(ctx): State<Arc<Ctx>>,
    Names((cluster, id)): Names<(String, String)>,
    body: JsonBody,
) -> ApiResult {
    model::check_function_name(&cluster)?;
    let body: HealthJson = body.parse().map_err(|e| e.for_function(&cluster))?;
    let health = model::health_to_pb(body.health);
    let change = ctx
        .store
        .update(|r| {
            let e = r
                .endpoints
                .get_mut(&cluster)
                .and_then(|a| a.endpoints.iter_mut().find(|e| e.id == id))
                .ok_or_else(|| missing("endpoint", &format!("{cluster}/{id}")))?;
            e.health = health;
            Ok(())
        })
        .await
        .map_err(|e| e.for_function(&cluster))?;
    Ok(Json(change_body(&change)))
}

// ---- routes ------------------------------------------------------------------------------

pub async fn get_routes(State(ctx): State<Arc<Ctx>>, Names(name): Names<String>) -> ApiResult {
    let snap = ctx.store.current();
    let rc = snap
        .resources
        .routes
        .get(&name)
        .ok_or_else(|| missing("route configuration", &name))?;
    Ok(Json(json!(RouteConfigJson::from(rc))))
}

pub async fn put_routes(
    State(ctx): State<Arc<Ctx>>,
    Names(name): Names<String>,
    body: JsonBody,
) -> ApiResult {
    model::check_resource_name("route configuration name", &name)?;
    let rc = body.parse::<RouteConfigJson>()?.into_pb(&name)?;
    let change = ctx
        .store
        .update(|r| {
            r.routes.insert(name.clone(), rc);
            Ok(())
        })
        .await?;
    Ok(Json(change_body(&change)))
}

pub async fn delete_routes(State(ctx): State<Arc<Ctx>>, Names(name): Names<String>) -> ApiResult {
    let change = ctx
        .store
        .update(|r| {
            r.routes
                .remove(&name)
                .map(drop)
                .ok_or_else(|| missing("route configuration", &name))
        })
        .await?;
    Ok(Json(change_body(&change)))
}

// ---- listeners ---------------------------------------------------------------------------

pub async fn get_listener(State(ctx): State<Arc<Ctx>>, Names(name): Names<String>) -> ApiResult {
    let snap = ctx.store.current();
    let l = snap
        .resources
        .listeners
        .get(&name)
        .ok_or_else(|| missing("listener", &name))?;
    Ok(Json(json!(ListenerJson::from(l))))
}

pub async fn put_listener(
    State(ctx): State<Arc<Ctx>>,
    Names(name): Names<String>,
    body: JsonBody,
) -> ApiResult {
    model::check_resource_name("listener name", &name)?;
    let l = body.parse::<ListenerJson>()?.into_pb(&name)?;
    let change = ctx
        .store
        .update(|r| {
            r.listeners.insert(name.clone(), l);
            Ok(())
        })
        .await?;
    Ok(Json(change_body(&change)))
}

pub async fn delete_listener(State(ctx): State<Arc<Ctx>>, Names(name): Names<String>) -> ApiResult {
    let change = ctx
        .store
        .update(|r| {
            r.listeners
                .remove(&name)
                .map(drop)
                .ok_or_else(|| missing("listener", &name))
        })
        .await?;
    Ok(Json(change_body(&change)))
}
