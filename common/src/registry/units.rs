//! Human units used in the registry: durations (`"10s"`, `"500ms"`, `"1m30s"`, bare seconds)
//! and byte sizes (`128Mi`, `1G`, docker-style `128m`, bare bytes).
//!
//! Invariants: every parsed duration is a whole number of milliseconds and at least 1 ms (so it
//! round-trips through the `*_ms` JSON fields exactly); every parsed size is at least 1 byte.
//! Errors are short human phrases meant to follow "field `x`: ".

use std::time::Duration;

/// Longest duration accepted anywhere in the registry (one year).
const MAX_DURATION_MS: f64 = 365.0 * 24.0 * 3600.0 * 1000.0;

/// Parses a duration: `"500ms"`, `"10s"`, `"2m"`, `"1h"`, compounds such as `"1m30s"`, or a
/// bare number meaning seconds (`"1.5"`). The result is rounded to whole milliseconds and
/// must be at least 1 ms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("expected a duration such as `10s`, `500ms`, `2m` or `1h`".into());
    }
    if t.starts_with('-') {
        return Err(format!("duration `{t}` must not be negative"));
    }
    let total_ms = if let Some(secs) = plain_number(t) {
        secs * 1000.0
    } else {
        let mut rest = t;
        let mut total = 0.0;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let (num, after) = rest.split_at(num_len);
            let unit_len = after
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let value: f64 = match num.parse() {
                Ok(v) if !num.is_empty() => v,
                _ => return Err(bad_duration(t)),
            };
            let scale = match unit {
                "ms" => 1.0,
                "s" => 1000.0,
                "m" => 60_000.0,
                "h" => 3_600_000.0,
                _ => return Err(bad_duration(t)),
            };
            total += value * scale;
            rest = after;
        }
        total
    };
    if !total_ms.is_finite() || total_ms > MAX_DURATION_MS {
        return Err(format!("duration `{t}` is too long (at most 1 year)"));
    }
    let ms = total_ms.round();
    if ms < 1.0 {
        return Err(format!(
            "duration `{t}` must be greater than zero (at least 1ms)"
        ));
    }
    // `ms` is a finite whole number between 1 and one year in milliseconds: exact in u64.
    Ok(Duration::from_millis(ms as u64))
}

fn bad_duration(t: &str) -> String {
    format!(
        "invalid duration `{t}`: use a number with a unit (`ms`, `s`, `m`, `h`), e.g. `10s`, `500ms`, `1m30s`, or a bare number of seconds"
    )
}

/// Parses a byte size: binary units `Ki`/`Mi`/`Gi`/`Ti` (also `KiB`…), decimal units
/// `K`/`KB`/`M`/`MB`/`G`/`GB`/`T`/`TB`, docker-style lowercase `k`/`m`/`g`/`t` (also `kb`…,
/// binary), `B`/`b` or no unit for bytes. Fractions are allowed with a unit (`1.5Gi`);
/// the result is rounded down to whole bytes and must be at least 1.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("expected a size such as `128Mi`, `1Gi` or `1024`".into());
    }
    if t.starts_with('-') {
        return Err(format!("size `{t}` must not be negative"));
    }
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_len);
    let unit = unit.trim_start();
    const KI: u64 = 1 << 10;
    const MI: u64 = 1 << 20;
    const GI: u64 = 1 << 30;
    const TI: u64 = 1 << 40;
    let scale: u64 = match unit {
        "" | "B" | "b" => 1,
        "Ki" | "KiB" | "k" | "kb" | "kB" => KI,
        "Mi" | "MiB" | "m" | "mb" => MI,
        "Gi" | "GiB" | "g" | "gb" => GI,
        "Ti" | "TiB" | "t" | "tb" => TI,
        "K" | "KB" => 1_000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "T" | "TB" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "invalid size `{t}`: use bytes or a unit (`Ki`, `Mi`, `Gi`, `Ti` = 1024-based; `K`, `M`/`MB`, `G`/`GB` = 1000-based; docker-style `k`, `m`, `g`), e.g. `128Mi`"
            ))
        }
    };
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(format!(
            "invalid size `{t}`: expected a number, e.g. `128Mi`"
        ));
    }
    let bytes = if let Ok(whole) = num.parse::<u64>() {
        whole
            .checked_mul(scale)
            .ok_or_else(|| format!("size `{t}` is too large"))?
    } else {
        let v: f64 = num
            .parse()
            .map_err(|_| format!("invalid size `{t}`: expected a number, e.g. `128Mi`"))?;
        let b = (v * scale as f64).floor();
        if !b.is_finite() || b >= 9.0e18 {
            return Err(format!("size `{t}` is too large"));
        }
        // Finite, non-negative and below 9e18: fits in u64.
        b as u64
    };
    if bytes == 0 {
        return Err(format!("size `{t}` must be greater than zero"));
    }
    Ok(bytes)
}

/// Renders a byte count the way a user would write it (`128Mi`, `1536Ki`, `1000`).
pub fn format_size(bytes: u64) -> String {
    for (unit, scale) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{}{unit}", bytes / scale);
        }
    }
    bytes.to_string()
}

/// A plain decimal number (`10`, `1.5`, `+2`, `1e3`), nothing else (no `inf`, `nan`, units).
pub(crate) fn plain_number(t: &str) -> Option<f64> {
    let digits_ok = t
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | 'e' | 'E'));
    if !digits_ok || !t.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = |t: &str| parse_duration(t).map(|d| d.as_millis());
        assert_eq!(ms("10s"), Ok(10_000));
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("2m"), Ok(120_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        assert_eq!(ms("1m30s"), Ok(90_000));
        assert_eq!(ms("1.5s"), Ok(1_500));
        assert_eq!(ms("30"), Ok(30_000));
        assert_eq!(ms("0.25"), Ok(250));
        assert_eq!(ms(" 7s "), Ok(7_000));
        for bad in [
            "", "0", "0s", "0.0001", "-1s", "-3", "10x", "s", "1.2.3s", "ten", "1 s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
        assert!(parse_duration("-1s").unwrap_err().contains("negative"));
        assert!(parse_duration("0s")
            .unwrap_err()
            .contains("greater than zero"));
        assert!(parse_duration("9999999h").unwrap_err().contains("too long"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128Mi"), Ok(128 << 20));
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        assert_eq!(parse_size("512Ki"), Ok(512 << 10));
        assert_eq!(parse_size("1M"), Ok(1_000_000));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("1G"), Ok(1_000_000_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("128m"), Ok(128 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_size("6Mi"), Ok(6 << 20));
        for bad in [
            "",
            "0",
            "0Mi",
            "-1Mi",
            "12XB",
            "Mi",
            ".5Mi",
            "1e3",
            "99999999999Ti",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn size_rendering() {
        assert_eq!(format_size(128 << 20), "128Mi");
        assert_eq!(format_size(1536 << 10), "1536Ki");
        assert_eq!(format_size(1000), "1000");
    }
}
