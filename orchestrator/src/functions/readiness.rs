//! Readiness: a replica is routable only after its runtime's `/_/ready` answers 200.

use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

/// Polls `http://<address>/_/ready` every `every` until it answers 200 or `deadline` passes,
/// with the function's runtime token (`token`).
pub async fn wait_ready(
    http: &reqwest::Client,
    address: &str,
    token: &str,
    every: Duration,
    deadline: Duration,
) -> Result<Duration> {
    let url = format!("http://{address}/_/ready");
    let started = Instant::now();
    let mut last;
    loop {
        let probe = http
            .get(&url)
            .header(sluice_common::runtime::HEADER, token)
            .timeout(Duration::from_secs(1));
        match probe.send().await {
            Ok(r) if r.status().is_success() => return Ok(started.elapsed()),
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                last = format!("{status}: {}", body.chars().take(300).collect::<String>());
                // 500: the runtime says it can never become ready (e.g. the handler failed
                // to import). 503 means "not yet".
                if status == reqwest::StatusCode::INTERNAL_SERVER_ERROR {
                    return Err(Error::new(
                        ErrorKind::Readiness,
                        format!("cannot become ready: {last}"),
                    )
                    .retryable(false));
                }
            }
            Err(e) => last = e.to_string(),
        }
        if started.elapsed() >= deadline {
            return Err(Error::new(
                ErrorKind::Readiness,
                format!(
                    "not ready after {:.1}s (last answer: {last})",
                    deadline.as_secs_f64()
                ),
            ));
        }
        tokio::time::sleep(every).await;
    }
}
