//! Process wiring: flags, the Tokio runtime, the xDS client, the pingora proxy service, the
//! admin API, and graceful shutdown.
//!
//! The pingora listening service runs on the router's own multi-threaded Tokio runtime
//! rather than under `pingora::server::Server`: Server's graceful terminate sleeps its whole
//! grace period before exiting, whereas the router stops accepting, lets the requests in
//! progress finish, and exits as soon as the last one is done (bounded by
//! `--shutdown-grace-seconds`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::server::configuration::ServerConf;
use pingora::services::Service as _;
use sluice_common::xds::client::{self, ClientConfig};
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::config::{self, validate};
use crate::error::{ErrorKind, RouterError};
use crate::lifecycle::Lifecycle;
use crate::proxy::RouterProxy;

/// Router flags (each also read from its `SLUICE_*` environment variable).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "router",
    version,
    about = "Sluice router: the data plane (pingora)"
)]
pub struct Args {
    /// Env-file applied before flags are parsed (KEY=VALUE lines).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<String>,
    /// Address the proxy listens on.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "0.0.0.0:10000", value_parser = sluice_common::config::listen_addr)]
    pub listen: SocketAddr,
    /// Also serve the proxy on this Unix socket (for a gateway on the same machine: no
    /// network hop); a stale socket file is replaced. Unset: TCP only.
    #[arg(long, env = "SLUICE_LISTEN_UNIX")]
    pub listen_unix: Option<std::path::PathBuf>,
    /// Address of the admin API.
    #[arg(long, env = "SLUICE_ADMIN_LISTEN", default_value = "0.0.0.0:10001", value_parser = sluice_common::config::listen_addr)]
    pub admin_listen: SocketAddr,
    /// The xds-connector's gRPC address.
    #[arg(
        long,
        env = "SLUICE_XDS_SERVER",
        default_value = "http://127.0.0.1:18000"
    )]
    pub xds_server: String,
    /// File holding the xds-connector's token (unset: none is sent).
    #[arg(long, env = "SLUICE_XDS_TOKEN_FILE")]
    pub xds_token_file: Option<std::path::PathBuf>,
    /// Node id shown by the control plane [default: router-<hostname>].
    #[arg(long, env = "SLUICE_NODE_ID")]
    pub node_id: Option<String>,
    /// Worker threads [default: half the CPUs, at least 1].
    #[arg(long, env = "SLUICE_THREADS")]
    pub threads: Option<usize>,
    /// statsD listener (`host:port`, e.g. `stats-listener:8125`) the router reports load to;
    /// empty: no statsD export.
    #[arg(long, env = "SLUICE_STATSD", default_value = "")]
    pub statsd: String,
    /// How often gauges and counters are sent to statsD (latency samples go with them).
    #[arg(long, env = "SLUICE_STATSD_FLUSH_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=sluice_common::config::MAX_SETTING_MS))]
    pub statsd_flush_ms: u64,
    /// Longest wait at start for the control plane's configuration before the proxy listens
    /// anyway (a router listening without it would answer 404 for every function).
    #[arg(long, env = "SLUICE_SYNC_WAIT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub sync_wait_seconds: u64,
    /// Longest wait for requests in progress after SIGTERM before exiting anyway.
    #[arg(long, env = "SLUICE_SHUTDOWN_GRACE_SECONDS", default_value_t = 60)]
    pub shutdown_grace_seconds: u64,
}

impl Args {
    fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| "unknown".to_string());
            format!("router-{host}")
        })
    }

    fn threads(&self) -> usize {
        self.threads
            .filter(|&t| t > 0)
            .unwrap_or_else(sluice_common::default_proxy_threads)
    }
}

/// Runs the router until SIGTERM/SIGINT; returns the process exit code.
pub fn run(args: Args) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads())
        .thread_name("router")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return 1;
        }
    };
    let code = match rt.block_on(serve(args)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "router failed");
            1
        }
    };
    // Every request already finished (or the grace period ran out): do not wait for idle
    // background tasks.
    rt.shutdown_background();
    code
}

async fn serve(args: Args) -> Result<(), RouterError> {
    let node_id = args.node_id();
    let xds_token = sluice_common::xds::token_from(args.xds_token_file.as_deref())
        .map_err(|e| RouterError::new(ErrorKind::Startup, e))?;
    let admin_listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .map_err(|e| {
            RouterError::with_source(
                ErrorKind::Startup,
                format!("cannot listen on {}", args.admin_listen),
                e,
            )
        })?;
    // Check the proxy address up front (after the admin socket is bound, so the two cannot
    // collide): pingora retries a busy port for 30 s and then panics inside its task.
    std::net::TcpListener::bind(args.listen).map_err(|e| {
        RouterError::with_source(
            ErrorKind::Startup,
            format!("cannot listen on {}", args.listen),
            e,
        )
    })?;

    let registry = config::Registry::new();
    let lifecycle = Lifecycle::new();
    let stop = CancellationToken::new();

    let sub = client::spawn_with_state(
        ClientConfig {
            server: args.xds_server.clone(),
            node_id: node_id.clone(),
            node_kind: "router".to_string(),
            token: xds_token,
        },
        validate::validate,
        stop.clone(),
    );
    tokio::spawn(config::follow(registry.clone(), sub.snapshot.clone()));

    let admin_app = admin::router(AdminState {
        registry: registry.clone(),
        lifecycle: lifecycle.clone(),
        node_id: node_id.clone(),
        xds: sub.state.clone(),
    });
    let admin_task = tokio::spawn(async move {
        if let Err(e) = axum::serve(admin_listener, admin_app).await {
            tracing::error!(error = %e, "admin server failed");
        }
    });

    let conf = Arc::new(ServerConf {
        threads: args.threads(),
        ..ServerConf::default()
    });
    let mut proxy = RouterProxy::new(registry.clone(), lifecycle.clone());
    if !args.statsd.is_empty() {
        let statsd = crate::telemetry::statsd::Statsd::new(&node_id);
        proxy = proxy.with_statsd(statsd.clone());
        tokio::spawn(crate::telemetry::statsd::run(
            statsd,
            registry.clone(),
            args.statsd.clone(),
            Duration::from_millis(args.statsd_flush_ms.max(10)),
            stop.clone(),
        ));
    }
    // Listen once the configuration is in: a restarted router must not answer 404 to the
    // calls a gateway sends it in the meantime (the gateway retries a refused connect).
    let wait = Duration::from_secs(args.sync_wait_seconds);
    if !configured(&registry, wait).await {
        tracing::warn!(
            waited_s = args.sync_wait_seconds,
            "no configuration from the control plane yet; serving anyway"
        );
    }
    let mut service = pingora::proxy::http_proxy_service_with_name(&conf, proxy, "sluice-router");
    service.add_tcp(&args.listen.to_string());
    let unix = args
        .listen_unix
        .as_deref()
        .filter(|p| !p.as_os_str().is_empty());
    if let Some(path) = unix {
        let max = sluice_common::config::MAX_UNIX_SOCKET_PATH;
        let path = path.to_str().filter(|p| p.len() <= max).ok_or_else(|| {
            RouterError::new(
                ErrorKind::Startup,
                format!(
                    "SLUICE_LISTEN_UNIX `{}`: not UTF-8 or longer than {max} bytes",
                    path.display()
                ),
            )
        })?;
        // Owner and group (the gateway runs as the router's group) may connect; no one else.
        use std::os::unix::fs::PermissionsExt;
        service.add_uds(path, Some(std::fs::Permissions::from_mode(0o660)));
    }
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut proxy_task = tokio::spawn(async move {
        service.start_service(None, shutdown_rx, 1).await;
    });
    tracing::info!(
        listen = %args.listen,
        listen_unix = ?unix,
        admin = %args.admin_listen,
        xds = %args.xds_server,
        node_id = %node_id,
        "router started"
    );

    let result = tokio::select! {
        _ = sluice_common::shutdown::signal() => Ok(()),
        res = &mut proxy_task => Err(RouterError::new(
            ErrorKind::Startup,
            format!("proxy service stopped unexpectedly: {res:?}"),
        )),
    };
    if result.is_ok() {
        lifecycle.begin_shutdown();
        let _ = shutdown_tx.send(true);
        // Accept loops end and idle keep-alive connections close; requests in progress run on.
        let _ = proxy_task.await;
        let grace = Duration::from_secs(args.shutdown_grace_seconds);
        let in_progress = lifecycle.in_progress();
        tracing::info!(
            in_progress,
            "stopped accepting; waiting for requests in progress"
        );
        if lifecycle.wait_idle(grace).await {
            tracing::info!("all requests finished; exiting");
        } else {
            tracing::warn!(
                in_progress = lifecycle.in_progress(),
                "grace period over; exiting with requests in progress"
            );
        }
    }
    stop.cancel();
    admin_task.abort();
    result
}

/// Waits until the registry has applied every resource type at least once, or `wait` passed
/// (false).
async fn configured(registry: &config::Registry, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let snap = registry.snapshot();
        if sluice_common::xds::TYPES
            .iter()
            .all(|t| snap.versions.contains_key(*t))
        {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
