//! http mode: the runtime starts a small Python `http.server` and proxies to it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const SERVER: &str = r#"
import http.server, json, os, sys, time

if os.environ.get("START_DELAY"):
    time.sleep(float(os.environ["START_DELAY"]))

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path == "/exit":
            os._exit(3)
        if self.path == "/slow":
            time.sleep(5)
        out = json.dumps({
            "method": self.command,
            "path": self.path,
            "x_custom": self.headers.get("x-custom"),
            "token_header": self.headers.get("x-sluice-runtime-token"),
            "token_env": os.environ.get("SLUICE_RUNTIME_TOKEN"),
            "body": body.decode("latin-1"),
            "pid": os.getpid(),
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-upstream", "yes")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = answer

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

fn start(extra: &[(&str, &str)]) -> (Runtime, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = write_file(dir.path(), "server.py", SERVER, false);
    let port = free_port().to_string();
    let mut env = vec![("SLUICE_HTTP_PORT", port.as_str())];
    env.extend_from_slice(extra);
    let rt = Runtime::start("http", "web", &format!("python3 -u {server}"), &env);
    (rt, dir)
}

#[tokio::test]
async fn forwards_method_path_query_headers_and_body() {
    let (rt, _dir) = start(&[]);
    rt.wait_ready().await;
    let c = client();
    let mut pids = Vec::new();
    for i in 0..5 {
        let resp = c
            .post(rt.url(&format!("/api/items?page={i}&q=a+b")))
            .header("X-Custom", "passed")
            .body(format!("payload {i}"))
            .send()
            .await
            .expect("call");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-upstream"], "yes");
        assert!(resp.headers().contains_key("x-sluice-runtime-ms"));
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], format!("/api/items?page={i}&q=a+b"));
        assert_eq!(v["x_custom"], "passed");
        assert_eq!(v["body"], format!("payload {i}"));
        pids.push(v["pid"].clone());
    }
    // One long-lived server process answers every call.
    assert!(pids.windows(2).all(|w| w[0] == w[1]), "{pids:?}");

    let resp = c.delete(rt.url("/x")).send().await.expect("call");
    assert_eq!(
        resp.json::<Value>().await.expect("json")["method"],
        "DELETE"
    );
}

/// With a runtime token (as the orchestrator starts every replica), nothing but a request
/// carrying it is answered, health and readiness included: another function that can open
/// a connection to this replica gets 403. The function sees neither the header nor the
/// variable.
#[tokio::test]
async fn only_requests_with_the_runtime_token_are_answered() {
    let token = "t0k3n-for-web";
    let (rt, _dir) = start(&[("SLUICE_RUNTIME_TOKEN", token)]);
    rt.wait_listening().await;
    let c = client();
    sluice_common::testing::wait_for("ready with the token", Duration::from_secs(20), || async {
        let r = c
            .get(rt.url("/_/ready"))
            .header("x-sluice-runtime-token", token)
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    for (path, header) in [
        ("/_/ready", None),
        ("/_/health", None),
        ("/api", None),
        ("/api", Some("wrong")),
        ("/api", Some("")),
    ] {
        let mut req = c.post(rt.url(path)).body("x");
        if let Some(h) = header {
            req = req.header("x-sluice-runtime-token", h);
        }
        let resp = req.send().await.expect("call");
        assert_eq!(resp.status(), 403, "{path} {header:?}");
        let v: Value = resp.json().await.expect("json");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains("gateway")),
            "{v}"
        );
    }
    let resp = c
        .post(rt.url("/api"))
        .header("x-sluice-runtime-token", token)
        .body("x")
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["body"], "x");
    assert_eq!(v["token_header"], Value::Null, "{v}");
    assert_eq!(v["token_env"], Value::Null, "{v}");
}

#[tokio::test]
async fn ready_waits_for_the_server_to_accept_connections() {
    let (rt, _dir) = start(&[("START_DELAY", "0.8")]);
    rt.wait_listening().await;
    let resp = client()
        .get(rt.url("/_/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.expect("json");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("not accepting connections"),
        "{v}"
    );
    rt.wait_ready().await;
}

#[tokio::test]
async fn slow_upstream_is_504_and_big_body_is_413() {
    let (rt, _dir) = start(&[
        ("SLUICE_TIMEOUT_MS", "300"),
        ("SLUICE_MAX_BODY_BYTES", "100"),
    ]);
    rt.wait_ready().await;
    let c = client();
    let started = Instant::now();
    let resp = c.get(rt.url("/slow")).send().await.expect("call");
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"error": "function timed out", "function": "web"})
    );

    let resp = c
        .post(rt.url("/"))
        .body(vec![b'x'; 500])
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 413);

    let chunk = "y".repeat(400);
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let answer = raw_request(rt.port, req.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let resp = c.get(rt.url("/fine")).send().await.expect("call");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn server_exit_makes_the_runtime_exit_nonzero() {
    let (mut rt, _dir) = start(&[]);
    rt.wait_ready().await;
    let _ = client().get(rt.url("/exit")).send().await;
    let status = rt.wait_exit(SOON).await;
    assert!(!status.success(), "exit status {status:?}");
    assert!(rt.log().contains("function server exited unexpectedly"));
}
