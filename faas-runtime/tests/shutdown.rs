//! SIGTERM: in-flight calls finish, new connections are refused, the process exits 0.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

#[tokio::test]
async fn sigterm_lets_the_inflight_call_finish_refuses_new_connections_and_exits_zero() {
    let mut rt = Runtime::start(
        "python",
        "sleep",
        &function("sleep", "handler.py"),
        &[("SLUICE_MAX_INFLIGHT", "1")],
    );
    rt.wait_ready().await;
    let c = client();
    let inflight = tokio::spawn({
        let c = c.clone();
        let url = rt.url("/?ms=1000");
        async move {
            let resp = c.get(url).send().await.expect("in-flight call");
            (resp.status(), resp.json::<Value>().await.expect("json"))
        }
    });
    // The call is running once the replica reports itself at its cap.
    rt.wait_ready_body("concurrency limit").await;
    rt.signal(Signal::SIGTERM);

    // New connections are refused (polling: the listener closes right after the signal).
    let port = rt.port;
    eventually("new connections refused", || {
        TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    })
    .await;

    let (status, body) = inflight.await.expect("task");
    assert_eq!(status, 200);
    assert_eq!(body, json!({"slept_ms": 1000}));
    let exit = rt.wait_exit(SOON).await;
    assert!(exit.success(), "exit status {exit:?}");
    assert!(rt.log().contains("drained"));
}

#[tokio::test]
async fn idle_keepalive_connections_do_not_delay_exit() {
    let mut rt = Runtime::start(
        "python",
        "hello",
        &function("hello", "handler.py"),
        &[("SLUICE_GRACE_MS", "30000")],
    );
    rt.wait_ready().await;
    // A keep-alive connection that stays open and idle after one request.
    let mut conn = TcpStream::connect(("127.0.0.1", rt.port)).expect("connect");
    conn.write_all(b"GET /?name=ka HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut buf = [0u8; 4096];
    let n = conn.read(&mut buf).expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.ends_with("Hello, ka"), "{head}");

    let started = Instant::now();
    rt.signal(Signal::SIGTERM);
    let exit = rt.wait_exit(SOON).await;
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // The server closed the idle connection.
    conn.set_read_timeout(Some(SOON)).expect("timeout");
    assert_eq!(conn.read(&mut buf).unwrap_or(0), 0);
}

#[tokio::test]
async fn sigterm_in_http_mode_stops_the_user_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = write_file(
        dir.path(),
        "server.py",
        "import http.server, os\nhttp.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), http.server.SimpleHTTPRequestHandler).serve_forever()\n",
        false,
    );
    let port = free_port().to_string();
    let mut rt = Runtime::start(
        "http",
        "web",
        &format!("python3 {server}"),
        &[("SLUICE_HTTP_PORT", port.as_str())],
    );
    rt.wait_ready().await;
    let server_pid = eventually("the server process", || {
        children_of(rt.pid()).first().copied()
    })
    .await;
    rt.signal(Signal::SIGTERM);
    let exit = rt.wait_exit(SOON).await;
    assert!(exit.success(), "exit status {exit:?}");
    eventually("the server to be gone", || {
        (!std::path::Path::new(&format!("/proc/{server_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{server_pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true))
        .then_some(())
    })
    .await;
}
