//! Resource cost of the platform's own services over a time window: CPU seconds (the delta of
//! utime + stime of the container's main process, every thread) and resident memory (the
//! highest `VmRSS` seen, sampled every 250 ms), plus how busy the whole machine was.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::procfs;

/// A process to account for: a service container's main process, or a process tree.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub name: String,
    pub pid: u32,
    /// Count descendants too (function containers: docker-init → runtime → workers).
    pub tree: bool,
}

impl Tracked {
    pub fn process(name: &str, pid: u32) -> Tracked {
        Tracked {
            name: name.to_string(),
            pid,
            tree: false,
        }
    }

    pub fn tree(name: &str, pid: u32) -> Tracked {
        Tracked {
            name: name.to_string(),
            pid,
            tree: true,
        }
    }

    /// `(user, system)` CPU seconds so far.
    fn cpu(&self) -> (f64, f64) {
        if self.tree {
            procfs::tree_cpu_seconds(self.pid)
        } else {
            procfs::cpu_seconds(self.pid).unwrap_or((0.0, 0.0))
        }
    }

    fn switches(&self) -> u64 {
        if self.tree {
            procfs::tree_context_switches(self.pid)
        } else {
            procfs::context_switches(self.pid)
        }
    }

    fn rss(&self) -> f64 {
        if self.tree {
            procfs::tree_rss_mib(self.pid)
        } else {
            procfs::rss_mib(self.pid).unwrap_or(0.0)
        }
    }
}

/// One tracked process over one window.
#[derive(Debug, Clone)]
pub struct Usage {
    pub name: String,
    /// User + system.
    pub cpu_s: f64,
    /// The system (kernel) part of `cpu_s`.
    pub sys_s: f64,
    /// Context switches of its threads (voluntary + involuntary).
    pub switches: u64,
    pub rss_mib: f64,
}

/// A finished window.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub seconds: f64,
    pub usage: Vec<Usage>,
    /// Share of the machine's CPU time (all cores) that was busy, 0..1.
    pub host_busy: f64,
}

impl Window {
    pub fn get(&self, name: &str) -> Option<&Usage> {
        self.usage.iter().find(|u| u.name == name)
    }

    pub fn cpu(&self, name: &str) -> f64 {
        self.get(name).map(|u| u.cpu_s).unwrap_or(0.0)
    }

    pub fn sys(&self, name: &str) -> f64 {
        self.get(name).map(|u| u.sys_s).unwrap_or(0.0)
    }

    pub fn switches(&self, name: &str) -> u64 {
        self.get(name).map(|u| u.switches).unwrap_or(0)
    }
}

/// `(busy, total)` jiffies of all cores from `/proc/stat`.
fn host_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// An open window: CPU counters read at start, RSS sampled in the background.
pub struct Sampler {
    tracked: Vec<Tracked>,
    cpu0: Vec<(f64, f64)>,
    switches0: Vec<u64>,
    host0: (u64, u64),
    start: Instant,
    rss_max: Arc<Mutex<Vec<f64>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub fn start(tracked: Vec<Tracked>) -> Sampler {
        let rss_max = Arc::new(Mutex::new(vec![0.0_f64; tracked.len()]));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::task::spawn_blocking({
            let (tracked, rss_max, stop) = (tracked.clone(), rss_max.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Acquire) {
                    let now: Vec<f64> = tracked.iter().map(Tracked::rss).collect();
                    if let Ok(mut m) = rss_max.lock() {
                        for (m, v) in m.iter_mut().zip(now) {
                            *m = f64::max(*m, v);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        });
        Sampler {
            cpu0: tracked.iter().map(Tracked::cpu).collect(),
            switches0: tracked.iter().map(Tracked::switches).collect(),
            host0: host_ticks(),
            start: Instant::now(),
            tracked,
            rss_max,
            stop,
            task,
        }
    }

    pub async fn finish(self) -> Window {
        let cpu1: Vec<(f64, f64)> = self.tracked.iter().map(Tracked::cpu).collect();
        let switches1: Vec<u64> = self.tracked.iter().map(Tracked::switches).collect();
        let host1 = host_ticks();
        let seconds = self.start.elapsed().as_secs_f64();
        self.stop.store(true, Ordering::Release);
        let _ = self.task.await;
        let rss = self.rss_max.lock().map(|m| m.clone()).unwrap_or_default();
        let usage = self
            .tracked
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let user = (cpu1[i].0 - self.cpu0[i].0).max(0.0);
                let sys = (cpu1[i].1 - self.cpu0[i].1).max(0.0);
                Usage {
                    name: t.name.clone(),
                    cpu_s: user + sys,
                    sys_s: sys,
                    switches: switches1[i].saturating_sub(self.switches0[i]),
                    rss_mib: rss.get(i).copied().unwrap_or(0.0),
                }
            })
            .collect();
        let busy = host1.0.saturating_sub(self.host0.0) as f64;
        let total = host1.1.saturating_sub(self.host0.1) as f64;
        Window {
            seconds,
            usage,
            host_busy: if total > 0.0 { busy / total } else { 0.0 },
        }
    }
}
