//! python mode: one zygote process imports the handler once; forked workers serve calls.
//!
//! Start-up: the runtime binds two Unix sockets in a private directory under `$TMPDIR` (the
//! root filesystem is read-only; `/tmp` is a tmpfs), then runs `python3 -u -B -c <zygote.py>`.
//! The zygote connects to `control.sock`, imports the handler file (its folder and
//! `<folder>/deps` first on `sys.path`), reports `loaded` or `import_error`, and forks
//! one worker, then one more each time every worker is busy, up to `--max-inflight`. Each worker connects to `workers.sock`; the runtime learns its pid
//! from `SO_PEERCRED` and puts the connection in the idle pool. The function counts as loaded
//! once the first worker has connected.
//!
//! Invariants:
//! * A worker serves one call at a time: it is taken out of the idle pool for the call and put
//!   back only when its answer was read completely (the connection is in step).
//! * A worker whose call timed out, failed at the protocol level or was abandoned is killed
//!   (SIGKILL) and the zygote is asked for exactly one replacement; a worker that died on its
//!   own (the zygote reports `exited`) is replaced the same way — never both.
//! * An import error leaves the runtime up but never ready: `/_/ready` answers 503 with the
//!   error, invocations get 503. The orchestrator surfaces the reason instead of crash-looping.
//! * The zygote dying for any other reason is fatal: the runtime exits non-zero.

mod wire;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::error::{ErrorKind, Result, RuntimeError};
use crate::invocation::{Invocation, Outcome};

use self::wire::WorkerConn;

use super::Fatal;

/// The zygote/worker program, run with `python3 -u -B -c`.
const ZYGOTE_PY: &str = include_str!("zygote.py");

/// How long stop waits for the zygote to take its workers down before killing everything.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// A private directory for the sockets, removed when dropped.
#[derive(Debug)]
struct SocketDir(PathBuf);

impl SocketDir {
    fn create() -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("sluice-runtime-{}-{nanos:08x}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(SocketDir(path))
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A request to the zygote.
#[derive(Debug)]
enum Control {
    Fork,
    Shutdown,
}

/// What the zygote reports (one line each).
#[derive(Debug, PartialEq)]
enum ZygoteEvent {
    /// `loaded <import_ms>`
    Loaded { import_ms: f64 },
    /// `import_error <JSON string>`
    ImportError { error: String },
    /// `forked <pid>`
    Forked { pid: i32 },
    /// `exited <pid> <status text>`
    Exited { pid: i32, status: String },
}

impl ZygoteEvent {
    fn parse(line: &str) -> Option<Self> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "loaded" => Some(ZygoteEvent::Loaded {
                import_ms: rest.trim().parse().unwrap_or(0.0),
            }),
            "import_error" => Some(ZygoteEvent::ImportError {
                error: serde_json::from_str(rest).unwrap_or_else(|_| rest.to_string()),
            }),
            "forked" => rest
                .trim()
                .parse()
                .ok()
                .map(|pid| ZygoteEvent::Forked { pid }),
            "exited" => {
                let (pid, status) = rest.split_once(' ').unwrap_or((rest, ""));
                pid.parse().ok().map(|pid| ZygoteEvent::Exited {
                    pid,
                    status: status.to_string(),
                })
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkerState {
    /// The zygote forked it; its connection has not been accepted yet.
    Forked,
    /// Connected and either idle or serving a call.
    Connected,
    /// Killed by the runtime (its replacement is already requested).
    Retired,
}

/// An idle worker: its pid and connection.
#[derive(Debug)]
struct Worker {
    pid: i32,
    conn: WorkerConn,
}

/// The workers, their states and the idle queue.
#[derive(Debug)]
struct Pool {
    function: Arc<str>,
    states: Mutex<HashMap<i32, WorkerState>>,
    idle_tx: mpsc::UnboundedSender<Worker>,
    idle_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Worker>>,
    control_tx: mpsc::UnboundedSender<Control>,
    /// At least one worker has connected (so the handler is imported).
    loaded: AtomicBool,
    /// Set when the handler failed to import.
    import_error: OnceLock<String>,
    stopping: Arc<AtomicBool>,
    started: Instant,
    /// Most workers the pool grows to (the in-flight cap).
    max_workers: usize,
    /// Forks requested from the zygote and not yet reported.
    requested: std::sync::atomic::AtomicUsize,
}

impl Pool {
    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<i32, WorkerState>> {
        // A poisoned lock only means a panic elsewhere mid-update of a plain map: keep going.
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the zygote for a worker. The caller holds the states lock: the pending-fork count
    /// and the worker states change and are read together, so a worker is never counted
    /// twice (the pool would stop short of its cap) nor missed (it would grow past it).
    fn request_fork(&self, _states: &HashMap<i32, WorkerState>) {
        if !self.stopping.load(Ordering::Acquire) {
            self.requested.fetch_add(1, Ordering::AcqRel);
            let _ = self.control_tx.send(Control::Fork);
        }
    }

    /// A new worker stops being a pending fork the first time it is seen: the zygote's fork
    /// report and the worker's own connection race, and whichever comes first counts (a
    /// worker counted both as pending and as live would stop the pool short of its cap).
    fn first_seen(&self, states: &HashMap<i32, WorkerState>, pid: i32) {
        if !states.contains_key(&pid) {
            let _ = self
                .requested
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    fn on_forked(&self, pid: i32) {
        let mut states = self.states();
        self.first_seen(&states, pid);
        states.entry(pid).or_insert(WorkerState::Forked);
    }

    /// Grows the pool by one worker when every worker is busy and the cap allows it. The pool
    /// starts with one worker and grows with the concurrency it meets, so a function with a
    /// high `max_concurrency` costs only the memory of the workers it really uses.
    fn grow_if_busy(&self) {
        let states = self.states();
        let live = states
            .values()
            .filter(|s| **s != WorkerState::Retired)
            .count()
            + self.requested.load(Ordering::Acquire);
        if live < self.max_workers {
            tracing::debug!(function = %self.function, workers = live + 1, "all python workers busy: forking one more");
            self.request_fork(&states);
        }
    }

    fn on_connected(&self, pid: i32, stream: UnixStream) {
        {
            let mut states = self.states();
            if states.get(&pid) == Some(&WorkerState::Retired) {
                return;
            }
            self.first_seen(&states, pid);
            states.insert(pid, WorkerState::Connected);
        }
        let _ = self.idle_tx.send(Worker {
            pid,
            conn: WorkerConn::new(stream),
        });
        if !self.loaded.swap(true, Ordering::AcqRel) {
            tracing::info!(
                function = %self.function,
                ready_ms = self.started.elapsed().as_secs_f64() * 1000.0,
                "python function ready"
            );
        }
    }

    fn on_exited(&self, pid: i32, status: &str) {
        let mut states = self.states();
        match states.remove(&pid) {
            Some(WorkerState::Retired) => {
                tracing::debug!(function = %self.function, pid, status, "retired python worker reaped");
            }
            Some(_) => {
                if !self.stopping.load(Ordering::Acquire) {
                    tracing::warn!(function = %self.function, pid, status, "python worker died; replacing it");
                }
                self.request_fork(&states);
            }
            None => {}
        }
    }

    /// Kills a worker that can no longer be trusted and asks for its replacement.
    fn retire(&self, pid: i32, reason: &str) {
        let was_live = {
            let mut states = self.states();
            match states.get_mut(&pid) {
                Some(s @ (WorkerState::Forked | WorkerState::Connected)) => {
                    *s = WorkerState::Retired;
                    // The replacement is counted in the same step the worker stops counting.
                    self.request_fork(&states);
                    true
                }
                _ => false,
            }
        };
        if was_live {
            tracing::warn!(function = %self.function, pid, reason, "killing python worker");
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    fn is_connected(&self, pid: i32) -> bool {
        self.states().get(&pid) == Some(&WorkerState::Connected)
    }

    /// Waits for an idle, live worker.
    async fn acquire(self: &Arc<Self>) -> Result<Lease> {
        let mut idle = self.idle_rx.lock().await;
        loop {
            let next = match idle.try_recv() {
                Ok(w) => Some(w),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    self.grow_if_busy();
                    idle.recv().await
                }
            };
            let Some(worker) = next else {
                return Err(RuntimeError::new(
                    ErrorKind::NotReady,
                    "the python worker pool is closed",
                ));
            };
            if self.is_connected(worker.pid) {
                return Ok(Lease {
                    pool: self.clone(),
                    worker: Some(worker),
                    reason: "call abandoned",
                });
            }
            // A worker that died while idle: its replacement is already on the way.
        }
    }

    fn live_pids(&self) -> Vec<i32> {
        self.states()
            .iter()
            .filter(|(_, s)| **s != WorkerState::Retired)
            .map(|(pid, _)| *pid)
            .collect()
    }
}

/// A worker taken out of the pool for one call. Dropping it without [`Lease::release`] kills
/// the worker (its connection may be mid-frame) and requests a replacement.
struct Lease {
    pool: Arc<Pool>,
    worker: Option<Worker>,
    reason: &'static str,
}

impl Lease {
    fn conn(&mut self) -> Option<&mut WorkerConn> {
        self.worker.as_mut().map(|w| &mut w.conn)
    }

    /// Returns the worker, in step, to the idle pool.
    fn release(mut self) {
        if let Some(w) = self.worker.take() {
            let _ = self.pool.idle_tx.send(w);
        }
    }

    fn discard(mut self, reason: &'static str) {
        self.reason = reason;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            self.pool.retire(w.pid, self.reason);
        }
    }
}

/// The python backend.
#[derive(Debug)]
pub struct PythonBackend {
    pool: Arc<Pool>,
    zygote_pid: Option<i32>,
    monitor: Mutex<Option<JoinHandle<()>>>,
    _dir: SocketDir,
}

impl PythonBackend {
    /// Starts the zygote; returns at once (loading continues in the background).
    pub fn start(cfg: &Config, stopping: Arc<AtomicBool>, fatal: Fatal) -> Result<Self> {
        let started = Instant::now();
        let function: Arc<str> = Arc::from(cfg.function.as_str());
        let internal = |what: String| {
            move |e: std::io::Error| RuntimeError::new(ErrorKind::Internal, what).with_source(e)
        };
        let dir = SocketDir::create().map_err(internal(format!(
            "cannot create a socket directory under {}",
            std::env::temp_dir().display()
        )))?;
        let control_path = dir.join("control.sock");
        let worker_path = dir.join("workers.sock");
        let control_listener = UnixListener::bind(&control_path).map_err(internal(format!(
            "cannot listen on {}",
            control_path.display()
        )))?;
        let worker_listener = UnixListener::bind(&worker_path).map_err(internal(format!(
            "cannot listen on {}",
            worker_path.display()
        )))?;

        let mut cmd = tokio::process::Command::new(&cfg.python);
        cmd.env_remove(sluice_common::runtime::ENV_TOKEN);
        // -I -S: isolated mode without `site` (no PYTHON* variables, no user or system
        // site-packages scan): the interpreter reads far fewer files, which is what a cold
        // container on an overlay filesystem pays for. The function's folder and its `deps/`
        // (where `extra_dependencies` are installed) are put on sys.path by the zygote.
        cmd.arg("-I")
            .arg("-S")
            .arg("-u")
            .arg("-B")
            .arg("-c")
            .arg(ZYGOTE_PY)
            .env("_SLUICE_CONTROL", &control_path)
            .env("_SLUICE_WORKER_SOCKET", &worker_path)
            .env("_SLUICE_HANDLER", &cfg.handler)
            .env("_SLUICE_FUNCTION", &cfg.function)
            // One worker to start with; the pool grows on demand up to the in-flight cap.
            .env("_SLUICE_WORKERS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            // Its own process group: a terminal's Ctrl-C reaches the runtime only, which then
            // stops the function in order.
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(internal(format!(
            "cannot start the python interpreter `{}`",
            cfg.python
        )))?;
        let zygote_pid = child.id().and_then(|p| i32::try_from(p).ok());
        tracing::info!(function = %function, handler = %cfg.handler, pid = ?zygote_pid, "python zygote started");

        let (idle_tx, idle_rx) = mpsc::unbounded_channel();
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let pool = Arc::new(Pool {
            function,
            states: Mutex::new(HashMap::new()),
            idle_tx,
            idle_rx: tokio::sync::Mutex::new(idle_rx),
            control_tx,
            loaded: AtomicBool::new(false),
            import_error: OnceLock::new(),
            stopping,
            started,
            max_workers: cfg.max_inflight.max(1) as usize,
            requested: std::sync::atomic::AtomicUsize::new(0),
        });

        tokio::spawn(accept_workers(worker_listener, pool.clone()));
        let control = tokio::spawn(run_control(
            control_listener,
            zygote_pid,
            control_rx,
            pool.clone(),
        ));
        let monitor = tokio::spawn(monitor_zygote(child, control, pool.clone(), fatal));
        Ok(PythonBackend {
            pool,
            zygote_pid,
            monitor: Mutex::new(Some(monitor)),
            _dir: dir,
        })
    }

    /// `Ok` once a worker has imported the handler; otherwise why not.
    /// The import error, when the handler failed to import.
    pub fn import_error(&self) -> Option<String> {
        self.pool
            .import_error
            .get()
            .map(|e| format!("handler failed to import: {e}"))
    }

    pub fn readiness(&self) -> std::result::Result<(), String> {
        if self.pool.loaded.load(Ordering::Acquire) {
            Ok(())
        } else if let Some(e) = self.pool.import_error.get() {
            Err(format!("handler failed to import: {e}"))
        } else {
            Err("function is loading (python handler not imported yet)".to_string())
        }
    }

    /// Runs one call on an idle worker, within the invocation's deadline.
    pub async fn invoke(&self, inv: Invocation) -> Result<Outcome> {
        if let Some(e) = self.pool.import_error.get() {
            return Err(RuntimeError::new(
                ErrorKind::NotReady,
                format!("handler failed to import: {e}"),
            ));
        }
        let deadline = tokio::time::Instant::from_std(inv.deadline);
        let mut lease = match tokio::time::timeout_at(deadline, self.pool.acquire()).await {
            Ok(lease) => lease?,
            Err(_) => {
                return Err(RuntimeError::new(
                    ErrorKind::Timeout,
                    "timed out waiting for a free python worker",
                ))
            }
        };
        let Some(conn) = lease.conn() else {
            return Err(RuntimeError::new(ErrorKind::Internal, "empty worker lease"));
        };
        match tokio::time::timeout_at(deadline, conn.call(&inv)).await {
            Ok(Ok(outcome)) => {
                lease.release();
                Ok(outcome)
            }
            Ok(Err(e)) if e.kind == ErrorKind::Function => {
                lease.release();
                Err(e)
            }
            Ok(Err(e)) => {
                lease.discard("protocol failure");
                Err(e)
            }
            Err(_) => {
                lease.discard("call timed out");
                Err(RuntimeError::new(
                    ErrorKind::Timeout,
                    "function timed out (its python worker was killed and replaced)",
                ))
            }
        }
    }

    /// Stops the zygote and every worker.
    pub async fn stop(&self) {
        let monitor = self
            .monitor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(mut monitor) = monitor else { return };
        if monitor.is_finished() {
            return;
        }
        if self.pool.loaded.load(Ordering::Acquire) {
            let _ = self.pool.control_tx.send(Control::Shutdown);
            if tokio::time::timeout(STOP_WAIT, &mut monitor).await.is_ok() {
                return;
            }
            tracing::warn!(function = %self.pool.function, "python zygote did not stop in time; killing it");
        }
        for pid in self.pool.live_pids().into_iter().chain(self.zygote_pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = tokio::time::timeout(STOP_WAIT, monitor).await;
    }
}

async fn accept_workers(listener: UnixListener, pool: Arc<Pool>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => match stream.peer_cred().ok().and_then(|c| c.pid()) {
                Some(pid) => pool.on_connected(pid, stream),
                None => {
                    tracing::warn!(function = %pool.function, "dropping a worker connection without a peer pid")
                }
            },
            Err(e) => {
                tracing::warn!(function = %pool.function, error = %e, "accepting a worker connection failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Accepts the zygote's control connection, forwards [`Control`] requests to it and applies
/// its events to the pool. Returns when the zygote closes the connection.
async fn run_control(
    listener: UnixListener,
    zygote_pid: Option<i32>,
    mut control_rx: mpsc::UnboundedReceiver<Control>,
    pool: Arc<Pool>,
) {
    let stream = loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let peer = stream.peer_cred().ok().and_then(|c| c.pid());
                if zygote_pid.is_none() || peer == zygote_pid {
                    break stream;
                }
                tracing::warn!(function = %pool.function, peer = ?peer, "ignoring a control connection not from the zygote");
            }
            Err(e) => {
                tracing::warn!(function = %pool.function, error = %e, "accepting the control connection failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    drop(listener);
    let (read, mut write) = stream.into_split();
    tokio::spawn(async move {
        while let Some(cmd) = control_rx.recv().await {
            let res = match cmd {
                Control::Fork => write.write_all(b"fork\n").await,
                Control::Shutdown => break,
            };
            if res.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    });
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match ZygoteEvent::parse(&line) {
            Some(ZygoteEvent::Loaded { import_ms }) => {
                tracing::info!(function = %pool.function, import_ms, "python handler imported");
            }
            Some(ZygoteEvent::ImportError { error }) => {
                tracing::error!(function = %pool.function, error = %error, "python handler failed to import; the runtime stays up but never ready");
                let _ = pool.import_error.set(error);
            }
            Some(ZygoteEvent::Forked { pid }) => pool.on_forked(pid),
            Some(ZygoteEvent::Exited { pid, status }) => pool.on_exited(pid, &status),
            None => {
                tracing::warn!(function = %pool.function, line = %line, "malformed zygote event dropped");
            }
        }
    }
}

/// Waits for the zygote to exit and decides whether that is fatal.
async fn monitor_zygote(
    mut child: tokio::process::Child,
    control: JoinHandle<()>,
    pool: Arc<Pool>,
    fatal: Fatal,
) {
    let status = child.wait().await;
    // Let the control reader drain what the zygote said before it exited (an import error).
    let _ = tokio::time::timeout(Duration::from_secs(1), control).await;
    let status = match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("unknown status ({e})"),
    };
    if pool.stopping.load(Ordering::Acquire) {
        tracing::info!(function = %pool.function, status = %status, "python zygote stopped");
    } else if pool.import_error.get().is_some() {
        tracing::info!(function = %pool.function, status = %status, "python zygote exited after the import error");
    } else {
        let _ = fatal.send(format!("python zygote exited unexpectedly ({status})"));
    }
}

#[cfg(test)]
mod tests {
    use super::ZygoteEvent;

    #[test]
    fn zygote_events_parse() {
        assert_eq!(
            ZygoteEvent::parse("forked 42"),
            Some(ZygoteEvent::Forked { pid: 42 })
        );
        assert_eq!(
            ZygoteEvent::parse("exited 42 killed by signal 9"),
            Some(ZygoteEvent::Exited {
                pid: 42,
                status: "killed by signal 9".into()
            })
        );
        assert_eq!(
            ZygoteEvent::parse("import_error \"ModuleNotFoundError: No module named 'x'\""),
            Some(ZygoteEvent::ImportError {
                error: "ModuleNotFoundError: No module named 'x'".into()
            })
        );
        assert_eq!(ZygoteEvent::parse("forked x"), None);
        assert_eq!(ZygoteEvent::parse("garbage"), None);
    }
}
