//! Function images, container hardening, crash loops, the deploy API and registry reloads, on
//! the real Docker engine.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use sluice_common::testing::wait_for;
use support::*;

fn entry(name: &str, folder: &str, lang: &str, base: &str, extra: &str) -> String {
    format!(
        r#"
{name}:
  name: {name}
  version: 0.1
  configuration:
    programming_language: {lang}
    base_function_file_name: {base}
    function_folder: {folder}
    extra_dependencies: "{extra}"
{extra_sections}"#,
        extra_sections = ""
    )
}

async fn wait_built(s: &Stack, name: &str) -> Value {
    wait_for(&format!("{name} image built"), LONG, || async {
        let f = s.function(name).await;
        match f["build"]["state"].as_str() {
            Some("ready") => Some(f),
            Some("failed") => panic!("build of {name} failed: {}", f["build"]["error"]),
            _ => None,
        }
    })
    .await
}

fn inspect(id: &str) -> Value {
    let out = docker(&["inspect", id]);
    let v: Value = serde_json::from_str(&out).expect("docker inspect JSON");
    v[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_are_hardened_and_limited() {
    let reg = r#"
hello:
  name: hello
  version: 0.1
  configuration:
    programing_language: python
    base_function_file_name: handler.py
    function_folder: hello
    extra_dependencies: ""
  limits:
    memory: 96Mi
    cpus: 0.5
    pids: 64
  env:
    GREETING: hi
"#;
    let mut s = Stack::new("hard", reg);
    s.start_orchestrator().await;
    wait_built(&s, "hello").await;
    assert_eq!(s.scale("hello", 1).await, 202);
    let f = s.wait_ready("hello", 1, Duration::from_secs(60)).await;
    let id = f["replicaList"][0]["id"].as_str().expect("id");
    let c = inspect(id);
    let hc = &c["HostConfig"];
    assert_eq!(c["Config"]["User"], "10001:10001", "runs as non-root");
    assert_eq!(hc["ReadonlyRootfs"], true);
    assert!(
        hc["Tmpfs"]["/tmp"]
            .as_str()
            .is_some_and(|t| t.contains("size=64m")),
        "tmpfs /tmp: {}",
        hc["Tmpfs"]
    );
    assert_eq!(hc["CapDrop"], json!(["ALL"]));
    assert!(hc["CapAdd"].is_null() || hc["CapAdd"] == json!([]));
    assert!(hc["SecurityOpt"]
        .as_array()
        .is_some_and(|o| o.iter().any(|x| x
            .as_str()
            .is_some_and(|x| x.starts_with("no-new-privileges")))));
    assert_eq!(hc["Memory"], 96 * 1024 * 1024);
    assert_eq!(
        hc["MemorySwap"],
        96 * 1024 * 1024,
        "no swap beyond the memory limit"
    );
    assert_eq!(hc["NanoCpus"], 500_000_000);
    assert_eq!(hc["PidsLimit"], 64);
    assert_eq!(
        hc["Ulimits"],
        json!([{"Name": "nofile", "Soft": 4096, "Hard": 4096}]),
        "an open-files limit"
    );
    assert_eq!(hc["LogConfig"]["Type"], "json-file");
    assert_eq!(
        hc["LogConfig"]["Config"],
        json!({"max-size": "10m", "max-file": "3"}),
        "logs rotated at a bounded size"
    );
    assert_eq!(hc["Privileged"], false);
    let mounts = c["Mounts"].as_array().cloned().unwrap_or_default();
    assert!(
        mounts
            .iter()
            .all(|m| !m["Source"].as_str().unwrap_or("").contains("docker.sock")),
        "no docker socket"
    );
    assert!(mounts.is_empty(), "no mounts at all: {mounts:?}");
    assert_eq!(c["Config"]["Labels"]["sluice.managed"], "true");
    assert_eq!(c["Config"]["Labels"]["sluice.function"], "hello");
    assert!(
        c["NetworkSettings"]["Networks"][&s.network].is_object(),
        "joined the function network"
    );
    let env: Vec<String> = serde_json::from_value(c["Config"]["Env"].clone()).expect("env");
    assert!(env.contains(&"GREETING=hi".to_string()));
    // The function really cannot write outside /tmp, and really is uid 10001.
    let out = docker(&[
        "exec",
        id,
        "sh",
        "-c",
        "id -u; touch /opt/function/x 2>&1; touch /tmp/ok && echo tmp-ok",
    ]);
    assert!(out.starts_with("10001"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("tmp-ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_looping_function_backs_off_visibly() {
    // Default cold_start_timeout (30 s): a replica that can never become ready is given up on
    // at once (the runtime's /_/ready answers 500), not after the timeout.
    let reg = entry("crashy", "crashy", "python", "handler.py", "");
    let mut s = Stack::new("crash", &reg);
    let dir = s.functions_dir().join("crashy");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("handler.py"), "raise RuntimeError('broken at import')\n\ndef handle(event, context):\n    return 'never'\n").expect("write");
    s.start_orchestrator().await;
    wait_built(&s, "crashy").await;
    assert_eq!(s.scale("crashy", 1).await, 202);
    let f = wait_for(
        "crash loop visible in the API",
        Duration::from_secs(20),
        || async {
            let f = s.function("crashy").await;
            let cl = &f["crashLoop"];
            (cl["consecutive_failures"].as_u64()? >= 2 && cl["retry_in_ms"].as_u64()? > 0)
                .then_some(f)
        },
    )
    .await;
    assert_eq!(f["availableReplicas"], 0);
    let last = f["crashLoop"]["last_error"].as_str().unwrap_or_default();
    assert!(!last.is_empty(), "the reason is shown: {f}");
    // Backing off: never more than one container at a time.
    for _ in 0..10 {
        assert!(s.containers("crashy", true).len() <= 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_api_validates_builds_python_deps_and_removes() {
    let mut s = Stack::new("api", &entry("hello", "hello", "python", "handler.py", ""));
    s.start_orchestrator().await;

    // Unknown function → 404 JSON.
    let (code, body) = s.get("/system/function/nope").await;
    assert_eq!(code, 404);
    assert_eq!(body["function"], "nope");
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("not found")));

    // Invalid definitions → 400 listing every error with its field.
    let bad = json!({
        "name": "Bad_Name",
        "version": "0.1",
        "configuration": { "programming_language": "cobol", "base_function_file_name": "x", "function_folder": "nope" },
        "scaling": { "max_replica": 3 }
    });
    let r = s
        .http
        .post(s.api("/system/functions"))
        .json(&bad)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    let errors = body["errors"].to_string();
    assert!(errors.contains("cobol"), "{errors}");
    assert!(
        errors.contains("max_replicas"),
        "suggests the right field: {errors}"
    );

    // A file function cannot be replaced or deleted over the API.
    let r = s
        .http
        .delete(s.api("/system/functions"))
        .json(&json!({"functionName": "hello"}))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 409);

    // Deploy `deps` (pip dependency installed at build time), call it, remove it.
    let deps = json!({
        "name": "deps",
        "version": "0.2",
        "configuration": {
            "programming_language": "python",
            "base_function_file_name": "handler.py",
            "function_folder": "deps",
            "extra_dependencies": "six==1.16.0"
        }
    });
    let r = s
        .http
        .post(s.api("/system/functions"))
        .json(&deps)
        .send()
        .await
        .expect("deploy");
    assert_eq!(r.status(), 202);
    let f = wait_built(&s, "deps").await;
    assert_eq!(f["image"], "sluice/fn-deps:0.2");
    assert_eq!(f["source"], "api");
    // Scale outside [min, max] is refused.
    assert_eq!(s.scale("deps", 11).await, 400);
    assert_eq!(s.scale("deps", 1).await, 202);
    let f = s.wait_ready("deps", 1, Duration::from_secs(60)).await;
    let addr = f["replicaList"][0]["address"]
        .as_str()
        .expect("address")
        .to_string();
    let token = runtime_token(f["replicaList"][0]["id"].as_str().expect("id"));
    let body = s
        .http
        .get(format!("http://{addr}/"))
        .header(sluice_common::runtime::HEADER, token)
        .send()
        .await
        .expect("call")
        .text()
        .await
        .expect("body");
    assert!(
        body.contains("1.16.0"),
        "six imported from the image: {body}"
    );

    let r = s
        .http
        .delete(s.api("/system/functions"))
        .json(&json!({"functionName": "deps"}))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 202);
    wait_for("deps removed", Duration::from_secs(60), || async {
        let (code, _) = s.get("/system/function/deps").await;
        (code == 404 && s.containers("deps", true).is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_function_is_compiled_into_its_image() {
    let mut s = Stack::new("rust", &entry("echo", "echo", "rust", "src/main.rs", ""));
    s.start_orchestrator().await;
    wait_built(&s, "echo").await;
    assert_eq!(s.scale("echo", 1).await, 202);
    let f = s.wait_ready("echo", 1, Duration::from_secs(60)).await;
    let addr = f["replicaList"][0]["address"]
        .as_str()
        .expect("address")
        .to_string();
    let payload = vec![0u8, 159, 146, 150, b'h', b'i'];
    let token = runtime_token(f["replicaList"][0]["id"].as_str().expect("id"));
    let r = s
        .http
        .post(format!("http://{addr}/"))
        .header(sluice_common::runtime::HEADER, token)
        .body(payload.clone())
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("body").to_vec(), payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_edits_add_roll_reject_and_remove() {
    let hello = entry("hello", "hello", "python", "handler.py", "");
    let mut s = Stack::new("reload", &hello);
    s.start_orchestrator().await;
    wait_built(&s, "hello").await;
    assert_eq!(s.scale("hello", 1).await, 202);
    let f = s.wait_ready("hello", 1, Duration::from_secs(60)).await;
    let first = replica_ids(&f);

    // Add a function: it appears without a restart.
    let sleep = entry("sleep", "sleep", "python", "handler.py", "");
    std::fs::write(s.registry_path(), format!("{hello}{sleep}")).expect("write");
    wait_built(&s, "sleep").await;

    // A bad edit is rejected with its line; the last good registry stays.
    std::fs::write(
        s.registry_path(),
        format!("{hello}{sleep}  scaling:\n    max_replica: 3\n"),
    )
    .expect("write");
    let st = wait_for("bad registry rejected", Duration::from_secs(20), || async {
        let (_, st) = s.get("/system/registry").await;
        (!st["errors"].as_array()?.is_empty()).then_some(st)
    })
    .await;
    let err = st["errors"][0].as_str().expect("error line");
    assert!(
        err.contains(":20:5:")
            && err.contains("max_replica")
            && err.contains("did you mean `max_replicas`"),
        "{err}"
    );
    assert_eq!(s.function("sleep").await["name"], "sleep");
    assert_eq!(replica_ids(&s.function("hello").await), first);

    // Change hello's environment: it rolls (new replica first), never dropping below 1 ready.
    let hello2 = format!("{hello}  env:\n    GREETING: rolled\n");
    std::fs::write(s.registry_path(), format!("{hello2}{sleep}")).expect("write");
    let f = wait_for("hello rolled", Duration::from_secs(60), || async {
        let f = s.function("hello").await;
        assert!(
            f["availableReplicas"].as_u64().unwrap_or(0) >= 1,
            "ready replicas dropped to 0 during the roll"
        );
        let ids = replica_ids(&f);
        (ids.len() == 1 && ids != first && f["availableReplicas"] == 1).then_some(f)
    })
    .await;
    let id = f["replicaList"][0]["id"].as_str().expect("id");
    let env = inspect(id)["Config"]["Env"].to_string();
    assert!(env.contains("GREETING=rolled"), "{env}");
    assert_eq!(
        s.containers("hello", true),
        replica_ids(&f),
        "the old replica is gone"
    );

    // Remove sleep from the file: it is drained and forgotten.
    std::fs::write(s.registry_path(), &hello2).expect("write");
    wait_for("sleep removed", Duration::from_secs(30), || async {
        let (code, _) = s.get("/system/function/sleep").await;
        (code == 404).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_pool_serves_scale_ups_by_unpausing_and_refills() {
    let reg = format!(
        "{}  scaling:\n    warm_pool: 1\n",
        entry("hello", "hello", "python", "handler.py", "")
    );
    let mut s = Stack::new("pool", &reg);
    s.start_orchestrator().await;
    wait_built(&s, "hello").await;
    // The pool fills: one paused container, not ready, not routable.
    let pooled = wait_for("warm pool filled", Duration::from_secs(60), || async {
        let f = s.function("hello").await;
        let list = f["replicaList"].as_array()?;
        let p = list.iter().find(|r| r["state"] == "pooled")?;
        (f["pooledReplicas"] == 1 && f["availableReplicas"] == 0)
            .then(|| p["id"].as_str().map(str::to_string))?
    })
    .await;
    assert_eq!(
        inspect(&pooled)["State"]["Paused"],
        true,
        "pool members are paused"
    );

    // Scale to 1: the pooled container is unpaused and serves.
    assert_eq!(s.scale("hello", 1).await, 202);
    let f = wait_for(
        "replica from the pool ready",
        Duration::from_secs(30),
        || async {
            let f = s.function("hello").await;
            let ready = f["replicaList"]
                .as_array()?
                .iter()
                .any(|r| r["state"] == "ready" && r["id"] == pooled.as_str());
            ready.then_some(f)
        },
    )
    .await;
    assert_eq!(inspect(&pooled)["State"]["Paused"], false);
    let addr = f["replicaList"]
        .as_array()
        .and_then(|l| l.iter().find(|r| r["id"] == pooled.as_str()))
        .and_then(|r| r["address"].as_str())
        .expect("address")
        .to_string();
    let body = s
        .http
        .get(format!("http://{addr}/?name=pool"))
        .header(sluice_common::runtime::HEADER, runtime_token(&pooled))
        .send()
        .await
        .expect("call")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "Hello, pool");

    // The pool refills in the background with a new paused container.
    wait_for("warm pool refilled", Duration::from_secs(60), || async {
        let f = s.function("hello").await;
        let list = f["replicaList"].as_array()?;
        list.iter()
            .any(|r| r["state"] == "pooled" && r["id"] != pooled.as_str())
            .then_some(())
    })
    .await;

    // Scale to zero: nothing runs; only the (paused) pool member remains.
    assert_eq!(s.scale("hello", 0).await, 202);
    wait_for(
        "scaled to zero, pool kept",
        Duration::from_secs(60),
        || async {
            let f = s.function("hello").await;
            let running: Vec<String> = s
                .containers("hello", false)
                .into_iter()
                .filter(|id| inspect(id)["State"]["Paused"] == false)
                .collect();
            (f["availableReplicas"] == 0 && f["pooledReplicas"] == 1 && running.is_empty())
                .then_some(())
        },
    )
    .await;
}
