//! What the kernel says about a process (or a process and all its descendants): resident
//! memory from `/proc/<pid>/status` and CPU time (user + system, every thread) from
//! `/proc/<pid>/stat`.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds `(user, system)` of one process (every thread) and its parent pid.
fn stat(pid: u32) -> Result<((f64, f64), u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses; fields restart after
    // the last `)`.
    let Some(close) = text.rfind(')') else {
        bail!("/proc/{pid}/stat: unexpected format");
    };
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // After comm: [0]=state [1]=ppid ... [11]=utime [12]=stime.
    let num = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat: field {i} missing"))
    };
    let ppid = num(1)? as u32;
    let (user, system) = (num(11)?, num(12)?);
    Ok((
        (user as f64 / TICKS_PER_SEC, system as f64 / TICKS_PER_SEC),
        ppid,
    ))
}

/// CPU seconds `(user, system)` used so far by `pid`.
pub fn cpu_seconds(pid: u32) -> Result<(f64, f64)> {
    Ok(stat(pid)?.0)
}

/// Resident set size of `pid`, MiB (`VmRSS`).
pub fn rss_mib(pid: u32) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("/proc/{pid}/status has no VmRSS"))?;
    Ok(kb / 1024.0)
}

/// Context switches (voluntary + involuntary) of every thread of `pid` so far.
pub fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Context switches of `pid` and its descendants (those alive now).
pub fn tree_context_switches(pid: u32) -> u64 {
    tree(pid).into_iter().map(context_switches).sum()
}

/// `pid` and every descendant alive now.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok((_, ppid)) = stat(p) {
                children.entry(ppid).or_default().push(p);
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c.iter().copied());
        }
        i += 1;
    }
    out
}

/// CPU seconds `(user, system)` used so far by `pid` and its descendants (those alive now).
pub fn tree_cpu_seconds(pid: u32) -> (f64, f64) {
    tree(pid)
        .into_iter()
        .filter_map(|p| cpu_seconds(p).ok())
        .fold((0.0, 0.0), |a, c| (a.0 + c.0, a.1 + c.1))
}

/// Resident memory of `pid` and its descendants, MiB (shared pages counted in each).
pub fn tree_rss_mib(pid: u32) -> f64 {
    tree(pid)
        .into_iter()
        .filter_map(|p| rss_mib(p).ok())
        .fold(0.0, |a, v| a + v)
}
