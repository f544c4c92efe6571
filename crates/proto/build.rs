//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and hands the
//! descriptors to tonic-prost-build. The encoded descriptor set is written to
//! OUT_DIR so daemons can serve gRPC reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "tandem/resource/v1/resource.proto",
    "tandem/ipvs/v1/ipvs.proto",
    "tandem/check/v1/check.proto",
    "tandem/vip/v1/vip.proto",
    "tandem/hb/v1/hb.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed={}", root.display());

    let descriptors = protox::compile(PROTOS, [&root])?;
    let encoded = prost::Message::encode_to_vec(&descriptors);
    std::fs::write(out.join("tandem_descriptor.bin"), encoded)?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
