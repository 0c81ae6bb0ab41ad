//! Compiles the CRI subset `proto/cri/runtime/v1/api.proto` (package `runtime.v1`) into a
//! tonic client with protox (pure Rust), so no protoc binary is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = "../proto/cri/runtime/v1/api.proto";
    println!("cargo:rerun-if-changed={file}");
    let fds = protox::compile([file], ["../proto/cri"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
