//! SIP through the whole compose stack, nothing mocked: sipp and the test's own UDP socket →
//! sip-proxy (host network, 127.0.0.1) → gateway → router → handler functions → back as SIP.
//! One stack for every SIP check (it takes a while to build the registrar on a fresh engine):
//! the Python `sip-message` handler, the `sip-register` registrar (RFC 3261 §10.3, digest
//! authentication, scale from zero, retransmissions) and the isolation of function state in
//! Redis (`state-probe`, a test fixture).

mod stack_support;

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
";

async fn sip_counters(s: &ComposeStack) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{}/v1/stats", s.sip_admin_port);
    let v: serde_json::Value = s
        .http
        .get(&url)
        .send()
        .await
        .expect("sip-proxy stats")
        .json()
        .await
        .expect("json");
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
    let c = sip_counters(s).await;
    assert_eq!(c["handler_calls"], 1, "one execution for {sent} sends: {c}");
    assert_eq!(
        counter(&c, "retransmissions_absorbed"),
        u64::from(sent - 1),
        "{c}"
    );

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

/// Between two readings of the proxy's counters: `calls` handler calls and `absorbed`
/// retransmissions absorbed.
fn assert_calls_and_absorbed(
    before: &serde_json::Value,
    after: &serde_json::Value,
    calls: u64,
    absorbed: u64,
) {
    let delta = |name: &str| counter(after, name) - counter(before, name);
    assert_eq!(delta("handler_calls"), calls, "{after}");
    assert_eq!(delta("retransmissions_absorbed"), absorbed, "{after}");
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
    let c1 = sip_counters(s).await;
    assert_calls_and_absorbed(&c0, &c1, 1, u64::from(sent - 1));

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
    let c2 = sip_counters(s).await;
    assert_calls_and_absorbed(&c1, &c2, 1, 2);
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
    let mdf_containers = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=sluice.instance={}", s.project),
        "--filter",
        "label=sluice.mdf-slot",
    ]);
    assert_eq!(
        mdf_containers.lines().count(),
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
    let view: serde_json::Value = s
        .http
        .get(api("/sessions/call-m1"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
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
