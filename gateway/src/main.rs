//! `gateway` binary: see the library docs (`gateway::run`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: the proxies allocate and free small buffers on every request; measured on the
/// warm path it cut malloc/free's share of the profile (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // `gateway healthcheck [URL]`: the container healthcheck (no curl in the image).
    if let Some(code) = sluice_common::healthcheck::from_args("http://127.0.0.1:8080/healthz") {
        return code;
    }
    sluice_common::config::load_or_exit();
    let cfg = gateway::config::Config::parse();
    sluice_common::telemetry::init("gateway");
    match gateway::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let cause = e.source.as_ref().map(|s| s.to_string()).unwrap_or_default();
            tracing::error!(error = %e, %cause, "gateway failed to start");
            ExitCode::FAILURE
        }
    }
}
