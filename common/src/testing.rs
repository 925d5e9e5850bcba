//! Helpers for the project's own tests (feature `testing`): free ports, a real
//! `redis-server` on a free port, child processes killed on drop, and polling with a deadline
//! instead of sleeping.

use std::future::Future;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A TCP port nobody listens on right now, never the same one twice in this process (the
/// kernel may hand out a just-released ephemeral port again at once).
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port");
        let mut g = given.lock().unwrap_or_else(|p| p.into_inner());
        if g.insert(port) {
            return port;
        }
    }
}

/// Polls `f` every 20 ms until it returns `Some`; `None` once `timeout` has passed.
pub async fn poll<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`poll`], panicking with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll(timeout, f).await {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// A child process that is killed (SIGKILL) when dropped.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.0.take().expect("child already reaped");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().expect("wait for child")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A real `redis-server` on a free loopback port, without persistence; killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: ChildGuard,
}

impl RedisServer {
    /// A redis-server on a free port. A port found free can be taken by another process
    /// before redis-server binds it: then another free port is tried.
    pub fn start() -> RedisServer {
        for _ in 0..5 {
            if let Some(r) = Self::try_start_on(free_port()) {
                return r;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// On a given port: to bring Redis back (empty) where a component expects it.
    pub fn start_on(port: u16) -> RedisServer {
        Self::try_start_on(port).unwrap_or_else(|| panic!("redis-server did not start on {port}"))
    }

    /// Starts redis-server on `port` and waits until it answers PING itself (a connection
    /// to the port alone could reach another process holding it); `None` when it exited or
    /// did not answer within 10 s.
    fn try_start_on(port: u16) -> Option<RedisServer> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (make deps)");
        let mut guard = ChildGuard(Some(child));
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            let exited = guard
                .0
                .as_mut()
                .is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
            if exited {
                return None;
            }
            if redis_pong(port) {
                return Some(RedisServer { port, child: guard });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Stops it with SIGTERM (an outage) and waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.child.terminate()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// True when a Redis server answers PING on `127.0.0.1:port`.
fn redis_pong(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 7];
    c.write_all(b"PING\r\n").is_ok() && c.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// The workspace root (tests find the repo's functions, compose file and binaries from it).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the common crate lives in the workspace root")
        .to_path_buf()
}

/// Copies a folder recursively, skipping `target/` (function fixtures into a temp dir).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let p = e.path();
        if p.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

/// Runs the docker CLI and returns its trimmed stdout (empty on failure).
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The status code of a SIP response (`SIP/2.0 200 OK` → 200); 0 for anything else.
pub fn sip_status(msg: &str) -> u16 {
    msg.strip_prefix("SIP/2.0 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Runs sipp (Debian's `sip-tester`) to completion: `scenario` (a file), `transport` (`u1`,
/// `t1`, ...), `calls` at `rate` per second against `target`, from 127.0.0.1 on a free port,
/// with a 60 s global timeout. Returns sipp's exit code: 0 when every call succeeded.
pub fn sipp(
    scenario: &std::path::Path,
    transport: &str,
    calls: u32,
    rate: u32,
    target: std::net::SocketAddr,
) -> i32 {
    sipp_with(scenario, transport, calls, rate, target, &[])
}

/// [`sipp`] with extra arguments (`-s user`, `-au user -ap password`, ...).
pub fn sipp_with(
    scenario: &std::path::Path,
    transport: &str,
    calls: u32,
    rate: u32,
    target: std::net::SocketAddr,
    extra: &[&str],
) -> i32 {
    let dir = std::env::temp_dir().join(format!("sipp-{}", free_port()));
    std::fs::create_dir_all(&dir).expect("sipp work dir");
    let out = Command::new("sipp")
        .current_dir(&dir)
        .arg("-sf")
        .arg(scenario)
        .args([
            "-t",
            transport,
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
        ])
        .args(["-i", "127.0.0.1", "-p", &free_port().to_string()])
        .args([
            "-timeout",
            "60s",
            "-timeout_error",
            "-nostdin",
            "-max_socket",
            "100",
            "-trace_err",
        ])
        .args(extra)
        .arg(target.to_string())
        .env("TERM", "dumb")
        .stderr(Stdio::null())
        .output()
        .expect("sipp (make deps installs sip-tester)");
    let code = out.status.code().unwrap_or(-1);
    if code != 0 {
        // What went wrong, for the failing test's output: sipp's final statistics and its
        // error log (unexpected messages, timeouts).
        let screen = String::from_utf8_lossy(&out.stdout);
        let tail: Vec<&str> = screen.lines().rev().take(45).collect();
        eprintln!("---- sipp exited {code}; its last screen ----");
        for l in tail.iter().rev() {
            eprintln!("{l}");
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with("_errors.log") {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let head: String = text.lines().take(60).collect::<Vec<_>>().join("\n");
                    eprintln!("---- sipp errors ----\n{head}");
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    code
}
