//! The parse stage: packets in, [`Event`]s out (one `Vec` per packet, so a packet is
//! aggregated as a unit), every line accounted for in [`Stats`]:
//! `lines_ok` + malformed by reason; valid lines are then `known` (aggregated), `other`
//! (a name this listener does not use) or `wrong_type` (a router name with the wrong type).
//! Rejections are logged at debug level, at most once per second, naming what was wrong.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{lines, Line, Value};
use crate::aggregate::event::{CounterId, Event, GaugeId, GaugeOp, Update};
use crate::ratelimit::LogEvery;
use crate::schema::{classify, Known};
use crate::stats::Stats;
use sluice_common::load::metric;

/// Parses one packet: counts every line, returns the events of the known metrics.
pub fn parse_packet(packet: &[u8], stats: &Stats, log: &mut LogEvery) -> Vec<Event> {
    let mut events = Vec::new();
    for item in lines(packet) {
        match item {
            Ok(line) => {
                stats.lines.fetch_add(1, Relaxed);
                stats.lines_ok.fetch_add(1, Relaxed);
                classify_line(&line, stats, &mut events);
            }
            Err(e) => {
                let reason = e.reason();
                if reason != super::Reason::PacketTooLarge {
                    stats.lines.fetch_add(1, Relaxed);
                }
                stats.malformed(reason);
                if let Some(suppressed) = log.check(Instant::now()) {
                    tracing::debug!(reason = %reason, error = %e, suppressed, "malformed statsD dropped");
                }
            }
        }
    }
    events
}

fn classify_line(line: &Line<'_>, stats: &Stats, out: &mut Vec<Event>) {
    let Some(name) = classify(line.name) else {
        stats.other_metrics.fetch_add(1, Relaxed);
        return;
    };
    if !name.metric.accepts(line.kind) {
        stats.wrong_type.fetch_add(1, Relaxed);
        return;
    }
    stats.known_metrics.fetch_add(1, Relaxed);
    let router = match line.tag(metric::ROUTER_TAG) {
        Some(r) => r.to_string(),
        None => line
            .tag(metric::GATEWAY_TAG)
            .map_or_else(String::new, |g| format!("gateway:{g}")),
    };
    for v in line.values() {
        let update = match (name.metric, v) {
            (Known::Active, Value::GaugeSet(x)) => Update::Gauge(GaugeId::Active, GaugeOp::Set(x)),
            (Known::Active, Value::GaugeDelta(x)) => {
                Update::Gauge(GaugeId::Active, GaugeOp::Delta(x))
            }
            (Known::Pending, Value::GaugeSet(x)) => {
                Update::Gauge(GaugeId::Pending, GaugeOp::Set(x))
            }
            (Known::Pending, Value::GaugeDelta(x)) => {
                Update::Gauge(GaugeId::Pending, GaugeOp::Delta(x))
            }
            (Known::EndpointActive(id), Value::GaugeSet(x)) => {
                Update::Gauge(GaugeId::Endpoint(id.to_string()), GaugeOp::Set(x))
            }
            (Known::EndpointActive(id), Value::GaugeDelta(x)) => {
                Update::Gauge(GaugeId::Endpoint(id.to_string()), GaugeOp::Delta(x))
            }
            (Known::Held, Value::GaugeSet(x)) => Update::Gauge(GaugeId::Held, GaugeOp::Set(x)),
            (Known::Held, Value::GaugeDelta(x)) => Update::Gauge(GaugeId::Held, GaugeOp::Delta(x)),
            (Known::Arrived, Value::Count(n)) => Update::Count(CounterId::Arrived, n),
            (Known::Total, Value::Count(n)) => Update::Count(CounterId::Total, n),
            (Known::Status2xx, Value::Count(n)) => Update::Count(CounterId::Status2xx, n),
            (Known::Status4xx, Value::Count(n)) => Update::Count(CounterId::Status4xx, n),
            (Known::Status5xx, Value::Count(n)) => Update::Count(CounterId::Status5xx, n),
            (Known::Time, Value::Sample(ms)) => Update::Latency(ms),
            // `accepts` rules the other combinations out.
            _ => continue,
        };
        out.push(Event {
            function: name.function.to_string(),
            router: router.clone(),
            update,
        });
    }
}

/// The parse task. Ends when `packets` closes (then `events` closes in turn).
pub async fn run(
    mut packets: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<Vec<Event>>,
    stats: Arc<Stats>,
) {
    let mut log = LogEvery::new(Duration::from_secs(1));
    while let Some(packet) = packets.recv().await {
        let batch = parse_packet(&packet, &stats, &mut log);
        if batch.is_empty() {
            continue;
        }
        if events.send(batch).await.is_err() {
            tracing::error!("aggregator stopped; parsing ends");
            return;
        }
    }
}
