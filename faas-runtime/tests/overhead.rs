//! Cold start and per-call overhead, measured against the real binary. Bounds are generous
//! (shared 2-core machines); the numbers are printed (`--nocapture`) for the report.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A minimal keep-alive HTTP/1.1 client: one connection, sequential requests.
struct KeepAlive {
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    fn connect(port: u16) -> Self {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.set_read_timeout(Some(SOON)).expect("timeout");
        KeepAlive {
            reader: BufReader::new(s),
        }
    }

    /// Sends `GET path` and returns (status, body).
    fn get(&mut self, path: &str) -> (u16, Vec<u8>) {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        self.reader
            .get_mut()
            .write_all(req.as_bytes())
            .expect("send");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let mut len = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().expect("length");
                }
            }
        }
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).expect("body");
        (status, body)
    }
}

/// Mean time per call over `n` sequential keep-alive calls (after a warm-up).
fn per_call(port: u16, path: &str, n: u32) -> Duration {
    let mut c = KeepAlive::connect(port);
    for _ in 0..20 {
        assert_eq!(c.get(path).0, 200);
    }
    let started = Instant::now();
    for _ in 0..n {
        assert_eq!(c.get(path).0, 200);
    }
    started.elapsed() / n
}

fn real_python() -> String {
    // Resolve shims (pyenv) to the interpreter itself, as in the function image.
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn cold_start_and_per_call_overhead_are_small() {
    let python = real_python();

    // Cold start: exec → listening → ready (hello), best of 5.
    let mut best_listen = Duration::MAX;
    let mut best_ready = Duration::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let rt = Runtime::start(
            "python",
            "hello",
            &function("hello", "handler.py"),
            &[("SLUICE_PYTHON", python.as_str()), ("SLUICE_LOG", "warn")],
        );
        let mut listening = None;
        loop {
            match TcpStream::connect(("127.0.0.1", rt.port)) {
                Ok(_) => {
                    listening.get_or_insert_with(|| started.elapsed());
                    let mut c = KeepAlive::connect(rt.port);
                    if c.get("/_/ready").0 == 200 {
                        break;
                    }
                }
                Err(_) => assert!(started.elapsed() < SOON, "never listened"),
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        best_ready = best_ready.min(started.elapsed());
        best_listen = best_listen.min(listening.unwrap_or_default());
    }
    eprintln!(
        "python hello: exec→listening {best_listen:?}, exec→ready {best_ready:?} (best of 5)"
    );
    assert!(best_listen < Duration::from_millis(500));
    assert!(best_ready < Duration::from_secs(3));

    // Per call, keep-alive, sequential.
    let rt = Runtime::start(
        "python",
        "hello",
        &function("hello", "handler.py"),
        &[("SLUICE_PYTHON", python.as_str()), ("SLUICE_LOG", "warn")],
    );
    rt.wait_ready().await;
    let py = per_call(rt.port, "/?name=x", 2000);
    let health = per_call(rt.port, "/_/health", 2000);

    let echo = Runtime::start(
        "binary",
        "echo",
        &echo_binary().display().to_string(),
        &[("SLUICE_LOG", "warn")],
    );
    echo.wait_ready().await;
    let bin = per_call(echo.port, "/", 300);

    let dir = tempfile::tempdir().expect("tempdir");
    let server = write_file(
        dir.path(),
        "server.py",
        "import http.server, os\nclass H(http.server.BaseHTTPRequestHandler):\n    protocol_version = 'HTTP/1.1'\n    disable_nagle_algorithm = True\n    def log_message(self, *a): pass\n    def do_GET(self):\n        self.send_response(200); self.send_header('content-length', '2'); self.end_headers(); self.wfile.write(b'ok')\nhttp.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n",
        false,
    );
    let upstream = free_port();
    let up = upstream.to_string();
    let web = Runtime::start(
        "http",
        "web",
        &format!("{python} {server}"),
        &[("SLUICE_HTTP_PORT", up.as_str()), ("SLUICE_LOG", "warn")],
    );
    web.wait_ready().await;
    let via_runtime = per_call(web.port, "/", 2000);
    let direct = per_call(upstream, "/", 2000);

    eprintln!(
        "per call (keep-alive, sequential): /_/health {health:?}; python hello {py:?}; \
         binary echo {bin:?}; http via runtime {via_runtime:?} vs direct {direct:?} \
         (proxy overhead {:?})",
        via_runtime.saturating_sub(direct)
    );
    assert!(health < Duration::from_millis(5));
    assert!(py < Duration::from_millis(20));
    assert!(via_runtime < direct + Duration::from_millis(5));
}
