//! What the parse stage hands the aggregator: one update of one router metric, already
//! classified, owning its strings (a packet's events travel as one `Vec<Event>`).

/// Which gauge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GaugeId {
    /// `upstream_rq_active`.
    Active,
    /// `upstream_rq_pending_active`.
    Pending,
    /// `endpoint.<id>.upstream_rq_active`.
    Endpoint(String),
    /// `gateway_rq_held`.
    Held,
}

/// Which counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterId {
    Total,
    Status2xx,
    Status4xx,
    Status5xx,
    /// `gateway_rq_arrived`.
    Arrived,
}

/// A gauge update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GaugeOp {
    Set(f64),
    Delta(f64),
}

/// What changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Gauge(GaugeId, GaugeOp),
    /// Counter increment, already scaled by 1 / sample rate.
    Count(CounterId, f64),
    /// One latency sample in milliseconds.
    Latency(f64),
}

/// One update from one router about one function.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub function: String,
    /// The sender: the `router:<node-id>` tag, or `gateway:<node-id>` for a gateway's lines
    /// ("" when the sender did not tag its lines).
    pub router: String,
    pub update: Update,
}
