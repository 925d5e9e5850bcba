//! The machine the numbers come from: cores, CPU model, RAM, kernel, OS, Docker version and
//! storage driver, the versions of the tools in the comparison, and the commit measured.

use std::process::Command;
use std::time::Duration;

use bollard::Docker;

use crate::cmd;

#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub ram_gib: f64,
    pub kernel: String,
    pub os: String,
    pub docker: String,
    pub storage_driver: String,
    pub cgroup: String,
    pub rustc: String,
    pub wrk: String,
    pub nginx: String,
    pub haproxy: String,
    /// `uptime`'s load averages when the run began (other jobs make numbers noisy).
    pub load_at_start: String,
    /// ... and when it ended (the benchmark itself keeps about 2 busy).
    pub load_at_end: String,
    /// The repository's `HEAD` (short), `+ uncommitted changes` when the tracked files differ.
    pub commit: String,
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// The version token of a `--version` line: `HAProxy version 2.6.12-1 2026/10/17 - …` →
/// `2.6.12-1`, `nginx version: nginx/1.22.1` → `nginx/1.22.1`.
fn short_version(line: &str) -> String {
    line.split_whitespace()
        .skip(1)
        .find(|t| t.chars().any(|c| c.is_ascii_digit()))
        .unwrap_or(line)
        .to_string()
}

async fn version(program: &str, args: &[&str]) -> String {
    let mut c = Command::new(program);
    c.args(args);
    match cmd::run(c, Duration::from_secs(10)).await {
        // Some print their version on stderr (nginx, wrk).
        Ok(out) => {
            let text = format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            first_line(&text)
        }
        Err(e) => format!("unavailable ({e})"),
    }
}

/// `HEAD` of the repository, read-only (`--no-optional-locks`: the index is not refreshed).
async fn commit() -> String {
    let root = crate::stack_support::repo_root();
    let git = |args: &[&str]| {
        let mut c = Command::new("git");
        c.arg("--no-optional-locks").arg("-C").arg(&root).args(args);
        c
    };
    let head = match cmd::run_ok(
        git(&["rev-parse", "--short", "HEAD"]),
        Duration::from_secs(10),
    )
    .await
    {
        Ok(h) => h.trim().to_string(),
        Err(e) => return format!("unknown ({e})"),
    };
    let dirty = cmd::run_ok(
        git(&["status", "--porcelain", "--untracked-files=no"]),
        Duration::from_secs(20),
    )
    .await
    .map(|s| !s.trim().is_empty())
    .unwrap_or(false);
    if dirty {
        format!("{head} + uncommitted changes")
    } else {
        head
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn describe(docker: &Docker) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "unknown".into());
    let (docker_version, storage, cgroup) = match docker.info().await {
        Ok(i) => (
            i.server_version.unwrap_or_default(),
            i.driver.unwrap_or_default(),
            format!(
                "cgroup {} ({})",
                i.cgroup_version.map(|v| v.to_string()).unwrap_or_default(),
                i.cgroup_driver.map(|v| v.to_string()).unwrap_or_default()
            ),
        ),
        Err(e) => (format!("unavailable ({e})"), String::new(), String::new()),
    };
    let load_at_start = load_average();
    Machine {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model,
        ram_gib: ram_kib / 1024.0 / 1024.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        os,
        docker: docker_version,
        storage_driver: storage,
        cgroup,
        rustc: version("rustc", &["--version"]).await,
        wrk: short_version(&version("wrk", &["-v"]).await),
        nginx: short_version(&version("nginx", &["-v"]).await),
        haproxy: short_version(&version("haproxy", &["-v"]).await),
        load_at_start,
        load_at_end: String::new(),
        commit: commit().await,
    }
}
