//! MDF relay instances as containers: on the host network (phones outside the Docker bridge
//! must reach their RTP ports, and the relay must see the phones' real source addresses,
//! which Docker's port publishing would hide), hardened like function containers, labelled
//! with their slot. The control API listens on the function network's gateway address, which
//! function containers and the orchestrator reach and the outside does not.

use std::collections::HashMap;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectNetworkOptions, ListContainersOptionsBuilder,
};
use sluice_common::LABEL_MANAGED;

use super::container::{hardened, FUNCTION_USER};
use super::{ContainerState, Engine, LABEL_INSTANCE};
use crate::error::{Error, Result};

/// Label carrying an MDF container's slot number.
pub const LABEL_MDF_SLOT: &str = "sluice.mdf-slot";

/// An MDF container as listed by the engine.
#[derive(Debug, Clone)]
pub struct MdfContainer {
    pub id: String,
    pub name: String,
    pub slot: u16,
    pub state: ContainerState,
}

impl Engine {
    /// The function network's gateway address (the host's side of the bridge).
    pub async fn network_gateway(&self) -> Result<String> {
        let net = self
            .client()
            .inspect_network(&self.network, None::<InspectNetworkOptions>)
            .await
            .map_err(|e| Error::docker("cannot inspect the function network", e))?;
        net.ipam
            .and_then(|i| i.config)
            .into_iter()
            .flatten()
            .filter_map(|c| c.gateway)
            .find(|g| g.parse::<std::net::Ipv4Addr>().is_ok())
            .ok_or_else(|| {
                Error::new(
                    crate::error::ErrorKind::Docker,
                    format!("network {} has no IPv4 gateway", self.network),
                )
            })
    }

    /// Every MDF container of this installation, in any state.
    pub async fn list_mdf(&self) -> Result<Vec<MdfContainer>> {
        let labels = vec![
            format!("{LABEL_MANAGED}=true"),
            format!("{LABEL_INSTANCE}={}", self.instance),
            LABEL_MDF_SLOT.to_string(),
        ];
        let filters = HashMap::from([("label".to_string(), labels)]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .client()
            .list_containers(Some(opts))
            .await
            .map_err(|e| Error::docker("cannot list MDF containers", e))?;
        use bollard::models::ContainerSummaryStateEnum as S;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let slot = c.labels.as_ref()?.get(LABEL_MDF_SLOT)?.parse().ok()?;
                let state = match c.state {
                    Some(S::CREATED) => ContainerState::Created,
                    Some(S::RUNNING) | Some(S::RESTARTING) => ContainerState::Running,
                    Some(S::PAUSED) => ContainerState::Paused,
                    _ => ContainerState::Gone,
                };
                let id = c.id?;
                let name = c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_else(|| id.clone());
                Some(MdfContainer {
                    id,
                    name,
                    slot,
                    state,
                })
            })
            .collect())
    }

    /// Creates and starts the MDF container of `slot` from `image` with `env`.
    pub async fn launch_mdf(
        &self,
        name: &str,
        slot: u16,
        image: &str,
        env: Vec<String>,
        ports: u16,
    ) -> Result<String> {
        let labels = HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_INSTANCE.to_string(), self.instance.clone()),
            (LABEL_MDF_SLOT.to_string(), slot.to_string()),
        ]);
        // A socket per port of its range, and room for its own.
        let host_config = hardened("host", 512 << 20, 256, i64::from(ports) + 1024);
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            user: Some(FUNCTION_USER.to_string()),
            env: Some(env),
            labels: Some(labels),
            stop_signal: Some("SIGTERM".to_string()),
            stop_timeout: Some(10),
            host_config: Some(host_config),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default().name(name).build();
        let created = self
            .client()
            .create_container(Some(opts), body)
            .await
            .map_err(|e| Error::docker(format!("cannot create MDF container {name}"), e))?;
        if let Err(e) = self.client().start_container(&created.id, None).await {
            let _ = self.remove(&created.id).await;
            return Err(Error::docker(
                format!("cannot start MDF container {name}"),
                e,
            ));
        }
        Ok(created.id)
    }
}
