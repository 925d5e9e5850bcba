//! The runtime token: what keeps one function from calling another function's runtime
//! directly. Every function container shares the function network, so any replica can open
//! a connection to any other; the runtime in a container whose environment holds
//! [`ENV_TOKEN`] answers only requests carrying that function's token in [`HEADER`]. The
//! orchestrator derives the token per function from a control-plane secret and gives it to
//! the function's containers, its own readiness probe and, through the cluster's xDS config,
//! the routers, which add it to every call they forward. A function knows its own token
//! only, which opens nothing but itself.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Environment variable holding the token in a function container.
pub const ENV_TOKEN: &str = "SLUICE_RUNTIME_TOKEN";
/// Request header carrying it (the router overwrites whatever a caller sent; the runtime
/// never passes it on to the function).
pub const HEADER: &str = "x-sluice-runtime-token";

/// The token of `function` in installation `instance` under the control plane's `secret`.
pub fn token(secret: &[u8], instance: &str, function: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(b"sluice-runtime-token-v1\0");
    mac.update(instance.as_bytes());
    mac.update(b"\0");
    mac.update(function.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// True when `got` (a header's value) is `want`, compared in constant time.
pub fn matches(got: Option<&[u8]>, want: &str) -> bool {
    got.is_some_and(|g| crate::auth::password_matches(&String::from_utf8_lossy(g), want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_function_has_its_own_token() {
        let a = token(b"s", "sluice", "a");
        assert_eq!(a.len(), 64);
        assert_eq!(a, token(b"s", "sluice", "a"));
        assert_ne!(a, token(b"s", "sluice", "b"));
        assert_ne!(a, token(b"s", "other", "a"));
        assert_ne!(a, token(b"t", "sluice", "a"));
        assert!(matches(Some(a.as_bytes()), &a));
        assert!(!matches(Some(b"nope"), &a));
        assert!(!matches(None, &a));
    }
}
