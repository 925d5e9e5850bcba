//! The listener's own telemetry: counters shared by every pipeline task (lock-free atomics),
//! plus the last closed window. Served by `/v1/stats` and written to the Redis hash
//! `<instance>:stats-listener` at every window end.
//!
//! Invariant: `lines == lines_ok + Σ malformed[r]` over every reason except
//! `packet_too_large` (an oversized packet counts once, and its lines are not read).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde::Serialize;

use crate::aggregate::WindowReport;
use crate::parse::Reason;

/// Counters since the process started.
#[derive(Debug, Default)]
pub struct Stats {
    pub started_unix_ms: u64,
    /// Datagrams received.
    pub packets: AtomicU64,
    /// Bytes received.
    pub bytes: AtomicU64,
    /// Non-blank lines read.
    pub lines: AtomicU64,
    /// Lines that parsed.
    pub lines_ok: AtomicU64,
    malformed: [AtomicU64; Reason::COUNT],
    /// Valid lines with a router metric name and the right type.
    pub known_metrics: AtomicU64,
    /// Valid lines with a name this listener does not aggregate.
    pub other_metrics: AtomicU64,
    /// Valid lines with a router metric name but the wrong type (e.g. `upstream_rq_total|g`).
    pub wrong_type: AtomicU64,
    /// Updates dropped because a function / endpoint / router limit was reached.
    pub over_limit: AtomicU64,
    /// Errors receiving from the UDP socket.
    pub receive_errors: AtomicU64,
    pub signals_published: AtomicU64,
    pub signals_failed: AtomicU64,
    /// Signals dropped because the publisher was behind.
    pub signals_dropped: AtomicU64,
    pub windows_closed: AtomicU64,
    /// Windows written to Redis.
    pub windows_written: AtomicU64,
    pub redis_write_errors: AtomicU64,
    /// Windows waiting to be written (Redis unreachable).
    pub redis_backlog: AtomicU64,
    last: Mutex<Option<LastWindow>>,
}

/// The last closed window, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct LastWindow {
    pub window_end_unix_ms: u64,
    pub window_ms: u64,
    pub functions: Vec<WindowReport>,
}

impl Stats {
    pub fn new(started_unix_ms: u64) -> Stats {
        Stats {
            started_unix_ms,
            ..Stats::default()
        }
    }

    /// Counts one rejected line (or packet).
    pub fn malformed(&self, reason: Reason) {
        self.malformed[reason.index()].fetch_add(1, Relaxed);
    }

    pub fn malformed_count(&self, reason: Reason) -> u64 {
        self.malformed[reason.index()].load(Relaxed)
    }

    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().map(|c| c.load(Relaxed)).sum()
    }

    pub fn set_last_window(&self, w: LastWindow) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(w);
    }

    fn last_window(&self) -> Option<LastWindow> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Everything, for `/v1/stats`.
    pub fn snapshot(&self) -> serde_json::Value {
        let mut malformed = serde_json::Map::new();
        malformed.insert("total".into(), self.malformed_total().into());
        for r in Reason::ALL {
            malformed.insert(r.as_str().into(), self.malformed_count(r).into());
        }
        let last = self.last_window();
        let functions_seen: Vec<&str> = last
            .as_ref()
            .map(|w| w.functions.iter().map(|f| f.function.as_str()).collect())
            .unwrap_or_default();
        serde_json::json!({
            "started_unix_ms": self.started_unix_ms,
            "packets": self.packets.load(Relaxed),
            "bytes": self.bytes.load(Relaxed),
            "receive_errors": self.receive_errors.load(Relaxed),
            "lines": self.lines.load(Relaxed),
            "lines_ok": self.lines_ok.load(Relaxed),
            "malformed": malformed,
            "metrics": {
                "known": self.known_metrics.load(Relaxed),
                "other": self.other_metrics.load(Relaxed),
                "wrong_type": self.wrong_type.load(Relaxed),
                "over_limit": self.over_limit.load(Relaxed),
            },
            "functions_seen": functions_seen,
            "signals": {
                "published": self.signals_published.load(Relaxed),
                "failed": self.signals_failed.load(Relaxed),
                "dropped": self.signals_dropped.load(Relaxed),
            },
            "windows": {
                "closed": self.windows_closed.load(Relaxed),
                "written": self.windows_written.load(Relaxed),
                "redis_write_errors": self.redis_write_errors.load(Relaxed),
                "redis_backlog": self.redis_backlog.load(Relaxed),
            },
            "last_window": last,
        })
    }

    /// Flat fields for the Redis hash `<instance>:stats-listener`.
    pub fn redis_fields(&self, now_unix_ms: u64) -> Vec<(String, String)> {
        let mut f: Vec<(String, String)> = vec![
            ("updated_unix_ms".into(), now_unix_ms.to_string()),
            ("started_unix_ms".into(), self.started_unix_ms.to_string()),
            ("packets".into(), self.packets.load(Relaxed).to_string()),
            ("lines".into(), self.lines.load(Relaxed).to_string()),
            ("lines_ok".into(), self.lines_ok.load(Relaxed).to_string()),
            ("malformed_total".into(), self.malformed_total().to_string()),
            (
                "known_metrics".into(),
                self.known_metrics.load(Relaxed).to_string(),
            ),
            (
                "other_metrics".into(),
                self.other_metrics.load(Relaxed).to_string(),
            ),
            (
                "wrong_type".into(),
                self.wrong_type.load(Relaxed).to_string(),
            ),
            (
                "signals_published".into(),
                self.signals_published.load(Relaxed).to_string(),
            ),
        ];
        for r in Reason::ALL {
            f.push((
                format!("malformed.{}", r.as_str()),
                self.malformed_count(r).to_string(),
            ));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_counts_show_in_snapshot_and_redis_fields() {
        let s = Stats::new(1);
        s.malformed(Reason::InvalidValue);
        s.malformed(Reason::InvalidValue);
        s.malformed(Reason::MissingPipe);
        let snap = s.snapshot();
        assert_eq!(snap["malformed"]["total"], 3);
        assert_eq!(snap["malformed"]["invalid_value"], 2);
        assert_eq!(snap["malformed"]["missing_pipe"], 1);
        assert_eq!(snap["malformed"]["empty_name"], 0);
        let fields = s.redis_fields(5);
        assert!(fields.contains(&("malformed.invalid_value".into(), "2".into())));
        assert!(fields.contains(&("malformed_total".into(), "3".into())));
    }
}
