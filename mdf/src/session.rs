//! One relay session (a group call): a leg per participant, each with its own RTP/RTCP port
//! pair, the floor, the counters, and the tasks that serve the legs' sockets.
//!
//! * RTP from the floor holder is relayed unchanged to every other active leg, from that
//!   leg's own RTP port (symmetric RTP); anything else is dropped and counted by reason.
//! * A leg's destination is the address its SDP gave until its first packet arrives; then
//!   the packet's source is learned (latching). With [`Latch::Sdp`] (the default) only a
//!   source on the SDP's IP address is learned, so a stranger cannot take a leg over; with
//!   [`Latch::Any`] the first valid packet wins (phones behind NAT).
//! * RTCP carries floor control (`MCPT` APP packets) to the [`Floor`] state machine; other
//!   RTCP is validated, counted and not relayed.
//!
//! Locking: one mutex per session, taken once per received batch (the talker's socket task is
//! its main user); sends happen after it is released.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::floor::{self, Change, Event, Floor};
use crate::io::{self, Batch};
use crate::mcptt::{self, Kind, Outgoing};
use crate::ports::Ports;
use crate::shards::Placement;
use crate::stats::{Counters, Tally};

/// How a leg's media source is learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Latch {
    /// Learn only a source on the IP address of the leg's SDP.
    Sdp,
    /// Learn the first valid packet's source (NAT).
    Any,
}

/// Batches served in a row before a socket task yields to the others on its thread.
const BATCHES_PER_TURN: usize = 16;

#[derive(Debug, Clone)]
pub struct LegSpec {
    pub id: String,
    pub rtp: Option<SocketAddr>,
    pub rtcp: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct SessionSpec {
    pub id: String,
    pub legs: Vec<LegSpec>,
    /// The leg granted the floor at once (the originator's implicit request).
    pub holder: Option<String>,
    pub max_talk: Duration,
}

struct LegIo {
    id: String,
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
    rtp_port: u16,
}

#[derive(Debug, Clone, Default)]
struct Peer {
    active: bool,
    sdp_rtp: Option<SocketAddr>,
    sdp_rtcp: Option<SocketAddr>,
    rtp: Option<SocketAddr>,
    rtcp: Option<SocketAddr>,
}

impl Peer {
    fn rtp_dest(&self) -> Option<SocketAddr> {
        self.rtp.or(self.sdp_rtp)
    }

    fn rtcp_dest(&self) -> Option<SocketAddr> {
        self.rtcp.or(self.sdp_rtcp).or_else(|| {
            self.sdp_rtp
                .map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1)))
        })
    }
}

/// Learns or checks a packet's source; false: drop it as foreign.
fn accept_source(
    latched: &mut Option<SocketAddr>,
    sdp: Option<SocketAddr>,
    src: SocketAddr,
    mode: Latch,
) -> bool {
    match latched {
        Some(a) => *a == src,
        None => {
            let ok = match (mode, sdp) {
                (Latch::Any, _) => true,
                (Latch::Sdp, Some(s)) => s.ip() == src.ip(),
                (Latch::Sdp, None) => false,
            };
            if ok {
                *latched = Some(src);
            }
            ok
        }
    }
}

struct State {
    floor: Floor,
    peers: Vec<Peer>,
}

pub struct Session {
    pub id: String,
    created: SystemTime,
    ssrc: u32,
    latch: Latch,
    legs: Vec<LegIo>,
    state: Mutex<State>,
    pub counters: Counters,
    totals: Arc<Counters>,
    /// Floor changes (grants, releases, revocations).
    floor_changes: AtomicU64,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The relay thread serving this session's sockets.
    _shard: Placement,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no free port pair")]
    NoPorts,
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

impl Session {
    /// Binds a port pair per leg and starts serving them on the `shard`'s thread.
    pub fn start(
        spec: SessionSpec,
        ports: &Ports,
        totals: Arc<Counters>,
        latch: Latch,
        shard: Placement,
    ) -> Result<Arc<Session>, StartError> {
        let rt = shard.handle.clone();
        let mut legs = Vec::with_capacity(spec.legs.len());
        let release = |legs: &[LegIo]| {
            for l in legs {
                ports.give_back(l.rtp_port);
            }
        };
        for leg in &spec.legs {
            let Some(pair) = ports.take() else {
                release(&legs);
                return Err(StartError::NoPorts);
            };
            let port = pair.rtp_port;
            let socket = |s: std::net::UdpSocket| -> std::io::Result<Arc<UdpSocket>> {
                s.set_nonblocking(true)?;
                // Registered with the shard's reactor.
                let _in = rt.enter();
                Ok(Arc::new(UdpSocket::from_std(s)?))
            };
            match (socket(pair.rtp), socket(pair.rtcp)) {
                (Ok(rtp), Ok(rtcp)) => legs.push(LegIo {
                    id: leg.id.clone(),
                    rtp,
                    rtcp,
                    rtp_port: port,
                }),
                (Err(e), _) | (_, Err(e)) => {
                    ports.give_back(port);
                    release(&legs);
                    return Err(StartError::Io(e));
                }
            }
        }
        let now = Instant::now();
        let peers = spec
            .legs
            .iter()
            .map(|l| Peer {
                active: true,
                sdp_rtp: l.rtp,
                sdp_rtcp: l.rtcp,
                ..Peer::default()
            })
            .collect();
        let session = Arc::new(Session {
            id: spec.id,
            created: SystemTime::now(),
            ssrc: rand::random(),
            latch,
            legs,
            state: Mutex::new(State {
                floor: Floor::new(spec.max_talk, now),
                peers,
            }),
            counters: Counters::default(),
            totals,
            floor_changes: AtomicU64::new(0),
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
            _shard: shard,
        });
        let mut tasks = Vec::with_capacity(session.legs.len() * 2);
        for i in 0..session.legs.len() {
            tasks.push(rt.spawn(serve_rtp(session.clone(), i)));
            tasks.push(rt.spawn(serve_rtcp(session.clone(), i)));
        }
        if let Ok(mut t) = session.tasks.lock() {
            *t = tasks;
        }
        if let Some(holder) = spec.holder {
            // The leg exists: the API checked it.
            let _ = session.floor_event_for(&holder, Event::Grant);
        }
        Ok(session)
    }

    pub fn leg_count(&self) -> usize {
        self.legs.len()
    }

    fn leg_index(&self, id: &str) -> Option<usize> {
        self.legs.iter().position(|l| l.id == id)
    }

    pub fn has_leg(&self, id: &str) -> bool {
        self.leg_index(id).is_some()
    }

    /// Stops the socket tasks, closes the sockets and returns the ports.
    pub async fn close(&self, ports: &Ports) {
        self.stop.cancel();
        let tasks = self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for t in tasks {
            let _ = t.await;
        }
        for l in &self.legs {
            ports.give_back(l.rtp_port);
        }
    }

    /// The leg answered: its SDP addresses (RTCP defaults to RTP + 1).
    pub fn set_remote(&self, leg: &str, rtp: SocketAddr, rtcp: Option<SocketAddr>) -> Option<()> {
        let i = self.leg_index(leg)?;
        if let Ok(mut st) = self.state.lock() {
            let p = st.peers.get_mut(i)?;
            p.sdp_rtp = Some(rtp);
            p.sdp_rtcp = rtcp;
            p.active = true;
        }
        self.floor_event(Event::Joined(i));
        Some(())
    }

    /// The leg left the call: its packets are dropped and it hears nothing more.
    pub fn leave(&self, leg: &str) -> Option<()> {
        let i = self.leg_index(leg)?;
        if let Ok(mut st) = self.state.lock() {
            st.peers.get_mut(i)?.active = false;
        }
        self.floor_event(Event::Left(i));
        Some(())
    }

    /// An implicit floor request (the originator's INVITE).
    pub fn grant(&self, leg: &str) -> Option<()> {
        self.floor_event_for(leg, Event::Grant)
    }

    fn floor_event_for(&self, leg: &str, event: fn(usize) -> Event) -> Option<()> {
        let i = self.leg_index(leg)?;
        self.floor_event(event(i));
        Some(())
    }

    /// Revokes the floor of a holder past the maximum talk time.
    pub fn tick(&self, now: Instant) {
        let due = self
            .state
            .lock()
            .is_ok_and(|st| st.floor.deadline().is_some_and(|d| d <= now));
        if due {
            self.floor_event(Event::Tick);
        }
    }

    fn floor_event(&self, event: Event) {
        let sends = {
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            self.decide(&mut st, Some(event), Vec::new())
        };
        self.send_floor(sends);
    }

    /// Runs the floor state machine; returns the messages with their destinations.
    fn decide(
        &self,
        st: &mut State,
        event: Option<Event>,
        mut extra: Vec<floor::Send>,
    ) -> Vec<(usize, SocketAddr, Outgoing)> {
        let views: Vec<floor::Leg> = self
            .legs
            .iter()
            .zip(&st.peers)
            .map(|(l, p)| floor::Leg {
                active: p.active,
                user: &l.id,
            })
            .collect();
        let (mut sends, change) = match event {
            Some(e) => st.floor.decide(e, Instant::now(), &views),
            None => (Vec::new(), Change::None),
        };
        sends.append(&mut extra);
        let c = &self.counters;
        let counter = match change {
            Change::Granted(_) => Some((&c.floor_granted, &self.totals.floor_granted)),
            Change::Denied(_) => Some((&c.floor_denied, &self.totals.floor_denied)),
            Change::Released(_) => Some((&c.floor_released, &self.totals.floor_released)),
            Change::Revoked(_) => Some((&c.floor_revoked, &self.totals.floor_revoked)),
            Change::None => None,
        };
        if let Some((mine, total)) = counter {
            mine.fetch_add(1, Ordering::Relaxed);
            total.fetch_add(1, Ordering::Relaxed);
            if !matches!(change, Change::Denied(_)) {
                self.floor_changes.fetch_add(1, Ordering::Relaxed);
            }
        }
        sends
            .into_iter()
            .filter_map(|s| {
                let to = st.peers.get(s.to)?.rtcp_dest()?;
                Some((s.to, to, s.msg))
            })
            .collect()
    }

    fn send_floor(&self, sends: Vec<(usize, SocketAddr, Outgoing)>) {
        let mut buf = [0u8; mcptt::MAX_MESSAGE];
        for (leg, to, msg) in sends {
            let Some(l) = self.legs.get(leg) else {
                continue;
            };
            match msg.write(self.ssrc, &mut buf) {
                Ok(n) => {
                    if io::send_now(l.rtcp.as_raw_fd(), &buf[..n], to).is_ok() {
                        self.counters.add(&self.counters.floor_messages_out, 1);
                        self.totals.add(&self.totals.floor_messages_out, 1);
                        tracing::debug!(session = %self.id, leg = %l.id, message = msg.kind().name(), %to, "floor message sent");
                    } else {
                        self.counters.add(&self.counters.dropped_send_failed, 1);
                        self.totals.add(&self.totals.dropped_send_failed, 1);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "floor message not written"),
            }
        }
    }

    /// One received batch of RTP on leg `p`: validate, check the source and the floor,
    /// relay what passes to every other active leg.
    fn on_rtp(&self, p: usize, b: &mut Batch, n: usize) {
        let mut t = Tally::default();
        let mut kept = 0u64;
        let mut kept_bytes = 0u64;
        let mut dests = std::mem::take(&mut b.dests);
        dests.clear();
        if let Ok(mut st) = self.state.lock() {
            let holder = st.floor.holder();
            let latch = self.latch;
            for i in 0..n {
                b.keep[i] = false;
                t.rtp_in += 1;
                t.rtp_bytes_in += b.lens[i] as u64;
                if b.truncated[i] {
                    t.too_large += 1;
                    continue;
                }
                if !valid_rtp(&b.bufs[i][..b.lens[i]]) {
                    t.malformed_rtp += 1;
                    continue;
                }
                let Some(peer) = st.peers.get_mut(p) else {
                    continue;
                };
                if !peer.active {
                    t.inactive_leg += 1;
                    continue;
                }
                let Some(src) = b.sources[i] else {
                    t.foreign_source += 1;
                    continue;
                };
                let sdp = peer.sdp_rtp;
                if !accept_source(&mut peer.rtp, sdp, src, latch) {
                    t.foreign_source += 1;
                    continue;
                }
                if holder != Some(p) {
                    t.not_floor_holder += 1;
                    continue;
                }
                b.keep[i] = true;
                kept += 1;
                kept_bytes += b.lens[i] as u64;
            }
            if kept > 0 {
                for (q, peer) in st.peers.iter().enumerate() {
                    if q == p || !peer.active {
                        continue;
                    }
                    match peer.rtp_dest() {
                        Some(a) => dests.push((q, a)),
                        None => t.no_destination += kept,
                    }
                }
            }
        }
        for &(q, to) in &dests {
            let Some(leg) = self.legs.get(q) else {
                continue;
            };
            let sent = b.send_kept(leg.rtp.as_raw_fd(), n, to) as u64;
            t.relayed_packets += sent;
            t.relayed_bytes += if sent == kept {
                kept_bytes
            } else {
                (0..n)
                    .filter(|&i| b.keep[i])
                    .take(sent as usize)
                    .map(|i| b.lens[i] as u64)
                    .sum()
            };
            t.send_failed += kept - sent;
        }
        b.dests = dests;
        t.apply(&self.counters);
        t.apply(&self.totals);
    }

    /// One RTCP datagram on leg `p`: floor messages go to the floor; other RTCP is counted.
    fn on_rtcp(&self, p: usize, data: &[u8], src: SocketAddr) {
        let c = &self.counters;
        let totals = &self.totals;
        let count = |f: fn(&Counters) -> &AtomicU64| {
            f(c).fetch_add(1, Ordering::Relaxed);
            f(totals).fetch_add(1, Ordering::Relaxed);
        };
        count(|c| &c.rtcp_in);
        let sends = {
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            let Some(peer) = st.peers.get_mut(p) else {
                return;
            };
            if !peer.active {
                count(|c| &c.dropped_inactive_leg);
                return;
            }
            let sdp = peer.sdp_rtcp.or(peer.sdp_rtp);
            if !accept_source(&mut peer.rtcp, sdp, src, self.latch) {
                count(|c| &c.dropped_foreign_source);
                return;
            }
            let parsed = match mcptt::parse_datagram(data) {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(session = %self.id, leg = %self.legs[p].id, error = %e, "malformed RTCP dropped");
                    count(|c| &c.dropped_malformed_rtcp);
                    return;
                }
            };
            for _ in 0..parsed.other {
                count(|c| &c.rtcp_other);
            }
            let mut sends = Vec::new();
            for m in parsed.floor {
                count(|c| &c.floor_messages_in);
                let acks = if m.ack_required {
                    vec![floor::Send {
                        to: p,
                        msg: Outgoing::Ack { of: m.kind },
                    }]
                } else {
                    Vec::new()
                };
                let event = match m.kind {
                    Kind::Request => Some(Event::Request(p)),
                    Kind::Release => Some(Event::Release(p)),
                    // Acks of our messages and queue queries change nothing here.
                    _ => None,
                };
                sends.extend(self.decide(&mut st, event, acks));
            }
            sends
        };
        self.send_floor(sends);
    }

    pub fn json(&self, address: &str) -> serde_json::Value {
        let (holder, peers) = match self.state.lock() {
            Ok(st) => (
                st.floor
                    .holder()
                    .and_then(|h| self.legs.get(h))
                    .map(|l| l.id.clone()),
                st.peers.clone(),
            ),
            Err(_) => (None, Vec::new()),
        };
        let legs: Vec<serde_json::Value> = self
            .legs
            .iter()
            .zip(peers)
            .map(|(l, p)| {
                serde_json::json!({
                    "id": l.id,
                    "rtp_port": l.rtp_port,
                    "rtcp_port": l.rtp_port + 1,
                    "active": p.active,
                    "remote_rtp": p.sdp_rtp.map(|a| a.to_string()),
                    "remote_rtcp": p.sdp_rtcp.map(|a| a.to_string()),
                    "latched_rtp": p.rtp.map(|a| a.to_string()),
                    "latched_rtcp": p.rtcp.map(|a| a.to_string()),
                })
            })
            .collect();
        let created = self
            .created
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        serde_json::json!({
            "id": self.id,
            "address": address,
            "created": created,
            "floor": {"holder": holder, "changes": self.floor_changes.load(Ordering::Relaxed)},
            "legs": legs,
            "stats": self.counters.json(),
        })
    }
}

async fn serve_rtp(session: Arc<Session>, leg: usize) {
    let Some(socket) = session.legs.get(leg).map(|l| l.rtp.clone()) else {
        return;
    };
    let fd = socket.as_raw_fd();
    loop {
        tokio::select! {
            _ = session.stop.cancelled() => return,
            r = socket.readable() => if r.is_err() { return },
        }
        let mut drained = false;
        for _ in 0..BATCHES_PER_TURN {
            let res = socket.try_io(Interest::READABLE, || {
                io::with_batch(|b| {
                    let n = b.recv(fd)?;
                    session.on_rtp(leg, b, n);
                    if n < io::BATCH {
                        // A short batch emptied the queue: report it drained instead of
                        // another call just to hear EAGAIN. Race-free: tokio clears only
                        // the readiness seen before this call, a newer packet re-arms it.
                        return Err(std::io::ErrorKind::WouldBlock.into());
                    }
                    Ok(n)
                })
            });
            match res {
                Ok(_) => {}
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        tracing::warn!(session = %session.id, error = %e, "RTP receive failed");
                    }
                    drained = true;
                    break;
                }
            }
        }
        if !drained {
            // A busy leg: let the others on this thread run before its next batches.
            tokio::task::yield_now().await;
        }
    }
}

async fn serve_rtcp(session: Arc<Session>, leg: usize) {
    let Some(socket) = session.legs.get(leg).map(|l| l.rtcp.clone()) else {
        return;
    };
    let mut buf = [0u8; io::MAX_DATAGRAM];
    loop {
        let (n, src) = tokio::select! {
            _ = session.stop.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                // ICMP errors of earlier sends surface here on Linux: not fatal.
                Err(_) => continue,
            },
        };
        session.on_rtcp(leg, &buf[..n], src);
    }
}

/// RTP the relay accepts: a well-formed header (version 2, CSRC list and extension
/// inside the packet, padding not past the payload), checked by rtp-rs.
fn valid_rtp(data: &[u8]) -> bool {
    rtp_rs::RtpReader::new(data).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_bytes_are_valid_rtp_or_refused_cleanly(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = valid_rtp(&data);
        }

        #[test]
        fn mutated_rtp_is_valid_or_refused_cleanly(pos in 0usize..24, byte in proptest::num::u8::ANY, payload in 0usize..40) {
            let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
            p.extend(std::iter::repeat_n(0xd5u8, payload));
            let i = pos % p.len();
            p[i] = byte;
            let _ = valid_rtp(&p);
        }
    }

    #[test]
    fn rtp_validation_refuses_what_a_relay_must_not_forward() {
        let good = [0x80u8, 96, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7, 0xd5];
        assert!(valid_rtp(&good));
        assert!(!valid_rtp(&good[..11]), "shorter than the fixed header");
        let mut v1 = good;
        v1[0] = 0x40;
        assert!(!valid_rtp(&v1), "version 1");
        let mut csrc = good;
        csrc[0] = 0x8f;
        assert!(!valid_rtp(&csrc), "15 CSRCs announced, none there");
    }

    #[test]
    fn latching_follows_the_sdp_address_by_default() {
        let sdp: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let other_port: SocketAddr = "10.0.0.5:5555".parse().unwrap();
        let stranger: SocketAddr = "10.0.0.9:4000".parse().unwrap();
        let mut l = None;
        assert!(!accept_source(&mut l, Some(sdp), stranger, Latch::Sdp));
        assert_eq!(l, None, "a stranger is not learned");
        assert!(accept_source(&mut l, Some(sdp), other_port, Latch::Sdp));
        assert_eq!(l, Some(other_port), "same host, port rewritten: learned");
        assert!(!accept_source(&mut l, Some(sdp), sdp, Latch::Sdp));
        let mut none = None;
        assert!(
            !accept_source(&mut none, None, sdp, Latch::Sdp),
            "no SDP yet: nothing learned"
        );
        assert!(accept_source(&mut none, None, stranger, Latch::Any));
        assert!(
            !accept_source(&mut none, None, sdp, Latch::Any),
            "then only that source"
        );
    }

    #[test]
    fn rtcp_goes_to_the_latched_then_sdp_rtcp_then_rtp_plus_one() {
        let mut p = Peer {
            sdp_rtp: Some("10.0.0.5:4000".parse().unwrap()),
            ..Peer::default()
        };
        assert_eq!(p.rtcp_dest(), Some("10.0.0.5:4001".parse().unwrap()));
        p.sdp_rtcp = Some("10.0.0.5:4100".parse().unwrap());
        assert_eq!(p.rtcp_dest(), p.sdp_rtcp);
        p.rtcp = Some("10.0.0.6:9".parse().unwrap());
        assert_eq!(p.rtcp_dest(), p.rtcp);
        assert_eq!(p.rtp_dest(), p.sdp_rtp);
    }
}
