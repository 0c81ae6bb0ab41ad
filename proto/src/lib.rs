//! caretaker's protocol: generated code only.
//!
//! # Layout
//! - [`pb`]: the generated gRPC/protobuf types of `proto/caretaker/v1/*.proto`. They stay at
//!   the edge of both programs; the domain types and their conversions are in
//!   `caretaker-core`'s `model`.
//! - `cri` (feature `cri`): the generated client of the CRI ImageService subset in
//!   `proto/cri/runtime/v1/api.proto`, which the agent talks to containerd with.

/// Generated protobuf and gRPC types (package `caretaker.v1`).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("caretaker.v1");

    /// Encoded `FileDescriptorSet` of every caretaker proto, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/caretaker_descriptor.bin"));

    /// gRPC's trailer for how long a client should wait before it retries, in milliseconds:
    /// the aggregator sets it on an ingest stream it ends to make way for other agents, and
    /// the agent waits that long before it reconnects.
    pub const RETRY_PUSHBACK_TRAILER: &str = "grpc-retry-pushback-ms";
}

/// Generated CRI types and clients (package `runtime.v1`, the subset in
/// `proto/cri/runtime/v1/api.proto`).
#[cfg(feature = "cri")]
#[allow(clippy::all, missing_docs)]
pub mod cri {
    tonic::include_proto!("runtime.v1");
}
