//! Body limits: a body over the function's `max_body_bytes` is refused with 413 before
//! anything is forwarded, whether its size is announced (`Content-Length`) or not (chunked).

mod common;

use common::{cluster_json, http, post_chunked, register, Replica, Stack};

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_bodies_get_413_and_never_reach_the_upstream() {
    let replica = Replica::start().await;
    let stack = Stack::start("gw-limits", "http://127.0.0.1:9").await;
    register(
        &stack.rest,
        "small",
        cluster_json(10_000, MIB as u64),
        &[replica.addr],
    )
    .await;
    stack.wait_synced().await;
    let addr = stack.gateway.trim_start_matches("http://").to_string();
    let c = http();

    // 2 MB with Content-Length.
    let started = std::time::Instant::now();
    let r = c
        .post(stack.url("/small"))
        .body(vec![b'x'; 2 * MIB])
        .send()
        .await
        .expect("POST 2 MB with Content-Length");
    println!("413 (Content-Length) after {:?}", started.elapsed());
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["x-sluice-cold-start"], "false");
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["function"], "small");
    assert!(body["error"].as_str().expect("message").contains("1048576"));

    // 2 MB chunked: refused once it passes 1 MiB.
    let started = std::time::Instant::now();
    let r = post_chunked(&addr, "/function/small/x", 2 * MIB).await;
    println!("413 (chunked) after {:?}", started.elapsed());
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["function"], "small");

    // Just over the limit, chunked.
    let r = post_chunked(&addr, "/small", MIB + 1).await;
    assert_eq!(r.status, 413);

    assert_eq!(
        replica.arrivals(),
        0,
        "the upstream never saw an oversized body"
    );
    let router_stats = c
        .get(format!("{}/v1/stats", stack.router_admin))
        .send()
        .await
        .expect("router stats")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert_eq!(
        router_stats["clusters"]["small"]["stats"]["requests"], 0,
        "the router never saw an oversized body: {router_stats}"
    );

    // At the limit exactly, both framings go through whole.
    let r = c
        .post(stack.url("/small"))
        .body(vec![b'y'; MIB])
        .send()
        .await
        .expect("POST 1 MiB");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["body_len"],
        MIB
    );
    let r = post_chunked(&addr, "/small", MIB).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], MIB);
    assert_eq!(replica.arrivals(), 2);

    let h = stack.health().await;
    assert_eq!(h["stats"]["too_large"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expect_100_continue_is_honoured() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let replica = Replica::start().await;
    let stack = Stack::start("gw-limits-expect", "http://127.0.0.1:9").await;
    register(
        &stack.rest,
        "small",
        cluster_json(10_000, MIB as u64),
        &[replica.addr],
    )
    .await;
    stack.wait_synced().await;
    let addr = stack.gateway.trim_start_matches("http://").to_string();

    // Oversized and announced: 413 without the body ever being sent, connection closed.
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        2 * MIB
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    let r = common::read_response(&mut s).await;
    assert_eq!(r.status, 413);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(common::DEADLINE, s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "connection closed after the refusal");

    // Chunked within the limit: the gateway says 100 Continue, reads, then forwards.
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    s.write_all(
        b"POST /small/e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .expect("write head");
    let mut buf = [0u8; 25];
    s.read_exact(&mut buf).await.expect("read 100 Continue");
    assert_eq!(&buf, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"5\r\nhello\r\n0\r\n\r\n")
        .await
        .expect("write body");
    let r = common::read_response(&mut s).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 5);
    assert_eq!(r.json()["uri"], "/e");
    assert_eq!(replica.arrivals(), 1);
}
