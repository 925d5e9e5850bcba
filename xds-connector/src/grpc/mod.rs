//! The gRPC side: `AggregatedDiscoveryService` on its own listener. Each call to
//! `StreamAggregatedResources` spawns one [`stream::ClientStream`] task fed by the snapshot
//! `watch`; [`clients`] keeps what `/v1/clients` shows about each stream.

pub mod clients;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use sluice_common::xds::pb;
use sluice_common::xds::pb::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use crate::context::Ctx;
use crate::error::{Error, ErrorKind, Result};
use stream::ClientStream;

/// Largest request accepted from a client (requests are small; this bounds garbage).
const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Responses buffered per stream before the stream task waits for the client to read.
const RESPONSE_BUFFER: usize = 16;

/// The service implementation.
pub struct Service {
    ctx: Arc<Ctx>,
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Service {
    type StreamAggregatedResourcesStream =
        ReceiverStream<std::result::Result<pb::DiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<pb::DiscoveryRequest>>,
    ) -> std::result::Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        if self.ctx.shutdown.is_cancelled() {
            return Err(Status::unavailable("xds-connector is shutting down"));
        }
        let peer = request.remote_addr();
        let auth = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if !self.ctx.authorized(auth) {
            tracing::warn!(peer = ?peer, "xDS stream refused: no or wrong token");
            return Err(Status::unauthenticated("the xDS token is missing or wrong"));
        }
        let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
        let task = ClientStream::new(self.ctx.clone(), peer, tx);
        tokio::spawn(task.run(request.into_inner()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Serves the discovery service on `listener` until the shutdown token is cancelled, then
/// waits for the streams to close.
pub async fn serve(ctx: Arc<Ctx>, listener: TcpListener) -> Result<()> {
    let shutdown = ctx.shutdown.clone();
    let service = AggregatedDiscoveryServiceServer::new(Service { ctx })
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::new(ErrorKind::Io, "gRPC server failed").with_source(e))
}
