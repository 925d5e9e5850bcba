//! A real orchestrator process against the real Docker engine and a real redis-server, in its
//! own instance (labels, container names, Redis keys) and network, cleaned up on drop.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
pub use sluice_common::testing::{copy_dir, docker, workspace_root as repo_root};
use sluice_common::testing::{free_port, wait_for, ChildGuard, RedisServer};

pub const LONG: Duration = Duration::from_secs(180);

pub struct Stack {
    pub redis: RedisServer,
    pub orch: Option<ChildGuard>,
    pub port: u16,
    pub instance: String,
    pub network: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl Stack {
    /// A temp dir with `registry` as its registry file and the repo's example functions
    /// (plus any extra folders the test writes) in `functions/`.
    pub fn new(tag: &str, registry: &str) -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        let fns = dir.path().join("functions");
        for f in ["hello", "sleep", "deps", "echo"] {
            copy_dir(
                &repo_root().join("faas-runtime/functions").join(f),
                &fns.join(f),
            );
        }
        std::fs::write(dir.path().join("registry.yml"), registry).expect("write registry");
        let suffix: u32 = rand::random();
        let instance = format!("t{tag}{:06x}", suffix & 0xffffff);
        let password = format!("test-{:032x}", rand::random::<u128>());
        std::fs::write(dir.path().join("admin-password"), format!("{password}\n"))
            .expect("write admin password");
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            sluice_common::auth::basic(sluice_common::auth::ADMIN_USER, &password)
                .parse()
                .expect("header"),
        );
        Stack {
            redis: RedisServer::start(),
            orch: None,
            port: free_port(),
            network: format!("{instance}-net"),
            instance,
            dir,
            // Basic auth as `admin` on every call (this client only talks to the API).
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .expect("client"),
        }
    }

    pub fn functions_dir(&self) -> PathBuf {
        self.dir.path().join("functions")
    }

    pub fn registry_path(&self) -> PathBuf {
        self.dir.path().join("registry.yml")
    }

    pub fn api(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn start_orchestrator(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
            .env("SLUICE_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("SLUICE_REGISTRY", self.registry_path())
            .env(
                "SLUICE_ADMIN_PASSWORD_FILE",
                self.dir.path().join("admin-password"),
            )
            .env("SLUICE_FUNCTIONS_DIR", self.functions_dir())
            .env("SLUICE_REDIS_URL", self.redis.url())
            .env("SLUICE_NETWORK", &self.network)
            .env("SLUICE_INSTANCE", &self.instance)
            .env("SLUICE_RESYNC_INTERVAL", "2s")
            .env("SLUICE_MAX_BACKOFF", "8s")
            .env("SLUICE_AUTOSCALE", "false")
            .env("SLUICE_LOG", "info,orchestrator=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start orchestrator");
        self.orch = Some(ChildGuard(Some(child)));
        let url = self.api("/healthz");
        let http = self.http.clone();
        wait_for("orchestrator /healthz", Duration::from_secs(30), || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http.get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
    }

    /// SIGTERM to the orchestrator; returns whether it exited cleanly.
    pub fn stop_orchestrator(&mut self) -> bool {
        let mut g = self.orch.take().expect("orchestrator running");
        g.terminate().success()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.api(path)).send().await.expect("GET");
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn function(&self, name: &str) -> Value {
        self.get(&format!("/system/function/{name}")).await.1
    }

    pub async fn scale(&self, name: &str, n: u32) -> u16 {
        self.http
            .post(self.api(&format!("/system/scale-function/{name}")))
            .json(&json!({ "serviceName": name, "replicas": n }))
            .send()
            .await
            .expect("scale")
            .status()
            .as_u16()
    }

    /// Waits until `name` has exactly `n` ready replicas and nothing starting or stopping.
    pub async fn wait_ready(&self, name: &str, n: u64, timeout: Duration) -> Value {
        wait_for(
            &format!("{name}: {n} ready replicas"),
            timeout,
            || async move {
                let f = self.function(name).await;
                let ready = f["availableReplicas"].as_u64()?;
                let list = f["replicaList"].as_array()?;
                (ready == n && list.len() as u64 == n).then_some(f)
            },
        )
        .await
    }

    /// Ids of this instance's containers (`all`: in any state).
    pub fn containers(&self, function: &str, all: bool) -> Vec<String> {
        let mut args = vec!["ps", "-q", "--no-trunc"];
        if all {
            args.push("-a");
        }
        let f1 = format!("label=sluice.instance={}", self.instance);
        let f2 = format!("label=sluice.function={function}");
        args.extend(["--filter", &f1, "--filter", &f2]);
        let mut ids: Vec<String> = docker(&args)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect();
        ids.sort();
        ids
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.orch.take();
        let f = format!("label=sluice.instance={}", self.instance);
        let ids = docker(&["ps", "-aq", "--filter", &f]);
        for id in ids.lines().filter(|l| !l.is_empty()) {
            docker(&["rm", "-f", id]);
        }
        docker(&["network", "rm", &self.network]);
        docker(&["network", "rm", &format!("{}-egress", self.network)]);
    }
}

/// The runtime token of replica `id` (its runtime answers nothing without it; the platform's
/// routers send it, and so do these tests, which call replicas directly).
pub fn runtime_token(id: &str) -> String {
    let prefix = format!("{}=", sluice_common::runtime::ENV_TOKEN);
    let v: Value = serde_json::from_str(&sluice_common::testing::docker(&["inspect", id]))
        .expect("docker inspect JSON");
    v[0]["Config"]["Env"]
        .as_array()
        .and_then(|env| {
            env.iter()
                .filter_map(Value::as_str)
                .find_map(|e| e.strip_prefix(&prefix))
        })
        .expect("the replica has a runtime token")
        .to_string()
}

/// Replica ids from a function JSON.
pub fn replica_ids(f: &Value) -> Vec<String> {
    let mut ids: Vec<String> = f["replicaList"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}
