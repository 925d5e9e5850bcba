//! The run: open-loop arrivals, the requests, the replica poller and the live table.
//!
//! Request `k` is started when the profile says it is due, whatever the earlier requests
//! are doing (open loop). At most `--concurrency` requests are in flight: one due while the
//! cap is reached is not sent and is counted as skipped. Ctrl-C stops the arrivals; a
//! second Ctrl-C stops waiting for the answers still out (counted as `cancelled`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Client;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cli::Settings;
use crate::profile::second_of;
use crate::report;
use crate::stats::{Outcome, Recorder, Second};

/// How long the live table waits, after a second has ended, for that second's answers
/// before printing its row with `pending:n`.
const LIVE_WAIT: Duration = Duration::from_secs(2);

/// What a run produced.
pub struct RunOutput {
    pub seconds: Vec<Second>,
    pub elapsed: Duration,
    pub interrupted: bool,
}

/// Requests due in each whole second of a run of `total` seconds.
pub fn targets(settings: &Settings) -> Vec<f64> {
    let total = settings.duration.as_secs_f64();
    let rows = (total - 1e-9).ceil().max(1.0) as usize;
    (0..rows)
        .map(|i| {
            let a = i as f64;
            let b = (a + 1.0).min(total);
            settings.profile.expected_by(b, total) - settings.profile.expected_by(a, total)
        })
        .collect()
}

fn client(settings: &Settings) -> Result<Client, String> {
    Client::builder()
        .pool_max_idle_per_host(settings.concurrency as usize)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Sends one request and waits for its whole body; the latency runs from send to the end of
/// the body.
async fn one_request(
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> (Outcome, Option<Duration>) {
    let sent_at = Instant::now();
    let exchange = async {
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        resp.bytes().await?;
        Ok::<u16, reqwest::Error>(status)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(status)) => (Outcome::Answered(status), Some(sent_at.elapsed())),
        Ok(Err(e)) if e.is_timeout() => (Outcome::Timeout, None),
        Ok(Err(_)) => (Outcome::Conn, None),
        Err(_) => (Outcome::Timeout, None),
    }
}

/// Prints rows of the live table as their seconds settle (every answer in, or
/// [`LIVE_WAIT`] passed); returns the next row not printed when `done` fires.
async fn live_table(rec: Recorder, start: Instant, done: CancellationToken) -> usize {
    println!("{}", report::table_header());
    let mut next = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = done.cancelled() => return next,
            _ = tick.tick() => {}
        }
        let now = start.elapsed();
        while let Some(s) = rec.get(next) {
            let end = Duration::from_secs(next as u64 + 1);
            let settled = s.pending() == 0 || now >= end + LIVE_WAIT;
            if now < end || !settled {
                break;
            }
            println!("{}", report::table_row(next, &s));
            next += 1;
        }
    }
}

/// Runs the load test described by `settings`.
pub async fn run(settings: &Settings) -> Result<RunOutput, String> {
    let http = client(settings)?;
    let total = settings.duration.as_secs_f64();
    let rec = Recorder::new(targets(settings));
    let cap = Arc::new(Semaphore::new(settings.concurrency as usize));
    let body = Bytes::from(settings.body.clone());

    let start = Instant::now();
    let stop_polling = CancellationToken::new();
    let poller = tokio::spawn(crate::replicas::poll(
        http.clone(),
        settings.replicas_url.clone(),
        settings.system_auth.clone(),
        start,
        rec.clone(),
        stop_polling.clone(),
    ));
    let table_done = CancellationToken::new();
    let table =
        (!settings.quiet).then(|| tokio::spawn(live_table(rec.clone(), start, table_done.clone())));

    // First Ctrl-C: no more arrivals. Second: stop waiting for answers.
    let stop_arrivals = CancellationToken::new();
    let stop_waiting = CancellationToken::new();
    let signals = tokio::spawn({
        let (arrivals, waiting) = (stop_arrivals.clone(), stop_waiting.clone());
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "sluice-load: stopping arrivals (Ctrl-C again to stop waiting for answers)"
                );
                arrivals.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    waiting.cancel();
                }
            }
        }
    });

    let mut after = 0.0;
    let mut k: u64 = 0;
    while let Some(due) = settings.profile.arrival_time(k, after, total) {
        after = due;
        k += 1;
        let at = start + Duration::from_secs_f64(due);
        if Instant::now() < at {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = stop_arrivals.cancelled() => break,
            }
        }
        if stop_arrivals.is_cancelled() {
            break;
        }
        let second = second_of(due);
        let Ok(permit) = cap.clone().try_acquire_owned() else {
            rec.skipped(second);
            continue;
        };
        rec.sent(second);
        let mut req = http.request(settings.method.clone(), settings.url.clone());
        if let Some(a) = &settings.call_auth {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        if !body.is_empty() {
            req = req.body(body.clone());
        }
        let rec = rec.clone();
        let timeout = settings.timeout;
        tokio::spawn(async move {
            let (outcome, latency) = one_request(req, timeout).await;
            rec.finished(second, outcome, latency);
            drop(permit);
        });
    }
    let arrivals_ended = start.elapsed();
    let cut_short = stop_arrivals.is_cancelled();
    // The last second may end after the last arrival: wait for its end so the poller
    // records it too.
    tokio::select! {
        _ = tokio::time::sleep_until(start + settings.duration) => {}
        _ = stop_arrivals.cancelled() => {}
    }
    // Every request holds a permit until it has ended, so all permits back = all answered.
    tokio::select! {
        _ = cap.acquire_many(settings.concurrency) => {}
        _ = stop_waiting.cancelled() => {
            eprintln!("sluice-load: requests still waiting are counted as cancelled");
        }
    }
    let interrupted = stop_arrivals.is_cancelled();
    signals.abort();
    stop_polling.cancel();
    let _ = poller.await;
    table_done.cancel();
    let printed = match table {
        Some(t) => t.await.unwrap_or(usize::MAX),
        None => usize::MAX,
    };

    let rows = if cut_short {
        let secs = arrivals_ended.as_secs_f64().min(total);
        (secs.ceil() as usize).clamp(1, rec.len())
    } else {
        rec.len()
    };
    let mut seconds = rec.finish(rows);
    if cut_short {
        // The last second was cut short: it asked only for what was due before the stop.
        if let Some(last) = seconds.last_mut() {
            let from = (rows - 1) as f64;
            let until = arrivals_ended.as_secs_f64().clamp(from, total);
            last.target = settings.profile.expected_by(until, total)
                - settings.profile.expected_by(from, total);
        }
    }
    for (t, s) in seconds.iter().enumerate().skip(printed) {
        println!("{}", report::table_row(t, s));
    }
    Ok(RunOutput {
        seconds,
        elapsed: start.elapsed(),
        interrupted,
    })
}
