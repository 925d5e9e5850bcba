//! The registrar's state in Redis, under the function's own prefix (`SLUICE_STATE_PREFIX`,
//! reached with its own ACL user: see `sluice_common::state`). Nothing is cached in the
//! process: any replica serves any REGISTER.
//!
//! | key | type | content |
//! |---|---|---|
//! | `<p>aor:<aor>` | hash | binding key → binding JSON (`uri`, `call_id`, `cseq`, `expires_at_ms`, `q`); the key expires with its last binding |
//! | `<p>events` | stream | one entry per change: `type` (`registered`/`refreshed`/`unregistered`), `aor`, `contact`, `expires`, `at_ms` |
//! | `<p>user:<name>` | hash | `realm`, `ha1_sha256`, `ha1_md5` |
//! | `<p>users` | set | provisioned user names |

use redis::{Commands, Connection, RedisResult};

use crate::digest::Algorithm;
use crate::registrar::{Binding, Outcome};

/// The user hash field holding `algorithm`'s HA1.
fn ha1_field(algorithm: Algorithm) -> String {
    format!("ha1_{}", algorithm.key())
}

pub struct Store {
    client: redis::Client,
    prefix: String,
    events_maxlen: usize,
}

/// How many times a REGISTER is re-decided when another replica changed the same AOR
/// between read and commit (optimistic locking with WATCH).
const MAX_ATTEMPTS: usize = 16;
/// Longest wait for Redis (connect, each read, each write).
const IO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Store {
    pub fn new(url: &str, prefix: &str, events_maxlen: usize) -> RedisResult<Store> {
        Ok(Store {
            client: redis::Client::open(url)?,
            prefix: prefix.to_string(),
            events_maxlen,
        })
    }

    /// A new connection; every wait on it is bounded, so a lost Redis fails calls (503)
    /// instead of hanging them.
    pub fn connect(&self) -> RedisResult<Connection> {
        let c = self.client.get_connection_with_timeout(IO_TIMEOUT)?;
        c.set_read_timeout(Some(IO_TIMEOUT))?;
        c.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(c)
    }

    pub fn events_key(&self) -> String {
        format!("{}events", self.prefix)
    }

    fn aor_key(&self, aor: &str) -> String {
        format!("{}aor:{aor}", self.prefix)
    }

    fn user_key(&self, name: &str) -> String {
        format!("{}user:{name}", self.prefix)
    }

    /// Reads the AOR's bindings, lets `decide` choose, and commits its writes and events in
    /// one transaction (all or nothing, RFC 3261 §10.3 step 7), re-deciding on a conflict.
    pub fn register(
        &self,
        con: &mut Connection,
        aor: &str,
        now_ms: impl Fn() -> u64,
        mut decide: impl FnMut(&[(String, Binding)], u64) -> Outcome,
    ) -> RedisResult<Outcome> {
        let key = self.aor_key(aor);
        for _ in 0..MAX_ATTEMPTS {
            redis::cmd("WATCH").arg(&key).exec(con)?;
            let raw: Vec<(String, String)> = con.hgetall(&key)?;
            // A value this version cannot read is dropped (and overwritten), never fatal.
            let current: Vec<(String, Binding)> = raw
                .into_iter()
                .filter_map(|(k, v)| serde_json::from_str(&v).ok().map(|b| (k, b)))
                .collect();
            let now = now_ms();
            let out = decide(&current, now);
            // Events come only with writes: nothing to write, nothing to publish.
            if !out.writes() {
                redis::cmd("UNWATCH").exec(con)?;
                return Ok(out);
            }
            let mut p = redis::pipe();
            p.atomic();
            if !out.delete.is_empty() {
                p.hdel(&key, &out.delete).ignore();
            }
            for (k, b) in &out.put {
                let v = serde_json::to_string(b).unwrap_or_default();
                p.hset(&key, k, v).ignore();
            }
            // The key lives as long as its longest binding.
            let mut latest = current
                .iter()
                .filter(|(k, b)| b.expires_at_ms > now && !out.delete.contains(k))
                .map(|(_, b)| b.expires_at_ms)
                .max()
                .unwrap_or(0);
            for (_, b) in &out.put {
                latest = latest.max(b.expires_at_ms);
            }
            if latest > now {
                p.cmd("PEXPIREAT").arg(&key).arg(latest).ignore();
            } else {
                p.del(&key).ignore();
            }
            for e in &out.events {
                p.cmd("XADD")
                    .arg(self.events_key())
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(self.events_maxlen)
                    .arg("*")
                    .arg("type")
                    .arg(e.kind)
                    .arg("aor")
                    .arg(&e.aor)
                    .arg("contact")
                    .arg(&e.contact)
                    .arg("expires")
                    .arg(e.expires)
                    .arg("at_ms")
                    .arg(now)
                    .ignore();
            }
            let done: Option<()> = p.query(con)?;
            if done.is_some() {
                return Ok(out);
            }
        }
        Err(redis::RedisError::from((
            redis::ErrorKind::TryAgain,
            "the AOR kept changing under this REGISTER",
        )))
    }

    /// The HA1 of `user` for `algorithm` in `realm`.
    pub fn ha1(
        &self,
        con: &mut Connection,
        user: &str,
        realm: &str,
        algorithm: Algorithm,
    ) -> RedisResult<Option<String>> {
        let (stored_realm, ha1): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.user_key(user))
            .arg("realm")
            .arg(ha1_field(algorithm))
            .query(con)?;
        Ok(match stored_realm {
            Some(r) if r == realm => ha1,
            _ => None,
        })
    }

    /// Stores `user` for `realm` with an HA1 per algorithm.
    pub fn put_user(
        &self,
        con: &mut Connection,
        user: &str,
        realm: &str,
        ha1s: &[(Algorithm, String)],
    ) -> RedisResult<()> {
        let mut fields = vec![("realm".to_string(), realm.to_string())];
        fields.extend(ha1s.iter().map(|(a, h)| (ha1_field(*a), h.clone())));
        redis::pipe()
            .atomic()
            .hset_multiple(self.user_key(user), &fields)
            .ignore()
            .sadd(format!("{}users", self.prefix), user)
            .ignore()
            .exec(con)
    }

    pub fn delete_user(&self, con: &mut Connection, user: &str) -> RedisResult<bool> {
        let (n, _): (u32, u32) = redis::pipe()
            .atomic()
            .del(self.user_key(user))
            .srem(format!("{}users", self.prefix), user)
            .query(con)?;
        Ok(n > 0)
    }

    pub fn users(&self, con: &mut Connection) -> RedisResult<Vec<String>> {
        let mut v: Vec<String> = con.smembers(format!("{}users", self.prefix))?;
        v.sort();
        Ok(v)
    }
}
