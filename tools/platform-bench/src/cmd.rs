//! External programs with a deadline: a missing or broken tool is a clear error naming it,
//! a hung one is killed when its time is up. Nothing here can wait forever.

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The command line of `cmd`, for messages and the report.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion within `timeout`, stdout and stderr captured. Exit status is not
/// checked here (see [`run_ok`]).
pub async fn run(cmd: std::process::Command, timeout: Duration) -> Result<Output> {
    let what = describe(&cmd);
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().with_context(|| {
        format!("cannot run `{what}` (is it installed? `make bench` installs what it needs)")
    })?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => out.with_context(|| format!("`{what}` failed")),
        Err(_) => bail!("`{what}` did not finish within {timeout:?} (killed)"),
    }
}

/// [`run`], and a non-zero exit is an error carrying the end of stderr.
pub async fn run_ok(cmd: std::process::Command, timeout: Duration) -> Result<String> {
    let what = describe(&cmd);
    let out = run(cmd, timeout).await?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        bail!("`{what}` exited with {}:\n{tail}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A long-running program (a proxy under test) in a process group of its own, its output in
/// a log file. Dropping it stops the whole group: SIGTERM, then SIGKILL after 3 s.
pub struct Daemon {
    pub name: String,
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Daemon {
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Daemon> {
        use std::os::unix::process::CommandExt;
        let what = describe(&cmd);
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone().context("log file")?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: `{what}` (is it installed?)"))?;
        // scripts/bench.sh stops these process groups if this program is killed before it
        // could (its own group does not include them).
        if let Some(path) = std::env::var_os("SLUICE_BENCH_PIDS_FILE") {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(f, "{}", child.id());
            }
        }
        Ok(Daemon {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// Process id of the program (the group leader).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Waits until `addr` accepts connections; an early exit or the deadline is an error
    /// carrying the program's log.
    pub async fn wait_listening(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    bail!(
                        "{} exited ({status}) before listening on {addr}:\n{}",
                        self.name,
                        self.log_text()
                    );
                }
            }
            let connect = tokio::net::TcpStream::connect(addr);
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), connect).await {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "{} is not listening on {addr} after {timeout:?}:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn signal_group(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        signal_group(pid, "-TERM");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Workers of a proxy may outlive their master: the whole group goes.
        signal_group(pid, "-KILL");
        let _ = child.kill();
        let _ = child.wait();
    }
}
