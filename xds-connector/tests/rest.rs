//! The REST API: bad input answers 400 JSON naming the problem, resources can be read and
//! written one by one, writes are idempotent, and the snapshot is kept in Redis.

mod support;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_400_json_naming_the_problem() {
    let redis = RedisServer::start();
    let c = Connector::start(&redis, "t-rest-bad").await;
    c.put_function("ok", &[("a", "127.0.0.1:9001")]).await;
    let before = c.ok("GET", "/v1/snapshot", None).await;

    /// (method, path, body, what the error must mention, the function it must name)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, Option<&'a str>);
    let cases: &[Case] = &[
        (
            "PUT",
            "/v1/functions/Bad_Name",
            Some("{}"),
            "invalid function name `Bad_Name`",
            Some("Bad_Name"),
        ),
        (
            "PUT",
            "/v1/functions/ok",
            Some("nope"),
            "invalid JSON body",
            Some("ok"),
        ),
        (
            "PUT",
            "/v1/functions/ok",
            Some(""),
            "body is empty",
            Some("ok"),
        ),
        (
            "PUT",
            "/v1/functions/ok",
            Some("{}"),
            "missing field `cluster`",
            Some("ok"),
        ),
        (
            "PUT",
            "/v1/functions/ok",
            Some(r#"{"cluster":{"max_concurrency":"x"}}"#),
            "at `cluster.max_concurrency`: invalid type",
            Some("ok"),
        ),
        (
            "PUT",
            "/v1/functions/ok",
            Some(r#"{"cluster":{"max_concurrency":-1}}"#),
            "at `cluster.max_concurrency`",
            Some("ok"),
        ),
        (
            "PUT",
            "/v1/functions/ok",
            Some(r#"{"cluster":{"max_concurency":1}}"#),
            "unknown field `max_concurency`",
            Some("ok"),
        ),
        (
            "PUT",
            "/v1/functions/ok",
            Some(r#"{"cluster":{"name":"other"}}"#),
            "cluster.name `other` does not match",
            Some("ok"),
        ),
        (
            "PUT",
            "/v1/functions/ok",
            Some(r#"{"cluster":{},"endpoints":[{"address":"127.0.0.1:1"}]}"#),
            "every endpoint needs an `id`",
            Some("ok"),
        ),
        (
            "PUT",
            "/v1/functions/ok",
            Some(r#"{"cluster":{},"endpoints":[{"id":"a"}]}"#),
            "at `endpoints[0]`: missing field `address`",
            Some("ok"),
        ),
        (
            "PUT",
            "/v1/functions/ok",
            Some(
                r#"{"cluster":{},"endpoints":[{"id":"a","address":"127.0.0.1:1"},{"id":"a","address":"127.0.0.1:2"}]}"#,
            ),
            "duplicate endpoint id `a`",
            Some("ok"),
        ),
        (
            "PUT",
            "/v1/endpoints/ok/a",
            Some(r#"{"address":"127.0.0.1:1","weight":"heavy"}"#),
            "at `weight`",
            Some("ok"),
        ),
        (
            "PUT",
            "/v1/endpoints/ok/b",
            Some(r#"{"id":"c","address":"127.0.0.1:1"}"#),
            "endpoint id `c` does not match",
            Some("ok"),
        ),
        (
            "POST",
            "/v1/endpoints/ok/a/health",
            Some(r#"{"health":"sick"}"#),
            "unknown variant `sick`",
            Some("ok"),
        ),
        (
            "PUT",
            "/v1/clusters/UPPER",
            Some("{}"),
            "must be a DNS label",
            Some("UPPER"),
        ),
        (
            "PUT",
            "/v1/routes/default",
            Some(r#"{"routes":[{"function":"Foo","cluster":"foo"}]}"#),
            "invalid function name `Foo`",
            Some("Foo"),
        ),
        (
            "PUT",
            "/v1/routes/default",
            Some(r#"{"routes":[{"function":"a","cluster":"a"},{"function":"a","cluster":"b"}]}"#),
            "routes function `a` twice",
            Some("a"),
        ),
        (
            "PUT",
            "/v1/routes/bad%20name",
            Some(r#"{"routes":[]}"#),
            "invalid route configuration name `bad name`",
            None,
        ),
        (
            "PUT",
            "/v1/listeners/router",
            Some(r#"{"address":"0.0.0.0:1"}"#),
            "missing field `route_config_name`",
            None,
        ),
        (
            "PUT",
            "/v1/snapshot",
            Some(r#"{"clusters":[{"name":"a"},{"name":"a"}]}"#),
            "cluster `a` appears twice",
            None,
        ),
    ];
    for (method, path, body, expected, function) in cases {
        let (status, json) = c.call(method, path, *body).await;
        assert_eq!(status, 400, "{method} {path} {body:?} → {json}");
        let error = json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error string: {json}"));
        assert!(
            error.contains(expected),
            "{method} {path}: `{error}` should mention `{expected}`"
        );
        match function {
            Some(f) => assert_eq!(json["function"], *f, "{method} {path}: {json}"),
            None => assert!(json.get("function").is_none(), "{method} {path}: {json}"),
        }
    }

    // Unknown things are 404 JSON, wrong methods 405 JSON.
    let (status, json) = c.call("GET", "/v1/clusters/nothere", None).await;
    assert_eq!((status, json["function"].as_str()), (404, Some("nothere")));
    let (status, json) = c.call("DELETE", "/v1/functions/nothere", None).await;
    assert_eq!(status, 404, "{json}");
    assert!(json["error"]
        .as_str()
        .unwrap_or("")
        .contains("`nothere` not found"));
    let (status, json) = c.call("DELETE", "/v1/endpoints/ok/zz", None).await;
    assert_eq!((status, json["function"].as_str()), (404, Some("ok")));
    let (status, json) = c.call("GET", "/v1/nothing", None).await;
    assert_eq!(status, 404);
    assert!(json["error"].is_string());
    let (status, json) = c.call("PATCH", "/v1/snapshot", None).await;
    assert_eq!(status, 405);
    assert!(json["error"].is_string());

    // Nothing of that changed the snapshot; every refusal was counted.
    assert_eq!(c.ok("GET", "/v1/snapshot", None).await, before);
    let stats = c.ok("GET", "/v1/stats", None).await;
    assert_eq!(stats["malformed_rest_requests"], cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_can_be_managed_one_by_one_and_writes_are_idempotent() {
    let redis = RedisServer::start();
    let c = Connector::start(&redis, "t-rest-ops").await;

    let r = c.put_function("hello", &[("c1", "127.0.0.1:9001")]).await;
    assert_eq!(r["changed"], true);
    assert_eq!(r["function"], "hello");
    let r = c.put_function("hello", &[("c1", "127.0.0.1:9001")]).await;
    assert_eq!(r["changed"], false, "same function again: no change");
    assert_eq!(r["versions"][CLUSTER_TYPE], "1");

    let f = c.ok("GET", "/v1/functions/hello", None).await;
    assert_eq!(f["routed"], true);
    assert_eq!(f["cluster"]["timeout_ms"], 30000);
    assert_eq!(f["endpoints"][0]["health"], "healthy");
    assert_eq!(f["endpoints"][0]["weight"], 1);

    // Endpoints one by one.
    c.ok(
        "PUT",
        "/v1/endpoints/hello/c2",
        Some(r#"{"address":"127.0.0.1:9002","weight":3,"max_concurrency":2}"#),
    )
    .await;
    let r = c
        .ok(
            "POST",
            "/v1/endpoints/hello/c2/health",
            Some(r#"{"health":"draining"}"#),
        )
        .await;
    assert_eq!(r["changed"], true);
    let r = c
        .ok(
            "POST",
            "/v1/endpoints/hello/c2/health",
            Some(r#"{"health":"draining"}"#),
        )
        .await;
    assert_eq!(r["changed"], false);
    let e = c.ok("GET", "/v1/endpoints/hello/c2", None).await;
    assert_eq!(
        e,
        json!({"id":"c2","address":"127.0.0.1:9002","weight":3,"max_concurrency":2,"health":"draining","replica":""})
    );
    let a = c.ok("GET", "/v1/endpoints/hello", None).await;
    assert_eq!(a["cluster_name"], "hello");
    let ids: Vec<&str> = a["endpoints"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids, ["c1", "c2"]);
    c.ok("DELETE", "/v1/endpoints/hello/c1", None).await;
    let a = c.ok("GET", "/v1/endpoints/hello", None).await;
    assert_eq!(a["endpoints"].as_array().map(Vec::len), Some(1));

    // Whole load assignment, routes and listeners.
    c.ok(
        "PUT",
        "/v1/endpoints/hello",
        Some(r#"{"endpoints":[{"id":"x","address":"127.0.0.1:9005"}]}"#),
    )
    .await;
    assert_eq!(
        c.ok("GET", "/v1/endpoints/hello", None).await["endpoints"][0]["id"],
        "x"
    );
    c.ok(
        "PUT",
        "/v1/clusters/other",
        Some(r#"{"max_concurrency":1}"#),
    )
    .await;
    c.ok(
        "PUT",
        "/v1/routes/extra",
        Some(r#"{"routes":[{"function":"alias","cluster":"other"}]}"#),
    )
    .await;
    assert_eq!(
        c.ok("GET", "/v1/routes/extra", None).await["routes"][0]["cluster"],
        "other"
    );
    c.ok(
        "PUT",
        "/v1/listeners/admin",
        Some(r#"{"address":"0.0.0.0:1","route_config_name":"extra"}"#),
    )
    .await;
    assert_eq!(
        c.ok("GET", "/v1/listeners/admin", None).await["route_config_name"],
        "extra"
    );
    c.ok("DELETE", "/v1/listeners/admin", None).await;
    c.ok("DELETE", "/v1/routes/extra", None).await;
    c.ok("DELETE", "/v1/clusters/other", None).await;
    assert_eq!(c.call("GET", "/v1/listeners/admin", None).await.0, 404);

    // Deleting the function removes its route, endpoints and cluster, and keeps `default`.
    c.ok("DELETE", "/v1/functions/hello", None).await;
    let snap = c.ok("GET", "/v1/snapshot", None).await;
    assert_eq!(snap["clusters"], json!([]));
    assert_eq!(snap["endpoints"], json!([]));
    assert_eq!(snap["routes"], json!([{"name":"default","routes":[]}]));
    assert_eq!(snap["listeners"][0]["name"], "router");
    let health = c.ok("GET", "/healthz", None).await;
    assert_eq!(health["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_is_kept_in_redis_under_the_instance_key() {
    let redis = RedisServer::start();
    let c = Connector::start(&redis, "t-rest-redis").await;
    c.put_function("hello", &[("c1", "127.0.0.1:9001")]).await;
    let served = c.ok("GET", "/v1/snapshot", None).await;

    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis");
    let stored: String = redis::cmd("GET")
        .arg("t-rest-redis:xds:snapshot")
        .query_async(&mut conn)
        .await
        .expect("the key exists");
    let stored: serde_json::Value = serde_json::from_str(&stored).expect("JSON record");
    assert_eq!(stored, served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_refuses_writes_with_503_and_changes_nothing() {
    let redis = RedisServer::start();
    let c = Connector::start(&redis, "t-rest-outage").await;
    c.put_function("hello", &[("c1", "127.0.0.1:9001")]).await;
    let before = c.ok("GET", "/v1/snapshot", None).await;

    drop(redis);
    let (status, json) = c
        .call(
            "PUT",
            "/v1/endpoints/hello/c2",
            Some(r#"{"address":"127.0.0.1:9002"}"#),
        )
        .await;
    assert_eq!(status, 503, "{json}");
    assert_eq!(json["function"], "hello");
    assert!(
        json["error"]
            .as_str()
            .unwrap_or("")
            .contains("cannot write `t-rest-outage:xds:snapshot`"),
        "{json}"
    );
    // Not persisted, so not applied or pushed either.
    assert_eq!(c.ok("GET", "/v1/snapshot", None).await, before);
    assert_eq!(c.ok("GET", "/healthz", None).await["status"], "ok");
}
