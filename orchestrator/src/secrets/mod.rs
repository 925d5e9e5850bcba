//! Function secrets (`/system/secrets`, registry `secrets:`): values sealed with the
//! installation's key ([`cipher`]) in the Redis hash `<instance>:secrets` (name → [`Sealed`]
//! JSON). The key is read from a file at start and never written anywhere; Redis holds only
//! ciphertext. A value is opened only to be copied into a function container
//! ([`crate::docker::Engine::launch`]); no API returns it.

pub mod cipher;

use std::collections::HashMap;
use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use sha2::{Digest, Sha256};
use sluice_common::secrets::{self, MAX_SECRETS};
use zeroize::Zeroizing;

pub use cipher::{Cipher, Sealed};

use crate::error::{Error, ErrorKind, Result};

/// A secret as the API lists it: never its value.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretMeta {
    pub name: String,
    pub updated_unix_ms: u64,
}

/// One opened secret, for a container.
pub struct Opened {
    pub name: String,
    pub value: Zeroizing<Vec<u8>>,
}

#[derive(Clone)]
pub struct Secrets {
    conn: ConnectionManager,
    instance: String,
    /// `None`: no key configured (`SLUICE_SECRETS_KEY_FILE`); secrets are then refused.
    cipher: Option<Arc<Cipher>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn missing(name: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("secret `{name}` does not exist: create it with POST /system/secrets"),
    )
}

/// Creates only when absent (1) or updates only when present (1); 0 otherwise.
const PUT_IF: &str = r"
local there = redis.call('HEXISTS', KEYS[1], ARGV[1])
if (ARGV[3] == 'create' and there == 1) or (ARGV[3] == 'update' and there == 0) then
  return 0
end
if ARGV[3] == 'create' and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

impl Secrets {
    pub fn new(conn: ConnectionManager, instance: &str, cipher: Option<Cipher>) -> Self {
        Secrets {
            conn,
            instance: instance.to_string(),
            cipher: cipher.map(Arc::new),
        }
    }

    fn key(&self) -> String {
        format!("{}:secrets", self.instance)
    }

    /// Associated data of a value: the installation and the name.
    fn aad(&self, name: &str) -> String {
        format!("sluice-secret\0{}\0{name}", self.instance)
    }

    fn cipher(&self) -> Result<&Cipher> {
        self.cipher.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "secrets are off: the orchestrator has no key (set SLUICE_SECRETS_KEY_FILE; `make up` generates secrets/secrets-key)",
            )
            .retryable(false)
        })
    }

    async fn raw(&self) -> Result<HashMap<String, String>> {
        let mut c = self.conn.clone();
        c.hgetall(self.key())
            .await
            .map_err(|e| Error::redis("cannot read the secrets", e))
    }

    /// Every secret's name and last change, sorted by name.
    pub async fn list(&self) -> Result<Vec<SecretMeta>> {
        let mut out: Vec<SecretMeta> = self
            .raw()
            .await?
            .into_iter()
            .map(|(name, json)| SecretMeta {
                updated_unix_ms: serde_json::from_str::<Sealed>(&json)
                    .map_or(0, |s| s.updated_unix_ms),
                name,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// `create` true: refuses an existing name (Conflict); false: refuses a missing one.
    pub async fn put(&self, name: &str, value: &[u8], create: bool) -> Result<()> {
        if !secrets::is_name(name) {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!("name: {}", secrets::NAME_RULE),
            ));
        }
        if value.len() > secrets::MAX_VALUE_BYTES {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "the value has {} bytes; at most {} are kept",
                    value.len(),
                    secrets::MAX_VALUE_BYTES
                ),
            ));
        }
        let sealed = self.cipher()?.seal(&self.aad(name), value, now_ms())?;
        let json = serde_json::to_string(&sealed).unwrap_or_default();
        let mut c = self.conn.clone();
        let done: i64 = redis::cmd("EVAL")
            .arg(PUT_IF)
            .arg(1)
            .arg(self.key())
            .arg(name)
            .arg(json)
            .arg(if create { "create" } else { "update" })
            .arg(MAX_SECRETS)
            .query_async(&mut c)
            .await
            .map_err(|e| Error::redis(format!("cannot store secret `{name}`"), e))?;
        match (done, create) {
            (1, _) => Ok(()),
            (-1, _) => Err(Error::new(
                ErrorKind::Conflict,
                format!("this installation already holds {MAX_SECRETS} secrets: delete some first"),
            )),
            (_, true) => Err(Error::new(
                ErrorKind::Conflict,
                format!("secret `{name}` exists already: update it with PUT /system/secrets"),
            )),
            (_, false) => Err(missing(name)),
        }
    }

    /// False when there was no such secret.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        let mut c = self.conn.clone();
        let n: u32 = c
            .hdel(self.key(), name)
            .await
            .map_err(|e| Error::redis(format!("cannot delete secret `{name}`"), e))?;
        Ok(n > 0)
    }

    async fn sealed(&self, names: &[String]) -> Result<Vec<(String, Option<Sealed>)>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        let raw: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.key())
            .arg(names)
            .query_async(&mut c)
            .await
            .map_err(|e| Error::redis("cannot read the secrets", e))?;
        Ok(names
            .iter()
            .zip(raw)
            .map(|(n, json)| {
                (
                    n.clone(),
                    json.and_then(|j| serde_json::from_str::<Sealed>(&j).ok()),
                )
            })
            .collect())
    }

    /// Those of `names` that do not exist (secrets off: an error, when any is named).
    pub async fn missing(&self, names: &[String]) -> Result<Vec<String>> {
        if !names.is_empty() {
            self.cipher()?;
        }
        Ok(self
            .sealed(names)
            .await?
            .into_iter()
            .filter(|(_, s)| s.is_none())
            .map(|(n, _)| n)
            .collect())
    }

    /// The values of `names`, opened; a missing or unopenable secret is an error naming it.
    pub async fn open(&self, names: &[String]) -> Result<Vec<Opened>> {
        let mut out = Vec::with_capacity(names.len());
        for (name, sealed) in self.sealed(names).await? {
            let sealed = sealed.ok_or_else(|| missing(&name))?;
            let value = self
                .cipher()?
                .open(&self.aad(&name), &sealed)
                .map_err(|e| {
                    Error::new(ErrorKind::Secret, format!("secret `{name}`: {}", e.message))
                        .retryable(false)
                })?;
            out.push(Opened { name, value });
        }
        Ok(out)
    }

    /// A digest of the current versions of `names` (a missing one counts as missing): it
    /// changes whenever one of them is written, so replicas holding an older value are
    /// recognised as outdated.
    pub async fn digest(&self, names: &[String]) -> Result<String> {
        let mut h = Sha256::new();
        for (name, sealed) in self.sealed(names).await? {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(sealed.map_or_else(|| "missing".to_string(), |s| s.rev));
            h.update([0]);
        }
        Ok(hex::encode(&h.finalize()[..8]))
    }

    /// Re-seals with the current key every value sealed with `previous` (key rotation).
    /// Returns how many were re-sealed.
    pub async fn reseal_from(&self, previous: &Cipher) -> Result<usize> {
        let current = self.cipher()?;
        let mut done = 0;
        for (name, json) in self.raw().await? {
            let Ok(sealed) = serde_json::from_str::<Sealed>(&json) else {
                continue;
            };
            if sealed.key != previous.id() {
                continue;
            }
            let aad = self.aad(&name);
            let value = previous.open(&aad, &sealed).map_err(|e| {
                Error::new(ErrorKind::Secret, format!("secret `{name}`: {}", e.message))
            })?;
            let resealed = Sealed {
                rev: sealed.rev,
                ..current.seal(&aad, &value, sealed.updated_unix_ms)?
            };
            let mut c = self.conn.clone();
            let _: () = c
                .hset(
                    self.key(),
                    &name,
                    serde_json::to_string(&resealed).unwrap_or_default(),
                )
                .await
                .map_err(|e| Error::redis(format!("cannot store secret `{name}`"), e))?;
            done += 1;
        }
        Ok(done)
    }
}
