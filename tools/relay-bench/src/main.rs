//! `relay-bench`: drives an RTP relay with S group calls of one talker and N listeners each
//! (1 → N fan-out), all on loopback, and measures what comes out.
//!
//! * The Sluice MDF: sessions made over its control API (`--control`).
//! * rtpengine: the talker publishes, each listener subscribes (ng protocol, `--ng`).
//!
//! For each input rate (packets/s over all talkers) it sends real RTP (G.711-sized, 160-byte
//! payload carrying the send time) for `--seconds`, then counts what every listener got:
//! loss, output packets/s, latency through the relay (send → receive, p50/p99) and the
//! relay's CPU (from /proc/<pid>/stat). One JSON line per rate on stdout.
#![forbid(unsafe_code)]

mod bencode;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    Mdf,
    Rtpengine,
}

#[derive(Debug, Parser)]
#[command(
    name = "relay-bench",
    about = "RTP relay fan-out benchmark (Sluice MDF or rtpengine)"
)]
struct Args {
    #[arg(long, value_enum)]
    target: Target,
    /// MDF control API.
    #[arg(long, default_value = "http://127.0.0.1:7090")]
    control: String,
    /// rtpengine ng control address.
    #[arg(long, default_value = "127.0.0.1:2223")]
    ng: SocketAddr,
    /// Group calls.
    #[arg(long, default_value_t = 1)]
    sessions: usize,
    /// Listeners per call (the group has one more member: the talker).
    #[arg(long, default_value_t = 3)]
    listeners: usize,
    /// Input rates to try, packets/s over all talkers, comma-separated.
    #[arg(long, default_value = "1000,5000,10000,20000")]
    rates: String,
    /// Seconds per rate.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// The relay's process id, for its CPU use.
    #[arg(long)]
    pid: Option<u32>,
    /// Seconds of traffic at the first rate before measuring (first packets of new sessions
    /// pay for page faults and first allocations, in either relay).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Stop the sweep after the first rate with loss.
    #[arg(long)]
    stop_on_loss: bool,
}

/// One group call as the benchmark sees it.
struct Call {
    talker: UdpSocket,
    /// Where the talker sends (the relay's port for it).
    relay: SocketAddr,
    listeners: Vec<UdpSocket>,
}

const PAYLOAD: usize = 160;

fn bind() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP socket");
    // Room for bursts so the benchmark's own receive side is not what drops.
    let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBuf, &(4 << 20));
    s
}

fn calls(sessions: usize, listeners: usize) -> Vec<Call> {
    (0..sessions)
        .map(|_| Call {
            talker: bind(),
            relay: SocketAddr::from(([0, 0, 0, 0], 0)),
            listeners: (0..listeners).map(|_| bind()).collect(),
        })
        .collect()
}

async fn setup_mdf(control: &str, calls: &mut [Call]) -> Result<(), String> {
    let http = reqwest::Client::new();
    for (i, c) in calls.iter_mut().enumerate() {
        let mut legs = vec![serde_json::json!({"id": "talker",
            "rtp": c.talker.local_addr().map_err(|e| e.to_string())?.to_string()})];
        for (j, l) in c.listeners.iter().enumerate() {
            legs.push(serde_json::json!({"id": format!("l{j}"),
                "rtp": l.local_addr().map_err(|e| e.to_string())?.to_string()}));
        }
        let body = serde_json::json!({"id": format!("bench-{i}"), "legs": legs, "floor": "talker",
                                      "max_talk_ms": 86_400_000u64});
        let res = http
            .post(format!("{control}/v1/sessions"))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("MDF control API: {e}"))?;
        if res.status() != 201 {
            return Err(format!(
                "MDF session: {} {}",
                res.status(),
                res.text().await.unwrap_or_default()
            ));
        }
        let v: serde_json::Value = res.json().await.map_err(|e| e.to_string())?;
        let port = v["legs"][0]["rtp_port"].as_u64().ok_or("no rtp_port")? as u16;
        let ip: std::net::IpAddr = v["address"]
            .as_str()
            .ok_or("no address")?
            .parse()
            .map_err(|_| "address")?;
        c.relay = SocketAddr::new(ip, port);
    }
    Ok(())
}

async fn teardown_mdf(control: &str, n: usize) {
    let http = reqwest::Client::new();
    for i in 0..n {
        let _ = http
            .delete(format!("{control}/v1/sessions/bench-{i}"))
            .send()
            .await;
    }
}

fn sdp(port: u16, session: &str, direction: &str) -> String {
    format!(
        "v=0\r\no=- {session} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na={direction}\r\n"
    )
}

fn sdp_media(sdp: &str) -> Option<SocketAddr> {
    let ip = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?
        .trim()
        .parse()
        .ok()?;
    let port = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, port))
}

struct Ng {
    socket: UdpSocket,
    to: SocketAddr,
    cookie: u64,
}

impl Ng {
    fn call(&mut self, cmd: bencode::Value) -> Result<bencode::Value, String> {
        self.cookie += 1;
        // Unique per process: rtpengine answers a cookie it has seen from its reply cache.
        let cookie = format!("rb{}_{}", std::process::id(), self.cookie);
        let mut msg = format!("{cookie} ").into_bytes();
        cmd.encode(&mut msg);
        self.socket
            .send_to(&msg, self.to)
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 65536];
        loop {
            let n = self
                .socket
                .recv(&mut buf)
                .map_err(|e| format!("rtpengine ng: {e}"))?;
            let text = &buf[..n];
            let space = text
                .iter()
                .position(|&b| b == b' ')
                .ok_or("ng reply without cookie")?;
            if text[..space] != *cookie.as_bytes() {
                continue; // a late reply to an earlier retry
            }
            let (v, _) = bencode::decode(&text[space + 1..])?;
            match v.get_str("result").as_deref() {
                Some("ok") => return Ok(v),
                other => {
                    return Err(format!(
                        "rtpengine: {other:?} {}",
                        v.get_str("error-reason").unwrap_or_default()
                    ))
                }
            }
        }
    }
}

fn setup_rtpengine(ng: SocketAddr, calls: &mut [Call]) -> Result<(), String> {
    use bencode::Value as V;
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut ng = Ng {
        socket,
        to: ng,
        cookie: 0,
    };
    for (i, c) in calls.iter_mut().enumerate() {
        let call_id = format!("bench-{i}");
        let talker_port = c.talker.local_addr().map_err(|e| e.to_string())?.port();
        let r = ng.call(V::dict(vec![
            ("command", V::str("publish")),
            ("call-id", V::str(&call_id)),
            ("from-tag", V::str("talker")),
            ("sdp", V::str(&sdp(talker_port, &call_id, "sendonly"))),
        ]))?;
        c.relay =
            sdp_media(&r.get_str("sdp").ok_or("publish: no sdp")?).ok_or("publish: no media")?;
        for (j, l) in c.listeners.iter().enumerate() {
            let r = ng.call(V::dict(vec![
                ("command", V::str("subscribe request")),
                ("call-id", V::str(&call_id)),
                ("from-tag", V::str("talker")),
            ]))?;
            let to_tag = r.get_str("to-tag").ok_or("subscribe request: no to-tag")?;
            let port = l.local_addr().map_err(|e| e.to_string())?.port();
            ng.call(V::dict(vec![
                ("command", V::str("subscribe answer")),
                ("call-id", V::str(&call_id)),
                ("to-tag", V::str(&to_tag)),
                (
                    "sdp",
                    V::str(&sdp(port, &format!("{call_id}-{j}"), "recvonly")),
                ),
            ]))?;
        }
    }
    Ok(())
}

fn teardown_rtpengine(ng: SocketAddr, n: usize) {
    use bencode::Value as V;
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
        return;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_secs(2)));
    let mut ng = Ng {
        socket,
        to: ng,
        cookie: 1000,
    };
    for i in 0..n {
        let _ = ng.call(V::dict(vec![
            ("command", V::str("delete")),
            ("call-id", V::str(&format!("bench-{i}"))),
        ]));
    }
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Sends `rate` packets/s round-robin over the calls' talkers for `seconds`; returns how
/// many went out.
fn send(calls: &[Call], rate: u64, seconds: u64, base: Instant) -> u64 {
    let total = rate * seconds;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut seq = vec![0u16; calls.len()];
    let mut payload = [0u8; PAYLOAD];
    let mut packet = [0u8; 12 + PAYLOAD];
    let mut next = 0usize;
    while sent < total {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        let due = due.min(total);
        while sent < due {
            let c = &calls[next];
            let s = seq[next];
            seq[next] = s.wrapping_add(1);
            let t = base.elapsed().as_nanos() as u64;
            payload[..8].copy_from_slice(&t.to_be_bytes());
            let n = rtp_rs::RtpPacketBuilder::new()
                .payload_type(8)
                .ssrc(next as u32 + 1)
                .sequence(rtp_rs::Seq::from(s))
                .timestamp(u32::from(s) * 160)
                .payload(&payload)
                .build_into(&mut packet)
                .unwrap_or(0);
            let _ = c.talker.send_to(&packet[..n], c.relay);
            sent += 1;
            next = (next + 1) % calls.len();
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    sent
}

/// Receives on every listener (one task each, woken by epoll) until `stop`; returns
/// (packets, latencies in µs).
fn receive(calls: &[Call], stop: &AtomicBool, base: Instant) -> (u64, Vec<u32>) {
    use std::cell::RefCell;
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return (0, Vec::new());
    };
    let got = Rc::new(RefCell::new((0u64, Vec::<u32>::new())));
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        for l in calls.iter().flat_map(|c| &c.listeners) {
            let Ok(std) = l.try_clone() else { continue };
            let Ok(sock) = tokio::net::UdpSocket::from_std(std) else {
                continue;
            };
            let got = got.clone();
            tokio::task::spawn_local(async move {
                let fd = sock.as_raw_fd();
                loop {
                    if sock.readable().await.is_err() {
                        return;
                    }
                    while sock
                        .try_io(tokio::io::Interest::READABLE, || {
                            // recvmmsg on this thread's batch buffers (the relay's own I/O code).
                            mdf::io::with_batch(|b| {
                                let n = b.recv(fd)?;
                                let now = base.elapsed().as_nanos() as u64;
                                let mut g = got.borrow_mut();
                                for i in 0..n {
                                    // Only the benchmark's own packets count (floor messages
                                    // may land on a port next to a listener's).
                                    let p = &b.bufs[i][..b.lens[i]];
                                    let Ok(r) = rtp_rs::RtpReader::new(p) else {
                                        continue;
                                    };
                                    if r.payload().len() != PAYLOAD || r.payload_type() != 8 {
                                        continue;
                                    }
                                    if let Ok(ts) = <[u8; 8]>::try_from(&r.payload()[..8]) {
                                        g.0 += 1;
                                        let sent = u64::from_be_bytes(ts);
                                        g.1.push((now.saturating_sub(sent) / 1000) as u32);
                                    }
                                }
                                Ok(n)
                            })
                        })
                        .is_ok()
                    {}
                }
            });
        }
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Whatever is still queued is drained before the tasks are dropped.
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    let g = got.borrow();
    (g.0, g.1.clone())
}

fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rates: Vec<u64> = args
        .rates
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let mut calls = calls(args.sessions, args.listeners);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("relay-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let setup = match args.target {
        Target::Mdf => rt.block_on(setup_mdf(&args.control, &mut calls)),
        Target::Rtpengine => setup_rtpengine(args.ng, &mut calls),
    };
    if let Err(e) = setup {
        eprintln!("relay-bench: setup: {e}");
        return std::process::ExitCode::FAILURE;
    }
    for l in calls.iter().flat_map(|c| &c.listeners) {
        let _ = l.set_nonblocking(true);
    }
    let calls = Arc::new(calls);
    let base = Instant::now();
    let ticks_per_s = 100.0; // USER_HZ on Linux
    if let (Some(&first), true) = (rates.first(), args.warmup > 0) {
        let stop = Arc::new(AtomicBool::new(false));
        let rx = {
            let (calls, stop) = (calls.clone(), stop.clone());
            std::thread::spawn(move || receive(&calls, &stop, base))
        };
        send(&calls, first, args.warmup, base);
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let _ = rx.join();
    }
    for rate in rates {
        let stop = Arc::new(AtomicBool::new(false));
        let rx = {
            let (calls, stop) = (calls.clone(), stop.clone());
            std::thread::spawn(move || receive(&calls, &stop, base))
        };
        let cpu0 = args.pid.and_then(cpu_ticks);
        let t0 = Instant::now();
        let sent = send(&calls, rate, args.seconds, base);
        let elapsed = t0.elapsed().as_secs_f64();
        let cpu1 = args.pid.and_then(cpu_ticks);
        // Let the relay's queues empty.
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let (got, mut lat) = rx.join().unwrap_or((0, Vec::new()));
        lat.sort_unstable();
        let expected = sent * args.listeners as u64;
        let cpu = match (cpu0, cpu1) {
            (Some(a), Some(b)) => Some((b - a) as f64 / ticks_per_s / elapsed * 100.0),
            _ => None,
        };
        let loss = expected.saturating_sub(got);
        let line = serde_json::json!({
            "target": format!("{:?}", args.target).to_lowercase(),
            "sessions": args.sessions,
            "listeners": args.listeners,
            "rate_in": rate,
            "achieved_in": (sent as f64 / elapsed).round(),
            "sent": sent,
            "expected": expected,
            "received": got,
            "loss": loss,
            "out_pps": (got as f64 / elapsed).round(),
            "p50_us": percentile(&lat, 0.50),
            "p99_us": percentile(&lat, 0.99),
            "cpu_pct": cpu.map(|c| (c * 10.0).round() / 10.0),
        });
        println!("{line}");
        if loss > 0 && args.stop_on_loss {
            break;
        }
    }
    match args.target {
        Target::Mdf => rt.block_on(teardown_mdf(&args.control, args.sessions)),
        Target::Rtpengine => teardown_rtpengine(args.ng, args.sessions),
    }
    std::process::ExitCode::SUCCESS
}
