//! Section 3, scale reaction: with autoscaling on, a step from nothing to a constant,
//! open-loop rate of `sleep?ms=<ms>` calls through the gateway, sized to need three replicas
//! (`rate × ms` calls in flight against `target_concurrency × target_utilization` per
//! replica). Every response's `X-Sluice-Replica` is recorded: when each distinct replica
//! first answered, and every error. The system API is polled meanwhile for ready/desired.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::Mutex;

use crate::stack_support::ComposeStack;

#[derive(Debug, Clone)]
pub struct Settings {
    pub rate: f64,
    pub sleep_ms: u64,
    pub duration: Duration,
}

/// One call of the step.
#[derive(Debug, Clone)]
pub struct Call {
    /// Seconds since the step began.
    pub sent_s: f64,
    pub done_s: f64,
    /// `None`: no HTTP answer (connection error or timeout).
    pub status: Option<u16>,
    pub replica: Option<String>,
}

/// A system-API sample.
#[derive(Debug, Clone)]
pub struct Poll {
    pub t_s: f64,
    pub ready: u64,
    pub desired: u64,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub settings: Settings,
    pub calls: Vec<Call>,
    pub polls: Vec<Poll>,
}

impl Outcome {
    /// Each distinct replica with the time its first answer arrived, in that order.
    pub fn first_seen(&self) -> Vec<(String, f64)> {
        let mut calls: Vec<&Call> = self
            .calls
            .iter()
            .filter(|c| c.status == Some(200))
            .collect();
        calls.sort_by(|a, b| a.done_s.total_cmp(&b.done_s));
        let mut out: Vec<(String, f64)> = Vec::new();
        for c in calls {
            if let Some(r) = &c.replica {
                if !out.iter().any(|(n, _)| n == r) {
                    out.push((r.clone(), c.done_s));
                }
            }
        }
        out
    }

    /// When the API first reported `n` ready replicas.
    pub fn ready_at(&self, n: u64) -> Option<f64> {
        self.polls.iter().find(|p| p.ready >= n).map(|p| p.t_s)
    }

    pub fn errors(&self) -> usize {
        self.calls.iter().filter(|c| c.status != Some(200)).count()
    }

    /// The highest desired count the API reported, and when it was first reported.
    pub fn peak_desired(&self) -> (u64, Option<f64>) {
        let peak = self.polls.iter().map(|p| p.desired).max().unwrap_or(0);
        let at = self.polls.iter().find(|p| p.desired == peak).map(|p| p.t_s);
        (peak, at)
    }

    /// Ready replicas at the last sample taken while the step's calls were being sent.
    pub fn ready_at_end(&self) -> u64 {
        let end = self.settings.duration.as_secs_f64();
        self.polls
            .iter()
            .rev()
            .find(|p| p.t_s <= end)
            .map(|p| p.ready)
            .unwrap_or(0)
    }

    /// Mean of the API's ready count over the samples taken while the step's calls were
    /// being sent: replica-seconds per second of the step, what the step cost.
    pub fn mean_ready(&self) -> Option<f64> {
        let end = self.settings.duration.as_secs_f64();
        let v: Vec<f64> = self
            .polls
            .iter()
            .filter(|p| p.t_s <= end)
            .map(|p| p.ready as f64)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Latencies (ms) of the calls answered 200.
    pub fn ok_latencies_ms(&self) -> Vec<f64> {
        self.calls
            .iter()
            .filter(|c| c.status == Some(200))
            .map(|c| (c.done_s - c.sent_s) * 1000.0)
            .collect()
    }

    pub fn max_ready(&self) -> u64 {
        self.polls.iter().map(|p| p.ready).max().unwrap_or(0)
    }

    /// Distinct replicas that answered in each second (by arrival time).
    pub fn serving_per_second(&self) -> Vec<usize> {
        let secs = self.settings.duration.as_secs_f64().ceil() as usize + 2;
        let mut sets: Vec<Vec<&str>> = vec![Vec::new(); secs];
        for c in &self.calls {
            if let (Some(200), Some(r)) = (c.status, &c.replica) {
                let i = (c.done_s as usize).min(secs - 1);
                if !sets[i].contains(&r.as_str()) {
                    sets[i].push(r);
                }
            }
        }
        sets.iter().map(Vec::len).collect()
    }
}

/// Runs the step against `function` through the gateway at `gateway`.
pub async fn run(
    stack: &ComposeStack,
    gateway: SocketAddr,
    function: &str,
    settings: &Settings,
) -> Result<Outcome> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(60))
        .build()
        .context("http client")?;
    let url = format!("http://{gateway}/{function}?ms={}", settings.sleep_ms);
    let start = Instant::now();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let polls = Arc::new(Mutex::new(Vec::new()));

    // The system API, every 250 ms, until the step's calls are all answered.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = tokio::spawn({
        let (polls, done) = (polls.clone(), done.clone());
        let api = stack.url(&format!("/system/function/{function}"));
        let http = stack.admin.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                tick.tick().await;
                let t_s = start.elapsed().as_secs_f64();
                let Ok(r) = http.get(&api).send().await else {
                    continue;
                };
                let Ok(v) = r.json::<serde_json::Value>().await else {
                    continue;
                };
                polls.lock().await.push(Poll {
                    t_s,
                    ready: v["availableReplicas"].as_u64().unwrap_or(0),
                    desired: v["replicas"].as_u64().unwrap_or(0),
                });
            }
        }
    });

    // Open loop: one call per tick whatever the previous ones are doing.
    let period = Duration::from_secs_f64(1.0 / settings.rate);
    let n = (settings.duration.as_secs_f64() * settings.rate).round() as usize;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        tick.tick().await;
        let (http, url, calls) = (http.clone(), url.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            let sent_s = start.elapsed().as_secs_f64();
            let (status, replica) = match http.get(&url).send().await {
                Ok(r) => {
                    let replica = r
                        .headers()
                        .get("x-sluice-replica")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let status = r.status().as_u16();
                    // The whole body, so the call is complete when it is counted.
                    let ok = r.bytes().await.is_ok();
                    (ok.then_some(status), replica)
                }
                Err(_) => (None, None),
            };
            calls.lock().await.push(Call {
                sent_s,
                done_s: start.elapsed().as_secs_f64(),
                status,
                replica,
            });
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    let _ = poller.await;
    let mut calls = calls.lock().await.clone();
    calls.sort_by(|a, b| a.sent_s.total_cmp(&b.sent_s));
    let polls = polls.lock().await.clone();
    Ok(Outcome {
        settings: settings.clone(),
        calls,
        polls,
    })
}
