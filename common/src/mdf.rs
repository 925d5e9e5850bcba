//! The MDF contract between the orchestrator (which runs the relay instances) and the
//! functions that use them (a registry entry with `uses: [mdf]`, such as `mcptt-media`):
//! the environment those functions get, and how the control API's token is made.
//!
//! | variable | value |
//! |---|---|
//! | `SLUICE_MDF_URLS` | the control API of every slot the pool may fill, comma-separated (`http://<gateway-ip>:<port>`); a slot with no instance refuses connections |
//! | `SLUICE_MDF_TOKEN` | the bearer token every instance requires |
//!
//! The token is derived (HMAC-SHA256) from the control plane's secret, so a restarted
//! orchestrator gives new instances and functions the same one without storing it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Environment variable with the instances' control URLs.
pub const ENV_URLS: &str = "SLUICE_MDF_URLS";
/// Environment variable with the control API's bearer token.
pub const ENV_TOKEN: &str = "SLUICE_MDF_TOKEN";

/// The control API token under the control plane's `secret`.
pub fn token(secret: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(b"sluice-mdf-control-v1");
    hex::encode(mac.finalize().into_bytes())
}

/// The control URL of `slot`.
pub fn control_url(host: &str, port_base: u16, slot: u16) -> String {
    format!("http://{host}:{}", port_base.saturating_add(slot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_depends_on_the_secret_only() {
        assert_eq!(token(b"a"), token(b"a"));
        assert_ne!(token(b"a"), token(b"b"));
        assert_eq!(token(b"a").len(), 64);
        assert_eq!(control_url("172.18.0.1", 7090, 2), "http://172.18.0.1:7092");
    }
}
