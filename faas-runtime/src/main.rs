//! `faas-runtime` — the in-container watchdog of a Sluice function (the ENTRYPOINT of every
//! function image). It serves HTTP on `:8080`: `/_/health` (liveness), `/_/ready` (readiness:
//! loaded, below the concurrency cap, not stopping) and every other path as one invocation of
//! the function, run in one of three modes (see [`backend`]). It enforces the per-replica
//! concurrency cap (429), body limit (413) and timeout (504), and stops gracefully on SIGTERM.
//!
//! Module map: [`config`] (flags/env), [`server`] (accept loop, graceful shutdown),
//! [`service`] (routing and admission), [`inflight`] (the cap), [`body`] (body limits,
//! JSON errors), [`invocation`] (a call as backends see it), [`backend`] (python, binary,
//! http), [`error`].
#![forbid(unsafe_code)]

mod backend;
mod body;
mod config;
mod error;
mod inflight;
mod invocation;
mod server;
mod service;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    sluice_common::config::load_or_exit();
    let cfg = config::Config::parse();
    sluice_common::telemetry::init("faas-runtime");
    let built = match cfg.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(server::run(cfg));
    // Do not wait for lingering connection tasks (grace already expired if any remain).
    rt.shutdown_background();
    ExitCode::from(code)
}
