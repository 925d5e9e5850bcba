//! Sluice's xDS-style discovery protocol (`proto/sluice_xds.proto`): generated types, the
//! type URLs, and helpers shared by the server (xds-connector) and clients (router, gateway).
//!
//! [`client`] is the data-plane side of the stream (router, gateway): [`client::spawn`] keeps a
//! validated [`Snapshot`] up to date on a `watch`.

#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("sluice.xds.v1");
}

/// Type URL of [`pb::Cluster`] resources.
pub const CLUSTER_TYPE: &str = "type.sluice.dev/sluice.xds.v1.Cluster";
/// Type URL of [`pb::ClusterLoadAssignment`] resources.
pub const ENDPOINTS_TYPE: &str = "type.sluice.dev/sluice.xds.v1.ClusterLoadAssignment";
/// Type URL of [`pb::RouteConfiguration`] resources.
pub const ROUTES_TYPE: &str = "type.sluice.dev/sluice.xds.v1.RouteConfiguration";
/// Type URL of [`pb::Listener`] resources.
pub const LISTENER_TYPE: &str = "type.sluice.dev/sluice.xds.v1.Listener";

/// Every type, in the order additions are pushed (clusters and endpoints before the routes
/// and listeners that use them). Removals go the other way.
pub const TYPES: [&str; 4] = [CLUSTER_TYPE, ENDPOINTS_TYPE, ROUTES_TYPE, LISTENER_TYPE];

pub mod client;
pub mod snapshot;
pub use snapshot::Snapshot;

/// Environment variable naming the file that holds the token of the xds-connector's APIs
/// (gRPC stream and REST), for the connector and for every client of it. The compose stack's
/// `redis` service generates it on first start into the `xds-secret` volume, which only the
/// connector, the orchestrator, the router and the gateway mount. Unset: no token (the
/// connector then logs that its APIs are open).
pub const ENV_TOKEN_FILE: &str = "SLUICE_XDS_TOKEN_FILE";

/// Shortest token accepted (the generated one has 64 hex digits).
pub const MIN_TOKEN_LEN: usize = 32;

/// Reads the token: the file's first line, trimmed, at least [`MIN_TOKEN_LEN`] characters.
pub fn read_token(path: &std::path::Path) -> Result<String, String> {
    let token = crate::auth::read_secret_line(path)
        .map_err(|e| format!("cannot read the xDS token from {}: {e}", path.display()))?;
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "the xDS token in {} is shorter than {MIN_TOKEN_LEN} characters",
            path.display()
        ));
    }
    Ok(token)
}

/// The token of a service's `SLUICE_XDS_TOKEN_FILE` setting, if it has one.
pub fn token_from(path: Option<&std::path::Path>) -> Result<Option<String>, String> {
    path.map(read_token).transpose()
}

/// The `authorization` value a client sends.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// True when `authorization` is `Bearer <token>` (constant-time over digests).
pub fn token_matches(authorization: Option<&str>, token: &str) -> bool {
    let given = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    crate::auth::password_matches(given, token) && !given.is_empty()
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_matches() {
        let t = "a".repeat(64);
        assert!(token_matches(Some(&bearer(&t)), &t));
        assert!(!token_matches(Some(&bearer("b")), &t));
        assert!(!token_matches(Some(&t), &t));
        assert!(!token_matches(None, &t));
        assert!(!token_matches(Some("Bearer "), ""));
    }

    #[test]
    fn short_or_missing_token_files_are_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = dir.path().join("xds-token");
        assert!(read_token(&f).is_err());
        std::fs::write(&f, "short\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(read_token(&f).unwrap_err().contains("shorter"));
        std::fs::write(&f, format!("{}\n", "f".repeat(64))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_token(&f), Ok("f".repeat(64)));
    }
}
