//! The Docker engine, as the orchestrator uses it: one network, labelled containers,
//! image builds and the event stream. Every call goes through [`Engine`], which owns the
//! bollard client (API version negotiated with the engine at connect time).

pub mod container;
pub mod events;
pub mod mdf;

use std::collections::HashMap;

use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use sluice_common::{LABEL_FUNCTION, LABEL_MANAGED};

use crate::error::{Error, Result};

/// Label naming the Sluice installation a container belongs to (the engine filter checks it).
pub use sluice_common::LABEL_INSTANCE;
/// Label with the hash of the spec a container was created from (decides rolling updates).
pub const LABEL_SPEC_HASH: &str = "sluice.spec-hash";
/// Label on function images: hash of everything the image was built from.
pub const LABEL_BUILD_HASH: &str = "sluice.build-hash";

/// A container the orchestrator manages, as listed by the engine.
#[derive(Debug, Clone)]
pub struct ManagedContainer {
    pub id: String,
    pub name: String,
    pub function: String,
    pub state: ContainerState,
    pub ip: Option<String>,
    pub spec_hash: Option<String>,
    pub image_id: Option<String>,
    /// Creation time (unix seconds).
    pub created: i64,
}

/// The engine's view of a container's state, reduced to what the orchestrator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    /// Exited, dead, or being removed.
    Gone,
}

#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    pub network: String,
    pub instance: String,
}

impl Engine {
    /// Connects to the engine (`host`, else DOCKER_HOST, else the local socket) and settles
    /// on the newest API version both sides speak.
    pub async fn connect(host: Option<&str>, network: &str, instance: &str) -> Result<Self> {
        let docker = match host {
            Some(h) if h.starts_with("tcp://") || h.starts_with("http://") => {
                Docker::connect_with_http(h, 120, bollard::API_DEFAULT_VERSION)
            }
            Some(h) => Docker::connect_with_socket(
                h.trim_start_matches("unix://"),
                120,
                bollard::API_DEFAULT_VERSION,
            ),
            None => Docker::connect_with_defaults(),
        }
        .map_err(|e| Error::docker("cannot connect to the Docker engine", e))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| Error::docker("cannot reach the Docker engine", e))?;
        Ok(Engine {
            docker,
            network: network.to_string(),
            instance: instance.to_string(),
        })
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Answers when the engine is reachable (for `/healthz`).
    pub async fn ping(&self) -> Result<()> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| Error::docker("docker ping failed", e))
    }

    /// Creates the function network if it does not exist yet: internal, so a function
    /// reaches only what is on it.
    pub async fn ensure_network(&self) -> Result<()> {
        self.ensure_bridge(&self.network, true).await
    }

    /// The network functions declared `egress: internet` also join: it has a route out.
    pub fn egress_network(&self) -> String {
        format!("{}-egress", self.network)
    }

    /// Creates the egress network if it does not exist yet.
    pub async fn ensure_egress_network(&self) -> Result<()> {
        self.ensure_bridge(&self.egress_network(), false).await
    }

    async fn ensure_bridge(&self, name: &str, internal: bool) -> Result<()> {
        match self.docker.inspect_network(name, None).await {
            Ok(_) => return Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(Error::docker(format!("cannot inspect network {name}"), e)),
        }
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            attachable: Some(true),
            internal: Some(internal),
            labels: Some(HashMap::from([(LABEL_MANAGED.to_string(), "true".into())])),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => {
                tracing::info!(network = %name, internal, "created a function network");
                Ok(())
            }
            // Someone else created it at the same moment.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(Error::docker(format!("cannot create network {name}"), e)),
        }
    }

    /// Every container of this instance (of one function when `function` is given), in any
    /// state.
    pub async fn list_managed(&self, function: Option<&str>) -> Result<Vec<ManagedContainer>> {
        let mut labels = vec![
            format!("{LABEL_MANAGED}=true"),
            format!("{LABEL_INSTANCE}={}", self.instance),
        ];
        if let Some(f) = function {
            labels.push(format!("{LABEL_FUNCTION}={f}"));
        }
        let filters = HashMap::from([("label".to_string(), labels)]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| Error::docker("cannot list containers", e))?;
        let mut out = Vec::with_capacity(list.len());
        for c in list {
            let (Some(id), Some(labels)) = (c.id, c.labels) else {
                continue;
            };
            let Some(function) = labels.get(LABEL_FUNCTION).cloned() else {
                continue;
            };
            use bollard::models::ContainerSummaryStateEnum as S;
            let state = match c.state {
                Some(S::CREATED) => ContainerState::Created,
                Some(S::RUNNING) | Some(S::RESTARTING) => ContainerState::Running,
                Some(S::PAUSED) => ContainerState::Paused,
                _ => ContainerState::Gone,
            };
            let ip = c
                .network_settings
                .and_then(|n| n.networks)
                .and_then(|mut n| n.remove(&self.network))
                .and_then(|e| e.ip_address)
                .filter(|ip| !ip.is_empty());
            let name = c
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_else(|| id.clone());
            out.push(ManagedContainer {
                id,
                name,
                function,
                state,
                ip,
                spec_hash: labels.get(LABEL_SPEC_HASH).cloned(),
                image_id: c.image_id,
                created: c.created.unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// The container's address on the function network, once it is running.
    pub async fn container_ip(&self, id: &str) -> Result<Option<String>> {
        let info = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| Error::docker(format!("cannot inspect container {id}"), e))?;
        Ok(info
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(&self.network))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty()))
    }

    /// SIGTERM, then SIGKILL after `grace_secs`; then removes the container. A container
    /// that is already gone is not an error.
    pub async fn stop_and_remove(&self, id: &str, grace_secs: i32) -> Result<()> {
        let opts = StopContainerOptionsBuilder::default().t(grace_secs).build();
        match self.docker.stop_container(id, Some(opts)).await {
            Ok(()) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => {}
            Err(e) => return Err(Error::docker(format!("cannot stop container {id}"), e)),
        }
        self.remove(id).await
    }

    /// Freezes a container's processes (a warm-pool member: memory kept, no CPU).
    pub async fn pause(&self, id: &str) -> Result<()> {
        self.docker
            .pause_container(id)
            .await
            .map_err(|e| Error::docker(format!("cannot pause container {id}"), e))
    }

    /// Thaws a paused container.
    pub async fn unpause(&self, id: &str) -> Result<()> {
        self.docker
            .unpause_container(id)
            .await
            .map_err(|e| Error::docker(format!("cannot unpause container {id}"), e))
    }

    /// Removes a container (forcefully: it is known to be unwanted). Gone already is fine.
    pub async fn remove(&self, id: &str) -> Result<()> {
        // `v`: a replica's own volume (its secrets folder) goes with it.
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => Ok(()),
            Err(e) => Err(Error::docker(format!("cannot remove container {id}"), e)),
        }
    }
}
