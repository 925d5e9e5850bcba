//! Counters, per session and for the whole relay: what was relayed, what was dropped and
//! why, and how the floor changed. Atomics, added once per received batch (never per
//! destination packet), read by the control API.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        impl Counters {
            /// Every counter with its name, in declaration order.
            pub fn values(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters! {
    /// RTP packets received on any leg.
    rtp_in,
    rtp_bytes_in,
    /// RTP packets sent to listeners (one per destination).
    relayed_packets,
    relayed_bytes,
    /// RTP that failed validation (version, header, CSRC/extension/padding lengths).
    dropped_malformed_rtp,
    /// Datagrams larger than the relay's buffer.
    dropped_too_large,
    /// RTP from a participant who does not hold the floor.
    dropped_not_floor_holder,
    /// Packets from an address other than the leg's latched (or SDP) address.
    dropped_foreign_source,
    /// Packets on a leg that has left the call.
    dropped_inactive_leg,
    /// Packets for a listener with no address yet (it has not answered).
    dropped_no_destination,
    /// Packets the kernel would not take (send buffer full) or could not send.
    dropped_send_failed,
    /// RTCP datagrams received.
    rtcp_in,
    /// RTCP that failed validation (framing, APP header, floor fields).
    dropped_malformed_rtcp,
    /// Valid RTCP other than floor control (reports, SDES, BYE, other APPs): counted, not relayed.
    rtcp_other,
    /// Floor messages received and sent.
    floor_messages_in,
    floor_messages_out,
    floor_granted,
    floor_denied,
    floor_released,
    floor_revoked,
}

impl Counters {
    pub fn add(&self, counter: &AtomicU64, n: u64) {
        let _ = self;
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (name, v) in self.values() {
            m.insert(name.to_string(), v.into());
        }
        serde_json::Value::Object(m)
    }
}

/// Counts gathered while handling one batch, then added to a session's counters and to the
/// totals in one go.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub rtp_in: u64,
    pub rtp_bytes_in: u64,
    pub relayed_packets: u64,
    pub relayed_bytes: u64,
    pub malformed_rtp: u64,
    pub too_large: u64,
    pub not_floor_holder: u64,
    pub foreign_source: u64,
    pub inactive_leg: u64,
    pub no_destination: u64,
    pub send_failed: u64,
}

impl Tally {
    pub fn apply(&self, to: &Counters) {
        to.add(&to.rtp_in, self.rtp_in);
        to.add(&to.rtp_bytes_in, self.rtp_bytes_in);
        to.add(&to.relayed_packets, self.relayed_packets);
        to.add(&to.relayed_bytes, self.relayed_bytes);
        to.add(&to.dropped_malformed_rtp, self.malformed_rtp);
        to.add(&to.dropped_too_large, self.too_large);
        to.add(&to.dropped_not_floor_holder, self.not_floor_holder);
        to.add(&to.dropped_foreign_source, self.foreign_source);
        to.add(&to.dropped_inactive_leg, self.inactive_leg);
        to.add(&to.dropped_no_destination, self.no_destination);
        to.add(&to.dropped_send_failed, self.send_failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_lands_in_the_named_counters() {
        let c = Counters::default();
        Tally {
            rtp_in: 3,
            not_floor_holder: 2,
            ..Tally::default()
        }
        .apply(&c);
        let j = c.json();
        assert_eq!(j["rtp_in"], 3);
        assert_eq!(j["dropped_not_floor_holder"], 2);
        assert_eq!(j["relayed_packets"], 0);
    }
}
