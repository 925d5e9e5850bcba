//! Section 1, the warm path: the same function container behind each proxy shape, loaded by
//! the same `wrk` run (same threads, connections, warm-up and duration) for every row. Row
//! (u) leads: `localhost:<port>`, where users call Sluice, through whatever the compose file
//! puts in front of the gateway (on Docker's defaults, `docker-proxy`). The other rows are
//! its breakdown: container IPs on the bridge (or loopback for the host's own proxies).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::http;
use crate::proxies::{self, Place};
use crate::resources::{Sampler, Tracked, Window};
use crate::wrk::{self, Load, Measured};

/// The rows: (a)–(f) of the issue, and (g), which is (e) with each nginx in a network
/// namespace of its own on the bridge, so its two proxy hops cross the same veth + bridge +
/// netfilter path as gateway → router (the host's nginx in (e) talk over loopback).
pub const ROWS: [(char, &str); 8] = [
    (
        'u',
        "localhost:<port> → gateway → router: the user's path (Sluice as published)",
    ),
    ('a', "direct to the function container"),
    ('b', "router only"),
    ('c', "gateway → router (Sluice)"),
    ('d', "nginx → container"),
    ('e', "nginx → nginx → container"),
    ('f', "HAProxy → container"),
    (
        'g',
        "nginx → nginx → container, each nginx in its own netns on the bridge",
    ),
];

/// A network namespace on the stack's bridge (a `sleep` container) to run a proxy in.
#[derive(Debug, Clone, Copy)]
pub struct Netns {
    pub pid: u32,
    pub ip: std::net::IpAddr,
}

/// Where the platform's data plane is and what to account for.
pub struct Platform {
    /// Where users call: the gateway's published port on loopback.
    pub user: SocketAddr,
    /// Processes in front of the gateway on the user's path (`docker-proxy`), if any.
    pub front_pids: Vec<u32>,
    pub gateway: SocketAddr,
    pub router: SocketAddr,
    pub gateway_pid: u32,
    pub router_pid: u32,
    /// The five services whose resource cost is reported (measured during every row).
    pub services: Vec<Tracked>,
    /// Two namespaces for row (g)'s front and back nginx.
    pub netns: [Netns; 2],
}

/// One function's replica under test.
pub struct Replica {
    pub function: String,
    pub addr: SocketAddr,
    /// Main process of the container (docker-init); its tree is the function's CPU.
    pub pid: u32,
    /// What a correct answer's body starts with.
    pub expect_body: String,
    /// Its runtime token (the direct rows need it, as the router does).
    pub token: String,
}

/// One measured row.
#[derive(Debug, Clone)]
pub struct Row {
    pub function: String,
    pub key: char,
    pub label: String,
    /// The measured run's `wrk` command line.
    pub command: String,
    pub m: Measured,
    /// CPU seconds of the proxy tier(s) of this row during the measured run.
    pub proxy_cpu_s: f64,
    /// The system (kernel) part of `proxy_cpu_s`.
    pub proxy_sys_s: f64,
    /// Context switches of the proxy tier(s)' threads during the measured run.
    pub proxy_switches: u64,
    /// CPU seconds of the function container (runtime + function) during the measured run.
    pub function_cpu_s: f64,
    /// Services, the proxies and the function over the measured run.
    pub window: Window,
}

impl Row {
    /// CPU microseconds the proxy tier(s) spent per request.
    pub fn proxy_us_per_req(&self) -> f64 {
        if self.m.requests == 0 {
            return 0.0;
        }
        self.proxy_cpu_s * 1e6 / self.m.requests as f64
    }
}

fn addr_of(url: &str) -> Result<(SocketAddr, String)> {
    let rest = url.strip_prefix("http://").context("http URL")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = host.parse().with_context(|| format!("address in {url}"))?;
    Ok((
        addr,
        if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
    ))
}

/// Measures rows (a)–(f) for one function. `configs` receives the generated proxy configs.
pub async fn run(
    load: &Load,
    platform: &Platform,
    replica: &Replica,
    tmp: &Path,
    configs: &Path,
    progress: &dyn Fn(String),
) -> Result<Vec<Row>> {
    let f = &replica.function;
    let up = replica.addr.to_string();
    let lo = Place::Loopback;
    let nginx1 = proxies::nginx(tmp, &format!("nginx-{f}"), lo, &up).await?;
    let back = proxies::nginx(tmp, &format!("nginx-{f}-back"), lo, &up).await?;
    let front =
        proxies::nginx(tmp, &format!("nginx-{f}-front"), lo, &back.addr.to_string()).await?;
    let haproxy = proxies::haproxy(tmp, &format!("haproxy-{f}"), &up).await?;
    let [na, nb] = platform.netns;
    let ns_back = proxies::nginx(
        tmp,
        &format!("nginx-{f}-netns-back"),
        Place::Netns {
            pid: nb.pid,
            ip: nb.ip,
        },
        &up,
    )
    .await?;
    let ns_front = proxies::nginx(
        tmp,
        &format!("nginx-{f}-netns-front"),
        Place::Netns {
            pid: na.pid,
            ip: na.ip,
        },
        &ns_back.addr.to_string(),
    )
    .await?;
    std::fs::create_dir_all(configs).context("mkdir configs")?;
    for p in [&nginx1, &back, &front, &haproxy, &ns_back, &ns_front] {
        if let Some(name) = p.config.file_name() {
            let text = std::fs::read_to_string(&p.config).unwrap_or_default();
            // The temp dir differs on every run: the saved copy says so.
            let text = text.replace(&tmp.display().to_string(), "$TMPDIR");
            std::fs::write(configs.join(name), text).context("save proxy config")?;
        }
    }

    let t = |n: &str, pid: u32| Tracked::tree(n, pid);
    let user = user_tiers(platform);
    let targets: Vec<(char, String, Vec<Tracked>)> = vec![
        ('u', format!("http://{}/{f}", platform.user), user),
        ('a', format!("http://{}/", replica.addr), vec![]),
        (
            'b',
            format!("http://{}/{f}", platform.router),
            vec![Tracked::process("router", platform.router_pid)],
        ),
        (
            'c',
            format!("http://{}/{f}", platform.gateway),
            vec![
                Tracked::process("gateway", platform.gateway_pid),
                Tracked::process("router", platform.router_pid),
            ],
        ),
        (
            'd',
            format!("http://{}/", nginx1.addr),
            vec![t("nginx", nginx1.daemon.pid())],
        ),
        (
            'e',
            format!("http://{}/", front.addr),
            vec![
                t("nginx front", front.daemon.pid()),
                t("nginx back", back.daemon.pid()),
            ],
        ),
        (
            'f',
            format!("http://{}/", haproxy.addr),
            vec![t("haproxy", haproxy.daemon.pid())],
        ),
        (
            'g',
            format!("http://{}/", ns_front.addr),
            vec![
                t("nginx front", ns_front.daemon.pid()),
                t("nginx back", ns_back.daemon.pid()),
            ],
        ),
    ];

    let mut rows = Vec::new();
    for (key, url, tiers) in targets {
        let label = ROWS
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, l)| l.to_string())
            .unwrap_or_default();
        rows.push(measure(load, platform, replica, key, label, &url, tiers, progress).await?);
    }
    drop((nginx1, front, back, haproxy, ns_front, ns_back));
    Ok(rows)
}

/// The user's path (row (u)) through `platform`, as its own row.
pub fn user_tiers(platform: &Platform) -> Vec<Tracked> {
    let mut tiers: Vec<Tracked> = platform
        .front_pids
        .iter()
        .map(|pid| Tracked::process(&format!("docker-proxy {pid}"), *pid))
        .collect();
    tiers.push(Tracked::process("gateway", platform.gateway_pid));
    tiers.push(Tracked::process("router", platform.router_pid));
    tiers
}

/// One row: a plain call that must answer correctly, `wrk`'s warm-up, then the measured run
/// with the CPU of `tiers`, the function and the services sampled.
#[allow(clippy::too_many_arguments)]
pub async fn measure(
    load: &Load,
    platform: &Platform,
    replica: &Replica,
    key: char,
    label: String,
    url: &str,
    tiers: Vec<Tracked>,
    progress: &dyn Fn(String),
) -> Result<Row> {
    let f = &replica.function;
    // One plain call first: a row that cannot answer correctly is an error, not a number.
    let (addr, path) = addr_of(url)?;
    let r = http::get(addr, &path, Some(&replica.token), Duration::from_secs(10))
        .await
        .with_context(|| format!("({key}) {label}: {url}"))?;
    if r.status != 200 || !r.body.contains(&replica.expect_body) {
        bail!(
            "({key}) {label}: {url} answered {} {:?}, expected 200 {:?}",
            r.status,
            r.body,
            replica.expect_body
        );
    }
    progress(format!(
        "warm path `{f}` ({key}) {label}: warm-up {:?}, then {:?}",
        load.warmup, load.duration
    ));
    wrk::run(load, load.warmup, url).await?;
    let mut tracked = tiers.clone();
    tracked.push(Tracked::tree("function", replica.pid));
    tracked.extend(platform.services.iter().cloned());
    let sampler = Sampler::start(tracked);
    let m = wrk::run(load, load.duration, url).await?;
    let window = sampler.finish().await;
    let proxy_cpu_s = tiers.iter().fold(0.0, |a, t| a + window.cpu(&t.name));
    let proxy_sys_s = tiers.iter().fold(0.0, |a, t| a + window.sys(&t.name));
    let proxy_switches = tiers.iter().map(|t| window.switches(&t.name)).sum();
    let per_req = |cpu: f64| cpu * 1e6 / m.requests.max(1) as f64;
    progress(format!(
        "  {:>9.0} rps  p50 {:.2} ms  p99 {:.2} ms  errors {}  CPU µs/req: proxies {:.0}, function {:.0}  machine busy {:.0}%",
        m.rps,
        m.p50_ms,
        m.p99_ms,
        m.errors(),
        per_req(proxy_cpu_s),
        per_req(window.cpu("function")),
        window.host_busy * 100.0
    ));
    Ok(Row {
        function: f.clone(),
        key,
        label,
        command: load.command_line(url),
        function_cpu_s: window.cpu("function"),
        proxy_cpu_s,
        proxy_sys_s,
        proxy_switches,
        window,
        m,
    })
}
