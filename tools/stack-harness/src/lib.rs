//! The whole platform as users run it: `docker-compose.yml` with the images `make images`
//! built, in its own compose project, network, instance and gateway port, with a registry
//! and function folders of the test's own. Torn down (function containers included) on drop.
#![forbid(unsafe_code)]

pub mod load;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
pub use sluice_common::testing::{copy_dir, docker, workspace_root as repo_root};
use sluice_common::testing::{free_port, wait_for};

/// A client that sends basic auth as `admin` with `password` on every request.
pub fn admin_client(password: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        sluice_common::auth::basic(sluice_common::auth::ADMIN_USER, password)
            .parse()
            .expect("header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// `docker compose` when the v2 plugin is there, else `docker-compose`.
fn compose_cmd() -> Vec<String> {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if v2 {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

pub struct ComposeStack {
    pub autoscale: bool,
    /// The MDF relay pool is on (off by default: stacks that need no relay run none).
    pub mdf: bool,
    /// First RTP port of the stack's MDF slot 0 (slots are 200 ports apart).
    pub mdf_port_base: u16,
    pub project: String,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The sip-proxy's SIP port and admin port on 127.0.0.1 (host network).
    pub sip_port: u16,
    pub sip_admin_port: u16,
    pub network: String,
    /// A client with no credentials (what a function's caller uses).
    pub http: reqwest::Client,
    /// A client sending basic auth as `admin` (for `/system/*`).
    pub admin: reqwest::Client,
    pub admin_password: String,
    /// The orchestrator's user: the owner of `dir`, as `make up` runs it.
    pub uid: u32,
}

impl ComposeStack {
    /// Starts the stack with `registry` as its registry file and the repo's example functions.
    pub async fn up(tag: &str, registry: &str) -> ComposeStack {
        Self::up_with(tag, registry, true).await
    }

    /// `autoscale: false` leaves replica counts to the API and wake-ups only.
    pub async fn up_with(tag: &str, registry: &str, autoscale: bool) -> ComposeStack {
        Self::start(tag, registry, autoscale, false).await
    }

    /// With the MDF relay pool (instances on the host network, on ports of their own).
    pub async fn up_with_mdf(tag: &str, registry: &str) -> ComposeStack {
        Self::start(tag, registry, true, true).await
    }

    async fn start(tag: &str, registry: &str, autoscale: bool, mdf: bool) -> ComposeStack {
        let dir = tempfile::tempdir().expect("tempdir");
        // Every example function folder of the repo (hello, sleep, deps, echo, fast, ...).
        let fns = dir.path().join("faas-runtime/functions");
        let src = repo_root().join("faas-runtime/functions");
        for e in std::fs::read_dir(&src).expect("read faas-runtime/functions") {
            let e = e.expect("entry");
            if e.path().is_dir() {
                copy_dir(&e.path(), &fns.join(e.file_name()));
            }
        }
        // Test-only fixtures (orchestrator/tests/functions/*), e.g. the state probe.
        let fixtures = repo_root().join("orchestrator/tests/functions");
        if let Ok(entries) = std::fs::read_dir(&fixtures) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    copy_dir(&e.path(), &fns.join(e.file_name()));
                }
            }
        }
        std::fs::write(dir.path().join("global-function-definition.yml"), registry)
            .expect("registry");
        // The admin password, where `make up` puts it (SLUICE_SECRETS_DIR points here).
        let admin_password = format!("test-{:032x}", rand::random::<u128>());
        std::fs::create_dir_all(dir.path().join("secrets")).expect("secrets dir");
        std::fs::write(
            dir.path().join("secrets/admin-password"),
            format!("{admin_password}\n"),
        )
        .expect("admin password");
        // ...and the secrets key (64 hex digits), as `make up` makes it.
        std::fs::write(
            dir.path().join("secrets/secrets-key"),
            format!(
                "{:032x}{:032x}\n",
                rand::random::<u128>(),
                rand::random::<u128>()
            ),
        )
        .expect("secrets key");
        // As `make up`: the orchestrator runs as the folder's owner, or as 10001 (which
        // then gets the folder) when that is root.
        let uid = {
            use std::os::unix::fs::MetadataExt;
            let owner = std::fs::metadata(dir.path()).expect("stack dir").uid();
            if owner == 0 {
                let out = Command::new("chown")
                    .arg("-R")
                    .arg("10001:10001")
                    .arg(dir.path())
                    .output()
                    .expect("chown");
                assert!(out.status.success(), "chown: {out:?}");
                10001
            } else {
                owner
            }
        };
        let suffix: u32 = rand::random();
        let project = format!("sluicet{tag}{:06x}", suffix & 0xffffff);
        // A caller that may be killed (scripts/bench.sh under `timeout`) learns which projects
        // to clean up: one name per line, written before anything is created.
        if let Some(path) = std::env::var_os("SLUICE_STACK_PROJECTS_FILE") {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open SLUICE_STACK_PROJECTS_FILE");
            writeln!(f, "{project}").expect("write SLUICE_STACK_PROJECTS_FILE");
        }
        let s = ComposeStack {
            autoscale,
            mdf,
            // Below the ephemeral range, a different 400-port block per stack.
            mdf_port_base: 22000 + 400 * (suffix % 16) as u16,
            network: format!("{project}-net"),
            port: free_port(),
            sip_port: free_port(),
            sip_admin_port: free_port(),
            project,
            dir,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .expect("client"),
            admin: admin_client(&admin_password),
            admin_password,
            uid,
        };
        docker(&[
            "network",
            "create",
            "--internal",
            "--label",
            "sluice.managed=true",
            &s.network,
        ]);
        let out = s.compose(&["up", "-d"]);
        assert!(
            out.status.success(),
            "compose up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Healthy when the gateway answers and the orchestrator (through it) lists functions.
        let url = s.url("/system/functions");
        let http = s.admin.clone();
        wait_for("the stack to be healthy", Duration::from_secs(120), || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http.get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        s
    }

    pub fn compose(&self, args: &[&str]) -> std::process::Output {
        self.compose_with(args, &[])
    }

    /// [`ComposeStack::compose`] with extra environment for compose's `${...}` settings.
    pub fn compose_with(&self, args: &[&str], env: &[(&str, String)]) -> std::process::Output {
        let cmd = compose_cmd();
        Command::new(&cmd[0])
            .args(&cmd[1..])
            .args(["-p", &self.project, "-f"])
            .arg(repo_root().join("docker-compose.yml"))
            .arg("--project-directory")
            .arg(repo_root())
            .args(args)
            .env("SLUICE_PROJECT_DIR", self.dir.path())
            .env("SLUICE_SECRETS_DIR", self.dir.path().join("secrets"))
            .env("SLUICE_UID", self.uid.to_string())
            .env("SLUICE_GID", self.uid.to_string())
            .env("SLUICE_GATEWAY_PORT", self.port.to_string())
            .env("SLUICE_NETWORK", &self.network)
            .env("SLUICE_INSTANCE", &self.project)
            .env("SLUICE_AUTOSCALE", self.autoscale.to_string())
            .env("SLUICE_SIP_LISTEN", format!("127.0.0.1:{}", self.sip_port))
            .env(
                "SLUICE_SIP_ADMIN_LISTEN",
                format!("127.0.0.1:{}", self.sip_admin_port),
            )
            .env("SLUICE_MDF_POOL_MAX", if self.mdf { "2" } else { "0" })
            .env("SLUICE_MDF_PORT_BASE", self.mdf_port_base.to_string())
            .env("SLUICE_MDF_PORTS_PER_INSTANCE", "200")
            // Small instances and a short quiet time, so the pool's scaling shows in a test.
            .env("SLUICE_MDF_MAX_SESSIONS", "4")
            .env("SLUICE_MDF_SCALE_DOWN_AFTER", "2s")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("compose")
    }

    /// Container id of a compose service.
    pub fn service(&self, name: &str) -> String {
        let out = self.compose(&["ps", "-q", name]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn registry_path(&self) -> PathBuf {
        self.dir.path().join("global-function-definition.yml")
    }

    pub async fn function(&self, name: &str) -> Value {
        match self
            .admin
            .get(self.url(&format!("/system/function/{name}")))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    pub async fn wait_built(&self, name: &str) {
        self.wait_built_within(name, Duration::from_secs(300)).await
    }

    /// [`Self::wait_built`] with its own deadline (a Rust function with dependencies compiles
    /// them in its image build: minutes on a fresh engine).
    pub async fn wait_built_within(&self, name: &str, deadline: Duration) {
        wait_for(&format!("{name} built"), deadline, || async {
            let f = self.function(name).await;
            match f["build"]["state"].as_str() {
                Some("ready") => Some(()),
                Some("failed") => panic!("build of {name} failed: {}", f["build"]["error"]),
                _ => None,
            }
        })
        .await;
    }

    /// Ids of this stack's function containers (`all`: in any state).
    pub fn containers(&self, function: &str, all: bool) -> Vec<String> {
        let f1 = format!("label=sluice.instance={}", self.project);
        let f2 = format!("label=sluice.function={function}");
        let mut args = vec!["ps", "-q", "--no-trunc", "--filter", &f1, "--filter", &f2];
        if all {
            args.push("-a");
        }
        let mut v: Vec<String> = docker(&args)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect();
        v.sort();
        v
    }

    pub async fn scale(&self, name: &str, n: u32) -> u16 {
        self.admin
            .post(self.url(&format!("/system/scale-function/{name}")))
            .json(&serde_json::json!({ "serviceName": name, "replicas": n }))
            .send()
            .await
            .expect("scale")
            .status()
            .as_u16()
    }

    pub async fn wait_ready(&self, name: &str, n: u64) -> Value {
        wait_for(
            &format!("{name}: {n} ready"),
            Duration::from_secs(120),
            || async {
                let f = self.function(name).await;
                (f["availableReplicas"].as_u64()? == n
                    && f["replicaList"].as_array()?.len() as u64 == n)
                    .then_some(f)
            },
        )
        .await
    }

    /// The logs of every service (for failure messages).
    pub fn logs(&self) -> String {
        let out = self.compose(&["logs", "--no-color", "--tail=80"]);
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for ComposeStack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- compose logs ({}) ----\n{}", self.project, self.logs());
        }
        let _ = self.compose(&["down", "-v", "--remove-orphans", "-t", "5"]);
        let f = format!("label=sluice.instance={}", self.project);
        for id in docker(&["ps", "-aq", "--filter", &f])
            .lines()
            .filter(|l| !l.is_empty())
        {
            docker(&["rm", "-f", id]);
        }
        docker(&["network", "rm", &self.network]);
        docker(&["network", "rm", &format!("{}-egress", self.network)]);
    }
}
