//! The RFC 3261 transaction layer: pure state machines ([`server`], [`client`]) that say what
//! to do, keys that match messages to transactions ([`key`]), and the timer values.
//! The shell that owns the table and does the I/O is `crate::core`.

pub mod client;
pub mod key;
pub mod server;

use std::time::Duration;

/// RFC 3261 timer values (§17, Table 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate (500 ms).
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// Longest time a message stays in the network (5 s).
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// RFC 3261 timers by their letter (M and L from RFC 6026).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    A,
    B,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    M,
}

/// What a transaction asks its shell to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Server INVITE: send 100 Trying now.
    SendTrying,
    /// (Re)send the stored message: the last response (server) or the request (client).
    Resend,
    /// A retransmitted request was absorbed (counted; the handler is not called again).
    Absorbed,
    /// Client INVITE: send the ACK of the final non-2xx response.
    SendAck,
    /// Client INVITE: send a CANCEL of it.
    SendCancel,
    /// Client: hand the response to the handler that sent the request.
    Deliver,
    /// Client: the request timed out (the handler gets a 408).
    Timeout,
    /// Client: the request could not be sent (the handler gets a 503).
    Unreachable,
    /// Server INVITE: a final response was never ACKed (Timer H).
    AckTimeout,
    Schedule(Timer, Duration),
    Terminate,
}

#[cfg(test)]
mod properties {
    //! Random input sequences against the state machines: no panic, and the invariants the
    //! shell relies on hold whatever arrives in whatever order.
    use super::*;
    use proptest::prelude::*;

    fn timer() -> impl Strategy<Value = Timer> {
        prop::sample::select(vec![
            Timer::A,
            Timer::B,
            Timer::D,
            Timer::E,
            Timer::F,
            Timer::G,
            Timer::H,
            Timer::I,
            Timer::J,
            Timer::K,
            Timer::M,
        ])
    }

    fn server_input() -> impl Strategy<Value = server::Input> {
        prop_oneof![
            Just(server::Input::Retransmission),
            Just(server::Input::Ack),
            (0u16..800).prop_map(|status| server::Input::Respond { status }),
            timer().prop_map(server::Input::Fired),
        ]
    }

    fn client_input() -> impl Strategy<Value = client::Input> {
        prop_oneof![
            (0u16..800).prop_map(|status| client::Input::Response { status }),
            timer().prop_map(client::Input::Fired),
            Just(client::Input::Cancel),
            Just(client::Input::TransportError),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5_000, ..ProptestConfig::default() })]

        /// One final response at most; nothing is sent once terminated; intervals stay
        /// within T2 (G) and timers are never negative or absurd.
        #[test]
        fn server_transactions_answer_once_and_fall_silent_when_done(
            invite in any::<bool>(),
            reliable in any::<bool>(),
            inputs in prop::collection::vec(server_input(), 0..40),
        ) {
            let t = Timers::default();
            let (mut s, _) = server::Server::new(invite, reliable, t);
            let mut finals = 0;
            let mut terminated = false;
            for input in inputs {
                let result = s.on(input);
                if let (server::Input::Respond { status }, Ok(_)) = (input, &result) {
                    if status >= 200 {
                        finals += 1;
                    }
                }
                let effects = result.unwrap_or_default();
                if terminated {
                    prop_assert!(
                        effects.iter().all(|e| matches!(e, Effect::Absorbed)),
                        "after Terminate: {effects:?}"
                    );
                }
                for e in &effects {
                    if let Effect::Schedule(timer, d) = e {
                        if *timer == Timer::G {
                            prop_assert!(*d <= t.t2);
                        }
                        prop_assert!(*d <= t.t1 * 64);
                    }
                    if *e == Effect::Terminate {
                        terminated = true;
                    }
                }
            }
            prop_assert!(finals <= 1);
        }

        /// A client transaction tells its handler of a final outcome at most once: the final
        /// response, a timeout or unreachable — never two of them.
        #[test]
        fn client_transactions_end_with_one_outcome(
            invite in any::<bool>(),
            reliable in any::<bool>(),
            inputs in prop::collection::vec(client_input(), 0..40),
        ) {
            let (mut c, _) = client::Client::new(invite, reliable, Timers::default());
            let mut outcomes = 0;
            for input in inputs {
                let effects = c.on(input);
                let final_delivered = matches!(input, client::Input::Response { status } if status >= 200)
                    && effects.contains(&Effect::Deliver);
                if final_delivered
                    || effects.contains(&Effect::Timeout)
                    || effects.contains(&Effect::Unreachable)
                {
                    outcomes += 1;
                }
            }
            prop_assert!(outcomes <= 1, "{outcomes} outcomes");
        }
    }
}
