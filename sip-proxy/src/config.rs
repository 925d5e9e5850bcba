//! Settings: flags, `SLUICE_*` environment variables, or a `--config` env-file (applied by
//! `sluice_common::config::load_or_exit` before parsing). Defaults show in `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::handler::{Routes, DEFAULT_ROUTES};

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "sip-proxy",
    version,
    about = "Sluice sip-proxy: SIP over UDP/TCP ⇄ protobuf calls of handler functions through the gateway",
    after_help = "`sip-proxy healthcheck [URL]` GETs URL (default: own /healthz) and exits 0 on 2xx."
)]
pub struct Config {
    /// Env-file with SLUICE_* settings (applied before flags and the environment are read).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address SIP is received on, over UDP and TCP. Loopback by default: set 0.0.0.0:5060
    /// (and SLUICE_SIP_ADVERTISE) to let phones on the network in.
    #[arg(long, env = "SLUICE_SIP_LISTEN", default_value = "127.0.0.1:5060")]
    pub listen: SocketAddr,

    /// Host put in the proxy's Via and given to handlers as `local_address`; default: the
    /// listen address (required when listening on 0.0.0.0).
    #[arg(long, env = "SLUICE_SIP_ADVERTISE")]
    pub advertise: Option<String>,

    /// The gateway handler functions are called through.
    #[arg(long, env = "SLUICE_GATEWAY", default_value = "http://127.0.0.1:8080")]
    pub gateway: String,

    /// Method → handler function, `METHOD=function,...`.
    #[arg(long, env = "SLUICE_SIP_ROUTES", default_value = DEFAULT_ROUTES)]
    pub routes: String,

    /// Address of the admin HTTP API (`/healthz`, `/v1/stats`).
    #[arg(
        long,
        env = "SLUICE_SIP_ADMIN_LISTEN",
        default_value = "127.0.0.1:5065"
    )]
    pub admin_listen: SocketAddr,

    /// Longest wait for a handler call (the gateway's cold start included).
    #[arg(long, env = "SLUICE_SIP_HANDLER_TIMEOUT", default_value = "30s", value_parser = sluice_common::config::interval)]
    pub handler_timeout: Duration,

    /// Handler calls in flight at once; beyond it calls queue (up to the same number again),
    /// then requests get 503.
    #[arg(long, env = "SLUICE_SIP_MAX_IN_FLIGHT", default_value_t = 2048)]
    pub max_in_flight: usize,

    /// Largest SIP message accepted (bytes); larger ones get 513.
    #[arg(long, env = "SLUICE_SIP_MAX_MESSAGE", default_value_t = 65_535)]
    pub max_message: usize,

    /// Most header lines in one message.
    #[arg(long, env = "SLUICE_SIP_MAX_HEADERS", default_value_t = 128)]
    pub max_headers: usize,

    /// Most TCP connections at once (in and out).
    #[arg(long, env = "SLUICE_SIP_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// RFC 3261 T1 (RTT estimate): retransmission and timeout timers derive from it.
    #[arg(long, env = "SLUICE_SIP_T1", default_value = "500ms", value_parser = sluice_common::config::interval)]
    pub t1: Duration,

    /// statsD target for the `sip.*` counters (host:port); none by default.
    #[arg(long, env = "SLUICE_STATSD")]
    pub statsd: Option<String>,
}

impl Config {
    pub fn validate(&self) -> Result<Routes, String> {
        if self.advertise_host().is_none() && self.listen.ip().is_unspecified() {
            return Err(format!(
                "SLUICE_SIP_LISTEN is {}: set SLUICE_SIP_ADVERTISE to the address clients reach",
                self.listen
            ));
        }
        if self.max_in_flight == 0 || self.max_connections == 0 {
            return Err(
                "SLUICE_SIP_MAX_IN_FLIGHT and SLUICE_SIP_MAX_CONNECTIONS must be > 0".into(),
            );
        }
        if self.t1.is_zero() {
            return Err("SLUICE_SIP_T1 must be > 0".into());
        }
        if !self.gateway.starts_with("http://") {
            return Err(format!(
                "SLUICE_GATEWAY `{}` must be an http:// URL",
                self.gateway
            ));
        }
        Routes::parse(&self.routes).map_err(|e| format!("SLUICE_SIP_ROUTES: {e}"))
    }

    fn advertise_host(&self) -> Option<String> {
        self.advertise.clone().filter(|a| !a.trim().is_empty())
    }

    pub fn advertise(&self) -> String {
        self.advertise_host()
            .unwrap_or_else(|| self.listen.ip().to_string())
    }
}
