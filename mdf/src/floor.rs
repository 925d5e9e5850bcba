//! Floor control of one session as a pure state machine (the "decide" core): who holds the
//! floor, and which floor messages an event sends to whom. The relay (the "act" shell) feeds
//! it the floor messages it receives, the control API's implicit grants, legs joining and
//! leaving, and a clock tick; it sends what comes back. No I/O, no clock of its own.
//!
//! The TS 24.380 subset: Floor Request → Granted (Taken to the others) while the floor is
//! idle, Deny cause 1 while another participant holds it; Release by the holder → Idle to
//! all; a holder past the maximum talk time → Revoke cause 2, then Idle to all; the holder
//! leaving → Idle to the rest. Idle and Taken carry a Message Sequence Number.

use std::time::{Duration, Instant};

use crate::mcptt::{deny, revoke, Outgoing};

/// What the state machine needs to know about each leg (indexed like the session's legs).
#[derive(Debug, Clone, Copy)]
pub struct Leg<'a> {
    /// Still in the call (not left).
    pub active: bool,
    /// Identity given in Floor Taken (the leg's id: usually its SIP URI).
    pub user: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A Floor Request from a leg.
    Request(usize),
    /// A Floor Release from a leg.
    Release(usize),
    /// An implicit grant (the originator's INVITE), from the control API.
    Grant(usize),
    /// A leg's address became known (it answered): it learns who holds the floor.
    Joined(usize),
    /// A leg left the call.
    Left(usize),
    /// Time passed: the holder may have talked too long.
    Tick,
}

/// How the floor changed, for the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    Granted(usize),
    Denied(usize),
    Released(usize),
    Revoked(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub to: usize,
    pub msg: Outgoing,
}

#[derive(Debug, Clone)]
pub struct Floor {
    holder: Option<usize>,
    since: Instant,
    max_talk: Duration,
    /// Message Sequence Number of Floor Idle / Floor Taken.
    sequence: u16,
}

impl Floor {
    pub fn new(max_talk: Duration, now: Instant) -> Floor {
        Floor {
            holder: None,
            since: now,
            max_talk,
            sequence: 0,
        }
    }

    pub fn holder(&self) -> Option<usize> {
        self.holder
    }

    /// When the current holder must stop talking.
    pub fn deadline(&self) -> Option<Instant> {
        self.holder.map(|_| self.since + self.max_talk)
    }

    fn duration_s(&self) -> u16 {
        u16::try_from(self.max_talk.as_secs()).unwrap_or(u16::MAX)
    }

    fn grant(&mut self, to: usize, now: Instant, legs: &[Leg], out: &mut Vec<Send>) {
        self.holder = Some(to);
        self.since = now;
        self.sequence = self.sequence.wrapping_add(1);
        out.push(Send {
            to,
            msg: Outgoing::Granted {
                duration_s: self.duration_s(),
            },
        });
        let party = legs.get(to).map_or("", |l| l.user);
        for (i, leg) in legs.iter().enumerate() {
            if i != to && leg.active {
                out.push(Send {
                    to: i,
                    msg: Outgoing::Taken {
                        party: party.to_string(),
                        sequence: self.sequence,
                    },
                });
            }
        }
    }

    fn idle(&mut self, legs: &[Leg], out: &mut Vec<Send>) {
        self.holder = None;
        self.sequence = self.sequence.wrapping_add(1);
        for (i, leg) in legs.iter().enumerate() {
            if leg.active {
                out.push(Send {
                    to: i,
                    msg: Outgoing::Idle {
                        sequence: self.sequence,
                    },
                });
            }
        }
    }

    /// Applies one event; returns the messages to send and how the floor changed.
    pub fn decide(&mut self, event: Event, now: Instant, legs: &[Leg]) -> (Vec<Send>, Change) {
        let mut out = Vec::new();
        let active = |i: usize| legs.get(i).is_some_and(|l| l.active);
        let change = match event {
            Event::Request(p) | Event::Grant(p) if active(p) => match self.holder {
                None => {
                    self.grant(p, now, legs, &mut out);
                    Change::Granted(p)
                }
                Some(h) if h == p => {
                    // A repeated request (its Granted was lost): grant again, same talk burst.
                    out.push(Send {
                        to: p,
                        msg: Outgoing::Granted {
                            duration_s: self.duration_s(),
                        },
                    });
                    Change::None
                }
                Some(_) if matches!(event, Event::Grant(_)) => Change::None,
                Some(_) => {
                    out.push(Send {
                        to: p,
                        msg: Outgoing::Deny {
                            cause: deny::FLOOR_TAKEN,
                        },
                    });
                    Change::Denied(p)
                }
            },
            Event::Release(p) if self.holder == Some(p) => {
                self.idle(legs, &mut out);
                Change::Released(p)
            }
            Event::Joined(p) if active(p) => {
                match self.holder {
                    Some(h) if h == p => out.push(Send {
                        to: p,
                        msg: Outgoing::Granted {
                            duration_s: self.duration_s(),
                        },
                    }),
                    Some(h) => out.push(Send {
                        to: p,
                        msg: Outgoing::Taken {
                            party: legs.get(h).map_or("", |l| l.user).to_string(),
                            sequence: self.sequence,
                        },
                    }),
                    None => {}
                }
                Change::None
            }
            Event::Left(p) if self.holder == Some(p) => {
                self.idle(legs, &mut out);
                Change::Released(p)
            }
            Event::Tick => match self.holder {
                Some(h) if now.saturating_duration_since(self.since) >= self.max_talk => {
                    out.push(Send {
                        to: h,
                        msg: Outgoing::Revoke {
                            cause: revoke::TOO_LONG,
                        },
                    });
                    self.idle(legs, &mut out);
                    Change::Revoked(h)
                }
                _ => Change::None,
            },
            _ => Change::None,
        };
        (out, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcptt::Outgoing::*;

    fn legs(active: &[bool]) -> Vec<Leg<'static>> {
        const USERS: [&str; 4] = ["sip:a@x", "sip:b@x", "sip:c@x", "sip:d@x"];
        active
            .iter()
            .enumerate()
            .map(|(i, &a)| Leg {
                active: a,
                user: USERS[i],
            })
            .collect()
    }

    fn to(out: &[Send], i: usize) -> Vec<Outgoing> {
        out.iter()
            .filter(|s| s.to == i)
            .map(|s| s.msg.clone())
            .collect()
    }

    #[test]
    fn request_on_idle_floor_is_granted_and_the_others_hear_taken() {
        let t = Instant::now();
        let l = legs(&[true, true, true, false]);
        let mut f = Floor::new(Duration::from_secs(30), t);
        let (out, change) = f.decide(Event::Request(1), t, &l);
        assert_eq!(change, Change::Granted(1));
        assert_eq!(to(&out, 1), vec![Granted { duration_s: 30 }]);
        let taken = Taken {
            party: "sip:b@x".into(),
            sequence: 1,
        };
        assert_eq!(to(&out, 0), vec![taken.clone()]);
        assert_eq!(to(&out, 2), vec![taken]);
        assert!(to(&out, 3).is_empty(), "a leg that left hears nothing");
        assert_eq!(f.holder(), Some(1));
    }

    #[test]
    fn request_while_taken_is_denied_cause_1_and_release_idles_everyone() {
        let t = Instant::now();
        let l = legs(&[true, true, true, true]);
        let mut f = Floor::new(Duration::from_secs(30), t);
        f.decide(Event::Grant(0), t, &l);
        let (out, change) = f.decide(Event::Request(2), t, &l);
        assert_eq!(change, Change::Denied(2));
        assert_eq!(
            out,
            vec![Send {
                to: 2,
                msg: Deny { cause: 1 }
            }]
        );
        // Only the holder can release.
        assert_eq!(f.decide(Event::Release(2), t, &l).1, Change::None);
        let (out, change) = f.decide(Event::Release(0), t, &l);
        assert_eq!(change, Change::Released(0));
        for i in 0..4 {
            assert_eq!(to(&out, i), vec![Idle { sequence: 2 }]);
        }
        let (out, change) = f.decide(Event::Request(2), t, &l);
        assert_eq!(change, Change::Granted(2));
        assert_eq!(to(&out, 2), vec![Granted { duration_s: 30 }]);
        assert_eq!(
            to(&out, 0),
            vec![Taken {
                party: "sip:c@x".into(),
                sequence: 3
            }]
        );
    }

    #[test]
    fn holder_past_max_talk_is_revoked_then_idle() {
        let t = Instant::now();
        let l = legs(&[true, true]);
        let mut f = Floor::new(Duration::from_secs(5), t);
        f.decide(Event::Request(0), t, &l);
        assert_eq!(f.deadline(), Some(t + Duration::from_secs(5)));
        assert_eq!(
            f.decide(Event::Tick, t + Duration::from_secs(4), &l).1,
            Change::None
        );
        let (out, change) = f.decide(Event::Tick, t + Duration::from_secs(5), &l);
        assert_eq!(change, Change::Revoked(0));
        assert_eq!(to(&out, 0), vec![Revoke { cause: 2 }, Idle { sequence: 2 }]);
        assert_eq!(to(&out, 1), vec![Idle { sequence: 2 }]);
        assert_eq!(f.holder(), None);
        assert_eq!(f.deadline(), None);
    }

    #[test]
    fn joining_legs_learn_the_holder_and_the_holder_leaving_idles_the_floor() {
        let t = Instant::now();
        let mut l = legs(&[true, true, true]);
        let mut f = Floor::new(Duration::from_secs(30), t);
        f.decide(Event::Grant(0), t, &l);
        let (out, _) = f.decide(Event::Joined(2), t, &l);
        assert_eq!(
            out,
            vec![Send {
                to: 2,
                msg: Taken {
                    party: "sip:a@x".into(),
                    sequence: 1
                }
            }]
        );
        let (out, _) = f.decide(Event::Joined(0), t, &l);
        assert_eq!(to(&out, 0), vec![Granted { duration_s: 30 }]);
        l[0].active = false;
        let (out, change) = f.decide(Event::Left(0), t, &l);
        assert_eq!(change, Change::Released(0));
        assert!(to(&out, 0).is_empty());
        assert_eq!(to(&out, 1), vec![Idle { sequence: 2 }]);
    }

    #[test]
    fn a_repeated_request_from_the_holder_is_granted_again_without_a_change() {
        let t = Instant::now();
        let l = legs(&[true, true]);
        let mut f = Floor::new(Duration::from_secs(30), t);
        f.decide(Event::Request(1), t, &l);
        let (out, change) = f.decide(Event::Request(1), t, &l);
        assert_eq!(change, Change::None);
        assert_eq!(
            out,
            vec![Send {
                to: 1,
                msg: Granted { duration_s: 30 }
            }]
        );
        // An implicit grant never takes the floor from its holder.
        assert_eq!(f.decide(Event::Grant(0), t, &l).1, Change::None);
        assert_eq!(f.holder(), Some(1));
    }

    #[test]
    fn legs_that_left_or_do_not_exist_are_ignored() {
        let t = Instant::now();
        let l = legs(&[true, false]);
        let mut f = Floor::new(Duration::from_secs(30), t);
        assert_eq!(f.decide(Event::Request(1), t, &l), (vec![], Change::None));
        assert_eq!(f.decide(Event::Request(7), t, &l), (vec![], Change::None));
        assert_eq!(f.holder(), None);
    }
}
