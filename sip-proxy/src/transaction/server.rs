//! Server transactions (RFC 3261 §17.2, with RFC 6026's Accepted state): the pure decide
//! core. It holds no bytes and does no I/O; the shell keeps the last response and carries out
//! the effects.

use std::time::Duration;

use super::{Effect, Timer, Timers};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Non-INVITE: request received, nothing sent yet.
    Trying,
    /// A provisional response was sent (INVITE: from the start, 100 Trying).
    Proceeding,
    /// INVITE 2xx sent: retransmitted until the ACK comes (RFC 6026 Accepted).
    Accepted,
    /// A final response was sent (non-INVITE, or INVITE 3xx–6xx awaiting its ACK).
    Completed,
    /// INVITE: the ACK came; absorbing ACK retransmissions for T4.
    Confirmed,
    Terminated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// The same request again (same transaction key).
    Retransmission,
    /// The handler's response (the shell has stored its bytes).
    Respond {
        status: u16,
    },
    /// The ACK of this INVITE's final response.
    Ack,
    Fired(Timer),
}

#[derive(Clone, Debug)]
pub struct Server {
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: State,
    /// The current Timer G interval.
    g: Duration,
}

/// Why an input was refused (the shell counts and logs it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A second final response, or a response after the transaction ended.
    AlreadyFinal,
    /// A status the transaction cannot send (1xx after final, 100 is the proxy's own).
    BadStatus,
}

impl Server {
    /// A new transaction for a request just received. INVITE answers 100 Trying at once.
    pub fn new(invite: bool, reliable: bool, timers: Timers) -> (Server, Vec<Effect>) {
        let s = Server {
            invite,
            reliable,
            timers,
            state: if invite {
                State::Proceeding
            } else {
                State::Trying
            },
            g: timers.t1,
        };
        let effects = if invite {
            vec![Effect::SendTrying]
        } else {
            Vec::new()
        };
        (s, effects)
    }

    #[cfg(test)]
    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_invite(&self) -> bool {
        self.invite
    }

    /// Whether the handler may still answer.
    pub fn awaiting_final(&self) -> bool {
        matches!(self.state, State::Trying | State::Proceeding)
    }

    pub fn on(&mut self, input: Input) -> Result<Vec<Effect>, Refusal> {
        use Effect::*;
        let t = self.timers;
        Ok(match (self.state, input) {
            (State::Trying, Input::Retransmission) => vec![Absorbed],
            (State::Proceeding | State::Completed | State::Accepted, Input::Retransmission) => {
                vec![Absorbed, Resend]
            }
            (State::Confirmed | State::Terminated, Input::Retransmission) => vec![Absorbed],

            (State::Trying | State::Proceeding, Input::Respond { status }) => {
                if !(101..=699).contains(&status) {
                    return Err(Refusal::BadStatus);
                }
                if status < 200 {
                    self.state = State::Proceeding;
                    return Ok(vec![Resend]);
                }
                let mut out = vec![Resend];
                if self.invite {
                    self.state = if status < 300 {
                        State::Accepted
                    } else {
                        State::Completed
                    };
                    if !self.reliable {
                        self.g = t.t1;
                        out.push(Schedule(Timer::G, self.g));
                    }
                    // H: how long to wait for the ACK (RFC 6026's L for a 2xx is the same).
                    out.push(Schedule(Timer::H, t.t1 * 64));
                } else {
                    self.state = State::Completed;
                    let j = if self.reliable {
                        Duration::ZERO
                    } else {
                        t.t1 * 64
                    };
                    out.push(Schedule(Timer::J, j));
                }
                out
            }
            (_, Input::Respond { .. }) => return Err(Refusal::AlreadyFinal),

            (State::Completed | State::Accepted, Input::Ack) if self.invite => {
                self.state = State::Confirmed;
                let i = if self.reliable { Duration::ZERO } else { t.t4 };
                vec![Schedule(Timer::I, i)]
            }
            (_, Input::Ack) => vec![Absorbed],

            (State::Completed | State::Accepted, Input::Fired(Timer::G)) => {
                self.g = (self.g * 2).min(t.t2);
                vec![Resend, Schedule(Timer::G, self.g)]
            }
            (State::Completed | State::Accepted, Input::Fired(Timer::H)) => {
                self.state = State::Terminated;
                vec![AckTimeout, Terminate]
            }
            (State::Confirmed, Input::Fired(Timer::I))
            | (State::Completed, Input::Fired(Timer::J)) => {
                self.state = State::Terminated;
                vec![Terminate]
            }
            // A timer of a state already left.
            (_, Input::Fired(_)) => Vec::new(),
        })
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
    fn non_invite_absorbs_retransmissions_and_resends_the_final_response() {
        let (mut s, e) = Server::new(false, false, t());
        assert!(e.is_empty(), "no 100 Trying for a non-INVITE");
        assert_eq!(s.on(Input::Retransmission), Ok(vec![Absorbed]));
        assert_eq!(
            s.on(Input::Respond { status: 200 }),
            Ok(vec![Resend, Schedule(Timer::J, t().t1 * 64)])
        );
        assert_eq!(s.on(Input::Retransmission), Ok(vec![Absorbed, Resend]));
        assert_eq!(
            s.on(Input::Respond { status: 500 }),
            Err(Refusal::AlreadyFinal)
        );
        assert_eq!(s.on(Input::Fired(Timer::J)), Ok(vec![Terminate]));
        assert_eq!(s.state(), State::Terminated);
    }

    #[test]
    fn non_invite_over_tcp_ends_at_once() {
        let (mut s, _) = Server::new(false, true, t());
        assert_eq!(
            s.on(Input::Respond { status: 200 }),
            Ok(vec![Resend, Schedule(Timer::J, Duration::ZERO)])
        );
    }

    #[test]
    fn a_provisional_response_is_resent_on_retransmission() {
        let (mut s, _) = Server::new(false, false, t());
        assert_eq!(s.on(Input::Respond { status: 180 }), Ok(vec![Resend]));
        assert_eq!(s.state(), State::Proceeding);
        assert_eq!(s.on(Input::Retransmission), Ok(vec![Absorbed, Resend]));
        assert!(s.awaiting_final());
    }

    #[test]
    fn invite_trying_at_once_then_g_doubles_to_t2_until_the_ack() {
        let (mut s, e) = Server::new(true, false, t());
        assert_eq!(e, vec![SendTrying]);
        assert_eq!(s.on(Input::Retransmission), Ok(vec![Absorbed, Resend]));
        assert_eq!(
            s.on(Input::Respond { status: 486 }),
            Ok(vec![
                Resend,
                Schedule(Timer::G, t().t1),
                Schedule(Timer::H, t().t1 * 64)
            ])
        );
        let mut intervals = Vec::new();
        for _ in 0..5 {
            match s.on(Input::Fired(Timer::G)).expect("g").as_slice() {
                [Resend, Schedule(Timer::G, d)] => intervals.push(*d),
                other => panic!("{other:?}"),
            }
        }
        let ms: Vec<u128> = intervals.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![1000, 2000, 4000, 4000, 4000]);
        assert_eq!(s.on(Input::Ack), Ok(vec![Schedule(Timer::I, t().t4)]));
        assert_eq!(s.state(), State::Confirmed);
        assert_eq!(s.on(Input::Fired(Timer::G)), Ok(vec![]), "G stops at ACK");
        assert_eq!(s.on(Input::Ack), Ok(vec![Absorbed]));
        assert_eq!(s.on(Input::Fired(Timer::I)), Ok(vec![Terminate]));
    }

    #[test]
    fn invite_2xx_is_retransmitted_until_the_ack_and_h_reports_a_missing_ack() {
        let (mut s, _) = Server::new(true, false, t());
        s.on(Input::Respond { status: 200 }).expect("200");
        assert_eq!(s.state(), State::Accepted);
        assert_eq!(s.on(Input::Retransmission), Ok(vec![Absorbed, Resend]));
        assert_eq!(
            s.on(Input::Fired(Timer::G)),
            Ok(vec![Resend, Schedule(Timer::G, t().t1 * 2)])
        );
        assert_eq!(
            s.on(Input::Fired(Timer::H)),
            Ok(vec![AckTimeout, Terminate])
        );
    }

    #[test]
    fn invite_over_tcp_sends_the_final_response_once() {
        let (mut s, _) = Server::new(true, true, t());
        assert_eq!(
            s.on(Input::Respond { status: 603 }),
            Ok(vec![Resend, Schedule(Timer::H, t().t1 * 64)])
        );
        assert_eq!(
            s.on(Input::Ack),
            Ok(vec![Schedule(Timer::I, Duration::ZERO)])
        );
    }

    #[test]
    fn statuses_outside_the_range_are_refused() {
        let (mut s, _) = Server::new(false, false, t());
        assert_eq!(
            s.on(Input::Respond { status: 100 }),
            Err(Refusal::BadStatus)
        );
        assert_eq!(
            s.on(Input::Respond { status: 700 }),
            Err(Refusal::BadStatus)
        );
        assert!(s.awaiting_final());
    }
}
