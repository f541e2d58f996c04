//! Compiles `proto/plugin_api_v1.proto` and `proto/host_api_v1.proto` with protox (pure Rust):
//! no system `protoc` needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "../proto";
    let protos = ["../proto/plugin_api_v1.proto", "../proto/host_api_v1.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, [proto_dir])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
