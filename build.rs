//! Builds the shell that `wasmdyno run bash` starts (`shell/`, a wasm32-wasip1 program) into `OUT_DIR`, where
//! `src/runtime/shell.rs` embeds it. Without the `platform` feature (edge hosts), or when the wasm target cannot be
//! had, the shell is empty and `run bash` says how to get it.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip1";

fn main() {
    println!("cargo:rerun-if-changed=shell/src");
    println!("cargo:rerun-if-changed=shell/Cargo.toml");
    println!("cargo:rerun-if-changed=shell/Cargo.lock");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let embedded = out.join("wasmdyno-shell.wasm");
    let shell = match std::env::var_os("CARGO_FEATURE_PLATFORM") {
        Some(_) => build_shell(&out).unwrap_or_else(|why| {
            println!("cargo:warning=wasmdyno is built without its shell (`run bash`): {why}");
            Vec::new()
        }),
        None => Vec::new(),
    };
    std::fs::write(&embedded, shell).expect("write the shell into OUT_DIR");
}

fn build_shell(out: &Path) -> Result<Vec<u8>, String> {
    let manifest = Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("shell/Cargo.toml");
    let target_dir = out.join("shell-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let build = || {
        let mut command = Command::new(&cargo);
        command
            .args(["build", "--release", "--locked", "--target", TARGET])
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target_dir);
        // The outer build's flags and wrappers (clippy's driver, coverage, host RUSTFLAGS) are not the shell's.
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
        ] {
            command.env_remove(var);
        }
        command
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))
    };
    let mut output = build()?;
    if !output.status.success() && String::from_utf8_lossy(&output.stderr).contains(TARGET) {
        // As the Rust buildpack does: add the target with rustup, once, and try again.
        let _ = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status();
        output = build()?;
    }
    if !output.status.success() {
        return Err(format!(
            "`cargo build --target {TARGET}` of shell/ failed: {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .rev()
                .take(6)
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    let wasm = target_dir.join(TARGET).join("release/wasmdyno-shell.wasm");
    std::fs::read(&wasm).map_err(|e| format!("{}: {e}", wasm.display()))
}
