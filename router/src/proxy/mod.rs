//! The pingora `ProxyHttp` implementation: the request path of the data plane.
//!
//! Per request:
//! 1. `request_filter` resolves the function ([`target`]), finds its cluster in the route
//!    table (404 JSON if none), and takes a slot with [`ClusterState::acquire`], waiting in
//!    the cluster's queue if needed (429 JSON when full, 503 JSON + `Retry-After` when the
//!    wait expires). The [`Lease`] goes into the request context.
//! 2. `upstream_peer` builds the peer for the leased endpoint: connect timeout from the
//!    cluster, read/write timeout `timeout_ms + 5 s`, pooled keep-alive connections.
//!    Upgrade requests (WebSocket) are tunnelled by [`upgrade`] instead.
//! 3. `fail_to_connect`: nothing was sent, so the slot is released and the request is
//!    retried once, on another endpoint (`upstream_peer` acquires again excluding the failed
//!    one). A second failure, or no other endpoint, gives 502 JSON.
//! 4. `response_filter` adds `X-Sluice-Replica`.
//! 5. `logging` records telemetry and releases the slot. The context owns the lease and the
//!    lifecycle guard, so both are released on every path, including client disconnects
//!    and cancelled tasks.

pub mod reply;
pub mod target;
mod upgrade;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::http::ResponseHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType};

use crate::cluster::{ClusterState, Endpoint, Lease};
use crate::config::Registry;
use crate::lifecycle::{Lifecycle, RequestGuard};
use reply::Reply;
use target::FUNCTION_HEADER;

/// Response header naming the replica that served the request.
pub const REPLICA_HEADER: &str = "x-sluice-replica";
/// How long an idle upstream connection stays in the keep-alive pool.
pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The router's proxy logic.
#[derive(Debug, Clone)]
pub struct RouterProxy {
    registry: Arc<Registry>,
    lifecycle: Arc<Lifecycle>,
    statsd: Option<Arc<crate::telemetry::statsd::Statsd>>,
}

impl RouterProxy {
    pub fn new(registry: Arc<Registry>, lifecycle: Arc<Lifecycle>) -> Self {
        RouterProxy {
            registry,
            lifecycle,
            statsd: None,
        }
    }

    /// Also sends one latency sample per request to statsD.
    pub fn with_statsd(mut self, statsd: Arc<crate::telemetry::statsd::Statsd>) -> Self {
        self.statsd = Some(statsd);
        self
    }
}

/// Per-request state. Field order matters: the lease is released before the lifecycle
/// guard reports the request finished.
#[derive(Debug)]
pub struct RequestCtx {
    lease: Option<Lease>,
    cluster: Option<Arc<ClusterState>>,
    function: Option<String>,
    upstream_path: Option<String>,
    /// Endpoint whose connect failed; the retry avoids it.
    failed: Option<Arc<Endpoint>>,
    connect_retried: bool,
    /// Error reply decided in a phase that can only return a pingora error.
    pending_reply: Option<Reply>,
    /// Status of the router's own reply, when it wrote one.
    own_status: Option<u16>,
    started: Instant,
    /// When the request got its replica slot: the service time (what statsD reports as
    /// `upstream_rq_time`, as Envoy does) runs from here, without the queue wait.
    leased_at: Option<Instant>,
    _guard: RequestGuard,
}

impl RequestCtx {
    fn new(guard: RequestGuard) -> Self {
        RequestCtx {
            lease: None,
            cluster: None,
            function: None,
            upstream_path: None,
            failed: None,
            connect_retried: false,
            pending_reply: None,
            own_status: None,
            started: Instant::now(),
            leased_at: None,
            _guard: guard,
        }
    }

    /// Records a connect failure on the leased endpoint and releases its slot. Returns true
    /// when the request should be retried on another endpoint (first failure, and another
    /// active endpoint exists); the failed endpoint is then remembered for exclusion.
    fn connect_failed(&mut self) -> bool {
        let Some(lease) = self.lease.take() else {
            return false;
        };
        let endpoint = lease.endpoint().clone();
        endpoint.stats.connect_failures.fetch_add(1, Relaxed);
        let cluster = lease.cluster().clone();
        drop(lease);
        let retry = !self.connect_retried && cluster.has_alternative(&endpoint);
        if retry {
            self.connect_retried = true;
            self.failed = Some(endpoint);
            cluster.stats.retries.fetch_add(1, Relaxed);
        }
        retry
    }

    /// Takes a new slot after a connect failure, avoiding the endpoint that failed.
    async fn reacquire(&mut self) -> Result<(), Reply> {
        let Some(cluster) = self.cluster.clone() else {
            return Err(Reply::new(
                500,
                "no cluster for the request",
                self.function.as_deref(),
            ));
        };
        match cluster.acquire(self.failed.clone()).await {
            Ok(lease) => {
                self.lease = Some(lease);
                self.leased_at = Some(Instant::now());
                Ok(())
            }
            Err(e) => Err(Reply::from_error(&e, self.function.as_deref())),
        }
    }

    async fn respond(&mut self, session: &mut Session, reply: &Reply) {
        self.own_status = Some(reply.status);
        if let Err(e) = reply.send(session).await {
            tracing::debug!(error = %e, "client went away before the router's reply was sent");
        }
    }
}

/// Maps a proxy error without a decided reply to what the client sees.
fn classify(e: &Error, ctx: &RequestCtx) -> Reply {
    let f = ctx.function.as_deref();
    match e.etype() {
        ErrorType::HTTPStatus(code) => Reply::new(*code, "request failed", f),
        _ => match e.esource() {
            ErrorSource::Upstream => match e.etype() {
                ErrorType::ConnectTimedout
                | ErrorType::ConnectRefused
                | ErrorType::ConnectNoRoute
                | ErrorType::ConnectError
                | ErrorType::SocketError
                | ErrorType::BindError => Reply::new(502, "could not connect to a replica", f),
                ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                    let after = ctx
                        .lease
                        .as_ref()
                        .and_then(|l| l.settings().upstream_timeout())
                        .map(|d| format!(" within {} ms", d.as_millis()))
                        .unwrap_or_default();
                    Reply::new(504, format!("function did not answer{after}"), f)
                }
                _ => Reply::new(502, "replica failed while answering", f),
            },
            ErrorSource::Downstream => match e.etype() {
                ErrorType::ReadError
                | ErrorType::WriteError
                | ErrorType::ConnectionClosed
                | ErrorType::ReadTimedout
                | ErrorType::WriteTimedout => Reply::new(0, "client went away", f),
                _ => Reply::new(400, "bad request", f),
            },
            ErrorSource::Internal | ErrorSource::Unset => {
                Reply::new(500, "internal router error", f)
            }
        },
    }
}

#[async_trait]
impl ProxyHttp for RouterProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx::new(self.lifecycle.enter())
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<bool> {
        let req = session.req_header();
        let header = req.headers.get(FUNCTION_HEADER).map(|v| v.as_bytes());
        let Some(t) = target::resolve(header, req.uri.path(), req.uri.query()) else {
            let reply = Reply::new(404, "no function named in the request path", None);
            ctx.respond(session, &reply).await;
            return Ok(true);
        };
        ctx.function = Some(t.function);
        ctx.upstream_path = t.upstream_path;
        let function = ctx.function.as_deref().unwrap_or_default();
        let Some(cluster) = self.registry.route(function) else {
            let reply = Reply::new(404, "unknown function", Some(function));
            ctx.respond(session, &reply).await;
            return Ok(true);
        };
        ctx.cluster = Some(cluster.clone());
        match cluster.acquire(None).await {
            Ok(lease) => {
                ctx.lease = Some(lease);
                ctx.leased_at = Some(Instant::now());
                if session.is_upgrade_req() {
                    upgrade::serve(session, ctx).await;
                    return Ok(true);
                }
                Ok(false)
            }
            Err(e) => {
                let reply = Reply::from_error(&e, ctx.function.as_deref());
                tracing::debug!(function = ?ctx.function, error = %e, "request refused");
                ctx.respond(session, &reply).await;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<Box<HttpPeer>> {
        if ctx.lease.is_none() {
            // Retrying after a connect failure: another endpoint, same queue rules.
            if let Err(reply) = ctx.reacquire().await {
                let status = reply.status;
                let msg = reply.error.clone();
                ctx.pending_reply = Some(reply);
                return Err(Error::explain(ErrorType::HTTPStatus(status), msg));
            }
        }
        let Some(lease) = ctx.lease.as_ref() else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no endpoint leased",
            ));
        };
        let settings = lease.settings();
        let mut peer = HttpPeer::new(lease.endpoint().addr(), false, String::new());
        peer.options.connection_timeout = Some(settings.connect_timeout());
        peer.options.read_timeout = settings.upstream_timeout();
        peer.options.write_timeout = settings.upstream_timeout();
        peer.options.idle_timeout = Some(UPSTREAM_IDLE_TIMEOUT);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let endpoint = ctx.lease.as_ref().map(|l| l.endpoint().id().to_string());
        let retry = ctx.connect_failed();
        tracing::warn!(
            function = ?ctx.function,
            endpoint = ?endpoint,
            peer = %peer,
            error = %e,
            retry,
            "connect to replica failed"
        );
        e.set_retry(retry);
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        if let Some(path) = &ctx.upstream_path {
            upstream_request.set_raw_path(path.as_bytes())?;
        }
        // Whatever a caller sent under this name never reaches a replica.
        upstream_request.remove_header(sluice_common::runtime::HEADER);
        if let Some(token) = ctx.cluster.as_ref().and_then(|c| c.runtime_token()) {
            upstream_request
                .insert_header(sluice_common::runtime::HEADER, token.as_ref().clone())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        if let Some(lease) = &ctx.lease {
            upstream_response.insert_header(REPLICA_HEADER, lease.endpoint().replica_name())?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let reply = ctx.pending_reply.take().unwrap_or_else(|| classify(e, ctx));
        if reply.status > 0 && session.response_written().is_none() {
            session.set_keepalive(None);
            ctx.respond(session, &reply).await;
        }
        FailToProxy {
            error_code: reply.status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.own_status)
            .unwrap_or(0);
        let elapsed = ctx.started.elapsed();
        if let Some(cluster) = &ctx.cluster {
            cluster.stats.counters.record(status, elapsed);
            // Only a request that reached a replica has a service time (the autoscaler sizes
            // replicas with it); the first slot is counted from after a connect retry too.
            if let (Some(_), Some(leased)) = (self.statsd.as_ref(), ctx.leased_at) {
                cluster.stats.samples.record(leased.elapsed());
            }
        }
        if let Some(lease) = ctx.lease.take() {
            lease.endpoint().stats.counters.record(status, elapsed);
        }
        tracing::debug!(
            function = ?ctx.function,
            status,
            elapsed_ms = elapsed.as_millis() as u64,
            error = ?e.map(|e| e.to_string()),
            "request finished"
        );
    }
}
