//! The writer task: closed windows in, Redis writes out.
//!
//! Each window batch is written in one MULTI/EXEC transaction: per function the load hash is
//! replaced (DEL + HSET + PEXPIRE, so a consumer never sees half a window or stale fields) and
//! the window's JSON is LPUSHed onto the history list (LTRIM to the cap, PEXPIRE); then the
//! listener's own counters go to the stats hash.
//!
//! Redis down: batches wait in a backlog (bounded to the history length; the oldest are
//! dropped first) and are retried in order with backoff (100 ms doubling to 5 s), so the
//! history has no holes after a short outage and the hash ends on the newest window.
//! Aggregation never waits for Redis. On shutdown (the input closes) the backlog gets a
//! bounded grace period, then whatever is left is dropped with a warning.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Keys, RedisLink};
use crate::aggregate::WindowBatch;
use crate::error::{Error, Result};
use crate::ratelimit::LogEvery;
use crate::stats::Stats;

/// How the writer writes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// TTL of the load hash.
    pub load_ttl: Duration,
    /// Length cap of the history list (and of the backlog).
    pub history_len: usize,
    /// TTL of the history list.
    pub history_ttl: Duration,
    /// How long to keep retrying the backlog after the input closed.
    pub shutdown_grace: Duration,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Runs until `rx` closes and the backlog is written (or the grace period ran out).
pub async fn run(
    mut link: RedisLink,
    keys: Keys,
    settings: Settings,
    mut rx: mpsc::Receiver<WindowBatch>,
    stats: Arc<Stats>,
) {
    let mut w = Writer {
        keys,
        settings,
        backlog: VecDeque::new(),
        stats,
        log: LogEvery::new(Duration::from_secs(5)),
    };
    let mut backoff = FIRST_BACKOFF;
    let mut retry_at: Option<Instant> = None;
    loop {
        let pending_retry = retry_at;
        let wait_retry = async move {
            match pending_retry {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            batch = rx.recv() => match batch {
                Some(b) => w.enqueue(b),
                None => break,
            },
            _ = wait_retry => retry_at = None,
        }
        if retry_at.is_some() {
            continue; // backing off: the new batch waits its turn
        }
        match w.flush(&mut link).await {
            Ok(()) => backoff = FIRST_BACKOFF,
            Err(e) => {
                w.failed(&e);
                retry_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    let deadline = Instant::now() + w.settings.shutdown_grace;
    let mut backoff = FIRST_BACKOFF;
    while !w.backlog.is_empty() {
        match w.flush(&mut link).await {
            Ok(()) => break,
            Err(e) => {
                w.failed(&e);
                let next = Instant::now() + backoff;
                if next >= deadline {
                    tracing::warn!(windows = w.backlog.len(), error = %e,
                        "shutting down with windows not written to redis");
                    break;
                }
                tokio::time::sleep_until(next).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

struct Writer {
    keys: Keys,
    settings: Settings,
    backlog: VecDeque<WindowBatch>,
    stats: Arc<Stats>,
    log: LogEvery,
}

impl Writer {
    fn enqueue(&mut self, b: WindowBatch) {
        self.backlog.push_back(b);
        let cap = self.settings.history_len.max(1);
        while self.backlog.len() > cap {
            self.backlog.pop_front();
        }
        self.stats
            .redis_backlog
            .store(self.backlog.len() as u64, Relaxed);
    }

    fn failed(&mut self, e: &Error) {
        self.stats.redis_write_errors.fetch_add(1, Relaxed);
        if let Some(suppressed) = self.log.check(Instant::now()) {
            tracing::warn!(error = %e, backlog = self.backlog.len(), suppressed,
                "cannot write windows to redis; will retry");
        }
    }

    /// Writes the backlog in order; stops at the first failure (that batch stays first).
    async fn flush(&mut self, link: &mut RedisLink) -> Result<()> {
        while let Some(b) = self.backlog.front() {
            let pipe = self.transaction(b);
            let conn = link.conn().await?;
            pipe.query_async::<()>(conn).await.map_err(Error::redis)?;
            if let Some(done) = self.backlog.pop_front() {
                tracing::debug!(
                    window_end_unix_ms = done.window_end_unix_ms,
                    functions = done.reports.len(),
                    "window written"
                );
            }
            self.stats.windows_written.fetch_add(1, Relaxed);
            self.stats
                .redis_backlog
                .store(self.backlog.len() as u64, Relaxed);
        }
        Ok(())
    }

    fn transaction(&self, b: &WindowBatch) -> redis::Pipeline {
        let s = &self.settings;
        let mut p = redis::pipe();
        p.atomic();
        for r in &b.reports {
            let load = self.keys.load(&r.function);
            let history = self.keys.history(&r.function);
            p.del(&load).ignore();
            p.hset_multiple(&load, &r.hash_fields()).ignore();
            p.pexpire(&load, i64::try_from(ms(s.load_ttl)).unwrap_or(i64::MAX))
                .ignore();
            p.lpush(&history, r.to_json()).ignore();
            let last = isize::try_from(s.history_len.max(1)).unwrap_or(isize::MAX) - 1;
            p.ltrim(&history, 0, last).ignore();
            p.pexpire(
                &history,
                i64::try_from(ms(s.history_ttl)).unwrap_or(i64::MAX),
            )
            .ignore();
        }
        p.hset_multiple(
            self.keys.stats(),
            &self.stats.redis_fields(crate::clock::unix_ms()),
        )
        .ignore();
        p
    }
}
