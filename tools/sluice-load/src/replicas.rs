//! The replica poller: `GET {system}/system/function/{fn}` once a second, in its own task.
//!
//! `availableReplicas` is "ready", `replicas` is "desired". A failed poll (no answer,
//! non-2xx, not that JSON) is recorded as unknown (`?`) and never stops the run.

use std::time::Duration;

use reqwest::{Client, Url};
use serde_json::Value;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::profile::second_of;
use crate::stats::{Recorder, Replicas};

/// How long one poll may take; shorter than the poll period so polls never pile up.
const POLL_TIMEOUT: Duration = Duration::from_millis(900);

/// Reads `ready`/`desired` from a system API function document.
pub fn parse(doc: &Value) -> Replicas {
    match (
        doc.get("availableReplicas").and_then(Value::as_u64),
        doc.get("replicas").and_then(Value::as_u64),
    ) {
        (Some(ready), Some(desired)) => Replicas::Seen { ready, desired },
        _ => Replicas::Unknown,
    }
}

/// One poll.
pub async fn fetch(client: &Client, url: &Url, auth: Option<&str>) -> Replicas {
    let doc = async {
        let mut req = client.get(url.clone());
        if let Some(a) = auth {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        let resp = req.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json::<Value>().await.ok()
    };
    match tokio::time::timeout(POLL_TIMEOUT, doc).await {
        Ok(Some(doc)) => parse(&doc),
        _ => Replicas::Unknown,
    }
}

/// Polls at the start of every second of the run until `stop` or the last second, recording
/// each answer in the second the poll was made in.
pub async fn poll(
    client: Client,
    url: Url,
    auth: Option<String>,
    start: Instant,
    rec: Recorder,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval_at(start, Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let second = second_of(start.elapsed().as_secs_f64());
        if second >= rec.len() {
            return;
        }
        let r = tokio::select! {
            _ = stop.cancelled() => return,
            r = fetch(&client, &url, auth.as_deref()) => r,
        };
        rec.replicas(second, r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_ready_and_desired() {
        assert_eq!(
            parse(&json!({"name": "sleep", "availableReplicas": 2, "replicas": 3})),
            Replicas::Seen {
                ready: 2,
                desired: 3
            }
        );
        assert_eq!(parse(&json!({"replicas": 3})), Replicas::Unknown);
        assert_eq!(parse(&json!({"error": "not found"})), Replicas::Unknown);
        assert_eq!(
            parse(&json!({"availableReplicas": -1, "replicas": 1})),
            Replicas::Unknown
        );
    }
}
