//! The UDP source: receives datagrams and hands each one, as is, to the parse stage.
//!
//! The receive buffer is one byte larger than [`MAX_PACKET_BYTES`], so an oversized datagram
//! is seen as oversized (and rejected whole by the parser) instead of silently truncated.
//! When the parse stage is behind, the source waits (the kernel socket buffer absorbs
//! bursts). Receive errors (e.g. ICMP feedback) are counted, logged at a rate limit and
//! never end the loop. Cancelling `stop` ends the task, which closes the pipeline.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::parse::MAX_PACKET_BYTES;
use crate::ratelimit::LogEvery;
use crate::stats::Stats;

pub async fn run(
    socket: UdpSocket,
    packets: mpsc::Sender<Vec<u8>>,
    stats: Arc<Stats>,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_PACKET_BYTES + 1];
    let mut log = LogEvery::new(Duration::from_secs(5));
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        match received {
            Ok((n, _from)) => {
                stats.packets.fetch_add(1, Relaxed);
                stats.bytes.fetch_add(n as u64, Relaxed);
                if packets.send(buf[..n].to_vec()).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                stats.receive_errors.fetch_add(1, Relaxed);
                if let Some(suppressed) = log.check(Instant::now()) {
                    tracing::warn!(error = %e, suppressed, "udp receive failed");
                }
            }
        }
    }
}
