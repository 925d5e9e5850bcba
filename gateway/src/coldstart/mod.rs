//! Scale-from-zero holds: a request for a function with no HEALTHY endpoint waits here until
//! one appears, the orchestrator refuses, or the function's `cold_start_timeout` passes.
//! This module only says *when the function is ready* (and wakes it once); the order and the
//! rate at which held calls then go on is [`crate::admission`]'s.
//!
//! Invariants:
//! * At most one [`Hold`] per function exists at a time (the map below, guarded by one
//!   mutex that is never held across an `.await`). Every request that finds its function
//!   not ready joins that hold; the request that creates it spawns the one wake task, so a
//!   cold start makes exactly ONE wake call however many requests arrive (retried with
//!   backoff only when the call fails, and only while requests are still held).
//! * Readiness is re-checked against the snapshot in effect *under the mutex* when a request
//!   joins, and the snapshot watcher updates holds under the same mutex after every accepted
//!   snapshot, so an endpoint published between a request's first check and its join can
//!   never be missed: either the joiner sees it, or the watcher sees the hold.
//! * A hold only ever leaves the `Waiting` state once (to ready, unknown, refused or
//!   abandoned), and is removed from the map when it does; the next request after that
//!   starts a new cold start.
//! * When the last held request leaves (timed out, client gone), the hold is abandoned:
//!   its wake task stops retrying.

pub mod wake;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sluice_common::xds::Snapshot;
use tokio::sync::watch;

use crate::catalog::{self, Catalog};
use crate::stats::Stats;
use wake::{WakeReply, Waker};

/// First retry delay of a failed wake call; doubles up to [`WAKE_BACKOFF_MAX`].
pub const WAKE_BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest delay between two wake attempts.
pub const WAKE_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Where a cold start stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldState {
    /// No HEALTHY endpoint yet.
    Waiting,
    /// An endpoint appeared: every held request goes on.
    Ready,
    /// The function no longer exists (removed from the config, or unknown to the orchestrator).
    Unknown,
    /// The orchestrator refused to start it.
    Refused(String),
    /// Every held request left before the function became ready.
    Abandoned,
}

/// How a wait ended, for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The function has a ready replica; `held` is true when this request had to wait.
    Ready { held: bool },
    /// No replica within the timeout.
    TimedOut,
    /// The function does not exist (any more).
    Unknown,
    /// The orchestrator refused to start the function (its message).
    Refused(String),
}

/// One cold start of one function, shared by every request waiting for it.
#[derive(Debug)]
struct Hold {
    function: String,
    state: watch::Sender<HoldState>,
    /// Requests waiting on this hold; changed only under the map mutex.
    holders: AtomicUsize,
}

/// The per-function holds (see the module docs).
#[derive(Debug)]
pub struct ColdStarts {
    holds: Mutex<HashMap<String, Arc<Hold>>>,
    catalog: Catalog,
    waker: Waker,
    stats: Arc<Stats>,
    rt: tokio::runtime::Handle,
}

impl ColdStarts {
    /// Builds the hold registry and spawns, on `rt`, the task that updates holds from every
    /// snapshot the catalog accepts. Wake tasks are spawned on `rt` too.
    pub fn start(
        catalog: Catalog,
        waker: Waker,
        stats: Arc<Stats>,
        rt: tokio::runtime::Handle,
    ) -> Arc<Self> {
        let cold = Arc::new(ColdStarts {
            holds: Mutex::new(HashMap::new()),
            catalog,
            waker,
            stats,
            rt,
        });
        let watcher = cold.clone();
        let rx = cold.catalog.subscribe();
        cold.rt
            .spawn(async move { watcher.watch_snapshots(rx).await });
        cold
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Hold>>> {
        // A panic while holding this lock cannot leave the map inconsistent (every update is
        // a single insert/remove), so a poisoned lock is still usable.
        self.holds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `function` has a HEALTHY endpoint, at most `timeout`. Returns at once
    /// (`held: false`) when it already has one.
    pub async fn wait_ready(self: &Arc<Self>, function: &str, timeout: Duration) -> Outcome {
        let (hold, mut rx, created) = {
            let mut holds = self.lock();
            let snap = self.catalog.snapshot();
            if catalog::is_ready(&snap, function) {
                return Outcome::Ready { held: false };
            }
            if snap.cluster_for(function).is_none() {
                return Outcome::Unknown;
            }
            let (hold, created) = match holds.get(function) {
                Some(h) => (h.clone(), false),
                None => {
                    let (state, _) = watch::channel(HoldState::Waiting);
                    let h = Arc::new(Hold {
                        function: function.to_string(),
                        state,
                        holders: AtomicUsize::new(0),
                    });
                    holds.insert(function.to_string(), h.clone());
                    (h, true)
                }
            };
            hold.holders.fetch_add(1, Ordering::SeqCst);
            let rx = hold.state.subscribe();
            (hold, rx, created)
        };
        let _ticket = Ticket {
            cold: self,
            hold: hold.clone(),
        };
        if created {
            Stats::bump(&self.stats.cold_starts);
            tracing::info!(
                function,
                "cold start: no ready replica, waking the function"
            );
            let cold = self.clone();
            let hold = hold.clone();
            self.rt
                .spawn(async move { cold.wake_until_settled(hold).await });
        }
        let settled = tokio::time::timeout(timeout, async {
            rx.wait_for(|s| *s != HoldState::Waiting)
                .await
                .map(|state| state.clone())
        })
        .await;
        match settled {
            Err(_) => Outcome::TimedOut,
            Ok(Err(_)) => Outcome::Refused("cold start was interrupted".into()),
            Ok(Ok(state)) => match state {
                HoldState::Ready => Outcome::Ready { held: true },
                HoldState::Unknown => Outcome::Unknown,
                HoldState::Refused(m) => Outcome::Refused(m),
                // Not reachable while this request holds a ticket; answer as a timeout.
                HoldState::Waiting | HoldState::Abandoned => Outcome::TimedOut,
            },
        }
    }

    /// Requests waiting for this cold start right now, per function (the gateway reports its
    /// held calls from [`crate::admission::Gates::held_now`]; this view is for the tests).
    #[cfg(test)]
    pub fn held_now(&self) -> std::collections::BTreeMap<String, usize> {
        self.lock()
            .iter()
            .map(|(f, h)| (f.clone(), h.holders.load(Ordering::SeqCst)))
            .collect()
    }

    /// Moves `hold` out of `Waiting` (once) and out of the map.
    fn settle(&self, hold: &Arc<Hold>, to: HoldState) {
        let mut holds = self.lock();
        Self::settle_locked(&mut holds, hold, to);
    }

    fn settle_locked(holds: &mut HashMap<String, Arc<Hold>>, hold: &Arc<Hold>, to: HoldState) {
        if holds
            .get(&hold.function)
            .is_some_and(|h| Arc::ptr_eq(h, hold))
        {
            holds.remove(&hold.function);
        }
        hold.state.send_if_modified(|s| {
            if *s == HoldState::Waiting {
                *s = to;
                true
            } else {
                false
            }
        });
    }

    /// Releases holds from every accepted snapshot. Ends when the snapshot source is gone.
    async fn watch_snapshots(self: Arc<Self>, mut rx: watch::Receiver<Arc<Snapshot>>) {
        while rx.changed().await.is_ok() {
            let snap = rx.borrow_and_update().clone();
            let mut holds = self.lock();
            let settled: Vec<(Arc<Hold>, HoldState)> = holds
                .values()
                .filter_map(|h| {
                    if catalog::is_ready(&snap, &h.function) {
                        Some((h.clone(), HoldState::Ready))
                    } else if snap.cluster_for(&h.function).is_none() {
                        Some((h.clone(), HoldState::Unknown))
                    } else {
                        None
                    }
                })
                .collect();
            for (hold, to) in settled {
                tracing::info!(function = %hold.function, state = ?to, held = hold.holders.load(Ordering::SeqCst), "cold start settled");
                Self::settle_locked(&mut holds, &hold, to);
            }
        }
        tracing::warn!("snapshot source closed: cold starts will only end by timeout");
    }

    /// The one wake task of a hold: calls the orchestrator, retries failures with backoff
    /// while the hold is still waiting, and stops as soon as it is not.
    async fn wake_until_settled(self: Arc<Self>, hold: Arc<Hold>) {
        let mut rx = hold.state.subscribe();
        let mut backoff = WAKE_BACKOFF_START;
        let function = hold.function.as_str();
        loop {
            if *rx.borrow_and_update() != HoldState::Waiting {
                return;
            }
            Stats::bump(&self.stats.wake_calls);
            match self.waker.wake(function).await {
                Ok(WakeReply::Accepted) => {
                    tracing::info!(function, "wake call accepted");
                    return;
                }
                Ok(WakeReply::Unknown) => {
                    tracing::warn!(function, "orchestrator does not know the function");
                    self.settle(&hold, HoldState::Unknown);
                    return;
                }
                Ok(WakeReply::Refused { status, message }) => {
                    tracing::warn!(function, status, %message, "orchestrator refused the wake call");
                    self.settle(&hold, HoldState::Refused(message));
                    return;
                }
                Err(e) => {
                    Stats::bump(&self.stats.wake_failures);
                    let cause = e.source.as_ref().map(|s| s.to_string()).unwrap_or_default();
                    tracing::warn!(function, error = %e, %cause, retry_in_ms = backoff.as_millis() as u64, "wake call failed");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = rx.wait_for(|s| *s != HoldState::Waiting) => return,
            }
            backoff = (backoff * 2).min(WAKE_BACKOFF_MAX);
        }
    }
}

/// One request's place in a hold; leaving (drop) abandons the hold when it was the last.
struct Ticket<'a> {
    cold: &'a ColdStarts,
    hold: Arc<Hold>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut holds = self.cold.lock();
        if self.hold.holders.fetch_sub(1, Ordering::SeqCst) == 1 {
            ColdStarts::settle_locked(&mut holds, &self.hold, HoldState::Abandoned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::{endpoint, snapshot_with};
    use crate::catalog::Defaults;
    use sluice_common::xds::pb;
    use std::convert::Infallible;
    use std::sync::atomic::AtomicU64;

    /// A real HTTP server standing in for the orchestrator's wake endpoint: answers each
    /// call with the next status of `statuses` (the last one repeats) and counts calls.
    async fn orchestrator_stand_in(statuses: Vec<u16>) -> (String, Arc<AtomicU64>) {
        use http_body_util::Full;
        use hyper::body::Bytes;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let calls = Arc::new(AtomicU64::new(0));
        let counted = calls.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let calls = counted.clone();
                let statuses = statuses.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
                        let status = statuses[n.min(statuses.len() - 1)];
                        async move {
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(b"{}")))
                                    .expect("response"),
                            )
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
        });
        (format!("http://{addr}"), calls)
    }

    fn cluster() -> pb::Cluster {
        pb::Cluster {
            name: "hello".into(),
            ..Default::default()
        }
    }

    fn setup(base: &str) -> (Arc<ColdStarts>, watch::Sender<Arc<Snapshot>>, Arc<Stats>) {
        let (tx, rx) = watch::channel(Arc::new(snapshot_with("hello", cluster(), vec![])));
        let stats = Arc::new(Stats::default());
        let cold = ColdStarts::start(
            Catalog::new(rx, Defaults::default()),
            Waker::new(base, Duration::from_secs(2)).expect("waker"),
            stats.clone(),
            tokio::runtime::Handle::current(),
        );
        (cold, tx, stats)
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        sluice_common::testing::wait_for(what, Duration::from_secs(10), || {
            let ok = f();
            async move { ok.then_some(()) }
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_waiters_one_wake_call_all_released_by_one_snapshot() {
        let (base, calls) = orchestrator_stand_in(vec![202]).await;
        let (cold, tx, stats) = setup(&base);
        let waiters: Vec<_> = (0..30)
            .map(|_| {
                let cold = cold.clone();
                tokio::spawn(async move { cold.wait_ready("hello", Duration::from_secs(20)).await })
            })
            .collect();
        until("30 requests held", || {
            cold.held_now().get("hello").copied() == Some(30)
        })
        .await;
        until("the wake call", || calls.load(Ordering::SeqCst) == 1).await;
        tx.send_replace(Arc::new(snapshot_with(
            "hello",
            cluster(),
            vec![endpoint("a", pb::EndpointHealth::Healthy)],
        )));
        for w in waiters {
            assert_eq!(w.await.expect("join"), Outcome::Ready { held: true });
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(stats.cold_starts.load(Ordering::SeqCst), 1);
        assert!(cold.held_now().is_empty());
        // Warm now: no wait, no new wake call.
        assert_eq!(
            cold.wait_ready("hello", Duration::from_secs(1)).await,
            Outcome::Ready { held: false }
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn timeout_abandons_the_hold_and_the_next_request_wakes_again() {
        let (base, calls) = orchestrator_stand_in(vec![202]).await;
        let (cold, _tx, _stats) = setup(&base);
        let out = cold.wait_ready("hello", Duration::from_millis(300)).await;
        assert_eq!(out, Outcome::TimedOut);
        assert!(cold.held_now().is_empty());
        let out = cold.wait_ready("hello", Duration::from_millis(300)).await;
        assert_eq!(out, Outcome::TimedOut);
        until("second wake call", || calls.load(Ordering::SeqCst) == 2).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_wake_calls_are_retried_and_404_releases_as_unknown() {
        let (base, calls) = orchestrator_stand_in(vec![503, 500, 404]).await;
        let (cold, _tx, stats) = setup(&base);
        let out = cold.wait_ready("hello", Duration::from_secs(10)).await;
        assert_eq!(out, Outcome::Unknown);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(stats.wake_failures.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn removed_function_releases_held_requests_as_unknown() {
        let (base, _calls) = orchestrator_stand_in(vec![202]).await;
        let (cold, tx, _stats) = setup(&base);
        let w = {
            let cold = cold.clone();
            tokio::spawn(async move { cold.wait_ready("hello", Duration::from_secs(20)).await })
        };
        until("held", || !cold.held_now().is_empty()).await;
        tx.send_replace(Arc::new(Snapshot::default()));
        assert_eq!(w.await.expect("join"), Outcome::Unknown);
    }
}
