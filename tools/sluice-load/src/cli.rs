//! Command line: the flags (clap) and their resolution into [`Settings`].
//!
//! Every problem with the arguments is reported as a clap error naming the flag, so the
//! process exits with status 2 before any request is sent.

use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use reqwest::{Method, Url};

use crate::duration::parse_duration;
use crate::profile::Profile;

/// Drives one Sluice function through the gateway at a target request rate (open loop) and
/// reports, per second, what was sent, what came back, latency and the function's replicas.
///
/// Writes load.csv, load.png and summary.json to --out. Exit status: 0 when every sent
/// request answered 2xx, 1 when any failed (non-2xx, connection error, timeout), 2 on bad
/// arguments.
#[derive(Debug, Parser)]
#[command(name = "sluice-load", version)]
pub struct Args {
    /// URL to call.
    #[arg(long, default_value = "http://localhost:8080/sleep?ms=200")]
    pub url: String,

    /// HTTP method.
    #[arg(long, default_value = "GET")]
    pub method: String,

    /// Request body (sent with every request; use with --method POST).
    #[arg(long, default_value = "")]
    pub body: String,

    /// Function whose replicas are shown [default: the URL's first path segment, or the
    /// segment after /function/]
    #[arg(long)]
    pub function: Option<String>,

    /// Base URL of the system API, polled once a second at GET
    /// {system}/system/function/{function} [default: the URL's scheme://host:port]
    #[arg(long)]
    pub system: Option<String>,

    /// Load profile: constant:<rps>, steps:<rps>,<rps>,...@<step length> (the duration is
    /// then the steps' total unless --duration is given) or ramp:<from>-<to> (linear over
    /// the duration).
    #[arg(long, default_value = "constant:50", value_parser = parse_profile)]
    pub profile: Profile,

    /// Length of the run (500ms, 20s, 2m).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Most requests in flight at once; a request due while the cap is reached is not sent
    /// and is counted as skipped (client-side saturation, not a failure).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,

    /// Per-request timeout, from send to the full body received.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Folder for load.csv, load.png and summary.json [default: load-test-results/<UTC
    /// timestamp>]
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// TrueType font for the chart's text: a path, `auto` (DejaVu Sans and a few usual
    /// fallbacks) or `none` (chart without text).
    #[arg(long, default_value = "auto")]
    pub font: String,

    /// No live per-second table (the summary is still printed).
    #[arg(long)]
    pub quiet: bool,

    /// API key sent as `Authorization: Bearer` with every call and every replica poll (needed
    /// for functions declared `auth: key`).
    #[arg(long, env = "SLUICE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Admin password file for the replica polls when no --api-key is given (basic auth as
    /// `admin`); not readable: the polls go without credentials and show `?`.
    #[arg(
        long,
        env = "SLUICE_ADMIN_PASSWORD_FILE",
        default_value = "secrets/admin-password"
    )]
    pub admin_password_file: PathBuf,
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    s.parse::<Profile>().map_err(|e| e.0)
}

/// Everything a run needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: Url,
    pub method: Method,
    pub body: String,
    pub function: String,
    /// `{system}/system/function/{function}`.
    pub replicas_url: Url,
    pub profile: Profile,
    pub duration: Duration,
    pub concurrency: u32,
    pub timeout: Duration,
    pub out: PathBuf,
    pub font: String,
    pub quiet: bool,
    /// `Authorization` of the calls (an API key), if any.
    pub call_auth: Option<String>,
    /// `Authorization` of the replica polls, if any.
    pub system_auth: Option<String>,
}

/// Parses the process arguments; on error prints clap's message and exits with status 2.
pub fn parse() -> Settings {
    let matches = Args::command().get_matches();
    let duration_given = matches.value_source("duration") == Some(ValueSource::CommandLine);
    let resolved = Args::from_arg_matches(&matches)
        .map_err(|e| e.to_string())
        .and_then(|args| resolve(args, duration_given));
    match resolved {
        Ok(s) => s,
        Err(msg) => {
            let mut cmd = Args::command();
            cmd.error(ErrorKind::ValueValidation, msg).exit()
        }
    }
}

/// The function named by a URL path: the segment after `/function/` (or
/// `/async-function/`), else the first segment.
pub fn function_from_path(path: &str) -> Option<String> {
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    let first = segs.next()?;
    let name = match first {
        "function" | "async-function" => segs.next()?,
        other => other,
    };
    Some(name.to_string())
}

/// Checks the flags that clap cannot check alone and fills in the derived defaults.
pub fn resolve(args: Args, duration_given: bool) -> Result<Settings, String> {
    let url = Url::parse(&args.url)
        .map_err(|e| format!("invalid value '{}' for '--url': {e}", args.url))?;
    if url.scheme() != "http" {
        return Err(format!(
            "invalid value '{}' for '--url': only http:// URLs are supported",
            args.url
        ));
    }
    if url.host_str().is_none() {
        return Err(format!("invalid value '{}' for '--url': no host", args.url));
    }
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .ok()
        .filter(|m| {
            [
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::HEAD,
                Method::OPTIONS,
            ]
            .contains(m)
        })
        .ok_or_else(|| {
            format!(
                "invalid value '{}' for '--method': use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS",
                args.method
            )
        })?;
    let function = match args.function {
        Some(f) if !f.trim().is_empty() => f.trim().to_string(),
        Some(_) => return Err("invalid value '' for '--function': empty name".to_string()),
        None => function_from_path(url.path()).ok_or_else(|| {
            format!(
                "'--function' is needed: the URL '{}' has no path segment to take the function name from",
                args.url
            )
        })?,
    };
    let system = match &args.system {
        Some(s) => Url::parse(s).map_err(|e| format!("invalid value '{s}' for '--system': {e}"))?,
        None => Url::parse(&url.origin().ascii_serialization())
            .map_err(|e| format!("invalid value '{}' for '--url': {e}", args.url))?,
    };
    if system.scheme() != "http" {
        return Err(format!(
            "invalid value '{system}' for '--system': only http:// URLs are supported"
        ));
    }
    let base = system.as_str().trim_end_matches('/');
    let replicas_url = Url::parse(&format!("{base}/system/function/{function}"))
        .map_err(|e| format!("invalid value '{function}' for '--function': {e}"))?;
    let duration = if duration_given {
        args.duration
    } else {
        args.profile.natural_duration().unwrap_or(args.duration)
    };
    let call_auth = args
        .api_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| format!("Bearer {k}"));
    let out = args.out.unwrap_or_else(|| {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        PathBuf::from("load-test-results").join(stamp.to_string())
    });
    Ok(Settings {
        url,
        method,
        body: args.body,
        function,
        replicas_url,
        profile: args.profile,
        duration,
        concurrency: args.concurrency,
        timeout: args.timeout,
        out,
        font: args.font,
        quiet: args.quiet,
        call_auth: call_auth.clone(),
        system_auth: call_auth.or_else(|| {
            let password = sluice_common::auth::read_secret_line(&args.admin_password_file).ok()?;
            (!password.is_empty())
                .then(|| sluice_common::auth::basic(sluice_common::auth::ADMIN_USER, &password))
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(argv: &[&str]) -> Result<Settings, String> {
        let matches = Args::command()
            .try_get_matches_from(std::iter::once("sluice-load").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())?;
        let given = matches.value_source("duration") == Some(ValueSource::CommandLine);
        let args = Args::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        resolve(args, given)
    }

    #[test]
    fn defaults() {
        let s = settings(&[]).expect("defaults are valid");
        assert_eq!(s.url.as_str(), "http://localhost:8080/sleep?ms=200");
        assert_eq!(s.method, Method::GET);
        assert_eq!(s.function, "sleep");
        assert_eq!(
            s.replicas_url.as_str(),
            "http://localhost:8080/system/function/sleep"
        );
        assert_eq!(s.profile, Profile::Constant(50.0));
        assert_eq!(s.duration, Duration::from_secs(20));
        assert_eq!(s.concurrency, 256);
        assert_eq!(s.timeout, Duration::from_secs(60));
        assert!(s.out.starts_with("load-test-results"));
        assert!(!s.quiet);
    }

    #[test]
    fn function_and_system_follow_the_url() {
        let s = settings(&["--url", "http://127.0.0.1:9000/function/echo/x?y=1"]).expect("valid");
        assert_eq!(s.function, "echo");
        assert_eq!(
            s.replicas_url.as_str(),
            "http://127.0.0.1:9000/system/function/echo"
        );
        let s = settings(&[
            "--url",
            "http://a:1/hello",
            "--function",
            "other",
            "--system",
            "http://b:2/",
        ])
        .expect("valid");
        assert_eq!(s.replicas_url.as_str(), "http://b:2/system/function/other");
    }

    #[test]
    fn steps_set_the_duration_unless_given() {
        let s = settings(&["--profile", "steps:1,2,3@2s"]).expect("valid");
        assert_eq!(s.duration, Duration::from_secs(6));
        let s = settings(&["--profile", "steps:1,2,3@2s", "--duration", "20s"]).expect("valid");
        assert_eq!(s.duration, Duration::from_secs(20));
    }

    #[test]
    fn bad_arguments_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--profile", "fast"], "--profile"),
            (&["--duration", "20"], "--duration"),
            (&["--timeout", "0s"], "--timeout"),
            (&["--concurrency", "0"], "--concurrency"),
            (&["--url", "not a url"], "--url"),
            (&["--url", "https://x/y"], "--url"),
            (&["--url", "http://x:8080/"], "--function"),
            (&["--method", "FETCH"], "--method"),
            (&["--system", "::"], "--system"),
        ];
        for (argv, flag) in cases {
            let e = settings(argv).expect_err("invalid");
            assert!(e.contains(flag), "{argv:?}: {e}");
        }
    }
}
