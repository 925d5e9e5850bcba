//! Latency samples of one window, bounded: the first `cap` samples are kept, later ones
//! replace a random kept one with probability `cap / seen` (Vitter's algorithm R), so the
//! kept set is a uniform sample of the window. Percentiles are exact over the kept samples
//! (exact over the whole window while it has at most `cap` samples), nearest-rank method.

use rand::Rng;

/// p50 / p95 / p99 of a window, in the samples' unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// Bounded uniform sample of one window's values.
#[derive(Debug)]
pub struct Reservoir {
    cap: usize,
    seen: u64,
    samples: Vec<f64>,
}

impl Reservoir {
    pub fn new(cap: usize) -> Reservoir {
        Reservoir {
            cap: cap.max(1),
            seen: 0,
            samples: Vec::new(),
        }
    }

    /// Offers one sample.
    pub fn push(&mut self, v: f64, rng: &mut impl Rng) {
        self.seen += 1;
        if self.samples.len() < self.cap {
            self.samples.push(v);
        } else {
            let j = rng.random_range(0..self.seen);
            if let Ok(j) = usize::try_from(j) {
                if j < self.cap {
                    self.samples[j] = v;
                }
            }
        }
    }

    /// Samples offered since the last [`Reservoir::take`].
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Samples kept (at most the cap).
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.samples.len()
    }

    /// Percentiles of the kept samples and a reset (memory released) for the next window.
    pub fn take(&mut self) -> Option<Percentiles> {
        let mut s = std::mem::take(&mut self.samples);
        self.seen = 0;
        if s.is_empty() {
            return None;
        }
        s.sort_unstable_by(f64::total_cmp);
        Some(Percentiles {
            p50: nearest_rank(&s, 50.0),
            p95: nearest_rank(&s, 95.0),
            p99: nearest_rank(&s, 99.0),
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty `s`: the smallest value with at least p % of
/// the samples at or below it.
fn nearest_rank(s: &[f64], p: f64) -> f64 {
    let n = s.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    s[rank.clamp(1, n) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn exact_percentiles_below_the_cap() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut r = Reservoir::new(1000);
        // Inserted out of order on purpose.
        for v in (1..=100).rev() {
            r.push(v as f64, &mut rng);
        }
        assert_eq!(r.seen(), 100);
        let p = r.take().expect("samples");
        assert_eq!(
            p,
            Percentiles {
                p50: 50.0,
                p95: 95.0,
                p99: 99.0
            }
        );
        assert_eq!(r.seen(), 0);
        assert!(r.take().is_none());
    }

    #[test]
    fn single_sample_is_every_percentile() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut r = Reservoir::new(10);
        r.push(7.5, &mut rng);
        let p = r.take().expect("one sample");
        assert_eq!((p.p50, p.p95, p.p99), (7.5, 7.5, 7.5));
    }

    #[test]
    fn memory_is_bounded_and_the_sample_stays_representative() {
        let mut rng = SmallRng::seed_from_u64(42);
        let mut r = Reservoir::new(10_000);
        for i in 0..1_000_000u64 {
            r.push((i % 1000) as f64, &mut rng);
        }
        assert_eq!(r.kept(), 10_000);
        assert_eq!(r.seen(), 1_000_000);
        let p = r.take().expect("samples");
        // Uniform 0..999: true p50 ≈ 500, p95 ≈ 950, p99 ≈ 990.
        assert!((p.p50 - 500.0).abs() < 30.0, "{p:?}");
        assert!((p.p95 - 950.0).abs() < 15.0, "{p:?}");
        assert!((p.p99 - 990.0).abs() < 8.0, "{p:?}");
    }
}
