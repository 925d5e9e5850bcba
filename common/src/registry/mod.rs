//! The function registry: `global-function-definition.yml` (and entries deployed as JSON),
//! parsed and validated into [`FunctionSpec`]s.
//!
//! The file is a top-level map, one entry per function; the key is the function's name
//! (a DNS label used in URLs, container labels and image names). The seed format keeps
//! working unchanged, including its spelling `programing_language` and a `name:` that
//! differs from the key (kept as [`FunctionSpec::display_name`]):
//!
//! ```yaml
//! hello:
//!   name: hello
//!   version: 0.1
//!   configuration:
//!     programing_language: python        # or programming_language (not both)
//!     base_function_file_name: handler.py
//!     function_folder: hello
//!     extra_dependencies: ""             # pip packages, space or comma separated (or a list)
//!     # mode: python | binary | http     # python → python; rust/binary → binary (default) or http
//!     # http_port: 8081                  # http mode only; 8080 belongs to the runtime
//!   scaling:                             # every field optional; defaults shown
//!     min_replicas: 0
//!     max_replicas: 10
//!     max_concurrency: 4                 # per-replica in-flight cap (runtime + router)
//!     target_concurrency: 4              # default = max_concurrency; 0 < t <= max_concurrency
//!     target_utilization: 0.7            # (0, 1]
//!     idle_timeout: 10s
//!     stable_window: 30s
//!     cold_start_timeout: 30s
//!     queue_size: 100                    # waiting requests per function when all are at cap
//!     queue_timeout: 30s
//!     warm_pool: 0                       # paused containers kept ready; <= max_replicas
//!   limits:
//!     timeout: 30s                       # per call
//!     memory: 128Mi                      # >= 16Mi
//!     cpus: 1.0                          # (0, 64]
//!     max_body: 6Mi
//!     pids: 128
//!   env:                                 # names [A-Za-z_][A-Za-z0-9_]*, never SLUICE_*
//!     GREETING: hi
//! ```
//!
//! Durations: `500ms`, `10s`, `2m`, `1h`, `1m30s` or bare seconds (`1.5`); sizes: `128Mi`,
//! `1Gi`, `512Ki`, `1M`/`1MB` (10^6), `1G`, docker-style `128m`/`1g` (1024-based) or bare
//! bytes. See [`units`].
//!
//! Validation never stops at the first problem: [`parse`] returns every error in the file,
//! in line order, each with file, line, column, function and dotted field path
//! (see [`RegistryError`] for the display format).

mod ceilings;
mod error;
mod fields;
mod files;
mod hash;
mod spec;
mod tree;
pub mod units;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use ceilings::Ceilings;
pub use error::{RegistryError, RegistryErrors};
pub use hash::folder_content_hash;
pub use spec::{
    Auth, Egress, FunctionSpec, Language, Limits, RuntimeMode, Scaling, Service, State,
    DEFAULT_HTTP_PORT, MAX_CPUS, MIN_MEMORY_BYTES, RUNTIME_PORT,
};
pub use units::{parse_duration, parse_size};

/// Names no function may have: they are first path segments of the gateway's own API.
pub const RESERVED_NAMES: &[&str] = &[
    "function",
    "async-function",
    "system",
    "healthz",
    "metrics",
    "ui",
    "activations",
];

/// File name of the registry at the repository root.
pub const DEFAULT_REGISTRY_FILE: &str = "global-function-definition.yml";

/// Every function of a valid registry, by name (the YAML key).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    /// Functions by name.
    pub functions: BTreeMap<String, FunctionSpec>,
}

impl Registry {
    /// The function called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&FunctionSpec> {
        self.functions.get(name)
    }

    /// Number of functions.
    pub fn len(&self) -> usize {
        self.functions.len()
    }

    /// True when the registry defines no function.
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }
}

/// Parses and validates registry text. `file` is only used in error messages.
/// `functions_dir` is where the `function_folder`s live; `None` skips the filesystem checks
/// (folder exists, base file exists, rust folders contain `Cargo.toml`).
/// On error, returns every problem found, sorted by position.
pub fn parse(
    text: &str,
    file: Option<&str>,
    functions_dir: Option<&Path>,
) -> Result<Registry, RegistryErrors> {
    parse_with(text, file, functions_dir, &Ceilings::default())
}

/// [`parse`] under the given platform ceilings.
pub fn parse_with(
    text: &str,
    file: Option<&str>,
    functions_dir: Option<&Path>,
    ceilings: &Ceilings,
) -> Result<Registry, RegistryErrors> {
    let (root, mut errors) = tree::load_yaml(text);
    let mut functions = BTreeMap::new();
    if let Some(root) = root {
        match &root.value {
            tree::Value::Map(entries) => {
                let mut keys = Vec::with_capacity(entries.len());
                let mut names = Vec::new();
                for entry in entries {
                    let before = errors.len();
                    validate::check_key(&mut errors, &entry.key, entry.key_pos);
                    let (spec, display) = validate::check_entry(
                        &mut errors,
                        &entry.key,
                        entry.key_pos,
                        &entry.value,
                        functions_dir,
                    );
                    keys.push((entry.key.clone(), entry.key_pos));
                    if let Some(display) = display {
                        names.push((entry.key.clone(), display));
                    }
                    if let (Some(spec), true) = (spec, errors.len() == before) {
                        functions.insert(entry.key.clone(), spec);
                    }
                }
                validate::check_unique_names(&mut errors, &keys, &names);
                validate::check_events_from_refs(&mut errors, entries, &keys, &functions);
                ceilings.check_file(&mut errors, entries, &functions);
            }
            tree::Value::Null => {}
            _ => errors.push(tree::error(
                root.pos,
                None,
                None,
                "the top level must be a map of function name → definition",
            )),
        }
    }
    finish(errors, file)?;
    Ok(Registry { functions })
}

/// Reads the registry file at `path` and parses it (errors name the file as given).
pub fn load(path: &Path, functions_dir: Option<&Path>) -> Result<Registry, RegistryErrors> {
    load_with(path, functions_dir, &Ceilings::default())
}

/// [`load`] under the given platform ceilings.
pub fn load_with(
    path: &Path,
    functions_dir: Option<&Path>,
    ceilings: &Ceilings,
) -> Result<Registry, RegistryErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_with(&text, Some(&file), functions_dir, ceilings),
        Err(e) => Err(RegistryErrors(vec![RegistryError {
            file: Some(file),
            line: 0,
            column: 0,
            function: None,
            field: None,
            message: format!("cannot read the registry file: {e}"),
        }])),
    }
}

/// Validates one entry given as JSON — the same fields as a YAML entry, with the function's
/// name (the YAML key) given separately — under the same rules and messages as [`parse`].
/// Errors carry no file and line/column 0. The cross-entry `name` uniqueness check is the
/// caller's job (it knows the other functions).
pub fn parse_entry_json(
    name: &str,
    value: &serde_json::Value,
    functions_dir: Option<&Path>,
) -> Result<FunctionSpec, RegistryErrors> {
    let mut errors = Vec::new();
    validate::check_key(&mut errors, name, tree::Pos::default());
    let spec = match tree::from_json(value) {
        Ok(node) => {
            validate::check_entry(
                &mut errors,
                name,
                tree::Pos::default(),
                &node,
                functions_dir,
            )
            .0
        }
        Err(mut e) => {
            e.function = Some(name.to_owned());
            errors.push(e);
            None
        }
    };
    finish(errors, None)?;
    // No error means check_entry produced a spec; be defensive anyway.
    spec.ok_or_else(|| {
        RegistryErrors(vec![tree::error(
            tree::Pos::default(),
            Some(name),
            None,
            "invalid function definition",
        )])
    })
}

/// Sorts errors by position, attaches the file name, and turns a non-empty list into `Err`.
fn finish(mut errors: Vec<RegistryError>, file: Option<&str>) -> Result<(), RegistryErrors> {
    if errors.is_empty() {
        return Ok(());
    }
    errors.sort_by_key(|e| (e.line, e.column));
    for e in &mut errors {
        e.file = file.map(str::to_owned);
    }
    Err(RegistryErrors(errors))
}
