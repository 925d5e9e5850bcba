//! The autoscaler: every second it reads each function's load window (written to Redis by
//! the stats-listener from the routers' statsD), feeds the [`policy`], and applies changed
//! decisions to the function tasks. Queueing signals (Redis pub/sub, sent by the
//! stats-listener the moment requests start waiting) are applied at once, without waiting for
//! the next window.

pub mod policy;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use sluice_common::load::{self, field, Signal};
use tokio_util::sync::CancellationToken;

use crate::functions::Supervisor;
use policy::{Now, Rates, Sample, State};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One load window as the stats-listener wrote it (`<instance>:load:<fn>`); `None` when the
/// hash has no window.
fn window_sample(load: &HashMap<String, String>) -> Option<Sample> {
    let num = |k: &str| load.get(k).and_then(|v| v.parse::<f64>().ok());
    let end = num(field::WINDOW_END_UNIX_MS)?;
    let active = num(field::ACTIVE)?;
    let gateways = num(field::GATEWAYS).unwrap_or(0.0);
    let samples = num(field::LATENCY_SAMPLES).unwrap_or(0.0);
    Some(Sample {
        unix_ms: end as u64,
        active,
        pending: num(field::PENDING).unwrap_or(0.0),
        held: num(field::HELD).unwrap_or(0.0),
        rates: Some(Rates {
            arrivals: (gateways > 0.0).then(|| num(field::ARRIVAL_RPS).unwrap_or(0.0)),
            finished: num(field::RPS).unwrap_or(0.0),
            service_ms: num(field::MEAN_MS).filter(|ms| samples > 0.0 && *ms > 0.0),
            median_ms: num(field::P50_MS).filter(|ms| samples > 0.0 && *ms > 0.0),
            served: samples,
        }),
    })
}

pub struct Autoscaler {
    sup: Arc<Supervisor>,
    redis_url: String,
    prefix: String,
    states: tokio::sync::Mutex<HashMap<String, State>>,
}

impl Autoscaler {
    pub fn new(sup: Arc<Supervisor>, redis_url: String, instance: String) -> Arc<Self> {
        Arc::new(Autoscaler {
            sup,
            redis_url,
            prefix: instance,
            states: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Runs the periodic loop and the signal subscriber until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let signals = tokio::spawn(self.clone().signals(stop.clone()));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conn: Option<redis::aio::MultiplexedConnection> = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            if conn.is_none() {
                conn = match redis::Client::open(self.redis_url.as_str()) {
                    Ok(c) => c.get_multiplexed_async_connection().await.ok(),
                    Err(_) => None,
                };
            }
            let Some(c) = conn.as_mut() else { continue };
            if let Err(e) = self.tick(c).await {
                tracing::warn!(error = %e, "autoscaler: cannot read load; retrying");
                conn = None;
            }
        }
        let _ = signals.await;
    }

    async fn tick(&self, conn: &mut redis::aio::MultiplexedConnection) -> redis::RedisResult<()> {
        let functions = self.sup.list().await;
        let now = now_ms();
        for f in functions {
            let s = &f.spec.scaling;
            if f.removing || s.min_replicas == s.max_replicas {
                continue;
            }
            let name = f.spec.name.clone();
            let load: HashMap<String, String> =
                conn.hgetall(load::load_key(&self.prefix, &name)).await?;
            let mut states = self.states.lock().await;
            let st = states.entry(name.clone()).or_default();
            if let Some(sample) = window_sample(&load) {
                // A window older than two periods is stale (the listener stopped writing).
                if now.saturating_sub(sample.unix_ms) < 2_000 {
                    st.observe(sample, s.stable_window);
                }
            }
            let last_request = load
                .get(field::LAST_REQUEST_UNIX_MS)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0) as u64;
            let decision = st.decide(
                s,
                Now {
                    unix_ms: now,
                    ready: f.ready,
                    desired: f.desired,
                    last_activity_ms: last_request.max(f.last_activity_unix_ms),
                },
            );
            let changed = st.last_target != Some(decision.target);
            let urgent = decision.panicking && decision.target > f.desired;
            st.last_target = Some(decision.target);
            drop(states);
            if (changed || urgent) && decision.target != f.desired {
                let b = decision.basis;
                tracing::info!(function = %name, from = f.desired, to = decision.target,
                    panicking = decision.panicking, reason = decision.reason,
                    demand = b.demand, arrival_rps = b.arrival_rps, service_ms = b.service_ms,
                    backlog = b.backlog, "autoscale");
                if let Err(e) = self.sup.autoscale(&name, decision.target).await {
                    tracing::warn!(function = %name, error = %e, "autoscale not applied");
                }
            }
        }
        Ok(())
    }

    /// Applies queueing signals at once (scale-up only).
    async fn signals(self: Arc<Self>, stop: CancellationToken) {
        let channel = load::signal_channel(&self.prefix);
        let mut wait = Duration::from_millis(200);
        loop {
            let pubsub = async {
                let client = redis::Client::open(self.redis_url.as_str())?;
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(ps)
            };
            let mut ps = tokio::select! {
                _ = stop.cancelled() => return,
                r = pubsub => match r {
                    Ok(ps) => ps,
                    Err(e) => {
                        tracing::warn!(error = %e, "autoscaler: cannot subscribe to scale signals; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                        wait = (wait * 2).min(Duration::from_secs(5));
                        continue;
                    }
                },
            };
            wait = Duration::from_millis(200);
            let mut stream = ps.on_message();
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return,
                    m = stream.next() => match m { Some(m) => m, None => break },
                };
                let payload: String = match msg.get_payload() {
                    Ok(p) => p,
                    Err(_) => continue,
                };
                match serde_json::from_str::<Signal>(&payload) {
                    Ok(sig) => self.on_signal(sig).await,
                    Err(e) => tracing::debug!(error = %e, "ignoring malformed scale signal"),
                }
            }
        }
    }

    async fn on_signal(&self, sig: Signal) {
        let Some(f) = self.sup.status(&sig.function).await else {
            return;
        };
        let s = &f.spec.scaling;
        if f.removing || s.min_replicas == s.max_replicas {
            return;
        }
        let now = now_ms();
        let decision = {
            let mut states = self.states.lock().await;
            let st = states.entry(sig.function.clone()).or_default();
            st.observe(
                Sample {
                    unix_ms: if sig.unix_ms > 0 { sig.unix_ms } else { now },
                    active: sig.active,
                    pending: sig.pending,
                    held: sig.held,
                    rates: None,
                },
                s.stable_window,
            );
            let d = st.decide(
                s,
                Now {
                    unix_ms: now,
                    ready: f.ready,
                    desired: f.desired,
                    last_activity_ms: now,
                },
            );
            st.last_target = Some(d.target);
            d
        };
        if decision.target > f.desired {
            let b = decision.basis;
            tracing::info!(function = %sig.function, from = f.desired, to = decision.target,
                pending = sig.pending, held = sig.held, backlog = b.backlog, demand = b.demand,
                arrival_rps = b.arrival_rps, service_ms = b.service_ms, "autoscale: queueing signal");
            if let Err(e) = self.sup.autoscale(&sig.function, decision.target).await {
                tracing::warn!(function = %sig.function, error = %e, "autoscale not applied");
            }
        }
    }
}
