//! How many MDF relay instances run, as a pure function of what they report (the "decide"
//! half; `super` acts). Instances fill numbered slots (a slot fixes the control port and the
//! media port range).
//!
//! * Below `min` instances taking sessions: launch one.
//! * Sessions at `scale_up_at` of the capacity of the instances taking sessions: bring a
//!   draining instance back, else launch one (up to `max` containers).
//! * Sessions low enough that one instance fewer would stay under `scale_down_at` of the
//!   remaining capacity, for `down_after` without a break: drain the highest slot. A draining
//!   instance takes no new session and keeps relaying its calls; it is removed once it has
//!   none, so no active session is ever cut.
//! * While an instance is starting, nothing else is launched or drained (no stampede).

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Settings {
    pub min: u16,
    pub max: u16,
    pub scale_up_at: f64,
    pub scale_down_at: f64,
    pub down_after: Duration,
}

/// An instance that answered its status.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Instance {
    pub slot: u16,
    pub sessions: u32,
    pub capacity: u32,
    pub draining: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub instances: Vec<Instance>,
    /// Slots whose container runs but does not answer yet.
    pub starting: Vec<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Launch(u16),
    Drain(u16),
    Undrain(u16),
    Remove(u16),
}

#[derive(Debug, Default)]
pub struct Policy {
    low_since: Option<Instant>,
}

impl Policy {
    pub fn decide(&mut self, s: &Settings, obs: &Observation, now: Instant) -> Vec<Action> {
        let mut out: Vec<Action> = obs
            .instances
            .iter()
            .filter(|i| i.draining && i.sessions == 0)
            .map(|i| Action::Remove(i.slot))
            .collect();
        let used: Vec<u16> = obs
            .instances
            .iter()
            .map(|i| i.slot)
            .chain(obs.starting.iter().copied())
            .collect();
        let free_slot = (0..s.max).find(|slot| !used.contains(slot));
        let active: Vec<&Instance> = obs.instances.iter().filter(|i| !i.draining).collect();
        if !obs.starting.is_empty() {
            self.low_since = None;
            return out;
        }
        if active.len() < usize::from(s.min) {
            self.low_since = None;
            if let Some(slot) = free_slot {
                out.push(Action::Launch(slot));
            }
            return out;
        }
        let sessions: u64 = active.iter().map(|i| u64::from(i.sessions)).sum();
        let capacity: u64 = active.iter().map(|i| u64::from(i.capacity)).sum();
        let load = if capacity == 0 {
            1.0
        } else {
            sessions as f64 / capacity as f64
        };
        if load >= s.scale_up_at {
            self.low_since = None;
            let back = obs
                .instances
                .iter()
                .filter(|i| i.draining && i.sessions > 0)
                .map(|i| i.slot)
                .min();
            match (back, free_slot) {
                (Some(slot), _) => out.push(Action::Undrain(slot)),
                (None, Some(slot)) => out.push(Action::Launch(slot)),
                (None, None) => {}
            }
            return out;
        }
        let highest = active.iter().max_by_key(|i| i.slot);
        let low = match highest {
            Some(h) if active.len() > usize::from(s.min) => {
                let rest = capacity.saturating_sub(u64::from(h.capacity));
                (sessions as f64) <= s.scale_down_at * rest as f64
            }
            _ => false,
        };
        if !low {
            self.low_since = None;
            return out;
        }
        let since = *self.low_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= s.down_after {
            if let Some(h) = highest {
                out.push(Action::Drain(h.slot));
            }
            self.low_since = None;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            min: 1,
            max: 3,
            scale_up_at: 0.8,
            scale_down_at: 0.5,
            down_after: Duration::from_secs(60),
        }
    }

    fn inst(slot: u16, sessions: u32, draining: bool) -> Instance {
        Instance {
            slot,
            sessions,
            capacity: 100,
            draining,
        }
    }

    fn obs(instances: Vec<Instance>) -> Observation {
        Observation {
            instances,
            starting: vec![],
        }
    }

    #[test]
    fn the_minimum_is_launched_into_the_lowest_free_slot() {
        let mut p = Policy::default();
        let t = Instant::now();
        assert_eq!(
            p.decide(&settings(), &obs(vec![]), t),
            vec![Action::Launch(0)]
        );
        // Slot 0 is draining with calls: the new one goes to slot 1.
        assert_eq!(
            p.decide(&settings(), &obs(vec![inst(0, 5, true)]), t),
            vec![Action::Launch(1)]
        );
    }

    #[test]
    fn nothing_more_while_one_is_starting() {
        let mut p = Policy::default();
        let o = Observation {
            instances: vec![inst(0, 95, false)],
            starting: vec![1],
        };
        assert_eq!(p.decide(&settings(), &o, Instant::now()), vec![]);
    }

    #[test]
    fn near_capacity_a_draining_instance_comes_back_before_a_new_one_starts() {
        let mut p = Policy::default();
        let t = Instant::now();
        let full = vec![inst(0, 80, false)];
        assert_eq!(
            p.decide(&settings(), &obs(full), t),
            vec![Action::Launch(1)]
        );
        let with_draining = vec![inst(0, 90, false), inst(2, 10, true)];
        assert_eq!(
            p.decide(&settings(), &obs(with_draining), t),
            vec![Action::Undrain(2)]
        );
        let at_max = vec![inst(0, 90, false), inst(1, 90, false), inst(2, 90, false)];
        assert_eq!(p.decide(&settings(), &obs(at_max), t), vec![]);
    }

    #[test]
    fn scale_down_drains_the_highest_slot_after_a_quiet_minute_and_removes_it_when_empty() {
        let mut p = Policy::default();
        let t = Instant::now();
        let quiet = vec![inst(0, 20, false), inst(1, 10, false)];
        assert_eq!(p.decide(&settings(), &obs(quiet.clone()), t), vec![]);
        assert_eq!(
            p.decide(
                &settings(),
                &obs(quiet.clone()),
                t + Duration::from_secs(30)
            ),
            vec![]
        );
        // A busy moment resets the clock.
        let busy = vec![inst(0, 45, false), inst(1, 40, false)];
        assert_eq!(
            p.decide(&settings(), &obs(busy), t + Duration::from_secs(40)),
            vec![]
        );
        assert_eq!(
            p.decide(
                &settings(),
                &obs(quiet.clone()),
                t + Duration::from_secs(70)
            ),
            vec![]
        );
        assert_eq!(
            p.decide(&settings(), &obs(quiet), t + Duration::from_secs(130)),
            vec![Action::Drain(1)]
        );
        // Draining with calls: kept. Without: removed.
        let draining = vec![inst(0, 20, false), inst(1, 3, true)];
        assert_eq!(p.decide(&settings(), &obs(draining), t), vec![]);
        let empty = vec![inst(0, 20, false), inst(1, 0, true)];
        assert_eq!(
            p.decide(&settings(), &obs(empty), t),
            vec![Action::Remove(1)]
        );
    }

    #[test]
    fn never_below_the_minimum_and_not_when_the_rest_would_be_too_full() {
        let mut p = Policy::default();
        let t = Instant::now();
        let one = vec![inst(0, 0, false)];
        assert_eq!(p.decide(&settings(), &obs(one.clone()), t), vec![]);
        assert_eq!(
            p.decide(&settings(), &obs(one), t + Duration::from_secs(600)),
            vec![]
        );
        // 60 sessions would not fit under half of one instance.
        let two = vec![inst(0, 30, false), inst(1, 30, false)];
        assert_eq!(p.decide(&settings(), &obs(two.clone()), t), vec![]);
        assert_eq!(
            p.decide(&settings(), &obs(two), t + Duration::from_secs(600)),
            vec![]
        );
    }
}
