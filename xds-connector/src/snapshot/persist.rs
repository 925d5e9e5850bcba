//! The snapshot's record in Redis: key `<instance>:xds:snapshot`, value the JSON of
//! `GET /v1/snapshot` (every resource and the per-type versions). Written before a change is
//! pushed; read once at start so a restarted connector serves the same resources with the
//! same versions.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

use super::{version, Resources, Snapshot};
use crate::error::{Error, ErrorKind, Result};
use crate::model::SnapshotJson;

/// The Redis key holding an instance's snapshot.
pub fn key(instance: &str) -> String {
    format!("{instance}:xds:snapshot")
}

/// A connection to the Redis holding the snapshot (reconnects by itself).
#[derive(Clone)]
pub struct Persist {
    conn: ConnectionManager,
    key: String,
}

impl Persist {
    /// Connects to `url`; fails if Redis cannot be reached now.
    pub async fn connect(url: &str, instance: &str) -> Result<Persist> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::redis(format!("invalid Redis URL `{url}`"), e).retryable(false))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| Error::redis(format!("cannot connect to Redis at {url}"), e))?;
        Ok(Persist {
            conn,
            key: key(instance),
        })
    }

    /// The stored snapshot, `None` when the key does not exist.
    pub async fn load(&self) -> Result<Option<Snapshot>> {
        let mut conn = self.conn.clone();
        let text: Option<String> = conn
            .get(&self.key)
            .await
            .map_err(|e| Error::redis(format!("cannot read `{}`", self.key), e))?;
        text.map(|t| parse(&self.key, &t)).transpose()
    }

    /// Stores `snapshot`.
    pub async fn save(&self, snapshot: &Snapshot) -> Result<()> {
        let json = snapshot.resources.to_json(&snapshot.versions);
        let text = serde_json::to_string(&json).map_err(|e| {
            Error::new(ErrorKind::CorruptSnapshot, "cannot encode the snapshot").with_source(e)
        })?;
        let mut conn = self.conn.clone();
        conn.set::<_, _, ()>(&self.key, text)
            .await
            .map_err(|e| Error::redis(format!("cannot write `{}`", self.key), e))
    }
}

/// Parses a stored record, checking it as the REST API checks its input.
pub fn parse(key: &str, text: &str) -> Result<Snapshot> {
    let corrupt = |msg: String| {
        Error::new(
            ErrorKind::CorruptSnapshot,
            format!("the snapshot stored at `{key}` is unusable: {msg}"),
        )
        .retryable(false)
    };
    let json: SnapshotJson = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    let versions = version::from_strings(&json.versions).map_err(corrupt)?;
    let resources = Resources::from_json(json).map_err(|e| corrupt(e.message))?;
    Ok(Snapshot::new(resources, versions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::Kind;
    use sluice_common::xds::pb;

    #[test]
    fn a_record_round_trips_with_its_versions() {
        let mut r = Resources::default();
        r.clusters.insert(
            "hello".into(),
            pb::Cluster {
                name: "hello".into(),
                max_concurrency: 2,
                ..Default::default()
            },
        );
        r.endpoints.insert(
            "hello".into(),
            pb::ClusterLoadAssignment {
                cluster_name: "hello".into(),
                endpoints: vec![pb::Endpoint {
                    id: "c1".into(),
                    address: "10.0.0.2:8080".into(),
                    weight: 1,
                    health: pb::EndpointHealth::Draining as i32,
                    ..Default::default()
                }],
            },
        );
        let snap = Snapshot::new(r, [4, 9, 0, 2]);
        let text = serde_json::to_string(&snap.resources.to_json(&snap.versions)).expect("json");
        let back = parse("k", &text).expect("parses");
        assert_eq!(back.resources, snap.resources);
        assert_eq!(back.versions, snap.versions);
        for k in Kind::ALL {
            assert_eq!(back.encoded[k as usize], snap.encoded[k as usize]);
        }
    }

    #[test]
    fn a_damaged_record_is_refused_with_the_key() {
        let e = parse("sluice:xds:snapshot", "{\"clusters\": 3}").expect_err("bad record");
        assert_eq!(e.kind, ErrorKind::CorruptSnapshot);
        assert!(e.message.contains("sluice:xds:snapshot"), "{}", e.message);
    }
}
