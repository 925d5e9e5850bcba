//! The sip-proxy process against real SIP clients: sipp and raw UDP/TCP sockets of the test.
//!
//! What is real: the sip-proxy binary, its sockets, sipp, the protobuf over HTTP. What is not:
//! the handler functions. Here the test serves them itself, in place of the gateway and the
//! function containers (`Handlers` below), so that it can count every call and choose every
//! answer; the full stack (gateway, registrar function, Redis) is tested in
//! `orchestrator/tests/stack_sip.rs`.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use prost::Message as _;
use sluice_common::sip as pb;
use sluice_common::testing::{free_port, sip_status, wait_for, ChildGuard};

/// The handler functions, served by the test: every event is recorded; answers follow the
/// method (see `answer`).
#[derive(Clone, Default)]
struct Handlers {
    events: Arc<Mutex<Vec<(String, pb::Event)>>>,
    /// Milliseconds to wait before answering, by method.
    delay_ms: Arc<Mutex<HashMap<String, u64>>>,
    /// Where MESSAGE handlers send an OPTIONS of their own.
    peer: Arc<Mutex<Option<SocketAddr>>>,
}

impl Handlers {
    fn events(&self) -> Vec<(String, pb::Event)> {
        self.events.lock().expect("lock").clone()
    }
    fn calls(&self, method: &str) -> usize {
        self.events()
            .iter()
            .filter(
                |(_, e)| matches!(&e.kind, Some(pb::event::Kind::Request(r)) if r.method == method),
            )
            .count()
    }
}

fn respond(status: u32, headers: Vec<(&str, String)>) -> pb::Action {
    pb::Action {
        kind: Some(pb::action::Kind::Respond(pb::Respond {
            status,
            headers: headers
                .into_iter()
                .map(|(n, v)| pb::Header {
                    name: n.into(),
                    value: v,
                })
                .collect(),
            ..Default::default()
        })),
    }
}

async fn handle(
    State(h): State<Handlers>,
    Path(function): Path<String>,
    body: Bytes,
) -> axum::response::Response {
    let Ok(event) = pb::Event::decode(body.as_ref()) else {
        return (StatusCode::BAD_REQUEST, "not an Event").into_response();
    };
    h.events
        .lock()
        .expect("lock")
        .push((function.clone(), event.clone()));
    let method = match &event.kind {
        Some(pb::event::Kind::Request(r)) => r.method.clone(),
        _ => String::new(),
    };
    let delay = h.delay_ms.lock().expect("lock").get(&method).copied();
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if function == "broken" {
        return (StatusCode::INTERNAL_SERVER_ERROR, "handler crashed").into_response();
    }
    let actions = match (function.as_str(), method.as_str()) {
        (_, "REGISTER") => {
            let contact = match &event.kind {
                Some(pb::event::Kind::Request(r)) => r
                    .headers
                    .iter()
                    .find(|h| h.name == "Contact")
                    .map(|h| h.value.clone())
                    .unwrap_or_default(),
                _ => String::new(),
            };
            vec![respond(200, vec![("Contact", contact)])]
        }
        (_, "INVITE") => vec![respond(486, vec![])],
        // Forks two INVITEs to the probe with one context, the first with a ring timeout;
        // a MESSAGE with `Subject: cancel` cancels what is left of the fork.
        ("forker", "MESSAGE") => {
            let peer = h.peer.lock().expect("lock").expect("peer set");
            let subject = match &event.kind {
                Some(pb::event::Kind::Request(r)) => r
                    .headers
                    .iter()
                    .find(|h| h.name == "Subject")
                    .map(|h| h.value.clone())
                    .unwrap_or_default(),
                _ => String::new(),
            };
            let invite = |n: u32, timeout_ms: u32| pb::Action {
                kind: Some(pb::action::Kind::Send(pb::SendRequest {
                    method: "INVITE".into(),
                    uri: format!("sip:leg{n}@{peer}"),
                    headers: vec![
                        pb::Header {
                            name: "From".into(),
                            value: "<sip:group@example.org>;tag=g1".into(),
                        },
                        pb::Header {
                            name: "To".into(),
                            value: format!("<sip:leg{n}@example.org>"),
                        },
                        pb::Header {
                            name: "Call-ID".into(),
                            value: format!("fork-leg{n}"),
                        },
                    ],
                    response_handler: "probe-results".into(),
                    context: "fork-1".into(),
                    timeout_ms,
                    ..Default::default()
                })),
            };
            let mut out = vec![respond(200, vec![])];
            if subject == "cancel" {
                out.push(pb::Action {
                    kind: Some(pb::action::Kind::Send(pb::SendRequest {
                        method: "CANCEL".into(),
                        cancel_context: "fork-1".into(),
                        ..Default::default()
                    })),
                });
            } else {
                out.push(invite(1, 300));
                out.push(invite(2, 0));
            }
            out
        }
        (_, "MESSAGE") => {
            let peer = h.peer.lock().expect("lock").expect("peer set");
            vec![
                respond(202, vec![]),
                pb::Action {
                    kind: Some(pb::action::Kind::Send(pb::SendRequest {
                        method: "OPTIONS".into(),
                        uri: format!("sip:probe@{peer}"),
                        headers: vec![
                            pb::Header {
                                name: "From".into(),
                                value: "<sip:platform@example.org>;tag=p1".into(),
                            },
                            pb::Header {
                                name: "To".into(),
                                value: "<sip:probe@example.org>".into(),
                            },
                        ],
                        response_handler: "probe-results".into(),
                        context: "ctx-42".into(),
                        ..Default::default()
                    })),
                },
            ]
        }
        ("probe-results", _) => Vec::new(),
        _ => vec![respond(200, vec![])],
    };
    let body = pb::Actions { actions }.encode_to_vec();
    ([("content-type", pb::CONTENT_TYPE)], body).into_response()
}

struct Proxy {
    sip: SocketAddr,
    admin: SocketAddr,
    handlers: Handlers,
    _child: ChildGuard,
}

impl Proxy {
    async fn start(routes: &str) -> Proxy {
        Proxy::start_with(routes, &[]).await
    }

    async fn start_with(routes: &str, env: &[(&str, &str)]) -> Proxy {
        let handlers = Handlers::default();
        let app = axum::Router::new()
            .route("/function/{name}", axum::routing::post(handle))
            .with_state(handlers.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind handlers");
        let gateway = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let sip: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let child = Command::new(env!("CARGO_BIN_EXE_sip-proxy"))
            .env("SLUICE_SIP_LISTEN", sip.to_string())
            .env("SLUICE_SIP_ADMIN_LISTEN", admin.to_string())
            .env("SLUICE_GATEWAY", format!("http://{gateway}"))
            .env("SLUICE_SIP_ROUTES", routes)
            .env("SLUICE_SIP_T1", "100ms")
            .env("SLUICE_SIP_HANDLER_TIMEOUT", "5s")
            .env("RUST_LOG", "sip_proxy=info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("start sip-proxy");
        let proxy = Proxy {
            sip,
            admin,
            handlers,
            _child: ChildGuard(Some(child)),
        };
        let url = format!("http://{admin}/healthz");
        wait_for("sip-proxy /healthz", Duration::from_secs(10), || {
            let url = url.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
        proxy
    }

    async fn counters(&self) -> serde_json::Value {
        let url = format!("http://{}/v1/stats", self.admin);
        let v: serde_json::Value = reqwest::get(&url)
            .await
            .expect("stats")
            .json()
            .await
            .expect("json");
        v["counters"].clone()
    }

    async fn counter(&self, name: &str) -> u64 {
        self.counters().await[name].as_u64().unwrap_or(0)
    }
}

const DEFAULT_ROUTES: &str =
    "REGISTER=sip-register,OPTIONS=sip-register,MESSAGE=sip-message,INVITE=session,BYE=session";

/// A UDP client of the test's own.
struct Client {
    sock: UdpSocket,
    proxy: SocketAddr,
}

impl Client {
    fn new(proxy: SocketAddr) -> Client {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Client { sock, proxy }
    }
    fn port(&self) -> u16 {
        self.sock.local_addr().expect("addr").port()
    }
    fn send(&self, text: &str) {
        self.sock
            .send_to(text.as_bytes(), self.proxy)
            .expect("send");
    }
    /// The next datagram, or `None` after `wait`.
    fn recv_within(&self, wait: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(wait)).expect("timeout");
        let mut buf = vec![0u8; 65536];
        match self.sock.recv_from(&mut buf) {
            Ok((n, _)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => None,
        }
    }
    fn recv(&self) -> String {
        self.recv_within(Duration::from_secs(10))
            .expect("an answer within 10 s")
    }
    fn request(&self, method: &str, call: &str, branch: &str, extra: &str) -> String {
        format!(
            "{method} sip:example.org SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@example.org>;tag=a{call}\r\n\
             To: <sip:alice@example.org>\r\n\
             Call-ID: {call}\r\n\
             CSeq: 1 {method}\r\n\
             Contact: <sip:alice@127.0.0.1:{port}>\r\n\
             {extra}Content-Length: 0\r\n\r\n",
            port = self.port()
        )
    }
}

fn sipp(scenario: &str, transport: &str, calls: u32, rate: u32, proxy: SocketAddr) -> i32 {
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(scenario);
    sluice_common::testing::sipp(&scenario, transport, calls, rate, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_registers_users_over_udp_and_tcp_each_with_one_handler_call() {
    let p = Proxy::start(DEFAULT_ROUTES).await;
    let sip = p.sip;
    let udp = tokio::task::spawn_blocking(move || sipp("register.xml", "u1", 300, 150, sip))
        .await
        .expect("sipp");
    assert_eq!(udp, 0, "sipp over UDP: every REGISTER got its 200");
    let tcp = tokio::task::spawn_blocking(move || sipp("register.xml", "t1", 100, 100, sip))
        .await
        .expect("sipp");
    assert_eq!(tcp, 0, "sipp over TCP: every REGISTER got its 200");
    assert_eq!(
        p.handlers.calls("REGISTER"),
        400,
        "one handler call per REGISTER"
    );
    let tcp_events = p
        .handlers
        .events()
        .iter()
        .filter(|(_, e)| {
            e.source
                .as_ref()
                .is_some_and(|s| s.transport == pb::Transport::Tcp as i32)
        })
        .count();
    assert_eq!(tcp_events, 100, "the event names the transport");
    let (function, first) = &p.handlers.events()[0];
    assert_eq!(function, "sip-register", "routed by method");
    let dialog = first.dialog.clone().expect("dialog ids");
    assert!(!dialog.call_id.is_empty() && !dialog.from_tag.is_empty());
    assert!(first.transaction_id.starts_with("s:REGISTER:z9hG4bK"));
    assert_eq!(p.counter("responses_out.2xx").await, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmitted_register_calls_the_handler_once_and_gets_the_last_response_again() {
    let p = Proxy::start(DEFAULT_ROUTES).await;
    p.handlers
        .delay_ms
        .lock()
        .expect("lock")
        .insert("REGISTER".into(), 700);
    let c = Client::new(p.sip);
    let register = c.request("REGISTER", "retrans-1", "r1", "Expires: 600\r\n");
    // Three copies, T1 (100 ms here) apart, while the handler is still working.
    for _ in 0..3 {
        c.send(&register);
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = c.recv();
    assert_eq!(sip_status(&first), 200, "{first}");
    // A copy after the answer gets the same answer back, from the transaction.
    c.send(&register);
    let again = c.recv();
    assert_eq!(again, first, "the last response is sent again unchanged");
    assert_eq!(p.handlers.calls("REGISTER"), 1, "the function ran once");
    assert_eq!(p.counter("retransmissions_absorbed").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_gets_100_trying_at_once_and_its_failure_is_retransmitted_until_the_ack() {
    let p = Proxy::start(DEFAULT_ROUTES).await;
    p.handlers
        .delay_ms
        .lock()
        .expect("lock")
        .insert("INVITE".into(), 500);
    let c = Client::new(p.sip);
    c.send(&c.request("INVITE", "inv-1", "i1", ""));
    let trying = c.recv();
    assert_eq!(sip_status(&trying), 100, "{trying}");
    let busy = c.recv();
    assert_eq!(sip_status(&busy), 486, "{busy}");
    assert!(
        busy.contains(";tag="),
        "a final response carries a To tag: {busy}"
    );
    // Unacknowledged over UDP: sent again (Timer G), the same bytes.
    let again = c.recv();
    assert_eq!(again, busy);
    let to = busy
        .lines()
        .find(|l| l.starts_with("To:"))
        .expect("To")
        .to_string();
    let ack = c
        .request("ACK", "inv-1", "i1", "")
        .replace("To: <sip:alice@example.org>", to.trim_end());
    c.send(&ack);
    // Drain what was in flight, then nothing more comes: G stopped at the ACK. (A bounded
    // wait for an absence: 6 × T1, several G intervals.)
    let mut after_ack = 0;
    while let Some(m) = c.recv_within(Duration::from_millis(600)) {
        assert_eq!(sip_status(&m), 486);
        after_ack += 1;
        assert!(after_ack <= 2, "486 kept coming after the ACK");
    }
    assert_eq!(p.handlers.calls("INVITE"), 1);
    assert_eq!(
        p.handlers.calls("ACK"),
        0,
        "the ACK of a failure stays in the transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_methods_get_405_with_allow_and_unknown_ones_501() {
    let p = Proxy::start(DEFAULT_ROUTES).await;
    let c = Client::new(p.sip);
    c.send(&c.request("SUBSCRIBE", "s-1", "s1", ""));
    let r = c.recv();
    assert_eq!(sip_status(&r), 405, "{r}");
    assert!(
        r.contains("Allow: BYE, INVITE, MESSAGE, OPTIONS, REGISTER, ACK, CANCEL"),
        "{r}"
    );
    c.send(&c.request("FROB", "f-1", "f1", ""));
    let r = c.recv();
    assert_eq!(sip_status(&r), 501, "{r}");
    assert!(p.handlers.events().is_empty(), "no handler was called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_missing_handler_answers_the_client_instead_of_leaving_it_waiting() {
    let p = Proxy::start("OPTIONS=broken").await;
    let c = Client::new(p.sip);
    c.send(&c.request("OPTIONS", "o-1", "o1", ""));
    let r = c.recv();
    assert_eq!(sip_status(&r), 500, "{r}");
    drop(p);

    // The gateway is not there at all: 503 with Retry-After.
    let sip: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let admin = free_port();
    let closed = free_port();
    let _child = ChildGuard(Some(
        Command::new(env!("CARGO_BIN_EXE_sip-proxy"))
            .env("SLUICE_SIP_LISTEN", sip.to_string())
            .env("SLUICE_SIP_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
            .env("SLUICE_GATEWAY", format!("http://127.0.0.1:{closed}"))
            .stdout(Stdio::null())
            .spawn()
            .expect("start"),
    ));
    let url = format!("http://127.0.0.1:{admin}/healthz");
    wait_for("healthz", Duration::from_secs(10), || {
        let url = url.clone();
        async move { reqwest::get(&url).await.ok().map(|_| ()) }
    })
    .await;
    let c = Client::new(sip);
    c.send(&c.request("OPTIONS", "o-2", "o2", ""));
    let r = c.recv();
    assert_eq!(sip_status(&r), 503, "{r}");
    assert!(r.contains("Retry-After: 5"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_counted_by_reason_answered_where_possible_and_never_stops_the_proxy() {
    let p = Proxy::start_with(DEFAULT_ROUTES, &[("SLUICE_SIP_MAX_MESSAGE", "16384")]).await;
    let c = Client::new(p.sip);
    let good = c.request("OPTIONS", "m-ok", "mok", "");
    // Garbage, a request cut inside its head, an oversized datagram, a CSeq whose method
    // does not match (answerable: 400 comes back), a tel: Request-URI (416).
    c.send("\u{1}\u{2}garbage\r\n\r\n");
    c.send(&good[..good.find("CSeq").expect("cseq")]);
    c.send(
        &format!("{good}{}", "x".repeat(20_000))
            .replace("Content-Length: 0", "Content-Length: 20000"),
    );
    c.send(&good.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"));
    let r = c.recv();
    assert_eq!(sip_status(&r), 400, "{r}");
    assert!(
        r.contains("cseq_method_mismatch"),
        "the reason is named: {r}"
    );
    c.send(&good.replace("OPTIONS sip:example.org", "OPTIONS tel:+15551234"));
    let r = c.recv();
    assert_eq!(sip_status(&r), 416, "{r}");

    // Garbage over TCP: the connection is closed, the proxy goes on.
    {
        use std::io::{Read, Write};
        let mut t = std::net::TcpStream::connect(p.sip).expect("tcp");
        t.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        t.write_all(b"NOT SIP AT ALL\r\n\r\n").expect("write");
        let mut buf = [0u8; 64];
        assert_eq!(t.read(&mut buf).unwrap_or(0), 0, "closed by the proxy");
    }

    c.send(&good);
    let r = c.recv();
    assert_eq!(sip_status(&r), 200, "still serving: {r}");
    let counters = p.counters().await;
    for (reason, n) in [
        ("start_line", 2),
        ("header_line", 1),
        ("too_large", 1),
        ("cseq_method_mismatch", 1),
        ("unsupported_uri_scheme", 1),
    ] {
        assert_eq!(
            counters[format!("malformed.{reason}")],
            n,
            "{reason}: {counters}"
        );
    }
    assert_eq!(
        p.handlers.calls("OPTIONS"),
        1,
        "only the good one reached a handler"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_platform_sends_is_retransmitted_and_its_response_or_timeout_reaches_the_handler(
) {
    let p = Proxy::start(DEFAULT_ROUTES).await;
    let probe = UdpSocket::bind("127.0.0.1:0").expect("bind");
    probe
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    *p.handlers.peer.lock().expect("lock") = Some(probe.local_addr().expect("addr"));
    let c = Client::new(p.sip);
    c.send(&c.request("MESSAGE", "msg-1", "m1", ""));
    assert_eq!(sip_status(&c.recv()), 202);

    // The handler's OPTIONS arrives, and again (Timer E) while unanswered.
    let mut buf = vec![0u8; 65536];
    let (n, from) = probe.recv_from(&mut buf).expect("the OPTIONS");
    let options = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(options.starts_with("OPTIONS sip:probe@"), "{options}");
    assert!(options.contains(";branch=z9hG4bK"), "{options}");
    let (n2, _) = probe.recv_from(&mut buf).expect("a retransmission");
    assert_eq!(String::from_utf8_lossy(&buf[..n2]), options);
    // Answer it: the response reaches the named handler with the context.
    let via = options
        .lines()
        .find(|l| l.starts_with("Via:"))
        .expect("via");
    let mut answer = format!("SIP/2.0 200 OK\r\n{via}\r\n");
    for l in options.lines() {
        if ["From:", "To:", "Call-ID:", "CSeq:"]
            .iter()
            .any(|h| l.starts_with(h))
        {
            answer.push_str(l);
            answer.push_str("\r\n");
        }
    }
    answer.push_str("Content-Length: 0\r\n\r\n");
    probe.send_to(answer.as_bytes(), from).expect("answer");
    let h = p.handlers.clone();
    let got = wait_for("the response event", Duration::from_secs(10), || {
        let h = h.clone();
        async move {
            h.events().into_iter().find_map(|(f, e)| match e.kind {
                Some(pb::event::Kind::Response(r)) if f == "probe-results" => Some((r, e.context)),
                _ => None,
            })
        }
    })
    .await;
    assert_eq!(got.0.status, 200);
    assert!(!got.0.local);
    assert_eq!(got.1, "ctx-42");

    // A second MESSAGE; this time nobody answers: 64 × T1 later the handler gets a 408.
    c.send(&c.request("MESSAGE", "msg-2", "m2", ""));
    assert_eq!(sip_status(&c.recv()), 202);
    let h = p.handlers.clone();
    let timeout = wait_for("the 408 event", Duration::from_secs(20), || {
        let h = h.clone();
        async move {
            h.events().into_iter().find_map(|(f, e)| match e.kind {
                Some(pb::event::Kind::Response(r)) if f == "probe-results" && r.status == 408 => {
                    Some(r)
                }
                _ => None,
            })
        }
    })
    .await;
    assert!(timeout.local, "the proxy made the 408 itself");
    assert_eq!(p.counter("client_timeouts").await, 1);
}

/// The probe's side of a request: its text, and the answer `status` built from it.
fn answer(request: &str, status: u16, reason: &str) -> String {
    let mut out = format!("SIP/2.0 {status} {reason}\r\n");
    for l in request.lines() {
        if ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
            .iter()
            .any(|h| l.starts_with(h))
        {
            out.push_str(l);
            if l.starts_with("To:") && status > 100 && !l.contains("tag=") {
                out.push_str(";tag=probe");
            }
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_invite_is_cancelled_by_its_ring_timeout_and_the_rest_by_context() {
    let p = Proxy::start("MESSAGE=forker").await;
    let probe = UdpSocket::bind("127.0.0.1:0").expect("bind");
    probe
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    *p.handlers.peer.lock().expect("lock") = Some(probe.local_addr().expect("addr"));
    let c = Client::new(p.sip);
    c.send(&c.request("MESSAGE", "fork-a", "f1", ""));
    assert_eq!(sip_status(&c.recv()), 200);
    let mut buf = vec![0u8; 65536];
    let mut recv = || {
        let (n, from) = probe.recv_from(&mut buf).expect("a request from the proxy");
        (String::from_utf8_lossy(&buf[..n]).into_owned(), from)
    };
    // Both legs ring (180), so both can be cancelled.
    let mut invites = Vec::new();
    while invites.len() < 2 {
        let (m, from) = recv();
        if m.starts_with("INVITE ") && !invites.iter().any(|(i, _): &(String, _)| i == &m) {
            probe
                .send_to(answer(&m, 180, "Ringing").as_bytes(), from)
                .expect("180");
            invites.push((m, from));
        }
    }
    let leg = |m: &str| {
        if m.contains("Call-ID: fork-leg1") {
            1
        } else {
            2
        }
    };
    // Leg 1's ring timeout (300 ms) passes: the proxy cancels it, and only it.
    let (cancel, from) = loop {
        let (m, from) = recv();
        if m.starts_with("CANCEL ") {
            break (m, from);
        }
    };
    assert_eq!(leg(&cancel), 1, "{cancel}");
    probe
        .send_to(answer(&cancel, 200, "OK").as_bytes(), from)
        .expect("200 to CANCEL");
    let invite1 = &invites.iter().find(|(m, _)| leg(m) == 1).expect("leg 1").0;
    probe
        .send_to(answer(invite1, 487, "Request Terminated").as_bytes(), from)
        .expect("487");
    assert_eq!(p.counter("ring_timeouts").await, 1);
    // The other leg is cancelled by context.
    c.send(&c.request("MESSAGE", "fork-b", "f2", "Subject: cancel\r\n"));
    assert_eq!(sip_status(&c.recv()), 200);
    let cancel2 = loop {
        let (m, _) = recv();
        if m.starts_with("CANCEL ") && leg(&m) == 2 {
            break m;
        }
    };
    assert!(cancel2.contains("CSeq: 1 CANCEL"), "{cancel2}");
    // The handler heard leg 1's 487 with the fork's context.
    let h = p.handlers.clone();
    let (status, context) = wait_for("leg 1's 487", Duration::from_secs(10), || {
        let h = h.clone();
        async move {
            h.events().into_iter().find_map(|(f, e)| match e.kind {
                Some(pb::event::Kind::Response(r)) if f == "probe-results" && r.status == 487 => {
                    Some((r.status, e.context))
                }
                _ => None,
            })
        }
    })
    .await;
    assert_eq!((status, context.as_str()), (487, "fork-1"));
}
