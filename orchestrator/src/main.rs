//! `orchestrator` — Sluice's brain: the function registry, image builds, container lifecycle
//! over the Docker API, and (later) autoscaling.
//!
//! ```text
//! orchestrator [serve]          run the orchestrator (default)
//! orchestrator validate [FILE]  check a registry file, list every error, exit non-zero on any
//! orchestrator healthcheck [URL] GET URL (default: own /healthz), exit 0 on 2xx (container healthcheck)
//! ```
#![forbid(unsafe_code)]

mod api;
mod autoscale;
mod build;
mod config;
mod dataplane;
mod docker;
mod error;
mod functions;
mod mdf;
mod reload;
mod secrets;
mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::functions::{Ctx, Supervisor};
use crate::state::{FunctionRecord, Source, Store};

#[derive(Parser)]
#[command(
    name = "orchestrator",
    version,
    about = "Sluice orchestrator: registry, images, containers"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Env-file with SLUICE_* settings (applied before flags and the environment are read).
    #[arg(long, global = true, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    serve: Config,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the orchestrator (the default).
    Serve,
    /// Validate a registry file: print every error with its line and exit 1 if there is any.
    Validate {
        /// The registry file.
        #[arg(default_value = "global-function-definition.yml")]
        file: PathBuf,
        /// Folder of the function folders (default: faas-runtime/functions next to FILE).
        #[arg(long)]
        functions_dir: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    if let Some(code) = sluice_common::healthcheck::from_args("http://127.0.0.1:8082/healthz") {
        return code;
    }
    sluice_common::config::load_or_exit();
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::Validate {
            file,
            functions_dir,
        }) => validate(&file, functions_dir, &cli.serve.ceilings()),
        Some(Cmd::Serve) | None => {
            sluice_common::telemetry::init("orchestrator");
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            match rt.block_on(serve(cli.serve)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "orchestrator failed");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}

fn validate(
    file: &std::path::Path,
    functions_dir: Option<PathBuf>,
    ceilings: &sluice_common::registry::Ceilings,
) -> std::process::ExitCode {
    let dir = functions_dir.unwrap_or_else(|| {
        file.parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default()
            .join("faas-runtime")
            .join("functions")
    });
    match sluice_common::registry::load_with(file, Some(&dir), ceilings) {
        Ok(reg) => {
            println!(
                "{}: OK, {} function(s): {}",
                file.display(),
                reg.functions.len(),
                reg.functions.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            std::process::ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("{e}");
            }
            eprintln!("{}: {} error(s)", file.display(), errs.0.len());
            std::process::ExitCode::FAILURE
        }
    }
}

/// Retries `f` with backoff until it succeeds or `stop` is cancelled.
async fn with_retry<T, F, Fut>(what: &str, stop: &CancellationToken, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = error::Result<T>>,
{
    let mut wait = Duration::from_millis(200);
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "{what} unavailable");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

async fn serve(mut cfg: Config) -> anyhow::Result<()> {
    let stop = sluice_common::shutdown::token();
    // Control keys are `<instance>:*`; `fn:*` belongs to functions' own state.
    if cfg.instance == "fn" {
        anyhow::bail!("SLUICE_INSTANCE `fn` is reserved: function state lives under `fn:`");
    }
    // The control API is never open: no usable admin password, no start.
    api::auth::check_password_file(&cfg.admin_password_file)?;
    let (url, password) =
        sluice_common::config::redis_url(&cfg.redis_url, cfg.redis_password_file.as_deref())?;
    // Function state: a Redis of its own (the compose stack's `state-redis`, on the function
    // network only) or, when none is set, the control Redis. Function-state passwords derive
    // from that Redis's password; without one (a Redis with no password, which anything can
    // reach anyway) from its URL.
    let (state_admin_url, state_password, state_url) = match cfg.state_redis_url.clone() {
        Some(u) => {
            let (admin, pw) =
                sluice_common::config::redis_url(&u, cfg.state_redis_password_file.as_deref())?;
            (Some(admin), pw, u)
        }
        None => (None, password.clone(), cfg.redis_url.clone()),
    };
    let state_secret = state_password
        .unwrap_or_else(|| state_url.clone())
        .into_bytes();
    cfg.redis_url = url;
    let functions_dir = cfg.functions_dir();
    tracing::info!(registry = %cfg.registry.display(), functions_dir = %functions_dir.display(),
        instance = %cfg.instance, network = %cfg.network, "starting");

    let Some(engine) = with_retry("docker engine", &stop, || {
        docker::Engine::connect(cfg.docker_host.as_deref(), &cfg.network, &cfg.instance)
    })
    .await
    else {
        return Ok(());
    };
    if with_retry("docker network", &stop, || engine.ensure_network())
        .await
        .is_none()
    {
        return Ok(());
    }
    let Some(store) = with_retry("redis", &stop, || {
        Store::connect(&cfg.redis_url, &cfg.instance)
    })
    .await
    else {
        return Ok(());
    };

    // Secrets: a configured key that cannot be read stops the start (a typo must not
    // silently turn secrets off); no key configured turns them off, loudly.
    let secrets = {
        let cipher = match &cfg.secrets_key_file {
            Some(path) => Some(secrets::Cipher::load(path)?),
            None => {
                tracing::warn!("no SLUICE_SECRETS_KEY_FILE: secrets are off");
                None
            }
        };
        let secrets = secrets::Secrets::new(store.connection(), &cfg.instance, cipher);
        if let Some(path) = &cfg.secrets_previous_key_file {
            let previous = secrets::Cipher::load(path)?;
            let resealed = secrets.reseal_from(&previous).await?;
            tracing::info!(resealed, previous_key = %previous.id(), "secrets re-sealed with the current key");
        }
        secrets
    };
    let state_conn = match &state_admin_url {
        None => store.connection(),
        Some(url) => {
            let Some(c) = with_retry("state redis", &stop, || async {
                let client = redis::Client::open(url.as_str()).map_err(|e| {
                    error::Error::redis("invalid state redis url", e).retryable(false)
                })?;
                redis::aio::ConnectionManager::new(client)
                    .await
                    .map_err(|e| error::Error::redis("cannot connect to the state redis", e))
            })
            .await
            else {
                return Ok(());
            };
            c
        }
    };

    // Functions: the registry file, or, when it is invalid now, the last good one from Redis;
    // plus those deployed over the API.
    let stored = store.functions().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read stored functions");
        Default::default()
    });
    let ceilings = cfg.ceilings();
    let file_specs =
        match sluice_common::registry::load_with(&cfg.registry, Some(&functions_dir), &ceilings) {
            Ok(reg) => reg.functions.into_values().collect::<Vec<_>>(),
            Err(errs) => {
                for e in &errs.0 {
                    tracing::error!(error = %e, "registry file rejected");
                }
                tracing::warn!("starting with the last good registry stored in redis");
                stored
                    .values()
                    .filter(|r| r.source == Source::File)
                    .map(|r| r.spec.clone())
                    .collect()
            }
        };
    let mut records: Vec<FunctionRecord> = file_specs
        .iter()
        .map(|s| FunctionRecord {
            spec: s.clone(),
            source: Source::File,
        })
        .collect();
    for rec in stored.into_values() {
        if rec.source == Source::Api && !records.iter().any(|r| r.spec.name == rec.spec.name) {
            records.push(rec);
        }
    }
    let desired = store.desired().await.unwrap_or_default();

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(2)
        .build()?;
    let pool_http = http.clone();
    let xds_token = sluice_common::xds::token_from(cfg.xds_token_file.as_deref())
        .map_err(|e| anyhow::anyhow!(e))?;
    let dataplane = dataplane::DataPlane::new(
        http.clone(),
        cfg.xds_rest.clone().filter(|u| !u.is_empty()),
        xds_token,
        cfg.router_admin.clone(),
        cfg.drain_slack,
        dataplane::RuntimeTokens::new(
            [b"runtime\0".as_slice(), &state_secret].concat(),
            &cfg.instance,
        ),
    );
    let mdf_pool = if cfg.mdf_pool_max > 0 {
        let Some(gateway_ip) = with_retry("function network gateway", &stop, || {
            engine.network_gateway()
        })
        .await
        else {
            return Ok(());
        };
        let settings = mdf::PoolSettings {
            policy: mdf::policy::Settings {
                min: cfg.mdf_pool_min.min(cfg.mdf_pool_max),
                max: cfg.mdf_pool_max,
                scale_up_at: cfg.mdf_scale_up_at,
                scale_down_at: cfg.mdf_scale_down_at,
                down_after: cfg.mdf_scale_down_after,
            },
            image: cfg
                .mdf_image
                .clone()
                .unwrap_or_else(|| format!("sluice/mdf:{}", cfg.image_tag)),
            control_host: gateway_ip,
            control_port_base: cfg.mdf_control_port_base,
            media_ip: cfg.mdf_media_ip.clone(),
            advertise: cfg
                .mdf_advertise
                .clone()
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| cfg.mdf_media_ip.clone()),
            port_base: cfg.mdf_port_base,
            ports_per_instance: cfg.mdf_ports_per_instance,
            max_sessions: cfg.mdf_max_sessions,
            token: sluice_common::mdf::token(&state_secret),
        };
        Some(settings)
    } else {
        None
    };
    let ctx = Ctx {
        mdf_env: mdf_pool
            .as_ref()
            .map(mdf::PoolSettings::function_env)
            .unwrap_or_default(),
        builder: build::Builder::new(engine.clone(), functions_dir.clone(), cfg.image_tag.clone()),
        engine: engine.clone(),
        state_users: state::users::StateUsers::new(state_conn, state_secret, state_url),
        store: store.clone(),
        http,
        dataplane: dataplane.clone(),
        ready_poll: cfg.ready_poll,
        max_backoff: cfg.max_backoff,
        functions_dir: functions_dir.clone(),
        ceilings,
        secrets,
    };
    let sup = Supervisor::new(ctx, stop.clone());
    let known: Vec<String> = records.iter().map(|r| r.spec.name.clone()).collect();
    sup.start(records, &desired).await;
    if dataplane.enabled() {
        tokio::spawn(async move {
            if let Err(e) = dataplane.prune(&known).await {
                tracing::warn!(error = %e, "cannot prune the data-plane config");
            }
        });
    }
    let reloader = reload::Reloader::new(sup.clone(), cfg.registry.clone(), functions_dir);
    reloader.mark_applied(&file_specs).await;

    let (ev_tx, ev_rx) = tokio::sync::mpsc::channel(1024);
    let engine_for_pool = engine.clone();
    let watcher = tokio::spawn(docker::events::watch(engine, ev_tx, stop.clone()));
    let router = tokio::spawn(sup.clone().route_events(ev_rx, cfg.resync_interval));
    let watch = tokio::spawn(reloader.clone().watch(stop.clone()));
    let mut mdf_view = None;
    let pool = mdf_pool.map(|settings| {
        let pool = mdf::Pool::new(engine_for_pool.clone(), pool_http.clone(), settings);
        mdf_view = Some(pool.subscribe());
        tokio::spawn(pool.run(stop.clone()))
    });
    let autoscaler = if cfg.autoscale {
        let a =
            autoscale::Autoscaler::new(sup.clone(), cfg.redis_url.clone(), cfg.instance.clone());
        Some(tokio::spawn(a.run(stop.clone())))
    } else {
        None
    };

    let guard = Arc::new(api::auth::Guard::new(
        cfg.admin_password_file.clone(),
        store.clone(),
        api::auth::limiter::Settings {
            burst: cfg.auth_failure_burst,
            refill: cfg.auth_failure_refill,
            ..Default::default()
        },
    ));
    let app = api::router(api::Api {
        sup: sup.clone(),
        reloader: Arc::clone(&reloader),
        mdf: mdf_view,
        guard,
    });
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    tracing::info!(listen = %cfg.listen, "API listening");
    let shutdown = stop.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await?;

    stop.cancel();
    let _ = tokio::join!(watcher, router, watch);
    if let Some(a) = autoscaler {
        let _ = a.await;
    }
    if let Some(p) = pool {
        let _ = p.await;
    }
    sup.join().await;
    tracing::info!("stopped; function containers keep running and are adopted at the next start");
    Ok(())
}
