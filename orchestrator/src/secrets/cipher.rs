//! Sealing secret values at rest: XChaCha20-Poly1305 with a random 192-bit nonce per value
//! and the secret's identity as associated data, so a value copied under another name (or
//! another installation) does not open. Pure: no I/O but reading the key file.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};

/// Format version of [`Sealed`].
const VERSION: u8 = 1;

/// The key of an installation's secrets: 32 bytes, given as 64 hex digits in a file
/// (`SLUICE_SECRETS_KEY_FILE`) that never enters Redis.
pub struct Cipher {
    aead: XChaCha20Poly1305,
    /// Short public fingerprint of the key, stored next to each value so that a value sealed
    /// under another key is recognised (and re-sealed on rotation) instead of failing blindly.
    id: String,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cipher")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A sealed value as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sealed {
    pub v: u8,
    /// [`Cipher::id`] of the key it was sealed with.
    pub key: String,
    /// Hex nonce, fresh at every seal.
    pub nonce: String,
    /// The value's version: new when the value is written, kept when it is only re-sealed
    /// under a new key (so a key rotation does not replace any container).
    pub rev: String,
    /// Hex ciphertext with its tag.
    pub data: String,
    pub updated_unix_ms: u64,
}

fn secret_error(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Secret, msg).retryable(false)
}

impl Cipher {
    /// A key from its hex text (64 digits; surrounding white space ignored).
    pub fn from_hex(text: &str) -> Result<Self> {
        let bytes =
            Zeroizing::new(hex::decode(text.trim()).map_err(|_| {
                secret_error("the secrets key is not hex (64 hex digits expected)")
            })?);
        if bytes.len() != 32 {
            return Err(secret_error(format!(
                "the secrets key has {} bytes; 32 (64 hex digits) expected",
                bytes.len()
            )));
        }
        let aead = XChaCha20Poly1305::new_from_slice(&bytes)
            .map_err(|_| secret_error("the secrets key has the wrong length"))?;
        let mut h = Sha256::new();
        h.update(b"sluice-secrets-key-id\0");
        h.update(&*bytes);
        let id = hex::encode(&h.finalize()[..6]);
        Ok(Cipher { aead, id })
    }

    /// The key in the first line of `path`.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = Zeroizing::new(sluice_common::auth::read_secret_line(path).map_err(|e| {
            secret_error(format!(
                "cannot read the secrets key {}: {e}",
                path.display()
            ))
        })?);
        Self::from_hex(&text)
            .map_err(|e| secret_error(format!("{}: {}", path.display(), e.message)))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plain` as the value of the secret identified by `aad`.
    pub fn seal(&self, aad: &str, plain: &[u8], now_unix_ms: u64) -> Result<Sealed> {
        let nonce: [u8; 24] = rand::random();
        let data = self
            .aead
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| secret_error("cannot seal the value"))?;
        Ok(Sealed {
            v: VERSION,
            key: self.id.clone(),
            nonce: hex::encode(nonce),
            rev: hex::encode(&nonce[..8]),
            data: hex::encode(data),
            updated_unix_ms: now_unix_ms,
        })
    }

    /// Opens a value sealed for `aad`: a wrong key, another name or any change to the stored
    /// bytes is an error, never a wrong value.
    pub fn open(&self, aad: &str, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>> {
        if sealed.v != VERSION {
            return Err(secret_error(format!(
                "stored in format {} (this orchestrator reads {VERSION})",
                sealed.v
            )));
        }
        if sealed.key != self.id {
            return Err(secret_error(format!(
                "sealed with key {} but the configured key is {} (a rotated key: give the old one as SLUICE_SECRETS_PREVIOUS_KEY_FILE)",
                sealed.key, self.id
            )));
        }
        let nonce = hex::decode(&sealed.nonce).ok().filter(|n| n.len() == 24);
        let data = hex::decode(&sealed.data).ok();
        let (Some(nonce), Some(data)) = (nonce, data) else {
            return Err(secret_error("the stored value is damaged"));
        };
        self.aead
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &data,
                    aad: aad.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| {
                secret_error(
                    "the stored value does not open with the configured key (damaged or moved)",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const OTHER: &str = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_its_name() {
        let c = Cipher::from_hex(KEY).unwrap();
        let s = c.seal("sluice/db", b"hunter2", 1).unwrap();
        assert_eq!(&*c.open("sluice/db", &s).unwrap(), b"hunter2");
        assert!(
            !s.data.contains(&hex::encode(b"hunter2")),
            "ciphertext, not the value"
        );

        let moved = c.open("sluice/other", &s).unwrap_err();
        assert_eq!(moved.kind, ErrorKind::Secret);

        let other = Cipher::from_hex(OTHER).unwrap();
        assert_ne!(other.id(), c.id());
        let e = other.open("sluice/db", &s).unwrap_err();
        assert!(
            e.message.contains("SLUICE_SECRETS_PREVIOUS_KEY_FILE"),
            "{e}"
        );
        // Same id claimed, different key: the tag check refuses it.
        let forged = Sealed {
            key: other.id().to_string(),
            ..s.clone()
        };
        assert!(other.open("sluice/db", &forged).is_err());
    }

    #[test]
    fn every_write_gets_a_fresh_nonce_and_any_change_is_refused() {
        let c = Cipher::from_hex(KEY).unwrap();
        let a = c.seal("n", b"same", 1).unwrap();
        let b = c.seal("n", b"same", 1).unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.data, b.data);
        let mut flipped = a.clone();
        let last = flipped.data.pop().unwrap();
        flipped.data.push(if last == '0' { '1' } else { '0' });
        assert!(c.open("n", &flipped).is_err());
        let bad_nonce = Sealed {
            nonce: "zz".into(),
            ..a.clone()
        };
        assert!(c.open("n", &bad_nonce).is_err());
        let future = Sealed { v: 9, ..a };
        assert!(c
            .open("n", &future)
            .unwrap_err()
            .message
            .contains("format 9"));
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        assert!(Cipher::from_hex("abc").unwrap_err().message.contains("hex"));
        assert!(Cipher::from_hex("abcd")
            .unwrap_err()
            .message
            .contains("2 bytes"));
        assert!(Cipher::from_hex(&format!(" {KEY}\n")).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(Cipher::load(&missing)
            .unwrap_err()
            .message
            .contains("cannot read"));
    }
}
