//! Sluice router: the data plane between the gateway and the function replicas.
//!
//! Module map (linkerd2-proxy / pingora style, one role per module):
//! * [`balance`] — least-request power-of-two-choices selector respecting per-endpoint caps.
//! * [`cluster`] — per-function state: endpoints with in-flight counters, the draining set,
//!   the bounded FIFO queue, and the [`cluster::Lease`] that holds a slot.
//! * [`config`] — applying xDS snapshots atomically; the router's validator.
//! * [`proxy`] — the pingora `ProxyHttp` implementation (routing, queueing, retry, errors).
//! * [`admin`] — the admin HTTP API on :10001.
//! * [`telemetry`] — per-cluster and per-endpoint counters kept in atomics.
//! * [`lifecycle`] — in-flight request tracking for graceful shutdown.
//! * [`server`] — wiring: runtime, services, xDS client, shutdown.
#![forbid(unsafe_code)]

pub mod admin;
pub mod balance;
pub mod cluster;
pub mod config;
pub mod error;
pub mod lifecycle;
pub mod proxy;
pub mod server;
pub mod telemetry;
