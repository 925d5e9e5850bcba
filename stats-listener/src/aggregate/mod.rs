//! Aggregation per function and per window.
//!
//! The aggregator task owns all state (no locks): it applies the events of each packet as
//! they come, signals queueing at once (see [`crate::signal`]), and at every window boundary
//! closes the window of every tracked function and hands the reports to the writer.
//!
//! * Gauges (`active`, `pending`, per-endpoint `active`) are kept per router tag and summed
//!   over live routers; an entry silent for the gauge expiry (3 s) stops counting.
//! * Counters and latency samples belong to the open window and reset when it closes.
//! * A function is reported at every window end while it has live gauges or had an update
//!   within the retention period (so the history shows idle windows as zeros); after that it
//!   is forgotten.
//! * Memory is bounded: at most `max_functions` functions, `max_routers` routers per gauge,
//!   `max_endpoints` endpoints per function, `max_samples` latency samples per window
//!   (reservoir sampling beyond). Updates over a limit are counted (`over_limit`) and dropped.
//!
//! Windows close on wall-clock multiples of the window length (best effort). On shutdown the
//! input closes, the open window is closed early (its `window_ms` says how long it was) and
//! sent, then the task ends.

pub mod event;
mod function;
mod gauge;
mod report;
mod reservoir;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

pub use event::Event;
use function::{Applied, FunctionState};
pub use report::{Num, WindowReport};

use crate::clock;
use crate::signal::Signal;
use crate::stats::{LastWindow, Stats};

/// Aggregation settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub window: Duration,
    pub gauge_expiry: Duration,
    pub signal_interval: Duration,
    /// How long a function without live gauges and without updates is still reported.
    pub retention: Duration,
    pub max_samples: usize,
    pub max_functions: usize,
    pub max_routers: usize,
    pub max_endpoints: usize,
}

/// The reports of one window end, for the writer.
#[derive(Debug, Clone)]
pub struct WindowBatch {
    pub window_end_unix_ms: u64,
    pub reports: Vec<WindowReport>,
}

/// All per-function state.
pub struct Aggregator {
    settings: Settings,
    functions: HashMap<String, FunctionState>,
    rng: SmallRng,
    window_start: Instant,
    stats: Arc<Stats>,
}

impl Aggregator {
    pub fn new(settings: Settings, rng: SmallRng, now: Instant, stats: Arc<Stats>) -> Aggregator {
        Aggregator {
            settings,
            functions: HashMap::new(),
            rng,
            window_start: now,
            stats,
        }
    }

    /// Applies one event; returns a signal when queueing must be announced now.
    pub fn apply(&mut self, ev: Event, now: Instant, unix_ms: u64) -> Option<Signal> {
        let s = &self.settings;
        if !self.functions.contains_key(&ev.function) {
            if self.functions.len() >= s.max_functions {
                self.stats.over_limit.fetch_add(1, Relaxed);
                return None;
            }
            self.functions
                .insert(ev.function.clone(), FunctionState::new(now, s));
        }
        let f = self.functions.get_mut(&ev.function)?;
        match f.apply(&ev.router, ev.update, now, s, &mut self.rng) {
            Applied::Ok => None,
            Applied::OverLimit => {
                self.stats.over_limit.fetch_add(1, Relaxed);
                None
            }
            Applied::BacklogChanged => {
                let pending = f.pending(now, s.gauge_expiry);
                let held = f.held(now, s.gauge_expiry);
                f.throttle
                    .on_update(pending + held, now, s.signal_interval)
                    .then(|| Signal {
                        function: ev.function,
                        pending: Num(pending).rounded(),
                        active: Num(f.active(now, s.gauge_expiry)).rounded(),
                        held: Num(held).rounded(),
                        unix_ms,
                    })
            }
        }
    }

    /// Closes the open window of every tracked function (sorted by name) and forgets the
    /// idle ones.
    pub fn close_window(&mut self, now: Instant, end_unix_ms: u64) -> WindowBatch {
        let window_ms = u64::try_from(now.saturating_duration_since(self.window_start).as_millis())
            .unwrap_or(u64::MAX);
        self.window_start = now;
        let s = &self.settings;
        self.functions.retain(|_, f| !f.is_idle(now, s.retention));
        let mut reports: Vec<WindowReport> = self
            .functions
            .iter_mut()
            .map(|(name, f)| f.close(name, now, end_unix_ms, window_ms, s))
            .collect();
        reports.sort_by(|a, b| a.function.cmp(&b.function));
        self.stats.windows_closed.fetch_add(1, Relaxed);
        self.stats.set_last_window(LastWindow {
            window_end_unix_ms: end_unix_ms,
            window_ms,
            functions: reports.clone(),
        });
        WindowBatch {
            window_end_unix_ms: end_unix_ms,
            reports,
        }
    }
}

/// The aggregator task. Ends when `events` closes, after sending the final (partial) window.
pub async fn run(
    mut agg: Aggregator,
    mut events: mpsc::Receiver<Vec<Event>>,
    windows: mpsc::Sender<WindowBatch>,
    signals: mpsc::Sender<Signal>,
) {
    let window = agg.settings.window;
    let first = Instant::now() + clock::until_next_boundary(clock::unix_ms(), window);
    let mut ticker = tokio::time::interval_at(first, window);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            batch = events.recv() => {
                let Some(batch) = batch else { break };
                let now = Instant::now();
                let unix = clock::unix_ms();
                for ev in batch {
                    if let Some(sig) = agg.apply(ev, now, unix) {
                        if signals.try_send(sig).is_err() {
                            agg.stats.signals_dropped.fetch_add(1, Relaxed);
                        }
                    }
                }
            }
            _ = ticker.tick() => {
                let batch = agg.close_window(Instant::now(), clock::unix_ms());
                if windows.send(batch).await.is_err() {
                    tracing::error!("window writer stopped; aggregation ends");
                    return;
                }
            }
        }
    }
    let batch = agg.close_window(Instant::now(), clock::unix_ms());
    tracing::info!(
        functions = batch.reports.len(),
        "input closed; final window flushed"
    );
    let _ = windows.send(batch).await;
}
