//! Sample apps built through their buildpacks, then run or loaded; some twice, to show the second build is
//! byte-identical and uses the build cache. (The Python, JavaScript, counter and component web samples have tests of
//! their own.)

use crate::support::*;

fn sample(name: &str) -> String {
    repo()
        .join("sample-apps")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// Builds a sample twice in one home; returns (first build, second build) output.
fn build_twice(env: &TestEnv, name: &str) -> (Out, Out) {
    let first = env.run(&["build", &sample(name), "--json"]).ok();
    let second = env.run(&["build", &sample(name), "--json"]).ok();
    assert_eq!(
        first.json()["sha256"],
        second.json()["sha256"],
        "rebuild is byte-identical"
    );
    (first, second)
}

#[test]
fn rust_command_with_a_crates_io_dependency() {
    let env = TestEnv::new();
    let (first, second) = build_twice(&env, "rust-hello");
    assert!(first.stderr.contains("Compiling itoa"), "{first}");
    assert!(
        !second.stderr.contains("Compiling itoa"),
        "warm cache recompiles no dependency:\n{second}"
    );
    let json = second.json();
    assert_eq!(json["process_types"]["hello"], "hello.wasm");
    let slug = json["path"].as_str().unwrap();
    let out = env.run_with_stdin(&["run", "--slug", slug, "hello", "-", "3"], b"one\ntwo\n");
    assert_eq!(out.code, Some(3), "{out}");
    assert!(
        out.stdout.starts_with("Hello, world! Greetings from run."),
        "{out}"
    );
    assert!(out.stdout.contains("stdin had 2 lines"), "{out}");
}

#[test]
fn rust_wasip2_command_component() {
    let env = TestEnv::new();
    let out = env.run(&["build", &sample("rust-p2-hello"), "--json"]).ok();
    assert!(out.stderr.contains("for wasm32-wasip2"), "{out}");
    let slug = out.json()["path"].as_str().unwrap().to_string();
    let out = env.run(&["run", "--slug", &slug, "hello-p2", "Ada"]).ok();
    assert_eq!(
        out.stdout,
        "Hello, Ada! Greetings from a WASI 0.2 component.\n"
    );
    let out = env.run(&["run", "--slug", &slug, "hello-p2", "Ada", "5"]);
    // wasi:cli/exit in WASI 0.2 carries only success or failure, so exit(5) reaches the host as 1.
    assert_eq!(out.code, Some(1), "{out}");
}

#[test]
fn rust_wasi_http_component_builds_and_loads() {
    let env = TestEnv::with_private_cache();
    let out = env.run(&["build", &sample("rust-http"), "--json"]).ok();
    assert!(
        out.stderr.contains("Building http for wasm32-wasip2"),
        "{out}"
    );
    assert!(out.stderr.contains("rust_http.wasm: compiled in"), "{out}");
    assert_eq!(out.json()["process_types"]["web"], "rust_http.wasm");
    let cached = compiled(&env.cache);
    assert_eq!(
        cached.len(),
        1,
        "the component is precompiled at build time: {cached:?}"
    );
}

#[test]
fn go_command_with_a_vendored_module() {
    let env = TestEnv::new();
    let (first, second) = build_twice(&env, "go-hello");
    assert!(
        first.stderr.contains("-----> Installing Go 1.27.3"),
        "{first}"
    );
    assert!(first.stderr.contains("example.com/greet"), "{first}");
    assert!(
        second
            .stderr
            .contains("Using Go 1.27.3 from the build cache"),
        "{second}"
    );
    assert!(
        !second.stderr.contains("example.com/greet"),
        "warm cache recompiles no package:\n{second}"
    );
    let json = second.json();
    assert_eq!(json["process_types"]["go-hello"], "go-hello.wasm");
    let slug = json["path"].as_str().unwrap();
    let out = env.run_with_stdin(
        &[
            "run",
            "--slug",
            slug,
            "-e",
            "NAME=Gopher",
            "go-hello",
            "-",
            "42",
        ],
        b"echoed\n",
    );
    assert_eq!(out.code, Some(42), "{out}");
    assert_eq!(
        out.stdout
            .lines()
            .next()
            .unwrap()
            .split(" Greetings")
            .next()
            .unwrap(),
        "Hello, Gopher!"
    );
    assert!(out.stdout.ends_with("echoed\n"), "{out}");
}

#[test]
fn go_net_http_web_app_builds_and_loads() {
    let env = TestEnv::with_private_cache();
    let out = env.run(&["build", &sample("go-web"), "--json"]).ok();
    assert_eq!(out.json()["process_types"]["web"], "go-web.wasm");
    assert!(out.stderr.contains("go-web.wasm: compiled in"), "{out}");
    assert_eq!(compiled(&env.cache).len(), 1);
}

#[test]
fn wat_app_with_a_procfile_naming_the_wat_source() {
    let env = TestEnv::new();
    let out = env.run(&["build", &sample("wat-hello"), "--json"]).ok();
    let json = out.json();
    assert_eq!(json["process_types"]["hello"], "hello.wat");
    let slug = json["path"].as_str().unwrap();
    let out = env.run(&["run", "--slug", slug, "hello"]).ok();
    assert_eq!(out.stdout, "Hello from WebAssembly text on wasmdyno!\n");
    // `run --dir` builds and runs in one step.
    let out = env
        .run(&["run", "--dir", &sample("wat-hello"), "hello"])
        .ok();
    assert_eq!(out.stdout, "Hello from WebAssembly text on wasmdyno!\n");
}

#[test]
fn c_command_with_a_shared_source() {
    let env = TestEnv::new();
    let (first, second) = build_twice(&env, "c-hello");
    assert!(first.stderr.contains("-----> C app detected"), "{first}");
    assert!(
        second
            .stderr
            .contains("Using Zig 0.17.0 from the build cache"),
        "{second}"
    );
    let json = second.json();
    assert_eq!(json["process_types"]["hello"], "hello.wasm");
    let slug = json["path"].as_str().unwrap();
    let out = env.run(&[
        "run",
        "--slug",
        slug,
        "-e",
        "GREETING=Hi",
        "hello",
        "Ada",
        "3",
    ]);
    assert_eq!(out.code, Some(3), "{out}");
    assert!(out.stdout.starts_with("Hi, Ada! (run."), "{out}");
}

#[test]
fn c_web_app_accepts_on_the_listener_and_stops_when_told() {
    let server = Server::start();
    server.cli(&["apps:create", "c-web"]).ok();
    let out = server
        .cli(&["deploy", "-a", "c-web", &sample("c-web")])
        .ok();
    assert!(
        out.stderr.contains("Default types for buildpack -> web"),
        "{out}"
    );
    let mut reply = String::new();
    wait_until(
        "the C web app to answer",
        std::time::Duration::from_secs(60),
        || {
            let (status, response) = server.get("c-web.localhost", "/hello?from=c");
            reply = response;
            status == 200
        },
    );
    assert!(
        reply.contains("Hello from C on wasmdyno (web.1)\nGET /hello?from=c"),
        "{reply}"
    );
    server.cli(&["ps:scale", "-a", "c-web", "web=0"]).ok();
    wait_logs(
        &server,
        "c-web",
        "a graceful exit",
        std::time::Duration::from_secs(30),
        |t| {
            t.contains("app[web.1]: the listener closed")
                && t.contains("Process exited with status 0")
        },
    );
}

#[test]
fn a_c_build_names_what_wasi_lacks() {
    let env = TestEnv::new();
    let app = env.path("forker");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("forker.c"),
        "#include <stdio.h>\n#include <unistd.h>\nint main(void) { printf(\"%d\\n\", (int)fork()); return 0; }\n",
    )
    .unwrap();
    let out = env.run(&["build", app.to_str().unwrap()]);
    assert_ne!(out.code, Some(0), "{out}");
    assert!(
        out.stderr
            .contains("wasm32-wasi (WASI preview 1) has no fork(): a WebAssembly dyno cannot fork"),
        "{out}"
    );
}

#[test]
fn c_programs_built_by_make_are_told_apart_by_what_they_import() {
    let server = Server::start();
    server.cli(&["apps:create", "c-make"]).ok();
    let out = server
        .cli(&["deploy", "-a", "c-make", &sample("c-make")])
        .ok();
    assert!(
        out.stderr
            .contains("-----> Building with make for wasm32-wasi"),
        "{out}"
    );
    // Only serve.c accepts connections: it is web, and hello keeps a process type of its own.
    assert!(
        out.stderr
            .contains("Default types for buildpack -> hello, web"),
        "{out}"
    );
    let port = server.router.rsplit(':').next().unwrap();
    let host = format!("c-make.localhost:{port}");
    wait_until(
        "the web program to answer",
        std::time::Duration::from_secs(60),
        || server.get(&host, "/").1.ends_with("made by make\n"),
    );
    let hello = server.cli(&["run", "-a", "c-make", "hello", "Ada"]).ok();
    assert_eq!(
        hello.stdout,
        "Hello, Ada, from C built by make for wasm32-wasi.\n"
    );
}

#[test]
fn a_zig_app_built_by_its_build_zig_runs_as_a_command() {
    let env = TestEnv::new();
    let out = env.run(&["build", &sample("zig-hello"), "--json"]).ok();
    assert!(
        out.stderr
            .contains("-----> Building with zig build for wasm32-wasi"),
        "{out}"
    );
    let json = out.json();
    assert_eq!(json["process_types"]["hello"], "hello.wasm", "{json}");
    // zig's own cache stays in the build cache, out of the slug.
    let slug = json["path"].as_str().unwrap();
    let listing = std::process::Command::new("tar")
        .args(["-tzf", slug])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(!listing.contains("zig-cache"), "{listing}");
    let hello = env.run(&["run", "--slug", slug, "hello", "Ada"]).ok();
    assert_eq!(hello.stdout, "Hello, Ada, from Zig on run.1.\n");
}
