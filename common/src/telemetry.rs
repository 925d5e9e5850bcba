//! `tracing` set-up shared by every binary.
//!
//! `SLUICE_LOG` (or `RUST_LOG`) sets the filter (default `info`); `SLUICE_LOG_FORMAT=json`
//! switches to one JSON object per line (the default in containers is `text`).

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber. Safe to call more than once (later calls are no-ops).
pub fn init(component: &'static str) {
    let filter = std::env::var("SLUICE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("SLUICE_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let res = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    if res.is_ok() {
        tracing::debug!(component, "logging initialised");
    }
}
