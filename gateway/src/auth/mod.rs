//! Calls of functions declared `auth: key`: the caller's `Authorization` header is checked by
//! the orchestrator (`POST /internal/auth/invoke`, which holds the key hashes and counts
//! failed attempts per address) before anything is forwarded.
//!
//! Allowed answers are kept for [`Settings::ttl`] under the SHA-256 of the header value (the
//! raw credential is never kept), so a busy caller costs one check per interval; a revoked
//! key stops working within that interval. Refusals are never cached: every wrong guess
//! reaches the orchestrator's limiter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sluice_common::auth;

use crate::error::{ErrorKind, GatewayError};

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long an allowed credential is trusted without asking again.
    pub ttl: Duration,
    /// Bound of one check.
    pub timeout: Duration,
    /// Credentials remembered at most (the oldest half is dropped beyond it).
    pub capacity: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ttl: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            capacity: 10_000,
        }
    }
}

pub struct InvokeAuth {
    http: reqwest::Client,
    url: String,
    settings: Settings,
    allowed: Mutex<HashMap<[u8; 32], Instant>>,
}

impl InvokeAuth {
    /// `orchestrator` is the base URL (`http://host:port`).
    pub fn new(orchestrator: &str, settings: Settings) -> Result<Self, GatewayError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| {
                GatewayError::new(ErrorKind::Config, "cannot build the auth HTTP client")
                    .with_source(e)
            })?;
        Ok(InvokeAuth {
            http,
            url: format!(
                "{}{}",
                orchestrator.trim_end_matches('/'),
                auth::VERIFY_INVOKE_PATH
            ),
            settings,
            allowed: Mutex::new(HashMap::new()),
        })
    }

    /// `Ok` when `authorization` (the request's header, if any) may invoke `function`.
    pub async fn check(
        &self,
        function: &str,
        authorization: Option<&[u8]>,
        client: Option<IpAddr>,
    ) -> Result<(), GatewayError> {
        let refuse = |kind, msg: &str| GatewayError::new(kind, msg).for_function(function);
        let Some(value) = authorization else {
            return Err(refuse(
                ErrorKind::Unauthorized,
                "this function needs an API key with the invoke scope (Authorization: Bearer <key>)",
            ));
        };
        let digest: [u8; 32] = Sha256::digest(value).into();
        let now = Instant::now();
        if self.remembered(&digest, now) {
            return Ok(());
        }
        let mut req = self
            .http
            .post(&self.url)
            .header(reqwest::header::AUTHORIZATION, value)
            .header(auth::FUNCTION_HEADER, function);
        if let Some(ip) = client {
            req = req.header(auth::CLIENT_HEADER, ip.to_string());
        }
        let resp = req.send().await.map_err(|e| {
            refuse(ErrorKind::Unavailable, "credentials cannot be checked now")
                .retry_after(Duration::from_secs(1))
                .with_source(e)
        })?;
        match resp.status().as_u16() {
            200..=299 => {
                self.remember(digest, now);
                Ok(())
            }
            401 => Err(refuse(ErrorKind::Unauthorized, "invalid credentials")),
            403 => Err(refuse(
                ErrorKind::Forbidden,
                "this credential lacks the `invoke` scope",
            )),
            429 => {
                let after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                Err(refuse(
                    ErrorKind::TooManyAttempts,
                    "too many failed attempts from this address",
                )
                .retry_after(Duration::from_secs(after)))
            }
            s => Err(refuse(
                ErrorKind::Unavailable,
                &format!("credentials cannot be checked now (the orchestrator answered {s})"),
            )
            .retry_after(Duration::from_secs(1))),
        }
    }

    fn remembered(&self, digest: &[u8; 32], now: Instant) -> bool {
        let Ok(mut m) = self.allowed.lock() else {
            return false;
        };
        match m.get(digest) {
            Some(&until) if until > now => true,
            Some(_) => {
                m.remove(digest);
                false
            }
            None => false,
        }
    }

    fn remember(&self, digest: [u8; 32], now: Instant) {
        let Ok(mut m) = self.allowed.lock() else {
            return;
        };
        if m.len() >= self.settings.capacity {
            m.retain(|_, until| *until > now);
            if m.len() >= self.settings.capacity {
                m.clear();
            }
        }
        m.insert(digest, now + self.settings.ttl);
    }
}
