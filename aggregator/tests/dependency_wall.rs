//! The aggregator's wall (issue 16): `cargo tree -p caretaker-aggregator -e normal` holds
//! none of the agent's node-side crates and no C compression library. The aggregator talks
//! to no container runtime and reads no host statistics; its report history is compressed
//! with pure-Rust zstd (`store/history.rs`).

use std::collections::BTreeSet;
use std::process::Command;

/// Crates that must not reach the aggregator's build through normal dependencies: the
/// agent itself, its Docker client, its host statistics, its progress bars, and the C
/// compression libraries (libdeflate, zstd's C library and its bindings).
const FORBIDDEN: &[&str] = &[
    "caretaker-agent",
    "bollard",
    "sysinfo",
    "libdeflater",
    "libdeflate-sys",
    "zstd",
    "zstd-safe",
    "zstd-sys",
];

/// The package names in `cargo tree -p caretaker-aggregator -e normal` (offline, from
/// Cargo.lock as it is: the tree that builds).
fn aggregator_tree() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let out = Command::new(&cargo)
        .args([
            "tree",
            "--manifest-path",
            manifest,
            "-p",
            "caretaker-aggregator",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
            "--locked",
        ])
        .output()
        .unwrap_or_else(|e| panic!("running {cargo} tree: {e}"));
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_aggregator_builds_no_agent_crate_and_no_c_compression_library() {
    let tree = aggregator_tree();
    // The tree is the aggregator's: itself, its history's zstd, its store.
    for expected in [
        "caretaker-aggregator",
        "caretaker-core",
        "structured-zstd",
        "redb",
    ] {
        assert!(tree.contains(expected), "{expected} missing from {tree:?}");
    }
    let found: Vec<&str> = FORBIDDEN
        .iter()
        .copied()
        .filter(|c| tree.contains(*c))
        .collect();
    assert!(
        found.is_empty(),
        "cargo tree -p caretaker-aggregator -e normal has {found:?}"
    );
}
