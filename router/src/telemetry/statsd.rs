//! statsD export of the router's telemetry (cadence), for the stats-listener and the
//! autoscaler behind it. Names (every line tagged `|#router:<node-id>`):
//!
//! | name | type | |
//! |---|---|---|
//! | `cluster.<fn>.upstream_rq_active` | gauge | requests holding a replica slot |
//! | `cluster.<fn>.upstream_rq_pending_active` | gauge | requests waiting in the queue |
//! | `cluster.<fn>.upstream_rq_total` | counter | finished requests |
//! | `cluster.<fn>.upstream_rq_2xx` / `_4xx` / `_5xx` | counter | by status class |
//! | `cluster.<fn>.upstream_rq_time` | timer (ms) | one sample per request |
//! | `cluster.<fn>.endpoint.<id>.upstream_rq_active` | gauge | in flight per replica |
//!
//! The request path only formats one timer line and hands it to a bounded queue (cadence's
//! `QueuingMetricSink`: a full queue drops the sample, never blocks); a background thread
//! batches lines into UDP packets. Gauges and counter deltas are sent by [`run`] every flush
//! interval (default 250 ms), which also flushes the batch, so nothing waits longer.

use std::collections::HashMap;
use std::net::{ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use cadence::prelude::*;
use cadence::{BufferedUdpMetricSink, QueuingMetricSink, StatsdClient};
use tokio_util::sync::CancellationToken;

use crate::config::Registry;

/// Lines waiting for the sender thread; beyond this, samples are dropped.
const QUEUE_CAPACITY: usize = 64 * 1024;

/// The exporter's client, swapped when the listener's address changes.
pub struct Statsd {
    client: ArcSwapOption<StatsdClient>,
    node_id: String,
}

impl std::fmt::Debug for Statsd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Statsd")
            .field("node_id", &self.node_id)
            .field("connected", &self.client.load().is_some())
            .finish()
    }
}

impl Statsd {
    pub fn new(node_id: &str) -> Arc<Self> {
        Arc::new(Statsd {
            client: ArcSwapOption::empty(),
            node_id: node_id.to_string(),
        })
    }

    /// Records one request's latency (request path: never blocks).
    pub fn timing(&self, function: &str, elapsed: Duration) {
        if let Some(c) = self.client.load().as_ref() {
            let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            let _ = c
                .time_with_tags(&format!("cluster.{function}.upstream_rq_time"), ms)
                .with_tag("router", &self.node_id)
                .try_send();
        }
    }

    fn connect(&self, addr: std::net::SocketAddr) -> std::io::Result<()> {
        let socket = UdpSocket::bind(if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        })?;
        socket.set_nonblocking(true)?;
        let udp = BufferedUdpMetricSink::from(addr, socket).map_err(std::io::Error::other)?;
        let sink = QueuingMetricSink::with_capacity(udp, QUEUE_CAPACITY);
        let client = StatsdClient::builder("", sink)
            .with_error_handler(|e| tracing::trace!(error = %e, "statsd send failed"))
            .build();
        self.client.store(Some(Arc::new(client)));
        Ok(())
    }
}

fn resolve(target: &str) -> Option<std::net::SocketAddr> {
    target.to_socket_addrs().ok().and_then(|mut a| a.next())
}

/// Sends gauges and counter deltas every `flush` and flushes the batch, until `stop`.
/// Re-resolves `target` (e.g. `stats-listener:8125`) every 10 s so a restarted listener with
/// a new address is found again.
pub async fn run(
    statsd: Arc<Statsd>,
    registry: Arc<Registry>,
    target: String,
    flush: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(flush);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resolved: Option<std::net::SocketAddr> = None;
    let mut last_resolve = tokio::time::Instant::now() - Duration::from_secs(60);
    // Counter values already reported, per function: (total, 2xx, 4xx, 5xx).
    let mut reported: HashMap<String, [u64; 4]> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if last_resolve.elapsed() >= Duration::from_secs(10) {
            last_resolve = tokio::time::Instant::now();
            let t = target.clone();
            let addr = tokio::task::spawn_blocking(move || resolve(&t))
                .await
                .ok()
                .flatten();
            match addr {
                Some(a) if Some(a) != resolved => match statsd.connect(a) {
                    Ok(()) => {
                        tracing::info!(statsd = %target, address = %a, "statsd export to");
                        resolved = Some(a);
                    }
                    Err(e) => {
                        tracing::warn!(statsd = %target, error = %e, "cannot open the statsd socket")
                    }
                },
                Some(_) => {}
                None => tracing::debug!(statsd = %target, "statsd target does not resolve yet"),
            }
        }
        let Some(client) = statsd.client.load_full() else {
            continue;
        };
        let tag = statsd.node_id.as_str();
        let mut seen = Vec::new();
        for cluster in registry.clusters() {
            let f = cluster.name().to_string();
            let st = &cluster.stats;
            let active = st.active.load(std::sync::atomic::Ordering::Relaxed);
            let pending = st.pending.load(std::sync::atomic::Ordering::Relaxed);
            let _ = client
                .gauge_with_tags(&format!("cluster.{f}.upstream_rq_active"), active)
                .with_tag("router", tag)
                .try_send();
            let _ = client
                .gauge_with_tags(&format!("cluster.{f}.upstream_rq_pending_active"), pending)
                .with_tag("router", tag)
                .try_send();
            let c = st.counters.snapshot();
            let now = [c.requests, c.status_2xx, c.status_4xx, c.status_5xx];
            let before = reported.get(&f).copied().unwrap_or([0; 4]);
            for (i, name) in [
                "upstream_rq_total",
                "upstream_rq_2xx",
                "upstream_rq_4xx",
                "upstream_rq_5xx",
            ]
            .iter()
            .enumerate()
            {
                let delta = now[i].saturating_sub(before[i]);
                if delta > 0 {
                    let _ = client
                        .count_with_tags(&format!("cluster.{f}.{name}"), delta)
                        .with_tag("router", tag)
                        .try_send();
                }
            }
            reported.insert(f.clone(), now);
            for ep in cluster.endpoint_views() {
                let _ = client
                    .gauge_with_tags(
                        &format!("cluster.{f}.endpoint.{}.upstream_rq_active", ep.id),
                        u64::from(ep.in_flight),
                    )
                    .with_tag("router", tag)
                    .try_send();
            }
            seen.push(f);
        }
        reported.retain(|f, _| seen.contains(f));
        let _ = client.flush();
    }
    if let Some(c) = statsd.client.load_full() {
        let _ = c.flush();
    }
}
