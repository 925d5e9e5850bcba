//! Generates the SIP contract's Rust types from `sluice_sip.proto`: from `SLUICE_PROTO_DIR`
//! when set, else `/opt/sluice/proto` (inside `sluice/rust-build`), else the repository's
//! `common/proto` (tests on a checkout). The contract lives once, in `common/proto`.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=SLUICE_PROTO_DIR");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let candidates = [
        std::env::var("SLUICE_PROTO_DIR").ok().map(PathBuf::from),
        Some(PathBuf::from("/opt/sluice/proto")),
        Some(manifest.join("../../../common/proto")),
    ];
    let Some(dir) = candidates
        .into_iter()
        .flatten()
        .find(|d| d.join("sluice_sip.proto").is_file())
    else {
        panic!("sluice_sip.proto not found: set SLUICE_PROTO_DIR");
    };
    let file = dir.join("sluice_sip.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    if let Err(e) = prost_build::compile_protos(&[&file], &[&dir]) {
        panic!("cannot compile {}: {e}", file.display());
    }
}
