//! How a replica container is created: labels, environment, network and the hardening every
//! function container gets (BRIEF.md: non-root, read-only root filesystem with a tmpfs /tmp,
//! all capabilities dropped, no-new-privileges, memory without swap, CPU and pids limits,
//! never the Docker socket).

use std::collections::HashMap;

use bollard::body_full;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, NetworkConnectRequest,
    NetworkingConfig, ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, UploadToContainerOptionsBuilder};
use sluice_common::registry::{Egress, FunctionSpec, RuntimeMode};
use sluice_common::secrets::MOUNT_DIR;
use sluice_common::{LABEL_FUNCTION, LABEL_MANAGED};

use super::{Engine, LABEL_INSTANCE, LABEL_SPEC_HASH};
use crate::error::{Error, ErrorKind, Result};
use crate::secrets::Opened;

/// uid:gid function code runs as (created in sluice/base).
pub const FUNCTION_USER: &str = "10001:10001";
/// Port the in-container runtime listens on.
pub const RUNTIME_PORT: u16 = 8080;
/// Size of the writable /tmp of a function container.
const TMPFS: &str = "rw,noexec,nosuid,nodev,size=64m";

/// Seconds Docker waits between SIGTERM and SIGKILL when stopping a replica: the runtime
/// lets in-flight calls finish (up to the call timeout) before it exits.
pub fn stop_grace_secs(spec: &FunctionSpec) -> i32 {
    (spec.limits.timeout.as_secs() as i32).saturating_add(5)
}

/// The runtime's environment for `spec` followed by the function's own `env:`.
pub fn runtime_env(spec: &FunctionSpec) -> Vec<String> {
    let mode = match spec.mode {
        RuntimeMode::Python => "python",
        RuntimeMode::Binary => "binary",
        RuntimeMode::Http => "http",
    };
    let mut env = vec![
        format!("SLUICE_FUNCTION={}", spec.name),
        format!("SLUICE_MODE={mode}"),
        format!("SLUICE_MAX_INFLIGHT={}", spec.scaling.max_concurrency),
        format!("SLUICE_TIMEOUT_MS={}", spec.limits.timeout.as_millis()),
        format!("SLUICE_MAX_BODY_BYTES={}", spec.limits.max_body_bytes),
        format!(
            "SLUICE_GRACE_MS={}",
            spec.limits.timeout.as_millis().saturating_add(2000)
        ),
        format!("SLUICE_HTTP_PORT={}", spec.http_port),
        "SLUICE_LOG_FORMAT=json".to_string(),
    ];
    env.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
    env
}

/// Open files a function container may hold (soft = hard): sockets of its in-flight calls,
/// its store and its files, with room to spare; a leak stops at this and not at the host's.
pub const FUNCTION_NOFILE: i64 = 4096;

/// `want`, lowered to the hard open-files limit this process got from the engine: a container
/// may not be given more than the engine itself has (runc refuses to start it), and some
/// engines run with less than a bare host's.
fn within_engine_limit(want: i64) -> i64 {
    static HARD: std::sync::OnceLock<Option<i64>> = std::sync::OnceLock::new();
    let hard = *HARD.get_or_init(|| {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        hard_nofile(&limits)
    });
    hard.map_or(want, |h| want.min(h))
}

/// The hard "Max open files" of a `/proc/<pid>/limits` text (`None`: unlimited or unknown).
fn hard_nofile(limits: &str) -> Option<i64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let _soft = fields.next()?;
    fields.next()?.parse().ok()
}

/// Largest log file Docker keeps per container, and how many rotated ones: a chatty or
/// looping function cannot fill the disk.
const LOG_MAX_SIZE: &str = "10m";
const LOG_MAX_FILES: &str = "3";

/// What every container the orchestrator starts gets: `network_mode`, memory without swap,
/// a pids limit, an open-files limit (`nofile`, lowered to what the engine allows), rotated
/// logs of bounded size, a read-only root filesystem, no capabilities, `no-new-privileges`, an
/// init process, and no restart by Docker (the orchestrator decides).
pub fn hardened(network_mode: &str, memory: i64, pids: i64, nofile: i64) -> HostConfig {
    let nofile = within_engine_limit(nofile);
    HostConfig {
        memory: Some(memory),
        memory_swap: Some(memory),
        pids_limit: Some(pids),
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("nofile".to_string()),
            soft: Some(nofile),
            hard: Some(nofile),
        }]),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".to_string()),
            config: Some(HashMap::from([
                ("max-size".to_string(), LOG_MAX_SIZE.to_string()),
                ("max-file".to_string(), LOG_MAX_FILES.to_string()),
            ])),
        }),
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".to_string()]),
        security_opt: Some(vec!["no-new-privileges:true".to_string()]),
        init: Some(true),
        network_mode: Some(network_mode.to_string()),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        ..Default::default()
    }
}

impl Engine {
    /// Creates and starts one replica of `spec` from `image` (an image id, so that a rolling
    /// update never changes what an existing replica runs). `name` comes from
    /// [`Engine::replica_name`]; `state_env` is the function's state credentials, if any;
    /// `secrets` become read-only files (see [`secret_files`]) before the container starts.
    /// Returns the container id.
    pub async fn launch(
        &self,
        spec: &FunctionSpec,
        name: &str,
        image: &str,
        spec_hash: &str,
        state_env: Vec<String>,
        secrets: &[Opened],
    ) -> Result<String> {
        let labels = HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_FUNCTION.to_string(), spec.name.clone()),
            (LABEL_INSTANCE.to_string(), self.instance.clone()),
            (LABEL_SPEC_HASH.to_string(), spec_hash.to_string()),
        ]);
        let memory = i64::try_from(spec.limits.memory_bytes).unwrap_or(i64::MAX);
        let host_config = HostConfig {
            nano_cpus: Some((spec.limits.cpus * 1e9) as i64),
            tmpfs: Some(HashMap::from([("/tmp".to_string(), TMPFS.to_string())])),
            ..hardened(
                &self.network,
                memory,
                i64::from(spec.limits.pids),
                FUNCTION_NOFILE,
            )
        };
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            user: Some(FUNCTION_USER.to_string()),
            env: Some({
                let mut env = runtime_env(spec);
                env.extend(state_env);
                env
            }),
            labels: Some(labels),
            hostname: Some(name.to_string()),
            stop_signal: Some("SIGTERM".to_string()),
            stop_timeout: Some(i64::from(stop_grace_secs(spec))),
            host_config: Some(host_config),
            // The secrets folder is a volume of this container alone: written before the
            // start (the root filesystem is read-only), removed with the container.
            volumes: (!secrets.is_empty()).then(|| vec![MOUNT_DIR.to_string()]),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    self.network.clone(),
                    EndpointSettings::default(),
                )])),
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default().name(name).build();
        let created = self
            .client()
            .create_container(Some(opts), body)
            .await
            .map_err(|e| {
                Error::docker(format!("cannot create a container for {}", spec.name), e)
            })?;
        let started = async {
            if !secrets.is_empty() {
                // Without copyUIDGID the engine keeps the archive's owners (root, the
                // function's group); with it, it would give the files to the function's user.
                let opts = UploadToContainerOptionsBuilder::default()
                    .path(MOUNT_DIR)
                    .build();
                self.client()
                    .upload_to_container(&created.id, Some(opts), body_full(secret_files(secrets)?))
                    .await
                    .map_err(|e| {
                        Error::docker(
                            format!("cannot give a container of {} its secrets", spec.name),
                            e,
                        )
                    })?;
            }
            if spec.egress == Egress::Internet {
                self.ensure_egress_network().await?;
                let req = NetworkConnectRequest {
                    container: created.id.clone(),
                    ..Default::default()
                };
                self.client()
                    .connect_network(&self.egress_network(), req)
                    .await
                    .map_err(|e| {
                        Error::docker(
                            format!(
                                "cannot connect a container of {} to the egress network",
                                spec.name
                            ),
                            e,
                        )
                    })?;
            }
            self.client()
                .start_container(&created.id, None)
                .await
                .map_err(|e| {
                    Error::docker(format!("cannot start a container for {}", spec.name), e)
                })
        };
        if let Err(e) = started.await {
            // Never leave a created-but-not-started container behind.
            let _ = self.remove(&created.id).await;
            return Err(e);
        }
        Ok(created.id)
    }

    /// A fresh container name for a replica of `function`: `<instance>-<function>-<random>`.
    pub fn replica_name(&self, function: &str) -> String {
        let suffix: u32 = rand::random();
        format!("{}-{}-{:08x}", self.instance, function, suffix)
    }
}

/// The tar archive of a function's secrets: one file per secret, owned by root and readable
/// by the function's group only (0440), in a folder the function cannot write to. The
/// function reads them; it can neither change nor add any.
fn secret_files(secrets: &[Opened]) -> Result<bytes::Bytes> {
    let gid: u64 = FUNCTION_USER
        .rsplit(':')
        .next()
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    let mut tar = tar::Builder::new(Vec::new());
    for s in secrets {
        let mut header = tar::Header::new_gnu();
        header.set_size(s.value.len() as u64);
        header.set_mode(0o440);
        header.set_uid(0);
        header.set_gid(gid);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, &s.name, &s.value[..])
            .map_err(|e| {
                Error::new(
                    ErrorKind::Secret,
                    format!("cannot pack secret `{}`", s.name),
                )
                .with_source(e)
            })?;
    }
    tar.into_inner()
        .map(bytes::Bytes::from)
        .map_err(|e| Error::new(ErrorKind::Secret, "cannot pack the secrets").with_source(e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_hard_open_files_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             unlimited            unlimited            processes \n\
                    Max open files            1024                 20000                files     \n";
        assert_eq!(super::hard_nofile(text), Some(20000));
        let unlimited = text.replace("20000", "unlimited");
        assert_eq!(super::hard_nofile(&unlimited), None);
        assert_eq!(super::hard_nofile(""), None);
        assert!(super::within_engine_limit(64) <= 64);
    }

    #[test]
    fn secrets_are_packed_root_owned_and_group_readable_only() {
        let opened = vec![crate::secrets::Opened {
            name: "db-password".into(),
            value: zeroize::Zeroizing::new(b"hunter2".to_vec()),
        }];
        let bytes = super::secret_files(&opened).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut entries = archive.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        assert_eq!(e.path().unwrap().to_str(), Some("db-password"));
        assert_eq!(e.header().mode().unwrap(), 0o440);
        assert_eq!(e.header().uid().unwrap(), 0);
        assert_eq!(e.header().gid().unwrap(), 10001);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut e, &mut text).unwrap();
        assert_eq!(text, "hunter2");
        assert!(entries.next().is_none());
    }
}
