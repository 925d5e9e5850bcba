//! binary mode: the `echo` example crate and small shell scripts, run per call.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn echo_round_trips_any_bytes() {
    let echo = echo_binary();
    let rt = Runtime::start("binary", "echo", &echo.display().to_string(), &[]);
    rt.wait_ready().await;
    let c = client();

    let resp = c
        .post(rt.url("/echo"))
        .body("hello echo")
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert!(resp.headers().contains_key("x-sluice-runtime-ms"));
    assert_eq!(resp.text().await.expect("body"), "hello echo");

    let payload: Vec<u8> = (0..=255u8).rev().cycle().take(300_000).collect();
    let resp = c
        .post(rt.url("/echo"))
        .body(payload.clone())
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.expect("body").as_ref(), &payload[..]);

    let resp = c.get(rt.url("/echo")).send().await.expect("call");
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.expect("body").is_empty());
}

#[tokio::test]
async fn content_type_comes_from_sluice_content_type() {
    let rt = Runtime::start(
        "binary",
        "echo",
        &echo_binary().display().to_string(),
        &[("SLUICE_CONTENT_TYPE", "application/json")],
    );
    rt.wait_ready().await;
    let resp = client()
        .post(rt.url("/"))
        .body(r#"{"a":1}"#)
        .send()
        .await
        .expect("call");
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.json::<Value>().await.expect("json"), json!({"a": 1}));
}

#[tokio::test]
async fn nonzero_exit_is_500_with_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = write_file(
        dir.path(),
        "fail.sh",
        "#!/bin/sh\necho 'partial output'\necho 'something broke: disk on fire' >&2\nexit 3\n",
        true,
    );
    let rt = Runtime::start("binary", "failer", &script, &[]);
    rt.wait_ready().await;
    let resp = client().post(rt.url("/")).send().await.expect("call");
    assert_eq!(resp.status(), 500);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(
        v,
        json!({
            "error": "function exited with status 3: something broke: disk on fire",
            "function": "failer"
        })
    );
}

#[tokio::test]
async fn huge_stderr_is_truncated_in_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = write_file(
        dir.path(),
        "noisy.sh",
        "#!/bin/sh\nhead -c 200000 /dev/zero | tr '\\0' 'e' >&2\nexit 1\n",
        true,
    );
    let rt = Runtime::start("binary", "noisy", &script, &[]);
    rt.wait_ready().await;
    let resp = client().post(rt.url("/")).send().await.expect("call");
    assert_eq!(resp.status(), 500);
    let v: Value = resp.json().await.expect("json");
    let msg = v["error"].as_str().expect("message");
    assert!(
        msg.len() < 8192,
        "error body kept small ({} bytes)",
        msg.len()
    );
    assert!(msg.contains("truncated"), "{}", &msg[..100]);
}

#[tokio::test]
async fn request_details_are_in_http_environment_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = write_file(
        dir.path(),
        "env.sh",
        "#!/bin/sh\nprintf '%s|%s|%s|%s|%s|%s' \"$Http_Method\" \"$Http_Path\" \"$Http_Query\" \"$Http_X_Custom_Thing\" \"$Http_Content_Type\" \"$CONTAINER_VAR\"\n",
        true,
    );
    let rt = Runtime::start("binary", "env", &script, &[("CONTAINER_VAR", "inherited")]);
    rt.wait_ready().await;
    let resp = client()
        .put(rt.url("/some/path?a=1&b=two"))
        .header("X-Custom-Thing", "custom value")
        .header("Content-Type", "text/csv")
        .body("x")
        .send()
        .await
        .expect("call");
    assert_eq!(
        resp.text().await.expect("body"),
        "PUT|/some/path|a=1&b=two|custom value|text/csv|inherited"
    );
}

#[tokio::test]
async fn timeout_kills_the_process_and_is_504() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("grandchild-survived");
    let script = write_file(
        dir.path(),
        "slow.sh",
        &format!(
            "#!/bin/sh\nif [ \"$Http_Query\" = slow ]; then (sleep 3; touch '{}') & sleep 30; fi\necho quick\n",
            marker.display()
        ),
        true,
    );
    let rt = Runtime::start("binary", "slow", &script, &[("SLUICE_TIMEOUT_MS", "300")]);
    rt.wait_ready().await;
    let c = client();
    let started = Instant::now();
    let resp = c.get(rt.url("/?slow")).send().await.expect("call");
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(10));
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["function"], "slow");

    let resp = c.get(rt.url("/")).send().await.expect("call");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("body"), "quick\n");

    // The whole process group was killed: the background subshell never ran `touch`.
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        assert!(!marker.exists(), "a grandchild outlived the timed-out call");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn ready_needs_an_executable_handler() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let script = write_file(dir.path(), "fn.sh", "#!/bin/sh\necho ok\n", false);
    let rt = Runtime::start("binary", "later", &script, &[]);
    let (status, body) = rt.wait_ready_body("not an executable").await;
    assert_eq!(status, 503);
    assert!(body.contains("later"), "{body}");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    rt.wait_ready().await;
    let resp = client().get(rt.url("/")).send().await.expect("call");
    assert_eq!(resp.text().await.expect("body"), "ok\n");

    let missing = dir.path().join("nope").display().to_string();
    let rt = Runtime::start("binary", "missing", &missing, &[]);
    let (status, _) = rt.wait_ready_body("is missing").await;
    assert_eq!(status, 503);
}
