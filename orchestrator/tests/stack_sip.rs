//! SIP through the whole compose stack, nothing mocked: sipp and the test's own UDP socket →
//! sip-proxy (host network, 127.0.0.1) → gateway → router → handler functions → back as SIP.
//! One stack for every SIP check (it takes a while to build the registrar on a fresh engine):
//! the Python `sip-message` handler, the `sip-register` registrar (RFC 3261 §10.3, digest
//! authentication, scale from zero, retransmissions), the isolation of function state in
//! Redis (`state-probe`, a test fixture), and group calls: the MCPTT group, media and session
//! handlers with the orchestrator's MDF relay, sipp members, real RTP and floor control, and
//! the MDF pool's scaling and drain.

use sluice_stack as stack_support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sluice_common::testing::{free_port, sip_status, sipp, sipp_with, wait_for, ChildGuard};
use stack_support::*;

const REGISTRY: &str = "sip-message:
  name: sip-message
  version: 0.1
  configuration:
    programming_language: python
    base_function_file_name: handler.py
    function_folder: sip-message
    extra_dependencies: \"protobuf==4.25.9\"
sip-register:
  name: sip-register
  version: 0.1
  configuration:
    programming_language: rust
    base_function_file_name: src/main.rs
    function_folder: sip-register
    mode: http
  state: redis
  scaling:
    max_concurrency: 256
  env:
    SIP_MIN_EXPIRES: 2
sip-register-auth:
  name: sip-register-auth
  version: 0.1
  configuration:
    programming_language: rust
    base_function_file_name: src/main.rs
    function_folder: sip-register
    mode: http
  state: redis
  env:
    SIP_AUTH: digest
    SIP_REALM: sluice-test
    SIP_ADMIN_TOKEN: test-admin-token
    # sipp 3.6 answers the first challenge only, and knows MD5 only.
    SIP_AUTH_ALGORITHMS: MD5,SHA-256
state-probe:
  name: state-probe
  version: 0.1
  configuration:
    programming_language: python
    base_function_file_name: handler.py
    function_folder: state-probe
  state: redis
mcptt-group:
  name: mcptt-group
  version: 0.1
  configuration:
    programming_language: python
    base_function_file_name: handler.py
    function_folder: mcptt-group
    extra_dependencies: \"redis==5.0.8\"
  state: redis
  events_from: [sip-register]
mcptt-media:
  name: mcptt-media
  version: 0.1
  configuration:
    programming_language: python
    base_function_file_name: handler.py
    function_folder: mcptt-media
    extra_dependencies: \"redis==5.0.8\"
  state: redis
  uses: [mdf]
mcptt-session:
  name: mcptt-session
  version: 0.1
  configuration:
    programming_language: python
    base_function_file_name: handler.py
    function_folder: mcptt-session
    extra_dependencies: \"redis==5.0.8 protobuf==4.25.9\"
  state: redis
  env:
    MCPTT_RING_TIMEOUT_MS: 3000
";

async fn sip_counters(s: &ComposeStack) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{}/v1/stats", s.sip_admin_port);
    let v: serde_json::Value = get_json(s, &url).await;
    v["counters"].clone()
}

fn message(port: u16, call: &str, ctype: &str, body: &str) -> String {
    format!(
        "MESSAGE sip:bot@example.org SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.org>;tag=a{call}\r\n\
         To: <sip:bot@example.org>\r\n\
         Call-ID: {call}\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Type: {ctype}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `text` and, like a UDP client, again every T1 (500 ms) until a final response comes
/// (at most 30 s); returns it and how many times the request went out.
fn send_until_final(sock: &UdpSocket, to: SocketAddr, text: &str) -> (String, u32) {
    send_until_final_every(sock, to, text, Duration::from_millis(500))
}

/// [`send_until_final`] retransmitting every `t1`. Responses to other requests (late copies
/// of an earlier answer) are skipped: a final response counts only with the request's Call-ID
/// and CSeq.
fn send_until_final_every(
    sock: &UdpSocket,
    to: SocketAddr,
    text: &str,
    t1: Duration,
) -> (String, u32) {
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(30) {
        sock.send_to(text.as_bytes(), to).expect("send");
        sent += 1;
        if let Some(r) = recv_final(sock, text, t1) {
            return (r, sent);
        }
    }
    panic!("no final response in 30 s after {sent} sends");
}

/// The final response to `request` arriving within `wait`, if any.
fn recv_final(sock: &UdpSocket, request: &str, wait: Duration) -> Option<String> {
    let key = |m: &str| (header_values(m, "Call-ID"), header_values(m, "CSeq"));
    let want = key(request);
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            break;
        };
        let r = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !r.starts_with("SIP/2.0 1") && key(&r) == want {
            return Some(r);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_through_the_stack() {
    let s = ComposeStack::up_with_mdf("sip", REGISTRY).await;
    s.wait_built("sip-message").await;
    s.wait_built("state-probe").await;
    s.wait_built("mcptt-group").await;
    s.wait_built("mcptt-media").await;
    s.wait_built("mcptt-session").await;
    for f in ["sip-register", "sip-register-auth"] {
        s.wait_built_within(f, Duration::from_secs(900)).await;
    }
    let health = format!("http://127.0.0.1:{}/healthz", s.sip_admin_port);
    wait_for(
        "the sip-proxy to be healthy",
        Duration::from_secs(60),
        || {
            let (http, url) = (s.http.clone(), health.clone());
            async move {
                let r = http.get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        },
    )
    .await;
    let proxy: SocketAddr = format!("127.0.0.1:{}", s.sip_port).parse().expect("addr");
    python_handler(&s, proxy).await;
    registrar(&s, proxy).await;
    groups(&s, proxy).await;
    media(&s).await;
    group_call(&s, proxy).await;
    mdf_pool(&s).await;
    digest(&s).await;
    state_isolation(&s).await;
}

/// The Python handler: cold start with retransmissions, its own refusals, sipp UDP and TCP.
async fn python_handler(s: &ComposeStack, proxy: SocketAddr) {
    let f = s.function("sip-message").await;
    assert_eq!(
        f["availableReplicas"].as_u64(),
        Some(0),
        "at zero before the first call: {f}"
    );

    // The function is at zero: the first MESSAGE waits for a cold start while the client
    // retransmits. It gets its 200, and the function runs once.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sock.local_addr().expect("addr").port();
    let (answer, sent) =
        send_until_final(&sock, proxy, &message(port, "cold-1", "text/plain", "hi"));
    assert!(answer.starts_with("SIP/2.0 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("X-Sluice-Handler: sip-message"),
        "answered by the function: {answer}"
    );
    assert!(answer.contains("X-Received-Bytes: 2"), "{answer}");
    // One execution for every send: the first call, the rest absorbed.
    assert_calls_and_absorbed(s, &serde_json::json!({}), 1, u64::from(sent - 1)).await;

    // The handler's own refusal travels the same way.
    let (answer, _) = send_until_final(
        &sock,
        proxy,
        &message(port, "bin-1", "application/octet-stream", "x"),
    );
    assert!(answer.starts_with("SIP/2.0 415 "), "{answer}");
    assert!(answer.contains("Accept: text/plain"), "{answer}");

    // sipp, over UDP and TCP: every MESSAGE answered 200 by the function.
    let scenario = repo_root().join("sip-proxy/tests/sipp/message.xml");
    let sc = scenario.clone();
    let udp = tokio::task::spawn_blocking(move || sipp(&sc, "u1", 200, 50, proxy))
        .await
        .expect("sipp");
    assert_eq!(udp, 0, "sipp over UDP\n{}", s.logs());
    let tcp = tokio::task::spawn_blocking(move || sipp(&scenario, "t1", 50, 50, proxy))
        .await
        .expect("sipp");
    assert_eq!(tcp, 0, "sipp over TCP\n{}", s.logs());
    let c = sip_counters(s).await;
    assert_eq!(c["handler_calls"], 2 + 250, "{c}");
    assert_eq!(c["responses_out.2xx"], 1 + 250, "{c}");
}

/// A REGISTER from the test's UDP socket on `port`, for AOR `sip:<user>@example.org`.
fn register(port: u16, user: &str, call: &str, cseq: u32, extra: &[&str]) -> String {
    let mut m = format!(
        "REGISTER sip:example.org SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call}-{cseq}-{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@example.org>;tag=f{call}\r\n\
         To: <sip:{user}@example.org>\r\n\
         Call-ID: {call}\r\n\
         CSeq: {cseq} REGISTER\r\n",
        n = free_port()
    );
    for h in extra {
        m.push_str(h);
        m.push_str("\r\n");
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    m
}

/// Every value of header `name` in a SIP message (one per line).
fn header_values(msg: &str, name: &str) -> Vec<String> {
    let head = msg.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

fn counter(c: &serde_json::Value, name: &str) -> u64 {
    c[name].as_u64().unwrap_or(0)
}

/// The proxy's counters once they show `calls` handler calls and `absorbed` absorbed
/// retransmissions since `before`, asserted exact. The proxy counts a copy when it handles it,
/// which can be just after the client got its answer: the counters are polled (10 s at most)
/// until they reach the numbers, and then must not exceed them.
async fn assert_calls_and_absorbed(
    s: &ComposeStack,
    before: &serde_json::Value,
    calls: u64,
    absorbed: u64,
) -> serde_json::Value {
    let delta =
        |after: &serde_json::Value, name: &str| counter(after, name) - counter(before, name);
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let after = sip_counters(s).await;
        let reached = delta(&after, "handler_calls") >= calls
            && delta(&after, "retransmissions_absorbed") >= absorbed;
        if reached || Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(delta(&after, "handler_calls"), calls, "{after}");
    assert_eq!(
        delta(&after, "retransmissions_absorbed"),
        absorbed,
        "{after}"
    );
    after
}

/// The registrar (`sip-register`, Rust, state in Redis): RFC 3261 §10.3 as a phone sees it.
async fn registrar(s: &ComposeStack, proxy: SocketAddr) {
    let f = s.function("sip-register").await;
    assert_eq!(f["availableReplicas"].as_u64(), Some(0), "at zero: {f}");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sock.local_addr().expect("addr").port();
    let a = format!("<sip:alice@127.0.0.1:{port}>");
    let b = format!("<sip:alice@127.0.0.1:{port};transport=udp;dev=b>");
    let contacts = |m: &str| header_values(m, "Contact");

    // From zero: the phone retransmits (every 100 ms here) while the registrar cold-starts;
    // it gets its 200 and the function runs once.
    let c0 = sip_counters(s).await;
    let (ok, sent) = send_until_final_every(
        &sock,
        proxy,
        &register(
            port,
            "alice",
            "a1",
            1,
            &[&format!("Contact: {a}"), "Expires: 600"],
        ),
        Duration::from_millis(100),
    );
    assert_eq!(sip_status(&ok), 200, "{ok}");
    assert_eq!(contacts(&ok), [format!("{a};expires=600")], "{ok}");
    assert!(
        sent >= 2,
        "the client was still retransmitting: {sent} sends"
    );
    let c1 = assert_calls_and_absorbed(s, &c0, 1, u64::from(sent - 1)).await;

    // Warm: the same REGISTER three times, T1 apart, calls the function once.
    let second = register(
        port,
        "alice",
        "b1",
        1,
        &[&format!("Contact: {b};expires=120"), "Expires: 600"],
    );
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(500)); // the client's T1, not a wait
        }
        sock.send_to(second.as_bytes(), proxy).expect("send");
    }
    let ok = recv_final(&sock, &second, Duration::from_secs(10)).expect("a final response");
    assert_eq!(sip_status(&ok), 200, "{ok}");
    assert_calls_and_absorbed(s, &c1, 1, 2).await;
    // Two devices on one AOR; the second one's own expires parameter wins over Expires.
    let got = contacts(&ok);
    assert_eq!(got.len(), 2, "{ok}");
    assert!(
        got.iter().any(|c| c.starts_with(&format!("{a};expires="))),
        "{ok}"
    );
    assert!(got.contains(&format!("{b};expires=120")), "{ok}");

    let ask = |call: &str, cseq: u32, extra: &[&str]| {
        send_until_final(&sock, proxy, &register(port, "alice", call, cseq, extra)).0
    };
    // Refresh (same Call-ID, higher CSeq): a new interval.
    let r = ask("a1", 2, &[&format!("Contact: {a}"), "Expires: 300"]);
    assert!(contacts(&r).contains(&format!("{a};expires=300")), "{r}");
    // A fetch (no Contact) lists every binding and changes nothing.
    let r = ask("q1", 1, &[]);
    assert_eq!((sip_status(&r), contacts(&r).len()), (200, 2), "{r}");
    // An older CSeq of the same registration is refused and changes nothing.
    let r = ask("a1", 1, &[&format!("Contact: {a}"), "Expires: 0"]);
    assert_eq!(sip_status(&r), 500, "{r}");
    assert_eq!(contacts(&ask("q2", 1, &[])).len(), 2);
    // Expires: 0 removes one binding.
    let r = ask("b1", 2, &[&format!("Contact: {b}"), "Expires: 0"]);
    let left = contacts(&r);
    assert_eq!(left.len(), 1, "{r}");
    assert!(left[0].starts_with(&format!("{a};expires=")), "{r}");
    // Below min-expires (2 s in this stack): 423 with Min-Expires.
    let r = ask("c1", 1, &[&format!("Contact: {b}"), "Expires: 1"]);
    assert_eq!(sip_status(&r), 423, "{r}");
    assert_eq!(header_values(&r, "Min-Expires"), ["2"], "{r}");
    // The wildcard removes every binding.
    let r = ask("w1", 1, &["Contact: *", "Expires: 0"]);
    assert_eq!((sip_status(&r), contacts(&r).len()), (200, 0), "{r}");
    assert_eq!(contacts(&ask("q3", 1, &[])).len(), 0);
    // A binding lapses at its expiry: listed, then gone.
    let r = ask("e1", 1, &[&format!("Contact: {a}"), "Expires: 2"]);
    assert_eq!(contacts(&r), [format!("{a};expires=2")], "{r}");
    let mut n = 0;
    wait_for("the 2 s binding to lapse", Duration::from_secs(15), || {
        n += 1;
        let r = ask(&format!("q-e{n}"), 1, &[]);
        async move { contacts(&r).is_empty().then_some(()) }
    })
    .await;
    // OPTIONS is answered.
    let options = format!(
        "OPTIONS sip:example.org SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKopt1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.org>;tag=o1\r\nTo: <sip:example.org>\r\n\
         Call-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let (r, _) = send_until_final(&sock, proxy, &options);
    assert_eq!(sip_status(&r), 200, "{r}");
    assert!(
        header_values(&r, "Allow")
            .iter()
            .any(|v| v.contains("REGISTER")),
        "{r}"
    );

    // sipp: 1 000 distinct users over UDP and 100 over TCP, every one answered 200.
    let scenario = repo_root().join("sip-proxy/tests/sipp/register.xml");
    let sc = scenario.clone();
    let udp = tokio::task::spawn_blocking(move || sipp(&sc, "u1", 1000, 200, proxy))
        .await
        .expect("sipp");
    assert_eq!(
        udp,
        0,
        "1000 REGISTERs over UDP\nsip-proxy: {}\n{}",
        sip_counters(s).await,
        s.logs()
    );
    let tcp = tokio::task::spawn_blocking(move || sipp(&scenario, "t1", 100, 50, proxy))
        .await
        .expect("sipp");
    assert_eq!(
        tcp,
        0,
        "100 REGISTERs over TCP\nsip-proxy: {}\n{}",
        sip_counters(s).await,
        s.logs()
    );
}

/// The Group Handler: its JSON API refuses bad input naming the field, and `online` follows
/// the registrar's (un)registration events.
async fn groups(s: &ComposeStack, proxy: SocketAddr) {
    let api = |path: &str| s.url(&format!("/function/mcptt-group{path}"));
    let put = |path: &str, body: serde_json::Value| {
        let req = s.http.put(api(path)).json(&body);
        async move {
            let r = req.send().await.expect("PUT");
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let get = |path: &str| {
        let req = s.http.get(api(path));
        async move {
            let r = req.send().await.expect("GET");
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let members = [
        "sip:ann@example.org",
        "sip:ben@example.org",
        "sip:cat@example.org",
        "sip:dan@example.org",
    ];
    let (st, v) = put("/groups/team-1", serde_json::json!({"members": members})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["id"], "team-1");
    assert_eq!(v["members"], serde_json::json!(members));
    assert_eq!(v["online"], serde_json::json!([]));

    // Bad input: the field at fault is named.
    for (body, field) in [
        (
            serde_json::json!({"members": ["sip:ann@example.org", "not a uri"]}),
            "members[1]",
        ),
        (
            serde_json::json!({"members": ["sip:ann@example.org", "sip:ann@Example.ORG"]}),
            "members[1]",
        ),
        (serde_json::json!({"members": []}), "members"),
        (
            serde_json::json!({"members": "sip:ann@example.org"}),
            "members",
        ),
        (serde_json::json!({"people": []}), "people"),
    ] {
        let (st, v) = put("/groups/team-2", body.clone()).await;
        assert_eq!((st, v["field"].as_str()), (400, Some(field)), "{body}: {v}");
    }
    let (st, v) = put("/groups/bad id!", serde_json::json!({"members": members})).await;
    assert_eq!((st, v["field"].as_str()), (400, Some("id")), "{v}");
    let (st, v) = get("/groups/nobody").await;
    assert_eq!((st, v["field"].as_str()), (404, Some("id")), "{v}");

    // Ann and Ben register: they are online, with their contacts as targets.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sock.local_addr().expect("addr").port();
    for (i, user) in ["ann", "ben"].iter().enumerate() {
        let contact = format!("Contact: <sip:{user}@127.0.0.1:{port}>");
        let (ok, _) = send_until_final(
            &sock,
            proxy,
            &register(port, user, &format!("g{i}"), 1, &[&contact, "Expires: 600"]),
        );
        assert_eq!(sip_status(&ok), 200, "{ok}");
    }
    let (st, v) = get("/groups/team-1").await;
    assert_eq!(st, 200);
    assert_eq!(
        v["online"],
        serde_json::json!(["sip:ann@example.org", "sip:ben@example.org"]),
        "{v}"
    );
    let (_, t) = get("/groups/team-1/targets").await;
    assert_eq!(
        t["targets"][0],
        serde_json::json!({"member": "sip:ann@example.org", "contacts": [format!("sip:ann@127.0.0.1:{port}")]}),
        "{t}"
    );
    // Ben unregisters: he is no longer online.
    let (ok, _) = send_until_final(
        &sock,
        proxy,
        &register(
            port,
            "ben",
            "g1",
            2,
            &[
                &format!("Contact: <sip:ben@127.0.0.1:{port}>"),
                "Expires: 0",
            ],
        ),
    );
    assert_eq!(sip_status(&ok), 200, "{ok}");
    let (_, v) = get("/groups/team-1").await;
    assert_eq!(
        v["online"],
        serde_json::json!(["sip:ann@example.org"]),
        "{v}"
    );
    let (_, all) = get("/groups").await;
    assert_eq!(all["groups"].as_array().map(Vec::len), Some(1), "{all}");
    let del = s
        .http
        .delete(api("/groups/team-1"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(del.status(), 204);
    let del = s
        .http
        .delete(api("/groups/team-1"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(del.status(), 404);
}

/// The Media Handler and the MDF pool: the orchestrator runs an MDF instance (a container on
/// the host network); a relay session allocated through `mcptt-media` relays real RTP
/// between sockets of this test on 127.0.0.1, and its ports are freed at the end.
async fn media(s: &ComposeStack) {
    let api = |path: &str| s.url(&format!("/function/mcptt-media{path}"));
    let alice = (
        UdpSocket::bind("127.0.0.1:0").expect("bind"),
        UdpSocket::bind("127.0.0.1:0").expect("bind"),
    );
    let bob = (
        UdpSocket::bind("127.0.0.1:0").expect("bind"),
        UdpSocket::bind("127.0.0.1:0").expect("bind"),
    );
    for sock in [&alice.0, &alice.1, &bob.0, &bob.1] {
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
    }
    let sdp = |rtp: &UdpSocket, rtcp: &UdpSocket| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=rtcp:{}\r\n",
            rtp.local_addr().expect("addr").port(),
            rtcp.local_addr().expect("addr").port()
        )
    };
    let offer = sdp(&alice.0, &alice.1);
    let body = serde_json::json!({
        "id": "call-m1",
        "sdp": offer,
        "floor": "sip:alice@example.org",
        "legs": [{"id": "sip:alice@example.org", "sdp": offer}, {"id": "sip:bob@example.org"}],
    });
    // The pool starts its first instance with the stack: wait until it takes sessions.
    let created = wait_for(
        "an MDF instance to take a session",
        Duration::from_secs(120),
        || {
            let req = s.http.post(api("/sessions")).json(&body);
            async move {
                let r = req.send().await.ok()?;
                if r.status() == 201 {
                    r.json::<serde_json::Value>().await.ok()
                } else {
                    None
                }
            }
        },
    )
    .await;
    assert_eq!(
        mdf_containers(s, false),
        1,
        "one MDF instance, launched by the orchestrator"
    );
    let leg = |i: usize, key: &str| created["legs"][i][key].as_u64().expect("port") as u16;
    assert_eq!(created["address"], "127.0.0.1", "{created}");
    let alice_sdp = created["legs"][0]["sdp"].as_str().expect("sdp");
    assert!(
        alice_sdp.contains(&format!("m=audio {} RTP/AVP 8", leg(0, "rtp_port"))),
        "{alice_sdp}"
    );
    let bob_offer = created["legs"][1]["sdp"].as_str().expect("sdp");
    assert!(
        bob_offer.contains(&format!("m=audio {} RTP/AVP 8", leg(1, "rtp_port"))),
        "{bob_offer}"
    );
    assert!(bob_offer.contains("c=IN IP4 127.0.0.1"), "{bob_offer}");

    // Bob answers with his SDP: he hears Floor Taken (alice holds the floor), then her media.
    let r = s
        .http
        .put(api("/sessions/call-m1/legs/sip%3Abob%40example.org"))
        .json(&serde_json::json!({"sdp": sdp(&bob.0, &bob.1)}))
        .send()
        .await
        .expect("PUT leg");
    assert_eq!(r.status(), 200);
    let mut buf = [0u8; 2048];
    let (n, _) = bob.1.recv_from(&mut buf).expect("Floor Taken");
    assert_eq!(
        (buf[1], &buf[8..12]),
        (204, &b"MCPT"[..]),
        "an MCPT APP packet"
    );
    assert_eq!(buf[0] & 0x0f, 2, "Floor Taken");
    assert!(n >= 12);
    let relay = SocketAddr::from(([127, 0, 0, 1], leg(0, "rtp_port")));
    for seq in 0..20u16 {
        let mut pkt = vec![0x80, 8];
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7]);
        pkt.extend_from_slice(&[seq as u8; 160]);
        alice.0.send_to(&pkt, relay).expect("send RTP");
        let (n, from) = bob.0.recv_from(&mut buf).expect("relayed RTP");
        assert_eq!(&buf[..n], &pkt[..], "byte-identical");
        assert_eq!(from.port(), leg(1, "rtp_port"), "from bob's own relay port");
    }
    let view: serde_json::Value = get_json(s, &api("/sessions/call-m1")).await;
    assert_eq!(view["stats"]["relayed_packets"], 20, "{view}");
    // The end: the relay frees the ports.
    let r = s
        .http
        .delete(api("/sessions/call-m1"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), 200);
    UdpSocket::bind(relay).expect("the relay port is free again");
    let r = s
        .http
        .get(api("/sessions/call-m1"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 404);
}

/// A member's sipp UAS (scenario with its RTP port written in), registered at the registrar
/// with the UAS's own address as contact; plus the RTP/RTCP sockets the test reads.
struct Member {
    aor: String,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    sipp: ChildGuard,
}

impl Member {
    fn start(user: &str, scenario: &str, proxy: SocketAddr) -> Member {
        let (rtp, rtcp) = rtp_pair();
        let dir = std::env::temp_dir().join(format!("mcptt-{user}-{}", free_port()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = repo_root().join("sip-proxy/tests/sipp").join(scenario);
        let rtp_port = rtp.local_addr().expect("addr").port().to_string();
        let sip_port = free_port();
        let child = std::process::Command::new("sipp")
            .current_dir(&dir)
            .arg("-sf")
            .arg(&file)
            .args([
                "-t",
                "u1",
                "-m",
                "1",
                "-i",
                "127.0.0.1",
                "-p",
                &sip_port.to_string(),
            ])
            .args(["-key", "rtp_port", &rtp_port])
            .args(["-timeout", "90s", "-nostdin", "-trace_err"])
            .arg(proxy.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start sipp");
        register_only_contact(proxy, user, sip_port);
        Member {
            aor: format!("sip:{user}@example.org"),
            rtp,
            rtcp,
            sipp: ChildGuard(Some(child)),
        }
    }

    /// sipp's verdict: 0 when the member saw the whole call it expected.
    fn finish(&mut self) -> i32 {
        let mut child = self.sipp.0.take().expect("sipp running");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = child.try_wait().expect("wait sipp") {
                return st.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "sipp {} did not finish",
                self.aor
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn recv_rtp(&self) -> Vec<u8> {
        let mut buf = [0u8; 2048];
        let (n, _) = self.rtp.recv_from(&mut buf).expect("RTP from the relay");
        buf[..n].to_vec()
    }

    /// The next floor message's type (low 4 bits of the MCPT APP subtype).
    fn recv_floor(&self) -> u8 {
        let mut buf = [0u8; 2048];
        loop {
            let (n, _) = self.rtcp.recv_from(&mut buf).expect("a floor message");
            if n >= 12 && buf[1] == 204 && &buf[8..12] == b"MCPT" {
                return buf[0] & 0x0f;
            }
        }
    }
}

/// Makes `127.0.0.1:sip_port` the only contact of `user` at the registrar (an earlier one of
/// the test is gone).
fn register_only_contact(proxy: SocketAddr, user: &str, sip_port: u16) {
    let reg = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = reg.local_addr().expect("addr").port();
    let call = format!("reg-{user}-{sip_port}");
    let (ok, _) = send_until_final(
        &reg,
        proxy,
        &register(port, user, &call, 1, &["Contact: *", "Expires: 0"]),
    );
    assert_eq!(sip_status(&ok), 200, "{ok}");
    let contact = format!("Contact: <sip:{user}@127.0.0.1:{sip_port}>");
    let (ok, _) = send_until_final(
        &reg,
        proxy,
        &register(port, user, &call, 2, &[&contact, "Expires: 600"]),
    );
    assert_eq!(sip_status(&ok), 200, "{ok}");
}

/// A member played by the test itself over a UDP socket (a real SIP UAS, registered like any
/// phone), so that the test decides when it hangs up.
struct UasMember {
    aor: String,
    user: String,
    sip: UdpSocket,
    rtp: UdpSocket,
    _rtcp: UdpSocket,
    /// The INVITE it answered (for the dialog's headers).
    invite: String,
    tag: String,
}

impl UasMember {
    fn start(user: &str, proxy: SocketAddr) -> UasMember {
        let sip = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sip.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        register_only_contact(proxy, user, sip.local_addr().expect("addr").port());
        let (rtp, rtcp) = rtp_pair();
        UasMember {
            aor: format!("sip:{user}@example.org"),
            user: user.to_string(),
            sip,
            rtp,
            _rtcp: rtcp,
            invite: String::new(),
            tag: format!("m{}", free_port()),
        }
    }

    /// The next SIP request whose request line starts with `method`; retransmitted INVITEs
    /// of an answered call get the 200 again, anything else is skipped.
    fn recv_request(&self, s: &ComposeStack, method: &str) -> (String, SocketAddr) {
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, from) = self.sip.recv_from(&mut buf).unwrap_or_else(|e| {
                panic!(
                    "{} got no {method} ({e}); mcptt-session's log:\n{}",
                    self.aor,
                    function_logs(s, "mcptt-session")
                )
            });
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.starts_with(&format!("{method} ")) {
                return (m, from);
            }
            if m.starts_with("INVITE ") && !self.invite.is_empty() {
                self.sip
                    .send_to(self.ok(&m).as_bytes(), from)
                    .expect("200 again");
            }
        }
    }

    /// A 200 to the INVITE `req` (see [`response_200`]), with SDP pointing at our RTP socket.
    fn ok(&self, req: &str) -> String {
        let m = response_200(req, &self.tag);
        let port = self.rtp.local_addr().expect("addr").port();
        let body = format!(
            "v=0\r\no={} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n",
            self.user
        );
        let contact = format!(
            "<sip:{}@{}>",
            self.user,
            self.sip.local_addr().expect("addr")
        );
        m + &format!(
            "Contact: {contact}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// Answers the group's INVITE with 200 and SDP, then waits for the ACK.
    fn answer(&mut self, s: &ComposeStack) {
        let (invite, from) = self.recv_request(s, "INVITE");
        self.invite = invite;
        self.sip
            .send_to(self.ok(&self.invite).as_bytes(), from)
            .expect("200");
        self.recv_request(s, "ACK");
    }

    /// Sends BYE in its dialog (to the proxy) and waits for the 200.
    fn hang_up(&self, s: &ComposeStack, proxy: SocketAddr) {
        let one = |name: &str| first_header(&self.invite, name);
        let target = one("Contact");
        let target = target.trim_start_matches('<').trim_end_matches('>');
        let bye = format!(
            "BYE {target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {};branch=z9hG4bKbye{}\r\n\
             Max-Forwards: 70\r\n\
             From: {};tag={}\r\n\
             To: {}\r\n\
             Call-ID: {}\r\n\
             CSeq: 1 BYE\r\n\
             Content-Length: 0\r\n\r\n",
            self.sip.local_addr().expect("addr"),
            self.tag,
            one("To"),
            self.tag,
            one("From"),
            one("Call-ID"),
        );
        self.sip.send_to(bye.as_bytes(), proxy).expect("BYE");
        recv_status(s, &self.sip, "BYE", 200);
    }
}

/// The first value of header `name` ("" when absent).
fn first_header(msg: &str, name: &str) -> String {
    header_values(msg, name)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// The head of a 200 to `req` without Content-Length: its Vias, From, To (with `to_tag` added
/// when it has none), Call-ID and CSeq.
fn response_200(req: &str, to_tag: &str) -> String {
    let mut m = String::from("SIP/2.0 200 OK\r\n");
    for v in header_values(req, "Via") {
        m.push_str(&format!("Via: {v}\r\n"));
    }
    let to = first_header(req, "To");
    let to = if to.contains("tag=") {
        to
    } else {
        format!("{to};tag={to_tag}")
    };
    m + &format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
        first_header(req, "From"),
        first_header(req, "Call-ID"),
        first_header(req, "CSeq")
    )
}

/// An even RTP port with RTCP right above it, both bound by the test on 127.0.0.1.
fn rtp_pair() -> (UdpSocket, UdpSocket) {
    let (rtp, rtcp) = loop {
        let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = rtp.local_addr().expect("addr").port();
        if port.is_multiple_of(2) {
            if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)) {
                break (rtp, rtcp);
            }
        }
    };
    for sock in [&rtp, &rtcp] {
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
    }
    (rtp, rtcp)
}

const FLOOR_GRANTED: u8 = 1;
const FLOOR_TAKEN: u8 = 2;
const FLOOR_DENY: u8 = 3;
const FLOOR_IDLE: u8 = 5;

fn floor_message(kind: u8) -> Vec<u8> {
    // An MCPT APP packet from a client: V=2, subtype = kind, PT 204, length 2, SSRC, name.
    vec![0x80 | kind, 204, 0, 2, 0, 0, 0, 9, b'M', b'C', b'P', b'T']
}

fn rtp_packet(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160u16).map(|i| (i ^ seq) as u8));
    p
}

fn invite(port: u16, call: &str, group: &str, rtp_port: u16) -> String {
    let sdp = format!(
        "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n\
         m=application {} udp MCPTT\r\na=fmtp:MCPTT mc_implicit_request\r\n",
        rtp_port + 1
    );
    let info = "<?xml version=\"1.0\"?><mcpttinfo xmlns=\"urn:3gpp:ns:mcpttInfo:1.0\"><mcptt-Params><session-type>prearranged</session-type></mcptt-Params></mcpttinfo>";
    let body = format!(
        "--mcptt\r\nContent-Type: application/sdp\r\n\r\n{sdp}--mcptt\r\n\
         Content-Type: application/vnd.3gpp.mcptt-info+xml\r\n\r\n{info}\r\n--mcptt--\r\n"
    );
    format!(
        "INVITE sip:{group}@example.org SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.org>;tag=a{call}\r\n\
         To: <sip:{group}@example.org>\r\n\
         Call-ID: {call}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@127.0.0.1:{port}>\r\n\
         Content-Type: multipart/mixed;boundary=mcptt\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// In-dialog request from the originator (ACK, BYE, CANCEL) for `call`.
fn in_dialog(
    method: &str,
    port: u16,
    call: &str,
    group: &str,
    to_tag: &str,
    cseq: u32,
    branch: &str,
) -> String {
    let to = if to_tag.is_empty() {
        format!("<sip:{group}@example.org>")
    } else {
        format!("<sip:{group}@example.org>;tag={to_tag}")
    };
    format!(
        "{method} sip:{group}@example.org SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.org>;tag=a{call}\r\n\
         To: {to}\r\n\
         Call-ID: {call}\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Reads SIP messages on `sock` until a response to `method` with `status`; responses to
/// other methods and other provisional responses are skipped, another final response fails
/// the test with the handler's log.
fn recv_status(s: &ComposeStack, sock: &UdpSocket, method: &str, status: u16) -> String {
    // (The REGISTER helpers leave a short read timeout on the socket.)
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut buf = vec![0u8; 65536];
    loop {
        let got = sock.recv_from(&mut buf);
        let m = match got {
            Ok((n, _)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) => panic!(
                "no {status} ({e}); mcptt-session's log:\n{}",
                function_logs(s, "mcptt-session")
            ),
        };
        let cseq = header_values(&m, "CSeq");
        if !m.starts_with("SIP/2.0") || !cseq.iter().any(|c| c.ends_with(method)) {
            continue;
        }
        let got = sip_status(&m);
        if got == status {
            return m;
        }
        assert!(
            got < 200 || status < 200,
            "expected {status}, got:\n{m}\nmcptt-session's log:\n{}",
            function_logs(s, "mcptt-session")
        );
    }
}

/// The logs of a function's containers, the group's targets and the sip-proxy's counters
/// (for failure messages).
fn function_logs(s: &ComposeStack, function: &str) -> String {
    let curl = |url: &str| {
        std::process::Command::new("curl")
            .args(["-s", "-m", "5", url])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let targets = curl(&s.url("/function/mcptt-group/groups/ptt/targets"));
    let counters = curl(&format!("http://127.0.0.1:{}/v1/stats", s.sip_admin_port));
    format!("targets: {targets}\nsip-proxy: {counters}\n")
        + &s.containers(function, true)
            .iter()
            .map(|id| {
                let out = std::process::Command::new("docker")
                    .args(["logs", "--tail", "60", id])
                    .output()
                    .map(|o| {
                        format!(
                            "{}{}",
                            String::from_utf8_lossy(&o.stdout),
                            String::from_utf8_lossy(&o.stderr)
                        )
                    })
                    .unwrap_or_default();
                format!("--- {id}\n{out}")
            })
            .collect::<String>()
}

/// How many MDF containers the stack's orchestrator runs (`all`: exited ones too).
fn mdf_containers(s: &ComposeStack, all: bool) -> usize {
    docker(&[
        "ps",
        if all { "-aq" } else { "-q" },
        "--filter",
        &format!("label=sluice.instance={}", s.project),
        "--filter",
        "label=sluice.mdf-slot",
    ])
    .lines()
    .count()
}

async fn get_json(s: &ComposeStack, url: &str) -> serde_json::Value {
    s.http
        .get(url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json")
}

/// The To tag of a response.
fn tag_of(resp: &str) -> String {
    header_values(resp, "To")[0]
        .rsplit("tag=")
        .next()
        .expect("to tag")
        .to_string()
}

async fn put_group(s: &ComposeStack, members: &serde_json::Value) {
    let r = s
        .http
        .put(s.url("/function/mcptt-group/groups/ptt"))
        .json(members)
        .send()
        .await
        .expect("PUT group");
    assert_eq!(r.status(), 200);
}

async fn wait_session_gone(s: &ComposeStack, id: &str) {
    wait_for("the relay session to end", Duration::from_secs(10), || {
        let req = s
            .http
            .get(s.url(&format!("/function/mcptt-media/sessions/{id}")));
        async move { (req.send().await.ok()?.status() == 404).then_some(()) }
    })
    .await;
}

fn sdp_audio_port(msg: &str) -> u16 {
    msg.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("m=audio in the SDP")
}

/// Group calls end to end: sipp members, the test as the originator and as every member's
/// RTP endpoint; the session handler cold-starts during the first call's setup.
async fn group_call(s: &ComposeStack, proxy: SocketAddr) {
    let f = s.function("mcptt-session").await;
    assert_eq!(f["availableReplicas"].as_u64(), Some(0), "at zero: {f}");
    let mut bob = Member::start("bob", "mcptt-member-answers.xml", proxy);
    let mut carol = Member::start("carol", "mcptt-member-answers.xml", proxy);
    let mut dave = Member::start("dave", "mcptt-member-rings.xml", proxy);
    let alice_sip = UdpSocket::bind("127.0.0.1:0").expect("bind");
    alice_sip
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let port = alice_sip.local_addr().expect("addr").port();
    let to_proxy = |m: String| {
        alice_sip
            .send_to(m.as_bytes(), proxy)
            .expect("send to the proxy");
    };
    let (ok, _) = send_until_final(
        &alice_sip,
        proxy,
        &register(
            port,
            "alice",
            "reg-alice",
            1,
            &[
                &format!("Contact: <sip:alice@127.0.0.1:{port}>"),
                "Expires: 600",
            ],
        ),
    );
    assert_eq!(sip_status(&ok), 200, "{ok}");
    let (a_rtp, a_rtcp) = rtp_pair();
    let members =
        serde_json::json!({"members": ["sip:alice@example.org", bob.aor, carol.aor, dave.aor]});
    put_group(s, &members).await;

    // Alice calls the group (multipart body with mcptt-info): the proxy answers 100 Trying
    // at once, the first member's answer brings the 200 with her relay SDP.
    to_proxy(invite(
        port,
        "gc-1",
        "ptt",
        a_rtp.local_addr().expect("addr").port(),
    ));
    recv_status(s, &alice_sip, "INVITE", 100);
    let ok = recv_status(s, &alice_sip, "INVITE", 200);
    let to_tag = tag_of(&ok);
    to_proxy(in_dialog("ACK", port, "gc-1", "ptt", &to_tag, 1, "ack1"));
    let relay = SocketAddr::from(([127, 0, 0, 1], sdp_audio_port(&ok)));
    let view: serde_json::Value = get_json(s, &s.url("/function/mcptt-media/sessions/gc-1")).await;
    let relay_of = |aor: &str| {
        let leg = view["legs"]
            .as_array()
            .expect("legs")
            .iter()
            .find(|l| l["id"] == aor)
            .expect("leg")
            .clone();
        (
            SocketAddr::from((
                [127, 0, 0, 1],
                leg["rtp_port"].as_u64().expect("port") as u16,
            )),
            SocketAddr::from((
                [127, 0, 0, 1],
                leg["rtcp_port"].as_u64().expect("port") as u16,
            )),
        )
    };
    assert_eq!(relay_of("sip:alice@example.org").0, relay, "{view}");
    // Alice holds the floor (implicit request); bob and carol hear Taken as they join.
    assert_eq!(bob.recv_floor(), FLOOR_TAKEN);
    // Carol may answer just after bob: wait until both legs are joined before media.
    wait_for("carol to join", Duration::from_secs(20), || {
        let req = s.http.get(s.url("/function/mcptt-media/sessions/gc-1"));
        async move {
            let v: serde_json::Value = req.send().await.ok()?.json().await.ok()?;
            let joined = v["legs"]
                .as_array()?
                .iter()
                .filter(|l| !l["remote_rtp"].is_null())
                .count();
            (joined == 3).then_some(())
        }
    })
    .await;
    assert_eq!(carol.recv_floor(), FLOOR_TAKEN);

    // Relaying: every packet of the holder, byte-identical and in order, at bob and carol.
    let sent: Vec<Vec<u8>> = (0..50).map(|i| rtp_packet(0xa1, 100 + i)).collect();
    for p in &sent {
        a_rtp.send_to(p, relay).expect("RTP");
    }
    for m in [&bob, &carol] {
        for p in &sent {
            assert_eq!(&m.recv_rtp(), p, "{} got alice's packets in order", m.aor);
        }
    }
    // Bad input at the relay: malformed RTP and RTCP, and a flood from an address that is
    // no member's (127.0.0.2); each is counted by reason and relaying goes on.
    let (bob_rtp_relay, bob_rtcp_relay) = relay_of(&bob.aor);
    a_rtp.send_to(&[0x80, 8, 0], relay).expect("short RTP");
    a_rtp.send_to(&[0x40; 40], relay).expect("RTP version 1");
    a_rtcp
        .send_to(b"not rtcp at all", relay_of("sip:alice@example.org").1)
        .expect("bad RTCP");
    let stranger = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    for i in 0..100 {
        stranger
            .send_to(&rtp_packet(0xbad, i), bob_rtp_relay)
            .expect("flood");
        stranger
            .send_to(&rtp_packet(0xbad, i), relay)
            .expect("flood");
    }
    let stats = wait_for(
        "the relay to count the bad input",
        Duration::from_secs(10),
        || {
            let req = s.http.get(s.url("/function/mcptt-media/sessions/gc-1"));
            async move {
                let v: serde_json::Value = req.send().await.ok()?.json().await.ok()?;
                let st = v["stats"].clone();
                (st["dropped_foreign_source"].as_u64()? >= 200).then_some(st)
            }
        },
    )
    .await;
    assert_eq!(stats["dropped_malformed_rtp"], 2, "{stats}");
    assert_eq!(stats["dropped_malformed_rtcp"], 1, "{stats}");
    assert_eq!(
        stats["relayed_packets"], 100,
        "50 packets to each of two members: {stats}"
    );
    let after = rtp_packet(0xa1, 150);
    a_rtp.send_to(&after, relay).expect("RTP");
    for m in [&bob, &carol] {
        assert_eq!(m.recv_rtp(), after, "{} still hears alice", m.aor);
    }

    // Floor control: bob asks while alice talks (Deny); alice releases (Idle to all); bob
    // asks again (Granted, Taken to the others), and his media reaches alice and carol.
    let (_, alice_rtcp_relay) = relay_of("sip:alice@example.org");
    bob.rtcp
        .send_to(&floor_message(0), bob_rtcp_relay)
        .expect("Floor Request");
    assert_eq!(bob.recv_floor(), FLOOR_DENY);
    let mut a_floor = [0u8; 2048];
    let granted = a_rtcp.recv_from(&mut a_floor).expect("alice's Granted").0;
    assert_eq!((a_floor[0] & 0x0f, granted >= 12), (FLOOR_GRANTED, true));
    a_rtcp
        .send_to(&floor_message(4), alice_rtcp_relay)
        .expect("Floor Release");
    for m in [&bob, &carol] {
        assert_eq!(m.recv_floor(), FLOOR_IDLE, "{}", m.aor);
    }
    a_rtcp.recv_from(&mut a_floor).expect("alice's Idle");
    assert_eq!(a_floor[0] & 0x0f, FLOOR_IDLE);
    bob.rtcp
        .send_to(&floor_message(0), bob_rtcp_relay)
        .expect("Floor Request");
    assert_eq!(bob.recv_floor(), FLOOR_GRANTED);
    assert_eq!(carol.recv_floor(), FLOOR_TAKEN);
    let bobs: Vec<Vec<u8>> = (0..20).map(|i| rtp_packet(0xb0, 500 + i)).collect();
    for p in &bobs {
        bob.rtp.send_to(p, bob_rtp_relay).expect("RTP");
    }
    for p in &bobs {
        assert_eq!(&carol.recv_rtp(), p);
        let mut buf = [0u8; 2048];
        let (n, _) = a_rtp.recv_from(&mut buf).expect("bob's RTP at alice");
        assert_eq!(&buf[..n], &p[..]);
    }
    // Dave never answers: his ring timeout cancels his leg; the call goes on.
    assert_eq!(
        dave.finish(),
        0,
        "dave's INVITE was cancelled and ended with 487"
    );
    // Alice hangs up: bob and carol get BYE (sipp answers 200), the relay frees its ports.
    to_proxy(in_dialog("BYE", port, "gc-1", "ptt", &to_tag, 2, "bye1"));
    recv_status(s, &alice_sip, "BYE", 200);
    assert_eq!(bob.finish(), 0, "bob saw INVITE, ACK and BYE");
    assert_eq!(carol.finish(), 0, "carol saw INVITE, ACK and BYE");
    wait_session_gone(s, "gc-1").await;
    UdpSocket::bind(relay).expect("alice's relay port is free again");

    // CANCEL before any answer: 487 to alice, and the forks are cancelled.
    let mut bob = Member::start("bob", "mcptt-member-rings.xml", proxy);
    let mut carol = Member::start("carol", "mcptt-member-rings.xml", proxy);
    to_proxy(invite(
        port,
        "gc-2",
        "ptt",
        a_rtp.local_addr().expect("addr").port(),
    ));
    recv_status(s, &alice_sip, "INVITE", 180);
    to_proxy(in_dialog("CANCEL", port, "gc-2", "ptt", "", 1, "gc-2"));
    let cancelled = recv_status(s, &alice_sip, "INVITE", 487);
    // The 487 is ACKed in the INVITE's transaction (its branch), or the proxy resends it.
    let tag = tag_of(&cancelled);
    to_proxy(in_dialog("ACK", port, "gc-2", "ptt", &tag, 1, "gc-2"));
    assert_eq!(bob.finish(), 0, "bob's fork was cancelled");
    assert_eq!(carol.finish(), 0, "carol's fork was cancelled");

    // Members hang up: a member's BYE ends that leg only; the last one leaving ends the call,
    // and alice gets BYE from the group. (Dave is left out of the group this time.)
    let mut bob = UasMember::start("bob", proxy);
    let mut carol = UasMember::start("carol", proxy);
    let members = serde_json::json!({"members": ["sip:alice@example.org", bob.aor, carol.aor]});
    put_group(s, &members).await;
    let a_port = a_rtp.local_addr().expect("addr").port();
    to_proxy(invite(port, "gc-3", "ptt", a_port));
    bob.answer(s);
    carol.answer(s);
    let ok = recv_status(s, &alice_sip, "INVITE", 200);
    let to_tag = tag_of(&ok);
    to_proxy(in_dialog("ACK", port, "gc-3", "ptt", &to_tag, 1, "ack3"));
    let relay = SocketAddr::from(([127, 0, 0, 1], sdp_audio_port(&ok)));
    let legs = |s: &ComposeStack| {
        let req = s.http.get(s.url("/function/mcptt-media/sessions/gc-3"));
        async move {
            let v: serde_json::Value = req.send().await.ok()?.json().await.ok()?;
            let mut ids: Vec<String> = v["legs"]
                .as_array()?
                .iter()
                .filter(|l| !l["remote_rtp"].is_null() && l["active"] == true)
                .filter_map(|l| l["id"].as_str().map(str::to_string))
                .collect();
            ids.sort();
            Some(ids)
        }
    };
    let all = vec![
        "sip:alice@example.org".to_string(),
        bob.aor.clone(),
        carol.aor.clone(),
    ];
    wait_for("bob and carol to join", Duration::from_secs(20), || {
        let want = all.clone();
        async move { legs(s).await.filter(|l| *l == want) }
    })
    .await;
    carol.hang_up(s, proxy);
    wait_for("carol's leg to end", Duration::from_secs(20), || {
        let want = vec!["sip:alice@example.org".to_string(), bob.aor.clone()];
        async move { legs(s).await.filter(|l| *l == want) }
    })
    .await;
    let p = rtp_packet(0xa3, 7);
    a_rtp.send_to(&p, relay).expect("RTP");
    let mut buf = [0u8; 2048];
    let (n, _) = bob.rtp.recv_from(&mut buf).expect("alice's RTP at bob");
    assert_eq!(
        &buf[..n],
        &p[..],
        "the call goes on for bob after carol left"
    );
    bob.hang_up(s, proxy);
    // Bob was the last member: alice gets BYE in her dialog (From the group, her Call-ID).
    let mut buf = vec![0u8; 65536];
    let bye = loop {
        let (n, from) = alice_sip.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!(
                "alice got no BYE ({e}); mcptt-session's log:\n{}",
                function_logs(s, "mcptt-session")
            )
        });
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.starts_with("BYE ") {
            break (m, from);
        }
    };
    assert_eq!(header_values(&bye.0, "Call-ID"), ["gc-3"], "{}", bye.0);
    assert!(
        header_values(&bye.0, "From")[0].contains(&format!("tag={to_tag}")),
        "in alice's dialog: {}",
        bye.0
    );
    let answer = response_200(&bye.0, "") + "Content-Length: 0\r\n\r\n";
    alice_sip
        .send_to(answer.as_bytes(), bye.1)
        .expect("200 to BYE");
    wait_session_gone(s, "gc-3").await;
    UdpSocket::bind(relay).expect("alice's relay port is free again");
}

/// The MDF pool (instances of 4 sessions in this stack, 2 s quiet time before a drain), seen
/// through `GET /system/mdf`: a new instance near capacity, a drain that cuts no call, and the
/// drained instance removed once its last call ends.
async fn mdf_pool(s: &ComposeStack) {
    let api = |path: &str| s.url(&format!("/function/mcptt-media{path}"));
    let pool_url = s.url("/system/mdf");
    let pool = || async {
        s.admin
            .get(&pool_url)
            .send()
            .await
            .expect("GET /system/mdf")
            .json::<serde_json::Value>()
            .await
            .expect("json")
    };
    let states = |v: &serde_json::Value| -> Vec<(u64, String, u64)> {
        v["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .map(|i| {
                (
                    i["slot"].as_u64().expect("slot"),
                    i["state"].as_str().expect("state").to_string(),
                    i["sessions"].as_u64().expect("sessions"),
                )
            })
            .collect()
    };
    // The view is the pool's observation of the last second: the previous call's end shows
    // within a tick.
    let v = wait_for(
        "one idle instance at the pool's minimum",
        Duration::from_secs(10),
        || async {
            let v = pool().await;
            (states(&v) == [(0, "active".to_string(), 0)]).then_some(v)
        },
    )
    .await;
    assert_eq!(v["instances"][0]["capacity"], 4, "{v}");
    // Each session: alice (holder, SDP at her sockets) and bob.
    // (The RTCP sockets stay bound: floor messages go there.)
    let (a_rtp, _a_rtcp) = rtp_pair();
    let (b_rtp, _b_rtcp) = rtp_pair();
    let sdp = |rtp: &UdpSocket| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n",
            rtp.local_addr().expect("addr").port()
        )
    };
    let create = |id: String| {
        let body = serde_json::json!({
            "id": id,
            "sdp": sdp(&a_rtp),
            "floor": "sip:alice@example.org",
            "legs": [
                {"id": "sip:alice@example.org", "sdp": sdp(&a_rtp)},
                {"id": "sip:bob@example.org", "sdp": sdp(&b_rtp)},
            ],
        });
        let req = s.http.post(api("/sessions")).json(&body);
        async move {
            let r = req.send().await.expect("POST session");
            assert_eq!(r.status(), 201, "{id}");
            r.json::<serde_json::Value>().await.expect("json")
        }
    };
    let delete = |id: &str| {
        let req = s.http.delete(api(&format!("/sessions/{id}")));
        async move {
            assert_eq!(req.send().await.expect("DELETE").status(), 200);
        }
    };
    // Four calls fill the instance: the pool launches a second one.
    for i in 1..=4 {
        create(format!("pool-{i}")).await;
    }
    wait_for(
        "a second MDF instance to take sessions",
        Duration::from_secs(60),
        || async {
            let v = pool().await;
            (states(&v)
                .iter()
                .any(|(slot, st, _)| *slot == 1 && st == "active"))
            .then_some(())
        },
    )
    .await;
    let v = pool().await;
    let (min1, max1) = (
        v["instances"][1]["port_min"].as_u64().expect("port"),
        v["instances"][1]["port_max"].as_u64().expect("port"),
    );
    // The fifth call goes to the new, least loaded instance (its own port range).
    let fifth = create("pool-5".to_string()).await;
    let port = |c: &serde_json::Value, i: usize| c["legs"][i]["rtp_port"].as_u64().expect("port");
    assert!(
        (min1..=max1).contains(&port(&fifth, 0)),
        "pool-5 on slot 1 ({min1}–{max1}): {fifth}"
    );
    let relay_a = SocketAddr::from(([127, 0, 0, 1], port(&fifth, 0) as u16));
    let relays = |seq: u16| {
        let p = rtp_packet(0xf5, seq);
        a_rtp.send_to(&p, relay_a).expect("RTP");
        let mut buf = [0u8; 2048];
        let (n, _) = b_rtp.recv_from(&mut buf).expect("alice's RTP at bob");
        assert_eq!(&buf[..n], &p[..], "relayed");
    };
    relays(1);
    // The first four end: one instance is enough again. After the quiet time the highest
    // slot drains although it holds pool-5, which goes on relaying until it ends.
    for i in 1..=4 {
        delete(&format!("pool-{i}")).await;
    }
    wait_for(
        "slot 1 to drain with its call",
        Duration::from_secs(30),
        || async {
            let v = pool().await;
            (states(&v) == [(0, "active".to_string(), 0), (1, "draining".to_string(), 1)])
                .then_some(())
        },
    )
    .await;
    for seq in 2..20 {
        relays(seq);
    }
    // New calls go to the active instance only.
    let sixth = create("pool-6".to_string()).await;
    assert!(
        !(min1..=max1).contains(&port(&sixth, 0)),
        "pool-6 not on the draining slot: {sixth}"
    );
    delete("pool-6").await;
    delete("pool-5").await;
    wait_for(
        "the drained instance to be removed",
        Duration::from_secs(30),
        || async {
            let v = pool().await;
            (states(&v) == [(0, "active".to_string(), 0)]).then_some(())
        },
    )
    .await;
    wait_for(
        "the drained container to be gone",
        Duration::from_secs(30),
        || async { (mdf_containers(s, true) == 1).then_some(()) },
    )
    .await;
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Digest authentication (`sip-register-auth`): users provisioned over its HTTP API, a
/// challenge, SHA-256 by hand and MD5 by sipp, refusals. Through a second sip-proxy process
/// (the same binary) routing REGISTER to that function.
async fn digest(s: &ComposeStack) {
    let users = s.url("/function/sip-register-auth/users/alice");
    let put = |token: Option<&str>| {
        let mut r = s.http.put(&users).body(r#"{"password": "wonderland"}"#);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(put(None).await.expect("put").status(), 401, "no token");
    assert_eq!(
        put(Some("guess")).await.expect("put").status(),
        401,
        "wrong token"
    );
    assert_eq!(
        put(Some("test-admin-token")).await.expect("put").status(),
        200
    );

    let sip_port = free_port();
    let admin_port = free_port();
    let mut proxy_proc = ChildGuard(Some(
        std::process::Command::new(repo_root().join("target/release/sip-proxy"))
            .env("SLUICE_SIP_LISTEN", format!("127.0.0.1:{sip_port}"))
            .env("SLUICE_SIP_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
            .env("SLUICE_GATEWAY", format!("http://127.0.0.1:{}", s.port))
            .env("SLUICE_SIP_ROUTES", "REGISTER=sip-register-auth")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("sip-proxy binary (cargo build --release)"),
    ));
    let health = format!("http://127.0.0.1:{admin_port}/healthz");
    wait_for("the second sip-proxy", Duration::from_secs(30), || {
        let (http, url) = (s.http.clone(), health.clone());
        async move {
            http.get(&url)
                .send()
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(())
        }
    })
    .await;
    let proxy: SocketAddr = format!("127.0.0.1:{sip_port}").parse().expect("addr");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sock.local_addr().expect("addr").port();
    let contact = format!("Contact: <sip:alice@127.0.0.1:{port}>");

    // No credentials: 401 with a challenge per algorithm.
    let (r, _) = send_until_final(&sock, proxy, &register(port, "alice", "d1", 1, &[&contact]));
    assert_eq!(sip_status(&r), 401, "{r}");
    let challenges = header_values(&r, "WWW-Authenticate");
    assert_eq!(challenges.len(), 2, "{r}");
    let sha = challenges
        .iter()
        .find(|c| c.contains("algorithm=SHA-256"))
        .expect("a SHA-256 challenge");
    let nonce = sha
        .split("nonce=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .expect("nonce");
    let answer = |user: &str, password: &str| {
        let ha1 = sha256_hex(&format!("{user}:sluice-test:{password}"));
        let ha2 = sha256_hex("REGISTER:sip:example.org");
        let resp = sha256_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"sluice-test\", nonce=\"{nonce}\", \
             uri=\"sip:example.org\", response=\"{resp}\", algorithm=SHA-256, qop=auth, \
             nc=00000001, cnonce=\"c0ffee\""
        )
    };
    let ask = |aor: &str, cseq: u32, auth: String| {
        send_until_final(
            &sock,
            proxy,
            &register(port, aor, "d1", cseq, &[&contact, &auth]),
        )
        .0
    };
    let r = ask("alice", 2, answer("alice", "wonderland"));
    assert_eq!(sip_status(&r), 200, "SHA-256 digest: {r}");
    assert_eq!(header_values(&r, "Contact").len(), 1, "{r}");
    let r = ask("alice", 3, answer("alice", "looking-glass"));
    assert_eq!(sip_status(&r), 403, "wrong password: {r}");
    let r = ask("bob", 4, answer("bob", "wonderland"));
    assert_eq!(sip_status(&r), 403, "unknown user: {r}");
    // Alice's credentials do not register someone else's address.
    let r = ask("mallory", 5, answer("alice", "wonderland"));
    assert_eq!(sip_status(&r), 403, "another AOR: {r}");

    // sipp's [authentication] (MD5): challenge, answer, 200 for every call.
    let scenario = repo_root().join("sip-proxy/tests/sipp/register-digest.xml");
    let rc = tokio::task::spawn_blocking(move || {
        sipp_with(
            &scenario,
            "u1",
            20,
            10,
            proxy,
            &["-s", "alice", "-au", "alice", "-ap", "wonderland"],
        )
    })
    .await
    .expect("sipp");
    assert_eq!(rc, 0, "sipp digest registration\n{}", s.logs());
    proxy_proc.terminate();
}

/// A function's Redis credentials reach its own prefix and nothing else.
async fn state_isolation(s: &ComposeStack) {
    let control = format!("{}:functions", s.project);
    // The control key is really there (read as the control plane, inside the redis container).
    let redis = s.service("redis");
    let len = docker(&[
        "exec",
        &redis,
        "sh",
        "-c",
        &format!("redis-cli --no-auth-warning -a \"$(cat /run/sluice-secret/redis-password)\" HLEN {control}"),
    ]);
    assert!(
        len.parse::<u64>().unwrap_or(0) > 0,
        "control hash {control}: {len:?}"
    );

    let r = s
        .http
        .get(s.url(&format!("/function/state-probe?control={control}")))
        .send()
        .await
        .expect("state-probe");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
    assert_eq!(text("prefix"), "fn:state-probe:", "{v}");
    assert_eq!(v["control_password_file_visible"], false, "{v}");
    assert!(text("anonymous_get").starts_with("ERR NOAUTH"), "{v}");
    assert!(
        text("default_user_guess").starts_with("ERR WRONGPASS"),
        "{v}"
    );
    assert_eq!(text("auth"), "OK", "{v}");
    assert_eq!(
        (text("own_set"), text("own_get")),
        ("OK".into(), "1".into()),
        "{v}"
    );
    for k in [
        "control_read",
        "control_write",
        "sluice_write",
        "sluice_delete",
        "keys",
        "scan",
        "flushall",
        "other_function",
    ] {
        assert!(text(k).starts_with("ERR NOPERM"), "{k}: {v}");
    }
    let after = docker(&[
        "exec",
        &redis,
        "sh",
        "-c",
        &format!("redis-cli --no-auth-warning -a \"$(cat /run/sluice-secret/redis-password)\" HEXISTS {control} evil"),
    ]);
    assert_eq!(after, "0", "the control hash is untouched");
}
