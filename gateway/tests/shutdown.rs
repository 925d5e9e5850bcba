//! Graceful SIGTERM: the gateway stops accepting connections, lets the request in flight
//! finish, and exits 0 as soon as it has.

mod common;

use std::time::{Duration, Instant};

use common::{cluster_json, http, register, Replica, Stack, DEADLINE};
use sluice_common::testing::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_zero() {
    let replica = Replica::start().await;
    let mut stack = Stack::start("gw-sigterm", "http://127.0.0.1:9").await;
    register(
        &stack.rest,
        "hello",
        cluster_json(10_000, 1 << 20),
        &[replica.addr],
    )
    .await;
    stack.wait_synced().await;

    // A request that the replica holds until the test lets it go.
    let url = stack.url("/hello/hold");
    let in_flight = tokio::spawn(async move { http().get(url).send().await });
    wait_for("the request to reach the replica", DEADLINE, || {
        let n = replica.arrivals();
        async move { (n == 1).then_some(()) }
    })
    .await;

    let pid = stack.gateway_proc.pid();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());

    // New connections are refused once the listener is closed...
    let addr = stack.gateway.trim_start_matches("http://").to_string();
    wait_for("the gateway to stop accepting", DEADLINE, || {
        let addr = addr.clone();
        async move {
            tokio::net::TcpStream::connect(&addr)
                .await
                .is_err()
                .then_some(())
        }
    })
    .await;
    // ...while the request in flight is still running.
    assert!(!in_flight.is_finished());
    let child = stack.gateway_proc.0.as_mut().expect("gateway child");
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "still running"
    );

    replica.release();
    let r = in_flight
        .await
        .expect("join")
        .expect("the in-flight request completes");
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["uri"], "/hold");

    let answered = Instant::now();
    let exit = wait_for("the gateway to exit", Duration::from_secs(10), || {
        let st = child.try_wait().expect("try_wait");
        async move { st }
    })
    .await;
    println!(
        "gateway exited {:?} after the last response",
        answered.elapsed()
    );
    assert!(exit.success(), "exit status {exit:?}");
}
