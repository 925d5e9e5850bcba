//! `<binary> healthcheck [URL]`: the container healthcheck of every Sluice image. The images
//! have no curl, so each binary checks itself: one HTTP/1.1 GET with a short timeout; exit 0
//! on a 2xx answer, 1 otherwise (the form Docker's `HEALTHCHECK CMD` and compose's
//! `test: ["CMD", ...]` expect).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// If the first argument is `healthcheck`, runs the check against the given URL (or
/// `default_url`) and returns the exit code; otherwise `None`.
pub fn from_args(default_url: &str) -> Option<ExitCode> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("healthcheck") {
        return None;
    }
    let url = args.next().unwrap_or_else(|| default_url.to_string());
    Some(match check(&url, Duration::from_secs(2)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    })
}

/// GETs `http://host:port/path` and succeeds on a 2xx status.
pub fn check(url: &str, timeout: Duration) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}`: only http:// URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport} has no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    // One write: `write!` on a raw socket sends each formatted piece as its own segment.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    let code = line.split_whitespace().nth(1).unwrap_or("");
    if code.starts_with('2') {
        Ok(())
    } else {
        Err(format!(
            "{url} answered `{}`",
            line.lines().next().unwrap_or("")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::check;
    use std::io::{Read, Write};
    use std::time::Duration;

    fn serve_once(answer: &'static str) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                // Read the whole request head before answering: closing with unread bytes
                // would reset the connection and could discard the answer.
                let mut got = Vec::new();
                let mut buf = [0u8; 512];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(answer.as_bytes());
            }
        });
        format!("http://127.0.0.1:{port}/healthz")
    }

    #[test]
    fn healthy_on_2xx_only() {
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert!(check(&ok, Duration::from_secs(2)).is_ok());
        let bad = serve_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        let err = check(&bad, Duration::from_secs(2)).expect_err("503 is unhealthy");
        assert!(err.contains("503"), "{err}");
        let closed = format!("http://127.0.0.1:{}/", sluice_free_port());
        assert!(check(&closed, Duration::from_secs(2)).is_err());
    }

    fn sluice_free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port")
    }
}
