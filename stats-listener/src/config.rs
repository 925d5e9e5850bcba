//! Settings: flags, `SLUICE_*` environment variables, or a `--config` env-file (applied by
//! `sluice_common::config::load_or_exit` before parsing). Defaults show in `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "stats-listener",
    version,
    about = "Sluice stats-listener: statsD over UDP → per-function load in Redis + scale signals",
    after_help = "`stats-listener healthcheck [URL]` GETs URL (default: own /healthz) and exits 0 on 2xx."
)]
pub struct Config {
    /// Env-file with SLUICE_* settings (applied before flags and the environment are read).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,

    /// UDP address statsD is received on.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "0.0.0.0:8125")]
    pub listen: SocketAddr,

    /// Address of the admin HTTP API (`/healthz`, `/v1/stats`).
    #[arg(long, env = "SLUICE_ADMIN_LISTEN", default_value = "0.0.0.0:8126")]
    pub admin_listen: SocketAddr,

    /// Redis receiving the per-function load and the scale signals.
    #[arg(
        long,
        env = "SLUICE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,

    /// File holding the Redis `default` user's password (the compose stack's `redis` service
    /// writes one to a volume only control-plane services mount); unset: no password.
    #[arg(long, env = "SLUICE_REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<std::path::PathBuf>,

    /// Name of this Sluice installation: prefix of every Redis key and channel.
    #[arg(long, env = "SLUICE_INSTANCE", default_value = "sluice")]
    pub instance: String,

    /// Aggregation window (e.g. 1s, 500ms).
    #[arg(long, env = "SLUICE_WINDOW", default_value = "1s", value_parser = sluice_common::config::interval)]
    pub window: Duration,

    /// TTL of the `<instance>:load:<fn>` hash.
    #[arg(long, env = "SLUICE_LOAD_TTL", default_value = "30s", value_parser = sluice_common::config::interval)]
    pub load_ttl: Duration,

    /// Windows kept in `<instance>:load:<fn>:history`.
    #[arg(long, env = "SLUICE_HISTORY_LEN", default_value_t = 120)]
    pub history_len: usize,

    /// A router's gauge entry stops counting when not refreshed for this long.
    #[arg(long, env = "SLUICE_GAUGE_EXPIRY", default_value = "3s", value_parser = sluice_common::config::interval)]
    pub gauge_expiry: Duration,

    /// Least time between two scale signals of a function while its queue stays non-empty.
    #[arg(long, env = "SLUICE_SIGNAL_INTERVAL", default_value = "100ms", value_parser = sluice_common::config::interval)]
    pub signal_interval: Duration,

    /// Latency samples kept per function per window (reservoir sampling beyond).
    #[arg(long, env = "SLUICE_MAX_SAMPLES", default_value_t = 10_000)]
    pub max_samples: usize,

    /// Functions tracked at most (updates for more are counted and dropped).
    #[arg(long, env = "SLUICE_MAX_FUNCTIONS", default_value_t = 10_000)]
    pub max_functions: usize,
}

impl Config {
    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::new(ErrorKind::Config, m));
        if self.window < Duration::from_millis(10) {
            return bad(format!(
                "SLUICE_WINDOW must be at least 10ms, got {:?}",
                self.window
            ));
        }
        if self.history_len == 0 {
            return bad("SLUICE_HISTORY_LEN must be at least 1".into());
        }
        if self.max_samples == 0 {
            return bad("SLUICE_MAX_SAMPLES must be at least 1".into());
        }
        if self.instance.is_empty() || self.instance.contains(char::is_whitespace) {
            return bad(format!(
                "SLUICE_INSTANCE `{}` must be non-empty without spaces",
                self.instance
            ));
        }
        Ok(())
    }

    /// TTL of the history list: long enough to cover every window it holds.
    pub fn history_ttl(&self) -> Duration {
        let len = u32::try_from(self.history_len).unwrap_or(u32::MAX);
        self.load_ttl.max(self.window.saturating_mul(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn zero_or_absurd_intervals_are_refused_by_name() {
        for (flag, value) in [
            ("--signal-interval", "0"),
            ("--gauge-expiry", "0s"),
            ("--load-ttl", "100000h"),
            ("--window", "soon"),
        ] {
            let err = Config::try_parse_from(["stats-listener", flag, value])
                .expect_err("refused")
                .to_string();
            assert!(err.contains(flag), "{flag}={value}: {err}");
        }
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let c = Config::try_parse_from(["stats-listener"]).expect("defaults parse");
        assert_eq!(c.listen.to_string(), "0.0.0.0:8125");
        assert_eq!(c.admin_listen.to_string(), "0.0.0.0:8126");
        assert_eq!(c.window, Duration::from_secs(1));
        assert_eq!(c.history_len, 120);
        assert_eq!(c.gauge_expiry, Duration::from_secs(3));
        assert_eq!(c.signal_interval, Duration::from_millis(100));
        assert!(c.validate().is_ok());
        assert_eq!(c.history_ttl(), Duration::from_secs(120));
        let bad = Config::try_parse_from(["stats-listener", "--window", "1ms"]).expect("parses");
        assert!(bad.validate().is_err());
    }
}
