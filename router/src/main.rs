//! `router` binary: see [`sluice_router::server`].
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    sluice_common::config::load_or_exit();
    let args = sluice_router::server::Args::parse();
    sluice_common::telemetry::init("router");
    std::process::exit(sluice_router::server::run(args));
}
