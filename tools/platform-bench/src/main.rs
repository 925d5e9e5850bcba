//! The platform benchmark behind `make bench`: one run, every row next to its baseline.
//!
//! 1. **Warm path** — `hello` (Python) and `fast` (Rust, http mode) behind: (a) nothing,
//!    (b) the router, (c) gateway → router (Sluice), (d) nginx, (e) nginx → nginx,
//!    (f) HAProxy; one `wrk` setting for every row ([`warm`]).
//! 2. **Cold start** — Sluice from zero to the first byte, without and with the warm pool,
//!    against `docker create`+`start`, `docker run --rm` and `docker unpause` of the same
//!    image, for `hello` (Python) and `echo` (Rust, binary mode) ([`cold`]).
//! 3. **Scale reaction** — a step from zero to a load that needs three replicas ([`scale`]).
//! 4. **Resource cost** — RSS and CPU of the five services, idle and under row (c)
//!    ([`resources`]).
//!
//! Writes `BENCHMARKS.md` (its `## History` carried over, with the optimisations' before →
//! after tables regenerated from this run and the recorded baseline: [`history`]),
//! `bench-results/*.csv` and
//! `bench-results/*.png`. `cargo run --release -p platform-bench` (needs
//! `make images`, and nginx, haproxy and wrk: `make bench` installs them and runs this).
//!
//! Environment: `SLUICE_BENCH_THREADS` (2), `SLUICE_BENCH_CONNECTIONS` (32),
//! `SLUICE_BENCH_DURATION` (10 s), `SLUICE_BENCH_WARMUP` (1 s), `SLUICE_BENCH_TRIALS` (20),
//! `SLUICE_BENCH_SCALE_RPS` (35), `SLUICE_BENCH_SCALE_DURATION` (20 s), `SLUICE_BENCH_IDLE`
//! (5 s), `SLUICE_BENCH_SECTIONS` (`warm,cold,scale`), `SLUICE_BENCH_OUT` (the repository
//! root: where BENCHMARKS.md and bench-results/ go).
#![forbid(unsafe_code)]

use sluice_stack as stack_support;

mod charts;
mod cmd;
mod cold;
mod history;
mod http;
mod machine;
mod procfs;
mod proxies;
mod report;
mod resources;
mod scale;
mod stats;
mod warm;
mod wrk;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bollard::query_parameters::InspectContainerOptions;
use bollard::Docker;

use report::Report;
use resources::{Sampler, Tracked};
use stack_support::{repo_root, ComposeStack};

/// The platform's own services, as compose names them.
const SERVICES: [&str; 5] = [
    "gateway",
    "router",
    "xds-connector",
    "stats-listener",
    "orchestrator",
];

/// Sections 1, 2 and 4: autoscaling off. `hello` and `fast` take every wrk connection at
/// once (no 429 from the runtime, no queueing at the router) and may use both cores, like
/// the proxies; `hello-cold` and `hello-pool` are `hello` with the defaults (the second with
/// a warm pool of one) for the cold starts, and `echo-cold` and `echo-pool` the same for the
/// repository's `echo` (Rust, binary mode: its runtime is ready as soon as it listens, so
/// its cold start is the platform's and the engine's, without an interpreter's start).
const REGISTRY_MAIN: &str = r#"hello:
  name: hello
  version: 0.1
  configuration:
    programing_language: python
    base_function_file_name: handler.py
    function_folder: hello
    extra_dependencies: ""
  scaling:
    max_concurrency: 32
  limits:
    memory: 512Mi
    cpus: 2

fast:
  name: fast
  version: 0.1
  configuration:
    programming_language: rust
    base_function_file_name: src/main.rs
    function_folder: fast
    extra_dependencies: ""
    mode: http
  scaling:
    max_concurrency: 1024
  limits:
    cpus: 2

hello-cold:
  name: hello-cold
  version: 0.1
  configuration:
    programing_language: python
    base_function_file_name: handler.py
    function_folder: hello
    extra_dependencies: ""

hello-pool:
  name: hello-pool
  version: 0.1
  configuration:
    programing_language: python
    base_function_file_name: handler.py
    function_folder: hello
    extra_dependencies: ""
  scaling:
    warm_pool: 1

echo-cold:
  name: echo-cold
  version: 0.1
  configuration:
    programming_language: rust
    base_function_file_name: src/main.rs
    function_folder: echo
    extra_dependencies: ""

echo-pool:
  name: echo-pool
  version: 0.1
  configuration:
    programming_language: rust
    base_function_file_name: src/main.rs
    function_folder: echo
    extra_dependencies: ""
  scaling:
    warm_pool: 1
"#;

/// Section 2's functions: (name in the report, language and mode, entry at zero without a
/// pool, entry with `warm_pool: 1`). Each pair is measured on its own (interleaved within
/// the pair), the baselines on its own image.
const COLD: [(&str, &str, &str, &str); 2] = [
    ("hello", "Python", "hello-cold", "hello-pool"),
    ("echo", "Rust, binary mode", "echo-cold", "echo-pool"),
];

/// Section 3: autoscaling on; `sleep` as in the repository's registry.
const REGISTRY_SCALE: &str = r#"sleep:
  name: sleep
  version: 0.1
  configuration:
    programming_language: python
    base_function_file_name: handler.py
    function_folder: sleep
    extra_dependencies: ""
  scaling:
    max_concurrency: 4
    max_replicas: 10
  limits:
    timeout: 70s
"#;

/// [`sluice_common::testing::poll`], an error naming `what` after `timeout`.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match sluice_common::testing::poll(timeout, f).await {
        Some(v) => Ok(v),
        None => bail!("timed out after {timeout:?} waiting for {what}"),
    }
}

fn env_u64(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name} must be a whole number, got {v:?}")),
    }
}

fn env_f64(name: &str, default: f64) -> Result<f64> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(x) if x > 0.0 => Ok(x),
            _ => bail!("{name} must be a positive number, got {v:?}"),
        },
    }
}

struct Settings {
    load: wrk::Load,
    trials: usize,
    scale: scale::Settings,
    idle: Duration,
    sections: Vec<String>,
    out: PathBuf,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let secs = |name, d| env_u64(name, d).map(Duration::from_secs);
        let sections: Vec<String> = std::env::var("SLUICE_BENCH_SECTIONS")
            .unwrap_or_else(|_| "warm,cold,scale".into())
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        for s in &sections {
            if !["warm", "cold", "scale"].contains(&s.as_str()) {
                bail!("SLUICE_BENCH_SECTIONS: unknown section {s:?} (warm, cold, scale)");
            }
        }
        let s = Settings {
            load: wrk::Load {
                threads: env_u64("SLUICE_BENCH_THREADS", 2)? as u32,
                connections: env_u64("SLUICE_BENCH_CONNECTIONS", 32)? as u32,
                duration: secs("SLUICE_BENCH_DURATION", 10)?,
                warmup: secs("SLUICE_BENCH_WARMUP", 1)?,
                headers: Vec::new(),
            },
            trials: env_u64("SLUICE_BENCH_TRIALS", 20)? as usize,
            scale: scale::Settings {
                rate: env_f64("SLUICE_BENCH_SCALE_RPS", 35.0)?,
                sleep_ms: 200,
                duration: secs("SLUICE_BENCH_SCALE_DURATION", 20)?,
            },
            idle: secs("SLUICE_BENCH_IDLE", 5)?,
            sections,
            out: std::env::var_os("SLUICE_BENCH_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(repo_root),
        };
        if s.load.threads == 0 || s.load.connections < s.load.threads || s.trials == 0 {
            bail!("SLUICE_BENCH_THREADS ≥ 1, SLUICE_BENCH_CONNECTIONS ≥ threads and SLUICE_BENCH_TRIALS ≥ 1");
        }
        if s.load.duration.is_zero() || s.load.warmup.is_zero() {
            bail!("SLUICE_BENCH_DURATION and SLUICE_BENCH_WARMUP must be at least 1 s");
        }
        Ok(s)
    }

    fn has(&self, section: &str) -> bool {
        self.sections.iter().any(|s| s == section)
    }
}

/// Prints a progress line with the time since the start.
fn progress(start: Instant) -> impl Fn(String) {
    move |msg| eprintln!("[bench {:>5.0}s] {msg}", start.elapsed().as_secs_f64())
}

/// Fails early, with the fix, when a tool the comparison needs is missing.
async fn preflight() -> Result<()> {
    for (tool, args) in [
        ("wrk", &["-v"][..]),
        ("nginx", &["-v"][..]),
        ("haproxy", &["-v"][..]),
        ("nsenter", &["--version"][..]),
        (
            "docker",
            &["version", "--format", "{{.Server.Version}}"][..],
        ),
    ] {
        let mut c = Command::new(tool);
        c.args(args);
        cmd::run(c, Duration::from_secs(20)).await.with_context(|| {
            format!("{tool} is needed: `make bench` installs nginx, haproxy and wrk (Debian packages); nsenter is util-linux")
        })?;
    }
    Ok(())
}

/// The main process of container `id`.
async fn main_pid(docker: &Docker, id: &str) -> Result<u32> {
    let info = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .with_context(|| format!("inspect container {id}"))?;
    Ok(info
        .state
        .as_ref()
        .and_then(|s| s.pid)
        .filter(|p| *p > 0)
        .with_context(|| format!("container {id} has no running process"))? as u32)
}

async fn inspect(docker: &Docker, id: &str, network: &str) -> Result<(IpAddr, u32)> {
    let info = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .with_context(|| format!("inspect container {id}"))?;
    let pid = info
        .state
        .as_ref()
        .and_then(|s| s.pid)
        .filter(|p| *p > 0)
        .with_context(|| format!("container {id} has no running process"))? as u32;
    let ip = info
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove(network))
        .and_then(|e| e.ip_address)
        .filter(|ip| !ip.is_empty())
        .with_context(|| format!("container {id} has no IP on {network}"))?;
    Ok((ip.parse().context("container IP")?, pid))
}

/// A `sleep` container on the stack's network whose network namespace row (g) runs an nginx
/// in (removed with the stack: it carries the stack's instance label).
async fn netns(docker: &Docker, stack: &ComposeStack, i: usize) -> Result<warm::Netns> {
    use bollard::models::{ContainerCreateBody, HostConfig};
    use bollard::query_parameters::CreateContainerOptionsBuilder;
    let name = format!("{}-netns-{i}", stack.project);
    let body = ContainerCreateBody {
        image: Some(format!("sluice/base:{}", env!("CARGO_PKG_VERSION"))),
        cmd: Some(vec!["sleep".into(), "infinity".into()]),
        labels: Some(std::collections::HashMap::from([
            ("sluice.instance".to_string(), stack.project.clone()),
            ("sluice.bench".to_string(), "netns".to_string()),
        ])),
        host_config: Some(HostConfig {
            network_mode: Some(stack.network.clone()),
            init: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::default().name(&name).build();
    let id = docker
        .create_container(Some(opts), body)
        .await
        .context("create a network-namespace container")?
        .id;
    docker
        .start_container(&id, None)
        .await
        .context("start a network-namespace container")?;
    let (ip, pid) = inspect(docker, &id, &stack.network).await?;
    Ok(warm::Netns { pid, ip })
}

/// The services' addresses and main processes, and two fresh network namespaces for row (g).
async fn platform(docker: &Docker, stack: &ComposeStack) -> Result<(warm::Platform, Vec<Tracked>)> {
    let netns = [
        netns(docker, stack, 0).await?,
        netns(docker, stack, 1).await?,
    ];
    services_of(docker, stack, netns).await
}

/// The services' addresses and main processes (again after a service was recreated), with
/// the namespaces of row (g) made already.
async fn services_of(
    docker: &Docker,
    stack: &ComposeStack,
    netns: [warm::Netns; 2],
) -> Result<(warm::Platform, Vec<Tracked>)> {
    let mut services = Vec::new();
    let mut addr = std::collections::HashMap::new();
    for name in SERVICES {
        let id = stack.service(name);
        if id.is_empty() {
            bail!("compose service {name} is not running");
        }
        // The router listens on its control-network address only (the function network
        // cannot reach it); the others are measured by process, and the gateway is on both.
        let network = match name {
            "gateway" => Some(stack.network.clone()),
            "router" => Some(format!("{}_control", stack.project)),
            _ => None,
        };
        match network {
            Some(net) => {
                let (ip, pid) = inspect(docker, &id, &net).await?;
                services.push(Tracked::process(name, pid));
                addr.insert(name, (ip, pid));
            }
            None => services.push(Tracked::process(name, main_pid(docker, &id).await?)),
        }
    }
    let (g_ip, g_pid) = addr["gateway"];
    let (r_ip, r_pid) = addr["router"];
    Ok((
        warm::Platform {
            user: SocketAddr::from(([127, 0, 0, 1], stack.port)),
            front_pids: front_pids(stack.port),
            gateway: SocketAddr::new(g_ip, 8080),
            router: SocketAddr::new(r_ip, 10000),
            gateway_pid: g_pid,
            router_pid: r_pid,
            services: services.clone(),
            netns,
        },
        services,
    ))
}

/// What serves `127.0.0.1:<port>` in front of the gateway on this machine: Docker's
/// userland `docker-proxy` for that port when the engine runs one (none with
/// `userland-proxy: false`, where NAT rules do it in the kernel).
fn front_pids(port: u16) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let want = format!("-host-port\0{port}\0");
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("docker-proxy") && c.contains(&want)
            })
        })
        .collect()
}

async fn replica(
    docker: &Docker,
    stack: &ComposeStack,
    function: &str,
    expect_body: &str,
) -> Result<warm::Replica> {
    let ids = stack.containers(function, false);
    let [id] = ids.as_slice() else {
        bail!("{function}: expected one replica, found {}", ids.len());
    };
    let (ip, pid) = inspect(docker, id, &stack.network).await?;
    let env = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .with_context(|| format!("inspect container {id}"))?
        .config
        .and_then(|c| c.env)
        .unwrap_or_default();
    let prefix = format!("{}=", sluice_common::runtime::ENV_TOKEN);
    let token = env
        .iter()
        .find_map(|e| e.strip_prefix(&prefix))
        .with_context(|| format!("{function}: its replica has no runtime token"))?
        .to_string();
    Ok(warm::Replica {
        function: function.to_string(),
        addr: SocketAddr::new(ip, 8080),
        pid,
        expect_body: expect_body.to_string(),
        token,
    })
}

struct MainResults {
    warm: Result<Vec<warm::Row>, String>,
    /// Row (u) of `fast` with the gateway and the router given N worker threads each.
    cores: Result<Vec<(usize, warm::Row)>, String>,
    idle: Result<resources::Window, String>,
    cold: Vec<cold::Set>,
}

/// Section 2's sets, each carrying `why` instead of measurements.
fn cold_not_measured(why: &str) -> Vec<cold::Set> {
    COLD.iter()
        .map(|&(function, kind, plain, pooled)| cold::Set {
            function,
            kind,
            plain,
            pooled,
            methods: Err(why.to_string()),
        })
        .collect()
}

/// Sections 1, 2 and 4 on one stack with autoscaling off.
async fn main_stack(
    s: &Settings,
    docker: &Docker,
    tmp: &std::path::Path,
    results: &std::path::Path,
    p: &dyn Fn(String),
) -> MainResults {
    let not_run = "not run (SLUICE_BENCH_SECTIONS)".to_string();
    let mut out = MainResults {
        warm: Err(not_run.clone()),
        cores: Err(not_run.clone()),
        idle: Err(not_run.clone()),
        cold: cold_not_measured(&not_run),
    };
    p("starting the compose stack (autoscaling off)".into());
    let stack = ComposeStack::up_with("pb", REGISTRY_MAIN, false).await;
    let cold_fns = COLD.iter().flat_map(|c| [c.2, c.3]);
    for f in ["hello", "fast"].into_iter().chain(cold_fns) {
        p(format!("waiting for `{f}` to be built"));
        stack.wait_built(f).await;
    }
    let (plat, services) = match platform(docker, &stack).await {
        Ok(v) => v,
        Err(e) => {
            let e = format!("{e:#}");
            out.warm = Err(e.clone());
            out.cores = Err(e.clone());
            out.idle = Err(e.clone());
            out.cold = cold_not_measured(&e);
            return out;
        }
    };

    if s.has("warm") {
        #[allow(clippy::type_complexity)]
        let r: Result<(
            Vec<warm::Row>,
            resources::Window,
            Result<Vec<(usize, warm::Row)>>,
        )> = async {
            let fns = [("fast", "ok"), ("hello", "Hello, world")];
            for (f, _) in fns {
                let code = stack.scale(f, 1).await;
                if code != 202 {
                    bail!("scaling {f} to 1 answered {code}");
                }
            }
            for (f, _) in fns {
                stack.wait_ready(f, 1).await;
            }
            p(format!("resource cost: idle window of {:?}", s.idle));
            let sampler = Sampler::start(services.clone());
            tokio::time::sleep(s.idle).await;
            let idle = sampler.finish().await;
            let mut rows = Vec::new();
            for (f, body) in fns {
                let rep = replica(docker, &stack, f, body).await?;
                rows.extend(
                    warm::run(
                        // Every row carries the replica's runtime token, so the rows that
                        // reach it without the router (direct, nginx, HAProxy) are answered;
                        // the router replaces it with its own on the Sluice rows.
                        &wrk::Load {
                            headers: vec![format!(
                                "{}: {}",
                                sluice_common::runtime::HEADER,
                                rep.token
                            )],
                            ..s.load.clone()
                        },
                        &plat,
                        &rep,
                        tmp,
                        &results.join("configs"),
                        p,
                    )
                    .await?,
                );
            }
            let rep = replica(docker, &stack, "fast", "ok").await?;
            let load = wrk::Load {
                headers: vec![format!("{}: {}", sluice_common::runtime::HEADER, rep.token)],
                ..s.load.clone()
            };
            let cores = cores_rows(docker, &stack, plat.netns, &load, &rep, p).await;
            for (f, _) in fns {
                stack.scale(f, 0).await;
            }
            Ok((rows, idle, cores))
        }
        .await;
        match r {
            Ok((rows, idle, cores)) => {
                out.warm = Ok(rows);
                out.idle = Ok(idle);
                out.cores = cores.map_err(|e| {
                    p(format!("user path against threads FAILED: {e:#}"));
                    format!("{e:#}")
                });
            }
            Err(e) => {
                p(format!("warm path FAILED: {e:#}"));
                out.warm = Err(format!("{e:#}"));
                out.cores = Err("the warm-path section failed".into());
                out.idle = Err("the warm-path section failed".into());
            }
        }
    }

    if s.has("cold") {
        let ctx = cold::Ctx {
            stack: &stack,
            docker,
            gateway: plat.gateway,
            trials: s.trials,
            progress: p,
        };
        for set in &mut out.cold {
            set.methods = cold::run(&ctx, set.plain, set.pooled).await.map_err(|e| {
                p(format!("cold start of `{}` FAILED: {e:#}", set.function));
                format!("{e:#}")
            });
        }
    }
    p("stopping the stack".into());
    drop(stack);
    out
}

/// Worker-thread counts the user's path is measured with: 1, 2 and every core.
fn thread_counts() -> Vec<usize> {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut v = vec![1, 2, all];
    v.sort_unstable();
    v.dedup();
    v
}

/// Row (u) of `fast` with the gateway and the router recreated with N worker threads each
/// (compose's `SLUICE_GATEWAY_THREADS` / `SLUICE_ROUTER_THREADS`), for every N of
/// [`thread_counts`]; the two are put back on their defaults afterwards, also on error.
async fn cores_rows(
    docker: &Docker,
    stack: &ComposeStack,
    netns: [warm::Netns; 2],
    load: &wrk::Load,
    rep: &warm::Replica,
    p: &dyn Fn(String),
) -> Result<Vec<(usize, warm::Row)>> {
    async fn set_threads(
        docker: &Docker,
        stack: &ComposeStack,
        netns: [warm::Netns; 2],
        n: usize,
    ) -> Result<warm::Platform> {
        let env = [
            ("SLUICE_GATEWAY_THREADS", n.to_string()),
            ("SLUICE_ROUTER_THREADS", n.to_string()),
        ];
        let out = stack.compose_with(&["up", "-d", "--no-deps", "router", "gateway"], &env);
        if !out.status.success() {
            bail!(
                "recreating the gateway and the router: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let user = SocketAddr::from(([127, 0, 0, 1], stack.port));
        poll_until(
            "`fast` answering on the user's path",
            Duration::from_secs(90),
            || async {
                http::get(user, "/fast", None, Duration::from_secs(2))
                    .await
                    .ok()
                    .filter(|r| r.status == 200)
                    .map(|_| ())
            },
        )
        .await?;
        Ok(services_of(docker, stack, netns).await?.0)
    }
    let mut rows = Vec::new();
    let mut failure = None;
    for n in thread_counts() {
        p(format!(
            "user path against threads: gateway and router on {n} worker thread(s) each"
        ));
        let r = async {
            let plat = set_threads(docker, stack, netns, n).await?;
            let label = format!("(u) with {n} worker thread(s) in the gateway and in the router");
            let url = format!("http://{}/fast", plat.user);
            let tiers = warm::user_tiers(&plat);
            warm::measure(load, &plat, rep, 'u', label, &url, tiers, p).await
        }
        .await;
        match r {
            Ok(row) => rows.push((n, row)),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    // Back to the defaults, for the sections after this one.
    let restored = set_threads(docker, stack, netns, 0).await;
    if let Some(e) = failure {
        return Err(e);
    }
    restored?;
    Ok(rows)
}

/// Section 3 on a stack with autoscaling on.
async fn scale_stack(s: &Settings, docker: &Docker, p: &dyn Fn(String)) -> Result<scale::Outcome> {
    p("starting the compose stack (autoscaling on)".into());
    let stack = ComposeStack::up_with("pb", REGISTRY_SCALE, true).await;
    p("waiting for `sleep` to be built".into());
    stack.wait_built("sleep").await;
    poll_until("`sleep` at zero", Duration::from_secs(60), || async {
        stack.containers("sleep", true).is_empty().then_some(())
    })
    .await?;
    let id = stack.service("gateway");
    let (ip, _) = inspect(docker, &id, &stack.network).await?;
    p(format!(
        "scale reaction: step to {} calls/s of sleep?ms={} for {:?}",
        s.scale.rate, s.scale.sleep_ms, s.scale.duration
    ));
    let o = scale::run(&stack, SocketAddr::new(ip, 8080), "sleep", &s.scale).await?;
    let seen = o.first_seen();
    p(format!(
        "  replicas first answering at {:?} s; {} errors of {} calls",
        seen.iter()
            .map(|(_, t)| (t * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
        o.errors(),
        o.calls.len()
    ));
    p("stopping the stack".into());
    drop(stack);
    Ok(o)
}

async fn run() -> Result<bool> {
    let start = Instant::now();
    let p = progress(start);
    let s = Settings::from_env()?;
    let results = s.out.join("bench-results");
    std::fs::create_dir_all(&results).with_context(|| format!("mkdir {}", results.display()))?;
    preflight().await?;
    let docker = Docker::connect_with_defaults()
        .context("connect to the Docker engine")?
        .negotiate_version()
        .await
        .context("Docker engine version")?;
    let machine = machine::describe(&docker).await;
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    p(format!(
        "{} cores, {:.1} GiB, kernel {}, Docker {} ({}); load average {}",
        machine.cores,
        machine.ram_gib,
        machine.kernel,
        machine.docker,
        machine.storage_driver,
        machine.load_at_start
    ));
    let tmp = tempfile::tempdir().context("temp dir")?;

    let main = if s.has("warm") || s.has("cold") {
        main_stack(&s, &docker, tmp.path(), &results, &p).await
    } else {
        MainResults {
            warm: Err("not run (SLUICE_BENCH_SECTIONS)".into()),
            cores: Err("not run (SLUICE_BENCH_SECTIONS)".into()),
            idle: Err("not run (SLUICE_BENCH_SECTIONS)".into()),
            cold: cold_not_measured("not run (SLUICE_BENCH_SECTIONS)"),
        }
    };
    let scale = if s.has("scale") {
        scale_stack(&s, &docker, &p).await.map_err(|e| {
            p(format!("scale reaction FAILED: {e:#}"));
            format!("{e:#}")
        })
    } else {
        Err("not run (SLUICE_BENCH_SECTIONS)".into())
    };

    let make_s = std::env::var("SLUICE_BENCH_T0")
        .ok()
        .and_then(|t| t.trim().parse::<f64>().ok())
        .and_then(|t0| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs_f64();
            Some(now - t0)
        });
    let mut machine = machine;
    machine.load_at_end = machine::load_average();
    let mut report = Report {
        machine,
        date,
        load: s.load.clone(),
        trials: s.trials,
        warm_functions: vec!["fast".into(), "hello".into()],
        warm: main.warm,
        cores: main.cores,
        cold: main.cold,
        scale,
        idle: main.idle,
        registries: vec![
            (
                "sections 1, 2, 4 (autoscaling off)".into(),
                REGISTRY_MAIN.into(),
            ),
            ("section 3 (autoscaling on)".into(), REGISTRY_SCALE.into()),
        ],
        bench_s: start.elapsed().as_secs_f64(),
        make_s,
        charts: Vec::new(),
        chart_error: None,
    };

    // Charts.
    let drawn = charts::load_font().and_then(|()| {
        let mut out = Vec::new();
        if let Ok(rows) = &report.warm {
            charts::warm(&results.join("warm_path.png"), rows, &report.warm_functions)?;
            out.push("warm_path.png".to_string());
        }
        if report.cold.iter().any(|c| c.methods.is_ok()) {
            charts::cold(&results.join("cold_start.png"), &report.cold)?;
            out.push("cold_start.png".to_string());
        }
        if let Ok(o) = &report.scale {
            charts::scale(&results.join("scale_reaction.png"), o)?;
            out.push("scale_reaction.png".to_string());
        }
        Ok(out)
    });
    match drawn {
        Ok(c) => report.charts = c,
        Err(e) => {
            p(format!("charts not drawn: {e}"));
            report.chart_error = Some(e);
        }
    }
    let csvs = report::write_csvs(&report, &results)?;

    let md_path = s.out.join("BENCHMARKS.md");
    let previous = std::fs::read_to_string(&md_path)
        .or_else(|_| std::fs::read_to_string(repo_root().join("BENCHMARKS.md")))
        .unwrap_or_default();
    let md = carry_bench_sections(
        report.markdown(&history::section(&report, &previous)),
        &previous,
    );
    std::fs::write(&md_path, md).with_context(|| format!("write {}", md_path.display()))?;

    p(format!(
        "wrote {} and {} ({})",
        md_path.display(),
        results.display(),
        csvs.iter()
            .chain(report.charts.iter())
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for v in report.verdicts() {
        p(format!(
            "target: {} — {} {}",
            v.target,
            match v.met {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "not measured",
            },
            v.numbers
        ));
    }
    let failed = (s.has("warm") && (report.warm.is_err() || report.idle.is_err()))
        || (s.has("cold") && report.cold.iter().any(|c| c.methods.is_err()))
        || (s.has("scale") && report.scale.is_err());
    Ok(!failed)
}

/// `make bench-sip` and `make bench-mdf` write their own sections of BENCHMARKS.md (between
/// their markers): kept as they are, before `## History`.
fn carry_bench_sections(mut md: String, previous: &str) -> String {
    for name in ["bench-sip", "bench-mdf"] {
        let start = format!("<!-- {name}:start -->");
        let end = format!("<!-- {name}:end -->");
        let Some(from) = previous.find(&start) else {
            continue;
        };
        let Some(to) = previous[from..].find(&end).map(|i| from + i + end.len()) else {
            continue;
        };
        let section = &previous[from..to];
        md = match md.find("\n## History") {
            Some(at) => format!("{}\n{section}\n{}", &md[..at], &md[at..]),
            None => format!("{}\n\n{section}\n", md.trim_end()),
        };
    }
    md
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    // Settings come from the environment; no argument is accepted.
    if std::env::args().len() > 1 {
        eprintln!("usage: cargo run --release -p platform-bench (settings: SLUICE_BENCH_* environment, see the source's header)");
        return ExitCode::from(2);
    }
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("[bench] some sections failed: see BENCHMARKS.md");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("[bench] error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
