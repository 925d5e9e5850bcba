//! The three ways of running a function, behind one enum (static dispatch: one `match` per
//! call, no boxing).
//!
//! * [`python`] — long-lived zygote + forked workers speaking a framed protocol.
//! * [`binary`] — one process per call (stdin → stdout).
//! * [`http`] — the user's own server, reverse-proxied over keep-alive connections.
//!
//! A backend whose long-lived process dies unexpectedly reports it on the [`Fatal`] channel;
//! the server then exits non-zero so the orchestrator replaces the container.

pub mod binary;
pub mod http;
pub mod python;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::config::{Config, Mode};
use crate::error::Result;

/// Where a backend reports that the replica can no longer work.
pub type Fatal = tokio::sync::mpsc::UnboundedSender<String>;

/// The function, as run by one of the modes.
#[derive(Debug)]
pub enum Backend {
    Python(python::PythonBackend),
    Binary(binary::BinaryBackend),
    Http(Box<http::HttpBackend>),
}

impl Backend {
    /// Starts the function for `cfg.mode`. Loading continues in the background; watch
    /// [`Backend::readiness`].
    pub fn start(cfg: &Config, stopping: Arc<AtomicBool>, fatal: Fatal) -> Result<Self> {
        Ok(match cfg.mode {
            Mode::Python => Backend::Python(python::PythonBackend::start(cfg, stopping, fatal)?),
            Mode::Binary => Backend::Binary(binary::BinaryBackend::new(cfg)?),
            Mode::Http => Backend::Http(Box::new(http::HttpBackend::start(cfg, stopping, fatal)?)),
        })
    }

    /// `Ok` when the function is loaded and can take calls; otherwise the reason.
    pub fn readiness(&self) -> std::result::Result<(), String> {
        match self {
            Backend::Python(b) => b.readiness(),
            Backend::Binary(b) => b.readiness(),
            Backend::Http(b) => b.readiness(),
        }
    }

    /// A failure that waiting will not cure (the python handler failed to import): the
    /// replica can never become ready, and `/_/ready` says so with a 500 instead of a 503 so
    /// that the orchestrator gives up on it at once instead of at its cold-start timeout.
    pub fn broken(&self) -> Option<String> {
        match self {
            Backend::Python(b) => b.import_error(),
            Backend::Binary(_) | Backend::Http(_) => None,
        }
    }

    /// Stops the function's processes (after in-flight calls have finished).
    pub async fn stop(&self) {
        match self {
            Backend::Python(b) => b.stop().await,
            Backend::Binary(_) => {}
            Backend::Http(b) => b.stop().await,
        }
    }
}
