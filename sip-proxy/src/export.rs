//! statsD export of the counters: every second, the change of each `sip.*` counter since the
//! last flush (`|c`), and the handler latency's p50/p99 bucket bounds (`|g`), packed into
//! datagrams. The SIP path never touches this socket.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::stats::Stats;

const DATAGRAM_BYTES: usize = 1400;

/// The lines of one flush; `last` keeps what was already reported.
pub fn lines(stats: &Stats, last: &mut HashMap<String, u64>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, value) in stats.counters() {
        let before = last.insert(name.clone(), value).unwrap_or(0);
        if value > before {
            out.push(format!("{name}:{}|c", value - before));
        }
    }
    for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
        if let Some(ms) = stats.latency_quantile_ms(q) {
            out.push(format!("sip.handler_ms.{name}:{ms}|g"));
        }
    }
    out
}

pub async fn run(target: String, stats: Arc<Stats>, stop: CancellationToken) {
    let Ok(socket) = UdpSocket::bind("0.0.0.0:0").await else {
        tracing::warn!("statsD export disabled: no UDP socket");
        return;
    };
    let mut last = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let mut datagram = String::new();
        for line in lines(&stats, &mut last) {
            if !datagram.is_empty() && datagram.len() + line.len() + 1 > DATAGRAM_BYTES {
                let _ = socket.send_to(datagram.as_bytes(), target.as_str()).await;
                datagram.clear();
            }
            if !datagram.is_empty() {
                datagram.push('\n');
            }
            datagram.push_str(&line);
        }
        if !datagram.is_empty() {
            let _ = socket.send_to(datagram.as_bytes(), target.as_str()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_are_sent() {
        let s = Stats::default();
        let mut last = HashMap::new();
        s.request_in("REGISTER");
        let first = lines(&s, &mut last);
        assert_eq!(first, vec!["sip.requests_in.REGISTER:1|c".to_string()]);
        assert!(lines(&s, &mut last).is_empty());
        s.request_in("REGISTER");
        s.retransmissions_absorbed.inc();
        let third = lines(&s, &mut last);
        assert!(third.contains(&"sip.requests_in.REGISTER:1|c".to_string()));
        assert!(third.contains(&"sip.retransmissions_absorbed:1|c".to_string()));
    }
}
