fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/sluice_xds.proto");
    println!("cargo:rerun-if-changed=proto/sluice_sip.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(
            &["proto/sluice_xds.proto", "proto/sluice_sip.proto"],
            &["proto"],
        )?;
    Ok(())
}
