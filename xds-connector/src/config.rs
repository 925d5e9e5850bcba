//! Connector settings: flags, `SLUICE_*` environment variables, or a `--config` env-file.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "xds-connector",
    version,
    about = "Sluice control plane: xDS-style gRPC for routers and gateways, REST for the orchestrator"
)]
pub struct Config {
    /// Env-file with SLUICE_* settings (applied before flags and the environment are read).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address of the gRPC AggregatedDiscoveryService.
    #[arg(long, env = "SLUICE_GRPC_LISTEN", default_value = "0.0.0.0:18000")]
    pub grpc_listen: SocketAddr,

    /// Address of the REST API (`/v1/...`, `/healthz`).
    #[arg(long, env = "SLUICE_REST_LISTEN", default_value = "0.0.0.0:8081")]
    pub rest_listen: SocketAddr,

    /// Redis holding the snapshot (key `<instance>:xds:snapshot`).
    #[arg(
        long,
        env = "SLUICE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,

    /// File holding the Redis `default` user's password (the compose stack's `redis` service
    /// writes one to a volume only control-plane services mount); unset: no password.
    #[arg(long, env = "SLUICE_REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<std::path::PathBuf>,

    /// File holding the token both APIs require (`authorization: Bearer <token>` on the gRPC
    /// stream and on every REST path but `/healthz`). Unset: the APIs are open (logged).
    #[arg(long, env = "SLUICE_XDS_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,

    /// Name of this Sluice installation; prefix of the Redis keys.
    #[arg(long, env = "SLUICE_INSTANCE", default_value = "sluice")]
    pub instance: String,

    /// Longest wait, in seconds, for open streams and REST calls to finish after SIGTERM.
    #[arg(long, env = "SLUICE_SHUTDOWN_GRACE_SECS", default_value_t = 5)]
    pub shutdown_grace_secs: u64,
}
