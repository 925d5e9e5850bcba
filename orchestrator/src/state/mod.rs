//! What the orchestrator keeps in Redis, under `<instance>:` keys:
//!
//! | key | type | content |
//! |---|---|---|
//! | `<i>:functions` | hash | name → function record (spec JSON + source) |
//! | `<i>:desired` | hash | name → desired replicas |
//! | `<i>:replicas:<fn>` | hash | container id → replica JSON (state, address, times) |
//! | `<i>:events` | pub/sub | one JSON message per function change |
//! | `<i>:apikeys` | hash | key id → API key record (scopes, SHA-256 of the secret) |
//!
//! Redis is the shared view for the other components; the orchestrator itself can rebuild
//! everything but `desired` from the registry file and the engine, so a failed write is
//! logged and retried on the next change, never fatal.

pub mod users;

use std::collections::HashMap;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sluice_common::auth::{self, KeyRecord};
use sluice_common::registry::FunctionSpec;

use crate::error::{Error, Result};

/// Where a function's definition came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The registry file: removed when it disappears from the file.
    File,
    /// The deploy API: kept across file reloads.
    Api,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionRecord {
    pub spec: FunctionSpec,
    pub source: Source,
}

/// A replica as published in Redis.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReplicaRecord {
    pub id: String,
    pub name: String,
    /// `starting`, `ready`, `draining` or `stopping`.
    pub state: String,
    /// `ip:port` of the runtime, once known.
    pub address: Option<String>,
    pub image: String,
    pub created_unix_ms: u64,
    pub ready_unix_ms: Option<u64>,
}

#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    prefix: String,
}

impl Store {
    pub async fn connect(url: &str, instance: &str) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::redis(format!("invalid redis url {url}"), e).retryable(false))?;
        let conn = ConnectionManager::new(client)
            .await
            .map_err(|e| Error::redis(format!("cannot connect to redis at {url}"), e))?;
        Ok(Store {
            conn,
            prefix: instance.to_string(),
        })
    }

    /// The connection, for the function-state users (same Redis, same credentials).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    fn key(&self, k: &str) -> String {
        format!("{}:{k}", self.prefix)
    }

    pub async fn ping(&self) -> Result<()> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut c)
            .await
            .map_err(|e| Error::redis("redis ping failed", e))?;
        Ok(())
    }

    pub async fn functions(&self) -> Result<HashMap<String, FunctionRecord>> {
        let mut c = self.conn.clone();
        let raw: HashMap<String, String> = c
            .hgetall(self.key("functions"))
            .await
            .map_err(|e| Error::redis("cannot read functions", e))?;
        let mut out = HashMap::new();
        for (name, json) in raw {
            match serde_json::from_str::<FunctionRecord>(&json) {
                Ok(r) => {
                    out.insert(name, r);
                }
                Err(e) => {
                    tracing::warn!(function = %name, error = %e, "ignoring unreadable function record in redis")
                }
            }
        }
        Ok(out)
    }

    pub async fn put_function(&self, rec: &FunctionRecord) -> Result<()> {
        let mut c = self.conn.clone();
        let json = serde_json::to_string(rec).unwrap_or_default();
        let _: () = c
            .hset(self.key("functions"), &rec.spec.name, json)
            .await
            .map_err(|e| Error::redis("cannot write function", e))?;
        self.publish(&rec.spec.name, "updated").await
    }

    pub async fn delete_function(&self, name: &str) -> Result<()> {
        let mut c = self.conn.clone();
        let _: () = redis::pipe()
            .hdel(self.key("functions"), name)
            .hdel(self.key("desired"), name)
            .del(self.key(&format!("replicas:{name}")))
            .query_async(&mut c)
            .await
            .map_err(|e| Error::redis("cannot delete function", e))?;
        self.publish(name, "removed").await
    }

    /// Every API key (their hashes, never secrets), oldest first.
    pub async fn api_keys(&self) -> Result<Vec<KeyRecord>> {
        let mut c = self.conn.clone();
        let raw: HashMap<String, String> = c
            .hgetall(auth::keys_key(&self.prefix))
            .await
            .map_err(|e| Error::redis("cannot read API keys", e))?;
        let mut out: Vec<KeyRecord> = raw
            .into_iter()
            .filter_map(|(id, json)| match serde_json::from_str(&json) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(key = %id, error = %e, "ignoring unreadable API key record");
                    None
                }
            })
            .collect();
        out.sort_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)));
        Ok(out)
    }

    pub async fn api_key(&self, id: &str) -> Result<Option<KeyRecord>> {
        let mut c = self.conn.clone();
        let raw: Option<String> = c
            .hget(auth::keys_key(&self.prefix), id)
            .await
            .map_err(|e| Error::redis("cannot read an API key", e))?;
        Ok(raw.and_then(|j| serde_json::from_str(&j).ok()))
    }

    pub async fn put_api_key(&self, rec: &KeyRecord) -> Result<()> {
        let mut c = self.conn.clone();
        let json = serde_json::to_string(rec).unwrap_or_default();
        let _: () = c
            .hset(auth::keys_key(&self.prefix), &rec.id, json)
            .await
            .map_err(|e| Error::redis("cannot store an API key", e))?;
        Ok(())
    }

    /// False when there was no such key.
    pub async fn delete_api_key(&self, id: &str) -> Result<bool> {
        let mut c = self.conn.clone();
        let n: u32 = c
            .hdel(auth::keys_key(&self.prefix), id)
            .await
            .map_err(|e| Error::redis("cannot delete an API key", e))?;
        Ok(n > 0)
    }

    pub async fn desired(&self) -> Result<HashMap<String, u32>> {
        let mut c = self.conn.clone();
        c.hgetall(self.key("desired"))
            .await
            .map_err(|e| Error::redis("cannot read desired replicas", e))
    }

    pub async fn set_desired(&self, name: &str, n: u32) -> Result<()> {
        let mut c = self.conn.clone();
        let _: () = c
            .hset(self.key("desired"), name, n)
            .await
            .map_err(|e| Error::redis("cannot write desired replicas", e))?;
        Ok(())
    }

    /// Replaces the published replica list of `function`.
    pub async fn put_replicas(&self, function: &str, replicas: &[ReplicaRecord]) -> Result<()> {
        let mut c = self.conn.clone();
        let key = self.key(&format!("replicas:{function}"));
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key);
        for r in replicas {
            pipe.hset(&key, &r.id, serde_json::to_string(r).unwrap_or_default());
        }
        let _: () = pipe
            .query_async(&mut c)
            .await
            .map_err(|e| Error::redis("cannot write replicas", e))?;
        self.publish(function, "replicas").await
    }

    async fn publish(&self, function: &str, what: &str) -> Result<()> {
        let mut c = self.conn.clone();
        let msg = serde_json::json!({ "function": function, "change": what }).to_string();
        let _: () = c
            .publish(self.key("events"), msg)
            .await
            .map_err(|e| Error::redis("cannot publish", e))?;
        Ok(())
    }
}
