//! The transaction shell: one task that owns every transaction and timer, fed by a channel.
//!
//! ```text
//! transport (UDP, TCP) ──Input::Message──▶ core ──Call──▶ handler::Dispatcher ──POST──▶ gateway
//!                     ◀──────send───────── core ◀──Input::Outcome── (the function's actions)
//! ```
//!
//! Invariants:
//! * A request reaches a handler at most once per server transaction: a retransmission is
//!   absorbed here (the last response is sent again) and never becomes a second call.
//! * Every server transaction ends with a final response: the handler's, a 500/503 when the
//!   handler failed, or a guard timeout (non-INVITE: `handler_timeout`, INVITE: 3 min).
//! * A client transaction ends with exactly one event to its handler: the final response, a
//!   408 (Timer B/F) or a 503 (unreachable).
//!
//! The RFC state machines are pure (`crate::transaction`); this module only carries out their
//! effects: bytes out, timers in a heap, events to handlers.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ezk_sip_types::Name;
use sluice_common::sip as pb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::handler::{Call, Outcome, Routes};
use crate::sip::build::{self, Source};
use crate::sip::message::Message;
use crate::stats::Stats;
use crate::transaction::client::{self, Client};
use crate::transaction::key::{AckKey, ClientKey, ServerKey};
use crate::transaction::server::{self, Server};
use crate::transaction::{Effect, Timer, Timers};
use crate::transport::{Outbound, Peer, Transport};

/// How long an INVITE may wait for its handler's final response (RFC 3261 Timer C's 3 min).
const INVITE_GUARD: Duration = Duration::from_secs(180);

/// What the core receives.
#[derive(Debug)]
pub enum Input {
    Message(Box<Message>, Peer),
    /// A handler call ended.
    Outcome {
        origin: Origin,
        outcome: Outcome,
    },
    /// A client transaction's request could not be sent.
    Unreachable(String),
}

/// What an event to a handler was about: its actions are applied in that context.
#[derive(Clone, Debug)]
pub enum Origin {
    /// A request: the server transaction (by id) it answers by default.
    Server(String),
    /// A response (or a local 408/503): actions may answer any live server transaction by id.
    Response,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub timers: Timers,
    /// The host written in the proxy's Via and given to handlers as `local_address`.
    pub advertise: String,
    pub port: u16,
    pub handler_timeout: Duration,
}

struct ServerTxn {
    fsm: Server,
    req: Arc<Message>,
    peer: Peer,
    last: Option<Bytes>,
    to_tag: String,
    handler: Option<String>,
    ack_key: Option<AckKey>,
}

struct ClientTxn {
    fsm: Client,
    request: Bytes,
    target: Peer,
    handler: String,
    context: String,
    /// For ACK and CANCEL: the request line and the headers they copy.
    method: String,
    uri: String,
    via: String,
    call_id: String,
    from: String,
    to: String,
    cseq: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerRef {
    Server(String, Timer),
    /// Our own: a server transaction still without a final response.
    Guard(String),
    Client(String, Timer),
    /// A handler's ring timeout (`SendRequest.timeout_ms`) on an INVITE it sent.
    Ring(String),
}

pub struct Core {
    s: Settings,
    routes: Routes,
    out: Outbound,
    calls: mpsc::Sender<Call>,
    stats: Arc<Stats>,
    servers: HashMap<String, ServerTxn>,
    acks: HashMap<AckKey, String>,
    clients: HashMap<String, ClientTxn>,
    timers: BinaryHeap<Reverse<(Instant, u64, TimerRef)>>,
    seq: u64,
}

impl Core {
    pub fn new(
        s: Settings,
        routes: Routes,
        out: Outbound,
        calls: mpsc::Sender<Call>,
        stats: Arc<Stats>,
    ) -> Core {
        Core {
            s,
            routes,
            out,
            calls,
            stats,
            servers: HashMap::new(),
            acks: HashMap::new(),
            clients: HashMap::new(),
            timers: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Runs until `stop` and the input closes.
    pub async fn run(mut self, mut input: mpsc::Receiver<Input>, stop: CancellationToken) {
        loop {
            let next = self.timers.peek().map(|Reverse((at, _, _))| *at);
            tokio::select! {
                biased;
                msg = input.recv() => match msg {
                    Some(Input::Message(m, peer)) => self.on_message(*m, peer),
                    Some(Input::Outcome { origin, outcome }) => self.on_outcome(origin, outcome),
                    Some(Input::Unreachable(id)) => {
                        self.client_input(&id, client::Input::TransportError, None)
                    }
                    None => break,
                },
                _ = sleep_until(next) => self.fire_due(),
                _ = stop.cancelled() => break,
            }
            self.stats
                .set_transactions(self.servers.len(), self.clients.len());
        }
        // Pending server transactions get an answer before the proxy goes away.
        let pending: Vec<String> = self
            .servers
            .iter()
            .filter(|(_, t)| t.fsm.awaiting_final())
            .map(|(id, _)| id.clone())
            .collect();
        for id in pending {
            self.respond_local(&id, 503, "Service Unavailable", &[("Retry-After", "5")]);
        }
    }

    fn schedule(&mut self, after: Duration, r: TimerRef) {
        self.seq += 1;
        self.timers
            .push(Reverse((Instant::now() + after, self.seq, r)));
    }

    fn fire_due(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, _, r))) = self.timers.pop() else {
                break;
            };
            match r {
                TimerRef::Server(id, t) => self.server_input(&id, server::Input::Fired(t)),
                TimerRef::Client(id, t) => self.client_input(&id, client::Input::Fired(t), None),
                TimerRef::Ring(id) => {
                    if self
                        .clients
                        .get(&id)
                        .is_some_and(|t| t.fsm.awaiting_final())
                    {
                        tracing::debug!(transaction = %id, "ring timeout: cancelling");
                        self.stats.ring_timeouts.inc();
                        self.client_input(&id, client::Input::Cancel, None);
                    }
                }
                TimerRef::Guard(id) => {
                    let invite = match self.servers.get(&id) {
                        Some(t) if t.fsm.awaiting_final() => t.fsm.is_invite(),
                        _ => continue,
                    };
                    self.stats.handler_timeouts.inc();
                    tracing::warn!(transaction = %id, "no final response from the handler in time");
                    if invite {
                        self.respond_local(&id, 408, "Request Timeout", &[]);
                    } else {
                        self.respond_local(&id, 500, "Handler Timeout", &[]);
                    }
                }
            }
        }
    }

    // ---- requests and responses from the network ----

    fn on_message(&mut self, m: Message, peer: Peer) {
        if m.is_request() {
            self.on_request(m, peer)
        } else {
            self.on_response(m, peer)
        }
    }

    fn on_request(&mut self, req: Message, peer: Peer) {
        let method = req.method().unwrap_or_default().to_string();
        self.stats.request_in(&method);
        match method.as_str() {
            "ACK" => return self.on_ack(req, peer),
            "CANCEL" => return self.on_cancel(req, peer),
            _ => {}
        }
        let Some(key) = ServerKey::of(&req, None) else {
            return;
        };
        let id = key.id();
        if self.servers.contains_key(&id) {
            return self.server_input(&id, server::Input::Retransmission);
        }
        let (fsm, effects) = Server::new(method == "INVITE", peer.reliable(), self.s.timers);
        let handler = self
            .routes
            .handler_for(&method, req.uri().unwrap_or_default());
        let req = Arc::new(req);
        self.servers.insert(
            id.clone(),
            ServerTxn {
                fsm,
                req: req.clone(),
                peer,
                last: None,
                to_tag: build::new_tag(),
                handler: handler.clone(),
                ack_key: None,
            },
        );
        self.apply_server(&id, effects);
        let Some(handler) = handler else {
            return match self.routes.refusal(&method) {
                (405, allow) => self.respond_local(&id, 405, "", &[("Allow", allow.as_str())]),
                (status, _) => self.respond_local(&id, status, "", &[]),
            };
        };
        let guard = if method == "INVITE" {
            INVITE_GUARD
        } else {
            self.s.handler_timeout + Duration::from_secs(1)
        };
        self.schedule(guard, TimerRef::Guard(id.clone()));
        let event = self.request_event(&req, &peer, &id);
        self.call(handler, event, Origin::Server(id));
    }

    fn on_ack(&mut self, ack: Message, peer: Peer) {
        // The ACK of a non-2xx final response is part of the INVITE transaction.
        if let Some(key) = ServerKey::of(&ack, None) {
            let id = key.id();
            if self.servers.contains_key(&id) {
                return self.server_input(&id, server::Input::Ack);
            }
        }
        // The ACK of a 2xx has its own branch: matched by dialog, then given to the handler.
        let Some(ak) = AckKey::of(&ack) else { return };
        let Some(id) = self.acks.get(&ak).cloned() else {
            self.stats.stray_acks.inc();
            return;
        };
        let handler = self.servers.get(&id).and_then(|t| t.handler.clone());
        self.server_input(&id, server::Input::Ack);
        if let Some(handler) = handler {
            let event = self.request_event(&ack, &peer, &id);
            self.call(handler, event, Origin::Response);
        }
    }

    fn on_cancel(&mut self, cancel: Message, peer: Peer) {
        let Some(key) = ServerKey::of(&cancel, None) else {
            return;
        };
        let id = key.id();
        if self.servers.contains_key(&id) {
            return self.server_input(&id, server::Input::Retransmission);
        }
        let (fsm, _) = Server::new(false, peer.reliable(), self.s.timers);
        let cancel = Arc::new(cancel);
        self.servers.insert(
            id.clone(),
            ServerTxn {
                fsm,
                req: cancel.clone(),
                peer,
                last: None,
                to_tag: build::new_tag(),
                handler: None,
                ack_key: None,
            },
        );
        let invite_id = ServerKey::of(&cancel, Some("INVITE")).map(|k| k.id());
        let invite = invite_id.and_then(|i| self.servers.get(&i).map(|t| (i, t)));
        let Some((invite_id, txn)) = invite else {
            return self.respond_local(&id, 481, "", &[]);
        };
        let pending = txn.fsm.awaiting_final();
        let handler = txn.handler.clone();
        let to_tag = txn.to_tag.clone();
        self.respond_with_tag(&id, 200, &to_tag);
        if pending {
            self.respond_with_tag(&invite_id, 487, &to_tag);
            // The handler learns of it (to cancel what it forked); its late answer is refused.
            if let Some(handler) = handler {
                let event = self.request_event(&cancel, &peer, &invite_id);
                self.call(handler, event, Origin::Response);
            }
        }
    }

    fn on_response(&mut self, resp: Message, _peer: Peer) {
        let status = resp.status().unwrap_or(0);
        self.stats.response_in(status);
        let Some(key) = ClientKey::of_response(&resp) else {
            return;
        };
        let id = key.id();
        if !self.clients.contains_key(&id) {
            self.stats.stray_responses.inc();
            return;
        }
        self.client_input(&id, client::Input::Response { status }, Some(resp));
    }

    // ---- server transactions ----

    fn server_input(&mut self, id: &str, input: server::Input) {
        let Some(t) = self.servers.get_mut(id) else {
            return;
        };
        match t.fsm.on(input) {
            Ok(effects) => self.apply_server(id, effects),
            Err(refusal) => {
                self.stats.refused_responses.inc();
                tracing::debug!(transaction = %id, ?refusal, "response refused");
            }
        }
    }

    fn apply_server(&mut self, id: &str, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::SendTrying => {
                    if let Some(t) = self.servers.get(id) {
                        let bytes = self.response_bytes(t, 100, "Trying", &[], &[], None);
                        if let Some(b) = bytes {
                            self.stats.response_out(100);
                            let (peer, to) = (t.peer, response_target(t));
                            if let Some(t) = self.servers.get_mut(id) {
                                t.last = Some(b.clone());
                            }
                            self.out.send(peer, to, b);
                        }
                    }
                }
                Effect::Resend => {
                    if let Some(t) = self.servers.get(id) {
                        if let Some(b) = t.last.clone() {
                            self.out.send(t.peer, response_target(t), b);
                        }
                    }
                }
                Effect::Absorbed => self.stats.retransmissions_absorbed.inc(),
                Effect::AckTimeout => {
                    self.stats.ack_timeouts.inc();
                    tracing::warn!(transaction = %id, "final response to INVITE never acknowledged");
                }
                Effect::Schedule(timer, after) => {
                    self.schedule(after, TimerRef::Server(id.to_string(), timer))
                }
                Effect::Terminate => {
                    if let Some(t) = self.servers.remove(id) {
                        if let Some(k) = t.ack_key {
                            self.acks.remove(&k);
                        }
                    }
                }
                Effect::SendAck
                | Effect::SendCancel
                | Effect::Deliver
                | Effect::Timeout
                | Effect::Unreachable => {}
            }
        }
    }

    fn response_bytes(
        &self,
        t: &ServerTxn,
        status: u16,
        reason: &str,
        headers: &[(String, String)],
        body: &[u8],
        to_tag: Option<&str>,
    ) -> Option<Bytes> {
        let ip = t.peer.addr.ip().to_string();
        let source = Source {
            ip: &ip,
            port: t.peer.addr.port(),
        };
        let tag = to_tag.unwrap_or(&t.to_tag);
        match build::response(&t.req, &source, status, reason, Some(tag), headers, body) {
            Ok(b) => Some(Bytes::from(b)),
            Err(e) => {
                self.stats.bad_actions.inc();
                tracing::warn!(error = %e, status, "handler's response refused");
                None
            }
        }
    }

    /// Answers a server transaction: builds the response, steps the state machine, sends.
    fn respond(
        &mut self,
        id: &str,
        status: u16,
        reason: &str,
        headers: &[(String, String)],
        body: &[u8],
        to_tag: Option<&str>,
    ) -> bool {
        let Some(t) = self.servers.get(id) else {
            self.stats.refused_responses.inc();
            return false;
        };
        if !t.fsm.awaiting_final() {
            self.stats.refused_responses.inc();
            tracing::debug!(transaction = %id, status, "transaction already answered");
            return false;
        }
        let Some(bytes) = self.response_bytes(t, status, reason, headers, body, to_tag) else {
            return false;
        };
        let invite_2xx = t.fsm.is_invite() && (200..300).contains(&status);
        let ack_key = invite_2xx.then(|| AckKey::of(&t.req)).flatten();
        let Some(t) = self.servers.get_mut(id) else {
            return false;
        };
        let previous = t.last.replace(bytes);
        match t.fsm.on(server::Input::Respond { status }) {
            Ok(effects) => {
                self.stats.response_out(status);
                if let Some(k) = ack_key {
                    self.acks.insert(k.clone(), id.to_string());
                    t.ack_key = Some(k);
                }
                self.apply_server(id, effects);
                true
            }
            Err(refusal) => {
                t.last = previous;
                self.stats.refused_responses.inc();
                tracing::debug!(transaction = %id, status, ?refusal, "response refused");
                false
            }
        }
    }

    fn respond_local(&mut self, id: &str, status: u16, reason: &str, headers: &[(&str, &str)]) {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        self.respond(id, status, reason, &headers, &[], None);
    }

    fn respond_with_tag(&mut self, id: &str, status: u16, tag: &str) {
        self.respond(id, status, "", &[], &[], Some(tag));
    }

    // ---- client transactions ----

    fn send_request(&mut self, s: pb::SendRequest) {
        if !s.cancels.is_empty() || !s.cancel_context.is_empty() {
            let mut ids: Vec<String> = Vec::new();
            if !s.cancels.is_empty() {
                ids.push(s.cancels.clone());
            }
            if !s.cancel_context.is_empty() {
                ids.extend(
                    self.clients
                        .iter()
                        .filter(|(_, t)| t.method == "INVITE" && t.context == s.cancel_context)
                        .map(|(id, _)| id.clone()),
                );
            }
            for id in ids {
                self.client_input(&id, client::Input::Cancel, None);
            }
            return;
        }
        let target = match resolve_target(&s) {
            Some(t) => t,
            None => {
                self.stats.bad_actions.inc();
                tracing::warn!(uri = %s.uri, "request target is not an address the proxy can reach");
                return self.deliver_local(&s.response_handler, &s.context, &s.method, 503);
            }
        };
        let mut headers: Vec<(String, String)> = s
            .headers
            .iter()
            .map(|h| (build::canonical(&h.name), h.value.clone()))
            .collect();
        let get = |hs: &[(String, String)], n: &str| {
            hs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
        };
        if get(&headers, "Call-ID").is_none() {
            headers.push((
                "Call-ID".into(),
                format!(
                    "{}{}@{}",
                    build::new_tag(),
                    build::new_tag(),
                    self.s.advertise
                ),
            ));
        }
        if get(&headers, "CSeq").is_none() {
            headers.push(("CSeq".into(), format!("1 {}", s.method)));
        }
        let cseq = get(&headers, "CSeq")
            .and_then(|c| c.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(1);
        let branch = build::new_branch();
        let via = format!(
            "SIP/2.0/{} {}:{};branch={branch};rport",
            if target.transport == Transport::Tcp {
                "TCP"
            } else {
                "UDP"
            },
            self.s.advertise,
            self.s.port
        );
        let bytes = match build::request(&s.method, &s.uri, &via, &headers, &s.body) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                self.stats.bad_actions.inc();
                tracing::warn!(error = %e, method = %s.method, "handler's request refused");
                return self.deliver_local(&s.response_handler, &s.context, &s.method, 503);
            }
        };
        self.stats.request_out(&s.method);
        if s.method == "ACK" {
            // An ACK for a 2xx is its own transaction-less request (§17.1.1.3).
            return self.out.send(target, target.addr, bytes);
        }
        let key = ClientKey {
            branch,
            method: s.method.clone(),
        };
        let id = key.id();
        let (fsm, effects) = Client::new(s.method == "INVITE", target.reliable(), self.s.timers);
        if s.method == "INVITE" && s.timeout_ms > 0 {
            self.schedule(
                Duration::from_millis(u64::from(s.timeout_ms)),
                TimerRef::Ring(id.clone()),
            );
        }
        self.clients.insert(
            id.clone(),
            ClientTxn {
                fsm,
                request: bytes,
                target,
                handler: s.response_handler.clone(),
                context: s.context.clone(),
                method: s.method.clone(),
                uri: s.uri.clone(),
                via,
                call_id: get(&headers, "Call-ID").unwrap_or_default(),
                from: get(&headers, "From").unwrap_or_default(),
                to: get(&headers, "To").unwrap_or_default(),
                cseq,
            },
        );
        self.apply_client(&id, effects, None);
    }

    fn client_input(&mut self, id: &str, input: client::Input, resp: Option<Message>) {
        let Some(t) = self.clients.get_mut(id) else {
            return;
        };
        let effects = t.fsm.on(input);
        self.apply_client(id, effects, resp);
    }

    fn apply_client(&mut self, id: &str, effects: Vec<Effect>, resp: Option<Message>) {
        for e in effects {
            let Some(t) = self.clients.get(id) else {
                return;
            };
            match e {
                Effect::Resend => self.out.send_for(
                    t.target,
                    t.target.addr,
                    t.request.clone(),
                    Some(id.to_string()),
                ),
                Effect::Schedule(timer, after) => {
                    self.schedule(after, TimerRef::Client(id.to_string(), timer))
                }
                Effect::SendAck => {
                    let to = resp
                        .as_ref()
                        .and_then(|r| r.header(&Name::TO).map(str::to_string))
                        .unwrap_or_else(|| t.to.clone());
                    let headers = vec![
                        ("From".to_string(), t.from.clone()),
                        ("To".to_string(), to),
                        ("Call-ID".to_string(), t.call_id.clone()),
                        ("CSeq".to_string(), format!("{} ACK", t.cseq)),
                    ];
                    if let Ok(b) = build::request("ACK", &t.uri, &t.via, &headers, &[]) {
                        self.out.send(t.target, t.target.addr, Bytes::from(b));
                    }
                }
                Effect::SendCancel => {
                    let headers = vec![
                        ("From".to_string(), t.from.clone()),
                        ("To".to_string(), t.to.clone()),
                        ("Call-ID".to_string(), t.call_id.clone()),
                        ("CSeq".to_string(), format!("{} CANCEL", t.cseq)),
                    ];
                    let Ok(b) = build::request("CANCEL", &t.uri, &t.via, &headers, &[]) else {
                        continue;
                    };
                    let branch = id.rsplit(':').next().unwrap_or_default().to_string();
                    let key = ClientKey {
                        branch,
                        method: "CANCEL".into(),
                    };
                    let (fsm, effects) = Client::new(false, t.target.reliable(), self.s.timers);
                    let cid = key.id();
                    let cancel = ClientTxn {
                        fsm,
                        request: Bytes::from(b),
                        target: t.target,
                        handler: String::new(),
                        context: String::new(),
                        method: "CANCEL".into(),
                        uri: t.uri.clone(),
                        via: t.via.clone(),
                        call_id: t.call_id.clone(),
                        from: t.from.clone(),
                        to: t.to.clone(),
                        cseq: t.cseq,
                    };
                    self.stats.request_out("CANCEL");
                    self.clients.insert(cid.clone(), cancel);
                    self.apply_client(&cid, effects, None);
                }
                Effect::Deliver => {
                    if let Some(r) = resp.as_ref() {
                        if !t.handler.is_empty() {
                            let event = self.response_event(r, t, id);
                            self.call(t.handler.clone(), event, Origin::Response);
                        }
                    }
                }
                Effect::Timeout | Effect::Unreachable => {
                    let status = if e == Effect::Timeout { 408 } else { 503 };
                    if e == Effect::Timeout {
                        self.stats.client_timeouts.inc();
                    }
                    if !t.handler.is_empty() {
                        let event = self.local_response_event(t, id, status);
                        self.call(t.handler.clone(), event, Origin::Response);
                    }
                }
                Effect::Terminate => {
                    self.clients.remove(id);
                }
                Effect::SendTrying | Effect::Absorbed | Effect::AckTimeout => {}
            }
        }
    }

    fn deliver_local(&mut self, handler: &str, context: &str, method: &str, status: u16) {
        if handler.is_empty() {
            return;
        }
        let event = pb::Event {
            event_id: build::new_tag(),
            kind: Some(pb::event::Kind::Response(pb::Response {
                status: status as u32,
                reason: crate::sip::message::reason_phrase(status).into(),
                headers: vec![pb::Header {
                    name: "CSeq".into(),
                    value: format!("1 {method}"),
                }],
                body: Vec::new(),
                local: true,
            })),
            context: context.to_string(),
            handler: handler.to_string(),
            local_address: self.local_address(),
            ..Default::default()
        };
        self.call(handler.to_string(), event, Origin::Response);
    }

    // ---- handler calls and their actions ----

    fn call(&mut self, handler: String, event: pb::Event, origin: Origin) {
        let call = Call {
            handler,
            event,
            origin,
        };
        if let Err(e) = self.calls.try_send(call) {
            // The dispatcher's queue is full: the proxy is overloaded.
            self.stats.overload.inc();
            let call = match e {
                mpsc::error::TrySendError::Full(c) | mpsc::error::TrySendError::Closed(c) => c,
            };
            if let Origin::Server(id) = call.origin {
                self.respond_local(&id, 503, "", &[("Retry-After", "1")]);
            }
        }
    }

    fn on_outcome(&mut self, origin: Origin, outcome: Outcome) {
        match outcome {
            Outcome::Actions(actions) => {
                for action in actions.actions {
                    match action.kind {
                        Some(pb::action::Kind::Respond(r)) => {
                            let id = if r.transaction_id.is_empty() {
                                match &origin {
                                    Origin::Server(id) => id.clone(),
                                    Origin::Response => {
                                        self.stats.bad_actions.inc();
                                        continue;
                                    }
                                }
                            } else {
                                r.transaction_id.clone()
                            };
                            let headers: Vec<(String, String)> =
                                r.headers.into_iter().map(|h| (h.name, h.value)).collect();
                            let tag = (!r.to_tag.is_empty()).then_some(r.to_tag.as_str());
                            self.respond(&id, r.status as u16, &r.reason, &headers, &r.body, tag);
                        }
                        Some(pb::action::Kind::Send(s)) => self.send_request(s),
                        None => self.stats.bad_actions.inc(),
                    }
                }
            }
            Outcome::Failed {
                status,
                retry_after,
            } => {
                if let Origin::Server(id) = origin {
                    let ra = retry_after.map(|s| s.to_string());
                    let headers: Vec<(&str, &str)> =
                        ra.iter().map(|v| ("Retry-After", v.as_str())).collect();
                    self.respond_local(&id, status, "", &headers);
                }
            }
        }
    }

    // ---- events ----

    fn local_address(&self) -> String {
        format!("{}:{}", self.s.advertise, self.s.port)
    }

    fn request_event(&self, req: &Message, peer: &Peer, id: &str) -> pb::Event {
        pb::Event {
            event_id: build::new_tag(),
            kind: Some(pb::event::Kind::Request(pb::Request {
                method: req.method().unwrap_or_default().to_string(),
                uri: req.uri().unwrap_or_default().to_string(),
                headers: headers_of(req),
                body: req.body.to_vec(),
            })),
            source: Some(peer.to_pb()),
            transaction_id: id.to_string(),
            dialog: Some(dialog_of(req)),
            context: String::new(),
            local_address: self.local_address(),
            handler: String::new(),
        }
    }

    fn response_event(&self, r: &Message, t: &ClientTxn, id: &str) -> pb::Event {
        let (status, reason) = match &r.start {
            crate::sip::message::Start::Response { status, reason } => {
                (*status, reason.to_string())
            }
            _ => (0, String::new()),
        };
        pb::Event {
            event_id: build::new_tag(),
            kind: Some(pb::event::Kind::Response(pb::Response {
                status: status as u32,
                reason,
                headers: headers_of(r),
                body: r.body.to_vec(),
                local: false,
            })),
            source: Some(t.target.to_pb()),
            transaction_id: id.to_string(),
            dialog: Some(dialog_of(r)),
            context: t.context.clone(),
            local_address: self.local_address(),
            handler: t.handler.clone(),
        }
    }

    fn local_response_event(&self, t: &ClientTxn, id: &str, status: u16) -> pb::Event {
        pb::Event {
            event_id: build::new_tag(),
            kind: Some(pb::event::Kind::Response(pb::Response {
                status: status as u32,
                reason: crate::sip::message::reason_phrase(status).into(),
                headers: vec![
                    pb::Header {
                        name: "Call-ID".into(),
                        value: t.call_id.clone(),
                    },
                    pb::Header {
                        name: "CSeq".into(),
                        value: format!("{} {}", t.cseq, t.method),
                    },
                ],
                body: Vec::new(),
                local: true,
            })),
            source: Some(t.target.to_pb()),
            transaction_id: id.to_string(),
            dialog: Some(pb::Dialog {
                call_id: t.call_id.clone(),
                ..Default::default()
            }),
            context: t.context.clone(),
            local_address: self.local_address(),
            handler: t.handler.clone(),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn headers_of(m: &Message) -> Vec<pb::Header> {
    m.headers()
        .map(|(n, v)| pb::Header {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect()
}

fn dialog_of(m: &Message) -> pb::Dialog {
    pb::Dialog {
        call_id: m.call_id().unwrap_or_default().to_string(),
        from_tag: m.tag_of_from().unwrap_or_default(),
        to_tag: m.tag_of_to().unwrap_or_default(),
    }
}

/// Where the responses of a server transaction go (RFC 3261 §18.2.2 with RFC 3581): over a
/// connection, back on it; over UDP, to the source address when the client asked for rport,
/// else to the source IP (`received`) at the port its Via names.
fn response_target(t: &ServerTxn) -> SocketAddr {
    if t.peer.transport == Transport::Tcp {
        return t.peer.addr;
    }
    match t.req.top_via() {
        Some(v) if v.rport.is_none() => SocketAddr::new(t.peer.addr.ip(), v.port.unwrap_or(5060)),
        _ => t.peer.addr,
    }
}

/// The address of a request's destination: the explicit target, else the URI's host (an IP
/// address or `localhost`), port (5060) and `transport` parameter.
fn resolve_target(s: &pb::SendRequest) -> Option<Peer> {
    if let Some(t) = s.target.as_ref().filter(|t| !t.host.is_empty()) {
        let ip: IpAddr = parse_host(&t.host)?;
        let port = u16::try_from(t.port)
            .ok()
            .filter(|p| *p != 0)
            .unwrap_or(5060);
        let transport = if t.transport == pb::Transport::Tcp as i32 {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        return Some(Peer::new(transport, SocketAddr::new(ip, port)));
    }
    let uri = s.uri.strip_prefix("sip:")?;
    let (main, params) = uri.split_once(';').unwrap_or((uri, ""));
    let hostport = main.rsplit_once('@').map_or(main, |(_, h)| h);
    let (host, port) = split_host_port(hostport)?;
    let tcp = params
        .split(';')
        .any(|p| p.eq_ignore_ascii_case("transport=tcp"));
    Some(Peer::new(
        if tcp { Transport::Tcp } else { Transport::Udp },
        SocketAddr::new(parse_host(host)?, port.unwrap_or(5060)),
    ))
}

fn split_host_port(hp: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = hp.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return Some((h, port));
    }
    match hp.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((hp, None)),
    }
}

fn parse_host(h: &str) -> Option<IpAddr> {
    if h.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::from([127, 0, 0, 1]));
    }
    h.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(uri: &str) -> pb::SendRequest {
        pb::SendRequest {
            uri: uri.into(),
            ..Default::default()
        }
    }

    #[test]
    fn targets_come_from_the_uri_or_the_explicit_target() {
        let p = resolve_target(&send("sip:alice@127.0.0.1:5070")).expect("ip");
        assert_eq!(p.addr, "127.0.0.1:5070".parse().expect("addr"));
        assert_eq!(p.transport, Transport::Udp);
        let p = resolve_target(&send("sip:bob@[::1]:5080;transport=TCP")).expect("v6");
        assert_eq!(p.addr, "[::1]:5080".parse().expect("addr"));
        assert_eq!(p.transport, Transport::Tcp);
        let p = resolve_target(&send("sip:localhost")).expect("localhost");
        assert_eq!(p.addr.port(), 5060);
        assert!(
            resolve_target(&send("sip:alice@example.org")).is_none(),
            "no DNS"
        );
        assert!(resolve_target(&send("tel:+15551234")).is_none());
        let mut s = send("sip:alice@example.org");
        s.target = Some(pb::Target {
            transport: pb::Transport::Tcp as i32,
            host: "10.0.0.2".into(),
            port: 5062,
        });
        let p = resolve_target(&s).expect("target");
        assert_eq!(p.addr, "10.0.0.2:5062".parse().expect("addr"));
        assert_eq!(p.transport, Transport::Tcp);
    }
}
