//! The HTTP/1.1 server: accept loop, graceful shutdown, fatal backend failures.
//!
//! Shutdown on SIGTERM/SIGINT: the listener is closed at once (new connections are refused),
//! `/_/ready` turns 503, every connection is told to finish its current request and close
//! (idle keep-alive connections close immediately, so they never hold the process up), and
//! once all connections are gone — or `--grace-ms` has passed — the function's processes are
//! stopped and the process exits 0. A backend reporting a fatal failure makes it exit 1.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::backend::Backend;
use crate::config::Config;
use crate::inflight::Inflight;
use crate::service::{self, State};

/// Slowest acceptable arrival of a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the runtime until shutdown; returns the process exit code.
pub async fn run(cfg: Config) -> u8 {
    let started = Instant::now();
    let listener = match TcpListener::bind(cfg.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %cfg.listen, error = %e, "cannot listen");
            return 1;
        }
    };
    let stopping = Arc::new(AtomicBool::new(false));
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel();
    let backend = match Backend::start(&cfg, stopping.clone(), fatal_tx) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(function = %cfg.function, error = %e, source = ?e.source, "cannot start the function");
            return 1;
        }
    };
    let state = Arc::new(State {
        function: cfg.function.clone(),
        backend,
        inflight: Inflight::new(cfg.max_inflight()),
        stopping: stopping.clone(),
        timeout: cfg.timeout(),
        max_body: cfg.max_body_bytes,
        token: cfg.runtime_token.clone().filter(|t| !t.is_empty()),
    });
    tracing::info!(
        function = %cfg.function,
        mode = cfg.mode.as_str(),
        listen = %cfg.listen,
        max_inflight = cfg.max_inflight,
        timeout_ms = cfg.timeout_ms,
        listening_ms = started.elapsed().as_secs_f64() * 1000.0,
        "faas-runtime listening"
    );

    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let shutdown = sluice_common::shutdown::signal();
    tokio::pin!(shutdown);

    let code = loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break 0,
            Some(reason) = fatal_rx.recv() => {
                tracing::error!(function = %cfg.function, reason = %reason, "function failed; exiting so the container is replaced");
                break 1;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let st = state.clone();
                    let svc = service_fn(move |req| service::serve(st.clone(), req));
                    let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), svc));
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    };

    stopping.store(true, Ordering::Release);
    drop(listener);
    if code == 0 {
        let running = state.inflight.running();
        tracing::info!(function = %cfg.function, in_flight = running, grace_ms = cfg.grace_ms, "draining");
        tokio::select! {
            _ = graceful.shutdown() => tracing::info!(function = %cfg.function, "drained"),
            _ = tokio::time::sleep(cfg.grace()) => tracing::warn!(
                function = %cfg.function,
                in_flight = state.inflight.running(),
                "grace period over with calls still running; stopping anyway"
            ),
        }
    }
    state.backend.stop().await;
    tracing::info!(function = %cfg.function, code, "faas-runtime exiting");
    code
}
