//! JSON forms of the resources, shared by the REST API and the record kept in Redis.
//!
//! Field names are the proto's (snake_case), enums are lowercase strings
//! (`"health": "draining"`), durations are the proto's `_ms` integers. Request bodies reject
//! unknown fields so a typo is a 400 naming the field, not a silently ignored setting.
//!
//! This module checks shape only (required fields, names, duplicates); it does not judge
//! data-plane semantics such as whether an address parses: clients validate and NACK that.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use sluice_common::xds::pb;

use crate::error::{Error, Result};

/// `pb::Cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterJson {
    /// Optional in request bodies (the path names the cluster); must match when present.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub max_concurrency: u32,
    #[serde(default)]
    pub queue_size: u32,
    #[serde(default)]
    pub queue_timeout_ms: u64,
    #[serde(default)]
    pub cold_start_timeout_ms: u64,
    #[serde(default)]
    pub max_body_bytes: u64,
    #[serde(default)]
    pub timeout_ms: u64,
    #[serde(default)]
    pub connect_timeout_ms: u64,
    #[serde(default)]
    pub drain_timeout_ms: u64,
    /// Callers need an invoke key (the function's `auth: key`).
    #[serde(default)]
    pub require_key: bool,
    /// What the routers send the function's replicas (`common::runtime`).
    #[serde(default)]
    pub runtime_token: String,
}

/// `pb::EndpointHealth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    #[default]
    Healthy,
    Draining,
}

/// `pb::Endpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointJson {
    /// Required inside a list; optional when the path names the endpoint (must match).
    #[serde(default)]
    pub id: String,
    /// `ip:port` of the replica's runtime (not parsed here: clients NACK what they cannot use).
    pub address: String,
    /// Defaults to 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub max_concurrency: u32,
    #[serde(default)]
    pub health: Health,
    #[serde(default)]
    pub replica: String,
}

fn default_weight() -> u32 {
    1
}

/// `pb::ClusterLoadAssignment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentJson {
    /// Optional in request bodies (the path names the cluster); must match when present.
    #[serde(default)]
    pub cluster_name: String,
    #[serde(default)]
    pub endpoints: Vec<EndpointJson>,
}

/// `pb::Route`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteJson {
    pub function: String,
    pub cluster: String,
}

/// `pb::RouteConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfigJson {
    /// Optional in request bodies (the path names it); must match when present.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub routes: Vec<RouteJson>,
}

/// `pb::Listener`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerJson {
    /// Optional in request bodies (the path names it); must match when present.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub address: String,
    pub route_config_name: String,
}

/// Every resource with the per-type versions (`GET /v1/snapshot`, `PUT /v1/snapshot`, and
/// the record in Redis). Versions are type URL → integer as a string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotJson {
    /// Ignored in `PUT /v1/snapshot` (the server computes versions).
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    #[serde(default)]
    pub clusters: Vec<ClusterJson>,
    #[serde(default)]
    pub endpoints: Vec<AssignmentJson>,
    #[serde(default)]
    pub routes: Vec<RouteConfigJson>,
    #[serde(default)]
    pub listeners: Vec<ListenerJson>,
}

/// Body of `PUT /v1/functions/{name}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionJson {
    pub cluster: ClusterJson,
    #[serde(default)]
    pub endpoints: Vec<EndpointJson>,
}

/// Body of `POST /v1/endpoints/{cluster}/{id}/health`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthJson {
    pub health: Health,
}

// ---- names -------------------------------------------------------------------------------

/// Function and cluster names are DNS labels.
pub fn check_function_name(name: &str) -> Result<()> {
    if sluice_common::is_dns_label(name) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid function name `{name}`: must be a DNS label \
             ([a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters)"
        ))
        .for_function(name))
    }
}

/// Route configuration and listener names: 1–253 characters of `[A-Za-z0-9._-]`.
pub fn check_resource_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid {what} `{name}`: must be 1-253 characters of [A-Za-z0-9._-]"
        )))
    }
}

/// Endpoint ids (container ids or names): 1–253 printable characters, no `/` or spaces.
pub fn check_endpoint_id(id: &str) -> Result<()> {
    let ok =
        !id.is_empty() && id.len() <= 253 && id.chars().all(|c| c.is_ascii_graphic() && c != '/');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid endpoint id `{id}`: must be 1-253 printable ASCII characters without `/`"
        )))
    }
}

/// A body's own name must agree with the path's; empty means "take the path's".
fn check_same(field: &str, body: &str, path: &str) -> Result<()> {
    if body.is_empty() || body == path {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{field} `{body}` does not match the name in the path `{path}`"
        )))
    }
}

// ---- JSON -> proto (checked) -------------------------------------------------------------

impl ClusterJson {
    /// The cluster named `name` (the path's), checked.
    pub fn into_pb(self, name: &str) -> Result<pb::Cluster> {
        check_function_name(name)?;
        check_same("cluster.name", &self.name, name).map_err(|e| e.for_function(name))?;
        Ok(pb::Cluster {
            name: name.to_string(),
            max_concurrency: self.max_concurrency,
            queue_size: self.queue_size,
            queue_timeout_ms: self.queue_timeout_ms,
            cold_start_timeout_ms: self.cold_start_timeout_ms,
            max_body_bytes: self.max_body_bytes,
            timeout_ms: self.timeout_ms,
            connect_timeout_ms: self.connect_timeout_ms,
            drain_timeout_ms: self.drain_timeout_ms,
            require_key: self.require_key,
            runtime_token: self.runtime_token,
        })
    }
}

impl EndpointJson {
    /// The endpoint, checked; `id` is the path's id when the endpoint is named by the path.
    pub fn into_pb(self, id: Option<&str>) -> Result<pb::Endpoint> {
        let id = match id {
            Some(path_id) => {
                check_same("endpoint id", &self.id, path_id)?;
                path_id.to_string()
            }
            None if self.id.is_empty() => {
                return Err(Error::invalid("every endpoint needs an `id`"));
            }
            None => self.id,
        };
        check_endpoint_id(&id)?;
        if self.address.is_empty() {
            return Err(Error::invalid(format!(
                "endpoint `{id}`: `address` is empty"
            )));
        }
        Ok(pb::Endpoint {
            id,
            address: self.address,
            weight: self.weight,
            max_concurrency: self.max_concurrency,
            health: health_to_pb(self.health),
            replica: self.replica,
        })
    }
}

/// A list of endpoints for `cluster`, checked (ids present and unique).
pub fn endpoints_to_pb(
    cluster: &str,
    list: Vec<EndpointJson>,
) -> Result<pb::ClusterLoadAssignment> {
    let mut seen = HashSet::new();
    let mut endpoints = Vec::with_capacity(list.len());
    for e in list {
        let e = e.into_pb(None).map_err(|e| e.for_function(cluster))?;
        if !seen.insert(e.id.clone()) {
            return Err(
                Error::invalid(format!("duplicate endpoint id `{}`", e.id)).for_function(cluster)
            );
        }
        endpoints.push(e);
    }
    Ok(pb::ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints,
    })
}

impl AssignmentJson {
    pub fn into_pb(self, cluster: &str) -> Result<pb::ClusterLoadAssignment> {
        check_function_name(cluster)?;
        check_same("cluster_name", &self.cluster_name, cluster)
            .map_err(|e| e.for_function(cluster))?;
        endpoints_to_pb(cluster, self.endpoints)
    }
}

impl RouteConfigJson {
    pub fn into_pb(self, name: &str) -> Result<pb::RouteConfiguration> {
        check_resource_name("route configuration name", name)?;
        check_same("name", &self.name, name)?;
        let mut routes = Vec::with_capacity(self.routes.len());
        let mut seen = HashSet::new();
        for r in self.routes {
            check_function_name(&r.function)?;
            check_function_name(&r.cluster)?;
            if !seen.insert(r.function.clone()) {
                return Err(Error::invalid(format!(
                    "route configuration `{name}` routes function `{}` twice",
                    r.function
                ))
                .for_function(r.function));
            }
            routes.push(pb::Route {
                function: r.function,
                cluster: r.cluster,
            });
        }
        Ok(pb::RouteConfiguration {
            name: name.to_string(),
            routes,
        })
    }
}

impl ListenerJson {
    pub fn into_pb(self, name: &str) -> Result<pb::Listener> {
        check_resource_name("listener name", name)?;
        check_same("name", &self.name, name)?;
        check_resource_name("route_config_name", &self.route_config_name)?;
        Ok(pb::Listener {
            name: name.to_string(),
            address: self.address,
            route_config_name: self.route_config_name,
        })
    }
}

pub fn health_to_pb(h: Health) -> i32 {
    match h {
        Health::Healthy => pb::EndpointHealth::Healthy as i32,
        Health::Draining => pb::EndpointHealth::Draining as i32,
    }
}

// ---- proto -> JSON -----------------------------------------------------------------------

impl From<&pb::Cluster> for ClusterJson {
    fn from(c: &pb::Cluster) -> Self {
        ClusterJson {
            name: c.name.clone(),
            max_concurrency: c.max_concurrency,
            queue_size: c.queue_size,
            queue_timeout_ms: c.queue_timeout_ms,
            cold_start_timeout_ms: c.cold_start_timeout_ms,
            max_body_bytes: c.max_body_bytes,
            timeout_ms: c.timeout_ms,
            connect_timeout_ms: c.connect_timeout_ms,
            drain_timeout_ms: c.drain_timeout_ms,
            require_key: c.require_key,
            runtime_token: c.runtime_token.clone(),
        }
    }
}

impl From<&pb::Endpoint> for EndpointJson {
    fn from(e: &pb::Endpoint) -> Self {
        EndpointJson {
            id: e.id.clone(),
            address: e.address.clone(),
            weight: e.weight,
            max_concurrency: e.max_concurrency,
            health: if e.health == pb::EndpointHealth::Draining as i32 {
                Health::Draining
            } else {
                Health::Healthy
            },
            replica: e.replica.clone(),
        }
    }
}

impl From<&pb::ClusterLoadAssignment> for AssignmentJson {
    fn from(c: &pb::ClusterLoadAssignment) -> Self {
        AssignmentJson {
            cluster_name: c.cluster_name.clone(),
            endpoints: c.endpoints.iter().map(EndpointJson::from).collect(),
        }
    }
}

impl From<&pb::RouteConfiguration> for RouteConfigJson {
    fn from(r: &pb::RouteConfiguration) -> Self {
        RouteConfigJson {
            name: r.name.clone(),
            routes: r
                .routes
                .iter()
                .map(|r| RouteJson {
                    function: r.function.clone(),
                    cluster: r.cluster.clone(),
                })
                .collect(),
        }
    }
}

impl From<&pb::Listener> for ListenerJson {
    fn from(l: &pb::Listener) -> Self {
        ListenerJson {
            name: l.name.clone(),
            address: l.address.clone(),
            route_config_name: l.route_config_name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: serde::de::DeserializeOwned>(s: &str) -> std::result::Result<T, String> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }

    #[test]
    fn endpoint_defaults_and_lowercase_health() {
        let e: EndpointJson =
            parse(r#"{"id":"a","address":"10.0.0.1:8080","health":"draining"}"#).expect("valid");
        let p = e.into_pb(None).expect("valid");
        assert_eq!(p.weight, 1);
        assert_eq!(p.health, pb::EndpointHealth::Draining as i32);
        let back = serde_json::to_value(EndpointJson::from(&p)).expect("json");
        assert_eq!(back["health"], "draining");
    }

    #[test]
    fn shape_errors_name_the_problem() {
        let e = parse::<ClusterJson>(r#"{"max_concurency": 3}"#).expect_err("typo");
        assert!(e.contains("unknown field `max_concurency`"), "{e}");
        let e = parse::<EndpointJson>(r#"{"id":"a"}"#).expect_err("no address");
        assert!(e.contains("missing field `address`"), "{e}");
        let e = parse::<HealthJson>(r#"{"health":"sick"}"#).expect_err("bad enum");
        assert!(e.contains("unknown variant `sick`"), "{e}");

        let bad = ClusterJson {
            name: "other".into(),
            ..parse::<ClusterJson>("{}").expect("empty cluster")
        };
        let e = bad.into_pb("hello").expect_err("name mismatch");
        assert!(e.message.contains("does not match"), "{}", e.message);
        assert_eq!(e.function.as_deref(), Some("hello"));

        let e = check_function_name("Hello_World").expect_err("not a label");
        assert!(e.message.contains("DNS label"));

        let dup = vec![
            parse::<EndpointJson>(r#"{"id":"a","address":"x"}"#).expect("e"),
            parse::<EndpointJson>(r#"{"id":"a","address":"y"}"#).expect("e"),
        ];
        let e = endpoints_to_pb("hello", dup).expect_err("dup");
        assert!(e.message.contains("duplicate endpoint id `a`"));

        let e = parse::<EndpointJson>(r#"{"address":"x"}"#)
            .expect("shape")
            .into_pb(None)
            .expect_err("no id");
        assert!(e.message.contains("`id`"));
    }

    #[test]
    fn semantics_are_left_to_clients() {
        // The REST layer accepts an address a router cannot parse: the router NACKs it.
        let e: EndpointJson = parse(r#"{"id":"a","address":"not-an-address"}"#).expect("shape ok");
        assert!(e.into_pb(None).is_ok());
    }
}
