//! The platform's doors, tried for real on the compose stack as `make up` runs it: every
//! `/system` call without the right credential is refused, API keys carry scopes and can be
//! revoked, a function declared `auth: key` needs an invoke key while public functions stay
//! public, and failed attempts are rate-limited. Nothing is mocked: real engine, real
//! services, real HTTP through the gateway's published port.

use sluice_stack as stack_support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sluice_common::testing::wait_for;
use stack_support::*;

fn registry() -> String {
    let entry = |name: &str, folder: &str, extra: &str| {
        format!(
            "{name}:\n  version: 0.1\n  configuration:\n    programing_language: python\n    base_function_file_name: handler.py\n    function_folder: {folder}\n{extra}"
        )
    };
    [
        entry("hello", "hello", ""),
        // Answers the headers it got (orchestrator/tests/functions/headers-probe).
        entry("private", "headers-probe", "  auth: key\n"),
        entry("open", "hello", "  egress: internet\n"),
        // Answer what they see of a secret (orchestrator/tests/functions/secret-probe).
        entry("keeper", "secret-probe", "  secrets: [db-password]\n"),
        entry("bystander", "secret-probe", ""),
    ]
    .join("")
}

/// Sends `method path` with `auth` (an `Authorization` value) and `body`; status, headers
/// and body text.
async fn call(
    s: &ComposeStack,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut req = s.http.request(method, s.url(path));
    if let Some(a) = auth {
        req = req.header(reqwest::header::AUTHORIZATION, a);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.text().await.expect("body"))
}

/// Every `/system` call a user can make, with a plausible body.
fn system_calls() -> Vec<(Method, &'static str, Option<Value>)> {
    let f = json!({"name": "x", "configuration": {"programing_language": "python",
        "base_function_file_name": "handler.py", "function_folder": "hello"}});
    vec![
        (Method::GET, "/system/info", None),
        (Method::GET, "/system/functions", None),
        (Method::POST, "/system/functions", Some(f.clone())),
        (Method::PUT, "/system/functions", Some(f)),
        (
            Method::DELETE,
            "/system/functions",
            Some(json!({"functionName": "hello"})),
        ),
        (Method::GET, "/system/function/hello", None),
        (
            Method::POST,
            "/system/scale-function/hello",
            Some(json!({"replicas": 3})),
        ),
        (Method::GET, "/system/registry", None),
        (Method::POST, "/system/registry/reload", None),
        (Method::GET, "/system/mdf", None),
        (Method::GET, "/system/keys", None),
        (
            Method::POST,
            "/system/keys",
            Some(json!({"name": "x", "scopes": ["admin"]})),
        ),
        (Method::DELETE, "/system/keys/0123456789abcdef", None),
        (Method::GET, "/system/secrets", None),
        (
            Method::POST,
            "/system/secrets",
            Some(json!({"name": "x", "value": "y"})),
        ),
        (
            Method::PUT,
            "/system/secrets",
            Some(json!({"name": "x", "value": "y"})),
        ),
        (
            Method::DELETE,
            "/system/secrets",
            Some(json!({"name": "x"})),
        ),
    ]
}

/// Every address of a compose service's container.
fn addresses(s: &ComposeStack, service: &str) -> Vec<String> {
    docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        &s.service(service),
    ])
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

/// Connects from inside a `hello` replica to every control-plane port, on every address.
async fn function_cannot_reach_the_control_plane(s: &ComposeStack) {
    let ports: [(&str, &[u16]); 5] = [
        ("redis", &[6379]),
        ("xds-connector", &[18000, 8081]),
        ("stats-listener", &[8126]),
        ("orchestrator", &[8082]),
        ("router", &[10000, 10001]),
    ];
    let mut targets = Vec::new();
    for (svc, ps) in ports {
        let ips = addresses(s, svc);
        assert!(!ips.is_empty(), "{svc} has an address");
        for ip in ips {
            for p in ps {
                targets.push(format!("{ip}:{p}"));
            }
        }
    }
    // The host, seen from the function network (its bridge address), at the gateway's port,
    // and somewhere outside.
    let bridge = docker(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        &s.network,
    ]);
    targets.push(format!("{}:{}", bridge.trim(), s.port));
    targets.push("192.0.2.1:80".into());
    let state = format!("{}:6379", addresses(s, "state-redis")[0]);
    let replica = s.containers("hello", false);
    let replica = replica.first().expect("a hello replica runs");
    // A small probe run by the function image's own python: one line per target.
    let probe = r#"
import socket, sys
for t in sys.argv[1:]:
    host, port = t.rsplit(":", 1)
    try:
        c = socket.create_connection((host, int(port)), timeout=3)
        c.sendall(b"PING\r\n")
        c.settimeout(3)
        try:
            got = c.recv(64).decode(errors="replace").strip()
        except OSError as e:
            got = "no answer"
        print(t, "open", got)
    except OSError as e:
        print(t, "closed", e)
"#;
    let mut args = vec!["exec", replica.as_str(), "python3", "-c", probe];
    args.extend(targets.iter().map(String::as_str));
    args.push(&state);
    let run = std::process::Command::new("docker")
        .args(&args)
        .output()
        .expect("docker exec");
    let out = String::from_utf8_lossy(&run.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        targets.len() + 1,
        "{out}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for (t, line) in targets.iter().zip(&lines) {
        assert!(
            line.starts_with(&format!("{t} closed")),
            "reachable from a function: {line}"
        );
    }
    let last = lines.last().copied().unwrap_or("");
    assert!(
        last.starts_with(&format!("{state} open -NOAUTH")),
        "the state store answers, asking for a password: {last}"
    );

    // Functions call functions through the gateway, as any caller: a public one answers,
    // the control API wants credentials.
    let call = r#"
import sys, urllib.request, urllib.error
for path in sys.argv[1:]:
    try:
        print(path, urllib.request.urlopen("http://gateway:8080" + path, timeout=10).status)
    except urllib.error.HTTPError as e:
        print(path, e.code)
"#;
    let out = docker(&[
        "exec",
        replica,
        "python3",
        "-c",
        call,
        "/hello",
        "/system/functions",
    ]);
    assert_eq!(out, "/hello 200\n/system/functions 401", "{out}");
}

async fn new_key(s: &ComposeStack, admin: &str, name: &str, scopes: &[&str]) -> (String, String) {
    let (st, _, body) = call(
        s,
        Method::POST,
        "/system/keys",
        Some(admin),
        Some(json!({"name": name, "scopes": scopes})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    (
        v["id"].as_str().expect("id").to_string(),
        v["key"].as_str().expect("key").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_control_api_and_private_functions_need_the_right_credentials() {
    let s = ComposeStack::up_with("sec", &registry(), false).await;
    s.wait_built("hello").await;
    s.wait_built("private").await;
    s.wait_built("open").await;
    s.wait_built("keeper").await;
    s.wait_built("bystander").await;
    let admin = sluice_common::auth::basic("admin", &s.admin_password);
    let wrong = sluice_common::auth::basic("admin", "not-the-password");

    // No credential: 401 with both challenges, for every kind of call, and nothing changed.
    for (m, path, body) in system_calls() {
        let (st, h, text) = call(&s, m.clone(), path, None, body).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{m} {path}: {text}");
        let challenges: Vec<&str> = h
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert!(
            challenges.iter().any(|c| c.starts_with("Basic"))
                && challenges.iter().any(|c| c.starts_with("Bearer")),
            "{m} {path}: {challenges:?}"
        );
        assert!(serde_json::from_str::<Value>(&text).is_ok(), "{text}");
    }
    // A wrong password, a malformed header and a made-up key: 401 too.
    for bad in [
        wrong.as_str(),
        "Basic !!!",
        "Bearer sluice_0123456789abcdef_00000000000000000000000000000000000000000000000000000000000000ff",
    ] {
        let (st, _, text) = call(&s, Method::GET, "/system/functions", Some(bad), None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{bad}: {text}");
    }
    // The refused deploy, scale and delete did nothing.
    let f = s.function("hello").await;
    assert_eq!(f["replicas"], 0, "{f}");
    assert_eq!(s.function("x").await["name"], Value::Null);

    // The right password works; public functions need nothing; the gateway's internal
    // paths are not reachable through it.
    let (st, _, text) = call(&s, Method::GET, "/system/functions", Some(&admin), None).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let (st, _, text) = call(&s, Method::GET, "/hello", None, None).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    for path in ["/internal/wake/hello", "/internal/auth/invoke"] {
        let (st, _, _) = call(&s, Method::POST, path, None, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}");
    }

    // From inside a running function, nothing of the control plane answers, on any of its
    // addresses; the functions' own store answers but wants a password; nothing outside is
    // routed. The function itself still answers through the gateway.
    function_cannot_reach_the_control_plane(&s).await;
    let (st, _, text) = call(&s, Method::GET, "/hello", None, None).await;
    assert_eq!(st, StatusCode::OK, "{text}");

    // Egress is per function: by default a replica is on the internal function network
    // only (the probe above saw nothing outside answer); `egress: internet` adds a network
    // with a route out. (Shown by the engine's view: no packet is sent outside here.)
    let (st, _, text) = call(&s, Method::GET, "/open", None, None).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let egress = format!("{}-egress", s.network);
    for (function, nets) in [
        ("hello", vec![s.network.clone()]),
        ("open", {
            let mut v = vec![s.network.clone(), egress.clone()];
            v.sort();
            v
        }),
    ] {
        let replica = s.containers(function, false);
        let got = docker(&[
            "inspect",
            "-f",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
            &replica[0],
        ]);
        let mut got: Vec<String> = got.split_whitespace().map(str::to_string).collect();
        got.sort();
        assert_eq!(got, nets, "{function}");
    }
    // Other functions' runtimes, though on the same network, answer nothing but the
    // platform: from inside `hello`, calls straight to an `open` replica are refused, with
    // no token or with `hello`'s own; through the gateway `open` answers (above).
    let open_ip = docker(&[
        "inspect",
        "-f",
        &format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            s.network
        ),
        &s.containers("open", false)[0],
    ]);
    let direct = r#"
import os, sys, urllib.request, urllib.error
own = os.environ["SLUICE_RUNTIME_TOKEN"]
for path, token in (("/", None), ("/_/ready", None), ("/", own)):
    req = urllib.request.Request("http://" + sys.argv[1] + ":8080" + path)
    if token:
        req.add_header("x-sluice-runtime-token", token)
    try:
        print(path, urllib.request.urlopen(req, timeout=10).status)
    except urllib.error.HTTPError as e:
        print(path, e.code)
"#;
    let hello = s.containers("hello", false);
    let out = docker(&["exec", &hello[0], "python3", "-c", direct, &open_ip]);
    assert_eq!(out, "/ 403\n/_/ready 403\n/ 403", "{out}");

    for (net, internal) in [(&s.network, "true"), (&egress, "false")] {
        assert_eq!(
            docker(&["network", "inspect", "-f", "{{.Internal}}", net]),
            internal,
            "{net}"
        );
    }

    // The xds-connector, as deployed, wants its token: its own health probe (no token) is
    // refused on the snapshot and served on /healthz. Routing works, so the services that
    // hold the token use it.
    let xds = s.service("xds-connector");
    let probe = |path: &str| {
        std::process::Command::new("docker")
            .args(["exec", &xds, "/usr/local/bin/xds-connector", "healthcheck"])
            .arg(format!("http://127.0.0.1:8081{path}"))
            .output()
            .expect("docker exec")
    };
    assert!(probe("/healthz").status.success());
    let refused = probe("/v1/snapshot");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401")
            || String::from_utf8_lossy(&refused.stdout).contains("401"),
        "{refused:?}"
    );

    // The orchestrator reaches the engine only through the filter, which refuses what a
    // compromised orchestrator would ask: tried on the deployed filter's own socket.
    engine_filter_refuses_host_escapes(&s);

    // Keys carry scopes.
    let (deploy_id, deploy) = new_key(&s, &admin, "ci", &["deploy"]).await;
    let (invoke_id, invoke) = new_key(&s, &admin, "client", &["invoke"]).await;
    let bearer = |k: &str| format!("Bearer {k}");
    let (st, _, _) = call(
        &s,
        Method::GET,
        "/system/functions",
        Some(&bearer(&deploy)),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, text) = call(
        &s,
        Method::POST,
        "/system/scale-function/hello",
        Some(&bearer(&deploy)),
        Some(json!({"replicas": 1})),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{text}");
    for (key, path) in [(&deploy, "/system/keys"), (&invoke, "/system/functions")] {
        let (st, _, text) = call(&s, Method::GET, path, Some(&bearer(key)), None).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {text}");
    }
    // Listing shows ids, names and scopes, never a secret or its hash.
    let (_, _, text) = call(&s, Method::GET, "/system/keys", Some(&admin), None).await;
    let keys: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(keys.as_array().map(Vec::len), Some(2), "{keys}");
    assert!(
        !text.contains(&deploy[deploy.len() - 64..]) && !text.contains("hash"),
        "{text}"
    );

    // A function declared `auth: key`: 401 without a key, 403 with one lacking the scope,
    // 200 with an invoke key or the admin's password.
    let (st, h, text) = call(&s, Method::GET, "/private", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{text}");
    assert!(h.contains_key(reqwest::header::WWW_AUTHENTICATE));
    let (st, _, text) = call(&s, Method::GET, "/private", Some(&bearer(&deploy)), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{text}");
    // The credential that let the call in is the platform's: the function never sees it.
    for a in [bearer(&invoke), admin.clone()] {
        let (st, _, text) = call(&s, Method::GET, "/private", Some(&a), None).await;
        assert_eq!(st, StatusCode::OK, "{text}");
        let seen: Value = serde_json::from_str(&text).expect("headers as JSON");
        assert!(seen.get("authorization").is_none(), "{seen}");
        assert!(
            seen.get("user-agent").is_some() || seen.get("host").is_some(),
            "{seen}"
        );
    }

    let (_, deploy_key_for_secrets) = new_key(&s, &admin, "ci-2", &["deploy"]).await;

    // Revoked keys stop working: at once on /system, within the gateway's 5 s on calls.
    for id in [&deploy_id, &invoke_id] {
        let (st, _, text) = call(
            &s,
            Method::DELETE,
            &format!("/system/keys/{id}"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{text}");
    }
    let (st, _, _) = call(
        &s,
        Method::GET,
        "/system/functions",
        Some(&bearer(&deploy)),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    wait_for(
        "the revoked invoke key refused",
        Duration::from_secs(20),
        || async {
            let (st, _, _) = call(&s, Method::GET, "/private", Some(&bearer(&invoke)), None).await;
            (st == StatusCode::UNAUTHORIZED).then_some(())
        },
    )
    .await;

    secrets_reach_their_function_only(&s, &admin, &bearer(&deploy_key_for_secrets)).await;

    // Failed attempts are limited per address: once out of attempts (a refill more than a
    // second away), even the right password is refused unchecked, with Retry-After.
    wait_for(
        "429 after repeated wrong passwords",
        Duration::from_secs(60),
        || async {
            let (st, h, _) = call(&s, Method::GET, "/system/info", Some(&wrong), None).await;
            let after: u64 = h
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0);
            (st == StatusCode::TOO_MANY_REQUESTS && after >= 2).then_some(())
        },
    )
    .await;
    let (st, h, _) = call(&s, Method::GET, "/system/info", Some(&admin), None).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert!(h.contains_key(reqwest::header::RETRY_AFTER));
    // Public functions are not affected.
    let (st, _, _) = call(&s, Method::GET, "/hello", None, None).await;
    assert_eq!(st, StatusCode::OK);
}

/// What `secret-probe` function `function` sees of secret `name`.
async fn probe_secret(s: &ComposeStack, function: &str, name: &str) -> Value {
    let (st, _, text) = call(
        s,
        Method::GET,
        &format!("/{function}?name={name}"),
        None,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{function}: {text}");
    serde_json::from_str(&text).expect("probe JSON")
}

/// The secret's value, read from the control Redis as stored.
fn stored_secret(s: &ComposeStack, name: &str) -> String {
    docker(&[
        "exec",
        &s.service("redis"),
        "sh",
        "-c",
        r#"redis-cli --no-auth-warning -a "$(cat /run/sluice-secret/redis-password)" HGET "$0:secrets" "$1""#,
        &s.project,
        name,
    ])
}

/// Secrets: OpenFaaS's API (admin only), a read-only file in the functions that list them
/// and nowhere else (not other functions, the environment, `docker inspect`, the API or
/// Redis in clear), new values roll the replicas, and a listed secret is not deleted.
async fn secrets_reach_their_function_only(s: &ComposeStack, admin: &str, deploy: &str) {
    use base64::Engine as _;
    let v1 = format!("v1-{:032x}", rand::random::<u128>());
    let v2 = format!("v2-{:032x}", rand::random::<u128>());
    let post = |auth: &str, body: Value| {
        let auth = auth.to_string();
        async move { call(s, Method::POST, "/system/secrets", Some(&auth), Some(body)).await }
    };

    // A deploy listing a secret that does not exist is refused; so is a deploy key on
    // secrets (admin only).
    let (st, _, text) = call(
        s,
        Method::POST,
        "/system/functions",
        Some(admin),
        Some(
            json!({"name": "needs-missing", "version": "0.1", "secrets": ["nope"], "configuration": {
            "programing_language": "python", "base_function_file_name": "handler.py",
            "function_folder": "hello"}}),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("nope"), "{text}");
    let (st, _, _) = post(deploy, json!({"name": "db-password", "value": v1})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Create (once), with bad names and a missing one refused.
    let (st, _, text) = post(admin, json!({"name": "db-password", "value": v1})).await;
    assert_eq!(st, StatusCode::CREATED, "{text}");
    let (st, _, text) = post(admin, json!({"name": "db-password", "value": "other"})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{text}");
    let (st, _, text) = post(admin, json!({"name": "../etc/passwd", "value": "x"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    let (st, _, text) = call(
        s,
        Method::PUT,
        "/system/secrets",
        Some(admin),
        Some(json!({"name": "absent", "value": "x"})),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{text}");

    // Listed by name, with who uses it, never with the value.
    let (st, _, text) = call(s, Method::GET, "/system/secrets", Some(admin), None).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let list: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(list[0]["name"], "db-password", "{list}");
    assert_eq!(list[0]["usedBy"], json!(["keeper"]), "{list}");
    assert!(!text.contains(&v1), "{text}");

    // The function that lists it reads it at the documented path, and can neither change
    // it nor add a file; it is not in its environment. Another function has no such file.
    let seen = probe_secret(s, "keeper", "db-password").await;
    assert_eq!(seen["value"], v1.as_str(), "{seen}");
    assert_eq!(seen["can_change"], false, "{seen}");
    assert_eq!(seen["can_add"], false, "{seen}");
    assert_eq!(seen["in_env"], false, "{seen}");
    assert_eq!(
        probe_secret(s, "bystander", "db-password").await["value"],
        Value::Null
    );

    // Not in `docker inspect`, not in the function's API view, not in Redis in clear.
    let keeper = s.containers("keeper", false);
    assert_eq!(keeper.len(), 1, "{keeper:?}");
    let inspected = docker(&["inspect", &keeper[0]]);
    assert!(
        inspected.contains("/var/openfaas/secrets"),
        "the folder is a volume"
    );
    assert!(!inspected.contains(&v1), "docker inspect shows the value");
    let (_, _, text) = call(s, Method::GET, "/system/function/keeper", Some(admin), None).await;
    assert!(!text.contains(&v1), "{text}");
    let stored = stored_secret(s, "db-password");
    assert!(stored.contains("\"nonce\""), "{stored}");
    assert!(
        !stored.contains(&v1) && !stored.contains(&hex::encode(&v1)),
        "Redis holds the value in clear: {stored}"
    );
    let old_volume = docker(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{if eq .Destination \"/var/openfaas/secrets\"}}{{.Name}}{{end}}{{end}}",
        &keeper[0],
    ]);
    assert!(!old_volume.is_empty());

    // A new value (OpenFaaS's base64 `rawValue`) replaces the replica: the function reads
    // it, and the old replica's copy is gone with its container.
    let (st, _, text) = call(
        s,
        Method::PUT,
        "/system/secrets",
        Some(admin),
        Some(json!({"name": "db-password",
            "rawValue": base64::engine::general_purpose::STANDARD.encode(&v2)})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{text}");
    wait_for(
        "keeper reads the new value",
        Duration::from_secs(120),
        || async {
            (probe_secret(s, "keeper", "db-password").await["value"] == v2.as_str()).then_some(())
        },
    )
    .await;
    wait_for(
        "the old replica's secrets volume removed",
        Duration::from_secs(120),
        || async {
            let gone = !std::process::Command::new("docker")
                .args(["volume", "inspect", &old_volume])
                .output()
                .expect("docker")
                .status
                .success();
            gone.then_some(())
        },
    )
    .await;

    // A listed secret is not deleted; an unlisted one is, once.
    let (st, _, text) = call(
        s,
        Method::DELETE,
        "/system/secrets",
        Some(admin),
        Some(json!({"name": "db-password"})),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{text}");
    assert!(text.contains("keeper"), "{text}");
    // As `curl -d '{...}'` sends it (a form content type): read as JSON all the same.
    let r = s
        .http
        .post(s.url("/system/secrets"))
        .header(reqwest::header::AUTHORIZATION, admin)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(r#"{"name": "spare", "value": "x"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::CREATED);
    for want in [StatusCode::OK, StatusCode::NOT_FOUND] {
        let (st, _, text) = call(
            s,
            Method::DELETE,
            "/system/secrets",
            Some(admin),
            Some(json!({"name": "spare"})),
        )
        .await;
        assert_eq!(st, want, "{text}");
    }
}

/// Sends create calls to the deployed engine filter's socket (the `engine-socket` volume, as
/// the orchestrator sees it) from a throwaway container: a privileged container and a bind
/// mount of `/` are refused with 403; the orchestrator's own launches work (the stack runs).
fn engine_filter_refuses_host_escapes(s: &ComposeStack) {
    let volume = format!("{}_engine-socket", s.project);
    let script = r#"
import json, socket, sys
def call(method, path, body):
    s = socket.socket(socket.AF_UNIX)
    s.connect("/engine/docker.sock")
    data = json.dumps(body).encode()
    s.sendall(("%s %s HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\nConnection: close\r\n\r\n" % (method, path, len(data))).encode() + data)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    return head.split(b" ")[1].decode() + " " + body.decode(errors="replace").replace("\n", " ")
instance, network = sys.argv[1], sys.argv[2]
base = {"Image": "sluice/base:0.1.0", "Cmd": ["true"], "User": "10001:10001",
        "Labels": {"sluice.instance": instance},
        "HostConfig": {"NetworkMode": network, "CapDrop": ["ALL"], "ReadonlyRootfs": True,
                       "SecurityOpt": ["no-new-privileges:true"]}}
for extra in ({"Privileged": True}, {"Binds": ["/:/host"]},
              {"Mounts": [{"Type": "bind", "Source": "/", "Target": "/host"}]}):
    body = json.loads(json.dumps(base))
    body["HostConfig"].update(extra)
    print(call("POST", "/containers/create?name=%s-escape" % instance, body))
print(call("POST", "/containers/create?name=%s-escape" % instance,
           dict(base, HostConfig=dict(base["HostConfig"], NetworkMode="host"))))
print(call("GET", "/containers/json?all=1", {}))
"#;
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "python3",
        "-v",
        &format!("{volume}:/engine:ro"),
        "sluice/python:0.1.0",
        "-c",
        script,
        &s.project,
        &s.network,
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    for line in &lines {
        assert!(
            line.starts_with("403 ") && line.contains("engine filter"),
            "refused: {line}"
        );
    }
    assert!(lines[0].contains("privileged"), "{}", lines[0]);
    assert!(lines[1].contains("Binds"), "{}", lines[1]);
    assert!(lines[2].contains("bind mount"), "{}", lines[2]);
    assert!(lines[3].contains("host network"), "{}", lines[3]);
    assert!(lines[4].contains("filter on label"), "{}", lines[4]);
    let made = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("name={}-escape", s.project),
    ]);
    assert!(made.is_empty(), "a refused create made a container: {made}");
}
