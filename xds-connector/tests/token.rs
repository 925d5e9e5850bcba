//! The connector's token: with `SLUICE_XDS_TOKEN_FILE` set, the REST API (but `/healthz`) and
//! the gRPC stream refuse callers without it. Real binary, real Redis, real sockets.

mod support;

use sluice_common::xds::client::{self, ClientConfig};
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn both_apis_require_the_token() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let token = "5a".repeat(32);
    let file = dir.path().join("xds-token");
    std::fs::write(&file, format!("{token}\n")).expect("token file");
    let c = Connector::start_with_token(&redis, "t-token", &file, &token).await;
    c.put_function("hello", &[("c1", "127.0.0.1:9001")]).await;

    // REST: no token or a wrong one → 401 on every path but /healthz; the right one works.
    let http = reqwest::Client::new();
    for (method, path) in [
        ("GET", "/v1/snapshot"),
        ("PUT", "/v1/snapshot"),
        ("DELETE", "/v1/functions/hello"),
        ("GET", "/v1/clients"),
    ] {
        for auth in [None, Some("Bearer nope".to_string())] {
            let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let mut req = http.request(m, format!("{}{path}", c.rest()));
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            let status = req.send().await.expect("call").status().as_u16();
            assert_eq!(status, 401, "{method} {path} with {auth:?}");
        }
    }
    let status = http
        .get(format!("{}/healthz", c.rest()))
        .send()
        .await
        .expect("healthz")
        .status();
    assert!(status.is_success());
    // The refused DELETE removed nothing.
    let snap = c.ok("GET", "/v1/snapshot", None).await;
    assert!(snap.to_string().contains("hello"), "{snap}");

    // gRPC: a client without the token is refused and gets nothing; with it, the snapshot.
    let stop = CancellationToken::new();
    let config = |node: &str, token: Option<String>| ClientConfig {
        server: c.grpc(),
        node_id: node.into(),
        node_kind: "router".into(),
        token,
    };
    let without = client::spawn_with_state(
        config("router-anon", None),
        client::validate_basic,
        stop.clone(),
    );
    let with = client::spawn_with_state(
        config("router-ok", Some(token.clone())),
        client::validate_basic,
        stop.clone(),
    );
    let mut rx = with.snapshot.clone();
    tokio::time::timeout(DEADLINE, async {
        while rx.borrow_and_update().cluster_for("hello").is_none() {
            rx.changed().await.expect("client alive");
        }
    })
    .await
    .expect("the client with the token gets the snapshot");
    let mut st = without.state.clone();
    let refused = tokio::time::timeout(DEADLINE, async {
        loop {
            let s = st.borrow_and_update().clone();
            if let Some(e) = s.last_error.filter(|e| e.contains("token")) {
                return e;
            }
            st.changed().await.expect("client alive");
        }
    })
    .await
    .expect("the client without the token is told why");
    assert!(refused.contains("refused"), "{refused}");
    assert!(without.snapshot.borrow().cluster_for("hello").is_none());
    assert!(!without.state.borrow().connected);
    assert!(c.client("router-anon").await.is_none());
    stop.cancel();
}
