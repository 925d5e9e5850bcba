//! The function supervisor: one [`actor::Actor`] task per function, created, updated and
//! removed as the registry (file or API) changes; engine events and periodic resyncs are routed
//! to the actor of the container's function. Containers of this instance that belong to no
//! known function are orphans and are stopped.

pub mod actor;
pub mod readiness;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_common::registry::FunctionSpec;
use tokio::sync::{mpsc, oneshot, watch, RwLock};
use tokio_util::sync::CancellationToken;

use crate::build::Builder;
use crate::docker::events::EngineEvent;
use crate::docker::{ContainerState, Engine};
use crate::error::{Error, ErrorKind, Result};
use crate::state::{FunctionRecord, Source, Store};
use actor::{Actor, Command, FunctionStatus};

/// What every function task shares.
pub struct Ctx {
    pub engine: Engine,
    pub builder: Builder,
    pub store: Store,
    pub state_users: crate::state::users::StateUsers,
    pub http: reqwest::Client,
    pub dataplane: crate::dataplane::DataPlane,
    pub ready_poll: Duration,
    pub max_backoff: Duration,
    pub functions_dir: PathBuf,
    /// What a function may ask for (checked again on deploy through the API).
    pub ceilings: sluice_common::registry::Ceilings,
    /// Environment of functions with `uses: [mdf]` (empty when the pool is off).
    pub mdf_env: Vec<String>,
    /// Function secrets (sealed in Redis), opened for each container that lists them.
    pub secrets: crate::secrets::Secrets,
}

/// A running function task.
pub struct Handle {
    pub tx: mpsc::Sender<Command>,
    pub status: watch::Receiver<FunctionStatus>,
    pub task: tokio::task::JoinHandle<()>,
}

pub struct Supervisor {
    ctx: Arc<Ctx>,
    functions: RwLock<BTreeMap<String, Handle>>,
    stop: CancellationToken,
}

impl Supervisor {
    pub fn new(ctx: Ctx, stop: CancellationToken) -> Arc<Self> {
        Arc::new(Supervisor {
            ctx: Arc::new(ctx),
            functions: RwLock::new(BTreeMap::new()),
            stop,
        })
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// Starts tasks for the given functions (at startup), with their persisted desired counts.
    pub async fn start(&self, records: Vec<FunctionRecord>, desired: &HashMap<String, u32>) {
        let mut map = self.functions.write().await;
        for rec in records {
            if let Err(e) = self.ctx.store.put_function(&rec).await {
                tracing::warn!(function = %rec.spec.name, error = %e, "cannot store function");
            }
            let name = rec.spec.name.clone();
            let handle = Actor::spawn(
                self.ctx.clone(),
                rec.spec,
                rec.source,
                desired.get(&name).copied(),
                self.stop.child_token(),
            );
            map.insert(name, handle);
        }
    }

    /// Adds or updates one function.
    pub async fn upsert(&self, spec: FunctionSpec, source: Source) {
        let rec = FunctionRecord {
            spec: spec.clone(),
            source,
        };
        if let Err(e) = self.ctx.store.put_function(&rec).await {
            tracing::warn!(function = %spec.name, error = %e, "cannot store function");
        }
        let mut map = self.functions.write().await;
        // A task that finished (function removed) is replaced by a fresh one.
        if let Some(h) = map.get(&spec.name) {
            if !h.task.is_finished() && !h.status.borrow().removing {
                let _ =
                    h.tx.send(Command::Update {
                        spec: Box::new(spec),
                        source,
                    })
                    .await;
                return;
            }
        }
        tracing::info!(function = %spec.name, ?source, "function added");
        let name = spec.name.clone();
        let handle = Actor::spawn(
            self.ctx.clone(),
            spec,
            source,
            None,
            self.stop.child_token(),
        );
        map.insert(name, handle);
    }

    /// Drains and removes a function; resolves when its containers are gone.
    pub async fn remove(&self, name: &str) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        {
            let map = self.functions.read().await;
            let h = map.get(name).ok_or_else(|| not_found(name))?;
            h.tx.send(Command::Remove { reply: tx })
                .await
                .map_err(|_| not_found(name))?;
        }
        let _ = rx.await;
        let mut map = self.functions.write().await;
        if map.get(name).is_some_and(|h| h.task.is_finished()) {
            map.remove(name);
        }
        Ok(())
    }

    /// Starts removing a function and returns at once.
    pub async fn begin_remove(self: &Arc<Self>, name: &str) -> Result<()> {
        if !self.functions.read().await.contains_key(name) {
            return Err(not_found(name));
        }
        let me = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            if let Err(e) = me.remove(&name).await {
                tracing::warn!(function = %name, error = %e, "remove failed");
            }
        });
        Ok(())
    }

    pub async fn scale(&self, name: &str, replicas: u32) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        {
            let map = self.functions.read().await;
            let h = map.get(name).ok_or_else(|| not_found(name))?;
            h.tx.send(Command::Scale {
                replicas,
                reply: tx,
            })
            .await
            .map_err(|_| not_found(name))?;
        }
        rx.await
            .map_err(|_| Error::new(ErrorKind::Unavailable, "function task ended"))?
    }

    /// Applies an autoscaling decision.
    pub async fn autoscale(&self, name: &str, replicas: u32) -> Result<()> {
        let map = self.functions.read().await;
        let h = map.get(name).ok_or_else(|| not_found(name))?;
        h.tx.send(Command::Autoscale { replicas })
            .await
            .map_err(|_| not_found(name))
    }

    /// Scale-from-zero: at least one replica (a no-op when some are desired already).
    /// Returns the desired count.
    pub async fn wake(&self, name: &str) -> Result<u32> {
        let (tx, rx) = oneshot::channel();
        {
            let map = self.functions.read().await;
            let h = map.get(name).ok_or_else(|| not_found(name))?;
            h.tx.send(Command::Wake { reply: tx })
                .await
                .map_err(|_| not_found(name))?;
        }
        rx.await
            .map_err(|_| Error::new(ErrorKind::Unavailable, "function task ended"))?
    }

    pub async fn status(&self, name: &str) -> Option<FunctionStatus> {
        let map = self.functions.read().await;
        map.get(name).map(|h| h.status.borrow().clone())
    }

    pub async fn list(&self) -> Vec<FunctionStatus> {
        let map = self.functions.read().await;
        map.values().map(|h| h.status.borrow().clone()).collect()
    }

    /// Names and sources of the functions currently known.
    pub async fn sources(&self) -> BTreeMap<String, (Source, FunctionSpec)> {
        let map = self.functions.read().await;
        map.iter()
            .filter(|(_, h)| !h.task.is_finished())
            .map(|(n, h)| {
                let s = h.status.borrow();
                (n.clone(), (s.source, s.spec.clone()))
            })
            .collect()
    }

    /// Functions listing secret `name`.
    pub async fn using_secret(&self, name: &str) -> Vec<String> {
        self.sources()
            .await
            .into_iter()
            .filter(|(_, (_, spec))| spec.secrets.iter().any(|s| s == name))
            .map(|(n, _)| n)
            .collect()
    }

    /// Secret `name` was written or deleted: the functions listing it replace their replicas
    /// (a rolling update, as for a new definition), so every replica holds the new value.
    pub async fn secret_changed(&self, name: &str) {
        for function in self.using_secret(name).await {
            tracing::info!(function = %function, secret = %name, "secret changed: replacing replicas");
            self.send(&function, Command::SecretsChanged).await;
        }
    }

    /// Routes engine events; runs until `stop`.
    pub async fn route_events(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<EngineEvent>,
        resync_every: Duration,
    ) {
        let mut tick = tokio::time::interval(resync_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let ev = tokio::select! {
                _ = self.stop.cancelled() => return,
                ev = rx.recv() => match ev { Some(ev) => ev, None => return },
                _ = tick.tick() => EngineEvent::Resync,
            };
            match ev {
                EngineEvent::Died {
                    function,
                    id,
                    exit_code,
                } => self.send(&function, Command::Died { id, exit_code }).await,
                EngineEvent::Oom { function, id } => {
                    self.send(&function, Command::Oom { id }).await
                }
                EngineEvent::Resync => self.resync().await,
            }
        }
    }

    async fn send(&self, function: &str, cmd: Command) {
        let map = self.functions.read().await;
        if let Some(h) = map.get(function) {
            let _ = h.tx.send(cmd).await;
        }
    }

    /// Compares every function with what the engine runs; stops orphans.
    pub async fn resync(&self) {
        let containers = match self.ctx.engine.list_managed(None).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "resync: cannot list containers");
                return;
            }
        };
        let mut by_fn: HashMap<String, Vec<_>> = HashMap::new();
        for c in containers {
            by_fn.entry(c.function.clone()).or_default().push(c);
        }
        let map = self.functions.read().await;
        for (name, h) in map.iter() {
            if h.task.is_finished() {
                continue;
            }
            let containers = by_fn.remove(name).unwrap_or_default();
            let _ = h.tx.send(Command::Resync { containers }).await;
        }
        for (function, orphans) in by_fn {
            for c in orphans {
                tracing::info!(function = %function, container = %c.name, "removing orphan container of an unknown function");
                let engine = self.ctx.engine.clone();
                tokio::spawn(async move {
                    let res = if c.state == ContainerState::Running
                        || c.state == ContainerState::Paused
                    {
                        engine.stop_and_remove(&c.id, 10).await
                    } else {
                        engine.remove(&c.id).await
                    };
                    if let Err(e) = res {
                        tracing::warn!(container = %c.name, error = %e, "cannot remove orphan");
                    }
                });
            }
        }
    }

    /// Waits for every function task to end (after `stop` was cancelled).
    pub async fn join(&self) {
        let mut map = self.functions.write().await;
        for (_, h) in std::mem::take(&mut *map) {
            let _ = h.task.await;
        }
    }
}

fn not_found(name: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("function `{name}` not found"))
}
