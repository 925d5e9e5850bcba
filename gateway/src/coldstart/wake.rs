//! The wake call: `POST {orchestrator}/internal/wake/{fn}` asks the orchestrator to start a
//! replica of a function that has none. The orchestrator answers 202 when it takes the job
//! and 404 when it does not know the function; anything else is either worth retrying
//! (network errors, 429, 5xx) or a refusal.

use std::time::Duration;

use crate::error::{ErrorKind, GatewayError};

/// What the orchestrator said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WakeReply {
    /// 2xx: a replica is being started; its endpoint will arrive over xDS.
    Accepted,
    /// 404: the orchestrator does not know the function.
    Unknown,
    /// Another 4xx: the orchestrator will not start it (status and its error message).
    Refused { status: u16, message: String },
}

/// Client for the orchestrator's wake endpoint (keep-alive connection pool inside).
#[derive(Debug, Clone)]
pub struct Waker {
    http: reqwest::Client,
    base: String,
}

impl Waker {
    /// `orchestrator` is the base URL (`http://host:port`); `timeout` bounds one call.
    pub fn new(orchestrator: &str, timeout: Duration) -> Result<Self, GatewayError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .build()
            .map_err(|e| {
                GatewayError::new(ErrorKind::Config, "cannot build the wake HTTP client")
                    .with_source(e)
            })?;
        Ok(Waker {
            http,
            base: orchestrator.trim_end_matches('/').to_string(),
        })
    }

    /// The URL the wake call for `function` goes to.
    pub fn url(&self, function: &str) -> String {
        format!(
            "{}{}/{}",
            self.base,
            sluice_common::auth::WAKE_PATH,
            function
        )
    }

    /// Sends one wake call. `Err` is always retryable (the orchestrator could not be reached
    /// or answered 429/5xx).
    pub async fn wake(&self, function: &str) -> Result<WakeReply, GatewayError> {
        let url = self.url(function);
        let resp = self.http.post(&url).send().await.map_err(|e| {
            GatewayError::new(
                ErrorKind::Orchestrator,
                format!("wake call to {url} failed"),
            )
            .for_function(function)
            .with_source(e)
        })?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(WakeReply::Accepted);
        }
        if status == 404 {
            return Ok(WakeReply::Unknown);
        }
        let text = resp.text().await.unwrap_or_default();
        let message = error_message(&text);
        if status == 429 || status >= 500 {
            return Err(GatewayError::new(
                ErrorKind::Orchestrator,
                format!("wake call to {url} answered {status}: {message}"),
            )
            .for_function(function));
        }
        Ok(WakeReply::Refused { status, message })
    }
}

/// The `error` field of a JSON error body, else the (bounded) text itself.
fn error_message(text: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string));
    from_json.unwrap_or_else(|| text.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_and_messages() {
        let w = Waker::new("http://orch:8082/", Duration::from_secs(1)).expect("client");
        assert_eq!(w.url("hello"), "http://orch:8082/internal/wake/hello");
        assert_eq!(error_message(r#"{"error":"nope","function":"x"}"#), "nope");
        assert_eq!(error_message("plain"), "plain");
    }
}
