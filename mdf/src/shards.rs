//! The relay's worker threads: one single-threaded tokio runtime per core, each with its own
//! epoll. A session lives wholly on one shard (its sockets are registered with that shard's
//! reactor and its tasks run there), so a packet wakes exactly the thread that relays it: no
//! hand-off between threads, no work stealing, and the per-thread [`crate::io`] buffers stay
//! hot. Sessions go to the shard with the fewest; the control API runs elsewhere.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

pub struct Shards {
    shards: Vec<Shard>,
    stop: CancellationToken,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

struct Shard {
    handle: Handle,
    sessions: Arc<AtomicUsize>,
}

/// A session's place on a shard; the count goes down when it is dropped.
pub struct Placement {
    pub handle: Handle,
    sessions: Arc<AtomicUsize>,
}

impl Drop for Placement {
    fn drop(&mut self) {
        self.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shards {
    /// Starts `n` (at least one) relay threads.
    pub fn start(n: usize) -> std::io::Result<Shards> {
        let stop = CancellationToken::new();
        let mut shards = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let (tx, rx) = mpsc::channel();
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("mdf-relay-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = tx.send(Ok(rt.handle().clone()));
                    rt.block_on(stop.cancelled());
                })?;
            threads.push(thread);
            let handle = rx
                .recv()
                .map_err(|_| std::io::Error::other("relay thread ended at start"))??;
            shards.push(Shard {
                handle,
                sessions: Arc::new(AtomicUsize::new(0)),
            });
        }
        Ok(Shards {
            shards,
            stop,
            threads: Mutex::new(threads),
        })
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// The shard with the fewest sessions, for a new one.
    pub fn place(&self) -> Option<Placement> {
        let s = self
            .shards
            .iter()
            .min_by_key(|s| s.sessions.load(Ordering::Relaxed))?;
        s.sessions.fetch_add(1, Ordering::Relaxed);
        Some(Placement {
            handle: s.handle.clone(),
            sessions: s.sessions.clone(),
        })
    }

    /// Stops the relay threads (after the sessions are closed).
    pub fn shutdown(&self) {
        self.stop.cancel();
        let threads = self
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for t in threads {
            let _ = t.join();
        }
    }
}
