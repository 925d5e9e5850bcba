//! The load contract between the proxies (router, gateway), the stats-listener and the
//! orchestrator's autoscaler: statsD metric names, the Redis key layout of the per-function
//! load windows, the fields of a window, and the scale signal.
//!
//! ```text
//! proxies ──statsD──► stats-listener ──HSET <instance>:load:<fn>──► Redis ◄── autoscaler
//!                                     └─PUBLISH <instance>:scale-signal──────► autoscaler
//! ```

use serde::{Deserialize, Serialize};

/// statsD metric names (`cluster.<fn>.<suffix>`), and the tag that names the sender.
pub mod metric {
    /// Router: requests holding a replica slot (gauge).
    pub const ACTIVE: &str = "upstream_rq_active";
    /// Router: requests waiting in the router's queue (gauge).
    pub const PENDING: &str = "upstream_rq_pending_active";
    /// Router: finished requests (counter).
    pub const TOTAL: &str = "upstream_rq_total";
    /// Router: service time in ms, from the replica slot to the end of the response (timer);
    /// a wait in the router's queue is not part of it.
    pub const TIME: &str = "upstream_rq_time";
    /// Router: responses by status class (counters).
    pub const STATUS_2XX: &str = "upstream_rq_2xx";
    pub const STATUS_4XX: &str = "upstream_rq_4xx";
    pub const STATUS_5XX: &str = "upstream_rq_5xx";
    /// Router: `endpoint.<id>.upstream_rq_active`, in flight to one replica (gauge).
    pub const ENDPOINT_PREFIX: &str = "endpoint.";
    /// Gateway: calls that arrived for the function (counter): the arrival rate.
    pub const ARRIVED: &str = "gateway_rq_arrived";
    /// Gateway: calls held at the gateway, waiting for ready capacity (gauge).
    pub const HELD: &str = "gateway_rq_held";
    /// Tag naming a router (`#router:<node-id>`).
    pub const ROUTER_TAG: &str = "router";
    /// Tag naming a gateway (`#gateway:<node-id>`).
    pub const GATEWAY_TAG: &str = "gateway";

    /// `cluster.<function>.<suffix>`.
    pub fn name(function: &str, suffix: &str) -> String {
        format!("cluster.{function}.{suffix}")
    }
}

/// Redis hash `<instance>:load:<fn>`: the last closed window of a function.
pub fn load_key(instance: &str, function: &str) -> String {
    format!("{instance}:load:{function}")
}

/// Redis list `<instance>:load:<fn>:history`: recent windows as JSON, newest first.
pub fn history_key(instance: &str, function: &str) -> String {
    format!("{instance}:load:{function}:history")
}

/// Redis pub/sub channel of [`Signal`]s.
pub fn signal_channel(instance: &str) -> String {
    format!("{instance}:scale-signal")
}

/// Field names of the load hash (the history's JSON uses the same names).
pub mod field {
    pub const WINDOW_END_UNIX_MS: &str = "window_end_unix_ms";
    pub const WINDOW_MS: &str = "window_ms";
    pub const ACTIVE: &str = "active";
    pub const PENDING: &str = "pending";
    pub const ACTIVE_MAX: &str = "active_max";
    pub const PENDING_MAX: &str = "pending_max";
    /// Held at gateways at the window end (sum over live gateways).
    pub const HELD: &str = "held";
    pub const HELD_MAX: &str = "held_max";
    /// Finished requests per second.
    pub const RPS: &str = "rps";
    /// Calls arrived at gateways per second.
    pub const ARRIVAL_RPS: &str = "arrival_rps";
    pub const RQ_TOTAL: &str = "rq_total";
    pub const RQ_2XX: &str = "rq_2xx";
    pub const RQ_4XX: &str = "rq_4xx";
    pub const RQ_5XX: &str = "rq_5xx";
    pub const P50_MS: &str = "p50_ms";
    pub const P95_MS: &str = "p95_ms";
    pub const P99_MS: &str = "p99_ms";
    /// Mean service time of the window's samples (0 when none).
    pub const MEAN_MS: &str = "mean_ms";
    pub const LATENCY_SAMPLES: &str = "latency_samples";
    pub const LAST_REQUEST_UNIX_MS: &str = "last_request_unix_ms";
    pub const ROUTERS: &str = "routers";
    /// Gateways reporting the function (0: arrivals are not counted, use `rps`).
    pub const GATEWAYS: &str = "gateways";
}

/// The scale signal, published the moment calls start to wait (at a router or a gateway).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub function: String,
    /// Waiting in router queues.
    pub pending: f64,
    /// Holding a replica slot.
    #[serde(default)]
    pub active: f64,
    /// Held at gateways.
    #[serde(default)]
    pub held: f64,
    #[serde(default)]
    pub unix_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_names() {
        assert_eq!(load_key("sluice", "hello"), "sluice:load:hello");
        assert_eq!(history_key("sluice", "hello"), "sluice:load:hello:history");
        assert_eq!(signal_channel("sluice"), "sluice:scale-signal");
        assert_eq!(
            metric::name("hello", metric::HELD),
            "cluster.hello.gateway_rq_held"
        );
    }

    #[test]
    fn signals_without_the_newer_fields_still_parse() {
        let s: Signal = serde_json::from_str(r#"{"function":"a","pending":3}"#).expect("parse");
        assert_eq!(s.held, 0.0);
        assert_eq!(s.active, 0.0);
    }
}
