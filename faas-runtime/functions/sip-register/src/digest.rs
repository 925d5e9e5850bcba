//! Digest authentication for REGISTER (RFC 3261 §22.4 with RFC 8760's algorithms:
//! SHA-256 offered first, MD5 for older phones; qop=auth, and RFC 2069 style without qop).
//!
//! Nonces are stateless — `<ms-timestamp hex>.<HMAC(secret, timestamp)>` — so any replica
//! can check a nonce another replica issued. Users are stored as HA1 values per algorithm
//! (`H(user:realm:password)`), never as passwords. Pure functions.

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};

use crate::headers::digest_params;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Md5,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    /// Every algorithm; a user is stored with an HA1 for each.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

    /// The algorithm's name in storage keys (`ha1_<key>`).
    pub fn key(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Md5 => "md5",
        }
    }

    pub fn from_name(s: &str) -> Option<Algorithm> {
        if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else {
            None
        }
    }

    pub fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Sha256 => to_hex(&Sha256::digest(data.as_bytes())),
            Algorithm::Md5 => to_hex(&Md5::digest(data.as_bytes())),
        }
    }
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `H(username:realm:password)`.
pub fn ha1(alg: Algorithm, user: &str, realm: &str, password: &str) -> String {
    alg.hash(&format!("{user}:{realm}:{password}"))
}

fn mac(secret: &[u8], text: &str) -> String {
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut m) => {
            m.update(text.as_bytes());
            to_hex(&m.finalize().into_bytes()[..16])
        }
        Err(_) => String::new(),
    }
}

/// Compares two secrets (MACs, digest responses, tokens) looking at every byte, so the time
/// taken does not tell how much of a guess was right.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub fn make_nonce(secret: &[u8], now_ms: u64) -> String {
    let ts = format!("{now_ms:x}");
    let sig = mac(secret, &ts);
    format!("{ts}.{sig}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    Valid,
    /// Ours, but older than the lifetime: challenge again with `stale=true`.
    Stale,
    Invalid,
}

pub fn check_nonce(secret: &[u8], nonce: &str, now_ms: u64, lifetime_ms: u64) -> NonceState {
    let Some((ts, sig)) = nonce.split_once('.') else {
        return NonceState::Invalid;
    };
    let Ok(issued) = u64::from_str_radix(ts, 16) else {
        return NonceState::Invalid;
    };
    if !same_secret(&mac(secret, ts), sig) {
        return NonceState::Invalid;
    }
    if issued > now_ms.saturating_add(5_000) || now_ms.saturating_sub(issued) > lifetime_ms {
        return NonceState::Stale;
    }
    NonceState::Valid
}

/// One `WWW-Authenticate` value per algorithm, SHA-256 first (RFC 8760 §2.4).
pub fn challenges(
    realm: &str,
    nonce: &str,
    algs: &[Algorithm],
    stale: bool,
) -> Vec<(String, String)> {
    algs.iter()
        .map(|a| {
            let stale = if stale { ", stale=true" } else { "" };
            (
                "WWW-Authenticate".to_string(),
                format!(
                    "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                    a.name()
                ),
            )
        })
        .collect()
}

/// The Authorization header's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    /// `(qop, nc, cnonce)` when the client used qop=auth.
    pub qop: Option<(String, String, String)>,
}

pub fn parse_credentials(value: &str) -> Option<Credentials> {
    let p = digest_params(value)?;
    let get = |n: &str| p.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let algorithm = match get("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::from_name(&a)?,
    };
    let qop = match get("qop") {
        None => None,
        Some(q) if q.eq_ignore_ascii_case("auth") => Some((q, get("nc")?, get("cnonce")?)),
        Some(_) => return None,
    };
    Some(Credentials {
        username: get("username")?,
        realm: get("realm")?,
        nonce: get("nonce")?,
        uri: get("uri")?,
        response: get("response")?.to_ascii_lowercase(),
        algorithm,
        qop,
    })
}

/// The response a client knowing `ha1` computes for `method`.
pub fn expected_response(c: &Credentials, ha1: &str, method: &str) -> String {
    let ha2 = c.algorithm.hash(&format!("{method}:{}", c.uri));
    match &c.qop {
        Some((qop, nc, cnonce)) => c
            .algorithm
            .hash(&format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", c.nonce)),
        None => c.algorithm.hash(&format!("{ha1}:{}:{ha2}", c.nonce)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2617_example_md5() {
        // RFC 2617 §3.5's worked example (HTTP, same digest arithmetic).
        let c = parse_credentials(r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#).expect("parses");
        let ha1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert_eq!(expected_response(&c, &ha1, "GET"), c.response);
    }

    #[test]
    fn rfc_7616_example_sha256() {
        // RFC 7616 §3.9.1's SHA-256 example.
        let c = parse_credentials(r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1""#).expect("parses");
        let ha1 = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        assert_eq!(expected_response(&c, &ha1, "GET"), c.response);
    }

    #[test]
    fn nonces_are_checked_and_age() {
        let n = make_nonce(b"k", 1_000_000);
        assert_eq!(check_nonce(b"k", &n, 1_000_500, 300_000), NonceState::Valid);
        assert_eq!(check_nonce(b"k", &n, 1_400_000, 300_000), NonceState::Stale);
        assert_eq!(
            check_nonce(b"other", &n, 1_000_500, 300_000),
            NonceState::Invalid
        );
        assert_eq!(
            check_nonce(b"k", "f4240.00", 1_000_500, 300_000),
            NonceState::Invalid
        );
        assert_eq!(check_nonce(b"k", "garbage", 0, 1), NonceState::Invalid);
    }

    #[test]
    fn challenges_offer_sha256_first() {
        let c = challenges("r", "n", &[Algorithm::Sha256, Algorithm::Md5], true);
        assert!(c[0].1.contains("algorithm=SHA-256"));
        assert!(c[1].1.contains("algorithm=MD5"));
        assert!(c[0].1.ends_with("stale=true"));
        assert!(parse_credentials(r#"Digest username="a", realm="r", nonce="n", uri="u", response="x", algorithm=SHA-512-256"#).is_none());
    }
}
