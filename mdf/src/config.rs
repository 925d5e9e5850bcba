//! Settings: flags, `SLUICE_MDF_*` environment variables, or a `--config` env-file (applied
//! by `sluice_common::config::load_or_exit` before parsing). Defaults show in `--help`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::session::Latch;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "mdf",
    version,
    about = "Sluice MDF: relays RTP from a group call's floor holder to the other members, with MCPTT floor control",
    after_help = "`mdf healthcheck [URL]` GETs URL (default: own /healthz) and exits 0 on 2xx."
)]
pub struct Config {
    /// Env-file with SLUICE_* settings (applied before flags and the environment are read).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address of the control API (sessions, status, drain, `/healthz`).
    #[arg(
        long,
        env = "SLUICE_MDF_CONTROL_LISTEN",
        default_value = "127.0.0.1:7090"
    )]
    pub control_listen: SocketAddr,

    /// IP address the RTP/RTCP ports are bound on. Loopback by default: set 0.0.0.0 (and
    /// SLUICE_MDF_ADVERTISE) to let phones on the network in.
    #[arg(long, env = "SLUICE_MDF_MEDIA_IP", default_value = "127.0.0.1")]
    pub media_ip: IpAddr,

    /// Address put in SDP, where phones send media; default: the media IP (required when it
    /// is 0.0.0.0).
    #[arg(long, env = "SLUICE_MDF_ADVERTISE")]
    pub advertise: Option<String>,

    /// First port of the RTP/RTCP range (pairs: even RTP, RTCP above it).
    #[arg(long, env = "SLUICE_MDF_PORT_MIN", default_value_t = 20000)]
    pub port_min: u16,

    /// Last port of the range.
    #[arg(long, env = "SLUICE_MDF_PORT_MAX", default_value_t = 29999)]
    pub port_max: u16,

    /// Sessions this instance takes; beyond it session requests get 503 (try another).
    #[arg(long, env = "SLUICE_MDF_MAX_SESSIONS", default_value_t = 1000)]
    pub max_sessions: usize,

    /// Legs (participants) per session.
    #[arg(long, env = "SLUICE_MDF_MAX_LEGS", default_value_t = 256)]
    pub max_legs: usize,

    /// Longest talk burst before the floor is revoked (a session may set its own).
    #[arg(long, env = "SLUICE_MDF_MAX_TALK", default_value = "30s", value_parser = sluice_common::config::interval)]
    pub max_talk: Duration,

    /// How a leg's media source is learned: `sdp` (only from its SDP's IP address) or `any`
    /// (the first packet's source, for phones behind NAT).
    #[arg(long, env = "SLUICE_MDF_LATCH", value_enum, default_value = "sdp")]
    pub latch: Latch,

    /// Name of this instance in status and logs; default: the host name.
    #[arg(long, env = "SLUICE_MDF_INSTANCE")]
    pub instance: Option<String>,

    /// File holding the bearer token the control API requires (none: no token).
    #[arg(long, env = "SLUICE_MDF_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// The bearer token itself (the orchestrator's pool passes it so); the file wins.
    #[arg(long, env = "SLUICE_MDF_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Relay worker threads (0: one per core).
    #[arg(long, env = "SLUICE_MDF_THREADS", default_value_t = 0)]
    pub threads: usize,
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.advertise_host().is_none() && self.media_ip.is_unspecified() {
            return Err(format!(
                "SLUICE_MDF_MEDIA_IP is {}: set SLUICE_MDF_ADVERTISE to the address phones reach",
                self.media_ip
            ));
        }
        if self.port_min >= self.port_max {
            return Err("SLUICE_MDF_PORT_MIN must be below SLUICE_MDF_PORT_MAX".into());
        }
        if self.max_sessions == 0 || self.max_legs == 0 {
            return Err("SLUICE_MDF_MAX_SESSIONS and SLUICE_MDF_MAX_LEGS must be > 0".into());
        }
        if self.max_talk.is_zero() {
            return Err("SLUICE_MDF_MAX_TALK must be > 0".into());
        }
        Ok(())
    }

    fn advertise_host(&self) -> Option<String> {
        self.advertise.clone().filter(|a| !a.trim().is_empty())
    }

    pub fn advertise(&self) -> String {
        self.advertise_host()
            .unwrap_or_else(|| self.media_ip.to_string())
    }

    pub fn instance(&self) -> String {
        self.instance
            .clone()
            .filter(|i| !i.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "mdf".into())
    }

    pub fn token(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.token_file else {
            return Ok(self.token.clone().filter(|t| !t.trim().is_empty()));
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("SLUICE_MDF_TOKEN_FILE {}: {e}", path.display()))?;
        let token = text.trim().to_string();
        if token.is_empty() {
            return Err(format!("SLUICE_MDF_TOKEN_FILE {} is empty", path.display()));
        }
        Ok(Some(token))
    }
}
