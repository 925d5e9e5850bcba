//! `mdf` — Sluice's media distribution function: the RTP relay of MCPTT group calls.
//!
//! ```text
//! mdf                    run (settings: --help, SLUICE_MDF_* env, --config FILE)
//! mdf healthcheck [URL]  GET URL (default: own /healthz), exit 0 on 2xx
//! ```
//!
//! ```text
//! control API (axum) ─▶ relay (sessions, ports, capacity, drain)
//!                              │ per session: legs (RTP/RTCP pair each), floor, counters,
//!                              │ placed on one relay thread (shards: a runtime per core)
//!                              ▼
//! RTP  ─recvmmsg─▶ session (validate, latch, floor holder?) ─sendmmsg─▶ every other leg
//! RTCP ──────────▶ mcptt (MCPT APP) ─▶ floor (pure decide) ─▶ Granted/Deny/Taken/Idle/Revoke
//! ```
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use mdf::config::Config;
use mdf::{api, ports, relay, shards};

fn main() -> ExitCode {
    let control = std::env::var("SLUICE_MDF_CONTROL_LISTEN")
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "127.0.0.1:7090".into());
    if let Some(code) = sluice_common::healthcheck::from_args(&format!("http://{control}/healthz"))
    {
        return code;
    }
    sluice_common::config::load_or_exit();
    let cfg = Config::parse();
    sluice_common::telemetry::init("mdf");
    let token = match cfg.validate().and_then(|()| cfg.token()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "invalid settings");
            return ExitCode::from(2);
        }
    };
    let threads = if cfg.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cfg.threads
    };
    // The control API and the talk-time ticker on this thread; relaying on the shards'.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let shards = match shards::Shards::start(threads) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the relay threads");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(cfg, token, shards)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "mdf failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: Config, token: Option<String>, shards: shards::Shards) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(cfg.control_listen)
        .await
        .map_err(|e| format!("control {}: {e}", cfg.control_listen))?;
    let ports = ports::Ports::new(cfg.media_ip, cfg.port_min, cfg.port_max);
    let threads = shards.len();
    let relay = Arc::new(relay::Relay::new(
        relay::Settings {
            instance: cfg.instance(),
            advertise: cfg.advertise(),
            max_sessions: cfg.max_sessions,
            max_legs: cfg.max_legs,
            max_talk: cfg.max_talk,
            latch: cfg.latch,
        },
        ports,
        shards,
    ));
    tracing::info!(control = %cfg.control_listen, media_ip = %cfg.media_ip,
        advertise = %cfg.advertise(), ports = %format!("{}-{}", cfg.port_min, cfg.port_max),
        max_sessions = cfg.max_sessions, latch = ?cfg.latch, token = token.is_some(), threads,
        "mdf listening");
    let stop = sluice_common::shutdown::token();
    let ticker = tokio::spawn(relay.clone().run_ticker(stop.clone()));
    let app = api::router(api::Api {
        relay: relay.clone(),
        token: token.map(Arc::from),
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.clone().cancelled_owned())
        .await
        .map_err(|e| format!("control API: {e}"))?;
    let _ = ticker.await;
    let sessions = relay.session_count();
    relay.close_all().await;
    relay.stop_threads();
    tracing::info!(sessions, "stopped");
    Ok(())
}
