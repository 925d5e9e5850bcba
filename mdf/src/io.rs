//! Batched UDP I/O: `recvmmsg` takes up to [`BATCH`] datagrams in one system call, and
//! `sendmmsg` sends a received batch to one listener in one system call. Buffers live in one
//! [`Batch`] per worker thread, reused for every socket the thread serves: nothing is
//! allocated per packet, and memory does not grow with the number of sessions.
//!
//! Sockets are non-blocking (tokio's); a send the kernel would not take is counted as a drop
//! by the caller, never waited for: a late voice packet is worthless, and one slow listener
//! must not hold up the others.

use std::cell::RefCell;
use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Largest datagram relayed; a larger one is truncated by the kernel and dropped.
pub const MAX_DATAGRAM: usize = 1536;

pub struct Batch {
    pub bufs: Box<[[u8; MAX_DATAGRAM]; BATCH]>,
    pub lens: [usize; BATCH],
    pub sources: [Option<SocketAddr>; BATCH],
    pub truncated: [bool; BATCH],
    /// Which received datagrams are relayed (set by the session).
    pub keep: [bool; BATCH],
    /// Where a batch goes (leg index, address): filled by the session, reused.
    pub dests: Vec<(usize, SocketAddr)>,
    recv_headers: MultiHeaders<SockaddrStorage>,
    send_headers: MultiHeaders<SockaddrStorage>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            bufs: Box::new([[0; MAX_DATAGRAM]; BATCH]),
            lens: [0; BATCH],
            sources: [None; BATCH],
            truncated: [false; BATCH],
            keep: [false; BATCH],
            dests: Vec::with_capacity(64),
            recv_headers: MultiHeaders::preallocate(BATCH, None),
            send_headers: MultiHeaders::preallocate(BATCH, None),
        }
    }

    /// Receives up to [`BATCH`] datagrams; `Err(WouldBlock)` when there is none.
    pub fn recv(&mut self, fd: RawFd) -> std::io::Result<usize> {
        let Batch {
            bufs,
            lens,
            sources,
            truncated,
            recv_headers,
            ..
        } = self;
        let mut slices = bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
        let results = recvmmsg(
            fd,
            recv_headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        let mut n = 0;
        for (i, msg) in results.enumerate() {
            lens[i] = msg.bytes;
            truncated[i] = msg.flags.contains(MsgFlags::MSG_TRUNC);
            sources[i] = msg.address.as_ref().and_then(to_std);
            n = i + 1;
        }
        if n == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Sends the kept datagrams among the first `n` to `to`; returns how many went out.
    pub fn send_kept(&mut self, fd: RawFd, n: usize, to: SocketAddr) -> usize {
        let Batch {
            bufs,
            lens,
            keep,
            send_headers,
            ..
        } = self;
        let empty: &[u8] = &[];
        let mut slices = [[IoSlice::new(empty)]; BATCH];
        let mut k = 0;
        for i in 0..n.min(BATCH) {
            if keep[i] {
                slices[k] = [IoSlice::new(&bufs[i][..lens[i]])];
                k += 1;
            }
        }
        if k == 0 {
            return 0;
        }
        let addrs = [Some(SockaddrStorage::from(to)); BATCH];
        let none: [ControlMessage; 0] = [];
        match sendmmsg(
            fd,
            send_headers,
            slices[..k].iter(),
            &addrs[..k],
            none,
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(results) => results.count(),
            Err(_) => 0,
        }
    }
}

/// Sends one datagram without waiting (a full send buffer is an error, counted by the
/// caller). Straight to the socket: tokio's write readiness is not known yet right after a
/// socket is registered.
pub fn send_now(fd: RawFd, data: &[u8], to: SocketAddr) -> std::io::Result<usize> {
    Ok(nix::sys::socket::sendto(
        fd,
        data,
        &SockaddrStorage::from(to),
        MsgFlags::MSG_DONTWAIT,
    )?)
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

thread_local! {
    static BATCH_BUFFERS: RefCell<Batch> = RefCell::new(Batch::new());
}

/// Runs `f` with this thread's batch buffers.
pub fn with_batch<R>(f: impl FnOnce(&mut Batch) -> R) -> R {
    BATCH_BUFFERS.with_borrow_mut(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_is_received_and_sent_in_order_in_one_call_each() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..5u8 {
            a.send_to(&[i; 20], b.local_addr().unwrap()).unwrap();
        }
        let n = with_batch(|batch| {
            // Loopback delivery is synchronous: all five are queued.
            let n = batch.recv(b.as_raw_fd()).unwrap();
            assert_eq!(n, 5);
            for i in 0..n {
                assert_eq!(batch.lens[i], 20);
                assert_eq!(batch.sources[i], Some(a.local_addr().unwrap()));
                batch.keep[i] = i != 2;
            }
            batch.send_kept(b.as_raw_fd(), n, c.local_addr().unwrap())
        });
        assert_eq!(n, 4);
        let mut buf = [0u8; 64];
        for want in [0u8, 1, 3, 4] {
            let (len, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!(
                from,
                b.local_addr().unwrap(),
                "sent from the relay's own port"
            );
            assert_eq!(&buf[..len], &[want; 20]);
        }
        b.set_nonblocking(true).unwrap();
        let err = with_batch(|batch| batch.recv(b.as_raw_fd())).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    }
}
