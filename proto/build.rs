//! Compiles `caretaker/v1/*.proto` with protox (pure Rust), so no protoc binary is needed;
//! with the `cri` feature also the CRI subset `cri/runtime/v1/api.proto` (package
//! `runtime.v1`) into a tonic client.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "caretaker/v1/report.proto",
        "caretaker/v1/ingest.proto",
        "caretaker/v1/query.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Served by gRPC server reflection so grpcurl & co. work without the .proto files.
    std::fs::write(out.join("caretaker_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;

    if std::env::var_os("CARGO_FEATURE_CRI").is_some() {
        let file = "cri/runtime/v1/api.proto";
        println!("cargo:rerun-if-changed={file}");
        let fds = protox::compile([file], ["cri"])?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(false)
            .compile_fds(fds)?;
    }
    Ok(())
}
