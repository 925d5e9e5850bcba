//! The engine filter against the real Docker engine: the orchestrator's own calls pass, and a
//! compromised orchestrator's do not (a privileged container, a bind mount of `/`, another
//! installation's container, an exec, an unfiltered list). Nothing is mocked: the real
//! binary, the real engine socket, real containers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sluice_common::testing::wait_for;

struct Filter {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
    instance: String,
}

impl Drop for Filter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let label = format!("label=sluice.instance={}", self.instance);
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", "-v", id]).output();
            }
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.instance])
            .output();
    }
}

async fn start() -> Filter {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("engine.sock");
    let instance = format!("eftest{:08x}", rand::random::<u32>());
    let child = Command::new(env!("CARGO_BIN_EXE_engine-filter"))
        .env("SLUICE_ENGINE_LISTEN", &socket)
        .env("SLUICE_INSTANCE", &instance)
        .env("SLUICE_NETWORK", &instance)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("engine-filter");
    let f = Filter {
        child,
        socket,
        _dir: dir,
        instance,
    };
    wait_for("the filter socket", Duration::from_secs(20), || async {
        call(&f.socket, "GET", "/_ping", None)
            .await
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .await;
    f
}

async fn call(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "docker")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// A create body as the orchestrator sends it, on `network`, for `instance`.
fn create_body(instance: &str, network: &str) -> Value {
    json!({
        "Image": "sluice/base:0.1.0",
        "Cmd": ["true"],
        "User": "10001:10001",
        "Labels": {"sluice.instance": instance, "sluice.managed": "true"},
        "HostConfig": {
            "NetworkMode": network,
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges:true"],
            "ReadonlyRootfs": true,
        },
    })
}

fn with_host_config(mut body: Value, key: &str, v: Value) -> Value {
    body["HostConfig"][key] = v;
    body
}

#[tokio::test]
async fn only_the_orchestrators_own_hardened_calls_reach_the_engine() {
    let f = start().await;
    let s = f.socket.as_path();
    let name = format!("{}-probe", f.instance);

    // Its own network, and a hardened container on it: allowed, and really created.
    let (st, v) = call(
        s,
        "POST",
        "/networks/create",
        Some(json!({"Name": f.instance, "Driver": "bridge", "Internal": true})),
    )
    .await
    .expect("call");
    assert_eq!(st, 201, "{v}");
    let create = format!("/containers/create?name={name}");
    let (st, v) = call(
        s,
        "POST",
        &create,
        Some(create_body(&f.instance, &f.instance)),
    )
    .await
    .expect("call");
    assert_eq!(st, 201, "{v}");
    let id = v["Id"].as_str().expect("id").to_string();
    let (st, v) = call(s, "GET", &format!("/containers/{id}/json"), None)
        .await
        .expect("call");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["HostConfig"]["Privileged"], false);

    // What a compromised orchestrator would try: refused before the engine sees it, with
    // the reason; nothing is created.
    let escapes = [
        (
            "privileged",
            with_host_config(
                create_body(&f.instance, &f.instance),
                "Privileged",
                json!(true),
            ),
        ),
        (
            "bind mount of /",
            with_host_config(
                create_body(&f.instance, &f.instance),
                "Binds",
                json!(["/:/host"]),
            ),
        ),
        (
            "bind mount of / (Mounts)",
            with_host_config(
                create_body(&f.instance, &f.instance),
                "Mounts",
                json!([{"Type": "bind", "Source": "/", "Target": "/host"}]),
            ),
        ),
        (
            "the engine socket",
            with_host_config(
                create_body(&f.instance, &f.instance),
                "Binds",
                json!(["/var/run/docker.sock:/var/run/docker.sock"]),
            ),
        ),
        (
            "a capability",
            with_host_config(
                create_body(&f.instance, &f.instance),
                "CapAdd",
                json!(["SYS_ADMIN"]),
            ),
        ),
        (
            "the host's pid namespace",
            with_host_config(
                create_body(&f.instance, &f.instance),
                "PidMode",
                json!("host"),
            ),
        ),
        (
            "the host network",
            with_host_config(
                create_body(&f.instance, &f.instance),
                "NetworkMode",
                json!("host"),
            ),
        ),
        ("root", {
            let mut b = create_body(&f.instance, &f.instance);
            b["User"] = json!("0:0");
            b
        }),
    ];
    for (what, body) in escapes {
        let evil = format!("/containers/create?name={}-evil", f.instance);
        let (st, v) = call(s, "POST", &evil, Some(body)).await.expect("call");
        assert_eq!(st, 403, "{what}: {v}");
        assert!(
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("engine filter")),
            "{what}: {v}"
        );
    }
    let (st, _) = call(
        s,
        "GET",
        &format!("/containers/{}-evil/json", f.instance),
        None,
    )
    .await
    .expect("call");
    assert_ne!(st, 200, "a refused create created nothing");

    // Someone else's container: invisible and untouchable, though it exists.
    let other = Command::new("docker")
        .args([
            "create",
            "--label",
            "sluice.instance=someone-else",
            "--label",
            &format!("eftest.owner={}", f.instance),
            "sluice/base:0.1.0",
            "true",
        ])
        .output()
        .expect("docker create");
    assert!(other.status.success(), "{other:?}");
    let other_id = String::from_utf8_lossy(&other.stdout).trim().to_string();
    for (m, path) in [
        ("POST", format!("/containers/{other_id}/start")),
        ("GET", format!("/containers/{other_id}/json")),
        ("DELETE", format!("/containers/{other_id}")),
        ("POST", format!("/containers/{other_id}/exec")),
        ("POST", format!("/containers/{id}/exec")),
        ("GET", "/containers/json?all=true".to_string()),
        ("POST", "/images/create?fromImage=alpine".to_string()),
        ("POST", "/volumes/create".to_string()),
    ] {
        let (st, v) = call(s, m, &path, Some(json!({}))).await.expect("call");
        assert_eq!(st, 403, "{m} {path}: {v}");
    }
    let still = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Status}}", &other_id])
        .output()
        .expect("inspect");
    assert_eq!(
        String::from_utf8_lossy(&still.stdout).trim(),
        "created",
        "untouched"
    );
    let _ = Command::new("docker")
        .args(["rm", "-f", &other_id])
        .output();

    // Its own container: removed through the filter.
    let (st, v) = call(
        s,
        "DELETE",
        &format!("/containers/{id}?force=true&v=true"),
        None,
    )
    .await
    .expect("call");
    assert_eq!(st, 204, "{v}");
}
