//! Section 2, cold start: Sluice end to end (a function at zero → the first byte of the
//! response through the gateway), without and with the warm pool, against the same image
//! started directly: `docker create` + `start` and `docker unpause` through the Docker API,
//! and `docker run --rm` through the CLI, each until the runtime's `/_/ready` answers.
//! The methods are interleaved, one trial of each per round (round 0 untimed), so drift on a
//! shared machine hits them alike.
//!
//! The baselines' containers are created with exactly what the orchestrator gave its own
//! replica (image id, user, environment, limits, read-only root, tmpfs, capabilities, init,
//! network): the configuration is copied from a replica Sluice launched.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use bollard::Docker;

use crate::cmd;
use crate::http;
use crate::poll_until;
use crate::stack_support::ComposeStack;

/// How often the baselines poll `/_/ready`: the orchestrator's own probe interval
/// (`SLUICE_READY_POLL`, 5 ms), so both sides are polled the same way.
const READY_POLL: Duration = Duration::from_millis(5);
const LONG: Duration = Duration::from_secs(90);

/// One way of getting a replica to serve, with its timed trials.
#[derive(Debug, Clone)]
pub struct Method {
    pub key: &'static str,
    pub label: &'static str,
    pub samples_ms: Vec<f64>,
}

/// One function's cold starts: a pair of registry entries with the same code (`plain` with
/// the defaults, `pooled` with `warm_pool: 1`) and the baselines on that image.
#[derive(Debug, Clone)]
pub struct Set {
    /// What the report calls it: the function folder both entries build (`hello`, `echo`).
    pub function: &'static str,
    /// Language and runtime mode, for the report.
    pub kind: &'static str,
    pub plain: &'static str,
    pub pooled: &'static str,
    /// Every method's trials, or why the set was not measured.
    pub methods: Result<Vec<Method>, String>,
}

impl Set {
    pub fn method(&self, key: &str) -> Option<&Method> {
        self.methods.as_ref().ok()?.iter().find(|m| m.key == key)
    }

    /// The `p` percentile of method `key`, ms.
    pub fn pct(&self, key: &str, p: f64) -> Option<f64> {
        crate::stats::pct(&self.method(key)?.samples_ms, p)
    }

    /// Per trial, `later` − `earlier` (two readings of the same trial, e.g. `create-start`
    /// and `create-start-ready`: from `start` returning to `/_/ready`, the start inside the
    /// container), ms.
    pub fn within_trial(&self, earlier: &str, later: &str) -> Vec<f64> {
        match (self.method(earlier), self.method(later)) {
            (Some(a), Some(b)) => a
                .samples_ms
                .iter()
                .zip(&b.samples_ms)
                .map(|(a, b)| b - a)
                .collect(),
            _ => Vec::new(),
        }
    }
}

pub struct Ctx<'a> {
    pub stack: &'a ComposeStack,
    pub docker: &'a Docker,
    pub gateway: SocketAddr,
    pub trials: usize,
    pub progress: &'a dyn Fn(String),
}

/// Ids of the containers Sluice manages for `function` in this stack: every state (`all`) or
/// only those running and not paused. (The baselines run the same image, whose labels name
/// the function too, but they lack `sluice.managed`.)
async fn managed(ctx: &Ctx<'_>, function: &str, all: bool) -> Result<Vec<String>> {
    let mut filters = HashMap::from([(
        "label".to_string(),
        vec![
            "sluice.managed=true".to_string(),
            format!("sluice.instance={}", ctx.stack.project),
            format!("sluice.function={function}"),
        ],
    )]);
    if !all {
        filters.insert("status".to_string(), vec!["running".to_string()]);
    }
    let opts = ListContainersOptionsBuilder::default()
        .all(all)
        .filters(&filters)
        .build();
    Ok(ctx
        .docker
        .list_containers(Some(opts))
        .await
        .context("list containers")?
        .into_iter()
        .filter_map(|c| c.id)
        .collect())
}

/// Until no container of `function` is left (stopped and removed).
async fn none_left(ctx: &Ctx<'_>, function: &str) -> Result<()> {
    let last = std::sync::Mutex::new(String::new());
    let r = poll_until(&format!("{function}: no container left"), LONG, || async {
        match managed(ctx, function, true).await {
            Ok(ids) if ids.is_empty() => Some(()),
            Ok(ids) => {
                *last.lock().ok()? = format!("still there: {ids:?}");
                None
            }
            Err(e) => {
                *last.lock().ok()? = format!("{e:#}");
                None
            }
        }
    })
    .await;
    r.with_context(|| last.lock().map(|l| l.clone()).unwrap_or_default())
}

/// One call to a function at zero through the gateway; the time to its first byte.
async fn cold_call(ctx: &Ctx<'_>, function: &str) -> Result<f64> {
    let r = http::get(ctx.gateway, &format!("/{function}"), None, LONG).await?;
    if r.status != 200 {
        bail!("cold call to {function}: {} {}", r.status, r.body);
    }
    if r.header("x-sluice-cold-start") != Some("true") {
        bail!(
            "the call to {function} was not a cold start (X-Sluice-Cold-Start: {:?})",
            r.header("x-sluice-cold-start")
        );
    }
    Ok(r.first_byte.as_secs_f64() * 1000.0)
}

async fn scale_to_zero(ctx: &Ctx<'_>, function: &str) -> Result<()> {
    let code = ctx.stack.scale(function, 0).await;
    if code != 202 {
        bail!("scaling {function} to 0 answered {code}");
    }
    Ok(())
}

/// Sluice without a pool: at zero (no container at all) → first byte; back to zero (the
/// replica stopped and removed) before it returns, so the next trial of any method starts
/// on an idle engine.
async fn sluice_plain(ctx: &Ctx<'_>, function: &str) -> Result<f64> {
    let ms = cold_call(ctx, function).await?;
    scale_to_zero(ctx, function).await?;
    none_left(ctx, function).await?;
    Ok(ms)
}

/// Until `function` (`warm_pool: 1`) is at zero with its one pooled replica paused.
async fn pool_parked(ctx: &Ctx<'_>, function: &str) -> Result<()> {
    poll_until(&format!("{function}: back to zero"), LONG, || async {
        let f = ctx.stack.function(function).await;
        (f["availableReplicas"] == 0 && f["replicas"] == 0 && f["startingReplicas"] == 0)
            .then_some(())
    })
    .await?;
    poll_until(
        &format!("{function}: one pooled replica, none running"),
        LONG,
        || async {
            let pooled = ctx.stack.function(function).await["pooledReplicas"] == 1;
            (pooled && managed(ctx, function, false).await.ok()?.is_empty()).then_some(())
        },
    )
    .await
}

/// Sluice with `warm_pool: 1`: one paused replica in the pool, none running → first byte;
/// parked again before it returns.
async fn sluice_pooled(ctx: &Ctx<'_>, function: &str) -> Result<f64> {
    let ms = cold_call(ctx, function).await?;
    scale_to_zero(ctx, function).await?;
    pool_parked(ctx, function).await?;
    Ok(ms)
}

/// What Sluice gave its replica, to create the baselines' containers with.
struct Template {
    body: ContainerCreateBody,
    /// The same, as `docker run` flags.
    run_args: Vec<String>,
    image: String,
}

async fn template(ctx: &Ctx<'_>, function: &str) -> Result<Template> {
    let ids = managed(ctx, function, false).await?;
    let id = ids
        .first()
        .context("no running replica to copy the configuration from")?;
    let info = ctx
        .docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .context("inspect a Sluice replica")?;
    let image = info.image.context("replica without image")?;
    let cfg = info.config.context("replica without config")?;
    let hc = info.host_config.context("replica without host config")?;
    let network = ctx.stack.network.clone();
    let labels = HashMap::from([
        ("sluice.instance".to_string(), ctx.stack.project.clone()),
        ("sluice.bench".to_string(), "baseline".to_string()),
    ]);
    let host_config = HostConfig {
        memory: hc.memory,
        memory_swap: hc.memory_swap,
        nano_cpus: hc.nano_cpus,
        pids_limit: hc.pids_limit,
        readonly_rootfs: hc.readonly_rootfs,
        tmpfs: hc.tmpfs.clone(),
        cap_drop: hc.cap_drop.clone(),
        security_opt: hc.security_opt.clone(),
        init: hc.init,
        network_mode: Some(network.clone()),
        ..Default::default()
    };
    let mut run_args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--rm".into(),
        "--network".into(),
        network.clone(),
        "--label".into(),
        format!("sluice.instance={}", ctx.stack.project),
        "--label".into(),
        "sluice.bench=baseline".into(),
    ];
    if let Some(u) = &cfg.user {
        run_args.extend(["--user".into(), u.clone()]);
    }
    if let Some(m) = hc.memory {
        run_args.extend(["--memory".into(), m.to_string()]);
    }
    if let Some(m) = hc.memory_swap {
        run_args.extend(["--memory-swap".into(), m.to_string()]);
    }
    if let Some(c) = hc.nano_cpus {
        run_args.extend(["--cpus".into(), format!("{}", c as f64 / 1e9)]);
    }
    if let Some(p) = hc.pids_limit {
        run_args.extend(["--pids-limit".into(), p.to_string()]);
    }
    if hc.readonly_rootfs == Some(true) {
        run_args.push("--read-only".into());
    }
    for (path, opts) in hc.tmpfs.iter().flatten() {
        run_args.extend(["--tmpfs".into(), format!("{path}:{opts}")]);
    }
    for c in hc.cap_drop.iter().flatten() {
        run_args.extend(["--cap-drop".into(), c.clone()]);
    }
    for s in hc.security_opt.iter().flatten() {
        run_args.extend(["--security-opt".into(), s.clone()]);
    }
    if hc.init == Some(true) {
        run_args.push("--init".into());
    }
    // The baselines are plain containers of the same image and settings, polled without the
    // platform's runtime token: they do not get one (it only gates who may call).
    let token_var = format!("{}=", sluice_common::runtime::ENV_TOKEN);
    let env: Vec<String> = cfg
        .env
        .iter()
        .flatten()
        .filter(|e| !e.starts_with(&token_var))
        .cloned()
        .collect();
    for e in &env {
        run_args.extend(["-e".into(), e.clone()]);
    }
    let body = ContainerCreateBody {
        image: Some(image.clone()),
        user: cfg.user.clone(),
        env: Some(env),
        labels: Some(labels),
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(network, EndpointSettings::default())])),
        }),
        ..Default::default()
    };
    Ok(Template {
        body,
        run_args,
        image,
    })
}

async fn runtime_addr(ctx: &Ctx<'_>, id: &str) -> Result<SocketAddr> {
    let info = ctx
        .docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .context("inspect")?;
    let ip = info
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove(&ctx.stack.network))
        .and_then(|e| e.ip_address)
        .filter(|ip| !ip.is_empty())
        .context("container without an IP on the stack's network")?;
    let ip: IpAddr = ip.parse().context("container IP")?;
    Ok(SocketAddr::new(ip, 8080))
}

async fn remove(ctx: &Ctx<'_>, id: &str) {
    let rm = RemoveContainerOptionsBuilder::default().force(true).build();
    let _ = ctx.docker.remove_container(id, Some(rm)).await;
    // Gone (a `--rm` container removes itself; either way wait until it has).
    let _ = poll_until("baseline container removed", LONG, || async {
        ctx.docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .is_err()
            .then_some(())
    })
    .await;
}

/// Creates container `name` from the template through the API; its id.
async fn create(ctx: &Ctx<'_>, tpl: &Template, name: &str) -> Result<String> {
    let opts = CreateContainerOptionsBuilder::default().name(name).build();
    Ok(ctx
        .docker
        .create_container(Some(opts), tpl.body.clone())
        .await
        .context("docker create")?
        .id)
}

/// create + start through the API: (until start returned, until `/_/ready`), ms; the
/// container is removed (and gone) before it returns.
async fn create_start(ctx: &Ctx<'_>, tpl: &Template, name: &str) -> Result<(f64, f64)> {
    let t = Instant::now();
    let id = create(ctx, tpl, name).await?;
    let result = async {
        ctx.docker
            .start_container(&id, None)
            .await
            .context("docker start")?;
        let s = t.elapsed();
        let addr = runtime_addr(ctx, &id).await?;
        let r = http::until_ready(addr, t, READY_POLL, LONG).await?;
        anyhow::Ok((s.as_secs_f64() * 1000.0, r.as_secs_f64() * 1000.0))
    }
    .await;
    remove(ctx, &id).await;
    result
}

/// `docker run -d --rm` through the CLI until `/_/ready`, ms; removed before it returns.
async fn docker_run(ctx: &Ctx<'_>, tpl: &Template, name: &str) -> Result<f64> {
    let mut c = Command::new("docker");
    c.args(&tpl.run_args[..3])
        .args(["--name", name])
        .args(&tpl.run_args[3..])
        .arg(&tpl.image);
    let t = Instant::now();
    let id = cmd::run_ok(c, LONG).await?.trim().to_string();
    let result = async {
        let addr = runtime_addr(ctx, &id).await?;
        http::until_ready(addr, t, READY_POLL, LONG).await
    }
    .await;
    remove(ctx, &id).await;
    Ok(result?.as_secs_f64() * 1000.0)
}

/// A started, ready container kept paused between trials.
struct Paused {
    id: String,
    addr: SocketAddr,
}

async fn paused(ctx: &Ctx<'_>, tpl: &Template) -> Result<Paused> {
    let name = format!("{}-baseline-pause", ctx.stack.project);
    let id = create(ctx, tpl, &name).await?;
    let result = async {
        ctx.docker
            .start_container(&id, None)
            .await
            .context("docker start")?;
        let addr = runtime_addr(ctx, &id).await?;
        http::until_ready(addr, Instant::now(), READY_POLL, LONG).await?;
        ctx.docker
            .pause_container(&id)
            .await
            .context("docker pause")?;
        anyhow::Ok(addr)
    }
    .await;
    match result {
        Ok(addr) => Ok(Paused { id, addr }),
        Err(e) => {
            remove(ctx, &id).await;
            Err(e)
        }
    }
}

/// Unpause through the API: (until unpause returned, until `/_/ready`), ms; paused again
/// before it returns.
async fn unpause(ctx: &Ctx<'_>, p: &Paused) -> Result<(f64, f64)> {
    let t = Instant::now();
    ctx.docker
        .unpause_container(&p.id)
        .await
        .context("docker unpause")?;
    let u = t.elapsed();
    let r = http::until_ready(p.addr, t, READY_POLL, LONG).await?;
    ctx.docker
        .pause_container(&p.id)
        .await
        .context("docker pause")?;
    Ok((u.as_secs_f64() * 1000.0, r.as_secs_f64() * 1000.0))
}

/// Every method; `plain` and `pooled` are the two Sluice functions (same code, the second
/// with `warm_pool: 1`), both built and at zero. The methods are interleaved: each round
/// takes one trial of every method, so whatever else the machine does drifts over all of
/// them alike; round 0 is the untimed warm-up.
pub async fn run(ctx: &Ctx<'_>, plain: &str, pooled: &str) -> Result<Vec<Method>> {
    let p = ctx.progress;
    p(format!(
        "cold start: {} rounds of Sluice (`{plain}`, `{pooled}` with a warm pool), docker \
         create + start, docker run, docker unpause, interleaved",
        ctx.trials
    ));
    // The first call also leaves a replica to copy the configuration from.
    cold_call(ctx, plain).await?;
    let tpl = template(ctx, plain).await?;
    scale_to_zero(ctx, plain).await?;
    none_left(ctx, plain).await?;
    pool_parked(ctx, pooled).await?;
    let frozen = paused(ctx, &tpl).await?;
    let result = rounds(ctx, plain, pooled, &tpl, &frozen).await;
    remove(ctx, &frozen.id).await;
    result
}

async fn rounds(
    ctx: &Ctx<'_>,
    plain: &str,
    pooled: &str,
    tpl: &Template,
    frozen: &Paused,
) -> Result<Vec<Method>> {
    let mut v: [Vec<f64>; 7] = Default::default();
    for i in 0..=ctx.trials {
        let sluice = sluice_plain(ctx, plain).await?;
        let name = format!("{}-baseline-cs-{i}", ctx.stack.project);
        let (cs, cs_ready) = create_start(ctx, tpl, &name).await?;
        let name = format!("{}-baseline-run-{i}", ctx.stack.project);
        let run = docker_run(ctx, tpl, &name).await?;
        let pool = sluice_pooled(ctx, pooled).await?;
        let (up, up_ready) = unpause(ctx, frozen).await?;
        if i > 0 {
            for (k, x) in [sluice, pool, cs, cs_ready, run, up, up_ready]
                .into_iter()
                .enumerate()
            {
                v[k].push(x);
            }
        }
        if i % 5 == 0 {
            (ctx.progress)(format!("  round {i}/{}", ctx.trials));
        }
    }
    let [sluice, pool, cs, cs_ready, run, up, up_ready] = v;
    let m = |key, label, samples_ms| Method {
        key,
        label,
        samples_ms,
    };
    Ok(vec![
        m(
            "sluice",
            "Sluice: function at zero → first byte (no pool)",
            sluice,
        ),
        m(
            "sluice-pool",
            "Sluice: warm pool (`warm_pool: 1`) → first byte",
            pool,
        ),
        m(
            "create-start",
            "docker create + start (API), until start returns",
            cs,
        ),
        m(
            "create-start-ready",
            "docker create + start (API) → /_/ready",
            cs_ready,
        ),
        m("run", "docker run --rm -d (CLI) → /_/ready", run),
        m("unpause", "docker unpause (API), until it returns", up),
        m("unpause-ready", "docker unpause (API) → /_/ready", up_ready),
    ])
}
