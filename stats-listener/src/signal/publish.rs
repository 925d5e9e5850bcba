//! The publisher task: PUBLISHes each [`Signal`] on `<instance>:scale-signal` as soon as it
//! arrives. A signal that cannot be published is counted and dropped — it describes the
//! present, so replaying it later would mislead. While Redis is unreachable, connection
//! attempts are spaced by one second so signals are dropped quickly instead of queueing.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Signal;
use crate::ratelimit::LogEvery;
use crate::stats::Stats;
use crate::store::RedisLink;

/// Runs until `rx` closes (the aggregator ended).
pub async fn run(
    mut link: RedisLink,
    channel: String,
    mut rx: mpsc::Receiver<Signal>,
    stats: Arc<Stats>,
) {
    let mut log = LogEvery::new(Duration::from_secs(5));
    let mut down_until: Option<Instant> = None;
    while let Some(sig) = rx.recv().await {
        let now = Instant::now();
        if down_until.is_some_and(|t| now < t) {
            stats.signals_failed.fetch_add(1, Relaxed);
            continue;
        }
        let payload = match serde_json::to_string(&sig) {
            Ok(p) => p,
            Err(_) => continue,
        };
        let res = match link.conn().await {
            Ok(conn) => redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(&payload)
                .query_async::<i64>(conn)
                .await
                .map_err(crate::error::Error::redis),
            Err(e) => Err(e),
        };
        match res {
            Ok(receivers) => {
                down_until = None;
                stats.signals_published.fetch_add(1, Relaxed);
                tracing::debug!(function = %sig.function, pending = %sig.pending,
                    active = %sig.active, receivers, "scale signal published");
            }
            Err(e) => {
                down_until = Some(Instant::now() + Duration::from_secs(1));
                stats.signals_failed.fetch_add(1, Relaxed);
                if let Some(suppressed) = log.check(Instant::now()) {
                    tracing::warn!(error = %e, function = %sig.function, suppressed,
                        "cannot publish scale signal");
                }
            }
        }
    }
}
