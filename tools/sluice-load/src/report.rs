//! Text the user reads: the live per-second table, the CSV rows, the totals and the final
//! summary (stdout) and `summary.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::cli::Settings;
use crate::duration::format_duration;
use crate::stats::{format_errors, percentile, us_to_ms, Replicas, Second};

/// A number with at most one decimal, without a trailing `.0` (`40`, `40.5`).
pub fn num(x: f64) -> String {
    let s = format!("{x:.1}");
    match s.strip_suffix(".0") {
        Some(int) => int.to_string(),
        None => s,
    }
}

fn opt_num(x: Option<f64>, missing: &str) -> String {
    x.map(num).unwrap_or_else(|| missing.to_string())
}

/// `ready/desired`, or `?` when the system API did not answer.
pub fn replicas_cell(r: Option<Replicas>) -> String {
    match r {
        Some(Replicas::Seen { ready, desired }) => format!("{ready}/{desired}"),
        _ => "?".to_string(),
    }
}

/// Header line of the live table.
pub fn table_header() -> String {
    format!(
        "{:>5}  {:>7}  {:>6}  {:>6}  {:>8}  {:>8}  {:<24}  {}",
        "t", "target", "sent", "ok", "p50_ms", "p99_ms", "errors", "ready/desired"
    )
}

/// One live-table row. Requests still waiting for an answer show as `pending:n` and
/// requests not sent because of the concurrency cap as `skipped:n`, after the errors.
pub fn table_row(t: usize, s: &Second) -> String {
    let mut errors = format_errors(&s.errors, " ");
    for (label, n) in [("skipped", s.skipped), ("pending", s.pending())] {
        if n > 0 {
            if !errors.is_empty() {
                errors.push(' ');
            }
            let _ = write!(errors, "{label}:{n}");
        }
    }
    if errors.is_empty() {
        errors.push('-');
    }
    format!(
        "{:>5}  {:>7}  {:>6}  {:>6}  {:>8}  {:>8}  {:<24}  {}",
        t,
        num(s.target),
        s.sent,
        s.ok,
        opt_num(s.percentile_ms(50.0), "-"),
        opt_num(s.percentile_ms(99.0), "-"),
        errors,
        replicas_cell(s.replicas)
    )
}

/// Header of `load.csv`.
pub const CSV_HEADER: &str =
    "t_s,target_rps,sent,ok,failed,skipped,p50_ms,p99_ms,ready,desired,errors";

/// One `load.csv` row; unknown values are empty, errors are `status:count;...`.
pub fn csv_row(t: usize, s: &Second) -> String {
    let (ready, desired) = match s.replicas {
        Some(Replicas::Seen { ready, desired }) => (ready.to_string(), desired.to_string()),
        _ => (String::new(), String::new()),
    };
    format!(
        "{t},{},{},{},{},{},{},{},{ready},{desired},{}",
        num(s.target),
        s.sent,
        s.ok,
        s.failed,
        s.skipped,
        opt_num(s.percentile_ms(50.0), ""),
        opt_num(s.percentile_ms(99.0), ""),
        format_errors(&s.errors, ";")
    )
}

/// The whole `load.csv`.
pub fn csv(rows: &[Second]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for (t, s) in rows.iter().enumerate() {
        out.push_str(&csv_row(t, s));
        out.push('\n');
    }
    out
}

/// Whole-run figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub target: f64,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub skipped: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub max_ready: Option<u64>,
    pub max_desired: Option<u64>,
    pub errors: BTreeMap<String, u64>,
}

impl Totals {
    pub fn of(rows: &[Second]) -> Self {
        let mut t = Totals::default();
        let mut lat: Vec<u64> = Vec::new();
        for s in rows {
            t.target += s.target;
            t.sent += s.sent;
            t.ok += s.ok;
            t.failed += s.failed;
            t.skipped += s.skipped;
            lat.extend_from_slice(&s.latencies_us);
            for (k, n) in &s.errors {
                *t.errors.entry(k.clone()).or_insert(0) += n;
            }
            if let Some(Replicas::Seen { ready, desired }) = s.replicas {
                t.max_ready = Some(t.max_ready.unwrap_or(0).max(ready));
                t.max_desired = Some(t.max_desired.unwrap_or(0).max(desired));
            }
        }
        lat.sort_unstable();
        t.p50_ms = percentile(&lat, 50.0).map(us_to_ms);
        t.p95_ms = percentile(&lat, 95.0).map(us_to_ms);
        t.p99_ms = percentile(&lat, 99.0).map(us_to_ms);
        t.max_ms = lat.last().copied().map(us_to_ms);
        t
    }

    /// Process exit status: 1 when any sent request failed, else 0.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.failed > 0)
    }
}

/// The end-of-run summary printed on stdout.
pub fn summary_text(
    settings: &Settings,
    totals: &Totals,
    elapsed_s: f64,
    files: &[String],
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "summary: {} sent, {} ok, {} failed, {} skipped (concurrency cap {}) of {} due in {:.1} s",
        totals.sent,
        totals.ok,
        totals.failed,
        totals.skipped,
        settings.concurrency,
        num(totals.target.round()),
        elapsed_s
    );
    let _ = writeln!(
        o,
        "latency (answered requests): p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
        opt_num(totals.p50_ms, "-"),
        opt_num(totals.p95_ms, "-"),
        opt_num(totals.p99_ms, "-"),
        opt_num(totals.max_ms, "-")
    );
    let r = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "?".to_string());
    let _ = writeln!(
        o,
        "replicas of {}: max ready {}, max desired {}",
        settings.function,
        r(totals.max_ready),
        r(totals.max_desired)
    );
    let errors = format_errors(&totals.errors, " ");
    let _ = writeln!(
        o,
        "errors: {}",
        if errors.is_empty() { "none" } else { &errors }
    );
    for f in files {
        let _ = writeln!(o, "wrote {f}");
    }
    o
}

/// `summary.json`.
pub fn summary_json(
    settings: &Settings,
    totals: &Totals,
    started_at: &str,
    elapsed_s: f64,
    interrupted: bool,
) -> Value {
    json!({
        "url": settings.url.as_str(),
        "method": settings.method.as_str(),
        "function": settings.function,
        "replicas_url": settings.replicas_url.as_str(),
        "profile": settings.profile.to_string(),
        "duration": format_duration(settings.duration),
        "duration_s": settings.duration.as_secs_f64(),
        "concurrency": settings.concurrency,
        "timeout_s": settings.timeout.as_secs_f64(),
        "started_at": started_at,
        "elapsed_s": elapsed_s,
        "interrupted": interrupted,
        "target": totals.target,
        "sent": totals.sent,
        "ok": totals.ok,
        "failed": totals.failed,
        "skipped": totals.skipped,
        "latency_ms": {
            "p50": totals.p50_ms,
            "p95": totals.p95_ms,
            "p99": totals.p99_ms,
            "max": totals.max_ms,
        },
        "max_ready": totals.max_ready,
        "max_desired": totals.max_desired,
        "errors": totals.errors,
        "exit_code": totals.exit_code(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Outcome, Recorder};
    use std::time::Duration;

    fn sample() -> Second {
        let mut errors = BTreeMap::new();
        errors.insert("503".to_string(), 2);
        errors.insert("conn".to_string(), 1);
        Second {
            target: 40.0,
            sent: 38,
            ok: 35,
            failed: 3,
            skipped: 2,
            latencies_us: vec![201_500, 199_000, 250_000],
            errors,
            replicas: Some(Replicas::Seen {
                ready: 2,
                desired: 3,
            }),
        }
    }

    #[test]
    fn numbers_drop_a_trailing_zero() {
        assert_eq!(num(40.0), "40");
        assert_eq!(num(40.5), "40.5");
        assert_eq!(num(33.333), "33.3");
        assert_eq!(num(0.04), "0");
    }

    #[test]
    fn csv_rows() {
        assert_eq!(
            csv_row(7, &sample()),
            "7,40,38,35,3,2,201.5,250,2,3,503:2;conn:1"
        );
        let empty = Second {
            target: 12.5,
            replicas: Some(Replicas::Unknown),
            ..Second::default()
        };
        assert_eq!(csv_row(0, &empty), "0,12.5,0,0,0,0,,,,,");
        assert_eq!(csv_row(1, &Second::default()), "1,0,0,0,0,0,,,,,");
        let whole = csv(&[sample(), empty]);
        let lines: Vec<&str> = whole.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines.len(), 3);
        assert!(lines
            .iter()
            .all(|l| l.split(',').count() == CSV_HEADER.split(',').count()));
    }

    #[test]
    fn table_rows_show_errors_skips_and_replicas() {
        let row = table_row(3, &sample());
        assert!(row.contains("503:2 conn:1 skipped:2"), "{row}");
        assert!(row.trim_end().ends_with("2/3"), "{row}");
        let mut waiting = sample();
        waiting.ok = 30;
        waiting.replicas = Some(Replicas::Unknown);
        let row = table_row(3, &waiting);
        assert!(row.contains("pending:5"), "{row}");
        assert!(row.trim_end().ends_with('?'), "{row}");
        assert_eq!(
            table_header().split_whitespace().collect::<Vec<_>>(),
            [
                "t",
                "target",
                "sent",
                "ok",
                "p50_ms",
                "p99_ms",
                "errors",
                "ready/desired"
            ]
        );
    }

    #[test]
    fn totals_merge_seconds() {
        let rec = Recorder::new(vec![2.0, 2.0]);
        for (sec, outcome, ms) in [
            (0, Outcome::Answered(200), Some(10)),
            (0, Outcome::Answered(200), Some(30)),
            (1, Outcome::Answered(429), Some(1)),
            (1, Outcome::Timeout, None),
        ] {
            rec.sent(sec);
            rec.finished(sec, outcome, ms.map(Duration::from_millis));
        }
        rec.replicas(
            0,
            Replicas::Seen {
                ready: 1,
                desired: 4,
            },
        );
        rec.replicas(
            1,
            Replicas::Seen {
                ready: 3,
                desired: 3,
            },
        );
        let t = Totals::of(&rec.finish(2));
        assert_eq!((t.sent, t.ok, t.failed, t.skipped), (4, 2, 2, 0));
        assert_eq!(t.p50_ms, Some(10.0));
        assert_eq!(t.p99_ms, Some(30.0));
        assert_eq!(t.max_ready, Some(3));
        assert_eq!(t.max_desired, Some(4));
        assert_eq!(format_errors(&t.errors, " "), "429:1 timeout:1");
        assert_eq!(t.exit_code(), 1);
        assert_eq!(Totals::default().exit_code(), 0);
    }
}
