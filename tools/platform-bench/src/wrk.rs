//! The one load generator of the warm path: `wrk` with the same threads, connections,
//! warm-up and duration for every row, and its `--latency` report parsed.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cmd;

/// Settings shared by every row.
#[derive(Debug, Clone)]
pub struct Load {
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
    pub warmup: Duration,
    /// Headers every request carries (`Name: value`).
    pub headers: Vec<String>,
}

impl Load {
    /// `wrk` arguments for a run of `d` against `url`.
    pub fn args(&self, d: Duration, url: &str) -> Vec<String> {
        vec![
            format!("-t{}", self.threads),
            format!("-c{}", self.connections),
            format!("-d{}s", d.as_secs()),
            "--timeout".into(),
            "5s".into(),
            "--latency".into(),
        ]
        .into_iter()
        .chain(
            self.headers
                .iter()
                .flat_map(|h| ["-H".to_string(), h.clone()]),
        )
        .chain([url.to_string()])
        .collect()
    }

    /// The measured run's command line (for the report).
    pub fn command_line(&self, url: &str) -> String {
        // The runtime token's value stays out of the report.
        let args: Vec<String> = self
            .args(self.duration, url)
            .into_iter()
            .map(|a| match a.split_once(':') {
                Some((name, _)) if name.eq_ignore_ascii_case(sluice_common::runtime::HEADER) => {
                    format!("'{name}: …'")
                }
                _ => a,
            })
            .collect();
        format!("wrk {}", args.join(" "))
    }
}

/// What one measured run gave.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub rps: f64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p75_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    /// Non-2xx/3xx responses.
    pub non_2xx: u64,
    /// connect + read + write + timeout socket errors.
    pub socket_errors: u64,
    pub raw: String,
}

impl Measured {
    pub fn errors(&self) -> u64 {
        self.non_2xx + self.socket_errors
    }

    /// Throughput, only when every response was a 2xx and no socket failed: `wrk` counts
    /// error responses as requests, and a fast error is not throughput.
    pub fn ok_rps(&self) -> Option<f64> {
        (self.errors() == 0).then_some(self.rps)
    }
}

/// Runs `wrk` against `url` for `d` (plus a generous margin before it is killed).
pub async fn run(load: &Load, d: Duration, url: &str) -> Result<Measured> {
    let mut c = Command::new("wrk");
    c.args(load.args(d, url));
    let out = cmd::run_ok(c, d + Duration::from_secs(30)).await?;
    parse(&out).with_context(|| format!("parsing wrk output for {url}:\n{out}"))
}

/// `1.23ms`, `456.00us`, `1.02s`, `2.00m` → milliseconds.
fn duration_ms(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        "h" => n * 3_600_000.0,
        _ => return None,
    })
}

pub fn parse(out: &str) -> Result<Measured> {
    let mut r = Measured {
        raw: out.to_string(),
        ..Default::default()
    };
    let mut seen = (false, false, false);
    for line in out.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => {
                r.rps = v.parse().context("Requests/sec")?;
                seen.0 = true;
            }
            ["50%", v] => {
                r.p50_ms = duration_ms(v).context("50%")?;
                seen.1 = true;
            }
            ["75%", v] => r.p75_ms = duration_ms(v).context("75%")?,
            ["90%", v] => r.p90_ms = duration_ms(v).context("90%")?,
            ["99%", v] => {
                r.p99_ms = duration_ms(v).context("99%")?;
                seen.2 = true;
            }
            [n, "requests", "in", ..] => r.requests = n.parse().context("requests")?,
            ["Non-2xx", "or", "3xx", "responses:", n] => {
                r.non_2xx = n.parse().context("non-2xx")?
            }
            ["Socket", "errors:", rest @ ..] => {
                // `connect 0, read 0, write 0, timeout 0`
                r.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    if !(seen.0 && seen.1 && seen.2) {
        bail!("no Requests/sec or latency distribution in wrk's output");
    }
    Ok(r)
}
