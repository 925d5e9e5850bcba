//! The MDF relay pool (the design card's MDF handlers): relay instances as containers
//! launched by the orchestrator, scaled on their session count and drained on scale-down.
//! Every second: list the MDF containers, ask each for its status, let [`policy`] decide,
//! carry the actions out. Crashed containers are removed (the policy then fills the slot
//! again); a container that never answers within [`START_TIMEOUT`] is replaced.

pub mod policy;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::docker::mdf::MdfContainer;
use crate::docker::{ContainerState, Engine};
use policy::{Action, Instance, Observation, Policy};

/// How long a new instance may take to answer its status.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub policy: policy::Settings,
    pub image: String,
    /// Where the control APIs listen (the function network's gateway address).
    pub control_host: String,
    pub control_port_base: u16,
    pub media_ip: String,
    pub advertise: String,
    pub port_base: u16,
    pub ports_per_instance: u16,
    pub max_sessions: u32,
    pub token: String,
}

impl PoolSettings {
    /// The environment functions with `uses: [mdf]` get.
    pub fn function_env(&self) -> Vec<String> {
        let urls: Vec<String> = (0..self.policy.max)
            .map(|slot| {
                sluice_common::mdf::control_url(&self.control_host, self.control_port_base, slot)
            })
            .collect();
        vec![
            format!("{}={}", sluice_common::mdf::ENV_URLS, urls.join(",")),
            format!("{}={}", sluice_common::mdf::ENV_TOKEN, self.token),
        ]
    }

    /// The media port range of a slot.
    fn ports(&self, slot: u16) -> (u16, u16) {
        let min = self
            .port_base
            .saturating_add(slot.saturating_mul(self.ports_per_instance));
        (
            min,
            min.saturating_add(self.ports_per_instance.saturating_sub(1)),
        )
    }

    fn instance_env(&self, name: &str, slot: u16) -> Vec<String> {
        let (min, max) = self.ports(slot);
        vec![
            format!(
                "SLUICE_MDF_CONTROL_LISTEN={}:{}",
                self.control_host,
                self.control_port_base.saturating_add(slot)
            ),
            format!("SLUICE_MDF_MEDIA_IP={}", self.media_ip),
            format!("SLUICE_MDF_ADVERTISE={}", self.advertise),
            format!("SLUICE_MDF_PORT_MIN={min}"),
            format!("SLUICE_MDF_PORT_MAX={max}"),
            format!("SLUICE_MDF_MAX_SESSIONS={}", self.max_sessions),
            format!("SLUICE_MDF_INSTANCE={name}"),
            format!("SLUICE_MDF_TOKEN={}", self.token),
            "SLUICE_LOG_FORMAT=json".to_string(),
        ]
    }
}

/// What `GET /system/mdf` shows: the pool's settings and its instances as last observed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PoolView {
    pub min: u16,
    pub max: u16,
    pub advertise: String,
    pub instances: Vec<InstanceView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub slot: u16,
    pub container: String,
    /// `starting` (running, not answering yet), `active` or `draining`.
    pub state: &'static str,
    pub sessions: u32,
    pub capacity: u32,
    pub port_min: u16,
    pub port_max: u16,
}

pub struct Pool {
    engine: Engine,
    view: watch::Sender<PoolView>,
    http: reqwest::Client,
    settings: PoolSettings,
    policy: Policy,
    /// When each slot's container was first seen not answering.
    silent_since: HashMap<u16, Instant>,
}

impl Pool {
    pub fn new(engine: Engine, http: reqwest::Client, settings: PoolSettings) -> Pool {
        let (view, _) = watch::channel(PoolView {
            min: settings.policy.min,
            max: settings.policy.max,
            advertise: settings.advertise.clone(),
            instances: Vec::new(),
        });
        Pool {
            engine,
            view,
            http,
            settings,
            policy: Policy::default(),
            silent_since: HashMap::new(),
        }
    }

    /// The pool as last observed, for the API.
    pub fn subscribe(&self) -> watch::Receiver<PoolView> {
        self.view.subscribe()
    }

    fn publish(&self, containers: &[MdfContainer], obs: &Observation) {
        let name = |slot: u16| {
            containers
                .iter()
                .find(|c| c.slot == slot)
                .map(|c| c.name.clone())
                .unwrap_or_default()
        };
        let view = |slot: u16, state: &'static str, sessions: u32, capacity: u32| {
            let (port_min, port_max) = self.settings.ports(slot);
            InstanceView {
                slot,
                container: name(slot),
                state,
                sessions,
                capacity,
                port_min,
                port_max,
            }
        };
        let mut instances: Vec<InstanceView> = obs
            .instances
            .iter()
            .map(|i| {
                let state = if i.draining { "draining" } else { "active" };
                view(i.slot, state, i.sessions, i.capacity)
            })
            .chain(
                obs.starting
                    .iter()
                    .map(|&slot| view(slot, "starting", 0, 0)),
            )
            .collect();
        instances.sort_by_key(|i| i.slot);
        self.view.send_modify(|v| v.instances = instances);
    }

    fn url(&self, slot: u16, path: &str) -> String {
        format!(
            "{}{path}",
            sluice_common::mdf::control_url(
                &self.settings.control_host,
                self.settings.control_port_base,
                slot
            )
        )
    }

    async fn status(&self, slot: u16) -> Option<Instance> {
        let res = self
            .http
            .get(self.url(slot, "/v1/status"))
            .bearer_auth(&self.settings.token)
            .timeout(Duration::from_millis(800))
            .send()
            .await
            .ok()?;
        let v: serde_json::Value = res.error_for_status().ok()?.json().await.ok()?;
        Some(Instance {
            slot,
            sessions: v["sessions"].as_u64().unwrap_or(0) as u32,
            capacity: v["max_sessions"].as_u64().unwrap_or(0) as u32,
            draining: v["draining"].as_bool().unwrap_or(false),
        })
    }

    async fn drain(&self, slot: u16, on: bool) {
        let res = self
            .http
            .post(self.url(slot, "/v1/drain"))
            .bearer_auth(&self.settings.token)
            .json(&serde_json::json!({"draining": on}))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => {
                tracing::info!(slot, draining = on, "MDF instance drain state set")
            }
            Ok(r) => tracing::warn!(slot, status = %r.status(), "MDF drain refused"),
            Err(e) => tracing::warn!(slot, error = %e, "MDF drain failed"),
        }
    }

    fn name(&self, slot: u16) -> String {
        format!("{}-mdf-{slot}", self.engine.instance)
    }

    async fn observe(&mut self, containers: &[MdfContainer], now: Instant) -> Observation {
        let mut obs = Observation::default();
        for c in containers {
            if c.state != ContainerState::Running {
                continue;
            }
            match self.status(c.slot).await {
                Some(i) => {
                    self.silent_since.remove(&c.slot);
                    obs.instances.push(i);
                }
                None => {
                    let since = *self.silent_since.entry(c.slot).or_insert(now);
                    if now.saturating_duration_since(since) > START_TIMEOUT {
                        tracing::warn!(container = %c.name, "MDF instance does not answer: replacing it");
                        let _ = self.engine.stop_and_remove(&c.id, 5).await;
                        self.silent_since.remove(&c.slot);
                    } else {
                        obs.starting.push(c.slot);
                    }
                }
            }
        }
        obs
    }

    async fn tick(&mut self) -> crate::error::Result<()> {
        let now = Instant::now();
        let containers = self.engine.list_mdf().await?;
        for c in containers
            .iter()
            .filter(|c| c.state == ContainerState::Gone)
        {
            tracing::warn!(container = %c.name, slot = c.slot, "MDF instance exited: removing it");
            self.engine.remove(&c.id).await?;
        }
        let obs = self.observe(&containers, now).await;
        self.publish(&containers, &obs);
        for action in self.policy.decide(&self.settings.policy, &obs, now) {
            match action {
                Action::Launch(slot) => {
                    let name = self.name(slot);
                    let env = self.settings.instance_env(&name, slot);
                    match self
                        .engine
                        .launch_mdf(
                            &name,
                            slot,
                            &self.settings.image,
                            env,
                            self.settings.ports_per_instance,
                        )
                        .await
                    {
                        Ok(_) => tracing::info!(slot, container = %name, "MDF instance launched"),
                        Err(e) => tracing::warn!(slot, error = %e, "cannot launch an MDF instance"),
                    }
                }
                Action::Drain(slot) => self.drain(slot, true).await,
                Action::Undrain(slot) => self.drain(slot, false).await,
                Action::Remove(slot) => {
                    if let Some(c) = containers.iter().find(|c| c.slot == slot) {
                        tracing::info!(slot, container = %c.name, "drained MDF instance removed");
                        self.engine.stop_and_remove(&c.id, 10).await?;
                    }
                }
            }
        }
        Ok(())
    }

    pub async fn run(mut self, stop: CancellationToken) {
        tracing::info!(min = self.settings.policy.min, max = self.settings.policy.max,
            control = %self.settings.control_host, advertise = %self.settings.advertise,
            "MDF pool running");
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "MDF pool tick failed");
            }
        }
    }
}
