//! Percentiles (nearest rank on the sorted samples, as the other benches of the repo).

/// The `p` (0..=1) percentile of `v`; `None` when empty.
pub fn pct(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let i = ((s.len() as f64 - 1.0) * p).round() as usize;
    Some(s[i.min(s.len() - 1)])
}

pub fn min(v: &[f64]) -> Option<f64> {
    v.iter().copied().min_by(|a, b| a.total_cmp(b))
}

pub fn max(v: &[f64]) -> Option<f64> {
    v.iter().copied().max_by(|a, b| a.total_cmp(b))
}
