//! `engine-filter`: the only holder of the Docker engine's socket in a Sluice installation.
//! It serves a socket of its own to the orchestrator and forwards only the calls the
//! orchestrator makes, on this installation's containers, networks and images, with
//! hardened settings ([`policy`]). A compromised orchestrator can thus not start a privileged
//! container, mount the host, or touch anything else the engine runs.
#![forbid(unsafe_code)]

mod policy;
mod proxy;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Sluice engine filter: the orchestrator's only way to the Docker engine"
)]
struct Config {
    /// Socket this filter serves (the orchestrator's SLUICE_DOCKER_HOST).
    #[arg(
        long,
        env = "SLUICE_ENGINE_LISTEN",
        default_value = "/run/sluice-engine/docker.sock"
    )]
    listen: PathBuf,
    /// The engine's socket.
    #[arg(
        long,
        env = "SLUICE_ENGINE_SOCKET",
        default_value = "/var/run/docker.sock"
    )]
    engine: PathBuf,
    /// Installation whose containers may be touched (label `sluice.instance`, name prefix).
    #[arg(long, env = "SLUICE_INSTANCE", default_value = "sluice")]
    instance: String,
    /// Function network; its `-egress` twin is allowed too.
    #[arg(long, env = "SLUICE_NETWORK", default_value = "sluice")]
    network: String,
    /// Image prefix allowed on the host network (the MDF relay).
    #[arg(
        long,
        env = "SLUICE_ENGINE_HOST_NETWORK_IMAGES",
        default_value = "sluice/mdf:"
    )]
    host_network_images: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Exit 0 when the filter's socket answers a ping (for the compose healthcheck).
    Healthcheck,
}

async fn healthcheck(path: &std::path::Path) -> anyhow::Result<()> {
    let stream = UnixStream::connect(path).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get("/_ping")
        .header(hyper::header::HOST, "docker")
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "ping answered {}",
        resp.status()
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cfg = Config::parse();
    if let Some(Command::Healthcheck) = cfg.command {
        return healthcheck(&cfg.listen).await;
    }
    sluice_common::telemetry::init("engine-filter");
    let policy = policy::Policy {
        instance: cfg.instance.clone(),
        networks: vec![cfg.network.clone(), format!("{}-egress", cfg.network)],
        host_network_images: cfg
            .host_network_images
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        build_tag_prefix: "sluice/fn-".into(),
        upload_dir: sluice_common::secrets::MOUNT_DIR.into(),
    };
    // A socket left by a previous run is replaced.
    match std::fs::remove_file(&cfg.listen) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot replace {}: {e}", cfg.listen.display()),
    }
    let listener = UnixListener::bind(&cfg.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen.display()))?;
    // The socket sits in a volume only the orchestrator mounts; it runs as another user.
    std::fs::set_permissions(&cfg.listen, std::fs::Permissions::from_mode(0o666))?;
    tracing::info!(listen = %cfg.listen.display(), engine = %cfg.engine.display(),
        instance = %cfg.instance, network = %cfg.network, "engine filter listening");
    let filter = Arc::new(proxy::Filter::new(policy, cfg.engine.clone()));
    let stop = sluice_common::shutdown::token();
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let filter = filter.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| filter.clone().handle(req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "client connection ended");
            }
        });
    }
    tracing::info!(
        allowed = filter.allowed.load(std::sync::atomic::Ordering::Relaxed),
        denied = filter.denied.load(std::sync::atomic::Ordering::Relaxed),
        "engine filter stopping"
    );
    let _ = std::fs::remove_file(&cfg.listen);
    Ok(())
}
