//! The Request Proxy's outbound half: which function handles a request ([`Routes`]), and the
//! calls of handler functions through the gateway ([`Dispatcher`]): `POST /function/<fn>`
//! with a protobuf `Event`, a protobuf `Actions` back. Cold start, queueing, autoscaling and
//! limits therefore apply to SIP handlers exactly as to any function.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use sluice_common::sip as pb;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::core::{Input, Origin};
use crate::stats::Stats;

/// Methods RFC 3261 and its extensions define: a method the proxy knows but routes to no
/// handler gets 405 with `Allow`; any other method gets 501.
pub const KNOWN_METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "INFO",
    "MESSAGE",
    "NOTIFY",
    "PRACK",
    "PUBLISH",
    "REFER",
    "SUBSCRIBE",
    "UPDATE",
];

/// The default method → handler map (`SLUICE_SIP_ROUTES`).
pub const DEFAULT_ROUTES: &str =
    "REGISTER=sip-register,OPTIONS=sip-register,MESSAGE=sip-message,INVITE=mcptt-session,BYE=mcptt-session";

/// Method → handler function. CANCEL is the proxy's own business (it answers it and tells the
/// INVITE's handler), and an ACK goes to the handler of the INVITE it acknowledges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routes {
    by_method: BTreeMap<String, String>,
}

impl Routes {
    /// Parses `METHOD=function,...` (methods are case-sensitive, as in SIP).
    pub fn parse(spec: &str) -> Result<Routes, String> {
        let mut by_method = BTreeMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((method, function)) = part.split_once('=') else {
                return Err(format!("route `{part}`: expected METHOD=function"));
            };
            let (method, function) = (method.trim(), function.trim());
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!("route `{part}`: `{method}` is not a SIP method"));
            }
            if method == "CANCEL" || method == "ACK" {
                return Err(format!(
                    "route `{part}`: {method} follows its INVITE and cannot be routed"
                ));
            }
            if !sluice_common::is_dns_label(function) {
                return Err(format!(
                    "route `{part}`: `{function}` is not a function name"
                ));
            }
            if by_method
                .insert(method.to_string(), function.to_string())
                .is_some()
            {
                return Err(format!("route `{part}`: {method} is routed twice"));
            }
        }
        Ok(Routes { by_method })
    }

    pub fn handler_for(&self, method: &str, _uri: &str) -> Option<String> {
        self.by_method.get(method).cloned()
    }

    /// The refusal of an unrouted method: 405 with the `Allow` list, or 501 for a method the
    /// proxy does not know.
    pub fn refusal(&self, method: &str) -> (u16, String) {
        if KNOWN_METHODS.contains(&method) {
            let mut allow: Vec<&str> = self.by_method.keys().map(String::as_str).collect();
            allow.extend(["ACK", "CANCEL"]);
            (405, allow.join(", "))
        } else {
            (501, String::new())
        }
    }
}

/// One handler call.
#[derive(Debug)]
pub struct Call {
    pub handler: String,
    pub event: pb::Event,
    pub origin: Origin,
}

/// How a handler call ended.
#[derive(Debug)]
pub enum Outcome {
    Actions(pb::Actions),
    /// The call failed: answer a pending server transaction with `status`.
    Failed {
        status: u16,
        retry_after: Option<u32>,
    },
}

#[derive(Clone)]
pub struct Dispatcher {
    http: reqwest::Client,
    gateway: String,
    timeout: Duration,
    in_flight: Arc<Semaphore>,
    stats: Arc<Stats>,
}

impl Dispatcher {
    pub fn new(
        gateway: &str,
        timeout: Duration,
        max_in_flight: usize,
        stats: Arc<Stats>,
    ) -> Result<Dispatcher, reqwest::Error> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(max_in_flight.min(1024))
            .tcp_nodelay(true)
            .build()?;
        Ok(Dispatcher {
            http,
            gateway: gateway.trim_end_matches('/').to_string(),
            timeout,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            stats,
        })
    }

    /// Takes calls off the queue, each in its own task (at most `max_in_flight` at once), and
    /// returns their outcomes to the core. Ends when the queue closes or on `stop` once the
    /// calls in flight are done.
    pub async fn run(
        self,
        mut calls: mpsc::Receiver<Call>,
        core: mpsc::Sender<Input>,
        stop: CancellationToken,
    ) {
        loop {
            let call = tokio::select! {
                c = calls.recv() => match c { Some(c) => c, None => break },
                _ = stop.cancelled() => break,
            };
            let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
                break;
            };
            let me = self.clone();
            let core = core.clone();
            tokio::spawn(async move {
                let origin = call.origin.clone();
                let outcome = me.call(call).await;
                drop(permit);
                let _ = core.send(Input::Outcome { origin, outcome }).await;
            });
        }
    }

    async fn call(&self, call: Call) -> Outcome {
        let url = format!("{}/function/{}", self.gateway, call.handler);
        let started = Instant::now();
        self.stats.handler_calls.inc();
        let sent = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, pb::CONTENT_TYPE)
            .timeout(self.timeout)
            .body(call.event.encode_to_vec())
            .send()
            .await;
        let outcome = match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match (status, resp.bytes().await) {
                    (200, Ok(body)) => match pb::Actions::decode(body.as_ref()) {
                        Ok(a) => Outcome::Actions(a),
                        Err(e) => {
                            tracing::warn!(handler = %call.handler, error = %e,
                                "handler answered something that is not protobuf Actions");
                            Outcome::Failed {
                                status: 500,
                                retry_after: None,
                            }
                        }
                    },
                    (429 | 503, _) => Outcome::Failed {
                        status: 503,
                        retry_after: Some(retry_after.unwrap_or(1)),
                    },
                    (s, _) => {
                        tracing::warn!(handler = %call.handler, status = s, "handler call failed");
                        Outcome::Failed {
                            status: 500,
                            retry_after: None,
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(handler = %call.handler, error = %e, "handler call failed");
                Outcome::Failed {
                    status: 503,
                    retry_after: Some(5),
                }
            }
        };
        if matches!(outcome, Outcome::Failed { .. }) {
            self.stats.handler_failures.inc();
        }
        self.stats.handler_latency(started.elapsed());
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_and_refuse_what_cannot_be_routed() {
        let r = Routes::parse(DEFAULT_ROUTES).expect("defaults");
        assert_eq!(
            r.handler_for("REGISTER", "sip:x").as_deref(),
            Some("sip-register")
        );
        assert_eq!(
            r.handler_for("INVITE", "sip:x").as_deref(),
            Some("mcptt-session")
        );
        assert_eq!(r.handler_for("SUBSCRIBE", "sip:x"), None);
        assert_eq!(
            r.refusal("SUBSCRIBE"),
            (
                405,
                "BYE, INVITE, MESSAGE, OPTIONS, REGISTER, ACK, CANCEL".to_string()
            )
        );
        assert_eq!(r.refusal("FOO").0, 501);
        for (bad, says) in [
            ("REGISTER", "expected METHOD=function"),
            ("register=x", "not a SIP method"),
            ("CANCEL=x", "cannot be routed"),
            ("REGISTER=Bad_Name", "not a function name"),
            ("REGISTER=a,REGISTER=b", "routed twice"),
        ] {
            let e = Routes::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert_eq!(Routes::parse("").expect("empty").by_method.len(), 0);
    }
}
