//! One client stream: a task that reads the client's requests and follows the snapshot
//! `watch`, and writes responses into the stream's channel.
//!
//! Protocol, per type (state of the world):
//! * a request with an empty nonce subscribes (or re-subscribes): the server answers with
//!   every resource of the type at the snapshot the task currently holds;
//! * a request whose nonce is not the latest sent for its type is stale and ignored;
//! * otherwise it is an ACK (no `error_detail`) or a NACK (with one), recorded in
//!   `/v1/clients`; nothing is re-sent after a NACK until the snapshot changes;
//! * on a snapshot change the task sends the steps of [`crate::push::plan`] in order.
//!
//! A request that breaks the protocol (no node on the first request, missing or unknown
//! type URL) is counted and answered with `INVALID_ARGUMENT` naming the problem, which ends
//! the stream. SIGTERM ends every stream cleanly (status OK, no reset).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_common::xds::pb;
use tokio::sync::mpsc;
use tonic::{Code, Status, Streaming};

use super::clients::{ClientHandle, Nack};
use crate::context::Ctx;
use crate::kind::{Kind, PerKind};
use crate::push;
use crate::snapshot::wire::TypeSet;
use crate::snapshot::Snapshot;
use crate::stats::Stats;

/// Responses (or the final error) for the client.
pub type ResponseTx = mpsc::Sender<Result<pb::DiscoveryResponse, Status>>;

/// What is known about one type on this stream.
#[derive(Debug, Default)]
struct TypeState {
    /// Content of the last response sent (`None`: not subscribed yet).
    sent: Option<Arc<TypeSet>>,
    /// Nonce of the last response sent (empty before the first).
    nonce: String,
}

/// Why handling a request stopped the stream.
enum Stop {
    /// The client is gone (its response channel is closed).
    Gone,
    /// The request broke the protocol; the status tells the client why.
    Refused(Status),
}

/// The state of one client stream.
pub struct ClientStream {
    ctx: Arc<Ctx>,
    peer: Option<SocketAddr>,
    tx: ResponseTx,
    /// Set by the first request (which must carry the node).
    client: Option<ClientHandle>,
    node_id: String,
    types: PerKind<TypeState>,
    /// The snapshot every response is taken from until the task picks up the next one.
    current: Arc<Snapshot>,
}

impl ClientStream {
    pub fn new(ctx: Arc<Ctx>, peer: Option<SocketAddr>, tx: ResponseTx) -> ClientStream {
        let current = ctx.store.current();
        ClientStream {
            ctx,
            peer,
            tx,
            client: None,
            node_id: String::new(),
            types: Default::default(),
            current,
        }
    }

    /// Runs until the client leaves, breaks the protocol, or the connector shuts down.
    pub async fn run(mut self, mut inbound: Streaming<pb::DiscoveryRequest>) {
        let mut snapshots = self.ctx.store.subscribe();
        self.current = snapshots.borrow_and_update().clone();
        let shutdown = self.ctx.shutdown.clone();
        let reason: String = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break "connector shutting down".into(),
                msg = inbound.message() => match msg {
                    Ok(Some(req)) => match self.on_request(req).await {
                        Ok(()) => {}
                        Err(Stop::Gone) => break "client gone".into(),
                        Err(Stop::Refused(status)) => {
                            Stats::incr(&self.ctx.stats.malformed_grpc);
                            tracing::warn!(
                                node = %self.node_id,
                                peer = ?self.peer,
                                error = %status.message(),
                                "malformed discovery request, closing the stream"
                            );
                            let reason = format!("malformed request: {}", status.message());
                            let _ = self.tx.send(Err(status)).await;
                            break reason;
                        }
                    },
                    Ok(None) => break "client closed the stream".into(),
                    Err(status) => {
                        if matches!(
                            status.code(),
                            Code::Internal | Code::OutOfRange | Code::ResourceExhausted
                        ) {
                            // Undecodable or oversized request.
                            Stats::incr(&self.ctx.stats.malformed_grpc);
                        }
                        break format!("stream error: {status}");
                    }
                },
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        break "snapshot store closed".into();
                    }
                    self.current = snapshots.borrow_and_update().clone();
                    if self.push_changes().await.is_err() {
                        break "client gone".into();
                    }
                }
            }
        };
        tracing::info!(node = %self.node_id, peer = ?self.peer, reason = %reason, "xDS stream closed");
    }

    async fn on_request(&mut self, req: pb::DiscoveryRequest) -> Result<(), Stop> {
        if self.client.is_none() {
            self.register(&req)?;
        }
        let kind = match Kind::from_url(&req.type_url) {
            Some(k) => k,
            None if req.type_url.is_empty() => {
                return Err(Stop::Refused(Status::invalid_argument(
                    "type_url is required",
                )))
            }
            None => {
                let known: Vec<&str> = Kind::ALL.iter().map(|k| k.url()).collect();
                return Err(Stop::Refused(Status::invalid_argument(format!(
                    "unknown type_url `{}`; this server serves {}",
                    req.type_url,
                    known.join(", ")
                ))));
            }
        };
        let i = kind as usize;

        if req.response_nonce.is_empty() {
            tracing::info!(
                node = %self.node_id,
                type_url = kind.url(),
                client_version = %req.version_info,
                "client subscribed"
            );
            let resources = self.current.encoded[i].clone();
            return self.send(kind, resources).await;
        }

        if req.response_nonce != self.types[i].nonce {
            Stats::incr(&self.ctx.stats.stale_requests);
            tracing::debug!(
                node = %self.node_id,
                type_url = kind.url(),
                nonce = %req.response_nonce,
                latest = %self.types[i].nonce,
                "stale nonce, request ignored"
            );
            return Ok(());
        }

        let client = self.client.as_ref();
        match req
            .error_detail
            .filter(|s| s.code != 0 || !s.message.is_empty())
        {
            Some(status) => {
                Stats::incr(&self.ctx.stats.nacks);
                tracing::warn!(
                    node = %self.node_id,
                    type_url = kind.url(),
                    nonce = %req.response_nonce,
                    kept_version = %req.version_info,
                    error = %status.message,
                    "client rejected a response (NACK)"
                );
                if let Some(c) = client {
                    c.update_type(kind.url(), |t| {
                        t.last_nack = Some(Nack {
                            version: req.version_info,
                            nonce: req.response_nonce,
                            error: status.message,
                        })
                    });
                }
            }
            None => {
                Stats::incr(&self.ctx.stats.acks);
                tracing::debug!(
                    node = %self.node_id,
                    type_url = kind.url(),
                    version = %req.version_info,
                    "ACK"
                );
                if let Some(c) = client {
                    c.update_type(kind.url(), |t| {
                        t.acked_version = Some(req.version_info);
                        t.last_nack = None;
                    });
                }
            }
        }
        Ok(())
    }

    /// Registers the client from its first request, which must name the node.
    fn register(&mut self, req: &pb::DiscoveryRequest) -> Result<(), Stop> {
        let Some(node) = req.node.as_ref().filter(|n| !n.id.is_empty()) else {
            return Err(Stop::Refused(Status::invalid_argument(
                "the first request of a stream must carry node.id",
            )));
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.node_id = node.id.clone();
        self.client = Some(self.ctx.clients.register(
            node.id.clone(),
            node.cluster.clone(),
            self.peer.map(|p| p.to_string()),
            now,
        ));
        tracing::info!(node = %node.id, kind = %node.cluster, peer = ?self.peer, "xDS client connected");
        Ok(())
    }

    /// Pushes what changed between what this client was sent and the current snapshot.
    async fn push_changes(&mut self) -> Result<(), Stop> {
        let sent: PerKind<Option<Arc<TypeSet>>> = [0, 1, 2, 3].map(|i| self.types[i].sent.clone());
        for step in push::plan(&sent, &self.current.encoded) {
            self.send(step.kind, step.resources).await?;
        }
        Ok(())
    }

    /// Sends `resources` as the state of the world of `kind`, at the current version.
    async fn send(&mut self, kind: Kind, resources: Arc<TypeSet>) -> Result<(), Stop> {
        let version = self.current.versions[kind as usize].to_string();
        let nonce = self.ctx.next_nonce();
        let resp = pb::DiscoveryResponse {
            version_info: version.clone(),
            resources: resources
                .iter()
                .map(|(name, value)| pb::Resource {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            type_url: kind.url().to_string(),
            nonce: nonce.clone(),
        };
        // A client that stops reading must not hold up shutdown.
        tokio::select! {
            sent = self.tx.send(Ok(resp)) => sent.map_err(|_| Stop::Gone)?,
            _ = self.ctx.shutdown.cancelled() => return Err(Stop::Gone),
        }
        Stats::incr(&self.ctx.stats.responses);
        tracing::debug!(
            node = %self.node_id,
            type_url = kind.url(),
            version = %version,
            nonce = %nonce,
            resources = resources.len(),
            "response sent"
        );
        if let Some(c) = &self.client {
            c.update_type(kind.url(), |t| {
                t.sent_version = Some(version);
                t.sent_nonce = Some(nonce.clone());
            });
        }
        let state = &mut self.types[kind as usize];
        state.sent = Some(resources);
        state.nonce = nonce;
        Ok(())
    }
}
