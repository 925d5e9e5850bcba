//! BENCHMARKS.md (ratios first, the machine, the date, the exact commands, every section's
//! table and whether each target is met) and one CSV per section. The `## History` section
//! comes from [`crate::history`].

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::cold::Set;
use crate::machine::Machine;
use crate::resources::Window;
use crate::scale::Outcome;
use crate::stats::{max, min, pct};
use crate::warm::Row;
use crate::wrk::Load;

/// Everything one run measured (a section that failed carries its error instead).
pub struct Report {
    pub machine: Machine,
    pub date: String,
    pub load: Load,
    pub trials: usize,
    /// Functions of the warm path, in table order.
    pub warm_functions: Vec<String>,
    pub warm: Result<Vec<Row>, String>,
    /// Row (u) of `fast` with the gateway and the router on N worker threads each.
    pub cores: Result<Vec<(usize, Row)>, String>,
    /// Section 2, one set per function (each carries its error if it was not measured).
    pub cold: Vec<Set>,
    pub scale: Result<Outcome, String>,
    pub idle: Result<Window, String>,
    /// Registry the stacks ran with, for the record.
    pub registries: Vec<(String, String)>,
    /// Seconds this program ran, and since `make bench` began (when known).
    pub bench_s: f64,
    pub make_s: Option<f64>,
    pub charts: Vec<String>,
    pub chart_error: Option<String>,
}

/// A met / not met verdict with its numbers.
pub struct Verdict {
    pub target: String,
    pub met: Option<bool>,
    pub numbers: String,
}

pub fn ms(v: Option<f64>) -> String {
    v.map(|v| {
        if v < 10.0 {
            format!("{v:.2} ms")
        } else {
            format!("{v:.1} ms")
        }
    })
    .unwrap_or_else(|| "—".into())
}

/// `x`'s throughput over `y`'s; "—" when either row had errors (not throughput).
fn ok_ratio(x: &Row, y: &Row) -> String {
    match (x.m.ok_rps(), y.m.ok_rps()) {
        (Some(a), Some(b)) => ratio(a, b),
        _ => "— (errors)".into(),
    }
}

/// A row's throughput, or a mark saying it had errors and is not reported as throughput.
fn ok_thousands(r: &Row) -> String {
    match r.m.ok_rps() {
        Some(v) => thousands(v),
        None => format!("not counted: {} errors", r.m.errors()),
    }
}

pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "—".into()
    }
}

pub fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn met(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

/// Sluice's p50 `s` against a baseline's p50 `b` plus 30 ms.
fn within_30(target: String, s: Option<f64>, b: Option<f64>) -> Verdict {
    Verdict {
        target,
        met: s.zip(b).map(|(s, b)| s <= b + 30.0),
        numbers: match s.zip(b) {
            Some((s, b)) => format!(
                "{} vs {} + 30 ms = {} (Sluice adds {:+.1} ms)",
                ms(Some(s)),
                ms(Some(b)),
                ms(Some(b + 30.0)),
                s - b
            ),
            None => String::new(),
        },
    }
}

impl Report {
    pub fn row(&self, function: &str, key: char) -> Option<&Row> {
        self.warm
            .as_ref()
            .ok()?
            .iter()
            .find(|r| r.function == function && r.key == key)
    }

    /// Section 2's set of `function` (`hello`, `echo`).
    pub fn cold_set(&self, function: &str) -> Option<&Set> {
        self.cold.iter().find(|c| c.function == function)
    }

    /// The issue's targets, each with its numbers from this run.
    pub fn verdicts(&self) -> Vec<Verdict> {
        let mut out = Vec::new();
        for f in &self.warm_functions {
            let (u, d, e) = (self.row(f, 'u'), self.row(f, 'd'), self.row(f, 'e'));
            let rps = |x: Option<&Row>| x.and_then(|x| x.m.ok_rps());
            out.push(Verdict {
                target: format!("`{f}`: (u) user's path throughput ≥ 1.0× (e) nginx → nginx"),
                met: rps(u).zip(rps(e)).map(|(u, e)| u >= e),
                numbers: match (u, e) {
                    (Some(u), Some(e)) => format!(
                        "(u)/(e) = {}: {} vs {} rps",
                        ok_ratio(u, e),
                        ok_thousands(u),
                        ok_thousands(e)
                    ),
                    _ => String::new(),
                },
            });
            out.push(Verdict {
                target: format!("`{f}`: (u) p99 ≤ (e) p99"),
                met: u.zip(e).map(|(u, e)| u.m.p99_ms <= e.m.p99_ms),
                numbers: match (u, e) {
                    (Some(u), Some(e)) => format!(
                        "(u)/(e) = {}: {} vs {}",
                        ratio(u.m.p99_ms, e.m.p99_ms),
                        ms(Some(u.m.p99_ms)),
                        ms(Some(e.m.p99_ms))
                    ),
                    _ => String::new(),
                },
            });
            out.push(Verdict {
                target: format!("`{f}`: (u) throughput ≥ 0.7× (d) nginx alone"),
                met: rps(u).zip(rps(d)).map(|(u, d)| u >= 0.7 * d),
                numbers: match (u, d) {
                    (Some(u), Some(d)) => format!(
                        "(u)/(d) = {}: {} vs {} rps",
                        ok_ratio(u, d),
                        ok_thousands(u),
                        ok_thousands(d)
                    ),
                    _ => String::new(),
                },
            });
            let (c, e) = (self.row(f, 'c'), self.row(f, 'e'));
            out.push(match (c, e) {
                (Some(c), Some(e)) => Verdict {
                    target: format!("`{f}`: (c) throughput ≥ (e)"),
                    met: Some(c.m.rps >= e.m.rps),
                    numbers: format!(
                        "(c)/(e) = {}: {} vs {} rps",
                        ratio(c.m.rps, e.m.rps),
                        thousands(c.m.rps),
                        thousands(e.m.rps)
                    ),
                },
                _ => Verdict {
                    target: format!("`{f}`: (c) throughput ≥ (e)"),
                    met: None,
                    numbers: String::new(),
                },
            });
            out.push(match (c, e) {
                (Some(c), Some(e)) => Verdict {
                    target: format!("`{f}`: (c) p99 ≤ (e) p99"),
                    met: Some(c.m.p99_ms <= e.m.p99_ms),
                    numbers: format!(
                        "(c)/(e) = {}: {} vs {}",
                        ratio(c.m.p99_ms, e.m.p99_ms),
                        ms(Some(c.m.p99_ms)),
                        ms(Some(e.m.p99_ms))
                    ),
                },
                _ => Verdict {
                    target: format!("`{f}`: (c) p99 ≤ (e) p99"),
                    met: None,
                    numbers: String::new(),
                },
            });
        }
        for c in &self.cold {
            let f = c.function;
            let s = c.pct("sluice", 0.5);
            out.push(within_30(
                format!(
                    "`{f}` cold start without the pool: p50 ≤ create + start (→ ready) p50 + 30 ms"
                ),
                s,
                c.pct("create-start-ready", 0.5),
            ));
            // The stricter reading: the baseline stops when `start` returns, before the
            // runtime inside can answer anything.
            out.push(within_30(
                format!(
                    "`{f}` … stricter: p50 ≤ create + start (until `start` returns) p50 + 30 ms"
                ),
                s,
                c.pct("create-start", 0.5),
            ));
            let p = c.pct("sluice-pool", 0.5);
            out.push(Verdict {
                target: format!("`{f}` cold start with the pool: p50 ≤ 50 ms end to end"),
                met: p.map(|p| p <= 50.0),
                numbers: p.map(|p| ms(Some(p))).unwrap_or_default(),
            });
        }
        out
    }

    pub fn markdown(&self, history: &str) -> String {
        let mut s = String::new();
        let w = &mut s;
        let _ = writeln!(w, "# Benchmarks\n");
        let _ = writeln!(
            w,
            "Written by `make bench` on {} — every row below comes from that one run, measured \
             next to its baseline. Raw data: `bench-results/*.csv`; charts: \
             `bench-results/*.png`; the proxies' generated configs: `bench-results/configs/`.\n",
            self.date
        );
        self.summary(w);
        self.machine_section(w);
        self.commands(w);
        self.warm_section(w);
        self.cold_section(w);
        self.scale_section(w);
        self.resource_section(w);
        s.push_str(history.trim_end());
        s.push('\n');
        s
    }

    fn summary(&self, w: &mut String) {
        let _ = writeln!(w, "## Summary: ratios and targets\n");
        let _ = writeln!(
            w,
            "| function | (u) / (e) rps | (u) / (e) p99 | (u) / (d) rps | (c) / (e) rps | (c) / (e) p99 | (c) / (a) rps | (c) / (a) p99 | (c) / (g) rps | (c) / (g) p99 |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for f in &self.warm_functions {
            let (a, c, d, e, g, u) = (
                self.row(f, 'a'),
                self.row(f, 'c'),
                self.row(f, 'd'),
                self.row(f, 'e'),
                self.row(f, 'g'),
                self.row(f, 'u'),
            );
            let r = |x: Option<&Row>, y: Option<&Row>, p: bool| match (x, y) {
                (Some(x), Some(y)) if p => ratio(x.m.p99_ms, y.m.p99_ms),
                (Some(x), Some(y)) => ok_ratio(x, y),
                _ => "—".into(),
            };
            let _ = writeln!(
                w,
                "| `{f}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r(u, e, false),
                r(u, e, true),
                r(u, d, false),
                r(c, e, false),
                r(c, e, true),
                r(c, a, false),
                r(c, a, true),
                r(c, g, false),
                r(c, g, true)
            );
        }
        let _ = writeln!(
            w,
            "\n(u) `localhost:<port>/<fn>`, where users call Sluice, through what the compose \
             file puts in front of the gateway (`docker-proxy` on Docker's defaults), (a) direct \
             to the function container, (c) gateway → router (Sluice) at the gateway's \
             container address, (d) nginx → container, (e) nginx → \
             nginx → container (host processes, loopback between them), (g) the same two nginx \
             each in a network namespace on the bridge (the network hops Sluice's gateway and \
             router take). Throughput ratios above 1 and p99 ratios below 1 favour Sluice.\n"
        );
        let _ = writeln!(w, "| target | result | numbers |\n|---|---|---|");
        for v in self.verdicts() {
            let _ = writeln!(w, "| {} | {} | {} |", v.target, met(v.met), v.numbers);
        }
        let _ = writeln!(w);
    }

    fn machine_section(&self, w: &mut String) {
        let m = &self.machine;
        let _ = writeln!(w, "## Machine\n");
        let _ = writeln!(
            w,
            "| | |\n|---|---|\n\
             | cores | {} ({}) |\n\
             | RAM | {:.1} GiB |\n\
             | kernel | {} |\n\
             | OS | {} |\n\
             | Docker | {} (storage driver {}, {}) |\n\
             | Rust | {} |\n\
             | wrk / nginx / HAProxy | {} / {} / {} |\n\
             | load average at start / end | {} / {} |\n\
             | commit | {} |\n\
             | date | {} |\n\
             | time | {:.0} s for the measurements{} |\n",
            m.cores,
            m.cpu_model,
            m.ram_gib,
            m.kernel,
            m.os,
            m.docker,
            m.storage_driver,
            m.cgroup,
            m.rustc,
            m.wrk,
            m.nginx,
            m.haproxy,
            m.load_at_start,
            m.load_at_end,
            m.commit,
            self.date,
            self.bench_s,
            self.make_s
                .map(|t| format!("; {t:.0} s for the whole `make bench` (images, build, run)"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            w,
            "Everything shares the machine: the load generator, the proxies, the platform's \
             services and the function. Numbers from a busy machine are noisy: the load average \
             above says how quiet it was.\n"
        );
    }

    fn commands(&self, w: &mut String) {
        let l = &self.load;
        let _ = writeln!(w, "## How it was run\n");
        let _ = writeln!(
            w,
            "```sh\n\
             make bench            # = scripts/bench.sh: installs nginx, haproxy, wrk (Debian) if missing,\n\
             \x20                     # runs `make images`, then:\n\
             cargo run --release -p platform-bench\n\
             ```\n"
        );
        let _ = writeln!(
            w,
            "Knobs (environment, defaults in brackets): `SLUICE_BENCH_THREADS` [2], \
             `SLUICE_BENCH_CONNECTIONS` [32], `SLUICE_BENCH_DURATION` [10 s], \
             `SLUICE_BENCH_WARMUP` [1 s], `SLUICE_BENCH_TRIALS` [20], `SLUICE_BENCH_SCALE_RPS` \
             [35], `SLUICE_BENCH_SCALE_DURATION` [20 s], `SLUICE_BENCH_IDLE` [5 s].\n"
        );
        let _ = writeln!(
            w,
            "* The compose stack (`docker-compose.yml`, images from `make images`) runs in a \
             project, network and instance of its own, autoscaling **off** for sections 1, 2 and 4 \
             and **on** for section 3. Every address is a container IP on the bridge (the host \
             reaches them directly), so no row goes through docker-proxy; nginx and HAProxy run \
             on the host on loopback ports, with generated configs (`bench-results/configs/`): \
             `worker_processes auto` / HAProxy's default one thread per core, keep-alive to the \
             client, and a keep-alive upstream pool (`keepalive 128` with HTTP/1.1 and \
             `Connection \"\"` / `http-reuse always`), no access log.\n\
             * Load, identical for every row: {} threads, {} connections, a {}-s warm-up run, \
             then {} s measured, e.g. `{}`.\n\
             * Row paths: (a), (d), (e), (f), (g) send `/`; (b) `/<fn>` to the router, (c) \
             `/<fn>` to the gateway — the function sees `/` in every row.\n",
            l.threads,
            l.connections,
            l.warmup.as_secs(),
            l.duration.as_secs(),
            l.command_line("http://<gateway-ip>:8080/fast")
        );
        let _ = writeln!(w, "Registries the stacks ran with:\n");
        for (name, reg) in &self.registries {
            let _ = writeln!(
                w,
                "<details><summary>{name}</summary>\n\n```yaml\n{}\n```\n</details>\n",
                reg.trim_end()
            );
        }
    }

    fn warm_section(&self, w: &mut String) {
        let _ = writeln!(w, "## 1. Warm path\n");
        let rows = match &self.warm {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(w, "Not measured: {e}\n");
                return;
            }
        };
        for f in &self.warm_functions {
            let e = self.row(f, 'e');
            let a = self.row(f, 'a');
            let _ = writeln!(w, "### `{f}`\n");
            let _ = writeln!(
                w,
                "| row | rps vs (e) | rps vs (a) | p99 vs (e) | rps | p50 | p99 | errors | proxy CPU µs/req (user + sys) | proxy context switches/req | function CPU µs/req | machine busy |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
            );
            for r in rows.iter().filter(|r| &r.function == f) {
                let per = |cpu: f64| {
                    if r.m.requests > 0 {
                        format!("{:.0}", cpu * 1e6 / r.m.requests as f64)
                    } else {
                        "—".into()
                    }
                };
                let proxy = format!(
                    "{} ({} + {})",
                    per(r.proxy_cpu_s),
                    per(r.proxy_cpu_s - r.proxy_sys_s),
                    per(r.proxy_sys_s)
                );
                let _ = writeln!(
                    w,
                    "| ({}) {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% |",
                    r.key,
                    r.label,
                    e.map(|e| ok_ratio(r, e)).unwrap_or_default(),
                    a.map(|a| ok_ratio(r, a)).unwrap_or_default(),
                    e.map(|e| ratio(r.m.p99_ms, e.m.p99_ms)).unwrap_or_default(),
                    ok_thousands(r),
                    ms(Some(r.m.p50_ms)),
                    ms(Some(r.m.p99_ms)),
                    r.m.errors(),
                    if r.key == 'a' { "—".into() } else { proxy },
                    if r.key == 'a' {
                        "—".into()
                    } else {
                        format!(
                            "{:.2}",
                            r.proxy_switches as f64 / r.m.requests.max(1) as f64
                        )
                    },
                    per(r.function_cpu_s),
                    r.window.host_busy * 100.0
                );
            }
            let _ = writeln!(w);
        }
        let _ = writeln!(
            w,
            "*proxy CPU µs/req*: CPU time of the row's proxy processes during the measured run \
             divided by the requests served (gateway + router for (c)), split into user and \
             system (kernel) time; *proxy context switches/req*: voluntary + involuntary \
             switches of the proxies' threads per request; *function CPU*: the function container's processes \
             (faas-runtime and the function); *machine busy*: share of both cores busy during \
             the run (the load generator included). Row (g) is not one of the issue's: it is \
             (e) with each nginx in a network namespace of its own on the bridge (`nsenter -n` \
             into a `sleep` container), so its proxy hops cross the same veth + bridge + \
             netfilter path as Sluice's gateway → router → replica, where (e)'s nginx talk over \
             the host's loopback.\n"
        );
        if self.charts.iter().any(|c| c == "warm_path.png") {
            let _ = writeln!(w, "![warm path](bench-results/warm_path.png)\n");
        }
        self.cores_table(w);
    }

    /// Row (u) of `fast` against the proxies' worker threads: the cost per request must not
    /// grow with threads (no contended per-function lock).
    fn cores_table(&self, w: &mut String) {
        let _ = writeln!(
            w,
            "### The user's path against the proxies' threads (`fast`)\n\n\
             Row (u) again, with the gateway and the router recreated with N worker threads \
             each (`SLUICE_GATEWAY_THREADS`, `SLUICE_ROUTER_THREADS`; the default is half the \
             cores), 1, 2 and every core of this machine. The load generator shares the cores.\n"
        );
        let rows = match &self.cores {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(w, "Not measured: {e}\n");
                return;
            }
        };
        let _ = writeln!(
            w,
            "| threads per proxy | rps | p50 | p99 | errors | proxy CPU µs/req (user + sys) | proxy context switches/req | machine busy |\n|---|---|---|---|---|---|---|---|"
        );
        for (n, r) in rows {
            let per = |cpu: f64| cpu * 1e6 / r.m.requests.max(1) as f64;
            let _ = writeln!(
                w,
                "| {n} | {} | {} | {} | {} | {:.0} ({:.0} + {:.0}) | {:.2} | {:.0}% |",
                ok_thousands(r),
                ms(Some(r.m.p50_ms)),
                ms(Some(r.m.p99_ms)),
                r.m.errors(),
                per(r.proxy_cpu_s),
                per(r.proxy_cpu_s - r.proxy_sys_s),
                per(r.proxy_sys_s),
                r.proxy_switches as f64 / r.m.requests.max(1) as f64,
                r.window.host_busy * 100.0
            );
        }
        let _ = writeln!(w);
    }

    fn cold_section(&self, w: &mut String) {
        let _ = writeln!(w, "## 2. Cold start\n");
        let names: Vec<String> = self
            .cold
            .iter()
            .map(|c| format!("`{}` ({})", c.function, c.kind))
            .collect();
        let _ = writeln!(
            w,
            "{}: {} timed trials per method and function, interleaved within each function \
             (each round runs one trial of every method, in the order Sluice, create + start, \
             run, Sluice with the pool, unpause; an untimed round first). Sluice: the function \
             at zero (no container at all; with the pool: one paused replica and nothing \
             running), then one `GET /<fn>` to the gateway's container IP, timed from connect \
             to the first byte of the response. Baselines: the image of the same function, \
             created with the very configuration the orchestrator gave its replica (user, env, \
             limits, read-only root, tmpfs, capabilities, init, network), `/_/ready` polled \
             every 5 ms like the orchestrator's probe.\n",
            names.join(" and "),
            self.trials
        );
        let _ = writeln!(
            w,
            "Why two functions: `/_/ready` of a Python function answers once the interpreter \
             has started and imported the handler, which in a fresh container on this engine \
             (fuse-overlayfs) takes ~30–35 ms for the interpreter alone (`python3 -I -S -c \
             pass` as a container's first process; 13–18 ms the second time), so `hello`'s \
             numbers carry the function's own start on top of Sluice's and the engine's. \
             `echo` is the repository's Rust function in binary mode: its runtime is ready as \
             soon as it listens (a few ms after exec), so its cold start is the platform's and \
             the engine's; its first call also runs the executable once (binary mode starts \
             one process per call), which the baselines' `/_/ready` does not.\n"
        );
        for c in &self.cold {
            let _ = writeln!(
                w,
                "### `{}` ({}: `{}` and `{}`)\n",
                c.function, c.kind, c.plain, c.pooled
            );
            let methods = match &c.methods {
                Ok(m) => m,
                Err(e) => {
                    let _ = writeln!(w, "Not measured: {e}\n");
                    continue;
                }
            };
            let base = c.pct("create-start-ready", 0.5);
            let _ = writeln!(
                w,
                "| method | p50 vs create + start → ready | p50 | p95 | min | max |\n|---|---|---|---|---|---|"
            );
            for m in methods {
                let p50 = pct(&m.samples_ms, 0.5);
                let _ = writeln!(
                    w,
                    "| {} | {} | {} | {} | {} | {} |",
                    m.label,
                    p50.zip(base).map(|(p, b)| ratio(p, b)).unwrap_or_default(),
                    ms(p50),
                    ms(pct(&m.samples_ms, 0.95)),
                    ms(min(&m.samples_ms)),
                    ms(max(&m.samples_ms)),
                );
            }
            let gap = |key: &str| {
                c.pct("sluice", 0.5)
                    .zip(c.pct(key, 0.5))
                    .map(|(s, b)| format!("{:+.1} ms", s - b))
                    .unwrap_or_else(|| "—".into())
            };
            let inside = c.within_trial("create-start", "create-start-ready");
            let _ = writeln!(
                w,
                "\nSluice without the pool, p50 minus the baselines' p50: {} against create + \
                 start → ready, {} against create + start until `start` returns. The start \
                 inside the container (per create + start trial, from `start` returning to \
                 `/_/ready`): p50 {}, p95 {}.\n",
                gap("create-start-ready"),
                gap("create-start"),
                ms(pct(&inside, 0.5)),
                ms(pct(&inside, 0.95)),
            );
        }
        if self.charts.iter().any(|c| c == "cold_start.png") {
            let _ = writeln!(w, "![cold start](bench-results/cold_start.png)\n");
        }
    }

    fn scale_section(&self, w: &mut String) {
        let _ = writeln!(w, "## 3. Scale reaction\n");
        let o = match &self.scale {
            Ok(o) => o,
            Err(e) => {
                let _ = writeln!(w, "Not measured: {e}\n");
                return;
            }
        };
        let st = &o.settings;
        let _ = writeln!(
            w,
            "Autoscaling on. `sleep` (`max_concurrency: 4`, so `target_concurrency` 4 × \
             `target_utilization` 0.7 = 2.8 calls per replica) at zero, then a step to {} calls/s \
             of `sleep?ms={}` through the gateway for {} s, open loop (≈ {:.0} calls in flight: \
             {} replicas needed). A replica *serves* when the first response naming it in \
             `X-Sluice-Replica` arrives (each call takes {} ms).\n",
            st.rate,
            st.sleep_ms,
            st.duration.as_secs(),
            st.rate * st.sleep_ms as f64 / 1000.0,
            ((st.rate * st.sleep_ms as f64 / 1000.0) / 2.8).ceil(),
            st.sleep_ms
        );
        let seen = o.first_seen();
        let _ = writeln!(
            w,
            "| replica | first answer at | reported ready by the API at |\n|---|---|---|"
        );
        for (i, (_, t)) in seen.iter().enumerate() {
            let _ = writeln!(
                w,
                "| {} | {:.2} s | {} |",
                i + 1,
                t,
                o.ready_at(i as u64 + 1)
                    .map(|t| format!("{t:.2} s"))
                    .unwrap_or_else(|| "—".into())
            );
        }
        let ok = o.calls.iter().filter(|c| c.status == Some(200)).count();
        let _ = writeln!(
            w,
            "\n{} calls, {} answered 200, **{} errors** during the step. Second replica serving \
             after {}, third after {}. The autoscaler's desired count peaked at {} (first at \
             {}); at most {} replicas were ready; {} at the end of the step.\n",
            o.calls.len(),
            ok,
            o.errors(),
            seen.get(1)
                .map(|s| format!("{:.2} s", s.1))
                .unwrap_or_else(|| "— (never)".into()),
            seen.get(2)
                .map(|s| format!("{:.2} s", s.1))
                .unwrap_or_else(|| "— (never)".into()),
            o.peak_desired().0,
            o.peak_desired()
                .1
                .map(|t| format!("{t:.2} s"))
                .unwrap_or_else(|| "—".into()),
            o.max_ready(),
            o.ready_at_end(),
        );
        if self.charts.iter().any(|c| c == "scale_reaction.png") {
            let _ = writeln!(w, "![scale reaction](bench-results/scale_reaction.png)\n");
        }
    }

    /// The services' usage in the warm-path row (c) of `function`.
    fn load_window(&self, function: &str) -> Option<&Window> {
        self.row(function, 'c').map(|r| &r.window)
    }

    fn resource_section(&self, w: &mut String) {
        let _ = writeln!(w, "## 4. Resource cost\n");
        let idle = match &self.idle {
            Ok(i) => i,
            Err(e) => {
                let _ = writeln!(w, "Not measured: {e}\n");
                return;
            }
        };
        let loads: Vec<(&String, &Window)> = self
            .warm_functions
            .iter()
            .filter_map(|f| self.load_window(f).map(|w| (f, w)))
            .collect();
        let _ = writeln!(
            w,
            "Each service container's main process: RSS from `/proc/<pid>/status` (highest \
             `VmRSS` sampled every 250 ms), CPU seconds from `/proc/<pid>/stat` (utime + stime, \
             all threads) over the window: idle ({:.0} s, one ready replica of each warm-path \
             function, no calls) and under the warm-path load of row (c) ({} s measured run).\n",
            idle.seconds,
            self.load.duration.as_secs()
        );
        let mut head = "| service | RSS idle | CPU idle |".to_string();
        let mut sep = "|---|---|---|".to_string();
        for (f, _) in &loads {
            head.push_str(&format!(" RSS, (c) `{f}` | CPU, (c) `{f}` |"));
            sep.push_str("---|---|");
        }
        let _ = writeln!(w, "{head}\n{sep}");
        for u in &idle.usage {
            let mut line = format!(
                "| {} | {:.1} MiB | {:.2} s ({:.1}%) |",
                u.name,
                u.rss_mib,
                u.cpu_s,
                100.0 * u.cpu_s / idle.seconds.max(1e-9)
            );
            for (_, win) in &loads {
                match win.get(&u.name) {
                    Some(l) => line.push_str(&format!(
                        " {:.1} MiB | {:.2} s ({:.0}% of a core) |",
                        l.rss_mib,
                        l.cpu_s,
                        100.0 * l.cpu_s / win.seconds.max(1e-9)
                    )),
                    None => line.push_str(" — | — |"),
                }
            }
            let _ = writeln!(w, "{line}");
        }
        let _ = writeln!(w);
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One CSV per section into `dir`; returns the file names written.
pub fn write_csvs(r: &Report, dir: &Path) -> Result<Vec<String>> {
    let mut written = Vec::new();
    let mut put = |name: &str, text: String| -> Result<()> {
        std::fs::write(dir.join(name), text).with_context(|| format!("write {name}"))?;
        written.push(name.to_string());
        Ok(())
    };
    if let Ok(rows) = &r.warm {
        let raw = dir.join("wrk");
        std::fs::create_dir_all(&raw).context("mkdir bench-results/wrk")?;
        let mut s = String::from("function,row,label,command,rps,requests,p50_ms,p75_ms,p90_ms,p99_ms,non_2xx,socket_errors,proxy_cpu_s,proxy_sys_s,proxy_context_switches,function_cpu_s,proxy_cpu_us_per_req,machine_busy\n");
        for x in rows {
            // wrk's own report of every measured run, as printed.
            std::fs::write(
                raw.join(format!("{}-{}.txt", x.function, x.key)),
                format!("$ {}\n{}", x.command, x.m.raw),
            )
            .context("write wrk output")?;
            let _ = writeln!(
                s,
                "{},{},{},{},{:.2},{},{:.4},{:.4},{:.4},{:.4},{},{},{:.3},{:.3},{},{:.3},{:.1},{:.3}",
                x.function,
                x.key,
                csv_field(&x.label),
                csv_field(&x.command),
                x.m.rps,
                x.m.requests,
                x.m.p50_ms,
                x.m.p75_ms,
                x.m.p90_ms,
                x.m.p99_ms,
                x.m.non_2xx,
                x.m.socket_errors,
                x.proxy_cpu_s,
                x.proxy_sys_s,
                x.proxy_switches,
                x.function_cpu_s,
                x.proxy_us_per_req(),
                x.window.host_busy
            );
        }
        put("warm_path.csv", s)?;
    }
    if r.cold.iter().any(|c| c.methods.is_ok()) {
        let mut s = String::from("function,registry_entry,method,label,trial,ms\n");
        for c in &r.cold {
            for m in c.methods.iter().flatten() {
                // The Sluice rows ran the pair's entries; the baselines the plain one's image.
                let entry = if m.key == "sluice-pool" {
                    c.pooled
                } else {
                    c.plain
                };
                for (i, v) in m.samples_ms.iter().enumerate() {
                    let _ = writeln!(
                        s,
                        "{},{},{},{},{},{:.3}",
                        c.function,
                        entry,
                        m.key,
                        csv_field(m.label),
                        i + 1,
                        v
                    );
                }
            }
        }
        put("cold_start.csv", s)?;
    }
    if let Ok(o) = &r.scale {
        let mut s = String::from("sent_s,done_s,status,replica\n");
        for c in &o.calls {
            let _ = writeln!(
                s,
                "{:.4},{:.4},{},{}",
                c.sent_s,
                c.done_s,
                c.status
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "error".into()),
                c.replica.as_deref().map(csv_field).unwrap_or_default()
            );
        }
        put("scale_reaction.csv", s)?;
        let mut s = String::from("t_s,ready,desired\n");
        for p in &o.polls {
            let _ = writeln!(s, "{:.3},{},{}", p.t_s, p.ready, p.desired);
        }
        put("scale_reaction_replicas.csv", s)?;
    }
    if let Ok(idle) = &r.idle {
        let mut s = String::from("phase,service,window_s,cpu_s,cpu_percent_of_core,rss_mib\n");
        let mut phases: Vec<(String, &Window)> = vec![("idle".into(), idle)];
        for f in &r.warm_functions {
            if let Some(w) = r.load_window(f) {
                phases.push((format!("load (c) {f}"), w));
            }
        }
        for (phase, win) in phases {
            // A row's window tracks its proxies and the services: the same process may be
            // in both (gateway, router); one line each.
            let mut seen: Vec<&str> = Vec::new();
            for u in &win.usage {
                if seen.contains(&u.name.as_str()) {
                    continue;
                }
                seen.push(&u.name);
                let _ = writeln!(
                    s,
                    "{},{},{:.2},{:.3},{:.1},{:.1}",
                    csv_field(&phase),
                    u.name,
                    win.seconds,
                    u.cpu_s,
                    100.0 * u.cpu_s / win.seconds.max(1e-9),
                    u.rss_mib
                );
            }
        }
        put("resources.csv", s)?;
    }
    Ok(written)
}
