//! python mode against the real binary and the host's `python3`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

#[tokio::test]
async fn hello_answers_default_query_and_json_name() {
    let rt = Runtime::start("python", "hello", &function("hello", "handler.py"), &[]);
    rt.wait_ready().await;
    let c = client();

    let resp = c.get(rt.url("/hello")).send().await.expect("call");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    let ms: f64 = resp.headers()["x-sluice-runtime-ms"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a number of milliseconds");
    assert!(ms >= 0.0);
    assert_eq!(resp.text().await.expect("body"), "Hello, world");

    let resp = c.get(rt.url("/hello?name=x")).send().await.expect("call");
    assert_eq!(resp.text().await.expect("body"), "Hello, x");

    let resp = c
        .post(rt.url("/hello"))
        .json(&json!({ "name": "Ada" }))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.text().await.expect("body"), "Hello, Ada");

    // curl -d sends form content-type; a JSON-looking body is still parsed.
    let resp = c
        .post(rt.url("/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"name": "Grace"}"#)
        .send()
        .await
        .expect("call");
    assert_eq!(resp.text().await.expect("body"), "Hello, Grace");
}

#[tokio::test]
async fn handler_exception_is_500_with_message_and_worker_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let handler = write_file(
        dir.path(),
        "handler.py",
        "def handle(event, context):\n    if event['query'].get('fail'):\n        raise ValueError('bad input')\n    return 'fine'\n",
        false,
    );
    // One worker: the call after the failure is served by the same worker.
    let rt = Runtime::start("python", "boom", &handler, &[("SLUICE_MAX_INFLIGHT", "1")]);
    rt.wait_ready().await;
    let c = client();
    for _ in 0..2 {
        let resp = c.get(rt.url("/?fail=1")).send().await.expect("call");
        assert_eq!(resp.status(), 500);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(
            body,
            json!({"error": "ValueError: bad input", "function": "boom"})
        );
        let resp = c.get(rt.url("/")).send().await.expect("call");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.expect("body"), "fine");
    }
    assert!(rt.log().contains("Traceback"), "the traceback is logged");
}

const CONVENTIONS: &str = r#"
import sys

def handle(event, context):
    p = event["path"]
    if p == "/event":
        return {
            "method": event["method"],
            "path": p,
            "query": event["query"],
            "query_all": event["query_all"],
            "x_custom": event["headers"].get("x-custom"),
            "body": event["body"],
            "body_type": type(event["body"]).__name__,
            "function_name": context.function_name,
            "request_id": context.request_id,
            "remaining_ok": 0 < context.remaining_ms() <= 30000,
        }
    if p == "/bytes":
        return event["raw_body"]
    if p == "/body-type":
        return type(event["body"]).__name__
    if p == "/none":
        return None
    if p == "/tuple":
        return ("created", 201, {"X-Custom": "yes"})
    if p == "/typed":
        return ("<p>hi</p>", 200, {"Content-Type": "text/html"})
    if p == "/list":
        return [1, 2.5, True, None]
    if p == "/print":
        print("\x00\x00\x00\x10garbage that looks like a frame")
        sys.stdout.write("no newline")
        print("to stderr", file=sys.stderr)
        sys.stdout.buffer.write(b"\xff\xfe raw bytes\n")
        return "still fine"
    if p == "/async":
        async def inner():
            return "from a coroutine"
        return inner()
    if p == "/bad-status":
        return ("x", "200")
    return "default"
"#;

#[tokio::test]
async fn event_and_return_value_conventions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let handler = write_file(dir.path(), "handler.py", CONVENTIONS, false);
    let rt = Runtime::start("python", "conv", &handler, &[]);
    rt.wait_ready().await;
    let c = client();

    let resp = c
        .post(rt.url("/event?a=1&a=2&name=J%C3%BCrgen+X&flag"))
        .header("X-Custom", "v")
        .header("X-Request-Id", "req-42")
        .header("content-type", "application/json")
        .body(r#"{"k": [1, 2]}"#)
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let ev: Value = resp.json().await.expect("json");
    assert_eq!(
        ev,
        json!({
            "method": "POST",
            "path": "/event",
            "query": {"a": "2", "name": "Jürgen X", "flag": ""},
            "query_all": {"a": ["1", "2"], "name": ["Jürgen X"], "flag": [""]},
            "x_custom": "v",
            "body": {"k": [1, 2]},
            "body_type": "dict",
            "function_name": "conv",
            "request_id": "req-42",
            "remaining_ok": true,
        })
    );

    // Body decoding: empty → None, text → str, invalid UTF-8 → bytes.
    for (body, expected) in [
        (Vec::new(), "NoneType"),
        (b"plain words".to_vec(), "str"),
        (vec![0xff, 0x00, 0x80], "bytes"),
    ] {
        let resp = c
            .post(rt.url("/body-type"))
            .body(body)
            .send()
            .await
            .expect("call");
        assert_eq!(resp.text().await.expect("body"), expected);
    }

    // Binary bodies survive the round trip unchanged.
    let payload: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    let resp = c
        .post(rt.url("/bytes"))
        .body(payload.clone())
        .send()
        .await
        .expect("call");
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert_eq!(resp.bytes().await.expect("body").as_ref(), &payload[..]);

    let resp = c.get(rt.url("/none")).send().await.expect("call");
    assert_eq!(resp.status(), 204);

    let resp = c.get(rt.url("/tuple")).send().await.expect("call");
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-custom"], "yes");
    assert_eq!(resp.text().await.expect("body"), "created");

    let resp = c.get(rt.url("/typed")).send().await.expect("call");
    assert_eq!(resp.headers()["content-type"], "text/html");

    let resp = c.get(rt.url("/list")).send().await.expect("call");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v, json!([1, 2.5, true, null]));

    for _ in 0..3 {
        let resp = c.get(rt.url("/print")).send().await.expect("call");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.expect("body"), "still fine");
    }

    let resp = c.get(rt.url("/async")).send().await.expect("call");
    assert_eq!(resp.text().await.expect("body"), "from a coroutine");

    let resp = c.get(rt.url("/bad-status")).send().await.expect("call");
    assert_eq!(resp.status(), 500);
    let v: Value = resp.json().await.expect("json");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("TypeError: status must be an int"),
        "{v}"
    );
    let resp = c.get(rt.url("/")).send().await.expect("call");
    assert_eq!(resp.text().await.expect("body"), "default");
}

#[tokio::test]
async fn timeout_is_504_and_the_stuck_worker_is_replaced() {
    let rt = Runtime::start(
        "python",
        "sleep",
        &function("sleep", "handler.py"),
        &[("SLUICE_TIMEOUT_MS", "400"), ("SLUICE_MAX_INFLIGHT", "1")],
    );
    rt.wait_ready().await;
    let c = client();
    let started = Instant::now();
    let resp = c.get(rt.url("/?ms=20000")).send().await.expect("call");
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(10));
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["function"], "sleep");
    assert!(
        v["error"].as_str().unwrap_or("").contains("timed out"),
        "{v}"
    );

    // The only worker was killed; its replacement serves the next call.
    let resp = c.get(rt.url("/?ms=10")).send().await.expect("call");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v, json!({"slept_ms": 10}));
}

#[tokio::test]
async fn over_the_cap_is_429_at_once_and_ready_reflects_the_cap() {
    let rt = Runtime::start(
        "python",
        "sleep",
        &function("sleep", "handler.py"),
        &[("SLUICE_MAX_INFLIGHT", "1")],
    );
    rt.wait_ready().await;
    let c = client();
    let slow = tokio::spawn({
        let c = c.clone();
        let url = rt.url("/?ms=1500");
        async move { c.get(url).send().await.expect("slow call").status() }
    });
    let (status, body) = rt.wait_ready_body("concurrency limit").await;
    assert_eq!(status, 503);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["error"], "replica at its concurrency limit (1)");

    let started = Instant::now();
    let resp = c.get(rt.url("/?ms=10")).send().await.expect("call");
    assert_eq!(resp.status(), 429);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "refused at once"
    );
    let v: Value = resp.json().await.expect("json");
    assert_eq!(
        v,
        json!({"error": "replica at its concurrency limit (1)", "function": "sleep"})
    );

    assert_eq!(slow.await.expect("slow task"), 200);
    rt.wait_ready().await;
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let rt = Runtime::start(
        "python",
        "hello",
        &function("hello", "handler.py"),
        &[("SLUICE_MAX_BODY_BYTES", "1024")],
    );
    rt.wait_ready().await;
    let c = client();
    let resp = c
        .post(rt.url("/"))
        .body(vec![b'a'; 2048])
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["function"], "hello");
    assert!(v["error"].as_str().unwrap_or("").contains("1024"), "{v}");

    // A chunked body (no Content-Length) is capped while it streams.
    let chunk = "a".repeat(1500);
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let answer = raw_request(rt.port, req.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let resp = c
        .post(rt.url("/"))
        .body(vec![b'a'; 1000])
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn ready_is_503_until_the_handler_is_imported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let handler = write_file(
        dir.path(),
        "handler.py",
        "import time\ntime.sleep(0.8)\n\ndef handle(event, context):\n    return 'loaded'\n",
        false,
    );
    let rt = Runtime::start("python", "slow-import", &handler, &[]);
    rt.wait_listening().await;
    let resp = client()
        .get(rt.url("/_/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.expect("json");
    assert!(v["error"].as_str().unwrap_or("").contains("loading"), "{v}");
    let resp = client()
        .get(rt.url("/_/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"status": "ok"})
    );

    rt.wait_ready().await;
    let resp = client().get(rt.url("/")).send().await.expect("call");
    assert_eq!(resp.text().await.expect("body"), "loaded");
}

#[tokio::test]
async fn import_error_leaves_the_runtime_up_but_unready_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let handler = write_file(
        dir.path(),
        "handler.py",
        "import module_that_does_not_exist_xyz\n\ndef handle(event, context):\n    return 1\n",
        false,
    );
    let mut rt = Runtime::start("python", "broken", &handler, &[]);
    // /_/ready answers 500 (not 503): waiting will not help, so the orchestrator stops
    // waiting for this replica at once.
    let (status, body) = rt.wait_ready_body("module_that_does_not_exist_xyz").await;
    assert_eq!(status, 500);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        v,
        json!({
            "error": "handler failed to import: ModuleNotFoundError: No module named 'module_that_does_not_exist_xyz'",
            "function": "broken"
        })
    );
    // Calls are refused with the same reason; the process stays up.
    let resp = client().get(rt.url("/")).send().await.expect("call");
    assert_eq!(resp.status(), 503);
    assert!(resp.text().await.expect("body").contains("No module named"));
    assert!(
        rt.running(),
        "the runtime keeps running after an import error"
    );

    // A file without handle() is an import error too.
    let handler = write_file(dir.path(), "nohandle.py", "x = 1\n", false);
    let rt2 = Runtime::start("python", "nohandle", &handler, &[]);
    let (status, _) = rt2
        .wait_ready_body("defines no callable handle(event, context)")
        .await;
    assert_eq!(status, 500);
}

#[tokio::test]
async fn deps_folder_next_to_the_handler_is_importable() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_file(
        dir.path(),
        "deps/sluice_fake_dep/__init__.py",
        "__version__ = '9.8.7'\n",
        false,
    );
    // A module named like one of the standard library's does not replace it.
    write_file(dir.path(), "deps/json.py", "SHADOW = True\n", false);
    write_file(dir.path(), "string.py", "SHADOW = True\n", false);
    write_file(
        dir.path(),
        "helper.py",
        "GREETING = 'sibling module'\n",
        false,
    );
    let handler = write_file(
        dir.path(),
        "handler.py",
        "import json, string, sluice_fake_dep, helper\n\ndef handle(event, context):\n    return {'v': sluice_fake_dep.__version__, 'g': helper.GREETING, 'shadowed': [hasattr(json, 'SHADOW'), hasattr(string, 'SHADOW')]}\n",
        false,
    );
    let rt = Runtime::start("python", "deps", &handler, &[]);
    rt.wait_ready().await;
    let v: Value = client()
        .get(rt.url("/"))
        .send()
        .await
        .expect("call")
        .json()
        .await
        .expect("json");
    assert_eq!(
        v,
        json!({"v": "9.8.7", "g": "sibling module", "shadowed": [false, false]})
    );
}

#[tokio::test]
async fn example_deps_function_imports_six() {
    // The image build installs the example's pip dependency with `pip install --target
    // <function>/deps`; do the same into a copy of the function folder.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        function("deps", "handler.py"),
        dir.path().join("handler.py"),
    )
    .expect("copy");
    let pip = std::process::Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(dir.path().join("deps"))
        .arg("six==1.16.0")
        .status()
        .expect("pip");
    assert!(
        pip.success(),
        "pip install six into the function's deps folder"
    );
    let handler = dir.path().join("handler.py").display().to_string();
    let rt = Runtime::start("python", "deps", &handler, &[]);
    rt.wait_ready().await;
    let v: Value = client()
        .get(rt.url("/"))
        .send()
        .await
        .expect("call")
        .json()
        .await
        .expect("json");
    assert_eq!(v["package"], "six");
    assert!(v["version"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
}

#[tokio::test]
async fn a_killed_worker_is_replaced_but_a_dead_zygote_ends_the_runtime() {
    let mut rt = Runtime::start(
        "python",
        "hello",
        &function("hello", "handler.py"),
        &[("SLUICE_MAX_INFLIGHT", "1")],
    );
    rt.wait_ready().await;
    let zygote = eventually("the zygote", || children_of(rt.pid()).first().copied()).await;
    let worker = eventually("a worker", || children_of(zygote).first().copied()).await;
    kill(Pid::from_raw(worker), Signal::SIGKILL).expect("kill worker");
    let replacement = eventually("a replacement worker", || {
        children_of(zygote).into_iter().find(|&p| p != worker)
    })
    .await;
    assert_ne!(replacement, worker);
    let c = client();
    let resp = c.get(rt.url("/?name=again")).send().await.expect("call");
    assert_eq!(resp.text().await.expect("body"), "Hello, again");
    assert!(rt.running());

    kill(Pid::from_raw(zygote), Signal::SIGKILL).expect("kill zygote");
    let status = rt.wait_exit(SOON).await;
    assert!(!status.success(), "exit status {status:?}");
    assert!(rt.log().contains("zygote exited unexpectedly"));
}

#[tokio::test]
async fn the_worker_pool_starts_with_one_and_grows_with_concurrency() {
    let mut rt = Runtime::start(
        "python",
        "sleep",
        &function("sleep", "handler.py"),
        &[("SLUICE_MAX_INFLIGHT", "4")],
    );
    rt.wait_ready().await;
    let zygote = eventually("the zygote", || children_of(rt.pid()).first().copied()).await;
    eventually("one worker", || {
        (children_of(zygote).len() == 1).then_some(())
    })
    .await;
    assert_eq!(
        children_of(zygote).len(),
        1,
        "an idle function keeps one worker"
    );

    // Four concurrent calls: while they are all in flight the pool grows to four workers.
    // The calls last 10 s so that they are still in flight while the workers fork, however
    // slow the machine: if a call ended first, a fourth caller would rightly reuse its
    // worker and the pool would stay at three (no wall-clock bound is asserted).
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let url = rt.url("/?ms=10000");
            tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    eventually("the pool to grow to the cap of four workers", || {
        (children_of(zygote).len() == 4).then_some(())
    })
    .await;
    for c in calls {
        assert_eq!(c.await.expect("task").expect("call"), 200);
    }
    assert_eq!(children_of(zygote).len(), 4, "the grown pool is kept");
    assert!(rt.running());
}
