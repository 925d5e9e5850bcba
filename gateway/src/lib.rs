//! Sluice's gateway: the front door of the data plane (pingora, `:8080`).
//!
//! It routes `/<fn>` and `/function/<fn>` to the router with `X-Sluice-Function`, answers
//! unknown functions (404) and oversized bodies (413) itself, holds requests while a function
//! scales from zero (one wake call per cold start), and proxies `/system/*` to the
//! orchestrator. What exists and what is ready comes from the xDS stream only.
//!
//! Module map:
//! * [`config`] — flags / `SLUICE_*` environment.
//! * [`xds`] — the xDS subscription (node kind `gateway`).
//! * [`catalog`] — lookups in the accepted snapshot (function → cluster, ready replicas).
//! * [`routes`] — path parsing, reserved segments, DNS-label names.
//! * [`limits`] — body limits (`Content-Length` up front, chunked bodies buffered to the limit).
//! * [`admission`] — per-function FIFO of held calls, released at the rate ready capacity
//!   takes them; arrivals and held calls exported over statsD.
//! * [`coldstart`] — per-function holds and the coalesced wake call.
//! * [`proxy`] — the `ProxyHttp` implementation, JSON responses, buffered forwarding.
//! * [`upstream`] — router / orchestrator addresses (resolved off the request path).
//! * [`stats`] — counters for `/healthz`, in-flight tracking.
//! * [`shutdown`] — graceful SIGTERM.
//! * [`error`] — the crate's error type.
#![forbid(unsafe_code)]

pub mod admission;
pub mod auth;
pub mod catalog;
pub mod coldstart;
pub mod config;
pub mod error;
pub mod limits;
pub mod proxy;
pub mod routes;
pub mod shutdown;
pub mod stats;
pub mod upstream;
pub mod xds;

use std::sync::Arc;
use std::time::Duration;

use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use tokio_util::sync::CancellationToken;

use crate::admission::Gates;
use crate::catalog::Catalog;
use crate::coldstart::wake::Waker;
use crate::coldstart::ColdStarts;
use crate::config::Config;
use crate::error::{ErrorKind, GatewayError};
use crate::proxy::{Gateway, Settings};
use crate::stats::{InFlight, Stats};
use crate::upstream::UpstreamAddr;

/// How long one wake call may take.
const WAKE_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the gateway until SIGTERM/SIGINT (see [`shutdown`]). Returns only on a start-up error
/// or after pingora's own shutdown.
/// Attempts of one call to connect to its upstream (the connect timeout bounds them first:
/// with the back-off capped at 400 ms, this is over ten minutes).
const MAX_CONNECT_ATTEMPTS: usize = 2_000;

pub fn run(cfg: Config) -> Result<(), GatewayError> {
    check_listen(&cfg.listen)?;
    let xds_token = sluice_common::xds::token_from(cfg.xds_token_file.as_deref())
        .map_err(|e| GatewayError::new(ErrorKind::Config, e))?;
    let router = Arc::new(UpstreamAddr::parse("router", &cfg.router)?);
    let orchestrator = Arc::new(UpstreamAddr::parse("orchestrator", &cfg.orchestrator)?);
    let waker = Waker::new(&cfg.orchestrator, WAKE_CALL_TIMEOUT)?;
    let invoke_auth = Arc::new(auth::InvokeAuth::new(
        &cfg.orchestrator,
        auth::Settings::default(),
    )?);
    let node_id = cfg.node_id();

    // Control-plane work (xDS stream, cold-start bookkeeping, wake calls, DNS refresh) runs on
    // its own small runtime, independent of the proxy's worker threads.
    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gateway-control")
        .enable_all()
        .build()
        .map_err(|e| {
            GatewayError::new(ErrorKind::Internal, "cannot start the control runtime")
                .with_source(e)
        })?;
    let stop = CancellationToken::new();
    let sub = control.block_on(async {
        router.refresh().await;
        orchestrator.refresh().await;
        xds::subscribe(&cfg.xds_server, &node_id, xds_token, stop.clone())
    });
    router.spawn_refresh(control.handle());
    orchestrator.spawn_refresh(control.handle());

    let stats = Arc::new(Stats::default());
    let in_flight = Arc::new(InFlight::default());
    // Its indexing task runs on the control runtime.
    let catalog = {
        let _on_control = control.enter();
        Catalog::new(sub.snapshot, cfg.defaults())
    };
    let cold = ColdStarts::start(
        catalog.clone(),
        waker,
        stats.clone(),
        control.handle().clone(),
    );
    let gates = Gates::new(catalog.clone());
    control.spawn(gates.clone().watch(catalog.subscribe()));
    if !cfg.statsd.is_empty() {
        control.spawn(admission::export::run(
            gates.clone(),
            node_id.clone(),
            cfg.statsd.clone(),
            Duration::from_millis(cfg.statsd_flush_ms.max(10)),
            stop.clone(),
        ));
    }
    let settings = Settings {
        system_timeout: Duration::from_millis(cfg.system_timeout_ms),
        connect_timeout: Duration::from_millis(cfg.upstream_connect_timeout_ms),
        cold_start_retry_after: Duration::from_secs(cfg.cold_start_retry_after_secs.max(1)),
        ..Settings::default()
    };
    let gateway = Gateway {
        catalog,
        xds_state: sub.state,
        cold,
        gates,
        router: router.clone(),
        orchestrator: orchestrator.clone(),
        stats,
        in_flight: in_flight.clone(),
        connector: pingora::connectors::http::Connector::new(None),
        invoke_auth,
        settings,
    };

    let conf = ServerConf {
        threads: cfg.threads(),
        // Backstop only: the shutdown task exits as soon as nothing is in flight.
        grace_period_seconds: Some(cfg.grace_seconds + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        // Refused connects are retried for as long as the connect timeout allows (the proxy's
        // `fail_to_connect`); the count only backstops it.
        max_retries: MAX_CONNECT_ATTEMPTS,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, gateway);
    service.add_tcp(&cfg.listen);
    server.add_service(service);
    let phases = server.watch_execution_phase();

    tracing::info!(
        listen = %cfg.listen,
        router = %cfg.router,
        orchestrator = %cfg.orchestrator,
        xds_server = %cfg.xds_server,
        node_id = %node_id,
        threads = cfg.threads(),
        "gateway starting"
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(shutdown::GracefulShutdown {
            in_flight,
            grace: Duration::from_secs(cfg.grace_seconds),
            rt: control.handle().clone(),
            phases: std::sync::Mutex::new(Some(phases)),
            stop,
        }),
    });
    drop(control);
    Ok(())
}

/// Fails fast on a listen address that is malformed or taken (pingora would retry binding
/// in the background and keep a process running that serves nothing).
fn check_listen(listen: &str) -> Result<(), GatewayError> {
    let addr: std::net::SocketAddr = listen.parse().map_err(|e| {
        GatewayError::new(
            ErrorKind::Config,
            format!("invalid listen address `{listen}` (expected ip:port)"),
        )
        .with_source(e)
    })?;
    // Bound and released at once; std sets SO_REUSEADDR, as pingora does.
    std::net::TcpListener::bind(addr).map(drop).map_err(|e| {
        GatewayError::new(ErrorKind::Config, format!("cannot listen on {addr}: {e}")).with_source(e)
    })
}
