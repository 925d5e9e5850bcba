//! The `## History` section of BENCHMARKS.md.
//!
//! Its first subsection, *Optimisations, before → after*, is regenerated on every run: one
//! table per change made since the first full `make bench` (commit a863e7c), each row the
//! number that run recorded ([`BEFORE`] and friends, copied here from its
//! `bench-results/*.csv`) next to the same number from this run. The rest of the previous
//! file's history is carried over verbatim; a previous run's generated subsection (between
//! [`MARK_START`] and [`MARK_END`]) is dropped first, so it never piles up.

use std::fmt::Write as _;

use crate::report::{ms, thousands, Report};
use crate::stats::pct;
use crate::warm::Row;

/// Where the "before" numbers come from: the first full `make bench`.
const BEFORE_COMMIT: &str = "a863e7c";
const BEFORE_DATE: &str = "2026-11-26 06:54 UTC";
const BEFORE_LOAD: &str = "2.56 2.44 3.00 at the start, 5.55 5.41 4.18 at the end";
/// Its settings (the defaults then).
const BEFORE_SETTINGS: &str = "wrk 2 threads, 32 connections, a 2-s warm-up, 10 s measured; a \
    10-s idle window; 20 cold-start trials; 35 calls/s for 20 s in the scale step";

const MARK_START: &str =
    "<!-- make bench: optimisations before → after, regenerated on every run -->";
const MARK_END: &str = "<!-- /make bench: optimisations before → after -->";
const INTRO: &str = "`make bench` rewrites everything above this section and, in it, the \
    subsection *Optimisations, before → after* (this run against the recorded baseline); the \
    rest of this section is carried over verbatim.";
/// The intro of the history before the generated subsection existed (dropped when carried).
const OLD_INTRO: &str = "Before/after measurements recorded by hand.";

/// A warm-path row of the baseline run (`warm_path.csv`; the services from `resources.csv`).
struct WarmBefore {
    function: &'static str,
    row: char,
    rps: f64,
    requests: u64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU seconds of the row's proxies (gateway + router for (c)) and their kernel part.
    proxy_cpu_s: f64,
    proxy_sys_s: f64,
    proxy_switches: u64,
    /// CPU seconds of the router alone over the measured run.
    router_cpu_s: f64,
    /// CPU seconds of the stats-listener over the measured run ((c) only: recorded there).
    stats_cpu_s: Option<f64>,
    /// Highest RSS of the gateway and the router during the run ((c) only).
    gateway_rss_mib: Option<f64>,
    router_rss_mib: Option<f64>,
}

impl WarmBefore {
    fn per_req_us(&self, cpu_s: f64) -> f64 {
        cpu_s * 1e6 / self.requests as f64
    }
}

const BEFORE: [WarmBefore; 4] = [
    WarmBefore {
        function: "fast",
        row: 'b',
        rps: 10321.21,
        requests: 103_819,
        p50_ms: 2.78,
        p99_ms: 18.93,
        proxy_cpu_s: 6.350,
        proxy_sys_s: 3.110,
        proxy_switches: 196_140,
        router_cpu_s: 6.350,
        stats_cpu_s: None,
        gateway_rss_mib: None,
        router_rss_mib: None,
    },
    WarmBefore {
        function: "fast",
        row: 'c',
        rps: 7130.72,
        requests: 71_388,
        p50_ms: 3.88,
        p99_ms: 17.78,
        proxy_cpu_s: 9.380,
        proxy_sys_s: 4.050,
        proxy_switches: 218_910,
        router_cpu_s: 4.66,
        stats_cpu_s: Some(0.19),
        gateway_rss_mib: Some(15.0),
        router_rss_mib: Some(17.8),
    },
    WarmBefore {
        function: "hello",
        row: 'b',
        rps: 8013.18,
        requests: 80_289,
        p50_ms: 3.74,
        p99_ms: 20.75,
        proxy_cpu_s: 5.550,
        proxy_sys_s: 2.660,
        proxy_switches: 173_071,
        router_cpu_s: 5.550,
        stats_cpu_s: None,
        gateway_rss_mib: None,
        router_rss_mib: None,
    },
    WarmBefore {
        function: "hello",
        row: 'c',
        rps: 6033.54,
        requests: 60_597,
        p50_ms: 4.65,
        p99_ms: 20.63,
        proxy_cpu_s: 8.570,
        proxy_sys_s: 3.520,
        proxy_switches: 207_741,
        router_cpu_s: 4.35,
        stats_cpu_s: Some(0.17),
        gateway_rss_mib: Some(15.7),
        router_rss_mib: Some(17.9),
    },
];

/// Row (e)'s rps in the baseline run, for the (c) / (e) ratio.
const BEFORE_E_RPS: [(&str, f64); 2] = [("fast", 19659.88), ("hello", 15806.66)];
/// Idle RSS of the gateway and the router (MiB).
const BEFORE_IDLE_RSS: [(&str, f64); 2] = [("gateway", 10.3), ("router", 10.5)];

/// Section 3 of the baseline run (`scale_reaction*.csv`).
struct ScaleBefore {
    first_answer_s: [f64; 3],
    peak_desired: u64,
    peak_desired_at_s: f64,
    max_ready: u64,
    ready_at_end: u64,
    mean_ready: f64,
    calls: usize,
    errors: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

const SCALE_BEFORE: ScaleBefore = ScaleBefore {
    first_answer_s: [0.523, 1.5427, 1.8254],
    peak_desired: 10,
    peak_desired_at_s: 1.751,
    max_ready: 10,
    ready_at_end: 5,
    mean_ready: 6.4875,
    calls: 700,
    errors: 0,
    p50_ms: 201.9,
    p99_ms: 938.2,
    max_ms: 1226.2,
};

/// Section 2 of the baseline run, `hello` (`cold_start.csv`): (method, p50, p95) in ms.
const COLD_BEFORE: [(&str, f64, f64); 6] = [
    ("sluice", 322.785, 355.307),
    ("sluice-pool", 20.834, 29.316),
    ("create-start", 262.779, 281.969),
    ("create-start-ready", 317.005, 341.063),
    ("run", 324.565, 362.365),
    ("unpause-ready", 9.477, 12.437),
];

/// ... and, per trial, from `start` returning to `/_/ready` (the start inside the
/// container): p50, ms.
const COLD_BEFORE_INSIDE_P50: f64 = 54.319;

fn cold_before(key: &str, p95: bool) -> Option<f64> {
    COLD_BEFORE
        .iter()
        .find(|c| c.0 == key)
        .map(|c| if p95 { c.2 } else { c.1 })
}

#[derive(Clone, Copy)]
enum Unit {
    Rps,
    Ms,
    /// Milliseconds where a relative change means nothing (a difference of two timings).
    MsGap,
    Us,
    PerReq,
    Ratio,
    Count,
    Secs,
    Mib,
}

fn value(u: Unit, v: f64) -> String {
    match u {
        Unit::Rps => format!("{} rps", thousands(v)),
        Unit::Ms | Unit::MsGap => ms(Some(v)),
        Unit::Us if v.abs() < 10.0 => format!("{v:.1} µs"),
        Unit::Us => format!("{v:.0} µs"),
        Unit::PerReq => format!("{v:.2}"),
        Unit::Ratio => format!("{v:.2}×"),
        Unit::Count => format!("{v:.0}"),
        Unit::Secs => format!("{v:.2} s"),
        Unit::Mib => format!("{v:.1} MiB"),
    }
}

fn change(u: Unit, before: f64, after: f64) -> String {
    let d = after - before;
    let rel = if before.abs() > 1e-12 {
        format!(" ({:+.0}%)", 100.0 * d / before)
    } else {
        String::new()
    };
    match u {
        Unit::Rps => format!("{}{}", signed(thousands(d), d), rel),
        Unit::Ms if d.abs() < 10.0 => format!("{d:+.2} ms{rel}"),
        Unit::Ms => format!("{d:+.1} ms{rel}"),
        Unit::MsGap => format!("{d:+.1} ms"),
        Unit::Us if d.abs() < 10.0 => format!("{d:+.1} µs{rel}"),
        Unit::Us => format!("{d:+.0} µs{rel}"),
        Unit::PerReq => format!("{d:+.2}{rel}"),
        Unit::Ratio => format!("{d:+.2}"),
        Unit::Count => format!("{d:+.0}"),
        Unit::Secs => format!("{d:+.2} s"),
        Unit::Mib => format!("{d:+.1} MiB{rel}"),
    }
}

fn signed(s: String, d: f64) -> String {
    if d >= 0.0 {
        format!("+{s}")
    } else {
        s
    }
}

/// One table of before → after rows.
struct Table(Vec<(String, Unit, Option<f64>, Option<f64>)>);

impl Table {
    fn new() -> Table {
        Table(Vec::new())
    }

    fn add(&mut self, what: impl Into<String>, u: Unit, before: Option<f64>, after: Option<f64>) {
        self.0.push((what.into(), u, before, after));
    }

    fn write(&self, w: &mut String) {
        let _ = writeln!(
            w,
            "| measure | before ({BEFORE_COMMIT}) | after (this run) | change |\n|---|---|---|---|"
        );
        for (what, u, b, a) in &self.0 {
            let show = |v: &Option<f64>| v.map(|v| value(*u, v)).unwrap_or_else(|| "—".into());
            let ch = match (b, a) {
                (Some(b), Some(a)) => change(*u, *b, *a),
                _ => "—".into(),
            };
            let _ = writeln!(w, "| {what} | {} | {} | {ch} |", show(b), show(a));
        }
        let _ = writeln!(w);
    }
}

fn before_row(function: &str, row: char) -> Option<&'static WarmBefore> {
    BEFORE
        .iter()
        .find(|b| b.function == function && b.row == row)
}

/// Rows (b) and (c) of both warm-path functions that the baseline recorded: function, row,
/// its label, the baseline's numbers and this run's (if measured).
fn warm_pairs(
    r: &Report,
) -> Vec<(
    &'static str,
    char,
    &'static str,
    &'static WarmBefore,
    Option<&Row>,
)> {
    let mut out = Vec::new();
    for f in ["fast", "hello"] {
        for (row, label) in [('b', "(b) router only"), ('c', "(c) Sluice")] {
            if let Some(b) = before_row(f, row) {
                out.push((f, row, label, b, r.row(f, row)));
            }
        }
    }
    out
}

/// CPU µs per request of `cpu_s` in row `r`.
fn per_req(r: &Row, cpu_s: f64) -> Option<f64> {
    (r.m.requests > 0).then(|| cpu_s * 1e6 / r.m.requests as f64)
}

/// (1) Router statsD batching.
fn statsd(r: &Report, w: &mut String) {
    let _ = writeln!(
        w,
        "#### (1) Router statsD: latency samples batched per flush (c38aeb1)\n\n\
         The router queued one statsD timer line (one UDP datagram's worth) per request; it now \
         keeps a bounded reservoir of samples and sends multi-value timer lines once per flush \
         (250 ms). Rows it moves: the router's CPU and context switches per request, and the \
         stats-listener's CPU (fewer packets).\n"
    );
    let mut t = Table::new();
    for (f, row, label, b, a) in warm_pairs(r) {
        t.add(
            format!("`{f}` {label}: router CPU per request"),
            Unit::Us,
            Some(b.per_req_us(b.router_cpu_s)),
            a.and_then(|a| per_req(a, a.window.cpu("router"))),
        );
        if row == 'b' {
            t.add(
                format!("`{f}` {label}: router kernel (sys) CPU per request"),
                Unit::Us,
                Some(b.per_req_us(b.proxy_sys_s)),
                a.and_then(|a| per_req(a, a.proxy_sys_s)),
            );
            t.add(
                format!("`{f}` {label}: router context switches per request"),
                Unit::PerReq,
                Some(b.proxy_switches as f64 / b.requests as f64),
                a.map(|a| a.proxy_switches as f64 / a.m.requests.max(1) as f64),
            );
        }
        if let Some(s) = b.stats_cpu_s {
            t.add(
                format!("`{f}` {label}: stats-listener CPU per request"),
                Unit::Us,
                Some(b.per_req_us(s)),
                a.and_then(|a| per_req(a, a.window.cpu("stats-listener"))),
            );
        }
    }
    t.write(w);
}

/// (2) Proxies: half the CPUs each and mimalloc.
fn proxies(r: &Report, w: &mut String) {
    let _ = writeln!(
        w,
        "#### (2) Gateway and router: half the CPUs per proxy by default, and mimalloc (e142f3b)\n\n\
         Each proxy ran one worker thread per core (2 + 2 here, competing with the function \
         and the load generator on 2 cores); it now defaults to half the CPUs (1 each here), \
         and both use mimalloc. Rows it moves: throughput and latency through the router and \
         the gateway, their CPU per request and their memory. Change (1) also moves the \
         warm-path rows and landed with no run in between: these rows show both together.\n"
    );
    let mut t = Table::new();
    for (f, row, label, b, a) in warm_pairs(r) {
        t.add(
            format!("`{f}` {label}: throughput"),
            Unit::Rps,
            Some(b.rps),
            a.map(|a| a.m.rps),
        );
        t.add(
            format!("`{f}` {label}: p50"),
            Unit::Ms,
            Some(b.p50_ms),
            a.map(|a| a.m.p50_ms),
        );
        t.add(
            format!("`{f}` {label}: p99"),
            Unit::Ms,
            Some(b.p99_ms),
            a.map(|a| a.m.p99_ms),
        );
        t.add(
            format!("`{f}` {label}: proxy CPU per request"),
            Unit::Us,
            Some(b.per_req_us(b.proxy_cpu_s)),
            a.and_then(|a| per_req(a, a.proxy_cpu_s)),
        );
        if row == 'c' {
            let e_before = BEFORE_E_RPS.iter().find(|e| e.0 == f).map(|e| e.1);
            let e_after = r.row(f, 'e');
            t.add(
                format!("`{f}` (c) / (e) throughput (nginx → nginx, same run)"),
                Unit::Ratio,
                e_before.map(|e| b.rps / e),
                a.zip(e_after)
                    .filter(|(_, e)| e.m.rps > 0.0)
                    .map(|(a, e)| a.m.rps / e.m.rps),
            );
        }
    }
    let idle = r.idle.as_ref().ok();
    for (service, before) in BEFORE_IDLE_RSS {
        t.add(
            format!("{service} RSS, idle"),
            Unit::Mib,
            Some(before),
            idle.and_then(|i| i.get(service)).map(|u| u.rss_mib),
        );
    }
    for f in ["fast", "hello"] {
        let Some(b) = before_row(f, 'c') else {
            continue;
        };
        let a = r.row(f, 'c');
        for (service, before) in [("gateway", b.gateway_rss_mib), ("router", b.router_rss_mib)] {
            t.add(
                format!("{service} RSS, under (c) `{f}`"),
                Unit::Mib,
                before,
                a.and_then(|a| a.window.get(service)).map(|u| u.rss_mib),
            );
        }
    }
    t.write(w);
}

/// (3) The autoscaler's panic steps.
fn autoscaler(r: &Report, w: &mut String) {
    let _ = writeln!(
        w,
        "#### (3) Autoscaler: panic steps at most double the ready replicas, and hold while the queue drains (e142f3b)\n\n\
         In panic mode the desired count went straight to what the momentary queue asked for; \
         it now grows at most to twice the ready replicas per decision and holds while the \
         queue that built up during the cold starts drains. Rows it moves: section 3's desired \
         peak and the replicas started beyond the 3 the step needs (what the step costs), at \
         the price of at most a slightly later second and third replica.\n"
    );
    let o = r.scale.as_ref().ok();
    let b = &SCALE_BEFORE;
    let seen = o.map(|o| o.first_seen());
    let lat = o.map(|o| o.ok_latencies_ms()).unwrap_or_default();
    let mut t = Table::new();
    t.add(
        "desired count, peak",
        Unit::Count,
        Some(b.peak_desired as f64),
        o.map(|o| o.peak_desired().0 as f64),
    );
    t.add(
        "… first reported at",
        Unit::Secs,
        Some(b.peak_desired_at_s),
        o.and_then(|o| o.peak_desired().1),
    );
    t.add(
        "ready replicas, most at once",
        Unit::Count,
        Some(b.max_ready as f64),
        o.map(|o| o.max_ready() as f64),
    );
    t.add(
        "ready replicas at the end of the step",
        Unit::Count,
        Some(b.ready_at_end as f64),
        o.map(|o| o.ready_at_end() as f64),
    );
    t.add(
        "ready replicas, mean over the step (replica-seconds per second)",
        Unit::PerReq,
        Some(b.mean_ready),
        o.and_then(|o| o.mean_ready()),
    );
    for (i, before) in b.first_answer_s.iter().enumerate() {
        t.add(
            format!("replica {} first answers at", i + 1),
            Unit::Secs,
            Some(*before),
            seen.as_ref().and_then(|s| s.get(i)).map(|s| s.1),
        );
    }
    t.add(
        format!("errors (of {} calls before)", b.calls),
        Unit::Count,
        Some(b.errors as f64),
        o.map(|o| o.errors() as f64),
    );
    t.add("call latency p50", Unit::Ms, Some(b.p50_ms), pct(&lat, 0.5));
    t.add(
        "call latency p99",
        Unit::Ms,
        Some(b.p99_ms),
        pct(&lat, 0.99),
    );
    t.add("call latency max", Unit::Ms, Some(b.max_ms), pct(&lat, 1.0));
    t.write(w);
}

/// (4) Python started isolated, without `site`.
fn python(r: &Report, w: &mut String) {
    let _ = writeln!(
        w,
        "#### (4) Runtime: Python started isolated, without `site` (`-I -S`) (d126953)\n\n\
         The runtime's Python worker no longer imports `site` (nor reads the user's \
         environment) at start: less to do before `hello`'s handler is imported and \
         `/_/ready` answers in a cold container (~7 ms measured on its own). Sluice and the \
         baselines run the same image, so both move and the gap between them should not. The \
         engine's create + start varies more than that from run to run, so the row to read is \
         the start inside the container (from `start` returning to `/_/ready`, per trial); \
         `docker create + start` until `start` returns and the warm pool (a paused, already \
         started replica) are the controls. Section 3's first replica is a cold start of the \
         Python `sleep`.\n"
    );
    let c = r.cold_set("hello");
    let after = |key: &str, p95: bool| c.and_then(|c| c.pct(key, if p95 { 0.95 } else { 0.5 }));
    let mut t = Table::new();
    for (key, what) in [
        ("sluice", "`hello` Sluice, no pool → first byte"),
        (
            "create-start-ready",
            "`hello` docker create + start → /_/ready",
        ),
        ("run", "`hello` docker run → /_/ready"),
        (
            "create-start",
            "`hello` docker create + start, until `start` returns (control)",
        ),
        (
            "sluice-pool",
            "`hello` Sluice, warm pool → first byte (control)",
        ),
    ] {
        t.add(
            format!("{what}, p50"),
            Unit::Ms,
            cold_before(key, false),
            after(key, false),
        );
        if key == "sluice" || key == "create-start-ready" {
            t.add(
                format!("{what}, p95"),
                Unit::Ms,
                cold_before(key, true),
                after(key, true),
            );
        }
    }
    let inside = c
        .map(|c| c.within_trial("create-start", "create-start-ready"))
        .unwrap_or_default();
    t.add(
        "`hello` start inside the container (per trial, `start` returned → /_/ready), p50",
        Unit::Ms,
        Some(COLD_BEFORE_INSIDE_P50),
        pct(&inside, 0.5),
    );
    let gap = |s: Option<f64>, b: Option<f64>| s.zip(b).map(|(s, b)| s - b);
    t.add(
        "`hello` Sluice (no pool) p50 − create + start → ready p50",
        Unit::MsGap,
        gap(
            cold_before("sluice", false),
            cold_before("create-start-ready", false),
        ),
        gap(after("sluice", false), after("create-start-ready", false)),
    );
    t.add(
        "scale reaction: replica 1 (cold `sleep`, Python) first answers at",
        Unit::Secs,
        Some(SCALE_BEFORE.first_answer_s[0]),
        r.scale
            .as_ref()
            .ok()
            .and_then(|o| o.first_seen().first().map(|s| s.1)),
    );
    t.write(w);
}

fn optimisations(r: &Report, w: &mut String) {
    let _ = writeln!(w, "### Optimisations, before → after\n");
    let _ = writeln!(
        w,
        "*Before*: the first full `make bench`, commit {BEFORE_COMMIT} ({BEFORE_DATE}; load \
         average {BEFORE_LOAD}), its numbers recorded in \
         `tools/platform-bench/src/history.rs` from that run's `bench-results/*.csv`. \
         *After*: this run ({}, commit {}; load average {} at the start, {} at the end). Same \
         harness; settings before: {BEFORE_SETTINGS}; this run: wrk {} threads, {} connections, \
         a {}-s warm-up, {} s measured; a {}-s idle window; {} cold-start trials; {} in the scale \
         step. Each table lists the rows its change is expected to move; a machine busier in \
         one run than in the other moves every row a little.\n",
        r.date,
        r.machine.commit,
        r.machine.load_at_start,
        r.machine.load_at_end,
        r.load.threads,
        r.load.connections,
        r.load.warmup.as_secs(),
        r.load.duration.as_secs(),
        r.idle
            .as_ref()
            .map(|i| format!("{:.0}", i.seconds))
            .unwrap_or_else(|_| "—".into()),
        r.trials,
        r.scale
            .as_ref()
            .map(|o| format!(
                "{} calls/s for {} s",
                o.settings.rate,
                o.settings.duration.as_secs()
            ))
            .unwrap_or_else(|_| "not run".into()),
    );
    statsd(r, w);
    proxies(r, w);
    autoscaler(r, w);
    python(r, w);
}

/// The whole `## History` section: the generated subsection, then what the previous file's
/// history held (its own generated subsection and intro dropped).
pub fn section(r: &Report, previous: &str) -> String {
    let mut s = String::from("## History\n\n");
    let _ = writeln!(s, "{INTRO}\n");
    let _ = writeln!(s, "{MARK_START}\n");
    optimisations(r, &mut s);
    let _ = writeln!(s, "{MARK_END}\n");
    s.push_str(carried(previous).trim());
    s.push('\n');
    s
}

/// The previous file's `## History` without its heading, intro and generated subsection. A
/// file without one (before `make bench` existed) has its content kept, headings one level
/// down.
fn carried(previous: &str) -> String {
    let mut offset = 0;
    let mut start = None;
    for l in previous.split_inclusive('\n') {
        if l.trim_end() == "## History" {
            start = Some(offset + l.len());
            break;
        }
        offset += l.len();
    }
    let Some(start) = start else {
        return before_make_bench(previous);
    };
    let mut body = previous[start..].to_string();
    if let Some(a) = body.find(MARK_START) {
        let end = match body[a..].find(MARK_END) {
            Some(e) => a + e + MARK_END.len(),
            // The end marker was edited away: up to the next subsection after the generated
            // heading, or the end.
            None => {
                let from = a + MARK_START.len();
                body[from..]
                    .find("\n### ")
                    .and_then(|h| {
                        let next = from + h + 1;
                        body[next + 4..].find("\n### ").map(|n| next + 4 + n + 1)
                    })
                    .unwrap_or(body.len())
            }
        };
        body.replace_range(a..end, "");
    }
    body.lines()
        .filter(|l| l.trim() != INTRO && !l.starts_with(OLD_INTRO))
        .collect::<Vec<_>>()
        .join("\n")
}

fn before_make_bench(previous: &str) -> String {
    let old: Vec<&str> = previous
        .lines()
        .filter(|l| l.trim_end() != "# Benchmarks")
        .collect();
    let old = old.join("\n");
    let mut out = String::new();
    if !old.trim().is_empty() {
        out.push_str("### The previous BENCHMARKS.md (before `make bench`)\n\n");
        for l in old.trim().lines() {
            if l.starts_with('#') {
                out.push_str("##");
            }
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}
