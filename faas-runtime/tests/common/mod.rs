//! Shared test harness: runs the real `faas-runtime` binary on a free port and talks to it
//! over real sockets.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Generous bound for anything that should happen "soon" on a loaded 2-core machine.
pub const SOON: Duration = Duration::from_secs(20);

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn functions_dir() -> PathBuf {
    crate_dir().join("functions")
}

pub fn function(name: &str, file: &str) -> String {
    functions_dir().join(name).join(file).display().to_string()
}

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => crate_dir().join("..").join("target"),
    }
}

/// Builds the `echo` example function once per test binary and returns its executable.
pub fn echo_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = target_dir().join("fn-echo");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            let status = Command::new(cargo)
                .args(["build", "--release", "--quiet", "--manifest-path"])
                .arg(functions_dir().join("echo").join("Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building functions/echo failed");
            target.join("release").join("echo")
        })
        .clone()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Writes `text` to `dir/name` (mode 0755 when `exec`).
pub fn write_file(dir: &Path, name: &str, text: &str, exec: bool) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create parent dir");
    }
    std::fs::write(&path, text).expect("write file");
    if exec {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod +x");
    }
    path.display().to_string()
}

/// A running `faas-runtime`; killed (and its log shown on failure) when dropped.
pub struct Runtime {
    child: Child,
    pub port: u16,
    pub base: String,
    log: PathBuf,
    _logdir: tempfile::TempDir,
    exited: Option<ExitStatus>,
}

impl Runtime {
    /// Starts the runtime in `mode` with `handler` plus extra `SLUICE_*` settings.
    pub fn start(mode: &str, function: &str, handler: &str, extra: &[(&str, &str)]) -> Runtime {
        let port = free_port();
        let logdir = tempfile::tempdir().expect("log dir");
        let log = logdir.path().join("runtime.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("clone log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_faas-runtime"));
        cmd.env("SLUICE_LISTEN", format!("127.0.0.1:{port}"))
            .env("SLUICE_MODE", mode)
            .env("SLUICE_FUNCTION", function)
            .env("SLUICE_HANDLER", handler)
            .env("SLUICE_LOG", "debug")
            // Socket directories go under this runtime's own temporary directory.
            .env("TMPDIR", logdir.path())
            .env_remove("SLUICE_CONFIG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start faas-runtime");
        Runtime {
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
            log,
            _logdir: logdir,
            exited: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `/_/health` until the server answers; returns the time it took.
    pub async fn wait_listening(&self) -> Duration {
        let started = Instant::now();
        let client = client();
        loop {
            if client.get(self.url("/_/health")).send().await.is_ok() {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < SOON,
                "runtime never listened:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Polls `/_/ready` until 200; returns the first non-200 body seen (if any).
    pub async fn wait_ready(&self) -> Option<String> {
        let started = Instant::now();
        let client = client();
        let mut first_unready = None;
        loop {
            if let Ok(resp) = client.get(self.url("/_/ready")).send().await {
                if resp.status() == 200 {
                    return first_unready;
                }
                let body = resp.text().await.unwrap_or_default();
                first_unready.get_or_insert(body);
            }
            assert!(
                started.elapsed() < SOON,
                "runtime never became ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Polls `/_/ready` until its body contains `needle`.
    pub async fn wait_ready_body(&self, needle: &str) -> (u16, String) {
        let started = Instant::now();
        let client = client();
        loop {
            if let Ok(resp) = client.get(self.url("/_/ready")).send().await {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                if body.contains(needle) {
                    return (status, body);
                }
            }
            assert!(
                started.elapsed() < SOON,
                "/_/ready never said {needle:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).expect("signal the runtime");
    }

    /// Waits (polling, with a deadline) for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(status);
                return status;
            }
            assert!(
                started.elapsed() < within,
                "runtime did not exit within {within:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// True while the process is running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if self.exited.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            // Stop it the way Docker does, so it stops its zygote / user server too.
            let _ = kill(Pid::from_raw(self.pid()), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- faas-runtime log ----\n{}", self.log());
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(SOON)
        .build()
        .expect("http client")
}

/// Child pids of `pid` (scans /proc).
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(child) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command name: state, ppid, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Polls until `f` returns `Some`, with a deadline.
pub async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < SOON, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends raw bytes on a fresh connection and returns everything read until the server
/// closes it (send `Connection: close`).
pub fn raw_request(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(SOON)).expect("read timeout");
    s.write_all(request).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}
