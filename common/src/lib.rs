//! Types and helpers shared by every Sluice component.
//!
//! * [`registry`] — the function registry (`global-function-definition.yml`): parsing,
//!   validation with line/column errors, defaults.
//! * [`auth`] — credentials of the control API and of `auth: key` functions: keys, scopes.
//! * [`config`] — the env-file loader every binary uses for `--config`.
//! * [`telemetry`] — `tracing` set-up (text or JSON logs).
//! * [`shutdown`] — a future that resolves on SIGTERM / SIGINT.
//! * [`load`] — the load contract: statsD names, the Redis load windows, the scale signal.
//! * [`sip`] — the SIP contract: protobuf events to SIP handler functions, actions back.
//! * [`state`] — function state in Redis: ACL user, key prefix and credentials per function.
//! * [`mdf`] — the MDF relay pool as functions see it: control URLs and token.
//! * [`runtime`] — the runtime token: only the platform may call a function's runtime.
//! * [`secrets`] — function secrets: names, where a function reads them, size bounds.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod healthcheck;
pub mod load;
pub mod mdf;
pub mod registry;
pub mod runtime;
pub mod secrets;
pub mod shutdown;
pub mod sip;
pub mod state;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod xds;

/// The version every Sluice image tag is pinned to.
pub const SLUICE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Label put on every container the orchestrator manages.
pub const LABEL_MANAGED: &str = "sluice.managed";
/// Label naming the installation (`SLUICE_INSTANCE`) a container belongs to.
pub const LABEL_INSTANCE: &str = "sluice.instance";
/// Label naming the function a container serves.
pub const LABEL_FUNCTION: &str = "sluice.function";

/// Default worker threads of each proxy (gateway, router): half the CPUs, at least one. The
/// gateway and the router usually share a machine with each other, the load and the
/// functions; measured on 2 cores, one event-loop thread each beat two (fewer cross-thread
/// wake-ups: see BENCHMARKS.md). `SLUICE_THREADS` overrides it.
pub fn default_proxy_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get() / 2)
        .max(1)
}

/// True when `name` is a DNS label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 63 {
        return false;
    }
    let ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    ok(b[0]) && ok(b[b.len() - 1]) && b.iter().all(|&c| ok(c) || c == b'-')
}

#[cfg(test)]
mod tests {
    use super::is_dns_label;

    #[test]
    fn dns_labels() {
        for good in ["a", "hello", "fn-1", "0", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in ["", "-a", "a-", "Hello", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }
}
