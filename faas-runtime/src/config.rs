//! The runtime's settings: command-line flags or `SLUICE_*` environment variables (the
//! orchestrator sets the environment; a `--config` env-file is applied before parsing).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// How the function is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// A long-lived Python zygote imports `handle(event, context)` once; forked workers serve calls.
    Python,
    /// An executable run once per call: body on stdin, response on stdout.
    Binary,
    /// The user's own HTTP server, started once and reverse-proxied over keep-alive connections.
    Http,
}

impl Mode {
    /// The lowercase name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Python => "python",
            Mode::Binary => "binary",
            Mode::Http => "http",
        }
    }
}

/// `faas-runtime` — the in-container watchdog of a Sluice function.
#[derive(Debug, Clone, Parser)]
#[command(name = "faas-runtime", version, about, long_about = None)]
pub struct Config {
    /// Env-file (`KEY=VALUE` lines) applied to the environment before the flags are parsed.
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address the HTTP server listens on.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// How the function is run.
    #[arg(long, env = "SLUICE_MODE", value_enum, default_value = "python")]
    pub mode: Mode,

    /// Function name (used in error bodies and logs).
    #[arg(long, env = "SLUICE_FUNCTION", default_value = "function")]
    pub function: String,

    /// python: the `.py` file defining `handle(event, context)`; binary: the executable;
    /// http: the command line of the user's server (split on whitespace, no shell).
    #[arg(long, env = "SLUICE_HANDLER")]
    pub handler: String,

    /// Concurrent invocations this replica accepts; more are answered 429 at once
    /// (python mode keeps this many workers).
    #[arg(long, env = "SLUICE_MAX_INFLIGHT", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_inflight: u32,

    /// Longest time one invocation may take (504 after it).
    #[arg(long, env = "SLUICE_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,

    /// Largest request body accepted (413 above it).
    #[arg(long, env = "SLUICE_MAX_BODY_BYTES", default_value_t = 6_291_456)]
    pub max_body_bytes: u64,

    /// How long SIGTERM waits for in-flight invocations before stopping the function.
    #[arg(long, env = "SLUICE_GRACE_MS", default_value_t = 30_000)]
    pub grace_ms: u64,

    /// Token every request must carry in `x-sluice-runtime-token` (the platform's routers
    /// and probes send it; other functions do not have it). Unset: no check (the runtime
    /// run by hand). Never passed on to the function's processes.
    #[arg(long, env = "SLUICE_RUNTIME_TOKEN", hide_env_values = true)]
    pub runtime_token: Option<String>,

    /// Python interpreter used in python mode.
    #[arg(long, env = "SLUICE_PYTHON", default_value = "python3")]
    pub python: String,

    /// Port the user's server listens on in http mode (passed to it as env `PORT`).
    #[arg(long, env = "SLUICE_HTTP_PORT", default_value_t = 8081)]
    pub http_port: u16,

    /// Threads serving HTTP: 0 = one per available CPU; 1 = a single-threaded event loop
    /// (lowest per-call latency when the container has about one CPU).
    #[arg(long, env = "SLUICE_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,

    /// binary mode: Content-Type of successful responses.
    #[arg(long, env = "SLUICE_CONTENT_TYPE", default_value = "text/plain")]
    pub content_type: String,
}

impl Config {
    /// The per-invocation time limit.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// How long shutdown waits for in-flight invocations.
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }

    /// `max_inflight` as a count.
    pub fn max_inflight(&self) -> usize {
        self.max_inflight as usize
    }
}
