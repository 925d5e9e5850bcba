//! What one window of one function looks like once closed: the Redis hash fields and the
//! compact JSON pushed onto the history list (same names in both).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

/// A number as written to Redis and JSON: rounded to 3 decimals, integral values without a
/// fractional part (`3`, not `3.0`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Num(pub f64);

impl Num {
    /// The value as written: rounded to 3 decimals.
    pub fn rounded(self) -> f64 {
        let r = (self.0 * 1000.0).round() / 1000.0;
        if r == 0.0 {
            0.0 // no "-0"
        } else {
            r
        }
    }

    fn as_integer(self) -> Option<i64> {
        let r = self.rounded();
        (r.fract() == 0.0 && r.abs() < 9.0e15).then_some(r as i64)
    }
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_integer() {
            Some(i) => write!(f, "{i}"),
            None => write!(f, "{}", self.rounded()),
        }
    }
}

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.as_integer() {
            Some(i) => s.serialize_i64(i),
            None => s.serialize_f64(self.rounded()),
        }
    }
}

/// One closed window of one function.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowReport {
    pub function: String,
    /// Wall-clock end of the window.
    pub window_end_unix_ms: u64,
    /// Length of the window (the configured window, shorter for the first and the final one).
    pub window_ms: u64,
    /// In flight to replicas at the window end (sum over live routers).
    pub active: Num,
    /// Waiting in router queues at the window end (sum over live routers).
    pub pending: Num,
    /// Highest `active` seen during the window.
    pub active_max: Num,
    /// Highest `pending` seen during the window.
    pub pending_max: Num,
    /// Held at gateways at the window end (sum over live gateways).
    pub held: Num,
    /// Highest `held` seen during the window.
    pub held_max: Num,
    /// `rq_total` per second of the configured window length.
    pub rps: Num,
    /// Calls arrived at gateways per second of the configured window length.
    pub arrival_rps: Num,
    /// `upstream_rq_total` counted in the window (sample rates applied).
    pub rq_total: Num,
    pub rq_2xx: Num,
    pub rq_4xx: Num,
    pub rq_5xx: Num,
    /// Latency percentiles of the window's `upstream_rq_time` samples (0 when none).
    pub p50_ms: Num,
    pub p95_ms: Num,
    pub p99_ms: Num,
    /// Mean of every latency sample of the window (0 when none).
    pub mean_ms: Num,
    /// Latency samples received in the window.
    pub latency_samples: u64,
    /// End of the last window with traffic (requests, latency samples, or active / pending
    /// above 0); 0 if none since the listener started.
    pub last_request_unix_ms: u64,
    /// Routers whose gauges for this function are live.
    pub routers: u64,
    /// Gateways whose held gauge for this function is live (they count arrivals).
    pub gateways: u64,
    /// In flight per endpoint (replica) id, summed over routers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, Num>,
}

impl WindowReport {
    /// Fields of the hash `<instance>:load:<fn>`; endpoints as `endpoint.<id>.active`.
    pub fn hash_fields(&self) -> Vec<(String, String)> {
        use sluice_common::load::field;
        let mut f: Vec<(String, String)> = [
            (
                field::WINDOW_END_UNIX_MS,
                self.window_end_unix_ms.to_string(),
            ),
            (field::WINDOW_MS, self.window_ms.to_string()),
            (field::ACTIVE, self.active.to_string()),
            (field::PENDING, self.pending.to_string()),
            (field::ACTIVE_MAX, self.active_max.to_string()),
            (field::PENDING_MAX, self.pending_max.to_string()),
            (field::HELD, self.held.to_string()),
            (field::HELD_MAX, self.held_max.to_string()),
            (field::RPS, self.rps.to_string()),
            (field::ARRIVAL_RPS, self.arrival_rps.to_string()),
            (field::RQ_TOTAL, self.rq_total.to_string()),
            (field::RQ_2XX, self.rq_2xx.to_string()),
            (field::RQ_4XX, self.rq_4xx.to_string()),
            (field::RQ_5XX, self.rq_5xx.to_string()),
            (field::P50_MS, self.p50_ms.to_string()),
            (field::P95_MS, self.p95_ms.to_string()),
            (field::P99_MS, self.p99_ms.to_string()),
            (field::MEAN_MS, self.mean_ms.to_string()),
            (field::LATENCY_SAMPLES, self.latency_samples.to_string()),
            (
                field::LAST_REQUEST_UNIX_MS,
                self.last_request_unix_ms.to_string(),
            ),
            (field::ROUTERS, self.routers.to_string()),
            (field::GATEWAYS, self.gateways.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (id, v) in &self.endpoints {
            f.push((format!("endpoint.{id}.active"), v.to_string()));
        }
        f
    }

    /// The compact JSON pushed onto `<instance>:load:<fn>:history`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_compact() {
        assert_eq!(Num(3.0).to_string(), "3");
        assert_eq!(Num(-0.0001).to_string(), "0");
        assert_eq!(Num(2.5).to_string(), "2.5");
        assert_eq!(Num(1.0 / 3.0).to_string(), "0.333");
        assert_eq!(serde_json::to_string(&Num(4.0)).expect("json"), "4");
        assert_eq!(serde_json::to_string(&Num(0.125)).expect("json"), "0.125");
    }
}
