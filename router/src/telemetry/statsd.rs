//! statsD export of the router's telemetry (cadence), for the stats-listener and the
//! autoscaler behind it. Names (every line tagged `|#router:<node-id>`):
//!
//! | name | type | |
//! |---|---|---|
//! | `cluster.<fn>.upstream_rq_active` | gauge | requests holding a replica slot |
//! | `cluster.<fn>.upstream_rq_pending_active` | gauge | requests waiting in the queue |
//! | `cluster.<fn>.upstream_rq_total` | counter | finished requests |
//! | `cluster.<fn>.upstream_rq_2xx` / `_4xx` / `_5xx` | counter | by status class |
//! | `cluster.<fn>.upstream_rq_time` | timer (ms) | service time: from the replica slot to the response, without the queue wait; one sample per request that reached a replica |
//! | `cluster.<fn>.endpoint.<id>.upstream_rq_active` | gauge | in flight per replica |
//!
//! The request path touches no socket and no queue: it only adds its latency to the cluster's
//! bounded sample reservoir ([`super::LatencySamples`], one uncontended lock). Every flush
//! interval (default 250 ms) [`run`] sends the gauges, the counter deltas and the period's
//! latency samples as multi-value timer lines (`name:12:3:40|ms|#router:r1`, at most
//! [`TIMER_VALUES_PER_LINE`] values a line) through cadence's `QueuingMetricSink` (a full queue
//! drops, never blocks) over a `BufferedUdpMetricSink` (lines packed into datagrams), then
//! flushes, so nothing waits longer than one interval. Sending one line per request instead
//! cost a cross-thread wake-up per request (measured: ~17 µs of CPU each).

use std::collections::HashMap;
use std::net::{ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use cadence::prelude::*;
use cadence::{BufferedUdpMetricSink, MetricSink, QueuingMetricSink, SinkStats, StatsdClient};
use tokio_util::sync::CancellationToken;

use crate::config::Registry;
use sluice_common::load::metric;

/// Lines waiting for the sender thread; beyond this, lines are dropped.
const QUEUE_CAPACITY: usize = 4 * 1024;
/// Values per multi-value timer line (keeps lines well under the listener's 1 KiB limit).
pub const TIMER_VALUES_PER_LINE: usize = 100;
/// Datagram size the buffered sink packs lines into (below the bridge MTU).
const DATAGRAM_BYTES: usize = 1400;

/// The queuing sink, shared by the cadence client (gauges, counters) and the raw
/// multi-value timer lines.
#[derive(Clone)]
struct SharedSink(Arc<QueuingMetricSink>);

impl MetricSink for SharedSink {
    fn emit(&self, metric: &str) -> std::io::Result<usize> {
        self.0.emit(metric)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
    fn stats(&self) -> SinkStats {
        self.0.stats()
    }
}

struct Exporter {
    client: StatsdClient,
    sink: SharedSink,
}

/// The exporter's client, swapped when the listener's address changes.
pub struct Statsd {
    client: ArcSwapOption<Exporter>,
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

    fn connect(&self, addr: std::net::SocketAddr) -> std::io::Result<()> {
        let socket = UdpSocket::bind(if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        })?;
        socket.set_nonblocking(true)?;
        let udp = BufferedUdpMetricSink::with_capacity(addr, socket, DATAGRAM_BYTES)
            .map_err(std::io::Error::other)?;
        let sink = SharedSink(Arc::new(QueuingMetricSink::with_capacity(
            udp,
            QUEUE_CAPACITY,
        )));
        let client = StatsdClient::builder("", sink.clone())
            .with_error_handler(|e| tracing::trace!(error = %e, "statsd send failed"))
            .build();
        self.client.store(Some(Arc::new(Exporter { client, sink })));
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
        let Some(exporter) = statsd.client.load_full() else {
            // Not connected yet: do not let samples pile up (the reservoir is bounded anyway).
            for cluster in registry.clusters() {
                cluster.stats.samples.take();
            }
            continue;
        };
        let client = &exporter.client;
        let tag = statsd.node_id.as_str();
        let mut seen = Vec::new();
        for cluster in registry.clusters() {
            let f = cluster.name().to_string();
            let st = &cluster.stats;
            let active = st.active.load(std::sync::atomic::Ordering::Relaxed);
            let pending = st.pending.load(std::sync::atomic::Ordering::Relaxed);
            let _ = client
                .gauge_with_tags(&metric::name(&f, metric::ACTIVE), active)
                .with_tag(metric::ROUTER_TAG, tag)
                .try_send();
            let _ = client
                .gauge_with_tags(&metric::name(&f, metric::PENDING), pending)
                .with_tag(metric::ROUTER_TAG, tag)
                .try_send();
            let c = st.counters.snapshot();
            let now = [c.requests, c.status_2xx, c.status_4xx, c.status_5xx];
            let before = reported.get(&f).copied().unwrap_or([0; 4]);
            for (i, name) in [
                metric::TOTAL,
                metric::STATUS_2XX,
                metric::STATUS_4XX,
                metric::STATUS_5XX,
            ]
            .iter()
            .enumerate()
            {
                let delta = now[i].saturating_sub(before[i]);
                if delta > 0 {
                    let _ = client
                        .count_with_tags(&metric::name(&f, name), delta)
                        .with_tag(metric::ROUTER_TAG, tag)
                        .try_send();
                }
            }
            reported.insert(f.clone(), now);
            let samples = st.samples.take();
            for chunk in samples.chunks(TIMER_VALUES_PER_LINE) {
                let _ = exporter.sink.emit(&timer_line(&f, chunk, tag));
            }
            for ep in cluster.endpoint_views() {
                let _ = client
                    .gauge_with_tags(
                        &metric::name(
                            &f,
                            &format!("{}{}.{}", metric::ENDPOINT_PREFIX, ep.id, metric::ACTIVE),
                        ),
                        u64::from(ep.in_flight),
                    )
                    .with_tag(metric::ROUTER_TAG, tag)
                    .try_send();
            }
            seen.push(f);
        }
        reported.retain(|f, _| seen.contains(f));
        let _ = client.flush();
    }
    if let Some(e) = statsd.client.load_full() {
        let _ = e.client.flush();
    }
}

/// `cluster.<fn>.upstream_rq_time:v1:v2:…|ms|#router:<node>`
fn timer_line(function: &str, values: &[u32], node: &str) -> String {
    use std::fmt::Write;
    let mut line = String::with_capacity(48 + values.len() * 5 + node.len());
    let _ = write!(line, "cluster.{function}.{}", metric::TIME);
    for v in values {
        let _ = write!(line, ":{v}");
    }
    let _ = write!(line, "|ms|#{}:{node}", metric::ROUTER_TAG);
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn timer_lines_carry_several_values() {
        assert_eq!(
            super::timer_line("hello", &[3, 12, 250], "router-1"),
            "cluster.hello.upstream_rq_time:3:12:250|ms|#router:router-1"
        );
    }
}
