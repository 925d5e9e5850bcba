//! Least-request balancing with the power of two choices (P2C).
//!
//! Among the *eligible* candidates (not skipped, in-flight below their cap) pick two distinct
//! ones uniformly at random and keep the one with the lower weighted load
//! (`in_flight / weight`). With one eligible candidate it is taken; with none the caller
//! queues. Selection allocates nothing: one pass counts the eligible candidates, a second
//! finds the two drawn ones.
//!
//! The selector only reads counters; taking the slot (incrementing in-flight) is the caller's
//! job and must happen under the same lock that guards the candidate list so that two
//! requests cannot both take an endpoint's last slot.

use std::sync::Arc;

use rand::Rng;

/// What the selector needs to know about an endpoint.
pub trait Candidate {
    /// Requests currently in flight on this candidate.
    fn in_flight(&self) -> u32;
    /// Concurrency cap; 0 means unlimited.
    fn cap(&self) -> u32;
    /// Relative weight; 0 is treated as 1.
    fn weight(&self) -> u32;
}

impl<T: Candidate + ?Sized> Candidate for Arc<T> {
    fn in_flight(&self) -> u32 {
        (**self).in_flight()
    }
    fn cap(&self) -> u32 {
        (**self).cap()
    }
    fn weight(&self) -> u32 {
        (**self).weight()
    }
}

/// True when the candidate can take one more request.
pub fn has_capacity<C: Candidate + ?Sized>(c: &C) -> bool {
    let cap = c.cap();
    cap == 0 || c.in_flight() < cap
}

/// Index of the chosen candidate, or `None` when no candidate is eligible.
pub fn select<C, R>(candidates: &[C], skip: impl Fn(&C) -> bool, rng: &mut R) -> Option<usize>
where
    C: Candidate,
    R: Rng + ?Sized,
{
    let eligible = |c: &C| !skip(c) && has_capacity(c);
    let n = candidates.iter().filter(|c| eligible(c)).count();
    match n {
        0 => return None,
        1 => return candidates.iter().position(eligible),
        _ => {}
    }
    // Two distinct ranks among the eligible candidates.
    let first = rng.random_range(0..n);
    let mut second = rng.random_range(0..n - 1);
    if second >= first {
        second += 1;
    }
    let (mut a, mut b) = (None, None);
    let eligible_indices = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| eligible(c))
        .map(|(idx, _)| idx);
    for (rank, idx) in eligible_indices.enumerate() {
        if rank == first {
            a = Some(idx);
        } else if rank == second {
            b = Some(idx);
        }
    }
    let (a, b) = (a?, b?);
    Some(if lighter(&candidates[b], &candidates[a]) {
        b
    } else {
        a
    })
}

/// True when `x` carries strictly less weighted load than `y`.
fn lighter<C: Candidate>(x: &C, y: &C) -> bool {
    let wx = u64::from(x.weight().max(1));
    let wy = u64::from(y.weight().max(1));
    // x.in_flight / wx < y.in_flight / wy, without division.
    u64::from(x.in_flight()) * wy < u64::from(y.in_flight()) * wx
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[derive(Debug, Clone)]
    struct Ep {
        in_flight: u32,
        cap: u32,
        weight: u32,
    }

    impl Candidate for Ep {
        fn in_flight(&self) -> u32 {
            self.in_flight
        }
        fn cap(&self) -> u32 {
            self.cap
        }
        fn weight(&self) -> u32 {
            self.weight
        }
    }

    fn ep(in_flight: u32, cap: u32) -> Ep {
        Ep {
            in_flight,
            cap,
            weight: 1,
        }
    }

    #[test]
    fn empty_and_all_at_cap_give_none() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(select::<Ep, _>(&[], |_| false, &mut rng), None);
        let eps = [ep(1, 1), ep(3, 3)];
        assert_eq!(select(&eps, |_| false, &mut rng), None);
    }

    #[test]
    fn single_eligible_is_taken() {
        let mut rng = StdRng::seed_from_u64(2);
        let eps = [ep(1, 1), ep(0, 1), ep(5, 5)];
        for _ in 0..100 {
            assert_eq!(select(&eps, |_| false, &mut rng), Some(1));
        }
    }

    #[test]
    fn zero_cap_is_unlimited() {
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(select(&[ep(1000, 0)], |_| false, &mut rng), Some(0));
    }

    #[test]
    fn skip_excludes() {
        let mut rng = StdRng::seed_from_u64(4);
        let eps = [ep(0, 1), ep(0, 1)];
        for _ in 0..50 {
            assert_eq!(
                select(&eps, |e| std::ptr::eq(e, &eps[0]), &mut rng),
                Some(1)
            );
        }
    }

    #[test]
    fn two_candidates_always_pick_the_lighter() {
        let mut rng = StdRng::seed_from_u64(5);
        let eps = [ep(4, 10), ep(1, 10)];
        for _ in 0..100 {
            assert_eq!(select(&eps, |_| false, &mut rng), Some(1));
        }
    }

    #[test]
    fn weight_scales_load() {
        let mut rng = StdRng::seed_from_u64(6);
        // 4 in flight at weight 4 is lighter than 2 in flight at weight 1.
        let eps = [
            Ep {
                in_flight: 4,
                cap: 0,
                weight: 4,
            },
            Ep {
                in_flight: 2,
                cap: 0,
                weight: 1,
            },
        ];
        for _ in 0..100 {
            assert_eq!(select(&eps, |_| false, &mut rng), Some(0));
        }
    }

    #[test]
    fn never_picks_the_heaviest_of_many() {
        let mut rng = StdRng::seed_from_u64(7);
        let eps: Vec<Ep> = (0..5).map(|i| ep(i, 0)).collect();
        let mut seen = [0u32; 5];
        for _ in 0..5000 {
            let i = select(&eps, |_| false, &mut rng).expect("eligible");
            seen[i] += 1;
        }
        // The most loaded endpoint always loses its duel; the idlest wins every duel it is in.
        assert_eq!(seen[4], 0);
        assert!(
            seen[0] > seen[1] && seen[1] > seen[2] && seen[2] > seen[3],
            "{seen:?}"
        );
    }

    #[test]
    fn spreads_evenly_when_loads_tie() {
        let mut rng = StdRng::seed_from_u64(8);
        for n in [2usize, 3, 5] {
            let eps: Vec<Ep> = (0..n).map(|_| ep(0, 0)).collect();
            let mut seen = vec![0u32; n];
            let rounds = 1000 * n as u32;
            for _ in 0..rounds {
                seen[select(&eps, |_| false, &mut rng).expect("eligible")] += 1;
            }
            for s in &seen {
                assert!((800..1200).contains(s), "{n} endpoints: {seen:?}");
            }
        }
    }
}
