//! Keeps the running functions in line with the registry file: watches the file (and the
//! function folders), re-parses on change, and applies the difference. A file with errors is
//! rejected as a whole — every error is logged — and the last good registry stays in force.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};
use serde::Serialize;
use sluice_common::registry::{self, folder_content_hash, FunctionSpec, Registry};
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

use crate::functions::Supervisor;
use crate::state::Source;

/// Outcome of the latest reload, for `GET /system/registry`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RegistryStatus {
    pub file: String,
    /// Functions in force from the file.
    pub functions: Vec<String>,
    pub loaded_unix_ms: u64,
    /// Errors of the latest attempt when it was rejected (the previous registry stays in force).
    pub errors: Vec<String>,
}

pub struct Reloader {
    sup: Arc<Supervisor>,
    path: PathBuf,
    functions_dir: PathBuf,
    /// Per file function: (spec hash, folder content hash) last applied.
    applied: Mutex<BTreeMap<String, (String, String)>>,
    pub status: Mutex<RegistryStatus>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Reloader {
    pub fn new(sup: Arc<Supervisor>, path: PathBuf, functions_dir: PathBuf) -> Arc<Self> {
        Arc::new(Reloader {
            sup,
            status: Mutex::new(RegistryStatus {
                file: path.display().to_string(),
                ..Default::default()
            }),
            path,
            functions_dir,
            applied: Mutex::new(BTreeMap::new()),
        })
    }

    /// Re-reads the file and applies it. Returns the error lines when it was rejected.
    pub async fn reload(&self) -> Result<(), Vec<String>> {
        let parsed = {
            let path = self.path.clone();
            let dir = self.functions_dir.clone();
            let ceilings = self.sup.ctx().ceilings;
            tokio::task::spawn_blocking(move || {
                registry::load_with(&path, Some(&dir), &ceilings)
                    .map_err(|errs| errs.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())
            })
            .await
            .unwrap_or_else(|e| Err(vec![format!("registry parser task failed: {e}")]))
        };
        let reg = match parsed {
            Ok(r) => r,
            Err(errors) => {
                for e in &errors {
                    tracing::error!(file = %self.path.display(), error = %e, "registry rejected; keeping the last good one");
                }
                self.status.lock().await.errors = errors.clone();
                return Err(errors);
            }
        };
        self.apply(reg).await;
        Ok(())
    }

    /// Applies a parsed registry: adds, updates (when the definition or the code changed) and
    /// removes file functions. API-deployed functions are left alone unless the file now
    /// defines the same name, in which case the file wins.
    pub async fn apply(&self, reg: Registry) {
        let known = self.sup.sources().await;
        let mut applied = self.applied.lock().await;
        let mut in_force = Vec::new();
        for (name, spec) in &reg.functions {
            in_force.push(name.clone());
            let content = content_hash(&spec.folder_path(&self.functions_dir)).await;
            let key = (spec.spec_hash(), content);
            let unchanged = applied.get(name) == Some(&key)
                && known
                    .get(name)
                    .is_some_and(|(src, s)| *src == Source::File && s == spec);
            if unchanged {
                continue;
            }
            if let Some((Source::Api, _)) = known.get(name) {
                tracing::warn!(function = %name, "the registry file now defines this API-deployed function: the file wins");
            }
            self.sup.upsert(spec.clone(), Source::File).await;
            applied.insert(name.clone(), key);
        }
        for (name, (source, _)) in &known {
            if *source == Source::File && !reg.functions.contains_key(name) {
                tracing::info!(function = %name, "removed from the registry file: draining");
                applied.remove(name);
                if let Err(e) = self.sup.begin_remove(name).await {
                    tracing::warn!(function = %name, error = %e, "cannot remove");
                }
            }
        }
        let mut st = self.status.lock().await;
        st.functions = in_force;
        st.loaded_unix_ms = now_ms();
        st.errors.clear();
    }

    /// Records what the startup path already applied.
    pub async fn mark_applied(&self, specs: &[FunctionSpec]) {
        let mut applied = self.applied.lock().await;
        let mut names = Vec::new();
        for spec in specs {
            let content = content_hash(&spec.folder_path(&self.functions_dir)).await;
            applied.insert(spec.name.clone(), (spec.spec_hash(), content));
            names.push(spec.name.clone());
        }
        let mut st = self.status.lock().await;
        st.functions = names;
        st.loaded_unix_ms = now_ms();
    }

    /// Watches the registry file and the function folders until `stop`; reloads after a
    /// short quiet period following a change. Falls back to polling the file's mtime (some
    /// bind mounts deliver no inotify events).
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let (tx, mut rx) = mpsc::channel::<()>(16);
        let notify_tx = tx.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                if !matches!(ev.kind, notify::EventKind::Access(_)) {
                    let _ = notify_tx.try_send(());
                }
            }
        });
        let _watcher = match watcher {
            Ok(mut w) => {
                let dir = self
                    .path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf();
                if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the registry folder; polling");
                }
                if let Err(e) = w.watch(&self.functions_dir, RecursiveMode::Recursive) {
                    tracing::warn!(dir = %self.functions_dir.display(), error = %e, "cannot watch the functions folder");
                }
                Some(w)
            }
            Err(e) => {
                tracing::warn!(error = %e, "file watching unavailable; polling the registry");
                None
            }
        };
        let mut last_mtime = mtime(&self.path);
        let mut poll = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                Some(()) = rx.recv() => {}
                _ = poll.tick() => {
                    let m = mtime(&self.path);
                    if m == last_mtime { continue; }
                }
            }
            // Quiet period: editors write in several steps.
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => break,
                    Some(()) = rx.recv() => continue,
                }
            }
            last_mtime = mtime(&self.path);
            match self.reload().await {
                Ok(()) => tracing::info!(file = %self.path.display(), "registry reloaded"),
                Err(errors) => tracing::warn!(count = errors.len(), "registry change rejected"),
            }
        }
    }
}

fn mtime(p: &Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(p)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())))
}

async fn content_hash(dir: &Path) -> String {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || folder_content_hash(&dir).unwrap_or_default())
        .await
        .unwrap_or_default()
}
