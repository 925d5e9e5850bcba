//! Driving a stack with the project's load-test script, and reading what happened: its
//! per-second CSV and the orchestrator's autoscaling decisions from its JSON log.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{repo_root, ComposeStack};

/// A Python function entry of the registry (`extra`: further indented sections).
pub fn entry(name: &str, folder: &str, extra: &str) -> String {
    format!(
        "{name}:\n  name: {name}\n  version: 0.1\n  configuration:\n    programing_language: python\n    base_function_file_name: handler.py\n    function_folder: {folder}\n    extra_dependencies: \"\"\n{extra}"
    )
}

/// The load-test script (built by `make images`; built here if missing).
pub fn load_tool() -> PathBuf {
    let bin = repo_root().join("target/release/sluice-load");
    if !bin.exists() {
        let ok = Command::new("cargo")
            .args(["build", "--release", "-p", "sluice-load"])
            .current_dir(repo_root())
            .status()
            .expect("cargo");
        assert!(ok.success(), "building sluice-load");
    }
    bin
}

/// One second of `load.csv`.
pub struct Row {
    pub t: u64,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub ready: Option<u64>,
    pub desired: Option<u64>,
    pub errors: String,
}

impl Row {
    pub fn print(rows: &[Row]) {
        for r in rows {
            println!(
                "t={:>2}s sent={:>3} ok={:>3} failed={} ready={:?} desired={:?} {}",
                r.t, r.sent, r.ok, r.failed, r.ready, r.desired, r.errors
            );
        }
    }
}

pub fn read_csv(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).expect("load.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
    };
    let (t, sent, ok, failed, ready, desired, errors) = (
        col("t_s"),
        col("sent"),
        col("ok"),
        col("failed"),
        col("ready"),
        col("desired"),
        col("errors"),
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let num = |i: usize| {
                f.get(i)
                    .and_then(|v| v.parse::<f64>().ok())
                    .map(|v| v as u64)
            };
            Row {
                t: num(t).expect("t_s"),
                sent: num(sent).unwrap_or(0),
                ok: num(ok).unwrap_or(0),
                failed: num(failed).unwrap_or(0),
                ready: num(ready),
                desired: num(desired),
                errors: f.get(errors).unwrap_or(&"").to_string(),
            }
        })
        .collect()
}

/// What one run of the load-test script did.
pub struct LoadRun {
    pub success: bool,
    pub rows: Vec<Row>,
}

impl LoadRun {
    pub fn failed(&self) -> u64 {
        self.rows.iter().map(|r| r.failed).sum()
    }

    pub fn ok(&self) -> u64 {
        self.rows.iter().map(|r| r.ok).sum()
    }

    pub fn sent(&self) -> u64 {
        self.rows.iter().map(|r| r.sent).sum()
    }
}

impl ComposeStack {
    /// Runs the load-test script against `path` with `profile` for `duration`, at most
    /// 1000 calls in flight (so the rate stays open-loop through a long cold start); its CSV
    /// and chart go to `<stack dir>/<name>`.
    pub async fn load(&self, name: &str, path: &str, profile: &str, duration: &str) -> LoadRun {
        let out = self.dir.path().join(name);
        let url = self.url(path);
        let (profile, duration) = (profile.to_string(), duration.to_string());
        let password_file = self.dir.path().join("secrets/admin-password");
        let status = tokio::task::spawn_blocking({
            let out = out.clone();
            move || {
                Command::new(load_tool())
                    .args([
                        "--url",
                        &url,
                        "--profile",
                        &profile,
                        "--duration",
                        &duration,
                        "--concurrency",
                        "1000",
                        "--quiet",
                        "--out",
                    ])
                    .arg(&out)
                    .env("SLUICE_ADMIN_PASSWORD_FILE", &password_file)
                    .status()
                    .expect("run sluice-load")
            }
        })
        .await
        .expect("task");
        let rows = read_csv(&out.join("load.csv"));
        Row::print(&rows);
        LoadRun {
            success: status.success(),
            rows,
        }
    }

    /// The orchestrator's JSON log events about `function`.
    pub fn orchestrator_events(&self, function: &str) -> Vec<serde_json::Value> {
        let logs =
            String::from_utf8_lossy(&self.compose(&["logs", "--no-color", "orchestrator"]).stdout)
                .to_string();
        logs.lines()
            .filter_map(|l| l.find('{').and_then(|i| serde_json::from_str(&l[i..]).ok()))
            .filter(|v: &serde_json::Value| v["function"] == function)
            .collect()
    }

    /// The highest replica count the autoscaler asked for `function` (its log: every
    /// applied decision is logged with `to`), and the decisions as `from → to (reason and
    /// the numbers it rests on)`.
    pub fn peak_desired(&self, function: &str) -> (u64, Vec<String>) {
        let mut peak = 0;
        let mut steps = Vec::new();
        for v in self.orchestrator_events(function) {
            let msg = v["message"].as_str().unwrap_or("");
            if msg == "autoscale" || msg == "autoscale: queueing signal" {
                let to = v["to"].as_u64().unwrap_or(0);
                peak = peak.max(to);
                let num = |k: &str| v[k].as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
                steps.push(format!(
                    "{} → {to} ({}; demand {}, arrivals {}/s, service {} ms, backlog {})",
                    v["from"],
                    v["reason"].as_str().unwrap_or(msg),
                    num("demand"),
                    num("arrival_rps"),
                    num("service_ms"),
                    num("backlog"),
                ));
            }
        }
        (peak, steps)
    }
}
