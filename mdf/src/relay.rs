//! The relay instance: its sessions, its port range, its capacity and whether it drains.
//! The control API calls into it; a ticker revokes floors held past the maximum talk time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::ports::Ports;
use crate::session::{Latch, Session, SessionSpec, StartError};
use crate::shards::Shards;
use crate::stats::Counters;

#[derive(Debug, Clone)]
pub struct Settings {
    pub instance: String,
    /// The address put in SDP (what phones send media to).
    pub advertise: String,
    pub max_sessions: usize,
    pub max_legs: usize,
    pub max_talk: Duration,
    pub latch: Latch,
}

pub struct Relay {
    pub settings: Settings,
    ports: Ports,
    shards: Shards,
    sessions: RwLock<HashMap<String, Arc<Session>>>,
    pub totals: Arc<Counters>,
    draining: AtomicBool,
}

impl Relay {
    pub fn new(settings: Settings, ports: Ports, shards: Shards) -> Relay {
        Relay {
            settings,
            ports,
            shards,
            sessions: RwLock::new(HashMap::new()),
            totals: Arc::new(Counters::default()),
            draining: AtomicBool::new(false),
        }
    }

    pub fn get(&self, id: &str) -> Result<Arc<Session>, Error> {
        self.sessions
            .read()
            .ok()
            .and_then(|s| s.get(id).cloned())
            .ok_or_else(|| Error::not_found("session", id))
    }

    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.sessions
            .read()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.read().map_or(0, |s| s.len())
    }

    pub fn set_draining(&self, on: bool) {
        self.draining.store(on, Ordering::Relaxed);
        tracing::info!(
            draining = on,
            sessions = self.session_count(),
            "drain state changed"
        );
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Starts a session; refused while draining or at capacity (both retryable elsewhere).
    pub fn create(&self, spec: SessionSpec) -> Result<Arc<Session>, Error> {
        if self.draining() {
            return Err(Error::Draining);
        }
        if spec.legs.len() > self.settings.max_legs {
            return Err(Error::bad(
                "legs",
                format!("at most {} legs per session", self.settings.max_legs),
            ));
        }
        let mut sessions = self.sessions.write().map_err(|_| Error::Internal)?;
        if sessions.contains_key(&spec.id) {
            return Err(Error::Conflict(spec.id));
        }
        if sessions.len() >= self.settings.max_sessions {
            return Err(Error::NoCapacity("sessions"));
        }
        let id = spec.id.clone();
        let legs = spec.legs.len();
        let shard = self.shards.place().ok_or(Error::Internal)?;
        let session = Session::start(
            spec,
            &self.ports,
            self.totals.clone(),
            self.settings.latch,
            shard,
        )
        .map_err(|e| match e {
            StartError::NoPorts => Error::NoCapacity("ports"),
            StartError::Io(e) => Error::Io(e),
        })?;
        sessions.insert(id.clone(), session.clone());
        tracing::info!(session = %id, legs, sessions = sessions.len(), "session started");
        Ok(session)
    }

    /// Ends a session: its sockets are closed and its ports returned before this returns.
    pub async fn remove(&self, id: &str) -> Result<Arc<Session>, Error> {
        let session = self
            .sessions
            .write()
            .ok()
            .and_then(|mut s| s.remove(id))
            .ok_or_else(|| Error::not_found("session", id))?;
        session.close(&self.ports).await;
        tracing::info!(session = %id, relayed = session.counters.relayed_packets.load(Ordering::Relaxed), "session ended");
        Ok(session)
    }

    pub fn status(&self) -> serde_json::Value {
        let sessions = self.sessions();
        let legs: usize = sessions.iter().map(|s| s.leg_count()).sum();
        serde_json::json!({
            "instance": self.settings.instance,
            "address": self.settings.advertise,
            "draining": self.draining(),
            "sessions": sessions.len(),
            "max_sessions": self.settings.max_sessions,
            "legs": legs,
            "ports_free": self.ports.free() * 2,
            "ports_total": self.ports.total() * 2,
            "load": if self.settings.max_sessions == 0 { 1.0 } else {
                sessions.len() as f64 / self.settings.max_sessions as f64
            },
        })
    }

    /// Every 100 ms: revoke floors held too long.
    pub async fn run_ticker(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            for s in self.sessions() {
                s.tick(now);
            }
        }
    }

    /// Closes every session (shutdown).
    pub async fn close_all(&self) {
        let ids: Vec<String> = self.sessions().iter().map(|s| s.id.clone()).collect();
        for id in ids {
            let _ = self.remove(&id).await;
        }
    }

    /// Stops the relay threads (blocks until they end; after [`Relay::close_all`]).
    pub fn stop_threads(&self) {
        self.shards.shutdown();
    }
}
