//! What the router accepts from the control plane. A snapshot failing these checks is
//! NACKed by the xDS client and the router keeps serving its last good config.

use std::net::SocketAddr;

use sluice_common::xds::client::validate_basic;
use sluice_common::xds::Snapshot;

/// Router-specific checks on top of [`validate_basic`]: an endpoint address must be one the
/// router can connect to (not an unspecified address such as `0.0.0.0`).
pub fn router_checks(s: &Snapshot) -> Result<(), String> {
    for (cluster, cla) in &s.endpoints {
        for e in &cla.endpoints {
            if let Ok(addr) = e.address.parse::<SocketAddr>() {
                if addr.ip().is_unspecified() {
                    return Err(format!(
                        "cluster `{cluster}` endpoint `{}`: address `{}` cannot be connected to",
                        e.id, e.address
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The validator the router hands to the xDS client: [`validate_basic`] (addresses parse as
/// ip:port, weights > 0, unique ids, routes to existing clusters, numbers in range) plus
/// [`router_checks`].
pub fn validate(s: &Snapshot) -> Result<(), String> {
    validate_basic(s)?;
    router_checks(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_common::xds::pb;

    fn snap_with(address: &str, ids: &[&str]) -> Snapshot {
        let mut s = Snapshot::default();
        s.endpoints.insert(
            "f".into(),
            pb::ClusterLoadAssignment {
                cluster_name: "f".into(),
                endpoints: ids
                    .iter()
                    .map(|id| pb::Endpoint {
                        id: id.to_string(),
                        address: address.into(),
                        weight: 1,
                        ..Default::default()
                    })
                    .collect(),
            },
        );
        s
    }

    #[test]
    fn accepts_good_addresses() {
        assert!(validate(&snap_with("127.0.0.1:8080", &["a"])).is_ok());
        assert!(validate(&snap_with("[::1]:8080", &["a"])).is_ok());
        assert!(validate(&Snapshot::default()).is_ok());
    }

    #[test]
    fn rejects_unusable_endpoints() {
        for bad in [
            "not-an-address",
            "127.0.0.1",
            "127.0.0.1:0",
            "0.0.0.0:80",
            "host:80",
        ] {
            let e = validate(&snap_with(bad, &["a"])).expect_err(bad);
            assert!(e.contains("cluster `f`"), "{e}");
        }
        assert!(validate(&snap_with("127.0.0.1:80", &["a", "a"]))
            .expect_err("dup")
            .contains("duplicate"));
        assert!(validate(&snap_with("127.0.0.1:80", &[""])).is_err());
    }
}
