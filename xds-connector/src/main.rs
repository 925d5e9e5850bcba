//! `xds-connector` — Sluice's control plane.
//!
//! * gRPC `AggregatedDiscoveryService` (default :18000): routers and gateways stream their
//!   configuration (state of the world, per-type versions, ACK/NACK) — see [`grpc`], with the
//!   push order of [`push`].
//! * REST (default :8081) for the orchestrator — see [`rest`] and `openapi.yaml`.
//! * The snapshot ([`snapshot`]) lives in Redis under `<instance>:xds:snapshot`; a restarted
//!   connector serves the same resources with the same versions.
//!
//! On SIGTERM both servers stop accepting, every stream is closed cleanly, and the process
//! exits 0.
#![forbid(unsafe_code)]

mod config;
mod context;
mod error;
mod grpc;
mod kind;
mod model;
mod push;
mod rest;
mod snapshot;
mod stats;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::context::Ctx;
use crate::error::{Error, ErrorKind, Result};
use crate::snapshot::persist::{self, Persist};
use crate::snapshot::{Resources, Snapshot, Store};
use crate::stats::Stats;

fn main() -> ExitCode {
    // `xds-connector healthcheck [URL]`: the container healthcheck (no curl in the image).
    if let Some(code) = sluice_common::healthcheck::from_args("http://127.0.0.1:8081/healthz") {
        return code;
    }
    sluice_common::config::load_or_exit();
    let mut cfg = Config::parse();
    sluice_common::telemetry::init("xds-connector");
    match sluice_common::config::redis_url(&cfg.redis_url, cfg.redis_password_file.as_deref()) {
        Ok((url, _)) => cfg.redis_url = url,
        Err(e) => {
            tracing::error!(error = %e, "invalid settings");
            return ExitCode::from(2);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let token = match cfg
        .token_file
        .as_deref()
        .map(sluice_common::xds::read_token)
    {
        None => {
            tracing::warn!("no SLUICE_XDS_TOKEN_FILE: the gRPC and REST APIs take any caller");
            None
        }
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            tracing::error!(error = %e, "invalid settings");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cfg, token)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e.chain(), "xds-connector failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: Config, token: Option<String>) -> Result<()> {
    let shutdown = sluice_common::shutdown::token();

    let stats = Arc::new(Stats::default());
    let Some((persist, initial)) = open_snapshot(&cfg, &shutdown).await? else {
        tracing::info!("shut down before the snapshot was loaded");
        return Ok(());
    };
    let ctx = Arc::new(Ctx::new(
        Store::new(initial, persist, stats.clone()),
        stats,
        shutdown.clone(),
        token,
    ));

    let bind = |addr| async move {
        TcpListener::bind(addr).await.map_err(|e| {
            Error::new(ErrorKind::Io, format!("cannot listen on {addr}")).with_source(e)
        })
    };
    let grpc_listener = bind(cfg.grpc_listen).await?;
    let rest_listener = bind(cfg.rest_listen).await?;
    tracing::info!(
        grpc = %cfg.grpc_listen,
        rest = %cfg.rest_listen,
        instance = %cfg.instance,
        "xds-connector serving"
    );

    let mut grpc = tokio::spawn(grpc::serve(ctx.clone(), grpc_listener));
    let mut rest = tokio::spawn(rest::serve(ctx.clone(), rest_listener));
    // A server that ends before shutdown was asked for is a failure.
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => {}
        r = &mut grpc => return Err(server_ended("gRPC", r, &shutdown)),
        r = &mut rest => return Err(server_ended("REST", r, &shutdown)),
    }

    let grace = Duration::from_secs(cfg.shutdown_grace_secs);
    let drained = tokio::time::timeout(grace, async {
        let (g, r) = tokio::join!(grpc, rest);
        for (which, res) in [("gRPC", g), ("REST", r)] {
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(server = which, error = %e.chain(), "server ended with an error")
                }
                Err(e) => tracing::warn!(server = which, error = %e, "server task failed"),
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            grace_secs = cfg.shutdown_grace_secs,
            "connections still open after the grace period; exiting"
        );
    }
    tracing::info!("xds-connector stopped");
    Ok(())
}

/// The error for a server task that ended before shutdown (the other one is stopped too).
fn server_ended(
    which: &str,
    result: std::result::Result<Result<()>, tokio::task::JoinError>,
    shutdown: &CancellationToken,
) -> Error {
    shutdown.cancel();
    match result {
        Ok(Ok(())) => Error::new(
            ErrorKind::Io,
            format!("{which} server stopped unexpectedly"),
        ),
        Ok(Err(e)) => e,
        Err(join) => {
            Error::new(ErrorKind::Io, format!("{which} server task failed")).with_source(join)
        }
    }
}

/// Connects to Redis and loads the stored snapshot (empty at version 0 when there is none),
/// retrying while Redis is unreachable. `None` when shutdown came first. A stored snapshot
/// that cannot be read is an error: starting empty would wipe every client's configuration.
async fn open_snapshot(
    cfg: &Config,
    shutdown: &CancellationToken,
) -> Result<Option<(Persist, Snapshot)>> {
    let key = persist::key(&cfg.instance);
    let mut delay = Duration::from_millis(200);
    loop {
        let attempt = async {
            let p = Persist::connect(&cfg.redis_url, &cfg.instance).await?;
            let loaded = p.load().await?;
            Ok::<_, Error>((p, loaded))
        };
        match attempt.await {
            Ok((p, Some(snap))) => {
                tracing::info!(key = %key, versions = ?snap.versions, "snapshot restored from Redis");
                return Ok(Some((p, snap)));
            }
            Ok((p, None)) => {
                tracing::info!(key = %key, "no stored snapshot, starting empty at version 0");
                return Ok(Some((p, Snapshot::new(Resources::default(), [0; 4]))));
            }
            Err(e) if !e.retryable => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e.chain(), retry_in_ms = delay.as_millis() as u64, "Redis not ready");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
