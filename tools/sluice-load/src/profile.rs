//! Load profiles: how many requests per second to start at each instant of the run.
//!
//! Three shapes, written as `--profile` values:
//! * `constant:<rps>` — the same rate for the whole run;
//! * `steps:<rps>,<rps>,…@<duration>` — each rate holds for one step length; past the last
//!   step (when `--duration` is longer than the steps) the last rate continues;
//! * `ramp:<from>-<to>` — linear from `from` to `to` rps over the run's duration.
//!
//! Arrivals are open-loop: request `k` (counting from 0) is due at the first instant `t`
//! where the expected number of arrivals since the start, `∫₀ᵗ rate`, reaches `k`. For a
//! constant rate this spaces requests evenly (`k / rps`); for steps and ramps it follows the
//! rate at that instant. Invariant: rates are finite and `>= 0`, so the cumulative count is
//! non-decreasing and every arrival time is well defined.

use std::fmt;
use std::time::Duration;

use crate::duration::{format_duration, parse_duration};

/// Highest rate a profile may ask for (requests per second).
pub const MAX_RPS: f64 = 100_000.0;

/// A parsed `--profile`.
#[derive(Debug, Clone, PartialEq)]
pub enum Profile {
    /// One rate for the whole run.
    Constant(f64),
    /// Rates held for `step` each, in order.
    Steps { rates: Vec<f64>, step: Duration },
    /// Linear from `from` to `to` over the run's duration.
    Ramp { from: f64, to: f64 },
}

/// A `--profile` value that cannot be used, with a message saying what is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError(pub String);

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProfileError {}

const EXPECTED: &str =
    "expected constant:<rps>, steps:<rps>,<rps>,...@<step length> or ramp:<from>-<to> \
     (e.g. constant:50, steps:10,30,50,20@5s, ramp:0-100)";

fn err(msg: impl Into<String>) -> ProfileError {
    ProfileError(msg.into())
}

/// Parses one rate: a finite number in `0..=MAX_RPS`.
fn parse_rate(text: &str, what: &str) -> Result<f64, ProfileError> {
    let t = text.trim();
    let v: f64 = t.parse().map_err(|_| {
        err(format!(
            "{what} must be a number of requests per second, got `{t}`"
        ))
    })?;
    if !v.is_finite() || v < 0.0 {
        return Err(err(format!("{what} must be >= 0, got `{t}`")));
    }
    if v > MAX_RPS {
        return Err(err(format!(
            "{what} must be at most {MAX_RPS} rps, got `{t}`"
        )));
    }
    Ok(v)
}

impl std::str::FromStr for Profile {
    type Err = ProfileError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let Some((kind, spec)) = s.split_once(':') else {
            return Err(err(format!("`{s}` has no kind; {EXPECTED}")));
        };
        let profile = match kind.trim() {
            "constant" => {
                let rate = parse_rate(spec, "the constant rate")?;
                Profile::Constant(rate)
            }
            "steps" => {
                let Some((list, step)) = spec.rsplit_once('@') else {
                    return Err(err(format!(
                        "steps needs a step length after `@`, e.g. steps:{spec}@5s"
                    )));
                };
                let step =
                    parse_duration(step).map_err(|e| err(format!("bad step length: {e}")))?;
                if list.trim().is_empty() {
                    return Err(err("steps needs at least one rate, e.g. steps:10,30@5s"));
                }
                let rates = list
                    .split(',')
                    .enumerate()
                    .map(|(i, r)| parse_rate(r, &format!("step {}", i + 1)))
                    .collect::<Result<Vec<_>, _>>()?;
                Profile::Steps { rates, step }
            }
            "ramp" => {
                let Some((from, to)) = spec.split_once('-') else {
                    return Err(err(format!(
                        "ramp needs <from>-<to>, e.g. ramp:0-100, got `{spec}`"
                    )));
                };
                Profile::Ramp {
                    from: parse_rate(from, "the ramp's start rate")?,
                    to: parse_rate(to, "the ramp's end rate")?,
                }
            }
            other => return Err(err(format!("unknown profile kind `{other}`; {EXPECTED}"))),
        };
        if profile.peak() <= 0.0 {
            return Err(err(format!(
                "`{s}` never sends a request: some rate must be > 0"
            )));
        }
        Ok(profile)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Profile::Constant(r) => write!(f, "constant:{r}"),
            Profile::Steps { rates, step } => {
                let list: Vec<String> = rates.iter().map(|r| r.to_string()).collect();
                write!(f, "steps:{}@{}", list.join(","), format_duration(*step))
            }
            Profile::Ramp { from, to } => write!(f, "ramp:{from}-{to}"),
        }
    }
}

impl Profile {
    /// The highest rate the profile ever asks for.
    pub fn peak(&self) -> f64 {
        match self {
            Profile::Constant(r) => *r,
            Profile::Steps { rates, .. } => rates.iter().copied().fold(0.0, f64::max),
            Profile::Ramp { from, to } => from.max(*to),
        }
    }

    /// The run length this profile implies when `--duration` is not given: the sum of the
    /// steps for a steps profile, `None` (use the default) otherwise.
    pub fn natural_duration(&self) -> Option<Duration> {
        match self {
            Profile::Steps { rates, step } => {
                let n = u32::try_from(rates.len()).unwrap_or(u32::MAX);
                step.checked_mul(n)
            }
            _ => None,
        }
    }

    /// Target rate (requests per second) at `t` seconds into a run of `total` seconds.
    pub fn rate_at(&self, t: f64, total: f64) -> f64 {
        match self {
            Profile::Constant(r) => *r,
            Profile::Steps { rates, step } => {
                let len = step.as_secs_f64();
                let idx = (t / len).floor().max(0.0) as usize;
                rates
                    .get(idx.min(rates.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or(0.0)
            }
            Profile::Ramp { from, to } => {
                if total <= 0.0 {
                    return *from;
                }
                let frac = (t / total).clamp(0.0, 1.0);
                from + (to - from) * frac
            }
        }
    }

    /// Expected number of arrivals in `[0, t]` (the integral of [`Self::rate_at`]).
    pub fn expected_by(&self, t: f64, total: f64) -> f64 {
        let t = t.max(0.0);
        match self {
            Profile::Constant(r) => r * t,
            Profile::Steps { rates, step } => {
                let len = step.as_secs_f64();
                let mut acc = 0.0;
                for (i, r) in rates.iter().enumerate() {
                    let start = i as f64 * len;
                    if t <= start {
                        return acc;
                    }
                    let last = i + 1 == rates.len();
                    let span = if last {
                        t - start
                    } else {
                        (t - start).min(len)
                    };
                    acc += r * span;
                }
                acc
            }
            Profile::Ramp { from, to } => {
                if total <= 0.0 {
                    return from * t;
                }
                let t = t.min(total);
                from * t + (to - from) * t * t / (2.0 * total)
            }
        }
    }

    /// When request `k` (0-based) is due, in seconds from the start, searching from `after`
    /// (the previous request's due time); `None` when it would fall at or past `total`.
    pub fn arrival_time(&self, k: u64, after: f64, total: f64) -> Option<f64> {
        let want = k as f64;
        if self.expected_by(total, total) < want {
            return None;
        }
        let mut lo = after.clamp(0.0, total);
        if self.expected_by(lo, total) >= want {
            return (lo < total).then_some(lo);
        }
        let mut hi = total;
        // Invariant: expected_by(lo) < want <= expected_by(hi).
        for _ in 0..100 {
            if hi - lo <= 1e-9 {
                break;
            }
            let mid = lo + (hi - lo) / 2.0;
            if self.expected_by(mid, total) >= want {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        (hi < total).then_some(hi)
    }
}

/// The whole second of the run a due time belongs to. The bisection in
/// [`Profile::arrival_time`] lands within 1e-9 s of the exact instant, so a due time a hair
/// below a second boundary is counted in the next second (rates are capped at
/// [`MAX_RPS`], so real arrivals are 10 µs apart or more).
pub fn second_of(t: f64) -> usize {
    (t + 1e-6).floor().max(0.0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Profile {
        s.parse().expect("valid profile")
    }

    fn bad(s: &str) -> String {
        s.parse::<Profile>().expect_err("invalid profile").0
    }

    #[test]
    fn parses_the_three_shapes() {
        assert_eq!(p("constant:50"), Profile::Constant(50.0));
        assert_eq!(p(" constant:2.5 "), Profile::Constant(2.5));
        assert_eq!(
            p("steps:10,30,50,20@5s"),
            Profile::Steps {
                rates: vec![10.0, 30.0, 50.0, 20.0],
                step: Duration::from_secs(5)
            }
        );
        assert_eq!(
            p("steps:0, 5@500ms"),
            Profile::Steps {
                rates: vec![0.0, 5.0],
                step: Duration::from_millis(500)
            }
        );
        assert_eq!(
            p("ramp:0-100"),
            Profile::Ramp {
                from: 0.0,
                to: 100.0
            }
        );
        assert_eq!(
            p("ramp:80-10"),
            Profile::Ramp {
                from: 80.0,
                to: 10.0
            }
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "constant:50",
            "steps:10,30,50,20@5s",
            "ramp:0-100",
            "steps:1.5,2@500ms",
        ] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
    }

    #[test]
    fn rejects_bad_profiles_with_a_reason() {
        assert!(bad("50").contains("no kind"));
        assert!(bad("linear:5").contains("unknown profile kind `linear`"));
        assert!(bad("constant:abc").contains("got `abc`"));
        assert!(bad("constant:-3").contains(">= 0"));
        assert!(bad("constant:NaN").contains(">= 0"));
        assert!(bad("constant:inf").contains(">= 0"));
        assert!(bad("constant:0").contains("never sends"));
        assert!(bad("constant:1000000").contains("at most"));
        assert!(bad("steps:10,20").contains("step length"));
        assert!(bad("steps:10,x@5s").contains("step 2"));
        assert!(bad("steps:@5s").contains("at least one rate"));
        assert!(bad("steps:10@5").contains("bad step length"));
        assert!(bad("steps:10@0s").contains("bad step length"));
        assert!(bad("steps:0,0@1s").contains("never sends"));
        assert!(bad("ramp:100").contains("<from>-<to>"));
        assert!(bad("ramp:-5-10").contains("start rate"));
        assert!(bad("ramp:0-0").contains("never sends"));
    }

    #[test]
    fn steps_imply_their_duration() {
        assert_eq!(
            p("steps:10,30,50,20@5s").natural_duration(),
            Some(Duration::from_secs(20))
        );
        assert_eq!(p("constant:5").natural_duration(), None);
        assert_eq!(p("ramp:0-5").natural_duration(), None);
    }

    #[test]
    fn rate_at_instants() {
        let c = p("constant:50");
        assert_eq!(c.rate_at(0.0, 20.0), 50.0);
        assert_eq!(c.rate_at(19.9, 20.0), 50.0);

        let s = p("steps:10,30,50,20@5s");
        assert_eq!(s.rate_at(0.0, 20.0), 10.0);
        assert_eq!(s.rate_at(4.999, 20.0), 10.0);
        assert_eq!(s.rate_at(5.0, 20.0), 30.0);
        assert_eq!(s.rate_at(12.0, 20.0), 50.0);
        assert_eq!(s.rate_at(19.0, 20.0), 20.0);
        // Longer than the steps: the last rate holds.
        assert_eq!(s.rate_at(31.0, 40.0), 20.0);

        let r = p("ramp:0-100");
        assert_eq!(r.rate_at(0.0, 20.0), 0.0);
        assert_eq!(r.rate_at(10.0, 20.0), 50.0);
        assert_eq!(r.rate_at(20.0, 20.0), 100.0);
        assert_eq!(p("ramp:100-0").rate_at(5.0, 20.0), 75.0);
    }

    #[test]
    fn expected_counts_integrate_the_rate() {
        let s = p("steps:10,30@2s");
        assert_eq!(s.expected_by(1.0, 4.0), 10.0);
        assert_eq!(s.expected_by(2.0, 4.0), 20.0);
        assert_eq!(s.expected_by(3.0, 4.0), 50.0);
        assert_eq!(s.expected_by(5.0, 5.0), 110.0);
        let r = p("ramp:0-100");
        assert_eq!(r.expected_by(10.0, 10.0), 500.0);
        assert_eq!(r.expected_by(5.0, 10.0), 125.0);
    }

    /// Counts the due times of a whole run per whole second.
    fn per_second(profile: &Profile, total: f64) -> Vec<u64> {
        let mut counts = vec![0u64; total.ceil() as usize];
        let mut after = 0.0;
        let mut k = 0;
        while let Some(t) = profile.arrival_time(k, after, total) {
            assert!(t >= after, "due times never go back");
            counts[second_of(t)] += 1;
            after = t;
            k += 1;
        }
        counts
    }

    #[test]
    fn arrivals_follow_the_profile() {
        assert_eq!(per_second(&p("constant:40"), 3.0), vec![40, 40, 40]);
        assert_eq!(per_second(&p("constant:2.5"), 2.0), vec![3, 2]);
        assert_eq!(per_second(&p("steps:10,40,20@1s"), 3.0), vec![10, 40, 20]);
        assert_eq!(per_second(&p("steps:5,10@2s"), 5.0), vec![5, 5, 10, 10, 10]);
        let ramp = per_second(&p("ramp:0-100"), 10.0);
        // Second i expects 10*i + 5 arrivals on average.
        for (i, n) in ramp.iter().enumerate() {
            let want = 10.0 * i as f64 + 5.0;
            assert!((*n as f64 - want).abs() <= 1.0, "second {i}: {n} vs {want}");
        }
        assert_eq!(ramp.iter().sum::<u64>(), 500);
    }

    #[test]
    fn constant_arrivals_are_evenly_spaced() {
        let c = p("constant:4");
        let times: Vec<f64> = (0..4)
            .map(|k| c.arrival_time(k, 0.0, 1.0).expect("due in the run"))
            .collect();
        for (k, t) in times.iter().enumerate() {
            assert!((t - k as f64 * 0.25).abs() < 1e-6, "{times:?}");
        }
        assert_eq!(c.arrival_time(4, 0.75, 1.0), None);
    }
}
