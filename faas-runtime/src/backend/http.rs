//! http mode: the user's own HTTP server, reverse-proxied.
//!
//! The server command (split on whitespace, exec'd without a shell) is started once with
//! `PORT=<--http-port>`. A background probe connects to `127.0.0.1:PORT` every few
//! milliseconds until it accepts; from then on the function is ready. Calls are forwarded over
//! a keep-alive connection pool (hyper-util's client), bodies streamed both ways; the request
//! body is capped on the fly. The server exiting while the runtime is not stopping is fatal.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Limited;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName};
use hyper::{Request, Response, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Fatal;
use crate::body::{is_length_limit, too_large};
use crate::config::Config;
use crate::error::{ErrorKind, Result, RuntimeError};

/// Interval between connection attempts while the user's server starts.
const PROBE_INTERVAL: Duration = Duration::from_millis(2);
/// How long stop waits for the server to exit after SIGTERM before SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// Hop-by-hop headers, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The http backend.
#[derive(Debug)]
pub struct HttpBackend {
    function: String,
    port: u16,
    max_body: u64,
    client: Client<HttpConnector, Limited<Incoming>>,
    ready: watch::Receiver<bool>,
    pid: Option<i32>,
    stopping: Arc<AtomicBool>,
    monitor: Mutex<Option<JoinHandle<()>>>,
}

impl HttpBackend {
    /// Starts the user's server and the readiness probe.
    pub fn start(cfg: &Config, stopping: Arc<AtomicBool>, fatal: Fatal) -> Result<Self> {
        let mut argv = cfg.handler.split_whitespace();
        let Some(program) = argv.next() else {
            return Err(RuntimeError::new(
                ErrorKind::Internal,
                "http mode needs --handler / SLUICE_HANDLER: the command line of the server",
            ));
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.env_remove(sluice_common::runtime::ENV_TOKEN);
        cmd.args(argv)
            .env("PORT", cfg.http_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| {
            RuntimeError::new(
                ErrorKind::Internal,
                format!("cannot start the function server `{program}`"),
            )
            .with_source(e)
        })?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok());
        tracing::info!(function = %cfg.function, command = %cfg.handler, port = cfg.http_port, pid = ?pid, "function server started");

        let (ready_tx, ready) = watch::channel(false);
        let (exited_tx, exited) = watch::channel(false);
        tokio::spawn(probe(
            cfg.function.clone(),
            cfg.http_port,
            ready_tx,
            exited,
            Instant::now(),
        ));
        let monitor = tokio::spawn(monitor_server(
            cfg.function.clone(),
            child,
            exited_tx,
            stopping.clone(),
            fatal,
        ));

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(cfg.max_inflight().max(1) * 2)
            .build(connector);
        Ok(HttpBackend {
            function: cfg.function.clone(),
            port: cfg.http_port,
            max_body: cfg.max_body_bytes,
            client,
            ready,
            pid,
            stopping,
            monitor: Mutex::new(Some(monitor)),
        })
    }

    /// `Ok` once the server has accepted a connection.
    pub fn readiness(&self) -> std::result::Result<(), String> {
        if *self.ready.borrow() {
            Ok(())
        } else {
            Err(format!(
                "function server is not accepting connections on port {} yet",
                self.port
            ))
        }
    }

    /// Forwards one request; the response body streams back unbuffered.
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        deadline: Instant,
    ) -> Result<Response<Incoming>> {
        let deadline = tokio::time::Instant::from_std(deadline);
        if !*self.ready.borrow() {
            let mut ready = self.ready.clone();
            let became_ready = matches!(
                tokio::time::timeout_at(deadline, ready.wait_for(|r| *r)).await,
                Ok(Ok(_))
            );
            if !became_ready {
                return Err(RuntimeError::new(
                    ErrorKind::NotReady,
                    format!(
                        "function server did not accept connections on port {}",
                        self.port
                    ),
                ));
            }
        }
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        parts.uri =
            Uri::try_from(format!("http://127.0.0.1:{}{}", self.port, path)).map_err(|e| {
                RuntimeError::new(ErrorKind::Internal, "cannot build the upstream URI")
                    .with_source(e)
            })?;
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        let req = Request::from_parts(parts, Limited::new(body, limit));
        match tokio::time::timeout_at(deadline, self.client.request(req)).await {
            Ok(Ok(mut resp)) => {
                strip_hop_by_hop(resp.headers_mut());
                Ok(resp)
            }
            Ok(Err(e)) if is_length_limit(&e) => Err(too_large(self.max_body)),
            Ok(Err(e)) => {
                tracing::warn!(function = %self.function, error = %e, "forwarding to the function server failed");
                Err(RuntimeError::new(
                    ErrorKind::Upstream,
                    format!("function server on port {} failed: {e}", self.port),
                )
                .with_source(e))
            }
            Err(_) => Err(RuntimeError::new(ErrorKind::Timeout, "function timed out")),
        }
    }

    /// SIGTERM to the server, SIGKILL if it has not exited after a short wait.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let monitor = self
            .monitor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(mut monitor) = monitor else { return };
        if monitor.is_finished() {
            return;
        }
        if let Some(pid) = self.pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            if tokio::time::timeout(STOP_WAIT, &mut monitor).await.is_ok() {
                return;
            }
            tracing::warn!(function = %self.function, "function server ignored SIGTERM; killing it");
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = tokio::time::timeout(STOP_WAIT, monitor).await;
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

async fn probe(
    function: String,
    port: u16,
    ready: watch::Sender<bool>,
    exited: watch::Receiver<bool>,
    started: Instant,
) {
    loop {
        if *exited.borrow() {
            return;
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            tracing::info!(function = %function, port, ready_ms = started.elapsed().as_secs_f64() * 1000.0, "function server ready");
            let _ = ready.send(true);
            return;
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

async fn monitor_server(
    function: String,
    mut child: tokio::process::Child,
    exited: watch::Sender<bool>,
    stopping: Arc<AtomicBool>,
    fatal: Fatal,
) {
    let status = child.wait().await;
    let _ = exited.send(true);
    let status = match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("unknown status ({e})"),
    };
    if stopping.load(Ordering::Acquire) {
        tracing::info!(function = %function, status = %status, "function server stopped");
    } else {
        let _ = fatal.send(format!("function server exited unexpectedly ({status})"));
    }
}
