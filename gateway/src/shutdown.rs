//! Graceful SIGTERM for the pingora server.
//!
//! pingora's own graceful terminate stops the listeners and then sleeps a fixed grace
//! period before tearing the runtimes down. The gateway plugs in
//! `sluice_common::shutdown::signal()` as pingora's shutdown signal and, once pingora has
//! started its graceful terminate (listeners told to stop), ends the process as soon as no
//! request is in flight — held cold-start requests included — or when the grace period is
//! over, whichever comes first. Exit status is 0 either way.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::stats::InFlight;

/// pingora [`ShutdownSignalWatch`] that drains in-flight requests, see the module docs.
pub struct GracefulShutdown {
    pub in_flight: Arc<InFlight>,
    pub grace: Duration,
    /// Runtime that runs the drain-then-exit task (not one pingora tears down).
    pub rt: tokio::runtime::Handle,
    /// pingora's execution phases (from `Server::watch_execution_phase`).
    pub phases: std::sync::Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
    /// Cancelled when shutdown begins (stops the xDS client).
    pub stop: CancellationToken,
}

#[async_trait]
impl ShutdownSignalWatch for GracefulShutdown {
    async fn recv(&self) -> ShutdownSignal {
        sluice_common::shutdown::signal().await;
        let phases = self
            .phases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let in_flight = self.in_flight.clone();
        let grace = self.grace;
        let stop = self.stop.clone();
        tracing::info!(
            in_flight = in_flight.current(),
            grace_s = grace.as_secs(),
            "graceful shutdown: no new connections, finishing in-flight requests"
        );
        self.rt.spawn(async move {
            if let Some(mut phases) = phases {
                // Wait until pingora has told its listeners to stop (bounded, just in case).
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    loop {
                        match phases.recv().await {
                            Ok(ExecutionPhase::GracefulTerminate)
                            | Err(broadcast::error::RecvError::Closed) => break,
                            _ => {}
                        }
                    }
                })
                .await;
            }
            match tokio::time::timeout(grace, in_flight.wait_idle()).await {
                Ok(()) => tracing::info!("graceful shutdown: no request in flight, exiting"),
                Err(_) => tracing::warn!(
                    in_flight = in_flight.current(),
                    "graceful shutdown: grace period over, exiting with requests in flight"
                ),
            }
            stop.cancel();
            std::process::exit(0);
        });
        ShutdownSignal::GracefulTerminate
    }
}
