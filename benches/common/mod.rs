//! What the benchmarks share.

use std::path::Path;

/// `sample-apps/{sample}` built with cargo for wasm32-wasip2 (into target/bench-guests): the bytes of `{file}`.
pub fn build_wasip2_sample(sample: &str, file: &str) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target/bench-guests");
    let status = std::process::Command::new("cargo")
        .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"])
        .current_dir(root.join("sample-apps").join(sample))
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building sample-apps/{sample} failed");
    std::fs::read(target.join("wasm32-wasip2/release").join(file)).expect("the component")
}
