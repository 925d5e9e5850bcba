//! The orchestrator's side of the data plane: it tells the xds-connector which replicas of a
//! function are ready (the router and gateway get them by push), and before a replica is
//! stopped it waits until every router has stopped sending to it and finished what it sent.
//!
//! Without `--xds-rest` (tests of the orchestrator alone) nothing routes to replicas, so there
//! is nothing to publish or drain.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_common::registry::FunctionSpec;

use crate::error::{Error, ErrorKind, Result};

/// A ready replica as the data plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    pub address: String,
    pub replica: String,
}

#[derive(Clone)]
pub struct DataPlane {
    http: reqwest::Client,
    xds: Option<String>,
    /// `authorization` of every call to the xds-connector (its token), if any.
    xds_auth: Option<String>,
    routers: Vec<String>,
    /// Longest wait for in-flight requests of a removed replica (beyond the call timeout).
    drain_slack: Duration,
    /// Derives each function's runtime token (`common::runtime`).
    runtime: RuntimeTokens,
}

/// The runtime tokens of an installation: one per function, from a control-plane secret.
#[derive(Clone)]
pub struct RuntimeTokens {
    secret: std::sync::Arc<Vec<u8>>,
    instance: String,
}

impl RuntimeTokens {
    pub fn new(secret: Vec<u8>, instance: &str) -> Self {
        RuntimeTokens {
            secret: std::sync::Arc::new(secret),
            instance: instance.to_string(),
        }
    }

    /// The token `function`'s replicas want on every request.
    pub fn of(&self, function: &str) -> String {
        sluice_common::runtime::token(&self.secret, &self.instance, function)
    }
}

impl DataPlane {
    pub fn new(
        http: reqwest::Client,
        xds: Option<String>,
        xds_token: Option<String>,
        routers: Vec<String>,
        drain_slack: Duration,
        runtime: RuntimeTokens,
    ) -> Self {
        DataPlane {
            http,
            xds: xds.map(|u| u.trim_end_matches('/').to_string()),
            xds_auth: xds_token.map(|t| sluice_common::xds::bearer(&t)),
            routers: routers
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .filter(|u| !u.is_empty())
                .collect(),
            drain_slack,
            runtime,
        }
    }

    pub fn runtime_tokens(&self) -> &RuntimeTokens {
        &self.runtime
    }

    pub fn enabled(&self) -> bool {
        self.xds.is_some()
    }

    /// `req` with the xds-connector's token (never sent anywhere else: the same client probes
    /// function containers).
    fn to_xds(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.xds_auth {
            Some(a) => req.header(reqwest::header::AUTHORIZATION, a),
            None => req,
        }
    }

    fn drain_timeout(&self, spec: &FunctionSpec) -> Duration {
        spec.limits.timeout + self.drain_slack
    }

    /// Sets the function's cluster, endpoints and route in one change.
    pub async fn put_function(&self, spec: &FunctionSpec, endpoints: &[Endpoint]) -> Result<()> {
        let Some(xds) = &self.xds else { return Ok(()) };
        let s = &spec.scaling;
        let body = json!({
            "cluster": {
                "name": spec.name,
                "max_concurrency": s.max_concurrency,
                "queue_size": s.queue_size,
                "queue_timeout_ms": s.queue_timeout.as_millis() as u64,
                "cold_start_timeout_ms": s.cold_start_timeout.as_millis() as u64,
                "max_body_bytes": spec.limits.max_body_bytes,
                "timeout_ms": spec.limits.timeout.as_millis() as u64,
                "connect_timeout_ms": 1000,
                "drain_timeout_ms": self.drain_timeout(spec).as_millis() as u64,
                "require_key": spec.auth == sluice_common::registry::Auth::Key,
                "runtime_token": self.runtime.of(&spec.name),
            },
            "endpoints": endpoints.iter().map(|e| json!({
                "id": e.id,
                "address": e.address,
                "weight": 1,
                "max_concurrency": s.max_concurrency,
                "health": "healthy",
                "replica": e.replica,
            })).collect::<Vec<_>>(),
        });
        let url = format!("{xds}/v1/functions/{}", spec.name);
        self.send(self.to_xds(self.http.put(&url)).json(&body), &url)
            .await
    }

    pub async fn delete_function(&self, name: &str) -> Result<()> {
        let Some(xds) = &self.xds else { return Ok(()) };
        let url = format!("{xds}/v1/functions/{name}");
        match self
            .to_xds(self.http.delete(&url))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::NOT_FOUND => {
                Ok(())
            }
            Ok(r) => Err(Error::new(
                ErrorKind::Unavailable,
                format!("xds-connector answered {} to DELETE {url}", r.status()),
            )),
            Err(e) => Err(
                Error::new(ErrorKind::Unavailable, format!("DELETE {url} failed")).with_source(e),
            ),
        }
    }

    /// Removes clusters of functions that no longer exist (removed while we were down).
    pub async fn prune(&self, known: &[String]) -> Result<()> {
        let Some(xds) = &self.xds else { return Ok(()) };
        let url = format!("{xds}/v1/snapshot");
        let snap: Value = self
            .to_xds(self.http.get(&url))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| {
                Error::new(ErrorKind::Unavailable, format!("GET {url} failed")).with_source(e)
            })?
            .json()
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Unavailable, format!("GET {url}: bad JSON")).with_source(e)
            })?;
        let names: Vec<String> = snap["clusters"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .or_else(|| {
                snap["clusters"]
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
            })
            .unwrap_or_default();
        for name in names.into_iter().filter(|n| !known.contains(n)) {
            tracing::info!(function = %name, "removing data-plane config of a function that no longer exists");
            self.delete_function(&name).await?;
        }
        Ok(())
    }

    async fn send(&self, req: reqwest::RequestBuilder, url: &str) -> Result<()> {
        match req.timeout(Duration::from_secs(5)).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("xds-connector answered {status} to {url}: {body}"),
                )
                .retryable(status.is_server_error()))
            }
            Err(e) => {
                Err(Error::new(ErrorKind::Unavailable, format!("{url} failed")).with_source(e))
            }
        }
    }

    /// Waits until no router sends new requests to the replica `id` and its in-flight requests
    /// have finished, or the drain timeout passes. The endpoint must already have been removed
    /// from the published config.
    pub async fn drain(&self, spec: &FunctionSpec, id: &str) {
        if self.routers.is_empty() {
            return;
        }
        let started = Instant::now();
        let deadline = self.drain_timeout(spec);
        for router in &self.routers {
            let url = format!("{router}/v1/endpoints");
            loop {
                if started.elapsed() >= deadline {
                    tracing::warn!(function = %spec.name, replica = %id, router = %router,
                        "drain timed out; stopping the replica anyway");
                    return;
                }
                match self.router_view(&url, id).await {
                    // Not routable there any more and nothing in flight: done with this router.
                    Ok(None) => break,
                    Ok(Some((active, in_flight))) if !active && in_flight == 0 => break,
                    Ok(Some(_)) => {}
                    Err(e) => {
                        // An unreachable router cannot send to the replica either.
                        tracing::debug!(router = %router, error = %e, "router admin unreachable during drain");
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tracing::debug!(function = %spec.name, replica = %id, ms = started.elapsed().as_millis() as u64, "drained");
    }

    /// `(active, in_flight)` of endpoint `id` on one router, `None` when the router has no
    /// such endpoint.
    async fn router_view(&self, url: &str, id: &str) -> Result<Option<(bool, u64)>> {
        let list: Value = self
            .http
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| Error::new(ErrorKind::Unavailable, "router admin").with_source(e))?
            .json()
            .await
            .map_err(|e| Error::new(ErrorKind::Unavailable, "router admin JSON").with_source(e))?;
        let Some(ep) = list
            .as_array()
            .and_then(|a| a.iter().find(|e| e["id"].as_str() == Some(id)))
        else {
            return Ok(None);
        };
        let active = ep["state"].as_str() == Some("active");
        Ok(Some((active, ep["in_flight"].as_u64().unwrap_or(0))))
    }
}
