//! The validated form of one registry entry ([`FunctionSpec`]) and its parts.
//!
//! Invariants (guaranteed for every spec produced by the parser, not re-checked on
//! deserialization from trusted storage):
//! * `name` is a DNS label and not a reserved path segment;
//! * `min_replicas <= max_replicas`, `warm_pool <= max_replicas`, `max_concurrency >= 1`,
//!   `0 < target_concurrency <= max_concurrency`, `0 < target_utilization <= 1`;
//! * every duration is a whole number of milliseconds (>= 1 ms), so the `*_ms` JSON fields
//!   round-trip exactly; every float has at most 6 decimals, so it round-trips through JSON;
//! * `mode` is allowed for `language` (Python → `python`; Rust/Binary → `binary` or `http`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Language a function is written in; decides how its image is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// `handler.py`-style Python function; `extra_dependencies` are pip packages.
    Python,
    /// A Cargo crate in the function folder (must contain `Cargo.toml`).
    Rust,
    /// A prebuilt executable or script in the function folder.
    Binary,
}

impl Language {
    /// Every supported language, in the order they are listed in messages.
    pub const ALL: [Language; 3] = [Language::Python, Language::Rust, Language::Binary];

    /// The spelling used in the registry file.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Rust => "rust",
            Language::Binary => "binary",
        }
    }

    /// Parses the registry spelling (ASCII case-insensitive).
    pub fn from_name(s: &str) -> Option<Language> {
        Language::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// The mode used when `configuration.mode` is absent.
    pub fn default_mode(self) -> RuntimeMode {
        match self {
            Language::Python => RuntimeMode::Python,
            Language::Rust | Language::Binary => RuntimeMode::Binary,
        }
    }

    /// Modes allowed for this language.
    pub fn allowed_modes(self) -> &'static [RuntimeMode] {
        match self {
            Language::Python => &[RuntimeMode::Python],
            Language::Rust | Language::Binary => &[RuntimeMode::Binary, RuntimeMode::Http],
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the in-container runtime invokes the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeMode {
    /// The runtime imports the Python handler and calls it per request.
    Python,
    /// The runtime runs the executable once per call (request on stdin, response on stdout).
    Binary,
    /// The function starts a long-lived HTTP server on `http_port`; the runtime proxies to it.
    Http,
}

impl RuntimeMode {
    /// Every mode, in the order they are listed in messages.
    pub const ALL: [RuntimeMode; 3] = [RuntimeMode::Python, RuntimeMode::Binary, RuntimeMode::Http];

    /// The spelling used in the registry file.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeMode::Python => "python",
            RuntimeMode::Binary => "binary",
            RuntimeMode::Http => "http",
        }
    }

    /// Parses the registry spelling (ASCII case-insensitive).
    pub fn from_name(s: &str) -> Option<RuntimeMode> {
        RuntimeMode::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for RuntimeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Default port an `http`-mode function listens on inside its container.
pub const DEFAULT_HTTP_PORT: u16 = 8081;
/// Port the in-container runtime (watchdog) itself listens on; functions may not use it.
pub const RUNTIME_PORT: u16 = 8080;
/// Smallest memory limit accepted (16 MiB).
pub const MIN_MEMORY_BYTES: u64 = 16 << 20;
/// Largest CPU limit accepted.
pub const MAX_CPUS: f64 = 64.0;

/// Autoscaling and queueing policy of one function (`scaling:` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    /// Replicas kept running even when idle (0 = scale to zero).
    pub min_replicas: u32,
    /// Upper bound on replicas (>= 1, >= `min_replicas`).
    pub max_replicas: u32,
    /// Per-replica in-flight cap enforced by the runtime and the router (>= 1).
    pub max_concurrency: u32,
    /// Autoscaler target of in-flight requests per replica (defaults to `max_concurrency`).
    pub target_concurrency: f64,
    /// Fraction of `target_concurrency` the autoscaler aims for, in (0, 1].
    pub target_utilization: f64,
    /// Idle time after which a replica above `min_replicas` is removed.
    #[serde(rename = "idle_timeout_ms", with = "millis")]
    pub idle_timeout: Duration,
    /// Window over which the autoscaler averages load.
    #[serde(rename = "stable_window_ms", with = "millis")]
    pub stable_window: Duration,
    /// How long a held request waits for a cold start before 503.
    #[serde(rename = "cold_start_timeout_ms", with = "millis")]
    pub cold_start_timeout: Duration,
    /// Requests that may wait per function when every replica is at its cap (then 429).
    pub queue_size: u32,
    /// How long a queued request waits before it is rejected.
    #[serde(rename = "queue_timeout_ms", with = "millis")]
    pub queue_timeout: Duration,
    /// Paused containers kept ready for fast cold starts (<= `max_replicas`).
    pub warm_pool: u32,
}

impl Default for Scaling {
    fn default() -> Self {
        Scaling {
            min_replicas: 0,
            max_replicas: 10,
            max_concurrency: 4,
            target_concurrency: 4.0,
            target_utilization: 0.7,
            idle_timeout: Duration::from_secs(10),
            stable_window: Duration::from_secs(30),
            cold_start_timeout: Duration::from_secs(30),
            queue_size: 100,
            queue_timeout: Duration::from_secs(30),
            warm_pool: 0,
        }
    }
}

/// Resource limits of each replica (`limits:` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Per-call timeout (then 504).
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
    /// Container memory limit in bytes (>= 16 MiB).
    pub memory_bytes: u64,
    /// CPU limit in cores, in (0, 64].
    pub cpus: f64,
    /// Largest request body accepted (then 413).
    pub max_body_bytes: u64,
    /// Container pids limit (>= 1).
    pub pids: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(30),
            memory_bytes: 128 << 20,
            cpus: 1.0,
            max_body_bytes: 6 << 20,
            pids: 128,
        }
    }
}

/// One validated function definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionSpec {
    /// The registry key: a DNS label used in URLs, labels and image names.
    pub name: String,
    /// The entry's `name:` field when present (the seed allowed it to differ from the key).
    pub display_name: Option<String>,
    /// The version exactly as written (`0.1`, `1.2.3`).
    pub version: String,
    /// Language of the function.
    pub language: Language,
    /// How the runtime invokes it.
    pub mode: RuntimeMode,
    /// Port of the function's own server in `http` mode (default 8081).
    pub http_port: u16,
    /// Main file, relative to the function folder (`handler.py`, `src/main.rs`).
    pub base_function_file_name: String,
    /// Folder relative to the functions dir (no `..`, not absolute).
    pub function_folder: String,
    /// Extra pip packages (Python only), in the order written.
    pub extra_dependencies: Vec<String>,
    /// Scaling policy.
    pub scaling: Scaling,
    /// Resource limits.
    pub limits: Limits,
    /// Environment variables given to the function (never `SLUICE_*`).
    pub env: BTreeMap<String, String>,
    /// State the platform provides (`state: redis`: a Redis user of its own, limited to the
    /// function's key prefix; see [`crate::state`]).
    #[serde(default)]
    pub state: State,
    /// Functions whose event stream (`fn:<name>:events`) this function may read, through a
    /// read-only grant on its Redis user (`events_from:`; needs `state: redis`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events_from: Vec<String>,
    /// Platform services the function uses (`uses: [mdf]`): their addresses and credentials
    /// go into its containers' environment (see [`crate::mdf`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<Service>,
    /// Who may call it (`auth: key`: callers need an API key with the `invoke` scope; public
    /// by default, as in OpenFaaS).
    #[serde(default, skip_serializing_if = "Auth::is_public")]
    pub auth: Auth,
    /// Where its containers may connect beyond the platform (`egress: internet`: a second
    /// network with a route out; `none`, the default: the function network only, which has
    /// no route out of the machine).
    #[serde(default, skip_serializing_if = "Egress::is_none")]
    pub egress: Egress,
    /// Secrets its containers get, each as a read-only file under
    /// [`crate::secrets::MOUNT_DIR`] (`secrets: [name, ...]`; created through
    /// `/system/secrets`, never written in the registry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

/// Outbound connections a function's containers may make.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Egress {
    /// Only the platform's function network (the default).
    #[default]
    None,
    /// Also anywhere the machine can route to.
    Internet,
}

impl Egress {
    pub const ALL: [Egress; 2] = [Egress::None, Egress::Internet];

    pub fn as_str(self) -> &'static str {
        match self {
            Egress::None => "none",
            Egress::Internet => "internet",
        }
    }

    pub fn from_name(s: &str) -> Option<Egress> {
        Egress::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn is_none(&self) -> bool {
        *self == Egress::None
    }
}

/// Who may call a function through the gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    /// Anyone who reaches the gateway (the default).
    #[default]
    Public,
    /// Callers presenting an API key with the `invoke` (or `admin`) scope.
    Key,
}

impl Auth {
    pub const ALL: [Auth; 2] = [Auth::Public, Auth::Key];

    pub fn as_str(self) -> &'static str {
        match self {
            Auth::Public => "public",
            Auth::Key => "key",
        }
    }

    pub fn from_name(s: &str) -> Option<Auth> {
        Auth::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn is_public(&self) -> bool {
        *self == Auth::Public
    }
}

/// A platform service a function may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// The MDF relay pool (control API URLs and token).
    Mdf,
}

impl Service {
    pub const ALL: [Service; 1] = [Service::Mdf];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Mdf => "mdf",
        }
    }

    pub fn from_name(s: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// What state a function gets from the platform.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// None (the default).
    #[default]
    None,
    /// Its own Redis ACL user, restricted to its key prefix and channels.
    Redis,
}

impl State {
    /// Every value, in the order they are listed in messages.
    pub const ALL: [State; 2] = [State::None, State::Redis];

    pub fn as_str(self) -> &'static str {
        match self {
            State::None => "none",
            State::Redis => "redis",
        }
    }

    pub fn from_name(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl FunctionSpec {
    /// Hex sha256 of everything that affects the container (not the code): name, display
    /// name, version, language, mode, http port, base file, folder, extra dependencies, all
    /// `limits`, `env`, `state` and `uses` (left out when empty, so older hashes hold) and `scaling.max_concurrency` (the runtime enforces it). The other
    /// scaling fields only steer the autoscaler/router, so changing them does not change the
    /// hash (and must not replace running containers).
    pub fn spec_hash(&self) -> String {
        #[derive(Serialize)]
        struct ContainerView<'a> {
            scheme: &'static str,
            name: &'a str,
            display_name: &'a Option<String>,
            version: &'a str,
            language: Language,
            mode: RuntimeMode,
            http_port: u16,
            base_function_file_name: &'a str,
            function_folder: &'a str,
            extra_dependencies: &'a [String],
            max_concurrency: u32,
            limits: &'a Limits,
            env: &'a BTreeMap<String, String>,
            #[serde(skip_serializing_if = "is_no_state")]
            state: State,
            #[serde(skip_serializing_if = "<[Service]>::is_empty")]
            uses: &'a [Service],
            #[serde(skip_serializing_if = "Egress::is_none")]
            egress: Egress,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            secrets: &'a [String],
        }
        fn is_no_state(s: &State) -> bool {
            *s == State::None
        }
        let view = ContainerView {
            scheme: "sluice-spec-v1",
            name: &self.name,
            display_name: &self.display_name,
            version: &self.version,
            language: self.language,
            mode: self.mode,
            http_port: self.http_port,
            base_function_file_name: &self.base_function_file_name,
            function_folder: &self.function_folder,
            extra_dependencies: &self.extra_dependencies,
            max_concurrency: self.scaling.max_concurrency,
            limits: &self.limits,
            env: &self.env,
            state: self.state,
            uses: &self.uses,
            egress: self.egress,
            secrets: &self.secrets,
        };
        // Serializing plain structs, strings, numbers and a BTreeMap cannot fail; fall back to
        // the Debug rendering rather than panic if it ever did.
        let bytes = serde_json::to_vec(&view).unwrap_or_else(|_| format!("{self:?}").into_bytes());
        hex::encode(Sha256::digest(&bytes))
    }

    /// Absolute path of the function folder given the functions dir (made absolute against
    /// the current directory when `functions_dir` is relative).
    pub fn folder_path(&self, functions_dir: &Path) -> PathBuf {
        let joined = functions_dir.join(&self.function_folder);
        std::path::absolute(&joined).unwrap_or(joined)
    }

    /// Absolute path of the base file given the functions dir.
    pub fn base_file_path(&self, functions_dir: &Path) -> PathBuf {
        self.folder_path(functions_dir)
            .join(&self.base_function_file_name)
    }
}

/// Serde helper: a [`Duration`] as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
