//! Redis ACL users for functions declared with `state: redis` (the contract is in
//! [`sluice_common::state`]): created before a function's first replica starts, once per
//! orchestrator process, and saved to Redis's ACL file when it has one.

use std::collections::HashMap;
use std::sync::Arc;

use redis::aio::ConnectionManager;
use sluice_common::state;
use tokio::sync::Mutex;

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct StateUsers {
    conn: ConnectionManager,
    /// The control plane's secret the passwords derive from.
    secret: Arc<Vec<u8>>,
    /// Redis as function containers reach it, without credentials.
    url: String,
    /// The rules each function's user was last given by this process.
    done: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

impl StateUsers {
    pub fn new(conn: ConnectionManager, secret: Vec<u8>, url: String) -> Self {
        StateUsers {
            conn,
            secret: Arc::new(secret),
            url,
            done: Arc::default(),
        }
    }

    /// Makes sure `function`'s user exists with exactly its rights, and returns the
    /// environment its containers get.
    pub async fn ensure(&self, function: &str, events_from: &[String]) -> Result<Vec<String>> {
        let user = state::username(function);
        let password = state::password(&self.secret, function);
        let rules = state::acl_rules(function, &password, events_from);
        let mut done = self.done.lock().await;
        if done.get(function) != Some(&rules) {
            let mut c = self.conn.clone();
            let mut cmd = redis::cmd("ACL");
            cmd.arg("SETUSER").arg(&user);
            for rule in &rules {
                cmd.arg(rule);
            }
            let _: () = cmd.query_async(&mut c).await.map_err(|e| {
                Error::redis(format!("cannot create the Redis user of {function}"), e)
            })?;
            // Persist it when Redis runs with an ACL file (the compose stack's does), so a
            // restarted Redis still knows running replicas' user.
            let saved: redis::RedisResult<()> =
                redis::cmd("ACL").arg("SAVE").query_async(&mut c).await;
            if let Err(e) = saved {
                tracing::debug!(function, error = %e, "ACL SAVE failed (no ACL file?)");
            }
            tracing::info!(function, user = %user, prefix = %state::key_prefix(function), ?events_from, "state user ready");
            done.insert(function.to_string(), rules);
        }
        Ok(vec![
            format!(
                "{}={}",
                state::ENV_URL,
                state::url_with_credentials(&self.url, &user, &password)
            ),
            format!("{}={}", state::ENV_PREFIX, state::key_prefix(function)),
        ])
    }
}
