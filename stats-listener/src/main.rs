//! `stats-listener` — receives the routers' statsD over UDP, aggregates load per function and
//! per window into Redis for the orchestrator's autoscaler, and signals queueing at once.
//!
//! ```text
//! stats-listener                    run (settings: --help, SLUICE_* env, --config FILE)
//! stats-listener healthcheck [URL]  GET URL (default: own /healthz), exit 0 on 2xx
//! ```
//!
//! Pipeline (tokio tasks joined by bounded channels; each ends when its input closes, so
//! SIGTERM drains it front to back):
//!
//! ```text
//! source (UDP) ──packets──▶ parse::stage ──events──▶ aggregate ──windows──▶ store::writer ──▶ Redis hashes/lists
//!                                                        └──────signals────▶ signal::publish ──▶ PUBLISH
//! admin (axum): /healthz, /v1/stats ◀── stats (shared atomics)
//! ```
#![forbid(unsafe_code)]

mod admin;
mod aggregate;
mod clock;
mod config;
mod error;
mod parse;
mod ratelimit;
mod schema;
mod signal;
mod source;
mod stats;
mod store;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::stats::Stats;
use crate::store::{Keys, RedisLink};

/// Packets buffered between the source and the parse stage.
const PACKET_QUEUE: usize = 4096;
/// Packet batches buffered between the parse stage and the aggregator.
const EVENT_QUEUE: usize = 4096;
/// Signals buffered for the publisher (beyond that they are dropped and counted).
const SIGNAL_QUEUE: usize = 1024;
/// Window batches buffered for the writer.
const WINDOW_QUEUE: usize = 16;

fn main() -> ExitCode {
    if let Some(code) = sluice_common::healthcheck::from_args("http://127.0.0.1:8126/healthz") {
        return code;
    }
    sluice_common::config::load_or_exit();
    let mut cfg = Config::parse();
    sluice_common::telemetry::init("stats-listener");
    match sluice_common::config::redis_url(&cfg.redis_url, cfg.redis_password_file.as_deref()) {
        Ok((url, _)) => cfg.redis_url = url,
        Err(e) => {
            tracing::error!(error = %e, "invalid settings");
            return ExitCode::from(2);
        }
    }
    if let Err(e) = cfg.validate() {
        tracing::error!(error = %e, "invalid settings");
        return ExitCode::from(2);
    }
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
    match rt.block_on(serve(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "stats-listener failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: Config) -> Result<(), Error> {
    let client = redis::Client::open(cfg.redis_url.as_str()).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("SLUICE_REDIS_URL `{}` is invalid", cfg.redis_url),
        )
        .with_source(e)
    })?;
    // Bind both sockets before anything runs: once /healthz answers, UDP is received.
    let socket = tokio::net::UdpSocket::bind(cfg.listen)
        .await
        .map_err(|e| Error::new(ErrorKind::Bind, format!("udp {}", cfg.listen)).with_source(e))?;
    let admin_listener = tokio::net::TcpListener::bind(cfg.admin_listen)
        .await
        .map_err(|e| {
            Error::new(ErrorKind::Bind, format!("admin {}", cfg.admin_listen)).with_source(e)
        })?;
    tracing::info!(udp = %cfg.listen, admin = %cfg.admin_listen, instance = %cfg.instance,
        window_ms = cfg.window.as_millis() as u64, "stats-listener listening");

    let stop = sluice_common::shutdown::token();

    let stats = Arc::new(Stats::new(clock::unix_ms()));
    let keys = Keys::new(&cfg.instance);
    let (packet_tx, packet_rx) = mpsc::channel(PACKET_QUEUE);
    let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE);
    let (window_tx, window_rx) = mpsc::channel(WINDOW_QUEUE);
    let (signal_tx, signal_rx) = mpsc::channel(SIGNAL_QUEUE);

    let source = tokio::spawn(source::run(socket, packet_tx, stats.clone(), stop.clone()));
    let parser = tokio::spawn(parse::stage::run(packet_rx, event_tx, stats.clone()));
    let agg = aggregate::Aggregator::new(
        aggregate::Settings {
            window: cfg.window,
            gauge_expiry: cfg.gauge_expiry,
            signal_interval: cfg.signal_interval,
            retention: cfg.history_ttl(),
            max_samples: cfg.max_samples,
            max_functions: cfg.max_functions,
            max_routers: 1024,
            max_endpoints: 4096,
        },
        SmallRng::from_os_rng(),
        tokio::time::Instant::now(),
        stats.clone(),
    );
    let aggregator = tokio::spawn(aggregate::run(agg, event_rx, window_tx, signal_tx));
    let writer = tokio::spawn(store::writer::run(
        RedisLink::new(client.clone()),
        keys.clone(),
        store::writer::Settings {
            load_ttl: cfg.load_ttl,
            history_len: cfg.history_len,
            history_ttl: cfg.history_ttl(),
            shutdown_grace: Duration::from_secs(3),
        },
        window_rx,
        stats.clone(),
    ));
    let publisher = tokio::spawn(signal::publish::run(
        RedisLink::new(client.clone()),
        keys.signal_channel(),
        signal_rx,
        stats.clone(),
    ));
    let admin = {
        let app = admin::router(stats.clone(), client, cfg.instance.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            axum::serve(admin_listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };

    // Everything runs until SIGTERM; then the pipeline drains front to back.
    stop.cancelled().await;
    let _ = source.await;
    let _ = parser.await;
    let _ = aggregator.await;
    let _ = writer.await;
    let _ = publisher.await;
    match admin.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "admin server ended with an error"),
        Err(e) => tracing::warn!(error = %e, "admin server task failed"),
    }
    tracing::info!("stopped");
    Ok(())
}
