//! Counters, in the spirit of Kamailio's `core:` and `tm:` statistics: requests by method,
//! responses by class (in and out), retransmissions absorbed, transaction timeouts,
//! malformed messages by reason, handler calls and their latency. Read at `/v1/stats` and
//! sent as statsD (`sip.*`) when `SLUICE_STATSD` is set.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::handler::KNOWN_METHODS;
use crate::sip::message::Malformed;

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Handler latency buckets (upper bounds, ms); the last bucket is everything above.
pub const LATENCY_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 30000];

#[derive(Default)]
pub struct Stats {
    requests_in: [Counter; 15],
    requests_out: [Counter; 15],
    responses_in: [Counter; 6],
    responses_out: [Counter; 6],
    malformed: [Counter; Malformed::ALL.len()],
    pub retransmissions_absorbed: Counter,
    pub ack_timeouts: Counter,
    pub client_timeouts: Counter,
    /// INVITEs the proxy cancelled because their handler's ring timeout passed.
    pub ring_timeouts: Counter,
    pub handler_timeouts: Counter,
    pub stray_acks: Counter,
    pub stray_responses: Counter,
    pub refused_responses: Counter,
    pub bad_actions: Counter,
    pub overload: Counter,
    pub handler_calls: Counter,
    pub handler_failures: Counter,
    pub tcp_refused: Counter,
    pub send_errors: Counter,
    latency: [Counter; LATENCY_BUCKETS_MS.len() + 1],
    latency_us_sum: Counter,
    server_transactions: AtomicUsize,
    client_transactions: AtomicUsize,
    pub tcp_connections: AtomicUsize,
}

fn method_index(m: &str) -> usize {
    KNOWN_METHODS
        .iter()
        .position(|k| *k == m)
        .unwrap_or(KNOWN_METHODS.len())
}

fn class_index(status: u16) -> usize {
    usize::from((status / 100).clamp(1, 6) - 1)
}

impl Stats {
    pub fn request_in(&self, method: &str) {
        self.requests_in[method_index(method)].inc();
    }
    pub fn request_out(&self, method: &str) {
        self.requests_out[method_index(method)].inc();
    }
    pub fn response_in(&self, status: u16) {
        self.responses_in[class_index(status)].inc();
    }
    pub fn response_out(&self, status: u16) {
        self.responses_out[class_index(status)].inc();
    }
    pub fn malformed(&self, m: Malformed) {
        self.malformed[m.index()].inc();
    }
    pub fn malformed_count(&self, m: Malformed) -> u64 {
        self.malformed[m.index()].get()
    }
    pub fn handler_latency(&self, d: Duration) {
        let ms = (d.as_micros() as u64).div_ceil(1000);
        let i = LATENCY_BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.latency[i].inc();
        self.latency_us_sum
            .0
            .fetch_add(d.as_micros() as u64, Relaxed);
    }
    pub fn set_transactions(&self, server: usize, client: usize) {
        self.server_transactions.store(server, Relaxed);
        self.client_transactions.store(client, Relaxed);
    }

    /// The upper bound (ms) of the bucket holding quantile `q` of handler latency.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<u64> {
        let counts: Vec<u64> = self.latency.iter().map(Counter::get).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(LATENCY_BUCKETS_MS.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        None
    }

    /// Every counter as `(statsD name, value)`.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let method_name = |i: usize| KNOWN_METHODS.get(i).copied().unwrap_or("other");
        for (i, c) in self.requests_in.iter().enumerate() {
            out.push((format!("sip.requests_in.{}", method_name(i)), c.get()));
        }
        for (i, c) in self.requests_out.iter().enumerate() {
            out.push((format!("sip.requests_out.{}", method_name(i)), c.get()));
        }
        for (i, c) in self.responses_in.iter().enumerate() {
            out.push((format!("sip.responses_in.{}xx", i + 1), c.get()));
        }
        for (i, c) in self.responses_out.iter().enumerate() {
            out.push((format!("sip.responses_out.{}xx", i + 1), c.get()));
        }
        for m in Malformed::ALL {
            out.push((
                format!("sip.malformed.{}", m.name()),
                self.malformed_count(m),
            ));
        }
        for (name, c) in [
            ("retransmissions_absorbed", &self.retransmissions_absorbed),
            ("ack_timeouts", &self.ack_timeouts),
            ("client_timeouts", &self.client_timeouts),
            ("ring_timeouts", &self.ring_timeouts),
            ("handler_timeouts", &self.handler_timeouts),
            ("stray_acks", &self.stray_acks),
            ("stray_responses", &self.stray_responses),
            ("refused_responses", &self.refused_responses),
            ("bad_actions", &self.bad_actions),
            ("overload", &self.overload),
            ("handler_calls", &self.handler_calls),
            ("handler_failures", &self.handler_failures),
            ("tcp_refused", &self.tcp_refused),
            ("send_errors", &self.send_errors),
        ] {
            out.push((format!("sip.{name}"), c.get()));
        }
        out
    }

    /// The `/v1/stats` document.
    pub fn json(&self) -> Value {
        let mut counters = Map::new();
        for (k, v) in self.counters() {
            if v > 0 || k.starts_with("sip.malformed.") {
                counters.insert(k.trim_start_matches("sip.").to_string(), json!(v));
            }
        }
        let calls: u64 = self.latency.iter().map(Counter::get).sum();
        json!({
            "counters": counters,
            "transactions": {
                "server": self.server_transactions.load(Relaxed),
                "client": self.client_transactions.load(Relaxed),
            },
            "tcp_connections": self.tcp_connections.load(Relaxed),
            "handler_latency_ms": {
                "calls": calls,
                "mean": (calls > 0).then(|| self.latency_us_sum.get() as f64 / calls as f64 / 1000.0),
                "p50_le": self.latency_quantile_ms(0.5),
                "p99_le": self.latency_quantile_ms(0.99),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_classes_and_reasons_are_counted_apart() {
        let s = Stats::default();
        s.request_in("REGISTER");
        s.request_in("REGISTER");
        s.request_in("FOO");
        s.response_out(200);
        s.response_out(100);
        s.response_out(700);
        s.malformed(Malformed::BadVia);
        let c: std::collections::HashMap<String, u64> = s.counters().into_iter().collect();
        assert_eq!(c["sip.requests_in.REGISTER"], 2);
        assert_eq!(c["sip.requests_in.other"], 1);
        assert_eq!(c["sip.responses_out.2xx"], 1);
        assert_eq!(c["sip.responses_out.1xx"], 1);
        assert_eq!(c["sip.responses_out.6xx"], 1);
        assert_eq!(c["sip.malformed.bad_via"], 1);
        assert_eq!(c["sip.malformed.too_large"], 0);
    }

    #[test]
    fn latency_quantiles_come_from_the_buckets() {
        let s = Stats::default();
        assert_eq!(s.latency_quantile_ms(0.5), None);
        for _ in 0..98 {
            s.handler_latency(Duration::from_micros(1500));
        }
        s.handler_latency(Duration::from_millis(40));
        s.handler_latency(Duration::from_millis(400));
        assert_eq!(s.latency_quantile_ms(0.5), Some(2));
        assert_eq!(s.latency_quantile_ms(0.99), Some(50));
        assert_eq!(s.latency_quantile_ms(1.0), Some(500));
    }
}
