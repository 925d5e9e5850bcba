//! Watches the engine's event stream for this instance's containers and forwards what the
//! function supervisors act on. When the stream breaks it reconnects with backoff and asks for
//! a full resync (events may have been missed meanwhile).

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::EventsOptionsBuilder;
use futures::StreamExt;
use sluice_common::{LABEL_FUNCTION, LABEL_MANAGED};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Engine, LABEL_INSTANCE};

/// Something the engine reported about a managed container.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// The container's main process exited (or was killed).
    Died {
        function: String,
        id: String,
        exit_code: Option<i64>,
    },
    /// The kernel OOM-killed a process of the container (a `Died` follows).
    Oom { function: String, id: String },
    /// The stream was (re)connected: state may have changed unseen; compare with the engine.
    Resync,
}

/// Runs until `stop` is cancelled.
pub async fn watch(engine: Engine, tx: mpsc::Sender<EngineEvent>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "label".to_string(),
                vec![
                    format!("{LABEL_MANAGED}=true"),
                    format!("{LABEL_INSTANCE}={}", engine.instance),
                ],
            ),
            (
                "event".to_string(),
                vec!["die".to_string(), "oom".to_string()],
            ),
        ]);
        // Replay from a second before this (re)connection: together with the resync below no
        // event falls in the gap. Seeing an event twice is harmless (handling is idempotent).
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs().saturating_sub(1))
            .unwrap_or(0);
        let opts = EventsOptionsBuilder::default()
            .filters(&filters)
            .since(&since.to_string())
            .build();
        let mut stream = engine.client().events(Some(opts));
        if tx.send(EngineEvent::Resync).await.is_err() {
            return;
        }
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                n = stream.next() => n,
            };
            match next {
                Some(Ok(msg)) => {
                    backoff = Duration::from_millis(100);
                    let action = msg.action.unwrap_or_default();
                    let Some(actor) = msg.actor else { continue };
                    let (Some(id), Some(attrs)) = (actor.id, actor.attributes) else {
                        continue;
                    };
                    let Some(function) = attrs.get(LABEL_FUNCTION).cloned() else {
                        continue;
                    };
                    let ev = match action.as_str() {
                        "die" => EngineEvent::Died {
                            function,
                            id,
                            exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
                        },
                        "oom" => EngineEvent::Oom { function, id },
                        _ => continue,
                    };
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "docker event stream failed; reconnecting");
                    break;
                }
                None => {
                    tracing::warn!("docker event stream ended; reconnecting");
                    break;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
