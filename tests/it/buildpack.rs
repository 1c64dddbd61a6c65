//! The buildpack contract, driven through a fixture buildpack (tests/fixtures/buildpack).

use crate::support::*;

fn fixture() -> String {
    repo()
        .join("tests/fixtures/buildpack")
        .to_str()
        .unwrap()
        .to_string()
}

fn app(env: &TestEnv) -> std::path::PathBuf {
    let app = env.path("app");
    probe_app(&app, "web: probe.wasm args from-procfile\n");
    std::fs::write(app.join("secret.txt"), "do not ship").unwrap();
    std::fs::write(app.join(".slugignore"), "# keep secrets out\n/secret.txt\n").unwrap();
    std::fs::create_dir(app.join(".git")).unwrap();
    std::fs::write(app.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    app
}

#[test]
fn runs_detect_compile_release_with_herokus_contract() {
    let env = TestEnv::new();
    let app = app(&env);
    let app = app.to_str().unwrap();
    let out = env
        .run(&[
            "build",
            app,
            "--buildpack",
            &fixture(),
            "-e",
            "API_KEY=s3cret;MODE=test",
            "--json",
        ])
        .ok();
    let stderr = &out.stderr;
    // Output is streamed with the buildpack's own headers, stdout and stderr merged.
    for expected in [
        "-----> Fixture app detected",
        "-----> Fixture compile",
        "       env API_KEY=s3cret",
        "       env MODE=test",
        "       build number 1",
        "       secret.txt absent",
        "       .git absent",
        "       stderr line",
    ] {
        assert!(stderr.contains(expected), "{expected:?} missing:\n{out}");
    }
    let json = out.json();
    // The Procfile overrides the release's default for `web`; `worker` comes from the defaults.
    assert_eq!(
        json["process_types"]["web"],
        "probe.wasm args from-procfile"
    );
    assert_eq!(json["process_types"]["worker"], "probe.wasm env");
    assert_eq!(json["config_vars"]["FROM_RELEASE"], "yes-it-is");
    assert_eq!(json["buildpack"], "Fixture");

    // The build cache persists between builds of the same app.
    let out = env.run(&["build", app, "--buildpack", &fixture()]).ok();
    assert!(out.stderr.contains("build number 2"), "{out}");

    // Config vars from bin/release reach the dyno.
    let slug = json["path"].as_str().unwrap();
    let out = env.run(&["run", "--slug", slug, "worker"]).ok();
    assert!(
        out.stdout.lines().any(|l| l == "FROM_RELEASE=yes-it-is"),
        "{out}"
    );
}

#[test]
fn failing_compile_shows_its_output_and_leaves_no_slug() {
    let env = TestEnv::new();
    let app = app(&env);
    let output = env.path("out.slug");
    let out = env
        .run(&[
            "build",
            app.to_str().unwrap(),
            "--buildpack",
            &fixture(),
            "-e",
            "FAIL_AT=compile",
            "-o",
            output.to_str().unwrap(),
        ])
        .fails();
    assert!(
        out.stderr.contains("fixture compile failing on purpose"),
        "{out}"
    );
    assert!(
        out.stderr.contains("bin/compile failed (exit status 3)"),
        "{out}"
    );
    assert!(!output.exists());
    assert!(env.stored_slugs().is_empty());
}

#[test]
fn failing_or_garbled_release_stops_the_build() {
    let env = TestEnv::new();
    let app = app(&env);
    let app = app.to_str().unwrap();
    let out = env
        .run(&[
            "build",
            app,
            "--buildpack",
            &fixture(),
            "-e",
            "RELEASE_MODE=fail",
        ])
        .fails();
    assert!(out.stderr.contains("release exploded"), "{out}");
    assert!(
        out.stderr.contains("bin/release failed (exit status 4)"),
        "{out}"
    );
    let out = env
        .run(&[
            "build",
            app,
            "--buildpack",
            &fixture(),
            "-e",
            "RELEASE_MODE=bad-yaml",
        ])
        .fails();
    assert!(
        out.stderr.contains("bin/release printed invalid YAML"),
        "{out}"
    );
    assert!(env.stored_slugs().is_empty());
}

#[test]
fn named_buildpack_that_does_not_apply_is_an_error() {
    let env = TestEnv::new();
    let app = app(&env);
    std::fs::write(app.join("not-for-fixture"), "").unwrap();
    let out = env
        .run(&["build", app.to_str().unwrap(), "--buildpack", &fixture()])
        .fails();
    assert!(out.stderr.contains("not my kind of app"), "{out}");
    assert!(
        out.stderr
            .contains("does not apply to this app: bin/detect exited with exit status 1"),
        "{out}"
    );

    let out = env
        .run(&["build", app.to_str().unwrap(), "--buildpack", "cobol"])
        .fails();
    assert!(
        out.stderr
            .contains("neither a built-in buildpack (rust, go, python, nodejs, c, wasm)"),
        "{out}"
    );
}

#[test]
fn no_buildpack_detected() {
    let env = TestEnv::new();
    let app = env.path("empty");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("README"), "nothing to build").unwrap();
    let out = env.run(&["build", app.to_str().unwrap()]).fails();
    assert!(
        out.stderr.contains("no buildpack recognised this app"),
        "{out}"
    );
}

#[test]
fn bad_procfile_fails_before_compiling() {
    let env = TestEnv::new();
    let app = env.path("app");
    probe_app(&app, "web: probe.wasm\nworker probe.wasm\n");
    let out = env
        .run(&["build", app.to_str().unwrap(), "--buildpack", &fixture()])
        .fails();
    assert!(
        out.stderr
            .contains("Procfile line 2: expected `type: command`"),
        "{out}"
    );
    assert!(!out.stderr.contains("Fixture compile"), "{out}");

    std::fs::write(app.join("Procfile"), "web: probe.wasm | tee log\n").unwrap();
    let out = env
        .run(&["build", app.to_str().unwrap(), "--buildpack", &fixture()])
        .fails();
    assert!(
        out.stderr.contains("Procfile line 1: shell operator `|`"),
        "{out}"
    );
}

#[test]
fn procfile_naming_a_missing_module_fails() {
    let env = TestEnv::new();
    let app = env.path("app");
    probe_app(&app, "web: server.wasm\n");
    let out = env.run(&["build", app.to_str().unwrap()]).fails();
    assert!(
        out.stderr.contains("process type \"web\" runs \"server.wasm\", which the build did not produce (modules: probe.wasm)"),
        "{out}"
    );
    assert!(env.stored_slugs().is_empty());
}

#[test]
fn invalid_wasm_fails_the_build() {
    let env = TestEnv::new();
    let app = env.path("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("broken.wasm"), b"\0asm\x01\0\0\0\x01\xff").unwrap();
    let out = env.run(&["build", app.to_str().unwrap()]).fails();
    assert!(
        out.stderr
            .contains("broken.wasm is not a valid WebAssembly module"),
        "{out}"
    );
    assert!(env.stored_slugs().is_empty());

    std::fs::write(
        app.join("broken.wat"),
        "(module (func (export \"_start\") i32.add))",
    )
    .unwrap();
    std::fs::remove_file(app.join("broken.wasm")).unwrap();
    let out = env.run(&["build", app.to_str().unwrap()]).fails();
    assert!(out.stderr.contains("cannot compile ./broken.wat"), "{out}");
}

/// Relative WASMDYNO_HOME and WASMDYNO_CACHE_DIR are taken from the directory wasmdyno starts in, though
/// buildpacks run elsewhere: the fixture's build cache persists between builds, and the slug and the compiled
/// code land under that directory.
#[test]
fn relative_home_and_cache_dirs_are_resolved_from_the_working_directory() {
    let env = TestEnv::new();
    app(&env);
    let build = || {
        let out = env
            .cmd(&["run", "--dir", "app", "--buildpack", &fixture(), "web"])
            .current_dir(env.dir.path())
            .env("WASMDYNO_HOME", "relative-home")
            .env("WASMDYNO_CACHE_DIR", "relative-cache")
            .output()
            .unwrap();
        Out::from(out).ok()
    };
    assert!(build().stderr.contains("build number 1"));
    let out = build();
    assert!(out.stderr.contains("build number 2"), "{out}");
    assert_eq!(out.stdout, "probe.wasm\nargs\nfrom-procfile\n", "{out}");
    let home = env.path("relative-home");
    assert_eq!(list(&home.join("slugs")).len(), 1, "{out}");
    let counts: Vec<_> = list(&home.join("build-cache"))
        .into_iter()
        .filter(|p| p.ends_with("count"))
        .collect();
    assert_eq!(counts.len(), 1, "{out}");
    let cached = list(&env.path("relative-cache"));
    assert!(
        cached
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "cwasm")),
        "{cached:?}"
    );
}
