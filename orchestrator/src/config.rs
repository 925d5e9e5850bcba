//! Orchestrator settings: flags, `SLUICE_*` environment variables, or a `--config` env-file.

use sluice_common::registry::Ceilings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address of the internal HTTP API (`/system/...`, `/healthz`).
    #[arg(long, env = "SLUICE_LISTEN", default_value = "0.0.0.0:8082", value_parser = sluice_common::config::listen_addr)]
    pub listen: SocketAddr,

    /// The function registry file; reloaded when it changes.
    #[arg(
        long,
        env = "SLUICE_REGISTRY",
        default_value = "global-function-definition.yml"
    )]
    pub registry: PathBuf,

    /// Folder holding the functions' `function_folder`s. Default: `faas-runtime/functions`
    /// next to the registry file.
    #[arg(long, env = "SLUICE_FUNCTIONS_DIR")]
    pub functions_dir: Option<PathBuf>,

    /// Redis holding the registry, desired replicas and replica lists.
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

    /// Redis as function containers with `state: redis` reach it (no credentials: each
    /// function gets its own user). Default: `SLUICE_REDIS_URL` without its credentials.
    #[arg(long, env = "SLUICE_STATE_REDIS_URL")]
    pub state_redis_url: Option<String>,

    /// File holding the `default` password of the state Redis, when it is a Redis of its
    /// own (`SLUICE_STATE_REDIS_URL` set: the compose stack's `state-redis`, the only Redis
    /// function containers can reach). The orchestrator makes functions' users there; their
    /// passwords derive from this one.
    #[arg(long, env = "SLUICE_STATE_REDIS_PASSWORD_FILE")]
    pub state_redis_password_file: Option<std::path::PathBuf>,

    /// Docker engine address (unix socket path or tcp://…); default: DOCKER_HOST or the local socket.
    #[arg(long, env = "SLUICE_DOCKER_HOST")]
    pub docker_host: Option<String>,

    /// Docker network every function container joins (created if missing).
    #[arg(long, env = "SLUICE_NETWORK", default_value = "sluice")]
    pub network: String,

    /// Name of this Sluice installation: containers get the label `sluice.instance=<this>`
    /// and only containers of the same instance are adopted. Also the prefix of container names
    /// and of Redis keys.
    #[arg(long, env = "SLUICE_INSTANCE", default_value = "sluice")]
    pub instance: String,

    /// Tag of the Sluice base images function images are built on
    /// (`sluice/python:<tag>`, `sluice/runtime:<tag>`, `sluice/rust-build:<tag>`).
    #[arg(long, env = "SLUICE_IMAGE_TAG", default_value = sluice_common::SLUICE_VERSION)]
    pub image_tag: String,

    /// Interval of the safety-net reconciliation with what Docker really runs.
    #[arg(long, env = "SLUICE_RESYNC_INTERVAL", default_value = "10s", value_parser = sluice_common::config::interval)]
    pub resync_interval: Duration,

    /// Interval between readiness probes of a starting replica.
    #[arg(long, env = "SLUICE_READY_POLL", default_value = "5ms", value_parser = sluice_common::config::interval)]
    pub ready_poll: Duration,

    /// REST address of the xds-connector (e.g. `http://xds-connector:8081`); empty: no data
    /// plane (replicas are not published anywhere).
    #[arg(long, env = "SLUICE_XDS_REST")]
    pub xds_rest: Option<String>,

    /// Admin addresses of the routers, comma-separated (e.g. `http://router:10001`): a replica
    /// is stopped only once every router has finished its in-flight requests to it.
    #[arg(long, env = "SLUICE_ROUTER_ADMIN", value_delimiter = ',')]
    pub router_admin: Vec<String>,

    /// How long, beyond the function's call timeout, a replica being removed may take to
    /// finish its in-flight requests before it is stopped anyway.
    #[arg(long, env = "SLUICE_DRAIN_SLACK", default_value = "5s", value_parser = sluice_common::config::interval)]
    pub drain_slack: Duration,

    /// Scale functions from the load the routers report (through the stats-listener and
    /// Redis). `false`: replicas change only by API calls and wake-ups.
    #[arg(long, env = "SLUICE_AUTOSCALE", default_value_t = true, action = clap::ArgAction::Set)]
    pub autoscale: bool,

    /// Longest wait between restarts of a crash-looping function.
    #[arg(long, env = "SLUICE_MAX_BACKOFF", default_value = "60s", value_parser = sluice_common::config::interval)]
    pub max_backoff: Duration,

    /// MDF relay instances always running (the pool is on when SLUICE_MDF_POOL_MAX > 0).
    #[arg(long, env = "SLUICE_MDF_POOL_MIN", default_value_t = 1)]
    pub mdf_pool_min: u16,

    /// Most MDF relay instances (0: no pool).
    #[arg(long, env = "SLUICE_MDF_POOL_MAX", default_value_t = 0)]
    pub mdf_pool_max: u16,

    /// MDF image; default `sluice/mdf:<SLUICE_IMAGE_TAG>`.
    #[arg(long, env = "SLUICE_MDF_IMAGE")]
    pub mdf_image: Option<String>,

    /// IP address MDF instances bind their RTP ports on (they run on the host network).
    #[arg(long, env = "SLUICE_MDF_MEDIA_IP", default_value = "127.0.0.1")]
    pub mdf_media_ip: String,

    /// Address MDF instances put in SDP (where phones send media); default: the media IP.
    #[arg(long, env = "SLUICE_MDF_ADVERTISE")]
    pub mdf_advertise: Option<String>,

    /// First RTP port of slot 0; slot n starts SLUICE_MDF_PORTS_PER_INSTANCE × n above.
    #[arg(long, env = "SLUICE_MDF_PORT_BASE", default_value_t = 20000)]
    pub mdf_port_base: u16,

    /// RTP/RTCP ports per instance (two per call participant).
    #[arg(long, env = "SLUICE_MDF_PORTS_PER_INSTANCE", default_value_t = 2000)]
    pub mdf_ports_per_instance: u16,

    /// Control API port of slot 0 (slot n: + n), on the function network's gateway address.
    #[arg(long, env = "SLUICE_MDF_CONTROL_PORT_BASE", default_value_t = 7090)]
    pub mdf_control_port_base: u16,

    /// Sessions (group calls) per instance.
    #[arg(long, env = "SLUICE_MDF_MAX_SESSIONS", default_value_t = 200)]
    pub mdf_max_sessions: u32,

    /// Launch another instance when the sessions reach this share of the capacity.
    #[arg(long, env = "SLUICE_MDF_SCALE_UP_AT", default_value_t = 0.8)]
    pub mdf_scale_up_at: f64,

    /// Drain an instance when the rest would stay under this share, for
    /// SLUICE_MDF_SCALE_DOWN_AFTER.
    #[arg(long, env = "SLUICE_MDF_SCALE_DOWN_AT", default_value_t = 0.5)]
    pub mdf_scale_down_at: f64,

    /// File holding the xds-connector's token (sent with every REST call to it; unset: none).
    #[arg(long, env = "SLUICE_XDS_TOKEN_FILE")]
    pub xds_token_file: Option<std::path::PathBuf>,

    /// File holding the admin password (basic auth as `admin` on every `/system` route;
    /// its first line, at least 12 characters). Read at each check, so replacing it rotates
    /// the password with no restart. `make up` generates it.
    #[arg(
        long,
        env = "SLUICE_ADMIN_PASSWORD_FILE",
        default_value = "secrets/admin-password"
    )]
    pub admin_password_file: std::path::PathBuf,

    /// File holding the key function secrets are sealed with in Redis (64 hex digits, its
    /// first line). Unset: secrets are off (`/system/secrets` answers 503 and a function
    /// listing secrets does not start). Set but unreadable or malformed: no start. `make up`
    /// generates it; the key never enters Redis.
    #[arg(long, env = "SLUICE_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<std::path::PathBuf>,

    /// Key rotation: the previous key's file. At start every value sealed with it is
    /// re-sealed with the current key (then this can be unset and the old key destroyed).
    #[arg(long, env = "SLUICE_SECRETS_PREVIOUS_KEY_FILE")]
    pub secrets_previous_key_file: Option<std::path::PathBuf>,

    /// Failed credential checks one client address may make at once...
    #[arg(long, env = "SLUICE_AUTH_FAILURE_BURST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub auth_failure_burst: u32,

    /// ...and how often it gets one more (10 a minute by default).
    #[arg(long, env = "SLUICE_AUTH_FAILURE_REFILL", default_value = "6s", value_parser = sluice_common::config::interval)]
    pub auth_failure_refill: Duration,

    /// Ceiling of `max_replicas` per function: a registry or deploy above it is refused.
    #[arg(long, env = "SLUICE_MAX_REPLICAS", default_value_t = Ceilings::default().max_replicas, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_replicas: u32,

    /// Ceiling of the functions' `max_replicas` added up: the platform never runs more.
    #[arg(long, env = "SLUICE_MAX_REPLICAS_TOTAL", default_value_t = Ceilings::default().max_replicas_total, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_replicas_total: u32,

    /// Ceiling of `limits.memory` per function (bytes, or `4Gi`, `512Mi`, …).
    #[arg(long, env = "SLUICE_MAX_MEMORY", default_value_t = Ceilings::default().max_memory_bytes, value_parser = sluice_common::registry::parse_size)]
    pub max_memory: u64,

    #[arg(long, env = "SLUICE_MDF_SCALE_DOWN_AFTER", default_value = "60s", value_parser = sluice_common::config::interval)]
    pub mdf_scale_down_after: Duration,
}

impl Config {
    /// The platform's ceilings a registry is validated against.
    pub fn ceilings(&self) -> Ceilings {
        Ceilings {
            max_replicas: self.max_replicas,
            max_replicas_total: self.max_replicas_total,
            max_memory_bytes: self.max_memory,
        }
    }

    pub fn functions_dir(&self) -> PathBuf {
        match &self.functions_dir {
            Some(d) => d.clone(),
            None => self
                .registry
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default()
                .join("faas-runtime")
                .join("functions"),
        }
    }
}
