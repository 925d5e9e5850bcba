//! Upstream addresses (the router, the orchestrator) given as `http://host:port` URLs, or
//! as `unix:/path/to.sock` for an upstream on a Unix socket (the router, through a volume
//! only the two share: no network hop at all).
//!
//! pingora peers need a socket address, so names are resolved here, off the request path:
//! once at start-up and then periodically in the background (a restarted container may come
//! back with a new IP). A request never waits for DNS; until the first resolution succeeds,
//! requests to that upstream are answered 502.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use sluice_common::config::MAX_UNIX_SOCKET_PATH;

use crate::error::{ErrorKind, GatewayError};

/// How often a resolved name is looked up again.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// How often an unresolved name is retried.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Inet(SocketAddr),
    Unix(Arc<str>),
}

/// One upstream, by URL, with its last resolved address.
#[derive(Debug)]
pub struct UpstreamAddr {
    /// What it is (`router`, `orchestrator`), for logs and errors.
    pub role: &'static str,
    host: String,
    port: u16,
    /// Set for `unix:` upstreams (then `host` is the path, and nothing is resolved).
    unix: Option<Arc<str>>,
    current: RwLock<Option<SocketAddr>>,
}

impl UpstreamAddr {
    /// Parses `http://host[:port][/]` (or a bare `host:port`); IP literals need no DNS.
    pub fn parse(role: &'static str, url: &str) -> Result<Self, GatewayError> {
        let bad = |why: &str| {
            GatewayError::new(
                ErrorKind::Config,
                format!("invalid {role} URL `{url}`: {why}"),
            )
        };
        if url.starts_with("https://") {
            return Err(bad("TLS to upstreams is not supported, use http://"));
        }
        if let Some(path) = url.strip_prefix("unix:") {
            // `unix:/p`, `unix:///p` (Docker's spelling): the path is absolute.
            let path = format!("/{}", path.trim_start_matches('/'));
            if path.len() > MAX_UNIX_SOCKET_PATH {
                return Err(bad(&format!(
                    "socket path longer than {MAX_UNIX_SOCKET_PATH} bytes"
                )));
            }
            if path == "/" || !Path::new(&path).is_absolute() {
                return Err(bad("missing socket path"));
            }
            return Ok(UpstreamAddr {
                role,
                host: path.clone(),
                port: 0,
                unix: Some(path.into()),
                current: RwLock::new(None),
            });
        }
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(bad("missing host"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad host:port"))?;
        let literal = host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port));
        Ok(UpstreamAddr {
            role,
            host,
            port,
            unix: None,
            current: RwLock::new(literal),
        })
    }

    /// `host:port` as configured.
    pub fn authority(&self) -> String {
        if let Some(path) = &self.unix {
            return format!("unix:{path}");
        }
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The address to connect to now; `None` until the name has been resolved once.
    pub fn current(&self) -> Option<Addr> {
        if let Some(path) = &self.unix {
            return Some(Addr::Unix(path.clone()));
        }
        (*self.current.read().unwrap_or_else(PoisonError::into_inner)).map(Addr::Inet)
    }

    /// Resolves the name again; keeps the last good address when resolution fails.
    pub async fn refresh(&self) -> bool {
        if self.unix.is_some() || self.host.parse::<IpAddr>().is_ok() {
            return true;
        }
        match tokio::net::lookup_host((self.host.as_str(), self.port)).await {
            Ok(mut addrs) => match addrs.next() {
                Some(addr) => {
                    let mut cur = self.current.write().unwrap_or_else(PoisonError::into_inner);
                    if *cur != Some(addr) {
                        tracing::info!(role = self.role, host = %self.host, %addr, "upstream resolved");
                        *cur = Some(addr);
                    }
                    true
                }
                None => false,
            },
            Err(e) => {
                tracing::debug!(role = self.role, host = %self.host, error = %e, "upstream not resolvable yet");
                false
            }
        }
    }

    /// Keeps the address fresh in the background (see the module docs).
    pub fn spawn_refresh(self: &Arc<Self>, rt: &tokio::runtime::Handle) {
        if self.unix.is_some() || self.host.parse::<IpAddr>().is_ok() {
            return;
        }
        let me = self.clone();
        rt.spawn(async move {
            loop {
                let ok = me.refresh().await;
                tokio::time::sleep(if ok { REFRESH_EVERY } else { RETRY_EVERY }).await;
            }
        });
    }
}

fn split_host_port(authority: &str) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 80,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !h.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => None,
        None => Some((authority.to_string(), 80)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_to_host_and_port() {
        let inet = |a: &str| Some(Addr::Inet(a.parse().expect("addr")));
        let u = UpstreamAddr::parse("router", "http://127.0.0.1:10000").expect("url");
        assert_eq!(u.current(), inet("127.0.0.1:10000"));
        let u = UpstreamAddr::parse("router", "http://router:10000/").expect("url");
        assert_eq!(u.authority(), "router:10000");
        assert_eq!(u.current(), None);
        let u = UpstreamAddr::parse("o", "http://[::1]:8082").expect("v6");
        assert_eq!(u.current(), inet("[::1]:8082"));
        assert_eq!(
            UpstreamAddr::parse("o", "orch").expect("bare").authority(),
            "orch:80"
        );
        assert!(UpstreamAddr::parse("o", "https://x:1").is_err());
        assert!(UpstreamAddr::parse("o", "http://x:notaport").is_err());
        assert!(UpstreamAddr::parse("o", "http://").is_err());
        for url in ["unix:/run/r.sock", "unix:///run/r.sock"] {
            let u = UpstreamAddr::parse("router", url).expect("unix");
            assert_eq!(u.current(), Some(Addr::Unix("/run/r.sock".into())));
            assert_eq!(u.authority(), "unix:/run/r.sock");
        }
        assert!(UpstreamAddr::parse("router", "unix:").is_err());
        let long = format!("unix:/{}", "x".repeat(120));
        assert!(UpstreamAddr::parse("router", &long).is_err());
    }

    #[tokio::test]
    async fn names_resolve_in_the_background() {
        let u = Arc::new(UpstreamAddr::parse("o", "http://localhost:8082").expect("url"));
        assert!(u.refresh().await);
        assert!(matches!(u.current(), Some(Addr::Inet(a)) if a.port() == 8082));
    }
}
