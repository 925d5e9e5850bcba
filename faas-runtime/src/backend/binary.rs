//! binary mode: the executable runs once per call (OpenFaaS "classic" watchdog style).
//!
//! The body goes to stdin, stdout becomes the 200 response body (Content-Type from
//! `SLUICE_CONTENT_TYPE`), a non-zero exit becomes a 500 carrying the start of stderr. The child
//! gets the container's environment plus `Http_Method`, `Http_Path`, `Http_Query` and one
//! `Http_<Header_Name>` per request header (`X-Request-Id` → `Http_X_Request_Id`).
//!
//! Each child runs in its own process group; on timeout the whole group is killed (SIGKILL)
//! and reaped, so nothing it started outlives the call.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::StatusCode;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::config::Config;
use crate::error::{ErrorKind, Result, RuntimeError};
use crate::invocation::{Invocation, Outcome};

/// Largest stdout accepted from one call.
const MAX_OUTPUT: u64 = 64 * 1024 * 1024;
/// Stderr kept per call (for the error body and the log).
const STDERR_KEEP: u64 = 64 * 1024;
/// Stderr shown in a 500 body.
const STDERR_IN_ERROR: usize = 4096;

/// The binary backend.
#[derive(Debug)]
pub struct BinaryBackend {
    function: String,
    path: PathBuf,
    content_type: HeaderValue,
    executable: AtomicBool,
}

impl BinaryBackend {
    pub fn new(cfg: &Config) -> Result<Self> {
        let content_type = HeaderValue::from_str(&cfg.content_type).map_err(|_| {
            RuntimeError::new(
                ErrorKind::Internal,
                format!(
                    "SLUICE_CONTENT_TYPE {:?} is not a valid header value",
                    cfg.content_type
                ),
            )
        })?;
        Ok(BinaryBackend {
            function: cfg.function.clone(),
            path: PathBuf::from(&cfg.handler),
            content_type,
            executable: AtomicBool::new(false),
        })
    }

    /// `Ok` when the handler exists and is executable (checked until it first is).
    pub fn readiness(&self) -> std::result::Result<(), String> {
        if self.executable.load(Ordering::Relaxed) {
            return Ok(());
        }
        match std::fs::metadata(&self.path) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
                self.executable.store(true, Ordering::Relaxed);
                Ok(())
            }
            Ok(_) => Err(format!(
                "handler {} is not an executable file",
                self.path.display()
            )),
            Err(e) => Err(format!("handler {} is missing: {e}", self.path.display())),
        }
    }

    /// Runs the executable once for `inv`.
    pub async fn invoke(&self, inv: Invocation) -> Result<Outcome> {
        let mut cmd = tokio::process::Command::new(&self.path);
        cmd.env_remove(sluice_common::runtime::ENV_TOKEN);
        cmd.env("Http_Method", &inv.method)
            .env("Http_Path", &inv.path)
            .env("Http_Query", &inv.query)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for (name, value) in &inv.headers {
            cmd.env(
                env_name(name.as_str()),
                String::from_utf8_lossy(value.as_bytes()).as_ref(),
            );
        }
        let mut child = cmd.spawn().map_err(|e| {
            RuntimeError::new(
                ErrorKind::Function,
                format!("cannot start {}: {e}", self.path.display()),
            )
        })?;
        let pgid = child.id().and_then(|p| i32::try_from(p).ok());
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let body = inv.body.clone();

        let run = async {
            let feed = async move {
                if let Some(mut stdin) = stdin {
                    // A child that does not read its stdin closes the pipe: not an error.
                    let _ = stdin.write_all(&body).await;
                }
            };
            let (_, out, err, status) = tokio::join!(
                feed,
                read_capped(stdout, MAX_OUTPUT + 1),
                read_capped(stderr, STDERR_KEEP),
                child.wait()
            );
            (out, err, status)
        };
        let deadline = tokio::time::Instant::from_std(inv.deadline);
        let res = tokio::time::timeout_at(deadline, run).await;
        let Ok((out, err, status)) = res else {
            if let Some(pgid) = pgid {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
            let _ = child.kill().await;
            return Err(RuntimeError::new(
                ErrorKind::Timeout,
                "function timed out (its process was killed)",
            ));
        };
        let status = status.map_err(|e| {
            RuntimeError::new(ErrorKind::Internal, "cannot wait for the function process")
                .with_source(e)
        })?;
        let stderr_text = String::from_utf8_lossy(&err);
        let stderr_text = stderr_text.trim_end();
        if !status.success() {
            tracing::warn!(function = %self.function, %status, stderr = %stderr_text, "function process failed");
            let what = match status.code() {
                Some(code) => format!("function exited with status {code}"),
                None => format!("function process {status}"),
            };
            let message = if stderr_text.is_empty() {
                what
            } else {
                format!("{what}: {}", truncate(stderr_text, STDERR_IN_ERROR))
            };
            return Err(RuntimeError::new(ErrorKind::Function, message));
        }
        if !stderr_text.is_empty() {
            tracing::info!(function = %self.function, stderr = %stderr_text, "function stderr");
        }
        if out.len() as u64 > MAX_OUTPUT {
            return Err(RuntimeError::new(
                ErrorKind::Function,
                format!("function output exceeds {MAX_OUTPUT} bytes"),
            ));
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, self.content_type.clone());
        Ok(Outcome {
            status: StatusCode::OK,
            headers,
            body: Bytes::from(out),
        })
    }
}

/// `content-type` → `Http_Content_Type`.
fn env_name(header: &str) -> String {
    let mut out = String::with_capacity(header.len() + 5);
    out.push_str("Http_");
    for (i, part) in header.split('-').enumerate() {
        if i > 0 {
            out.push('_');
        }
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars.map(|c| c.to_ascii_lowercase()));
        }
    }
    out
}

/// Reads up to `limit` bytes, then drains (and drops) the rest so the child never blocks on a
/// full pipe.
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>, limit: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    let Some(mut pipe) = pipe else { return buf };
    let _ = (&mut pipe).take(limit).read_to_end(&mut buf).await;
    let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
    buf
}

/// The first `max` bytes of `s`, cut at a character boundary, with a marker when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes truncated)", &s[..end], s.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_env_names_are_canonical() {
        assert_eq!(env_name("content-type"), "Http_Content_Type");
        assert_eq!(env_name("x-request-id"), "Http_X_Request_Id");
        assert_eq!(env_name("accept"), "Http_Accept");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        let t = truncate("ééé", 3);
        assert!(t.starts_with('é') && t.contains("truncated"), "{t}");
    }
}
