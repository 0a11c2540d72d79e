//! Generates the Rust types of the gateway <-> edge contract
//! (protos/hearth/gateway/internal/v1/edge.proto and the policy it imports) with prost.
//! protox compiles the protos in Rust, so building the edge needs no protoc.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../..");
    let protos = root.join("protos");
    let file = protos.join("hearth/gateway/internal/v1/edge.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    println!(
        "cargo:rerun-if-changed={}",
        protos.join("hearth/auth/v1/policy.proto").display()
    );
    let descriptors = protox::compile([&file], [&protos])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
