//! Graceful shutdown: one future that resolves on the first SIGTERM or SIGINT.

/// Resolves when the process receives SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
                _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
            }
        }
        _ => {
            // Signal handlers could not be installed (should not happen on Linux):
            // fall back to Ctrl-C only.
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!(signal = "SIGINT", "shutting down");
        }
    }
}

/// A token cancelled on the first SIGTERM or SIGINT (a task waiting for [`signal`]); call it
/// inside the async runtime.
pub fn token() -> tokio_util::sync::CancellationToken {
    let stop = tokio_util::sync::CancellationToken::new();
    let cancel = stop.clone();
    tokio::spawn(async move {
        signal().await;
        cancel.cancel();
    });
    stop
}
