//! The `sluice-load` binary against a real HTTP server started here: `/sleep?ms=N` answers
//! after N ms (every `fail_every`-th request with 503 when asked to), and
//! `/system/function/sleep` answers the system API's JSON with 2 ready of 3 desired
//! replicas. Each test runs the real binary as a process and reads what a user reads: the
//! exit status, stdout/stderr and the files in `--out`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the test server saw.
#[derive(Default)]
struct Seen {
    calls: AtomicU64,
    failed: AtomicU64,
    polls: AtomicU64,
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl Server {
    fn url(&self, query: &str) -> String {
        format!("http://{}/sleep?{query}", self.addr)
    }
}

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Seen>,
    fail_every: u64,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts")
    };
    match req.uri().path() {
        "/sleep" => {
            let ms = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(10);
            // The function's work: answer after `ms`.
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let n = seen.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if fail_every > 0 && n.is_multiple_of(fail_every) {
                seen.failed.fetch_add(1, Ordering::SeqCst);
                return Ok(reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    r#"{"error":"no replica","function":"sleep"}"#.to_string(),
                ));
            }
            Ok(reply(StatusCode::OK, r#"{"slept":true}"#.to_string()))
        }
        "/system/function/sleep" => {
            seen.polls.fetch_add(1, Ordering::SeqCst);
            Ok(reply(
                StatusCode::OK,
                r#"{"name":"sleep","replicas":3,"availableReplicas":2}"#.to_string(),
            ))
        }
        _ => Ok(reply(
            StatusCode::NOT_FOUND,
            r#"{"error":"unknown function"}"#.to_string(),
        )),
    }
}

/// Starts the server on a free loopback port; it lives as long as the test's runtime.
async fn start_server(fail_every: u64) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local addr");
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(req, s.clone(), fail_every));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Server { addr, seen }
}

async fn run_tool(args: &[&str]) -> Output {
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice-load"))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("sluice-load ends within 60 s")
    .expect("run sluice-load")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `load.csv` as one map (column → value) per row, checking the header.
fn read_csv(dir: &Path) -> Vec<HashMap<String, String>> {
    let csv = std::fs::read_to_string(dir.join("load.csv")).expect("load.csv exists");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("csv header").split(',').collect();
    assert_eq!(
        header,
        [
            "t_s",
            "target_rps",
            "sent",
            "ok",
            "failed",
            "skipped",
            "p50_ms",
            "p99_ms",
            "ready",
            "desired",
            "errors"
        ]
    );
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            assert_eq!(cells.len(), header.len(), "row `{l}`");
            header
                .iter()
                .zip(cells)
                .map(|(h, c)| (h.to_string(), c.to_string()))
                .collect()
        })
        .collect()
}

fn num(row: &HashMap<String, String>, col: &str) -> u64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} is a count in {row:?}"))
}

fn summary(dir: &Path) -> serde_json::Value {
    let raw = std::fs::read(dir.join("summary.json")).expect("summary.json exists");
    serde_json::from_slice(&raw).expect("summary.json is JSON")
}

fn assert_png(dir: &Path) {
    let png = std::fs::read(dir.join("load.png")).expect("load.png exists");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert!(
        png.len() > 10_000,
        "a real chart, not an empty image: {} bytes",
        png.len()
    );
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constant_rate_run_reports_every_second_and_exits_0() {
    let server = start_server(0).await;
    let out = tempfile::tempdir().expect("temp dir");
    let url = server.url("ms=20");
    let dir = out.path().to_str().expect("utf-8 path");
    let o = run_tool(&[
        "--url",
        &url,
        "--profile",
        "constant:40",
        "--duration",
        "3s",
        "--out",
        dir,
    ])
    .await;
    let stdout = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{}", text(&o.stderr));

    let rows = read_csv(out.path());
    assert_eq!(rows.len(), 3, "one row per second");
    for (t, row) in rows.iter().enumerate() {
        assert_eq!(num(row, "t_s"), t as u64);
        assert_eq!(row["target_rps"], "40");
        let sent = num(row, "sent");
        assert!((32..=48).contains(&sent), "second {t}: sent {sent}");
        assert_eq!(num(row, "ok"), sent, "second {t}");
        assert_eq!(num(row, "failed"), 0);
        assert_eq!(num(row, "skipped"), 0);
        let p99: f64 = row["p99_ms"].parse().expect("p99 filled");
        assert!(p99 >= 20.0, "latency includes the server's 20 ms: {p99}");
        assert_eq!(row["ready"], "2", "ready from the system API");
        assert_eq!(row["desired"], "3");
        assert_eq!(row["errors"], "");
    }
    let total: u64 = rows.iter().map(|r| num(r, "sent")).sum();
    assert_eq!(server.seen.calls.load(Ordering::SeqCst), total);
    assert!(server.seen.polls.load(Ordering::SeqCst) >= 3);

    // The live table and the summary.
    assert!(stdout.contains("target"), "{stdout}");
    assert!(stdout.contains("ready/desired"), "{stdout}");
    assert!(stdout.contains("2/3"), "{stdout}");
    assert!(stdout.contains("errors: none"), "{stdout}");

    assert_png(out.path());
    let s = summary(out.path());
    assert_eq!(s["sent"], total);
    assert_eq!(s["ok"], total);
    assert_eq!(s["failed"], 0);
    assert_eq!(s["max_ready"], 2);
    assert_eq!(s["max_desired"], 3);
    assert_eq!(s["profile"], "constant:40");
    assert_eq!(s["exit_code"], 0);
    assert!(s["latency_ms"]["p99"].as_f64().expect("p99") >= 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_exit_1_and_are_broken_down_by_status() {
    let server = start_server(5).await;
    let out = tempfile::tempdir().expect("temp dir");
    let url = server.url("ms=5");
    let dir = out.path().to_str().expect("utf-8 path");
    let o = run_tool(&[
        "--url",
        &url,
        "--profile",
        "constant:30",
        "--duration",
        "2s",
        "--quiet",
        "--out",
        dir,
    ])
    .await;
    let stdout = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{}", text(&o.stderr));
    assert!(
        !stdout.contains("ready/desired"),
        "--quiet: no live table\n{stdout}"
    );

    let rows = read_csv(out.path());
    assert_eq!(rows.len(), 2);
    let mut failed_503 = 0;
    for row in &rows {
        let failed = num(row, "failed");
        assert_eq!(num(row, "ok") + failed, num(row, "sent"));
        if failed > 0 {
            assert_eq!(row["errors"], format!("503:{failed}"), "{row:?}");
        }
        failed_503 += failed;
    }
    assert!(failed_503 > 0);
    assert_eq!(failed_503, server.seen.failed.load(Ordering::SeqCst));
    assert!(
        stdout.contains(&format!("errors: 503:{failed_503}")),
        "{stdout}"
    );
    let s = summary(out.path());
    assert_eq!(s["errors"]["503"], failed_503);
    assert_eq!(s["exit_code"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_profile_sets_the_rate_of_each_second_and_the_duration() {
    let server = start_server(0).await;
    let out = tempfile::tempdir().expect("temp dir");
    let url = server.url("ms=5");
    let dir = out.path().to_str().expect("utf-8 path");
    let o = run_tool(&[
        "--url",
        &url,
        "--profile",
        "steps:10,40,20@1s",
        "--quiet",
        "--out",
        dir,
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let rows = read_csv(out.path());
    assert_eq!(rows.len(), 3, "the duration is the steps' total");
    for (row, want) in rows.iter().zip([10u64, 40, 20]) {
        assert_eq!(row["target_rps"], want.to_string());
        let sent = num(row, "sent");
        let (lo, hi) = (want * 8 / 10, want * 12 / 10);
        assert!((lo..=hi).contains(&sent), "{row:?}: want ~{want}");
        assert_eq!(num(row, "ok"), sent);
    }
    assert_eq!(summary(out.path())["duration"], "3s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_exit_2_naming_the_flag() {
    let server = start_server(0).await;
    let out = tempfile::tempdir().expect("temp dir");
    let url = server.url("ms=5");
    let dir = out.path().join("never");
    let dir = dir.to_str().expect("utf-8 path");
    for (args, flag) in [
        (vec!["--profile", "fast:50"], "--profile"),
        (vec!["--profile", "steps:10,20"], "--profile"),
        (vec!["--duration", "20"], "--duration"),
        (vec!["--concurrency", "0"], "--concurrency"),
        (vec!["--font", "/no/such/font.ttf"], "--font"),
    ] {
        let mut argv = vec!["--url", url.as_str(), "--out", dir];
        argv.extend(args.iter().copied());
        let o = run_tool(&argv).await;
        let stderr = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
    assert_eq!(
        server.seen.calls.load(Ordering::SeqCst),
        0,
        "nothing was sent"
    );
    assert!(
        !out.path().join("never").exists(),
        "no results folder for a bad run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_cap_skips_requests_without_failing_the_run() {
    let server = start_server(0).await;
    let out = tempfile::tempdir().expect("temp dir");
    let url = server.url("ms=400");
    let dir = out.path().to_str().expect("utf-8 path");
    let o = run_tool(&[
        "--url",
        &url,
        "--profile",
        "constant:20",
        "--duration",
        "1s",
        "--concurrency",
        "2",
        "--quiet",
        "--out",
        dir,
    ])
    .await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "skips are not failures: {}",
        text(&o.stderr)
    );
    let rows = read_csv(out.path());
    let row = &rows[0];
    let (sent, skipped) = (num(row, "sent"), num(row, "skipped"));
    assert_eq!(sent + skipped, 20, "{row:?}");
    assert!(
        sent <= 8 && skipped >= 12,
        "at most 2 in flight of 400 ms each: {row:?}"
    );
    assert_eq!(num(row, "ok"), sent);
    assert_eq!(summary(out.path())["skipped"], skipped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_failures() {
    let server = start_server(0).await;
    let out = tempfile::tempdir().expect("temp dir");
    let url = server.url("ms=2000");
    let dir = out.path().to_str().expect("utf-8 path");
    let o = run_tool(&[
        "--url",
        &url,
        "--profile",
        "constant:5",
        "--duration",
        "1s",
        "--timeout",
        "200ms",
        "--quiet",
        "--out",
        dir,
    ])
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let rows = read_csv(out.path());
    assert_eq!(rows[0]["errors"], "timeout:5");
    assert_eq!(rows[0]["p99_ms"], "", "no latency without an answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_system_api_and_no_font_do_not_stop_the_run() {
    let server = start_server(0).await;
    let out = tempfile::tempdir().expect("temp dir");
    let url = server.url("ms=5");
    let system = format!("http://127.0.0.1:{}", closed_port().await);
    let dir = out.path().to_str().expect("utf-8 path");
    let o = run_tool(&[
        "--url",
        &url,
        "--system",
        &system,
        "--profile",
        "constant:10",
        "--duration",
        "2s",
        "--font",
        "none",
        "--out",
        dir,
    ])
    .await;
    let stdout = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{}", text(&o.stderr));
    let rows = read_csv(out.path());
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row["ready"], "", "unknown replicas stay empty: {row:?}");
        assert_eq!(num(row, "ok"), num(row, "sent"));
    }
    assert!(
        stdout
            .lines()
            .filter(|l| l.trim_end().ends_with('?'))
            .count()
            >= 2,
        "the table shows `?` for replicas\n{stdout}"
    );
    assert!(stdout.contains("max ready ?"), "{stdout}");
    assert_png(out.path());
}
