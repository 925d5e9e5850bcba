//! The gateway's settings: command-line flags or `SLUICE_*` environment variables (a
//! `--config` env-file is applied before parsing, see `sluice_common::config`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::catalog::Defaults;

/// `gateway` — Sluice's front door: routes `/<fn>` and `/function/<fn>` to the router, holds
/// requests while a function scales from zero, proxies `/system/*` to the orchestrator.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version, about, long_about = None)]
pub struct Config {
    /// Env-file (`KEY=VALUE` lines) applied to the environment before the flags are parsed.
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address the HTTP proxy listens on.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,

    /// The router (upstream of every function call).
    #[arg(long, env = "SLUICE_ROUTER", default_value = "http://127.0.0.1:10000")]
    pub router: String,

    /// The orchestrator (`/system/*` and wake calls).
    #[arg(
        long,
        env = "SLUICE_ORCHESTRATOR",
        default_value = "http://127.0.0.1:8082"
    )]
    pub orchestrator: String,

    /// The xds-connector's gRPC endpoint.
    #[arg(
        long,
        env = "SLUICE_XDS_SERVER",
        default_value = "http://127.0.0.1:18000"
    )]
    pub xds_server: String,

    /// File holding the xds-connector's token (unset: none is sent).
    #[arg(long, env = "SLUICE_XDS_TOKEN_FILE")]
    pub xds_token_file: Option<std::path::PathBuf>,

    /// This gateway's xDS node id [default: gateway-<hostname>].
    #[arg(long, env = "SLUICE_NODE_ID")]
    pub node_id: Option<String>,

    /// Worker threads of the proxy [default: half the CPUs, at least 1].
    #[arg(long, env = "SLUICE_THREADS")]
    pub threads: Option<usize>,

    /// Cold-start hold used when a cluster sets `cold_start_timeout_ms` to 0.
    #[arg(
        long,
        env = "SLUICE_DEFAULT_COLD_START_TIMEOUT_MS",
        default_value_t = 30_000,
        value_parser = clap::value_parser!(u64).range(1..=sluice_common::config::MAX_SETTING_MS)
    )]
    pub default_cold_start_timeout_ms: u64,

    /// Body limit used when a cluster sets `max_body_bytes` to 0.
    #[arg(
        long,
        env = "SLUICE_DEFAULT_MAX_BODY_BYTES",
        default_value_t = 6_291_456
    )]
    pub default_max_body_bytes: u64,

    /// Function timeout used when a cluster sets `timeout_ms` to 0.
    #[arg(long, env = "SLUICE_DEFAULT_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=sluice_common::config::MAX_SETTING_MS))]
    pub default_timeout_ms: u64,

    /// How long `/system/*` calls may take (image builds can be slow).
    #[arg(long, env = "SLUICE_SYSTEM_TIMEOUT_MS", default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1..=sluice_common::config::MAX_SETTING_MS))]
    pub system_timeout_ms: u64,

    /// How long the router or the orchestrator may refuse connections (a restart) before a
    /// call gets 502: connects are retried with back-off within it, and one connect attempt
    /// is bounded by it.
    #[arg(
        long,
        env = "SLUICE_UPSTREAM_CONNECT_TIMEOUT_MS",
        default_value_t = 3_000,
        value_parser = clap::value_parser!(u64).range(1..=sluice_common::config::MAX_SETTING_MS)
    )]
    pub upstream_connect_timeout_ms: u64,

    /// `Retry-After` seconds sent with a 503 after a cold start timed out.
    #[arg(long, env = "SLUICE_COLD_START_RETRY_AFTER_SECS", default_value_t = 5)]
    pub cold_start_retry_after_secs: u64,

    /// statsD listener (`host:port`, e.g. `stats-listener:8125`) the gateway reports arrivals
    /// and held calls to (the autoscaler sizes replicas with them); empty: no export.
    #[arg(long, env = "SLUICE_STATSD", default_value = "")]
    pub statsd: String,

    /// How often arrivals and held calls are sent to statsD.
    #[arg(long, env = "SLUICE_STATSD_FLUSH_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=sluice_common::config::MAX_SETTING_MS))]
    pub statsd_flush_ms: u64,

    /// After SIGTERM: longest wait for in-flight requests (held ones included) before exit.
    #[arg(long, env = "SLUICE_GRACE_SECONDS", default_value_t = 30)]
    pub grace_seconds: u64,
}

impl Config {
    /// The xDS node id (explicit, else `gateway-<hostname>`).
    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .or_else(|| {
                    std::fs::read_to_string("/etc/hostname")
                        .ok()
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                })
                .unwrap_or_else(|| "local".to_string());
            format!("gateway-{host}")
        })
    }

    /// Worker threads (explicit, else half the CPUs: see
    /// [`sluice_common::default_proxy_threads`]).
    pub fn threads(&self) -> usize {
        self.threads
            .filter(|&n| n > 0)
            .unwrap_or_else(sluice_common::default_proxy_threads)
    }

    /// Per-cluster fallbacks.
    pub fn defaults(&self) -> Defaults {
        Defaults {
            cold_start_timeout: Duration::from_millis(self.default_cold_start_timeout_ms),
            max_body_bytes: self.default_max_body_bytes,
            timeout: Duration::from_millis(self.default_timeout_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::try_parse_from(["gateway"]).expect("defaults parse");
        assert_eq!(c.listen, "0.0.0.0:8080");
        assert_eq!(c.router, "http://127.0.0.1:10000");
        assert_eq!(c.orchestrator, "http://127.0.0.1:8082");
        assert_eq!(c.xds_server, "http://127.0.0.1:18000");
        assert!(c.node_id().starts_with("gateway-"));
        assert!(c.threads() >= 1);
    }

    #[test]
    fn zero_or_absurd_intervals_are_refused_by_name() {
        for (flag, value) in [
            ("--statsd-flush-ms", "0"),
            ("--default-timeout-ms", "0"),
            ("--system-timeout-ms", "999999999999"),
            ("--default-cold-start-timeout-ms", "0"),
        ] {
            let err = Config::try_parse_from(["gateway", flag, value])
                .expect_err("refused")
                .to_string();
            assert!(err.contains(flag), "{flag}={value}: {err}");
        }
    }
}
