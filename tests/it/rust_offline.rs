//! The Rust buildpack's offline fallback: Debian's rustc-web, with the standard library compiled from source
//! (`-Zbuild-std`) into the build cache. Taken when rustup cannot download the wasm target (a rustup double that
//! cannot reach the network stands in for an offline machine), or forced with `WASMDYNO_RUST_TOOLCHAIN=debian`.
//! The packages come from `scripts/test`, or the buildpack installs them itself when it may.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;

fn sample(name: &str) -> String {
    repo()
        .join("sample-apps")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// Debian's packages can only be had where apt is.
fn no_apt() -> bool {
    let missing = !Path::new("/usr/bin/apt-get").exists();
    if missing {
        eprintln!("skipped: no apt-get here, so no Debian rustc-web");
    }
    missing
}

/// A directory whose `rustup` has no wasm target and cannot download one, as on a machine without network.
/// (Not under /tmp, which is private to a sandboxed build: its PATH could not find it there.)
fn offline_rustup() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let rustup = dir.path().join("rustup");
    std::fs::write(
        &rustup,
        r#"#!/bin/sh
case "$*" in
  "target list --installed") echo x86_64-unknown-linux-gnu ;;
  "target add "*) echo "error: could not download file from 'https://static.rust-lang.org/dist/channel-rust-stable.toml.sha256'" >&2; exit 1 ;;
  *) echo "offline rustup double: $*" >&2; exit 1 ;;
esac
"#,
    )
    .unwrap();
    std::fs::set_permissions(&rustup, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn rust_command_falls_back_to_debians_toolchain_offline() {
    if no_apt() {
        return;
    }
    let env = TestEnv::new();
    let offline = offline_rustup();
    let path = format!(
        "{}:{}",
        offline.path().display(),
        std::env::var("PATH").unwrap()
    );
    let started = Instant::now();
    let first = Out::from(
        env.cmd(&["build", &sample("rust-hello"), "--json"])
            .env("PATH", &path)
            .env_remove("WASMDYNO_RUST_TOOLCHAIN")
            .output()
            .unwrap(),
    )
    .ok();
    let cold = started.elapsed();
    for expected in [
        "-----> Installing Rust target wasm32-wasip1",
        "       error: could not download file",
        "-----> Using Debian's rustc-web 1.",
        " (offline fallback: rustup could not install wasm32-wasip1)",
        "-----> Building command for wasm32-wasip1 (cargo build --release -Zbuild-std)",
        "Compiling std v0.0.0 (/usr/lib/rustlib/src/rust/library/std)",
        "Compiling itoa",
    ] {
        assert!(
            first.stderr.contains(expected),
            "{expected:?} missing:\n{first}"
        );
    }

    // Forced, with rustup's targets at hand: the same toolchain, and the standard library from the build cache.
    let started = Instant::now();
    let second = Out::from(
        env.cmd(&["build", &sample("rust-hello"), "--json"])
            .env("WASMDYNO_RUST_TOOLCHAIN", "debian")
            .output()
            .unwrap(),
    )
    .ok();
    let warm = started.elapsed();
    eprintln!("rust-hello with Debian's toolchain: cold build {cold:.1?}, warm build {warm:.1?}");
    assert!(
        second.stderr.contains(
            " (WASMDYNO_RUST_TOOLCHAIN=debian)\n-----> Building command for wasm32-wasip1"
        ),
        "{second}"
    );
    for unexpected in [
        "Installing Rust target",
        "Compiling std ",
        "Compiling core ",
        "Compiling itoa",
    ] {
        assert!(
            !second.stderr.contains(unexpected),
            "warm cache: {unexpected:?} in\n{second}"
        );
    }
    assert!(warm < Duration::from_secs(60), "warm build took {warm:?}");
    let json = second.json();
    assert_eq!(
        first.json()["sha256"],
        json["sha256"],
        "rebuild is byte-identical"
    );
    assert_eq!(json["process_types"]["hello"], "hello.wasm");

    let slug = json["path"].as_str().unwrap();
    let out = env.run_with_stdin(&["run", "--slug", slug, "hello", "-", "3"], b"one\ntwo\n");
    assert_eq!(out.code, Some(3), "{out}");
    assert!(
        out.stdout.starts_with("Hello, world! Greetings from run."),
        "{out}"
    );
    assert!(out.stdout.contains("stdin had 2 lines"), "{out}");
    // wasm32-wasip1 against Debian's wasi-libc passes the exact exit status through too.
    let out = env.run(&["run", "--slug", slug, "-e", "NAME=Ada", "hello", "-", "42"]);
    assert_eq!(out.code, Some(42), "{out}");
    assert!(out.stdout.starts_with("Hello, Ada! "), "{out}");
}

#[test]
fn rust_wasi_http_component_builds_with_debians_toolchain() {
    if no_apt() {
        return;
    }
    // The server's environment reaches the buildpack of a server-side build (`deploy`).
    let server = Server::start_in(
        TestEnv::with_private_cache(),
        &[("WASMDYNO_RUST_TOOLCHAIN", "debian")],
    );
    server.cli(&["apps:create", "offline-http"]).ok();
    let out = server
        .cli(&["deploy", "-a", "offline-http", &sample("rust-http")])
        .ok();
    let output = format!("{}{}", out.stdout, out.stderr);
    for expected in [
        "-----> Using Debian's rustc-web 1.",
        "-----> Building http for wasm32-wasip2 (cargo build --release -Zbuild-std)",
        "rust_http.wasm: compiled in",
    ] {
        assert!(output.contains(expected), "{expected:?} missing:\n{out}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, response) = server.get("offline-http.localhost", "/hello");
        if status == 200 {
            assert!(
                response.contains("Hello from Rust on wasmdyno (web.1)\nGET /hello"),
                "{response}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the web dyno never answered: {status}\n{response}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn unknown_rust_toolchain_is_refused() {
    let env = TestEnv::new();
    let out = env
        .run(&[
            "build",
            &sample("rust-hello"),
            "-e",
            "WASMDYNO_RUST_TOOLCHAIN=gcc",
        ])
        .fails();
    assert!(
        out.stderr
            .contains("WASMDYNO_RUST_TOOLCHAIN=gcc: use rustup or debian"),
        "{out}"
    );
}
