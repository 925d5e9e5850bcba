//! `router` binary: see [`sluice_router::server`].
#![forbid(unsafe_code)]

use clap::Parser;

/// mimalloc: the proxies allocate and free small buffers on every request; measured on the
/// warm path it cut malloc/free's share of the profile (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // `router healthcheck [URL]`: the container healthcheck (no curl in the image).
    if let Some(code) = sluice_common::healthcheck::from_args("http://127.0.0.1:10001/healthz") {
        std::process::exit(if code == std::process::ExitCode::SUCCESS {
            0
        } else {
            1
        });
    }
    sluice_common::config::load_or_exit();
    let args = sluice_router::server::Args::parse();
    sluice_common::telemetry::init("router");
    std::process::exit(sluice_router::server::run(args));
}
