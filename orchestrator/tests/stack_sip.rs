//! SIP through the whole compose stack, nothing mocked: sipp and the test's own UDP socket →
//! sip-proxy (host network, 127.0.0.1) → gateway → router → the `sip-message` function
//! (Python, the protobuf contract) → back as SIP.

mod stack_support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sluice_common::testing::{sipp, wait_for};
use stack_support::*;

const REGISTRY: &str = "sip-message:
  name: sip-message
  version: 0.1
  configuration:
    programming_language: python
    base_function_file_name: handler.py
    function_folder: sip-message
    extra_dependencies: \"protobuf==4.25.9\"
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
    let start = Instant::now();
    let mut sent = 0;
    let mut buf = vec![0u8; 65536];
    while start.elapsed() < Duration::from_secs(30) {
        sock.send_to(text.as_bytes(), to).expect("send");
        sent += 1;
        let deadline = Instant::now() + Duration::from_millis(500);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("timeout");
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                break;
            };
            let r = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !r.starts_with("SIP/2.0 1") {
                return (r, sent);
            }
        }
    }
    panic!("no final response in 30 s after {sent} sends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_requests_reach_a_python_handler_function_through_the_stack() {
    let s = ComposeStack::up("sip", REGISTRY).await;
    s.wait_built("sip-message").await;
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
    let c = sip_counters(&s).await;
    assert_eq!(c["handler_calls"], 1, "one execution for {sent} sends: {c}");
    assert_eq!(c["retransmissions_absorbed"], sent as u64 - 1, "{c}");

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
    let c = sip_counters(&s).await;
    assert_eq!(c["handler_calls"], 2 + 250, "{c}");
    assert_eq!(c["responses_out.2xx"], 1 + 250, "{c}");
}
