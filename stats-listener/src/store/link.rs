//! A Redis connection that is made on first use and survives outages.
//!
//! Startup never waits for Redis: the first command connects. Once made, the
//! `ConnectionManager` reconnects by itself; every command is bounded by a response
//! timeout, so a dead server turns into an error (the caller retries), never a hang.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::{Error, ErrorKind, Result};

/// Longest wait for a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for an answer.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A lazily connected Redis link (one per task that talks to Redis).
pub struct RedisLink {
    client: redis::Client,
    conn: Option<ConnectionManager>,
}

impl RedisLink {
    pub fn new(client: redis::Client) -> RedisLink {
        RedisLink { client, conn: None }
    }

    /// The connection, connecting first if needed.
    pub async fn conn(&mut self) -> Result<&mut ConnectionManager> {
        if self.conn.is_none() {
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(CONNECT_TIMEOUT)
                .set_response_timeout(RESPONSE_TIMEOUT)
                .set_number_of_retries(1)
                .set_max_delay(1000);
            let made = tokio::time::timeout(
                CONNECT_TIMEOUT * 3,
                ConnectionManager::new_with_config(self.client.clone(), cfg),
            )
            .await
            .map_err(|_| Error::new(ErrorKind::Redis, "timed out connecting"))?
            .map_err(Error::redis)?;
            self.conn = Some(made);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Redis, "not connected"))
    }
}

/// Whether Redis answers a PING within the timeouts (a fresh connection: the answer reflects
/// now, not a cached state). `Err` names the failure.
pub async fn ping(client: &redis::Client) -> Result<()> {
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT);
    let mut conn = tokio::time::timeout(
        CONNECT_TIMEOUT * 2,
        client.get_multiplexed_async_connection_with_config(&cfg),
    )
    .await
    .map_err(|_| Error::new(ErrorKind::Redis, "timed out connecting"))?
    .map_err(Error::redis)?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map_err(Error::redis)?;
    Ok(())
}
