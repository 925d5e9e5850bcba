//! fast — a Sluice `http`-mode function: a minimal HTTP/1.1 server on `0.0.0.0:$PORT` that
//! answers every request with `200 ok` (`HEAD`: the same headers, no body). It exists so the
//! benchmarks have a function fast enough that the proxies in front of it, not the function,
//! are the bottleneck.
//!
//! Design: the standard library only (it compiles in seconds inside `sluice/rust-build`), one
//! thread per connection, blocking I/O. Correct for what clients and proxies send:
//! * keep-alive by default on HTTP/1.1, `Connection: close` honoured (and echoed); HTTP/1.0
//!   keeps the connection only with `Connection: keep-alive`;
//! * request bodies (`Content-Length` or `Transfer-Encoding: chunked`) are read and discarded,
//!   so the next request on the connection starts at the right byte; `Expect: 100-continue`
//!   gets its interim response;
//! * every response has a `Content-Length`; malformed or oversized requests get a 4xx/5xx
//!   with `Connection: close`, never a crash; idle connections close after 75 s.
#![forbid(unsafe_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

/// Port used when `PORT` is not set (the registry's default `http_port`).
const DEFAULT_PORT: u16 = 8081;
/// Largest request head (request line + headers) accepted.
const MAX_HEAD: u64 = 64 * 1024;
/// Largest request body accepted (it is discarded, but must be read).
const MAX_BODY: u64 = 16 * 1024 * 1024;
/// An idle keep-alive connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Stack of a connection thread: the handler needs little.
const THREAD_STACK: usize = 64 * 1024;
/// What every request gets.
const BODY: &[u8] = b"ok";

fn main() -> ExitCode {
    let port = match std::env::var("PORT") {
        Err(_) => DEFAULT_PORT,
        Ok(v) => match v.trim().parse::<u16>() {
            Ok(p) => p,
            Err(_) => {
                eprintln!("fast: PORT must be a port number, got {v:?}");
                return ExitCode::FAILURE;
            }
        },
    };
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fast: cannot listen on 0.0.0.0:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("fast: listening on 0.0.0.0:{port}");
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let spawned = thread::Builder::new()
                    .name("conn".into())
                    .stack_size(THREAD_STACK)
                    .spawn(move || serve(stream));
                if let Err(e) = spawned {
                    // Out of threads (pids limit): this connection is dropped, the server lives.
                    eprintln!("fast: cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning.
                eprintln!("fast: accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    ExitCode::SUCCESS
}

/// How the request body is delimited.
#[derive(Debug, PartialEq)]
enum Body {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
struct Head {
    http11: bool,
    head_only: bool,
    keep_alive: bool,
    expect_continue: bool,
    body: Body,
}

/// Why a request cannot be served; each maps to a status and closes the connection.
#[derive(Debug)]
enum Reject {
    /// The peer closed or timed out: nothing to answer.
    Gone,
    Status(u16, &'static str),
}

impl From<io::Error> for Reject {
    fn from(_: io::Error) -> Self {
        Reject::Gone
    }
}

fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("fast: cannot clone a connection: {e}");
            return;
        }
    };
    let mut reader = BufReader::with_capacity(8 * 1024, stream);
    loop {
        let result = read_head(&mut reader).and_then(|head| {
            if let Some(head) = &head {
                if head.expect_continue && head.body != Body::None {
                    writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
                }
                discard_body(&mut reader, &head.body)?;
            }
            Ok(head)
        });
        match result {
            Ok(None) | Err(Reject::Gone) => return,
            Ok(Some(head)) => {
                if respond(&mut writer, &head).is_err() || !head.keep_alive {
                    return;
                }
            }
            Err(Reject::Status(code, reason)) => {
                let msg = format!(
                    "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reason}",
                    reason.len()
                );
                if writer.write_all(msg.as_bytes()).is_ok() {
                    linger(&writer, reader);
                }
                return;
            }
        }
    }
}

/// Lingering close after an error response: stop sending, then read (and drop) what the
/// client still sends for a moment, so closing does not reset the connection before the client
/// has read the response.
fn linger(writer: &TcpStream, mut reader: BufReader<TcpStream>) {
    let _ = writer.shutdown(std::net::Shutdown::Write);
    let _ = writer.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = io::copy(&mut reader.by_ref().take(1024 * 1024), &mut io::sink());
}

fn respond(w: &mut TcpStream, head: &Head) -> io::Result<()> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ");
    out.extend_from_slice(BODY.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    if !head.keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if !head.http11 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head.head_only {
        out.extend_from_slice(BODY);
    }
    w.write_all(&out)
}

/// Reads one line (up to `\n`) counting against `budget`; `None` at a clean end of stream.
fn read_line<R: BufRead>(r: &mut R, budget: &mut u64, line: &mut Vec<u8>) -> Result<bool, Reject> {
    line.clear();
    let n = r.by_ref().take(*budget).read_until(b'\n', line)?;
    if n == 0 {
        return Ok(false);
    }
    *budget -= n as u64;
    if line.last() != Some(&b'\n') {
        return if *budget == 0 {
            Err(Reject::Status(431, "Request Header Fields Too Large"))
        } else {
            Err(Reject::Gone) // the peer closed mid-line
        };
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(true)
}

/// Reads a request head; `Ok(None)` when the peer closed between requests.
fn read_head<R: BufRead>(r: &mut R) -> Result<Option<Head>, Reject> {
    let mut budget = MAX_HEAD;
    let mut line = Vec::with_capacity(256);
    // Request line (RFC 9112 §2.2: ignore empty lines before it).
    loop {
        if !read_line(r, &mut budget, &mut line)? {
            return Ok(None);
        }
        if !line.is_empty() {
            break;
        }
    }
    let text = std::str::from_utf8(&line).map_err(|_| Reject::Status(400, "Bad Request"))?;
    let mut parts = text.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reject::Status(400, "Bad Request"));
    };
    if method.is_empty() || target.is_empty() {
        return Err(Reject::Status(400, "Bad Request"));
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v if v.starts_with("HTTP/") => {
            return Err(Reject::Status(505, "HTTP Version Not Supported"))
        }
        _ => return Err(Reject::Status(400, "Bad Request")),
    };
    let head_only = method == "HEAD";

    let mut keep_alive = http11;
    let mut expect_continue = false;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    loop {
        if !read_line(r, &mut budget, &mut line)? {
            return Err(Reject::Gone);
        }
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(Reject::Status(400, "Bad Request"));
        };
        let name = &line[..colon];
        if name.is_empty() || name.iter().any(|b| b.is_ascii_whitespace()) {
            return Err(Reject::Status(400, "Bad Request"));
        }
        let value = std::str::from_utf8(&line[colon + 1..])
            .map_err(|_| Reject::Status(400, "Bad Request"))?
            .trim();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n: u64 = value
                .parse()
                .map_err(|_| Reject::Status(400, "Bad Request"))?;
            if length.is_some_and(|old| old != n) {
                return Err(Reject::Status(400, "Bad Request"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(Reject::Status(501, "Not Implemented"));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") && !http11 {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            if !value.eq_ignore_ascii_case("100-continue") {
                return Err(Reject::Status(417, "Expectation Failed"));
            }
            expect_continue = http11;
        }
    }
    let body = match (chunked, length) {
        // RFC 9112 §6.3: chunked wins over a Content-Length, and the connection must close.
        (true, Some(_)) => {
            keep_alive = false;
            Body::Chunked
        }
        (true, None) => Body::Chunked,
        (false, Some(n)) if n > MAX_BODY => return Err(Reject::Status(413, "Content Too Large")),
        (false, Some(0)) | (false, None) => Body::None,
        (false, Some(n)) => Body::Length(n),
    };
    Ok(Some(Head {
        http11,
        head_only,
        keep_alive,
        expect_continue,
        body,
    }))
}

/// Reads exactly `n` bytes and drops them.
fn skip<R: Read>(r: &mut R, n: u64) -> Result<(), Reject> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied == n {
        Ok(())
    } else {
        Err(Reject::Gone)
    }
}

fn discard_body<R: BufRead>(r: &mut R, body: &Body) -> Result<(), Reject> {
    match body {
        Body::None => Ok(()),
        Body::Length(n) => skip(r, *n),
        Body::Chunked => {
            let mut total = 0u64;
            let mut line = Vec::with_capacity(32);
            loop {
                let mut budget = 1024;
                if !read_line(r, &mut budget, &mut line)? {
                    return Err(Reject::Gone);
                }
                let text =
                    std::str::from_utf8(&line).map_err(|_| Reject::Status(400, "Bad Request"))?;
                let size_hex = text.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size_hex, 16)
                    .map_err(|_| Reject::Status(400, "Bad Request"))?;
                if size == 0 {
                    // Trailer fields up to the empty line.
                    let mut budget = MAX_HEAD;
                    loop {
                        if !read_line(r, &mut budget, &mut line)? {
                            return Err(Reject::Gone);
                        }
                        if line.is_empty() {
                            return Ok(());
                        }
                    }
                }
                total = total.saturating_add(size);
                if total > MAX_BODY {
                    return Err(Reject::Status(413, "Content Too Large"));
                }
                skip(r, size)?;
                let mut budget = 2;
                if !read_line(r, &mut budget, &mut line)? || !line.is_empty() {
                    return Err(Reject::Status(400, "Bad Request"));
                }
            }
        }
    }
}
