//! The Dockerfile generated for each language. Arguments that come from the registry are
//! written in exec (JSON) form, never through a shell, so no entry can inject commands.

use sluice_common::registry::{FunctionSpec, Language, RuntimeMode};

use crate::error::{Error, ErrorKind, Result};

/// Where a function's files live inside its image.
pub const FUNCTION_DIR: &str = "/opt/function";

pub struct Rendered {
    pub text: String,
    /// Base images the build starts from (their ids go into the build hash).
    pub bases: Vec<String>,
}

fn json(v: &[&str]) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

pub fn render(spec: &FunctionSpec, tag: &str) -> Result<Rendered> {
    let mut text = String::new();
    let mut bases = Vec::new();
    let handler = format!("{FUNCTION_DIR}/{}", spec.base_function_file_name);
    match spec.language {
        Language::Python => {
            let runtime = format!("sluice/python:{tag}");
            if !spec.extra_dependencies.is_empty() {
                let build = format!("sluice/python-build:{tag}");
                let mut cmd = vec![
                    "python3",
                    "-m",
                    "pip",
                    "install",
                    "--no-cache-dir",
                    "--disable-pip-version-check",
                    "--target",
                    "/deps",
                ];
                cmd.extend(spec.extra_dependencies.iter().map(String::as_str));
                text.push_str(&format!("FROM {build} AS deps\nRUN {}\n", json(&cmd)));
                bases.push(build);
            }
            text.push_str(&format!("FROM {runtime}\n"));
            if !spec.extra_dependencies.is_empty() {
                text.push_str(&format!("COPY --from=deps /deps {FUNCTION_DIR}/deps\n"));
            }
            text.push_str(&format!("COPY function/ {FUNCTION_DIR}/\n"));
            bases.push(runtime);
        }
        Language::Rust => {
            let build = format!("sluice/rust-build:{tag}");
            let runtime = format!("sluice/runtime:{tag}");
            text.push_str(&format!(
                "FROM {build} AS build\nWORKDIR /src\nCOPY function/ /src/\n\
                 RUN if [ -f Cargo.lock ]; then locked=--locked; fi; cargo install $locked --path . --root /out --quiet && set -- /out/bin/* && cp \"$1\" /out/function\n\
                 FROM {runtime}\nCOPY --from=build /out/function {FUNCTION_DIR}/function\n"
            ));
            bases.push(build);
            bases.push(runtime);
        }
        Language::Binary => {
            let runtime = format!("sluice/runtime:{tag}");
            text.push_str(&format!("FROM {runtime}\nCOPY function/ {FUNCTION_DIR}/\n"));
            bases.push(runtime);
        }
    }
    let handler = match (spec.language, spec.mode) {
        (Language::Rust, RuntimeMode::Http) => format!("{FUNCTION_DIR}/function"),
        (Language::Rust, _) => format!("{FUNCTION_DIR}/function"),
        _ => handler,
    };
    if handler.contains(['\n', '"']) {
        return Err(Error::new(
            ErrorKind::Registry,
            format!(
                "`{}`: base_function_file_name has invalid characters",
                spec.name
            ),
        )
        .retryable(false));
    }
    let mode = match spec.mode {
        RuntimeMode::Python => "python",
        RuntimeMode::Binary => "binary",
        RuntimeMode::Http => "http",
    };
    text.push_str(&format!(
        "ENV SLUICE_HANDLER=\"{handler}\" SLUICE_MODE={mode} SLUICE_FUNCTION={name}\n\
         LABEL sluice.function={name} sluice.version=\"{version}\"\n",
        name = spec.name,
        version = spec.version.replace(['"', '\n', '\\'], "_"),
    ));
    Ok(Rendered { text, bases })
}
