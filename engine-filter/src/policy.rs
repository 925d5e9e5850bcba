//! What the orchestrator may ask of the engine: the pure "decide" half of the filter. Given a
//! request's method, path, query and (for the few calls whose body matters) its JSON body, it
//! answers allow, allow-if-the-container-is-ours, or deny with a reason. No I/O here; the
//! proxy ([`crate::proxy`]) does the asking and the forwarding.
//!
//! The rules, by the calls the orchestrator makes (everything else is denied):
//! * read-only engine calls: ping, version, events, image inspect;
//! * container list, only filtered on this installation's label;
//! * container create: named `<instance>-…`, labelled with the instance, non-root, no
//!   privilege, no capability, `no-new-privileges`, no host path, device, namespace or port,
//!   on this installation's networks (the host network only for the MDF image);
//! * start/stop/pause/unpause/kill/wait/inspect/remove, only of this installation's containers
//!   (the proxy checks the label); archive upload only into the secrets folder;
//! * networks: inspect, create and connect, only this installation's function networks;
//! * image build: tagged as a function image, labelled with its function, no remote context,
//!   no host network.

use serde_json::Value;

/// Label naming the installation a container belongs to.
pub use sluice_common::LABEL_INSTANCE;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Allowed when container `id` (an id or a name) carries this installation's label.
    IfOwned(String),
    /// Allowed when the body passes [`Policy::check_body`] for this kind of call.
    IfBody(BodyCheck),
    Deny(String),
}

/// Calls whose JSON body decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCheck {
    /// `POST /containers/create?name=`.
    CreateContainer,
    /// `POST /networks/create`.
    CreateNetwork,
    /// `POST /networks/{name}/connect`: the container must also be ours.
    ConnectNetwork,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub instance: String,
    /// Networks this installation's containers may join (the function network and its
    /// egress network).
    pub networks: Vec<String>,
    /// Image reference prefixes that may run on the host network (the MDF).
    pub host_network_images: Vec<String>,
    /// Tag prefix of function images the orchestrator builds.
    pub build_tag_prefix: String,
    /// Folder an archive may be uploaded into (function secrets).
    pub upload_dir: String,
}

fn deny(why: impl Into<String>) -> Decision {
    Decision::Deny(why.into())
}

/// `/v1.43/containers/json` → `/containers/json`.
fn strip_version(path: &str) -> &str {
    let Some(rest) = path.strip_prefix("/v") else {
        return path;
    };
    match rest.find('/') {
        Some(i) if rest[..i].chars().all(|c| c.is_ascii_digit() || c == '.') => &rest[i..],
        _ => path,
    }
}

/// The value of query parameter `key` (percent-decoded).
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_host(mode: Option<&Value>) -> bool {
    mode.and_then(Value::as_str)
        .is_some_and(|m| m == "host" || m.starts_with("container:"))
}

fn nonempty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(_)) => true,
    }
}

impl Policy {
    /// The decision for a call, before its body is read.
    pub fn decide(&self, method: &str, path: &str, query: &str) -> Decision {
        let path = strip_version(path);
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            ("GET" | "HEAD", ["_ping"]) | ("GET", ["version"]) => Decision::Allow,
            ("GET", ["events"]) => Decision::Allow,
            ("GET", ["images", .., "json"]) => Decision::Allow,
            ("GET", ["containers", "json"]) => self.check_list(query),
            ("POST", ["containers", "create"]) => {
                let name = query_param(query, "name").unwrap_or_default();
                if name.starts_with(&format!("{}-", self.instance)) {
                    Decision::IfBody(BodyCheck::CreateContainer)
                } else {
                    deny(format!(
                        "container name `{name}` is not this installation's (`{}-…`)",
                        self.instance
                    ))
                }
            }
            ("GET", ["containers", id, "json"])
            | ("DELETE", ["containers", id])
            | (
                "POST",
                ["containers", id, "start" | "stop" | "pause" | "unpause" | "kill" | "wait"],
            ) => Decision::IfOwned((*id).to_string()),
            ("PUT", ["containers", id, "archive"]) => match query_param(query, "path") {
                Some(p) if p.trim_end_matches('/') == self.upload_dir => {
                    Decision::IfOwned((*id).to_string())
                }
                _ => deny(format!("uploads go only into {}", self.upload_dir)),
            },
            ("GET", ["networks", name]) => self.network_named(name, Decision::Allow),
            ("POST", ["networks", "create"]) => Decision::IfBody(BodyCheck::CreateNetwork),
            ("POST", ["networks", name, "connect"]) => {
                self.network_named(name, Decision::IfBody(BodyCheck::ConnectNetwork))
            }
            ("POST", ["build"]) => self.check_build(query),
            _ => deny(format!(
                "{method} {path} is not a call the orchestrator makes"
            )),
        }
    }

    fn network_named(&self, name: &str, then: Decision) -> Decision {
        if self.networks.iter().any(|n| n == name) {
            then
        } else {
            deny(format!("network `{name}` is not this installation's"))
        }
    }

    /// Lists must be filtered on this installation's label: other containers' names, images
    /// and labels stay out of view.
    fn check_list(&self, query: &str) -> Decision {
        let want = format!("{LABEL_INSTANCE}={}", self.instance);
        let filters =
            query_param(query, "filters").and_then(|f| serde_json::from_str::<Value>(&f).ok());
        let has = filters
            .as_ref()
            .and_then(|f| f.get("label"))
            .is_some_and(|l| match l {
                Value::Array(a) => a.iter().any(|x| x.as_str() == Some(&want)),
                Value::Object(o) => o.get(&want).is_some_and(|v| v == &Value::Bool(true)),
                _ => false,
            });
        if has {
            Decision::Allow
        } else {
            deny(format!("container lists must filter on label {want}"))
        }
    }

    fn check_build(&self, query: &str) -> Decision {
        if query_param(query, "remote").is_some_and(|r| !r.is_empty()) {
            return deny("builds from a remote context are not allowed");
        }
        if query_param(query, "networkmode")
            .is_some_and(|m| m == "host" || m.starts_with("container:"))
        {
            return deny("builds on the host network are not allowed");
        }
        for p in ["cgroupparent", "isolation", "extrahosts"] {
            if query_param(query, p).is_some_and(|v| !v.is_empty()) {
                return deny(format!("build option `{p}` is not allowed"));
            }
        }
        let tag = query_param(query, "t").unwrap_or_default();
        if !tag.starts_with(&self.build_tag_prefix) {
            return deny(format!(
                "image tag `{tag}` is not a function image (`{}…`)",
                self.build_tag_prefix
            ));
        }
        let labelled = query_param(query, "labels")
            .and_then(|l| serde_json::from_str::<Value>(&l).ok())
            .is_some_and(|l| l.get(sluice_common::LABEL_FUNCTION).is_some());
        if !labelled {
            return deny(format!(
                "function images carry the {} label",
                sluice_common::LABEL_FUNCTION
            ));
        }
        Decision::Allow
    }

    /// Checks the JSON body of a [`BodyCheck`] call; `Err` holds the reason.
    pub fn check_body(&self, kind: BodyCheck, body: &Value) -> Result<(), String> {
        match kind {
            BodyCheck::CreateContainer => self.check_create(body),
            BodyCheck::CreateNetwork => {
                let name = body.get("Name").and_then(Value::as_str).unwrap_or_default();
                if !self.networks.iter().any(|n| n == name) {
                    return Err(format!("network `{name}` is not this installation's"));
                }
                match body.get("Driver").and_then(Value::as_str) {
                    None | Some("bridge") => Ok(()),
                    Some(d) => Err(format!("network driver `{d}` is not allowed")),
                }
            }
            // The container itself is checked by the proxy ([`connect_target`]).
            BodyCheck::ConnectNetwork => connect_target(body).map(|_| ()),
        }
    }

    fn check_create(&self, body: &Value) -> Result<(), String> {
        let labels = body.get("Labels");
        let instance = labels
            .and_then(|l| l.get(LABEL_INSTANCE))
            .and_then(Value::as_str);
        if instance != Some(self.instance.as_str()) {
            return Err(format!(
                "containers carry {LABEL_INSTANCE}={}",
                self.instance
            ));
        }
        let user = body.get("User").and_then(Value::as_str).unwrap_or_default();
        let uid = user.split(':').next().unwrap_or_default();
        if uid.is_empty() || uid == "0" || uid == "root" {
            return Err("containers run as a non-root user".into());
        }
        let image = body
            .get("Image")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let hc = body.get("HostConfig").cloned().unwrap_or(Value::Null);
        let get = |k: &str| hc.get(k);
        if get("Privileged").and_then(Value::as_bool) == Some(true) {
            return Err("privileged containers are not allowed".into());
        }
        for k in [
            "Binds",
            "VolumesFrom",
            "Devices",
            "DeviceRequests",
            "DeviceCgroupRules",
            "CapAdd",
            "Sysctls",
            "PortBindings",
            "Links",
            "CgroupParent",
            "Cgroup",
            "VolumeDriver",
        ] {
            if nonempty(get(k)) {
                return Err(format!("HostConfig.{k} is not allowed"));
            }
        }
        if get("PublishAllPorts").and_then(Value::as_bool) == Some(true) {
            return Err("HostConfig.PublishAllPorts is not allowed".into());
        }
        if let Some(mounts) = get("Mounts").and_then(Value::as_array) {
            for m in mounts {
                let typ = m.get("Type").and_then(Value::as_str).unwrap_or("volume");
                let anonymous = typ == "volume" && !nonempty(m.get("Source"));
                if !(anonymous || typ == "tmpfs") {
                    return Err(format!(
                        "a {typ} mount is not allowed (only tmpfs and the container's own volumes)"
                    ));
                }
            }
        }
        for k in [
            "PidMode",
            "IpcMode",
            "UTSMode",
            "UsernsMode",
            "CgroupnsMode",
        ] {
            if is_host(get(k)) {
                return Err(format!("HostConfig.{k} host is not allowed"));
            }
        }
        match get("Runtime").and_then(Value::as_str) {
            None | Some("") | Some("runc") => {}
            Some(r) => return Err(format!("runtime `{r}` is not allowed")),
        }
        let caps: Vec<&str> = get("CapDrop")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !caps.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
            return Err("containers drop every capability (CapDrop: [ALL])".into());
        }
        let opts: Vec<&str> = get("SecurityOpt")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !opts.iter().any(|o| {
            *o == "no-new-privileges"
                || *o == "no-new-privileges:true"
                || *o == "no-new-privileges=true"
        }) {
            return Err("containers run with no-new-privileges".into());
        }
        if let Some(o) = opts.iter().find(|o| {
            o.contains("unconfined") || o.contains("disable") || o.starts_with("systempaths")
        }) {
            return Err(format!("security option `{o}` is not allowed"));
        }
        if get("ReadonlyRootfs").and_then(Value::as_bool) != Some(true) {
            return Err("containers have a read-only root filesystem".into());
        }
        let mode = get("NetworkMode")
            .and_then(Value::as_str)
            .unwrap_or("default");
        if mode == "host" {
            if !self
                .host_network_images
                .iter()
                .any(|p| image.starts_with(p.as_str()))
            {
                return Err(format!("image `{image}` may not use the host network"));
            }
        } else if !self.networks.iter().any(|n| n == mode) {
            return Err(format!("network `{mode}` is not this installation's"));
        }
        if let Some(eps) = body
            .get("NetworkingConfig")
            .and_then(|n| n.get("EndpointsConfig"))
            .and_then(Value::as_object)
        {
            if let Some(n) = eps.keys().find(|n| !self.networks.contains(n)) {
                return Err(format!("network `{n}` is not this installation's"));
            }
        }
        Ok(())
    }
}

/// The container a network-connect body names.
pub fn connect_target(body: &Value) -> Result<String, String> {
    body.get("Container")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .ok_or_else(|| "a connect names its container".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> Policy {
        Policy {
            instance: "sluice".into(),
            networks: vec!["sluice".into(), "sluice-egress".into()],
            host_network_images: vec!["sluice/mdf:".into()],
            build_tag_prefix: "sluice-fn/".into(),
            upload_dir: "/var/openfaas/secrets".into(),
        }
    }

    fn good_create() -> Value {
        json!({
            "Image": "sha256:abc",
            "User": "10001:10001",
            "Labels": {"sluice.instance": "sluice", "sluice.managed": "true"},
            "HostConfig": {
                "NetworkMode": "sluice",
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges:true"],
                "ReadonlyRootfs": true,
                "Tmpfs": {"/tmp": "rw,size=64m"},
            },
            "NetworkingConfig": {"EndpointsConfig": {"sluice": {}}},
        })
    }

    fn with(mut body: Value, path: &[&str], v: Value) -> Value {
        let mut cur = &mut body;
        for p in &path[..path.len() - 1] {
            cur = cur.get_mut(*p).unwrap();
        }
        cur[path[path.len() - 1]] = v;
        body
    }

    #[test]
    fn the_orchestrators_own_create_passes() {
        let p = policy();
        assert_eq!(
            p.decide(
                "POST",
                "/v1.41/containers/create",
                "name=sluice-hello-0000abcd"
            ),
            Decision::IfBody(BodyCheck::CreateContainer)
        );
        assert_eq!(
            p.check_body(BodyCheck::CreateContainer, &good_create()),
            Ok(())
        );
        let mdf = with(
            with(good_create(), &["HostConfig", "NetworkMode"], json!("host")),
            &["Image"],
            json!("sluice/mdf:0.1.0"),
        );
        let mdf = with(mdf, &["NetworkingConfig"], json!(null));
        assert_eq!(p.check_body(BodyCheck::CreateContainer, &mdf), Ok(()));
    }

    #[test]
    fn a_host_escape_in_a_create_is_refused() {
        let p = policy();
        let cases: Vec<(Value, &str)> = vec![
            (
                with(good_create(), &["HostConfig", "Privileged"], json!(true)),
                "privileged",
            ),
            (
                with(good_create(), &["HostConfig", "Binds"], json!(["/:/host"])),
                "Binds",
            ),
            (
                with(
                    good_create(),
                    &["HostConfig", "Mounts"],
                    json!([{"Type": "bind", "Source": "/", "Target": "/host"}]),
                ),
                "bind mount",
            ),
            (
                with(
                    good_create(),
                    &["HostConfig", "Mounts"],
                    json!([{"Type": "volume", "Source": "other-app-data", "Target": "/d"}]),
                ),
                "volume mount",
            ),
            (
                with(
                    good_create(),
                    &["HostConfig", "CapAdd"],
                    json!(["SYS_ADMIN"]),
                ),
                "CapAdd",
            ),
            (
                with(good_create(), &["HostConfig", "CapDrop"], json!([])),
                "CapDrop",
            ),
            (
                with(
                    good_create(),
                    &["HostConfig", "Devices"],
                    json!([{"PathOnHost": "/dev/sda"}]),
                ),
                "Devices",
            ),
            (
                with(good_create(), &["HostConfig", "PidMode"], json!("host")),
                "PidMode",
            ),
            (
                with(good_create(), &["HostConfig", "IpcMode"], json!("host")),
                "IpcMode",
            ),
            (
                with(good_create(), &["HostConfig", "UsernsMode"], json!("host")),
                "UsernsMode",
            ),
            (
                with(good_create(), &["HostConfig", "NetworkMode"], json!("host")),
                "host network",
            ),
            (
                with(
                    good_create(),
                    &["HostConfig", "NetworkMode"],
                    json!("bridge"),
                ),
                "bridge",
            ),
            (
                with(
                    good_create(),
                    &["HostConfig", "SecurityOpt"],
                    json!(["no-new-privileges", "seccomp=unconfined"]),
                ),
                "seccomp",
            ),
            (
                with(good_create(), &["HostConfig", "SecurityOpt"], json!([])),
                "no-new-privileges",
            ),
            (
                with(
                    good_create(),
                    &["HostConfig", "ReadonlyRootfs"],
                    json!(false),
                ),
                "read-only",
            ),
            (
                with(
                    good_create(),
                    &["HostConfig", "PortBindings"],
                    json!({"80/tcp": [{"HostPort": "80"}]}),
                ),
                "ports",
            ),
            (
                with(good_create(), &["HostConfig", "Runtime"], json!("nvidia")),
                "runtime",
            ),
            (with(good_create(), &["User"], json!("0")), "root"),
            (with(good_create(), &["User"], json!("")), "default user"),
            (
                with(
                    good_create(),
                    &["Labels"],
                    json!({"sluice.instance": "other"}),
                ),
                "label",
            ),
            (
                with(
                    good_create(),
                    &["NetworkingConfig"],
                    json!({"EndpointsConfig": {"control": {}}}),
                ),
                "control network",
            ),
        ];
        for (body, what) in cases {
            assert!(
                p.check_body(BodyCheck::CreateContainer, &body).is_err(),
                "{what}: {body}"
            );
        }
        assert!(matches!(
            p.decide("POST", "/containers/create", "name=other-thing"),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn calls_on_containers_need_ownership_and_the_rest_is_denied() {
        let p = policy();
        for (m, path) in [
            ("POST", "/v1.41/containers/abc/start"),
            ("POST", "/containers/abc/stop"),
            ("DELETE", "/containers/abc"),
            ("GET", "/containers/abc/json"),
        ] {
            assert_eq!(
                p.decide(m, path, ""),
                Decision::IfOwned("abc".into()),
                "{m} {path}"
            );
        }
        assert_eq!(
            p.decide(
                "PUT",
                "/containers/abc/archive",
                "path=%2Fvar%2Fopenfaas%2Fsecrets"
            ),
            Decision::IfOwned("abc".into())
        );
        assert!(matches!(
            p.decide("PUT", "/containers/abc/archive", "path=/etc"),
            Decision::Deny(_)
        ));
        for (m, path) in [
            ("POST", "/containers/abc/exec"),
            ("POST", "/exec/abc/start"),
            ("POST", "/containers/abc/attach"),
            ("GET", "/containers/abc/archive"),
            ("POST", "/images/create"),
            ("DELETE", "/images/x"),
            ("POST", "/volumes/create"),
            ("POST", "/swarm/init"),
            ("POST", "/plugins/pull"),
            ("GET", "/secrets"),
            ("POST", "/networks/control/connect"),
            ("DELETE", "/networks/sluice"),
            ("POST", "/containers/prune"),
        ] {
            assert!(
                matches!(p.decide(m, path, ""), Decision::Deny(_)),
                "{m} {path}"
            );
        }
    }

    #[test]
    fn lists_are_confined_to_the_installation_and_builds_to_function_images() {
        let p = policy();
        let ours = r#"{"label":["sluice.managed=true","sluice.instance=sluice"]}"#;
        let q = format!("all=true&filters={}", ours.replace('"', "%22"));
        assert_eq!(p.decide("GET", "/containers/json", &q), Decision::Allow);
        assert!(matches!(
            p.decide("GET", "/containers/json", "all=true"),
            Decision::Deny(_)
        ));
        let theirs = r#"{"label":["sluice.instance=other"]}"#;
        assert!(matches!(
            p.decide("GET", "/containers/json", &format!("filters={theirs}")),
            Decision::Deny(_)
        ));

        let labels = r#"{"sluice.function":"hello"}"#;
        let ok = format!("t=sluice-fn%2Fhello%3A0.1&labels={labels}&rm=true");
        assert_eq!(p.decide("POST", "/build", &ok), Decision::Allow);
        for bad in [
            format!("t=evil%2Fx&labels={labels}"),
            "t=sluice-fn%2Fhello".to_string(),
            format!("{ok}&remote=https://example.org/x.git"),
            format!("{ok}&networkmode=host"),
        ] {
            assert!(
                matches!(p.decide("POST", "/build", &bad), Decision::Deny(_)),
                "{bad}"
            );
        }
    }

    #[test]
    fn networks_are_only_the_installations() {
        let p = policy();
        assert_eq!(p.decide("GET", "/networks/sluice", ""), Decision::Allow);
        assert!(matches!(
            p.decide("GET", "/networks/other", ""),
            Decision::Deny(_)
        ));
        let create = json!({"Name": "sluice-egress", "Driver": "bridge", "Internal": false});
        assert_eq!(p.check_body(BodyCheck::CreateNetwork, &create), Ok(()));
        assert!(p
            .check_body(BodyCheck::CreateNetwork, &json!({"Name": "evil"}))
            .is_err());
        assert!(p
            .check_body(
                BodyCheck::CreateNetwork,
                &json!({"Name": "sluice", "Driver": "macvlan"})
            )
            .is_err());
        assert_eq!(
            connect_target(&json!({"Container": "abc"})),
            Ok("abc".into())
        );
        assert!(connect_target(&json!({})).is_err());
    }

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(
            query_param("a=1&path=%2Fvar%2Fx&b", "path").as_deref(),
            Some("/var/x")
        );
        assert_eq!(query_param("b", "b").as_deref(), Some(""));
        assert_eq!(query_param("x=%zz%", "x").as_deref(), Some("%zz%"));
        assert_eq!(strip_version("/v1.41/containers/json"), "/containers/json");
        assert_eq!(strip_version("/version"), "/version");
    }
}
