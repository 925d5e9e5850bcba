//! Scale-to-ready: how long from `POST /system/scale-function/hello {"replicas":1}` until the
//! orchestrator reports the replica ready (its runtime's `/_/ready` answered), over 20 trials,
//! side by side with the same image started directly through the Docker API (create + start +
//! first 200 from `/_/ready`, polled the same way) in the same run.
//!
//! `cargo bench -p orchestrator --bench scale_to_ready` (needs `make images`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use support::*;

const TRIALS: usize = 20;

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let (p50, p95) = (pct(&v, 0.5), pct(&v, 0.95));
    println!(
        "{name:<44} p50 {p50:>7.1} ms   p95 {p95:>7.1} ms   min {:>7.1}   max {:>7.1}",
        v[0],
        v[v.len() - 1]
    );
    (p50, p95)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let reg = r#"
hello:
  name: hello
  version: 0.1
  configuration:
    programing_language: python
    base_function_file_name: handler.py
    function_folder: hello
    extra_dependencies: ""
"#;
    let mut s = Stack::new("bench", reg);
    s.start_orchestrator().await;
    let f = sluice_common::testing::wait_for("hello built", LONG, || async {
        let f = s.function("hello").await;
        (f["build"]["state"] == "ready").then_some(f)
    })
    .await;
    let image = f["image"].as_str().expect("image").to_string();

    // Sluice: scale 0 → 1 → ready, through the orchestrator API.
    let mut sluice = Vec::new();
    for _ in 0..TRIALS {
        let t = Instant::now();
        assert_eq!(s.scale("hello", 1).await, 202);
        loop {
            let f = s.function("hello").await;
            if f["availableReplicas"] == 1 {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "not ready");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sluice.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(s.scale("hello", 0).await, 202);
        sluice_common::testing::wait_for("scaled to zero", Duration::from_secs(60), || async {
            s.containers("hello", true).is_empty().then_some(())
        })
        .await;
    }

    // Baseline: the same image, create + start + /_/ready through the Docker API directly.
    let docker = bollard::Docker::connect_with_defaults()
        .expect("docker")
        .negotiate_version()
        .await
        .expect("docker version");
    let http = reqwest::Client::new();
    let mut direct = Vec::new();
    for i in 0..TRIALS {
        let name = format!("{}-baseline-{i}", s.instance);
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            labels: Some(HashMap::from([(
                "sluice.instance".to_string(),
                s.instance.clone(),
            )])),
            env: Some(vec!["SLUICE_FUNCTION=hello".into()]),
            host_config: Some(HostConfig {
                network_mode: Some(s.network.clone()),
                init: Some(true),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    s.network.clone(),
                    EndpointSettings::default(),
                )])),
            }),
            ..Default::default()
        };
        let t = Instant::now();
        let opts = bollard::query_parameters::CreateContainerOptionsBuilder::default()
            .name(&name)
            .build();
        let id = docker
            .create_container(Some(opts), body)
            .await
            .expect("create")
            .id;
        docker.start_container(&id, None).await.expect("start");
        let info = docker
            .inspect_container(
                &id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .expect("inspect");
        let ip = info
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(&s.network))
            .and_then(|e| e.ip_address)
            .expect("ip");
        let url = format!("http://{ip}:8080/_/ready");
        loop {
            if http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "baseline not ready");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        direct.push(t.elapsed().as_secs_f64() * 1000.0);
        let rm = RemoveContainerOptionsBuilder::default().force(true).build();
        docker
            .remove_container(&id, Some(rm))
            .await
            .expect("remove");
    }

    println!("\nscale-to-ready, `hello` (python), {TRIALS} trials each, same run:");
    let (sp50, sp95) = summary("sluice: scale 0→1 until reported ready", sluice);
    let (dp50, dp95) = summary("baseline: docker create+start until /_/ready", direct);
    println!(
        "ratio sluice/baseline: p50 {:.2}x, p95 {:.2}x (sluice adds {:+.1} ms at p50)",
        sp50 / dp50,
        sp95 / dp95,
        sp50 - dp50
    );
}
