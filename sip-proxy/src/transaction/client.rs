//! Client transactions (RFC 3261 §17.1, with RFC 6026's Accepted state): the pure decide
//! core for requests the platform sends. A timeout gives the handler a 408.

use std::time::Duration;

use super::{Effect, Timer, Timers};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// INVITE sent, no response yet (Timers A and B).
    Calling,
    /// Non-INVITE sent, no response yet (Timers E and F).
    Trying,
    /// A provisional response came.
    Proceeding,
    /// INVITE 2xx came: further 2xx are the dialog's business (Timer M).
    Accepted,
    /// A final response came (INVITE 3xx–6xx: ACKed; Timer D or K absorbs retransmissions).
    Completed,
    Terminated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Response {
        status: u16,
    },
    Fired(Timer),
    /// The handler asked to cancel this INVITE.
    Cancel,
    /// The request could not be sent (no route, connection refused).
    TransportError,
}

#[derive(Clone, Debug)]
pub struct Client {
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: State,
    /// The current A/E interval.
    interval: Duration,
    /// A CANCEL asked for before any provisional response: sent when one comes (§9.1).
    cancel_pending: bool,
}

impl Client {
    /// A new transaction: the request goes out now.
    pub fn new(invite: bool, reliable: bool, timers: Timers) -> (Client, Vec<Effect>) {
        let c = Client {
            invite,
            reliable,
            timers,
            state: if invite {
                State::Calling
            } else {
                State::Trying
            },
            interval: timers.t1,
            cancel_pending: false,
        };
        let mut out = vec![Effect::Resend];
        let (retransmit, timeout) = if invite {
            (Timer::A, Timer::B)
        } else {
            (Timer::E, Timer::F)
        };
        if !reliable {
            out.push(Effect::Schedule(retransmit, timers.t1));
        }
        out.push(Effect::Schedule(timeout, timers.t1 * 64));
        (c, out)
    }

    /// No final response yet (a CANCEL would still act).
    pub fn awaiting_final(&self) -> bool {
        matches!(
            self.state,
            State::Calling | State::Trying | State::Proceeding
        )
    }

    pub fn on(&mut self, input: Input) -> Vec<Effect> {
        use Effect::*;
        let t = self.timers;
        match (self.state, input) {
            (State::Calling | State::Trying, Input::Fired(timer @ (Timer::A | Timer::E))) => {
                self.interval = if self.invite {
                    self.interval * 2
                } else {
                    (self.interval * 2).min(t.t2)
                };
                vec![Resend, Schedule(timer, self.interval)]
            }
            (State::Proceeding, Input::Fired(Timer::E)) => {
                // §17.1.2.2: in Proceeding, E retransmits at T2.
                vec![Resend, Schedule(Timer::E, t.t2)]
            }
            (
                State::Calling | State::Trying | State::Proceeding,
                Input::Fired(Timer::B | Timer::F),
            ) => {
                self.state = State::Terminated;
                vec![Timeout, Terminate]
            }
            (State::Calling | State::Trying | State::Proceeding, Input::TransportError) => {
                self.state = State::Terminated;
                vec![Unreachable, Terminate]
            }
            (State::Calling | State::Trying | State::Proceeding, Input::Response { status })
                if status < 200 =>
            {
                self.state = State::Proceeding;
                let mut out = vec![Deliver];
                if self.cancel_pending {
                    self.cancel_pending = false;
                    out.push(SendCancel);
                }
                if !self.invite && !self.reliable {
                    out.push(Schedule(Timer::E, t.t2));
                }
                out
            }
            (State::Calling | State::Trying | State::Proceeding, Input::Response { status }) => {
                if self.invite && status < 300 {
                    self.state = State::Accepted;
                    vec![Deliver, Schedule(Timer::M, t.t1 * 64)]
                } else if self.invite {
                    self.state = State::Completed;
                    let d = if self.reliable {
                        Duration::ZERO
                    } else {
                        Duration::from_secs(32)
                    };
                    vec![SendAck, Deliver, Schedule(Timer::D, d)]
                } else {
                    self.state = State::Completed;
                    let k = if self.reliable { Duration::ZERO } else { t.t4 };
                    vec![Deliver, Schedule(Timer::K, k)]
                }
            }
            // A retransmitted final response: INVITE 3xx–6xx gets its ACK again.
            (State::Completed, Input::Response { status }) if self.invite && status >= 300 => {
                vec![SendAck]
            }
            (State::Accepted | State::Completed | State::Terminated, Input::Response { .. }) => {
                vec![Absorbed]
            }
            (State::Calling, Input::Cancel) => {
                self.cancel_pending = true;
                Vec::new()
            }
            (State::Proceeding, Input::Cancel) if self.invite => vec![SendCancel],
            (_, Input::Cancel) => Vec::new(),
            (State::Accepted, Input::Fired(Timer::M))
            | (State::Completed, Input::Fired(Timer::D | Timer::K)) => {
                self.state = State::Terminated;
                vec![Terminate]
            }
            (_, Input::Fired(_)) | (_, Input::TransportError) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Effect::*;

    fn t() -> Timers {
        Timers::default()
    }

    #[test]
    fn non_invite_e_doubles_to_t2_and_f_gives_the_handler_a_timeout() {
        let (mut c, e) = Client::new(false, false, t());
        assert_eq!(
            e,
            vec![
                Resend,
                Schedule(Timer::E, t().t1),
                Schedule(Timer::F, t().t1 * 64)
            ]
        );
        let mut ms = Vec::new();
        for _ in 0..5 {
            match c.on(Input::Fired(Timer::E)).as_slice() {
                [Resend, Schedule(Timer::E, d)] => ms.push(d.as_millis()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(ms, vec![1000, 2000, 4000, 4000, 4000]);
        assert_eq!(c.on(Input::Fired(Timer::F)), vec![Timeout, Terminate]);
        assert_eq!(c.on(Input::Response { status: 200 }), vec![Absorbed]);
    }

    #[test]
    fn non_invite_final_response_is_delivered_once() {
        let (mut c, _) = Client::new(false, false, t());
        assert_eq!(
            c.on(Input::Response { status: 100 }),
            vec![Deliver, Schedule(Timer::E, t().t2)]
        );
        assert_eq!(
            c.on(Input::Response { status: 200 }),
            vec![Deliver, Schedule(Timer::K, t().t4)]
        );
        assert_eq!(c.on(Input::Response { status: 200 }), vec![Absorbed]);
        assert_eq!(
            c.on(Input::Fired(Timer::F)),
            vec![],
            "F is moot once completed"
        );
        assert_eq!(c.on(Input::Fired(Timer::K)), vec![Terminate]);
    }

    #[test]
    fn invite_a_doubles_without_cap_and_b_times_out() {
        let (mut c, e) = Client::new(true, false, t());
        assert_eq!(
            e,
            vec![
                Resend,
                Schedule(Timer::A, t().t1),
                Schedule(Timer::B, t().t1 * 64)
            ]
        );
        let mut ms = Vec::new();
        for _ in 0..4 {
            match c.on(Input::Fired(Timer::A)).as_slice() {
                [Resend, Schedule(Timer::A, d)] => ms.push(d.as_millis()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(ms, vec![1000, 2000, 4000, 8000]);
        assert_eq!(c.on(Input::Fired(Timer::B)), vec![Timeout, Terminate]);
    }

    #[test]
    fn invite_provisional_stops_a_and_a_failure_is_acked_even_when_retransmitted() {
        let (mut c, _) = Client::new(true, false, t());
        assert_eq!(c.on(Input::Response { status: 180 }), vec![Deliver]);
        assert_eq!(
            c.on(Input::Fired(Timer::A)),
            vec![],
            "A stops at a provisional"
        );
        assert_eq!(
            c.on(Input::Response { status: 486 }),
            vec![
                SendAck,
                Deliver,
                Schedule(Timer::D, Duration::from_secs(32))
            ]
        );
        assert_eq!(c.on(Input::Response { status: 486 }), vec![SendAck]);
        assert_eq!(c.on(Input::Fired(Timer::D)), vec![Terminate]);
    }

    #[test]
    fn invite_2xx_goes_to_the_handler_once() {
        let (mut c, _) = Client::new(true, true, t());
        assert_eq!(
            c.on(Input::Response { status: 200 }),
            vec![Deliver, Schedule(Timer::M, t().t1 * 64)]
        );
        assert_eq!(c.on(Input::Response { status: 200 }), vec![Absorbed]);
    }

    #[test]
    fn cancel_waits_for_a_provisional_response() {
        let (mut c, _) = Client::new(true, false, t());
        assert_eq!(c.on(Input::Cancel), vec![]);
        assert_eq!(
            c.on(Input::Response { status: 100 }),
            vec![Deliver, SendCancel]
        );
        assert_eq!(c.on(Input::Cancel), vec![SendCancel]);
        assert_eq!(
            c.on(Input::Response { status: 487 }),
            vec![
                SendAck,
                Deliver,
                Schedule(Timer::D, Duration::from_secs(32))
            ]
        );
        assert_eq!(c.on(Input::Cancel), vec![], "nothing left to cancel");
    }

    #[test]
    fn a_transport_error_reports_the_destination_unreachable() {
        let (mut c, _) = Client::new(false, true, t());
        assert_eq!(c.on(Input::TransportError), vec![Unreachable, Terminate]);
    }
}
