//! The gateway's `ProxyHttp`: the front door of the data plane.
//!
//! Request phases (all decided in `request_filter`, before any upstream is contacted):
//! 1. [`routes`](crate::routes) says what the path is: `/healthz` (answered here), a
//!    reserved feature not built yet (501), `/system/*` (forwarded unchanged to the
//!    orchestrator) or a function call.
//! 2. A function must exist in the [`Catalog`] (404 otherwise) — a local lookup in the last
//!    accepted xDS snapshot, never a round trip.
//! 3. [`limits`](crate::limits): an announced `Content-Length` over the function's limit is
//!    413 at once; a chunked body is read here up to the limit (413 beyond it) and then sent
//!    by [`buffered`] with a `Content-Length`.
//! 4. [`admission`](crate::admission): no HEALTHY endpoint, or calls held before it: the
//!    request is held in its function's FIFO ([`ColdStarts`] wakes the function) until the
//!    ready replicas have room for it (or 503 + `Retry-After` at the function's
//!    `cold_start_timeout`).
//! 5. pingora forwards to the router over its keep-alive pool with `X-Sluice-Function` and the
//!    function's own path; the response gets `X-Sluice-Cold-Start` and `X-Duration-Seconds`
//!    (`X-Sluice-Replica` from the router passes through).
//!
//! Every refusal is JSON `{"error", "function"}`; nothing a client sends can panic the
//! gateway. Malformed requests are counted ([`Stats::malformed`]) and answered 400.

pub mod buffered;
pub mod respond;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType};
use sluice_common::xds::client::ConnectionState;
use tokio::sync::watch;

use crate::admission::{Entry, Gates, Permit, Waiting};
use crate::catalog::Catalog;
use crate::coldstart::{ColdStarts, Outcome};
use crate::error::{ErrorKind, GatewayError};
use crate::limits::{self, BodyBuffer, Framing};
use crate::routes::{self, FunctionCall, Route};
use crate::stats::{InFlight, InFlightGuard, Stats};
use crate::upstream::{Addr, UpstreamAddr};

/// Header naming the function for the router.
pub const FUNCTION_HEADER: &str = "X-Sluice-Function";
/// Response header: `true` when the request waited for a scale-from-zero.
pub const COLD_START_HEADER: &str = "X-Sluice-Cold-Start";
/// Response header: the gateway-measured time from request to response header, in seconds.
pub const DURATION_HEADER: &str = "X-Duration-Seconds";

/// Knobs of the proxy that are not per function.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Read timeout for `/system/*` calls.
    pub system_timeout: Duration,
    /// `Retry-After` of a 503 after a cold start timed out.
    pub cold_start_retry_after: Duration,
    /// Extra time given to the router beyond the function's own timeout (the router adds
    /// 5 s; the runtime answers 504 before either).
    pub upstream_slack: Duration,
    /// Connect timeout to the router / orchestrator.
    pub connect_timeout: Duration,
    /// How long an idle upstream connection stays in the pool.
    pub pool_idle_timeout: Duration,
    /// Longest time spent discarding an unread request body after refusing it (so the
    /// client reads the refusal instead of a connection reset).
    pub drain_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            system_timeout: Duration::from_secs(300),
            cold_start_retry_after: Duration::from_secs(5),
            upstream_slack: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            pool_idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// The proxy service. One instance serves every request (shared across worker threads).
pub struct Gateway {
    pub catalog: Catalog,
    pub xds_state: watch::Receiver<ConnectionState>,
    pub cold: Arc<ColdStarts>,
    pub gates: Arc<Gates>,
    pub router: Arc<UpstreamAddr>,
    pub orchestrator: Arc<UpstreamAddr>,
    pub stats: Arc<Stats>,
    pub in_flight: Arc<InFlight>,
    /// Keep-alive pool for bodies the gateway buffered itself (see [`buffered`]).
    pub connector: Connector,
    /// Checks callers of functions declared `auth: key`.
    pub invoke_auth: Arc<crate::auth::InvokeAuth>,
    pub settings: Settings,
}

/// Where a request goes once admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Answered by the gateway itself (or not decided yet).
    Local,
    /// `/system/*`, unchanged, to the orchestrator.
    Orchestrator,
    /// A function call, to the router.
    Function {
        name: String,
        upstream_path: String,
        read_timeout: Duration,
        /// The call was let in on a platform credential (`auth: key`): it is not passed on.
        strip_credentials: bool,
    },
}

/// Per-request state.
pub struct RequestCtx {
    started: Instant,
    target: Target,
    /// The function named by the path (set even when the request is refused).
    function: Option<String>,
    /// The request was held (a scale-from-zero, or behind calls held for one).
    cold_start: bool,
    /// The call's place among those forwarded for its function (freed when the request ends).
    permit: Option<Permit>,
    /// Failed connects to the upstream so far, and when the first one failed.
    connect_failures: u32,
    first_connect_failure: Option<Instant>,
    _in_flight: InFlightGuard,
}

impl RequestCtx {
    /// `X-Sluice-Cold-Start` and `X-Duration-Seconds` for function calls, nothing otherwise.
    fn function_headers(&self) -> Vec<(&'static str, String)> {
        if self.function.is_none() {
            return Vec::new();
        }
        vec![
            (COLD_START_HEADER, self.cold_start.to_string()),
            (
                DURATION_HEADER,
                format!("{:.6}", self.started.elapsed().as_secs_f64()),
            ),
        ]
    }

    fn decorate(&self, resp: &mut ResponseHeader) -> pingora::Result<()> {
        for (name, value) in self.function_headers() {
            resp.insert_header(name, value)?;
        }
        Ok(())
    }
}

impl Gateway {
    /// A pooled HTTP/1 peer for `addr`.
    fn peer(&self, addr: Addr, read_timeout: Duration) -> pingora::Result<HttpPeer> {
        let mut peer = match addr {
            Addr::Inet(a) => HttpPeer::new(a, false, String::new()),
            Addr::Unix(path) => HttpPeer::new_uds(&path, false, String::new())?,
        };
        peer.options.connection_timeout = Some(self.settings.connect_timeout);
        peer.options.read_timeout = Some(read_timeout);
        peer.options.write_timeout = Some(read_timeout);
        peer.options.idle_timeout = Some(self.settings.pool_idle_timeout);
        Ok(peer)
    }

    /// The `/healthz` body: liveness plus what the gateway knows and how it is doing.
    pub fn health(&self) -> serde_json::Value {
        let conn = self.xds_state.borrow().clone();
        let mut xds = serde_json::to_value(&conn).unwrap_or_else(|_| serde_json::json!({}));
        if let (Some(x), serde_json::Value::Object(c)) =
            (xds.as_object_mut(), self.catalog.status_json())
        {
            x.extend(c);
        }
        let stats = self.stats.to_json();
        serde_json::json!({
            "status": "ok",
            "component": "gateway",
            "xds": xds,
            "in_flight": self.in_flight.current(),
            "held_now": self.gates.held_now(),
            "malformed_requests": stats["malformed_requests"].clone(),
            "stats": stats,
        })
    }

    /// Writes a refusal (plus the function headers when a function was named). A client
    /// that is already gone is not an error worth more than a debug line.
    async fn refuse(&self, session: &mut Session, ctx: &RequestCtx, err: GatewayError) {
        if err.kind == ErrorKind::Malformed {
            tracing::debug!(error = %err, "malformed request");
        }
        if expects_continue(session.req_header()) && session.body_bytes_read() == 0 {
            // The client holds its body back until told to send it: it never will be, so
            // close the connection after the refusal instead of waiting to drain it.
            session.set_keepalive(None);
        } else {
            // The body may still be (partly) unread. Closing now would reset the connection
            // under a client still sending it (it sees a broken pipe, not the refusal), so
            // keep the connection and drain the rest, bounded in time, after the refusal is
            // written: the client reads the refusal and the connection can be reused.
            session.set_close_on_response_before_downstream_finish(false);
            session.set_total_drain_timeout(Some(self.settings.drain_timeout));
        }
        if let Err(e) = respond::error(session, &err, ctx.function_headers()).await {
            tracing::debug!(error = %e, "could not write the refusal (client gone?)");
        }
    }

    /// Phases 2–4 of the module docs. `Ok(Some(body))`: a chunked body was buffered and
    /// must be sent by [`buffered::forward`]; `Ok(None)`: pingora forwards as usual.
    async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        call: FunctionCall,
    ) -> Result<Option<Bytes>, GatewayError> {
        let name = call.name;
        if !self.catalog.has_config() {
            return Err(GatewayError::new(
                ErrorKind::Unavailable,
                "the gateway has not received its configuration yet",
            )
            .for_function(&name)
            .retry_after(Duration::from_secs(1)));
        }
        let Some(mut view) = self.catalog.lookup(&name) else {
            Stats::bump(&self.stats.not_found);
            return Err(GatewayError::not_found(&name));
        };
        if view.require_key {
            let client = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            let header = session
                .req_header()
                .headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            self.invoke_auth.check(&name, header, client).await?;
        }
        let framing = limits::framing(&session.req_header().headers).map_err(|e| {
            Stats::bump(&self.stats.malformed);
            e.for_function(&name)
        })?;
        if let Err(e) = limits::check_announced(&name, framing, view.max_body_bytes) {
            Stats::bump(&self.stats.too_large);
            return Err(e);
        }
        let body = match framing {
            Framing::Chunked => {
                if expects_continue(session.req_header()) {
                    // The client waits for this before sending the body the gateway reads.
                    session.write_continue_response().await.map_err(|e| {
                        GatewayError::new(ErrorKind::Malformed, "client went away")
                            .for_function(&name)
                            .with_source(e)
                    })?;
                }
                Some(
                    self.read_capped(session, &name, view.max_body_bytes)
                        .await?,
                )
            }
            Framing::Empty | Framing::Length(_) => None,
        };
        let deadline = tokio::time::Instant::now() + view.cold_start_timeout;
        let permit = match self.gates.gate(&name).enter() {
            Entry::Go(permit) => permit,
            Entry::Held(mut waiting) => {
                ctx.cold_start = true;
                Stats::bump(&self.stats.held);
                let permit = self.wait_held(&name, &mut waiting, deadline).await?;
                view = self.catalog.lookup(&name).unwrap_or(view);
                permit
            }
        };
        ctx.permit = Some(permit);
        ctx.target = Target::Function {
            name,
            upstream_path: call.upstream_path,
            read_timeout: view.timeout + self.settings.upstream_slack,
            strip_credentials: view.require_key,
        };
        Ok(body)
    }

    /// Waits until a held call gets its place ([`crate::admission`]), waking the function
    /// whenever it has no ready replica. Refuses it only when it is gone (404), cannot be
    /// started (503) or `deadline` (its `cold_start_timeout`) passed (503 + `Retry-After`).
    async fn wait_held(
        &self,
        name: &str,
        waiting: &mut Waiting,
        deadline: tokio::time::Instant,
    ) -> Result<Permit, GatewayError> {
        let mut snapshots = self.catalog.subscribe();
        loop {
            let snap = snapshots.borrow_and_update().clone();
            let Some(view) = crate::catalog::view(&snap, name, &self.catalog.defaults()) else {
                Stats::bump(&self.stats.not_found);
                return Err(GatewayError::not_found(name));
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if view.healthy == 0 {
                tokio::select! {
                    permit = waiting.granted() => return Ok(permit),
                    outcome = self.cold.wait_ready(name, remaining) => match outcome {
                        Outcome::Ready { .. } => continue,
                        Outcome::TimedOut => {
                            return Err(self.held_too_long(name, view.cold_start_timeout, "no ready replica"))
                        }
                        Outcome::Unknown => {
                            Stats::bump(&self.stats.not_found);
                            return Err(GatewayError::not_found(name));
                        }
                        Outcome::Refused(message) => {
                            return Err(GatewayError::new(
                                ErrorKind::Unavailable,
                                format!("function `{name}` could not be started: {message}"),
                            )
                            .for_function(name)
                            .retry_after(self.settings.cold_start_retry_after));
                        }
                    },
                }
            } else {
                tokio::select! {
                    permit = waiting.granted() => return Ok(permit),
                    changed = snapshots.changed() => {
                        if changed.is_err() {
                            // No more snapshots: only a place or the deadline can end the wait.
                            return tokio::select! {
                                permit = waiting.granted() => Ok(permit),
                                _ = tokio::time::sleep_until(deadline) => Err(self.held_too_long(
                                    name, view.cold_start_timeout, "no free place behind the calls held before it")),
                            };
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        return Err(self.held_too_long(
                            name,
                            view.cold_start_timeout,
                            "no free place behind the calls held before it",
                        ));
                    }
                }
            }
        }
    }

    /// The 503 of a held call whose `cold_start_timeout` passed.
    fn held_too_long(&self, name: &str, timeout: Duration, why: &str) -> GatewayError {
        Stats::bump(&self.stats.cold_start_timeouts);
        tracing::warn!(function = %name, timeout_ms = timeout.as_millis() as u64, why, "held call timed out");
        GatewayError::new(
            ErrorKind::Unavailable,
            format!(
                "function `{name}` could not take the call within {} ms ({why}; cold start timed out)",
                timeout.as_millis()
            ),
        )
        .for_function(name)
        .retry_after(self.settings.cold_start_retry_after)
    }

    /// Reads a chunked body, refusing it (413) as soon as it passes `max`.
    async fn read_capped(
        &self,
        session: &mut Session,
        function: &str,
        max: u64,
    ) -> Result<Bytes, GatewayError> {
        let mut buf = BodyBuffer::new(max);
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if !buf.push(&chunk) {
                        Stats::bump(&self.stats.too_large);
                        return Err(limits::too_large(function, max));
                    }
                }
                Ok(None) => return Ok(buf.finish()),
                Err(e) => {
                    Stats::bump(&self.stats.malformed);
                    return Err(GatewayError::new(
                        ErrorKind::Malformed,
                        format!("cannot read the request body: {}", e.etype().as_str()),
                    )
                    .for_function(function)
                    .with_source(e));
                }
            }
        }
    }

    /// Rewrites a request for the router: the function's own path and `X-Sluice-Function`.
    fn rewrite_for_router(
        req: &mut RequestHeader,
        name: &str,
        upstream_path: &str,
        strip_credentials: bool,
    ) -> pingora::Result<()> {
        if strip_credentials {
            // An invoke key (or the admin's password) is the platform's, never the function's.
            req.remove_header(&http::header::AUTHORIZATION);
        }
        let uri: http::Uri = upstream_path.parse().map_err(|e| {
            Error::because(
                ErrorType::InvalidHTTPHeader,
                "rewriting the request path",
                e,
            )
        })?;
        req.set_uri(uri);
        req.insert_header(FUNCTION_HEADER, name)?;
        Ok(())
    }

    /// Turns an upstream failure into what the client sees (502/504), `None` when the
    /// client itself is gone (nothing to answer).
    fn upstream_failure(&self, e: &Error, ctx: &RequestCtx) -> Option<GatewayError> {
        let role = match ctx.target {
            Target::Orchestrator => self.orchestrator.role,
            _ => self.router.role,
        };
        let err = match (e.esource(), e.etype()) {
            (_, ErrorType::HTTPStatus(code)) => GatewayError::new(
                match code {
                    400 => ErrorKind::Malformed,
                    413 => ErrorKind::TooLarge,
                    504 => ErrorKind::Timeout,
                    _ => ErrorKind::BadGateway,
                },
                format!("request failed with status {code}"),
            ),
            (
                ErrorSource::Downstream,
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
            ) => return None,
            (ErrorSource::Downstream, t) => {
                Stats::bump(&self.stats.malformed);
                GatewayError::new(ErrorKind::Malformed, format!("bad request: {}", t.as_str()))
            }
            (_, ErrorType::ReadTimedout) => {
                Stats::bump(&self.stats.upstream_errors);
                GatewayError::new(
                    ErrorKind::Timeout,
                    format!("the {role} did not answer in time"),
                )
            }
            (ErrorSource::Upstream, t) => {
                Stats::bump(&self.stats.upstream_errors);
                GatewayError::new(
                    ErrorKind::BadGateway,
                    format!("the {role} failed: {}", t.as_str()),
                )
            }
            (_, t) => GatewayError::new(
                ErrorKind::Internal,
                format!("internal error: {}", t.as_str()),
            ),
        };
        Some(match &ctx.function {
            Some(f) => err.for_function(f),
            None => err,
        })
    }
}

/// True when the request carries `Expect: 100-continue`.
fn expects_continue(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            target: Target::Local,
            function: None,
            cold_start: false,
            permit: None,
            connect_failures: 0,
            first_connect_failure: None,
            _in_flight: self.in_flight.enter(),
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        Stats::bump(&self.stats.requests);
        let route = {
            let uri = &session.req_header().uri;
            routes::parse(uri.path(), uri.query())
        };
        let route = match route {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_malformed() {
                    Stats::bump(&self.stats.malformed);
                    ErrorKind::Malformed
                } else {
                    ErrorKind::NotFound
                };
                self.refuse(session, ctx, GatewayError::new(kind, e.to_string()))
                    .await;
                return Ok(true);
            }
        };
        match route {
            Route::Health => {
                let body = self.health();
                if let Err(e) = respond::json(session, 200, &body, &[]).await {
                    tracing::debug!(error = %e, "could not write /healthz");
                }
                Ok(true)
            }
            Route::NotBuilt(feature) => {
                let err = GatewayError::new(
                    ErrorKind::NotImplemented,
                    format!("`/{feature}` is not available in this version of Sluice yet"),
                );
                self.refuse(session, ctx, err).await;
                Ok(true)
            }
            Route::System => {
                ctx.target = Target::Orchestrator;
                Ok(false)
            }
            Route::Function(call) => {
                ctx.function = Some(call.name.clone());
                match self.admit(session, ctx, call).await {
                    Ok(None) => Ok(false),
                    Ok(Some(body)) => {
                        buffered::forward(self, session, ctx, body).await?;
                        Ok(true)
                    }
                    Err(err) => {
                        self.refuse(session, ctx, err).await;
                        Ok(true)
                    }
                }
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let (up, read_timeout) = match &ctx.target {
            Target::Orchestrator => (&self.orchestrator, self.settings.system_timeout),
            Target::Function { read_timeout, .. } => (&self.router, *read_timeout),
            Target::Local => {
                return Error::e_explain(ErrorType::InternalError, "request has no upstream")
            }
        };
        if ctx.connect_failures > 0 {
            // Retrying a failed connect (see `fail_to_connect`): back off 50, 100, 200, then
            // 400 ms between attempts.
            let ms = 25u64 << ctx.connect_failures.min(4);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let Some(addr) = up.current() else {
            return Error::e_explain(
                ErrorType::ConnectNoRoute,
                format!(
                    "{} address `{}` is not resolved yet",
                    up.role,
                    up.authority()
                ),
            );
        };
        Ok(Box::new(self.peer(addr, read_timeout)?))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        match &ctx.target {
            Target::Function {
                name,
                upstream_path,
                strip_credentials,
                ..
            } => {
                Self::rewrite_for_router(upstream_request, name, upstream_path, *strip_credentials)
            }
            Target::Orchestrator => {
                upstream_request.remove_header(FUNCTION_HEADER);
                // The orchestrator counts failed attempts per client address: ours, always
                // (a client's own value is overwritten).
                let client = session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip().to_string());
                match client {
                    Some(ip) => {
                        upstream_request.insert_header(sluice_common::auth::CLIENT_HEADER, ip)?
                    }
                    None => {
                        upstream_request.remove_header(sluice_common::auth::CLIENT_HEADER);
                    }
                }
                Ok(())
            }
            Target::Local => Ok(()),
        }
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        ctx.decorate(upstream_response)
    }

    /// A connect to the router or the orchestrator failed: they are being restarted (an
    /// upgrade, a crash), or gone. Nothing was sent yet, so the call is tried again, with
    /// back-off, for up to the connect timeout from the first failure: a restart shorter
    /// than that costs the call a short wait, not an error (a Unix socket refuses at once
    /// where TCP would have retried its SYN). After it, 502.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let first = *ctx.first_connect_failure.get_or_insert_with(Instant::now);
        ctx.connect_failures = ctx.connect_failures.saturating_add(1);
        let upstream = matches!(ctx.target, Target::Function { .. } | Target::Orchestrator);
        if upstream && first.elapsed() < self.settings.connect_timeout {
            e.set_retry(true);
            if ctx.connect_failures == 1 {
                tracing::info!(function = ?ctx.function, error = %e,
                    "upstream refuses connections; retrying within the connect timeout");
            }
        }
        e
    }

    /// pingora's own line per retry is one per back-off step: the first failure is logged
    /// above, and a call that gives up gets its `request failed` line.
    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        ctx: &RequestCtx,
        _error: &Error,
        context: pingora::proxy::ProxyWarnLogContext,
    ) -> bool {
        matches!(context, pingora::proxy::ProxyWarnLogContext::UpstreamRetry)
            && ctx.connect_failures > 0
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let Some(err) = self.upstream_failure(e, ctx) else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        let code = err.status();
        if session.response_written().is_none() {
            tracing::warn!(function = ?ctx.function, error = %e, status = code, "request failed");
            // The connection is not reused after this answer (below): say so in it
            // (`Connection: close`), or a client would send its next request on a connection
            // about to close and see it fail.
            session.set_keepalive(None);
            if let Err(we) = respond::error(session, &err, ctx.function_headers()).await {
                tracing::debug!(error = %we, "could not write the error response");
            }
        } else {
            tracing::warn!(function = ?ctx.function, error = %e, "upstream failed after the response began");
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        tracing::debug!(
            method = %req.method,
            path = %req.uri.path(),
            status,
            function = ctx.function.as_deref().unwrap_or(""),
            cold_start = ctx.cold_start,
            duration_ms = ctx.started.elapsed().as_millis() as u64,
            error = e.map(|e| e.to_string()).unwrap_or_default(),
            "request"
        );
    }
}
