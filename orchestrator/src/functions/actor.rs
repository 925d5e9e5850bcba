//! One task per function: it owns the function's replicas and converges them on the desired
//! count, one message at a time (no locks). Slow work (image builds, container launches,
//! readiness probes, stops) runs in spawned tasks that report back through the same channel.
//!
//! Invariants:
//! * a replica is `Ready` only after its runtime's `/_/ready` answered 200;
//! * during a rolling update, outdated replicas are stopped only as current ones become ready
//!   (ready replicas never drop below what is desired);
//! * every stop goes through [`Drainer`] first, then SIGTERM with a grace period, then removal;
//! * a replica that dies before, or within [`EARLY_DEATH`] of, becoming ready is a crash: restarts
//!   then back off exponentially up to `max_backoff`, and the back-off is visible in the status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use sluice_common::registry::{FunctionSpec, Service, State};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::readiness;
use super::Ctx;
use crate::build::BuiltImage;
use crate::dataplane::Endpoint;
use crate::docker::container::{stop_grace_secs, RUNTIME_PORT};
use crate::docker::{ContainerState, ManagedContainer};
use crate::error::{Error, ErrorKind, Result};
use crate::state::{ReplicaRecord, Source};

/// A replica that dies this soon after becoming ready counts as a crash.
pub const EARLY_DEATH: Duration = Duration::from_secs(10);
/// First back-off after a crash.
const BASE_BACKOFF: Duration = Duration::from_secs(1);

/// Messages a function task handles.
pub enum Command {
    /// Set the desired replica count.
    Scale {
        replicas: u32,
        reply: oneshot::Sender<Result<()>>,
    },
    /// The autoscaler's decision (already clamped to the spec's bounds).
    Autoscale {
        replicas: u32,
    },
    /// A request arrived while nothing is ready: make sure at least one replica runs.
    Wake {
        reply: oneshot::Sender<Result<u32>>,
    },
    /// New definition (or the same one with changed code): rebuild if needed, then roll.
    Update {
        spec: Box<FunctionSpec>,
        source: Source,
    },
    /// Scale to zero, then forget the function.
    Remove {
        reply: oneshot::Sender<()>,
    },
    /// A container of this function died.
    Died {
        id: String,
        exit_code: Option<i64>,
    },
    /// A container of this function was OOM-killed.
    Oom {
        id: String,
    },
    /// What the engine really runs for this function (startup adoption and safety net).
    Resync {
        containers: Vec<ManagedContainer>,
    },
    // --- reports from this task's own workers ---
    BuildDone(Result<BuiltImage>),
    Created {
        slot: u64,
        result: Result<String>,
    },
    Probed {
        slot: u64,
        result: Result<String>,
    },
    Stopped {
        slot: u64,
    },
    /// A replica was paused into the warm pool (or failed to be).
    Paused {
        slot: u64,
        result: Result<()>,
    },
    /// One of the function's secrets was written or deleted: find their current versions.
    SecretsChanged,
    /// The current versions of the function's secrets ([`crate::secrets::Secrets::digest`]).
    SecretsDigest(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaState {
    /// Being created/started by the engine.
    Creating,
    /// Running, waiting for `/_/ready`.
    Starting,
    /// Serving.
    Ready,
    /// Being drained and stopped.
    Stopping,
    /// Paused in the warm pool: not routable, taken (unpaused) by the next scale-up.
    Pooled,
    /// Being drained, then paused into the warm pool.
    Parking,
}

struct Replica {
    slot: u64,
    id: Option<String>,
    name: String,
    state: ReplicaState,
    address: Option<String>,
    image_id: String,
    spec_hash: String,
    created: SystemTime,
    ready_at: Option<(Instant, SystemTime)>,
    worker: Option<AbortHandle>,
    adopted: bool,
    /// Launched to fill the warm pool: paused once ready instead of serving.
    pool_fill: bool,
}

/// Build state of the function's image, for the API.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BuildStatus {
    /// `pending`, `building`, `ready` or `failed`.
    pub state: &'static str,
    pub image: Option<String>,
    pub error: Option<String>,
}

/// Crash-loop back-off, for the API.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CrashLoop {
    pub consecutive_failures: u32,
    pub retry_in_ms: u64,
    pub last_error: String,
}

/// What the API shows of a function (published on every change).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FunctionStatus {
    pub spec: FunctionSpec,
    pub source: Source,
    pub desired: u32,
    pub ready: u32,
    pub starting: u32,
    /// Paused replicas in the warm pool.
    pub pooled: u32,
    pub build: BuildStatus,
    pub crash_loop: Option<CrashLoop>,
    pub replicas: Vec<ReplicaRecord>,
    pub removing: bool,
    /// Last wake-up or manual scale (unix ms).
    pub last_activity_unix_ms: u64,
}

pub struct Actor {
    ctx: Arc<Ctx>,
    spec: FunctionSpec,
    /// What a current replica runs: the definition and the versions of its secrets.
    spec_hash: String,
    /// Versions of the function's secrets; `None` while being read (nothing is launched
    /// or replaced then: which replicas are current is not known).
    secrets_digest: Option<String>,
    source: Source,
    desired: Option<u32>,
    image: Option<BuiltImage>,
    build: BuildStatus,
    build_running: bool,
    rebuild_wanted: bool,
    replicas: BTreeMap<u64, Replica>,
    next_slot: u64,
    failures: u32,
    backoff_until: Option<Instant>,
    last_error: Option<String>,
    oom: Vec<String>,
    died_early: Vec<String>,
    removing: Vec<oneshot::Sender<()>>,
    tx: mpsc::Sender<Command>,
    status: watch::Sender<FunctionStatus>,
    published: Vec<ReplicaRecord>,
    /// What the data plane was last told (definition and ready endpoints); `None` forces a push.
    pushed: Option<(FunctionSpec, Vec<Endpoint>)>,
    /// Last wake-up or manual scale (the autoscaler counts it as activity).
    last_activity: SystemTime,
    /// False until the first resync: nothing is launched before existing containers of the
    /// function have been adopted (or cleaned up).
    synced: bool,
}

/// The hash a current replica carries: the definition's, and for a function with secrets
/// also their versions, so that a changed secret rolls the replicas like a changed
/// definition.
fn replica_hash(spec: &FunctionSpec, secrets_digest: Option<&str>) -> String {
    let base = spec.spec_hash();
    if spec.secrets.is_empty() {
        return base;
    }
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(base.as_bytes());
    h.update(b"\0secrets\0");
    h.update(secrets_digest.unwrap_or("pending").as_bytes());
    hex::encode(h.finalize())
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// True when `r` runs the current image and definition.
fn image_id_matches(image: &Option<BuiltImage>, r: &Replica, spec_hash: &str) -> bool {
    image
        .as_ref()
        .is_some_and(|img| r.image_id == img.id && r.spec_hash == spec_hash)
}

impl Actor {
    /// Spawns the task. `desired`: the persisted desired count, if any (else it is taken from
    /// the adopted containers at the first resync, clamped to the spec's bounds).
    pub fn spawn(
        ctx: Arc<Ctx>,
        spec: FunctionSpec,
        source: Source,
        desired: Option<u32>,
        stop: CancellationToken,
    ) -> super::Handle {
        let (tx, rx) = mpsc::channel(256);
        let status = FunctionStatus {
            spec: spec.clone(),
            source,
            desired: desired.unwrap_or(spec.scaling.min_replicas),
            ready: 0,
            starting: 0,
            pooled: 0,
            build: BuildStatus {
                state: "pending",
                image: None,
                error: None,
            },
            crash_loop: None,
            replicas: Vec::new(),
            removing: false,
            last_activity_unix_ms: unix_ms(SystemTime::now()),
        };
        let (status_tx, status_rx) = watch::channel(status);
        let actor = Actor {
            ctx,
            spec_hash: replica_hash(&spec, None),
            secrets_digest: None,
            spec,
            source,
            desired,
            image: None,
            build: BuildStatus {
                state: "pending",
                image: None,
                error: None,
            },
            build_running: false,
            rebuild_wanted: true,
            replicas: BTreeMap::new(),
            next_slot: 0,
            failures: 0,
            backoff_until: None,
            last_error: None,
            oom: Vec::new(),
            died_early: Vec::new(),
            removing: Vec::new(),
            tx: tx.clone(),
            status: status_tx,
            published: Vec::new(),
            pushed: None,
            last_activity: SystemTime::now(),
            synced: false,
        };
        let task = tokio::spawn(actor.run(rx, stop));
        super::Handle {
            tx,
            status: status_rx,
            task,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>, stop: CancellationToken) {
        self.spawn_initial_sync();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd).await,
                    None => break,
                },
                _ = tick.tick() => self.on_tick(),
            }
            // Drain whatever else is queued before converging once.
            while let Ok(cmd) = rx.try_recv() {
                self.handle(cmd).await;
            }
            self.reconcile();
            self.publish().await;
            if !self.removing.is_empty() && self.replicas.is_empty() {
                if let Err(e) = self.ctx.dataplane.delete_function(&self.spec.name).await {
                    tracing::warn!(function = %self.spec.name, error = %e, "cannot remove the function from the data plane");
                }
                if let Err(e) = self.ctx.store.delete_function(&self.spec.name).await {
                    tracing::warn!(function = %self.spec.name, error = %e, "cannot delete function from redis");
                }
                tracing::info!(function = %self.spec.name, "function removed");
                for r in self.removing.drain(..) {
                    let _ = r.send(());
                }
                return;
            }
        }
        // Orchestrator shutdown: replicas keep running and are adopted by the next start.
        for r in self.replicas.values() {
            if let Some(w) = &r.worker {
                w.abort();
            }
        }
    }

    fn desired(&self) -> u32 {
        if !self.removing.is_empty() {
            return 0;
        }
        self.desired.unwrap_or(self.spec.scaling.min_replicas)
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Scale { replicas, reply } => {
                let s = &self.spec.scaling;
                let res = if !self.removing.is_empty() {
                    Err(Error::new(
                        ErrorKind::InvalidRequest,
                        format!("function `{}` is being removed", self.spec.name),
                    ))
                } else if replicas < s.min_replicas || replicas > s.max_replicas {
                    Err(Error::new(
                        ErrorKind::InvalidRequest,
                        format!(
                            "replicas for `{}` must be between min_replicas ({}) and max_replicas ({}), got {replicas}",
                            self.spec.name, s.min_replicas, s.max_replicas
                        ),
                    ))
                } else {
                    self.last_activity = SystemTime::now();
                    self.set_desired(replicas).await;
                    Ok(())
                };
                let _ = reply.send(res);
            }
            Command::Autoscale { replicas } => {
                if self.removing.is_empty() {
                    let s = &self.spec.scaling;
                    let n = replicas.clamp(s.min_replicas, s.max_replicas.max(s.min_replicas));
                    self.set_desired(n).await;
                }
            }
            Command::Wake { reply } => {
                let res = if !self.removing.is_empty() {
                    Err(Error::new(
                        ErrorKind::InvalidRequest,
                        format!("function `{}` is being removed", self.spec.name),
                    ))
                } else if self.spec.scaling.max_replicas == 0 {
                    Err(Error::new(
                        ErrorKind::InvalidRequest,
                        format!("function `{}` has max_replicas 0", self.spec.name),
                    ))
                } else {
                    self.last_activity = SystemTime::now();
                    if self.desired() == 0 {
                        tracing::info!(function = %self.spec.name, "wake: scaling from zero");
                        self.set_desired(1).await;
                    }
                    Ok(self.desired())
                };
                let _ = reply.send(res);
            }
            Command::Update { spec, source } => {
                let spec = *spec;
                if spec.secrets != self.spec.secrets {
                    self.secrets_digest = None;
                    self.spawn_secrets_digest(&spec);
                }
                let hash = replica_hash(&spec, self.secrets_digest.as_deref());
                if hash != self.spec_hash {
                    tracing::info!(function = %spec.name, "definition changed: rolling");
                }
                self.spec_hash = hash;
                let s = &spec.scaling;
                if let Some(d) = self.desired {
                    let clamped = d.clamp(s.min_replicas, s.max_replicas.max(s.min_replicas));
                    if clamped != d {
                        self.desired = Some(clamped);
                        self.persist_desired(clamped).await;
                    }
                }
                self.spec = spec;
                self.source = source;
                // The image may or may not change: the builder decides from the build hash.
                self.rebuild_wanted = true;
            }
            Command::Remove { reply } => {
                self.removing.push(reply);
            }
            Command::Oom { id } => {
                if !self.oom.contains(&id) {
                    self.oom.push(id);
                }
            }
            Command::Died { id, exit_code } => self.on_died(&id, exit_code),
            Command::SecretsChanged => {
                if !self.spec.secrets.is_empty() {
                    self.secrets_digest = None;
                    self.spawn_secrets_digest(&self.spec);
                }
            }
            Command::SecretsDigest(digest) => {
                let hash = replica_hash(&self.spec, Some(&digest));
                if self.secrets_digest.is_some() && hash != self.spec_hash {
                    tracing::info!(function = %self.spec.name, "a secret changed: rolling");
                }
                if hash != self.spec_hash {
                    // New inputs (a secret a launch waited for may exist now): retry at once.
                    self.backoff_until = None;
                }
                self.secrets_digest = Some(digest);
                self.spec_hash = hash;
            }
            Command::Resync { containers } => {
                self.synced = true;
                self.on_resync(containers);
            }
            Command::BuildDone(res) => {
                self.build_running = false;
                match res {
                    Ok(img) => {
                        self.build = BuildStatus {
                            state: "ready",
                            image: Some(img.tag.clone()),
                            error: None,
                        };
                        self.image = Some(img);
                    }
                    Err(e) => {
                        tracing::warn!(function = %self.spec.name, error = %e, "image build failed");
                        self.build = BuildStatus {
                            state: "failed",
                            image: self.image.as_ref().map(|i| i.tag.clone()),
                            error: Some(e.to_string()),
                        };
                        // A transient engine error is retried by the next change or resync.
                        if e.retryable {
                            self.rebuild_wanted = true;
                        }
                    }
                }
            }
            Command::Created { slot, result } => match result {
                Ok(id) => {
                    let wanted = self
                        .replicas
                        .get(&slot)
                        .is_some_and(|r| r.state == ReplicaState::Creating);
                    if !wanted {
                        // Stopped while being created: remove what was made.
                        if let Some(r) = self.replicas.remove(&slot) {
                            if let Some(w) = r.worker {
                                w.abort();
                            }
                        }
                        self.spawn_remove(id);
                    } else if let Some(pos) = self.died_early.iter().position(|d| *d == id) {
                        // It died before we learnt its id.
                        self.died_early.remove(pos);
                        if let Some(r) = self.replicas.get_mut(&slot) {
                            r.id = Some(id.clone());
                            r.state = ReplicaState::Starting;
                        }
                        self.on_died(&id, None);
                    } else if let Some(r) = self.replicas.get_mut(&slot) {
                        r.id = Some(id);
                        r.state = ReplicaState::Starting;
                    }
                }
                Err(e) => {
                    self.replicas.remove(&slot);
                    self.record_failure(format!("cannot launch: {e}"));
                }
            },
            Command::Probed { slot, result } => {
                let Some(r) = self.replicas.get_mut(&slot) else {
                    return;
                };
                r.worker = None;
                match result {
                    Ok(address) if r.state == ReplicaState::Starting && r.pool_fill => {
                        // Ready to serve: freeze it into the warm pool.
                        r.address = Some(address);
                        r.state = ReplicaState::Parking;
                        self.spawn_pause(slot);
                    }
                    Ok(address) if r.state == ReplicaState::Starting => {
                        r.state = ReplicaState::Ready;
                        r.address = Some(address);
                        r.ready_at = Some((Instant::now(), SystemTime::now()));
                        tracing::info!(function = %self.spec.name, replica = %r.name,
                            ms = r.created.elapsed().map(|d| d.as_millis() as u64).unwrap_or(0),
                            adopted = r.adopted, "replica ready");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let name = r.name.clone();
                        tracing::warn!(function = %self.spec.name, replica = %name, error = %e, "replica did not become ready");
                        if r.state != ReplicaState::Stopping {
                            self.record_failure(format!(
                                "replica {name} did not become ready: {e}"
                            ));
                            self.begin_stop(slot, true);
                        }
                    }
                }
            }
            Command::Stopped { slot } => {
                self.replicas.remove(&slot);
            }
            Command::Paused { slot, result } => {
                let Some(r) = self.replicas.get_mut(&slot) else {
                    return;
                };
                r.worker = None;
                match result {
                    Ok(()) if r.state == ReplicaState::Parking => {
                        r.state = ReplicaState::Pooled;
                        r.pool_fill = false;
                        r.ready_at = None;
                        tracing::info!(function = %self.spec.name, replica = %r.name, "replica paused into the warm pool");
                    }
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!(function = %self.spec.name, replica = %r.name, error = %e, "cannot pause into the warm pool; removing");
                        self.begin_stop(slot, true);
                    }
                }
            }
        }
    }

    async fn set_desired(&mut self, n: u32) {
        if self.desired != Some(n) {
            tracing::info!(function = %self.spec.name, replicas = n, "scale");
        }
        self.desired = Some(n);
        self.persist_desired(n).await;
    }

    async fn persist_desired(&self, n: u32) {
        if let Err(e) = self.ctx.store.set_desired(&self.spec.name, n).await {
            tracing::warn!(function = %self.spec.name, error = %e, "cannot persist desired replicas");
        }
    }

    fn on_tick(&mut self) {
        // A replica that has stayed ready long enough ends a crash loop.
        if self.failures > 0
            && self.replicas.values().any(|r| {
                r.state == ReplicaState::Ready
                    && r.ready_at.is_some_and(|(t, _)| t.elapsed() >= EARLY_DEATH)
            })
        {
            self.failures = 0;
            self.backoff_until = None;
        }
    }

    fn slot_of(&self, id: &str) -> Option<u64> {
        self.replicas
            .values()
            .find(|r| r.id.as_deref() == Some(id))
            .map(|r| r.slot)
    }

    fn on_died(&mut self, id: &str, exit_code: Option<i64>) {
        let Some(slot) = self.slot_of(id) else {
            // Possibly a replica whose `Created` report is still on its way.
            if self
                .replicas
                .values()
                .any(|r| r.state == ReplicaState::Creating)
            {
                if self.died_early.len() >= 64 {
                    self.died_early.remove(0);
                }
                self.died_early.push(id.to_string());
            }
            return;
        };
        let Some(r) = self.replicas.get(&slot) else {
            return;
        };
        if r.state == ReplicaState::Stopping {
            return; // we stopped it; the stop task removes it
        }
        if matches!(r.state, ReplicaState::Pooled | ReplicaState::Parking) {
            // Not serving: just replace it in the pool.
            tracing::info!(function = %self.spec.name, replica = %r.name, "warm-pool replica died");
            self.begin_stop(slot, true);
            return;
        }
        let oom = self
            .oom
            .iter()
            .position(|o| o == id)
            .map(|i| self.oom.remove(i));
        let early = match r.ready_at {
            None => true,
            Some((t, _)) => t.elapsed() < EARLY_DEATH,
        };
        let why = if oom.is_some() {
            format!(
                "replica {} was OOM-killed (memory limit {} bytes)",
                r.name, self.spec.limits.memory_bytes
            )
        } else {
            format!(
                "replica {} exited with code {}",
                r.name,
                exit_code.map_or("?".to_string(), |c| c.to_string())
            )
        };
        tracing::warn!(function = %self.spec.name, replica = %r.name, exit_code, oom = oom.is_some(), early, "replica died");
        if early {
            self.record_failure(why);
        } else {
            self.last_error = Some(why);
        }
        self.begin_stop(slot, true);
    }

    fn on_resync(&mut self, containers: Vec<ManagedContainer>) {
        // Replicas we track that the engine no longer runs.
        let gone: Vec<(u64, String)> = self
            .replicas
            .values()
            .filter_map(|r| {
                let id = r.id.as_ref()?;
                let c = containers.iter().find(|c| &c.id == id);
                match c {
                    Some(c) if c.state != ContainerState::Gone => None,
                    _ => Some((r.slot, id.clone())),
                }
            })
            .collect();
        for (_, id) in gone {
            self.on_died(&id, None);
        }
        // Containers the engine runs that we do not track: adopt or clean up.
        let mut adopted_any = false;
        for c in containers {
            // Known by id, or being created right now (known by name only).
            if self.slot_of(&c.id).is_some()
                || self
                    .replicas
                    .values()
                    .any(|r| r.id.is_none() && r.name == c.name)
            {
                continue;
            }
            match (c.state, &c.ip) {
                (ContainerState::Paused, Some(ip)) => {
                    // A warm-pool member of a previous orchestrator; an outdated one is
                    // removed once the current image is known.
                    let slot = self.next_slot();
                    tracing::info!(function = %self.spec.name, replica = %c.name, "adopting a paused warm-pool container");
                    self.replicas.insert(
                        slot,
                        Replica {
                            slot,
                            id: Some(c.id.clone()),
                            name: c.name.clone(),
                            state: ReplicaState::Pooled,
                            address: Some(format!("{ip}:{RUNTIME_PORT}")),
                            image_id: c.image_id.clone().unwrap_or_default(),
                            spec_hash: c.spec_hash.clone().unwrap_or_default(),
                            created: SystemTime::UNIX_EPOCH
                                + Duration::from_secs(u64::try_from(c.created).unwrap_or(0)),
                            ready_at: None,
                            worker: None,
                            adopted: true,
                            pool_fill: false,
                        },
                    );
                }
                (ContainerState::Running, Some(ip)) => {
                    let slot = self.next_slot();
                    let address = format!("{ip}:{RUNTIME_PORT}");
                    tracing::info!(function = %self.spec.name, replica = %c.name, "adopting running container");
                    self.replicas.insert(
                        slot,
                        Replica {
                            slot,
                            id: Some(c.id.clone()),
                            name: c.name.clone(),
                            state: ReplicaState::Starting,
                            address: Some(address.clone()),
                            image_id: c.image_id.clone().unwrap_or_default(),
                            spec_hash: c.spec_hash.clone().unwrap_or_default(),
                            created: SystemTime::UNIX_EPOCH
                                + Duration::from_secs(u64::try_from(c.created).unwrap_or(0)),
                            ready_at: None,
                            worker: None,
                            adopted: true,
                            pool_fill: false,
                        },
                    );
                    self.spawn_probe(slot, address);
                    adopted_any = true;
                }
                _ => {
                    tracing::info!(function = %self.spec.name, replica = %c.name, state = ?c.state, "removing stale container");
                    self.spawn_remove(c.id);
                }
            }
        }
        if adopted_any && self.desired.is_none() {
            let s = &self.spec.scaling;
            let running = self
                .replicas
                .values()
                .filter(|r| r.state != ReplicaState::Stopping)
                .count() as u32;
            let n = running.clamp(s.min_replicas, s.max_replicas.max(s.min_replicas));
            self.desired = Some(n);
            let ctx = self.ctx.clone();
            let name = self.spec.name.clone();
            tokio::spawn(async move {
                if let Err(e) = ctx.store.set_desired(&name, n).await {
                    tracing::warn!(function = %name, error = %e, "cannot persist desired replicas");
                }
            });
        }
    }

    fn next_slot(&mut self) -> u64 {
        self.next_slot += 1;
        self.next_slot
    }

    fn record_failure(&mut self, why: String) {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(16);
        let wait = BASE_BACKOFF
            .saturating_mul(1u32 << exp)
            .min(self.ctx.max_backoff);
        // The first failure retries at once; repeated ones back off.
        if self.failures > 1 {
            self.backoff_until = Some(Instant::now() + wait);
        }
        tracing::warn!(function = %self.spec.name, failures = self.failures,
            retry_in_ms = if self.failures > 1 { wait.as_millis() as u64 } else { 0 }, reason = %why, "replica failure");
        self.last_error = Some(why);
    }

    /// Converges on the desired state. Never blocks: work is spawned.
    fn reconcile(&mut self) {
        if !self.spec.secrets.is_empty()
            && self.secrets_digest.is_none()
            && self.removing.is_empty()
        {
            // Which replicas hold current secrets is unknown for a moment: change nothing.
            return;
        }
        if self.rebuild_wanted && !self.build_running && self.removing.is_empty() {
            self.rebuild_wanted = false;
            self.build_running = true;
            self.build.state = "building";
            let ctx = self.ctx.clone();
            let spec = self.spec.clone();
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let res = ctx.builder.ensure(&spec).await;
                let _ = tx.send(Command::BuildDone(res)).await;
            });
        }
        let desired = self.desired() as usize;
        let image = self
            .image
            .as_ref()
            .filter(|_| !self.build_running && !self.rebuild_wanted)
            .cloned();
        let spec_hash = self.spec_hash.clone();
        let image_id = image.as_ref().map(|i| i.id.clone());
        let is_current = move |r: &Replica| {
            image_id
                .as_ref()
                .is_some_and(|id| r.image_id == *id && r.spec_hash == spec_hash)
        };
        let mut current: Vec<(u64, ReplicaState, SystemTime)> = Vec::new();
        let mut outdated: Vec<(u64, ReplicaState, SystemTime)> = Vec::new();
        let mut pooled: Vec<u64> = Vec::new();
        let mut pool_outdated: Vec<u64> = Vec::new();
        let mut pool_filling = 0usize;
        for r in self.replicas.values() {
            match r.state {
                ReplicaState::Stopping => continue,
                ReplicaState::Pooled | ReplicaState::Parking => {
                    if image_id_matches(&image, r, &self.spec_hash) {
                        if r.state == ReplicaState::Pooled {
                            pooled.push(r.slot);
                        } else {
                            pool_filling += 1;
                        }
                    } else if image.is_some() {
                        pool_outdated.push(r.slot);
                    }
                    continue;
                }
                _ if r.pool_fill => {
                    pool_filling += 1;
                    continue;
                }
                _ => {}
            }
            let row = (r.slot, r.state, r.created);
            if is_current(r) {
                current.push(row);
            } else {
                outdated.push(row);
            }
        }
        let in_backoff = self.backoff_until.is_some_and(|t| Instant::now() < t);
        let warm_pool = if self.removing.is_empty() {
            self.spec.scaling.warm_pool as usize
        } else {
            0
        };

        // Scale up the current generation: from the warm pool first (unpause ≈ tens of ms),
        // then new containers.
        if let Some(img) = &image {
            if current.len() < desired && !in_backoff && self.synced {
                for _ in current.len()..desired {
                    match pooled.pop() {
                        Some(slot) => self.spawn_unpause(slot),
                        None => self.spawn_launch(img.clone(), false),
                    }
                }
            }
        }
        // Scale down the current generation: not-yet-ready replicas first, then the newest;
        // ready ones park in the warm pool while it has room.
        if current.len() > desired {
            current.sort_by_key(|(_, st, created)| {
                (*st == ReplicaState::Ready, std::cmp::Reverse(*created))
            });
            let extra: Vec<(u64, ReplicaState)> = current[..current.len() - desired]
                .iter()
                .map(|c| (c.0, c.1))
                .collect();
            for (slot, st) in extra {
                if st == ReplicaState::Ready && pooled.len() + pool_filling < warm_pool {
                    tracing::debug!(function = %self.spec.name, slot, desired, "parking a surplus replica in the warm pool");
                    pool_filling += 1;
                    self.begin_park(slot);
                } else {
                    tracing::debug!(function = %self.spec.name, slot, desired, "stopping a surplus replica");
                    self.begin_stop(slot, false);
                }
            }
        }
        // Keep the warm pool full (current generation only); drop what it holds beyond.
        if let Some(img) = &image {
            if self.synced && !in_backoff {
                while pooled.len() + pool_filling < warm_pool {
                    pool_filling += 1;
                    self.spawn_launch(img.clone(), true);
                }
            }
            while pooled.len() + pool_filling > warm_pool {
                match pooled.pop() {
                    Some(slot) => self.begin_stop(slot, true),
                    None => break,
                }
            }
        }
        for slot in pool_outdated {
            self.begin_stop(slot, true);
        }
        // Outdated replicas: keep only as many ready ones as still needed to cover `desired`
        // until current ones are ready; not-yet-ready outdated ones are never needed.
        let ready_current = self
            .replicas
            .values()
            .filter(|r| r.state == ReplicaState::Ready && is_current(r))
            .count();
        if image.is_none() {
            // The current definition has no image yet (building, or the build failed): what
            // runs keeps serving, and adopted replicas cannot be classified yet.
            return;
        }
        let keep = desired.saturating_sub(ready_current);
        outdated.sort_by_key(|(_, st, created)| {
            (*st != ReplicaState::Ready, std::cmp::Reverse(*created))
        });
        let stop: Vec<u64> = outdated
            .iter()
            .enumerate()
            .filter(|(i, (_, st, _))| *i >= keep || *st != ReplicaState::Ready)
            .map(|(_, r)| r.0)
            .collect();
        for slot in stop {
            if let Some(r) = self.replicas.get(&slot) {
                tracing::debug!(function = %self.spec.name, replica = %r.name, image = %r.image_id,
                    spec_hash = %r.spec_hash, want_spec_hash = %self.spec_hash, "stopping an outdated replica");
            }
            self.begin_stop(slot, false);
        }
    }

    /// Lists this function's containers (retrying until the engine answers) and reports them
    /// as the first resync.
    /// Reads the versions of `spec`'s secrets (retrying while Redis is away); the answer
    /// comes back as [`Command::SecretsDigest`].
    fn spawn_secrets_digest(&self, spec: &FunctionSpec) {
        let ctx = self.ctx.clone();
        let tx = self.tx.clone();
        let name = spec.name.clone();
        let secrets = spec.secrets.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(100);
            loop {
                match ctx.secrets.digest(&secrets).await {
                    Ok(d) => {
                        let _ = tx.send(Command::SecretsDigest(d)).await;
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(function = %name, error = %e, "cannot read the secrets' versions; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
    }

    fn spawn_initial_sync(&self) {
        if !self.spec.secrets.is_empty() {
            self.spawn_secrets_digest(&self.spec);
        }
        let ctx = self.ctx.clone();
        let tx = self.tx.clone();
        let name = self.spec.name.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(100);
            loop {
                match ctx.engine.list_managed(Some(&name)).await {
                    Ok(containers) => {
                        let _ = tx.send(Command::Resync { containers }).await;
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(function = %name, error = %e, "cannot list containers; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
    }

    fn spawn_launch(&mut self, image: BuiltImage, pool_fill: bool) {
        let slot = self.next_slot();
        let name = self.ctx.engine.replica_name(&self.spec.name);
        self.replicas.insert(
            slot,
            Replica {
                slot,
                id: None,
                name: name.clone(),
                state: ReplicaState::Creating,
                address: None,
                image_id: image.id.clone(),
                spec_hash: self.spec_hash.clone(),
                created: SystemTime::now(),
                ready_at: None,
                worker: None,
                adopted: false,
                pool_fill,
            },
        );
        let ctx = self.ctx.clone();
        let spec = self.spec.clone();
        let hash = self.spec_hash.clone();
        let tx = self.tx.clone();
        let handle = tokio::spawn(async move {
            let created = async {
                let mut env = match spec.state {
                    State::Redis => {
                        ctx.state_users
                            .ensure(&spec.name, &spec.events_from)
                            .await?
                    }
                    State::None => Vec::new(),
                };
                if spec.uses.contains(&Service::Mdf) {
                    if ctx.mdf_env.is_empty() {
                        tracing::warn!(function = %spec.name, "uses the MDF pool, which is off (SLUICE_MDF_POOL_MAX=0)");
                    }
                    env.extend(ctx.mdf_env.iter().cloned());
                }
                env.push(format!(
                    "{}={}",
                    sluice_common::runtime::ENV_TOKEN,
                    ctx.dataplane.runtime_tokens().of(&spec.name)
                ));
                let secrets = ctx.secrets.open(&spec.secrets).await?;
                ctx.engine
                    .launch(&spec, &name, &image.id, &hash, env, &secrets)
                    .await
            }
            .await;
            let id = created.as_ref().ok().cloned();
            if tx
                .send(Command::Created {
                    slot,
                    result: created,
                })
                .await
                .is_err()
            {
                return;
            }
            let Some(id) = id else { return };
            let result = async {
                let ip = ctx.engine.container_ip(&id).await?.ok_or_else(|| {
                    Error::new(
                        ErrorKind::Readiness,
                        "container has no address on the function network",
                    )
                })?;
                let address = format!("{ip}:{RUNTIME_PORT}");
                readiness::wait_ready(
                    &ctx.http,
                    &address,
                    &ctx.dataplane.runtime_tokens().of(&spec.name),
                    ctx.ready_poll,
                    spec.scaling.cold_start_timeout,
                )
                .await?;
                Ok(address)
            }
            .await;
            let _ = tx.send(Command::Probed { slot, result }).await;
        });
        if let Some(r) = self.replicas.get_mut(&slot) {
            r.worker = Some(handle.abort_handle());
        }
    }

    /// Takes a replica out of the warm pool: unpause, then the usual readiness probe.
    fn spawn_unpause(&mut self, slot: u64) {
        let Some(r) = self.replicas.get_mut(&slot) else {
            return;
        };
        let (Some(id), Some(address)) = (r.id.clone(), r.address.clone()) else {
            return;
        };
        r.state = ReplicaState::Starting;
        r.created = SystemTime::now();
        let ctx = self.ctx.clone();
        let tx = self.tx.clone();
        let deadline = self.spec.scaling.cold_start_timeout;
        let token = self.ctx.dataplane.runtime_tokens().of(&self.spec.name);
        let handle = tokio::spawn(async move {
            let result = match ctx.engine.unpause(&id).await {
                Ok(()) => {
                    readiness::wait_ready(&ctx.http, &address, &token, ctx.ready_poll, deadline)
                        .await
                        .map(|_| address)
                }
                Err(e) => Err(e),
            };
            let _ = tx.send(Command::Probed { slot, result }).await;
        });
        if let Some(r) = self.replicas.get_mut(&slot) {
            r.worker = Some(handle.abort_handle());
        }
        tracing::info!(function = %self.spec.name, slot, "taking a replica from the warm pool");
    }

    /// Pauses a ready (pool-fill) replica into the warm pool.
    fn spawn_pause(&mut self, slot: u64) {
        let Some(id) = self.replicas.get(&slot).and_then(|r| r.id.clone()) else {
            return;
        };
        let ctx = self.ctx.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = ctx.engine.pause(&id).await;
            let _ = tx.send(Command::Paused { slot, result }).await;
        });
    }

    /// Drains a serving replica (it leaves the published endpoints at the end of this turn),
    /// then pauses it into the warm pool.
    fn begin_park(&mut self, slot: u64) {
        let Some(r) = self.replicas.get_mut(&slot) else {
            return;
        };
        let Some(id) = r.id.clone() else { return };
        r.state = ReplicaState::Parking;
        let ctx = self.ctx.clone();
        let tx = self.tx.clone();
        let spec = self.spec.clone();
        tokio::spawn(async move {
            ctx.dataplane.drain(&spec, &id).await;
            let result = ctx.engine.pause(&id).await;
            let _ = tx.send(Command::Paused { slot, result }).await;
        });
    }

    fn spawn_probe(&mut self, slot: u64, address: String) {
        let ctx = self.ctx.clone();
        let tx = self.tx.clone();
        let deadline = self.spec.scaling.cold_start_timeout;
        let token = self.ctx.dataplane.runtime_tokens().of(&self.spec.name);
        let handle = tokio::spawn(async move {
            let result =
                readiness::wait_ready(&ctx.http, &address, &token, ctx.ready_poll, deadline)
                    .await
                    .map(|_| address);
            let _ = tx.send(Command::Probed { slot, result }).await;
        });
        if let Some(r) = self.replicas.get_mut(&slot) {
            r.worker = Some(handle.abort_handle());
        }
    }

    fn spawn_remove(&self, id: String) {
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = ctx.engine.remove(&id).await {
                tracing::warn!(container = %id, error = %e, "cannot remove container");
            }
        });
    }

    /// Drains (when the replica was serving), stops and removes a replica. `dead`: the
    /// container already exited, so only removal is left.
    fn begin_stop(&mut self, slot: u64, dead: bool) {
        let Some(r) = self.replicas.get_mut(&slot) else {
            return;
        };
        if r.state == ReplicaState::Stopping {
            return;
        }
        let was_ready = r.state == ReplicaState::Ready;
        r.state = ReplicaState::Stopping;
        let Some(id) = r.id.clone() else {
            // Still being created: never abort a launch half-way (it would leave a container
            // behind); its `Created` report removes the container and the slot.
            return;
        };
        if let Some(w) = r.worker.take() {
            w.abort();
        }
        let ctx = self.ctx.clone();
        let tx = self.tx.clone();
        let grace = stop_grace_secs(&self.spec);
        let function = self.spec.name.clone();
        let name = r.name.clone();
        let spec = self.spec.clone();
        tokio::spawn(async move {
            // The endpoint leaves the published config at the end of this turn of the actor
            // loop; the drain waits for the routers to stop using it.
            if was_ready && !dead {
                ctx.dataplane.drain(&spec, &id).await;
            }
            let res = if dead {
                ctx.engine.remove(&id).await
            } else {
                ctx.engine.stop_and_remove(&id, grace).await
            };
            match res {
                Ok(()) => tracing::info!(function = %function, replica = %name, "replica removed"),
                Err(e) => {
                    tracing::warn!(function = %function, replica = %name, error = %e, "cannot stop replica")
                }
            }
            let _ = tx.send(Command::Stopped { slot }).await;
        });
    }

    fn records(&self) -> Vec<ReplicaRecord> {
        self.replicas
            .values()
            .filter(|r| r.id.is_some())
            .map(|r| ReplicaRecord {
                id: r.id.clone().unwrap_or_default(),
                name: r.name.clone(),
                state: match r.state {
                    ReplicaState::Creating => "creating",
                    ReplicaState::Starting => "starting",
                    ReplicaState::Ready => "ready",
                    ReplicaState::Stopping => "stopping",
                    ReplicaState::Pooled => "pooled",
                    ReplicaState::Parking => "parking",
                }
                .to_string(),
                address: r.address.clone(),
                image: r.image_id.clone(),
                created_unix_ms: unix_ms(r.created),
                ready_unix_ms: r.ready_at.map(|(_, t)| unix_ms(t)),
            })
            .collect()
    }

    /// Ready replicas as the data plane should route to them.
    fn endpoints(&self) -> Vec<Endpoint> {
        let mut eps: Vec<Endpoint> = self
            .replicas
            .values()
            .filter(|r| r.state == ReplicaState::Ready)
            .filter_map(|r| {
                Some(Endpoint {
                    id: r.id.clone()?,
                    address: r.address.clone()?,
                    replica: r.name.clone(),
                })
            })
            .collect();
        eps.sort_by(|a, b| a.id.cmp(&b.id));
        eps
    }

    async fn publish(&mut self) {
        if self.ctx.dataplane.enabled() && self.removing.is_empty() {
            let view = (self.spec.clone(), self.endpoints());
            if self.pushed.as_ref() != Some(&view) {
                match self.ctx.dataplane.put_function(&view.0, &view.1).await {
                    Ok(()) => self.pushed = Some(view),
                    // Retried on the next turn (at the latest the next tick).
                    Err(e) => {
                        tracing::warn!(function = %self.spec.name, error = %e, "cannot publish to the data plane")
                    }
                }
            }
        } else if !self.removing.is_empty() && self.pushed.is_some() {
            // Being removed: withdraw every endpoint first, then (once empty) the function.
            let eps = Vec::new();
            if self.pushed.as_ref().is_some_and(|(_, e)| !e.is_empty()) {
                match self.ctx.dataplane.put_function(&self.spec, &eps).await {
                    Ok(()) => self.pushed = Some((self.spec.clone(), eps)),
                    Err(e) => {
                        tracing::warn!(function = %self.spec.name, error = %e, "cannot publish to the data plane")
                    }
                }
            }
        }
        let records = self.records();
        if records != self.published {
            if let Err(e) = self.ctx.store.put_replicas(&self.spec.name, &records).await {
                tracing::warn!(function = %self.spec.name, error = %e, "cannot publish replicas");
            } else {
                self.published = records.clone();
            }
        }
        let crash_loop = (self.failures > 0).then(|| CrashLoop {
            consecutive_failures: self.failures,
            retry_in_ms: self
                .backoff_until
                .map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64)
                .unwrap_or(0),
            last_error: self.last_error.clone().unwrap_or_default(),
        });
        let status = FunctionStatus {
            spec: self.spec.clone(),
            source: self.source,
            desired: self.desired(),
            ready: self
                .replicas
                .values()
                .filter(|r| r.state == ReplicaState::Ready)
                .count() as u32,
            starting: self
                .replicas
                .values()
                .filter(|r| {
                    !r.pool_fill
                        && matches!(r.state, ReplicaState::Creating | ReplicaState::Starting)
                })
                .count() as u32,
            pooled: self
                .replicas
                .values()
                .filter(|r| r.state == ReplicaState::Pooled)
                .count() as u32,
            build: self.build.clone(),
            crash_loop,
            replicas: records,
            removing: !self.removing.is_empty(),
            last_activity_unix_ms: unix_ms(self.last_activity),
        };
        self.status.send_if_modified(|old| {
            if *old != status {
                *old = status;
                true
            } else {
                false
            }
        });
    }
}
