//! WASI 0.2 components on the dyno filesystem, through our `wasi:filesystem` host.
//!
//! The command guest is `tests/guests/fs-probe`, the same source the preview-1 tests run (tests/it/sandbox.rs),
//! built here through the Rust buildpack with `[package.metadata.wasmdyno] target = "wasm32-wasip2"`: the same
//! walk and the same assertions, on the other host. The web guest is `tests/guests/http-fs`, a `wasi:http`
//! handler whose instances share their dyno's filesystem.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::*;

/// A slug of `tests/guests/fs-probe` built for `target`, once per run.
fn fs_probe(target: &'static str) -> &'static str {
    static P1: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    static P2: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let cell = if target == "wasm32-wasip2" { &P2 } else { &P1 };
    cell.get_or_init(|| {
        let env = TestEnv::new();
        let app = env.path("fs-probe");
        let source = repo().join("tests/guests/fs-probe");
        std::fs::create_dir_all(&app).unwrap();
        for file in ["Cargo.lock", "Procfile", "data.txt"] {
            std::fs::copy(source.join(file), app.join(file)).unwrap();
        }
        copy_dir(&source.join("src"), &app.join("src"));
        let manifest = std::fs::read_to_string(source.join("Cargo.toml")).unwrap();
        std::fs::write(
            app.join("Cargo.toml"),
            format!("{manifest}\n[package.metadata.wasmdyno]\ntarget = \"{target}\"\n"),
        )
        .unwrap();
        let slug = env.path("fs-probe.slug");
        env.run(&["build", app.to_str().unwrap(), "-o", slug.to_str().unwrap()])
            .ok();
        (env.dir, slug)
    })
    .1
    .to_str()
    .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// The bytes of `app/<name>` in a slug.
fn slug_file(slug: &str, name: &str) -> Vec<u8> {
    let file = std::fs::File::open(slug).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap() == Path::new("app").join(name) {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            return data;
        }
    }
    panic!("no app/{name} in {slug}");
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_component_walks_the_filesystem_as_a_preview_1_guest_does() {
    let p2 = fs_probe("wasm32-wasip2");
    let wasm = slug_file(p2, "fs-probe.wasm");
    assert_eq!(&wasm[4..8], &[0x0d, 0, 1, 0], "built as a component");
    // Rust's std imports wasi:filesystem at older 0.2 versions (0.2.0 through the preview-1 adapter, and
    // wasi-libc's) than the 0.2.12 we link: the component model linker's semver matching brings them to our host
    // (wasmtime-wasi's own has no preopen, so the walk below would find no file there).
    assert!(contains(&wasm, "wasi:filesystem/types@0.2.0"));

    let env = TestEnv::new();
    let component = env.run(&["run", "--slug", p2, "tour"]);
    assert!(component.stdout.ends_with("tour complete\n"), "{component}");
    assert_eq!(component.code, Some(0), "{component}");
    // Step for step what the preview-1 build of the same source reports.
    let module = env
        .run(&["run", "--slug", fs_probe("wasm32-wasip1"), "tour"])
        .ok();
    assert_eq!(component.stdout, module.stdout);
    for escape in [
        "ok `..` stays at /",
        "ok no host files",
        "ok an absolute symlink target is refused",
        "ok a symlink above / stays in the dyno",
        "ok symlink loops end",
    ] {
        assert!(component.stdout.contains(escape), "{component}");
    }
}

#[test]
fn a_components_writes_vanish_with_its_dyno() {
    let env = TestEnv::new();
    let slug = fs_probe("wasm32-wasip2");
    for (path, text) in [("data.txt", "mine"), ("app-file", "new")] {
        env.run(&["run", "--slug", slug, "fs-probe.wasm", "write", path, text])
            .ok();
    }
    let out = env
        .run(&["run", "--slug", slug, "fs-probe.wasm", "cat", "data.txt"])
        .ok();
    assert_eq!(out.stdout, "shipped in the slug\n");
    let out = env.run(&["run", "--slug", slug, "fs-probe.wasm", "cat", "/app-file"]);
    assert_eq!(out.stdout, "cannot read /app-file: NotFound\n", "{out}");
    // `exit(2)` from a wasm32-wasip2 program reaches the host as failure only.
    assert_eq!(out.code, Some(1), "{out}");
}

#[test]
fn a_component_disk_filler_gets_an_error_inside_the_guest() {
    let env = TestEnv::new();
    let out = env
        .run(&[
            "run",
            "--slug",
            fs_probe("wasm32-wasip2"),
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
    // The host fails the write with `insufficient-space`, but wasi-libc's `write` on a wasip2 stream reports
    // every stream failure as EIO, which std files under `Uncategorized` (see the `/wasi` walk of the web guest
    // for the error code itself).
    assert!(out.stdout.ends_with(" MiB, then: Uncategorized\n"), "{out}");
    // Files and memory share the eco dyno's 512 MiB.
    assert!((400..512).contains(&filled), "{out}");
}

#[test]
fn a_component_memory_bomb_fails_inside_the_guest() {
    let env = TestEnv::new();
    let out = env
        .run(&[
            "run",
            "--slug",
            fs_probe("wasm32-wasip2"),
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

/// Deploys `tests/guests/http-fs` as `app` and waits until its web dyno answers.
fn deploy_http_fs(server: &Server, app: &str) -> String {
    server.cli(&["apps:create", app]).ok();
    let dir = repo().join("tests/guests/http-fs");
    server
        .cli(&["deploy", "-a", app, dir.to_str().unwrap()])
        .ok();
    let host = format!("{app}.localhost");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = server.get(&host, "/instance");
        if status == 200 {
            return host;
        }
        assert!(Instant::now() < deadline, "the web dyno never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (status, body) of a GET through the router.
fn get(server: &Server, host: &str, path: &str) -> (u16, String) {
    let (status, response) = server.get(host, path);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    )
}

fn dechunk(mut data: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = data.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        data = &rest[size + 2..];
    }
    out
}

#[test]
fn a_wasi_http_dynos_instances_share_its_filesystem() {
    // A fresh instance per request: what one request wrote, the next finds through another instance.
    let server = Server::start_in(TestEnv::new(), &[("WASMDYNO_HTTP_FRESH_INSTANCES", "1")]);
    let host = deploy_http_fs(&server, "httpfs");
    assert_eq!(get(&server, &host, "/instance"), (200, "served=1".into()));
    assert_eq!(
        get(&server, &host, "/read/data.txt"),
        (200, "shipped in the slug\n".into())
    );
    let (status, body) = get(&server, &host, "/read/app-file");
    assert_eq!((status, body.as_str()), (404, "no app-file: NotFound"));

    assert_eq!(
        get(&server, &host, "/write/app-file?first"),
        (200, "wrote".into())
    );
    assert_eq!(get(&server, &host, "/read/app-file"), (200, "first".into()));
    assert_eq!(
        get(&server, &host, "/write/tmp/note?second"),
        (200, "wrote".into())
    );
    assert_eq!(
        get(&server, &host, "/read/tmp/note"),
        (200, "second".into())
    );
    assert_eq!(
        get(&server, &host, "/write/data.txt?changed"),
        (200, "wrote".into())
    );
    assert_eq!(
        get(&server, &host, "/read/data.txt"),
        (200, "changed".into())
    );
    assert_eq!(get(&server, &host, "/instance"), (200, "served=1".into()));

    // The raw interface, method by method.
    let (status, body) = get(&server, &host, "/wasi");
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("walk complete\n"), "{body}");
}

#[test]
fn a_warm_wasi_http_instance_keeps_the_files_it_wrote() {
    let server = Server::start();
    let host = deploy_http_fs(&server, "warmfs");
    assert_eq!(get(&server, &host, "/write/tmp/n?1"), (200, "wrote".into()));
    assert_eq!(get(&server, &host, "/read/tmp/n"), (200, "1".into()));
    let (_, served) = get(&server, &host, "/instance");
    assert!(
        served != "served=1",
        "a warm instance serves them in turn: {served}"
    );
}
