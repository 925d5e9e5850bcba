//! The relay's port range, handed out as RTP/RTCP pairs (an even RTP port, RTCP one above).
//! Freed pairs go to the back of the queue, so a port is reused as late as possible and a
//! late packet of an ended call does not land in a new one. A pair another process holds is
//! skipped (the bind fails) and retried later.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

pub struct Pair {
    pub rtp: std::net::UdpSocket,
    pub rtcp: std::net::UdpSocket,
    pub rtp_port: u16,
}

pub struct Ports {
    ip: IpAddr,
    free: Mutex<VecDeque<u16>>,
    total: usize,
}

impl Ports {
    /// Pairs from `min` to `max` (inclusive; `min` rounded up to even).
    pub fn new(ip: IpAddr, min: u16, max: u16) -> Ports {
        let start = min + (min % 2);
        let free: VecDeque<u16> = (start..max)
            .step_by(2)
            .filter(|p| p.checked_add(1).is_some_and(|r| r <= max))
            .collect();
        Ports {
            ip,
            total: free.len(),
            free: Mutex::new(free),
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn free(&self) -> usize {
        self.free.lock().map_or(0, |f| f.len())
    }

    /// Binds the next free pair; `None` when every pair is taken (or none could be bound).
    pub fn take(&self) -> Option<Pair> {
        let mut free = self.free.lock().ok()?;
        for _ in 0..free.len() {
            let port = free.pop_front()?;
            let rtp = std::net::UdpSocket::bind(SocketAddr::new(self.ip, port));
            let rtcp = std::net::UdpSocket::bind(SocketAddr::new(self.ip, port + 1));
            match (rtp, rtcp) {
                (Ok(rtp), Ok(rtcp)) => {
                    return Some(Pair {
                        rtp,
                        rtcp,
                        rtp_port: port,
                    })
                }
                _ => {
                    tracing::debug!(port, "port pair in use by another process: skipped");
                    free.push_back(port);
                }
            }
        }
        None
    }

    /// Returns a pair (its sockets must be closed already).
    pub fn give_back(&self, rtp_port: u16) {
        if let Ok(mut free) = self.free.lock() {
            free.push_back(rtp_port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_odd_and_reused_last() {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port() & !1;
        drop(probe);
        let ports = Ports::new("127.0.0.1".parse().unwrap(), base, base + 5);
        assert_eq!(ports.total(), 3);
        let a = ports.take().unwrap();
        assert_eq!(a.rtp_port % 2, 0);
        assert_eq!(a.rtcp.local_addr().unwrap().port(), a.rtp_port + 1);
        let a_port = a.rtp_port;
        drop(a);
        ports.give_back(a_port);
        let b = ports.take().unwrap();
        assert_ne!(b.rtp_port, a_port, "a freed pair goes to the back");
        assert_eq!(ports.free(), 2);
    }

    #[test]
    fn exhausted_or_busy_ranges_give_none() {
        // Hold one port of a pair: that pair cannot be handed out.
        let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = held.local_addr().unwrap().port() & !1;
        let ports = Ports::new("127.0.0.1".parse().unwrap(), base, base + 1);
        assert!(ports.take().is_none(), "a pair held elsewhere is skipped");
        drop(held);
        let pair = ports.take().expect("the pair once released");
        assert_eq!(pair.rtp_port, base);
        assert!(ports.take().is_none(), "one pair only");
    }
}
