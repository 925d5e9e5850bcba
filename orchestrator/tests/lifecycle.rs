//! The orchestrator on the real Docker engine: deploy → build → scale → kill → replace →
//! restart-and-adopt → scale to zero.

mod support;

use std::time::Duration;

use support::*;

const HELLO: &str = r#"
hello:
  name: hello
  version: 0.1
  configuration:
    programing_language: python
    base_function_file_name: handler.py
    function_folder: hello
    extra_dependencies: ""
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_lifecycle_scale_kill_adopt_and_scale_to_zero() {
    let mut s = Stack::new("life", HELLO);
    s.start_orchestrator().await;

    // Deploy (from the file) builds the image.
    sluice_common::testing::wait_for("hello image built", LONG, || async {
        let f = s.function("hello").await;
        (f["build"]["state"] == "ready").then_some(())
    })
    .await;
    let f = s.function("hello").await;
    assert_eq!(f["image"], "sluice/fn-hello:0.1");
    assert_eq!(
        f["replicas"], 0,
        "min_replicas defaults to 0: nothing runs yet"
    );
    assert!(s.containers("hello", true).is_empty());

    // Scale to 1 → ready → the replica answers.
    assert_eq!(s.scale("hello", 1).await, 202);
    let f = s.wait_ready("hello", 1, Duration::from_secs(60)).await;
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
        .expect("call replica")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "Hello, world");

    // Scale to 3.
    assert_eq!(s.scale("hello", 3).await, 202);
    let f = s.wait_ready("hello", 3, Duration::from_secs(60)).await;
    let before = replica_ids(&f);
    assert_eq!(
        s.containers("hello", true),
        before,
        "exactly the 3 replicas exist"
    );

    // Kill one: it is replaced.
    let victim = before[1].clone();
    docker(&["kill", &victim]);
    let f = sluice_common::testing::wait_for(
        "killed replica replaced",
        Duration::from_secs(60),
        || async {
            let f = s.function("hello").await;
            let ids = replica_ids(&f);
            (f["availableReplicas"] == 3 && ids.len() == 3 && !ids.contains(&victim)).then_some(f)
        },
    )
    .await;
    let after_kill = replica_ids(&f);
    assert_eq!(
        s.containers("hello", true),
        after_kill,
        "the dead container was removed"
    );

    // Restart the orchestrator at steady state: it adopts, creates nothing.
    assert!(
        s.stop_orchestrator(),
        "orchestrator exits cleanly on SIGTERM"
    );
    assert_eq!(
        s.containers("hello", false),
        after_kill,
        "replicas outlive the orchestrator"
    );
    s.start_orchestrator().await;
    let f = s.wait_ready("hello", 3, Duration::from_secs(30)).await;
    assert_eq!(replica_ids(&f), after_kill, "adopted, not recreated");
    assert_eq!(s.containers("hello", true), after_kill, "no duplicates");

    // Restart in the middle of a scale-up: no duplicates, no orphans.
    assert_eq!(s.scale("hello", 5).await, 202);
    sluice_common::testing::wait_for("scale-up under way", Duration::from_secs(30), || async {
        (s.containers("hello", true).len() > 3).then_some(())
    })
    .await;
    assert!(s.stop_orchestrator());
    s.start_orchestrator().await;
    // A create the old process had in flight at its exit can land after the new one looked:
    // the periodic resync (2 s here) finds and removes it.
    s.wait_ready("hello", 5, Duration::from_secs(60)).await;
    sluice_common::testing::wait_for(
        "exactly the 5 replicas exist",
        Duration::from_secs(30),
        || async {
            let f = s.function("hello").await;
            let ids = replica_ids(&f);
            (f["availableReplicas"] == 5 && ids.len() == 5 && s.containers("hello", true) == ids)
                .then_some(())
        },
    )
    .await;

    // Scale to zero: no labelled container left.
    assert_eq!(s.scale("hello", 0).await, 202);
    sluice_common::testing::wait_for("scaled to zero", Duration::from_secs(60), || async {
        let f = s.function("hello").await;
        (f["availableReplicas"] == 0 && s.containers("hello", true).is_empty()).then_some(())
    })
    .await;
    let (_, f) = s.get("/system/function/hello").await;
    assert_eq!(f["replicaList"].as_array().map(Vec::len), Some(0));
}
