//! Config files in env-file format.
//!
//! Every Sluice binary reads its settings from command-line flags and `SLUICE_*`
//! environment variables (clap, with the defaults shown by `--help`). `--config FILE`
//! (or `SLUICE_CONFIG`) names an env-file whose `KEY=VALUE` lines are applied *before*
//! the flags are parsed, so precedence is: flag > real environment > config file > default.

use std::path::Path;

/// Errors reading a config file; each names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: expected KEY=VALUE, got `{text}`")]
    Syntax {
        path: String,
        line: usize,
        text: String,
    },
}

/// Parses env-file text: blank lines and `#` comments are skipped, values may be quoted.
pub fn parse_env_file(path: &str, text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(ConfigError::Syntax {
                path: path.to_string(),
                line: i + 1,
                text: raw.to_string(),
            });
        };
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ConfigError::Syntax {
                path: path.to_string(),
                line: i + 1,
                text: raw.to_string(),
            });
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
            .unwrap_or(v);
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Finds `--config FILE` / `--config=FILE` in `args` or `SLUICE_CONFIG` in the environment,
/// and returns the variables it sets that are not already in the environment.
/// Call [`apply`] with the result before parsing flags.
pub fn load_from_args(args: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
    let mut file = std::env::var("SLUICE_CONFIG").ok();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            file = it.next().cloned();
        } else if let Some(f) = a.strip_prefix("--config=") {
            file = Some(f.to_string());
        }
    }
    let Some(file) = file else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(Path::new(&file)).map_err(|source| ConfigError::Read {
        path: file.clone(),
        source,
    })?;
    let vars = parse_env_file(&file, &text)?;
    Ok(vars
        .into_iter()
        .filter(|(k, _)| std::env::var_os(k).is_none())
        .collect())
}

/// Applies variables returned by [`load_from_args`] to the process environment.
/// Call it first thing in `main`, before any thread (and the tokio runtime) starts.
pub fn apply(vars: Vec<(String, String)>) {
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
}

/// Loads `--config` / `SLUICE_CONFIG` (if any) into the environment, exiting with a clear
/// message when the file is unreadable or malformed. For `main`, before clap parses.
pub fn load_or_exit() {
    let args: Vec<String> = std::env::args().collect();
    match load_from_args(&args) {
        Ok(vars) => apply(vars),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

/// The control plane's Redis URL: `url` with the password read from `password_file`
/// (`SLUICE_REDIS_PASSWORD_FILE`, written by the compose stack's `redis` service) unless the
/// URL already carries credentials. Returns the URL and the password (when a file was given).
pub fn redis_url(
    url: &str,
    password_file: Option<&Path>,
) -> Result<(String, Option<String>), ConfigError> {
    let Some(file) = password_file else {
        return Ok((url.to_string(), None));
    };
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        path: file.display().to_string(),
        source,
    })?;
    let password = text.trim().to_string();
    if password.is_empty() {
        return Err(ConfigError::Syntax {
            path: file.display().to_string(),
            line: 1,
            text: "(empty: expected the Redis password)".into(),
        });
    }
    Ok((
        crate::state::url_with_password(url, &password),
        Some(password),
    ))
}

/// The longest interval or timeout a service setting takes: anything longer is a typo.
pub const MAX_SETTING: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The same bound in milliseconds, for settings given as a number of ms
/// (`value_parser = clap::value_parser!(u64).range(1..=MAX_SETTING_MS)`).
pub const MAX_SETTING_MS: u64 = 24 * 3600 * 1000;

/// The longest path a Unix socket address holds (`sun_path` less its NUL): the router's
/// `SLUICE_LISTEN_UNIX` and the gateway's `unix:` upstreams are checked against it.
pub const MAX_UNIX_SOCKET_PATH: usize = 107;

/// Value parser of an interval or timeout setting (`250ms`, `10s`, `1m`): at least 1 ms (as
/// every duration [`crate::registry::parse_duration`] gives) and at most [`MAX_SETTING`]. Zero
/// would make a ticker panic or a loop spin, so it is refused at start-up with the setting's
/// name (clap prints it).
pub fn interval(text: &str) -> Result<std::time::Duration, String> {
    let d = crate::registry::parse_duration(text)?;
    if d > MAX_SETTING {
        return Err(format!("must be at most 24h (got `{text}`)"));
    }
    Ok(d)
}

/// Value parser of a listen address: `ip:port`, or `host:port` resolved once at start-up
/// (IPv4 first). A host name lets a service attached to two networks listen on one of them
/// only: the compose file gives the router and the orchestrator an alias on the control
/// network alone (`router-control`, `orchestrator-control`), which resolves to their address
/// there, so nothing listens on their function-network address.
pub fn listen_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = text.parse() {
        return Ok(a);
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("`{text}` is not host:port"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("`{text}` is not host:port"));
    }
    // The engine's DNS knows a container's own aliases from its start; a few tries cover a
    // resolver that is slow to come up.
    let mut last = String::new();
    for attempt in 0..20 {
        match text.to_socket_addrs() {
            Ok(addrs) => {
                let mut addrs: Vec<_> = addrs.collect();
                addrs.sort_by_key(|a| a.is_ipv6());
                if let Some(a) = addrs.first() {
                    return Ok(*a);
                }
                last = "no address".into();
            }
            Err(e) => last = e.to_string(),
        }
        if attempt < 19 {
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
    Err(format!("cannot resolve `{host}`: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn listen_addresses_take_ips_and_names() {
        assert_eq!(
            listen_addr("0.0.0.0:8082").map(|a| a.to_string()),
            Ok("0.0.0.0:8082".to_string())
        );
        assert_eq!(
            listen_addr("localhost:9").map(|a| a.to_string()),
            Ok("127.0.0.1:9".to_string())
        );
        assert!(listen_addr("8082").is_err());
        assert!(listen_addr("host:port").is_err());
        assert!(listen_addr(":80").is_err());
    }

    #[test]
    fn intervals_refuse_zero_and_absurd_values() {
        assert_eq!(super::interval("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(super::interval("1ms"), Ok(Duration::from_millis(1)));
        assert!(super::interval("0").unwrap_err().contains("at least 1ms"));
        assert!(super::interval("0.0001")
            .unwrap_err()
            .contains("at least 1ms"));
        assert!(super::interval("0s").is_err());
        assert!(super::interval("25h").unwrap_err().contains("at most 24h"));
        assert!(super::interval("soon").is_err());
    }

    #[test]
    fn env_file_parses_comments_quotes_and_export() {
        let v = parse_env_file(
            "f",
            "# c\n\nSLUICE_A=1\nexport SLUICE_B=\"two words\"\nSLUICE_C='x'\n",
        )
        .expect("valid");
        assert_eq!(
            v,
            vec![
                ("SLUICE_A".into(), "1".into()),
                ("SLUICE_B".into(), "two words".into()),
                ("SLUICE_C".into(), "x".into())
            ]
        );
    }

    #[test]
    fn env_file_names_the_bad_line() {
        let e = parse_env_file("cfg.env", "A=1\nnot a pair\n").expect_err("bad line");
        assert_eq!(
            e.to_string(),
            "cfg.env:2: expected KEY=VALUE, got `not a pair`"
        );
    }
}
