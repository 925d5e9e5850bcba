//! Wall-clock helpers: windows are stamped with Unix milliseconds and their boundaries are
//! aligned to multiples of the window length (best effort; measurement uses monotonic time).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Time from `now_unix_ms` to the next multiple of `window` (a full window when exactly on
/// a boundary).
pub fn until_next_boundary(now_unix_ms: u64, window: Duration) -> Duration {
    let w = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(w - now_unix_ms % w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_align_to_the_window() {
        let s = Duration::from_secs(1);
        assert_eq!(until_next_boundary(10_250, s), Duration::from_millis(750));
        assert_eq!(until_next_boundary(10_000, s), Duration::from_millis(1000));
        assert_eq!(
            until_next_boundary(1_234, Duration::from_millis(200)),
            Duration::from_millis(166)
        );
    }
}
