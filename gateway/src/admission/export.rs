//! statsD export of what only the gateway sees, for the stats-listener and the autoscaler:
//!
//! | name | type | |
//! |---|---|---|
//! | `cluster.<fn>.gateway_rq_arrived` | counter | calls that arrived (the arrival rate) |
//! | `cluster.<fn>.gateway_rq_held` | gauge | calls held in the gateway's FIFO |
//!
//! Every line is tagged `|#gateway:<node-id>`. Every flush interval (default 250 ms) the
//! task sends the held gauge of every gate (0 included: a live gauge tells the listener that
//! a gateway counts this function's arrivals) and the arrivals since the last flush, packed
//! into datagrams of at most [`DATAGRAM_BYTES`]. The request path never touches the socket.
//! A send that fails is dropped (the next flush reports the present again).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_common::load::metric;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::Gates;

/// Datagram size lines are packed into (below the bridge MTU).
pub const DATAGRAM_BYTES: usize = 1400;
/// How often the statsD target is resolved again (a restarted listener may move).
const RESOLVE_EVERY: Duration = Duration::from_secs(10);

/// The lines of one flush: held gauges and arrival deltas. `reported` keeps the arrival
/// counts already sent, per function (functions without a gate are forgotten).
pub fn lines(gates: &Gates, node: &str, reported: &mut HashMap<String, u64>) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = HashMap::with_capacity(reported.len());
    for gate in gates.all() {
        let f = gate.function();
        out.push(format!(
            "{}:{}|g|#{}:{node}",
            metric::name(f, metric::HELD),
            gate.held(),
            metric::GATEWAY_TAG
        ));
        let arrived = gate.arrived();
        let delta = arrived.saturating_sub(reported.get(f).copied().unwrap_or(0));
        if delta > 0 {
            out.push(format!(
                "{}:{delta}|c|#{}:{node}",
                metric::name(f, metric::ARRIVED),
                metric::GATEWAY_TAG
            ));
        }
        seen.insert(f.to_string(), arrived);
    }
    *reported = seen;
    out
}

/// Packs lines into datagrams of at most `max` bytes (a longer line goes alone).
pub fn pack(lines: &[String], max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for l in lines {
        if !cur.is_empty() && cur.len() + 1 + l.len() > max {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push('\n');
        }
        cur.push_str(l);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Sends the gateway's metrics to `target` (`host:port`) every `flush` until `stop`.
pub async fn run(
    gates: Arc<Gates>,
    node: String,
    target: String,
    flush: Duration,
    stop: CancellationToken,
) {
    let socket = match UdpSocket::bind("0.0.0.0:0").await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the statsd socket: no load export");
            return;
        }
    };
    let mut tick = tokio::time::interval(flush);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut addr: Option<SocketAddr> = None;
    let mut resolved_at: Option<tokio::time::Instant> = None;
    let mut reported = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if resolved_at.is_none_or(|t| t.elapsed() >= RESOLVE_EVERY) {
            resolved_at = Some(tokio::time::Instant::now());
            match tokio::net::lookup_host(target.as_str()).await {
                Ok(mut a) => {
                    let next = a.next();
                    if next != addr {
                        tracing::info!(statsd = %target, address = ?next, "statsd export to");
                    }
                    addr = next;
                }
                Err(e) => {
                    tracing::debug!(statsd = %target, error = %e, "statsd target does not resolve yet")
                }
            }
        }
        let lines = lines(&gates, &node, &mut reported);
        let Some(to) = addr else { continue };
        for datagram in pack(&lines, DATAGRAM_BYTES) {
            if let Err(e) = socket.send_to(datagram.as_bytes(), to).await {
                tracing::trace!(error = %e, "statsd send failed");
            }
        }
    }
}
