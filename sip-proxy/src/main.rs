//! `sip-proxy` — Sluice's SIP front door: the seed's Request Proxy (SIP in → protobuf calls
//! of handler functions through the gateway) and Response Proxy (the functions' actions →
//! SIP out), over an RFC 3261 transaction layer.
//!
//! ```text
//! sip-proxy                    run (settings: --help, SLUICE_* env, --config FILE)
//! sip-proxy healthcheck [URL]  GET URL (default: own /healthz), exit 0 on 2xx
//! ```
//!
//! ```text
//! UDP/TCP :5060 ─▶ transport (parse, count malformed) ─▶ core (transactions, timers)
//!                                                         │ ▲
//!                                               Call ─────┘ └───── Outcome (Actions)
//!                                                         ▼ │
//!                                    handler::Dispatcher ─POST /function/<fn>─▶ gateway
//! admin (axum): /healthz, /v1/stats ◀── stats (atomics) ──▶ export (statsD)
//! ```
#![forbid(unsafe_code)]

mod admin;
mod config;
mod core;
mod export;
mod handler;
mod sip;
mod stats;
mod transaction;
mod transport;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::sip::message::Limits;
use crate::stats::Stats;
use crate::transaction::Timers;

/// Messages buffered between the transports and the core.
const CORE_QUEUE: usize = 8192;

fn main() -> ExitCode {
    // The healthcheck follows the admin address the proxy was given.
    let admin = std::env::var("SLUICE_SIP_ADMIN_LISTEN")
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "127.0.0.1:5065".into());
    if let Some(code) = sluice_common::healthcheck::from_args(&format!("http://{admin}/healthz")) {
        return code;
    }
    sluice_common::config::load_or_exit();
    let cfg = Config::parse();
    sluice_common::telemetry::init("sip-proxy");
    let routes = match cfg.validate() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "invalid settings");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(cfg, routes)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sip-proxy failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: Config, routes: handler::Routes) -> Result<(), String> {
    // Bind everything before anything runs: once /healthz answers, SIP is received.
    let udp = tokio::net::UdpSocket::bind(cfg.listen)
        .await
        .map_err(|e| format!("udp {}: {e}", cfg.listen))?;
    let tcp = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("tcp {}: {e}", cfg.listen))?;
    let admin_listener = tokio::net::TcpListener::bind(cfg.admin_listen)
        .await
        .map_err(|e| format!("admin {}: {e}", cfg.admin_listen))?;
    let port = udp.local_addr().map(|a| a.port()).unwrap_or(5060);
    tracing::info!(sip = %cfg.listen, admin = %cfg.admin_listen, gateway = %cfg.gateway,
        advertise = %cfg.advertise(), routes = %cfg.routes, "sip-proxy listening");

    let stop = sluice_common::shutdown::token();
    let stats = Arc::new(Stats::default());
    let (core_tx, core_rx) = mpsc::channel(CORE_QUEUE);
    let (call_tx, call_rx) = mpsc::channel(cfg.max_in_flight);
    let limits = Limits {
        max_bytes: cfg.max_message,
        max_headers: cfg.max_headers,
    };
    // The transports stop on `stop`; the core and the dispatcher drain after them.
    let inner = CancellationToken::new();
    let out = transport::Outbound::new(
        Arc::new(udp),
        core_tx.clone(),
        stats.clone(),
        limits,
        cfg.max_connections,
        stop.clone(),
    );
    let udp_task = tokio::spawn(transport::run_udp(out.clone(), stop.clone()));
    let tcp_task = tokio::spawn(transport::run_tcp(out.clone(), tcp, stop.clone()));
    let dispatcher = handler::Dispatcher::new(
        &cfg.gateway,
        cfg.handler_timeout,
        cfg.max_in_flight,
        stats.clone(),
    )
    .map_err(|e| format!("http client: {e}"))?;
    let dispatch_task = tokio::spawn(dispatcher.run(call_rx, core_tx.clone(), inner.clone()));
    let core = core::Core::new(
        core::Settings {
            timers: Timers {
                t1: cfg.t1,
                ..Timers::default()
            },
            advertise: cfg.advertise(),
            port,
            handler_timeout: cfg.handler_timeout,
        },
        routes,
        out,
        call_tx,
        stats.clone(),
    );
    drop(core_tx);
    let core_task = tokio::spawn(core.run(core_rx, inner.clone()));
    if let Some(target) = cfg.statsd.clone() {
        tokio::spawn(export::run(target, stats.clone(), stop.clone()));
    }
    let admin = {
        let app = admin::router(stats.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            axum::serve(admin_listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };

    stop.cancelled().await;
    let _ = udp_task.await;
    let _ = tcp_task.await;
    // The core answers what is still pending (503 + Retry-After) before it ends.
    inner.cancel();
    let _ = core_task.await;
    let _ = dispatch_task.await;
    let _ = admin.await;
    tracing::info!("stopped");
    Ok(())
}
