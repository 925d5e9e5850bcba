//! The metric names the router emits and what each means (see the crate README).
//!
//! ```text
//! cluster.<fn>.upstream_rq_active                   g   requests in flight to replicas
//! cluster.<fn>.upstream_rq_pending_active           g   requests waiting in the router's queue
//! cluster.<fn>.upstream_rq_total                    c   finished requests
//! cluster.<fn>.upstream_rq_time                     ms  request latency (h and d accepted too)
//! cluster.<fn>.upstream_rq_2xx | _4xx | _5xx        c   responses by status class
//! cluster.<fn>.endpoint.<id>.upstream_rq_active     g   in flight to one replica
//! cluster.<fn>.gateway_rq_held                      g   calls held at a gateway
//! cluster.<fn>.gateway_rq_arrived                   c   calls that arrived at a gateway
//! ```
//!
//! The names are the contract in `sluice_common::load::metric`.
//!
//! `<fn>` must be a DNS label (a function name); anything else is "other" and ignored.

use crate::parse::MetricType;
use sluice_common::load::metric;

/// A metric this listener aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known<'a> {
    Active,
    Pending,
    Total,
    Time,
    Status2xx,
    Status4xx,
    Status5xx,
    /// In-flight requests to one endpoint (replica) `id`.
    EndpointActive(&'a str),
    /// Calls held at a gateway.
    Held,
    /// Calls that arrived at a gateway.
    Arrived,
}

impl Known<'_> {
    /// Whether a line of type `t` is a valid report of this metric.
    pub fn accepts(&self, t: MetricType) -> bool {
        match self {
            Known::Active | Known::Pending | Known::EndpointActive(_) | Known::Held => {
                t == MetricType::Gauge
            }
            Known::Total
            | Known::Status2xx
            | Known::Status4xx
            | Known::Status5xx
            | Known::Arrived => t == MetricType::Counter,
            Known::Time => t.is_sample(),
        }
    }
}

/// A recognised metric name: the function it is about and which metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name<'a> {
    pub function: &'a str,
    pub metric: Known<'a>,
}

/// Longest endpoint id kept (longer ids are "other").
pub const MAX_ENDPOINT_ID: usize = 128;

/// Recognises a router metric name; `None` for anything else.
pub fn classify(name: &str) -> Option<Name<'_>> {
    let rest = name.strip_prefix("cluster.")?;
    let (function, suffix) = rest.split_once('.')?;
    if !sluice_common::is_dns_label(function) {
        return None;
    }
    let metric = match suffix {
        metric::ACTIVE => Known::Active,
        metric::PENDING => Known::Pending,
        metric::TOTAL => Known::Total,
        metric::TIME => Known::Time,
        metric::STATUS_2XX => Known::Status2xx,
        metric::STATUS_4XX => Known::Status4xx,
        metric::STATUS_5XX => Known::Status5xx,
        metric::HELD => Known::Held,
        metric::ARRIVED => Known::Arrived,
        other => {
            let id = other
                .strip_prefix(metric::ENDPOINT_PREFIX)?
                .strip_suffix(metric::ACTIVE)?
                .strip_suffix('.')?;
            if id.is_empty() || id.len() > MAX_ENDPOINT_ID {
                return None;
            }
            Known::EndpointActive(id)
        }
    };
    Some(Name { function, metric })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_names_are_recognised() {
        let cases = [
            ("cluster.hello.upstream_rq_active", "hello", Known::Active),
            (
                "cluster.fn-1.upstream_rq_pending_active",
                "fn-1",
                Known::Pending,
            ),
            ("cluster.a.upstream_rq_total", "a", Known::Total),
            ("cluster.a.upstream_rq_time", "a", Known::Time),
            ("cluster.a.upstream_rq_2xx", "a", Known::Status2xx),
            ("cluster.a.upstream_rq_4xx", "a", Known::Status4xx),
            ("cluster.a.upstream_rq_5xx", "a", Known::Status5xx),
            (
                "cluster.a.endpoint.r-1.upstream_rq_active",
                "a",
                Known::EndpointActive("r-1"),
            ),
            (
                "cluster.a.endpoint.10.0.0.7_8080.upstream_rq_active",
                "a",
                Known::EndpointActive("10.0.0.7_8080"),
            ),
            ("cluster.a.gateway_rq_held", "a", Known::Held),
            ("cluster.a.gateway_rq_arrived", "a", Known::Arrived),
        ];
        for (name, function, metric) in cases {
            assert_eq!(classify(name), Some(Name { function, metric }), "{name}");
        }
    }

    #[test]
    fn other_names_are_not() {
        for name in [
            "cluster.hello.upstream_rq_timeout",
            "cluster.Hello.upstream_rq_active",
            "cluster..upstream_rq_active",
            "cluster.hello",
            "hello.upstream_rq_active",
            "cluster.a.endpoint..upstream_rq_active",
            "cluster.a.endpoint.x.upstream_rq_total",
            "server.live",
        ] {
            assert_eq!(classify(name), None, "{name}");
        }
    }

    #[test]
    fn types_must_match_the_metric() {
        assert!(Known::Active.accepts(MetricType::Gauge));
        assert!(!Known::Active.accepts(MetricType::Counter));
        assert!(Known::Held.accepts(MetricType::Gauge));
        assert!(!Known::Held.accepts(MetricType::Counter));
        assert!(Known::Arrived.accepts(MetricType::Counter));
        assert!(!Known::Arrived.accepts(MetricType::Gauge));
        assert!(Known::Total.accepts(MetricType::Counter));
        assert!(!Known::Total.accepts(MetricType::Gauge));
        for t in [
            MetricType::Timer,
            MetricType::Histogram,
            MetricType::Distribution,
        ] {
            assert!(Known::Time.accepts(t));
        }
        assert!(!Known::Time.accepts(MetricType::Set));
    }
}
