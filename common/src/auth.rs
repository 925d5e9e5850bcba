//! The credentials contract of the control API (`/system/*`) and of functions declared
//! `auth: key`, shared by the orchestrator (which checks credentials and keeps the keys) and
//! the gateway (which forwards them and asks the orchestrator about invoke keys).
//!
//! Two kinds of credential are accepted:
//!
//! * HTTP basic auth for the user [`ADMIN_USER`], whose password is a file the orchestrator
//!   reads (`make up` generates it into `secrets/admin-password`). It has every scope.
//! * Bearer API keys: `sluice_<id>_<secret>`, where `<id>` is 16 hex digits (public: it names
//!   the key in listings and logs) and `<secret>` is 64 hex digits (256 random bits, shown
//!   once when the key is created). Only the SHA-256 of the secret is stored, with the key's
//!   scopes, in the hash [`keys_key`] (`id` → [`KeyRecord`] JSON).
//!
//! Every secret comparison goes through [`ct_eq`] on digests of equal length, so the time it
//! takes says nothing about how much of a guess was right.
//!
//! | scope | may |
//! |---|---|
//! | `admin` | everything, including API keys and secrets |
//! | `deploy` | read, deploy, update, delete, scale functions, reload the registry |
//! | `invoke` | call functions declared `auth: key` |

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The basic-auth user name of the administrator.
pub const ADMIN_USER: &str = "admin";
/// Realm named in `WWW-Authenticate` challenges.
pub const REALM: &str = "sluice";
/// Header the gateway sets (always overwriting what a client sent) to the address of the
/// peer it accepted the request from: failed attempts are counted per address.
pub const CLIENT_HEADER: &str = "x-sluice-client";
/// Header the gateway sets when it asks the orchestrator about an invoke key: the function.
pub const FUNCTION_HEADER: &str = "x-sluice-function";
/// The orchestrator's internal path that checks an invoke credential (not under `/system`,
/// so the gateway never forwards a client to it). 204: allowed; 401/403/429 otherwise.
pub const VERIFY_INVOKE_PATH: &str = "/internal/auth/invoke";
/// The orchestrator's internal path that starts a function's first replica.
pub const WAKE_PATH: &str = "/internal/wake";

const KEY_PREFIX: &str = "sluice_";
const ID_LEN: usize = 16;
const SECRET_LEN: usize = 64;

/// What a credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Admin,
    Deploy,
    Invoke,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Admin, Scope::Deploy, Scope::Invoke];

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Deploy => "deploy",
            Scope::Invoke => "invoke",
        }
    }
}

/// True when `granted` covers `needed` (`admin` covers every scope).
pub fn allows(granted: &[Scope], needed: Scope) -> bool {
    granted.iter().any(|&g| g == Scope::Admin || g == needed)
}

/// A credential as presented in an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Basic { user: String, password: String },
    Key { id: String, secret: String },
}

/// Why an `Authorization` header was not understood (the client gets a 401 either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// Neither `Basic` nor `Bearer`.
    UnknownScheme,
    /// `Basic` with a value that is not base64 of `user:password` in UTF-8.
    MalformedBasic,
    /// `Bearer` with something that is not a Sluice key.
    MalformedKey,
}

impl std::fmt::Display for CredentialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CredentialError::UnknownScheme => "the Authorization scheme must be Basic or Bearer",
            CredentialError::MalformedBasic => "malformed Basic credentials",
            CredentialError::MalformedKey => "malformed API key",
        })
    }
}

/// Parses an `Authorization` header value (schemes are case-insensitive, RFC 9110).
pub fn parse_authorization(value: &str) -> Result<Credential, CredentialError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64_decode(rest).ok_or(CredentialError::MalformedBasic)?;
        let text = String::from_utf8(raw).map_err(|_| CredentialError::MalformedBasic)?;
        let (user, password) = text
            .split_once(':')
            .ok_or(CredentialError::MalformedBasic)?;
        Ok(Credential::Basic {
            user: user.to_string(),
            password: password.to_string(),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        let (id, secret) = parse_key(rest).ok_or(CredentialError::MalformedKey)?;
        Ok(Credential::Key {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    } else {
        Err(CredentialError::UnknownScheme)
    }
}

/// Splits a key `sluice_<id>_<secret>` into its id and secret.
pub fn parse_key(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, ID_LEN) && hex(secret, SECRET_LEN)).then_some((id, secret))
}

/// A new key: its id, the token to hand to the user once, and the hash to store.
pub struct NewKey {
    pub id: String,
    pub token: String,
    pub hash: String,
}

/// Makes a new random key.
pub fn new_key() -> NewKey {
    let id: [u8; ID_LEN / 2] = rand::random();
    let secret: [u8; SECRET_LEN / 2] = rand::random();
    let (id, secret) = (hex::encode(id), hex::encode(secret));
    NewKey {
        token: format!("{KEY_PREFIX}{id}_{secret}"),
        hash: secret_hash(&secret),
        id,
    }
}

/// The stored form of a key's secret: hex SHA-256 (the secret has 256 random bits, so a fast
/// hash is enough: nothing can be guessed from it).
pub fn secret_hash(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"sluice-api-key-v1:");
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// Constant-time equality of two byte strings (the length is not secret: compare digests).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// True when `supplied` is the password `expected`, compared in constant time over their
/// SHA-256 digests (equal length whatever the inputs).
pub fn password_matches(supplied: &str, expected: &str) -> bool {
    let d = |s: &str| Sha256::digest(s.as_bytes());
    ct_eq(&d(supplied), &d(expected))
}

/// True when `secret` is the one whose [`secret_hash`] is `stored`, in constant time.
pub fn key_matches(secret: &str, stored: &str) -> bool {
    ct_eq(secret_hash(secret).as_bytes(), stored.as_bytes())
}

/// A credential file's value: its first line, trimmed (the admin password, the xDS token).
pub fn read_secret_line(path: &std::path::Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// Redis hash of the API keys of `instance`: key id → [`KeyRecord`] JSON.
pub fn keys_key(instance: &str) -> String {
    format!("{instance}:apikeys")
}

/// An API key as stored (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    /// A label chosen by whoever created it (`ci`, `alice's laptop`, ...).
    pub name: String,
    pub scopes: Vec<Scope>,
    /// [`secret_hash`] of the secret.
    pub hash: String,
    pub created_unix_ms: u64,
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// Standard base64 with padding (for clients building `Basic` credentials).
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The `Authorization` value of basic auth as `user` with `password`.
pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64_encode(format!("{user}:{password}").as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_round_trip() {
        let h = basic("admin", "p:ss wörd");
        assert_eq!(
            parse_authorization(&h),
            Ok(Credential::Basic {
                user: "admin".into(),
                password: "p:ss wörd".into()
            })
        );
        // The scheme is case-insensitive; RFC 4648's examples decode.
        assert_eq!(base64_decode("Zm9vYmFy").as_deref(), Some(&b"foobar"[..]));
        assert_eq!(base64_decode("Zm9vYg==").as_deref(), Some(&b"foob"[..]));
        assert_eq!(base64_encode(b"fooba"), "Zm9vYmE=");
        assert!(matches!(
            parse_authorization("bAsIc YWRtaW46eA=="),
            Ok(Credential::Basic { .. })
        ));
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        for (h, e) in [
            ("Basic", CredentialError::MalformedBasic),
            ("Basic !!!!", CredentialError::MalformedBasic),
            ("Basic Zm9v", CredentialError::MalformedBasic), // "foo": no colon
            ("Basic Zg=a", CredentialError::MalformedBasic),
            ("Basic /w==", CredentialError::MalformedBasic), // not UTF-8
            ("Bearer", CredentialError::MalformedKey),
            ("Bearer sluice_12_34", CredentialError::MalformedKey),
            ("Digest x", CredentialError::UnknownScheme),
            ("", CredentialError::UnknownScheme),
        ] {
            assert_eq!(parse_authorization(h), Err(e), "{h:?}");
        }
    }

    #[test]
    fn a_new_key_parses_and_matches_only_its_own_hash() {
        let k = new_key();
        let Ok(Credential::Key { id, secret }) =
            parse_authorization(&format!("Bearer {}", k.token))
        else {
            panic!("a fresh key must parse");
        };
        assert_eq!(id, k.id);
        assert!(key_matches(&secret, &k.hash));
        let other = new_key();
        assert!(!key_matches(&secret, &other.hash));
        assert_ne!(k.id, other.id);
    }

    #[test]
    fn passwords_compare_whatever_their_lengths() {
        assert!(password_matches("s3cret", "s3cret"));
        assert!(!password_matches("s3cre", "s3cret"));
        assert!(!password_matches("", "s3cret"));
        assert!(!ct_eq(b"ab", b"abc"));
    }

    #[test]
    fn admin_covers_every_scope() {
        assert!(allows(&[Scope::Admin], Scope::Invoke));
        assert!(allows(&[Scope::Deploy], Scope::Deploy));
        assert!(!allows(&[Scope::Deploy], Scope::Admin));
        assert!(!allows(&[Scope::Invoke], Scope::Deploy));
        assert!(!allows(&[], Scope::Invoke));
        assert_eq!(Scope::parse("deploy"), Some(Scope::Deploy));
        assert_eq!(Scope::parse("root"), None);
    }

    proptest::proptest! {
        #[test]
        fn any_header_parses_or_errs(s in "\\PC{0,120}") {
            let _ = parse_authorization(&s);
        }

        #[test]
        fn any_basic_pair_round_trips(u in "[^:]{0,20}", p in "\\PC{0,40}") {
            let got = parse_authorization(&basic(&u, &p));
            proptest::prop_assert_eq!(got, Ok(Credential::Basic { user: u, password: p }));
        }
    }
}
