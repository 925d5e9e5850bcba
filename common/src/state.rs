//! The state contract: how a function declared with `state: redis` reaches Redis.
//!
//! Each such function gets a Redis ACL user of its own, created by the orchestrator before
//! the function's first replica starts, and two environment variables in its containers
//! only:
//!
//! | variable | value |
//! |---|---|
//! | `SLUICE_STATE_REDIS_URL` | `redis://fn-<name>:<password>@<host>:<port>` |
//! | `SLUICE_STATE_PREFIX` | `fn:<name>:` — every key and pub/sub channel it may touch |
//!
//! The user may run ordinary data commands on keys and channels under its prefix, and
//! nothing else: no administration, no `KEYS`/`SCAN`/`RANDOMKEY` (they would list other
//! functions' and the control plane's key names), no server-side functions or script cache
//! commands, no `SELECT`. The control plane's keys (`<instance>:*`, `sluice:*` by default)
//! are out of reach, and Redis's `default` user is protected by a password only the control
//! plane has (the compose stack's `redis` service).
//!
//! The password is derived (HMAC-SHA256) from a secret of the control plane and the
//! function's name, so a restarted orchestrator recreates the same user without storing
//! credentials anywhere.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Environment variable carrying the function's Redis URL (credentials included).
pub const ENV_URL: &str = "SLUICE_STATE_REDIS_URL";
/// Environment variable carrying the function's key prefix.
pub const ENV_PREFIX: &str = "SLUICE_STATE_PREFIX";

/// Key (and channel) prefix of `function`'s state.
pub fn key_prefix(function: &str) -> String {
    format!("fn:{function}:")
}

/// Redis ACL user name of `function` (function names are DNS labels: no `:` or spaces).
pub fn username(function: &str) -> String {
    format!("fn-{function}")
}

/// The function's password: hex HMAC-SHA256 of its name under the control plane's `secret`.
pub fn password(secret: &[u8], function: &str) -> String {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(b"sluice-state-user-v1:");
    mac.update(function.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The stream a function with state publishes its events on (by convention), which
/// functions naming it in `events_from:` may read.
pub fn events_key(function: &str) -> String {
    format!("{}events", key_prefix(function))
}

/// Arguments of `ACL SETUSER <user> ...` for `function`: the complete rule set, from a reset,
/// so re-running it converges on exactly these rights. `events_from` are the functions whose
/// event stream it may read (read-only key grants, `%R~`).
pub fn acl_rules(function: &str, password: &str, events_from: &[String]) -> Vec<String> {
    let prefix = key_prefix(function);
    let reads = events_from.iter().map(|f| format!("%R~{}", events_key(f)));
    [
        "reset",
        "on",
        &format!(">{password}"),
        &format!("~{prefix}*"),
        &format!("&{prefix}*"),
        "+@all",
        "-@admin",
        "-@dangerous",
        "-@scripting",
        "+eval",
        "+evalsha",
        "+eval_ro",
        "+evalsha_ro",
        "+script|load",
        "+script|exists",
        "-scan",
        "-randomkey",
        "-select",
        "-pubsub",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(reads)
    .collect()
}

/// `base` (a `redis://host:port[/db]` URL without credentials) with `user:password` in it.
pub fn url_with_credentials(base: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = base.split_once("://").unwrap_or(("redis", base));
    // Drop credentials the base URL may carry: the function must use its own.
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    format!(
        "{scheme}://{}:{}@{rest}",
        percent_encode(user),
        percent_encode(password)
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `url` with `password` as the `default` user's password, unless the URL carries one.
pub fn url_with_password(url: &str, password: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    if rest.contains('@') {
        return url.to_string();
    }
    format!("{scheme}://:{}@{rest}", percent_encode(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_per_function_and_per_secret() {
        let a = password(b"s1", "sip-register");
        assert_eq!(a.len(), 64);
        assert_eq!(a, password(b"s1", "sip-register"), "stable across restarts");
        assert_ne!(a, password(b"s1", "mcptt-group"));
        assert_ne!(a, password(b"s2", "sip-register"));
    }

    #[test]
    fn rules_confine_keys_and_channels_to_the_prefix() {
        let r = acl_rules("sip-register", "pw", &[]);
        assert_eq!(r[0], "reset", "converges from any earlier rule set");
        assert!(r.contains(&"~fn:sip-register:*".to_string()));
        assert!(r.contains(&"&fn:sip-register:*".to_string()));
        assert!(!r.iter().any(|x| x == "~*" || x == "&*" || x == "allkeys"));
        for denied in ["-@admin", "-@dangerous", "-scan", "-select"] {
            assert!(r.contains(&denied.to_string()), "{denied}");
        }
    }

    #[test]
    fn urls_get_the_functions_own_credentials() {
        assert_eq!(
            url_with_credentials("redis://redis:6379", "fn-a", "p w"),
            "redis://fn-a:p%20w@redis:6379"
        );
        assert_eq!(
            url_with_credentials("redis://:control@redis:6379/0", "fn-a", "x"),
            "redis://fn-a:x@redis:6379/0"
        );
        assert_eq!(
            url_with_password("redis://redis:6379", "s3cr:t"),
            "redis://:s3cr%3At@redis:6379"
        );
        assert_eq!(
            url_with_password("redis://u:p@redis:6379", "other"),
            "redis://u:p@redis:6379"
        );
    }
}
