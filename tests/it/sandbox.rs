//! The dyno sandbox as a guest sees it: the in-memory filesystem through our preview-1 host, and quotas.
//! The guest is `tests/guests/fs-probe`, a Rust wasm32-wasip1 program built once per run by the Rust buildpack.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::support::*;

fn fs_probe() -> &'static str {
    static SLUG: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    SLUG.get_or_init(|| {
        let env = TestEnv::new();
        let slug = env.path("fs-probe.slug");
        let app = repo().join("tests/guests/fs-probe");
        env.run(&["build", app.to_str().unwrap(), "-o", slug.to_str().unwrap()])
            .ok();
        (env.dir, slug)
    })
    .1
    .to_str()
    .unwrap()
}

#[test]
fn a_rust_guest_uses_the_whole_filesystem() {
    let env = TestEnv::new();
    let out = env.run(&["run", "--slug", fs_probe(), "tour"]);
    assert!(out.stdout.ends_with("tour complete\n"), "{out}");
    assert_eq!(out.code, Some(0), "{out}");
}

#[test]
fn a_dynos_writes_vanish_with_it() {
    let env = TestEnv::new();
    env.run(&[
        "run",
        "--slug",
        fs_probe(),
        "fs-probe.wasm",
        "write",
        "data.txt",
        "mine",
    ])
    .ok();
    let out = env
        .run(&[
            "run",
            "--slug",
            fs_probe(),
            "fs-probe.wasm",
            "cat",
            "data.txt",
        ])
        .ok();
    assert_eq!(out.stdout, "shipped in the slug\n");
}

#[test]
fn a_disk_filler_gets_enospc_inside_the_guest() {
    let env = TestEnv::new();
    let out = env
        .run(&[
            "run",
            "--slug",
            fs_probe(),
            "--size",
            "eco",
            "fs-probe.wasm",
            "fill",
        ])
        .ok();
    let filled: u64 = out
        .stdout
        .strip_prefix("filled ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(out.stdout.ends_with(" MiB, then: StorageFull\n"), "{out}");
    // Files and memory share the eco dyno's 512 MiB.
    assert!((400..512).contains(&filled), "{out}");
}

#[test]
fn a_memory_bomb_fails_inside_the_guest() {
    let env = TestEnv::new();
    let out = env
        .run(&[
            "run",
            "--slug",
            fs_probe(),
            "--size",
            "eco",
            "fs-probe.wasm",
            "bomb",
        ])
        .ok();
    let reached: u64 = out
        .stdout
        .strip_prefix("memory stopped growing at ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!((400..512).contains(&reached), "{out}");
}
