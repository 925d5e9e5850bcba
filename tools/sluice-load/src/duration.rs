//! Human durations for `--duration`, `--timeout` and step lengths: a positive number with
//! a unit, `ms`, `s`, `m` or `h` (`500ms`, `20s`, `1.5s`, `2m`).

use std::time::Duration;

/// Parses `<number><unit>`; the result is always greater than zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "" => {
            return Err(format!(
                "`{t}` needs a unit: ms, s, m or h (e.g. 500ms, 20s, 2m)"
            ))
        }
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{t}`; use ms, s, m or h (e.g. 500ms, 20s, 2m)"
            ))
        }
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{t}` is not a duration like 500ms, 20s or 2m"))?;
    let secs = value * scale;
    if secs <= 0.0 {
        return Err(format!("`{t}` must be longer than zero"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{t}` is too long"))
}

/// Formats a duration the way [`parse_duration`] reads it (`500ms`, `5s`, `2m`, `1.5s`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}s", d.as_secs_f64())
    } else if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn rejects_bad_durations() {
        assert!(parse_duration("20").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("20x")
            .unwrap_err()
            .contains("unknown unit `x`"));
        assert!(parse_duration("0s")
            .unwrap_err()
            .contains("longer than zero"));
        assert!(parse_duration("-5s").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.2.3s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn formats_back() {
        for s in ["500ms", "5s", "2m", "90s", "1.5s"] {
            let d = parse_duration(s).expect("valid");
            let shown = format_duration(d);
            assert_eq!(parse_duration(&shown), Ok(d), "{s} -> {shown}");
        }
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
    }
}
