//! SIP over UDP and TCP: receive, parse (malformed messages are counted by reason, answered
//! with a 400 where a response is possible, and dropped), hand whole messages to the core;
//! send what the core asks for. TCP is framed by Content-Length; a connection whose framing
//! is lost (a malformed message) is closed after the 400.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sluice_common::sip as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::core::Input;
use crate::sip::build::{self, Source};
use crate::sip::message::{self, Framed, Limits, Refused};
use crate::stats::Stats;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Where a message came from (and, for TCP, on which connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub conn: Option<u64>,
}

impl Peer {
    pub fn new(transport: Transport, addr: SocketAddr) -> Peer {
        Peer {
            transport,
            addr,
            conn: None,
        }
    }

    pub fn reliable(&self) -> bool {
        self.transport == Transport::Tcp
    }

    pub fn to_pb(self) -> pb::Peer {
        pb::Peer {
            transport: match self.transport {
                Transport::Udp => pb::Transport::Udp as i32,
                Transport::Tcp => pb::Transport::Tcp as i32,
            },
            host: self.addr.ip().to_string(),
            port: u32::from(self.addr.port()),
        }
    }
}

/// How long an idle TCP connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(600);
/// Messages queued for one TCP connection before sends to it are dropped (counted).
const TCP_QUEUE: usize = 256;

#[derive(Default)]
struct Conns {
    by_id: HashMap<u64, mpsc::Sender<Bytes>>,
    by_addr: HashMap<SocketAddr, u64>,
}

/// The sending half every part shares.
#[derive(Clone)]
pub struct Outbound {
    udp: Arc<UdpSocket>,
    conns: Arc<Mutex<Conns>>,
    next_conn: Arc<AtomicU64>,
    ctx: Arc<Ctx>,
}

struct Ctx {
    core: mpsc::Sender<Input>,
    stats: Arc<Stats>,
    limits: Limits,
    max_connections: usize,
    stop: CancellationToken,
}

impl Outbound {
    pub fn new(
        udp: Arc<UdpSocket>,
        core: mpsc::Sender<Input>,
        stats: Arc<Stats>,
        limits: Limits,
        max_connections: usize,
        stop: CancellationToken,
    ) -> Outbound {
        Outbound {
            udp,
            conns: Arc::new(Mutex::new(Conns::default())),
            next_conn: Arc::new(AtomicU64::new(1)),
            ctx: Arc::new(Ctx {
                core,
                stats,
                limits,
                max_connections,
                stop,
            }),
        }
    }

    /// Sends without waiting: UDP to `to`; TCP on the peer's connection, else on one to
    /// `to` (opened when there is none).
    pub fn send(&self, peer: Peer, to: SocketAddr, bytes: Bytes) {
        self.send_for(peer, to, bytes, None)
    }

    /// [`Outbound::send`] for a client transaction: when the destination cannot be reached,
    /// the core hears of it (`Input::Unreachable`) and the handler gets a 503.
    pub fn send_for(&self, peer: Peer, to: SocketAddr, bytes: Bytes, txn: Option<String>) {
        let failed = |me: &Outbound, txn: Option<String>| {
            me.ctx.stats.send_errors.inc();
            if let Some(id) = txn {
                let _ = me.ctx.core.try_send(Input::Unreachable(id));
            }
        };
        match peer.transport {
            Transport::Udp => {
                if let Err(e) = self.udp.try_send_to(&bytes, to) {
                    tracing::debug!(%to, error = %e, "udp send failed");
                    failed(self, txn);
                }
            }
            Transport::Tcp => {
                let tx = {
                    let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
                    peer.conn
                        .and_then(|c| conns.by_id.get(&c))
                        .or_else(|| conns.by_addr.get(&to).and_then(|c| conns.by_id.get(c)))
                        .cloned()
                };
                match tx {
                    Some(tx) => {
                        if tx.try_send(bytes).is_err() {
                            failed(self, txn);
                        }
                    }
                    None => {
                        let me = self.clone();
                        tokio::spawn(async move {
                            match TcpStream::connect(to).await {
                                Ok(stream) => match me.adopt(stream, to) {
                                    Some(tx) => {
                                        let _ = tx.send(bytes).await;
                                    }
                                    None => failed(&me, txn),
                                },
                                Err(e) => {
                                    tracing::debug!(%to, error = %e, "cannot connect");
                                    failed(&me, txn);
                                }
                            }
                        });
                    }
                }
            }
        }
    }

    /// Registers a connection and starts its reader and writer.
    fn adopt(&self, stream: TcpStream, addr: SocketAddr) -> Option<mpsc::Sender<Bytes>> {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(TCP_QUEUE);
        {
            let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
            if conns.by_id.len() >= self.ctx.max_connections {
                self.ctx.stats.tcp_refused.inc();
                return None;
            }
            conns.by_id.insert(id, tx.clone());
            conns.by_addr.insert(addr, id);
            self.ctx
                .stats
                .tcp_connections
                .store(conns.by_id.len(), Ordering::Relaxed);
        }
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let me = self.clone();
        tokio::spawn(async move {
            let peer = Peer {
                transport: Transport::Tcp,
                addr,
                conn: Some(id),
            };
            let writer = tokio::spawn(write_loop(write, rx));
            me.read_loop(read, peer).await;
            {
                let mut conns = me.conns.lock().unwrap_or_else(|p| p.into_inner());
                conns.by_id.remove(&id);
                if conns.by_addr.get(&addr) == Some(&id) {
                    conns.by_addr.remove(&addr);
                }
                me.ctx
                    .stats
                    .tcp_connections
                    .store(conns.by_id.len(), Ordering::Relaxed);
            }
            writer.abort();
        });
        Some(tx)
    }

    async fn read_loop(&self, mut read: tokio::net::tcp::OwnedReadHalf, peer: Peer) {
        let mut acc: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = tokio::select! {
                r = tokio::time::timeout(TCP_IDLE, read.read(&mut chunk)) => match r {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                    Ok(Ok(n)) => n,
                },
                _ = self.ctx.stop.cancelled() => return,
            };
            acc.extend_from_slice(&chunk[..n]);
            loop {
                let buf = Bytes::copy_from_slice(&acc);
                match message::parse_stream(&buf, self.ctx.limits) {
                    Ok(Framed::Message(m, used)) => {
                        acc.drain(..used);
                        if self.ctx.core.send(Input::Message(m, peer)).await.is_err() {
                            return;
                        }
                    }
                    Ok(Framed::KeepAlive(used)) => {
                        acc.drain(..used);
                    }
                    Ok(Framed::Incomplete) => break,
                    Err(refused) => {
                        // Framing is lost: answer if possible, then close.
                        self.refuse(refused, peer, peer.addr);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return;
                    }
                }
                if acc.is_empty() {
                    break;
                }
            }
        }
    }

    /// Counts a malformed message and answers it when it is a request with what a response
    /// needs.
    fn refuse(&self, refused: Refused, peer: Peer, to: SocketAddr) {
        self.ctx.stats.malformed(refused.reason);
        tracing::debug!(reason = refused.reason.name(), peer = %peer.addr, "malformed message");
        let Some(req) = refused.partial else { return };
        let ip = peer.addr.ip().to_string();
        let source = Source {
            ip: &ip,
            port: peer.addr.port(),
        };
        let status = refused.reason.status();
        let reason = format!("Bad Request ({})", refused.reason.name());
        let reason = if status == 400 { reason.as_str() } else { "" };
        if let Ok(b) = build::response(
            &req,
            &source,
            status,
            reason,
            Some(&build::new_tag()),
            &[],
            &[],
        ) {
            self.ctx.stats.response_out(status);
            self.send(peer, to, Bytes::from(b));
        }
    }
}

async fn write_loop(mut write: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(b) = rx.recv().await {
        if write.write_all(&b).await.is_err() {
            return;
        }
    }
}

/// Receives datagrams until `stop`.
pub async fn run_udp(out: Outbound, stop: CancellationToken) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = tokio::select! {
            r = out.udp.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors surface here on Linux: not fatal.
                    tracing::debug!(error = %e, "udp receive error");
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let peer = Peer::new(Transport::Udp, from);
        let data = Bytes::copy_from_slice(&buf[..n]);
        // A lone CRLF keep-alive (RFC 5626) is not a message.
        if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
            continue;
        }
        match message::parse_datagram(data, out.ctx.limits) {
            Ok(m) => {
                if out
                    .ctx
                    .core
                    .send(Input::Message(Box::new(m), peer))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(refused) => {
                let to = match refused.partial.as_ref().and_then(|m| m.top_via()) {
                    Some(v) if v.rport.is_none() => {
                        SocketAddr::new(from.ip(), v.port.unwrap_or(5060))
                    }
                    _ => from,
                };
                out.refuse(refused, peer, to);
            }
        }
    }
}

/// Accepts connections until `stop`.
pub async fn run_tcp(out: Outbound, listener: TcpListener, stop: CancellationToken) {
    loop {
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let _ = out.adopt(stream, addr);
    }
}
