//! Function images: `sluice/fn-<name>:<version>`, built by the engine (bollard `build_image`)
//! from a tar context made of the function folder and a generated Dockerfile, on top of the
//! Sluice base images built by `make images`. Nothing is ever pulled.
//!
//! Invariant: an image is rebuilt only when its build hash changes. The build hash covers the
//! generated Dockerfile (language, dependencies, handler), the folder's content and the id of
//! the base image, and is stored as a label on the image.

mod context;
mod dockerfile;

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::query_parameters::BuildImageOptionsBuilder;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use sluice_common::registry::{folder_content_hash, FunctionSpec};

use crate::docker::{Engine, LABEL_BUILD_HASH};
use crate::error::{Error, ErrorKind, Result};

/// A built function image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// `sluice/fn-<name>:<version>`
    pub tag: String,
    /// The image id (`sha256:…`): what replicas are created from.
    pub id: String,
    pub build_hash: String,
}

#[derive(Clone)]
pub struct Builder {
    engine: Engine,
    functions_dir: PathBuf,
    base_tag: String,
}

/// The image name for a function (version sanitised into a valid tag).
pub fn image_tag(spec: &FunctionSpec) -> String {
    let mut v: String = spec
        .version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(120)
        .collect();
    if v.is_empty() || v.starts_with(['.', '-']) {
        v.insert(0, 'v');
    }
    format!("sluice/fn-{}:{}", spec.name, v)
}

impl Builder {
    pub fn new(engine: Engine, functions_dir: PathBuf, base_tag: String) -> Self {
        Builder {
            engine,
            functions_dir,
            base_tag,
        }
    }

    /// Returns the image for `spec`, building it if the existing one (if any) was built from
    /// something else.
    pub async fn ensure(&self, spec: &FunctionSpec) -> Result<BuiltImage> {
        let folder = spec.folder_path(&self.functions_dir);
        let dockerfile = dockerfile::render(spec, &self.base_tag)?;
        let content = {
            let dir = folder.clone();
            tokio::task::spawn_blocking(move || folder_content_hash(&dir))
                .await
                .map_err(|e| Error::new(ErrorKind::Build, "hashing task failed").with_source(e))?
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Build,
                        format!("cannot read function folder {}", folder.display()),
                    )
                    .with_source(e)
                    .retryable(false)
                })?
        };
        let mut hasher = Sha256::new();
        hasher.update(dockerfile.text.as_bytes());
        hasher.update(content.as_bytes());
        for base in &dockerfile.bases {
            hasher.update(self.base_image_id(base).await?.as_bytes());
        }
        let build_hash = hex::encode(hasher.finalize());
        let tag = image_tag(spec);

        if let Ok(img) = self.engine.client().inspect_image(&tag).await {
            let same = img
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(LABEL_BUILD_HASH))
                .is_some_and(|h| *h == build_hash);
            if let (true, Some(id)) = (same, img.id) {
                tracing::debug!(function = %spec.name, image = %tag, "image is up to date");
                return Ok(BuiltImage {
                    tag,
                    id,
                    build_hash,
                });
            }
        }

        tracing::info!(function = %spec.name, image = %tag, "building image");
        let started = std::time::Instant::now();
        let tar = {
            let folder = folder.clone();
            let text = dockerfile.text.clone();
            tokio::task::spawn_blocking(move || context::tar(&folder, &text))
                .await
                .map_err(|e| Error::new(ErrorKind::Build, "tar task failed").with_source(e))?
                .map_err(|e| {
                    Error::new(ErrorKind::Build, "cannot pack the build context")
                        .with_source(e)
                        .retryable(false)
                })?
        };
        let labels = HashMap::from([
            (LABEL_BUILD_HASH.to_string(), build_hash.clone()),
            (sluice_common::LABEL_FUNCTION.to_string(), spec.name.clone()),
        ]);
        let opts = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(&tag)
            .labels(&labels)
            .rm(true)
            .forcerm(true)
            .q(false)
            .build();
        let mut stream =
            self.engine
                .client()
                .build_image(opts, None, Some(bollard::body_full(tar.into())));
        let mut tail: Vec<String> = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(err) = info.error_detail.and_then(|d| d.message) {
                        tail.push(err.trim_end().to_string());
                        let msg = tail.join("\n");
                        tracing::warn!(function = %spec.name, output = %msg, "image build failed");
                        return Err(Error::new(
                            ErrorKind::Build,
                            format!("building {tag} failed:\n{msg}"),
                        )
                        .retryable(false));
                    }
                    if let Some(line) = info.stream {
                        let line = line.trim_end();
                        if !line.is_empty() {
                            tracing::debug!(function = %spec.name, "{line}");
                            tail.push(line.to_string());
                            if tail.len() > 40 {
                                tail.remove(0);
                            }
                        }
                    }
                }
                Err(e) => {
                    return Err(Error::docker(format!("building {tag} failed"), e));
                }
            }
        }
        let img = self
            .engine
            .client()
            .inspect_image(&tag)
            .await
            .map_err(|e| Error::docker(format!("built {tag} but cannot inspect it"), e))?;
        let id = img
            .id
            .ok_or_else(|| Error::new(ErrorKind::Build, format!("{tag} has no id")))?;
        tracing::info!(function = %spec.name, image = %tag, id = %id,
            seconds = started.elapsed().as_secs_f64(), "image built");
        Ok(BuiltImage {
            tag,
            id,
            build_hash,
        })
    }

    async fn base_image_id(&self, base: &str) -> Result<String> {
        match self.engine.client().inspect_image(base).await {
            Ok(img) => img
                .id
                .ok_or_else(|| Error::new(ErrorKind::Build, format!("{base} has no id"))),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(Error::new(
                ErrorKind::Build,
                format!("base image {base} is missing: run `make images` (images are built locally, never pulled)"),
            )
            .retryable(false)),
            Err(e) => Err(Error::docker(format!("cannot inspect {base}"), e)),
        }
    }
}
